"""The Reduce block on synthetic raw frames whose truth is known."""
import json
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from scipy import ndimage

from pipeline import cosmics, masters, reduce, simulate
from pipeline.settings import ReductionSettings

CALIBRATIONS = ReductionSettings(min_bias=5, min_flats=5)
from tests.conftest import REAL_DATA
REAL_ARC = REAL_DATA / "sp_400m2.fits"


def as_ccd(frame):
    return CCDData(frame.data, unit=u.adu, header=frame.header.copy())


def kept_rows(record):
    _, _, y1, y2 = reduce.parse_section(record["slit_trim_section"])
    return np.arange(y1 - 1, y2)


def cosmic_ray_pixels(frame, record):
    """Truth hits as (row, column) of the reduced frame."""
    first = kept_rows(record)[0]
    hits = np.array([(y - first, x) for y, x, _ in frame.truth["cosmic_rays"]], dtype=int)
    return hits[(hits[:, 0] >= 0) & (hits[:, 0] < kept_rows(record).size)]


@pytest.fixture(scope="module")
def calibrations():
    rng = np.random.default_rng(21)
    bias, _ = masters.build_master_bias([as_ccd(simulate.make_bias(seed=rng)) for _ in range(5)], CALIBRATIONS)
    _, flat, flat_record = masters.build_master_flat(
        [as_ccd(simulate.make_flat(seed=rng)) for _ in range(5)], CALIBRATIONS, bias)
    return bias, flat, flat_record


@pytest.fixture(scope="module")
def science():
    return simulate.make_science(seed=22)


@pytest.fixture(scope="module")
def reduced(science, calibrations):
    bias, flat, _ = calibrations
    return reduce.reduce_frame(as_ccd(science), ReductionSettings(cosmic_ray_rejection="lacosmic"), bias, flat)


@pytest.fixture(scope="module")
def dcr_folder(tmp_path_factory):
    """DCR built from goodman-pipeline's shipped C source (gcc is on every machine of this project)."""
    assert shutil.which("gcc"), "gcc is needed to build DCR for this test"
    source = Path(find_spec("goodman_pipeline").submodule_search_locations[0]) / "data" / "dcr_source" / "dcr"
    folder = tmp_path_factory.mktemp("dcr")
    sources = [str(path) for path in sorted(source.glob("*.c"))]
    subprocess.run(["gcc", "-O2", "-o", str(folder / "dcr"), *sources, "-lm"], check=True, capture_output=True)
    return folder


def test_full_reduction_prefix_history_and_shape(reduced, calibrations):
    ccd, record = reduced
    _, flat, flat_record = calibrations
    assert record["prefix"] == "cfzst_" and ccd.header["GSP_PREF"] == "cfzst_"
    history = [line for line in ccd.header["HISTORY"] if line.startswith("GSP Live")]
    assert len(history) == 5 and len(record["steps"]) == 5
    assert record["image_trim_section"] == simulate.TRIMSEC
    assert record["slit_trim_section"] == flat_record["slit_trim_section"]  # identical cut
    assert ccd.shape == flat.shape
    assert record["bias"]["applied"] and record["flat"]["applied"] and not record["warnings"]
    assert record["cosmic_rays"]["applied"] == "lacosmic" and ccd.header["GSP_COSM"] == "lacosmic"
    assert ccd.data.dtype == np.float32 and "BZERO" not in ccd.header
    json.dumps(record)  # the job layer stores records as JSON


def test_reduced_sky_matches_truth(reduced, science):
    ccd, record = reduced
    rows = kept_rows(record)
    sky, _ = simulate.sky_spectrum(simulate.true_dispersion("400_M2"), 1.0)
    # simple-normalized flats keep the slit illumination at unit mean, so sky comes out at that mean
    expected = sky / simulate.GAIN * simulate.slit_illumination()[rows].mean()
    empty = ccd.data[20:220]  # rows far from the target at ~row 462
    pixel_noise = np.sqrt(expected / simulate.GAIN + (simulate.RDNOISE / simulate.GAIN) ** 2)
    median_noise = np.sqrt(np.pi / 2) * pixel_noise / np.sqrt(len(empty))
    assert np.all(np.abs(np.median(empty, axis=0) - expected) < 5 * median_noise)


def test_no_unilluminated_row_survives(reduced):
    _, record = reduced
    rows = kept_rows(record)
    assert simulate.SLIT_ROWS[0] < rows[0] and rows[-1] < simulate.SLIT_ROWS[1]


def test_slit_trim_from_the_frame_itself_without_calibrations(science):
    for frame in (science, simulate.make_arc(seed=23)):
        _, record = reduce.reduce_frame(as_ccd(frame), ReductionSettings(ignore_bias=True, ignore_flats=True,
                                                                         cosmic_ray_rejection="none"))
        rows = kept_rows(record)
        assert simulate.SLIT_ROWS[0] < rows[0] and rows[-1] < simulate.SLIT_ROWS[1]
        assert rows.size > 740
        assert record["prefix"] == ("cst_" if frame.header["OBSTYPE"] == "COMP" else "st_")


def test_real_arc_roi_inside_the_slit_keeps_every_row():
    """A real 400-row 1x1 ROI lit from edge to edge: the bias gradient must not pass for a slit edge."""
    assert REAL_ARC.exists(), f"the real test data is missing: {REAL_ARC}"
    ccd, record = reduce.reduce_frame(REAL_ARC, ReductionSettings(ignore_bias=True, ignore_flats=True,
                                                                  cosmic_ray_rejection="none"))
    assert record["image_trim_section"] == "[51:4110,2:400]"  # prescan/overscan columns and row 1 go
    assert record["slit_trim_section"] == "[1:4060,1:399]" and ccd.shape == (399, 4060)
    assert ccd.header["GSP_FNAM"] == "sp_400m2.fits"


def test_a_degenerate_third_axis_is_dropped_and_a_cut_frame_is_refused_by_name(tmp_path, science):
    """Early Goodman files (2016) are 1 x ny x nx. A whole one reduces; the real 2016 file is a 2-column
    strip of a 4110-column frame, which must be refused saying so, not with a numpy unpacking error."""
    from astropy.io import fits

    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(science.data[None, :, :], science.header).writeto(cube)
    settings = ReductionSettings(ignore_bias=True, ignore_flats=True, cosmic_ray_rejection="none")
    ccd, _ = reduce.reduce_frame(cube, settings)
    flat, _ = reduce.reduce_frame(as_ccd(science), settings)
    assert ccd.shape == flat.shape and np.array_equal(ccd.data, flat.data)
    with pytest.raises(reduce.ReductionError, match=r"empty trim section for a 2x1896 frame \(TRIMSEC \[30:4110"):
        reduce.reduce_frame(REAL_ARC.parent / "goodman_2016.fits", settings)
    cube_2 = tmp_path / "cube2.fits"
    fits.PrimaryHDU(np.zeros((2, 8, 8), dtype=np.uint16), science.header).writeto(cube_2)
    with pytest.raises(reduce.ReductionError, match=r"3 dimensions \(2, 8, 8\); a Goodman frame has 2"):
        reduce.reduce_frame(cube_2, settings)


def test_imaging_has_no_slit_trim(science):
    ccd, record = reduce.reduce_frame(as_ccd(science), ReductionSettings(technique="Imaging", ignore_bias=True,
                                                                         ignore_flats=True, cosmic_ray_rejection="none"))
    assert record["prefix"] == "t_" and record["slit_trim_section"] is None
    assert ccd.shape == simulate.TRIMMED_SHAPE


def test_cosmic_rays_are_removed(reduced, science):
    ccd, record = reduced
    hits = cosmic_ray_pixels(science, record)
    assert len(hits) > 20
    local = ndimage.median_filter(ccd.data, size=5)
    residual = (ccd.data - local)[hits[:, 0], hits[:, 1]]
    # every hit was >= 1000 ADU; what is left is within the noise of its neighbours
    assert np.abs(residual).max() < 60
    assert record["cosmic_rays"]["pixels"] >= len(hits)


def test_flat_fielding_removes_the_pixel_response(calibrations):
    bias, flat, _ = calibrations
    raw = as_ccd(simulate.make_flat(seed=24))
    settings = ReductionSettings(cosmic_ray_rejection="none")
    flattened, _ = reduce.reduce_frame(raw, settings, bias, flat)
    unflattened, _ = reduce.reduce_frame(raw, ReductionSettings(cosmic_ray_rejection="none", ignore_flats=True), bias)

    def pixel_scatter(data):
        patch = data[300:400, 900:1100]
        return np.std(patch / ndimage.uniform_filter(patch, 9))

    # 1 % pixel response on top of ~0.7 % photon noise, then the photon noise only
    assert pixel_scatter(unflattened.data) > 0.0115
    assert pixel_scatter(flattened.data) < 0.0085


def test_ignore_settings_and_missing_calibrations(science, calibrations):
    bias, flat, _ = calibrations
    frame = as_ccd(science)
    _, no_flat = reduce.reduce_frame(frame, ReductionSettings(ignore_flats=True, cosmic_ray_rejection="none"),
                                     bias, flat)
    assert no_flat["prefix"] == "zst_" and no_flat["flat"] == {"applied": False, "reason": "ignore_flats is set"}
    _, nothing = reduce.reduce_frame(frame, ReductionSettings(cosmic_ray_rejection="none"))
    assert nothing["prefix"] == "st_" and len(nothing["warnings"]) == 2
    assert frame.data.dtype == np.uint16  # the input is never modified


def test_arcs_are_never_cosmic_ray_cleaned_but_named_like_science(calibrations):
    bias, flat, _ = calibrations
    ccd, record = reduce.reduce_frame(as_ccd(simulate.make_arc(seed=25)), ReductionSettings(), bias, flat)
    assert record["prefix"] == "cfzst_"
    assert record["cosmic_rays"]["applied"] == "none" and "comparison lamp" in record["cosmic_rays"]["reason"]


def test_incompatible_or_unnormalized_flat_is_refused(science, calibrations):
    bias, flat, _ = calibrations
    wrong = flat[:-3]
    with pytest.raises(reduce.IncompatibleCalibrationError):
        reduce.reduce_frame(as_ccd(science), ReductionSettings(cosmic_ray_rejection="none"), bias, wrong)
    unnormalized = flat.copy()
    del unnormalized.header["GSP_NORM"]
    with pytest.raises(reduce.IncompatibleCalibrationError, match="not normalized"):
        reduce.reduce_frame(as_ccd(science), ReductionSettings(cosmic_ray_rejection="none"), bias, unnormalized)


def test_missing_keywords_are_named(science):
    frame = as_ccd(science)
    del frame.header["GAIN"]
    with pytest.raises(reduce.MissingKeywordError, match="GAIN"):
        reduce.reduce_frame(frame, ReductionSettings(cosmic_ray_rejection="lacosmic"))
    reduce.reduce_frame(frame, ReductionSettings(cosmic_ray_rejection="none"))  # not needed then
    del frame.header["CCDSUM"]
    with pytest.raises(reduce.MissingKeywordError, match="CCDSUM"):
        reduce.reduce_frame(frame, ReductionSettings(cosmic_ray_rejection="none"))




# --- cosmic-ray method choice ---------------------------------------------------------------

def detector_for(binning):
    return cosmics.Detector(gain=1.48, read_noise=3.89, saturation=65535.0, camera="Red", serial_binning=binning)


def test_default_method_follows_binning(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dcr anywhere
    assert cosmics.resolve_method("default", detector_for(2)) == ("lacosmic", "default for serial binning 2")
    method, reason = cosmics.resolve_method("default", detector_for(1))
    assert method == "lacosmic" and "no dcr executable" in reason
    with pytest.raises(cosmics.CosmicRayError, match="'dcr' is unavailable"):
        cosmics.reject(np.zeros((50, 50), np.float32), "dcr", detector_for(1))
    with pytest.raises(cosmics.CosmicRayError, match="unknown"):
        cosmics.resolve_method("median", detector_for(1))


def test_dcr_cleans_when_built(monkeypatch, dcr_folder, reduced, science):
    monkeypatch.setenv("PATH", str(dcr_folder))
    assert cosmics.resolve_method("default", detector_for(1))[0] == "dcr"
    ccd, record = reduced
    frame = ccd.data.copy()
    hits = cosmic_ray_pixels(science, record)
    frame[hits[:, 0], hits[:, 1]] += 5000.0
    cleaned, done = cosmics.reject(frame, "dcr", detector_for(2))
    assert done["applied"] == "dcr" and done["pixels"] >= len(hits)
    assert np.abs(cleaned - ccd.data)[hits[:, 0], hits[:, 1]].max() < 200


def frame_with_tracks(seed, shape=(300, 700), tracks=120):
    """Sky, a bright spectrum and oblique cosmic-ray tracks up to 20 px long (1x1-like hits)."""
    rng = np.random.default_rng(seed)
    model = 200.0 + 3000.0 * np.exp(-0.5 * ((np.arange(shape[0])[:, None] - shape[0] / 2) / 3.0) ** 2)
    frame = rng.poisson(np.broadcast_to(model, shape)).astype(float) + rng.normal(0.0, 4.0, shape)
    hit = np.zeros(shape, dtype=bool)
    for _ in range(tracks):
        y0, x0, length, angle = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(1, 20), \
            rng.uniform(0, 2 * np.pi)
        for step in np.linspace(0, length, 2 * length + 1):
            y, x = round(y0 + step * np.sin(angle)), round(x0 + step * np.cos(angle))
            if 0 <= y < shape[0] and 0 <= x < shape[1] and not hit[y, x]:
                frame[y, x] += rng.uniform(300.0, 20000.0)
                hit[y, x] = True
    return frame.astype(np.float32), hit


def simulated_science_minus_bias(config, exptime, cosmic_ray_rate):
    frame = simulate.make_science(config, seed=5, exptime=exptime, cosmic_ray_rate=cosmic_ray_rate)
    bias = np.median([simulate.trim(simulate.make_bias(config, seed=seed).data) for seed in range(9)], axis=0)
    return (simulate.trim(frame.data).astype(np.float32) - bias).astype(np.float32), frame.header


def real_frame_minus_bias(name):
    data = fits.getdata(REAL_DATA / name).astype(np.float32)
    return data - np.median(data[:, :20]), fits.getheader(REAL_DATA / name)


@pytest.mark.parametrize("case", [
    "tracks seed 1", "tracks seed 2",  # tracks that only a second pass catches
    "400_M2 1800 s 0.3/s", "930_M2 600 s 0.8/s", "400_M2 3600 s 0.8/s",  # the last is dense: one whole pass
    "real sp_400m2.fits", "real im_g_SDSS.fits"])
def test_lacosmic_on_cutouts_flags_what_astroscrappy_flags(case):
    """Our LACosmic runs astroscrappy only near possible detections; the mask must be astroscrappy's own."""
    if case.startswith("tracks"):
        frame, hit = frame_with_tracks(int(case[-1]))
        detector = cosmics.Detector(gain=1.0, read_noise=4.0, saturation=65535.0, camera="Red", serial_binning=1)
    else:
        if case.startswith("real"):
            frame, header = real_frame_minus_bias(case.split()[1])
        else:
            config, exptime, _, rate = case.split()
            frame, header = simulated_science_minus_bias(config, float(exptime), float(rate[:-2]))
        detector = reduce.detector(header)
    options = dict(gain=detector.gain, readnoise=detector.read_noise, satlevel=detector.saturation * detector.gain,
                   sigclip=cosmics.LACOSMIC_SIGCLIP, sepmed=True, cleantype="meanmask")
    expected_mask, expected_clean = cosmics.astroscrappy.detect_cosmics(
        frame, niter=cosmics.LACOSMIC_ITERATIONS, **options)
    cleaned, mask = cosmics.lacosmic(frame, detector)
    if case.startswith("tracks"):
        one_pass, _ = cosmics.astroscrappy.detect_cosmics(frame, niter=1, **options)
        assert (hit & ~one_pass).sum() > 20
    assert expected_mask.sum() > 0
    assert np.array_equal(mask, expected_mask)
    # astroscrappy leaves flagged pixels within 2 px of the border as they are (we clean them too) and
    # takes its own frame median where a whole 5x5 box is flagged (on an arc line)
    compared = ~ndimage.minimum_filter(mask, size=5)
    compared[:2], compared[-2:], compared[:, :2], compared[:, -2:] = False, False, False, False
    np.testing.assert_allclose(cleaned[compared], expected_clean[compared], rtol=1e-6, atol=0.01)
