"""Ingestion: a FITS file on disk becomes one catalogue row (job layer; touches the database).

Both doors (the watcher and ``POST /api/files/``) call :func:`ingest`.  Raw
files are only ever read.  A file that cannot be read or classified still gets
a row, in state ``failed`` with the reason, and an entry in the Logs.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from auth.accounts import create_proposal
from auth.permissions import can_change_file
from db import db
from db.events import log_event
from db.models import PLACEHOLDER_TITLE, File, Proposal
from live import queue, tasks
from live.folders import data_root, processed_root, raw_root
from live.states import set_file_state
from pipeline import headers
from pipeline.chain import DataType
from pipeline.fitsfiles import completeness_problem, is_fits_name, science_header


class IngestError(ValueError):
    """The request cannot be ingested at all (outside the data root, not a file...)."""


def _refuse_outside_raw(path, real: Path, root: Path) -> None:
    if real != root and root not in real.parents:
        raise IngestError(f"'{path}' is outside the data folder.")
    if processed_root() in real.parents:
        raise IngestError(f"'{path}' is under the processed folder: it is a product of the pipeline, not a raw "
                          "frame (products are catalogued as they are made).")


def resolve_inside_root(path: str | Path) -> Path:
    """The real path of ``path`` if it lies inside the data root (symlinks and '..' resolved), else IngestError."""
    root = data_root()
    shown = repr(str(path)[:120])
    if "\x00" in str(path):
        raise IngestError(f"{shown} contains a NUL byte; no file is named so.")
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        real = candidate.resolve()
        is_file = real.is_file()
    except OSError as error:  # a name too long for the file system, a loop of links...
        raise IngestError(f"{shown} is not a usable path: {error.strerror or error}.") from None
    _refuse_outside_raw(path, real, root)
    if not is_file:
        raise IngestError(f"'{path}' is not a file.")
    if len(str(real)) > File.__table__.c.full_path.type.length:
        raise IngestError(f"{shown} is longer than the catalogue keeps "
                          f"({File.__table__.c.full_path.type.length} characters).")
    if not is_fits_name(real):
        raise IngestError(f"'{path}' is not a FITS file name (.fits or .fits.fz).")
    return real


def json_safe(fields: dict) -> dict:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in fields.items()}


def proposal_for(soar_id: str | None) -> Proposal | None:
    """The proposal named in a header; unknown ones become placeholders staff fill in."""
    if not soar_id:
        return None
    proposal = db.session.scalar(sa.select(Proposal).where(Proposal.soar_id == soar_id))
    if proposal is None:
        proposal = create_proposal(soar_id=soar_id, pi=None, title=PLACEHOLDER_TITLE,
                                   placeholder=True)
        db.session.flush()
        log_event("proposal_placeholder", f"Proposal {soar_id} first seen in a FITS header; "
                  "created as a placeholder.", proposal_id=proposal.id)
    return proposal


def _proposal_problem(soar_id: str | None) -> str | None:
    """Why the header's PROPOSAL names no proposal the catalogue can hold, or None. Such a frame is
    catalogued as failed: it belongs to no proposal anyone could be member of, so it is not reduced."""
    longest = Proposal.__table__.c.soar_id.type.length
    if soar_id is None or len(soar_id) <= longest:
        return None
    return (f"header problem: PROPOSAL: {soar_id[:20]!r}... is {len(soar_id)} characters long; a proposal id "
            f"has at most {longest}, so the frame is not reduced.")


def apply_classification(file: File, fields: dict) -> None:
    """Copy classify() output onto the row (the manual's fields are strings). A value longer than its
    column is cut to fit (PostgreSQL refuses it whole); the full value stays in ``classification``
    and in the file's header."""
    text = lambda value: "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)  # noqa: E731
    for name in ("obstype", "technique", "object", "instconf", "grating", "wavmode", "filter", "filter_2",
                 "slit", "roi", "date"):
        setattr(file, name, _fit(name, fields[name] or ""))
    for name in ("cam_targ", "grt_targ", "obsra", "obsdec", "gain", "rdnoise"):
        setattr(file, name, _fit(name, text(fields[name])))
    file.saturation_value = fields["saturation_value"]
    file.exptime = fields["exptime"]
    file.date_obs = fields["date_obs"]
    file.classification = json_safe(fields)


def _fit(column: str, value: str) -> str:
    length = File.__table__.c[column].type.length
    return value[:length] if length and len(value) > length else value


def ingest(path: str | Path, *, user=None) -> tuple[File, bool]:
    """Catalogue one file. Returns (row, created). Idempotent: a known path returns its row.

    Raises IngestError for requests that name no usable file; a FITS file that is
    broken gets a ``failed`` row instead, so nothing the instrument writes is lost.
    """
    real = resolve_inside_root(path)
    existing = db.session.scalar(sa.select(File).where(File.full_path == str(real)))
    if existing is not None:
        return existing, False
    now = datetime.now(timezone.utc)
    file = File(file_name=real.name, directory_name=str(real.parent), full_path=str(real), data_type=DataType.RAW,
                ingested_at=now)
    problem = completeness_problem(real)
    fields = None
    if problem is None:
        try:
            fields = headers.classify(science_header(real), real.name)
        except headers.HeaderError as error:
            problem = f"header problem: {error}"
        except Exception as error:
            problem = f"could not read the header: {error}"
    if problem is None:
        problem = _proposal_problem(fields["proposal_id"])
    if problem is None:
        apply_classification(file, fields)
        file.proposal = proposal_for(fields["proposal_id"])
        set_file_state(file, "ingested")
    else:
        set_file_state(file, "failed", problem)
    db.session.add(file)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:  # the other door ingested it a moment ago
        db.session.rollback()
        return db.session.scalar(sa.select(File).where(File.full_path == str(real))), False
    if problem is None:
        log_event("ingest", f"Ingested {file.file_name} ({file.obstype}, {file.technique}).", user=user,
                  proposal_id=file.proposal_id, file_id=file.id)
        tasks.on_ingested(file)  # the row and its first job are committed together
    else:
        log_event("ingest_failed", f"Could not ingest {file.file_name}: {problem}", level="ERROR", user=user,
                  file_id=file.id)
    queue.commit()
    return file, True


MAX_UPLOAD_NAME_BYTES = 200  # file systems allow 255; room for the "_N" of a name already taken


def store_upload(stream, filename: str) -> Path:
    """Save an uploaded file under raw/uploads/<UT date>/ without ever overwriting."""
    name = Path(filename or "").name
    if not name or not is_fits_name(name):
        raise IngestError("Uploads must be FITS files (.fits or .fits.fz).")
    if "\x00" in name or len(name.encode()) > MAX_UPLOAD_NAME_BYTES:
        raise IngestError(f"Upload names must be at most {MAX_UPLOAD_NAME_BYTES} bytes, without NUL bytes.")
    folder = raw_root() / "uploads" / datetime.now(timezone.utc).strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    compressed = name.lower().endswith(".fits.fz")
    stem, suffix = (name[: -len(".fits.fz")], ".fits.fz") if compressed else os.path.splitext(name)
    target, counter = folder / name, 1
    while True:
        try:
            with open(target, "xb") as handle:  # 'x': fails instead of overwriting
                shutil.copyfileobj(stream, handle, length=1024 * 1024)
            return target
        except FileExistsError:
            target = folder / f"{stem}_{counter}{suffix}"
            counter += 1


class DeleteRefused(ValueError):
    """A delete that may not happen (a raw file, or not the user's); ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def delete_products(user, files: list[File]) -> list[int]:
    """Delete processed files (rows and their files under the processed tree), all or none.

    Raw files are never deleted; only members of the file's proposal and staff may delete.  The files
    go only once the rows' removal is committed: a failed commit leaves rows and files as they were."""
    for file in files:
        if file.data_type == DataType.RAW:
            raise DeleteRefused(f"{file.file_name} is a raw file; raw files are never deleted.", 400)
        if not can_change_file(user, file):
            raise DeleteRefused(f"You may not delete {file.file_name}.", 403)
    root = processed_root()
    paths = [Path(file.full_path) for file in files]
    deleted = [file.id for file in files]
    for file in files:
        log_event("file_deleted", f"{user.username} deleted {file.file_name}.", user=user,
                  proposal_id=file.proposal_id)
        db.session.delete(file)
    db.session.commit()
    for path in paths:
        if root in path.resolve().parents:
            path.unlink(missing_ok=True)
    return deleted
