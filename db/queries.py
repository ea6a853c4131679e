"""Catalogue queries shared by the API and the pages (always through the permission layer)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date as Date

import sqlalchemy as sa

from auth.permissions import visible_files
from db import db
from db.models import File, Proposal

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
RAW_CALIBRATION_TYPES = ("BIAS", "FLAT", "LAMPFLAT")


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


def _integer(name: str, value, minimum: int = 0) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise QueryError(f"'{name}' must be a whole number, not '{value}'.") from None
    if number < minimum:
        raise QueryError(f"'{name}' must be at least {minimum}.")
    return number


def _date(name: str, value: str) -> str:
    try:
        return Date.fromisoformat(str(value).strip()).isoformat()
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
                value = _date(name, value)
            query = query.where(column == str(value))
    for name, column in INTEGER_FILTERS.items():
        value = params.get(name)
        if value not in (None, ""):
            query = query.where(column == _integer(name, value))
    if params.get("date_from"):
        query = query.where(File.date >= _date("date_from", params["date_from"]))
    if params.get("date_to"):
        query = query.where(File.date <= _date("date_to", params["date_to"]))
    if params.get("proposal_id"):
        proposal = sa.select(Proposal.id).where(Proposal.soar_id == str(params["proposal_id"])).scalar_subquery()
        query = query.where(File.proposal_id == proposal)
    if params.get("search"):
        query = query.where(File.file_name.like(f"%{_like_escape(str(params['search']))}%", escape="\\"))
    if str(params.get("hide_raw_calibrations", "")).lower() in ("1", "true", "yes"):
        query = query.where(sa.not_(sa.and_(File.data_type == 0, File.obstype.in_(RAW_CALIBRATION_TYPES))))
    return query


def list_files(user, params: dict) -> FilePage:
    """One page of the files ``user`` may see, newest first, filtered by ``params``."""
    page = _integer("page", params.get("page") or 1, minimum=1)
    page_size = _integer("page_size", params.get("page_size") or DEFAULT_PAGE_SIZE, minimum=1)
    if page_size > MAX_PAGE_SIZE:
        raise QueryError(f"'page_size' may be at most {MAX_PAGE_SIZE}.")
    filtered = visible_matching(user, params)
    count = count_files(filtered)
    offset = (page - 1) * page_size
    if count > 2 * offset + page_size:
        ids = db.session.scalars(filtered.order_by(File.id.desc()).limit(page_size).offset(offset)).all()
    elif offset < count:
        # A page in the older half (the "last" page of the Data page): walk from the oldest end, so an
        # offset costs at most half the matching rows instead of all of them. Same rows, same order.
        size = min(page_size, count - offset)
        ids = db.session.scalars(filtered.order_by(File.id.asc()).limit(size)
                                 .offset(count - offset - size)).all()[::-1]
    else:
        ids = []
    # Parent, original and proposal are serialized with every row: load them in the same query, not 3 per row.
    from sqlalchemy.orm import joinedload

    eager = (joinedload(File.parent), joinedload(File.original), joinedload(File.proposal))
    files = db.session.scalars(sa.select(File).options(*eager).where(File.id.in_(ids))
                               .order_by(File.id.desc())).unique().all() if ids else []
    return FilePage(files=list(files), count=count, page=page, page_size=page_size)


def visible_matching(user, params: dict, query: sa.Select | None = None) -> sa.Select:
    """``query`` (default: file ids) kept to the files ``user`` may see that match ``params``."""
    data_type = params.get("data_type")
    data_type = None if data_type in (None, "") else _integer("data_type", data_type)
    query = query if query is not None else sa.select(File.id)
    return apply_filters(visible_files(user, query, data_type=data_type), params)


def count_files(filtered_ids: sa.Select) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(filtered_ids.subquery())) or 0


def change_stamp(user) -> str:
    """Changes whenever a file the user may see is added or modified: cheap enough to poll.

    One max() per visible group (master calibrations, each member proposal), each a single
    index lookup: a max() over an OR of groups would read every visible row."""
    if user.is_staff:
        return global_change_stamp()
    from auth.permissions import MASTER_CALIBRATION, member_proposal_ids

    groups = [File.data_type == MASTER_CALIBRATION]
    groups += [File.proposal_id == proposal for proposal in db.session.scalars(member_proposal_ids(user))]
    lookups = [sa.select(sa.func.max(column)).where(group).scalar_subquery()
               for group in groups for column in (File.id, File.last_modified)]
    values = db.session.execute(sa.select(*lookups)).one()
    newest_id = max((value for value in values[0::2] if value is not None), default=0)
    newest_change = max((value for value in values[1::2] if value is not None), default=None)
    return f"{newest_id}:{newest_change.timestamp() if newest_change else 0}"


def lineage(user, file: File) -> list[File]:
    """The raw parent and every product derived from it, oldest first."""
    root_id = file.original_file_id or file.id
    query = visible_files(user).where(sa.or_(File.id == root_id, File.original_file_id == root_id))
    return list(db.session.scalars(query.order_by(File.data_type, File.target, File.id)))


# --- Data / Search pages (added; the functions above keep their behaviour) ---------------------

DATA_TYPE_NAMES = {0: "Raw", 1: "Calibration", 2: "Reduced", 3: "Extracted", 4: "Wavelength Calibrated",
                   5: "Flux Calibrated"}
ARC_OBSTYPES = ("COMP", "ARC")
# Filters of the Search page whose choices are the distinct values the user may see.
DISTINCT_FILTERS = ("obstype", "filter", "filter_2", "grating", "wavmode", "slit", "roi", "technique", "date")


def data_type_name(data_type) -> str:
    try:
        return DATA_TYPE_NAMES.get(int(data_type), str(data_type))
    except (TypeError, ValueError):
        return str(data_type)


def page_of_files(user, params: dict, page, page_size: int) -> FilePage:
    """list_files, with ``page`` clamped to 1..last page (so "last" and a too-big page number work)."""
    try:
        page = max(1, int(page or 1))
    except (TypeError, ValueError):
        page = 1
    result = list_files(user, {**params, "page": page, "page_size": page_size})
    last = last_page(result.count, page_size)
    if page > last:
        result = list_files(user, {**params, "page": last, "page_size": page_size})
    return result


def last_page(count: int, page_size: int) -> int:
    return max(1, -(-int(count) // int(page_size)))


def count_visible(user, params: dict) -> int:
    return count_files(visible_matching(user, params))


def newest_visible_id(user, params: dict | None = None) -> int | None:
    """Id of the newest file the user may see (optionally filtered), or None."""
    return db.session.scalar(visible_matching(user, params or {}, sa.select(sa.func.max(File.id))))


def distinct_values(user, names=DISTINCT_FILTERS) -> dict[str, list[str]]:
    """For each filter name, the distinct non-empty values among the files the user may see."""
    values = {}
    for name in names:
        column = EXACT_FILTERS[name]
        query = visible_files(user, sa.select(column).distinct()).where(column != "")
        found = [value for value in db.session.scalars(query) if value]
        values[name] = sorted(found, reverse=(name == "date"))
    return values


def proposal_choices(user) -> list[str]:
    """SOAR ids of the proposals whose files the user may see."""
    from auth.permissions import visible_proposals

    if user.is_staff:
        query = sa.select(Proposal.soar_id)
    else:
        query = visible_proposals(user, sa.select(Proposal.soar_id))
    return sorted(set(db.session.scalars(query)))


def config_fields(file: File) -> dict:
    """The fields pipeline.matching needs, from the catalogue row: its classify() output first
    (products carry their raw parent's), columns for what it lacks, and the row's own id and name."""
    from pipeline import headers

    fields = dict(file.classification or {}) if getattr(file, "classification", None) else {}
    for name in ("instconf", "grating", "wavmode", "slit", "roi", "filter", "filter_2", "obstype",
                 "obsra", "obsdec"):
        fields.setdefault(name, getattr(file, name))
    if "binning" not in fields:
        fields["binning"] = headers.roi_binning(file.roi or "") or ""
    for name in ("cam_targ", "grt_targ"):
        if name not in fields:
            text = str(getattr(file, name) or "").strip()
            try:
                fields[name] = float(text) if text else None
            except ValueError:
                fields[name] = None
    fields.setdefault("date_obs", file.date_obs)
    fields.update(id=file.id, file_name=file.file_name)
    return fields


def same_configuration(a: File, b: File) -> bool:
    """True when an arc ``b`` shares ``a``'s optical configuration (pipeline.matching.science_config_key)."""
    from pipeline.matching import science_config_key

    try:
        return science_config_key(config_fields(a)) == science_config_key(config_fields(b))
    except (ValueError, TypeError, KeyError):
        return False


def compatible_arcs(user, file: File, data_types=(2,), limit: int = 25) -> list[File]:
    """Arcs (COMP/ARC) of the given data types that share ``file``'s configuration, closest in time first."""
    query = visible_files(user).where(
        File.obstype.in_(ARC_OBSTYPES), File.data_type.in_(tuple(data_types)), File.id != file.id,
        File.instconf == file.instconf, File.grating == file.grating, File.wavmode == file.wavmode,
        File.slit == file.slit, File.roi == file.roi, File.filter == file.filter, File.filter_2 == file.filter_2)
    if file.proposal_id is not None:
        # The observer's own arcs first; master data of other proposals are not arcs.
        query = query.where(sa.or_(File.proposal_id == file.proposal_id, File.proposal_id.is_(None)))
    candidates = []
    if file.date:  # the same night first, then any night
        candidates = [arc for arc in db.session.scalars(query.where(File.date == file.date)
                                                        .order_by(File.id.desc()).limit(500))
                      if same_configuration(file, arc)]
    if not candidates:
        candidates = [arc for arc in db.session.scalars(query.order_by(File.id.desc()).limit(500))
                      if same_configuration(file, arc)]
    if file.date_obs is not None:
        moment = _aware(file.date_obs)
        candidates.sort(key=lambda arc: abs((_aware(arc.date_obs) - moment).total_seconds())
                        if arc.date_obs is not None else float("inf"))
    return candidates[:limit]


def _aware(moment):
    from datetime import timezone

    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def comments_for(user, file: File) -> list:
    """Comments on a file the user may see, oldest first ([] when the file is not visible)."""
    from auth.permissions import get_visible_file
    from db.models import Comment

    if get_visible_file(user, file.id) is None:
        return []
    return list(db.session.scalars(sa.select(Comment).where(Comment.file_id == file.id)
                                   .order_by(Comment.created, Comment.id)))


MAX_COMMENT_LENGTH = 4000


def add_comment(user, file: File, text: str):
    """Add a comment (anyone who may see the file may comment). Raises QueryError on bad input."""
    from auth.permissions import get_visible_file
    from db.models import Comment

    text = (text or "").strip()
    if not text:
        raise QueryError("Write something first.")
    if len(text) > MAX_COMMENT_LENGTH:
        raise QueryError(f"Comments may be at most {MAX_COMMENT_LENGTH} characters.")
    if get_visible_file(user, file.id) is None:
        raise QueryError("No such file.")
    comment = Comment(file_id=file.id, user_id=user.id, text=text)
    db.session.add(comment)
    db.session.commit()
    return comment


def latest_jobs(file_ids) -> dict:
    """The newest Job row of each file id (for the state shown next to files)."""
    from db.models import Job

    ids = [int(i) for i in file_ids]
    if not ids:
        return {}
    newest = (sa.select(sa.func.max(Job.id)).where(Job.file_id.in_(ids)).group_by(Job.file_id))
    return {job.file_id: job for job in db.session.scalars(sa.select(Job).where(Job.id.in_(newest)))}


def global_change_stamp() -> str:
    """Changes whenever any file is added or modified; two index lookups, so a page can ask every
    second and call the (per-user, heavier) change_stamp only when this one moved."""
    newest_id = sa.select(sa.func.max(File.id)).scalar_subquery()
    newest_change = sa.select(sa.func.max(File.last_modified)).scalar_subquery()
    row = db.session.execute(sa.select(newest_id, newest_change)).one()
    return f"{row[0] or 0}:{row[1].timestamp() if row[1] else 0}"
