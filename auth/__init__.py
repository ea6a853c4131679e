"""Accounts and security: login, tokens, the login guard, the permission layer."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, request, url_for
from flask_login import LoginManager, current_user

from auth.tokens import hash_api_token

login_manager = LoginManager()

# Endpoints anyone may reach.  Matched exactly (a path-prefix check would let
# "/loginx" through); assets are CSS and fonts only.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "auth.set_password"})
# Routes a script or Dash's front end calls: they get 401 JSON, never an HTML redirect.
JSON_PREFIXES = ("/api/", "/_dash-", "/_reload-hash", "/data/changes")
DOCS_PREFIX = "/api/docs"


def init_app(app):
    from auth.views import blueprint

    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    app.register_blueprint(blueprint)
    app.before_request(require_login)
    app.after_request(security_headers)


@login_manager.user_loader
def load_user(user_id: str):
    from db import db
    from db.models import User

    # A request that names a token is that token's user, whatever session cookie the browser sends along
    # (Swagger UI's "Authorize" in a signed-in browser): the caller chose the token.
    if g.get("token_user") is not None:
        return g.token_user
    user_id, _, version = str(user_id).partition(":")
    try:
        user = db.session.get(User, int(user_id))
    except (TypeError, ValueError, OverflowError):
        return None
    # A session of an older version (before a logout or a password change) is no session.
    return user if user is not None and str(user.session_version) == version else None


@login_manager.request_loader
def load_token_user(_request):
    # Set by require_login after checking the token: token calls open no session.
    return g.get("token_user")


class TokenError(Exception):
    pass


def user_from_token(header: str):
    """``Authorization: Token <key>`` -> active user, or raise TokenError with a reason."""
    import sqlalchemy as sa

    from db import db
    from db.models import User

    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme != "Token" or not key or " " in key:
        raise TokenError("Malformed Authorization header; expected 'Token <key>'.")
    user = db.session.scalar(sa.select(User).where(User.api_token_hash == hash_api_token(key)))
    if user is None or not user.is_active:
        raise TokenError("Invalid token.")
    return user


def unauthorized_json(message: str):
    response = jsonify({"detail": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = "Token"
    return response


def require_login():
    """Before every request: a session or a valid token, else 401 JSON or a redirect to login."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.path.startswith("/assets/"):
        return None
    header = request.headers.get("Authorization")
    if header:
        try:
            g.token_user = user_from_token(header)
        except TokenError as error:
            return unauthorized_json(str(error))
        return None
    if current_user.is_authenticated:
        return cross_site_refusal()
    is_page = request.path.startswith(DOCS_PREFIX)  # Swagger UI is a page, though under /api/
    if not is_page and (request.path.startswith(JSON_PREFIXES) or request.path.startswith("/_dash-component-suites")):
        return unauthorized_json("Authentication credentials were not provided.")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site_refusal():
    """A browser session's writes to the API must be JSON from this site: a form on another site can
    send neither (JSON needs a CORS preflight this app never grants). Token scripts are unaffected."""
    if not request.path.startswith("/api/") or request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    same_site = origin is None or urlsplit(origin)[:2] == urlsplit(request.host_url)[:2]
    if request.is_json and same_site:
        return None
    response = jsonify({"detail": "Cross-site or non-JSON write with a session cookie refused: send JSON from "
                                  "this site, or use 'Authorization: Token <key>'."})
    response.status_code = 403
    return response


# Dash writes inline styles and one inline script that starts its renderer; nothing loads from elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
                           "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def security_headers(response):
    """No framing (clickjacking), no MIME sniffing, no full URLs to other sites; HSTS behind HTTPS."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return response
