"""Hamuy's bright (HR) standards, ESO's tables: names, format, the table chosen by coverage, and a one-second
exposure through reduce, extract, wavelength and flux calibration against the simulator's truth."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from pipeline import chain, flux, reduce, simulate, standards, steps
from pipeline.settings import ReductionSettings
from tests.science.test_flux import through_the_chain

HR_STARS = ("HR 718", "HR 1544", "HR 3454", "HR 4468", "HR 4963", "HR 5501", "HR 7596", "HR 7950", "HR 8634",
            "HR 9087")
SHIFT, SCALE = 0.37, 1.0008  # the night's arcs (simulate_night's default)


# --- the catalogue -----------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["HR 7596", "HR7596", "hr7596", "HR-7596", "hr_7596"])
def test_observer_names_find_the_eso_table(typed):
    star = standards.find_standard(typed)
    assert (star.name, star.catalogue, star.path.name) == ("HR 7596", "eso-hamuy", "fhr7596.dat")
    assert chain.frame_kind("OBJECT", "Spectroscopy", typed) == chain.STANDARD


def test_all_ten_hr_stars_ship_with_readme_and_licence():
    assert [standards.find_standard(name).path.name for name in HR_STARS] == \
        [f"f{name.replace(' ', '').lower()}.dat" for name in HR_STARS]
    assert standards.find_standard("HR 1234") is None
    assert "PypeIt Developers" in (standards.ESO_DIR / "PYPEIT-LICENSE.rst").read_text()
    assert "fhr7596.dat | HR 7596 | 19:54:44.80 | +00:16:24.6" in (standards.ESO_DIR / "README.md").read_text()
    assert (standards.ESO_DIR / "aaareadme.ctio").is_file()


def test_f_lambda_of_the_eso_format_by_hand():
    wavelength, f_lambda, bandwidth = standards.f_lambda(standards.find_standard("HR 7596"))
    # fhr7596.dat line 1: "3300.0000 0.16077E+06 0.58398E+04 16.0" (F_lambda in 1e-16 erg/(s cm2 A), F_nu in mJy)
    assert (wavelength[0], bandwidth[0], len(wavelength)) == (3300.0, 16.0, 446)
    assert f_lambda[0] == pytest.approx(1.6077e-11, rel=1e-12)
    # the two flux columns agree: F_nu = F_lambda lambda^2 / c, 1 mJy = 1e-26 erg/(s cm2 Hz)
    assert f_lambda[0] * 3300.0 ** 2 / standards.SPEED_OF_LIGHT / 1e-26 == pytest.approx(5839.8, rel=1e-3)


def test_the_table_covering_the_spectrum_is_chosen():
    """L745-46A: ctionewcal (preferred) has only its red half (6425-10075 A), ctiocal all of it."""
    preferred, whole = (standards.find_standard("L745-46A", wavelength_range) for wavelength_range in
                        (None, (3600.0, 5400.0)))
    assert (preferred.catalogue, preferred.path.name) == ("ctionewcal", "l745.dat")
    assert (whole.catalogue, whole.path.name) == ("ctiocal", "l74546.dat")
    assert standards.coverage(preferred, (3600.0, 5400.0)) == 0.0
    assert standards.coverage(preferred, (6000.0, 9000.0)) == pytest.approx((9000.0 - 6425.0) / 3000.0)
    assert standards.find_standard("L745-46A", (6600.0, 9000.0)).path.name == "l745.dat"  # both cover it
    assert standards.find_standard("L745-46A", (6000.0, 9000.0)).path.name == "l74546.dat"
    # equal coverage: the whole-range table before its half
    assert standards.find_standard("LTT 7379", (3600.0, 5400.0)).path.name == "l7379.dat"
    assert [table.path.name for table in standards.tables_of("ltt7379")][:3] == \
        ["l7379.dat", "l7379blue.dat", "l7379red.dat"]


# --- a one-second exposure through the chain ------------------------------------------------------

@pytest.fixture(scope="module")
def one_second(tmp_path_factory):
    """Masters, an arc, HR 7596 exposed 1 s at airmass 1.08 and a FluxSource (900 s, airmass 1.52), 400_M2,
    through the chain to the flux-calibrated science."""
    out, config = tmp_path_factory.mktemp("hr1s"), "400_M2"
    standard = simulate.make_standard(config, star="HR 7596", exptime=1.0, airmass=1.08, shift_px=SHIFT, scale=SCALE,
                                      seed=202)
    frames = {"arc": ("0003_HgArNe.fits", simulate.make_arc(config, shift_px=SHIFT, scale=SCALE, seed=201)),
              "standard": ("0004_HR_7596.fits", standard),
              "science": ("0005_QSO.fits", simulate.make_flux_science(
                  config, airmass=1.52, exptime=900.0, shift_px=SHIFT, scale=SCALE, seed=203, cosmic_rays=False))}
    raw, bias, calibrated = through_the_chain(out, frames, ReductionSettings(min_bias=3, min_flats=3,
                                                                             cosmic_ray_rejection="none"), seed=200)
    sensitivity = steps.sensitivity(calibrated["standard"].path, "hr7596", out, original=raw["standard"])
    fluxed = steps.calibrate_flux(calibrated["science"].path, sensitivity.path, out, original=raw["science"],
                                  target=1, why="test")
    return {"bias": bias, "standard": standard, "raw": raw, "calibrated": calibrated, "sensitivity": sensitivity,
            "fluxed": fluxed}


def spectrum(path):
    with fits.open(path) as hdus:
        values, header = hdus[0].data.astype(float), hdus[0].header
    return header["CRVAL1"] + (np.arange(values.size) + 1 - header["CRPIX1"]) * header["CDELT1"], values


def test_one_second_frame_is_a_bright_standard_with_little_sky(one_second):
    standard = one_second["standard"]
    assert (standard.header["OBJECT"], standard.header["EXPTIME"], standard.header["OBSRA"]) == \
        ("HR 7596", 1.0, "19:54:44.80")
    assert standard.truth["standard"]["table"] == "eso-hamuy/fhr7596.dat"
    # sky: 0.01 e- a pixel of continuum, under 3 e- in the brightest line: nothing shows the slit's ends
    assert max(line["electrons_per_row"] for line in standard.truth["sky_lines"]) < 3.0
    assert simulate.trim(standard.data.astype(float)).max() > 20000.0  # the star: tens of thousands of ADU


def test_without_a_flat_a_one_second_standard_keeps_every_row_and_its_target(one_second, tmp_path):
    """No sky shows the slit's ends: the star's wings must not pass for them (they cut the star away)."""
    settings = ReductionSettings(cosmic_ray_rejection="none", ignore_flats=True)
    reduced = steps.reduce_raw(one_second["raw"]["standard"], settings, tmp_path, technique="Spectroscopy",
                               bias_path=one_second["bias"], flat_path=None)
    assert reduced.record["slit_trim_section"] == "[1:2030,1:947]"  # the whole image-trimmed frame
    (extracted,) = steps.extract_reduced(reduced.path, settings, tmp_path, original=one_second["raw"]["standard"])
    columns = np.arange(100.0, 2000.0, 100.0)
    true_rows = simulate.trace_rows(one_second["standard"].truth["targets"][0]["trace"], columns)
    assert np.max(np.abs(steps.stored_trace(extracted.path)(columns) - true_rows)) < 0.1


def test_sensitivity_of_a_one_second_hr_standard_follows_the_throughput(one_second):
    record = one_second["sensitivity"].record
    assert (record["star"], record["table"]) == ("HR 7596", "eso-hamuy/fhr7596.dat")
    function = flux.read_sensitivity(one_second["sensitivity"].path)
    grid = np.arange(*function.wavelength_range, 2.0)
    ratio = function.at(grid) / (simulate.flux_throughput(grid) / simulate.GAIN)
    assert 0.8 < np.median(ratio) < 0.95  # the aperture's loss, the same at all wavelengths
    assert np.max(np.abs(ratio / np.median(ratio) - 1.0)) < 0.015
    assert record["points_used"] >= 150 and record["rms_mag"] < 0.01


def test_science_calibrated_with_a_one_second_hr_standard_meets_the_goal(one_second):
    from pipeline.simulate import flux_accuracy

    accuracy = flux_accuracy(*spectrum(one_second["fluxed"].path), simulate.FluxSource().truth())
    assert abs(accuracy["median"] - 1.0) < 0.03 and accuracy["p90"] <= 0.02 and accuracy["worst"] <= 0.04
    assert accuracy["bins"] == 33  # 400_M2 to 8875 A: the sensitivity fit stops before the 8900-9800 A water band


def test_a_saturated_standard_says_so(one_second, tmp_path):
    """HR 718 (V 4.3) saturates the 400 l/mm setup in a second: its sensitivity function says how many
    pixels of its aperture did; HR 7596's has none."""
    assert one_second["sensitivity"].record["saturated_pixels"] == 0
    assert one_second["sensitivity"].record["warnings"] == []
    bright = simulate.make_standard("400_M2", star="HR 718", exptime=1.0, seed=204, cosmic_rays=False)
    raw = tmp_path / "0006_HR_718.fits"
    fits.PrimaryHDU(bright.data, bright.header).writeto(raw)
    calibrated = one_second["calibrated"]["standard"].path  # the same trims and trace
    truth = int(np.count_nonzero(simulate.trim(bright.data) >= simulate.SATURATION_ADU))
    assert truth > 100 and steps.saturated_in_aperture(raw, calibrated) == truth
