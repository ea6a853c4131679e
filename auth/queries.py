"""The catalogue queries the API and the pages share, always through the permission layer."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from auth.permissions import (
    can_see_server_paths,
    get_visible_file,
    get_visible_proposal,
    member_proposal_ids,
    visible_file_groups,
    visible_files,
    visible_proposals,
)
from db import db
from db.models import Comment, File, Proposal, User, collaborators
from db.queries import (  # noqa: F401  (the plain ones the pages use with these: one module to import)
    DEFAULT_PAGE_SIZE,
    DISTINCT_FILTERS,
    EXACT_FILTERS,
    MAX_INTEGER,
    MAX_PAGE_SIZE,
    FilePage,
    QueryError,
    apply_filters,
    as_utc,
    combinations,
    config_fields,
    count_files,
    data_type_name,
    exposure_fields,
    global_change_stamp,
    is_number,
    kind_of,
    last_page,
    parse_integer,
    same_configuration,
    sensitivity_functions,
    target_spectra,
)
from db.serialize import file_to_dict
from pipeline.chain import ARC_OBSTYPES  # noqa: F401  (the pages' name for arcs)
from pipeline.datatypes import DataType


def list_files(user, params: dict) -> FilePage:
    """One page of the files ``user`` may see, newest first, filtered by ``params``."""
    page = parse_integer("page", params.get("page") or 1, minimum=1)
    page_size = parse_integer("page_size", params.get("page_size") or DEFAULT_PAGE_SIZE, minimum=1)
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
    eager = (joinedload(File.parent), joinedload(File.original), joinedload(File.proposal))
    files = db.session.scalars(sa.select(File).options(*eager).where(File.id.in_(ids))
                               .order_by(File.id.desc())).unique().all() if ids else []
    return FilePage(files=list(files), count=count, page=page, page_size=page_size)


def file_record(user, file: File) -> dict:
    """``file`` as the API shows it to ``user`` (server paths to staff only)."""
    return file_to_dict(file, server_paths=can_see_server_paths(user))


def visible_matching(user, params: dict, query: sa.Select | None = None) -> sa.Select:
    """``query`` (default: file ids) kept to the files ``user`` may see that match ``params``."""
    data_type = params.get("data_type")
    data_type = None if data_type in (None, "") else parse_integer("data_type", data_type)
    query = query if query is not None else sa.select(File.id)
    return apply_filters(visible_files(user, query, data_type=data_type), params)


def change_stamp(user) -> str:
    """Changes whenever a file the user may see is added or modified: cheap enough to poll.

    One max() per visible group (master calibrations, each member proposal), each a single
    index lookup: a max() over an OR of groups would read every visible row."""
    groups = visible_file_groups(user)
    if groups is None:
        return global_change_stamp()
    lookups = [sa.select(sa.func.max(column)).where(group).scalar_subquery()
               for group in groups for column in (File.id, File.last_modified)]
    values = db.session.execute(sa.select(*lookups)).one()
    newest_id = max((value for value in values[0::2] if value is not None), default=0)
    newest_change = max((value for value in values[1::2] if value is not None), default=None)
    return f"{newest_id}:{newest_change.timestamp() if newest_change else 0}"


def lineage(user, file: File) -> list[File]:
    """The raw parent and every product derived from it, oldest first, and the combined spectra of its
    targets that include it (a combined spectrum belongs to its newest exposure and to each it combines)."""
    root_id = file.original_file_id or file.id
    query = visible_files(user).where(sa.or_(File.id == root_id, File.original_file_id == root_id))
    family = list(db.session.scalars(query.order_by(File.data_type, File.target, File.id)))
    root = next((row for row in family if row.id == root_id), None)
    if root is None:
        return family
    combined = visible_files(user).where(File.data_type == DataType.COMBINED, File.date == root.date,
                                         File.proposal_id == root.proposal_id, File.original_file_id != root_id)
    return family + [row for row in db.session.scalars(combined.order_by(File.id))
                     if root_id in (row.calibrations or {}).get("exposures", [])]


def most_calibrated_id(user, frame_id: int, first_target: bool = False) -> int | None:
    """Id of the most calibrated file of the raw frame ``frame_id`` the user may see: flux > wavelength >
    extracted > reduced > raw (a standard's sensitivity function is a calibration, not the frame's spectrum);
    of several, the first target's newest version.  ``first_target``: only the spectra of the frame's first
    target (None before it has one)."""
    query = visible_files(user, sa.select(File.id)).where(
        sa.or_(File.id == frame_id, File.original_file_id == frame_id), File.data_type != DataType.MASTER)
    order = (File.data_type.desc(), File.target, File.id.desc())
    if first_target:
        query, order = query.where(File.target.is_not(None)), (File.target, *order)
    return db.session.scalar(query.order_by(*order).limit(1))


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


def count_visible(user, params: dict) -> int:
    return count_files(visible_matching(user, params))


MAX_ZIP_FILES = 500  # a night of one proposal is about 200 files; a larger archive is a transfer, not a download


def same_target_spectra(user, file: File, limit: int = 30) -> list[File]:
    """Other spectra of the same target and processing level the user may see (other frames, versions,
    targets), newest first: what the Data page offers to draw over a spectrum."""
    if not file.object:
        return []
    levels = [file.data_type]
    if file.data_type == DataType.COMBINED:  # and the single exposures, at the level it combined
        levels += [row.data_type for row in db.session.scalars(sa.select(File).where(
            File.id.in_([used["id"] for used in (file.calibrations or {}).get("inputs", [])])).limit(1))]
    query = visible_files(user, sa.select(File)).where(
        File.object == file.object, File.data_type.in_(levels), File.id != file.id)
    return list(db.session.scalars(query.order_by(File.id.desc()).limit(limit)))


def page_containing(user, params: dict, file_id: int, page_size: int) -> int:
    """The page (newest first, as list_files pages) of the files matching ``params`` that holds ``file_id``."""
    newer = count_files(visible_matching(user, params).where(File.id > file_id))
    return newer // page_size + 1


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
    if user.is_staff:
        query = sa.select(Proposal.soar_id)
    else:
        query = visible_proposals(user, sa.select(Proposal.soar_id))
    return sorted(set(db.session.scalars(query)))


def compatible_arcs(user, file: File, data_types=(DataType.REDUCED,), limit: int = 25) -> list[File]:
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
        moment = as_utc(file.date_obs)
        candidates.sort(key=lambda arc: abs((as_utc(arc.date_obs) - moment).total_seconds())
                        if arc.date_obs is not None else float("inf"))
    return candidates[:limit]


def comments_for(user, file: File) -> list:
    """Comments on a file the user may see, oldest first ([] when the file is not visible)."""
    if get_visible_file(user, file.id) is None:
        return []
    return list(db.session.scalars(sa.select(Comment).where(Comment.file_id == file.id)
                                   .order_by(Comment.created, Comment.id)))


MAX_COMMENT_LENGTH = 4000


def add_comment(user, file: File, text: str):
    """Add a comment (anyone who may see the file may comment). Raises QueryError on bad input."""
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




# --- people and proposals (Management, Proposals and Logs pages) --------------------------------

def like_pattern(text: str) -> str:
    """A case-insensitive LIKE pattern matching ``text`` literally anywhere (use with escape='\\')."""
    return "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _matching(query: sa.Select, text: str | None, columns) -> sa.Select:
    if not text or not text.strip():
        return query
    pattern = like_pattern(text)
    return query.where(sa.or_(*(sa.func.lower(column).like(pattern, escape="\\") for column in columns)))


def search_users(text: str | None, limit: int) -> tuple[list[User], int]:
    """Users whose name, username or e-mail contains ``text`` (first ``limit`` by username), and how many match."""
    query = _matching(sa.select(User), text, (User.username, User.email, User.first_name, User.last_name))
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    return list(db.session.scalars(query.order_by(User.username).limit(limit))), count


def user_by_id(user_id) -> User | None:
    return db.session.get(User, user_id) if isinstance(user_id, int) else None


def active_users() -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.is_active_account.is_(True))
                                   .order_by(User.first_name, User.last_name, User.username)))


def collaborator_counts(proposal_ids) -> dict[int, int]:
    return dict(db.session.execute(
        sa.select(collaborators.c.proposal_id, sa.func.count())
        .where(collaborators.c.proposal_id.in_(list(proposal_ids))).group_by(collaborators.c.proposal_id)).all())


def search_proposals(user, text: str | None, page: int, page_size: int, *, by_people: bool = False
                     ) -> tuple[list[Proposal], int]:
    """One page of the proposals ``user`` may see whose SOAR id or title (and with ``by_people``, PI's
    name) contains ``text``, newest SOAR id first; and how many match."""
    columns = [Proposal.soar_id, Proposal.title]
    query = visible_proposals(user, sa.select(Proposal.id))
    if by_people:
        query = query.outerjoin(User, User.id == Proposal.pi_id)
        columns += [User.username, User.first_name, User.last_name]
    query = _matching(query, text, columns)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    order = (Proposal.soar_id.desc(), Proposal.id.desc())
    ids = db.session.scalars(query.order_by(*order).limit(page_size).offset((page - 1) * page_size)).all()
    if not ids:
        return [], count
    return list(db.session.scalars(sa.select(Proposal).where(Proposal.id.in_(ids)).order_by(*order))), count


def find_visible_proposal(user, ident) -> Proposal | None:
    """By id or SOAR id, through the permission layer: None for missing *and* for not-yours."""
    ident = str(ident or "").strip()
    if is_number(ident):
        return get_visible_proposal(user, int(ident)) if int(ident) <= MAX_INTEGER else None
    if not ident:
        return None
    return db.session.scalar(visible_proposals(user).where(Proposal.soar_id == ident))


def visible_proposal_names(user) -> list[tuple[int, str]]:
    """(id, SOAR id) of the proposals ``user`` may see, by SOAR id."""
    return list(db.session.execute(visible_proposals(user, sa.select(Proposal.id, Proposal.soar_id))
                                   .order_by(Proposal.soar_id)).all())


def member_proposal_list(user) -> tuple[int, ...]:
    """The ids of the proposals ``user`` is a member of, sorted (empty for staff, who see all)."""
    return () if user.is_staff else tuple(sorted(db.session.scalars(member_proposal_ids(user))))
