"""API tokens (stored as SHA-256) and signed, expiring, single-use set-password links."""
from __future__ import annotations

import hashlib
import secrets

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SET_PASSWORD_SALT = "gsp-set-password"


def new_api_token() -> tuple[str, str]:
    """Return (key shown once to the user, hash to store)."""
    key = secrets.token_hex(20)
    return key, hash_api_token(key)


def hash_api_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _fingerprint(password_hash: str | None) -> str:
    # The link embeds a digest of the current password hash: once a password is
    # set with it, the digest changes and the link is dead (single use).
    return hashlib.sha256((password_hash or "unset").encode()).hexdigest()[:16]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SET_PASSWORD_SALT)


def make_set_password_token(user) -> str:
    return _serializer().dumps({"uid": user.id, "fp": _fingerprint(user.password_hash)})


class LinkError(ValueError):
    """A set-password link that is tampered with, expired or already used."""


def read_set_password_token(token: str, load_user):
    """Return the user the link is for, or raise LinkError with a message for people."""
    max_age = current_app.config["SET_PASSWORD_MAX_AGE"]
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkError("This link has expired. Ask the staff or your PI for a new one.") from None
    except BadSignature:
        raise LinkError("This link is not valid.") from None
    user = load_user(data.get("uid")) if isinstance(data, dict) else None
    if user is None or data.get("fp") != _fingerprint(user.password_hash):
        raise LinkError("This link has already been used or is no longer valid.")
    return user
