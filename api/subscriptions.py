"""Notifications: a user's subscriptions to a proposal's events (auth/subscriptions.py; sent by live/notify.py).

POST   /api/subscriptions/                    subscribe (members of the proposal and staff): 201 with the signing
                                              secret, shown this once
GET    /api/subscriptions/                    the caller's subscriptions (staff: all), paginated
DELETE /api/subscriptions/<id>/               unsubscribe
GET    /api/subscriptions/<id>/deliveries/    each delivery attempt: time, status, error (newest first)

Another user's subscription is 404, like anything the caller may not see.
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import current_app, jsonify
from flask_login import current_user

from api import ApiError, blueprint
from api.files import json_body, parse_id
from api.proposals import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, paginated, whole_parameter
from api.schemas import (
    BAD_ID,
    ID,
    OPTIONAL_TIME,
    TIME,
    TOKEN_SECURITY,
    body_schema,
    error,
    json_content,
    page_of,
    paging_parameters,
    path_id,
)
from auth.subscriptions import (
    EVENTS,
    FORMATS,
    MAX_URL_LENGTH,
    SubscriptionError,
    delete_subscription,
    delivery_attempts,
    get_own_subscription,
    own_subscriptions,
    subscribe,
    subscription_to_dict,
)
from db import db

FIELDS = ("proposal", "events", "url", "format", "email")


def own_subscription_or_404(subscription_id):
    subscription = get_own_subscription(current_user, parse_id(subscription_id))
    if subscription is None:
        raise ApiError("Subscription not found.", 404)
    return subscription


@blueprint.post("/subscriptions/")
def subscriptions_create():
    data = json_body(FIELDS)
    try:
        subscription = subscribe(current_user, proposal=data.get("proposal"), events=data.get("events"),
                                 url=data.get("url"), format=data.get("format", "json"),
                                 email=data.get("email", False),
                                 allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except SubscriptionError as refused:
        raise ApiError(str(refused), refused.status) from None
    db.session.commit()
    response = jsonify({**subscription_to_dict(subscription), "secret": subscription.secret})
    response.status_code = 201
    return response


@blueprint.get("/subscriptions/")
def subscriptions_list():
    page = whole_parameter("page", 1)
    page_size = whole_parameter("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    query = own_subscriptions(current_user)
    shown = db.session.scalars(query.limit(page_size).offset((page - 1) * page_size)).all()
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    return paginated([subscription_to_dict(subscription) for subscription in shown], count, page, page_size)


@blueprint.delete("/subscriptions/<int:subscription_id>/")
def subscriptions_delete(subscription_id):
    delete_subscription(current_user, own_subscription_or_404(subscription_id))
    db.session.commit()
    return "", 204


@blueprint.get("/subscriptions/<int:subscription_id>/deliveries/")
def subscriptions_deliveries(subscription_id):
    subscription = own_subscription_or_404(subscription_id)
    page = whole_parameter("page", 1)
    page_size = whole_parameter("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    attempts, count = delivery_attempts(subscription, page, page_size)
    return paginated(attempts, count, page, page_size)


# --- OpenAPI --------------------------------------------------------------------------------------

_EVENTS = {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}, "minItems": 1, "uniqueItems": True}
_SUBSCRIPTION = {"type": "object", "required": ["id", "proposal", "events", "url", "format", "email", "paused"],
                 "properties": {
                     "id": ID, "user": {"type": "string"}, "proposal": {"type": "string", "example": "SOAR2026B-001"},
                     "proposal_id": ID, "events": _EVENTS, "url": {"type": "string"},
                     "format": {"type": "string", "enum": list(FORMATS)}, "email": {"type": "boolean"},
                     "paused": {"type": "boolean", "description": "Paused by its owner, or after a day of failures."},
                     "failing_since": OPTIONAL_TIME, "created": TIME}}
_CREATED = {**_SUBSCRIPTION, "required": [*_SUBSCRIPTION["required"], "secret"], "properties": {
    **_SUBSCRIPTION["properties"],
    "secret": {"type": "string", "description": "The HMAC-SHA256 key of X-GSP-Signature; shown this once."}}}
_ATTEMPT = {"type": "object", "required": ["time", "status", "error"], "properties": {
    "time": TIME, "status": {"type": "integer", "nullable": True, "description": "The receiver's HTTP status; null "
                                                                                  "when it did not answer (or e-mail)."},
    "error": {"type": "string", "description": "Empty when acknowledged."},
    "delivery": {"type": "string", "description": "X-GSP-Delivery: the same for every try of one delivery."},
    "event": {"type": "string", "enum": list(EVENTS)}, "channel": {"type": "string", "enum": ["webhook", "email"]},
    "state": {"type": "string", "enum": ["pending", "delivered", "failed", "dropped"]}}}
_BODY = body_schema({
    "proposal": {"oneOf": [ID, {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "[^0-9]"}],
                 "description": "The proposal's id or SOAR id."},
    "events": _EVENTS,
    "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH, "pattern": "^https?://[!-~]+$",
            "description": "Where to POST events: http(s) to a public address."},
    "format": {"type": "string", "enum": list(FORMATS), "default": "json",
               "description": "json: the event; slack: Slack/Mattermost's {\"text\": ...} with a link."},
    "email": {"type": "boolean", "default": False, "description": "Also one e-mail digest per 10 minutes."}},
    ("proposal", "events", "url"),
    example={"proposal": "SOAR2026B-001", "events": ["spectrum.ready"], "url": "https://example.org/gsp-hook",
             "format": "json", "email": False})
_ONE = [path_id("subscription_id", "The subscription's id.")]
_NOT_FOUND = error("No such subscription among the caller's.")

OPENAPI_PATHS: dict = {
    "/api/subscriptions/": {
        "post": {"tags": ["notifications"], "operationId": "api_subscriptions_create", "security": TOKEN_SECURITY,
                 "summary": "Subscribes the caller to a proposal's events (members and staff)",
                 "description": "Webhooks are POSTed with X-GSP-Event, X-GSP-Delivery and X-GSP-Signature "
                                "(sha256=<hex HMAC-SHA256 of the body with the secret>).",
                 "requestBody": _BODY,
                 "responses": {"201": json_content(_CREATED, "Subscribed; the secret is shown this once."),
                               "400": error("A field missing, invalid or unknown, or a URL refused (not http(s), "
                                            "unresolvable, or a loopback, private, link-local or multicast address)."),
                               "404": error("No such proposal among the caller's.")}},
        "get": {"tags": ["notifications"], "operationId": "api_subscriptions_list", "security": TOKEN_SECURITY,
                "summary": "The caller's subscriptions (staff: all)",
                "parameters": paging_parameters(MAX_PAGE_SIZE),
                "responses": {"200": json_content(page_of(_SUBSCRIPTION), "One page of subscriptions."),
                              "400": error("Bad page parameters.")}}},
    "/api/subscriptions/{subscription_id}/": {"delete": {
        "tags": ["notifications"], "operationId": "api_subscriptions_delete", "security": TOKEN_SECURITY,
        "summary": "Unsubscribes", "parameters": _ONE,
        "responses": {"204": {"description": "Deleted."}, "400": BAD_ID, "404": _NOT_FOUND}}},
    "/api/subscriptions/{subscription_id}/deliveries/": {"get": {
        "tags": ["notifications"], "operationId": "api_subscriptions_deliveries", "security": TOKEN_SECURITY,
        "summary": "Each delivery attempt of a subscription, newest first: time, status, error",
        "parameters": [*_ONE, *paging_parameters(MAX_PAGE_SIZE)],
        "responses": {"200": json_content(page_of(_ATTEMPT), "One page of attempts."),
                      "400": error("A bad id or page parameter."), "404": _NOT_FOUND}}},
}
