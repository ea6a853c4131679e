"""Combining exposures of one target (pipeline.combine) and choosing them (pipeline.matching), on spectra of
known truth."""
from __future__ import annotations

from datetime import datetime, timedelta

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum
from specutils.manipulation import FluxConservingResampler

from pipeline import combine, matching
from pipeline.datatypes import DataType


def truth(wavelength):
    return 1.0e-15 * (wavelength / 5500.0) ** -1.5


def exposures(n: int, *, seed: int = 1, noise: float = 0.1, offsets=(0.0, 0.31, 0.77, 1.2)) -> list:
    """``n`` spectra of one source on grids shifted by a fraction of a pixel (flexure), 10 % noise."""
    rng = np.random.default_rng(seed)
    made = []
    for index in range(n):
        wavelength = 4000.0 + offsets[index] + 1.95 * np.arange(2030)
        sigma = noise * truth(wavelength)
        made.append(combine.Exposure(wavelength, truth(wavelength) + rng.normal(0.0, 1.0, wavelength.size) * sigma,
                                     sigma, 600.0))
    return made


def test_the_rebin_conserves_flux_as_specutils_does():
    exposure = exposures(1)[0]
    grid = 4003.3 + 1.9 * np.arange(2000)
    ours, variance = combine.rebin(exposure.wavelength, exposure.values, exposure.uncertainty ** 2,
                                   combine.pixel_edges(grid))
    spectrum = Spectrum(flux=exposure.values * u.Jy, spectral_axis=exposure.wavelength * u.AA,
                        uncertainty=StdDevUncertainty(exposure.uncertainty))
    theirs = FluxConservingResampler(extrapolation_treatment="nan_fill")(spectrum, grid * u.AA)
    both = np.isfinite(ours) & np.isfinite(theirs.flux.value)
    assert both.sum() >= 1995
    assert np.max(np.abs(ours[both] - theirs.flux.value[both])) < 1e-6 * np.median(exposure.values)
    their_sigma = 1.0 / np.sqrt(theirs.uncertainty.array[both])
    assert np.allclose(np.sqrt(variance[both]), their_sigma, rtol=1e-6)


def test_three_exposures_gain_root_three_in_signal_to_noise_and_keep_the_flux():
    inputs = exposures(3)
    combined = combine.combine(inputs, counts=False)
    single = np.mean([combine.median_snr(e.values, e.uncertainty) for e in inputs])
    assert 9.5 < single < 10.5
    assert combine.median_snr(combined.values, combined.uncertainty) >= 0.9 * np.sqrt(3) * single
    ratio = combined.values / truth(combined.wavelength)
    assert abs(np.nanmedian(ratio) - 1) < 0.005
    # the propagated uncertainty describes the scatter about the truth (within 15 %, the rebin correlates pixels)
    pulls = (combined.values - truth(combined.wavelength)) / combined.uncertainty
    assert 0.85 < np.nanstd(pulls) < 1.15
    assert combined.exptime == 1800.0 and combined.step == pytest.approx(1.95)
    assert set(np.unique(combined.contributors[5:-5])) == {3}


def test_a_cosmic_ray_residue_in_one_exposure_is_rejected():
    for n in (2, 3):
        inputs = exposures(n, seed=7)
        hit = inputs[1].values.copy()
        hit[1000:1003] += 30 * inputs[1].uncertainty[1000:1003]  # 3 pixels, 3 times the continuum
        inputs[1] = combine.Exposure(inputs[1].wavelength, hit, inputs[1].uncertainty, 600.0)
        combined = combine.combine(inputs, counts=False)
        near = np.abs(combined.wavelength - inputs[1].wavelength[1001]) < 6
        residual = (combined.values[near] - truth(combined.wavelength[near])) / combined.uncertainty[near]
        assert np.all(np.abs(residual) < 4), (n, residual)
        assert combined.contributors[near].min() == n - 1
        assert 0 < combined.rejected_fraction < 0.002


def test_counts_are_combined_per_second_and_given_back_for_the_total_time():
    short, long = exposures(2, noise=0.01)
    counts = [combine.Exposure(e.wavelength, e.values * 1e17 * t, e.uncertainty * 1e17 * t, t)
              for e, t in ((short, 300.0), (long, 900.0))]
    combined = combine.combine(counts, counts=True)
    expected = truth(combined.wavelength) * 1e17 * 1200.0
    assert combined.exptime == 1200.0
    assert abs(np.nanmedian(combined.values / expected) - 1) < 0.002


def test_fewer_than_two_spectra_are_refused():
    with pytest.raises(ValueError, match="at least 2 spectra, got 1"):
        combine.combine(exposures(1), counts=False)


def test_signal_to_noise_is_the_median_over_the_central_half():
    values = np.concatenate([np.full(25, 1.0), np.full(50, 30.0), np.full(25, 1.0)])
    assert combine.median_snr(values, np.ones(100)) == 30.0
    assert combine.median_snr(values, None) is None


@pytest.mark.parametrize("goal, snr, last, more", [(20, 10, 10, 3), (20, 17.33, 10, 1), (20, 17.32, 10, 2), (20, 25, 10, 0),
                                                   (50, 20, 5, 84)])
def test_exposures_to_reach_a_signal_to_noise(goal, snr, last, more):
    assert combine.exposures_to_reach(goal, snr, last) == more


def fields(**changes) -> dict:
    base = {"proposal_id": "SOAR2026B-001", "date": "2026-11-27", "object": "SN 2026abc", "target": 1,
            "instconf": "Red", "grating": "400_SYZY", "wavmode": "400_M2", "cam_targ": 11.6, "grt_targ": 5.8,
            "slit": "1.0_LONG_SLIT", "roi": "Spectroscopic 2x2", "binning": "2x2", "filter": "NO_FILTER",
            "filter_2": "GG455", "obsra": "03:42:10.000", "obsdec": "-37:44:00.00",
            "date_obs": datetime(2026, 11, 28, 1, 0), "data_type": DataType.WAVELENGTH_CALIBRATED, "original": 1,
            "id": 1}
    return {**base, **changes}


def test_spectra_of_one_target_are_told_apart_from_others():
    one = fields()
    assert matching.same_target(one, fields(object="sn2026ABC", obsra="03:42:10.500", original=2))  # 6" away
    assert not matching.same_target(one, fields(obsra="03:42:11.000"))  # 12" away
    assert not matching.same_target(one, fields(target=2))
    assert not matching.same_target(one, fields(wavmode="930_M2"))
    assert not matching.same_target(one, fields(date="2026-11-28"))
    assert not matching.same_target(one, fields(proposal_id="SOAR2026B-002"))
    assert matching.not_one_target([one]) == "combining needs at least two spectra"
    assert matching.not_one_target([one, fields(id=2)]) == "two of the spectra are of the same exposure"
    assert matching.not_one_target([one, fields(id=2, original=2, target=2, file_name="b.fits")]).startswith(
        "b.fits is not of the target of")
    assert matching.not_one_target([one, fields(id=2, original=2)]) is None


def test_the_most_calibrated_level_two_exposures_reach_is_combined():
    start = datetime(2026, 11, 28, 1, 0)

    def spectrum(exposure, level, number):
        return fields(original=exposure, data_type=level, id=number, date_obs=start + timedelta(minutes=exposure))

    wavelength, flux = DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED
    assert matching.spectra_to_combine([spectrum(1, wavelength, 1)]) == []
    chosen = matching.spectra_to_combine([spectrum(2, wavelength, 5), spectrum(1, wavelength, 1),
                                          spectrum(1, flux, 2), spectrum(3, wavelength, 7)])
    assert [s["id"] for s in chosen] == [1, 5, 7]  # one flux spectrum only: the wavelength level, oldest first
    chosen = matching.spectra_to_combine([spectrum(1, wavelength, 1), spectrum(1, flux, 2), spectrum(2, wavelength, 5),
                                          spectrum(2, flux, 6), spectrum(2, flux, 9), spectrum(3, wavelength, 7)])
    assert [s["id"] for s in chosen] == [2, 9]  # flux, each exposure's newest version
