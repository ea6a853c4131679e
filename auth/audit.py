"""Reading the event log: what each user may see, filtered and paginated.

The Logs page, the proposal detail view (its change history) and ``GET /api/logs/``
share these queries, so visibility is decided in one place:
staff see every entry; other users see the entries of their proposals and of the
files they may see (auth.permissions decides both).  Entries about nobody's
proposal (logins, account changes) are staff-only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from auth.permissions import visible_log_entries
from db import db
from db.models import LogEntry, Proposal, User
from db.queries import QueryError, is_number, parse_integer
from db.serialize import iso_time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The events a proposal's history shows (who changed what, from what to what).
PROPOSAL_EVENTS = ("proposal_created", "proposal_changed", "settings_changed", "collaborator_added",
                   "collaborator_removed")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class LogQueryError(ValueError):
    """A filter or page parameter that cannot be understood; the message says which."""


@dataclass
class LogPage:
    rows: list[tuple[LogEntry, str | None, str | None]]  # (entry, proposal soar id, username)
    count: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.count


def _whole(name: str, value, default: int, minimum: int = 1) -> int:
    if value in (None, ""):
        return default
    try:
        return parse_integer(name, value, minimum=minimum)
    except QueryError as error:
        raise LogQueryError(str(error)) from None


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def list_log_entries(user, *, level=None, proposal=None, text=None, page=None, page_size=None) -> LogPage:
    """One page of the entries ``user`` may read, newest first.

    ``level``: one of LEVELS (exact); ``proposal``: a proposal id or SOAR id;
    ``text``: matched literally (case-insensitive) in message, event and subject.
    """
    page = _whole("page", page, 1)
    page_size = _whole("page_size", page_size, DEFAULT_PAGE_SIZE)
    if page_size > MAX_PAGE_SIZE:
        raise LogQueryError(f"'page_size' may be at most {MAX_PAGE_SIZE}.")
    query = visible_log_entries(user, sa.select(LogEntry.id))
    if level not in (None, ""):
        level = str(level).upper()
        if level not in LEVELS:
            raise LogQueryError(f"'level' must be one of {', '.join(LEVELS)}.")
        query = query.where(LogEntry.level == level)
    if proposal not in (None, ""):
        value = str(proposal).strip()
        if is_number(value):
            query = query.where(LogEntry.proposal_id == _whole("proposal", value, 0))
        else:
            soar = sa.select(Proposal.id).where(Proposal.soar_id == value).scalar_subquery()
            query = query.where(LogEntry.proposal_id == soar)
    if text not in (None, "") and str(text).strip():
        pattern = _like(str(text).strip().lower())
        query = query.where(sa.or_(*(sa.func.lower(column).like(pattern, escape="\\")
                                     for column in (LogEntry.message, LogEntry.event, LogEntry.subject))))
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    ids = db.session.scalars(query.order_by(LogEntry.created.desc(), LogEntry.id.desc())
                             .limit(page_size).offset((page - 1) * page_size)).all()
    return LogPage(rows=_rows(ids), count=count, page=page, page_size=page_size)


def _rows(ids) -> list[tuple[LogEntry, str | None, str | None]]:
    if not ids:
        return []
    query = (sa.select(LogEntry, Proposal.soar_id, User.username)
             .outerjoin(Proposal, Proposal.id == LogEntry.proposal_id)
             .outerjoin(User, User.id == LogEntry.user_id)
             .where(LogEntry.id.in_(list(ids)))
             .order_by(LogEntry.created.desc(), LogEntry.id.desc()))
    return [tuple(row) for row in db.session.execute(query).all()]


def proposal_history(proposal_id: int, limit: int = 200) -> list[tuple[LogEntry, str | None, str | None]]:
    """The audit trail of one proposal (the caller has checked the reader may see the proposal)."""
    ids = db.session.scalars(
        sa.select(LogEntry.id)
        .where(LogEntry.proposal_id == proposal_id, LogEntry.event.in_(PROPOSAL_EVENTS))
        .order_by(LogEntry.created.desc(), LogEntry.id.desc()).limit(limit)).all()
    return _rows(ids)


def log_entry_to_dict(entry: LogEntry, soar_id: str | None = None, username: str | None = None) -> dict:
    return {
        "id": entry.id,
        "created": iso_time(entry.created),
        "level": entry.level,
        "event": entry.event,
        "message": entry.message,
        "user": username,
        "proposal_id": soar_id,
        "file_id": entry.file_id,
        "subject": entry.subject,
        "details": entry.details or {},
    }
