"""GET /api/: version, database, queue and worker health, counts."""
from __future__ import annotations

import sqlalchemy as sa
from flask import jsonify

from api import API_VERSION, blueprint
from auth.permissions import visible_files
from db import db
from db.models import File
from db.queries import job_counts
from live.queue import queue_health


@blueprint.get("/")
def status():
    from flask_login import current_user

    try:
        files = db.session.scalar(visible_files(current_user, sa.select(sa.func.count(File.id))))
        jobs = job_counts()
        database = {"ok": True, "backend": db.engine.dialect.name}
    except sa.exc.SQLAlchemyError as error:
        files, jobs, database = None, None, {"ok": False, "error": str(error.__class__.__name__)}
    # The queue's own figures say what Redis holds; "jobs" is the truth (the database), by state.
    return jsonify({"version": API_VERSION, "database": database, "queue": queue_health(),
                    "counts": {"files": files}, "jobs": jobs, "user": current_user.username})
