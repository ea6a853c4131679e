"""Management pages (staff only): add user -> add proposal flow, manage users, manage proposals,
SOAR id defaults; every route and callback refused to non-staff."""
from __future__ import annotations

import json
import re
from datetime import date

import pytest
import sqlalchemy as sa

from tests.conftest import log_out
from tests.test_proposals import dash_update, events, login, outbox, render, superuser, texts  # noqa: F401

ROUTES = ("/management", "/management/users/new", "/management/users", "/management/proposals/new",
          "/management/proposals")


def user_count() -> int:
    from db import db
    from db.models import User

    return db.session.scalar(sa.select(sa.func.count(User.id)))


def proposal_count() -> int:
    from db import db
    from db.models import Proposal

    return db.session.scalar(sa.select(sa.func.count(Proposal.id)))


def message(result: dict, key: str) -> str:
    return texts(json.dumps(result[key]["children"]))


def create_user_call(client, dash_app, **fields):
    values = {f"user-{name}.value": value for name, value in fields.items()}
    values["user-create.n_clicks"] = 1
    return dash_update(client, dash_app, "user-form-message.children", values, changed=["user-create.n_clicks"])


def create_proposal_call(client, dash_app, **fields):
    values = {f"proposal-{name}.value": value for name, value in fields.items()}
    values["proposal-create.n_clicks"] = 1
    return dash_update(client, dash_app, "proposal-form-message.children", values,
                       changed=["proposal-create.n_clicks"])


def user_action(client, dash_app, action: str, user_id: int, search: str = ""):
    ident = {"type": "users-action", "action": action, "user": user_id}
    return dash_update(client, dash_app, "users-table.children",
                       {"users-search.value": search,
                        '{"action":["ALL"],"type":"users-action","user":["ALL"]}.n_clicks': [(ident, 1)]},
                       changed=[json.dumps(ident, sort_keys=True, separators=(",", ":")) + ".n_clicks"])


def test_routes_are_not_found_for_non_staff(client, dash_app, people):
    for who in ("pi", "collab", "stranger"):
        login(client, who)
        for route in ROUTES:
            page = render(client, dash_app, route)
            assert "Not found" in texts(page), (who, route)
            assert "Add new user" not in texts(page) and "user-create" not in page, (who, route)
        log_out(client)
    login(client, "staff")
    assert "Add new user" in texts(render(client, dash_app, "/management/users/new"))
    assert "New Proposal" in texts(render(client, dash_app, "/management/proposals/new"))
    assert "Manage Users" in texts(render(client, dash_app, "/management/users"))
    assert "Manage Proposals" in texts(render(client, dash_app, "/management/proposals"))


def test_non_staff_callbacks_are_refused(client, dash_app, people):
    login(client, "pi")
    before_users, before_proposals = user_count(), proposal_count()
    result = create_user_call(client, dash_app, email="sneaky@example.org", partner="SOAR").json["response"]
    assert message(result, "user-form-message") == "Only staff may do this."
    result = create_proposal_call(client, dash_app, pi=people["users"]["pi"].id, semester="2026B",
                                  **{"soar-id": "SOAR2026B-099"}, title="Mine").json["response"]
    assert message(result, "proposal-form-message") == "Only staff may do this."
    result = user_action(client, dash_app, "deactivate", people["users"]["collab"].id).json["response"]
    assert "Only staff may do this." in message(result, "users-message")
    assert (user_count(), proposal_count()) == (before_users, before_proposals)
    assert people["users"]["collab"].is_active


@pytest.mark.both_databases
def test_add_user_mails_a_link_then_leads_to_the_proposal_form(client, dash_app, people, app):
    from auth.accounts import next_soar_id, semester_of
    from db import db
    from db.models import User

    login(client, "staff")
    response = create_user_call(client, dash_app, **{"first-name": "Nina", "last-name": "Vega"}, username="",
                                email="Nina.Vega@Example.org", partner="Chile")
    result = response.json["response"]
    user = db.session.scalar(sa.select(User).where(User.email == "nina.vega@example.org"))
    assert user is not None and user.username == "nina.vega" and user.partner == "Chile"
    assert user.password_hash is None and not user.is_staff
    assert result["management-redirect"]["href"] == f"/management/proposals/new?pi={user.id}"
    assert message(result, "user-form-message") == (
        "Created nina.vega; a link to set a password was sent to nina.vega@example.org.")
    mails = outbox(app)
    assert len(mails) == 1 and mails[0]["To"] == "nina.vega@example.org"
    assert mails[0]["Subject"] == "GSP Live: your new account"
    assert "/set-password/" in mails[0].get_payload(decode=True).decode()
    assert events("user_created")[-1].details == {"field": "user", "old": None, "new": "nina.vega"}
    # the proposal form has the new user preselected and the SOAR id defaulted
    form = render(client, dash_app, "/management/proposals/new", f"?pi={user.id}")
    semester = semester_of()
    assert f'"value": {user.id}, "placeholder": "Select the PI"' in form or f'"value": {user.id}' in form
    assert f'"value": "{semester}"' in form and f'"value": "{next_soar_id(semester)}"' in form
    assert "Nina Vega (nina.vega, nina.vega@example.org)" in form


def test_add_user_refusals_change_nothing(client, dash_app, people, app):
    login(client, "staff")
    before = user_count()
    cases = [
        (dict(username="pi", email="other@example.org", partner="SOAR"), "A user with username 'pi' already exists."),
        (dict(username="", email="PI@example.org", partner="SOAR"),
         "A user with e-mail 'pi@example.org' already exists."),
        (dict(username="x", email="not-an-email", partner="SOAR"), "'not-an-email' is not a valid e-mail address."),
        (dict(username="bad name", email="ok@example.org", partner="SOAR"),
         "Username must be 1-150 letters, digits or . @ + - _ characters."),
        (dict(username="ok", email="ok@example.org", partner=None),
         "Please select a partner (OTHER, SOAR, NOIRLab, Brazil, UNC, MSU, Chile)."),
    ]
    for fields, expected in cases:
        result = create_user_call(client, dash_app, **fields).json["response"]
        assert message(result, "user-form-message") == expected, fields
        assert "management-redirect" not in result
    assert user_count() == before and outbox(app) == [] and events("user_created") == []


@pytest.mark.both_databases
def test_add_proposal_and_refusals(client, dash_app, people):
    from db import db
    from db.models import Proposal

    login(client, "staff")
    pi = people["users"]["pi"]
    before = proposal_count()
    refusals = [
        (dict(pi=pi.id, semester="2026B", title="Dup"), "SOAR2026B-001",
         "A proposal with SOAR id 'SOAR2026B-001' already exists."),
        (dict(pi=pi.id, semester="2026C", title="Bad"), "SOAR2026C-001",
         "The semester must look like 2026B (year, then A or B)."),
        (dict(pi=None, semester="2026B", title="No PI"), "SOAR2026B-003", "Please select the PI."),
        (dict(pi=99999, semester="2026B", title="Ghost PI"), "SOAR2026B-003", "Please select the PI."),
        (dict(pi=pi.id, semester="2026B", title=" "), "SOAR2026B-003", "A proposal needs a title."),
        (dict(pi=pi.id, semester="2026B", title="No id"), "  ", "A proposal needs a SOAR id."),
    ]
    for fields, soar_id, expected in refusals:
        result = create_proposal_call(client, dash_app, **fields, **{"soar-id": soar_id}).json["response"]
        assert message(result, "proposal-form-message") == expected, fields
        assert "management-redirect" not in result
    assert proposal_count() == before and events("proposal_created") == []
    result = create_proposal_call(client, dash_app, pi=pi.id, semester="2026b", **{"soar-id": "SOAR2026B-003"},
                                  title="Supernovae", abstract="Type Ia.").json["response"]
    proposal = db.session.scalar(sa.select(Proposal).where(Proposal.soar_id == "SOAR2026B-003"))
    assert result["management-redirect"]["href"] == f"/proposals/{proposal.id}"
    assert (proposal.pi_id, proposal.semester, proposal.title, proposal.abstract) == (pi.id, "2026B", "Supernovae",
                                                                                      "Type Ia.")
    assert proposal.settings is not None and proposal.settings.min_bias == 10
    assert events("proposal_created")[-1].proposal_id == proposal.id
    # the semester field re-defaults the SOAR id to the next free number
    assert dash_update(client, dash_app, "proposal-soar-id.value", {"proposal-semester.value": "2026B"},
                       changed=["proposal-semester.value"]).json["response"]["proposal-soar-id"]["value"] == \
        "SOAR2026B-004"
    assert dash_update(client, dash_app, "proposal-soar-id.value", {"proposal-semester.value": "2031a"},
                       changed=["proposal-semester.value"]).json["response"]["proposal-soar-id"]["value"] == \
        "SOAR2031A-001"
    unchanged = dash_update(client, dash_app, "proposal-soar-id.value", {"proposal-semester.value": "soon"},
                            changed=["proposal-semester.value"])
    assert unchanged.status_code in (200, 204) and "proposal-soar-id" not in (unchanged.get_json(silent=True) or {}
                                                                              ).get("response", {})


def test_semesters_and_next_free_soar_id(app, people):
    from auth.accounts import create_proposal, next_soar_id, semester_of
    from db import db

    assert [semester_of(date(2027, m, 15)) for m in (1, 2, 7, 8, 12)] == ["2026B", "2027A", "2027A", "2027B",
                                                                          "2027B"]
    assert next_soar_id("2026B") == "SOAR2026B-003"
    assert next_soar_id("2027A") == "SOAR2027A-001"
    create_proposal(soar_id="SOAR2026B-010", pi=None, semester="2026B", title="Gap")
    create_proposal(soar_id="SOAR2026B-notanumber", pi=None, semester="2026B", title="Odd")
    db.session.commit()
    assert next_soar_id("2026B") == "SOAR2026B-011"


def test_manage_users_search_and_actions(client, dash_app, people, superuser, app):
    from auth.accounts import create_user
    from db import db

    other_staff = create_user(username="staff2", email="staff2@example.org", is_staff=True)
    db.session.commit()
    login(client, "staff")
    table = dash_update(client, dash_app, "users-table.children", {"users-search.value": "tester"}).json["response"]
    shown = texts(json.dumps(table["users-table"]))
    assert "Showing 4 of 4 users." in shown and "root" not in shown  # "Tester" is everybody's last name but root's
    assert "Make staff" not in shown  # only a superuser sees staff buttons
    pi = people["users"]["pi"]
    result = user_action(client, dash_app, "deactivate", pi.id).json["response"]
    assert message(result, "users-message") == "pi is now inactive."
    db.session.expire_all()
    assert pi.is_active is False
    assert events("user_deactivated")[-1].details == {"field": "is_active", "old": True, "new": False}
    assert client.get("/api/", headers={"Authorization": f"Token {people['tokens']['pi']}"}).status_code == 401
    result = user_action(client, dash_app, "activate", pi.id).json["response"]
    db.session.expire_all()
    assert message(result, "users-message") == "pi is now active." and pi.is_active is True
    refusals = [("deactivate", people["users"]["staff"].id, "You cannot deactivate or activate your own account."),
                ("deactivate", other_staff.id, "Only a superuser may activate or deactivate staff accounts."),
                ("staff", pi.id, "Only a superuser may make someone staff."),
                ("deactivate", 99999, "No such user.")]
    for action, user_id, expected in refusals:
        assert message(user_action(client, dash_app, action, user_id).json["response"], "users-message") == expected
    db.session.expire_all()
    assert other_staff.is_active and not pi.is_staff
    result = user_action(client, dash_app, "reset", pi.id).json["response"]
    assert message(result, "users-message") == "A link to set a new password was sent to pi@example.org."
    assert [m["To"] for m in outbox(app)] == ["pi@example.org"]
    log_out(client)
    # the superuser may grant staff and deactivate staff
    login(client, "root")
    table = dash_update(client, dash_app, "users-table.children", {"users-search.value": ""}).json["response"]
    assert "Make staff" in texts(json.dumps(table["users-table"]))
    result = user_action(client, dash_app, "staff", pi.id).json["response"]
    assert message(result, "users-message") == "pi is now staff."
    assert message(user_action(client, dash_app, "deactivate", other_staff.id).json["response"],
                   "users-message") == "staff2 is now inactive."
    assert message(user_action(client, dash_app, "unstaff", superuser["user"].id).json["response"],
                   "users-message") == "You cannot change your own staff status."
    db.session.expire_all()
    assert pi.is_staff is True and other_staff.is_active is False
    assert events("staff_granted")[-1].subject == "pi"


def test_manage_proposals_lists_and_links(client, dash_app, people):
    login(client, "staff")
    result = dash_update(client, dash_app, "managed-proposals-table.children",
                         {"managed-proposals-search.value": None}).json["response"]
    table = json.dumps(result["managed-proposals-table"])
    assert "Showing 2 of 2 proposals." in texts(table)
    assert re.search(rf'"href": "/proposals/{people["proposal"].id}"', table)
    assert "SOAR2026B-001" in table and "SOAR2026B-002" in table and "Pi Tester" in table
    searched = dash_update(client, dash_app, "managed-proposals-table.children",
                           {"managed-proposals-search.value": "stranger"}).json["response"]
    assert "SOAR2026B-001" not in json.dumps(searched) and "SOAR2026B-002" in json.dumps(searched)
