"""Flux calibration, live and offline: a standard star becomes its configuration's sensitivity function,
and science spectra are flux calibrated with it, measured against the generated truth (F_lambda of a
source seen through a known throughput and the CTIO extinction at another airmass)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import auth_header
from tests.test_live_reduction import ingest_in_order, run_worker

NIGHT_SETTINGS = {"min_bias": 3, "min_flats": 3}
SCIENCE = "0100_QSO_J0342_400_M2_27-11-2026.fits"


@pytest.fixture(scope="module")
def flux_night(tmp_path_factory):
    """One configuration: calibrations, arcs, a standard (LTT 7379 at airmass 1.05) and a science source
    of known F_lambda at airmass 1.65, observed later."""
    from pipeline.simulate import make_flux_science, simulate_night

    folder = tmp_path_factory.mktemp("flux-night")
    truth = json.loads(simulate_night(folder, seed=21, configurations=("400_M2",), n_bias=3, n_flats=3,
                                      n_science=1, n_standards=1).read_text())
    science = make_flux_science("400_M2", airmass=1.65, seed=22, date_obs="2026-11-28T01:30:00.000",
                                shift_px=0.37, scale=1.0008)  # the night's dispersion (simulate_night's default)
    fits.PrimaryHDU(data=science.data, header=science.header).writeto(folder / SCIENCE)
    truth["files"][SCIENCE] = science.truth
    return folder, truth


def standard_names(folder: Path, truth: dict) -> list[str]:
    from pipeline.standards import find_standard

    return [name for name in sorted(truth["files"]) if truth["files"][name]["obstype"] == "SPECTRUM"
            and find_standard(fits.getval(folder / name, "OBJECT")) is not None]


def flux_accuracy(path: Path, source: dict) -> dict:
    from pipeline.simulate import flux_accuracy as measured

    with fits.open(path) as hdus:
        flux, header = hdus[0].data.astype(float), hdus[0].header
    wavelength = header["CRVAL1"] + (np.arange(flux.size) + 1 - header["CRPIX1"]) * header["CDELT1"]
    return measured(wavelength, flux, source)


@pytest.fixture
def app_config(redis_db):
    return {"REDIS_URL": redis_db}


def test_science_waits_for_its_standard_then_is_flux_calibrated(app, people, flux_night, redis_db, client):
    from db import db
    from db.models import File, Job, LogEntry

    folder, truth = flux_night
    for key, value in NIGHT_SETTINGS.items():
        setattr(people["proposal"].settings, key, value)
    db.session.commit()
    standards = standard_names(folder, truth)
    assert len(standards) == 1
    first = [name for name in sorted(truth["files"]) if name not in standards]
    ingest_in_order(app, folder, first)
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()

    science = File.query.filter_by(file_name=SCIENCE).one()
    assert science.state == "waiting"
    assert science.state_reason.startswith("wavelength calibrated; waiting for a standard star of 400_M2")
    assert File.query.filter_by(original_file_id=science.id, data_type=4).count() == 1
    assert File.query.filter_by(data_type=5).count() == 0
    parked = Job.query.filter_by(kind="calibrate_flux", state="waiting").all()
    assert parked and all(job.waiting_for == "sensitivity function" for job in parked)

    ingest_in_order(app, folder, standards)  # the standard arrives: the science is woken
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    standard = File.query.filter_by(file_name=standards[0]).one()
    assert standard.state == "done", standard.state_reason
    sensitivity = File.query.filter_by(original_file_id=standard.id, data_type=1).one()
    assert sensitivity.file_name.startswith("sens_wecfzst_") and sensitivity.calibrations["standard"]["star"] == \
        "LTT 7379"
    assert fits.getval(sensitivity.full_path, "GSP_STD") == "LTT 7379"
    db.session.refresh(science)
    assert science.state == "done", science.state_reason
    product = File.query.filter_by(original_file_id=science.id, data_type=5).one()
    assert product.file_name == "f" + product.parent.file_name and product.parent.data_type == 4
    assert product.calibrations["standard"]["id"] == sensitivity.id
    assert "closest in time" in product.calibrations["standard"]["why"]
    header = fits.getheader(product.full_path)
    assert header["BUNIT"] == "erg / (s cm2 Angstrom)" and header["GSP_SENS"] == sensitivity.file_name
    assert header["CTYPE1"] == "WAVE" and header["CDELT1"] == fits.getval(product.parent.full_path, "CDELT1")
    telluric = product.calibrations["telluric"]  # on by default: corrected with the same standard
    assert telluric["applied"] and telluric["standard"] == "LTT 7379" and "O2 A" in telluric["bands"]
    assert (telluric["airmass_standard"], telluric["airmass_science"]) == (1.03, 1.65)
    assert header["GSP_TELL"] is True and header["GSP_TXSC"] == 1.65
    accuracy = flux_accuracy(Path(product.full_path), truth["files"][SCIENCE]["source"])
    print("live flux accuracy", accuracy)
    assert accuracy["bins"] >= 25
    assert abs(accuracy["median"] - 1) < 0.03 and accuracy["p90"] <= 0.02 and accuracy["worst"] <= 0.04, accuracy
    assert {"sensitivity_built", "flux_calibrated"} <= {entry.event for entry in LogEntry.query.all()}
    listed = client.get("/api/files/", query_string={"data_type": 5}, headers=auth_header(people["tokens"]["collab"]))
    calibrated_targets = File.query.filter(File.data_type == 4, File.obstype == "SPECTRUM",
                                           File.original_file_id != standard.id).count()
    assert product.file_name in {row["file_name"] for row in listed.json["results"]}
    assert listed.json["count"] == calibrated_targets == 2  # every science spectrum, the NGC 5128 one too
    assert all(job.state == "done" for job in Job.query.all())


def test_flux_calibration_can_be_turned_off(app, people, flux_night, redis_db):
    from db import db
    from db.models import File, Job

    folder, truth = flux_night
    people["proposal"].settings.flux_calibration = False
    people["proposal"].settings.ignore_bias = people["proposal"].settings.ignore_flats = True
    db.session.commit()
    arcs = [name for name in sorted(truth["files"]) if truth["files"][name]["obstype"] == "COMP"]
    ingest_in_order(app, folder, [*arcs, SCIENCE])
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    science = File.query.filter_by(file_name=SCIENCE).one()
    assert science.state == "done" and File.query.filter_by(original_file_id=science.id, data_type=4).count() == 1
    assert Job.query.filter_by(kind="calibrate_flux").count() == 0


def test_manual_flux_trigger_and_marking_a_standard(app, people, flux_night, client):
    from db import db
    from db.models import File
    from live.catalogue import ingest

    folder, truth = flux_night
    raw = Path(app.config["DATA_DIR"]) / "raw" / "20261127"
    raw.mkdir(parents=True, exist_ok=True)
    standard_name = standard_names(folder, truth)[0]
    rows = {}
    for name in (SCIENCE, standard_name):
        (raw / name).write_bytes((folder / name).read_bytes())
        rows[name] = ingest(raw / name)[0]
    headers = auth_header(people["tokens"]["pi"])
    science = rows[SCIENCE]

    refused = client.post("/api/files/spectrum/calibrate/flux/", json={"id": science.id}, headers=headers)
    assert refused.status_code == 400 and "wavelength-calibrated science spectrum" in refused.json["detail"]
    calibrated = File(file_name="w" + SCIENCE, directory_name="/p", full_path="/p/w.fits", data_type=4,
                      obstype=science.obstype, technique=science.technique, object=science.object, parent=science,
                      original=science, proposal=science.proposal)  # what the step takes, then a wrong standard
    db.session.add(calibrated)
    db.session.commit()
    wrong = client.post("/api/files/spectrum/calibrate/flux/", json={"id": calibrated.id, "standard_id": science.id},
                        headers=headers)
    assert wrong.status_code == 400 and "is not a standard star" in wrong.json["detail"]
    stranger = client.post("/api/files/spectrum/calibrate/flux/", json={"id": science.id},
                           headers=auth_header(people["tokens"]["stranger"]))
    assert stranger.status_code == 404

    unknown = client.post("/api/files/reclassify/", json={"id": science.id, "standard": "Not A Star 42"},
                          headers=headers)
    assert unknown.status_code == 400 and "'LTT 7379'" in unknown.json["detail"]
    marked = client.post("/api/files/reclassify/", json={"id": science.id, "standard": "ltt 7379"}, headers=headers)
    assert marked.status_code == 200
    db.session.expire_all()
    from db.queries import kind_of

    assert kind_of(db.session.get(File, science.id)) == "standard"
    unmarked = client.post("/api/files/reclassify/", json={"id": rows[standard_name].id, "standard": False},
                           headers=headers)
    assert unmarked.status_code == 200
    db.session.expire_all()
    assert kind_of(db.session.get(File, rows[standard_name].id)) == "science"


@pytest.fixture(scope="module")
def offline_night(flux_night, tmp_path_factory):
    from pipeline.night import reduce_night
    from pipeline.settings import ReductionSettings

    folder, _ = flux_night
    out = tmp_path_factory.mktemp("offline")
    return out, reduce_night(folder, out, ReductionSettings(**NIGHT_SETTINGS))


def test_the_offline_twin_flux_calibrates_too(flux_night, offline_night):
    folder, truth = flux_night
    tmp_path, result = offline_night
    calibrated = [row for row in result.manifest if row["data_type"] == 5]
    assert [row["original"] for row in calibrated if row["original"] == SCIENCE] == [SCIENCE]
    sensitivity = [row for row in result.manifest if row["data_type"] == 1 and row["file"].startswith("sens_")]
    assert len(sensitivity) == 1
    science_row = next(row for row in calibrated if row["original"] == SCIENCE)
    assert science_row["standard"] == sensitivity[0]["file"]
    accuracy = flux_accuracy(tmp_path / science_row["file"], truth["files"][SCIENCE]["source"])
    assert abs(accuracy["median"] - 1) < 0.03 and accuracy["p90"] <= 0.02 and accuracy["worst"] <= 0.04, accuracy


def test_the_offline_twin_corrects_the_telluric_bands_and_says_so_when_off(flux_night, offline_night, tmp_path):
    """The flux-calibrated science is divided by the standard's transmission scaled to its airmass (the
    exponent fitted on its A band), records what was used, and says so when the setting is off."""
    from pipeline import steps
    from pipeline.simulate import FluxSource
    from pipeline.telluric_truth import band_accuracy

    folder, truth = flux_night
    out, result = offline_night
    row = next(row for row in result.manifest if row["data_type"] == 5 and row["original"] == SCIENCE)
    record = row["telluric"]
    assert record["applied"] and record["standard"] == "LTT 7379" and record["not_covered"] == []
    assert (record["airmass_standard"], record["airmass_science"]) == (1.03, 1.65)
    assert record["bands"] == ["O2 B", "H2O 7200", "O2 A", "H2O 8200"]
    assert 0.55 <= record["exponent"]["O2 A"] <= 0.67 and 0.68 <= record["exponent"]["O2 B"] <= 0.86
    with fits.open(out / row["file"]) as hdus:
        header, corrected = hdus[0].header, hdus[0].data.astype(float)
        transmission = hdus["TELLURIC"].data["transmission"].astype(float)
    assert (header["GSP_TELL"], header["GSP_TSTD"], header["GSP_TXST"]) == (True, "LTT 7379", 1.03)
    assert header["GSP_TBND"] == "O2 B, H2O 7200, O2 A, H2O 8200" and header["GSP_TMIS"] == "none"
    assert header["GSP_TBOA"] == round(record["exponent"]["O2 A"], 4)
    wavelength = header["CRVAL1"] + (np.arange(corrected.size) + 1 - header["CRPIX1"]) * header["CDELT1"]
    source = truth["files"][SCIENCE]["source"]
    true = FluxSource(source["f_lambda_5500"], source["index"]).continuum(wavelength)
    after, before = band_accuracy(wavelength, corrected, true), band_accuracy(wavelength, corrected * transmission, true)
    assert after["median"] <= 0.02 and after["worst"] <= 0.05, after
    assert before["median"] > 0.15 and before["worst"] > 0.45, before

    sensitivity = next(row for row in result.manifest if row["file"].startswith("sens_"))
    off = steps.calibrate_flux(out / row["parent"], out / sensitivity["file"], tmp_path, original=None, target=1,
                               why="test", correct_telluric=False)
    assert off.record["telluric"] == {"applied": False, "reason": "telluric correction off"}
    with fits.open(off.path) as hdus:
        assert "TELLURIC" not in hdus and hdus[0].header["GSP_TWHY"] == "telluric correction off"
        assert np.allclose(hdus[0].data * transmission, corrected, equal_nan=True, rtol=1e-5)


def test_a_product_of_a_second_version_is_named_and_numbered_once(offline_night, tmp_path):
    """What is made of a v2 spectrum is named from the spectrum's name without its version and numbered on
    its own: flux calibrating ``w…_v2.fits`` beside the v1 spectrum's ``fw….fits`` writes ``fw…_v2.fits``,
    then ``fw…_v3.fits`` (it wrote ``fw…_v2.fits``, then ``fw…_v2_v2.fits``)."""
    import shutil

    from pipeline import steps

    out, result = offline_night
    fluxed = next(row for row in result.manifest if row["data_type"] == 5 and row["original"] == SCIENCE)
    sensitivity = next(row for row in result.manifest if row["file"].startswith("sens_"))
    first = out / fluxed["file"]
    second = tmp_path / fluxed["parent"].replace(".fits", "_v2.fits")  # the spectrum calibrated again
    shutil.copy(out / fluxed["parent"], second)
    shutil.copy(first, tmp_path / first.name)
    made = [steps.calibrate_flux(second, out / sensitivity["file"], tmp_path, original=None, target=1,
                                 why="test").path.name for _ in range(2)]
    assert made == [first.name.replace(".fits", "_v2.fits"), first.name.replace(".fits", "_v3.fits")]
    assert [steps.version_of(name) for name in made] == [2, 3]

def test_a_standard_of_another_night_wakes_the_science_waiting_for_one(app, people, flux_night, redis_db, tmp_path):
    """The closest standard may come from any night (a standard observed the next night serves tonight's
    science): its sensitivity function wakes the science spectra parked for one, whatever their night."""
    from db import db
    from db.models import File, Job

    folder, truth = flux_night
    for key, value in NIGHT_SETTINGS.items():
        setattr(people["proposal"].settings, key, value)
    db.session.commit()
    standards = standard_names(folder, truth)
    ingest_in_order(app, folder, [name for name in sorted(truth["files"]) if name not in standards])
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    assert Job.query.filter_by(kind="calibrate_flux", state="waiting").count() == 2  # the QSO's and NGC 5128's

    next_night = tmp_path / "next-night"  # the standard with the next night's calibrations
    next_night.mkdir()
    for name in sorted(truth["files"]):
        if truth["files"][name]["obstype"] in ("BIAS", "FLAT", "COMP") or name in standards:
            with fits.open(folder / name) as hdus:
                moment = datetime.fromisoformat(hdus[0].header["DATE-OBS"]) + timedelta(days=1)
                hdus[0].header["DATE-OBS"] = moment.isoformat(timespec="milliseconds")
                hdus.writeto(next_night / f"next_{name}")
    ingest_in_order(app, next_night, sorted(path.name for path in next_night.iterdir()))
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()

    science = File.query.filter_by(file_name=SCIENCE).one()
    sensitivity = File.query.filter(File.data_type == 1, File.file_name.startswith("sens_")).one()
    assert (sensitivity.date, science.date) == ("2026-11-28", "2026-11-27")
    assert science.state == "done", science.state_reason
    fluxed = File.query.filter_by(original_file_id=science.id, data_type=5).one()
    assert fluxed.calibrations["standard"]["id"] == sensitivity.id
    assert all(job.state == "done" for job in Job.query.all())
