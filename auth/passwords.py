"""Password rules (the manual's four messages) and hashing."""
from __future__ import annotations

from difflib import SequenceMatcher
from functools import lru_cache

from flask import current_app, has_app_context
from werkzeug.security import check_password_hash, generate_password_hash

TOO_SIMILAR = "Your password can't be too similar to your other personal information."
TOO_SHORT = "Your password must contain at least 8 characters."
TOO_COMMON = "Your password can't be a commonly used password."
ENTIRELY_NUMERIC = "Your password can't be entirely numeric."
RULES = (TOO_SIMILAR, TOO_SHORT, TOO_COMMON, ENTIRELY_NUMERIC)

MIN_LENGTH = 8
MAX_SIMILARITY = 0.7


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """30,000 most common passwords, shipped inside the zxcvbn package (no download)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _too_similar(password: str, attributes: list[str]) -> bool:
    lowered = password.lower()
    for value in filter(None, (a.lower() for a in attributes)):
        # Compare with the whole value and with its parts (e-mail local part, words).
        parts = {value, *value.replace("@", " ").replace(".", " ").replace("_", " ").split()}
        for part in filter(lambda p: len(p) >= 3, parts):
            if part in lowered or SequenceMatcher(a=lowered, b=part).ratio() >= MAX_SIMILARITY:
                return True
    return False


def password_problems(password: str, *, username: str = "", first_name: str = "",
                      last_name: str = "", email: str = "") -> list[str]:
    """Every rule the password breaks, as the manual words it (empty list: acceptable)."""
    problems = []
    if _too_similar(password, [username, first_name, last_name, email]):
        problems.append(TOO_SIMILAR)
    if len(password) < MIN_LENGTH:
        problems.append(TOO_SHORT)
    if password.lower().strip() in common_passwords():
        problems.append(TOO_COMMON)
    if password.isdigit():
        problems.append(ENTIRELY_NUMERIC)
    return problems


def problems_for_user(password: str, user) -> list[str]:
    return password_problems(password, username=user.username, first_name=user.first_name,
                             last_name=user.last_name, email=user.email)


def hash_password(password: str) -> str:
    """werkzeug's default (scrypt), or the app's PASSWORD_HASH_METHOD: the tests set a cheap one (scrypt
    costs ~0.13 s an account, and the test suite makes thousands)."""
    method = current_app.config.get("PASSWORD_HASH_METHOD") if has_app_context() else None
    return generate_password_hash(password, method=method) if method else generate_password_hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Checks against a stand-in hash when there is none (unknown user, no password set), so a failed
    login takes as long whether or not the username exists."""
    if not password_hash:
        check_password_hash(_stand_in_hash(), password)
        return False
    return check_password_hash(password_hash, password)


@lru_cache(maxsize=1)
def _stand_in_hash() -> str:
    return generate_password_hash("no user has this password")  # the production method, whatever the app's
