"""Waiting for the catalogue to change (``GET /api/files/stamp/?after=<stamp>&wait=<s>`` for scripts, ``GET
/data/changes`` for the Data page): a request is answered the moment a file its user may see is added or changed,
instead of asking again and again.

One thread per web process reads the catalogue-wide stamp (``db.queries.global_change_stamp``, two index
lookups) every ``CHECK_S`` while any request waits, and wakes them all when it moves; each then reads its own
user's stamp and goes on waiting if nothing it may see changed.  A waiting request holds no database connection,
so pages left open cost one small query per ``CHECK_S`` and web process, however many they are."""
from __future__ import annotations

import threading
import time

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from auth.queries import change_stamp
from db import db
from db.queries import global_change_stamp

CHECK_S = 0.02
MAX_WAIT_S = 30.0


class GlobalStampWatch:
    """The catalogue-wide stamp, read by one thread while anyone waits for it to move."""

    def __init__(self, app):
        self._app = app
        self._moved = threading.Condition()
        self._stamp: str | None = None
        self._reads_begun = 0  # the reads are numbered: a waiter trusts only those begun after it came
        self._read_number = 0  # the number of the read that gave _stamp
        self._waiters = 0
        self._running = False
        self._closed = False

    def wait_past(self, seen: str, deadline: float) -> bool:
        """Return once the stamp differs from ``seen`` (which the caller read just before), or at ``deadline``
        (``time.monotonic()``); False once the watch is closed."""
        with self._moved:
            if self._closed:
                return False
            self._waiters += 1
            came = self._reads_begun
            if not self._running:
                self._running = True
                threading.Thread(target=self._watch, name="gsp-stamp-watch", daemon=True).start()
            try:
                while (self._read_number <= came or self._stamp == seen) and not self._closed and \
                        (left := deadline - time.monotonic()) > 0:
                    self._moved.wait(left)
            finally:
                self._waiters -= 1
            return not self._closed

    def close(self) -> None:
        """Answer every waiting request now, and any later one at once (the server is stopping)."""
        with self._moved:
            self._closed = True
            self._moved.notify_all()

    def _watch(self) -> None:
        app = self._app
        while True:
            with self._moved:
                if not self._waiters:
                    self._running = False
                    return
                self._reads_begun += 1
                number = self._reads_begun
            with app.app_context():
                try:
                    stamp = global_change_stamp()
                except SQLAlchemyError:  # the database away: the waiters time out, their callers ask again
                    app.logger.warning("change watch: the database did not answer", exc_info=True)
                    stamp = None
                finally:
                    db.session.remove()
            with self._moved:
                if stamp is not None:
                    self._stamp, self._read_number = stamp, number
                    self._moved.notify_all()
            time.sleep(CHECK_S)


def stamp_watch(app=None) -> GlobalStampWatch:
    """This app's watch (each app its own: tests run several apps, on other databases, in one process)."""
    app = app or current_app._get_current_object()
    return app.extensions.get("gsp_stamp_watch") or app.extensions.setdefault("gsp_stamp_watch",
                                                                               GlobalStampWatch(app))


def wait_seconds(value) -> float:
    """A request's ``wait`` parameter (empty: 0) as seconds, or ValueError saying what is wrong."""
    try:
        seconds = float(value or 0)
    except ValueError:
        seconds = None
    if seconds is None or not 0 <= seconds <= MAX_WAIT_S:  # (nan and inf too)
        raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}, not {value!r}.")
    return seconds


def stamp_after(user, after: str | None, wait_s: float) -> str:
    """The user's change stamp (``auth.queries.change_stamp``) once it differs from ``after``, or after
    ``wait_s`` seconds (at most ``MAX_WAIT_S``) the same one; at once without ``after`` or a wait."""
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    while True:
        seen = global_change_stamp()  # read first: a change after it wakes the wait below
        stamp = change_stamp(user)
        if after is None or stamp != after or time.monotonic() >= deadline:
            return stamp
        db.session.rollback()  # no connection (nor, on PostgreSQL, an open transaction) held while waiting
        if not stamp_watch().wait_past(seen, deadline):
            return stamp
