"""Callbacks of the logs page: filter and page through auth.audit.list_log_entries."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Input, Output, ctx, html
from flask_login import current_user

from auth.audit import LogQueryError, list_log_entries
from components import ids
from components.forms import when

PAGE_SIZE = 50
LEVEL_COLORS = {"DEBUG": "secondary", "INFO": "info", "WARNING": "warning", "ERROR": "danger", "CRITICAL": "danger"}


def _details(details: dict | None):
    if not details:
        return ""
    if "field" in details and ("old" in details or "new" in details):
        return f"{details['field']}: {details.get('old')!r} → {details.get('new')!r}"
    return ", ".join(f"{key}={value}" for key, value in details.items())


def logs_table(rows):
    if not rows:
        return html.Div("No events match.", className="gsp-empty", id="logs-empty")
    body = [html.Tr([
        html.Td(when(entry.created), className="text-nowrap"),
        html.Td(dbc.Badge(entry.level, color=LEVEL_COLORS.get(entry.level, "secondary"))),
        html.Td(html.Code(entry.event)),
        html.Td(soar_id or ""),
        html.Td(username or ""),
        html.Td([entry.message, html.Div(_details(entry.details), className="text-muted small")]),
    ], className=f"gsp-log gsp-log-{entry.level.lower()}") for entry, soar_id, username in rows]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("When", "Level", "Event", "Proposal", "User",
                                                                "Message")])), html.Tbody(body)],
                     hover=True, size="sm", responsive=True, className="gsp-table mb-0", id="logs-rows")


def _chosen(value):
    return None if value in (None, "", "all") else value


def show_logs(level, proposal, text, page):
    # A new filter starts again at page 1.
    if ctx.triggered_id != ids.LOGS_PAGE:
        page = 1
    try:
        result = list_log_entries(current_user, level=_chosen(level), proposal=_chosen(proposal), text=text,
                                  page=page or 1, page_size=PAGE_SIZE)
    except LogQueryError as error:
        return dbc.Alert(str(error), color="danger"), "0", 1, 1
    if result.rows == [] and result.page > 1:
        result = list_log_entries(current_user, level=_chosen(level), proposal=_chosen(proposal), text=text,
                                  page=result.pages, page_size=PAGE_SIZE)
    return logs_table(result.rows), str(result.count), result.pages, result.page


def register(app):
    app.callback(
        Output(ids.LOGS_TABLE, "children"),
        Output(ids.LOGS_COUNT, "children"),
        Output(ids.LOGS_PAGE, "max_value"),
        Output(ids.LOGS_PAGE, "active_page"),
        Input(ids.LOGS_LEVEL, "value"),
        Input(ids.LOGS_PROPOSAL, "value"),
        Input(ids.LOGS_TEXT, "value"),
        Input(ids.LOGS_PAGE, "active_page"),
    )(show_logs)
