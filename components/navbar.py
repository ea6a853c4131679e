"""The always-present navigation bar of the manual."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids


def _link(label: str, href: str, icon: str, **kwargs):
    return dbc.NavItem(dbc.NavLink([html.I(className=f"bi bi-{icon} me-1"), label], href=href,
                                   active="exact", **kwargs))


def navbar(user, csrf: str | None = None) -> dbc.Navbar:
    """The links of the manual; for a signed-in user also the theme switch, the user panel and Sign Out (a
    form that POSTs with the session's ``csrf`` token: a link on another site cannot sign anyone out)."""
    items = [
        _link("Data", "/", "image"),
        _link("Search", "/search", "search"),
        _link("Proposals", "/proposals", "star"),
        _link("Logs", "/logs", "bug"),
    ]
    if user is not None and user.is_staff:
        items.append(dbc.DropdownMenu(
            [dbc.DropdownMenuItem("Add User", href="/management/users/new"),
             dbc.DropdownMenuItem("Manage Users", href="/management/users"),
             dbc.DropdownMenuItem("Add Proposal", href="/management/proposals/new"),
             dbc.DropdownMenuItem("Manage Proposals", href="/management/proposals")],
            label=[html.I(className="bi bi-gear me-1"), "Management"], nav=True, in_navbar=True,
            id="nav-management"))
    items.append(_link("API Docs", "/api/docs/", "info-circle", external_link=True))
    user_controls = []
    if user is not None:
        light = getattr(user, "theme", "dark") == "light"
        user_controls = [
            dbc.NavItem(dbc.Button(html.I(className=f"bi bi-{'moon-stars' if light else 'sun'}"), id=ids.NAV_THEME,
                                   n_clicks=0, color="link", className="nav-link gsp-theme-toggle",
                                   title=f"Switch to the {'dark' if light else 'light'} theme")),
            dbc.NavItem(dbc.NavLink([html.I(className="bi bi-person-gear me-1"), user.full_name],
                                    href="/account", id="nav-user", className="text-info")),
            dbc.NavItem(html.Form([
                dcc.Input(type="hidden", name="csrf_token", value=csrf),
                html.Button([html.I(className="bi bi-box-arrow-right me-1"), "Sign Out"], type="submit",
                            id="nav-logout", className="nav-link btn btn-link text-danger"),
            ], method="post", action="/logout", className="gsp-logout")),
        ]
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand(["Goodman Pipeline ", html.Span("Live", className="text-info")], href="/"),
            dbc.Nav(items, navbar=True, className="me-auto"),
            dbc.Nav(user_controls, navbar=True),
        ], fluid=True),
        id="navbar", color="primary" if getattr(user, "theme", "dark") == "light" else "dark", dark=True,
        className="mb-3 gsp-navbar",
    )
