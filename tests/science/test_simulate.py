"""The synthetic night must look like raw Goodman data and agree with its own truth."""
import json

import numpy as np
import pytest
from astropy.io import fits
from numpy.polynomial import Polynomial

from pipeline import lamps, simulate


def trimmed(data):
    return simulate.trim(data).astype(float) - simulate.BIAS_LEVEL


def centroid(profile, guess, half_width=4):
    window = np.arange(int(round(guess)) - half_width, int(round(guess)) + half_width + 1)
    weights = profile[window] - np.median(profile)
    return float((window * weights).sum() / weights.sum())


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    out = tmp_path_factory.mktemp("night")
    truth_path = simulate.simulate_night(out, seed=3)
    return out, json.loads(truth_path.read_text())


def test_night_is_complete(night):
    out, truth = night
    names = sorted(p.name for p in out.glob("*.fits"))
    assert names == sorted(truth["files"])
    assert len(names) == 36
    assert names[0] == "0001_bias_2x2_27-11-2026.fits"
    kinds = {v["obstype"] for v in truth["files"].values()}
    assert kinds == {"BIAS", "FLAT", "COMP", "SPECTRUM"}
    assert {v["config"] for v in truth["files"].values()} == {"400_M2", "930_M2"}


def test_raw_files_have_goodman_geometry_and_keywords(night):
    out, truth = night
    name = next(n for n, v in truth["files"].items() if v["obstype"] == "SPECTRUM")
    with fits.open(out / name, do_not_scale_image_data=True) as hdul:
        header, stored = hdul[0].header, hdul[0].data
    assert (header["NAXIS1"], header["NAXIS2"]) == (2071, 948)
    assert header["BITPIX"] == 16 and header["BZERO"] == 32768
    assert stored.dtype.kind == "i"  # stored signed, read back as uint16 through BZERO
    assert fits.getdata(out / name).dtype == np.uint16
    for key in ("OBSTYPE", "OBJECT", "INSTCONF", "GRATING", "WAVMODE", "FILTER", "FILTER2", "SLIT", "CAM_TARG",
                "GRT_TARG", "ROI", "CCDSUM", "GAIN", "RDNOISE", "DATE-OBS", "DATE", "EXPTIME", "OBSRA", "OBSDEC",
                "TRIMSEC", "LAMP_HGA", "LAMP_NE", "PROPOSAL"):
        assert key in header, key
    assert header["ROI"] == "Spectroscopic 2x2" and header["CCDSUM"] == "2 2"
    assert header["TRIMSEC"] == "[26:2055,2:948]"
    assert header["PROPOSAL"] == "SOAR2026B-001"


def test_overscan_and_slit_ends_hold_only_bias():
    data = simulate.make_flat("400_M2", seed=1).data.astype(float)
    assert abs(np.median(data[:, simulate.OVERSCAN_COLUMNS]) - simulate.BIAS_LEVEL) < 2
    lit = trimmed(data)
    low, high = simulate.SLIT_ROWS
    assert np.median(lit[: low - 10]) < 3 and np.median(lit[high + 10:]) < 3
    assert np.median(lit[low + 20: high - 20]) > 1000


def test_bias_is_level_plus_read_noise():
    data = simulate.make_bias(seed=2).data.astype(float)
    assert abs(data.mean() - simulate.BIAS_LEVEL) < 1
    assert np.std(np.diff(data, axis=1)) / np.sqrt(2) == pytest.approx(simulate.RDNOISE / simulate.GAIN, rel=0.35)


def test_library_lamps_match_the_headers():
    for name, setup in simulate.CONFIGURATIONS.items():
        header = simulate.make_arc(name, seed=0).header
        assert lamps.find_library_lamp(header).name == setup.library_lamp


@pytest.mark.parametrize("config, shift", [("400_M2", 0.0), ("930_M2", 0.43)])
def test_dispersion_is_library_solution_shifted(config, shift):
    lamp = lamps.read_library_lamp(lamps.library_dir() / simulate.configuration(config).library_lamp)
    dispersion = simulate.true_dispersion(config, shift_px=shift)
    x = np.array([100.0, 1000.0, 1900.0])
    # Binned column x holds library pixels 2x and 2x+1: centre 2x+0.5, then the shift.
    assert np.allclose(dispersion(x + shift), lamp.wavelength(2 * x + 0.5), atol=1e-6)
    assert np.allclose(dispersion.pixel(dispersion(x)), x, atol=1e-8)


def test_arc_lines_sit_where_the_truth_says():
    arc = simulate.make_arc("400_M2", shift_px=0.3, scale=1.001, seed=4)
    profile = trimmed(arc.data)[200:700].sum(axis=0)
    lines = sorted(arc.truth["lines"], key=lambda line: -line["electrons_per_row"])
    isolated = [l for l in lines if min(abs(l["x"] - o["x"]) for o in lines if o is not l) > 12][:8]
    assert len(isolated) >= 5
    errors = [centroid(profile, l["x"]) - l["x"] for l in isolated]
    assert np.max(np.abs(errors)) < 0.06


def test_science_truth_traces_lines_and_cosmic_rays():
    frame = simulate.make_science("400_M2", pointing=simulate.POINTINGS["400_M2"][1], seed=5)
    image = trimmed(frame.data)
    assert len(frame.truth["targets"]) == 2
    for target in frame.truth["targets"]:
        x = 600
        expected_row = Polynomial(target["trace"])(x)
        column = np.median(image[:, x - 3: x + 4], axis=1)
        assert centroid(column, expected_row, half_width=6) == pytest.approx(expected_row, abs=0.3)
        line = max(target["emission_lines"], key=lambda l: l["electrons"])
        row = int(round(Polynomial(target["trace"])(line["x"])))
        spectrum = image[row - 6: row + 7].sum(axis=0)
        assert centroid(spectrum, line["x"]) == pytest.approx(line["x"], abs=0.1)
    hits = frame.truth["cosmic_rays"]
    assert len(hits) > 10
    y, x, electrons = max(hits, key=lambda h: h[2])
    assert image[y, x] > 0.5 * electrons / simulate.GAIN


def test_stream_copies_frames_one_by_one(night, tmp_path):
    out, truth = night
    copied = simulate.stream(out, tmp_path / "live", delay=0.0, pattern="000[1-3]_*.fits")
    assert [p.name for p in copied] == sorted(truth["files"])[:3]
    assert not list((tmp_path / "live").glob(".*"))
