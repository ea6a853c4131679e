"""The one way to record an important event (shown on the Logs page).

A log line joins the caller's transaction: it is committed with the change it tells of (or rolled
back with it), never on its own, so logging is never a transaction boundary."""
from __future__ import annotations

from flask import has_request_context, request

from db import db
from db.models import LogEntry


def log_event(event: str, message: str, *, level: str = "INFO", user=None, proposal_id=None,
              file_id=None, subject: str = "", details: dict | None = None) -> LogEntry:
    entry = LogEntry(
        event=event,
        message=message,
        level=level,
        user_id=getattr(user, "id", None),
        proposal_id=proposal_id,
        file_id=file_id,
        subject=subject,
        remote_addr=request.remote_addr or "" if has_request_context() else "",
        details=details,
    )
    db.session.add(entry)
    return entry
