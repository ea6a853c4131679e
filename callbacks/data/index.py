"""The file indexes (Observed, Calibrations): their lists, redrawn when the page's change stamp moves
(callbacks/data/changes.py), and their pagers."""
from __future__ import annotations

from dash import ALL, Input, Output, State, ctx
from dash.exceptions import PreventUpdate

from auth import queries
from callbacks.data.common import changed, signed_in_user
from components import ids
from components.data_view import (
    CALIBRATIONS,
    OBSERVED,
    calibrations_view,
    observed_view,
)
from components.file_index import CALIBRATIONS_PAGE_SIZE, OBSERVED_PAGE_SIZE, move_page


def _moved_page(params: dict, page_size: int, page, target) -> int:
    """The index page a pager click (or the "go to" box, ``target``) moves to from ``page``."""
    trigger = ctx.triggered_id
    if not ctx.triggered or not ctx.triggered[0]["value"]:
        raise PreventUpdate
    move = trigger["go"] if isinstance(trigger, dict) else "go"
    pages = queries.last_page(queries.count_visible(signed_in_user(), params), page_size)
    new = move_page(move, page or 1, pages, target)
    if new == page:
        raise PreventUpdate
    return new


def _register_listing(app, index_id, count_id, page_text_id, page_id, digest_id, view) -> None:
    """An index's list, count and page text, drawn by ``view`` (user, page, selected id), sent when they changed."""
    # the first pages come with the layout (first_paint): only a change or a page move asks again
    @app.callback(Output(index_id, "children"), Output(count_id, "children"), Output(page_text_id, "children"),
                  Output(digest_id, "data"), Input(ids.DATA_STAMP, "data"), Input(page_id, "data"),
                  State(ids.DATA_SELECTED, "data"), State(digest_id, "data"), prevent_initial_call=True)
    def listing(_stamp, page, selected, shown):
        return changed(view(signed_in_user(), page, selected), shown)


def register(app) -> None:
    _register_listing(app, ids.DATA_OBSERVED_INDEX, ids.DATA_OBSERVED_COUNT, ids.DATA_OBSERVED_PAGE_TEXT,
                      ids.DATA_OBSERVED_PAGE, ids.DATA_OBSERVED_DIGEST, observed_view)
    _register_listing(app, ids.DATA_CALIB_INDEX, ids.DATA_CALIB_COUNT, ids.DATA_CALIB_PAGE_TEXT,
                      ids.DATA_CALIB_PAGE, ids.DATA_CALIB_DIGEST, calibrations_view)

    @app.callback(Output(ids.DATA_OBSERVED_PAGE, "data"),
                  Input({"type": ids.DATA_OBSERVED_PAGER, "go": ALL}, "n_clicks"),
                  Input(ids.DATA_OBSERVED_PAGE_GO, "n_clicks"), Input(ids.DATA_OBSERVED_PAGE_INPUT, "n_submit"),
                  State(ids.DATA_OBSERVED_PAGE, "data"), State(ids.DATA_OBSERVED_PAGE_INPUT, "value"),
                  prevent_initial_call=True)
    def observed_page(_moves, _go, _submit, page, target):
        return _moved_page(OBSERVED, OBSERVED_PAGE_SIZE, page, target)

    @app.callback(Output(ids.DATA_CALIB_PAGE, "data"),
                  Input({"type": ids.DATA_CALIB_PAGER, "go": ALL}, "n_clicks"),
                  State(ids.DATA_CALIB_PAGE, "data"), prevent_initial_call=True)
    def calibrations_page(_moves, page):
        return _moved_page(CALIBRATIONS, CALIBRATIONS_PAGE_SIZE, page, None)
