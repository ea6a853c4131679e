"""Users edit their own first and last name, e-mail (valid, unique) and partner on the user panel."""
from __future__ import annotations

import json

import pytest

from tests.test_proposals import dash_update, events, login, texts  # noqa: F401


def save(client, dash_app, first="Ada", last="Lovelace", email="ada@example.org", partner="Chile"):
    response = dash_update(client, dash_app, "account-message.children",
                           {"account-save.n_clicks": 1, "account-edit-first-name.value": first,
                            "account-edit-last-name.value": last, "account-edit-email.value": email,
                            "account-edit-partner.value": partner}, changed=["account-save.n_clicks"])
    assert response.status_code == 200, response.text
    return texts(json.dumps(response.json["response"]["account-message"]["children"]))


@pytest.mark.both_databases
def test_users_edit_their_own_details(client, dash_app, people):
    from db import db

    pi = people["users"]["pi"]
    login(client, "pi")
    for values, message in (({"email": "not-an-address"}, "'not-an-address' is not a valid e-mail address."),
                            ({"email": "COLLAB@example.org"}, "Another account uses collab@example.org."),
                            ({"partner": "Mars"}, "Please select a partner"),
                            ({"first": "x" * 151}, "Names may be at most 150 characters.")):
        assert message in save(client, dash_app, **values), values
    db.session.expire_all()
    assert (pi.first_name, pi.email, pi.partner) == ("Pi", "pi@example.org", "OTHER")
    assert "Saved." in save(client, dash_app, email=" Ada@Example.org ")
    db.session.expire_all()
    assert (pi.first_name, pi.last_name, pi.email, pi.partner) == ("Ada", "Lovelace", "ada@example.org", "Chile")
    assert [e.details["field"] for e in events("profile_changed")] == ["first_name", "last_name", "email", "partner"]
    assert "No changes to save." in save(client, dash_app)
