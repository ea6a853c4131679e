"""What the Data page's callback modules share."""
from __future__ import annotations

from datetime import timezone

from dash import Input, Output
from dash.exceptions import PreventUpdate
from flask_login import current_user

from components.data_view import digest


# The buttons of a newly shown file report their n_clicks as they mount, and Dash asked the server about each
# on every Follow move (two requests next to the viewer's); in the browser only a click goes on, as its button's
# id and time (a click after a redraw gives n_clicks 1 again) in a store the server's callback listens to.
CLICKED_JS = """
function(_clicks) {
    const context = window.dash_clientside.callback_context;
    const trigger = context.triggered_id;
    if (!trigger || typeof trigger !== 'object' || !context.triggered.length || !context.triggered[0].value) {
        return window.dash_clientside.no_update;
    }
    return Object.assign({}, trigger, {at: Date.now()});
}
"""


def register_clicks(app, buttons: dict, store_id: str) -> None:
    """Clicks of the ``buttons`` (a pattern id) into ``store_id``, without a request for their mounting."""
    app.clientside_callback(CLICKED_JS, Output(store_id, "data"), Input(buttons, "n_clicks"),
                            prevent_initial_call=True)


def signed_in_user():
    """The signed-in user; a callback of a signed-out browser does nothing."""
    if not current_user or not current_user.is_authenticated:
        raise PreventUpdate
    return current_user


def utc_text(moment) -> str:
    """A database time (naive ones are UTC) as UTC text."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def changed(drawn: tuple, shown_digest) -> tuple:
    """``drawn`` (a callback's outputs) and their digest, or nothing sent when the page shows them already."""
    new = digest(drawn)
    if new == shown_digest:
        raise PreventUpdate
    return (*drawn, new)
