"""Staff set a proposal's PI, semester and title: PATCH /api/proposals/<id>/ (the permission matrix and
validation, on SQLite and PostgreSQL), the audit trail, placeholders, and ``flask proposals set``."""
from __future__ import annotations

import pytest

from tests.conftest import auth_header, log_out
from tests.test_proposals import events, superuser  # noqa: F401

both = pytest.mark.both_databases


def patch(client, people, who, proposal_id, body, token=None):
    headers = auth_header(token or people["tokens"][who]) if who else {}
    return client.patch(f"/api/proposals/{proposal_id}/", json=body, headers=headers)


def details(proposal_id) -> tuple:
    from db import db
    from db.models import Proposal

    db.session.expire_all()
    proposal = db.session.get(Proposal, proposal_id)
    return (proposal.pi.username if proposal.pi else None, proposal.semester, proposal.title,
            [user.username for user in proposal.collaborators], proposal.placeholder)


@both
def test_only_staff_change_details_others_are_refused(client, people, superuser):  # noqa: F811
    proposal, users = people["proposal"], people["users"]
    before = details(proposal.id)
    refused = {"pi": (403, "Only staff may change the PI, semester or title of SOAR2026B-001."),
               "collab": (403, "Only staff may change the PI, semester or title of SOAR2026B-001."),
               "stranger": (404, "Not found.")}
    for who, (status, detail) in refused.items():
        response = patch(client, people, who, proposal.id, {"title": "Mine now"})
        assert (response.status_code, response.json) == (status, {"detail": detail}), who
    assert patch(client, people, None, proposal.id, {"title": "Mine now"}).status_code == 401
    assert details(proposal.id) == before and events("proposal_changed") == []

    response = patch(client, people, "staff", proposal.id, {"pi": users["stranger"].id, "semester": "2027a",
                                                            "title": "  Quasar outflows  "})
    assert response.status_code == 200, response.text
    assert (response.json["user"]["username"], response.json["semester"], response.json["title"]) == (
        "stranger", "2027A", "Quasar outflows")
    assert details(proposal.id)[:3] == ("stranger", "2027A", "Quasar outflows")
    assert [(e.details, e.user_id) for e in events("proposal_changed")] == [
        ({"field": "pi", "old": "pi", "new": "stranger"}, users["staff"].id),
        ({"field": "semester", "old": "2026B", "new": "2027A"}, users["staff"].id),
        ({"field": "title", "old": "Quasars", "new": "Quasar outflows"}, users["staff"].id)]
    assert events("proposal_changed")[0].message == \
        "staff changed the PI of SOAR2026B-001 from 'pi' to 'stranger'."
    # the old PI is no longer a member; the new one sees the proposal
    assert client.get(f"/api/proposals/{proposal.id}/", headers=auth_header(people["tokens"]["pi"])).status_code \
        == 404
    assert client.get("/api/proposals/SOAR2026B-001/",
                      headers=auth_header(people["tokens"]["stranger"])).status_code == 200
    # by SOAR id too, by a superuser; the same values again change (and log) nothing
    again = patch(client, people, "staff", "SOAR2026B-001", {"semester": "2027A"}, token=superuser["token"])
    assert again.status_code == 200 and len(events("proposal_changed")) == 3


BAD_DETAILS = [
    ({"pi": "2"}, "No user with id '2': 'pi' must be the id of an existing user."),
    ({"pi": True}, "No user with id True: 'pi' must be the id of an existing user."),
    ({"pi": 2**40}, f"No user with id {2**40}: 'pi' must be the id of an existing user."),
    ({"pi": None}, "No user with id None: 'pi' must be the id of an existing user."),
    ({"semester": "2026C"}, "The semester must look like 2026B (year, then A or B)."),
    ({"semester": "26B"}, "The semester must look like 2026B (year, then A or B)."),
    ({"semester": 2026}, "The semester must look like 2026B (year, then A or B)."),
    ({"title": "x" * 301}, "The title may be at most 300 characters (this one has 301)."),
    ({"title": "   "}, "A proposal needs a title."),
    ({"title": "Fine", "abstract": "no"}, "Unknown field(s): abstract; only pi, semester, title may be changed."),
    ({}, "Send at least one of pi, semester, title."),
    ([1], "Send a JSON object with any of pi, semester, title (Content-Type: application/json)."),
]


@both
def test_bad_details_are_explained_and_change_nothing(client, people):
    proposal = people["proposal"]
    before = details(proposal.id)
    for body, detail in BAD_DETAILS:
        response = patch(client, people, "staff", proposal.id, body)
        assert (response.status_code, response.json) == (400, {"detail": detail}), body
    assert details(proposal.id) == before and events("proposal_changed") == []
    nobody = patch(client, people, "staff", proposal.id, {"pi": 999999})  # an id of the right shape: not found
    assert (nobody.status_code, nobody.json) == (404, {"detail": "No user with id 999999: 'pi' must be the id of an "
                                                                 "existing user."})
    assert patch(client, people, "staff", proposal.id, {"title": "x" * 300}).status_code == 200


@both
def test_a_placeholder_gets_its_pi_who_stops_being_a_collaborator(client, people):
    from auth.accounts import add_collaborator, create_proposal
    from db import db

    placeholder = create_proposal(soar_id="SOAR2026B-777", pi=None, title="(created from a FITS header)",
                                  placeholder=True)
    db.session.flush()
    add_collaborator(placeholder, people["users"]["collab"])
    db.session.commit()
    response = patch(client, people, "staff", placeholder.id, {"pi": people["users"]["collab"].id})
    assert response.status_code == 200 and response.json["collaborators"] == []
    # the label "created from a FITS header" goes with the placeholder: no PI is what it said
    assert response.json["title"] == ""
    assert details(placeholder.id) == ("collab", "", "", [], False)
    assert [event.details for event in events("proposal_changed")] == [
        {"field": "pi", "old": None, "new": "collab"},
        {"field": "title", "old": "(created from a FITS header)", "new": ""}]
    # a proper proposal may be titled like the label: only a placeholder's label goes
    assert patch(client, people, "staff", placeholder.id,
                 {"pi": people["users"]["pi"].id, "title": "(created from a FITS header)"}).status_code == 200
    assert details(placeholder.id)[:3] == ("pi", "", "(created from a FITS header)")
    # a title given with the PI replaces the label
    other = create_proposal(soar_id="SOAR2026B-778", pi=None, title="(created from a FITS header)", placeholder=True)
    db.session.commit()
    given = patch(client, people, "staff", other.id, {"pi": people["users"]["pi"].id, "title": "Novae"})
    assert given.status_code == 200
    assert details(other.id) == ("pi", "", "Novae", [], False)


def test_the_command_line_sets_details(app, people):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["proposals", "set", "SOAR2026B-001", "--pi", "collab", "--semester", "2027A",
                                 "--title", "Outflows"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["SOAR2026B-001: pi 'pi' -> 'collab'",
                                          "SOAR2026B-001: semester '2026B' -> '2027A'",
                                          "SOAR2026B-001: title 'Quasars' -> 'Outflows'"]
    assert details(people["proposal"].id) == ("collab", "2027A", "Outflows", [], False)
    assert events("proposal_changed")[0].message == "system changed the PI of SOAR2026B-001 from 'pi' to 'collab'."
    for args, message in ((["SOAR2026B-404", "--title", "T"], "No proposal 'SOAR2026B-404'."),
                          (["SOAR2026B-001", "--pi", "nobody"], "No user 'nobody'."),
                          (["SOAR2026B-001", "--semester", "soon"], "The semester must look like 2026B")):
        result = runner.invoke(args=["proposals", "set", *args])
        assert result.exit_code == 1 and message in result.output, args


def test_the_proposal_page_form_for_staff_and_crafted_requests(client, dash_app, people):
    import json

    from tests.test_proposals import dash_update, login, render, texts

    proposal, users = people["proposal"], people["users"]

    def save(pi, semester, title):
        return dash_update(client, dash_app, "proposal-edit-message.children",
                           {"proposal-edit-save.n_clicks": 1, "proposal-id.data": proposal.id,
                            "proposal-edit-pi.value": pi, "proposal-edit-semester.value": semester,
                            "proposal-edit-title.value": title},
                           changed=["proposal-edit-save.n_clicks"]).json["response"]

    login(client, "pi")
    assert '"id": "proposal-edit-save"' not in render(client, dash_app, f"/proposals/{proposal.id}")
    refused = save(str(users["pi"].id), "2027A", "Mine")
    assert "Only staff can change the PI, semester or title of SOAR2026B-001." in texts(json.dumps(refused["proposal-edit-message"]))
    log_out(client)

    login(client, "staff")
    page = render(client, dash_app, f"/proposals/{proposal.id}")
    assert '"id": "proposal-edit-save"' in page and "Collab Tester (collab)" in page
    bad = save(str(users["pi"].id), "2027", "Quasars")
    assert "Nothing was saved: The semester must look like 2026B" in texts(json.dumps(bad["proposal-edit-message"]))
    assert len(bad) == 1  # only the message
    saved = save(str(users["collab"].id), "2027a", "Outflows")
    assert "Saved: changed the PI, the semester and the title." in texts(json.dumps(saved["proposal-edit-message"]))
    overview = texts(json.dumps(saved["proposal-overview"]))
    assert "2027A" in overview and "Outflows" in overview and "collab@example.org" in overview
    assert saved["proposal-header-pi"] == {"children": "Collab Tester"}
    assert "Proposal changed" in texts(json.dumps(saved["proposal-history"]))
    assert details(proposal.id)[:4] == ("collab", "2027A", "Outflows", [])
