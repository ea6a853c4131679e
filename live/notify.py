"""Notifications (job layer): what happened, told to the subscriptions of its proposal (auth/subscriptions.py).

- The outbox. Every flush notes the spectra it made (data_type 4, 5, 6; not the arcs calibrated along a
  science frame's traces), the raw frames it failed and the
  nights it touched; just before that transaction commits, a :class:`Delivery` row is added for each
  subscription told of it (one per channel: webhook, e-mail). So a product rolled back is never announced, and
  one committed is, whoever made it and whatever dies after the commit.
- The sender. :func:`send_notifications` runs every dispatcher tick (the watcher process, live/queue.py):
  it claims the due deliveries (a lease moves ``due_at`` on, so two dispatchers never send one at once) and
  sends them from a small thread pool, so a slow receiver never holds up the job dispatcher. Never the web
  process.
- A webhook is a signed POST to the address checked at that moment (no redirect followed, a short timeout);
  a 2xx acknowledges it, anything else is tried again with growing delays for a day. Membership is asked
  again at each delivery: a removed collaborator is told nothing more.
- E-mail goes as one digest per subscription at most every DIGEST_SECONDS, through auth.mail.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from auth.mail import send_mail
from auth.nights import night_summary
from auth.permissions import can_follow_proposal, get_visible_file
from auth.queries import file_record
from auth.subscriptions import SubscriptionError, WebhookAddress, webhook_address
from db import db
from db.events import log_event
from db.models import Delivery, DeliveryAttempt, File, Subscription
from live.queue import periodic
from pipeline.chain import ARC_OBSTYPES
from pipeline.datatypes import DataType

log = logging.getLogger(__name__)

SPECTRA = frozenset({DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED, DataType.COMBINED})
NIGHT_SWEEP_SECONDS = 30.0
SENDERS = 4  # threads of the dispatcher's process that send; a tick claims no more than are idle
_NOTED = "gsp_notify_noted"
_sender_pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="gsp-notify")
# What this process is sending: never claimed again meanwhile, even past its lease (a slow name lookup).
_in_flight: set[tuple[str, int]] = set()
_in_flight_lock = threading.Lock()
_last_sweep = 0.0  # time.monotonic() of the last sweep_ready_nights


def init_app(server) -> None:
    """Write the outbox with every transaction that makes what it tells of."""
    if not sa.event.contains(Session, "after_flush", _note_flushed):
        sa.event.listen(Session, "after_flush", _note_flushed)
        sa.event.listen(Session, "before_commit", _write_outbox)
        sa.event.listen(Session, "after_rollback", _forget_noted)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- the outbox ------------------------------------------------------------------------------------

def _became_failed(file: File) -> bool:
    history = sa.inspect(file).attrs.state.history
    return list(history.added) == ["failed"] and list(history.deleted) != ["failed"]


def _note_flushed(session, _context) -> None:
    """After a flush (its lists still as before it): the spectra made, the raw frames failed, the nights
    touched."""
    noted = session.info.setdefault(_NOTED, {"spectra": set(), "failed": {}, "nights": set()})
    for file in session.new:
        if isinstance(file, File):
            _note(noted, file, new=True)
    for file in session.dirty:
        if isinstance(file, File):
            _note(noted, file, new=False)


def _note(noted: dict, file: File, new: bool) -> None:
    failed = _became_failed(file)
    if new and file.data_type in SPECTRA and file.obstype not in ARC_OBSTYPES:
        noted["spectra"].add(file.id)
    if failed and file.data_type == DataType.RAW:
        noted["failed"][file.id] = file.state_reason
    if file.date and (new or failed):
        noted["nights"].add(file.date)


def _forget_noted(session) -> None:
    session.info.pop(_NOTED, None)


def _write_outbox(session) -> None:
    """Before the commit: a delivery for each subscription told of what this transaction noted."""
    if _NOTED not in session.info or not has_app_context():
        return
    session.flush()  # what is still pending is noted too
    noted = session.info.pop(_NOTED)
    for file_id in sorted(noted["spectra"]):
        _announce(session, "spectrum.ready", session.get(File, file_id), f"file {file_id}")
    for file_id, reason in sorted(noted["failed"].items()):
        digest = hashlib.sha256(reason.encode()).hexdigest()[:16]  # a new reason is told, the same one once
        _announce(session, "frame.failed", session.get(File, file_id), f"frame {file_id} {digest}",
                  {"reason": reason})
    for date in sorted(noted["nights"]):
        _announce_ready_night(session, date)


def _subscribed(session, event: str, proposal_id: int | None = None) -> list[Subscription]:
    query = sa.select(Subscription).where(Subscription.paused.is_(False)).order_by(Subscription.id)
    if proposal_id is not None:
        query = query.where(Subscription.proposal_id == proposal_id)
    return [subscription for subscription in session.scalars(query) if event in subscription.events]


def _announce(session, event: str, file: File, key: str, details: dict | None = None) -> None:
    if file.proposal_id is None:
        return
    for subscription in _subscribed(session, event, file.proposal_id):
        _add_deliveries(session, subscription, event, key, file.id, details)


def _add_deliveries(session, subscription: Subscription, event: str, key: str, file_id: int | None,
                    details: dict | None) -> None:
    """One row per channel; a row of the same subscription, channel and key already there (another transaction
    told it first) is left alone rather than failing this transaction."""
    channels = ("webhook", "email") if subscription.email else ("webhook",)
    rows = [{"uid": str(uuid.uuid4()), "subscription_id": subscription.id, "channel": channel, "event": event,
             "key": key, "file_id": file_id, "details": details, "state": "pending", "reason": "", "attempts": 0,
             "due_at": _now(), "created": _now()} for channel in channels]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(Delivery).values(rows).on_conflict_do_nothing())


def _told(session, subscription: Subscription, key: str) -> bool:
    return session.scalar(sa.select(sa.func.count()).where(Delivery.subscription_id == subscription.id,
                                                           Delivery.key == key)) > 0


def _announce_ready_night(session, date: str) -> None:
    """night.ready, once, when every configuration of the subscription's proposal that night has what it needs
    (the night summary's readiness, as its subscriber sees the night)."""
    for subscription in _subscribed(session, "night.ready"):
        key = f"night {date}"
        if not _told(session, subscription, key) and _night_ready(subscription, date):
            _add_deliveries(session, subscription, "night.ready", key, None, {"night": date})


def _proposal_configurations(subscription: Subscription, date: str) -> list[dict]:
    summary = night_summary(subscription.user, date) or {"configurations": []}
    return [configuration for configuration in summary["configurations"]
            if configuration["proposal"] == subscription.proposal.soar_id]


def _night_ready(subscription: Subscription, date: str) -> bool:
    configurations = _proposal_configurations(subscription, date)
    return bool(configurations) and all(configuration["ready"] for configuration in configurations)


@periodic
def sweep_ready_nights() -> None:
    """night.ready that no one transaction could see (two frames committed at once, each seeing the night without
    the other), or of a subscription made after its night got ready: the nights of the last day, twice a minute."""
    global _last_sweep
    if time.monotonic() - _last_sweep < NIGHT_SWEEP_SECONDS or not _subscribed(db.session, "night.ready"):
        return
    _last_sweep = time.monotonic()
    recent = sa.select(File.date).distinct().where(File.created >= _now() - timedelta(days=1), File.date != "")
    for date in sorted(db.session.scalars(recent)):
        _announce_ready_night(db.session, date)
    db.session.commit()


# --- the sender -------------------------------------------------------------------------------------

@periodic
def send_notifications() -> None:
    """Claim what is due and send it from the sender's threads (a dispatcher tick)."""
    app = current_app._get_current_object()
    _send_due_webhooks(app)
    for subscription_id in _claim_due_digests(_sending("digest")):
        _submit(app, send_digest, ("digest", subscription_id))


def _send_due_webhooks(app) -> None:
    for delivery_id in _claim_due_webhooks(_sending("webhook")):
        _submit(app, deliver_webhook, ("webhook", delivery_id))


def _sending(kind: str) -> list[int]:
    with _in_flight_lock:
        return [ident for sent, ident in _in_flight if sent == kind]


def _idle_senders() -> int:
    with _in_flight_lock:
        return SENDERS - len(_in_flight)


def _submit(app, function, key: tuple[str, int]) -> None:
    with _in_flight_lock:
        _in_flight.add(key)
    _sender_pool.submit(_in_context, app, function, key)


def _in_context(app, function, key: tuple[str, int]) -> None:
    with app.app_context():
        try:
            function(key[1])
        except Exception:  # recorded where it could be; the sender thread lives on
            log.exception("notification %s(%s) failed", function.__name__, key[1])
            db.session.rollback()
        finally:
            db.session.remove()
            with _in_flight_lock:
                _in_flight.discard(key)
        if function is deliver_webhook:
            _go_on(app)


def _go_on(app) -> None:
    """A sender done with a webhook takes what is due (a burst: more deliveries than senders) rather than leaving
    it to the next tick, which claims no more than SENDERS: a second per SENDERS deliveries otherwise."""
    try:
        _send_due_webhooks(app)
    except Exception:  # the next tick claims them
        log.exception("claiming the next webhooks failed")
        db.session.rollback()
    finally:
        db.session.remove()


def _lease() -> timedelta:
    """How long a claimed delivery is left to its sender before another tick may take it (a sender that died)."""
    return timedelta(seconds=3 * float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]) + 2)


def _claim_due_webhooks(sending: list[int]) -> list[int]:
    now = _now()
    active = sa.select(Subscription.id).where(Subscription.paused.is_(False))
    due = sa.and_(Delivery.channel == "webhook", Delivery.state == "pending", Delivery.due_at <= now,
                  Delivery.subscription_id.in_(active), Delivery.id.not_in(sending))
    claimed = []
    for delivery_id in db.session.scalars(sa.select(Delivery.id).where(due).order_by(Delivery.id)
                                          .limit(_idle_senders())):
        taken = db.session.execute(sa.update(Delivery).where(Delivery.id == delivery_id, due)
                                   .values(due_at=now + _lease()).execution_options(synchronize_session=False))
        if taken.rowcount == 1:
            claimed.append(delivery_id)
    db.session.commit()
    return claimed


def _claim_due_digests(sending: list[int]) -> list[int]:
    """Subscriptions with e-mail waiting whose last digest is old enough; claimed by moving that time to now."""
    now = _now()
    quiet = sa.or_(Subscription.last_digest_at.is_(None),
                   Subscription.last_digest_at <= now - timedelta(seconds=current_app.config["DIGEST_SECONDS"]))
    waiting = sa.select(Delivery.subscription_id).where(Delivery.channel == "email", Delivery.state == "pending")
    due = sa.and_(Subscription.id.in_(waiting), Subscription.paused.is_(False), quiet, Subscription.id.not_in(sending))
    claimed = []
    for subscription_id in db.session.scalars(sa.select(Subscription.id).where(due).limit(_idle_senders())):
        taken = db.session.execute(sa.update(Subscription).where(Subscription.id == subscription_id, due)
                                   .values(last_digest_at=now).execution_options(synchronize_session=False))
        if taken.rowcount == 1:
            claimed.append(subscription_id)
    db.session.commit()
    return claimed


class Undeliverable(Exception):
    """What a delivery told of is gone, or its subscriber may no longer hear of it: dropped, not retried."""


def data_page_link(file: File) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/?id={file.id}"


def _visible(subscription: Subscription, file_id: int | None) -> File:
    file = get_visible_file(subscription.user, file_id) if file_id is not None else None
    if file is None:
        raise Undeliverable("the file was deleted or its subscriber may no longer see it")
    return file


def payload(delivery: Delivery) -> dict:
    """The event as its subscriber may read it (files as GET /api/files/<id>/ shows them to them)."""
    subscription, details = delivery.subscription, delivery.details or {}
    if not can_follow_proposal(subscription.user, subscription.proposal):
        raise Undeliverable(f"{subscription.user.username} is no longer a member of {subscription.proposal.soar_id}")
    body = {"event": delivery.event, "proposal": subscription.proposal.soar_id}
    if delivery.event == "night.ready":
        night = details["night"]
        return {**body, "night": night, "configurations": _proposal_configurations(subscription, night),
                "url": f"{current_app.config['PUBLIC_URL'].rstrip('/')}/api/nights/{night}/"}
    file = _visible(subscription, delivery.file_id)
    body.update(file=file_record(subscription.user, file), url=data_page_link(file))
    if delivery.event == "frame.failed":
        return {**body, "reason": details.get("reason", "")}
    return {**body, "original": file_record(subscription.user, file.original or file)}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary_line(body: dict) -> str:
    """The event in one line of words (Slack's text, an e-mail digest's line)."""
    proposal = body["proposal"]
    if body["event"] == "night.ready":
        return f"Night {body['night']} of {proposal} has all its calibrations."
    file = body["file"]
    if body["event"] == "frame.failed":
        return f"{file['file_name']} of {proposal} failed: {body['reason']}"
    label = DataType(int(file["data_type"])).label.lower()
    return f"New {label} spectrum of {file['object'] or 'a target'} ({proposal}): {file['file_name']}"


def slack_text(body: dict) -> dict:
    """Slack's and Mattermost's incoming-webhook message: the line and a link."""
    label = body["file"]["file_name"] if "file" in body else f"night {body['night']}"
    return {"text": f"GSP Live: {_slack_escape(summary_line(body))} <{body['url']}|{_slack_escape(label)}>"}


def signature(secret: str, body: bytes) -> str:
    """``X-GSP-Signature``: the HMAC-SHA256 of the exact body bytes with the subscription's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to by now (DNS rebinding)."""

    def __init__(self, address: WebhookAddress, timeout: float):
        super().__init__(address.host, address.port, timeout=timeout)
        self.ip = address.ip

    def connect(self):
        self.sock = socket.create_connection((self.ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: WebhookAddress, timeout: float):
        super().__init__(address.host, address.port, timeout=timeout)
        self.ip = address.ip

    def connect(self):
        raw = socket.create_connection((self.ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # the certificate is the name's


def post(address: WebhookAddress, body: bytes, headers: dict, timeout: float) -> int:
    """POST ``body``; the receiver's status. Redirects are answers like any other (not followed)."""
    kind = _PinnedHTTPSConnection if address.scheme == "https" else _PinnedHTTPConnection
    connection = kind(address, timeout)
    try:
        connection.request("POST", address.target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


def _request(delivery: Delivery) -> tuple[bytes, dict]:
    body = payload(delivery)
    if delivery.subscription.format == "slack":
        body = slack_text(body)
    else:
        body["sent_at"] = _now().isoformat()
    data = json.dumps(body, separators=(",", ":")).encode()
    return data, {"Content-Type": "application/json", "User-Agent": "GSP-Live-Webhook",
                  "X-GSP-Event": delivery.event, "X-GSP-Delivery": delivery.uid,
                  "X-GSP-Signature": signature(delivery.subscription.secret, data)}


def _attempt(delivery: Delivery) -> tuple[int | None, str]:
    """One try: the receiver's status (None: no answer) and what went wrong."""
    config = current_app.config
    try:
        address = webhook_address(delivery.subscription.url, config["WEBHOOK_ALLOW_PRIVATE"])
        data, headers = _request(delivery)
        status = post(address, data, headers, float(config["WEBHOOK_TIMEOUT_SECONDS"]))
    except SubscriptionError as error:
        return None, f"refused: {error}"
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, timed out, a broken answer
        return None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


def deliver_webhook(delivery_id: int) -> None:
    """Send one claimed webhook delivery and record the attempt."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.state != "pending":
        return
    try:
        status, error = _attempt(delivery)
    except Undeliverable as reason:
        _drop(delivery, str(reason))
        db.session.commit()
        return
    db.session.add(DeliveryAttempt(delivery_id=delivery.id, at=_now(), status=status, error=error))
    delivery.attempts += 1
    if not error:
        delivery.state, delivery.finished_at, delivery.subscription.failing_since = "delivered", _now(), None
        db.session.commit()
        return
    paused = _failed(delivery, error)
    db.session.commit()
    if paused:
        _tell_paused(delivery.subscription, error)


def _drop(delivery: Delivery, reason: str) -> None:
    delivery.state, delivery.reason, delivery.finished_at = "dropped", reason, _now()
    log.info("delivery %s dropped: %s", delivery.uid, reason)


def retry_delay(attempts: int, delays: tuple[float, ...]) -> float:
    """The wait after the ``attempts``-th failed attempt: each delay in turn, then the last one again."""
    return delays[min(attempts, len(delays)) - 1]


def _failed(delivery: Delivery, error: str) -> bool:
    """Schedule the next try, or give up after a day; pause a subscription that failed for a day. True when it
    paused it."""
    now, config = _now(), current_app.config
    give_up = timedelta(seconds=config["WEBHOOK_GIVE_UP_SECONDS"])
    if now - _aware(delivery.created) >= give_up:
        delivery.state, delivery.reason, delivery.finished_at = "failed", f"gave up after a day: {error}", now
    else:
        delivery.due_at = now + timedelta(seconds=retry_delay(delivery.attempts, config["WEBHOOK_RETRY_DELAYS"]))
    subscription = delivery.subscription
    subscription.failing_since = subscription.failing_since or now
    if now - _aware(subscription.failing_since) < give_up:
        return False
    subscription.paused = True
    log_event("subscription_paused", f"Subscription {subscription.id} of {subscription.user.username} to "
              f"{subscription.proposal.soar_id} paused: its deliveries failed for a day ({error}).",
              level="WARNING", user=subscription.user, proposal_id=subscription.proposal_id)
    return True


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)  # SQLite's are naive


def _tell_paused(subscription: Subscription, error: str) -> None:
    try:
        send_mail(subscription.user.email, f"GSP Live: your notifications of {subscription.proposal.soar_id} "
                  "are paused", f"Every delivery to {subscription.url} failed for a day (the last: {error}), so "
                  "the subscription is paused. Resume it on your account page once the receiver works again.\n\n"
                  f"{current_app.config['PUBLIC_URL'].rstrip('/')}/account\n")
    except OSError as mail_error:  # smtplib's errors are OSErrors: the pause stands and is in the Logs
        log.warning("could not tell %s of the pause: %s", subscription.user.email, mail_error)


def send_digest(subscription_id: int) -> None:
    """One e-mail listing what the subscription's pending e-mail deliveries tell."""
    pending = list(db.session.scalars(sa.select(Delivery).where(
        Delivery.subscription_id == subscription_id, Delivery.channel == "email", Delivery.state == "pending")
        .order_by(Delivery.id)))
    lines, told = [], []
    for delivery in pending:
        try:
            body = payload(delivery)
        except Undeliverable as reason:
            _drop(delivery, str(reason))
            continue
        lines.append(f"- {summary_line(body)}\n  {body['url']}")
        told.append(delivery)
    if told:
        _mail_digest(told[0].subscription, told, lines)
    db.session.commit()


def _mail_digest(subscription: Subscription, told: list[Delivery], lines: list[str]) -> None:
    error = ""
    try:
        send_mail(subscription.user.email, f"GSP Live: {len(told)} new event{'s' * (len(told) != 1)} of "
                  f"{subscription.proposal.soar_id}", "\n".join(["What happened since the last digest:", "", *lines,
                                                                 "", "Your subscriptions: account page."]) + "\n")
    except OSError as mail_error:  # left pending: the next digest tries again
        error = f"{type(mail_error).__name__}: {mail_error}"
    for delivery in told:
        db.session.add(DeliveryAttempt(delivery_id=delivery.id, at=_now(), status=None, error=error))
        delivery.attempts += 1
        if not error:
            delivery.state, delivery.finished_at = "delivered", _now()
