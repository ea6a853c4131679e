"""User panel: regenerate the API token (shown once)."""
from dash import Input, Output, no_update
from flask_login import current_user

from components import ids
from db import db
from db.accounts import regenerate_token


def register(app):
    @app.callback(Output(ids.ACCOUNT_TOKEN, "children"), Input(ids.ACCOUNT_TOKEN_BUTTON, "n_clicks"),
                  prevent_initial_call=True)
    def new_token(n_clicks):
        if not n_clicks:
            return no_update
        key = regenerate_token(current_user)
        db.session.commit()
        return key
