"""E-mail through a real SMTP server on loopback (aiosmtpd): POST /api/email/, the set-password
mail of a new collaborator followed all the way to a login, and mail-server failures."""
from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from tests.conftest import auth_header, free_port
from tests.test_proposals import collaborator_emails, events, login  # noqa: F401

PUBLIC_URL = "https://gsp.example.org/live"


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"from": envelope.mail_from, "rcpt": list(envelope.rcpt_tos),
                              "message": message_from_bytes(envelope.content, policy=policy.default)})
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
def app_config(smtp):
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp.port, "PUBLIC_URL": PUBLIC_URL,
            "MAIL_FROM": "GSP Live <gsp@example.org>"}


def body_of(received) -> str:
    return received["message"].get_content().replace("\r\n", "\n")  # SMTP line ends


@pytest.mark.both_databases
def test_staff_send_a_notification(client, people, smtp):
    response = client.post("/api/email/", headers=auth_header(people["tokens"]["staff"]),
                           json={"to": ["pi@example.org", "Collab@Example.org"], "subject": "Tonight's data",
                                 "message": "Your spectra are reduced.\nClear skies!"})
    assert response.status_code == 200
    assert response.json == {"sent": True, "to": ["pi@example.org", "collab@example.org"],
                             "subject": "Tonight's data"}
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received["rcpt"] == ["pi@example.org", "collab@example.org"]
    assert received["message"]["Subject"] == "Tonight's data"
    assert received["message"]["From"] == "GSP Live <gsp@example.org>"
    assert body_of(received) == "Your spectra are reduced.\nClear skies!\n"
    entry = events("email_sent")[-1]
    assert entry.user_id == people["users"]["staff"].id
    assert entry.details == {"to": ["pi@example.org", "collab@example.org"], "subject": "Tonight's data"}
    # one recipient as "email" works too
    single = client.post("/api/email/", headers=auth_header(people["tokens"]["staff"]),
                         json={"email": "stranger@example.org", "subject": "Hi", "message": "Hello."})
    assert single.status_code == 200 and smtp.messages[1]["rcpt"] == ["stranger@example.org"]


def test_only_staff_may_send(client, people, smtp):
    for who in ("pi", "collab", "stranger"):
        response = client.post("/api/email/", headers=auth_header(people["tokens"][who]),
                               json={"to": ["x@example.org"], "subject": "Spam", "message": "Spam."})
        assert response.status_code == 403, who
        assert response.json == {"detail": "Only staff may send e-mail notifications."}
    assert client.post("/api/email/", json={"to": ["x@example.org"], "subject": "s", "message": "m"}).status_code == 401
    assert smtp.messages == [] and events("email_sent") == []


def test_bad_email_requests_send_nothing(client, people, smtp):
    cases = [
        ({"subject": "s", "message": "m"}, "Give the recipients as 'to' (a list of e-mail addresses) or 'email'."),
        ({"to": [], "subject": "s", "message": "m"},
         "Give the recipients as 'to' (a list of e-mail addresses) or 'email'."),
        ({"to": ["pi@example.org", "not-an-email"], "subject": "s", "message": "m"},
         "'not-an-email' is not a valid e-mail address."),
        ({"to": ["pi@example.org"], "message": "m"}, "'subject' is required."),
        ({"to": ["pi@example.org"], "subject": "a\r\nBcc: victim@example.org", "message": "m"},
         "'subject' must be one line of at most 200 characters."),
        ({"to": ["pi@example.org"], "subject": "s", "message": "  "}, "'message' is required."),
        ({"to": [f"u{i}@example.org" for i in range(101)], "subject": "s", "message": "m"},
         "At most 100 recipients per message."),
    ]
    for body, detail in cases:
        response = client.post("/api/email/", headers=auth_header(people["tokens"]["staff"]), json=body)
        assert response.status_code == 400, body
        assert response.json == {"detail": detail}, body
    response = client.post("/api/email/", headers=auth_header(people["tokens"]["staff"]), data="[1]",
                           content_type="application/json")
    assert response.status_code == 400 and response.json == {"detail": "The body must be a JSON object."}
    assert smtp.messages == [] and events("email_sent") == []


def test_mail_server_down_is_a_clean_502(client, people, app, smtp):
    app.config["SMTP_PORT"] = free_port()  # nothing listens there
    response = client.post("/api/email/", headers=auth_header(people["tokens"]["staff"]),
                           json={"to": ["pi@example.org"], "subject": "s", "message": "m"})
    assert response.status_code == 502
    assert response.json == {"detail": "The mail server refused the message or could not be reached "
                                       "(ConnectionRefusedError)."}
    # adding a collaborator who needs a set-password mail changes nothing when the mail cannot go
    from db import db
    from db.models import User

    added = client.post(f"/api/proposals/collaborators/{people['proposal'].id}/",
                        headers=auth_header(people["tokens"]["pi"]),
                        json={"email": "newcomer@example.org", "action": "add"})
    assert added.status_code == 502
    assert added.json["detail"].startswith("The e-mail to newcomer@example.org could not be sent")
    assert added.json["detail"].endswith("nothing was changed.")
    assert db.session.scalar(sa.select(User).where(User.email == "newcomer@example.org")) is None
    assert collaborator_emails(people["proposal"].id) == ["collab@example.org"]
    assert events("collaborator_added") == []


@pytest.mark.both_databases
def test_new_collaborator_follows_the_mailed_link_and_logs_in(client, people, smtp):
    response = client.post(f"/api/proposals/collaborators/{people['proposal'].id}/",
                           headers=auth_header(people["tokens"]["pi"]),
                           json={"email": "Vera.Rubin@Observatory.example", "action": "add"})
    assert response.status_code == 200
    assert response.json["collaborators"][-1]["username"] == "vera.rubin"
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received["rcpt"] == ["vera.rubin@observatory.example"]
    assert received["message"]["Subject"] == "GSP Live: you were added to SOAR2026B-001"
    body = body_of(received)
    assert "Pi Tester added you as a collaborator of the observing proposal SOAR2026B-001 (Quasars)" in body
    assert "Your username is: vera.rubin" in body
    assert f"Then sign in at {PUBLIC_URL}/login" in body
    link = re.search(rf"{re.escape(PUBLIC_URL)}/set-password/(\S+)", body)
    assert link, body
    path = f"/set-password/{link.group(1)}"
    form = client.get(path)
    assert form.status_code == 200 and "Set a password for vera.rubin" in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = client.post(path, data={"new_password1": "Hydrogen-Alpha-6563", "new_password2": "Hydrogen-Alpha-6563",
                                   "csrf_token": csrf})
    assert done.status_code == 200 and "Your password has been set." in done.text
    assert client.get(path).status_code == 400  # single use
    login(client, "vera.rubin", "Hydrogen-Alpha-6563")
    mine = client.get("/api/proposals/").json
    assert [p["soar_id"] for p in mine["results"]] == ["SOAR2026B-001"]


def test_staff_reset_mail_through_smtp(client, dash_app, people, smtp):
    from tests.test_proposals import dash_update

    login(client, "staff")
    pi = people["users"]["pi"]
    action = {"type": "users-action", "action": "reset", "user": pi.id}
    response = dash_update(client, dash_app, "users-table.children",
                           {"users-search.value": "pi",
                            '{"action":["ALL"],"type":"users-action","user":["ALL"]}.n_clicks': [(action, 1)]},
                           changed=['{"action":"reset","type":"users-action","user":%d}.n_clicks' % pi.id])
    assert response.status_code == 200
    assert len(smtp.messages) == 1 and smtp.messages[0]["rcpt"] == ["pi@example.org"]
    assert smtp.messages[0]["message"]["Subject"] == "GSP Live: set a new password"
    assert f"{PUBLIC_URL}/set-password/" in body_of(smtp.messages[0])
    assert events("password_reset_sent")[-1].subject == "pi"
