"""The file index of the Data page: lists of files with their processing state, and pagers."""
from __future__ import annotations

import re

import dash_bootstrap_components as dbc
from dash import dcc, html

from db.queries import data_type_name
from pipeline.chain import DataType
from pipeline.steps import version_of

# state -> (badge colour, bootstrap icon, words)
STATES = {
    "ingested": ("secondary", "inbox", "ingested"),
    "queued": ("warning", "hourglass-split", "queued"),
    "waiting": ("warning", "pause-circle", "waiting"),
    "running": ("info", "arrow-repeat", "running"),
    "done": ("success", "check-circle", "done"),
    "failed": ("danger", "exclamation-triangle", "failed"),
}
PAGER_MOVES = ("first", "prev", "next", "last")
OBSERVED_PAGE_SIZE = 20
CALIBRATIONS_PAGE_SIZE = 10


def state_text(file) -> str:
    """The state in words, with the reason when it failed: 'failed: no master bias'."""
    words = STATES.get(file.state, (None, None, file.state or ""))[2]
    if file.state == "failed" and file.state_reason:
        return f"{words}: {file.state_reason}"
    if file.state_reason and file.state in ("queued", "running", "waiting", "done"):
        return f"{words}: {file.state_reason}"
    return words


def state_badge(file, *, compact: bool = True, **kwargs):
    """A small coloured badge for the state (the reason in its tooltip); None for plain 'ingested'.  One
    component, its icon drawn by CSS: every component of an index redrawn costs the page (components.data_view.digest)."""
    colour, icon, words = STATES.get(file.state, ("secondary", "question-circle", file.state or "?"))
    if compact and file.state == "ingested":
        return None
    spin = " gsp-spin-icon" if file.state == "running" else ""
    return html.Span(words, className=f"gsp-state ms-2 badge bg-{colour} bi bi-{icon}{spin}", title=state_text(file),
                     **kwargs)


def index_item(file, src: str, pick_type: str):
    """One clickable row: the file name and its state.  Which row is highlighted is the browser's to say
    (callbacks/data/selection.py): an index drawn for one poll must not bring back the file shown before."""
    reason = None
    if file.state_reason and file.state in ("failed", "waiting"):
        colour = "text-danger" if file.state == "failed" else "text-warning"
        reason = html.Div(file.state_reason, className=f"gsp-state-reason small {colour} text-truncate")
    return dbc.ListGroupItem(
        html.Div([html.Span(file.file_name, className="gsp-file-name text-truncate"), state_badge(file), reason],
                 title=f"{file.file_name} \u2014 {state_text(file)}", className="gsp-index-line",
                 **{"data-state": file.state, "data-file-id": str(file.id), "data-file-name": file.file_name}),
        id={"type": pick_type, "src": src, "index": file.id}, n_clicks=0, action=True,
        className="gsp-index-item py-1 px-2",
    )


def index_list(files, src: str, selected_id, pick_type: str, empty: str, *, fold_versions: bool = False):
    """The rows of an index; with ``fold_versions`` (masters), each product once, its older versions
    folded under it."""
    if not files:
        return html.Div(empty, className="gsp-empty small")
    if not fold_versions:
        return dbc.ListGroup([index_item(file, src, pick_type) for file in files], flush=True,
                             className="gsp-index")
    rows = []
    for current, *older in _versions(files, lambda f: unversioned(f.file_name)):
        rows.append(index_item(current, src, pick_type))
        if older:
            rows.append(html.Details([
                html.Summary(f"{len(older)} older version{'s' if len(older) > 1 else ''}",
                             className="small text-muted gsp-older-summary"),
                dbc.ListGroup([index_item(file, src, pick_type) for file in older], flush=True),
            ], className="gsp-older-index", open=any(str(f.id) == str(selected_id) for f in older)))
    return dbc.ListGroup(rows, flush=True, className="gsp-index")


def pager(pager_type: str, text_id: str, *, go_input_id: str | None = None, go_button_id: str | None = None,
          text: str = "Page 1 of 1"):
    """First / previous / 'Page x of n' / next / last, and optionally a page box with Go."""
    def button(move, icon, label):
        return dbc.Button(html.I(className=f"bi bi-{icon}"), id={"type": pager_type, "go": move}, n_clicks=0,
                          color="link", size="sm", className="gsp-pager-button", title=label)

    row = html.Div([
        button("first", "chevron-double-left", "First page"),
        button("prev", "chevron-left", "Previous page"),
        html.Span(text, id=text_id, className="gsp-page-text small mx-1"),
        button("next", "chevron-right", "Next page"),
        button("last", "chevron-double-right", "Last page"),
    ], className="d-flex align-items-center justify-content-center gsp-pager")
    if go_input_id is None:
        return row
    jump = dbc.InputGroup([
        dbc.InputGroupText(html.I(className="bi bi-book")),
        dbc.Input(id=go_input_id, type="number", min=1, step=1, placeholder="Page", size="sm",
                  debounce=False, className="gsp-page-input"),
        dbc.Button("Go", id=go_button_id, n_clicks=0, color="info", size="sm"),
    ], size="sm", className="mt-1 gsp-page-jump")
    return html.Div([row, jump])


def page_text(page: int, pages: int) -> str:
    return f"Page {page:,} of {pages:,}"


def move_page(move: str, page: int, pages: int, target=None) -> int:
    """The page a pager button (or the Go box, move 'go') leads to, within 1..pages."""
    page, pages = int(page or 1), max(1, int(pages or 1))
    if move == "first":
        page = 1
    elif move == "prev":
        page -= 1
    elif move == "next":
        page += 1
    elif move == "last":
        page = pages
    elif move == "go":
        try:
            page = int(target)
        except (TypeError, ValueError):
            return min(max(page, 1), pages)
    return min(max(page, 1), pages)


def index_card(title: str, count_id: str, body, footer=None, *, card_id: str | None = None, extra=None,
               count: str = "0"):
    header = html.Div([
        html.Span(title, className="h6 mb-0 fw-bold"),
        html.Div([extra, dbc.Badge(count, id=count_id, color="info", pill=True, className="ms-2 gsp-count")],
                 className="d-flex align-items-center"),
    ], className="d-flex align-items-center justify-content-between")
    parts = [dbc.CardHeader(header), dbc.CardBody(body, className="p-0 gsp-index-body")]
    if footer is not None:
        parts.append(dbc.CardFooter(footer, className="py-2"))
    return dbc.Card(parts, className="mb-3 gsp-index-card", id=card_id or f"{count_id}-card")


def tab_label(file) -> str:
    """Tab handle of a file in its lineage: 'Observed Raw', 'Reduced', 'Extracted · target 1'..."""
    if file.data_type == DataType.RAW:
        return "Observed Raw"
    label = data_type_name(file.data_type)
    if file.data_type == DataType.MASTER:
        return "Master Calibration"
    if file.target is not None and file.data_type >= DataType.EXTRACTED:
        label += f" \u00b7 target {file.target}"
    return label


def unversioned(file_name: str) -> str:
    """The name every version of a product shares: ``master_flat_X_v2.fits`` -> ``master_flat_X.fits``."""
    return re.sub(r"_v\d+(\.fits(\.fz)?)$", r"\1", file_name)


def _versions(files, key) -> list[list]:
    """Files grouped by ``key``, each group newest first (a re-run's product has a higher id), in the
    order of their newest member in ``files``."""
    groups: dict = {}
    for file in files:
        groups.setdefault(key(file), []).append(file)
    return [sorted(group, key=lambda f: -f.id) for group in groups.values()]


def _older_versions_menu(older, selected_id, pick_type: str, src: str):
    """A dropdown of a product's older versions (their version and time), marked when one of them is shown."""
    shown = next((f for f in older if str(f.id) == str(selected_id)), None)
    label = f"v{version_of(shown.file_name)} (older)" if shown else f"{len(older)} older"
    items = [dbc.DropdownMenuItem(
        html.Span([f"v{version_of(f.file_name)}", html.Span(f" \u00b7 {_made(f)}", className="text-muted small"),
                   state_badge(f)], title=f.file_name, **{"data-file-id": str(f.id)}),
        id={"type": pick_type, "src": src, "index": f.id}, n_clicks=0, active=shown is f) for f in older]
    menu = dbc.DropdownMenu(items, label=label, nav=True, in_navbar=False, size="sm",
                            toggle_class_name="gsp-older-toggle" + (" active" if shown else ""))
    return html.Div(menu, className="gsp-older-versions nav-item", **{"data-older": str(len(older))})


def _made(file) -> str:
    moment = getattr(file, "ingested_at", None)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else file.file_name


def lineage_tabs(files, selected_id, pick_type: str):
    """Tab handles for a raw file and everything made from it, most processed first. A product made
    several times shows its newest version as the tab ("v3 (current)") and folds the older ones into
    a dropdown beside it."""
    ordered = sorted(files, key=lambda f: (-f.data_type, f.target if f.target is not None else 0, -f.id))
    items = []
    for group in _versions(ordered, tab_label):
        current, older = group[0], group[1:]
        label = tab_label(current)
        if older:
            label += f" \u00b7 v{version_of(current.file_name)} (current)"
        badge = state_badge(current) if current.state in ("queued", "running", "waiting", "failed") else None
        items.append(dbc.NavItem(dbc.NavLink(
            html.Span([label, badge], title=current.file_name,
                      **{"data-file-id": str(current.id), "data-label": label}),
            id={"type": pick_type, "src": "tab", "index": current.id}, n_clicks=0,
            active=str(current.id) == str(selected_id), className="gsp-tab")))
        if older:
            items.append(_older_versions_menu(older, selected_id, pick_type, "version"))
    return dbc.Nav(items, pills=False, className="gsp-tabs nav-tabs", id="data-tabs-nav")


def dropdown_options(files, *, label=None):
    label = label or (lambda f: f.file_name)
    return [{"label": label(f), "value": f.id} for f in files]


def hidden_store(store_id, data=None, storage_type="memory"):
    return dcc.Store(id=store_id, data=data, storage_type=storage_type)
