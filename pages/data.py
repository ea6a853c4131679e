"""Data: the observer's live view (file index, related files, viewers, actions, comments).

The selected file travels in the URL (``/?id=<file id>``) so views can be linked and
bookmarked; everything the page shows goes through auth.permissions (a file the
user may not see is "not found").  Callbacks: callbacks/data/; what both draw: components/data_view.py.
"""
import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_login import current_user

from auth.queries import change_stamp, page_containing
from components import ids
from components.data_view import (
    CALIBRATIONS,
    GRAPH_CONFIG,
    OBSERVED,
    Drawn,
    first_paint,
    followed,
    visible_file,
    visual_defaults,
)
from components.file_index import (
    CALIBRATIONS_PAGE_SIZE,
    OBSERVED_PAGE_SIZE,
    index_card,
    pager,
)
from components.night_panel import night_card
from figures.overlays import OVERLAYS, REDSHIFT_RANGE
from figures.style import COLORMAPS
from pipeline.datatypes import DataType

dash.register_page(__name__, path="/", name="Data", title="Data · GSP Live")

def requested_id(value):
    """The ?id= value as an int, or the raw text (shown as 'not found') when it is not a number."""
    if value in (None, ""):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return str(value)[:40]


def initial_selection(value, following: dict | None):
    """The file the page opens: the one asked for (``?id=``), else what Follow shows (:func:`followed`)."""
    chosen = requested_id(value)
    if chosen is None and following is not None:
        chosen = following["file"]
    return chosen


def index_pages(user, selected) -> tuple[int, int]:
    """(Observed page, Calibrations page) that show the file opened (its raw frame, or the master itself), so
    a file opened by its link is highlighted in the index from the first paint."""
    file = visible_file(user, selected) if user is not None and isinstance(selected, int) else None
    if file is None:
        return 1, 1
    if file.data_type == DataType.MASTER:
        return 1, page_containing(user, CALIBRATIONS, file.id, CALIBRATIONS_PAGE_SIZE)
    root = file.original_file_id or file.id
    return page_containing(user, OBSERVED, root, OBSERVED_PAGE_SIZE), 1


LOADING = (html.Div("Loading\u2026", className="gsp-empty small"), "0", "Page 1 of 1")


def _observed_card(listing, count, text):
    view_as_table = dcc.Link([html.I(className="bi bi-table me-1"), "View as Table"],
                             href=f"/search?data_type={DataType.RAW.value}", className="small me-2 gsp-view-table")
    follow = dbc.Switch(id=ids.DATA_FOLLOW, label="Follow", value=True, className="small mb-0 me-2 gsp-follow",
                        input_class_name="gsp-follow-input")
    body = html.Div(listing, id=ids.DATA_OBSERVED_INDEX)
    footer = pager(ids.DATA_OBSERVED_PAGER, ids.DATA_OBSERVED_PAGE_TEXT, go_input_id=ids.DATA_OBSERVED_PAGE_INPUT,
                   go_button_id=ids.DATA_OBSERVED_PAGE_GO, text=text)
    return index_card("Observed", ids.DATA_OBSERVED_COUNT, body, footer, extra=html.Div(
        [follow, view_as_table], className="d-flex align-items-center"), card_id="observed-card", count=count)


def _calibrations_card(listing, count, text):
    view_as_table = dcc.Link([html.I(className="bi bi-table me-1"), "View as Table"],
                             href=f"/search?data_type={DataType.MASTER.value}", className="small me-2 gsp-view-table")
    body = html.Div(listing, id=ids.DATA_CALIB_INDEX)
    footer = pager(ids.DATA_CALIB_PAGER, ids.DATA_CALIB_PAGE_TEXT, text=text)
    return index_card("Calibrations", ids.DATA_CALIB_COUNT, body, footer, extra=view_as_table,
                      card_id="calibrations-card", count=count)


def _image_controls(defaults: dict):
    colormaps = [{"label": label, "value": key} for key, label in COLORMAPS.items()]
    number = {"type": "number", "debounce": True, "size": "sm"}
    return dbc.Col([
        html.H6([html.I(className="bi bi-image me-1"), "Images"], className="mb-2"),
        dbc.Row([
            dbc.Col(dbc.InputGroup([dbc.InputGroupText(html.I(className="bi bi-palette")),
                                    dbc.Select(id=ids.DATA_ADV_COLORMAP, options=colormaps,
                                               value=defaults["colormap"])], size="sm"), md=5),
            dbc.Col(dbc.RadioItems(id=ids.DATA_ADV_SCALE, inline=True, value=defaults["scale"], className="small",
                                   options=[{"label": "ZScale", "value": "zscale"},
                                            {"label": "Min / max", "value": "minmax"},
                                            {"label": "Percentiles", "value": "percentiles"}]), md=7),
        ], className="g-2 mb-2 align-items-center"),
        dbc.Row([
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("Min"),
                                    dbc.Input(id=ids.DATA_ADV_ZMIN, value=defaults["zmin"], **number)],
                                   size="sm"), md=3),
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("Max"),
                                    dbc.Input(id=ids.DATA_ADV_ZMAX, value=defaults["zmax"], **number)],
                                   size="sm"), md=3),
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("Low %"),
                                    dbc.Input(id=ids.DATA_ADV_PLOW, value=defaults["plow"], min=0, max=100, **number)],
                                   size="sm"), md=3),
            dbc.Col(dbc.InputGroup([dbc.InputGroupText("High %"),
                                    dbc.Input(id=ids.DATA_ADV_PHIGH, value=defaults["phigh"], min=0, max=100,
                                              **number)],
                                   size="sm"), md=3),
        ], className="g-2 mb-2"),
        dbc.Checklist(id=ids.DATA_ADV_SATURATED, switch=True, className="small",
                      options=[{"label": "Show saturated pixels", "value": "on"}],
                      value=defaults["show_saturated"]),
    ], lg=7)


def _spectrum_controls(defaults: dict):
    return dbc.Col([
        html.H6([html.I(className="bi bi-graph-up me-1"), "Spectra"], className="mb-2"),
        dbc.Checklist(id=ids.DATA_ADV_OVERLAYS, className="small", value=defaults["overlays"],
                      options=[{"label": label, "value": key} for key, (label, _c) in OVERLAYS.items()]),
        html.Div([html.Span("Redshift z", className="small me-2 text-nowrap"),
                  dcc.Slider(id=ids.DATA_ADV_REDSHIFT, min=REDSHIFT_RANGE[0], max=REDSHIFT_RANGE[1], step=0.0001,
                             value=defaults["redshift"], marks={0: "0", 0.25: "0.25", 0.5: "0.5", 0.75: "0.75", 1: "1"},
                             tooltip={"placement": "bottom", "always_visible": False}, updatemode="mouseup",
                             className="flex-grow-1 gsp-redshift")],
                 className="d-flex align-items-center mt-2"),
        dcc.Dropdown(id=ids.DATA_COMPARE, multi=True, options=[], value=[], className="mt-2 small gsp-compare",
                     placeholder="Compare with other spectra of this target…"),
    ], lg=5)


def _advanced_panel(defaults: dict):
    common = html.Div([
        dbc.RadioItems(id=ids.DATA_ADV_FORMAT, inline=True, className="small me-3",
                       options=[{"label": "Static (fastest)", "value": "static"},
                                {"label": "Interactive (zoom, hover)", "value": "interactive"}],
                       value=defaults["format"]),
        dbc.Checklist(id=ids.DATA_ADV_TITLE, switch=True, className="small me-3",
                      options=[{"label": "Show title", "value": "on"}], value=defaults["show_title"]),
        dbc.Button([html.I(className="bi bi-arrow-counterclockwise me-1"), "Reset to my defaults"],
                   id=ids.DATA_ADV_RESET, n_clicks=0, size="sm", color="info", outline=True),
    ], className="d-flex align-items-center flex-wrap mt-2 pt-2 border-top gsp-adv-common")
    controls = dbc.Row([_image_controls(defaults), _spectrum_controls(defaults)], className="g-3")
    return dbc.Collapse(dbc.Card(dbc.CardBody([controls, common]), className="gsp-advanced mb-2"),
                        id=ids.DATA_ADV_COLLAPSE, is_open=False)


def _viewer(drawn: Drawn):
    """One graph stays mounted and each file's figure is drawn on it (Plotly.react), rather than a new graph
    (its plot, resize detector and events) mounted for every file Follow shows.  A static PNG or a warning shows
    instead of it (the graph hidden)."""
    graph = dcc.Graph(id=ids.DATA_GRAPH, className="gsp-graph", figure=drawn.figure or {},
                      config=drawn.config or GRAPH_CONFIG)
    return html.Div([html.Div(drawn.instead, id=ids.DATA_VIEWER_INSTEAD),
                     html.Div(graph, id=ids.DATA_GRAPH_BOX, hidden=drawn.figure is None)],
                    id=ids.DATA_VIEWER, className="gsp-viewer")


def _main_card(defaults: dict, drawn: Drawn):
    header_bar = html.Div([
        dbc.Button([html.I(className="bi bi-chevron-down me-1", id="data-header-chevron"), "Header"],
                   id=ids.DATA_HEADER_TOGGLE, n_clicks=0, color="link", size="sm", className="gsp-header-toggle"),
        html.Span(id=ids.DATA_HEADER_FILE, className="small text-truncate gsp-header-file"),
    ], className="d-flex align-items-center gsp-header-bar")
    header_body = dbc.Collapse(html.Div([
        dbc.InputGroup([dbc.InputGroupText(html.I(className="bi bi-funnel")),
                        dbc.Input(id=ids.DATA_HEADER_SEARCH, placeholder="Filter header (keyword, value or comment)",
                                  type="search", debounce=False, autocomplete="off")], size="sm", className="mb-2"),
        html.Div(id=ids.DATA_HEADER_TABLE, className="gsp-header-scroll"),
    ], className="p-2"), id=ids.DATA_HEADER_COLLAPSE, is_open=False)
    viewer = dcc.Loading(_viewer(drawn), type="dot", delay_show=250, color="#5bc0de",
                         parent_className="gsp-viewer-loading")
    actions = html.Div([
        html.A([html.I(className="bi bi-download me-1"), "Download"], id=ids.DATA_DOWNLOAD, href="#",
               className="btn btn-success btn-sm gsp-action", target="_blank", rel="noopener"),
        html.Div(id=ids.DATA_EXPORT, className="d-contents"),
        dbc.Button([html.I(className="bi bi-sliders me-1"), "Advanced Visualization"], id=ids.DATA_ADV_BUTTON,
                   n_clicks=0, color="success", size="sm", className="gsp-action"),
        html.Div(id=ids.DATA_ACTIONS, className="d-contents"),
    ], className="d-flex flex-wrap gap-2 align-items-start gsp-actions")
    comments = html.Div([
        html.H6([html.I(className="bi bi-chat-left-text me-1"), "Comments"], className="mt-3 mb-2"),
        html.Div(id=ids.DATA_COMMENTS, className="gsp-comments mb-2"),
        dbc.Row([
            dbc.Col(dbc.Textarea(id=ids.DATA_COMMENT_TEXT, placeholder="Add new comment", rows=1,
                                 className="form-control-sm"), md=9),
            dbc.Col(dbc.Button([html.I(className="bi bi-chat-left-dots me-1"), "Add Comment"],
                               id=ids.DATA_COMMENT_ADD, n_clicks=0, color="success", size="sm",
                               className="w-100"), md=3),
        ], className="g-2"),
        html.Div(id=ids.DATA_COMMENT_MESSAGE, className="small mt-1"),
    ])
    signal_to_noise = html.Div([
        html.Span(id=ids.DATA_SNR_TEXT, className="fw-bold me-3"),
        html.Div([
            dbc.InputGroup([dbc.InputGroupText("Aim at S/N"),
                            dbc.Input(id=ids.DATA_SNR_GOAL, type="number", min=1, max=10000, step="any", value=20,
                                      debounce=False, style={"maxWidth": "6rem"})], size="sm", className="w-auto"),
            html.Span(id=ids.DATA_SNR_ADVICE, className="ms-2"),
        ], id=ids.DATA_SNR_FORM, className="d-flex align-items-center", hidden=True),
    ], id=ids.DATA_SNR, className="d-flex flex-wrap align-items-center small mt-2 gsp-snr", hidden=True)
    provenance = dbc.Card(dbc.CardBody([html.Div(id=ids.DATA_PROVENANCE), signal_to_noise], className="py-2 px-3"),
                          className="mb-2 gsp-provenance-card")
    body = html.Div([
        provenance,
        header_bar, header_body,
        viewer,
        html.Div(id=ids.DATA_MODIFIED, className="small text-muted text-end my-1 gsp-modified"),
        _advanced_panel(defaults),
        actions,
        html.Div(id=ids.DATA_ACTION_MESSAGE, className="mt-2"),
        comments,
    ], id=ids.DATA_MAIN)
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.H5(drawn.title, id=ids.DATA_TITLE, className="mb-0 text-truncate gsp-title"),
            html.Div(id=ids.DATA_STATE, className="ms-2"),
        ], className="d-flex align-items-center justify-content-between")),
        html.Div(id=ids.DATA_TABS, className="gsp-tabs-row"),
        dbc.CardBody([html.Div(id=ids.DATA_NOT_FOUND), body]),
    ], className="gsp-main-card")


def _delete_modal():
    return dbc.Modal([
        dbc.ModalHeader(dbc.ModalTitle("Delete this file?")),
        dbc.ModalBody([html.P(["You are about to delete ", html.Strong(id=ids.DATA_DELETE_NAME), "."]),
                       html.P("The product is removed from the catalogue and from disk. Raw files are never "
                              "deleted; you can re-run the reduction to make it again.", className="small")]),
        dbc.ModalFooter([
            dbc.Button("Cancel", id=ids.DATA_DELETE_CANCEL, n_clicks=0, color="secondary"),
            dbc.Button([html.I(className="bi bi-trash me-1"), "Delete"], id=ids.DATA_DELETE_CONFIRM, n_clicks=0,
                       color="danger"),
        ]),
    ], id=ids.DATA_DELETE_MODAL, is_open=False, centered=True)


def layout(id=None, **_query):  # noqa: A002 - the URL parameter is called id
    user = current_user if current_user and current_user.is_authenticated else None
    stamp = change_stamp(user) if user is not None else None  # read first: a later change is the feed's
    following = followed(user) if user is not None else None
    selected = initial_selection(id, following)
    observed_page, calibrations_page = index_pages(user, selected)
    defaults = visual_defaults(user)
    first = {"observed": LOADING, "calibrations": LOADING}
    if user is not None:
        first = first_paint(user, selected, observed_page, calibrations_page, defaults, stamp=stamp,
                            following=following)
    return html.Div([
        html.Div(id=ids.DATA_CHANGE_WAIT, className="gsp-change-wait", hidden=True),
        dcc.Store(id=ids.DATA_STAMP, data=first.get("stamp")),
        dcc.Store(id=ids.DATA_SELECTED, data=selected),
        dcc.Store(id=ids.DATA_FOLLOWED, data=first.get("followed")),
        dcc.Store(id=ids.DATA_ROOT),
        html.Div(id=ids.DATA_HIGHLIGHT, hidden=True),
        dcc.Store(id=ids.DATA_OBSERVED_PAGE, data=observed_page),
        dcc.Store(id=ids.DATA_CALIB_PAGE, data=calibrations_page),
        dcc.Store(id=ids.DATA_OBSERVED_DIGEST, data=first.get("observed_digest")),
        dcc.Store(id=ids.DATA_CALIB_DIGEST, data=first.get("calibrations_digest")),
        dcc.Store(id=ids.DATA_CARD_DIGEST),
        dcc.Store(id=ids.DATA_DRAWN, data=selected),
        dcc.Store(id=ids.DATA_ACTION_CLICKED),
        dcc.Store(id=ids.DATA_DELETE_ASKED),
        dcc.Store(id=ids.DATA_JOB),
        dcc.Store(id=ids.DATA_DELETE_TARGET),
        dcc.Store(id=ids.DATA_ACTIONS_REFRESH, data=0),
        dcc.Interval(id=ids.DATA_JOB_POLL, interval=1000, disabled=True),
        html.Div(id=ids.DATA_URL_SYNC, hidden=True),
        night_card(),
        dbc.Row([
            dbc.Col([_observed_card(*first["observed"]), _calibrations_card(*first["calibrations"])], lg=3,
                    className="gsp-left"),
            dbc.Col(_main_card(defaults, first.get("viewer", Drawn())), lg=9),
        ], className="g-3"),
        _delete_modal(),
    ], className="gsp-data")
