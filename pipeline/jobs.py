"""The job layer: the only bridge between the science blocks and the catalogue.

A job is a row in ``jobs`` plus, when Redis is configured, an RQ job that a
``rq worker`` process runs by dotted name (``pipeline.jobs.run_job``).  With
no Redis the same function runs in a background thread of the web process.
Tasks register themselves with :func:`task`; each takes the Job row.
"""
from __future__ import annotations

import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable

from flask import current_app

log = logging.getLogger(__name__)

TASKS: dict[str, Callable] = {}
QUEUE_NAME = "gsp"
JOB_TIMEOUT = 900
_inline_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsp-job")


class JobRefused(ValueError):
    """The job cannot run as asked (the message says why); nothing was queued."""


def task(name: str):
    def register(function):
        TASKS[name] = function
        return function
    return register


def init_app(server) -> None:
    from pipeline import tasks  # noqa: F401  (the reduction tasks register themselves)

    server.extensions["gsp_queue"] = _make_queue(server.config["REDIS_URL"])


def _make_queue(redis_url: str):
    if not redis_url:
        return None
    from redis import Redis
    from rq import Queue

    return Queue(QUEUE_NAME, connection=Redis.from_url(redis_url), default_timeout=JOB_TIMEOUT)


def get_queue():
    return current_app.extensions.get("gsp_queue")


def queue_health() -> dict:
    """What /api/ reports about the queue: backend, reachable, queued jobs, live workers."""
    queue = get_queue()
    if queue is None:
        return {"backend": "in-process", "ok": True, "queued": None, "workers": 0}
    from rq import Worker

    try:
        return {"backend": "redis", "ok": True, "queued": queue.count,
                "workers": len(Worker.all(queue=queue))}
    except Exception as error:  # Redis down must not break the status page
        return {"backend": "redis", "ok": False, "error": str(error), "queued": None, "workers": 0}


def enqueue(kind: str, *, file_id: int | None = None, user=None, params: dict | None = None):
    """Record a Job row and hand it to RQ (or the in-process pool). Returns the row."""
    from db import db
    from db.models import Job

    if kind not in TASKS:
        raise JobRefused(f"Unknown job kind '{kind}'.")
    job = Job(kind=kind, file_id=file_id, user_id=getattr(user, "id", None), params=params or {})
    db.session.add(job)
    _mark_file(job, "queued", f"{kind} queued")
    db.session.commit()
    queue = get_queue()
    if queue is None:
        app = current_app._get_current_object()
        _inline_pool.submit(_run_inline, app, job.id)
        return job
    _send(queue, job)
    return job


def _send(queue, job) -> None:
    from rq import Retry

    from db import db

    rq_job = queue.enqueue("pipeline.jobs.run_job", job.id, job_id=f"gsp-{job.id}-{job.attempts}",
                           retry=Retry(max=1), failure_ttl=7 * 86400)
    job.rq_id = rq_job.id
    db.session.commit()


def recover_stalled() -> list[int]:
    """Jobs whose worker died (killed, machine lost) are marked failed with the reason and,
    on their first attempt, queued again; returns the ids of the jobs found stalled."""
    queue = get_queue()
    if queue is None:
        return []
    import sqlalchemy as sa
    from rq import Worker
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RqJob

    from db import db
    from db.events import log_event
    from db.models import Job

    live_workers = {worker.name for worker in Worker.all(connection=queue.connection)}
    stalled = []
    for job in db.session.scalars(sa.select(Job).where(Job.state.in_(("queued", "running")), Job.rq_id.isnot(None))):
        try:
            rq_job = RqJob.fetch(job.rq_id, connection=queue.connection)
            status = rq_job.get_status()
            dead = status in ("failed", "stopped", "canceled") or (
                status == "started" and rq_job.worker_name not in live_workers)
        except NoSuchJobError:
            dead = True
        if not dead:
            continue
        stalled.append(job.id)
        job.state, job.finished_at = "failed", _now()
        job.reason = "the worker running this job stopped (killed or lost) before it finished"
        _mark_file(job, "failed", f"{job.kind} failed: {job.reason}")
        retry = job.attempts < 2
        log_event("job_failed", f"{job.kind} job {job.id}: {job.reason}" + ("; queued again" if retry else ""),
                  level="ERROR", file_id=job.file_id, commit=False)
        db.session.commit()
        if retry:
            job.state, job.reason = "queued", ""
            _mark_file(job, "queued", f"{job.kind} queued again after a worker stopped")
            _send(queue, job)
    return stalled


def _run_inline(app, job_id: int) -> None:
    with app.app_context():
        try:
            execute(job_id)
        except Exception:  # already recorded on the row; keep the pool alive
            log.exception("in-process job %s failed", job_id)


_worker_app = None


def worker_app():
    """The app a worker runs jobs in, built once per process."""
    global _worker_app
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app().server
    return _worker_app


def run_job(job_id: int):
    """Entry point for ``rq worker`` (by dotted name)."""
    app = worker_app()
    with app.app_context():
        from db import db

        # A forked work horse must not share the parent's database connections.
        db.engine.dispose(close=False)
        return execute(job_id)


def execute(job_id: int):
    """Run one job, recording start, finish or failure (with its reason) on the row and in the Logs."""
    from db import db
    from db.events import log_event
    from db.models import Job

    job = db.session.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    job.state, job.started_at, job.attempts = "running", _now(), job.attempts + 1
    job.reason = ""
    _mark_file(job, "running", f"{job.kind} running")
    db.session.commit()
    try:
        result = TASKS[job.kind](job)
    except Exception as error:
        db.session.rollback()
        job = db.session.get(Job, job_id)
        job.state, job.finished_at = "failed", _now()
        job.reason = str(error) if isinstance(error, (JobRefused, ValueError)) else f"{type(error).__name__}: {error}"
        _mark_file(job, "failed", f"{job.kind} failed: {job.reason}")
        db.session.commit()
        log_event("job_failed", f"{job.kind} job {job.id} failed: {job.reason}", level="ERROR",
                  file_id=job.file_id, details={"traceback": traceback.format_exc(limit=5)})
        raise
    job.state, job.finished_at, job.result = "done", _now(), result if isinstance(result, dict) else None
    db.session.commit()
    return result


def _mark_file(job, state: str, reason: str) -> None:
    """Show a job's progress on the raw file at the root of its lineage (what the Data page lists)."""
    from db import db
    from db.models import File

    file = db.session.get(File, job.file_id) if job.file_id else None
    if file is not None:
        root = file.original or file
        root.state, root.state_reason = state, reason


def _now() -> datetime:
    return datetime.now(timezone.utc)


@task("ping")
def ping(job):
    """A job that proves the queue and the workers are alive (optionally busy for a while)."""
    import time

    time.sleep(float((job.params or {}).get("seconds", 0)))
    return {"pong": True}
