"""Login, logout, set-password links and password change (plain HTML forms)."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from auth.accounts import end_sessions, store_password
from auth.passwords import RULES, password_matches, problems_for_user
from auth.tokens import LinkError, read_set_password_token
from db import db
from db.events import log_event
from db.models import LogEntry, User

blueprint = Blueprint("auth", __name__, template_folder="templates")


def safe_next(target: str | None) -> str:
    """Only a local path may follow login: no scheme, no host, no '//' or backslash tricks."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def csrf_token() -> str | None:
    """The session's form token, made on first use; None for a token call (it has no session to keep one
    in, and must not open one: Dash draws its layout on an app's first request, whoever makes it)."""
    if g.get("token_user") is not None:
        return None
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf():
    sent = request.form.get("csrf_token", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form expired; reload the page and try again.")


@blueprint.app_context_processor
def inject_csrf():
    return {"csrf_token": csrf_token}


# A username is locked after this many times LOGIN_MAX_ATTEMPTS failures from all addresses together.
ANY_ADDRESS_FACTOR = 4


def locked_out(username: str) -> bool:
    """Too many failed logins for this username inside the window: LOGIN_MAX_ATTEMPTS from this address,
    or ANY_ADDRESS_FACTOR times that from anywhere. Counted per username only: at the telescope many
    people share one address, and one person's typos must never lock out another."""
    window = timedelta(seconds=current_app.config["LOGIN_WINDOW_SECONDS"])
    failures = sa.select(sa.func.count(LogEntry.id)).where(
        LogEntry.event == "login_failed", LogEntry.created >= datetime.now(timezone.utc) - window,
        LogEntry.subject == username)
    limit = current_app.config["LOGIN_MAX_ATTEMPTS"]
    here = db.session.scalar(failures.where(LogEntry.remote_addr == (request.remote_addr or ""))) or 0
    return here >= limit or (db.session.scalar(failures) or 0) >= ANY_ADDRESS_FACTOR * limit


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    error, status = None, 200
    username = ""
    if request.method == "POST":
        check_csrf()
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if locked_out(username):
            error, status = "Too many failed login attempts. Please wait a few minutes and try again.", 429
        else:
            user = db.session.scalar(sa.select(User).where(User.username == username))
            if user and user.is_active and password_matches(user.password_hash, password):
                login_user(user)
                user.last_login = datetime.now(timezone.utc)
                db.session.commit()
                session.pop("csrf", None)
                return redirect(next_url)
            log_event("login_failed", f"Failed login for '{username}'.", level="WARNING", subject=username)
            db.session.commit()
            error, status = "Please enter a correct username and password.", 401
    return render_template("auth/login.html", title="Sign in", error=error, username=username, next=next_url), status


@blueprint.route("/logout", methods=["GET", "POST"])
def logout():
    # Only a POST with the form's token signs out: a link (a GET) or a form on another site must not. A GET
    # (an old bookmark) asks.
    if request.method == "GET":
        return render_template("auth/logout.html", title="Sign out")
    if not g.get("token_user"):  # a token opens no session: nothing to end
        check_csrf()
        end_sessions(current_user)  # a copy of this session cookie must not outlive the logout
        db.session.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.route("/set-password/<token>", methods=["GET", "POST"])
def set_password(token):
    try:
        user = read_set_password_token(token, lambda uid: db.session.get(User, uid))
    except LinkError as error:
        return render_template("auth/message.html", title="Set password", message=str(error)), 400
    problems = []
    if request.method == "POST":
        check_csrf()
        problems = _new_password_problems(user)
        if not problems:
            store_password(user, request.form["new_password1"])
            log_event("password_set", f"{user.username} set a password from a mailed link.", user=user)
            db.session.commit()
            return render_template("auth/message.html", title="Password set",
                                   message="Your password has been set. You may log in now.",
                                   link=url_for("auth.login")), 200
    return render_template("auth/password.html", title=f"Set a password for {user.username}",
                           ask_old=False, problems=problems, rules=RULES), 400 if problems else 200


@blueprint.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    problems = []
    if request.method == "POST":
        check_csrf()
        if not password_matches(current_user.password_hash, request.form.get("old_password", "")):
            problems = ["Your old password was entered incorrectly. Please enter it again."]
        else:
            problems = _new_password_problems(current_user)
        if not problems:
            store_password(current_user, request.form["new_password1"])
            db.session.commit()
            login_user(current_user)  # this browser's session goes on with the new version; others end
            return render_template("auth/message.html", title="Password changed",
                                   message="Your password was changed.", link="/")
    return render_template("auth/password.html", title="Password change", ask_old=True,
                           problems=problems, rules=RULES), 400 if problems else 200


def _new_password_problems(user) -> list[str]:
    new1, new2 = request.form.get("new_password1", ""), request.form.get("new_password2", "")
    if new1 != new2:
        return ["The two password fields didn't match."]
    return problems_for_user(new1, user)
