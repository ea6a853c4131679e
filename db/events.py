"""The one way to record an important event (shown on the Logs page)."""
from __future__ import annotations

from flask import has_request_context, request

from db import db
from db.models import LogEntry


def log_event(event: str, message: str, *, level: str = "INFO", user=None, proposal_id=None,
              file_id=None, subject: str = "", details: dict | None = None, commit: bool = True) -> LogEntry:
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
    if commit:
        db.session.commit()
    return entry
