"""The page shell: navbar + the current page."""
from __future__ import annotations

import dash
from dash import dcc, html
from flask import has_request_context
from flask_login import current_user

from auth.views import csrf_token
from components import ids
from components.navbar import navbar


def signed_in_user():
    if has_request_context() and current_user.is_authenticated:
        return current_user
    return None


def shell():
    user = signed_in_user()
    return html.Div([
        dcc.Location(id=ids.URL),
        dcc.Store(id=ids.NAV_THEME_SAVED),
        navbar(user, csrf_token() if user is not None else None),
        html.Main(dash.page_container, className="container-fluid gsp-main"),
    ])
