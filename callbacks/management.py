"""Callbacks of the management pages (staff only, checked again on every call)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask_login import current_user

from auth import queries
from auth.accounts import (
    SEMESTER_RE,
    AccountError,
    create_proposal_for,
    invite_user,
    next_soar_id,
    send_password_reset,
    set_user_active,
    set_user_staff,
)
from auth.permissions import can_grant_staff, can_manage_users
from components import ids
from components.forms import when
from db import db
from db.models import User

LIMIT = 100
REFUSED = "Only staff may do this."


def _alert(message, color: str, alert_id: str):
    return dbc.Alert(message, color=color, id=alert_id, className="py-2 mb-3", dismissable=True)


# --- add user -------------------------------------------------------------------------------------

def create_user(n_clicks, first_name, last_name, username, email, partner):
    if not n_clicks:
        return no_update, no_update
    if not can_manage_users(current_user):
        return _alert(REFUSED, "danger", "user-form-alert"), no_update
    try:
        user = invite_user(current_user, email=email or "", username=username or "", first_name=first_name or "",
                           last_name=last_name or "", partner=partner or "")
    except AccountError as error:
        return _alert(str(error), "danger", "user-form-alert"), no_update
    # On to the proposal form with the new user as PI (the manual's flow).
    return (_alert(f"Created {user.username}; a link to set a password was sent to {user.email}.", "success",
                   "user-form-alert"), f"/management/proposals/new?pi={user.id}")


# --- manage users ---------------------------------------------------------------------------------

def _badge(flag: bool, yes: str, no: str, yes_color: str = "success"):
    return dbc.Badge(yes if flag else no, color=yes_color if flag else "secondary")


def _action(label: str, action: str, user: User, color: str, icon: str):
    return dbc.Button([html.I(className=f"bi bi-{icon} me-1"), label], size="sm", color=color, outline=True,
                      className="me-1 mb-1", n_clicks=0,
                      id={"type": ids.USERS_ACTION, "action": action, "user": user.id})


def users_table(search: str | None):
    users, count = queries.search_users(search, LIMIT)
    superuser = can_grant_staff(current_user)
    rows = []
    for user in users:
        actions = []
        if user.id != current_user.id and (superuser or not user.is_staff):
            actions.append(_action("Deactivate", "deactivate", user, "warning", "person-slash") if user.is_active
                           else _action("Activate", "activate", user, "success", "person-check"))
        actions.append(_action("Send reset mail", "reset", user, "info", "envelope"))
        if superuser and user.id != current_user.id and not user.is_superuser:
            actions.append(_action("Remove staff", "unstaff", user, "danger", "shield-x") if user.is_staff
                           else _action("Make staff", "staff", user, "secondary", "shield-plus"))
        rows.append(html.Tr([
            html.Td(user.username), html.Td(user.full_name), html.Td(user.email), html.Td(user.partner),
            html.Td([_badge(user.is_active, "active", "inactive"), " ",
                     _badge(user.is_staff, "superuser" if user.is_superuser else "staff", "user", "info")]),
            html.Td(when(user.last_login) or "never", className="text-nowrap"),
            html.Td(actions),
        ], id=f"user-row-{user.username}"))
    note = html.Div(f"Showing {len(users)} of {count} users" + ("; refine the search." if count > LIMIT else "."),
                    className="form-text mb-2", id="users-count")
    if not rows:
        return [note, html.Div("No users match.", className="gsp-empty")]
    return [note, dbc.Table([html.Thead(html.Tr([html.Th(h) for h in (
        "Username", "Name", "E-mail", "Partner", "Status", "Last login", "Actions")])), html.Tbody(rows)],
        hover=True, responsive=True, size="sm", className="gsp-table")]


def manage_users(search, _clicks):
    if not can_manage_users(current_user):
        return [], _alert(REFUSED, "danger", "users-alert")
    trigger, message = ctx.triggered_id, None
    if isinstance(trigger, dict) and ctx.triggered and ctx.triggered[0].get("value"):
        user = queries.user_by_id(trigger.get("user"))
        action = trigger.get("action")
        try:
            if user is None:
                raise AccountError("No such user.")
            if action in ("activate", "deactivate"):
                set_user_active(current_user, user, action == "activate")
                text = f"{user.username} is now {'active' if action == 'activate' else 'inactive'}."
            elif action == "reset":
                send_password_reset(current_user, user)
                text = f"A link to set a new password was sent to {user.email}."
            elif action in ("staff", "unstaff"):
                set_user_staff(current_user, user, action == "staff")
                text = f"{user.username} is {'now staff' if action == 'staff' else 'no longer staff'}."
            else:
                raise AccountError("Unknown action.")
            message = _alert(text, "success", "users-alert")
        except AccountError as error:
            db.session.rollback()
            message = _alert(str(error), "danger", "users-alert")
    return users_table(search), message


# --- add proposal ---------------------------------------------------------------------------------

def default_soar_id(semester):
    if not can_manage_users(current_user):
        return no_update
    semester = (semester or "").strip().upper()
    return next_soar_id(semester) if SEMESTER_RE.match(semester) else no_update


def create_proposal(n_clicks, pi_id, semester, soar_id, title, abstract):
    if not n_clicks:
        return no_update, no_update
    if not can_manage_users(current_user):
        return _alert(REFUSED, "danger", "proposal-form-alert"), no_update
    try:
        proposal = create_proposal_for(current_user, soar_id=soar_id, pi_id=pi_id, semester=semester,
                                       title=title or "", abstract=abstract or "")
    except AccountError as error:
        return _alert(str(error), "danger", "proposal-form-alert"), no_update
    return _alert(f"Created {proposal.soar_id}.", "success", "proposal-form-alert"), f"/proposals/{proposal.id}"


# --- manage proposals -----------------------------------------------------------------------------

def proposals_table(search):
    if not can_manage_users(current_user):
        return _alert(REFUSED, "danger", "managed-proposals-alert")
    proposals, count = queries.search_proposals(current_user, search, 1, LIMIT, by_people=True)
    counts = queries.collaborator_counts(p.id for p in proposals)
    note = html.Div(f"Showing {len(proposals)} of {count} proposals"
                    + ("; refine the search." if count > LIMIT else "."), className="form-text mb-2",
                    id="managed-proposals-count")
    if not proposals:
        return [note, html.Div("No proposals match.", className="gsp-empty")]
    rows = [html.Tr([
        html.Td(dcc.Link(p.soar_id, href=f"/proposals/{p.id}", className="gsp-soar-id")),
        html.Td(p.semester), html.Td(p.title),
        html.Td(p.pi.full_name if p.pi else "—", className="gsp-pi"),
        html.Td(dbc.Badge(str(counts.get(p.id, 0)), color="success", pill=True)),
        html.Td([dcc.Link(html.I(className="bi bi-person-plus"), href=f"/proposals/{p.id}?view=collaborators",
                          className="gsp-icon-link me-2", title="Collaborators"),
                 dcc.Link(html.I(className="bi bi-gear"), href=f"/proposals/{p.id}?view=settings",
                          className="gsp-icon-link", title="Data Reduction Settings")]),
    ], id=f"managed-proposal-{p.id}") for p in proposals]
    return [note, dbc.Table([html.Thead(html.Tr([html.Th(h) for h in (
        "SOAR id", "Semester", "Title", "PI", "Collaborators", "")])), html.Tbody(rows)],
        hover=True, responsive=True, size="sm", className="gsp-table")]


def register(app):
    app.callback(
        Output(ids.USER_FORM_MESSAGE, "children"),
        Output(ids.MANAGEMENT_REDIRECT, "href", allow_duplicate=True),
        Input(ids.USER_CREATE, "n_clicks"),
        State(ids.USER_FIRST_NAME, "value"), State(ids.USER_LAST_NAME, "value"),
        State(ids.USER_USERNAME, "value"), State(ids.USER_EMAIL, "value"), State(ids.USER_PARTNER, "value"),
        prevent_initial_call=True,
    )(create_user)

    app.callback(
        Output(ids.USERS_TABLE, "children"),
        Output(ids.USERS_MESSAGE, "children"),
        Input(ids.USERS_SEARCH, "value"),
        Input({"type": ids.USERS_ACTION, "action": ALL, "user": ALL}, "n_clicks"),
    )(manage_users)

    app.callback(
        Output(ids.PROPOSAL_SOAR_ID, "value"),
        Input(ids.PROPOSAL_SEMESTER, "value"),
        prevent_initial_call=True,
    )(default_soar_id)

    app.callback(
        Output(ids.PROPOSAL_FORM_MESSAGE, "children"),
        Output(ids.MANAGEMENT_REDIRECT, "href", allow_duplicate=True),
        Input(ids.PROPOSAL_CREATE, "n_clicks"),
        State(ids.PROPOSAL_PI, "value"), State(ids.PROPOSAL_SEMESTER, "value"),
        State(ids.PROPOSAL_SOAR_ID, "value"), State(ids.PROPOSAL_TITLE, "value"),
        State(ids.PROPOSAL_ABSTRACT, "value"),
        prevent_initial_call=True,
    )(create_proposal)

    app.callback(
        Output(ids.MANAGED_PROPOSALS_TABLE, "children"),
        Input(ids.MANAGED_PROPOSALS_SEARCH, "value"),
    )(proposals_table)
