"""Subscriptions to a proposal's events (a signed webhook, an e-mail digest), through the permission layer, and
the one rule for the addresses a webhook may reach: checked when a subscription is made and again at each
delivery (live/notify.py), since a name's address can change in between (DNS rebinding).

The API (api/subscriptions.py) and the user panel (callbacks/account.py) share these functions.
"""
from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import sqlalchemy as sa

from auth.permissions import can_follow_proposal
from auth.queries import find_visible_proposal
from db import db
from db.events import log_event
from db.models import Delivery, DeliveryAttempt, Subscription
from db.serialize import iso_time

EVENTS = ("spectrum.ready", "frame.failed", "night.ready")
FORMATS = ("json", "slack")
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


class SubscriptionError(ValueError):
    """A subscription refused as asked; ``status`` is the API's answer (400, or 404 for what the caller may not
    see)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- where a webhook may go ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookAddress:
    """A webhook URL with the address it was checked at: the delivery connects to ``ip`` and to nothing else."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    ip: str


def _refused_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is no place for a webhook (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def _check_text(url) -> None:
    """A URL as a request line can carry it: printable ASCII, http or https."""
    if not isinstance(url, str) or not url.strip():
        raise SubscriptionError("'url' is required: the http:// or https:// address to POST events to.")
    if len(url) > MAX_URL_LENGTH:
        raise SubscriptionError(f"'url' may be at most {MAX_URL_LENGTH} characters.")
    if not all("!" <= character <= "~" for character in url):
        raise SubscriptionError("'url' may hold printable ASCII only, without spaces (percent-encode the rest).")
    if not url.startswith(tuple(f"{scheme}://" for scheme in DEFAULT_PORTS)):
        raise SubscriptionError("A webhook URL must start with http:// or https://.")


def _split(url) -> tuple:
    """The URL's parts and port, if it is an http(s) URL naming a host."""
    _check_text(url)
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise SubscriptionError("'url' is not a valid URL.") from None
    if not parts.hostname:
        raise SubscriptionError("'url' names no host.")
    return parts, port


def webhook_address(url, allow_private: bool) -> WebhookAddress:
    """The URL's parts and the address it resolves to; SubscriptionError unless it is http(s) to a host whose every
    address is public (or ``allow_private``: tests and closed networks, GSP_WEBHOOK_ALLOW_PRIVATE)."""
    parts, port = _split(url)
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):  # unknown, or not a name at all (IDNA, a NUL)
        raise SubscriptionError(f"The host {parts.hostname} could not be resolved.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    for address in [] if allow_private else addresses:
        kind = _refused_kind(address)
        if kind is not None:
            raise SubscriptionError(f"{parts.hostname} resolves to {address}, not a public address ({kind}): "
                                    "webhooks go to public addresses only.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookAddress(parts.scheme, parts.hostname, port, target, str(addresses[0]))


# --- subscriptions ------------------------------------------------------------------------------------

def _events(events) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(event, str) for event in events):
        raise SubscriptionError(f"'events' must be a list of one or more of {', '.join(EVENTS)}.")
    if len(set(events)) != len(events):
        raise SubscriptionError("'events' names an event twice.")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise SubscriptionError(f"Unknown event(s) {', '.join(map(repr, unknown))}; events are {', '.join(EVENTS)}.")
    return [event for event in EVENTS if event in events]


def _boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise SubscriptionError(f"'{name}' must be true or false.")
    return value


def subscribe(user, *, proposal, events, url, format="json", email=False,  # noqa: A002 - the API's field name
              allow_private: bool = False) -> Subscription:
    """A new subscription of ``user`` to ``proposal`` (id or SOAR id), added to the session with its secret."""
    found = find_visible_proposal(user, proposal) if isinstance(proposal, (int, str)) else None
    if found is None or not can_follow_proposal(user, found):
        raise SubscriptionError(f"Proposal {proposal!r} not found among yours.", 404)
    if format not in FORMATS:
        raise SubscriptionError(f"'format' must be one of {', '.join(FORMATS)}.")
    chosen, email = _events(events), _boolean("email", email)
    address = webhook_address(url, allow_private)
    subscription = Subscription(user=user, proposal=found, events=chosen, url=url, format=format,
                                email=email, secret=secrets.token_hex(32), paused=False)
    db.session.add(subscription)
    db.session.flush()
    log_event("subscription_created", f"{user.username} subscribed to {', '.join(chosen)} of {found.soar_id} "
              f"(webhook to {address.host}{', e-mail' if email else ''}).", user=user, proposal_id=found.id)
    return subscription


def own_subscriptions(user) -> sa.Select:
    """The subscriptions ``user`` may read and change: their own (staff: all)."""
    query = sa.select(Subscription).order_by(Subscription.id)
    return query if user.is_staff else query.where(Subscription.user_id == user.id)


def get_own_subscription(user, subscription_id: int) -> Subscription | None:
    """None for a missing subscription *and* for another user's (404 alike)."""
    return db.session.scalar(own_subscriptions(user).where(Subscription.id == subscription_id))


def update_subscription(user, subscription: Subscription, *, events=None, email=None, paused=None) -> list[str]:
    """Change what a subscription tells, by e-mail or not, paused or not; returns the names of what changed.
    Resumed, it counts its failures afresh."""
    checks = {"events": _events, "email": partial(_boolean, "email"), "paused": partial(_boolean, "paused")}
    given = {"events": events, "email": email, "paused": paused}
    wanted = {name: checks[name](value) for name, value in given.items() if value is not None}
    changed = [name for name, value in wanted.items() if getattr(subscription, name) != value]
    for name in changed:
        setattr(subscription, name, wanted[name])
    if "paused" in changed and not subscription.paused:
        subscription.failing_since = None
    if changed:
        log_event("subscription_changed", f"{user.username} changed {', '.join(changed)} of subscription "
                  f"{subscription.id}.", user=user, proposal_id=subscription.proposal_id)
    return changed


def delete_subscription(user, subscription: Subscription) -> None:
    log_event("subscription_deleted", f"{user.username} deleted subscription {subscription.id} of "
              f"{subscription.proposal.soar_id}.", user=user, proposal_id=subscription.proposal_id)
    db.session.delete(subscription)


def subscription_to_dict(subscription: Subscription) -> dict:
    """A subscription as its owner reads it: never its secret (shown once, when it is made)."""
    return {"id": subscription.id, "user": subscription.user.username, "proposal": subscription.proposal.soar_id,
            "proposal_id": subscription.proposal_id, "events": list(subscription.events), "url": subscription.url,
            "format": subscription.format, "email": subscription.email, "paused": subscription.paused,
            "failing_since": iso_time(subscription.failing_since), "created": iso_time(subscription.created)}


def delivery_attempts(subscription: Subscription, page: int, page_size: int) -> tuple[list[dict], int]:
    """One page of a subscription's delivery attempts, newest first, and how many there are."""
    query = (sa.select(DeliveryAttempt, Delivery).join(Delivery, DeliveryAttempt.delivery_id == Delivery.id)
             .where(Delivery.subscription_id == subscription.id))
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(query.order_by(DeliveryAttempt.id.desc()).limit(page_size)
                              .offset((page - 1) * page_size)).all()
    return [{"time": iso_time(attempt.at), "status": attempt.status, "error": attempt.error,
             "delivery": delivery.uid, "event": delivery.event, "channel": delivery.channel,
             "state": delivery.state} for attempt, delivery in rows], count
