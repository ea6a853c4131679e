"""The shown file's FITS header: folded away, and read only when opened."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Input, Output, State

from callbacks.data.common import signed_in_user
from components import ids
from components.data_view import visible_file
from components.header_table import filter_cards, header_cards, header_table
from pipeline.products import ProductError


def register(app) -> None:
    @app.callback(Output(ids.DATA_HEADER_COLLAPSE, "is_open"), Output("data-header-chevron", "className"),
                  Input(ids.DATA_HEADER_TOGGLE, "n_clicks"), State(ids.DATA_HEADER_COLLAPSE, "is_open"),
                  prevent_initial_call=True)
    def toggle_header(_n, is_open):
        return not is_open, f"bi bi-chevron-{'down' if is_open else 'up'} me-1"

    @app.callback(Output(ids.DATA_HEADER_TABLE, "children"), Input(ids.DATA_DRAWN, "data"),
                  Input(ids.DATA_HEADER_SEARCH, "value"), Input(ids.DATA_HEADER_COLLAPSE, "is_open"))
    def header(selected, text, is_open):
        if not is_open:
            return None  # read lazily: most switches never open the header
        file = visible_file(signed_in_user(), selected)
        if file is None:
            return None
        try:
            cards = header_cards(file.full_path)
        except ProductError as error:
            return dbc.Alert(str(error), color="warning", className="small")
        return header_table(filter_cards(cards, text), total=len(cards))
