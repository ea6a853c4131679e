"""Callbacks of the Data page (layout: pages/data.py).

Live updates are cheap: every 0.7 s the page asks db.queries.global_change_stamp
(two index lookups); only when it moved is the user's own change_stamp computed,
and the index is re-queried only when that one changed.
Everything is read through auth.permissions: a file the user may not see is
"not found", and only users who may change a file get the buttons that do.
"""
from __future__ import annotations

import base64
from datetime import timezone
from pathlib import Path

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate
from flask_login import current_user

from auth import queries
from auth.permissions import can_change_file, get_visible_file, get_visible_job
from components import ids
from components.file_index import (
    CALIBRATIONS_PAGE_SIZE,
    OBSERVED_PAGE_SIZE,
    index_list,
    lineage_tabs,
    move_page,
    page_text,
    state_badge,
)
from components.header_table import filter_cards, header_cards, header_table
from components.provenance import provenance_card, used_calibrations
from db import db
from db.models import File
from db.queries import is_number
from live import tasks
from live.catalogue import DeleteRefused, delete_products
from live.queue import JobRefused
from pipeline import chain
from pipeline.chain import DataType

OBSERVED = {"data_type": DataType.RAW.value}
CALIBRATIONS = {"data_type": DataType.MASTER.value}
STATIC_WIDTH = 1100
RERUN = "rerun"  # an action, not a step: it queues the step that makes the product (pipeline.chain)
JOB_LABELS = {**{name: step.title for name, step in chain.STEPS.items()}, RERUN: "Re-run"}


def _user():
    if not current_user or not current_user.is_authenticated:
        raise PreventUpdate
    return current_user


def _file(user, file_id) -> File | None:
    if file_id is None or isinstance(file_id, str) and not is_number(file_id):
        return None
    try:
        return get_visible_file(user, int(file_id))
    except (TypeError, ValueError):
        return None


def _when(moment) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------------ pure helpers (tested)

def observed_view(user, page, selected_id, page_size: int = OBSERVED_PAGE_SIZE):
    """(list component, count text, page text) of the Observed index."""
    result = queries.page_of_files(user, OBSERVED, page, page_size)
    highlight = _root_id(user, selected_id)
    pages = queries.last_page(result.count, page_size)
    return (index_list(result.files, "index", highlight, ids.DATA_PICK, "No files yet. They appear here as the "
                       "instrument writes them."),
            f"{result.count:,}", page_text(result.page, pages))


def calibrations_view(user, page, selected_id, page_size: int = CALIBRATIONS_PAGE_SIZE):
    result = queries.page_of_files(user, CALIBRATIONS, page, page_size)
    pages = queries.last_page(result.count, page_size)
    return (index_list(result.files, "calib", selected_id, ids.DATA_PICK, "No master calibrations yet.",
                       fold_versions=True),
            f"{result.count:,}", page_text(result.page, pages))


def poll_stamps(user, previous, previous_global):
    """(user stamp, global stamp) for the 1 s poll: the catalogue-wide stamp costs two index
    lookups; only when it moved is the user's own (heavier) stamp computed."""
    current_global = queries.global_change_stamp()
    if current_global == previous_global and previous is not None:
        raise PreventUpdate
    stamp = queries.change_stamp(user)
    return (no_update if stamp == previous else stamp), current_global


def _root_id(user, selected_id):
    file = _file(user, selected_id)
    if file is None:
        return selected_id
    return file.original_file_id or file.id


AUTO = "auto"


def available_actions(user, file: File) -> list[dict]:
    """What the user may do to the file (download and visualize excluded), as
    [{kind, label, icon, params, inputs: [{param, label, options}]}]; the first option of an input
    is its default.  The steps, their labels and what they take are pipeline.chain's."""
    if not can_change_file(user, file):
        return []
    actions = []
    step = chain.step_for(file.data_type, queries.kind_of(file), file.technique)
    if step is not None:
        inputs = {"arc_id": lambda: _arc_input(user, file), "lamp": lambda: _lamp_input(file),
                  "standard_id": lambda: _standard_input(file)}
        actions.append({"kind": step.name, "label": step.label, "icon": step.icon, "params": step.manual_params,
                        "inputs": [inputs[choice]() for choice in step.choices]})
    if chain.rerun_step(file.data_type, queries.kind_of(file)) is not None:
        actions.append({"kind": RERUN, "label": "Re-run With Current Settings", "icon": "arrow-repeat"})
    return actions


def _arc_input(user, file: File) -> dict:
    """Reduced arcs of the same configuration the user may see; 'automatic' lets the job choose."""
    arcs = queries.compatible_arcs(user, file, data_types=(2,))
    options = [{"label": "Arc: automatic (same configuration, closest in time)", "value": AUTO}]
    options += [{"label": f"Arc: {_arc_label(arc)}", "value": str(arc.id)} for arc in arcs]
    return {"param": "arc_id", "label": "Arc", "options": options}


def _standard_input(file: File) -> dict:
    """Sensitivity functions of the file's configuration; 'automatic' takes the standard closest in time."""
    options = [{"label": "Standard: automatic (closest in time)", "value": AUTO}]
    options += [{"label": f"Standard: {_arc_label(row)}", "value": str(row.id)}
                for row in queries.sensitivity_functions(file)]
    return {"param": "standard_id", "label": "Standard", "options": options}


def _lamp_input(file: File) -> dict:
    """Library lamps of the file's grating and mode (pipeline.lamps); 'automatic' follows the lamps on."""
    from pipeline import lamps

    options = [{"label": "Lamp: automatic (the lamps that were on)", "value": AUTO}]
    mode = {"GRATING": file.grating, "WAVMODE": file.wavmode, "CAM_TARG": _float(file.cam_targ),
            "GRT_TARG": _float(file.grt_targ)}
    try:
        names = lamps.library_lamps_for(mode)
    except Exception:  # no goodman-pipeline data: the automatic choice only
        names = []
    options += [{"label": f"Lamp: {name}", "value": name} for name in names]
    return {"param": "lamp", "label": "Lamp", "options": options}


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return -99.0


def _arc_label(arc: File) -> str:
    when = arc.date_obs.strftime("%Y-%m-%d %H:%M") if arc.date_obs else ""
    return f"{arc.file_name} {when}".strip()


def can_delete(user, file: File) -> bool:
    return file.data_type != DataType.RAW and can_change_file(user, file)


def action_buttons(user, file: File):
    parts = []
    for action in available_actions(user, file):
        button = dbc.Button([html.I(className=f"bi bi-{action['icon']} me-1"), action["label"]],
                            id={"type": ids.DATA_ACTION, "kind": action["kind"]}, n_clicks=0, color="success",
                            size="sm", className="gsp-action")
        inputs = action.get("inputs") or []
        if inputs:
            selects = [dbc.Select(id={"type": ids.DATA_ACTION_CHOICE, "kind": action["kind"], "param": i["param"]},
                                  options=i["options"], value=i["options"][0]["value"], size="sm",
                                  className="gsp-action-choice") for i in inputs]
            parts.append(dbc.InputGroup([*selects, button], size="sm", className="gsp-action-group"))
        else:
            parts.append(button)
    if can_delete(user, file):
        parts.append(dbc.Button([html.I(className="bi bi-trash me-1"), "Delete"],
                                id={"type": ids.DATA_DELETE, "index": file.id}, n_clicks=0, color="danger",
                                size="sm", className="gsp-action gsp-delete"))
    return parts


def enqueue_action(user, file: File, kind: str, choices: dict | None = None):
    """Check and enqueue one action with the chosen inputs ({param: value}); returns the Job row.

    Raises PermissionError (not an action this user may run on this file) or ValueError (a choice
    that is not one of those offered); JobRefused comes from live.queue.
    """
    allowed = {a["kind"]: a for a in available_actions(user, file)}
    if kind not in allowed:
        raise PermissionError(f"You may not run '{JOB_LABELS.get(kind, kind)}' on {file.file_name}.")
    action = allowed[kind]
    params = dict(action.get("params") or {})
    choices = choices or {}
    for spec in action.get("inputs") or []:
        value = choices.get(spec["param"], AUTO)
        value = AUTO if value in (None, "") else str(value)
        if value not in {o["value"] for o in spec["options"]}:
            raise ValueError(f"Choose the {spec['label'].lower()} from the list.")
        if value == AUTO:
            params[spec["param"]] = None
        else:
            params[spec["param"]] = int(value) if spec["param"] in ("arc_id", "standard_id") else value
    if kind == RERUN:
        step, file, params = tasks.rerun_params(file)
        kind = step.name
    job = tasks.enqueue_step(kind, file, user=user, params=params)
    db.session.commit()
    return job


# where each task's result names the product it made (live/tasks.py), the one to show first
PRODUCT_KEYS = ("calibrated", "flux_calibrated", "reduced", "sensitivity", "extracted", "masters", "master")


def new_product(user, job) -> File | None:
    """The product a finished job made (its first, for several targets or masters), if the user may see it."""
    result = job.result or {}
    for key in PRODUCT_KEYS:
        made = result.get(key)
        if isinstance(made, list):
            made = made[-1] if key == "masters" else (made[0] if made else None)  # the normalized flat
        if made is not None:
            return _file(user, made)
    return None


def job_message(job, file_name: str = ""):
    colour = {"queued": "secondary", "running": "info", "done": "success", "failed": "danger",
              "waiting": "warning"}.get(job.state, "info")
    label = JOB_LABELS.get(job.kind, job.kind)
    spinner = html.I(className="bi bi-arrow-repeat gsp-spin me-2") if job.state in ("queued", "running") else None
    text = f"{label} of {file_name}: {job.state}" if file_name else f"{label}: {job.state}"
    if job.state in ("failed", "waiting") and job.reason:
        text += f" \u2014 {job.reason}"
    return html.Div(dbc.Alert([spinner, text], color=colour, className="py-2 mb-0 small"),
                    className="gsp-job", **{"data-job-state": job.state, "data-job-kind": job.kind})


def delete_product(user, file: File) -> str:
    """Delete a processed file (row and product on disk). Returns its name. Raises PermissionError."""
    name = file.file_name
    try:
        delete_products(user, [file])
    except DeleteRefused as error:
        raise PermissionError(str(error)) from None
    return name


def viewer_options(scale, zmin, zmax, plow, phigh, saturated, show_title, overlays, redshift):
    options = {"show_saturated": bool(saturated), "show_title": bool(show_title),
               "overlays": tuple(overlays or ()), "redshift": float(redshift or 0.0)}
    if scale == "minmax":
        options["zmin"], options["zmax"] = _number(zmin), _number(zmax)
    elif scale == "percentiles":
        low, high = _number(plow), _number(phigh)
        if low is not None and high is not None:
            options["percentiles"] = (low, high)
    return options


# the Advanced Visualization controls the viewer is drawn with, by their pages.data.visual_defaults names
VIEWER_CONTROLS = {
    "format": ids.DATA_ADV_FORMAT, "colormap": ids.DATA_ADV_COLORMAP, "scale": ids.DATA_ADV_SCALE,
    "zmin": ids.DATA_ADV_ZMIN, "zmax": ids.DATA_ADV_ZMAX, "plow": ids.DATA_ADV_PLOW, "phigh": ids.DATA_ADV_PHIGH,
    "show_saturated": ids.DATA_ADV_SATURATED, "show_title": ids.DATA_ADV_TITLE, "overlays": ids.DATA_ADV_OVERLAYS,
    "redshift": ids.DATA_ADV_REDSHIFT,
}


def viewer_view(user, selected, controls: dict, compare=()):
    """The selected file drawn as the controls ({VIEWER_CONTROLS name: value}) say; None for no file."""
    file = _file(user, selected)
    if file is None:
        return None
    options = viewer_options(*(controls[name] for name in ("scale", "zmin", "zmax", "plow", "phigh",
                                                           "show_saturated", "show_title", "overlays", "redshift")))
    options["compare"] = compared(user, file, compare)
    return render_viewer(file, controls["format"] or "interactive", controls["colormap"] or "gray", options,
                         theme=getattr(user, "theme", "dark") or "dark")


def first_paint(user, selected, observed_page: int, calibrations_page: int, controls: dict) -> dict:
    """What the Data page's layout draws at once: both index pages, the selected file's viewer, and the
    stamps and newest file they were read at (so the first poll finds nothing new and Follow knows
    what is already shown). A login sees its data in the page's first answer, not after rounds of callbacks."""
    global_stamp = queries.global_change_stamp()  # read first: a change after this is the next poll's
    return {"stamp": queries.change_stamp(user), "global_stamp": global_stamp,
            "newest": queries.newest_visible_id(user, OBSERVED),
            "observed": observed_view(user, observed_page, selected),
            "calibrations": calibrations_view(user, calibrations_page, selected),
            "viewer": viewer_view(user, selected, controls)}


def _number(value):
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def render_viewer(file: File, fmt: str, colormap: str, options: dict, theme: str = "dark"):
    from components import viewers

    common = dict(colormap=colormap, saturation=file.saturation_value, theme=theme, **options)
    try:
        if fmt == "static":
            png = viewers.png_for_file(file.full_path, width=STATIC_WIDTH, data_type=file.data_type, **common)
            source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            return html.Img(src=source, id=ids.DATA_IMAGE, className="gsp-static-plot", alt=file.file_name)
        figure = viewers.figure_for_file(file.full_path, data_type=file.data_type, height=520, **common)
    except viewers.ViewerError as error:
        return dbc.Alert([html.I(className="bi bi-exclamation-triangle me-2"), str(error)], color="warning",
                         className="my-3", id="data-viewer-error")
    return dcc.Graph(id=ids.DATA_GRAPH, figure=figure, className="gsp-graph",
                     config={"displaylogo": False, "scrollZoom": True, "responsive": True,
                             # offline behind the VPN: no "share" or "edit in Chart Studio" (an external service)
                             "showSendToCloud": False, "showEditInChartStudio": False,
                             "modeBarButtonsToRemove": ["lasso2d", "select2d", "sendDataToCloud"],
                             "toImageButtonOptions": {"filename": Path(file.file_name).stem}})


SPECTRA = (DataType.EXTRACTED, DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED)


def export_links(file: File):
    """CSV and ECSV of a 1D spectrum (through the API and its permission check); nothing for images."""
    if file.data_type not in SPECTRA:
        return None
    return [html.A([html.I(className="bi bi-filetype-csv me-1"), fmt.upper()], href=f"/api/files/{file.id}/"
                   f"spectrum.{fmt}", className="btn btn-outline-success btn-sm gsp-action gsp-export",
                   id=f"data-export-{fmt}", title=f"The spectrum as {fmt.upper()} (wavelength, flux, uncertainty)")
            for fmt in ("csv", "ecsv")]


def compare_options(user, file: File) -> list[dict]:
    """Other spectra of the file's target to draw over it: other frames, targets and versions."""
    if file.data_type not in SPECTRA:
        return []
    return [{"label": f"{other.file_name}" + (f" \u00b7 {other.date_obs:%H:%M}" if other.date_obs else ""),
             "value": other.id} for other in queries.same_target_spectra(user, file)]


def compared(user, file: File, chosen) -> tuple:
    """(label, path) of the chosen spectra the user may see, of the same kind as the one shown."""
    pairs = []
    for value in chosen or ():
        other = _file(user, value)
        if other is not None and other.data_type == file.data_type and other.id != file.id:
            pairs.append((other.file_name, other.full_path))
    return tuple(pairs)


def comment_list(comments):
    if not comments:
        return html.Div("No comments yet.", className="small text-muted")
    return html.Ul([html.Li([html.Strong(c.user.full_name if c.user else "(deleted user)"),
                             html.Span(f" \u00b7 {_when(c.created)}", className="small text-muted"),
                             html.Div(c.text, className="gsp-comment-text")], className="mb-2")
                    for c in comments], className="list-unstyled mb-0")


# ------------------------------------------------------------------------ callbacks

def register(app):
    @app.callback(Output(ids.DATA_STAMP, "data"), Output(ids.DATA_GLOBAL_STAMP, "data"),
                  Input(ids.DATA_POLL, "n_intervals"), State(ids.DATA_STAMP, "data"),
                  State(ids.DATA_GLOBAL_STAMP, "data"))
    def poll(_n, previous, previous_global):
        return poll_stamps(_user(), previous, previous_global)

    # the first pages come with the layout (first_paint): only a change or a page move asks again
    @app.callback(Output(ids.DATA_OBSERVED_INDEX, "children"), Output(ids.DATA_OBSERVED_COUNT, "children"),
                  Output(ids.DATA_OBSERVED_PAGE_TEXT, "children"),
                  Input(ids.DATA_STAMP, "data"), Input(ids.DATA_OBSERVED_PAGE, "data"),
                  State(ids.DATA_SELECTED, "data"), prevent_initial_call=True)
    def observed(_stamp, page, selected):
        return observed_view(_user(), page, selected)

    @app.callback(Output(ids.DATA_CALIB_INDEX, "children"), Output(ids.DATA_CALIB_COUNT, "children"),
                  Output(ids.DATA_CALIB_PAGE_TEXT, "children"),
                  Input(ids.DATA_STAMP, "data"), Input(ids.DATA_CALIB_PAGE, "data"),
                  State(ids.DATA_SELECTED, "data"), prevent_initial_call=True)
    def calibrations(_stamp, page, selected):
        return calibrations_view(_user(), page, selected)

    @app.callback(Output(ids.DATA_OBSERVED_PAGE, "data"),
                  Input({"type": ids.DATA_OBSERVED_PAGER, "go": ALL}, "n_clicks"),
                  Input(ids.DATA_OBSERVED_PAGE_GO, "n_clicks"), Input(ids.DATA_OBSERVED_PAGE_INPUT, "n_submit"),
                  State(ids.DATA_OBSERVED_PAGE, "data"), State(ids.DATA_OBSERVED_PAGE_INPUT, "value"),
                  prevent_initial_call=True)
    def observed_page(_moves, _go, _submit, page, target):
        return _move(OBSERVED, OBSERVED_PAGE_SIZE, page, target)

    @app.callback(Output(ids.DATA_CALIB_PAGE, "data"),
                  Input({"type": ids.DATA_CALIB_PAGER, "go": ALL}, "n_clicks"),
                  State(ids.DATA_CALIB_PAGE, "data"), prevent_initial_call=True)
    def calibrations_page(_moves, page):
        return _move(CALIBRATIONS, CALIBRATIONS_PAGE_SIZE, page, None)

    def _move(params, page_size, page, target):
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        move = trigger["go"] if isinstance(trigger, dict) else "go"
        pages = queries.last_page(queries.count_visible(_user(), params), page_size)
        new = move_page(move, page or 1, pages, target)
        if new == page:
            raise PreventUpdate
        return new

    # Picking a file is answered in the browser: no round trip before the panels ask for it.
    app.clientside_callback(
        """
        function(clicks, selected) {
            const context = window.dash_clientside.callback_context;
            const trigger = context.triggered_id;
            const value = context.triggered.length ? context.triggered[0].value : null;
            if (!trigger || typeof trigger !== 'object' || !value || trigger.index === selected) {
                return window.dash_clientside.no_update;
            }
            return trigger.index;
        }
        """,
        Output(ids.DATA_SELECTED, "data"),
        Input({"type": ids.DATA_PICK, "src": ALL, "index": ALL}, "n_clicks"),
        State(ids.DATA_SELECTED, "data"), prevent_initial_call=True,
    )

    # Highlight the selected file (and its raw parent) without asking the server again.
    app.clientside_callback(
        """
        function(root, selected, _observed, _calibrations) {
            document.querySelectorAll('.gsp-index-item').forEach(function(item) {
                const inner = item.querySelector('[data-file-id]');
                if (!inner) { return; }
                const id = inner.getAttribute('data-file-id');
                const on = id === String(root) || id === String(selected);
                item.classList.toggle('active', on);
                item.setAttribute('aria-current', on ? 'true' : 'false');
            });
            return window.dash_clientside.no_update;
        }
        """,
        Output(ids.DATA_HIGHLIGHT, "children"),
        Input(ids.DATA_ROOT, "data"), Input(ids.DATA_SELECTED, "data"),
        Input(ids.DATA_OBSERVED_INDEX, "children"), Input(ids.DATA_CALIB_INDEX, "children"),
    )

    @app.callback(Output(ids.DATA_SELECTED, "data", allow_duplicate=True), Output(ids.DATA_NEWEST, "data"),
                  Output(ids.DATA_OBSERVED_PAGE, "data", allow_duplicate=True),
                  Input(ids.DATA_STAMP, "data"), State(ids.DATA_FOLLOW, "value"), State(ids.DATA_NEWEST, "data"),
                  State(ids.DATA_SELECTED, "data"), State(ids.DATA_OBSERVED_PAGE, "data"), prevent_initial_call=True)
    def follow(_stamp, following, newest_seen, selected, page):
        newest = queries.newest_visible_id(_user(), OBSERVED)
        if newest is None or newest == newest_seen:
            raise PreventUpdate
        if newest_seen is None or not following or newest == selected:
            return no_update, newest, no_update
        return newest, newest, (1 if page != 1 else no_update)

    app.clientside_callback(
        """
        function(selected, newest, following) {
            const noUpdate = window.dash_clientside.no_update;
            if (selected === null || selected === undefined) { return noUpdate; }
            const url = new URL(window.location.href);
            if (url.pathname !== '/') { return noUpdate; }
            if (url.searchParams.get('id') === String(selected)) { return noUpdate; }
            // A file picked by hand is a step "Back" returns to; one shown by Follow is not.
            const followed = following && String(selected) === String(newest);
            const had = url.searchParams.has('id');
            url.searchParams.set('id', String(selected));
            if (had && !followed) { window.history.pushState({}, '', url); }
            else { window.history.replaceState({}, '', url); }
            return String(selected);
        }
        """,
        Output(ids.DATA_URL_SYNC, "children"), Input(ids.DATA_SELECTED, "data"),
        State(ids.DATA_NEWEST, "data"), State(ids.DATA_FOLLOW, "value"),
    )

    @app.callback(Output(ids.DATA_TITLE, "children"), Output(ids.DATA_STATE, "children"),
                  Output(ids.DATA_TABS, "children"), Output(ids.DATA_MODIFIED, "children"),
                  Output(ids.DATA_DOWNLOAD, "href"), Output(ids.DATA_HEADER_FILE, "children"),
                  Output(ids.DATA_NOT_FOUND, "children"), Output(ids.DATA_MAIN, "hidden"),
                  Output(ids.DATA_ROOT, "data"), Output(ids.DATA_PROVENANCE, "children"),
                  Output(ids.DATA_EXPORT, "children"),
                  Input(ids.DATA_SELECTED, "data"), Input(ids.DATA_STAMP, "data"))
    def main(selected, _stamp):
        user = _user()
        file = _file(user, selected)
        if file is None:
            if selected is None:
                empty = html.Div([html.I(className="bi bi-hourglass-split me-2"),
                                  "Files appear here as the instrument writes them."], className="gsp-empty")
                return "No file selected", None, None, "", "#", "", empty, True, None, None, None
            missing = dbc.Alert([html.I(className="bi bi-question-circle me-2"),
                                 f"File {selected} not found."], color="warning", id="data-file-missing")
            return "File not found", None, None, "", "#", "", missing, True, None, None, None
        family = queries.lineage(user, file)
        if not any(f.id == file.id for f in family):
            family.append(file)
        tabs = lineage_tabs(family, file.id, ids.DATA_PICK)
        # the reason, in full, is the provenance card's first line; the title bar keeps the badge
        state = html.Div([state_badge(file, compact=False)], className="d-flex align-items-center",
                         id="data-state-badge", **{"data-state": file.state})
        modified = f"Last Modified: {_when(file.last_modified)}"
        provenance = provenance_card(file, used_calibrations(file, family), ids.DATA_PICK)
        return (file.file_name, state, tabs, modified, f"/api/files/{file.id}/download/", file.file_name, None,
                False, file.original_file_id or file.id, provenance, export_links(file))

    @app.callback(Output(ids.DATA_ACTIONS, "children"), Input(ids.DATA_SELECTED, "data"),
                  Input(ids.DATA_ACTIONS_REFRESH, "data"))
    def actions(selected, _refresh):
        user = _user()
        file = _file(user, selected)
        return action_buttons(user, file) if file is not None else None

    @app.callback(Output(ids.DATA_JOB, "data"), Output(ids.DATA_ACTION_MESSAGE, "children"),
                  Output(ids.DATA_JOB_POLL, "disabled"), Output(ids.DATA_ACTIONS_REFRESH, "data"),
                  Output(ids.DATA_SELECTED, "data", allow_duplicate=True),
                  Input({"type": ids.DATA_ACTION, "kind": ALL}, "n_clicks"), Input(ids.DATA_JOB_POLL, "n_intervals"),
                  State({"type": ids.DATA_ACTION_CHOICE, "kind": ALL, "param": ALL}, "value"),
                  State(ids.DATA_SELECTED, "data"),
                  State(ids.DATA_JOB, "data"), State(ids.DATA_ACTIONS_REFRESH, "data"), prevent_initial_call=True)
    def run_action(_clicks, _ticks, choices, selected, job_data, refresh):
        user = _user()
        trigger = ctx.triggered_id
        if trigger == ids.DATA_JOB_POLL:
            if not job_data:
                return no_update, no_update, True, no_update, no_update
            job = get_visible_job(user, job_data["id"])
            if job is None:
                return None, None, True, no_update, no_update
            finished = job.state in ("done", "failed", "waiting")
            made = new_product(user, job) if job.state == "done" else None  # show what the action made
            return (no_update, job_message(job, job_data.get("name", "")), finished,
                    (refresh or 0) + 1 if finished else no_update, made.id if made is not None else no_update)
        if not isinstance(trigger, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        file = _file(user, selected)
        if file is None:
            raise PreventUpdate
        kind = trigger["kind"]
        chosen = {state["id"]["param"]: state.get("value") for state in ctx.states_list[0]
                  if state["id"]["kind"] == kind}
        try:
            job = enqueue_action(user, file, kind, chosen)
        except (PermissionError, ValueError, JobRefused) as error:
            return no_update, dbc.Alert(str(error), color="danger", className="py-2 mb-0 small gsp-job"), True, \
                no_update, no_update
        return {"id": job.id, "name": file.file_name}, job_message(job, file.file_name), False, no_update, no_update

    @app.callback(Output(ids.DATA_DELETE_MODAL, "is_open"), Output(ids.DATA_DELETE_NAME, "children"),
                  Output(ids.DATA_DELETE_TARGET, "data"),
                  Output(ids.DATA_SELECTED, "data", allow_duplicate=True),
                  Output(ids.DATA_ACTION_MESSAGE, "children", allow_duplicate=True),
                  Output(ids.DATA_STAMP, "data", allow_duplicate=True),
                  Input({"type": ids.DATA_DELETE, "index": ALL}, "n_clicks"),
                  Input(ids.DATA_DELETE_CONFIRM, "n_clicks"), Input(ids.DATA_DELETE_CANCEL, "n_clicks"),
                  State(ids.DATA_DELETE_TARGET, "data"), prevent_initial_call=True)
    def delete(_asks, _confirm, _cancel, target):
        user = _user()
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        if isinstance(trigger, dict):
            file = _file(user, trigger["index"])
            if file is None or not can_delete(user, file):
                raise PreventUpdate
            return True, file.file_name, file.id, no_update, no_update, no_update
        if trigger == ids.DATA_DELETE_CANCEL:
            return False, no_update, None, no_update, no_update, no_update
        file = _file(user, target)
        if file is None:
            return False, no_update, None, no_update, no_update, no_update
        go_to = file.parent_file_id or file.original_file_id
        try:
            name = delete_product(user, file)
        except PermissionError as error:
            return False, no_update, None, no_update, dbc.Alert(str(error), color="danger", className="py-2 small"), \
                no_update
        message = dbc.Alert([html.I(className="bi bi-trash me-2"), f"Deleted {name}."], color="secondary",
                            className="py-2 mb-0 small", id="data-deleted", duration=8000)
        return False, no_update, None, go_to, message, f"deleted-{target}"

    @app.callback(Output(ids.DATA_HEADER_COLLAPSE, "is_open"), Output("data-header-chevron", "className"),
                  Input(ids.DATA_HEADER_TOGGLE, "n_clicks"), State(ids.DATA_HEADER_COLLAPSE, "is_open"),
                  prevent_initial_call=True)
    def toggle_header(_n, is_open):
        return not is_open, f"bi bi-chevron-{'down' if is_open else 'up'} me-1"

    @app.callback(Output(ids.DATA_HEADER_TABLE, "children"), Input(ids.DATA_SELECTED, "data"),
                  Input(ids.DATA_HEADER_SEARCH, "value"), Input(ids.DATA_HEADER_COLLAPSE, "is_open"))
    def header(selected, text, is_open):
        from components.viewers import ViewerError

        if not is_open:
            return None  # read lazily: most switches never open the header
        file = _file(_user(), selected)
        if file is None:
            return None
        try:
            cards = header_cards(file.full_path)
        except ViewerError as error:
            return dbc.Alert(str(error), color="warning", className="small")
        return header_table(filter_cards(cards, text), total=len(cards))

    @app.callback(Output(ids.DATA_ADV_COLLAPSE, "is_open"), Input(ids.DATA_ADV_BUTTON, "n_clicks"),
                  State(ids.DATA_ADV_COLLAPSE, "is_open"), prevent_initial_call=True)
    def toggle_advanced(_n, is_open):
        return not is_open

    @app.callback(output={name: Output(control, "value") for name, control in VIEWER_CONTROLS.items()},
                  inputs=Input(ids.DATA_ADV_RESET, "n_clicks"), prevent_initial_call=True)
    def reset_advanced(_n):
        from pages.data import visual_defaults

        defaults = visual_defaults(_user())
        return {name: defaults[name] for name in VIEWER_CONTROLS}

    @app.callback(Output(ids.DATA_ADV_ZMIN, "disabled"), Output(ids.DATA_ADV_ZMAX, "disabled"),
                  Output(ids.DATA_ADV_PLOW, "disabled"), Output(ids.DATA_ADV_PHIGH, "disabled"),
                  Input(ids.DATA_ADV_SCALE, "value"))
    def scale_inputs(scale):
        return scale != "minmax", scale != "minmax", scale != "percentiles", scale != "percentiles"

    @app.callback(Output(ids.DATA_COMPARE, "options"), Output(ids.DATA_COMPARE, "value"),
                  Input(ids.DATA_SELECTED, "data"), State(ids.DATA_COMPARE, "value"))
    def compare_choices(selected, compared):
        file = _file(_user(), selected)
        # an unchanged empty value is left alone: writing it would draw the viewer again (and hide it meanwhile)
        return (compare_options(_user(), file) if file is not None else []), ([] if compared else no_update)

    # drawn first by the page's layout (first_paint), so only a change redraws it
    @app.callback(output=Output(ids.DATA_VIEWER, "children"),
                  inputs={"selected": Input(ids.DATA_SELECTED, "data"),
                          "controls": {name: Input(control, "value") for name, control in VIEWER_CONTROLS.items()},
                          "compare": Input(ids.DATA_COMPARE, "value")}, prevent_initial_call=True)
    def viewer(selected, controls, compare):
        return viewer_view(_user(), selected, controls, compare)

    @app.callback(Output(ids.DATA_COMMENTS, "children"), Output(ids.DATA_COMMENT_TEXT, "value"),
                  Output(ids.DATA_COMMENT_MESSAGE, "children"),
                  Input(ids.DATA_SELECTED, "data"), Input(ids.DATA_COMMENT_ADD, "n_clicks"),
                  State(ids.DATA_COMMENT_TEXT, "value"))
    def comments(selected, _n, text):
        user = _user()
        file = _file(user, selected)
        if file is None:
            return None, no_update, None
        message, clear = None, no_update
        if ctx.triggered_id == ids.DATA_COMMENT_ADD:
            try:
                queries.add_comment(user, file, text)
                clear = ""
            except queries.QueryError as error:
                message = html.Span(str(error), className="text-warning")
        return comment_list(queries.comments_for(user, file)), clear, message
