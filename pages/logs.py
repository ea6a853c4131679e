"""Logs: the important events, newest first, filterable by level, proposal and text.

Users see the events of their proposals and of the files they may see; staff see
everything (login failures included).  The query is auth.audit.list_log_entries,
shared with GET /api/logs/.
"""
import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_login import current_user

from auth.audit import LEVELS
from auth.queries import visible_proposal_names
from components import ids

dash.register_page(__name__, path="/logs", name="Logs", title="Logs · GSP Live")

ALL = "all"  # the filters' "no filter" choice


def layout(level=None, proposal=None, q=None, **_query):
    proposals = visible_proposal_names(current_user)
    known = {str(pid) for pid, _ in proposals}
    scope = ("All events, including logins and account changes." if current_user.is_staff else
             "Events of your proposals and of the files you can see.")
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.H2(["Logs ", dbc.Badge("0", id=ids.LOGS_COUNT, color="info", pill=True)], className="h5 mb-0"),
            html.Span(scope, className="text-muted small ms-3"),
        ], className="d-flex align-items-center")),
        dbc.CardBody([
            dbc.Row([
                dbc.Col(dbc.Select(id=ids.LOGS_LEVEL, value=level if level in LEVELS else ALL,
                                   options=[{"label": "All levels", "value": ALL}]
                                   + [{"label": name.title(), "value": name} for name in LEVELS]), md=2),
                dbc.Col(dbc.Select(id=ids.LOGS_PROPOSAL, value=str(proposal) if str(proposal) in known else ALL,
                                   options=[{"label": "All proposals", "value": ALL}]
                                   + [{"label": soar_id, "value": str(pid)} for pid, soar_id in proposals]),
                        md=3),
                dbc.Col(dbc.InputGroup([dbc.InputGroupText(html.I(className="bi bi-search")),
                                        dbc.Input(id=ids.LOGS_TEXT, value=q or "", type="search", debounce=True,
                                                  placeholder="Text in the message, event or subject")]), md=7),
            ], className="g-2 mb-3"),
            dcc.Loading(html.Div(id=ids.LOGS_TABLE), type="dot"),
            html.Div(dbc.Pagination(id=ids.LOGS_PAGE, max_value=1, active_page=1, fully_expanded=False,
                                    first_last=True, previous_next=True, className="justify-content-center mb-0"),
                     className="mt-3", id="logs-pager"),
        ]),
    ], className="gsp-logs")
