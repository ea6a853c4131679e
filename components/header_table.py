"""The searchable FITS header table of the Data page (keyword, value, comment)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from pipeline.products import read_product

MAX_ROWS = 2000


def header_cards(path) -> list[dict]:
    """The cards of the header that describes the frame (COMMENT/HISTORY included), values as text; a card
    that is not valid FITS keeps the text as written and says so (``invalid``).

    Raises pipeline.products.ProductError when the file cannot be read.
    """
    return [{**card, "value": "" if card["value"] is None else str(card["value"])} for card in read_product(path).cards]


def filter_cards(cards: list[dict], text: str | None) -> list[dict]:
    """Cards whose keyword, value or comment contains every word of ``text`` (case-insensitive)."""
    words = (text or "").lower().split()
    if not words:
        return cards
    return [card for card in cards
            if all(word in f"{card['keyword']} {card['value']} {card['comment']}".lower() for word in words)]


def _value_cell(card: dict):
    if "invalid" not in card:
        return html.Td(card["value"], className="gsp-val")
    return html.Td([html.Span(card["value"]), html.Span(card["invalid"], className="badge text-bg-warning ms-2")],
                   className="gsp-val", title=card["invalid"])


def header_table(cards: list[dict], total: int | None = None):
    total = len(cards) if total is None else total
    if not cards:
        return html.Div("No header card matches.", className="gsp-empty small py-3")
    rows = [html.Tr([html.Td(card["keyword"], className="gsp-kw"), _value_cell(card),
                     html.Td(card["comment"], className="gsp-comment")]) for card in cards[:MAX_ROWS]]
    return html.Div([
        html.Div(f"{len(cards)} of {total} cards", className="small text-muted mb-1", id="data-header-count"),
        dbc.Table([html.Thead(html.Tr([html.Th("Keyword"), html.Th("Value"), html.Th("Comment")])),
                   html.Tbody(rows)], size="sm", hover=True, className="gsp-header-table mb-0"),
    ])
