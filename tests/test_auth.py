"""Accounts and security: password rules, links, tokens, rate limit, redirects, 401s."""
from __future__ import annotations

import html
import re
import time

import pytest

from auth.passwords import ENTIRELY_NUMERIC, TOO_COMMON, TOO_SHORT, TOO_SIMILAR, password_problems
from tests.conftest import PASSWORD, auth_header, log_out


def csrf_of(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)


def problems_in(response) -> list[str]:
    """The rule messages shown in the form's error box (the form also lists every rule as help)."""
    box = re.search(r'id="password-problems">(.*?)</div>', response.text, re.S)
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", box.group(1))] if box else []


def login(client, username, password, next_url=None):
    page = client.get("/login" + (f"?next={next_url}" if next_url else ""))
    data = {"username": username, "password": password, "csrf_token": csrf_of(page)}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data)


# --- password rules (each message of the manual) ----------------------------------------------

@pytest.mark.parametrize("password, expected", [
    ("Spectral-Lines-42", []),
    ("short1!", [TOO_SHORT]),
    ("password", [TOO_COMMON]),
    ("iloveyou", [TOO_COMMON]),
    ("8374920165", [ENTIRELY_NUMERIC]),
    ("1234", [TOO_SHORT, TOO_COMMON, ENTIRELY_NUMERIC]),
    ("observer2026", [TOO_SIMILAR]),
    ("Torres-Simon", [TOO_SIMILAR]),
    ("goodman-pipe", [TOO_SIMILAR]),
])
def test_password_rules(password, expected):
    problems = password_problems(password, username="observer", first_name="Simon", last_name="Torres",
                                 email="goodman-pipe@ctio.example.org")
    assert problems == expected


def test_common_password_list_is_large_and_local():
    from auth.passwords import common_passwords

    assert len(common_passwords()) >= 20000


# --- login, logout, redirects -----------------------------------------------------------------

def test_pages_redirect_to_login_and_xhr_gets_401_json(client):
    response = client.get("/proposals")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/proposals"
    for path in ("/api/", "/api/files/", "/_dash-layout", "/_dash-dependencies", "/data/changes"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json == {"detail": "Authentication credentials were not provided."}
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/login").status_code == 200


def test_public_endpoints_matched_exactly(client):
    assert client.get("/loginx").status_code == 302
    assert client.get("/login/../proposals").status_code in (302, 404)
    assert client.get("/set-password-x").status_code == 302


def test_login_and_logout(client, people):
    response = login(client, "pi", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/api/").json["user"] == "pi"
    log_out(client)
    assert client.get("/api/").status_code == 401


def test_only_the_navbars_form_signs_out(client, people):
    """A link (GET) or a form on another site (no csrf token) cannot sign anyone out; Sign Out can."""
    assert login(client, "pi", PASSWORD).status_code == 302
    asked = client.get("/logout")  # a link only asks
    assert asked.status_code == 200 and "Sign out of GSP Live in this browser?" in asked.text
    assert client.get("/api/").json["user"] == "pi"
    refused = client.post("/logout", data={"csrf_token": "guessed"}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 400 and "The form expired" in refused.text
    assert client.post("/logout").status_code == 400
    assert client.get("/api/").json["user"] == "pi"  # still signed in
    response = log_out(client)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/api/").status_code == 401


def test_wrong_password_is_logged_and_refused(client, people):
    from db import db
    from db.models import LogEntry

    response = login(client, "pi", "not-the-password")
    assert response.status_code == 401
    assert "Please enter a correct username and password." in response.text
    entry = db.session.query(LogEntry).filter_by(event="login_failed").one()
    assert entry.subject == "pi" and entry.level == "WARNING"


def test_inactive_user_cannot_log_in(client, people):
    from db import db

    people["users"]["pi"].is_active_account = False
    db.session.commit()
    assert login(client, "pi", PASSWORD).status_code == 401


def test_login_rate_limited(client, people):
    for _ in range(5):
        assert login(client, "pi", "wrong-guess").status_code == 401
    response = login(client, "pi", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed login attempts" in response.text


def test_lock_out_is_per_username_never_another_users(client, people):
    """Observers share the telescope's address: someone's wrong guesses never block another user."""
    for _ in range(6):
        assert login(client, "nobody-at-all", "wrong-guess").status_code in (401, 429)
    assert login(client, "nobody-at-all", "wrong-guess").status_code == 429
    assert login(client, "pi", PASSWORD).status_code == 302


def test_failed_logins_take_as_long_for_unknown_users(monkeypatch):
    """No timing oracle for which usernames exist: an unknown user's check costs a real hash check."""
    from auth import passwords

    checked = []
    monkeypatch.setattr(passwords, "check_password_hash", lambda stored, given: checked.append(stored) or False)
    assert passwords.password_matches(None, "guess") is False
    assert passwords.password_matches("", "guess") is False
    assert len(checked) == 2 and checked[0] == passwords._stand_in_hash() and checked[0].startswith("scrypt:")


@pytest.mark.parametrize("target, expected", [
    ("/proposals", "/proposals"),
    ("/search?obstype=ARC", "/search?obstype=ARC"),
    ("https://evil.example.com/", "/"),
    ("//evil.example.com/", "/"),
    ("/\\evil.example.com", "/"),
    ("http:/evil.example.com", "/"),
    ("javascript:alert(1)", "/"),
    ("evil.example.com", "/"),
])
def test_next_validated_against_open_redirects(client, people, target, expected):
    response = login(client, "pi", PASSWORD, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_login_form_without_csrf_is_refused(client, people):
    response = client.post("/login", data={"username": "pi", "password": PASSWORD})
    assert response.status_code == 400


# --- tokens ---------------------------------------------------------------------------------------

def test_token_auth_and_regeneration(client, people):
    from auth.accounts import regenerate_token
    from db import db

    token = people["tokens"]["collab"]
    response = client.get("/api/", headers=auth_header(token))
    assert response.status_code == 200 and response.json["user"] == "collab"
    assert "Set-Cookie" not in response.headers  # a token call opens no session
    assert people["users"]["collab"].api_token_hash != token  # stored hashed
    new_token = regenerate_token(people["users"]["collab"])
    db.session.commit()
    assert client.get("/api/", headers=auth_header(token)).status_code == 401
    assert client.get("/api/", headers=auth_header(new_token)).status_code == 200


def test_a_given_token_wins_over_the_browser_session(client, people):
    """Swagger UI's "Authorize" in a signed-in browser: the request carries the staff's session cookie
    and the pi's token; it is the pi's request (the pi's user, the pi's files, the pi's refusals)."""
    assert login(client, "staff", PASSWORD).status_code == 302
    assert client.get("/api/").json["user"] == "staff"
    pi = auth_header(people["tokens"]["pi"])
    assert client.get("/api/", headers=pi).json["user"] == "pi"
    other = people["other_proposal"]
    assert client.get(f"/api/proposals/{other.id}/").status_code == 200  # staff see every proposal
    assert client.get(f"/api/proposals/{other.id}/", headers=pi).status_code == 404  # the pi does not
    assert client.get("/api/").json["user"] == "staff"  # the session itself is untouched


@pytest.mark.parametrize("header, message", [
    ("Bearer abc", "Malformed Authorization header; expected 'Token <key>'."),
    ("Token", "Malformed Authorization header; expected 'Token <key>'."),
    ("Token a b", "Malformed Authorization header; expected 'Token <key>'."),
    ("Token 0000000000000000000000000000000000000000", "Invalid token."),
])
def test_bad_tokens_get_401_json(client, people, header, message):
    response = client.get("/api/", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json == {"detail": message}


def test_inactive_users_token_refused(client, people):
    from db import db

    people["users"]["pi"].is_active_account = False
    db.session.commit()
    assert client.get("/api/", headers=auth_header(people["tokens"]["pi"])).status_code == 401


# --- set-password links -----------------------------------------------------------------------

@pytest.fixture
def newcomer(app):
    from auth.accounts import create_user
    from db import db

    user = create_user(username="newcomer", email="new@example.org", first_name="Nina", last_name="Vega")
    db.session.commit()
    return user


def _set_password(client, link, password, confirm=None):
    page = client.get(link)
    return client.post(link, data={"new_password1": password, "new_password2": confirm or password,
                                   "csrf_token": csrf_of(page)})


def test_set_password_link_works_once(client, newcomer):
    from auth.tokens import make_set_password_token

    link = f"/set-password/{make_set_password_token(newcomer)}"
    assert client.get(link).status_code == 200
    response = _set_password(client, link, "Wavelength-Solution-9")
    assert response.status_code == 200 and "Your password has been set." in response.text
    again = client.get(link)
    assert again.status_code == 400
    assert "already been used" in again.text
    assert login(client, "newcomer", "Wavelength-Solution-9").status_code == 302


def test_set_password_applies_the_rules(client, newcomer):
    from auth.tokens import make_set_password_token

    link = f"/set-password/{make_set_password_token(newcomer)}"
    response = _set_password(client, link, "12345678")
    assert response.status_code == 400
    assert problems_in(response) == [TOO_COMMON, ENTIRELY_NUMERIC]
    mismatch = _set_password(client, link, "Wavelength-Solution-9", "other-thing-9")
    assert problems_in(mismatch) == ["The two password fields didn't match."]
    assert _set_password(client, link, "Wavelength-Solution-9").status_code == 200  # still unused


def test_tampered_and_expired_links_refused(client, newcomer, app):
    from auth.tokens import make_set_password_token

    token = make_set_password_token(newcomer)
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    response = client.get(f"/set-password/{tampered}")
    assert response.status_code == 400 and "This link is not valid." in response.text
    app.config["SET_PASSWORD_MAX_AGE"] = 1
    time.sleep(2.1)
    response = client.get(f"/set-password/{token}")
    assert response.status_code == 400 and "This link has expired." in response.text


# --- password change ----------------------------------------------------------------------------

def test_password_change_needs_old_password_and_rules(client, people):
    login(client, "pi", PASSWORD)
    page = client.get("/account/password")
    assert "Please enter your old password, for security's sake" in page.text
    form = {"csrf_token": csrf_of(page), "old_password": "wrong", "new_password1": "Balmer-Series-77",
            "new_password2": "Balmer-Series-77"}
    assert problems_in(client.post("/account/password", data=form)) == [
        "Your old password was entered incorrectly. Please enter it again."]
    form.update(old_password=PASSWORD, new_password1="short", new_password2="short")
    assert problems_in(client.post("/account/password", data=form)) == [TOO_SHORT]
    form.update(new_password1="Balmer-Series-77", new_password2="Balmer-Series-77")
    assert "Your password was changed." in client.post("/account/password", data=form).text
    log_out(client)
    assert login(client, "pi", "Balmer-Series-77").status_code == 302


def test_security_headers_on_pages_and_api(client, people):
    from auth import CONTENT_SECURITY_POLICY

    for response in (client.get("/login"), client.get("/api/", headers=auth_header(people["tokens"]["pi"]))):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert "Strict-Transport-Security" not in response.headers  # plain HTTP: no HSTS


def test_hsts_behind_https(client, app):
    app.config["SESSION_COOKIE_SECURE"] = True
    assert client.get("/login").headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_session_writes_to_the_api_must_be_same_site_json(client, people):
    """A page on another site cannot drive the API with a signed-in user's cookie; scripts with a token can."""
    from db import db

    proposal = people["proposal"]
    url = f"/api/proposals/collaborators/{proposal.id}/"
    assert login(client, "pi", PASSWORD).status_code == 302
    form = client.post(url, data={"email": "stranger@example.org", "action": "add"},
                       headers={"Origin": "http://evil.example"})
    assert form.status_code == 403 and "Cross-site or non-JSON" in form.json["detail"]
    evil_json = client.post(url, json={"email": "stranger@example.org", "action": "add"},
                            headers={"Origin": "http://evil.example"})
    assert evil_json.status_code == 403
    same_site_form = client.post(url, data={"email": "stranger@example.org", "action": "add"},
                                 headers={"Origin": "http://localhost"})
    assert same_site_form.status_code == 403  # a form is never a session write to the API
    db.session.expire_all()
    assert [user.username for user in proposal.collaborators] == ["collab"]
    assert client.post(url, json={"email": "stranger@example.org", "action": "add"},
                       headers={"Origin": "http://localhost"}).status_code == 200
    token = client.post(url, json={"email": "stranger@example.org", "action": "remove"},
                        headers={**auth_header(people["tokens"]["pi"]), "Origin": "http://evil.example"})
    assert token.status_code == 200  # a token is not a cookie: no cross-site risk


def _copied_session(app, client):
    """Another browser holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    return thief


@pytest.mark.parametrize("ending", ["logout", "password change", "set-password link"])
def test_a_copied_session_ends_with_logout_and_password_changes(app, client, people, ending):
    from auth.tokens import make_set_password_token

    assert login(client, "pi", PASSWORD).status_code == 302
    thief = _copied_session(app, client)
    assert thief.get("/api/files/").status_code == 200  # the copy works, as long as the session lives
    new_password = "Another-Spectrum-77"
    if ending == "logout":
        log_out(client)
    elif ending == "password change":
        page = client.get("/account/password")
        response = client.post("/account/password", data={
            "old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password,
            "csrf_token": csrf_of(page)})
        assert response.status_code == 200 and "Your password was changed." in response.text
        assert client.get("/api/files/").status_code == 200  # the browser that changed it stays signed in
    else:
        link = f"/set-password/{make_set_password_token(people['users']['pi'])}"
        other = app.test_client()
        response = other.post(link, data={"new_password1": new_password, "new_password2": new_password,
                                          "csrf_token": csrf_of(other.get(link))})
        assert response.status_code == 200
    assert thief.get("/api/files/").status_code == 401
