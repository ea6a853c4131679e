"""The night at a glance (auth/nights.py): the caller's nights, and one night's progress and readiness.

GET /api/nights/               the nights the caller has raw files of, newest first, with files by state
GET /api/nights/<YYYY-MM-DD>/  one night: raw files by state, jobs by state, queue and workers, and per
                               configuration its calibration readiness and what is missing, in words

A night the caller has no raw file of is 404, like a file they may not see.
"""
from __future__ import annotations

from flask import jsonify, url_for
from flask_login import current_user

from api import ApiError, blueprint
from api.proposals import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, paginated, whole_parameter
from api.schemas import DATE, ERROR_SCHEMA, TOKEN_SECURITY, counts_of, json_content, page_of, paging_parameters
from auth.nights import FILE_STATES, READINESS_KEYS, list_nights, night_summary
from db.queries import JOB_STATES, QueryError, parse_date
from live.queue import queue_health


@blueprint.get("/nights/")
def nights_list():
    page = whole_parameter("page", 1)
    page_size = whole_parameter("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    nights, count = list_nights(current_user, page, page_size)
    return paginated([{**night, "url": url_for("api.night_detail", date=night["date"])} for night in nights],
                     count, page, page_size)


@blueprint.get("/nights/<date>/")
def night_detail(date):
    try:
        date = parse_date("date", date)
    except QueryError as error:
        raise ApiError(str(error)) from None
    summary = night_summary(current_user, date)
    if summary is None:
        raise ApiError(f"No night {date} among your files.", 404)
    return jsonify({**summary, "queue": queue_health()})


# --- OpenAPI --------------------------------------------------------------------------------------

_READINESS = {"type": "object", "properties": {
    "needed": {"type": "boolean", "description": "False when the chain or the proposal's settings do not need it "
                                                 "(ignore bias/flats, flux calibration off)."},
    "ready": {"type": "boolean"},
    "have": {"type": "integer", "description": "Frames of it tonight."},
    "need": {"type": "integer", "description": "Frames enough: the proposal's minimum for bias and flats, else 1."},
    "master": {"type": "string", "nullable": True,
               "description": "What already provides it (a master, a sensitivity function)."},
    "missing": {"type": "string", "description": "What is missing, in words; empty when ready."}}}
_CONFIGURATION = {"type": "object", "properties": {
    "label": {"type": "string", "example": "400_M2 / GG455"},
    "proposal": {"type": "string", "nullable": True},
    **{name: {"type": "string"} for name in ("camera", "grating", "wavmode", "filter_2", "slit", "binning",
                                             "technique")},
    "frames": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "Raw frames of this configuration tonight, by kind."},
    "ready": {"type": "boolean"},
    "readiness": {"type": "object", "properties": {key: _READINESS for key in READINESS_KEYS.values()}},
    "missing": {"type": "array", "items": {"type": "string"}}}}
_NIGHT = {"type": "object", "properties": {
    "date": {"type": "string", "format": "date"}, "total": {"type": "integer"}, "files": counts_of(FILE_STATES),
    "url": {"type": "string"}}}
_NIGHT_DETAIL = {"type": "object", "properties": {
    "date": {"type": "string", "format": "date"}, "total": {"type": "integer"},
    "files": counts_of(FILE_STATES), "jobs": counts_of(JOB_STATES),
    "queue": {"type": "object", "properties": {
        "backend": {"type": "string"}, "ok": {"type": "boolean"}, "queued": {"type": "integer", "nullable": True},
        "workers": {"type": "integer"}, "error": {"type": "string"}}},
    "configurations": {"type": "array", "items": _CONFIGURATION},
    "missing": {"type": "array", "items": {"type": "string"},
                "example": ["3 more flats needed for 930_M2", "no arc yet for 400_M2 / GG455"]}}}

OPENAPI_PATHS: dict = {
    "/api/nights/": {"get": {
        "tags": ["nights"], "operationId": "api_nights_list", "security": TOKEN_SECURITY,
        "summary": "The nights the caller has raw files of (staff: all), newest first, with raw files by state",
        "parameters": paging_parameters(MAX_PAGE_SIZE),
        "responses": {"200": json_content(page_of(_NIGHT), "One page of nights."),
                      "400": json_content(ERROR_SCHEMA, "Bad page parameters.")}}},
    "/api/nights/{date}/": {"get": {
        "tags": ["nights"], "operationId": "api_nights_read", "security": TOKEN_SECURITY,
        "summary": "One night at a glance: raw files and jobs by state, queue and workers, and per configuration "
                   "whether bias, flats, arcs and a standard star are there, with what is missing in words",
        "parameters": [{"name": "date", "in": "path", "required": True, "description": "The night, YYYY-MM-DD.",
                        "schema": DATE}],
        "responses": {"200": json_content(_NIGHT_DETAIL, "The night."),
                      "400": json_content(ERROR_SCHEMA, "Not a date."),
                      "404": json_content(ERROR_SCHEMA, "The caller has no raw file of that night.")}}},
}
