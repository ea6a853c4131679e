"""What the Data page's callback modules share."""
from __future__ import annotations

from datetime import timezone

from dash.exceptions import PreventUpdate
from flask_login import current_user

from components.data_view import digest


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
