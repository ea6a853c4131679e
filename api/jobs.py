"""Manual triggers of the reduction blocks (the same jobs the live chain runs) and job state."""
from __future__ import annotations

from flask import jsonify, url_for
from flask_login import current_user

from api import ApiError, blueprint
from api.files import json_body, parse_id, visible_file_or_404
from auth.permissions import can_change_file, get_visible_file, get_visible_job
from auth.queries import compatible_arcs, kind_of
from db import db
from db.models import Job
from db.serialize import iso_time
from live import tasks
from pipeline import chain, headers, lamps
from pipeline.fitsfiles import science_header


def job_to_dict(job: Job) -> dict:
    return {"id": job.id, "kind": job.kind, "state": job.state, "reason": job.reason,
            "waiting_for": job.waiting_for, "file_id": job.file_id,
            "params": job.params or {}, "result": job.result, "attempts": job.attempts,
            "created": iso_time(job.created), "started_at": iso_time(job.started_at),
            "finished_at": iso_time(job.finished_at),
            "url": url_for("api.job_detail", job_id=job.id)}


def _trigger(step_name: str, data: dict, params: dict | None = None):
    """Queue ``step_name`` on the file ``data['id']`` if the chain says that step takes it (202 + job)."""
    file = visible_file_or_404(data.get("id"))
    if not can_change_file(current_user, file):
        raise ApiError(f"You may not run reductions on {file.file_name}.", 403)
    step = chain.STEPS[step_name]
    if not step.accepts(file.data_type, kind_of(file), file.technique):
        raise ApiError(f"{file.file_name} ({file.obstype}) is not {step.expects}.", 400)
    job = tasks.enqueue_step(step_name, file, user=current_user, params={**step.manual_params, **(params or {})})
    db.session.commit()
    response = jsonify(job_to_dict(job))
    response.status_code = 202
    return response


@blueprint.post("/files/calibrations/")
def trigger_calibrations():
    return _trigger("calibrations", json_body())


@blueprint.post("/files/reduce/")
def trigger_reduce():
    return _trigger("reduce", json_body())


def _arc_param(data: dict) -> int | None:
    if data.get("arc_id") in (None, ""):
        return None
    arc = get_visible_file(current_user, parse_id(data["arc_id"], "arc_id"))
    if arc is None:
        raise ApiError("Arc not found.", 404)
    if arc.obstype not in chain.ARC_OBSTYPES or arc.data_type not in (chain.DataType.RAW, chain.DataType.REDUCED):
        raise ApiError(f"{arc.file_name} is not a raw or reduced arc.", 400)
    return arc.id


@blueprint.post("/files/spectrum/extract/")
def trigger_extract():
    data = json_body()
    return _trigger("extract", data, {"arc_id": _arc_param(data)})


@blueprint.post("/files/spectrum/calibrate/wavelength/")
def trigger_wavelength():
    data = json_body()
    lamp = data.get("lamp") or None
    if lamp is not None:
        file = visible_file_or_404(data.get("id"))
        choices = lamps.library_lamps_for(science_header(file.full_path))
        if lamp not in choices:
            raise ApiError(f"'{lamp}' is not a library lamp of this configuration; choose one of: "
                           f"{', '.join(choices) or 'none'}.", 400)
    return _trigger("calibrate_wavelength", data, {"arc_id": _arc_param(data), "lamp": lamp})


@blueprint.post("/files/spectrum/calibrate/flux/")
def trigger_flux():
    data = json_body()
    standard_id = None
    if data.get("standard_id") not in (None, ""):
        standard = get_visible_file(current_user, parse_id(data["standard_id"], "standard_id"))
        if standard is None:
            raise ApiError("Standard star not found.", 404)
        if kind_of(standard) != chain.STANDARD:
            raise ApiError(f"{standard.file_name} is not a standard star (mark it with POST /api/files/reclassify/).",
                           400)
        standard_id = standard.id
    return _trigger("calibrate_flux", data, {"standard_id": standard_id})


@blueprint.get("/jobs/<job_id>/")
def job_detail(job_id):
    job = get_visible_job(current_user, parse_id(job_id))
    if job is None:
        raise ApiError("Job not found.", 404)
    return jsonify(job_to_dict(job))


@blueprint.get("/files/<file_id>/choices/")
def file_choices(file_id):
    """What the manual actions may pick: compatible reduced arcs and library lamps."""
    file = visible_file_or_404(file_id)
    spectroscopy = file.technique == "Spectroscopy"
    arcs = compatible_arcs(current_user, file, data_types=(2,)) if spectroscopy else []
    lamp_choices = lamps.library_lamps_for(science_header(file.full_path)) if spectroscopy else []
    return jsonify({"arcs": [{"id": arc.id, "file_name": arc.file_name, "date": arc.date} for arc in arcs],
                    "lamps": lamp_choices, "kind": headers.kind(file.obstype, file.technique)})


_BODY = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "id": {"type": "integer"}, "arc_id": {"type": "integer"}, "lamp": {"type": "string"},
    "standard_id": {"type": "integer"}}}}}}
_ACCEPTED = {"202": {"description": "job queued: {id, kind, state, url}"}, "400": {"description": "refused"},
             "404": {"description": "not found"}}
OPENAPI_PATHS = {
    "/api/files/calibrations/": {"post": {"summary": "Build the master calibration of a raw BIAS/FLAT's group.",
                                          "tags": ["reduction"], "requestBody": _BODY, "responses": _ACCEPTED}},
    "/api/files/reduce/": {"post": {"summary": "Runs the Reduce block with the proposal's settings.",
                                    "tags": ["reduction"], "requestBody": _BODY, "responses": _ACCEPTED}},
    "/api/files/spectrum/extract/": {"post": {"summary": "Extract the targets of a reduced spectrum "
                                                         "(optional arc_id).", "tags": ["reduction"],
                                              "requestBody": _BODY, "responses": _ACCEPTED}},
    "/api/files/spectrum/calibrate/wavelength/": {"post": {"summary": "Wavelength-calibrate an extracted spectrum "
                                                                      "(optional arc_id, lamp).",
                                                           "tags": ["reduction"], "requestBody": _BODY,
                                                           "responses": _ACCEPTED}},
    "/api/files/spectrum/calibrate/flux/": {"post": {"summary": "Flux-calibrate a wavelength-calibrated spectrum "
                                                                "(optional standard_id: a standard star's frame "
                                                                "or its sensitivity function).",
                                                     "tags": ["reduction"], "requestBody": _BODY,
                                                     "responses": _ACCEPTED}},
    "/api/jobs/{job_id}/": {"get": {"summary": "State of a job.", "tags": ["reduction"],
                                    "parameters": [{"name": "job_id", "in": "path", "required": True,
                                                    "schema": {"type": "integer"}}],
                                    "responses": {"200": {"description": "job"}}}},
    "/api/files/{file_id}/choices/": {"get": {"summary": "Compatible arcs and library lamps for manual actions.",
                                              "tags": ["reduction"],
                                              "parameters": [{"name": "file_id", "in": "path", "required": True,
                                                              "schema": {"type": "integer"}}],
                                              "responses": {"200": {"description": "choices"}}}},
}
