"""Jobs (job layer): the database is the one truth about them; Redis only carries their ids.

- :func:`enqueue` adds a Job row to the caller's transaction, like an outbox: the row exists
  exactly when the change that caused it is committed.  After the commit its id is sent to RQ
  (``rq worker`` runs ``live.worker.run_job``) or, with no Redis, to a thread of this process.
- :func:`dispatch` (every second, in the watcher process) re-sends queued rows whose RQ job is
  missing (Redis was down or restarted empty), gives a run whose worker stopped beating its
  one retry (the only retry policy: RQ's own ``Retry`` is not used), and runs the periodic
  wake-ups the tasks register.
- :func:`execute` claims a row (queued -> running, once per attempt), beats its heartbeat,
  runs the task and commits the task's products, follow-up jobs and end state in one
  transaction, only if the attempt is still the current one.  So a duplicated or retried
  delivery never makes a second product.
"""
from __future__ import annotations

import errno
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa
from flask import current_app, has_app_context
from redis import Redis
from rq import Queue, Worker
from rq.job import Job as RqJob
from sqlalchemy.orm import Session

from db import db
from db.events import log_event
from db.models import Job
from live.states import settle_file_state
from pipeline import timing

log = logging.getLogger(__name__)

TASKS: dict[str, Callable] = {}
ON_FAILURE: dict[str, Callable] = {}  # per task: what a job's failure for good means to the frames
PERIODIC: list[Callable[[], None]] = []
QUEUE_NAME = "gsp"
JOB_TIMEOUT = 900
RETRY_LOST_RUNS = 1  # a run whose worker died is run once more, then the job fails with the reason
# An error of the environment, not of the data (a folder briefly unwritable, a full disk, an NFS hiccup):
# the job runs again after each of the delays JOB_RETRY_DELAYS (config.py), then fails for good.
ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE,
                                errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EROFS, errno.ENFILE, errno.EMFILE})
_OUTBOX = "gsp_outbox"
_AGAIN = "gsp_again_after_commit"
_inline_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsp-job")
_inline_sent: set[tuple[int, int]] = set()
_redis_down = False


class JobRefused(ValueError):
    """The job cannot run as asked (the message says why)."""


@dataclass
class Waiting:
    """What a task returns when its input is not ready: the job is parked with ``reason`` until
    a step provides one of ``needs``; ``ready`` is asked once more after parking (a provider that
    finished while the task looked would not have seen the parked job)."""

    needs: list[str]
    reason: str
    ready: Callable[[], bool] = lambda: False
    result: dict = field(default_factory=dict)


def task(name: str, on_failure: Callable | None = None):
    """Register a task; ``on_failure(job, reason)`` runs in the transaction that records its failure for good."""
    def register(function):
        TASKS[name] = function
        if on_failure is not None:
            ON_FAILURE[name] = on_failure
        return function
    return register


def is_environment_error(error: BaseException) -> bool:
    """True for an OSError of the machine (permissions, space, I/O, NFS), which may pass; an unreadable FITS
    file is an OSError without an errno (astropy), an error of the data."""
    return isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS


def periodic(function):
    """Register a wake-up :func:`dispatch` runs every tick (e.g. a block of frames that ended)."""
    PERIODIC.append(function)
    return function


def init_app(server) -> None:
    """The app's transport (RQ on ``REDIS_URL``, or a thread of this process).  The tasks register
    themselves when ``live.tasks`` is imported, which the app factories do."""
    server.extensions["gsp_queue"] = _make_queue(server.config["REDIS_URL"])
    if not sa.event.contains(Session, "after_commit", _send_outbox):
        sa.event.listen(Session, "after_commit", _send_outbox)
        sa.event.listen(Session, "after_rollback", _drop_outbox)


def _make_queue(redis_url: str):
    if not redis_url:
        return None
    # Short timeouts: with Redis unreachable a request or the dispatcher must not hang.
    connection = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    return Queue(QUEUE_NAME, connection=connection, default_timeout=JOB_TIMEOUT)


def get_queue():
    return current_app.extensions.get("gsp_queue")


def queue_health() -> dict:
    """What /api/ reports about the queue: backend, reachable, queued jobs, live workers."""
    queue = get_queue()
    if queue is None:
        return {"backend": "in-process", "ok": True, "queued": None, "workers": 0}
    try:
        return {"backend": "redis", "ok": True, "queued": queue.count,
                "workers": sum(_alive(worker) for worker in Worker.all(queue=queue))}
    except Exception as error:  # Redis down must not break the status page
        return {"backend": "redis", "ok": False, "error": str(error), "queued": None, "workers": 0}


def _alive(worker: Worker) -> bool:
    """A worker Redis still lists may have been killed: an idle one beats every WORKER_TTL_SECONDS / 2, a busy
    one beats its job's heartbeat in the database (RQ keeps a killed worker's key for minutes)."""
    if worker.get_state() != "busy":
        beat, ttl = worker.last_heartbeat, timedelta(seconds=current_app.config["WORKER_TTL_SECONDS"])
        return beat is not None and _now() - beat.replace(tzinfo=timezone.utc) < ttl
    job_id = (worker.get_current_job_id() or "").split("-")
    if len(job_id) != 3 or not job_id[1].isdigit():
        return True
    beat = db.session.scalar(sa.select(Job.heartbeat_at).where(Job.id == int(job_id[1]), Job.state == "running"))
    stale = timedelta(seconds=float(current_app.config["JOB_STALE_SECONDS"]))
    return beat is not None and _now() - beat.replace(tzinfo=timezone.utc) < stale


# --- the outbox ------------------------------------------------------------------------------------

def enqueue(kind: str, *, file_id: int | None = None, user=None, params: dict | None = None,
            serial_key: str | None = None, waiting: Waiting | None = None) -> Job:
    """Add a job to the current transaction; it is sent once the caller commits.

    With a ``serial_key``, a job of that key and the same parameters not yet running is returned instead
    (queued, it will see whatever the caller added; waiting, the caller decides whether to wake it).
    A job ``waiting`` from the start is parked without a run (a frame that came before its masters,
    in a burst, would be claimed only to park); ``waiting.ready`` is asked once more after :func:`commit`."""
    if kind not in TASKS:
        raise JobRefused(f"Unknown job kind '{kind}'.")
    pending = _pending(serial_key, params) if serial_key is not None else None
    if pending is not None:
        return pending
    job = Job(kind=kind, file_id=file_id, user_id=getattr(user, "id", None), params=params or {},
              serial_key=serial_key, state="queued", attempts=0, lost_runs=0)
    if waiting is not None:
        job.state, job.reason, job.waiting_for = "waiting", waiting.reason, ", ".join(waiting.needs)
    db.session.add(job)
    db.session.flush()
    if waiting is None:
        _add_to_outbox(job)
    else:
        again_after_commit(lambda: waiting.ready() and requeue_if_waiting(job.id))
    settle_file_state(job.file)
    return job


def _pending(serial_key: str, params: dict | None) -> Job | None:
    """The job of ``serial_key`` with these parameters that has not started yet, if any."""
    waiting = db.session.scalars(sa.select(Job).where(Job.serial_key == serial_key,
                                                      Job.state.in_(("queued", "waiting"))).order_by(Job.id))
    return next((job for job in waiting if (job.params or {}) == (params or {})), None)


def commit() -> None:
    """Commit the current transaction, then run what it asked to run after it (:func:`again_after_commit`)
    and commit that too. For requests and the watcher; a job's end is committed by the job layer."""
    again = db.session.info.pop(_AGAIN, [])
    db.session.commit()
    for function in again:
        function()
    if again:
        db.session.commit()


def requeue(job: Job, reason: str = "") -> None:
    """Queue a lost job again; sent when the caller commits (a waiting one: :func:`requeue_if_waiting`)."""
    job.state, job.reason, job.waiting_for = "queued", reason, ""
    _add_to_outbox(job)
    settle_file_state(job.file)


def requeue_if_waiting(job_id: int, reason: str = "") -> None:
    """Queue a job again only if it is still waiting (compare-and-set: another wake-up may have queued it,
    and a worker claimed it, since it was read); sent when the caller commits. The row is read afresh."""
    woken = db.session.execute(sa.update(Job).where(Job.id == job_id, Job.state == "waiting")
                               .values(state="queued", reason=reason, waiting_for="")
                               .execution_options(synchronize_session=False))
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    if woken.rowcount == 1:
        _add_to_outbox(job)
        settle_file_state(job.file)


def strike_need(job: Job, provided: str) -> None:
    """Strike ``provided`` off what a parked job waits for, and queue it when nothing is left.
    Compare-and-set: two masters arriving at once must not each write back the other's struck need."""
    while job.state == "waiting":
        awaited = [need for need in job.waiting_for.split(", ") if need and need != provided]
        if len(awaited) == len(job.waiting_for.split(", ")):
            return  # not waiting for it (any more)
        if not awaited:
            requeue_if_waiting(job.id, f"{provided} arrived")
            return
        struck = db.session.execute(
            sa.update(Job).where(Job.id == job.id, Job.state == "waiting", Job.waiting_for == job.waiting_for)
            .values(waiting_for=", ".join(awaited), reason=f"waiting for {' and '.join(awaited)}")
            .execution_options(synchronize_session=False))
        if struck.rowcount == 1:
            db.session.expire(job, ["waiting_for", "reason"])
            settle_file_state(job.file)
            return
        db.session.refresh(job)


def _add_to_outbox(job: Job) -> None:
    db.session.info.setdefault(_OUTBOX, []).append((job.id, job.attempts))


def _drop_outbox(session) -> None:
    session.info.pop(_OUTBOX, None)
    session.info.pop(_AGAIN, None)


def again_after_commit(function: Callable[[], None]) -> None:
    """Run ``function`` once more after the running job's end is committed, in a transaction of its own.
    A wake-up looks for parked jobs before its own products are visible to others (READ COMMITTED): a job
    parked meanwhile, whose readiness check could not see those products yet, would wait forever."""
    db.session.info.setdefault(_AGAIN, []).append(function)


def _send_outbox(session) -> None:
    """After a commit: hand the committed rows to the transport. A failure here loses nothing:
    the row is queued in the database and the dispatcher sends it later."""
    sent = session.info.pop(_OUTBOX, [])
    if sent and has_app_context():
        for job_id, attempts in sent:
            _send(job_id, attempts)


def _send(job_id: int, attempts: int) -> bool:
    """Hand one attempt to the transport; False when it could not (or, in-process, already has it)."""
    queue = get_queue()
    if queue is None:
        if (job_id, attempts) in _inline_sent:
            return False
        _inline_sent.add((job_id, attempts))
        _inline_pool.submit(_run_inline, current_app._get_current_object(), job_id, attempts)
        return True
    try:
        queue.enqueue("live.worker.run_job", job_id, job_id=f"gsp-{job_id}-{attempts}", result_ttl=3600,
                      failure_ttl=7 * 86400)
        return True
    except Exception as error:  # Redis unreachable: the dispatcher re-sends the row
        if not _redis_down:
            log.warning("could not send job %s to Redis (%s); it stays queued and is sent when Redis is back",
                        job_id, error)
        return False


def _run_inline(app, job_id: int, attempts: int) -> None:
    with app.app_context():
        try:
            execute(job_id)
        except Exception:  # already recorded on the row; keep the pool alive
            log.exception("in-process job %s failed", job_id)
        finally:
            _inline_sent.discard((job_id, attempts))
            db.session.remove()


# --- the dispatcher --------------------------------------------------------------------------------

def dispatch() -> dict:
    """One tick: retry lost runs, (re)send queued rows the transport does not hold, run the wake-ups."""
    lost = recover_lost_runs()
    sent = send_queued()
    for wake_up in PERIODIC:
        wake_up()
    db.session.commit()
    return {"lost": lost, "sent": sent}


def recover_lost_runs() -> list[int]:
    """Running jobs whose worker stopped beating (killed, machine lost): queued again once, then failed."""
    stale = _now() - timedelta(seconds=float(current_app.config["JOB_STALE_SECONDS"]))
    lost = list(db.session.scalars(sa.select(Job).where(Job.state == "running", Job.heartbeat_at < stale)))
    for job in lost:
        stopped = "the worker running it stopped (killed or lost) before it finished"
        if job.lost_runs < RETRY_LOST_RUNS:
            job.lost_runs += 1
            requeue(job)
            log_event("job_retried", f"{job.kind} job {job.id}: {stopped}; queued again", level="WARNING",
                      file_id=job.file_id)
        else:
            job.state, job.finished_at = "failed", _now()
            job.reason = f"{stopped}, {job.lost_runs + 1} times"
            settle_file_state(job.file)
            log_event("job_failed", f"{job.kind} job {job.id} failed: {job.reason}", level="ERROR",
                      file_id=job.file_id)
        db.session.commit()
    return [job.id for job in lost]


def send_queued(limit: int = 1000) -> list[int]:
    """Send every queued row the transport does not hold (never sent, lost with Redis, or finished
    without running because a job of its serial key was running)."""
    rows = db.session.execute(sa.select(Job.id, Job.attempts).where(Job.state == "queued", _due())
                              .order_by(Job.id).limit(limit)).all()
    queue = get_queue()
    if not rows:
        return []
    if queue is None:
        return [job_id for job_id, attempts in rows if _send(job_id, attempts)]
    statuses = _carried(queue, rows)
    if statuses is None:
        return []
    live = ("queued", "started", "deferred", "scheduled")
    return [job_id for (job_id, attempts), status in zip(rows, statuses)
            if status not in live and _send(job_id, attempts)]


def _carried(queue, rows) -> list[str | None] | None:
    """What RQ holds of each (job id, attempt): its status, or None; None for all when Redis is unreachable
    (logged once, and once more when it is back)."""
    global _redis_down
    try:
        carried = RqJob.fetch_many([f"gsp-{job_id}-{attempts}" for job_id, attempts in rows],
                                   connection=queue.connection)
        statuses = [rq_job.get_status(refresh=False) if rq_job is not None else None for rq_job in carried]
    except Exception as error:
        if not _redis_down:
            _redis_down = True
            log_event("queue_unreachable", f"Redis is unreachable ({error}); {len(rows)} queued job(s) wait "
                      "in the database and are sent when it is back.", level="WARNING")
            db.session.commit()
        return None
    if _redis_down:
        _redis_down = False
        log_event("queue_reachable", "Redis is reachable again; queued jobs are being sent.")
        db.session.commit()
    return statuses


# --- running a job ---------------------------------------------------------------------------------

def execute(job_id: int):
    """Run one job if this delivery may claim it, then, in this process, the follow-up job it kept (its
    frame's next step) and so on: a frame's steps skip the trip through the queue. The other follow-ups
    (a frame's second target) go to the queue for idle workers."""
    outcome, kept = _run_one(job_id)
    while kept is not None:
        _, kept = _run_one(kept)
    return outcome


def _run_one(job_id: int) -> tuple[dict, int | None]:
    """Claim and run one job; record its end on the row and the file. Returns its outcome and the id of
    the follow-up job kept for this process to run next (None when there is none)."""
    attempt = _claim(job_id)
    if attempt is None:
        return {"skipped": "not queued, or a job of the same key is running"}, None
    job = db.session.get(Job, job_id)
    settle_file_state(job.file)
    db.session.commit()
    with _Heartbeat(job_id, attempt, float(current_app.config["JOB_STALE_SECONDS"]) / 4), timing.timed() as seconds:
        try:
            outcome = TASKS[job.kind](job)
        except Exception as error:
            db.session.rollback()
            return _failed(job_id, attempt, error), None
    if isinstance(outcome, dict) and seconds:  # the science's stages, for the latency timeline
        outcome = {**outcome, "seconds": {name: round(value, 4) for name, value in seconds.items()}}
    if isinstance(outcome, Waiting):
        if _finish(job_id, attempt, state="waiting", reason=outcome.reason, waiting_for=", ".join(outcome.needs),
                   result=outcome.result) and outcome.ready():
            requeue_if_waiting(job_id)
            db.session.commit()
        return outcome.result, None
    kept, again = _keep_follow_up(), db.session.info.pop(_AGAIN, [])
    if not _finish(job_id, attempt, state="done", result=outcome):
        return outcome, None
    for function in again:
        function()
    db.session.commit()
    return outcome, kept


def _failed(job_id: int, attempt: int, error: Exception) -> dict:
    """Record a task's error: an error of the environment queues the job again after a while (a few
    times), any other fails it for good, and its task says what that means to the frames waiting."""
    reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
    job = db.session.get(Job, job_id)
    retries, delays = attempt - 1 - job.lost_runs, current_app.config["JOB_RETRY_DELAYS"]
    if is_environment_error(error) and retries < len(delays):
        delay = delays[retries]
        if _finish(job_id, attempt, state="queued", reason=f"{reason}; trying again in {delay:.0f} s",
                   not_before=_now() + timedelta(seconds=delay)):
            log_event("job_retrying", f"{job.kind} job {job_id}: {reason}; trying again in {delay:.0f} s",
                      level="WARNING", file_id=job.file_id)
            db.session.commit()
            _send_later(job_id, attempt, delay)
        return {"retrying": reason}
    if _finish(job_id, attempt, state="failed", reason=reason):
        log_event("job_failed", f"{job.kind} job {job_id} failed: {reason}", level="ERROR",
                  file_id=job.file_id, details={"traceback": traceback.format_exc(limit=5)})
        if job.kind in ON_FAILURE:
            ON_FAILURE[job.kind](db.session.get(Job, job_id), reason)
        db.session.commit()
    return {"failed": reason}


def _send_later(job_id: int, attempts: int, delay: float) -> None:
    """In-process, a retry is sent after its delay; with Redis the dispatcher sends it when it is due."""
    if get_queue() is None:
        app = current_app._get_current_object()

        def send() -> None:
            with app.app_context():
                _send(job_id, attempts)

        timer = threading.Timer(delay, send)
        timer.daemon = True
        timer.start()


def _keep_follow_up() -> int | None:
    """Take the first job this run queued (without a serial key) out of the outbox, for this process
    to run next, unless older jobs are queued for a worker: then it queues behind them (with two workers, a
    frame's third target is calibrated before its first target's flux). Should the process die before claiming it, the
    row is queued and unsent, so the dispatcher sends it within a tick."""
    outbox = db.session.info.get(_OUTBOX, [])
    ours = [job_id for job_id, _ in outbox]
    if ours and db.session.scalar(sa.select(Job.id).where(_runnable(), Job.id < max(ours), Job.id.not_in(ours))
                                  .limit(1)) is not None:
        return None
    for index, (job_id, _) in enumerate(outbox):
        if db.session.get(Job, job_id).serial_key is None:
            del outbox[index]
            return job_id
    return None


def _key_free():
    """A job without a serial key, or whose key no running job holds."""
    other = sa.orm.aliased(Job)
    holder = sa.exists().where(other.serial_key == Job.serial_key, other.state == "running")
    return sa.or_(Job.serial_key.is_(None), ~holder)


def _due():
    """A job with no retry delay, or whose delay has passed."""
    return sa.or_(Job.not_before.is_(None), Job.not_before <= _now())


def _runnable():
    """Queued jobs a worker could claim now: due, and not held back by a running job of their serial key."""
    return sa.and_(Job.state == "queued", _due(), _key_free())


def _claim(job_id: int) -> int | None:
    """queued -> running in one statement, for one delivery only; returns the attempt number.
    A job whose serial key is held by a running job stays queued (the dispatcher sends it again)."""
    db.session.rollback()
    key = db.session.scalar(sa.select(Job.serial_key).where(Job.id == job_id))
    if key is not None and db.engine.dialect.name == "postgresql":
        # Two claims of one key at once would both see no running job under READ COMMITTED.
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    now = _now()
    claimed = db.session.execute(
        sa.update(Job).where(Job.id == job_id, Job.state == "queued", _key_free())
        .values(state="running", attempts=Job.attempts + 1, started_at=now, heartbeat_at=now, reason="",
                waiting_for="").execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        db.session.rollback()
        return None
    db.session.commit()
    return db.session.scalar(sa.select(Job.attempts).where(Job.id == job_id))


def _finish(job_id: int, attempt: int, *, state: str, reason: str = "", waiting_for: str = "",
            result=None, not_before: datetime | None = None) -> bool:
    """Commit the task's work with the job's end state, if this attempt still owns the job
    (a run declared lost and retried elsewhere must not commit a second product)."""
    ended = db.session.execute(
        sa.update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.state == "running")
        .values(state=state, reason=reason, waiting_for=waiting_for, finished_at=_now(), not_before=not_before,
                result=result if isinstance(result, dict) else None)
        .execution_options(synchronize_session=False))
    if ended.rowcount != 1:
        db.session.rollback()
        log.warning("job %s attempt %s ended after it was handed to another run; its work is discarded",
                    job_id, attempt)
        return False
    job = db.session.get(Job, job_id)
    db.session.refresh(job)
    settle_file_state(job.file, last_word=True)
    db.session.commit()
    return True


class _Heartbeat:
    """Beats ``heartbeat_at`` from a thread (own connection) while a job runs; the dispatcher takes
    a job whose beats stopped for JOB_STALE_SECONDS as lost."""

    def __init__(self, job_id: int, attempt: int, interval: float):
        self.job_id, self.attempt, self.interval = job_id, attempt, interval
        self.engine = db.engine
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"gsp-heartbeat-{job_id}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(10)

    def _beat(self):
        while not self.stopped.wait(self.interval):
            try:
                with self.engine.begin() as connection:
                    connection.execute(sa.update(Job).where(Job.id == self.job_id, Job.attempts == self.attempt,
                                                            Job.state == "running").values(heartbeat_at=_now()))
            except Exception:  # a missed beat is only a later one; the job goes on
                log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@task("ping")
def ping(job):
    """A job that proves the queue and the workers are alive (optionally busy for a while)."""
    import time

    time.sleep(float((job.params or {}).get("seconds", 0)))
    return {"pong": True}
