"""User controls: account details, API token, password change."""
import dash
import dash_bootstrap_components as dbc
from dash import html
from flask_login import current_user

from components import ids

dash.register_page(__name__, path="/account", name="Account", title="Account · GSP Live")


def _row(label, value, value_id=None):
    return dbc.Row([dbc.Col(html.Strong(label), width=3), dbc.Col(value, id=value_id or f"account-{label.lower()}")],
                   className="mb-2")


def layout(**_query):
    user = current_user
    return dbc.Card([
        dbc.CardHeader(html.H2("User Information", className="h5 mb-0")),
        dbc.CardBody([
            _row("Username", user.username),
            _row("Name", user.full_name),
            _row("E-Mail", user.email),
            _row("Partner", user.partner),
            _row("API Token", html.Div([
                html.Div("Your token is stored hashed and cannot be shown again. "
                         "Generate a new one to use the API (the old one stops working).",
                         className="form-text mb-2"),
                html.Code(id=ids.ACCOUNT_TOKEN, className="d-block mb-2"),
                dbc.Button("Generate new token", id=ids.ACCOUNT_TOKEN_BUTTON, color="warning", size="sm"),
            ])),
            html.A("Change Password", href="/account/password", className="btn btn-secondary mt-2",
                   id="account-change-password"),
        ]),
    ])
