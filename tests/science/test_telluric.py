"""Telluric correction against the simulator's atmosphere: the transmission a standard shows, its scaling
to another airmass, the exponent fitted on the science frame, and what is said when it is not corrected."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from pipeline import flux, simulate, standards, telluric, telluric_truth

LTT7379 = standards.find_standard("LTT 7379")
GRID_400 = np.arange(4965.0, 8970.0, 1.98)  # a 400_M2 wavelength-calibrated spectrum's pixel centres
STANDARD_AIRMASS, SCIENCE_AIRMASS = 1.05, 1.7
SOURCE = simulate.FluxSource()


def true_transmission(wavelength, airmass):
    return telluric_truth.transmission(wavelength, airmass, simulate.LINE_FWHM_PX)


def adu(electrons, rng):
    return (rng.poisson(electrons) + rng.normal(0.0, simulate.RDNOISE * 3.0, electrons.size)) / simulate.GAIN


@pytest.fixture(scope="module")
def standard():
    """LTT 7379, 30 s at airmass 1.05 through the simulated atmosphere: its sensitivity and transmission."""
    electrons = simulate.flux_to_electrons(GRID_400, simulate.standard_f_lambda(LTT7379, GRID_400), 30.0,
                                           STANDARD_AIRMASS)
    counts = adu(electrons, np.random.default_rng(7))
    sensitivity = flux.sensitivity_function(GRID_400, counts, 30.0, STANDARD_AIRMASS, LTT7379)
    continuum = flux.expected_counts(GRID_400, 30.0, STANDARD_AIRMASS, sensitivity, LTT7379)
    return counts, sensitivity, telluric.measure(GRID_400, counts, continuum, STANDARD_AIRMASS, LTT7379.name)


@pytest.fixture(scope="module")
def science(standard):
    """The default FluxSource, 900 s at airmass 1.7 (shifted by 0.7 A: another frame's grid), calibrated."""
    _, sensitivity, _ = standard
    wavelength = GRID_400 + 0.7
    electrons = simulate.flux_to_electrons(wavelength, SOURCE.continuum(wavelength), 900.0, SCIENCE_AIRMASS)
    counts = adu(electrons, np.random.default_rng(8))
    uncertainty = np.sqrt(electrons + (simulate.RDNOISE * 3.0) ** 2) / simulate.GAIN
    values, errors = flux.apply_sensitivity(wavelength, counts, uncertainty, 900.0, SCIENCE_AIRMASS, sensitivity)
    return wavelength, values, errors


def test_the_standard_shows_the_true_transmission(standard):
    _, _, measured = standard
    truth = true_transmission(GRID_400, STANDARD_AIRMASS)
    inside = telluric.in_any_band(GRID_400)
    assert (measured.transmission[~inside] == 1.0).all()
    measured_in = measured.transmission[inside & np.isfinite(measured.transmission)]
    assert np.median(np.abs(measured_in - truth[inside & np.isfinite(measured.transmission)])) < 0.005
    for name in ("O2 B", "O2 A"):  # the bands' depths, summed as the goal's bins are
        band = telluric.in_band(GRID_400, next(b for b in telluric.BANDS if b.name == name))
        assert measured.transmission[band].mean() == pytest.approx(truth[band].mean(), abs=0.005), name
    # The sensitivity function ends at 8875 A (the water band from 8900 A is masked): no continuum beyond.
    assert np.isnan(measured.transmission[GRID_400 > 8900]).all()
    assert (measured.airmass, measured.star) == (1.05, "LTT 7379")


def test_the_science_is_corrected_in_the_o2_bands(standard, science):
    _, _, measured = standard
    wavelength, values, errors = science
    corrected, corrected_errors, transmission, record = telluric.correct(wavelength, values, errors,
                                                                         SCIENCE_AIRMASS, measured)
    true = SOURCE.continuum(wavelength)
    after = telluric_truth.band_accuracy(wavelength, corrected, true)
    before = telluric_truth.band_accuracy(wavelength, values, true)
    assert after["median"] <= 0.02 and after["worst"] <= 0.05, after
    assert before["median"] > 0.15 and before["worst"] > 0.45, before
    assert np.allclose(corrected_errors / corrected, errors / values, equal_nan=True)  # divided alike
    assert record["applied"] and record["standard"] == "LTT 7379"
    assert (record["airmass_standard"], record["airmass_science"]) == (1.05, 1.7)
    assert record["bands"] == ["O2 B", "H2O 7200", "O2 A", "H2O 8200"] and record["not_covered"] == []
    # Each band's own exponent: the truth's saturated A band deepens as X^0.61, the weaker B band as X^0.77.
    exponents = record["exponent"]
    assert list(exponents) == record["bands"] and all(why.startswith("fitted on the science frame's " + band)
                                                      for band, why in record["exponent_why"].items())
    assert 0.55 <= exponents["O2 A"] <= 0.67 and 0.68 <= exponents["O2 B"] <= 0.86, exponents
    assert (transmission[~telluric.in_any_band(wavelength)] == 1.0).all()


def test_scaling_is_the_optical_depth_times_the_airmass_ratio_to_the_b():
    wavelength = np.array([6000.0, 6900.0, 7200.0, 7600.0])
    standard = np.array([1.0, 0.8, 0.9, 0.5])
    lever = np.log(2.0)
    scaled = telluric.scaled(standard, wavelength, lever, {"O2 B": 0.5, "O2 A": 0.25})  # water: its default, 1
    assert scaled == pytest.approx([1.0, 0.8 ** np.sqrt(2.0), 0.9 ** 2, 0.5 ** 2 ** 0.25])
    assert telluric.scaled(np.array([np.nan, np.nan]), wavelength[1:3], lever, {}) \
        == pytest.approx([1.0, 1.0])  # unknown: not corrected


A_BAND = telluric.BANDS[2]


def power_law_band(b_true, noise, seed=1):
    """A smooth A band at airmass 1 and the same band at airmass 1.6 with exponent ``b_true``, plus noise."""
    wavelength = np.arange(7400.0, 7900.0, 2.0)
    depth = np.where(telluric.in_band(wavelength, A_BAND), 0.8 * np.exp(-(wavelength - 7610) / 40), 0)
    standard = np.exp(-np.where(wavelength >= 7594, depth, 0.0))
    flux_values = standard ** (1.6 ** b_true) + np.random.default_rng(seed).normal(0.0, noise, wavelength.size)
    return wavelength, flux_values, np.full(wavelength.size, noise), standard


def test_the_exponent_is_fitted_on_the_a_band_when_the_noise_allows():
    wavelength, values, sigma, standard = power_law_band(0.55, 0.003)
    b, why = telluric.fit_exponent(wavelength, values, sigma, standard, np.log(1.6), A_BAND)
    assert b == pytest.approx(0.55, abs=0.03) and why.startswith("fitted on the science frame's O2 A band")
    wavelength, values, sigma, standard = power_law_band(0.55, 0.3)
    b, why = telluric.fit_exponent(wavelength, values, sigma, standard, np.log(1.6), A_BAND)
    assert b is None and why.startswith("the science frame's O2 A band is too noisy to fit it")
    assert telluric.fit_exponent(wavelength, values, sigma, standard, np.log(1.02), A_BAND) == (
        None, "the airmasses differ by 2%, too little for the exponent to show")


def test_a_band_that_cannot_be_fitted_takes_its_molecules_fitted_exponent_or_the_default():
    wavelength, values, sigma, standard = power_law_band(0.55, 0.003)
    b_band = telluric.BANDS[0]  # O2 B: outside this spectrum, so never fitted
    water = telluric.BANDS[3]
    exponents, why = telluric.band_exponents(wavelength, values, sigma, standard, np.log(1.6),
                                             [b_band, A_BAND, water])
    assert exponents["O2 B"] == exponents["O2 A"] == pytest.approx(0.55, abs=0.03)
    assert why["O2 B"].startswith("the median of the O2 bands fitted (the science spectrum does not show")
    assert exponents["H2O 8200"] == 1.0 and why["H2O 8200"].startswith("the H2O default (")


def test_bands_the_standard_does_not_cover_are_left_and_said(standard, science):
    counts, sensitivity, _ = standard
    wavelength, values, errors = science
    short = GRID_400 < 7650.0  # a standard whose spectrum ends inside the A band
    continuum = flux.expected_counts(GRID_400[short], 30.0, STANDARD_AIRMASS, sensitivity, LTT7379)
    measured = telluric.measure(GRID_400[short], counts[short], continuum, STANDARD_AIRMASS, LTT7379.name)
    corrected, _, _, record = telluric.correct(wavelength, values, errors, SCIENCE_AIRMASS, measured)
    assert record["bands"] == ["O2 B", "H2O 7200", "O2 A"]
    assert [entry["band"] for entry in record["not_covered"]] == ["O2 A", "H2O 8200"]
    assert record["not_covered"][0]["range"][0] == pytest.approx(7650.0, abs=2.0)
    assert record["not_covered"][1]["why"] == "not covered by the sensitivity function of LTT 7379"
    beyond = wavelength > 7652.0
    assert np.array_equal(corrected[beyond], values[beyond], equal_nan=True)
    assert "not corrected: O2 A 7651-7720 A, H2O 8200 8112-8359 A" in telluric.summary(record)
    cards = telluric.header_cards(record)
    assert cards["GSP_TMIS"][0] == "O2 A, H2O 8200" and cards["GSP_TELL"][0] is True


def test_a_spectrum_without_telluric_bands_is_not_corrected_and_says_why(standard):
    _, _, measured = standard
    blue = np.arange(3800.0, 5480.0, 0.83)
    values = np.ones_like(blue)
    same, _, transmission, record = telluric.correct(blue, values, None, 1.3, measured)
    assert same is values and (transmission == 1.0).all()
    assert record == {"applied": False, "reason": "no telluric band in the calibrated range (3800-5480 A)"}
    assert telluric.summary(record) == "telluric bands not corrected: no telluric band in the calibrated range " \
                                       "(3800-5480 A)"
    assert telluric.header_cards(telluric.not_applied("telluric correction off")) == {
        "GSP_TELL": (False, "telluric bands corrected"),
        "GSP_TWHY": ("telluric correction off", "why the telluric bands were not corrected")}


def test_the_transmission_round_trips_through_fits(tmp_path, standard):
    _, _, measured = standard
    path = tmp_path / "sens.fits"
    fits.HDUList([fits.PrimaryHDU(), telluric.standard_hdu(measured)]).writeto(path)
    loaded = telluric.read_standard(path)
    assert np.array_equal(loaded.transmission, measured.transmission, equal_nan=True)
    assert (loaded.airmass, loaded.star) == (measured.airmass, measured.star)
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "old.fits")
    assert telluric.read_standard(tmp_path / "old.fits") is None


def test_the_simulated_a_band_deepens_like_the_airmass_to_about_0_6():
    """The truth's behaviour the default exponent stands on: saturated O2 lines, weak water lines."""
    low, high = true_transmission(GRID_400, 1.05), true_transmission(GRID_400, 1.8)
    for band, expected in ((telluric.BANDS[2], 0.61), (telluric.BANDS[3], 0.85)):
        inside = telluric.in_band(GRID_400, band) & (low < 0.98)
        ratio = np.log(high[inside]).sum() / np.log(low[inside]).sum()
        assert np.log(ratio) / np.log(1.8 / 1.05) == pytest.approx(expected, abs=0.02), band.name
