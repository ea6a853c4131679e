"""GET /api/: version, database, queue and worker health, counts."""
from __future__ import annotations

import sqlalchemy as sa
from flask import jsonify

from api import API_VERSION, blueprint
from auth.permissions import visible_files
from db import db
from db.models import File
from live.queue import queue_health


@blueprint.get("/")
def status():
    from flask_login import current_user

    try:
        files = db.session.scalar(visible_files(current_user, sa.select(sa.func.count(File.id))))
        database = {"ok": True, "backend": db.engine.dialect.name}
    except sa.exc.SQLAlchemyError as error:
        files, database = None, {"ok": False, "error": str(error.__class__.__name__)}
    return jsonify({"version": API_VERSION, "database": database, "queue": queue_health(),
                    "counts": {"files": files}, "user": current_user.username})
