"""Deleting a product (never a raw file): asked for by its button, confirmed in a dialog."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from auth.permissions import can_change_file
from callbacks.data.common import register_clicks, signed_in_user
from components import ids
from components.data_view import visible_file
from db.models import File
from live.catalogue import DeleteRefused, delete_products
from pipeline.datatypes import DataType

# (dialog open, name in it, file to delete, file to show, message, change stamp) when the dialog just closes
CLOSED = (False, no_update, None, no_update, no_update, no_update)


def can_delete(user, file: File) -> bool:
    return file.data_type != DataType.RAW and can_change_file(user, file)


def delete_product(user, file: File) -> str:
    """Delete a processed file (row and product on disk). Returns its name. Raises PermissionError."""
    name = file.file_name
    try:
        delete_products(user, [file])
    except DeleteRefused as error:
        raise PermissionError(str(error)) from None
    return name


def _ask(user, file_id):
    """Open the dialog for a file the user may delete."""
    file = visible_file(user, file_id)
    if file is None or not can_delete(user, file):
        raise PreventUpdate
    return True, file.file_name, file.id, no_update, no_update, no_update


def _confirmed(user, target):
    """Delete the file of the dialog and show where it came from (its parent or raw frame)."""
    file = visible_file(user, target)
    if file is None:
        return CLOSED
    go_to = file.parent_file_id or file.original_file_id
    try:
        name = delete_product(user, file)
    except PermissionError as error:
        return (*CLOSED[:4], dbc.Alert(str(error), color="danger", className="py-2 small"), no_update)
    message = dbc.Alert([html.I(className="bi bi-trash me-2"), f"Deleted {name}."], color="secondary",
                        className="py-2 mb-0 small", id="data-deleted", duration=8000)
    return False, no_update, None, go_to, message, f"deleted-{target}"


def register(app) -> None:
    register_clicks(app, {"type": ids.DATA_DELETE, "index": ALL}, ids.DATA_DELETE_ASKED)

    @app.callback(Output(ids.DATA_DELETE_MODAL, "is_open"), Output(ids.DATA_DELETE_NAME, "children"),
                  Output(ids.DATA_DELETE_TARGET, "data"),
                  Output(ids.DATA_SELECTED, "data", allow_duplicate=True),
                  Output(ids.DATA_ACTION_MESSAGE, "children", allow_duplicate=True),
                  Output(ids.DATA_STAMP, "data", allow_duplicate=True),
                  Input(ids.DATA_DELETE_ASKED, "data"),
                  Input(ids.DATA_DELETE_CONFIRM, "n_clicks"), Input(ids.DATA_DELETE_CANCEL, "n_clicks"),
                  State(ids.DATA_DELETE_TARGET, "data"), prevent_initial_call=True)
    def delete(asked, _confirm, _cancel, target):
        user = signed_in_user()
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        if trigger == ids.DATA_DELETE_ASKED:
            return _ask(user, asked["index"])
        if trigger == ids.DATA_DELETE_CANCEL:
            return CLOSED
        return _confirmed(user, target)
