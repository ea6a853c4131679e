"""GET /api/: version, database, queue and worker health, counts."""
from __future__ import annotations

import sqlalchemy as sa
from flask import jsonify

from api import API_VERSION, blueprint
from api.schemas import counts_of, json_content
from auth.permissions import visible_files
from db import db
from db.models import File
from db.queries import JOB_STATES, job_counts
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


OPENAPI_PATHS = {
    "/api/": {"get": {
        "summary": "Get API status: version, database, queue and workers, jobs by state, counts.", "tags": ["api"],
        "responses": {"200": json_content({"type": "object", "required": [
            "version", "database", "queue", "counts", "jobs", "user"], "properties": {
            "version": {"type": "string"},
            "database": {"type": "object", "required": ["ok"], "properties": {
                "ok": {"type": "boolean"}, "backend": {"type": "string"}, "error": {"type": "string"}}},
            "queue": {"type": "object", "properties": {
                "backend": {"type": "string"}, "ok": {"type": "boolean"},
                "queued": {"type": "integer", "nullable": True}, "workers": {"type": "integer"},
                "error": {"type": "string"}}},
            "counts": {"type": "object", "properties": {"files": {"type": "integer", "nullable": True}}},
            "jobs": {**counts_of(JOB_STATES), "nullable": True,
                     "description": "Jobs by state (null: the database is down)."},
            "user": {"type": "string"}}}, "The status.")}}},
}
