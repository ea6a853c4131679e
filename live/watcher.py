"""The watcher: notices new FITS files under the raw folder and ingests them, and runs the job
dispatcher every second (job layer).

inotify (watchdog) says *something* changed; a file is ingested only once its
size has stopped changing and it is a complete FITS file, or at once when it was
renamed into place or closed after writing and is complete (the instrument's writer
renames a finished file in: the loop wakes on the event).  A periodic rescan
catches whatever was missed (a restart, a burst, a network file system).
Nothing stops the loop: every failure is recorded and the next file goes on.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from db import db
from db.events import log_event
from db.models import File
from live import catalogue, queue
from pipeline import fitsfiles

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    size: int
    mtime: float
    changed_at: float = field(default_factory=time.monotonic)


class _Notify(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher"):
        self.watcher = watcher

    def on_created(self, event):
        self.watcher.notice(event.src_path)

    def on_modified(self, event):
        self.watcher.notice(event.src_path)

    def on_closed(self, event):
        self.watcher.notice(event.src_path, written=True)

    def on_moved(self, event):
        self.watcher.notice(event.dest_path, written=True)


class Watcher:
    def __init__(self, folder: Path, *, settle_seconds: float = 0.05, rescan_seconds: float = 30.0,
                 give_up_seconds: float = 60.0, poll_seconds: float = 0.05, dispatch_seconds: float = 1.0):
        self.folder = Path(folder).resolve()
        self.settle_seconds = settle_seconds
        self.rescan_seconds = rescan_seconds
        self.give_up_seconds = give_up_seconds  # an incomplete file unchanged this long is ingested as failed
        self.poll_seconds = poll_seconds
        self.dispatch_seconds = dispatch_seconds  # how often queued rows are (re)sent and lost runs retried
        self._candidates: set[Path] = set()
        self._written: set[Path] = set()  # renamed into place or closed after writing: no need to settle
        self._lock = threading.Lock()
        self._seen: dict[Path, _Seen] = {}
        self.stop_event = threading.Event()
        self._woken = threading.Event()

    def notice(self, path: str, written: bool = False) -> None:
        """A file changed; ``written``: it was renamed into place or closed after writing (ingested at once
        when complete, without waiting for it to settle)."""
        if fitsfiles.is_fits_name(path):
            with self._lock:
                self._candidates.add(Path(path))
                if written:
                    self._written.add(Path(path))
            self._woken.set()

    def rescan(self) -> None:
        """Queue every FITS file under the folder that the catalogue does not know yet."""
        on_disk = {path.resolve() for path in self.folder.rglob("*") if fitsfiles.is_fits_name(path)}
        known = set()
        paths = [str(path) for path in on_disk]
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            known.update(db.session.scalars(sa.select(File.full_path).where(File.full_path.in_(chunk))))
        with self._lock:
            self._candidates.update(path for path in on_disk if str(path) not in known)

    def run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Notify(self), str(self.folder), recursive=True)
        observer.start()
        log.info("watching %s", self.folder)
        next_rescan = next_dispatch = 0.0
        caught_up = False
        try:
            while not self.stop_event.is_set():
                if time.monotonic() >= next_rescan:
                    self._guard(self.rescan)
                    next_rescan = time.monotonic() + self.rescan_seconds
                if caught_up or time.monotonic() >= next_dispatch:
                    self._guard(queue.dispatch)
                    next_dispatch = time.monotonic() + self.dispatch_seconds
                caught_up = bool(self._guard(self.ingest_ready))
                self._woken.wait(self.poll_seconds)  # a file renamed into place wakes the loop at once
                self._woken.clear()
        finally:
            observer.stop()
            observer.join(5)

    def _guard(self, step):
        try:
            return step()
        except Exception as error:  # the watcher must outlive any one bad file or database hiccup
            db.session.rollback()
            log.exception("watcher step failed")
            try:
                log_event("watcher_error", f"Watcher error: {error}", level="ERROR")
                db.session.commit()
            except Exception:
                db.session.rollback()

    def ingest_ready(self) -> bool:
        """Catalogue the files that stopped changing, oldest first.  True when this caught up with what
        had landed (something catalogued, nothing left): masters waiting for the night's files go now,
        not at the next dispatch tick."""
        with self._lock:
            candidates = sorted(self._candidates)  # oldest first: Goodman numbers its files in order
        ingested = False
        for path in candidates:
            if self._ready(path):
                with self._lock:
                    self._candidates.discard(path)
                    self._written.discard(path)
                self._seen.pop(path, None)
                self._ingest(path)
                ingested = True
        return ingested and not self._candidates

    def _ready(self, path: Path) -> bool:
        """True once the file has stopped changing and is complete (or gave up waiting)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._candidates.discard(path)
                self._written.discard(path)
            return False
        with self._lock:
            written = path in self._written
        if written and fitsfiles.completeness_problem(path) is None:
            return True
        seen = self._seen.get(path)
        if seen is None or (seen.size, seen.mtime) != (stat.st_size, stat.st_mtime):
            self._seen[path] = _Seen(stat.st_size, stat.st_mtime)
            return False
        quiet = time.monotonic() - seen.changed_at
        if quiet < self.settle_seconds:
            return False
        return fitsfiles.completeness_problem(path) is None or quiet >= self.give_up_seconds

    def _ingest(self, path: Path) -> None:
        try:
            file, created = catalogue.ingest(path)
            if created:
                log.info("ingested %s (%s)", file.file_name, file.state)
        except catalogue.IngestError as error:
            log.warning("skipped %s: %s", path, error)
        except Exception as error:
            db.session.rollback()
            log.exception("could not ingest %s", path)
            log_event("ingest_failed", f"Could not ingest {path.name}: {error}", level="ERROR")
            db.session.commit()
