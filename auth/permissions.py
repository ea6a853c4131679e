"""Who may see and do what: the one permission layer for pages and the API.

Staff see everything.  Other users see the files of proposals they are PI or
collaborator of, plus master calibrations (data_type 1), which everyone sees, and may read
what those files were made from (a product's provenance).
Anything a user may not see is reported as missing (404), never as forbidden.
"""
from __future__ import annotations

import sqlalchemy as sa

from db import db
from db.models import File, Job, LogEntry, Proposal, collaborators
from pipeline.chain import DataType


def member_proposal_ids(user) -> sa.Select:
    """The ids of the proposals ``user`` is PI or collaborator of, as a subquery."""
    as_collaborator = sa.select(collaborators.c.proposal_id).where(collaborators.c.user_id == user.id)
    as_pi = sa.select(Proposal.id).where(Proposal.pi_id == user.id)
    return sa.union(as_collaborator, as_pi)


def visible_files(user, query: sa.Select | None = None, data_type: int | None = None) -> sa.Select:
    """Restrict a File query to what ``user`` may see.

    ``data_type``: the caller keeps only files of this type, so only the rule that can
    match them is needed (SQLite does not drop the other half of the OR by itself, and
    a PI's raw-files index would scan every raw row)."""
    query = query if query is not None else sa.select(File)
    if user.is_staff or data_type == DataType.MASTER:
        return query
    # Literal ids, not a subquery: SQLite then splits the OR across two indexes instead of
    # scanning a million rows (bench/catalogue.py).
    members = File.proposal_id.in_(list(db.session.scalars(member_proposal_ids(user))))
    if data_type is not None:
        return query.where(members)
    return query.where(sa.or_(File.data_type == DataType.MASTER, members))


def visible_file_groups(user) -> list | None:
    """The rule of :func:`visible_files` as one condition per group (master calibrations, each member
    proposal), for lookups that must use one index per group; None: everything (staff)."""
    if user.is_staff:
        return None
    members = db.session.scalars(member_proposal_ids(user))
    return [File.data_type == DataType.MASTER, *(File.proposal_id == proposal for proposal in members)]


def visible_proposals(user, query: sa.Select | None = None) -> sa.Select:
    query = query if query is not None else sa.select(Proposal)
    if user.is_staff:
        return query
    return query.where(Proposal.id.in_(member_proposal_ids(user)))


def visible_log_entries(user, query: sa.Select | None = None) -> sa.Select:
    """Restrict a LogEntry query to what ``user`` may read."""
    query = query if query is not None else sa.select(LogEntry)
    if user.is_staff:
        return query
    return query.where(sa.or_(
        LogEntry.proposal_id.in_(member_proposal_ids(user)),
        LogEntry.file_id.in_(visible_files(user, sa.select(File.id))),
    ))


def get_visible_file(user, file_id) -> File | None:
    """The file, or None when it does not exist *or* the user may not see it.

    Besides the rule of :func:`visible_files`, whoever may see a file may read what it was made from (its
    parent and original, which its provenance names): another proposal's arc that calibrated this
    proposal's science, say.  Indexes and searches list only the files of the rule."""
    found = db.session.scalar(visible_files(user).where(File.id == file_id))
    if found is not None or user.is_staff:
        return found
    made_from_it = visible_files(user, sa.select(File.id)).where(
        sa.or_(File.parent_file_id == file_id, File.original_file_id == file_id)).limit(1)
    return db.session.get(File, file_id) if db.session.scalar(made_from_it) is not None else None


def get_visible_job(user, job_id) -> Job | None:
    """A job the user started, or one on a file they may see (staff: any); None otherwise."""
    job = db.session.get(Job, job_id)
    if job is None or user.is_staff or job.user_id == user.id:
        return job
    return job if job.file_id is not None and get_visible_file(user, job.file_id) is not None else None


def get_visible_proposal(user, proposal_id) -> Proposal | None:
    return db.session.scalar(visible_proposals(user).where(Proposal.id == proposal_id))


def is_member(user, proposal: Proposal) -> bool:
    return proposal.pi_id == user.id or any(c.id == user.id for c in proposal.collaborators)


def can_follow_proposal(user, proposal: Proposal) -> bool:
    """Members and staff may be told of a proposal's events; asked again at every delivery, so a removed
    collaborator (or a deactivated account) hears nothing more."""
    return user.is_active and (user.is_staff or is_member(user, proposal))


def can_manage_proposal(user, proposal: Proposal) -> bool:
    """PI and staff may change settings and collaborators."""
    return user.is_staff or proposal.pi_id == user.id


def can_edit_proposal_details(user) -> bool:
    """A proposal's PI, semester and title come from the observatory: staff set them."""
    return user.is_staff


def can_change_file(user, file: File) -> bool:
    """Trigger reductions or delete products: staff and members of the file's proposal."""
    if user.is_staff:
        return True
    return file.proposal is not None and is_member(user, file.proposal)


def can_see_server_paths(user) -> bool:
    """Where a file lives on the server (its ``full_path`` and ``directory_name``) shows the machine's layout
    to whoever reads it: staff only. Everyone else downloads files through the API."""
    return user.is_staff


def can_add_files(user) -> bool:
    """Ingest or upload raw files: staff (and the instrument's service account, a staff user)."""
    return user.is_staff


def can_manage_users(user) -> bool:
    return user.is_staff


def can_grant_staff(user) -> bool:
    return user.is_superuser
