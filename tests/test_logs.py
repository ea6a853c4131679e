"""The event log: who sees which entries (auth.audit), filters, pagination, GET /api/logs/, the Logs page."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import auth_header, log_out
from tests.test_proposals import dash_update, login, render, texts  # noqa: F401

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)


@pytest.fixture
def log(people):
    """Events of every kind, one minute apart (oldest first); returns their messages by key."""
    from db import db
    from db.events import log_event
    from db.models import File

    def file(name, proposal, data_type=0):
        row = File(file_name=name, directory_name="/data/raw", full_path=f"/data/raw/{name}",
                   proposal_id=proposal.id if proposal else None, data_type=data_type)
        db.session.add(row)
        db.session.flush()
        return row

    mine = file("0001_quasar.fits", people["proposal"])
    theirs = file("0002_other.fits", people["other_proposal"])
    master = file("master_bias_2x2.fits", None, data_type=1)
    specs = [
        ("login", dict(event="login_failed", message="Failed login for 'eve'.", level="WARNING", subject="eve")),
        ("settings", dict(event="settings_changed", message="pi changed min_bias of SOAR2026B-001 from 10 to 5.",
                          user=people["users"]["pi"], proposal_id=people["proposal"].id,
                          details={"field": "min_bias", "old": 10, "new": 5})),
        ("mine_file", dict(event="file_reduced", message="Reduced 0001_quasar.fits (100% done).", file_id=mine.id)),
        ("theirs_file", dict(event="job_failed", message="Extraction of 0002_other.fits failed.", level="ERROR",
                             file_id=theirs.id)),
        ("theirs", dict(event="collaborator_added", message="stranger added x to SOAR2026B-002.",
                        proposal_id=people["other_proposal"].id)),
        ("master", dict(event="master_built", message="Master bias built from 10 frames (under_score).",
                        file_id=master.id)),
    ]
    entries = {}
    for minute, (key, kwargs) in enumerate(specs):
        entry = log_event(**kwargs)
        entry.created = T0 + timedelta(minutes=minute)
        entries[key] = entry
    db.session.commit()
    return {key: entry.message for key, entry in entries.items()}


def messages(page) -> list[str]:
    return [entry.message for entry, _soar, _user in page.rows]


@pytest.mark.both_databases
def test_visibility_newest_first(people, log):
    from auth.audit import list_log_entries

    users = people["users"]
    assert messages(list_log_entries(users["staff"])) == [log[k] for k in (
        "master", "theirs", "theirs_file", "mine_file", "settings", "login")]
    for who in ("pi", "collab"):
        assert messages(list_log_entries(users[who])) == [log["master"], log["mine_file"], log["settings"]], who
    assert messages(list_log_entries(users["stranger"])) == [log["master"], log["theirs"], log["theirs_file"]]
    row = list_log_entries(users["pi"], text="min_bias").rows[0]
    assert row[1:] == ("SOAR2026B-001", "pi")


@pytest.mark.both_databases
def test_filters_and_pages(people, log):
    from auth.audit import LogQueryError, list_log_entries

    staff = people["users"]["staff"]
    assert messages(list_log_entries(staff, level="warning")) == [log["login"]]
    assert messages(list_log_entries(staff, level="ERROR")) == [log["theirs_file"]]
    assert messages(list_log_entries(staff, proposal="SOAR2026B-002")) == [log["theirs"]]
    assert messages(list_log_entries(staff, proposal=str(people["proposal"].id))) == [log["settings"]]
    assert messages(list_log_entries(staff, text="QUASAR")) == [log["mine_file"]]
    assert messages(list_log_entries(staff, text="100%")) == [log["mine_file"]]  # % is literal
    assert messages(list_log_entries(staff, text="r_s")) == [log["master"]]  # _ is literal
    assert messages(list_log_entries(staff, text="eve")) == [log["login"]]  # subject is searched
    # a user's filter cannot reach past visibility
    assert messages(list_log_entries(people["users"]["pi"], proposal="SOAR2026B-002")) == []
    assert messages(list_log_entries(people["users"]["pi"], level="WARNING")) == []
    page = list_log_entries(staff, page=2, page_size=4)
    assert (page.count, page.pages, page.has_next, len(page.rows)) == (6, 2, False, 2)
    assert messages(page) == [log["settings"], log["login"]]
    for kwargs, error in ((dict(level="LOUD"), "'level' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."),
                          (dict(page=0), "'page' must be at least 1."),
                          (dict(page_size="x"), "'page_size' must be a whole number, not 'x'."),
                          (dict(page_size=501), "'page_size' may be at most 500.")):
        with pytest.raises(LogQueryError, match=error.replace(".", r"\.").replace("(", r"\(")):
            list_log_entries(staff, **kwargs)


@pytest.mark.both_databases
def test_api_logs(client, people, log):
    response = client.get("/api/logs/?page_size=2", headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 200
    body = response.json
    assert body["count"] == 3 and body["previous"] is None
    assert body["next"] == "http://localhost/api/logs/?page_size=2&page=2"
    first = body["results"][0]
    assert set(first) == {"id", "created", "level", "event", "message", "user", "proposal_id", "file_id", "subject",
                          "details"}
    assert first["message"] == log["master"] and first["level"] == "INFO"
    assert body["results"][1]["message"] == log["mine_file"]
    settings = client.get("/api/logs/?search=min_bias", headers=auth_header(people["tokens"]["pi"])).json["results"]
    assert settings == [{**settings[0], "event": "settings_changed", "user": "pi", "proposal_id": "SOAR2026B-001",
                         "details": {"field": "min_bias", "old": 10, "new": 5}}]
    staff = client.get("/api/logs/?level=WARNING", headers=auth_header(people["tokens"]["staff"])).json
    assert [r["event"] for r in staff["results"]] == ["login_failed"]
    bad = client.get("/api/logs/?level=LOUD", headers=auth_header(people["tokens"]["staff"]))
    assert bad.status_code == 400
    assert bad.json == {"detail": "'level' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."}


def _show(client, dash_app, level="all", proposal="all", text="", page=1, changed="logs-level.value"):
    response = dash_update(client, dash_app, "logs-table.children",
                           {"logs-level.value": level, "logs-proposal.value": proposal, "logs-text.value": text,
                            "logs-page.active_page": page}, changed=[changed])
    assert response.status_code == 200
    return response.json["response"]


def test_logs_page(client, dash_app, people, log):
    login(client, "pi")
    page = render(client, dash_app, "/logs")
    assert "Events of your proposals and of the files you can see." in texts(page)
    assert '"label": "SOAR2026B-001"' in page and "SOAR2026B-002" not in page
    result = _show(client, dash_app)
    table = texts(json.dumps(result["logs-table"]))
    assert result["logs-count"]["children"] == "3"
    assert log["settings"] in table and log["master"] in table and log["mine_file"] in table
    assert "Failed login" not in table and "0002_other" not in table
    assert "min_bias: 10 → 5" in table
    log_out(client)
    login(client, "staff")
    result = _show(client, dash_app, level="WARNING")
    assert result["logs-count"]["children"] == "1"
    assert log["login"] in texts(json.dumps(result["logs-table"]))
    result = _show(client, dash_app, text="no such thing")
    assert "No events match." in texts(json.dumps(result["logs-table"]))
    # paging: 50 a page; page 2 of 60 entries holds the 10 oldest
    from db import db
    from db.events import log_event

    for number in range(54):
        log_event("tick", f"tick {number:02d}").created = T0 + timedelta(hours=1, minutes=number)
    db.session.commit()
    first = _show(client, dash_app)
    assert (first["logs-count"]["children"], first["logs-page"]["max_value"], first["logs-page"]["active_page"]) == (
        "60", 2, 1)
    second = _show(client, dash_app, page=2, changed="logs-page.active_page")
    assert second["logs-page"]["active_page"] == 2
    table = texts(json.dumps(second["logs-table"]))
    assert "tick 03" in table and "tick 04" not in table and log["login"] in table
    # a new filter starts again on page 1
    assert _show(client, dash_app, level="INFO", page=2, changed="logs-level.value")["logs-page"]["active_page"] == 1
