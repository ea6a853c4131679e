"""The shown file's actions: the chain's steps a user may run on it by hand (pipeline.chain), with
their choices, the job each queues, its progress, and the product it made."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from auth import queries
from auth.permissions import can_change_file, get_visible_job
from callbacks.data.common import register_clicks, signed_in_user
from callbacks.data.delete import can_delete
from components import ids
from components.data_view import visible_file
from db import db
from db.models import File
from live import tasks
from live.queue import JobRefused
from pipeline import chain, lamps
from pipeline.datatypes import DataType

RERUN = "rerun"  # an action, not a step: it queues the step that makes the product (pipeline.chain)
JOB_LABELS = {**{name: step.title for name, step in chain.STEPS.items()}, RERUN: "Re-run"}
AUTO = "auto"
FINISHED = ("done", "failed", "waiting")


def _arc_label(row: File) -> str:
    when = row.date_obs.strftime("%Y-%m-%d %H:%M") if row.date_obs else ""
    return f"{row.file_name} {when}".strip()


def _arc_input(user, file: File) -> dict:
    """Reduced arcs of the same configuration the user may see; 'automatic' lets the job choose."""
    arcs = queries.compatible_arcs(user, file, data_types=(DataType.REDUCED,))
    options = [{"label": "Arc: automatic (same configuration, closest in time)", "value": AUTO}]
    options += [{"label": f"Arc: {_arc_label(arc)}", "value": str(arc.id)} for arc in arcs]
    return {"param": "arc_id", "label": "Arc", "options": options}


def _standard_input(_user, file: File) -> dict:
    """Sensitivity functions of the file's configuration; 'automatic' takes the standard closest in time."""
    options = [{"label": "Standard: automatic (closest in time)", "value": AUTO}]
    options += [{"label": f"Standard: {_arc_label(row)}", "value": str(row.id)}
                for row in queries.sensitivity_functions(file)]
    return {"param": "standard_id", "label": "Standard", "options": options}


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return -99.0


def _lamp_input(_user, file: File) -> dict:
    """Library lamps of the file's grating and mode (pipeline.lamps); 'automatic' follows the lamps on."""
    options = [{"label": "Lamp: automatic (the lamps that were on)", "value": AUTO}]
    mode = {"GRATING": file.grating, "WAVMODE": file.wavmode, "CAM_TARG": _float(file.cam_targ),
            "GRT_TARG": _float(file.grt_targ)}
    try:
        names = lamps.library_lamps_for(mode)
    except Exception:  # no goodman-pipeline data: the automatic choice only
        names = []
    options += [{"label": f"Lamp: {name}", "value": name} for name in names]
    return {"param": "lamp", "label": "Lamp", "options": options}


class Choice(NamedTuple):
    """How the Data page offers one of the choices a step takes (chain.Step.choices)."""

    offer: Callable[..., dict]  # (user, file) -> {param, label, options}
    parse: Callable[[str], object]  # the chosen option's value (the selects hold text) as the job's parameter


CHOICES = {"arc_id": Choice(_arc_input, int), "lamp": Choice(_lamp_input, str),
           "standard_id": Choice(_standard_input, int)}


def available_actions(user, file: File) -> list[dict]:
    """What the user may do to the file (download and visualize excluded), as
    [{kind, label, icon, params, inputs: [{param, label, options}]}]; the first option of an input
    is its default.  The steps, their labels and what they take are pipeline.chain's."""
    if not can_change_file(user, file):
        return []
    actions = []
    step = chain.step_for(file.data_type, queries.kind_of(file), file.technique)
    if step is not None:
        actions.append({"kind": step.name, "label": step.label, "icon": step.icon, "params": step.manual_params,
                        "inputs": [CHOICES[choice].offer(user, file) for choice in step.choices]})
    if chain.rerun_step(file.data_type, queries.kind_of(file)) is not None:
        actions.append({"kind": RERUN, "label": "Re-run With Current Settings", "icon": "arrow-repeat"})
    return actions


def _action_part(action: dict, file_id: int):
    """An action's button, with its choices' selects before it when it has any. A choice made stays when the
    buttons are drawn again for the same file (after its job ends: a failed try is tried again with another
    choice, not from the start); another file starts from the defaults."""
    button = dbc.Button([html.I(className=f"bi bi-{action['icon']} me-1"), action["label"]],
                        id={"type": ids.DATA_ACTION, "kind": action["kind"]}, n_clicks=0, color="success",
                        size="sm", className="gsp-action")
    inputs = action.get("inputs") or []
    if not inputs:
        return button
    selects = [dbc.Select(id={"type": ids.DATA_ACTION_CHOICE, "kind": action["kind"], "param": i["param"]},
                          options=i["options"], value=i["options"][0]["value"], size="sm",
                          persistence=file_id, persistence_type="memory",
                          className="gsp-action-choice") for i in inputs]
    return dbc.InputGroup([*selects, button], size="sm", className="gsp-action-group")


def action_buttons(user, file: File):
    parts = [_action_part(action, file.id) for action in available_actions(user, file)]
    if can_delete(user, file):
        parts.append(dbc.Button([html.I(className="bi bi-trash me-1"), "Delete"],
                                id={"type": ids.DATA_DELETE, "index": file.id}, n_clicks=0, color="danger",
                                size="sm", className="gsp-action gsp-delete"))
    return parts


def _chosen_params(action: dict, choices: dict) -> dict:
    """{param: value} of the action's inputs as chosen (None: automatic); ValueError for one not offered."""
    params = {}
    for spec in action.get("inputs") or []:
        value = choices.get(spec["param"])
        value = AUTO if value in (None, "") else str(value)
        if value not in {o["value"] for o in spec["options"]}:
            raise ValueError(f"Choose the {spec['label'].lower()} from the list.")
        params[spec["param"]] = None if value == AUTO else CHOICES[spec["param"]].parse(value)
    return params


def enqueue_action(user, file: File, kind: str, choices: dict | None = None):
    """Check and enqueue one action with the chosen inputs ({param: value}); returns the Job row.

    Raises PermissionError (not an action this user may run on this file) or ValueError (a choice
    that is not one of those offered); JobRefused comes from live.queue.
    """
    allowed = {a["kind"]: a for a in available_actions(user, file)}
    if kind not in allowed:
        raise PermissionError(f"You may not run '{JOB_LABELS.get(kind, kind)}' on {file.file_name}.")
    params = {**(allowed[kind].get("params") or {}), **_chosen_params(allowed[kind], choices or {})}
    if kind == RERUN:
        step, file, params = tasks.rerun_params(file)
        kind = step.name
    job = tasks.enqueue_step(kind, file, user=user, params=params)
    db.session.commit()
    return job


def job_products(job) -> list[int]:
    """Ids of the files a finished job made (or settled on), the one to show first first."""
    return list((job.result or {}).get("products", []))


def new_product(user, job) -> File | None:
    """The product a finished job made (its first, for several targets or masters), if the user may see it."""
    made = job_products(job)
    return visible_file(user, made[0]) if made else None


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


# run_action's outputs: (job, message, job poll disabled, actions refresh, file shown)

def _progress(user, job_data, refresh):
    """The job's state; once finished the poll stops, the buttons are drawn again, and what it made is shown."""
    if not job_data:
        return no_update, no_update, True, no_update, no_update
    job = get_visible_job(user, job_data["id"])
    if job is None:
        return None, None, True, no_update, no_update
    finished = job.state in FINISHED
    made = new_product(user, job) if job.state == "done" else None
    return (no_update, job_message(job, job_data.get("name", "")), finished,
            (refresh or 0) + 1 if finished else no_update, made.id if made is not None else no_update)


def _started(user, selected, kind: str, chosen: dict):
    """Queue the clicked action on the shown file; the job is polled from then on."""
    file = visible_file(user, selected)
    if file is None:
        raise PreventUpdate
    try:
        job = enqueue_action(user, file, kind, chosen)
    except (PermissionError, ValueError, JobRefused) as error:
        alert = dbc.Alert(str(error), color="danger", className="py-2 mb-0 small gsp-job")
        return no_update, alert, True, no_update, no_update
    return {"id": job.id, "name": file.file_name}, job_message(job, file.file_name), False, no_update, no_update


def register(app) -> None:
    register_clicks(app, {"type": ids.DATA_ACTION, "kind": ALL}, ids.DATA_ACTION_CLICKED)

    @app.callback(Output(ids.DATA_ACTIONS, "children"), Input(ids.DATA_DRAWN, "data"),
                  Input(ids.DATA_ACTIONS_REFRESH, "data"))
    def actions(selected, _refresh):
        user = signed_in_user()
        file = visible_file(user, selected)
        return action_buttons(user, file) if file is not None else None

    @app.callback(Output(ids.DATA_JOB, "data"), Output(ids.DATA_ACTION_MESSAGE, "children"),
                  Output(ids.DATA_JOB_POLL, "disabled"), Output(ids.DATA_ACTIONS_REFRESH, "data"),
                  Output(ids.DATA_SELECTED, "data", allow_duplicate=True),
                  Input(ids.DATA_ACTION_CLICKED, "data"), Input(ids.DATA_JOB_POLL, "n_intervals"),
                  State({"type": ids.DATA_ACTION_CHOICE, "kind": ALL, "param": ALL}, "value"),
                  # the file whose buttons are shown: a new selection's buttons come after its plot
                  State(ids.DATA_DRAWN, "data"),
                  State(ids.DATA_JOB, "data"), State(ids.DATA_ACTIONS_REFRESH, "data"), prevent_initial_call=True)
    def run_action(clicked, _ticks, _choices, selected, job_data, refresh):
        user = signed_in_user()
        if ctx.triggered_id == ids.DATA_JOB_POLL:
            return _progress(user, job_data, refresh)
        if ctx.triggered_id != ids.DATA_ACTION_CLICKED or not clicked:
            raise PreventUpdate
        kind = clicked["kind"]
        chosen = {state["id"]["param"]: state.get("value") for state in ctx.states_list[0]
                  if state["id"]["kind"] == kind}
        return _started(user, selected, kind, chosen)
