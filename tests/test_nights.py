"""The night at a glance: GET /api/nights/ and /api/nights/<date>/ on a constructed night whose counts and
readiness are known, the permission matrix (staff, PI, collaborator, another proposal, anonymous), and
bad dates; what a configuration needs comes from the chain and the proposal's settings."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline import chain
from pipeline.settings import ReductionSettings
from tests.conftest import auth_header

NIGHT = "2026-11-27"
CONFIGS = {
    "400_M2": {"grating": "400_SYZY", "wavmode": "400_M2", "filter_2": "GG455", "cam_targ": 16.1, "grt_targ": 7.5},
    "930_M2": {"grating": "930_SYZY", "wavmode": "930_M2", "filter_2": "NO_FILTER", "cam_targ": 44.0,
               "grt_targ": 22.0},
}
OBJECTS = {"BIAS": "BIAS", "FLAT": "Quartz", "COMP": "HgArNe", "SPECTRUM": "NGC5128"}
_numbers = iter(range(1, 10**6))


def night_frame(proposal, obstype: str, config: str = "400_M2", *, state: str = "done", date: str = NIGHT,
                data_type: int = 0, name: str | None = None, normalized: bool = False, **overrides):
    """A catalogue row as ingest makes it (its classification holds what matching reads)."""
    from db import db
    from db.models import File

    number = next(_numbers)
    fields = {"obstype": obstype, "technique": "Spectroscopy", "object": OBJECTS.get(obstype, obstype),
              "instconf": "Red", "filter": "NO_FILTER", "slit": "1.0_LONG_SLIT", "roi": "Spectroscopic 2x2",
              "binning": "2x2", "gain": 1.48, "rdnoise": 3.89, "obsra": "13:25:27.6", "obsdec": "-43:01:09",
              **CONFIGS[config], **overrides}
    moment = datetime.fromisoformat(f"{date}T23:00:00+00:00") + timedelta(minutes=number)
    name = name or f"{number:04d}_{fields['object']}_{config}.fits"
    row = File(file_name=name, directory_name="/data/raw", full_path=f"/data/raw/{date}/{name}",
               data_type=data_type, proposal_id=getattr(proposal, "id", None), state=state, date=date,
               date_obs=moment, classification={**fields, "date_obs": moment.isoformat()},
               normalized=normalized, **{k: str(v) for k, v in fields.items() if k not in ("binning", "gain", "rdnoise")})
    db.session.add(row)
    return row


@pytest.fixture
def constructed_night(app, people):
    """SOAR2026B-001 (PI 'pi', collaborator 'collab'; 3 bias and 5 flats needed) observed two configurations;
    SOAR2026B-002 ('stranger') has one science frame that night and a night of its own."""
    from db import db
    from db.models import Job

    proposal, other = people["proposal"], people["other_proposal"]
    proposal.settings.min_bias, proposal.settings.min_flats = 3, 5
    for _ in range(3):
        night_frame(proposal, "BIAS")
    for _ in range(5):
        night_frame(proposal, "FLAT")
    science = [night_frame(proposal, "SPECTRUM"), night_frame(proposal, "SPECTRUM", state="waiting")]
    night_frame(proposal, "COMP", state="running")
    for _ in range(2):
        night_frame(proposal, "FLAT", "930_M2", state="waiting")
    night_frame(proposal, "SPECTRUM", "930_M2", state="queued")
    night_frame(proposal, "SPECTRUM", state="failed")
    # the night's masters (everyone's): the 400_M2 group's bias and normalized flat
    night_frame(None, "BIAS", data_type=1, name="master_bias_2x2.fits")
    night_frame(None, "FLAT", data_type=1, normalized=True)
    night_frame(other, "SPECTRUM", object="SECRET")
    night_frame(other, "SPECTRUM", date="2026-11-26", object="SECRET")
    db.session.flush()
    db.session.add_all([Job(kind="reduce", file_id=science[0].id, state="done"),
                        Job(kind="reduce", file_id=science[1].id, state="waiting"),
                        Job(kind="extract", file_id=science[1].id, state="queued")])
    db.session.commit()
    return {"science": science}


def get(client, people, who, path):
    headers = auth_header(people["tokens"][who]) if who else {}
    return client.get(path, headers=headers)


MISSING_FOR_THE_PI = ["no standard star yet for 400_M2 / GG455 (flux calibration)",
                      "3 more flats needed for 930_M2", "no arc yet for 930_M2",
                      "no standard star yet for 930_M2 (flux calibration)"]


@pytest.mark.both_databases
def test_night_summary_counts_and_readiness(client, people, constructed_night):
    response = get(client, people, "pi", f"/api/nights/{NIGHT}/")
    assert response.status_code == 200, response.text
    night = response.json
    assert night["date"] == NIGHT and night["total"] == 15
    assert night["files"] == {"running": 1, "queued": 1, "waiting": 3, "failed": 1, "done": 9, "ingested": 0}
    assert night["jobs"] == {"queued": 1, "running": 0, "waiting": 1, "done": 1, "failed": 0}
    assert night["queue"]["ok"] is True and "workers" in night["queue"]
    by_label = {c["label"]: c for c in night["configurations"]}
    assert list(by_label) == ["400_M2 / GG455", "930_M2"]
    wide = by_label["400_M2 / GG455"]
    assert (wide["camera"], wide["grating"], wide["binning"], wide["proposal"]) == (
        "Red", "400_SYZY", "2x2", "SOAR2026B-001")
    assert wide["frames"] == {"flat": 5, "science": 2, "arc": 1}
    assert wide["readiness"]["bias"] == {"needed": True, "ready": True, "have": 3, "need": 3,
                                         "master": "master_bias_2x2.fits", "missing": ""}
    assert wide["readiness"]["flats"]["ready"] and wide["readiness"]["flats"]["have"] == 5
    assert wide["readiness"]["arc"] == {"needed": True, "ready": True, "have": 1, "need": 1, "master": None,
                                        "missing": ""}
    assert not wide["ready"] and wide["missing"] == [MISSING_FOR_THE_PI[0]]
    narrow = by_label["930_M2"]
    assert narrow["readiness"]["bias"]["ready"]  # the same readout: the 400_M2 bias serve it
    assert narrow["readiness"]["flats"] == {"needed": True, "ready": False, "have": 2, "need": 5, "master": None,
                                            "missing": "3 more flats needed for 930_M2"}
    assert night["missing"] == MISSING_FOR_THE_PI


@pytest.mark.both_databases
def test_who_sees_which_night(client, people, constructed_night):
    for who in ("pi", "collab"):
        assert get(client, people, who, f"/api/nights/{NIGHT}/").json["total"] == 15, who
        listed = get(client, people, who, "/api/nights/").json
        assert [n["date"] for n in listed["results"]] == [NIGHT], who
    staff = get(client, people, "staff", f"/api/nights/{NIGHT}/").json
    assert staff["total"] == 16 and staff["files"]["done"] == 10
    # two proposals observed 400_M2 / GG455: the labels say whose
    assert [c["label"] for c in staff["configurations"]] == [
        "400_M2 / GG455 / SOAR2026B-001", "930_M2", "400_M2 / GG455 / SOAR2026B-002"]
    listed = get(client, people, "staff", "/api/nights/").json
    assert listed["count"] == 2
    assert [(n["date"], n["total"]) for n in listed["results"]] == [(NIGHT, 16), ("2026-11-26", 1)]
    assert listed["results"][0]["url"] == f"/api/nights/{NIGHT}/"
    stranger = get(client, people, "stranger", f"/api/nights/{NIGHT}/").json
    assert stranger["total"] == 1 and "SOAR2026B-001" not in str(stranger)
    # a night with none of the caller's raw files is not found, masters or not
    assert get(client, people, "pi", "/api/nights/2026-11-26/").status_code == 404
    assert get(client, people, "pi", "/api/nights/2026-11-25/").json == {
        "detail": "No night 2026-11-25 among your files."}
    for path in ("/api/nights/", f"/api/nights/{NIGHT}/"):
        assert get(client, people, None, path).status_code == 401, path


def test_nights_page_and_bad_dates(client, people, constructed_night):
    page = get(client, people, "staff", "/api/nights/?page=2&page_size=1").json
    assert page["count"] == 2 and [n["date"] for n in page["results"]] == ["2026-11-26"]
    assert page["next"] is None and page["previous"].endswith("page=1&page_size=1")
    for bad in ("yesterday", "2026-13-01", "2026-11-31"):
        response = get(client, people, "pi", f"/api/nights/{bad}/")
        assert response.status_code == 400, bad
        assert response.json == {"detail": f"'date' must be a date like 2026-11-27, not '{bad}'."}
    assert get(client, people, "pi", "/api/nights/?page=0").status_code == 400


def test_settings_say_what_is_needed(app, people, constructed_night):
    """Ignored bias and flats are not needed; with flux calibration off no standard star is."""
    from flask_login import login_user

    from auth.nights import night_summary
    from db import db

    settings = people["proposal"].settings
    settings.ignore_flats, settings.flux_calibration = True, False
    db.session.commit()
    with app.test_request_context():
        login_user(people["users"]["pi"])
        night = night_summary(people["users"]["pi"], NIGHT)
    assert night["missing"] == ["no arc yet for 930_M2"]
    flats = night["configurations"][1]["readiness"]["flats"]
    assert (flats["needed"], flats["ready"], flats["missing"]) == (False, True, "")


def test_the_chain_says_what_a_frame_needs():
    settings = ReductionSettings()
    assert chain.needs_of("science", "Spectroscopy", settings) == [
        chain.MASTER_BIAS, chain.MASTER_FLAT, chain.ARC, chain.SENSITIVITY]
    assert chain.needs_of("science", "Spectroscopy", ReductionSettings(flux_calibration=False, ignore_bias=True)) \
        == [chain.MASTER_FLAT, chain.ARC]
    assert chain.needs_of("imaging", "Imaging", settings) == [chain.MASTER_BIAS, chain.MASTER_FLAT]
    assert chain.needs_of("bias", "Spectroscopy", settings) == []
