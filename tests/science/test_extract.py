"""Identify, trace and extract synthetic targets whose traces and spectra are known."""
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData
from numpy.polynomial import Polynomial

from pipeline import extract, masters, reduce, simulate
from pipeline.settings import ReductionSettings

CALIBRATIONS = ReductionSettings(min_bias=5, min_flats=5)
GALAXY, PAIR = simulate.POINTINGS["400_M2"]
COLUMNS = np.arange(simulate.TRIMMED_SHAPE[1])


def as_ccd(frame):
    return CCDData(frame.data, unit=u.adu, header=frame.header.copy())


def first_row(record):
    return reduce.parse_section(record["slit_trim_section"])[2] - 1


def by_position(spectra):
    return sorted(spectra, key=lambda spectrum: spectrum.trace(1000))


def true_traces(pointing):
    return [Polynomial(target.trace) for target in sorted(pointing.targets, key=lambda t: Polynomial(t.trace)(1000))]


def expected_flux(target, spectrum, reduced, record):
    """ADU per column the extraction should give: the target's electrons through the
    simple-normalized flat (which keeps slit illumination at unit mean), times the
    part of the pixel-sampled Moffat inside the aperture (all of it for optimal)."""
    electrons, _ = simulate.target_spectrum(target, simulate.true_dispersion("400_M2"), 1.0)
    offset = first_row(record)
    level = simulate.slit_illumination()[offset:offset + reduced.shape[0]].mean()
    half_width = spectrum.record["extraction"].get("aperture_half_width_px")
    if half_width is None:
        return electrons / simulate.GAIN * level
    rows = np.arange(simulate.TRIMMED_SHAPE[0], dtype=float)
    weights = extract.aperture_weights(spectrum.trace(COLUMNS) + offset, -half_width, half_width, rows)
    return electrons / simulate.GAIN * level * (weights * simulate.moffat_profile(target)).sum(axis=0)


@pytest.fixture(scope="module")
def calibrations():
    rng = np.random.default_rng(31)
    bias, _ = masters.build_master_bias([as_ccd(simulate.make_bias(seed=rng)) for _ in range(5)], CALIBRATIONS)
    _, flat, _ = masters.build_master_flat([as_ccd(simulate.make_flat(seed=rng)) for _ in range(5)],
                                           CALIBRATIONS, bias)
    return bias, flat


def reduced_science(pointing, calibrations, seed, extra_hits=0, method="lacosmic"):
    """A reduced science frame; ``extra_hits`` cosmic rays are put right on the first target's trace."""
    frame = simulate.make_science(pointing=pointing, seed=seed)
    raw = as_ccd(frame)
    raw.data = raw.data.copy()
    rng = np.random.default_rng(seed)
    columns = rng.choice(np.arange(50, 1980), extra_hits, replace=False)
    if extra_hits:
        rows = np.rint(Polynomial(pointing.targets[0].trace)(columns)).astype(int) + simulate.TRIM_OFFSET[0]
        raw.data[rows, columns + simulate.TRIM_OFFSET[1]] = 40000
    ccd, record = reduce.reduce_frame(raw, ReductionSettings(cosmic_ray_rejection=method), *calibrations)
    return frame, ccd, record, columns


@pytest.fixture(scope="module")
def galaxy(calibrations):
    return reduced_science(GALAXY, calibrations, seed=32, extra_hits=12)


@pytest.fixture(scope="module")
def pair(calibrations):
    return reduced_science(PAIR, calibrations, seed=33)


@pytest.fixture(scope="module")
def galaxy_spectra(galaxy):
    return {method: extract.extract(galaxy[1], ReductionSettings(extraction=method))
            for method in ("fractional", "optimal")}


# --- identification and tracing -------------------------------------------------------------

@pytest.mark.parametrize("model", ["moffat", "gaussian"])
@pytest.mark.parametrize("scene", ["galaxy", "pair"])
def test_every_target_found_and_traced_within_a_third_of_a_pixel(request, scene, model):
    pointing = {"galaxy": GALAXY, "pair": PAIR}[scene]
    _, ccd, record, _ = request.getfixturevalue(scene)
    targets, _ = extract.identify_targets(ccd, ReductionSettings(target_fit_model=model, max_targets=10))
    assert len(targets) == len(pointing.targets)
    settings = ReductionSettings(target_fit_model=model)
    traces = sorted((extract.trace_target(ccd, target, settings) for target in targets), key=lambda t: t(1000))
    for trace, truth in zip(traces, true_traces(pointing)):
        error = trace(COLUMNS) + first_row(record) - truth(COLUMNS)
        assert np.abs(error).max() < 0.3
        assert trace.rms < 0.15


def test_fwhm_is_measured(pair):
    _, ccd, _, _ = pair
    spectra, record = extract.extract(ccd, ReductionSettings())
    truth = sorted(PAIR.targets, key=lambda t: Polynomial(t.trace)(1000))
    for spectrum, target in zip(by_position(spectra), truth):
        assert spectrum.trace.fwhm == pytest.approx(target.fwhm_px, rel=0.03)
        assert spectrum.trace.shape["alpha"] == pytest.approx(target.beta, rel=0.1)
    assert record["candidates"] == 2 and not record["rejected"]


def test_max_targets_keeps_the_brightest(pair):
    _, ccd, record, _ = pair
    targets, _ = extract.identify_targets(ccd, ReductionSettings(max_targets=1))
    brightest = max(PAIR.targets, key=lambda target: target.continuum_electrons)
    assert len(targets) == 1
    assert targets[0].center + first_row(record) == pytest.approx(Polynomial(brightest.trace)(1014.5), abs=1.5)


def test_no_target_invented_with_strong_cosmic_rays_and_hot_edges(pair):
    _, ccd, _, _ = pair
    hostile = ccd.copy()
    rng = np.random.default_rng(34)
    ny, nx = hostile.shape
    # 3000 unrepaired hits of 1000-50000 ADU, some long tracks, and hot slit ends
    hostile.data[rng.integers(0, ny, 3000), rng.integers(0, nx, 3000)] += rng.uniform(1e3, 5e4, 3000)
    for row in rng.integers(0, ny, 30):
        start = rng.integers(0, nx - 40)
        hostile.data[row, start:start + 40] += 20000
    hostile.data[1:4] += 3000
    hostile.data[-2:] += 8000
    targets, record = extract.identify_targets(hostile, ReductionSettings(max_targets=10))
    truth = [trace(1014.5) - first_row(pair[2]) for trace in true_traces(PAIR)]
    assert sorted(target.center for target in targets) == pytest.approx(truth, abs=1.0)
    assert any(rejection["reason"] == "at the slit edge" for rejection in record["rejected"])


def test_a_blank_sky_has_no_targets(calibrations):
    blank = simulate.Pointing("blank", "00:00:00.0", "-30:00:00.0", ())
    _, ccd, _, _ = reduced_science(blank, calibrations, seed=35, method="none")
    ccd.data[:2] += 5000
    targets, _ = extract.identify_targets(ccd, ReductionSettings(max_targets=10))
    assert targets == []
    with pytest.raises(extract.NoTargetsError):
        extract.extract(ccd, ReductionSettings())


# --- extraction ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["fractional", "optimal"])
def test_extracted_flux_matches_truth_within_its_uncertainty(galaxy, galaxy_spectra, method):
    _, ccd, record, _ = galaxy
    (spectrum,), _ = galaxy_spectra[method]
    expected = expected_flux(GALAXY.targets[0], spectrum, ccd, record)
    pulls = (spectrum.flux - expected) / spectrum.uncertainty
    assert np.median(spectrum.flux / expected) == pytest.approx(1.0, abs=0.01)
    assert 0.9 < np.std(pulls) < 1.1  # the uncertainties are honest
    assert np.abs(pulls).max() < 5.0  # not one cosmic-ray spike survives


def test_cosmic_rays_on_the_trace_would_show_without_rejection(calibrations):
    """The same frame reduced without rejection: the planted hits stand out, so the test above can see them."""
    _, ccd, record, columns = reduced_science(GALAXY, calibrations, seed=32, extra_hits=12, method="none")
    (spectrum,), _ = extract.extract(ccd, ReductionSettings())
    expected = expected_flux(GALAXY.targets[0], spectrum, ccd, record)
    pulls = (spectrum.flux - expected) / spectrum.uncertainty
    assert np.all(pulls[columns] > 20)


def test_record_and_background(galaxy, galaxy_spectra):
    _, ccd, reduce_record, _ = galaxy
    spectra, record = galaxy_spectra["fractional"]
    assert record["block"] == "extract" and record["method"] == "fractional" and record["model"] == "moffat"
    summary = spectra[0].record
    assert summary["extraction"]["background_bands"] == ["above", "below"]
    assert summary["trace"]["basis"] == "power" and len(summary["trace"]["coefficients"]) == 4
    json.dumps(record)  # the job layer stores records as JSON
    sky, _ = simulate.sky_spectrum(simulate.true_dispersion("400_M2"), 1.0)
    aperture_rows = 2 * summary["extraction"]["aperture_half_width_px"]
    offset = first_row(reduce_record)
    level = simulate.slit_illumination()[offset:offset + ccd.shape[0]].mean()
    # the background is the sky through the aperture (through a flat that keeps the illumination's mean)
    expected = sky / simulate.GAIN * level * aperture_rows
    assert np.median(spectra[0].background / expected) == pytest.approx(1.0, abs=0.02)


def test_arc_is_extracted_along_the_science_trace(calibrations, galaxy_spectra):
    arc_frame = simulate.make_arc(seed=36)
    arc, _ = reduce.reduce_frame(as_ccd(arc_frame), ReductionSettings(), *calibrations)
    (spectrum,), _ = galaxy_spectra["fractional"]
    extracted, record = extract.extract_arc(arc, spectrum)
    assert record["block"] == "extract_arc" and record["extraction"]["background_bands"] == []
    assert np.all(extracted.uncertainty > 0)
    strongest = sorted(arc_frame.truth["lines"], key=lambda line: -line["electrons_per_row"])[:8]
    for line in strongest:
        x = int(round(line["x"]))
        if 5 <= x < len(COLUMNS) - 5:
            window = np.arange(x - 3, x + 4)
            centroid = (window * extracted.flux[window]).sum() / extracted.flux[window].sum()
            assert centroid == pytest.approx(line["x"], abs=0.3)
    with pytest.raises(reduce.IncompatibleCalibrationError):
        extract.extract_arc(arc[:-4], spectrum)


def test_spectrum_ccd_carries_the_trace(galaxy, galaxy_spectra):
    _, ccd, _, _ = galaxy
    (spectrum,), _ = galaxy_spectra["fractional"]
    product = extract.spectrum_ccd(spectrum, ccd.header)
    assert product.shape == (ccd.shape[1],)
    assert product.header["GSP_TC00"] == pytest.approx(spectrum.trace.coefficients[0])
    assert np.allclose(product.uncertainty.array, spectrum.uncertainty, rtol=1e-6)
