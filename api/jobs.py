"""Manual triggers of the reduction blocks (the same jobs the live chain runs) and job state."""
from __future__ import annotations

from flask import jsonify, url_for
from flask_login import current_user

from api import ApiError, blueprint
from api.files import json_body, parse_id, visible_file_or_404
from auth.permissions import can_change_file, get_visible_file
from db import db
from db.models import Job
from db.queries import compatible_arcs
from pipeline import headers, lamps, tasks
from pipeline.fitsfiles import science_header
from pipeline.jobs import enqueue


def job_to_dict(job: Job) -> dict:
    return {"id": job.id, "kind": job.kind, "state": job.state, "reason": job.reason, "file_id": job.file_id,
            "params": job.params or {}, "result": job.result, "attempts": job.attempts,
            "created": job.created.isoformat() if job.created else None,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "url": url_for("api.job_detail", job_id=job.id)}


def _changeable_file(data: dict):
    file = visible_file_or_404(data.get("id"))
    if not can_change_file(current_user, file):
        raise ApiError(f"You may not run reductions on {file.file_name}.", 403)
    return file


def _accepted(kind: str, file, params: dict | None = None):
    job = enqueue(kind, file_id=file.id, user=current_user, params=params)
    response = jsonify(job_to_dict(job))
    response.status_code = 202
    return response


@blueprint.post("/files/calibrations/")
def trigger_calibrations():
    file = _changeable_file(json_body())
    if file.data_type != 0 or tasks.kind_of(file) not in ("bias", "flat"):
        raise ApiError(f"{file.file_name} is not a raw BIAS or FLAT frame.", 400)
    return _accepted("calibrations", file)


@blueprint.post("/files/reduce/")
def trigger_reduce():
    file = _changeable_file(json_body())
    if file.data_type != 0 or tasks.kind_of(file) not in ("arc", "science", "imaging"):
        raise ApiError(f"{file.file_name} ({file.obstype}) is not a raw science, arc or imaging frame.", 400)
    return _accepted("reduce", file, {"force": True})


def _arc_param(data: dict) -> int | None:
    if data.get("arc_id") in (None, ""):
        return None
    arc = get_visible_file(current_user, parse_id(data["arc_id"], "arc_id"))
    if arc is None:
        raise ApiError("Arc not found.", 404)
    if arc.obstype not in tasks.ARC_OBSTYPES or arc.data_type not in (0, 2):
        raise ApiError(f"{arc.file_name} is not a raw or reduced arc.", 400)
    return arc.id


@blueprint.post("/files/spectrum/extract/")
def trigger_extract():
    data = json_body()
    file = _changeable_file(data)
    if file.data_type != 2 or tasks.kind_of(file) != "science":
        raise ApiError(f"{file.file_name} is not a reduced science spectrum (reduce it first).", 400)
    return _accepted("extract", file, {"arc_id": _arc_param(data)})


@blueprint.post("/files/spectrum/calibrate/wavelength/")
def trigger_wavelength():
    data = json_body()
    file = _changeable_file(data)
    if file.data_type != 3 or file.obstype in tasks.ARC_OBSTYPES:
        raise ApiError(f"{file.file_name} is not an extracted science spectrum (extract it first).", 400)
    lamp = data.get("lamp") or None
    if lamp is not None:
        choices = lamps.library_lamps_for(science_header(file.full_path))
        if lamp not in choices:
            raise ApiError(f"'{lamp}' is not a library lamp of this configuration; choose one of: "
                           f"{', '.join(choices) or 'none'}.", 400)
    return _accepted("calibrate_wavelength", file, {"arc_id": _arc_param(data), "lamp": lamp})


@blueprint.get("/jobs/<job_id>/")
def job_detail(job_id):
    job = db.session.get(Job, parse_id(job_id))
    visible = job is not None and (current_user.is_staff or job.user_id == current_user.id
                                   or (job.file_id and get_visible_file(current_user, job.file_id)))
    if not visible:
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
    "id": {"type": "integer"}, "arc_id": {"type": "integer"}, "lamp": {"type": "string"}}}}}}
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
