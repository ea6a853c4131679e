"""Management (staff only): add and manage users, add and manage proposals.

Every route answers anyone who is not staff with the not-found view, exactly as
for a page that does not exist; the callbacks check again on the server.
"""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_login import current_user

from auth.accounts import PARTNERS, next_soar_id, semester_of
from auth.permissions import can_manage_users
from auth.queries import active_users, is_number
from components import ids
from components.forms import labelled, not_found
from db.models import User

dash.register_page(f"{__name__}.home", path="/management", name="Management",
                   title="Management · GSP Live", layout=lambda **q: home_layout(**q))
dash.register_page(f"{__name__}.users_new", path="/management/users/new", name="Add User",
                   title="Add User · GSP Live", layout=lambda **q: user_new_layout(**q))
dash.register_page(f"{__name__}.users", path="/management/users", name="Manage Users",
                   title="Manage Users · GSP Live", layout=lambda **q: users_layout(**q))
dash.register_page(f"{__name__}.proposals_new", path="/management/proposals/new", name="Add Proposal",
                   title="Add Proposal · GSP Live", layout=lambda **q: proposal_new_layout(**q))
dash.register_page(f"{__name__}.proposals", path="/management/proposals", name="Manage Proposals",
                   title="Manage Proposals · GSP Live", layout=lambda **q: proposals_layout(**q))


def staff_only(build):
    """The not-found view for anyone who may not manage users (the menu is hidden from them too)."""
    def layout(**query):
        if not can_manage_users(current_user):
            return not_found("page")
        return build(**query)
    return layout


def _card(title: str, body, *, actions=None, card_id: str):
    header = [html.H2(title, className="h5 mb-0")]
    if actions is not None:
        header.append(html.Div(actions, className="ms-auto"))
    return dbc.Card([dbc.CardHeader(html.Div(header, className="d-flex align-items-center")),
                     dbc.CardBody(body)], className="gsp-management", id=card_id)


@staff_only
def home_layout(**_query):
    links = [("Add User", "/management/users/new", "person-plus"),
             ("Manage Users", "/management/users", "people"),
             ("Add Proposal", "/management/proposals/new", "journal-plus"),
             ("Manage Proposals", "/management/proposals", "journals")]
    return _card("Management", dbc.Row([
        dbc.Col(dcc.Link([html.I(className=f"bi bi-{icon} me-2"), label], href=href,
                         className="btn btn-outline-info w-100"), md=3) for label, href, icon in links
    ], className="g-3"), card_id="management-home")


@staff_only
def user_new_layout(**_query):
    return dbc.Row(dbc.Col(_card("Add new user", [
        dcc.Location(id=ids.MANAGEMENT_REDIRECT, refresh="callback-nav"),
        html.Div(id=ids.USER_FORM_MESSAGE),
        dbc.Row([labelled("First Name", dbc.Input(id=ids.USER_FIRST_NAME, autoComplete="off"), width=6),
                 labelled("Last Name", dbc.Input(id=ids.USER_LAST_NAME, autoComplete="off"), width=6)]),
        labelled("Username", dbc.Input(id=ids.USER_USERNAME, autoComplete="off"),
                 "Letters, digits and . @ + - _ only. Leave empty to use the part of the e-mail before the @."),
        labelled("E-mail", dbc.Input(id=ids.USER_EMAIL, type="email", autoComplete="off"),
                 "The new user receives a link to set a password at this address."),
        labelled("Partner", dbc.Select(id=ids.USER_PARTNER, placeholder="Please Select a Partner",
                                       options=[{"label": p, "value": p} for p in PARTNERS])),
        html.Div(dbc.Button("Create", id=ids.USER_CREATE, color="success", n_clicks=0), className="text-end"),
        html.Div("Staff accounts can only be made by a superuser, from Manage Users.",
                 className="form-text mt-2"),
    ], actions=dcc.Link("Manage Users", href="/management/users", className="btn btn-sm btn-outline-secondary"),
        card_id="user-new-card"), lg=6, md=8))


@staff_only
def users_layout(**_query):
    return _card("Manage Users", [
        dbc.InputGroup([dbc.InputGroupText(html.I(className="bi bi-search")),
                        dbc.Input(id=ids.USERS_SEARCH, placeholder="Search username, name or e-mail",
                                  type="search", debounce=True)], className="mb-3"),
        html.Div(id=ids.USERS_MESSAGE),
        dcc.Loading(html.Div(id=ids.USERS_TABLE), type="dot"),
    ], actions=dcc.Link([html.I(className="bi bi-person-plus me-1"), "Add new"], href="/management/users/new",
                        className="btn btn-sm btn-success", id="users-add-new"), card_id="users-card")


def _user_label(user: User) -> str:
    return f"{user.full_name} ({user.username}, {user.email})"


@staff_only
def proposal_new_layout(pi=None, **_query):
    users = active_users()
    chosen = int(pi) if is_number(pi) and any(u.id == int(pi) for u in users) else None
    semester = semester_of()
    return dbc.Row(dbc.Col(_card("New Proposal", [
        dcc.Location(id=ids.MANAGEMENT_REDIRECT, refresh="callback-nav"),
        html.Div(id=ids.PROPOSAL_FORM_MESSAGE),
        dbc.Row([
            labelled("PI", dcc.Dropdown(id=ids.PROPOSAL_PI, value=chosen, placeholder="Select the PI",
                                        options=[{"label": _user_label(u), "value": u.id} for u in users],
                                        className="gsp-dropdown"), width=8),
            labelled("Semester", dbc.Input(id=ids.PROPOSAL_SEMESTER, value=semester, debounce=True),
                     "A = February-July, B = August-January.", width=4),
        ]),
        labelled("Soar id", dbc.Input(id=ids.PROPOSAL_SOAR_ID, value=next_soar_id(semester)),
                 "Set automatically from the semester and the next free number. Make sure it matches the "
                 "PROPOSAL keyword of the FITS headers, or the PI and collaborators will not see their data."),
        labelled("Title", dbc.Input(id=ids.PROPOSAL_TITLE)),
        labelled("Abstract", dbc.Textarea(id=ids.PROPOSAL_ABSTRACT, rows=5)),
        html.Div(dbc.Button("Create", id=ids.PROPOSAL_CREATE, color="success", n_clicks=0), className="text-end"),
    ], actions=dcc.Link("Manage Proposals", href="/management/proposals",
                        className="btn btn-sm btn-outline-secondary"), card_id="proposal-new-card"), lg=8))


@staff_only
def proposals_layout(**_query):
    return _card("Manage Proposals", [
        dbc.InputGroup([dbc.InputGroupText(html.I(className="bi bi-search")),
                        dbc.Input(id=ids.MANAGED_PROPOSALS_SEARCH, placeholder="Search SOAR id, title or PI",
                                  type="search", debounce=True)], className="mb-3"),
        dcc.Loading(html.Div(id=ids.MANAGED_PROPOSALS_TABLE), type="dot"),
    ], actions=dcc.Link([html.I(className="bi bi-journal-plus me-1"), "Add new"],
                        href="/management/proposals/new", className="btn btn-sm btn-success",
                        id="proposals-add-new"), card_id="managed-proposals-card")
