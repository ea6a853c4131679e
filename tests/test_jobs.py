"""The job layer on a real Redis with real ``rq worker`` processes, and the in-process fallback."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import ROOT, auth_header
from tests.test_live_reduction import run_worker, worker_env


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(job_id: int) -> str:
    from db import db
    from db.models import Job

    db.session.expire_all()
    return db.session.get(Job, job_id).state


@pytest.fixture
def app_config():
    return {"REDIS_URL": ""}


def test_in_process_jobs_without_redis(app, people):
    from live.queue import enqueue, queue_health

    assert queue_health() == {"backend": "in-process", "ok": True, "queued": None, "workers": 0}
    job = enqueue("ping", user=people["users"]["pi"])
    wait_for(lambda: job_state(job.id) == "done", 10, "the in-process job")


@pytest.mark.usefixtures("redis_db")
class TestRedis:
    @pytest.fixture
    def app_config(self, redis_db):
        return {"REDIS_URL": redis_db}

    def test_a_killed_worker_leaves_the_job_re_runnable(self, app, people, redis_db, client):
        from db import db
        from db.models import Job, LogEntry
        from live.queue import enqueue, recover_stalled

        worker = subprocess.Popen([str(ROOT / ".venv" / "bin" / "rq"), "worker", "--url", redis_db, "gsp"],
                                  cwd=ROOT, env=worker_env(app, redis_db), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: client.get("/api/", headers=auth_header(people["tokens"]["staff"]))
                     .json["queue"]["workers"] == 1, 30, "the worker to register")
            job = enqueue("ping", params={"seconds": 4})
            wait_for(lambda: job_state(job.id) == "running", 30, "the job to start")
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work horse die mid-job
            worker.wait(10)
        assert job_state(job.id) == "running"
        from redis import Redis
        from rq import Worker

        for stale in Worker.all(connection=Redis.from_url(redis_db)):  # what a heartbeat expiry would do
            stale.register_death()
        assert recover_stalled() == [job.id]
        db.session.expire_all()
        row = db.session.get(Job, job.id)
        assert row.state == "queued" and row.attempts == 1
        assert LogEntry.query.filter_by(event="job_failed").one().message.endswith("; queued again")
        assert run_worker(app, redis_db).returncode == 0
        assert job_state(job.id) == "done"
        assert db.session.get(Job, job.id).attempts == 2

    def test_status_reports_queue_and_workers(self, client, people, redis_db):
        status = client.get("/api/", headers=auth_header(people["tokens"]["pi"])).json
        assert status["queue"] == {"backend": "redis", "ok": True, "queued": 0, "workers": 0}
        assert status["database"]["ok"] is True and status["version"] == "1.0"
