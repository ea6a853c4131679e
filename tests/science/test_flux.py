"""Flux calibration against synthetic truth: standard-star tables, sensitivity function, products, 2D chain."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits

from pipeline import flux, simulate, standards, steps, telluric
from pipeline.settings import ReductionSettings

LTT7379 = standards.find_standard("LTT 7379")
GRID_400 = np.arange(4965.0, 8970.0, 1.98)  # a 400_M2 wavelength-calibrated spectrum's pixel centres
DIP = (5990.0, 6010.0)  # an absorption feature injected into the standard, inside its 5975-6025 A band


def adu(electrons, rng):
    """Photon and read noise, then the gain: what an extraction holds."""
    return (rng.poisson(electrons) + rng.normal(0.0, simulate.RDNOISE * 3.0, electrons.size)) / simulate.GAIN


def truth_sensitivity(wavelength):
    """The simulator's S in ADU/s/A per erg/(s cm2 A)."""
    return simulate.flux_throughput(wavelength) / simulate.GAIN


# --- the catalogue -----------------------------------------------------------------------------

@pytest.mark.parametrize("typed, name, catalogue, table", [
    ("LTT 7379", "LTT 7379", "ctionewcal", "l7379.dat"),
    ("LTT7379", "LTT 7379", "ctionewcal", "l7379.dat"),
    ("ltt7379", "LTT 7379", "ctionewcal", "l7379.dat"),
    ("EG274", "EG 274", "ctionewcal", "eg274.dat"),
    ("EG 274", "EG 274", "ctionewcal", "eg274.dat"),
    ("CD-32 9927", "CD 32", "ctionewcal", "cd32.dat"),
    ("Feige 110", "Feige 110", "ctionewcal", "f110.dat"),
    ("feige110", "Feige 110", "ctionewcal", "f110.dat"),
    ("EG 158", "Feige 110", "ctionewcal", "f110.dat"),  # names.men alternate of another catalogue
    ("Hiltner 600", "Hiltner 600", "ctionewcal", "h600.dat"),
    ("HILT600", "Hiltner 600", "ctionewcal", "h600.dat"),
    ("LTT 2511", "L2511", "ctiocal", "l2511.dat"),  # 'l' = LTT learnt from ctionewcal's headers
    ("LTT 8702", "L93080", "ctiocal", "l93080.dat"),  # names.men wins over the abbreviation (l8702 is L870-2)
    ("BD+28 4211", "BD284211", "spec50cal", "bd284211.dat"),
    ("G 191-B2B", "G191B2B", "spec50cal", "g191b2b.dat"),
])
def test_observer_names_find_their_table(typed, name, catalogue, table):
    star = standards.find_standard(typed)
    assert (star.name, star.catalogue, star.path.name) == (name, catalogue, table)
    assert star.path.is_file()


@pytest.mark.parametrize("typed", ["NGC5128", "", "quartz", "LTT 745", "CD-34 241"])
def test_unknown_names_are_not_standards(typed):
    assert standards.find_standard(typed) is None  # LTT 745: l745.dat is L745-46A, whatever 'l' usually means


def test_name_normalization():
    assert {standards.normalize_name(t) for t in ("LTT 7379", "LTT7379", "ltt7379", "ltt-7379", "L.T.T_7379")} \
        == {"ltt7379"}
    assert standards.normalize_name("BD+28 4211") == "bd284211"


def test_tables_ship_with_their_copyright():
    assert "Association of Universities for Research in Astronomy" in (standards.DATA_DIR / "COPYRIGHT").read_text()


def test_f_lambda_of_one_table_line_by_hand():
    wavelength, f_lambda, bandwidth = standards.f_lambda(LTT7379)
    # l7379.dat line 1: "3300 11.85 50"; F_nu = 10**(-0.4 * (11.85 + 48.60)) = 6.6069e-25 erg/(s cm2 Hz).
    assert (wavelength[0], bandwidth[0], len(wavelength)) == (3300.0, 50.0, 139)
    assert f_lambda[0] == pytest.approx(6.60693448e-25 * 2.99792458e18 / 3300.0 ** 2, rel=1e-8)
    assert f_lambda[0] == pytest.approx(1.8188330e-13, rel=1e-7)


def test_extinction_is_interpolated_and_constant_beyond_the_table():
    wavelength, mag_per_airmass = standards.extinction_curve()
    assert (wavelength[0], mag_per_airmass[0], len(wavelength)) == (3200.0, 1.05, 36)
    assert standards.extinction_at([3000.0, 5000.0, 5131.5, 12000.0]) == pytest.approx([1.05, 0.19, 0.18, 0.037])


# --- sensitivity function from a 1D standard ---------------------------------------------------

@pytest.fixture(scope="module")
def standard_1d():
    """LTT 7379, 30 s at airmass 1.10, with a 50 % absorption dip the table does not know."""
    rng = np.random.default_rng(7379)
    electrons = simulate.flux_to_electrons(GRID_400, simulate.standard_f_lambda(LTT7379, GRID_400), 30.0, 1.10)
    electrons *= np.where((GRID_400 > DIP[0]) & (GRID_400 < DIP[1]), 0.5, 1.0)
    counts = adu(electrons, rng)
    return counts, flux.sensitivity_function(GRID_400, counts, 30.0, 1.10, LTT7379)


def test_sensitivity_recovers_the_throughput(standard_1d):
    _, sensitivity = standard_1d
    low, high = sensitivity.wavelength_range
    # The outermost bands lie inside the spectrum; the last is 8825-8875 A (the water band from 8900 A is masked).
    assert GRID_400[0] < low < 5010 and high == 8875.0
    inside = GRID_400[(GRID_400 >= low) & (GRID_400 <= high)]
    error = np.abs(sensitivity.at(inside) / truth_sensitivity(inside) - 1.0)
    assert np.median(error) < 0.02
    assert error.max() < 0.03
    assert sensitivity.rms < 0.01 and sensitivity.n_used >= 50
    assert np.isnan(sensitivity.at([low - 1.0, high + 1.0])).all()  # no extrapolation
    assert (sensitivity.star, sensitivity.airmass, sensitivity.exptime) == ("LTT 7379", 1.10, 30.0)


def test_outlier_band_is_rejected_and_telluric_balmer_bands_masked(standard_1d):
    counts, sensitivity = standard_1d
    band = dict(zip(sensitivity.wavelength, zip(sensitivity.used, sensitivity.masked)))
    assert band[6000.0] == (False, False)  # the dip: rejected by the clipping, not masked
    assert sensitivity.n_rejected >= 1
    assert sensitivity.n_used + sensitivity.n_rejected + sensitivity.masked.sum() == len(sensitivity.wavelength)
    for masked in (6550.0, 6600.0, 6850.0, 6900.0, 7200.0, 7600.0, 7650.0, 8200.0, 8350.0):  # H-alpha, B, H2O, A
        assert band[masked] == (False, True), masked
    for clear in (6500.0, 6700.0, 7450.0, 8000.0):
        assert not band[clear][1], clear
    unmasked = flux.sensitivity_function(GRID_400, counts, 30.0, 1.10, LTT7379, mask_telluric=False)
    assert not unmasked.masked.any()


def test_band_sums_count_fractional_pixels():
    wavelength = 100.0 + 2.0 * np.arange(10)  # pixel i covers 99 + 2i .. 101 + 2i
    counts = np.arange(10, dtype=float)
    # 100..104.5: half of pixel 0, all of pixel 1, 3/4 of pixel 2.
    assert flux.band_sums(wavelength, counts, 100.0, 104.5) == pytest.approx(0.0 * 0.5 + 1.0 + 2.0 * 0.75)
    counts[5] = np.nan  # covers 109..111: spoils the bands that touch it, and only those
    low, high = np.array([100.0, 108.0, 110.5, 111.0]), np.array([104.5, 109.5, 112.0, 113.0])
    sums = flux.band_sums(wavelength, counts, low, high)
    assert np.isnan(sums[1:3]).all() and sums[[0, 3]] == pytest.approx([2.5, 6.0])


def test_too_few_bands_is_a_clear_error():
    wavelength = np.arange(6000.0, 6200.0, 1.98)
    with pytest.raises(ValueError, match=r"only 3 usable bands of LTT 7379 fall in 5999-6201 A \(at least 5"):
        flux.sensitivity_function(wavelength, np.full(wavelength.size, 1000.0), 30.0, 1.1, LTT7379)


@pytest.fixture(scope="module")
def science_1d(standard_1d):
    """The default FluxSource continuum, 900 s at airmass 1.62, calibrated with the standard."""
    _, sensitivity = standard_1d
    rng = np.random.default_rng(42)
    source = simulate.FluxSource()
    electrons = simulate.flux_to_electrons(GRID_400, source.continuum(GRID_400), 900.0, 1.62)
    counts = adu(electrons, rng)
    uncertainty = np.sqrt(electrons + (simulate.RDNOISE * 3.0) ** 2) / simulate.GAIN
    calibrated, calibrated_uncertainty = flux.apply_sensitivity(GRID_400, counts, uncertainty, 900.0, 1.62,
                                                               sensitivity)
    return source.continuum(GRID_400), counts, uncertainty, calibrated, calibrated_uncertainty


def test_science_flux_is_recovered(science_1d):
    truth, counts, uncertainty, calibrated, calibrated_uncertainty = science_1d
    finite = np.isfinite(calibrated)
    assert finite.mean() > 0.97
    ratio = calibrated[finite] / truth[finite]
    assert np.median(np.abs(ratio - 1.0)) < 0.03
    assert np.median(ratio) == pytest.approx(1.0, abs=0.005)
    # The uncertainty is scaled exactly like the counts.
    assert np.allclose(calibrated_uncertainty[finite] / calibrated[finite], uncertainty[finite] / counts[finite])
    clear = finite & ~telluric.in_any_band(GRID_400)  # the telluric bands are pipeline.telluric's to correct
    assert np.std(calibrated[clear] / truth[clear] - 1.0) == pytest.approx(
        np.median(calibrated_uncertainty[clear] / truth[clear]), rel=0.2)


# --- products ----------------------------------------------------------------------------------

def wavelength_header(wavelength):
    header = fits.Header()
    header.update({"CTYPE1": ("WAVE", "air wavelength"), "CUNIT1": ("Angstrom", ""), "CRPIX1": (1.0, ""),
                   "CRVAL1": (wavelength[0], "wavelength of pixel CRPIX1"),
                   "CDELT1": (wavelength[1] - wavelength[0], "Angstrom per pixel"),
                   "BUNIT": "adu", "OBJECT": "QSO_J0342", "NAXIS1": wavelength.size})
    return header


def test_flux_product_reads_with_specutils(tmp_path, science_1d):
    from specutils import Spectrum

    _, _, _, calibrated, calibrated_uncertainty = science_1d
    header = wavelength_header(GRID_400)
    path = flux.write_flux_product(tmp_path / "fw_science.fits", header, calibrated, calibrated_uncertainty,
                                   header)
    loaded = Spectrum.read(path, format="wcs1d-fits")
    assert loaded.flux.unit == u.Unit("erg / (s cm2 Angstrom)")
    assert loaded.flux.dtype.name == "float32"
    assert np.allclose(loaded.spectral_axis.to_value("Angstrom"), GRID_400, rtol=0, atol=1e-3)
    assert np.allclose(loaded.flux.value, calibrated, rtol=1e-6, equal_nan=True)
    with fits.open(path) as hdul:
        assert hdul[0].header["OBJECT"] == "QSO_J0342" and hdul[0].header["BUNIT"] == "erg / (s cm2 Angstrom)"
        assert hdul[0].header["CTYPE1"] == "WAVE" and hdul[0].header["CUNIT1"] == "Angstrom"
        assert hdul["UNCERT"].columns.names == ["uncertainty"]
        assert np.allclose(hdul["UNCERT"].data["uncertainty"], calibrated_uncertainty, rtol=1e-6, equal_nan=True)


def test_sensitivity_product_round_trips(tmp_path, standard_1d, science_1d):
    _, sensitivity = standard_1d
    path = flux.write_sensitivity(tmp_path / "sens_LTT7379.fits", sensitivity,
                                  {"GSP_PNAM": ("wecfzst_0042_LTT7379.fits", "parent file"), "NAXIS1": 7})
    loaded = flux.read_sensitivity(path)
    assert np.allclose(loaded.at(GRID_400), sensitivity.at(GRID_400), rtol=1e-6, equal_nan=True)
    assert loaded.wavelength_range == pytest.approx(sensitivity.wavelength_range)
    for name in ("wavelength", "mag", "used", "masked"):
        assert np.array_equal(getattr(loaded, name), getattr(sensitivity, name), equal_nan=True), name
    assert (loaded.n_used, loaded.n_rejected, loaded.star) == (sensitivity.n_used, sensitivity.n_rejected, "LTT 7379")
    _, counts, uncertainty, calibrated, _ = science_1d
    again, _ = flux.apply_sensitivity(GRID_400, counts, uncertainty, 900.0, 1.62, loaded)
    assert np.allclose(again, calibrated, rtol=1e-6, equal_nan=True)
    with fits.open(path) as hdul:
        header = hdul[0].header
        assert (header["GSP_STD"], header["GSP_SFRM"], header["GSP_SREJ"]) == \
            ("LTT 7379", sensitivity.n_used, sensitivity.n_rejected)
        assert header["GSP_SRMS"] == pytest.approx(sensitivity.rms)
        assert (header["AIRMASS"], header["EXPTIME"], header["CTYPE1"]) == (1.10, 30.0, "WAVE")
        assert header["GSP_PNAM"] == "wecfzst_0042_LTT7379.fits" and header["NAXIS1"] == len(hdul[0].data)
        points = hdul["POINTS"].data
        assert {"wavelength", "mag", "fit", "residual", "used"} <= set(points.names)
        assert np.allclose(points["mag"] - points["fit"], points["residual"], equal_nan=True)


# --- simulated frames and the 2D chain ---------------------------------------------------------

def test_standard_frame_header_name_and_truth():
    frame = simulate.make_standard("400_M2", airmass=1.21, seed=1)
    assert (frame.header["OBJECT"], frame.header["OBSTYPE"], frame.header["AIRMASS"]) == ("LTT7379", "SPECTRUM", 1.21)
    assert simulate.file_name(42, frame.header, simulate.DEFAULT_DATE) == "0042_LTT7379_400_M2_27-11-2026.fits"
    assert frame.truth["standard"]["table"] == "ctionewcal/l7379.dat"
    assert frame.truth["throughput"]["peak"] == simulate.FLUX_THROUGHPUT["peak"]
    with pytest.raises(ValueError, match="not a shipped standard"):
        simulate.make_standard(star="NGC5128")


def test_night_with_standards(tmp_path):
    truth = json.loads(simulate.simulate_night(tmp_path, configurations=("930_M2",), n_bias=1, n_flats=1,
                                               n_science=1, n_standards=2).read_text())
    standard_files = {name: f for name, f in truth["files"].items() if "standard" in f}
    assert sorted(standard_files) == ["0004_EG274_930_M2_27-11-2026.fits", "0005_EG274_930_M2_27-11-2026.fits"]
    assert [f["airmass"] for f in standard_files.values()] == [1.03, 1.11]
    assert fits.getheader(tmp_path / "0005_EG274_930_M2_27-11-2026.fits")["AIRMASS"] == 1.11
    assert all(f["dispersion"]["shift_px"] == 0.37 for f in standard_files.values())


def through_the_chain(out, frames: dict, settings: ReductionSettings, seed: int) -> tuple[dict, Path, dict]:
    """Masters of 3 bias and 3 flats (seeds from ``seed``), then each of ``frames`` (kind -> (file name, Frame),
    one kind 'arc') reduced with them, and each but the arc extracted, its arc extracted along its trace and
    wavelength calibrated (the pipeline's own blocks): (raw paths, master bias, calibrated products) by kind."""
    config = frames["arc"][1].truth["config"]

    def write(name, frame):
        fits.PrimaryHDU(frame.data, frame.header).writeto(out / name)
        return out / name

    biases = [write(f"b{i}.fits", simulate.make_bias(config, seed=seed + i)) for i in range(3)]
    flats = [write(f"f{i}.fits", simulate.make_flat(config, seed=seed + 10 + i)) for i in range(3)]
    bias = steps.master_bias(biases, settings, out, config).path
    _, norm_flat = steps.master_flat(flats, settings, out, config, bias, technique="Spectroscopy")
    raw = {kind: write(name, frame) for kind, (name, frame) in frames.items()}
    reduced = {kind: steps.reduce_raw(path, settings, out, technique="Spectroscopy", bias_path=bias,
                                      flat_path=norm_flat.path).path for kind, path in raw.items()}
    calibrated = {}
    for kind in set(frames) - {"arc"}:
        (extracted,) = steps.extract_reduced(reduced[kind], settings, out, original=raw[kind])
        arc = steps.extract_arc_along(reduced["arc"], extracted.path, out, target=1, original=raw["arc"],
                                      science_label=kind)
        calibrated[kind], _ = steps.calibrate_wavelength(extracted.path, arc.path, out, original=raw[kind], target=1)
    return raw, bias, calibrated


@pytest.fixture(scope="module")
def chain_400(tmp_path_factory):
    """Raw frames -> masters, reduce, extract, arc along each trace, wavelength calibration (the pipeline's
    own blocks), for LTT 7379 (30 s, airmass 1.08) and a FluxSource (900 s, airmass 1.52)."""
    config, shift, scale = "400_M2", 0.37, 1.0008
    frames = {"arc": ("0003_HgArNe.fits", simulate.make_arc(config, shift_px=shift, scale=scale, seed=1)),
              "standard": ("0004_LTT7379.fits", simulate.make_standard(
                  config, airmass=1.08, exptime=30.0, shift_px=shift, scale=scale, seed=2, cosmic_rays=False)),
              "science": ("0005_QSO.fits", simulate.make_flux_science(
                  config, airmass=1.52, exptime=900.0, shift_px=shift, scale=scale, seed=3, cosmic_rays=False))}
    _, _, calibrated = through_the_chain(tmp_path_factory.mktemp("flux2d"), frames,
                                         ReductionSettings(min_bias=3, min_flats=3, cosmic_ray_rejection="none"),
                                         seed=100)
    spectra = {}
    for kind, product in calibrated.items():
        with fits.open(product.path) as hdul:
            header = hdul[0].header
            wavelength = header["CRVAL1"] + header["CDELT1"] * (np.arange(header["NAXIS1"]) + 1 - header["CRPIX1"])
            spectra[kind] = (wavelength, hdul[0].data.astype(float), hdul["UNCERT"].data["uncertainty"].astype(float),
                             header.copy())
    wavelength, counts, _, header = spectra["standard"]
    sensitivity = flux.sensitivity_function(wavelength, counts, header["EXPTIME"], header["AIRMASS"],
                                            standards.find_standard(header["OBJECT"]))
    return spectra, sensitivity


def test_chain_sensitivity_follows_the_throughput(chain_400):
    spectra, sensitivity = chain_400
    wavelength = spectra["standard"][0]
    low, high = sensitivity.wavelength_range
    inside = wavelength[(wavelength >= low) & (wavelength <= high)]
    ratio = sensitivity.at(inside) / truth_sensitivity(inside)
    # The extraction aperture (+-1 FWHM of a Moffat) loses ~11 % of the light, the same at all wavelengths.
    assert 0.8 < np.median(ratio) < 0.95
    assert np.max(np.abs(ratio / np.median(ratio) - 1.0)) < 0.015
    assert sensitivity.n_used >= 50 and sensitivity.rms < 0.01


def test_chain_recovers_the_science_flux(chain_400):
    spectra, sensitivity = chain_400
    wavelength, counts, uncertainty, header = spectra["science"]
    assert (header["AIRMASS"], header["EXPTIME"]) == (1.52, 900.0)
    calibrated, _ = flux.apply_sensitivity(wavelength, counts, uncertainty, header["EXPTIME"], header["AIRMASS"],
                                           sensitivity)
    source = simulate.FluxSource()
    line_wavelengths = np.array([w for w, _ in source.lines])
    continuum = np.isfinite(calibrated) & (np.abs(wavelength[:, None] - line_wavelengths).min(axis=1) > 30.0)
    assert continuum.mean() > 0.9
    assert np.median(np.abs(calibrated[continuum] / source.continuum(wavelength[continuum]) - 1.0)) < 0.05
    for line_wavelength, line_flux in source.lines:
        near = np.abs(wavelength - line_wavelength) < 12.0
        if line_wavelength > wavelength[0] + 50:  # H-beta falls blueward of 400_M2
            measured = np.sum(calibrated[near] - source.continuum(wavelength[near])) * header["CDELT1"]
            assert measured == pytest.approx(line_flux, rel=0.05), line_wavelength
