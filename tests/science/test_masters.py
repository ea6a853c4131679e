"""Master bias and master flat against the synthetic night's known truth."""
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData

from pipeline import masters, reduce, simulate
from pipeline.settings import ReductionSettings

N_FLATS = 5


def as_ccd(frame, rows=None, columns=None):
    data = frame.data if rows is None else frame.data[:rows, :columns]
    return CCDData(data, unit=u.adu, header=frame.header.copy())


def small_biases(count, rng):
    """Corners of raw bias frames: enough pixels for noise statistics, fast to combine."""
    return [as_ccd(simulate.make_bias(seed=rng), rows=200, columns=400) for _ in range(count)]


def difference_noise(a, b):
    """Noise of one master from two independent ones (the fixed bias pattern cancels)."""
    return float(np.std(a.data.astype(float) - b.data)) / np.sqrt(2)


@pytest.fixture(scope="module")
def settings():
    return ReductionSettings(min_bias=4, min_flats=N_FLATS, saturation_threshold=1.0)


@pytest.fixture(scope="module")
def master_bias(settings):
    rng = np.random.default_rng(11)
    return masters.build_master_bias([as_ccd(simulate.make_bias(seed=rng)) for _ in range(5)], settings)


@pytest.fixture(scope="module")
def flat_frames():
    """Good flats, two saturated ones (lamp far too bright) and one with 0.5 % saturated pixels."""
    rng = np.random.default_rng(12)
    good = [as_ccd(simulate.make_flat(seed=rng)) for _ in range(N_FLATS - 1)]
    saturated = [as_ccd(simulate.make_flat(seed=rng, peak_electrons=2.0e5)) for _ in range(2)]
    speckled = as_ccd(simulate.make_flat(seed=rng))
    speckled.data = speckled.data.copy()
    speckled.data.flat[rng.choice(speckled.data.size, speckled.data.size // 200, replace=False)] = 65535
    for number, ccd in enumerate(good + saturated + [speckled]):
        ccd.header["GSP_FNAM"] = f"flat_{number}.fits"
    return good + saturated + [speckled]


@pytest.fixture(scope="module")
def master_flat(flat_frames, settings, master_bias):
    return masters.build_master_flat(flat_frames, settings, master_bias[0])


# --- master bias ------------------------------------------------------------------------

def test_master_bias_is_trimmed_and_at_the_bias_level(master_bias):
    master, record = master_bias
    assert master.shape == simulate.TRIMMED_SHAPE
    assert record["image_trim_section"] == simulate.TRIMSEC
    assert record["combined"] == 5 and master.header["NCOMBINE"] == 5
    assert abs(np.mean(master.data) - simulate.BIAS_LEVEL) < 0.5
    assert record["group_key"] == ["Red", "2x2", "Spectroscopic 2x2", 1.48, 3.89]
    assert "BZERO" not in master.header


def test_master_bias_noise_drops_as_sqrt_n(settings):
    pool = small_biases(40, np.random.default_rng(5))
    single = simulate.RDNOISE / simulate.GAIN
    noise = {}
    for count in (5, 20):
        a, _ = masters.build_master_bias(pool[:count], settings)
        b, _ = masters.build_master_bias(pool[20:20 + count], settings)
        noise[count] = difference_noise(a, b)
        # a median of N costs sqrt(pi/2) over a mean of N
        assert noise[count] == pytest.approx(single * np.sqrt(np.pi / 2 / count), rel=0.1)
    assert noise[5] / noise[20] == pytest.approx(2.0, rel=0.08)


def combine_with_ccdproc(ccds):
    """What our combine reproduces: ccdproc's median with one median/MAD 3-sigma clip."""
    import bottleneck
    import ccdproc

    return ccdproc.combine(ccds, method="median", dtype=np.float32, sigma_clip=True, sigma_clip_low_thresh=3,
                           sigma_clip_high_thresh=3, sigma_clip_func="median", sigma_clip_dev_func="mad_std",
                           combine_uncertainty_function=bottleneck.nanstd)


@pytest.mark.parametrize("count", [3, 4, 10, 21])
def test_clippedmedian_combine_is_ccdprocs(count):
    """Odd and even counts, cosmic-ray-like outliers, pixels whose values are all alike (MAD 0)."""
    rng = np.random.default_rng(count)
    ccds = small_biases(count, rng)
    for ccd in ccds:
        ccd.data = ccd.data.astype(np.float32)
        ccd.data.flat[rng.choice(ccd.data.size, 300, replace=False)] += rng.uniform(500, 20000, 300)
        ccd.data[:3, :3] = 1234.0
    combined = masters.median_combine(ccds)
    np.testing.assert_array_equal(combined.data, combine_with_ccdproc(ccds).data)
    assert combined.header["NCOMBINE"] == count and combined.data.dtype == np.float32


def test_flats_are_clipped_at_their_common_level():
    """A lamp 6 % brighter in some flats: ccdproc would clip on the raw levels; we clip after scaling."""
    rng = np.random.default_rng(5)
    flats = [as_ccd(simulate.make_flat(seed=rng), rows=120, columns=300) for _ in range(6)]
    scale = np.array([1.0, 1.0, 1.0, 1 / 1.06, 1 / 1.06, 1 / 1.06])
    for ccd, factor in zip(flats, scale):
        ccd.data = (ccd.data.astype(np.float32) - 1000) / factor
    scaled = [CCDData(ccd.data * np.float32(factor), unit=u.adu, header=ccd.header)
              for ccd, factor in zip(flats, scale)]
    combined = masters.median_combine(flats, scale=scale)
    np.testing.assert_allclose(combined.data, combine_with_ccdproc(scaled).data, rtol=1e-6)


def test_not_enough_frames_says_how_many():
    with pytest.raises(masters.NotEnoughFramesError, match=r"have 3, need 10"):
        masters.build_master_bias(small_biases(3, np.random.default_rng(1)), ReductionSettings())
    with pytest.raises(masters.NotEnoughFramesError, match=r"have 0, need 10"):
        masters.build_master_bias([], ReductionSettings())


def test_missing_group_keyword_is_named(settings):
    frames = small_biases(4, np.random.default_rng(2))
    del frames[2].header["RDNOISE"]
    with pytest.raises(reduce.MissingKeywordError, match="RDNOISE"):
        masters.build_master_bias(frames, settings)


def test_mixed_configurations_are_refused(settings):
    frames = small_biases(4, np.random.default_rng(3))
    frames[0].header["CCDSUM"] = "1 1"
    frames[0].header["ROI"] = "Spectroscopic 1x1"
    with pytest.raises(masters.MixedConfigurationError):
        masters.build_master_bias(frames, settings)


def test_group_keys():
    header = simulate.make_flat().header
    key = masters.flat_group_key(header)
    assert key[5:7] == ("400_SYZY", "400_M2") and key[9:] == ("NO_FILTER", "GG455", "1.0_LONG_SLIT")
    other = header.copy()
    other["FILTER2"] = "NO_FILTER"
    assert masters.bias_group_key(other) == masters.bias_group_key(header)
    assert masters.flat_group_key(other) != masters.flat_group_key(header)


# --- master flat ------------------------------------------------------------------------

def test_saturated_flats_are_rejected(master_flat):
    _, _, record = master_flat
    rejected = {entry["file"]: entry["saturated_percent"] for entry in record["rejected_saturated"]}
    assert set(rejected) == {"flat_4.fits", "flat_5.fits"}
    assert all(percent > 50 for percent in rejected.values())
    assert record["combined"] == N_FLATS  # the 0.5 % speckled flat is under the 1 % threshold
    json.dumps(record)  # the job layer stores records as JSON


def test_too_few_flats_after_rejection(flat_frames, master_bias):
    with pytest.raises(masters.NotEnoughFramesError, match=r"have 5, need 6.*2 rejected as saturated"):
        masters.build_master_flat(flat_frames, ReductionSettings(min_flats=6), master_bias[0])


def test_slit_trim_removes_every_unilluminated_row(master_flat):
    _, normalized, record = master_flat
    _, _, y1, y2 = reduce.parse_section(record["slit_trim_section"])
    kept = np.arange(y1 - 1, y2)
    illumination = simulate.slit_illumination()
    low, high = simulate.SLIT_ROWS
    assert kept.min() > low and kept.max() < high
    assert illumination[kept].min() > 0.9 * illumination.max()  # not even the penumbra
    assert kept.size >= (high - low) - 2 * 8  # and little more than the penumbra goes
    assert normalized.shape == (kept.size, simulate.TRIMMED_SHAPE[1])
    assert normalized.header[reduce.SLIT_TRIM_KEY] == record["slit_trim_section"]
    assert normalized.data.min() > 0.8


def test_slit_trim_without_bias_uses_the_overscan_level(flat_frames, settings):
    _, normalized, record = masters.build_master_flat(flat_frames, settings)  # no master bias
    assert record["bias"]["applied"] is False and record["warnings"]
    _, _, y1, y2 = reduce.parse_section(record["slit_trim_section"])
    assert simulate.SLIT_ROWS[0] < y1 - 1 and y2 - 1 < simulate.SLIT_ROWS[1]
    assert normalized.data.min() > 0.8


@pytest.mark.parametrize("method", ["mean", "simple", "full"])
def test_normalization_leaves_unit_mean(master_flat, method):
    master, _, record = master_flat
    lit = reduce.slit_trim(master, record["slit_trim_section"])
    normalized, how = masters.normalize_flat(lit, ReductionSettings(flat_normalization=method))
    assert float(np.mean(normalized.data, dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    assert how["method"] == method and normalized.header["GSP_NORM"] == method
    spectral_shape = np.median(normalized.data, axis=0)
    spatial_shape = np.median(normalized.data, axis=1)
    if method == "mean":  # the quartz lamp's colour is still there
        assert spectral_shape.max() / spectral_shape.min() > 1.5
    else:  # the lamp is gone ...
        assert np.std(spectral_shape) < 0.005
    vignetting = spatial_shape.min() / spatial_shape.max()
    if method == "full":  # ... and so is the slit illumination
        assert vignetting > 0.99
    else:  # ... which simple keeps (6 % vignetting at the slit ends)
        assert vignetting < 0.96


def test_full_normalization_recovers_the_pixel_response(master_flat):
    master, _, record = master_flat
    lit = reduce.slit_trim(master, record["slit_trim_section"])
    normalized, _ = masters.normalize_flat(lit, ReductionSettings(flat_normalization="full"))
    # 1 % response, plus photon noise of five 25 ke- flats where the lamp is bright
    centre = normalized.data[:, 800:1200]
    assert 0.009 < np.std(centre) < 0.0125


def test_imaging_flats_are_normalized_by_their_mean(master_flat):
    master, _, _ = master_flat
    normalized, how = masters.normalize_flat(master, ReductionSettings(technique="Imaging"))
    assert how["method"] == "mean" and "imaging" in how["reason"]
