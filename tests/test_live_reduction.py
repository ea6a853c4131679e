"""Live reduction: ingestion enqueues the chain on a real Redis, a real ``rq worker`` runs it.

A small generated night (one configuration) arrives out of order: science and
arcs first, calibrations last.  The science frames must wait for their masters,
then be reduced, extracted and wavelength calibrated, with lineage, calibrations
used, stage timestamps and log entries recorded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import ROOT, SECRET, auth_header

NIGHT_SETTINGS = {"min_bias": 3, "min_flats": 3, "flux_calibration": False}  # no standard star tonight


@pytest.fixture(scope="module")
def small_night(tmp_path_factory):
    from pipeline.simulate import simulate_night

    folder = tmp_path_factory.mktemp("night")
    truth = simulate_night(folder, seed=3, configurations=("400_M2",), n_bias=3, n_flats=3, n_science=2)
    return folder, json.loads(truth.read_text())


@pytest.fixture
def app_config(redis_db):
    return {"REDIS_URL": redis_db}


def worker_env(app, redis_url: str) -> dict:
    """What a worker process needs to open the same catalogue and data as the test's app."""
    config = app.config
    return {**os.environ, "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "GSP_DATA_DIR": config["DATA_DIR"],
            "GSP_INSTANCE_DIR": config["INSTANCE_DIR"], "SECRET_KEY": SECRET, "REDIS_URL": redis_url}


def run_worker(app, redis_url: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """A real ``rq worker`` process in burst mode (runs until the queue is empty, chained jobs included)."""
    rq = Path(sys.executable).with_name("rq")
    return subprocess.run([str(rq), "worker", "-w", "live.worker.GspWorker", "--burst", "--url", redis_url,
                           "gsp"], cwd=ROOT, env=worker_env(app, redis_url), capture_output=True, text=True,
                          timeout=timeout)


def ingest_in_order(app, folder: Path, names: list[str]):
    from live.catalogue import ingest

    raw = Path(app.config["DATA_DIR"]) / "raw" / "20261127"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        (raw / name).write_bytes((folder / name).read_bytes())
        ingest(raw / name)


def test_live_chain_with_a_real_worker(app, people, small_night, redis_db, client):
    from db import db
    from db.models import File, Job, LogEntry

    folder, truth = small_night
    proposal = people["proposal"]
    for key, value in NIGHT_SETTINGS.items():
        setattr(proposal.settings, key, value)
    db.session.commit()
    names = sorted(truth["files"])
    kinds = {name: truth["files"][name]["obstype"] for name in names}
    science_first = sorted(names, key=lambda n: kinds[n] in ("BIAS", "FLAT"))
    ingest_in_order(app, folder, [n for n in science_first if kinds[n] not in ("BIAS", "FLAT")])

    first = run_worker(app, redis_db)
    assert first.returncode == 0, first.stderr[-3000:]
    db.session.expire_all()
    science = File.query.filter_by(data_type=0, obstype="SPECTRUM").all()
    assert len(science) == 2
    for raw in science:  # no masters yet: waiting, with the reason, nothing dropped
        assert raw.state == "waiting" and raw.state_reason == "waiting for master bias and master flat"

    ingest_in_order(app, folder, [n for n in science_first if kinds[n] in ("BIAS", "FLAT")])
    second = run_worker(app, redis_db)
    assert second.returncode == 0, second.stderr[-3000:]
    db.session.expire_all()

    masters = File.query.filter_by(data_type=1).order_by(File.id).all()
    assert [m.file_name.split("_Red")[0] for m in masters] == ["master_bias", "master_flat", "norm_master_flat"]
    assert all(m.state == "done" for m in masters)
    for raw in science:
        db.session.refresh(raw)
        assert raw.state == "done", raw.state_reason
        assert raw.reduced_at and raw.extracted_at and raw.calibrated_at
        assert raw.ingested_at <= raw.reduced_at <= raw.extracted_at <= raw.calibrated_at
        products = File.query.filter_by(original_file_id=raw.id).order_by(File.data_type, File.target).all()
        by_type = {}
        for product in products:
            by_type.setdefault(product.data_type, []).append(product)
        targets = len(truth["files"][raw.file_name]["targets"])
        assert len(by_type[2]) == 1 and len(by_type[3]) == targets and len(by_type[4]) == targets
        reduced = by_type[2][0]
        assert reduced.file_name.startswith("cfzst_") and reduced.parent_file_id == raw.id
        assert reduced.calibrations["bias"]["file"].startswith("master_bias_")
        assert reduced.calibrations["flat"]["file"].startswith("norm_master_flat_")
        for calibrated in by_type[4]:
            assert calibrated.parent.data_type == 3 and calibrated.parent.parent_file_id == reduced.id
            arc = calibrated.calibrations["arc"]
            assert "same configuration" in arc["why"]
            header = fits.getheader(calibrated.full_path)
            assert header["CTYPE1"] == "WAVE" and header["GSP_WRMS"] < 0.1 and header["GSP_WPOI"] >= 30
            assert header["GSP_ORIG"] == raw.file_name
            assert header["GSP_WQUA"] == "good" and calibrated.calibrations["wavelength_quality"]["verdict"] == "good"
    jobs = Job.query.all()
    assert jobs and all(job.state == "done" for job in jobs), [(j.kind, j.state, j.reason) for j in jobs]
    events = {entry.event for entry in LogEntry.query.all()}
    assert {"ingest", "calibration_built", "reduced", "extracted", "wavelength_calibrated"} <= events

    # The same rows through the API, and the lineage for the Data page.
    response = client.get("/api/files/", query_string={"data_type": 4, "page_size": 50},
                          headers=auth_header(people["tokens"]["collab"]))
    assert response.json["count"] == sum(len(truth["files"][r.file_name]["targets"]) for r in science) * 2
    assert all(row["wavelength_quality"]["verdict"] == "good" for row in response.json["results"])


def test_emission_lines_land_on_their_wavelengths(app, people, small_night, redis_db):
    """Calibrated science spectra from the live chain put the generated emission lines where they belong."""
    from db import db
    from db.models import File

    folder, truth = small_night
    for key, value in NIGHT_SETTINGS.items():
        setattr(people["proposal"].settings, key, value)
    db.session.commit()
    ingest_in_order(app, folder, sorted(truth["files"]))
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    offsets = []
    for product in File.query.filter_by(data_type=4, obstype="SPECTRUM").all():
        with fits.open(product.full_path) as hdus:
            flux, header = hdus[0].data.astype(float), hdus[0].header
        wave = header["CRVAL1"] + (np.arange(flux.size) + 1 - header["CRPIX1"]) * header["CDELT1"]
        # Target numbers follow the pipeline's order, not the generator's: take the truth target it matches.
        candidates = [_line_offsets(wave, flux, header["CDELT1"], target["emission_lines"])
                      for target in truth["files"][product.original.file_name]["targets"]]
        offsets += min(candidates, key=np.median)
    assert len(offsets) >= 8
    # In output pixels; tests/science/test_wavelength.py pins the solution itself more tightly.
    assert np.median(offsets) < 0.1 and max(offsets) < 0.5


def _line_offsets(wave, flux, cdelt, lines) -> list[float]:
    """|fitted centre - true wavelength| in output pixels, for the lines away from the edges."""
    offsets = []
    for line in lines:
        if wave[10] < line["wavelength"] < wave[-10]:
            window = np.abs(wave - line["wavelength"]) < 4 * cdelt
            offsets.append(abs(_gaussian_centre(wave[window], flux[window]) - line["wavelength"]) / cdelt)
    return offsets


def _gaussian_centre(wave: np.ndarray, flux: np.ndarray) -> float:
    from scipy.optimize import curve_fit

    def model(x, amplitude, centre, sigma, level):
        return amplitude * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + level

    start = (np.ptp(flux), wave[np.argmax(flux)], 2 * abs(wave[1] - wave[0]), np.min(flux))
    return float(curve_fit(model, wave, flux, p0=start)[0][1])


def test_a_configuration_without_library_lamp_fails_clearly_and_others_go_on(app, people, small_night, redis_db):
    from db import db
    from db.models import File, Job, LogEntry

    folder, truth = small_night
    people["proposal"].settings.ignore_bias = True
    people["proposal"].settings.ignore_flats = True
    people["proposal"].settings.flux_calibration = False
    db.session.commit()
    names = sorted(truth["files"])
    arc_name = next(n for n in names if truth["files"][n]["obstype"] == "COMP")
    science_name = next(n for n in names if truth["files"][n]["obstype"] == "SPECTRUM")
    odd = folder / "odd"
    odd.mkdir(exist_ok=True)
    for name, new_name in ((arc_name, "0901_odd_arc.fits"), (science_name, "0902_odd_science.fits")):
        with fits.open(folder / name) as hdus:
            hdus[0].header["GRATING"] = "999_NOSUCH"
            hdus[0].header["WAVMODE"] = "999_M9"
            hdus.writeto(odd / new_name)
    ingest_in_order(app, odd, ["0901_odd_arc.fits", "0902_odd_science.fits"])
    ingest_in_order(app, folder, [arc_name, science_name])
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()

    odd_science = File.query.filter_by(file_name="0902_odd_science.fits").one()
    assert odd_science.state == "failed"
    assert "no library lamp for grating '999_NOSUCH'" in odd_science.state_reason
    job = Job.query.filter_by(kind="calibrate_wavelength", state="failed").one()
    assert job.attempts == 1 and "no library lamp for grating '999_NOSUCH'" in job.reason  # errors are not retried
    assert job.file.original_file_id == odd_science.id
    logged = LogEntry.query.filter_by(event="job_failed", level="ERROR").all()
    assert any("999_NOSUCH" in entry.message for entry in logged)
    good = File.query.filter_by(file_name=science_name).one()
    assert good.state == "done" and good.calibrated_at is not None
    reduced = File.query.filter_by(parent_file_id=good.id, data_type=2).one()
    assert reduced.file_name.startswith("cst_") and reduced.calibrations["missing"] == []
    assert reduced.calibrations["bias"] is None


def test_manual_triggers_and_job_state(app, people, small_night, client):

    headers = auth_header(people["tokens"]["pi"])
    folder, truth = small_night
    arc_name = next(n for n in sorted(truth["files"]) if truth["files"][n]["obstype"] == "COMP")
    ingest_in_order(app, folder, [arc_name])
    from db.models import File

    arc = File.query.filter_by(file_name=arc_name).one()
    response = client.post("/api/files/reduce/", json={"id": arc.id}, headers=headers)
    assert response.status_code == 202
    job = response.json
    assert job["kind"] == "reduce" and job["state"] == "queued" and job["params"] == {"force": True}
    state = client.get(job["url"], headers=headers)
    assert state.status_code == 200 and state.json["id"] == job["id"]
    assert client.get(job["url"], headers=auth_header(people["tokens"]["stranger"])).status_code == 404
    bad = client.post("/api/files/spectrum/extract/", json={"id": arc.id}, headers=headers)
    assert bad.status_code == 400 and "not a reduced science spectrum" in bad.json["detail"]
    assert client.post("/api/files/calibrations/", json={"id": arc.id}, headers=headers).status_code == 400
    assert client.post("/api/files/reduce/", json={"id": arc.id},
                       headers=auth_header(people["tokens"]["stranger"])).status_code == 404
    assert client.post("/api/files/reduce/", json={"id": "x"}, headers=headers).status_code == 400
