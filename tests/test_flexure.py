"""Flexure: each science frame's shift against its arc, measured on its sky lines and removed.

Nights generated with the science frames shifted against their arcs go through the offline twin: the
calibrated emission lines must land as well as on a night without flexure.  A night without flexure
must not be shifted; too few sky lines keep the arc's solution with the reason; the proposal setting
turns it off.  The measurement itself is checked on 1D skies drawn at known positions.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.modeling import models

from pipeline import flexure, simulate, wavelength
from pipeline.night import reduce_night
from pipeline.settings import ReductionSettings
from pipeline.truth import accuracy
from pipeline.wavelength import WavelengthSolution
from tests.conftest import REAL_DATA

# Flats and cosmic-ray cleaning change nothing along the dispersion: skipped to keep the nights fast.  The bias
# is not: its column pattern would stay in the sky and pull the sky lines' centroids (real frames have it removed).
FAST = {"min_bias": 3, "ignore_flats": True, "cosmic_ray_rejection": "none"}
NIGHTS = {"shifted": {"400_M2": 0.5, "930_M2": -2.0}, "shifted_other_way": {"400_M2": -2.0, "930_M2": 1.3},
          "still": {"400_M2": 0.0, "930_M2": 0.0}}


def run_night(folder, flexure_px: dict, seed: int, **settings):
    raw, out = folder / "raw", folder / "out"
    truth = json.loads(simulate.simulate_night(raw, seed=seed, n_bias=3, n_flats=0, n_science=2,
                                               flexure_px=flexure_px).read_text())
    result = reduce_night(raw, out, ReductionSettings(**FAST, **settings), workers=2)
    calibrated = [entry for entry in result.manifest if entry["data_type"] == 4 and entry["obstype"] == "SPECTRUM"]
    return truth, out, calibrated


@pytest.fixture(scope="module", params=list(NIGHTS))
def night(request, tmp_path_factory):
    return run_night(tmp_path_factory.mktemp(request.param), NIGHTS[request.param],
                     seed=40 + list(NIGHTS).index(request.param))


def test_emission_lines_land_on_truth_despite_flexure(night):
    truth, out, calibrated = night
    assert len(calibrated) == 6  # three targets per configuration
    for config in ("400_M2", "930_M2"):
        products = [(out / e["file"], e["original"]) for e in calibrated if e["wavmode"] == config]
        summary = accuracy(products, truth)["summary"]
        assert summary["lines_measured"] >= 8 and summary["lines_not_fitted"] == 0, summary
        assert summary["median_abs_offset_px"] < 0.05 and summary["max_abs_offset_px"] < 0.15, (config, summary)


def test_measured_shift_matches_the_truth_or_is_not_applied(night):
    truth, out, calibrated = night
    for entry in calibrated:
        record, true_shift = entry["flexure"], truth["files"][entry["original"]]["flexure_px"]
        assert len(record["lines"]) >= 2 and record["uncertainty_px"] < 0.1, record
        if true_shift:
            assert record["applied"] and record["reason"] is None
            assert abs(record["shift_px"] - true_shift) < max(0.05, 3 * record["uncertainty_px"]), record
        else:  # no false shift: consistent with none, and the arc's solution kept
            assert abs(record["shift_px"]) <= 2 * record["uncertainty_px"], record
            assert not record["applied"] and "consistent with none" in record["reason"]
        header = fits.getheader(out / entry["file"])
        assert header["GSP_FLXA"] == record["applied"]
        assert header["GSP_FLEX"] == pytest.approx(record["shift_px"])
        assert header["GSP_FLXE"] == pytest.approx(record["uncertainty_px"])
        assert header["GSP_FLXN"] == len(record["lines"])
        assert header["GSP_FLXR"] == (record["reason"] or "applied")


def test_setting_off_keeps_the_arc_solution(tmp_path):
    truth, out, calibrated = run_night(tmp_path, {"400_M2": 1.3}, seed=44, flexure_correction=False)
    assert calibrated
    for entry in calibrated:
        assert entry["flexure"] == {"applied": False, "reason": "flexure correction is off in the settings"}
        assert fits.getheader(out / entry["file"])["GSP_FLXA"] is False
    products = [(out / e["file"], e["original"]) for e in calibrated if e["wavmode"] == "400_M2"]
    assert accuracy(products, truth)["summary"]["median_abs_offset_px"] > 1.0  # what the correction is for


@pytest.mark.parametrize("line_strength", [0.0, 0.01], ids=["no sky lines", "sky lines 100 times fainter"])
def test_too_few_sky_lines_keep_the_arc_solution_and_say_why(tmp_path, line_strength):
    """A sky with no lines (bright twilight) or faint ones (a short exposure): no correction beats a wrong one."""
    raw = tmp_path / "raw"
    raw.mkdir()
    arc = simulate.make_arc("400_M2", shift_px=0.37, seed=1)
    science = simulate.make_science("400_M2", shift_px=0.37 + 1.0, seed=2, cosmic_rays=False,
                                    sky_line_strength=line_strength, date_obs="2026-11-27T23:40:00.000")
    for index, frame in ((1, arc), (2, science)):
        fits.PrimaryHDU(frame.data, frame.header).writeto(raw / simulate.file_name(index, frame.header, "2026-11-27"))
    result = reduce_night(raw, tmp_path / "out", ReductionSettings(ignore_bias=True, ignore_flats=True), workers=1)
    calibrated = [entry for entry in result.manifest if entry["data_type"] == 4 and entry["obstype"] == "SPECTRUM"]
    assert calibrated
    for entry in calibrated:
        record = entry["flexure"]
        assert not record["applied"] and record["reason"].startswith("only "), record
        assert any(rejected["reason"].startswith("not detected") for rejected in record["rejected"])


# --- the measurement on 1D skies ----------------------------------------------------------------------

N_PIXELS = 2030
SOLUTION = WavelengthSolution(model=models.Chebyshev1D(1, c0=6966.0, c1=2004.0, domain=(0, N_PIXELS - 1)),
                              pixels=np.array([100.0, 1900.0]), wavelengths=np.array([5000.0, 8800.0]),
                              n_rejected=0, lamp="test")
FWHM = 3.0


def sky(shift_px: float, *, wavelengths=None, extra=(), seed=0, strength=3000.0) -> np.ndarray:
    """A sky spectrum with the listed lines moved by ``shift_px`` (plus ``extra`` (pixel, counts) lines)."""
    grid = np.arange(N_PIXELS, dtype=float)
    listed = [line.wavelength for line in flexure.sky_lines()] if wavelengths is None else wavelengths
    positions = [float(np.interp(w, SOLUTION(grid), grid)) + shift_px for w in listed]
    centres = positions + [pixel for pixel, _ in extra]
    totals = [strength] * len(positions) + [counts for _, counts in extra]
    spectrum = 200.0 + simulate.gaussian_lines(centres, totals, FWHM, N_PIXELS)
    return np.random.default_rng(seed).poisson(spectrum).astype(float)


@pytest.mark.parametrize("shift", [-2.0, -0.5, 0.8, 1.7])
def test_measures_a_known_shift(shift):
    record = flexure.measure_shift(sky(shift), SOLUTION, FWHM, binning=2)
    assert record["applied"] is False and record["reason"] is None  # the caller applies it
    assert abs(record["shift_px"] - shift) < 3 * record["uncertainty_px"] and record["uncertainty_px"] < 0.03
    blended = {r["wavelength"] for r in record["rejected"] if r["reason"].startswith("blends with")}
    assert {5889.950, 5895.924} <= blended  # Na D is one line at this resolution: never centroided


def test_no_sky_lines_no_correction():
    record = flexure.measure_shift(sky(0.0, wavelengths=[]), SOLUTION, FWHM, binning=2)
    assert record["reason"].startswith("only 0 sky line(s) usable") and record["shift_px"] is None
    record = flexure.measure_shift(np.zeros(N_PIXELS), SOLUTION, FWHM, binning=2)
    assert record["reason"].startswith("no sky")


def test_two_lines_that_disagree_are_not_trusted():
    spectrum = sky(0.0, wavelengths=[5577.339]) + sky(1.5, wavelengths=[6300.304], seed=1) - 200.0
    record = flexure.measure_shift(spectrum, SOLUTION, FWHM, binning=2)
    assert record["reason"] == "the sky lines disagree about the shift" and not record["lines"]


def test_an_outlier_is_rejected():
    wavelengths = [5577.339, 6300.304, 6363.776, 7913.708, 8344.602]
    spectrum = sky(1.0, wavelengths=wavelengths) + sky(2.2, wavelengths=[8827.096], seed=1) - 200.0
    record = flexure.measure_shift(spectrum, SOLUTION, FWHM, binning=2)
    assert record["reason"] is None and abs(record["shift_px"] - 1.0) < 0.05
    assert [r["wavelength"] for r in record["rejected"] if "disagrees" in r["reason"]] == [8827.096]


def test_the_targets_own_emission_line_is_not_taken_for_sky():
    """A bright target line 3 px from [O I] 6300 leaks into the sky bands: that sky line is left out."""
    grid = np.arange(N_PIXELS, dtype=float)
    near = float(np.interp(6300.304, SOLUTION(grid), grid)) + 3.0
    spectrum = sky(1.0, extra=[(near, 1500.0)])
    target = 100.0 + simulate.gaussian_lines([near], [200000.0], FWHM, N_PIXELS)
    record = flexure.measure_shift(spectrum, SOLUTION, FWHM, binning=2, target_flux=target)
    reasons = {r["wavelength"]: r["reason"] for r in record["rejected"]}
    assert "own emission line" in reasons[6300.304] or "neighbouring line" in reasons[6300.304]
    assert abs(record["shift_px"] - 1.0) < 0.05


@pytest.mark.parametrize("shift", [0.0, 1.7, -3.2])
def test_a_real_arc_taken_for_sky_is_not_trusted(shift):
    """The real HgArNe arc (1x1) moved by ``shift`` as a hostile sky: its Hg I 5460.735 is a sky line and is
    centroided at the shift, but Ar and Ne lines sit near other sky lines' places and disagree: no correction."""
    header = fits.getheader(REAL_DATA / "sp_400m2.fits")
    arc = fits.getdata(REAL_DATA / "sp_400m2.fits").astype(float)[150:250].mean(axis=0)
    solution, record = wavelength.calibrate_arc(arc, header)
    grid = np.arange(arc.size, dtype=float)
    measured = flexure.measure_shift(np.interp(grid - shift, grid, arc), solution, record["line_fwhm_px"],
                                     binning=record["binning"])
    assert measured["reason"] == "the sky lines disagree about the shift" and measured["shift_px"] is None
    mercury = next(r["reason"] for r in measured["rejected"] if r["wavelength"] == 5460.735)
    assert abs(float(mercury.split("shift ")[1].split(" px")[0]) - shift) < 0.05, mercury


def test_shifted_solution_is_a_zero_point_change():
    moved = flexure.shifted_solution(SOLUTION, 1.3)
    grid = np.arange(N_PIXELS, dtype=float)
    assert np.allclose(moved(grid + 1.3), SOLUTION(grid))
    assert moved.rms_angstrom == pytest.approx(SOLUTION.rms_angstrom)


def test_line_list_is_data_with_its_sources():
    lines = flexure.sky_lines()
    assert {5577.339, 6300.304, 6363.776, 5889.950, 5895.924, 4046.563, 4358.328, 5460.735} <= {
        line.wavelength for line in lines}
    assert {line.source for line in lines} == {"Osterbrock et al. 1996", "NIST ASD"}


# --- the live chain -------------------------------------------------------------------------------

LIVE_FLEXURE_PX = 1.3


@pytest.fixture(scope="module")
def flexed_night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    truth = simulate.simulate_night(folder, seed=45, configurations=("400_M2",), n_bias=3, n_flats=0, n_science=1,
                                    flexure_px=LIVE_FLEXURE_PX)
    return folder, json.loads(truth.read_text())


@pytest.fixture
def app_config(redis_db):
    return {"REDIS_URL": redis_db}


def calibrated_rows():
    """The science's wavelength-calibrated rows (not the arcs'), oldest first."""
    from db.models import File

    rows = File.query.filter_by(data_type=4, obstype="SPECTRUM").order_by(File.id).all()
    return [row for row in rows if "_for_" not in row.file_name]


def test_live_chain_records_the_shift_and_follows_the_setting(app, people, flexed_night, redis_db, client):
    """The night (without its closing arc) through a real worker (no cosmic-ray cleaning, to be quick: the sky
    bands are clipped); then the wavelength step again with the proposal's setting off."""
    from db import db
    from db.models import LogEntry
    from live.tasks import enqueue_step
    from tests.conftest import auth_header
    from tests.test_live_reduction import ingest_in_order, run_worker

    folder, truth = flexed_night
    settings = people["proposal"].settings
    for key, value in {"min_bias": 3, "ignore_flats": True, "cosmic_ray_rejection": "none",
                       "flux_calibration": False}.items():
        setattr(settings, key, value)
    db.session.commit()
    ingest_in_order(app, folder, sorted(truth["files"])[:-1])
    worker = run_worker(app, redis_db)
    assert worker.returncode == 0, worker.stderr[-3000:]
    db.session.expire_all()
    rows = calibrated_rows()
    assert rows
    for row in rows:
        record = row.calibrations["flexure"]
        assert record["applied"] and abs(record["shift_px"] - LIVE_FLEXURE_PX) < 0.05, record
        assert len(record["lines"]) >= 2 and record["uncertainty_px"] < 0.05
        header = fits.getheader(row.full_path)
        assert header["GSP_FLXA"] is True and header["GSP_FLEX"] == pytest.approx(record["shift_px"])
        detail = client.get(f"/api/files/{row.id}/", headers=auth_header(people["tokens"]["collab"]))
        assert detail.status_code == 200 and detail.json["calibrations"]["flexure"] == record
    messages = [entry.message for entry in LogEntry.query.filter_by(event="wavelength_calibrated")]
    assert any(f"flexure {LIVE_FLEXURE_PX:+.2f}" in message for message in messages), messages

    settings.flexure_correction = False
    for row in rows:
        enqueue_step("calibrate_wavelength", row.parent)
    db.session.commit()
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    again = calibrated_rows()[len(rows):]
    assert len(again) == len(rows)
    for row in again:
        assert row.calibrations["flexure"] == {"applied": False, "reason": "flexure correction is off in the settings"}
        assert fits.getheader(row.full_path)["GSP_FLXR"] == "flexure correction is off in the settings"


# --- the product, the Data page and the simulator ---------------------------------------------------

@pytest.mark.parametrize("record, shown", [
    ({"applied": True, "shift_px": 1.3012, "uncertainty_px": 0.0123, "reason": None,
      "lines": [{"wavelength": 5577.339}, {"wavelength": 6300.304}]}, "flexure +1.30 \u00b1 0.01 px from 2 sky lines"),
    ({"applied": False, "shift_px": None, "uncertainty_px": None, "lines": [],
      "reason": "only 1 sky line(s) usable, at least 2 needed (short exposure, blue setup or bright sky)"},
     "flexure not corrected: only 1 sky line(s) usable, at least 2 needed (short exposure, blue setup or bright sky)"),
])
def test_the_data_page_shows_the_flexure_beside_the_rms(tmp_path, record, shown):
    from figures.spectrum import spectrum_figure
    from pipeline.products import read_product
    from pipeline.wavelength import LinearSpectrum, write_product

    spectrum = LinearSpectrum(flux=np.ones(100), uncertainty=None, crval1=5000.0, cdelt1=2.0, solution=SOLUTION)
    path = write_product(tmp_path / "w.fits", spectrum, record={"flexure": record})
    header = fits.getheader(path)
    assert header["GSP_FLXN"] == len(record["lines"]) and header["GSP_FLXR"] == (record["reason"] or "applied")
    figure = spectrum_figure(read_product(path), data_type=4, title="NGC 5128", show_residuals=False)
    assert "solution RMS" in figure.layout.title.text and shown in figure.layout.title.text


def test_simulated_flexure_moves_science_frames_not_arcs(tmp_path):
    truth = json.loads(simulate.simulate_night(tmp_path, seed=1, configurations=("930_M2",), n_bias=0, n_flats=0,
                                               n_science=1, flexure_px={"930_M2": -0.9}).read_text())
    files = truth["files"].values()
    arcs = [f for f in files if f["obstype"] == "COMP"]
    science = next(f for f in files if f["obstype"] == "SPECTRUM")
    assert truth["night"]["flexure_px"] == {"930_M2": -0.9} and science["flexure_px"] == -0.9
    assert all("flexure_px" not in arc and arc["dispersion"]["shift_px"] == 0.37 for arc in arcs)
    assert science["dispersion"]["shift_px"] == pytest.approx(0.37 - 0.9)
    moved = {line["wavelength"]: line["x"] for line in science["sky_lines"]}
    assert set(moved) == {4046.563, 4358.328, 5460.735}  # the blue setup's sky: city lights' mercury
    assert simulate.parse_flexure(["1.3"]) == 1.3
    assert simulate.parse_flexure(["400_M2=1.3", "930_M2=-0.9"]) == {"400_M2": 1.3, "930_M2": -0.9}
