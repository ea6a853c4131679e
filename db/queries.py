"""Plain catalogue queries: filters, configuration fields, jobs of files (no permission rules; the
queries the API and the pages share, through the permission layer, are in ``auth/queries.py``)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date as Date
from datetime import timezone

import sqlalchemy as sa

from db import db
from db.models import File, Job, Proposal
from pipeline import chain, headers, matching
from pipeline.chain import DataType
from pipeline.matching import science_config_key

# Exact-match filters: query parameter -> column.
EXACT_FILTERS = {
    "obstype": File.obstype,
    "object": File.object,
    "filter": File.filter,
    "filter_2": File.filter_2,
    "grating": File.grating,
    "wavmode": File.wavmode,
    "slit": File.slit,
    "roi": File.roi,
    "technique": File.technique,
    "date": File.date,
    "state": File.state,
}
INTEGER_FILTERS = {
    "data_type": File.data_type,
    "parent_file_id": File.parent_file_id,
    "original_file_id": File.original_file_id,
}
FILTER_NAMES = (*EXACT_FILTERS, *INTEGER_FILTERS, "proposal_id", "date_from", "date_to", "search",
                "hide_raw_calibrations")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
RAW_CALIBRATION_TYPES = headers.obstypes_of("bias") + headers.obstypes_of("flat")


class QueryError(ValueError):
    """A filter or page parameter that cannot be understood; the message says which."""


@dataclass
class FilePage:
    files: list[File]
    count: int
    page: int
    page_size: int

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.count


MAX_INTEGER = 2**31 - 1  # the largest id or page number the databases' integer columns hold


def is_number(value) -> bool:
    """True for a string of ASCII digits (``str.isdigit`` also accepts '²', which ``int`` refuses)."""
    return bool(re.fullmatch(r"[0-9]+", str(value if value is not None else "")))


def parse_integer(name: str, value, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
    """A whole-number parameter (ids, page numbers, sizes), or QueryError saying what is wrong."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise QueryError(f"'{name}' must be a whole number, not '{value}'.") from None
    if number < minimum:
        raise QueryError(f"'{name}' must be at least {minimum}.")
    if number > maximum:
        raise QueryError(f"'{name}' may be at most {maximum}.")
    return number


def parse_date(name: str, value: str) -> str:
    # Only YYYY-MM-DD: Python's fromisoformat also takes 20261127 and week dates, which the API does not document.
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", str(value)):
            raise ValueError
        return Date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise QueryError(f"'{name}' must be a date like 2026-11-27, not '{value}'.") from None


def _like_escape(text: str) -> str:
    # The user's text is matched literally: % and _ are not wildcards.
    return re.sub(r"([\\%_])", r"\\\1", text)


def apply_filters(query: sa.Select, params: dict) -> sa.Select:
    """Narrow a File query by the API's filter parameters (unknown parameters are ignored)."""
    for name, column in EXACT_FILTERS.items():
        value = params.get(name)
        if value not in (None, ""):
            if name == "date":
                value = parse_date(name, value)
            query = query.where(column == str(value))
    for name, column in INTEGER_FILTERS.items():
        value = params.get(name)
        if value not in (None, ""):
            query = query.where(column == parse_integer(name, value, minimum=0 if name == "data_type" else 1))
    if params.get("date_from"):
        query = query.where(File.date >= parse_date("date_from", params["date_from"]))
    if params.get("date_to"):
        query = query.where(File.date <= parse_date("date_to", params["date_to"]))
    if params.get("proposal_id"):
        proposal = sa.select(Proposal.id).where(Proposal.soar_id == str(params["proposal_id"])).scalar_subquery()
        query = query.where(File.proposal_id == proposal)
    if params.get("search"):
        query = query.where(File.file_name.like(f"%{_like_escape(str(params['search']))}%", escape="\\"))
    if str(params.get("hide_raw_calibrations", "")).lower() in ("1", "true", "yes"):
        query = query.where(sa.not_(sa.and_(File.data_type == DataType.RAW, File.obstype.in_(RAW_CALIBRATION_TYPES))))
    return query


def count_files(filtered_ids: sa.Select) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(filtered_ids.subquery())) or 0


# Filters of the Search page whose choices are the distinct values the user may see.
DISTINCT_FILTERS = ("obstype", "filter", "filter_2", "grating", "wavmode", "slit", "roi", "technique", "date")


def data_type_name(data_type) -> str:
    try:
        return DataType(int(data_type)).label
    except (TypeError, ValueError):
        return str(data_type)


def last_page(count: int, page_size: int) -> int:
    return max(1, -(-int(count) // int(page_size)))


def config_fields(file: File) -> dict:
    """The fields pipeline.matching needs, from the catalogue row: its classify() output first
    (products carry their raw parent's), columns for what it lacks, and the row's own id and name."""
    fields = dict(file.classification or {}) if getattr(file, "classification", None) else {}
    for name in ("instconf", "grating", "wavmode", "slit", "roi", "filter", "filter_2", "obstype",
                 "obsra", "obsdec"):
        fields.setdefault(name, getattr(file, name))
    if "binning" not in fields:
        fields["binning"] = headers.roi_binning(file.roi or "") or ""
    for name in ("cam_targ", "grt_targ"):
        if name not in fields:
            fields[name] = _angle(getattr(file, name))
    fields.setdefault("date_obs", file.date_obs)
    fields.setdefault("date", file.date)
    fields.update(id=file.id, file_name=file.file_name)
    return fields


def _angle(value) -> float | None:
    """A camera or grating angle column (text) as a number; None when empty or unreadable."""
    text = str(value or "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        return None


def kind_of(file: File) -> str:
    """The frame kind the chain goes by (a standard star's products are "standard" too)."""
    return chain.frame_kind(file.obstype, file.technique, file.object, (file.classification or {}).get("standard"))


def same_configuration(a: File, b: File) -> bool:
    """True when an arc ``b`` shares ``a``'s optical configuration (pipeline.matching.science_config_key)."""
    try:
        return science_config_key(config_fields(a)) == science_config_key(config_fields(b))
    except (ValueError, TypeError, KeyError):
        return False


def as_utc(moment):
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def latest_jobs(file_ids) -> dict:
    """The newest Job row of each file id (for the state shown next to files)."""
    ids = [int(i) for i in file_ids]
    if not ids:
        return {}
    newest = (sa.select(sa.func.max(Job.id)).where(Job.file_id.in_(ids)).group_by(Job.file_id))
    return {job.file_id: job for job in db.session.scalars(sa.select(Job).where(Job.id.in_(newest)))}


def sensitivity_functions(file: File) -> list[File]:
    """Sensitivity functions (calibration products of standard stars) of ``file``'s configuration, any night,
    newest first."""
    candidates = db.session.scalars(sa.select(File).where(
        File.data_type == DataType.MASTER, File.obstype.notin_(RAW_CALIBRATION_TYPES),
        File.grating == file.grating, File.wavmode == file.wavmode, File.filter_2 == file.filter_2,
        File.slit == file.slit, File.roi == file.roi).order_by(File.id.desc()))
    return [row for row in candidates if same_configuration(file, row)]


JOB_STATES = ("queued", "running", "waiting", "done", "failed")


def target_work_pending(frame_id: int, target: int | None) -> bool:
    """Whether a job of the raw frame ``frame_id``'s chain that can still change what it shows of ``target`` is
    queued or running: one on the frame or a product of it common to its targets, or on one of that target's
    products (a job queues its follow-ups in the commit that ends it, so a target's spectrum with nothing
    pending is its last)."""
    files = sa.select(File.id).where(sa.or_(File.id == frame_id, File.original_file_id == frame_id),
                                     sa.or_(File.target.is_(None), File.target == target))
    pending = sa.select(Job.id).where(Job.file_id.in_(files), Job.state.in_(("queued", "running"))).limit(1)
    return db.session.scalar(pending) is not None


def job_counts(file_ids: sa.Select | None = None) -> dict[str, int]:
    """How many jobs are in each state (every state, zeros included); with ``file_ids``, only the jobs
    on those files."""
    query = sa.select(Job.state, sa.func.count()).group_by(Job.state)
    if file_ids is not None:
        query = query.where(Job.file_id.in_(file_ids))
    counts = dict(db.session.execute(query).all())
    return {state: counts.get(state, 0) for state in JOB_STATES}


def global_change_stamp() -> str:
    """Changes whenever any file is added or modified; two index lookups, so a page can ask every
    second and call the (per-user, heavier) change_stamp only when this one moved."""
    newest_id = sa.select(sa.func.max(File.id)).scalar_subquery()
    newest_change = sa.select(sa.func.max(File.last_modified)).scalar_subquery()
    row = db.session.execute(sa.select(newest_id, newest_change)).one()
    return f"{row[0] or 0}:{row[1].timestamp() if row[1] else 0}"


# --- one target's exposures -----------------------------------------------------------------------

def exposure_fields(file: File) -> dict:
    """A 1D product's fields for ``pipeline.matching.same_target`` and ``spectra_to_combine``."""
    return {**config_fields(file), "target": file.target, "data_type": file.data_type,
            "original": file.original_file_id or file.id}


def target_spectra(file: File) -> list[File]:
    """The calibrated spectra (wavelength and flux, every version) of the target ``file`` shows, oldest first."""
    fields = exposure_fields(file)
    candidates = db.session.scalars(sa.select(File).where(
        File.data_type.in_((DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED)), File.date == file.date,
        File.proposal_id == file.proposal_id, File.wavmode == file.wavmode, File.target == file.target,
        File.obstype == file.obstype).order_by(File.id))
    return [row for row in candidates if kind_of(row) == "science"
            and matching.same_target(fields, exposure_fields(row))]


def combinations(file: File) -> list[File]:
    """The combined spectra of ``file``'s target whose inputs include ``file`` or another product of its
    exposure (a combined spectrum: its target's), newest first."""
    combined = db.session.scalars(sa.select(File).where(
        File.data_type == DataType.COMBINED, File.date == file.date, File.proposal_id == file.proposal_id,
        File.target == file.target).order_by(File.id.desc()))
    if file.data_type == DataType.COMBINED:
        return [row for row in combined if matching.same_target(exposure_fields(file), exposure_fields(row))]
    exposure = file.original_file_id or file.id
    return [row for row in combined if exposure in (row.calibrations or {}).get("exposures", [])]
