"""User controls: account details, API token, password change, visual options (stored per user), notifications."""
import dash
import dash_bootstrap_components as dbc
from dash import html
from flask_login import current_user

from auth.accounts import MAX_NAME_LENGTH, PARTNERS
from components import ids
from components.subscriptions import notifications_card
from figures.style import COLORMAPS

dash.register_page(__name__, path="/account", name="Account", title="Account · GSP Live")

THEME_CHOICES = {"dark": "Dark", "light": "Light"}
FORMAT_CHOICES = {"static": "Static (fastest)", "interactive": "Interactive (zoom, hover)"}


def _row(label, value, value_id=None, icon="dot"):
    return dbc.Row([
        dbc.Col([html.I(className=f"bi bi-{icon} me-2"), label], width=12, md=3),
        dbc.Col(value, id=value_id or f"account-{label.lower().replace(' ', '-')}", width=12, md=9),
    ], className="mb-2 align-items-center")


def _visual_options(user):
    colormap = user.colormap if user.colormap in COLORMAPS else "gray"
    return dbc.Card([
        dbc.CardHeader(html.H2("Visual Options", className="h5 mb-0")),
        dbc.CardBody([
            _row("Theme", dbc.RadioItems(id=ids.ACCOUNT_THEME, inline=True, value=user.theme or "dark",
                                         options=[{"label": v, "value": k} for k, v in THEME_CHOICES.items()]),
                 "account-theme-row", "moon-stars"),
            _row("Color map", dbc.Select(id=ids.ACCOUNT_COLORMAP, value=colormap,
                                         options=[{"label": v, "value": k} for k, v in COLORMAPS.items()]),
                 "account-colormap-row", "palette"),
            _row("Format", dbc.RadioItems(id=ids.ACCOUNT_FORMAT, inline=True, value=user.plot_format or "interactive",
                                          options=[{"label": v, "value": k} for k, v in FORMAT_CHOICES.items()]),
                 "account-format-row", "image"),
            _row("Saturation", dbc.Checklist(id=ids.ACCOUNT_SATURATED, switch=True,
                                             options=[{"label": "Show saturated pixels", "value": "on"}],
                                             value=["on"] if user.show_saturated else []),
                 "account-saturated-row", "eye"),
            html.Div(id=ids.ACCOUNT_VISUAL_MESSAGE, className="small mt-2"),
            html.Div("Your choices are the defaults of the Data page; the theme applies on the next page load.",
                     className="form-text"),
        ]),
    ], className="mb-3")


def _token_modal():
    """A new token kills the old one at once (a script using it stops working): ask first."""
    return dbc.Modal([
        dbc.ModalHeader(dbc.ModalTitle("Generate a new API token?")),
        dbc.ModalBody([html.P("Your current token stops working at once: every script or notebook that uses it "
                              "gets \"401 Invalid token\" until you give it the new one."),
                       html.P("The new token is shown once, here.", className="small mb-0")]),
        dbc.ModalFooter([
            dbc.Button("Cancel", id=ids.ACCOUNT_TOKEN_CANCEL, n_clicks=0, color="secondary"),
            dbc.Button([html.I(className="bi bi-key me-1"), "Generate and replace"], id=ids.ACCOUNT_TOKEN_CONFIRM,
                       n_clicks=0, color="warning"),
        ]),
    ], id=ids.ACCOUNT_TOKEN_MODAL, is_open=False, centered=True)


def layout(**_query):
    user = current_user
    return html.Div([
        dbc.Card([
            dbc.CardHeader(html.H2(["User Information - ", html.Span(user.username, className="text-info")],
                                   className="h5 mb-0")),
            dbc.CardBody([
                _row("Username", user.username, icon="person-badge"),
                _row("Name", dbc.Row([
                    dbc.Col(dbc.Input(id=ids.ACCOUNT_FIRST_NAME, value=user.first_name, placeholder="First name",
                                      maxLength=MAX_NAME_LENGTH, size="sm"), sm=6),
                    dbc.Col(dbc.Input(id=ids.ACCOUNT_LAST_NAME, value=user.last_name, placeholder="Last name",
                                      maxLength=MAX_NAME_LENGTH, size="sm"), sm=6)], className="g-2"),
                     icon="person"),
                _row("E-Mail", dbc.Input(id=ids.ACCOUNT_EMAIL, type="email", value=user.email, size="sm"),
                     icon="envelope"),
                _row("Partner", dbc.Select(id=ids.ACCOUNT_PARTNER, value=user.partner, size="sm",
                                           options=[{"label": p, "value": p} for p in PARTNERS]), icon="bank"),
                dbc.Row(dbc.Col(html.Div([
                    dbc.Button([html.I(className="bi bi-save me-1"), "Save details"], id=ids.ACCOUNT_SAVE,
                               color="success", size="sm", n_clicks=0),
                    html.Div(id=ids.ACCOUNT_MESSAGE, className="ms-3 small")], className="d-flex align-items-center"),
                    md={"size": 9, "offset": 3}), className="mb-3"),
                _row("API Token", html.Div([
                    html.Div("Your token is stored hashed and cannot be shown again. "
                             "Generate a new one to use the API (the old one stops working).",
                             className="form-text mb-2"),
                    html.Code(id=ids.ACCOUNT_TOKEN, className="d-block mb-2 gsp-token"),
                    dbc.Button([html.I(className="bi bi-key me-1"), "Generate new token"],
                               id=ids.ACCOUNT_TOKEN_BUTTON, color="warning", size="sm"),
                    _token_modal(),
                ]), "account-api-token", "key"),
                html.A([html.I(className="bi bi-key me-1"), "Change Password"], href="/account/password",
                       className="btn btn-danger mt-2", id="account-change-password"),
            ]),
        ], className="mb-3"),
        _visual_options(user),
        notifications_card(user),
    ], className="gsp-account")
