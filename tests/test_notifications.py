"""Notifications (issue 24): subscriptions through the API, the outbox written with the product, signed webhooks
to a real HTTP receiver on loopback (503 then 200, too slow, gone), e-mail digests through a real SMTP server
(aiosmtpd), SSRF refusals, a removed collaborator, a subscription paused after a day of failures, night.ready, and
real worker and watcher processes killed between the commit and the delivery."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from astropy.io import fits

from tests.conftest import auth_header
from tests.test_email import body_of, smtp  # noqa: F401
from tests.test_jobs import Processes, calibration_night, copy_to_raw, own_redis, use_settings, wait_for  # noqa: F401

PUBLIC_URL = "https://gsp.example.org"


class Receiver:
    """A webhook receiver on loopback: answers each POST with the next of ``statuses`` (then 200), after
    ``delay`` seconds for the first ``slow`` requests, and keeps what it was sent."""

    def __init__(self, statuses=(), delay: float = 0.0, slow: int = 0):
        self.statuses, self.delay, self.slow, self.requests = list(statuses), delay, slow, []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body})
                    late = len(receiver.requests) <= receiver.slow
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if late:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started = []

    def start(*statuses, delay: float = 0.0, slow: int = 0) -> Receiver:
        started.append(Receiver(statuses, delay, slow))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def app_config(smtp):  # noqa: F811
    return {"REDIS_URL": "", "WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_TIMEOUT_SECONDS": 0.5,
            "WEBHOOK_RETRY_DELAYS": (0.2, 0.4), "PUBLIC_URL": PUBLIC_URL, "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp.port, "MAIL_FROM": "GSP Live <gsp@example.org>"}


def subscribe(client, people, who: str = "pi", **body) -> dict:
    body = {"proposal": "SOAR2026B-001", "events": ["spectrum.ready"], **body}
    response = client.post("/api/subscriptions/", headers=auth_header(people["tokens"][who]), json=body)
    assert response.status_code == 201, response.json
    return response.json


def raw_frame(proposal, name: str = "0042_NGC5128_400_M2.fits"):
    from db import db
    from db.models import File

    raw = File(file_name=name, directory_name="/raw", full_path=f"/raw/{name}", data_type=0, obstype="SPECTRUM",
               object="NGC5128", proposal=proposal, date="2026-11-27", state="done")
    db.session.add(raw)
    db.session.commit()
    return raw


def product(raw, data_type: int = 4, commit: bool = True):
    """A product of ``raw`` as a task catalogues it (the outbox row joins its transaction)."""
    from db import db
    from db.models import File

    prefix = {3: "e", 4: "we", 5: "fwe", 6: "cfwe"}[data_type]
    name = f"{prefix}cfzst_{raw.file_name.removesuffix('.fits')}_target_1.fits"
    row = File(file_name=name, directory_name="/p", full_path=f"/p/{name}", data_type=data_type, parent=raw,
               original=raw, proposal=raw.proposal, obstype=raw.obstype, object=raw.object, date=raw.date, target=1,
               state="done")
    db.session.add(row)
    db.session.flush()
    if commit:
        db.session.commit()
    return row


def deliveries(**where):
    from db import db
    from db.models import Delivery

    db.session.expire_all()
    return Delivery.query.filter_by(**where).order_by(Delivery.id).all()


def tick_until(predicate, timeout: float = 10.0, what: str = "the deliveries"):
    """Run the dispatcher's ticks (as the watcher does, faster) until ``predicate`` holds."""
    from db import db
    from live.queue import dispatch

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatch()
        db.session.expire_all()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {[(d.event, d.state, d.reason) for d in deliveries()]}")


def queue_on(redis_url: str):
    from live.queue import _make_queue

    return _make_queue(redis_url)


def signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- the API ----------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_members_subscribe_see_their_own_and_the_secret_once(client, people, receivers):
    from db.models import LogEntry

    url = receivers().url
    pi, collab, stranger, staff = (auth_header(people["tokens"][name]) for name in ("pi", "collab", "stranger", "staff"))
    mine = subscribe(client, people, url=url, email=True, format="slack")
    assert len(mine["secret"]) == 64 and mine["proposal"] == "SOAR2026B-001" and mine["email"] is True
    assert {key: mine[key] for key in ("events", "url", "format", "paused", "user")} == {
        "events": ["spectrum.ready"], "url": url, "format": "slack", "paused": False, "user": "pi"}
    theirs = subscribe(client, people, "collab", proposal=people["proposal"].id, url=url,
                       events=["night.ready", "spectrum.ready"])
    assert theirs["events"] == ["spectrum.ready", "night.ready"] and theirs["format"] == "json"

    listed = client.get("/api/subscriptions/", headers=pi).json
    assert [item["id"] for item in listed["results"]] == [mine["id"]] and listed["count"] == 1
    assert "secret" not in listed["results"][0]
    assert [item["id"] for item in client.get("/api/subscriptions/", headers=staff).json["results"]] == [
        mine["id"], theirs["id"]]
    refused = client.post("/api/subscriptions/", headers=stranger,
                          json={"proposal": "SOAR2026B-001", "events": ["spectrum.ready"], "url": url})
    assert (refused.status_code, refused.json) == (404, {"detail": "Proposal 'SOAR2026B-001' not found among yours."})
    for path in (f"/api/subscriptions/{mine['id']}/deliveries/", ):
        assert client.get(path, headers=collab).status_code == 404
    assert client.delete(f"/api/subscriptions/{mine['id']}/", headers=collab).status_code == 404
    assert client.get(f"/api/subscriptions/{mine['id']}/deliveries/", headers=pi).json == {
        "count": 0, "next": None, "previous": None, "results": []}
    assert client.delete(f"/api/subscriptions/{mine['id']}/", headers=pi).status_code == 204
    assert client.delete(f"/api/subscriptions/{mine['id']}/", headers=pi).status_code == 404
    logged = " ".join(entry.message for entry in LogEntry.query.all())
    assert "subscribed to spectrum.ready of SOAR2026B-001" in logged
    assert mine["secret"] not in logged and theirs["secret"] not in logged


@pytest.mark.parametrize("url, why", [
    ("ftp://example.org/hook", "must start with http:// or https://"),
    ("http://127.0.0.1:9/hook", "resolves to 127.0.0.1, not a public address (loopback)"),
    ("http://localhost/hook", "not a public address (loopback)"),
    ("http://[::1]/hook", "resolves to ::1, not a public address (loopback)"),
    ("http://[::ffff:127.0.0.1]/hook", "not a public address (loopback)"),
    ("http://10.1.2.3/hook", "resolves to 10.1.2.3, not a public address (private)"),
    ("https://192.168.0.10/hook", "not a public address (private)"),
    ("http://169.254.169.254/latest/meta-data", "resolves to 169.254.169.254, not a public address (link-local)"),
    ("http://224.0.0.1/hook", "not a public address (multicast)"),
    ("http://0.0.0.0/hook", "not a public address (unspecified)"),
    ("http://100.64.0.1/hook", "not a public address (non-public)"),
    ("http://no-such-host.invalid/hook", "The host no-such-host.invalid could not be resolved."),
    ("http://example.org/a hook", "printable ASCII only"),
])
def test_webhooks_to_private_or_odd_addresses_are_refused(app, client, people, url, why):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    response = client.post("/api/subscriptions/", headers=auth_header(people["tokens"]["pi"]),
                           json={"proposal": "SOAR2026B-001", "events": ["spectrum.ready"], "url": url})
    assert response.status_code == 400 and why in response.json["detail"], response.json


def test_bodies_are_checked(client, people):
    pi = auth_header(people["tokens"]["pi"])
    cases = [({"events": ["spectrum.ready"], "url": "https://example.org/", "colour": "red"}, "Unknown field(s): 'colour'"),
             ({"events": ["spectrum.ready", "spectrum.ready"]}, "names an event twice"),
             ({"events": ["file.deleted"]}, "Unknown event(s) 'file.deleted'"),
             ({"events": []}, "one or more of spectrum.ready, frame.failed, night.ready"),
             ({"format": "xml"}, "'format' must be one of json, slack"),
             ({"email": "yes"}, "'email' must be true or false")]
    for change, why in cases:
        body = {"proposal": "SOAR2026B-001", "events": ["spectrum.ready"], "url": "http://127.0.0.1/", **change}
        response = client.post("/api/subscriptions/", headers=pi, json=body)
        assert response.status_code == 400 and why in response.json["detail"], (change, response.json)


# --- the outbox -------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_the_outbox_row_is_written_with_the_product_and_rolled_back_with_it(app, client, people, receivers):
    from db import db

    subscribe(client, people, url=receivers().url, email=True)
    raw = raw_frame(people["proposal"])
    product(raw, 4, commit=False)
    db.session.rollback()
    assert deliveries() == []  # never announced
    extracted, calibrated, fluxed, combined = (product(raw, data_type) for data_type in (3, 4, 5, 6))
    told = deliveries()
    assert [(row.event, row.channel, row.file_id, row.state) for row in told] == [
        (event, channel, file.id, "pending") for file in (calibrated, fluxed, combined)
        for event, channel in (("spectrum.ready", "webhook"), ("spectrum.ready", "email"))]
    assert len({row.uid for row in told}) == 6


@pytest.mark.both_databases
def test_a_spectrum_is_signed_retried_after_a_503_and_acknowledged_once(app, client, people, receivers):
    receiver = receivers(503)
    subscription = subscribe(client, people, url=receiver.url)
    raw = raw_frame(people["proposal"])
    calibrated = product(raw)
    started = time.monotonic()
    tick_until(lambda: deliveries()[0].state == "delivered")
    assert time.monotonic() - started < 5
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    delivery = deliveries()[0]
    for request in (first, second):
        headers = request["headers"]
        assert headers["Content-Type"] == "application/json" and headers["X-GSP-Event"] == "spectrum.ready"
        assert headers["X-GSP-Delivery"] == delivery.uid  # the same for every try
        assert hmac.compare_digest(headers["X-GSP-Signature"], signed(subscription["secret"], request["body"]))
    body = json.loads(second["body"])
    pi = auth_header(people["tokens"]["pi"])
    assert body["file"] == client.get(f"/api/files/{calibrated.id}/", headers=pi).json
    assert body["original"] == client.get(f"/api/files/{raw.id}/", headers=pi).json
    assert (body["event"], body["url"], body["proposal"]) == ("spectrum.ready", f"{PUBLIC_URL}/?id={calibrated.id}",
                                                              "SOAR2026B-001")
    assert datetime.fromisoformat(body["sent_at"]) <= datetime.now(timezone.utc)
    attempts = client.get(f"/api/subscriptions/{subscription['id']}/deliveries/", headers=pi).json["results"]
    assert [(a["status"], a["error"], a["delivery"], a["state"]) for a in attempts] == [
        (200, "", delivery.uid, "delivered"), (503, "HTTP 503", delivery.uid, "delivered")]
    tick_until(lambda: True)
    assert len(receiver.requests) == 2  # acknowledged: never sent again


def test_a_receiver_slower_than_the_timeout_is_tried_again(app, client, people, receivers):
    receiver = receivers(delay=1.0, slow=1)  # the first answer comes after the 0.5 s timeout
    subscribe(client, people, url=receiver.url)
    product(raw_frame(people["proposal"]))
    tick_until(lambda: deliveries()[0].state == "delivered")
    from db.models import DeliveryAttempt

    tries = DeliveryAttempt.query.order_by(DeliveryAttempt.id).all()
    assert [(attempt.status, attempt.error) for attempt in tries] == [(None, "TimeoutError: timed out"), (200, "")]
    assert deliveries()[0].attempts == 2


@pytest.mark.both_databases
def test_a_burst_of_spectra_goes_out_after_one_tick_not_senders_per_tick(app, client, people, receivers):
    """A frame's spectra times the subscriptions can be more deliveries than there are sender threads: the senders
    go on with what is due rather than waiting for a tick per SENDERS deliveries (bench/notify.py)."""
    from live.notify import SENDERS
    from live.queue import dispatch

    receiver = receivers()
    subscribe(client, people, url=receiver.url)
    for number in range(4):
        raw = raw_frame(people["proposal"], f"004{number}_NGC5128_400_M2.fits")
        for data_type in (4, 5, 6):
            product(raw, data_type)
    assert len(deliveries()) == 12 > SENDERS
    dispatch()  # one tick, and no more
    wait_for(lambda: len(receiver.requests) == 12, 5, "every delivery sent after one tick")
    wait_for(lambda: all(row.state == "delivered" for row in deliveries()), 5, "every delivery acknowledged")
    assert len({request["headers"]["X-GSP-Delivery"] for request in receiver.requests}) == 12


def test_a_redirect_is_an_answer_not_followed(app, client, people, receivers):
    receiver = receivers(302)
    subscribe(client, people, url=receiver.url)
    product(raw_frame(people["proposal"]))
    tick_until(lambda: deliveries()[0].state == "delivered")
    from db.models import DeliveryAttempt

    assert [(a.status, a.error) for a in DeliveryAttempt.query.order_by(DeliveryAttempt.id)] == [
        (302, "HTTP 302"), (200, "")]
    assert len(receiver.requests) == 2


def test_the_request_goes_to_the_address_that_was_checked(app, receivers):
    """The name is not looked up again when connecting: what resolves to another address by then (DNS rebinding)
    is not reached."""
    from auth.subscriptions import WebhookAddress
    from live.notify import post

    receiver = receivers()
    port = receiver.server.server_port
    checked = WebhookAddress("http", "hooks.rebinding.invalid", port, "/hook?a=1", "127.0.0.1")
    assert post(checked, b"{}", {"Content-Type": "application/json"}, 1.0) == 200
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.rebinding.invalid:{port}"


def test_the_retry_schedule_starts_within_15_s_grows_and_gives_up_after_a_day(tmp_path):
    from config import load_config
    from live.notify import retry_delay

    config = load_config({"INSTANCE_DIR": str(tmp_path)})
    delays = config["WEBHOOK_RETRY_DELAYS"]
    assert [retry_delay(attempts, delays) for attempts in range(1, 10)] == [
        10, 30, 60, 300, 900, 1800, 3600, 3600, 3600]
    assert (config["WEBHOOK_GIVE_UP_SECONDS"], config["WEBHOOK_TIMEOUT_SECONDS"]) == (24 * 3600, 5)


def test_slack_gets_a_line_with_a_link(app, client, people, receivers):
    receiver = receivers()
    subscribe(client, people, url=receiver.url, format="slack")
    calibrated = product(raw_frame(people["proposal"]))
    tick_until(lambda: deliveries()[0].state == "delivered")
    assert json.loads(receiver.requests[0]["body"]) == {"text": (
        "GSP Live: New wavelength calibrated spectrum of NGC5128 (SOAR2026B-001): "
        f"{calibrated.file_name} <{PUBLIC_URL}/?id={calibrated.id}|{calibrated.file_name}>")}


# --- who is told ------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_removed_collaborator_is_told_nothing_more(app, client, people, receivers):
    from auth.accounts import remove_collaborator

    receiver = receivers()
    subscribe(client, people, "collab", url=receiver.url)
    raw = raw_frame(people["proposal"])
    remove_collaborator(people["proposal"], people["users"]["collab"])
    product(raw)  # the outbox row is written; the delivery asks the permission layer again
    tick_until(lambda: deliveries()[0].state == "dropped")
    assert receiver.requests == []
    assert deliveries()[0].reason == "collab is no longer a member of SOAR2026B-001"


def test_an_address_that_became_private_is_refused_at_delivery(app, client, people, receivers):
    receiver = receivers()
    subscribe(client, people, url=receiver.url)
    product(raw_frame(people["proposal"]))
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False  # what resolving the name again at delivery would find
    tick_until(lambda: deliveries()[0].attempts == 1)
    from db.models import DeliveryAttempt

    assert DeliveryAttempt.query.one().error == ("refused: 127.0.0.1 resolves to 127.0.0.1, not a public address "
                                                 "(loopback): webhooks go to public addresses only.")
    assert receiver.requests == [] and deliveries()[0].state == "pending"


# --- failures, e-mail, pauses -----------------------------------------------------------------------

def test_a_failed_frame_and_spectra_come_in_one_digest_at_most_every_ten_minutes(app, client, people, receivers,
                                                                                  smtp):  # noqa: F811
    from db import db
    from live.states import set_file_state

    receiver = receivers()
    subscribe(client, people, url=receiver.url, email=True, events=["spectrum.ready", "frame.failed"])
    raw, broken = raw_frame(people["proposal"]), raw_frame(people["proposal"], "0043_NGC5128_400_M2.fits")
    calibrated = product(raw)
    set_file_state(broken, "failed", "reduce failed: the master flat is saturated")
    db.session.commit()
    tick_until(lambda: {row.state for row in deliveries()} == {"delivered"})
    failed = next(json.loads(r["body"]) for r in receiver.requests if r["headers"]["X-GSP-Event"] == "frame.failed")
    assert (failed["reason"], failed["file"]["file_name"]) == ("reduce failed: the master flat is saturated",
                                                               broken.file_name)
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["rcpt"] == ["pi@example.org"] and mail["message"]["Subject"] == "GSP Live: 2 new events of SOAR2026B-001"
    assert body_of(mail) == (
        "What happened since the last digest:\n\n"
        f"- New wavelength calibrated spectrum of NGC5128 (SOAR2026B-001): {calibrated.file_name}\n"
        f"  {PUBLIC_URL}/?id={calibrated.id}\n"
        f"- {broken.file_name} of SOAR2026B-001 failed: reduce failed: the master flat is saturated\n"
        f"  {PUBLIC_URL}/?id={broken.id}\n\nYour subscriptions: account page.\n")

    later = product(raw_frame(people["proposal"], "0044_NGC5128_400_M2.fits"))
    tick_until(lambda: deliveries(file_id=later.id, channel="webhook")[0].state == "delivered")
    assert len(smtp.messages) == 1 and deliveries(file_id=later.id, channel="email")[0].state == "pending"
    subscription = deliveries()[0].subscription
    subscription.last_digest_at -= timedelta(minutes=10)
    db.session.commit()
    tick_until(lambda: len(smtp.messages) == 2, what="the second digest")
    assert smtp.messages[1]["message"]["Subject"] == "GSP Live: 1 new event of SOAR2026B-001"


def test_a_subscription_failing_for_a_day_is_paused_and_its_owner_told(app, client, people, receivers,
                                                                        smtp):  # noqa: F811
    from db import db
    from db.models import Subscription

    receiver = receivers(*[500] * 10)
    subscribe(client, people, url=receiver.url)
    raw = raw_frame(people["proposal"])
    product(raw)
    tick_until(lambda: deliveries()[0].attempts == 1)
    delivery = deliveries()[0]
    a_day_ago = datetime.now(timezone.utc) - timedelta(hours=24, minutes=1)
    delivery.created, delivery.subscription.failing_since = a_day_ago, a_day_ago
    db.session.commit()
    tick_until(lambda: deliveries()[0].state == "failed")
    assert deliveries()[0].reason == "gave up after a day: HTTP 500" and deliveries()[0].attempts == 2
    assert Subscription.query.one().paused is True
    tick_until(lambda: smtp.messages, what="the owner's mail (sent once the pause is committed)")
    assert [m["message"]["Subject"] for m in smtp.messages] == [
        "GSP Live: your notifications of SOAR2026B-001 are paused"]
    product(raw, 5)
    assert len(deliveries()) == 1  # a paused subscription is told nothing


# --- night.ready --------------------------------------------------------------------------------------

def test_a_night_is_ready_once_every_configuration_has_its_calibrations(app, client, people, receivers, redis_db,
                                                                        calibration_night):  # noqa: F811
    """The night summary's readiness, as the subscriber sees the night: the science frame alone needs an arc; the
    arc's arrival makes the night ready, told once."""
    from live import notify
    from live.catalogue import ingest

    app.extensions["gsp_queue"] = queue_on(redis_db)  # the frames' jobs wait in Redis: no worker runs them here
    folder, names = calibration_night
    use_settings(people["proposal"], ignore_bias=True, ignore_flats=True, flux_calibration=False)
    receiver = receivers()
    subscribe(client, people, url=receiver.url, events=["night.ready"])
    arc_name = next(name for name in names if "COMP" in fits.getval(folder / name, "OBSTYPE"))
    science_name = next(path.name for path in sorted(folder.glob("*.fits")) if fits.getval(path, "OBSTYPE") == "SPECTRUM")
    arc_path, science_path = copy_to_raw(app, folder, [arc_name, science_name])
    science, _ = ingest(science_path)
    assert deliveries() == []
    ingest(arc_path)
    assert [row.event for row in deliveries()] == ["night.ready"]  # written with the arc's row
    tick_until(lambda: [row.state for row in deliveries()] == ["delivered"])
    body = json.loads(receiver.requests[0]["body"])
    assert (body["event"], body["night"], body["url"]) == ("night.ready", science.date,
                                                           f"{PUBLIC_URL}/api/nights/{science.date}/")
    assert [(c["proposal"], c["ready"], c["missing"]) for c in body["configurations"]] == [
        ("SOAR2026B-001", True, [])]
    ingest(copy_to_raw(app, folder, [next(n for n in names if n != arc_name and "COMP" in
                                          fits.getval(folder / n, "OBSTYPE"))])[0])
    assert len(deliveries()) == 1  # told once

    # a subscription made once the night is ready hears of it from the dispatcher's sweep of the last day's nights
    late = subscribe(client, people, "collab", url=receiver.url, events=["night.ready"])
    notify._last_sweep = 0.0
    tick_until(lambda: [row.state for row in deliveries(subscription_id=late["id"])] == ["delivered"])
    assert len(deliveries()) == 2


# --- real processes killed between the commit and the delivery -----------------------------------------

@pytest.mark.postgresql
def test_a_spectrum_reaches_its_receiver_when_the_worker_and_the_sender_die(app, client, people, receivers,
                                                                            own_redis, calibration_night, tmp_path):  # noqa: F811
    """A real worker commits a spectrum and is SIGKILLed at once; the real watcher sending it is SIGKILLed while
    the receiver holds the request; a new watcher sends it again under the same delivery id, acknowledged once,
    within 15 s of the product being in the API."""
    from db.models import DeliveryAttempt, File
    from live.catalogue import ingest

    folder, names = calibration_night
    use_settings(people["proposal"], ignore_bias=True, ignore_flats=True, flux_calibration=False)
    receiver = receivers(delay=4.0, slow=1)  # holds the first request past the moment its sender dies
    subscribe(client, people, url=receiver.url)
    own_redis.start()
    processes = Processes(app, own_redis.url, tmp_path)
    processes.env.update(GSP_WEBHOOK_ALLOW_PRIVATE="1", GSP_WEBHOOK_TIMEOUT_SECONDS="2", GSP_PUBLIC_URL=PUBLIC_URL,
                         GSP_WEBHOOK_RETRY_DELAYS="0.5")
    try:
        watcher, worker = processes.watcher(), processes.worker()
        arc_name = next(name for name in names if "COMP" in fits.getval(folder / name, "OBSTYPE"))
        science_name = next(path.name for path in sorted(folder.glob("*.fits"))
                            if fits.getval(path, "OBSTYPE") == "SPECTRUM")
        for path in copy_to_raw(app, folder, [arc_name, science_name]):
            ingest(path)
        science = File.query.filter_by(data_type=4, obstype="SPECTRUM")
        wait_for(lambda: science.count() > 0, 120, "the spectrum")
        processes.kill(worker)  # its commit holds the product and its outbox row; nothing was sent yet
        in_api = time.monotonic()
        spectrum = science.one()
        wait_for(lambda: len(receiver.requests) == 1, 10, "the first request")
        processes.kill(watcher)  # the sender dies while the receiver holds the request
        processes.watcher()
        wait_for(lambda: deliveries()[0].state == "delivered", 15, "the delivery")
        assert time.monotonic() - in_api < 15
    finally:
        processes.stop_all()
    first, second = receiver.requests
    assert first["headers"]["X-GSP-Delivery"] == second["headers"]["X-GSP-Delivery"] == deliveries()[0].uid
    assert json.loads(second["body"])["file"]["id"] == spectrum.id
    assert [(a.status, a.error) for a in DeliveryAttempt.query.all()] == [(200, "")]  # one acknowledgement
