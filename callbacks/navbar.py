"""The navbar's theme switch: the user's ``theme`` preference (also on the user panel), then a reload, since
the theme's stylesheet is linked ahead of the page (app.GspDash) and figures are drawn in it."""
from dash import Input, Output
from dash.exceptions import PreventUpdate
from flask_login import current_user

from callbacks.account import THEMES
from components import ids
from db import db


def other_theme(theme: str | None) -> str:
    return THEMES[1] if theme == THEMES[0] or theme not in THEMES else THEMES[0]


def register(app):
    @app.callback(Output(ids.NAV_THEME_SAVED, "data"), Input(ids.NAV_THEME, "n_clicks"), prevent_initial_call=True)
    def switch_theme(clicks):
        if not clicks or not current_user or not current_user.is_authenticated:
            raise PreventUpdate
        current_user.theme = other_theme(current_user.theme)
        db.session.commit()
        return current_user.theme

    app.clientside_callback(  # the button rests disabled while the page reloads in the new theme
        "function(theme) { if (!theme) { return false; } window.location.reload(); return true; }",
        Output(ids.NAV_THEME, "disabled"), Input(ids.NAV_THEME_SAVED, "data"), prevent_initial_call=True,
    )
