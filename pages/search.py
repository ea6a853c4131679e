"""Search: the whole catalogue as a table ("Data Files"), filtered, paged on the server.

The filter state lives in the URL query (``/search?obstype=SPECTRUM&page=2``), so a
filtered view can be bookmarked; clicking a row opens the file in the Data page.
Callbacks: callbacks/search.py.
"""
import threading
from collections import OrderedDict

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_login import current_user

from auth.queries import DISTINCT_FILTERS
from components import ids
from components.file_index import STATES, pager
from pipeline.chain import DataType

dash.register_page(__name__, path="/search", name="Search", title="Search · GSP Live")

PAGE_SIZE = 50
# filter parameter -> label, in the order of the sidebar
FILTER_LABELS = {
    "proposal_id": "By proposal",
    "data_type": "By type",
    "obstype": "By obstype",
    "filter": "By filter",
    "filter_2": "By filter_2",
    "grating": "By grating",
    "wavmode": "By wavmode",
    "slit": "By slit",
    "roi": "By roi",
    "technique": "By technique",
    "date": "By date",
    "state": "By state",  # the API's state filter
}
FILTER_NAMES = tuple(FILTER_LABELS)
# Fixed widths, wide enough for what the columns hold: an autosize over an empty grid (the rows come
# after the first paint) sized them to their headers and cut file names and types. Type and State
# beside the name: what an observer scans first.
COLUMNS = [
    {"field": "file_name", "headerName": "File Name", "cellClass": "gsp-grid-link", "tooltipField": "file_name",
     "flex": 1, "minWidth": 380},
    {"field": "type", "headerName": "Type", "width": 170},
    {"field": "state", "headerName": "State", "tooltipField": "state_text", "width": 82},
    {"field": "proposal_id", "headerName": "Proposal ID", "width": 125},
    {"field": "obstype", "headerName": "Obstype", "width": 92},
    {"field": "wavmode", "headerName": "Wavmode", "width": 90},
    {"field": "filter", "headerName": "Filter", "width": 100},
    {"field": "filter_2", "headerName": "Filter 2", "width": 90},
    {"field": "grating", "headerName": "Grating", "width": 92},
    {"field": "slit", "headerName": "Slit", "width": 120},
    {"field": "roi", "headerName": "ROI", "width": 130},
    {"field": "date", "headerName": "Date", "width": 100},
]
GRID_THEMES = {
    "dark": "themeQuartz.withParams({backgroundColor: '#222222', foregroundColor: '#e6e6e6', "
            "accentColor: '#3498db', headerBackgroundColor: '#303030', fontFamily: 'inherit', fontSize: 12.5, "
            "rowHoverColor: '#2c3e50', spacing: 4, cellHorizontalPadding: 7, wrapperBorderRadius: 4})",
    "light": "themeQuartz.withParams({accentColor: '#2c3e50', fontFamily: 'inherit', fontSize: 12.5, spacing: 4, "
             "cellHorizontalPadding: 7})",
}


def filters_from_query(query: dict) -> dict:
    """The Search filters named in a URL query (unknown parameters are ignored)."""
    values = {}
    for name in FILTER_NAMES:
        value = query.get(name)
        if value not in (None, ""):
            values[name] = str(value)
    if query.get("search"):
        values["search"] = str(query["search"])[:200]
    if str(query.get("hide_raw_calibrations", "")).lower() in ("1", "true", "yes", "on"):
        values["hide_raw_calibrations"] = "1"
    try:
        values["page"] = max(1, int(query.get("page") or 1))
    except (TypeError, ValueError):
        values["page"] = 1
    return values


_OPTIONS_CACHE: OrderedDict = OrderedDict()
_OPTIONS_CACHE_SIZE = 64
_OPTIONS_LOCK = threading.Lock()


def _distinct(user) -> dict[str, list[str]]:
    """distinct_values, remembered until the catalogue changes (keyed by the global change stamp)."""
    from auth.queries import distinct_values, global_change_stamp, member_proposal_list

    memberships = member_proposal_list(user)
    key = (user.id, user.is_staff, memberships, global_change_stamp())
    with _OPTIONS_LOCK:
        if key in _OPTIONS_CACHE:
            _OPTIONS_CACHE.move_to_end(key)
            return _OPTIONS_CACHE[key]
    values = distinct_values(user, DISTINCT_FILTERS)
    with _OPTIONS_LOCK:
        _OPTIONS_CACHE[key] = values
        while len(_OPTIONS_CACHE) > _OPTIONS_CACHE_SIZE:
            _OPTIONS_CACHE.popitem(last=False)
    return values


def filter_options(user) -> dict[str, list[dict]]:
    from auth.queries import proposal_choices

    options = {name: [{"label": value, "value": value} for value in found]
               for name, found in _distinct(user).items()}
    options["proposal_id"] = [{"label": value, "value": value} for value in proposal_choices(user)]
    options["data_type"] = [{"label": kind.label, "value": str(kind.value)} for kind in DataType]
    options["state"] = [{"label": state, "value": state} for state in STATES]
    return options


def _filters_card(options: dict, state: dict):
    dropdowns = []
    for name, label in FILTER_LABELS.items():
        choices = options.get(name, [])
        value = state.get(name)
        if value is not None and value not in [c["value"] for c in choices]:
            choices = choices + [{"label": value, "value": value}]  # a bookmarked value no longer present
        dropdowns.append(html.Div([
            dbc.Label(label, html_for=f"search-filter-{name}"),
            dcc.Dropdown(id={"type": ids.SEARCH_FILTER, "name": name}, options=choices, value=value,
                         placeholder="All", clearable=True, className="gsp-search-dropdown"),
        ], className="mb-2"))
    return dbc.Card([
        dbc.CardHeader(html.Span("Filters", className="h6 mb-0 fw-bold")),
        dbc.CardBody([
            html.Div([
                dbc.Label("File name contains", html_for=ids.SEARCH_TEXT),
                dbc.Input(id=ids.SEARCH_TEXT, type="search", value=state.get("search", ""), debounce=True,
                          placeholder="e.g. NGC5128", size="sm"),
            ], className="mb-2"),
            dbc.Checklist(id=ids.SEARCH_HIDE_RAW_CALIBRATIONS, switch=True, className="mb-2",
                          options=[{"label": "Hide raw calibrations", "value": "1"}],
                          value=["1"] if state.get("hide_raw_calibrations") else []),
            *dropdowns,
            dbc.Button([html.I(className="bi bi-x-circle me-1"), "Reset filters"], id=ids.SEARCH_RESET,
                       n_clicks=0, color="secondary", size="sm", className="w-100 mt-2"),
        ], className="gsp-search-filters"),
    ])


def layout(**query):
    """Drawn by ``search_body`` once AG Grid's script is in the page (it is left out of every page's
    scripts: app.DEFERRED_LIBRARIES); until then, a spinner."""
    return html.Div([
        dcc.Store(id=ids.SEARCH_QUERY, data=query),
        dcc.Store(id=ids.SEARCH_GRID_LOADED),
        html.Div(dbc.Spinner(color="info", spinner_class_name="m-5"), id=ids.SEARCH_BODY),
    ])


def search_body(query: dict):
    user = current_user if current_user and current_user.is_authenticated else None
    state = filters_from_query(query)
    options = filter_options(user) if user is not None else {}
    theme = getattr(user, "theme", "dark") if user is not None else "dark"
    grid = dag.AgGrid(
        id=ids.SEARCH_GRID, columnDefs=COLUMNS, rowData=[], className="gsp-search-grid",
        getRowId="params.data.id",
        defaultColDef={"sortable": False, "resizable": True, "suppressMovable": True},
        dashGridOptions={"theme": {"function": GRID_THEMES.get(theme, GRID_THEMES["dark"])},
                         "suppressCellFocus": True, "rowHeight": 30, "headerHeight": 34, "tooltipShowDelay": 400,
                         "animateRows": False},
        style={"height": "calc(100vh - 16rem)", "minHeight": "420px"},
    )
    table = dbc.Card([
        dbc.CardHeader(html.Div([
            html.Span("Data Files", className="h6 mb-0 fw-bold"),
            dbc.Badge("0", id=ids.SEARCH_COUNT, color="info", pill=True, className="ms-2 gsp-count"),
            html.Span(id=ids.SEARCH_MESSAGE, className="small ms-3 text-warning"),
            html.A([html.I(className="bi bi-file-earmark-zip me-1"), "Download all as zip"], id=ids.SEARCH_ZIP,
                   className="btn btn-outline-success btn-sm ms-auto disabled"),
        ], className="d-flex align-items-center")),
        dbc.CardBody(grid, className="p-2"),
        dbc.CardFooter(pager(ids.SEARCH_PAGER, ids.SEARCH_PAGE_TEXT, go_input_id=ids.SEARCH_PAGE_INPUT,
                             go_button_id=ids.SEARCH_PAGE_GO), className="py-2"),
    ])
    return html.Div([
        dcc.Store(id=ids.SEARCH_PAGE, data=state.get("page", 1)),
        dcc.Location(id=ids.SEARCH_NAVIGATE, refresh="callback-nav"),
        html.Div(id=ids.SEARCH_URL_SYNC, hidden=True),
        dbc.Row([dbc.Col(table, lg=9, xl=10), dbc.Col(_filters_card(options, state), lg=3, xl=2)], className="g-3"),
    ], className="gsp-search")
