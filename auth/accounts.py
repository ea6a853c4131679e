"""Creating users and proposals: one code path for the CLI, the pages and the API."""
from __future__ import annotations

import re
import smtplib
from datetime import date, datetime, timezone

import sqlalchemy as sa
from flask import current_app

from auth.mail import send_mail
from auth.passwords import hash_password, problems_for_user
from auth.permissions import can_grant_staff
from auth.tokens import make_set_password_token, new_api_token
from db import db
from db.events import log_event
from db.models import PLACEHOLDER_TITLE, Proposal, ProposalSettings, User
from db.queries import MAX_INTEGER, is_number
from pipeline.cosmics import dcr_available
from pipeline.settings import ReductionSettings
from pipeline.settings import validate as validate_settings

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")
PARTNERS = ("OTHER", "SOAR", "NOIRLab", "Brazil", "UNC", "MSU", "Chile")
SEMESTER_RE = re.compile(r"^\d{4}[AB]$")


class AccountError(ValueError):
    """A request that would leave bad or duplicate data; the message is for people.

    ``status`` is the HTTP status the API answers with (subclasses below refine it).
    """

    status = 400


def find_user(username_or_email: str) -> User | None:
    value = (username_or_email or "").strip()
    return db.session.scalar(sa.select(User).where(
        sa.or_(User.username == value, sa.func.lower(User.email) == value.lower())))


def create_user(*, username: str, email: str, password: str | None = None, first_name: str = "",
                last_name: str = "", partner: str = "OTHER", is_staff: bool = False,
                is_superuser: bool = False) -> User:
    """Create an account (without committing); a missing password means 'set it from the mailed link'."""
    username, email = (username or "").strip(), (email or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise AccountError("Username must be 1-150 letters, digits or . @ + - _ characters.")
    if not EMAIL_RE.match(email):
        raise AccountError(f"'{email}' is not a valid e-mail address.")
    if db.session.scalar(sa.select(User.id).where(User.username == username)):
        raise AccountError(f"A user with username '{username}' already exists.")
    if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == email)):
        raise AccountError(f"A user with e-mail '{email}' already exists.")
    user = User(username=username, email=email, first_name=first_name.strip(), last_name=last_name.strip(),
                partner=partner or "OTHER", is_staff=is_staff or is_superuser, is_superuser=is_superuser)
    if password is not None:
        set_password(user, password)
    db.session.add(user)
    return user


def set_password(user: User, password: str) -> None:
    problems = problems_for_user(password, user)
    if problems:
        raise AccountError(" ".join(problems))
    store_password(user, password)


def store_password(user: User, password: str) -> None:
    """The one writer of a password: stored hashed, and every existing session of the user ends."""
    user.password_hash = hash_password(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    user.session_version = (user.session_version or 1) + 1


def regenerate_token(user: User) -> str:
    """Give the user a new API token; returns the key (shown once, stored hashed)."""
    key, token_hash = new_api_token()
    user.api_token_hash = token_hash
    return key


def create_proposal(*, soar_id: str, pi: User | None, semester: str = "", title: str = "",
                    abstract: str = "", placeholder: bool = False) -> Proposal:
    soar_id = (soar_id or "").strip()
    if not soar_id:
        raise AccountError("A proposal needs a SOAR id.")
    if db.session.scalar(sa.select(Proposal.id).where(Proposal.soar_id == soar_id)):
        raise AccountError(f"A proposal with SOAR id '{soar_id}' already exists.")
    proposal = Proposal(soar_id=soar_id, semester=semester.strip(), title=title.strip(),
                        abstract=abstract.strip(), pi=pi, placeholder=placeholder)
    proposal.settings = ProposalSettings()
    db.session.add(proposal)
    return proposal


def add_collaborator(proposal: Proposal, user: User) -> None:
    if user.id is not None and (proposal.pi_id == user.id or user in proposal.collaborators):
        raise AccountError(f"{user.username} is already a member of {proposal.soar_id}.")
    proposal.collaborators.append(user)


# --- errors with an HTTP meaning --------------------------------------------------------------

class ConflictError(AccountError):
    """The request duplicates something that exists (a member, a SOAR id)."""
    status = 409


class NotAllowedError(AccountError):
    """The actor is known and may see the thing, but may not do this to it."""
    status = 403


class NotFoundError(AccountError):
    """The request names something (a user by id) that does not exist."""
    status = 404


class MailError(AccountError):
    """The mail server refused or could not be reached; nothing was changed."""
    status = 502


class SettingsInvalid(AccountError):
    """Invalid reduction settings; ``problems`` maps each field to its message."""

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        super().__init__("Invalid settings: " + "; ".join(f"{k}: {v}" for k, v in self.problems.items()))


# --- small helpers ------------------------------------------------------------------------------

def normalize_email(email) -> str:
    """Lower-cased, stripped e-mail; AccountError when it is not an address."""
    if not isinstance(email, str):
        raise AccountError("The e-mail address must be text.")
    value = email.strip().lower()
    if not EMAIL_RE.match(value) or len(value) > 254:
        raise AccountError(f"'{email.strip()}' is not a valid e-mail address.")
    return value


def username_from_email(email: str) -> str:
    """A free username made from the e-mail's local part (``user@server.net`` -> ``user``, ``user2``...)."""
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "user"
    candidate, number = base, 1
    while db.session.scalar(sa.select(User.id).where(User.username == candidate)):
        number += 1
        candidate = f"{base}{number}"
    return candidate


def semester_of(day: date | None = None) -> str:
    """SOAR semesters: A = February-July, B = August-January (January belongs to the previous year's B)."""
    day = day or datetime.now(timezone.utc).date()
    if 2 <= day.month <= 7:
        return f"{day.year}A"
    return f"{day.year if day.month >= 8 else day.year - 1}B"


def next_soar_id(semester: str) -> str:
    """The next free ``SOAR<semester>-NNN`` (one more than the highest number in use)."""
    prefix = f"SOAR{semester}-"
    used = db.session.scalars(sa.select(Proposal.soar_id).where(Proposal.soar_id.like(f"{prefix}%"))).all()
    numbers = [int(match.group(1)) for soar_id in used
               if (match := re.fullmatch(re.escape(prefix) + r"(\d+)", soar_id))]
    return f"{prefix}{max(numbers, default=0) + 1:03d}"


def _actor_name(actor) -> str:
    return getattr(actor, "username", None) or "system"


# --- mail (set-password links go through auth.mail.send_mail like everything else) ---------------

def set_password_link(user: User) -> str:
    return current_app.config["PUBLIC_URL"].rstrip("/") + "/set-password/" + make_set_password_token(user)


def _link_lifetime() -> str:
    seconds = int(current_app.config["SET_PASSWORD_MAX_AGE"])
    return f"{seconds // 86400} days" if seconds >= 2 * 86400 else f"{max(1, seconds // 3600)} hours"


def _send(to: str, subject: str, body: str) -> None:
    try:
        send_mail(to, subject, body)
    except (smtplib.SMTPException, OSError) as error:
        raise MailError(f"The e-mail to {to} could not be sent ({error.__class__.__name__}: {error}); "
                        "nothing was changed.") from None


def mail_set_password(user: User, *, reason: str, subject: str) -> None:
    """Send ``user`` a set-password link; ``reason`` is the first paragraph of the message."""
    login = current_app.config["PUBLIC_URL"].rstrip("/") + "/login"
    body = (f"Hello {user.full_name},\n\n{reason}\n\n"
            f"Your username is: {user.username}\n\n"
            f"Set your password with this link (valid for {_link_lifetime()}, usable once):\n"
            f"{set_password_link(user)}\n\n"
            f"Then sign in at {login}\n\n-- GSP Live, Goodman Spectroscopic Pipeline Live\n")
    _send(user.email, subject, body)


# --- reduction settings -------------------------------------------------------------------------

SETTING_NAMES = tuple(ReductionSettings().to_dict())


def update_settings(proposal: Proposal, changes, actor) -> list[dict]:
    """Apply a (partial) settings change with an audit entry per changed field, and commit.

    Raises SettingsInvalid (nothing changed) for unknown fields or invalid values.
    Returns the list of {"field", "old", "new"} actually changed.
    """
    if not isinstance(changes, dict):
        raise SettingsInvalid({"settings": "send an object of setting names and values"})
    problems = {name: "unknown setting" for name in changes if name not in SETTING_NAMES}
    problems.update(validate_settings(changes))
    if changes.get("cosmic_ray_rejection") == "dcr" and not dcr_available():
        problems["cosmic_ray_rejection"] = ("DCR is not installed on this server (goodman-pipeline's C program "
                                            "is not built here); choose default, lacosmic or none.")
    if problems:
        raise SettingsInvalid(problems)
    if proposal.settings is None:
        proposal.settings = ProposalSettings()
        db.session.flush()
    current = proposal.settings.as_settings().to_dict()
    applied = []
    for name in SETTING_NAMES:
        if name not in changes:
            continue
        new = float(changes[name]) if name == "saturation_threshold" else changes[name]
        old = current[name]
        if old == new and type(old) is type(new):
            continue
        setattr(proposal.settings, name, new)
        applied.append({"field": name, "old": old, "new": new})
    _audit_changes("settings_changed", proposal, applied, actor)
    db.session.commit()
    return applied


def _audit_changes(event: str, proposal: Proposal, changes: list[dict], actor, names: dict | None = None) -> None:
    """One log entry per changed field of a proposal: who changed what (``names``: in words) from what to what."""
    for change in changes:
        log_event(event,
                  f"{_actor_name(actor)} changed {(names or {}).get(change['field'], change['field'])} of "
                  f"{proposal.soar_id} from {change['old']!r} to {change['new']!r}.",
                  user=actor, proposal_id=proposal.id, subject=proposal.soar_id, details=change)


# --- collaborators ------------------------------------------------------------------------------

def remove_collaborator(proposal: Proposal, user: User) -> None:
    """Take ``user`` off the proposal (no commit); the PI cannot be removed."""
    if proposal.pi_id is not None and proposal.pi_id == user.id:
        raise ConflictError(f"{user.email} is the PI of {proposal.soar_id} and cannot be removed.")
    if user not in proposal.collaborators:
        raise NotFoundError(f"{user.email} is not a collaborator of {proposal.soar_id}.")
    proposal.collaborators.remove(user)


def add_collaborator_by_email(proposal: Proposal, email, actor) -> tuple[User, bool]:
    """Add the person with ``email``; create the account (and mail a set-password link) when there is none.

    Commits on success; any refusal (bad e-mail, already a member, mail failure)
    rolls back so the database is unchanged.  Returns (user, created).
    """
    try:
        email = normalize_email(email)
        user = find_user(email)
        created = user is None
        if created:
            user = create_user(username=username_from_email(email), email=email)
            db.session.flush()
        elif proposal.pi_id == user.id or user in proposal.collaborators:
            raise ConflictError(f"{email} is already a member of {proposal.soar_id}.")
        add_collaborator(proposal, user)
        log_event("collaborator_added",
                  f"{_actor_name(actor)} added {user.username} <{user.email}> to {proposal.soar_id}"
                  + (" (new account)." if created else "."),
                  user=actor, proposal_id=proposal.id, subject=user.email,
                  details={"field": "collaborators", "old": None, "new": user.email,
                           "username": user.username, "created_user": created})
        db.session.flush()
        if created:
            mail_set_password(
                user, subject=f"GSP Live: you were added to {proposal.soar_id}",
                reason=(f"{getattr(actor, 'full_name', 'The staff')} added you as a collaborator of the "
                        f"observing proposal {proposal.soar_id} ({proposal.title or 'untitled'}) in GSP Live, "
                        "and an account was created for you."))
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return user, created


def remove_collaborator_by_email(proposal: Proposal, email, actor) -> User:
    """Remove the collaborator with ``email`` (commits; refusals leave the database unchanged)."""
    try:
        email = normalize_email(email)
        user = find_user(email)
        if user is None:
            raise NotFoundError(f"{email} is not a collaborator of {proposal.soar_id}.")
        remove_collaborator(proposal, user)
        log_event("collaborator_removed",
                  f"{_actor_name(actor)} removed {user.username} <{user.email}> from {proposal.soar_id}.",
                  user=actor, proposal_id=proposal.id, subject=user.email,
                  details={"field": "collaborators", "old": user.email, "new": None, "username": user.username})
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return user


# --- staff: users and proposals -----------------------------------------------------------------

def invite_user(actor, *, email, username: str = "", first_name: str = "", last_name: str = "",
                partner: str = "OTHER") -> User:
    """Staff create an account without a password and mail the set-password link (commits)."""
    try:
        email = normalize_email(email)
        if partner not in PARTNERS:
            raise AccountError(f"Please select a partner ({', '.join(PARTNERS)}).")
        user = create_user(username=(username or "").strip() or username_from_email(email), email=email,
                           first_name=first_name or "", last_name=last_name or "", partner=partner)
        db.session.flush()
        log_event("user_created", f"{_actor_name(actor)} created the account {user.username} <{user.email}>.",
                  user=actor, subject=user.username,
                  details={"field": "user", "old": None, "new": user.username})
        mail_set_password(user, subject="GSP Live: your new account",
                          reason="An account was created for you in GSP Live, the Goodman Spectroscopic "
                                 "Pipeline Live of the SOAR telescope.")
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return user


MAX_NAME_LENGTH = 150  # the columns' size


def update_profile(user: User, *, first_name, last_name, email, partner) -> list[dict]:
    """A user's own first and last name, e-mail (valid, nobody else's) and partner (one of PARTNERS); commits,
    and a refusal changes nothing. Returns the {"field", "old", "new"} actually changed."""
    try:
        wanted = {"first_name": (first_name or "").strip(), "last_name": (last_name or "").strip(),
                  "email": normalize_email(email), "partner": partner}
        for name in ("first_name", "last_name"):
            if len(wanted[name]) > MAX_NAME_LENGTH:
                raise AccountError(f"Names may be at most {MAX_NAME_LENGTH} characters.")
        if partner not in PARTNERS:
            raise AccountError(f"Please select a partner ({', '.join(PARTNERS)}).")
        if db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == wanted["email"],
                                                      User.id != user.id)):
            raise ConflictError(f"Another account uses {wanted['email']}.")
        applied = [{"field": name, "old": getattr(user, name), "new": value} for name, value in wanted.items()
                   if getattr(user, name) != value]
        for change in applied:
            setattr(user, change["field"], change["new"])
            log_event("profile_changed", f"{user.username} changed their {change['field']} from {change['old']!r} "
                      f"to {change['new']!r}.", user=user, subject=user.username, details=change)
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return applied


def send_password_reset(actor, user: User) -> None:
    mail_set_password(user, subject="GSP Live: set a new password",
                      reason=f"{getattr(actor, 'full_name', 'The staff')} sent you a link to set a new "
                             "password for your GSP Live account.")
    log_event("password_reset_sent", f"{_actor_name(actor)} sent a set-password link to {user.username}.",
              user=actor, subject=user.username)
    db.session.commit()


def set_user_active(actor, user: User, active: bool) -> None:
    """Activate or deactivate an account (commits). Nobody changes their own; only a superuser touches staff."""
    if user.id == actor.id:
        raise NotAllowedError("You cannot deactivate or activate your own account.")
    if user.is_staff and not can_grant_staff(actor):
        raise NotAllowedError("Only a superuser may activate or deactivate staff accounts.")
    if user.is_active_account == bool(active):
        return
    user.is_active_account = bool(active)
    log_event("user_activated" if active else "user_deactivated",
              f"{_actor_name(actor)} {'activated' if active else 'deactivated'} {user.username}.",
              user=actor, subject=user.username,
              details={"field": "is_active", "old": not active, "new": bool(active)})
    db.session.commit()


def set_user_staff(actor, user: User, staff: bool) -> None:
    """Grant or revoke staff (commits): superusers only, and never on themselves."""
    if not can_grant_staff(actor):
        raise NotAllowedError("Only a superuser may make someone staff.")
    if user.id == actor.id:
        raise NotAllowedError("You cannot change your own staff status.")
    if user.is_superuser and not staff:
        raise NotAllowedError(f"{user.username} is a superuser; superusers stay staff.")
    if user.is_staff == bool(staff):
        return
    user.is_staff = bool(staff)
    log_event("staff_granted" if staff else "staff_revoked",
              f"{_actor_name(actor)} {'made' if staff else 'removed'} {user.username} "
              f"{'staff' if staff else 'from staff'}.",
              user=actor, subject=user.username,
              details={"field": "is_staff", "old": not staff, "new": bool(staff)})
    db.session.commit()


# What staff may change, and how the history says it.
PROPOSAL_DETAILS = {"pi": "the PI", "semester": "the semester", "title": "the title"}
MAX_TITLE_LENGTH = 300  # the column's size


def _details_wanted(changes) -> dict:
    """The checked new values of a details change: the PI as a User, the semester upper-cased, the title."""
    if not isinstance(changes, dict) or not changes:
        raise AccountError(f"Send at least one of {', '.join(PROPOSAL_DETAILS)}.")
    unknown = sorted(str(name) for name in changes if name not in PROPOSAL_DETAILS)
    if unknown:
        raise AccountError(f"Unknown field(s): {', '.join(unknown)}; only {', '.join(PROPOSAL_DETAILS)} may be "
                           "changed.")
    wanted = {}
    if "pi" in changes:
        pi_id = changes["pi"]
        valid_id = isinstance(pi_id, int) and not isinstance(pi_id, bool) and 0 < pi_id <= MAX_INTEGER
        wanted["pi"] = db.session.get(User, pi_id) if valid_id else None
        if wanted["pi"] is None:
            refusal = NotFoundError if valid_id else AccountError  # a user id that may exist, or no id at all
            raise refusal(f"No user with id {pi_id!r}: 'pi' must be the id of an existing user.")
    if "semester" in changes:
        semester = changes["semester"].strip().upper() if isinstance(changes["semester"], str) else ""
        if not SEMESTER_RE.match(semester):
            raise AccountError("The semester must look like 2026B (year, then A or B).")
        wanted["semester"] = semester
    if "title" in changes:
        title = changes["title"].strip() if isinstance(changes["title"], str) else ""
        if not title:
            raise AccountError("A proposal needs a title.")
        if len(title) > MAX_TITLE_LENGTH:
            raise AccountError(f"The title may be at most {MAX_TITLE_LENGTH} characters (this one has {len(title)}).")
        wanted["title"] = title
    return wanted


def _set_pi(proposal: Proposal, wanted: dict) -> list[dict]:
    """A new PI (who stops being a collaborator); a placeholder's label title goes with it (``wanted``)."""
    pi = wanted["pi"]
    applied = [{"field": "pi", "old": proposal.pi.username if proposal.pi else None, "new": pi.username}]
    if pi in proposal.collaborators:
        proposal.collaborators.remove(pi)
    if proposal.placeholder and wanted.get("title", proposal.title) == PLACEHOLDER_TITLE:
        wanted["title"] = ""  # the label said "no PI yet"; the title is now the staff's to give
    proposal.pi, proposal.placeholder = pi, False
    return applied


def update_proposal_details(proposal: Proposal, changes, actor) -> list[dict]:
    """Staff set a proposal's PI (a user id), semester and title; commits, and a refusal changes nothing.

    A new PI who was a collaborator stops being one (the PI is a member already); a placeholder proposal
    (first seen in a FITS header) that gets a PI is a proper one, and its label title ("created from a FITS
    header") goes unless a title is given. Each change is audited like the settings.
    Returns the {"field", "old", "new"} actually changed."""
    try:
        wanted = _details_wanted(changes)
        applied = _set_pi(proposal, wanted) if "pi" in wanted and wanted["pi"].id != proposal.pi_id else []
        for name in ("semester", "title"):
            if name in wanted and wanted[name] != getattr(proposal, name):
                applied.append({"field": name, "old": getattr(proposal, name), "new": wanted[name]})
                setattr(proposal, name, wanted[name])
        _audit_changes("proposal_changed", proposal, applied, actor, PROPOSAL_DETAILS)
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return applied


def create_proposal_for(actor, *, soar_id, pi_id, semester, title: str = "", abstract: str = "") -> Proposal:
    """The staff's Add Proposal form: checks the PI and semester, refuses a duplicate SOAR id (commits)."""
    try:
        semester = (semester or "").strip().upper()
        if not SEMESTER_RE.match(semester):
            raise AccountError("The semester must look like 2026B (year, then A or B).")
        soar_id = (soar_id or "").strip()
        if not soar_id:
            raise AccountError("A proposal needs a SOAR id.")
        if not (title or "").strip():
            raise AccountError("A proposal needs a title.")
        pi = db.session.get(User, int(pi_id)) if is_number(pi_id) else None
        if pi is None:
            raise AccountError("Please select the PI.")
        if db.session.scalar(sa.select(Proposal.id).where(Proposal.soar_id == soar_id)):
            raise ConflictError(f"A proposal with SOAR id '{soar_id}' already exists.")
        proposal = create_proposal(soar_id=soar_id, pi=pi, semester=semester, title=title or "",
                                   abstract=abstract or "")
        db.session.flush()
        log_event("proposal_created", f"{_actor_name(actor)} created {soar_id} with PI {pi.username}.",
                  user=actor, proposal_id=proposal.id, subject=soar_id,
                  details={"field": "proposal", "old": None, "new": soar_id})
        db.session.commit()
    except AccountError:
        db.session.rollback()
        raise
    return proposal
