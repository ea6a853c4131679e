"""Manual triggers of the reduction blocks (the same jobs the live chain runs) and job state."""
from __future__ import annotations

from functools import partial

from flask import jsonify, url_for
from flask_login import current_user

from api import ApiError, blueprint
from api.files import header_of, json_body, parse_id, visible_file_or_404
from api.schemas import BAD_ID, GONE, ID, OPTIONAL_TIME, TIME, body_schema, error, json_content, path_id
from auth.permissions import can_change_file, get_visible_file, get_visible_job
from auth.queries import compatible_arcs, exposure_fields, kind_of
from db import db
from db.models import Job
from db.serialize import iso_time
from live import tasks
from pipeline import chain, headers, lamps, matching
from pipeline.datatypes import DataType
from pipeline.fitsfiles import readable_header


def job_to_dict(job: Job) -> dict:
    return {"id": job.id, "kind": job.kind, "state": job.state, "reason": job.reason,
            "waiting_for": job.waiting_for, "file_id": job.file_id,
            "params": job.params or {}, "result": job.result, "attempts": job.attempts,
            "created": iso_time(job.created), "started_at": iso_time(job.started_at),
            "finished_at": iso_time(job.finished_at),
            "url": url_for("api.job_detail", job_id=job.id)}


def _chosen_file(data: dict, name: str, what: str):
    """The file a choice names (None when not given); 404 when the caller may not see it."""
    if data.get(name) in (None, ""):
        return None
    chosen = get_visible_file(current_user, parse_id(data[name], name))
    if chosen is None:
        raise ApiError(f"{what} not found.", 404)
    return chosen


def _arc(data: dict, file) -> int | None:
    arc = _chosen_file(data, "arc_id", "Arc")
    if arc is None:
        return None
    if arc.obstype not in chain.ARC_OBSTYPES or arc.data_type not in (DataType.RAW, DataType.REDUCED):
        raise ApiError(f"{arc.file_name} is not a raw or reduced arc.", 400)
    return arc.id


def _lamp(data: dict, file) -> str | None:
    lamp = data.get("lamp") or None
    if lamp is not None:
        choices = lamps.library_lamps_for(readable_header(header_of(file)))
        if lamp not in choices:
            raise ApiError(f"'{lamp}' is not a library lamp of this configuration; choose one of: "
                           f"{', '.join(choices) or 'none'}.", 400)
    return lamp


def _standard(data: dict, file) -> int | None:
    standard = _chosen_file(data, "standard_id", "Standard star")
    if standard is None:
        return None
    if kind_of(standard) != chain.STANDARD:
        raise ApiError(f"{standard.file_name} is not a standard star (mark it with POST /api/files/reclassify/).",
                       400)
    return standard.id


# How the API reads each choice a step may take by hand (chain.Step.choices).
CHOICES = {"arc_id": _arc, "lamp": _lamp, "standard_id": _standard}


def trigger(step: chain.Step):
    """``POST /api/files/<step.route>``: queue ``step`` on the file ``id`` if the chain says that step takes it
    (202 + the job), with the choices it may take by hand."""
    data = json_body(("id", *step.choices))
    file = visible_file_or_404(data.get("id"))
    if not can_change_file(current_user, file):
        raise ApiError(f"You may not run reductions on {file.file_name}.", 403)
    if not step.accepts(file.data_type, kind_of(file), file.technique):
        raise ApiError(f"{file.file_name} ({file.obstype}) is not {step.expects}.", 400)
    params = {**step.manual_params, **{choice: CHOICES[choice](data, file) for choice in step.choices}}
    return _queued(tasks.enqueue_step(step.name, file, user=current_user, params=params))


def _queued(job: Job):
    db.session.commit()
    response = jsonify(job_to_dict(job))
    response.status_code = 202
    return response


def trigger_combine(step: chain.Step):
    """``POST /api/files/spectrum/combine/``: combine the spectra ``ids`` (two or more of one target, each of
    another exposure), or, given one spectrum as ``id``, the newest of every exposure of its target."""
    data = json_body(("id", "ids"))
    if ("id" in data) == ("ids" in data):
        raise ApiError("Give the spectra to combine as 'ids' (a list of file ids), or one spectrum of the target "
                       "as 'id'.", 400)
    if "id" in data:
        return trigger(step)
    if not isinstance(data["ids"], list) or len(data["ids"]) < 2:
        raise ApiError("'ids' must be a list of two or more file ids.", 400)
    files = [visible_file_or_404(value, "ids") for value in data["ids"]]
    for file in files:
        if not can_change_file(current_user, file):
            raise ApiError(f"You may not run reductions on {file.file_name}.", 403)
        if not step.accepts(file.data_type, kind_of(file), file.technique):
            raise ApiError(f"{file.file_name} is not {step.expects}.", 400)
    reason = matching.not_one_target([exposure_fields(file) for file in files])
    if reason:
        raise ApiError(f"Cannot combine: {reason}.", 400)
    return _queued(tasks.enqueue_step(step.name, files[-1], user=current_user,
                                      params={"ids": [file.id for file in files]}))


TRIGGERS = {"combine": trigger_combine}  # steps whose trigger takes more than a file and its choices
for _step in chain.STEPS.values():
    blueprint.add_url_rule(f"/files/{_step.route}", endpoint=f"trigger_{_step.name}", methods=["POST"],
                           view_func=partial(TRIGGERS.get(_step.name, trigger), _step))


@blueprint.get("/jobs/<int:job_id>/")
def job_detail(job_id):
    job = get_visible_job(current_user, parse_id(job_id))
    if job is None:
        raise ApiError("Job not found.", 404)
    return jsonify(job_to_dict(job))


@blueprint.get("/files/<int:file_id>/choices/")
def file_choices(file_id):
    """What the manual actions may pick: compatible reduced arcs and library lamps."""
    file = visible_file_or_404(file_id)
    spectroscopy = file.technique == "Spectroscopy"
    arcs = compatible_arcs(current_user, file, data_types=(DataType.REDUCED,)) if spectroscopy else []
    lamp_choices = lamps.library_lamps_for(readable_header(header_of(file))) if spectroscopy else []
    return jsonify({"arcs": [{"id": arc.id, "file_name": arc.file_name, "date": arc.date} for arc in arcs],
                    "lamps": lamp_choices, "kind": headers.kind(file.obstype, file.technique)})


# How each choice a step may take by hand is described (chain.Step.choices; read by CHOICES above).
CHOICE_SCHEMAS = {"arc_id": {**ID, "description": "A raw or reduced arc to use instead of the closest one."},
                  "lamp": {"type": "string", "description": "A library lamp of the configuration (see choices/)."},
                  "standard_id": {**ID, "description": "A standard star to use instead of the closest in time."}}
_JOB = {"type": "object", "required": ["id", "kind", "state", "url"], "properties": {
    "id": ID, "kind": {"type": "string", "enum": list(chain.STEPS)}, "state": {"type": "string"},
    "reason": {"type": "string"}, "waiting_for": {"type": "string"}, "file_id": {**ID, "nullable": True},
    "params": {"type": "object"}, "result": {"type": "object", "nullable": True}, "attempts": {"type": "integer"},
    "created": TIME, "started_at": OPTIONAL_TIME, "finished_at": OPTIONAL_TIME, "url": {"type": "string"}}}
_NOT_FOUND = error("No such file (or arc, or standard), or not one the caller may see.")
_COMBINE_BODY = body_schema({
    "id": {**ID, "description": "One calibrated spectrum: the newest of every exposure of its target is combined."},
    "ids": {"type": "array", "items": ID, "minItems": 2, "uniqueItems": True,
            "description": "The calibrated spectra to combine: of one target (proposal, night, configuration, "
                           "OBJECT, target along the slit, pointing within 10\"), each of another exposure."}},
    example={"ids": [101, 117, 131]})
_COMBINE_BODY["content"]["application/json"]["schema"]["oneOf"] = [{"required": ["id"]}, {"required": ["ids"]}]
REQUEST_BODIES = {"combine": _COMBINE_BODY}
OPENAPI_PATHS = {
    **{f"/api/files/{step.route}": {"post": {
        "summary": f"{step.title}: takes {step.expects}" + (f" (optional {', '.join(step.choices)})"
                                                              if step.choices else "") + ".",
        "tags": ["reduction"],
        "requestBody": REQUEST_BODIES.get(step.name) or body_schema(
            {"id": {**ID, "description": "The file to run it on."},
             **{choice: CHOICE_SCHEMAS[choice] for choice in step.choices}}, ("id",)),
        "responses": {"202": json_content(_JOB, "Queued (or the same job already waiting): the job."),
                      "400": error(f"The file is not {step.expects}, or a choice does not fit it."),
                      "403": error("A file the caller may not reduce."), "404": _NOT_FOUND,
                      **({"410": GONE} if "lamp" in step.choices else {})}}}
       for step in chain.STEPS.values()},
    "/api/jobs/{job_id}/": {"get": {"summary": "State of a job.", "tags": ["reduction"],
                                    "parameters": [path_id("job_id", "The job's id.")],
                                    "responses": {"200": json_content(_JOB, "The job."),
                                                  "400": BAD_ID,
                                                  "404": error("No such job, or not one the caller may see.")}}},
    "/api/files/{file_id}/choices/": {"get": {
        "summary": "Compatible arcs and library lamps for manual actions.", "tags": ["reduction"],
        "parameters": [path_id("file_id", "The file's id.")],
        "responses": {"200": json_content({"type": "object", "required": ["arcs", "lamps", "kind"], "properties": {
            "arcs": {"type": "array", "items": {"type": "object", "properties": {
                "id": ID, "file_name": {"type": "string"}, "date": {"type": "string"}}}},
            "lamps": {"type": "array", "items": {"type": "string"}}, "kind": {"type": "string"}}}, "The choices."),
            "400": BAD_ID, "404": error("No such file, or not one the caller may see."), "410": GONE}}},
}
