"""Proposals: API (list, detail, settings, collaborators), the permission matrix, the audit
trail, and the proposal pages/callbacks driven through Dash's own HTTP endpoints."""
from __future__ import annotations

import json
import re
from email import message_from_bytes
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.settings import ReductionSettings
from tests.conftest import PASSWORD, auth_header, log_out

both = pytest.mark.both_databases
DEFAULTS = ReductionSettings().to_dict()
ROLES = ("pi", "collab", "stranger", "staff", "superuser")


# --- helpers shared by the page tests (also imported by test_management / test_logs) --------------

def login(client, username, password=PASSWORD):
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf})
    assert response.status_code == 302, response.text
    return response


def _outputs(key: str, pattern_outputs: dict | None):
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    outputs = []
    for part in parts:
        ident, prop = part.rsplit(".", 1)
        if ident.startswith("{"):
            outputs.append([{"id": i, "property": prop} for i in (pattern_outputs or {}).get(ident, [])])
        else:
            outputs.append({"id": ident, "property": prop})
    return outputs if key.startswith("..") else outputs[0]


def dash_update(client, dash_app, output_contains: str, values: dict, changed: list[str] | None = None,
                pattern_outputs: dict | None = None):
    """POST /_dash-update-component as the browser would, for the callback whose output key contains
    ``output_contains``.  ``values`` maps "id.prop" to a value, or for a pattern id ("{...}.prop")
    to a list of (id dict, value).  Returns the response (JSON ``response`` when 200)."""
    key = next(k for k in dash_app.callback_map if output_contains in k)
    callback = dash_app.callback_map[key]

    def spec(item):
        ident, prop = item["id"], item["property"]
        name = f"{ident}.{prop}"
        if ident.startswith("{"):
            return [{"id": i, "property": prop, "value": v} for i, v in values.get(name, [])]
        return {"id": ident, "property": prop, "value": values.get(name)}

    body = {"output": key, "outputs": _outputs(key, pattern_outputs),
            "inputs": [spec(i) for i in callback["inputs"]], "state": [spec(s) for s in callback["state"]],
            "changedPropIds": changed or []}
    return client.post("/_dash-update-component", json=body)


def render(client, dash_app, path: str, search: str = "") -> str:
    """The page Dash's router renders for ``path`` (as JSON text of the component tree)."""
    response = dash_update(client, dash_app, "_pages_content.children",
                           {"_pages_location.pathname": path, "_pages_location.search": search},
                           changed=["_pages_location.pathname"])
    assert response.status_code == 200, response.text
    return json.dumps(response.json["response"]["_pages_content"]["children"])


def texts(tree_json: str) -> str:
    """The visible text of a rendered tree (children and labels), joined with " | "."""
    found = []

    def walk(node):
        if isinstance(node, (str, int, float)) and not isinstance(node, bool):
            found.append(str(node))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            props = node.get("props", {}) if "props" in node else {"children": node.get("children")}
            if isinstance(props.get("label"), str):
                found.append(props["label"])
            walk(props.get("children"))

    walk(json.loads(tree_json))
    return " | ".join(found)


@pytest.fixture
def superuser(app):
    from auth.accounts import create_user, regenerate_token
    from db import db

    user = create_user(username="root", email="root@example.org", password=PASSWORD, first_name="Super",
                       last_name="User", is_superuser=True)
    token = regenerate_token(user)
    db.session.commit()
    return {"user": user, "token": token}


def settings_of(proposal_id) -> dict:
    from db import db
    from db.models import ProposalSettings

    db.session.expire_all()
    return db.session.get(ProposalSettings, proposal_id).as_settings().to_dict()


def collaborator_emails(proposal_id) -> list[str]:
    from db import db
    from db.models import Proposal

    db.session.expire_all()
    return [u.email for u in db.session.get(Proposal, proposal_id).collaborators]


def events(name: str):
    from db import db
    from db.models import LogEntry

    db.session.expire_all()
    return db.session.scalars(sa.select(LogEntry).where(LogEntry.event == name).order_by(LogEntry.id)).all()


def outbox(app) -> list:
    folder = Path(app.config["OUTBOX_DIR"])
    return [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))] if folder.exists() else []


def token_of(people, superuser, who):
    return superuser["token"] if who == "superuser" else people["tokens"][who]


# --- list and detail --------------------------------------------------------------------------------

@both
def test_list_shows_own_proposals_staff_all(client, people, superuser):
    expected = {"pi": ["SOAR2026B-001"], "collab": ["SOAR2026B-001"], "stranger": ["SOAR2026B-002"],
                "staff": ["SOAR2026B-002", "SOAR2026B-001"], "superuser": ["SOAR2026B-002", "SOAR2026B-001"]}
    for who in ROLES:
        response = client.get("/api/proposals/", headers=auth_header(token_of(people, superuser, who)))
        assert response.status_code == 200, who
        body = response.json
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == len(expected[who]), who
        assert [p["soar_id"] for p in body["results"]] == expected[who], who
        assert body["next"] is None and body["previous"] is None


@both
def test_list_paginates_like_the_files_list(client, people):
    headers = auth_header(people["tokens"]["staff"])
    first = client.get("/api/proposals/?page_size=1", headers=headers).json
    assert first["count"] == 2 and len(first["results"]) == 1
    assert first["previous"] is None
    assert first["next"] == "http://localhost/api/proposals/?page_size=1&page=2"
    second = client.get(first["next"], headers=headers).json
    assert [p["soar_id"] for p in second["results"]] == ["SOAR2026B-001"]
    assert second["next"] is None
    assert second["previous"] == "http://localhost/api/proposals/?page_size=1&page=1"
    assert client.get("/api/proposals/?page=3&page_size=1", headers=headers).json["results"] == []
    for bad, message in (("page=0", "'page' must be at least 1."),
                         ("page=x", "'page' must be a whole number, not 'x'."),
                         ("page_size=1001", "'page_size' may be at most 1000.")):
        response = client.get(f"/api/proposals/?{bad}", headers=headers)
        assert response.status_code == 400 and response.json == {"detail": message}
    searched = client.get("/api/proposals/?search=quasar", headers=headers).json
    assert [p["soar_id"] for p in searched["results"]] == ["SOAR2026B-001"]


@both
def test_detail_is_exactly_the_manuals_shape(client, people):
    proposal = people["proposal"]
    response = client.get(f"/api/proposals/{proposal.id}/", headers=auth_header(people["tokens"]["collab"]))
    assert response.status_code == 200
    body = response.json
    # (Flask sorts JSON keys; the key set is the manual's)
    assert set(body) == {"id", "soar_id", "semester", "title", "abstract", "user", "collaborators"}
    assert body["soar_id"] == "SOAR2026B-001" and body["semester"] == "2026B" and body["title"] == "Quasars"
    user_keys = {"id", "username", "last_login", "first_name", "last_name", "email", "is_staff", "is_active",
                 "date_joined"}
    assert set(body["user"]) == user_keys and body["user"]["username"] == "pi"
    assert [set(c) for c in body["collaborators"]] == [user_keys]
    assert body["collaborators"][0]["email"] == "collab@example.org"
    by_soar_id = client.get("/api/proposals/SOAR2026B-001/", headers=auth_header(people["tokens"]["pi"]))
    assert by_soar_id.json == body


@both
def test_other_and_missing_proposals_are_the_same_404(client, people):
    other = people["other_proposal"].id
    for url in (f"/api/proposals/{other}/", f"/api/proposals/{other}/settings/",
                f"/api/proposals/collaborators/{other}/", "/api/proposals/SOAR2026B-002/",
                "/api/proposals/99999/", "/api/proposals/99999/settings/", "/api/proposals/collaborators/99999/"):
        response = client.get(url, headers=auth_header(people["tokens"]["pi"]))
        assert response.status_code == 404, url
        assert response.json == {"detail": "Not found."}, url


def test_anonymous_gets_401(client, people):
    for url in ("/api/proposals/", f"/api/proposals/{people['proposal'].id}/settings/", "/api/logs/"):
        assert client.get(url).status_code == 401
    assert client.post(f"/api/proposals/collaborators/{people['proposal'].id}/",
                       json={"email": "x@example.org", "action": "add"}).status_code == 401


# --- settings ---------------------------------------------------------------------------------------

@both
def test_settings_read_and_write_matrix(client, people, superuser):
    proposal = people["proposal"]
    url = f"/api/proposals/{proposal.id}/settings/"
    reads = {"pi": 200, "collab": 200, "staff": 200, "superuser": 200, "stranger": 404}
    for who, status in reads.items():
        response = client.get(url, headers=auth_header(token_of(people, superuser, who)))
        assert response.status_code == status, who
        assert response.json == (DEFAULTS if status == 200 else {"detail": "Not found."}), who
    writes = [("collab", 403, None), ("stranger", 404, None), ("pi", 200, 7), ("staff", 200, 8),
              ("superuser", 200, 9)]
    current = DEFAULTS["min_bias"]
    for number, (who, status, value) in enumerate(writes):
        response = client.patch(url, json={"min_bias": 100 + number if value is None else value},
                                headers=auth_header(token_of(people, superuser, who)))
        assert response.status_code == status, who
        if status == 200:
            current = value
            assert response.json == {**DEFAULTS, "min_bias": value}, who
        assert settings_of(proposal.id) == {**DEFAULTS, "min_bias": current}, who
    assert client.patch(url, json={"min_bias": 2}, headers=auth_header(people["tokens"]["collab"])).json == {
        "detail": "Only the PI of SOAR2026B-001 and staff may change it."}
    assert [(e.details["new"], e.user_id) for e in events("settings_changed")] == [
        (7, people["users"]["pi"].id), (8, people["users"]["staff"].id), (9, superuser["user"].id)]


@both
def test_partial_update_is_audited_field_by_field(client, people):
    proposal = people["proposal"]
    response = client.put(f"/api/proposals/{proposal.id}/settings/", headers=auth_header(people["tokens"]["pi"]),
                          json={"flat_normalization": "mean", "flat_normalization_order": 21, "ignore_flats": True,
                                "max_targets": 3, "saturation_threshold": 2})
    assert response.status_code == 200
    expected = {**DEFAULTS, "flat_normalization": "mean", "flat_normalization_order": 21, "ignore_flats": True,
                "saturation_threshold": 2.0}
    assert response.json == expected and settings_of(proposal.id) == expected
    entries = events("settings_changed")
    assert [(e.details, e.user_id, e.proposal_id) for e in entries] == [
        ({"field": "saturation_threshold", "old": 1.0, "new": 2.0}, people["users"]["pi"].id, proposal.id),
        ({"field": "ignore_flats", "old": False, "new": True}, people["users"]["pi"].id, proposal.id),
        ({"field": "flat_normalization", "old": "simple", "new": "mean"}, people["users"]["pi"].id, proposal.id),
        ({"field": "flat_normalization_order", "old": 15, "new": 21}, people["users"]["pi"].id, proposal.id),
    ]  # max_targets was sent unchanged: no entry
    assert entries[0].message == "pi changed saturation_threshold of SOAR2026B-001 from 1.0 to 2.0."
    assert all(e.created is not None for e in entries)


INVALID_SETTINGS = [
    ({"min_bias": -1}, {"min_bias": "must be between 1 and 500"}),
    ({"min_flats": 0}, {"min_flats": "must be between 1 and 500"}),
    ({"flat_normalization_order": 0}, {"flat_normalization_order": "must be between 1 and 50"}),
    ({"flat_normalization_order": 51}, {"flat_normalization_order": "must be between 1 and 50"}),
    ({"flat_normalization_order": 15.5}, {"flat_normalization_order": "must be a whole number"}),
    ({"max_targets": "3"}, {"max_targets": "must be a whole number"}),
    ({"cosmic_ray_rejection": "bogus"}, {"cosmic_ray_rejection": "must be one of default, dcr, lacosmic, none"}),
    ({"extraction": "Optimal"}, {"extraction": "must be one of fractional, optimal"}),
    ({"target_fit_model": "lorentz"}, {"target_fit_model": "must be one of moffat, gaussian"}),
    ({"technique": None}, {"technique": "must be one of Spectroscopy, Imaging"}),
    ({"saturation_threshold": 0}, {"saturation_threshold": "must be a percentage above 0 and at most 100"}),
    ({"saturation_threshold": 101}, {"saturation_threshold": "must be a percentage above 0 and at most 100"}),
    ({"ignore_bias": "yes"}, {"ignore_bias": "must be true or false"}),
    ({"colour": "blue"}, {"colour": "unknown setting"}),
    ({"min_bias": 5, "flat_normalization": "fancy", "max_targets": 0},  # one bad field spoils the lot
     {"flat_normalization": "must be one of mean, simple, full", "max_targets": "must be between 1 and 10"}),
]


@both
def test_invalid_settings_400_per_field_and_db_unchanged(client, people):
    proposal = people["proposal"]
    for body, errors in INVALID_SETTINGS:
        for method in (client.patch, client.put):
            response = method(f"/api/proposals/{proposal.id}/settings/", json=body,
                               headers=auth_header(people["tokens"]["pi"]))
            assert response.status_code == 400, body
            assert response.json == {"detail": "Invalid settings; nothing was changed.", "errors": errors}, body
        assert settings_of(proposal.id) == DEFAULTS, body
    assert events("settings_changed") == []


def test_dcr_refused_clearly_when_the_program_is_not_installed(client, people, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no `dcr` executable anywhere
    response = client.patch(f"/api/proposals/{people['proposal'].id}/settings/",
                            json={"cosmic_ray_rejection": "dcr"}, headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 400
    assert response.json["errors"] == {"cosmic_ray_rejection": (
        "DCR is not installed on this server (goodman-pipeline's C program is not built here); "
        "choose default, lacosmic or none.")}
    assert settings_of(people["proposal"].id) == DEFAULTS


def test_settings_need_a_json_object(client, people):
    url = f"/api/proposals/{people['proposal'].id}/settings/"
    headers = auth_header(people["tokens"]["pi"])
    for kwargs in ({"data": {"min_bias": "5"}}, {"json": [1, 2]}, {"data": "not json", "content_type": "application/json"}):
        response = client.patch(url, headers=headers, **kwargs)
        assert response.status_code == 400
        assert response.json == {"detail": "Send the settings as a JSON object (Content-Type: application/json)."}
    assert settings_of(people["proposal"].id) == DEFAULTS


# --- collaborators ----------------------------------------------------------------------------------

def _collab(client, people, proposal, token, **body):
    return client.post(f"/api/proposals/collaborators/{proposal.id}/", json=body, headers=auth_header(token))


@both
def test_pi_adds_an_existing_user_and_gets_the_proposal_back(client, people, app):
    proposal = people["proposal"]
    response = _collab(client, people, proposal, people["tokens"]["pi"], email="Stranger@Example.org", action="add")
    assert response.status_code == 200
    assert response.json["soar_id"] == "SOAR2026B-001"
    assert [c["username"] for c in response.json["collaborators"]] == ["collab", "stranger"]
    assert collaborator_emails(proposal.id) == ["collab@example.org", "stranger@example.org"]
    entry = events("collaborator_added")[-1]
    assert entry.user_id == people["users"]["pi"].id and entry.proposal_id == proposal.id
    assert entry.details == {"field": "collaborators", "old": None, "new": "stranger@example.org",
                             "username": "stranger", "created_user": False}
    assert outbox(app) == []  # an existing account gets no set-password link
    # and the new collaborator now sees it
    listed = client.get("/api/proposals/", headers=auth_header(people["tokens"]["stranger"])).json
    assert sorted(p["soar_id"] for p in listed["results"]) == ["SOAR2026B-001", "SOAR2026B-002"]


@both
def test_adding_an_unknown_email_creates_the_user_and_mails_a_link(client, people, app):
    from auth.accounts import create_user
    from db import db

    create_user(username="newbie", email="newbie@elsewhere.org")  # the username 'newbie' is taken
    db.session.commit()
    app.config["PUBLIC_URL"] = "https://gsp.example.org/live"
    proposal = people["proposal"]
    response = client.post(f"/api/proposals/collaborators/{proposal.id}/",
                           data={"email": "newbie@university.edu", "action": "add"},  # the manual's form payload
                           headers=auth_header(people["tokens"]["staff"]))
    assert response.status_code == 200
    added = response.json["collaborators"][-1]
    assert added["username"] == "newbie2" and added["email"] == "newbie@university.edu"
    assert added["last_login"] is None and added["is_active"] is True
    mails = outbox(app)
    assert len(mails) == 1 and mails[0]["To"] == "newbie@university.edu"
    assert mails[0]["Subject"] == "GSP Live: you were added to SOAR2026B-001"
    body = mails[0].get_payload(decode=True).decode()
    assert "Your username is: newbie2" in body
    link = re.search(r"https://gsp\.example\.org/live/set-password/\S+", body).group(0)
    assert client.get(link.replace("https://gsp.example.org/live", "")).status_code == 200
    assert events("collaborator_added")[-1].details["created_user"] is True


@both
def test_collaborator_matrix(client, people, superuser):
    proposal = people["proposal"]
    refused = {"collab": (403, {"detail": "Only the PI of SOAR2026B-001 and staff may change it."}),
               "stranger": (404, {"detail": "Not found."})}
    for who, (status, body) in refused.items():
        for action, email in (("add", "stranger@example.org"), ("remove", "collab@example.org")):
            response = _collab(client, people, proposal, token_of(people, superuser, who), email=email,
                               action=action)
            assert (response.status_code, response.json) == (status, body), (who, action)
    assert collaborator_emails(proposal.id) == ["collab@example.org"]
    assert events("collaborator_added") == [] and events("collaborator_removed") == []
    expected = ["collab@example.org"]
    for who in ("pi", "staff", "superuser"):
        added = _collab(client, people, proposal, token_of(people, superuser, who), email=f"{who}-guest@example.org",
                        action="add")
        assert added.status_code == 200, who
        expected.append(f"{who}-guest@example.org")
        assert collaborator_emails(proposal.id) == expected, who
        removed = _collab(client, people, proposal, token_of(people, superuser, who), email=expected[0],
                          action="remove")
        assert removed.status_code == 200, who
        expected.pop(0)
        assert collaborator_emails(proposal.id) == expected, who
    assert [e.user_id for e in events("collaborator_added")] == [
        people["users"]["pi"].id, people["users"]["staff"].id, superuser["user"].id]


BAD_COLLABORATOR_REQUESTS = [
    ({"email": "collab@example.org", "action": "add"}, 409, "collab@example.org is already a member of SOAR2026B-001."),
    ({"email": "pi@example.org", "action": "add"}, 409, "pi@example.org is already a member of SOAR2026B-001."),
    ({"email": "not-an-email", "action": "add"}, 400, "'not-an-email' is not a valid e-mail address."),
    ({"email": "two@@example.org", "action": "add"}, 400, "'two@@example.org' is not a valid e-mail address."),
    ({"email": ["a@example.org"], "action": "add"}, 400, "The e-mail address must be text."),
    ({"email": "pi@example.org", "action": "remove"}, 409,
     "pi@example.org is the PI of SOAR2026B-001 and cannot be removed."),
    ({"email": "stranger@example.org", "action": "remove"}, 404,
     "stranger@example.org is not a collaborator of SOAR2026B-001."),
    ({"email": "nobody@example.org", "action": "remove"}, 404,
     "nobody@example.org is not a collaborator of SOAR2026B-001."),
    ({"email": "x@example.org", "action": "invite"}, 400, "'action' must be 'add' or 'remove'."),
    ({"email": "x@example.org"}, 400, "'action' must be 'add' or 'remove'."),
    ({"action": "add"}, 400, "'email' is required."),
]


@both
def test_bad_collaborator_requests_change_nothing(client, people, app):
    from db import db
    from db.models import User

    users_before = db.session.scalar(sa.select(sa.func.count(User.id)))
    for body, status, detail in BAD_COLLABORATOR_REQUESTS:
        response = _collab(client, people, people["proposal"], people["tokens"]["pi"], **body)
        assert response.status_code == status, body
        assert response.json == {"detail": detail}, body
        assert collaborator_emails(people["proposal"].id) == ["collab@example.org"], body
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == users_before, body
    assert events("collaborator_added") == [] and events("collaborator_removed") == []
    assert outbox(app) == []


@both
def test_removal_is_audited(client, people):
    response = _collab(client, people, people["proposal"], people["tokens"]["pi"], email="collab@example.org",
                       action="remove")
    assert response.status_code == 200 and response.json["collaborators"] == []
    entry = events("collaborator_removed")[-1]
    assert entry.details == {"field": "collaborators", "old": "collab@example.org", "new": None,
                             "username": "collab"}
    assert entry.message == "pi removed collab <collab@example.org> from SOAR2026B-001."
    # the removed collaborator loses access at once
    assert client.get(f"/api/proposals/{people['proposal'].id}/",
                      headers=auth_header(people["tokens"]["collab"])).status_code == 404


def test_get_on_the_collaborators_url_changes_nothing(client, people):
    url = f"/api/proposals/collaborators/{people['proposal'].id}/?email=stranger@example.org&action=add"
    response = client.get(url, headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 200 and len(response.json["collaborators"]) == 1
    assert collaborator_emails(people["proposal"].id) == ["collab@example.org"]


def test_openapi_paths_document_every_route(app):
    from api.docs import openapi_document

    paths = openapi_document()["paths"]  # each module's routes, with what every operation may answer
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and (rule.rule.startswith("/api/proposals") or
                                                 rule.rule in ("/api/logs/", "/api/email/")):
            path = re.sub(r"<(?:\w+:)?ident>", "{id}", rule.rule)
            routes[path] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes, "no routes found"
    for path, methods in routes.items():
        documented = {m for m in paths[path] if m in ("get", "post", "put", "patch", "delete")}
        assert methods - {"patch"} <= documented, (path, methods, documented)
        for method in documented:
            operation = paths[path][method]
            assert operation["security"] == [{"Token": []}]
            assert "200" in operation["responses"] and "401" in operation["responses"]


# --- the pages (rendered through Dash's router) and their callbacks ---------------------------------

def test_proposals_page_lists_memberships(client, dash_app, people):
    login(client, "collab")
    page = render(client, dash_app, "/proposals")
    text = texts(page)
    assert "My Proposals" in text and "SOAR2026B-001" in text and "Quasars" in text and "Pi Tester" in text
    assert "SOAR2026B-002" not in text
    assert f'"href": "/proposals/{people["proposal"].id}?view=settings"' in page  # the cogs icon
    assert "bi bi-gear" in page and "bi bi-person-plus" in page
    log_out(client)
    login(client, "staff")
    text = texts(render(client, dash_app, "/proposals"))
    assert "All Proposals" in text and "SOAR2026B-001" in text and "SOAR2026B-002" in text
    assert "SOAR2026B-001" not in texts(render(client, dash_app, "/proposals", "?q=other"))


def test_detail_view_settings_form_and_collaborators(client, dash_app, people):
    for who, editable in (("pi", True), ("staff", True), ("collab", False)):
        login(client, who)
        _check_detail_view(client, dash_app, people, editable)
        log_out(client)


def _check_detail_view(client, dash_app, people, editable):
    from components.forms import SETTINGS_FIELDS

    page = render(client, dash_app, f"/proposals/{people['proposal'].id}", "?view=settings")
    text = texts(page)
    for label in ("Saturation Threshold (% of pixels)", "Cosmic ray rejection", "Technique", "Ignore bias",
                  "Ignore flats", "Minimum Number of Bias", "Minimum Number of Flats", "Flat Normalization",
                  "Flat Normalization Order", "Extraction Type", "Target Fit Model", "Maximum Number of Targets",
                  "General Settings:", "Calibrations:", "Flat Normalization:", "Spectroscopic Target:",
                  "Wavelength Calibration:", "Correct flexure from the sky lines",
                  "Flux Calibration:", "Calibrate flux automatically"):
        assert label in text, label
    for field in SETTINGS_FIELDS:
        assert field["help"] in text, field["name"]
    assert "These settings are used for this proposal in all reduction steps and for every new file" in text
    for value, label in (("dcr", "DCR"), ("lacosmic", "LACosmic"), ("none", "None"), ("full", "Full"),
                         ("optimal", "Optimal Extraction"), ("gaussian", "Gaussian")):
        assert f'"label": "{label}", "value": "{value}"' in page
    assert '"active_tab": "settings"' in page
    assert ('"id": "settings-save"' in page) is editable
    assert ('"id": "collaborator-add"' in page) is editable
    assert ('"type": "collaborator-remove"' in page) is editable
    assert ("Only the PI and staff can change these settings." in text) is (not editable)
    assert ('"disabled": true' in page) is (not editable)
    assert "collab@example.org" in text and "pi@example.org" in text


def test_stranger_gets_the_same_not_found_view(client, dash_app, people):
    login(client, "stranger")
    hidden = render(client, dash_app, f"/proposals/{people['proposal'].id}", "?view=settings")
    missing = render(client, dash_app, "/proposals/99999")
    assert "Not found" in texts(hidden) and hidden == missing
    assert "SOAR2026B-001" not in hidden and "Quasars" not in hidden


def _field_values(overrides: dict) -> list:
    from components.forms import FIELD_NAMES

    values = {**DEFAULTS, **overrides}
    return [({"field": name, "type": "settings-field"}, values[name]) for name in FIELD_NAMES]


def _save(client, dash_app, proposal_id, overrides):
    from components.forms import FIELD_NAMES

    feedback = [{"field": name, "type": "settings-feedback"} for name in FIELD_NAMES]
    return dash_update(client, dash_app, "settings-message.children",
                       {"settings-save.n_clicks": 1, "proposal-id.data": proposal_id,
                        '{"field":["ALL"],"type":"settings-field"}.value': _field_values(overrides)},
                       changed=["settings-save.n_clicks"],
                       pattern_outputs={'{"field":["ALL"],"type":"settings-feedback"}': feedback})


def test_settings_form_saves_and_shows_history(client, dash_app, people):
    proposal = people["proposal"]
    login(client, "pi")
    response = _save(client, dash_app, proposal.id, {"min_flats": 12.0, "target_fit_model": "gaussian"})
    assert response.status_code == 200
    result = response.json["response"]
    assert "Saved. Changed: Minimum Number of Flats, Target Fit Model." in texts(json.dumps(result["settings-message"]))
    history = texts(json.dumps(result["proposal-history"]))
    assert "Setting changed" in history and "Target Fit Model" in history and "gaussian" in history
    assert settings_of(proposal.id) == {**DEFAULTS, "min_flats": 12, "target_fit_model": "gaussian"}
    page = texts(render(client, dash_app, f"/proposals/{proposal.id}", "?view=history"))
    assert "Minimum Number of Flats" in page and "12" in page and "pi" in page


def test_settings_form_explains_bad_values_and_saves_nothing(client, dash_app, people):
    proposal = people["proposal"]
    login(client, "pi")
    response = _save(client, dash_app, proposal.id, {"min_bias": -3, "flat_normalization_order": 51,
                                                     "min_flats": None, "cosmic_ray_rejection": "bogus"})
    assert response.status_code == 200
    result = response.json["response"]
    feedback = {name: result[json.dumps({"field": name, "type": "settings-feedback"}, separators=(",", ":"))]
                ["children"] for name in DEFAULTS}
    assert feedback["min_bias"] == "Minimum Number of Bias must be between 1 and 500."
    assert feedback["flat_normalization_order"] == "Flat Normalization Order must be between 1 and 50."
    assert feedback["min_flats"] == "Minimum Number of Flats must be a whole number."
    assert feedback["cosmic_ray_rejection"] == ("Cosmic ray rejection must be one of default, dcr, lacosmic, "
                                                "none.")
    assert feedback["max_targets"] == ""
    assert "Nothing was saved" in texts(json.dumps(result["settings-message"]))
    assert settings_of(proposal.id) == DEFAULTS and events("settings_changed") == []


def test_crafted_callback_requests_are_refused(client, dash_app, people):
    for who, message in (("collab", "Only the PI of SOAR2026B-001 and staff can change it."),
                         ("stranger", "This proposal does not exist, or you do not have access to it.")):
        login(client, who)
        _check_refused(client, dash_app, people, message)
        log_out(client)


def _check_refused(client, dash_app, people, message):
    proposal = people["proposal"]
    response = _save(client, dash_app, proposal.id, {"min_bias": 3})
    assert message in texts(json.dumps(response.json["response"]["settings-message"]))
    added = dash_update(client, dash_app, "collaborator-table.children",
                        {"collaborator-add.n_clicks": 1, "collaborator-email.value": "evil@example.org",
                         "proposal-id.data": proposal.id}, changed=["collaborator-add.n_clicks"])
    assert message in texts(json.dumps(added.json["response"]["collaborator-message"]))
    assert settings_of(proposal.id) == DEFAULTS
    assert collaborator_emails(proposal.id) == ["collab@example.org"]


def test_collaborator_callbacks_add_refuse_duplicate_and_remove(client, dash_app, people, app):
    proposal = people["proposal"]
    login(client, "pi")

    def add(email):
        return dash_update(client, dash_app, "collaborator-table.children",
                           {"collaborator-add.n_clicks": 1, "collaborator-email.value": email,
                            "proposal-id.data": proposal.id}, changed=["collaborator-add.n_clicks"]).json["response"]

    result = add("fresh@example.org")
    assert "Added fresh <fresh@example.org>. A new account was created" in texts(
        json.dumps(result["collaborator-message"]))
    assert result["collaborator-email"]["value"] == ""
    assert "fresh@example.org" in texts(json.dumps(result["collaborator-table"]))
    assert "Collaborator added" in texts(json.dumps(result["proposal-history"]))
    assert len(outbox(app)) == 1
    duplicate = add("fresh@example.org")
    assert "fresh@example.org is already a member of SOAR2026B-001." in texts(
        json.dumps(duplicate["collaborator-message"]))
    assert "collaborator-table" not in duplicate
    assert "'nope' is not a valid e-mail address." in texts(json.dumps(add("nope")["collaborator-message"]))
    assert collaborator_emails(proposal.id) == ["collab@example.org", "fresh@example.org"]
    collab_id = people["users"]["collab"].id
    asked = dash_update(client, dash_app, "collaborator-confirm.displayed",
                        {'{"type":"collaborator-remove","user":["ALL"]}.n_clicks':
                             [({"type": "collaborator-remove", "user": collab_id}, 1)],
                         "proposal-id.data": proposal.id},
                        changed=[json.dumps({"type": "collaborator-remove", "user": collab_id},
                                            separators=(",", ":"), sort_keys=True) + ".n_clicks"]).json["response"]
    assert asked["collaborator-confirm"] == {
        "displayed": True, "message": "Remove Collab Tester <collab@example.org> from SOAR2026B-001? "
                                      "They lose access to its data at once."}
    assert asked["collaborator-pending"] == {"data": collab_id}
    assert collaborator_emails(proposal.id) == ["collab@example.org", "fresh@example.org"]  # only asked
    removed = dash_update(client, dash_app, "collaborator-table.children",
                          {"collaborator-confirm.submit_n_clicks": 1, "collaborator-pending.data": collab_id,
                           "proposal-id.data": proposal.id},
                          changed=["collaborator-confirm.submit_n_clicks"]).json["response"]
    assert "Removed Collab Tester <collab@example.org>." in texts(json.dumps(removed["collaborator-message"]))
    assert collaborator_emails(proposal.id) == ["fresh@example.org"]
