"""A raw file's processing state: written here and nowhere else (job layer).

The Data page lists raw files; each shows the state of the work on its lineage: running,
queued, waiting (for what), failed (why) or done.  It is derived from the newest job of
each step on the file and its products, so it always ends in done, waiting or failed.  A try
by hand that fails (another lamp, another arc) leaves the frame as its products are: the
failed job is shown where it was asked.
"""
from __future__ import annotations

import sqlalchemy as sa

from db import db
from db.models import File, Job
from pipeline.chain import DataType

# When several steps of one lineage disagree, the one that needs attention soonest is shown.
_PRIORITY = ("running", "queued", "waiting", "failed", "done")


def set_file_state(file: File, state: str, reason: str = "") -> None:
    """The one writer of ``File.state``: ingested, queued, running, waiting, done or failed."""
    file.state, file.state_reason = state, reason


def settle_file_state(file: File | None, *, last_word: bool = False) -> None:
    """Derive the state of the raw file at the root of ``file``'s lineage from its jobs. ``last_word``: a job's
    end, committed right after: the root's row is locked first (PostgreSQL), so that two jobs of one frame
    ending at once in two workers settle it one after the other, the second seeing the first's end (each saw the
    other still running, and the frame stayed "running" with all its jobs done)."""
    if file is None:
        return
    root = file.original or file
    if root.data_type != DataType.RAW:
        return  # a master's state is its own (done); its raw frames are settled by their group's job
    db.session.flush()
    if last_word:
        db.session.execute(sa.select(File.id).where(File.id == root.id).with_for_update(key_share=True))
    lineage = sa.select(File.id).where(sa.or_(File.id == root.id, File.original_file_id == root.id))
    jobs = db.session.scalars(sa.select(Job).where(Job.file_id.in_(lineage)).order_by(Job.id)).all()
    newest: dict[tuple, Job] = {}
    for job in jobs:  # a re-run replaces the earlier outcome, but a failed try by hand spoils no good product
        earlier = newest.get((job.kind, job.file_id))
        if not (job.state == "failed" and job.user_id is not None and earlier is not None and earlier.state == "done"):
            newest[(job.kind, job.file_id)] = job
    if not newest:
        return
    job = min(newest.values(), key=lambda j: (_PRIORITY.index(_shown(j)), -j.id))
    set_file_state(root, _shown(job), _reason(job))


def _shown(job: Job) -> str:
    """A job waiting for what failed for good (a master) shows as failed: waiting would never end."""
    return "failed" if job.state == "waiting" and (job.result or {}).get("failure") else job.state


def _reason(job: Job) -> str:
    if _shown(job) == "failed" and (job.result or {}).get("failure"):
        return job.result["failure"]  # what a failure for good means to the frame, in words (live/tasks.py)
    if job.state == "waiting":
        return job.reason
    if job.state == "failed":
        return f"{job.kind} failed: {job.reason}"
    if job.state in ("queued", "running"):
        return f"{job.kind} {job.state}" + (f" ({job.reason})" if job.reason else "")
    return (job.result or {}).get("note", "")
