"""Products belong to the frame they were made for; a failure recovers or says so; a try by hand never
spoils a good frame; a killed worker is not counted (issue 22; versions: tests/test_flux_calibration.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from astropy.io import fits

from tests.conftest import ROOT, auth_header
from tests.test_flux_calibration import NIGHT_SETTINGS, SCIENCE, flux_night  # noqa: F401
from tests.test_live_reduction import ingest_in_order, run_worker, worker_env


@pytest.fixture
def app_config(redis_db):
    return {"REDIS_URL": redis_db}


def use_settings(proposal, **values):
    from db import db

    for key, value in {**NIGHT_SETTINGS, **values}.items():
        setattr(proposal.settings, key, value)
    db.session.commit()


def arcs_of(truth: dict) -> list[str]:
    return [name for name in sorted(truth["files"]) if truth["files"][name]["obstype"] == "COMP"]


# --- a product belongs to its frame ----------------------------------------------------------------

def test_an_arc_of_another_proposal_makes_products_of_the_science_frames_proposal(
        app, client, people, flux_night, redis_db, tmp_path):  # noqa: F811
    """Proposal B's science calibrated with proposal A's arc: the arc extracted along B's traces (and its
    calibrated copy) are B's, named for B's frame; B's PI may read every file its spectrum's provenance
    names (A's arc included); A's members do not see B's products."""
    from db import db
    from db.models import File
    from pipeline.steps import stem

    folder, truth = flux_night
    use_settings(people["proposal"], ignore_bias=True, ignore_flats=True, flux_calibration=False)
    use_settings(people["other_proposal"], ignore_bias=True, ignore_flats=True)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in arcs_of(truth):  # the arcs are proposal A's (the stranger's)
        with fits.open(folder / name) as hdus:
            hdus[0].header["PROPOSAL"] = people["other_proposal"].soar_id
            hdus.writeto(theirs / name)
    ingest_in_order(app, theirs, arcs_of(truth))
    ingest_in_order(app, folder, [SCIENCE])
    assert run_worker(app, redis_db).returncode == 0

    science = File.query.filter_by(file_name=SCIENCE).one()
    assert science.state == "done", science.state_reason
    calibrated = File.query.filter_by(original_file_id=science.id, data_type=4, target=1).one()
    arc_products = File.query.filter(File.file_name.contains(f"_for_{stem(SCIENCE)}_target_")).all()
    assert sorted(row.data_type for row in arc_products) == [3, 4]  # the arc extracted and calibrated
    assert {row.proposal_id for row in arc_products} == {people["proposal"].id}
    arc_1d = next(row for row in arc_products if row.data_type == 3 and row.target == 1)
    named = {calibrated.calibrations["arc"]["id"], arc_1d.parent_file_id, arc_1d.original_file_id,
             calibrated.parent_file_id, calibrated.original_file_id}
    assert db.session.get(File, calibrated.calibrations["arc"]["id"]).proposal_id == people["other_proposal"].id
    pi, stranger = auth_header(people["tokens"]["pi"]), auth_header(people["tokens"]["stranger"])
    for file_id in named:
        assert client.get(f"/api/files/{file_id}/", headers=pi).status_code == 200, file_id
        assert client.get(f"/api/files/header/?id={file_id}", headers=pi).status_code == 200, file_id
    for row in arc_products:
        assert client.get(f"/api/files/{row.id}/", headers=stranger).status_code == 404
    listed = client.get("/api/files/", query_string={"data_type": 2}, headers=pi).json["results"]
    reduced = File.query.filter_by(original_file_id=science.id, data_type=2).one()
    assert [row["file_name"] for row in listed] == [reduced.file_name]  # A's arc is readable, not listed


# --- a try by hand ------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_failed_try_by_hand_leaves_a_good_frame_done(app, people):
    """The frame's state comes from its products: a step that succeeded and then failed when asked again by
    hand (another lamp) leaves the frame done; the failed job is shown where it was asked."""
    from db import db
    from db.models import File, Job
    from live.states import settle_file_state

    raw = File(file_name="0100_x.fits", directory_name="/r", full_path="/r/0100_x.fits", data_type=0,
               obstype="SPECTRUM", proposal=people["proposal"])
    extracted = File(file_name="ecfzst_0100_x_target_1.fits", directory_name="/p", full_path="/p/e.fits",
                     data_type=3, obstype="SPECTRUM", parent=raw, original=raw, proposal=people["proposal"])
    db.session.add_all([raw, extracted])
    db.session.flush()
    db.session.add(Job(kind="calibrate_wavelength", file_id=extracted.id, state="done", params={}))
    db.session.add(Job(kind="calibrate_wavelength", file_id=extracted.id, state="failed", params={"lamp": "x"},
                       reason="too few lines", user_id=people["users"]["pi"].id))
    db.session.flush()
    settle_file_state(extracted)
    assert (raw.state, raw.state_reason) == ("done", "")
    # a failure of the chain itself (no one asked) is the frame's state
    db.session.add(Job(kind="calibrate_wavelength", file_id=extracted.id, state="failed", reason="arc unreadable"))
    db.session.flush()
    settle_file_state(extracted)
    assert (raw.state, raw.state_reason) == ("failed", "calibrate_wavelength failed: arc unreadable")


@pytest.mark.both_databases
def test_the_same_step_asked_twice_at_once_runs_once_at_a_time(app, people):
    """Two identical actions a few ms apart are one job; a different try of the same step on the same file
    waits while the first runs (both would take the same free product name)."""
    import sqlalchemy as sa

    from db import db
    from db.models import File, Job
    from live import queue
    from live.tasks import enqueue_step

    extracted = File(file_name="e.fits", directory_name="/p", full_path="/p/e.fits", data_type=3,
                     obstype="SPECTRUM", proposal=people["proposal"])
    db.session.add(extracted)
    db.session.commit()
    pi = people["users"]["pi"]
    first = enqueue_step("calibrate_wavelength", extracted, user=pi, params={"arc_id": None, "lamp": None})
    again = enqueue_step("calibrate_wavelength", extracted, user=pi, params={"arc_id": None, "lamp": None})
    assert again.id == first.id
    db.session.execute(sa.update(Job).where(Job.id == first.id).values(state="running"))  # a worker has it
    db.session.commit()
    other = enqueue_step("calibrate_wavelength", extracted, user=pi, params={"arc_id": None, "lamp": "HgArNe"})
    db.session.commit()
    assert other.id != first.id
    assert queue.execute(other.id) == {"skipped": "not queued, or a job of the same key is running"}
    assert db.session.get(Job, other.id).state == "queued"


# --- errors of the environment ------------------------------------------------------------------------

@contextmanager
def unwritable(folder: Path):
    """Nothing may be created in ``folder``, not even by root (an immutable directory), until the end."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def bias_night(app, people, flux_night):  # noqa: F811
    folder, truth = flux_night
    use_settings(people["proposal"], ignore_flats=True)
    bias = [name for name in sorted(truth["files"]) if truth["files"][name]["obstype"] == "BIAS"]
    return folder, bias, arcs_of(truth)


def jobs_of(kind: str):
    from db import db
    from db.models import Job

    db.session.expire_all()
    return Job.query.filter_by(kind=kind).order_by(Job.id).all()


def wait_until(predicate, what: str, timeout: float = 60):
    """Poll ``predicate``, running the dispatcher's tick between looks as the watcher process would (it
    re-sends due retries and wakes masters waiting for their night's files)."""
    from db import db
    from live import queue

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        queue.dispatch()
        time.sleep(0.2)
        db.session.expire_all()


def run_in_process(app):
    """Wait until the in-process runner has nothing queued or running."""
    from db.models import Job

    wait_until(lambda: not Job.query.filter(Job.state.in_(("queued", "running"))).count(), "the jobs to end")


class TestEnvironmentErrors:
    @pytest.fixture
    def app_config(self):
        return {"REDIS_URL": "", "JOB_RETRY_DELAYS": (0.5, 1.0, 2.0)}

    def test_a_master_whose_folder_is_briefly_unwritable_is_built_on_a_retry(self, app, people, bias_night):
        from db.models import File, LogEntry
        from live.folders import processed_root

        folder, bias, arcs = bias_night
        with unwritable(processed_root() / "2026-11-27"):
            ingest_in_order(app, folder, bias)
            wait_until(lambda: LogEntry.query.filter_by(event="job_retrying").count() >= 1, "a retry")
        masters = File.query.filter(File.data_type == 1, File.file_name.startswith("master_bias_"))
        wait_until(lambda: masters.count() == 1, "the master bias")
        run_in_process(app)
        assert masters.count() == 1 and not [job for job in jobs_of("calibrations") if job.state == "failed"]
        retries = [entry.message for entry in LogEntry.query.filter_by(event="job_retrying")]
        assert 1 <= len(retries) <= 2 and all("PermissionError" in text and "trying again in" in text
                                              for text in retries), retries
        assert not LogEntry.query.filter_by(event="job_failed").count()

    def test_a_master_that_fails_for_good_says_so_and_so_do_the_frames_waiting_for_it(
            self, app, client, people, bias_night):
        from db.models import File
        from live.folders import processed_root

        folder, bias, arcs = bias_night
        headers = auth_header(people["tokens"]["pi"])
        with unwritable(processed_root() / "2026-11-27"):
            ingest_in_order(app, folder, [*bias, arcs[0]])
            wait_until(lambda: any(job.state == "failed" for job in jobs_of("calibrations")),
                       "three retries, then failed for good")
            run_in_process(app)
            job = next(job for job in jobs_of("calibrations") if job.state == "failed")
            assert job.reason.startswith("PermissionError") and "Operation not permitted" in job.reason
            for name in [*bias, arcs[0]]:
                row = client.get("/api/files/", query_string={"search": name}, headers=headers).json["results"][0]
                assert row["state"] == "failed", (name, row["state"], row["state_reason"])
                assert row["state_reason"].startswith("the master bias Red_2x2_27-11-2026 failed: PermissionError")
                assert row["state_reason"].endswith("; re-run it")
            night = client.get("/api/nights/2026-11-27/", headers=headers).json
            assert night["files"]["failed"] == len(bias) + 1 and night["files"].get("waiting", 0) == 0
        response = client.post("/api/files/calibrations/", json={"id": job.file_id}, headers=headers)  # re-run it
        assert response.status_code == 202
        run_in_process(app)
        arc = File.query.filter_by(file_name=arcs[0]).one()
        assert arc.state == "done", arc.state_reason  # woken by the master it waited for


# --- a killed worker --------------------------------------------------------------------------------------

class TestWorkers:
    @pytest.fixture
    def app_config(self, redis_db):
        return {"REDIS_URL": redis_db, "WORKER_TTL_SECONDS": 4}

    def test_a_killed_worker_is_not_counted(self, app, client, people, redis_db):
        env = {**worker_env(app, redis_db), "GSP_WORKER_TTL_SECONDS": "4"}
        worker = subprocess.Popen([sys.executable, "-m", "live.worker", "--url", redis_db, "gsp"], cwd=ROOT, env=env,
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        headers = auth_header(people["tokens"]["staff"])
        try:
            deadline = time.monotonic() + 30
            while client.get("/api/", headers=headers).json["queue"]["workers"] != 1:
                assert time.monotonic() < deadline, "the worker never registered"
                time.sleep(0.2)
            time.sleep(3)
            assert client.get("/api/", headers=headers).json["queue"]["workers"] == 1  # idle, beating
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        killed = time.monotonic()
        while client.get("/api/", headers=headers).json["queue"]["workers"] != 0:
            assert time.monotonic() - killed < 6, "a killed worker is still counted"
            time.sleep(0.2)
