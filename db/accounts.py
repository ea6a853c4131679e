"""Creating users and proposals: one code path for the CLI, the pages and the API."""
from __future__ import annotations

import re

import sqlalchemy as sa

from auth.passwords import hash_password, problems_for_user
from auth.tokens import new_api_token
from db import db
from db.models import Proposal, ProposalSettings, User

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")
PARTNERS = ("OTHER", "SOAR", "NOIRLab", "Brazil", "UNC", "MSU", "Chile")


class AccountError(ValueError):
    """A request that would leave bad or duplicate data; the message is for people."""


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
    user.password_hash = hash_password(password)


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
