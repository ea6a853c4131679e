"""The user panel's notifications: one's subscriptions, each editable in place, and a form for a new one
(auth/subscriptions.py; callbacks/account.py)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from auth.queries import visible_proposal_names
from auth.subscriptions import EVENTS, FORMATS, own_subscriptions
from components import ids
from db import db
from db.models import Subscription
from db.serialize import iso_time

EVENT_LABELS = {"spectrum.ready": "Spectrum ready", "frame.failed": "Frame failed", "night.ready": "Night ready"}
FORMAT_LABELS = {"json": "JSON (signed)", "slack": "Slack / Mattermost"}
_EVENT_OPTIONS = [{"label": EVENT_LABELS[event], "value": event} for event in EVENTS]


def _switch(kind: str, subscription: Subscription, label: str, on: bool):
    return dbc.Checklist(id={"type": kind, "index": subscription.id}, switch=True, value=["on"] if on else [],
                         options=[{"label": label, "value": "on"}], className="small")


def _row(subscription: Subscription, staff: bool) -> html.Tr:
    owner = [html.Div(subscription.user.username, className="form-text")] if staff else []
    return html.Tr([
        html.Td([subscription.proposal.soar_id, *owner]),
        html.Td(dbc.Checklist(id={"type": ids.SUBSCRIPTION_EVENTS, "index": subscription.id}, options=_EVENT_OPTIONS,
                              value=list(subscription.events), className="small")),
        html.Td([html.Code(subscription.url, className="gsp-subscription-url"),
                 html.Div(FORMAT_LABELS[subscription.format], className="form-text")]),
        html.Td(_switch(ids.SUBSCRIPTION_EMAIL, subscription, "Digest", subscription.email)),
        html.Td([_switch(ids.SUBSCRIPTION_ACTIVE, subscription, "Active", not subscription.paused),
                 *([html.Div(f"failing since {iso_time(subscription.failing_since)[:16].replace('T', ' ')} UTC",
                             className="form-text text-warning")] if subscription.failing_since else []),
                 html.Div(id={"type": ids.SUBSCRIPTION_STATUS, "index": subscription.id}, className="small")]),
        html.Td(dbc.Button(html.I(className="bi bi-trash"), id={"type": ids.SUBSCRIPTION_DELETE, "index": subscription.id},
                           color="outline-danger", size="sm", n_clicks=0, title="Delete this subscription")),
    ], id=f"subscription-{subscription.id}")


def subscription_table(user):
    """The subscriptions ``user`` may change (their own; staff: all), or a line saying there are none."""
    subscriptions = db.session.scalars(own_subscriptions(user)).all()
    if not subscriptions:
        return html.P("No subscriptions yet.", className="text-muted small", id="account-no-subscriptions")
    header = html.Thead(html.Tr([html.Th(name) for name in ("Proposal", "Events", "Webhook", "E-mail", "State", "")]))
    return dbc.Table([header, html.Tbody([_row(subscription, user.is_staff) for subscription in subscriptions])],
                     size="sm", hover=True, responsive=True, className="align-middle mb-3")


def _new_subscription_form(user):
    proposals = [{"label": soar_id, "value": soar_id} for _id, soar_id in visible_proposal_names(user)]
    return dbc.Row([
        dbc.Col(dbc.Select(id=ids.SUBSCRIBE_PROPOSAL, options=proposals, placeholder="Proposal", size="sm",
                           value=proposals[0]["value"] if proposals else None), md=2),
        dbc.Col(dbc.Input(id=ids.SUBSCRIBE_URL, type="url", placeholder="https://hooks.example.org/…", size="sm"),
                md=3),
        dbc.Col(dbc.Checklist(id=ids.SUBSCRIBE_EVENTS, options=_EVENT_OPTIONS, value=["spectrum.ready"], inline=True,
                              className="small"), md=3),
        dbc.Col(dbc.Select(id=ids.SUBSCRIBE_FORMAT, size="sm", value="json",
                           options=[{"label": FORMAT_LABELS[name], "value": name} for name in FORMATS]), md=2),
        dbc.Col(dbc.Checklist(id=ids.SUBSCRIBE_EMAIL, switch=True, value=[],
                              options=[{"label": "E-mail", "value": "on"}], className="small"), md=1),
        dbc.Col(dbc.Button([html.I(className="bi bi-bell me-1"), "Subscribe"], id=ids.SUBSCRIBE_BUTTON, n_clicks=0,
                           color="success", size="sm"), md=1),
    ], className="g-2 align-items-center")


def notifications_card(user):
    return dbc.Card([
        dbc.CardHeader(html.H2("Notifications", className="h5 mb-0")),
        dbc.CardBody([
            html.Div("Webhooks are signed POSTs (X-GSP-Signature: HMAC-SHA256 of the body with the subscription's "
                     "secret, shown once when you subscribe); an e-mail digest comes at most every 10 minutes.",
                     className="form-text mb-2"),
            html.Div(subscription_table(user), id=ids.ACCOUNT_SUBSCRIPTIONS),
            html.H3("New subscription", className="h6"),
            _new_subscription_form(user),
            html.Div(id=ids.SUBSCRIBE_MESSAGE, className="small mt-2"),
        ]),
    ], className="mb-3", id="account-notifications")
