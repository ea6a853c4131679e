"""Proposals, their reduction settings and collaborators; the event log.

GET  /api/proposals/                              the proposals the caller belongs to (staff: all), paginated
GET  /api/proposals/<id>/                         one proposal (id or SOAR id)
GET  /api/proposals/<id>/settings/                its data reduction settings
PUT|PATCH /api/proposals/<id>/settings/           change settings (partial allowed; PI and staff)
GET|POST /api/proposals/collaborators/<id>/       the proposal / add or remove a collaborator (PI and staff)
GET  /api/logs/                                   the event log the caller may read, paginated

Visibility follows auth.permissions: a proposal the caller may not see is 404
(never 403, so its existence is not revealed); a member who may not manage it
gets 403 on changes.
"""
from __future__ import annotations

from urllib.parse import urlencode

import sqlalchemy as sa
from flask import jsonify, request
from flask_login import current_user

from api import ApiError, blueprint
from api.files import parse_id
from api.schemas import ERROR_SCHEMA, ID, TOKEN_SECURITY, error, json_content, page_of, paging_parameters, query
from auth.accounts import (
    MAX_TITLE_LENGTH,
    AccountError,
    SettingsInvalid,
    add_collaborator_by_email,
    remove_collaborator_by_email,
    update_proposal_details,
    update_settings,
)
from auth.audit import MAX_PAGE_SIZE as LOG_PAGE_SIZE
from auth.audit import LEVELS, LogQueryError, list_log_entries, log_entry_to_dict
from auth.permissions import can_edit_proposal_details, can_manage_proposal, visible_proposals
from auth.queries import find_visible_proposal
from db import db
from db.models import Proposal
from db.queries import MAX_INTEGER, QueryError, is_number, parse_integer
from db.serialize import proposal_to_dict
from pipeline.cosmics import dcr_available

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


# --- helpers --------------------------------------------------------------------------------------

def whole_parameter(name: str, default: int, maximum: int | None = None) -> int:
    value = request.args.get(name)
    if value in (None, ""):
        return default
    try:
        return parse_integer(name, value, minimum=1, **({"maximum": maximum} if maximum is not None else {}))
    except QueryError as error:
        raise ApiError(str(error)) from None


def _page_url(page: int | None) -> str | None:
    if page is None:
        return None
    args = request.args.to_dict(flat=True)
    args["page"] = str(page)
    return f"{request.base_url}?{urlencode(args)}"


def paginated(results: list, count: int, page: int, page_size: int):
    """The files list's envelope: {"count", "next", "previous", "results"}."""
    has_next = page * page_size < count
    return jsonify({"count": count, "next": _page_url(page + 1 if has_next else None),
                    "previous": _page_url(page - 1 if page > 1 else None), "results": results})


def visible_proposal_or_404(ident: str) -> Proposal:
    """By numeric id or SOAR id, through the permission layer; missing and hidden look the same."""
    if is_number(ident):
        parse_id(ident, "id")  # a number too large for an id is a bad request, not a missing proposal
    proposal = find_visible_proposal(current_user, ident)
    if proposal is None:
        raise ApiError("Not found.", 404)
    return proposal


def managed_proposal(ident: str) -> Proposal:
    proposal = visible_proposal_or_404(ident)
    if not can_manage_proposal(current_user, proposal):
        raise ApiError(f"Only the PI of {proposal.soar_id} and staff may change it.", 403)
    return proposal


def _body() -> dict:
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError("The body must be a JSON object.")
        return data
    return request.form.to_dict(flat=True)


def _settings_dict(proposal: Proposal) -> dict:
    return proposal.settings.as_settings().to_dict()


# --- proposals ------------------------------------------------------------------------------------

@blueprint.get("/proposals/")
def proposals_list():
    page = whole_parameter("page", 1)
    page_size = whole_parameter("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    query = visible_proposals(current_user, sa.select(Proposal.id))
    search = request.args.get("search", "").strip()
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(sa.or_(sa.func.lower(Proposal.soar_id).like(pattern, escape="\\"),
                                   sa.func.lower(Proposal.title).like(pattern, escape="\\")))
    if request.args.get("semester"):
        query = query.where(Proposal.semester == request.args["semester"].strip())
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    ids = db.session.scalars(query.order_by(Proposal.soar_id.desc(), Proposal.id.desc())
                             .limit(page_size).offset((page - 1) * page_size)).all()
    proposals = db.session.scalars(sa.select(Proposal).where(Proposal.id.in_(ids))
                                   .order_by(Proposal.soar_id.desc(), Proposal.id.desc())).all() if ids else []
    return paginated([proposal_to_dict(p) for p in proposals], count, page, page_size)


@blueprint.get("/proposals/<ident>/")
def proposals_detail(ident):
    return jsonify(proposal_to_dict(visible_proposal_or_404(ident)))


@blueprint.patch("/proposals/<ident>/")
def proposals_update(ident):
    proposal = visible_proposal_or_404(ident)
    if not can_edit_proposal_details(current_user):
        raise ApiError(f"Only staff may change the PI, semester or title of {proposal.soar_id}.", 403)
    data = request.get_json(silent=True) if request.is_json else None
    if not isinstance(data, dict):
        raise ApiError("Send a JSON object with any of pi, semester, title (Content-Type: application/json).")
    try:
        update_proposal_details(proposal, data, current_user)
    except AccountError as error:
        raise ApiError(str(error), error.status) from None
    return jsonify(proposal_to_dict(proposal))


@blueprint.get("/proposals/<ident>/settings/")
def proposals_settings(ident):
    return jsonify(_settings_dict(visible_proposal_or_404(ident)))


@blueprint.route("/proposals/<ident>/settings/", methods=["PUT", "PATCH"])
def proposals_settings_update(ident):
    proposal = managed_proposal(ident)
    if not request.is_json or not isinstance(request.get_json(silent=True), dict):
        raise ApiError("Send the settings as a JSON object (Content-Type: application/json).")
    try:
        update_settings(proposal, request.get_json(), current_user)
    except SettingsInvalid as error:
        db.session.rollback()
        raise ApiError("Invalid settings; nothing was changed.", 400, errors=error.problems) from None
    return jsonify(_settings_dict(proposal))


@blueprint.route("/proposals/collaborators/<ident>/", methods=["GET", "POST"])
def proposals_collaborators(ident):
    if request.method == "GET":
        return jsonify(proposal_to_dict(visible_proposal_or_404(ident)))
    proposal = managed_proposal(ident)
    data = _body()
    action = data.get("action")
    if action not in ("add", "remove"):
        raise ApiError("'action' must be 'add' or 'remove'.")
    if not data.get("email"):
        raise ApiError("'email' is required.")
    try:
        if action == "add":
            add_collaborator_by_email(proposal, data["email"], current_user)
        else:
            remove_collaborator_by_email(proposal, data["email"], current_user)
    except AccountError as error:
        raise ApiError(str(error), error.status) from None
    db.session.refresh(proposal)
    return jsonify(proposal_to_dict(proposal))


# --- logs -----------------------------------------------------------------------------------------

@blueprint.get("/logs/")
def logs_list():
    try:
        result = list_log_entries(current_user, level=request.args.get("level"),
                                  proposal=request.args.get("proposal"), text=request.args.get("search"),
                                  page=request.args.get("page"), page_size=request.args.get("page_size"))
    except LogQueryError as error:
        raise ApiError(str(error)) from None
    return paginated([log_entry_to_dict(*row) for row in result.rows], result.count, result.page,
                     result.page_size)


# --- OpenAPI --------------------------------------------------------------------------------------

# A SOAR id has a character other than a digit: a number is the proposal's id.
SOAR_ID = {"type": "string", "pattern": "[^0-9]", "example": "SOAR2026B-001"}
_IDENT = {"name": "id", "in": "path", "required": True, "description": "Proposal id (or its SOAR id).",
          "schema": {"anyOf": [ID, SOAR_ID]}}
_USER = {"type": "object", "nullable": True, "properties": {
    "id": {"type": "integer"}, "username": {"type": "string"},
    "last_login": {"type": "string", "format": "date-time", "nullable": True},
    "first_name": {"type": "string"}, "last_name": {"type": "string"}, "email": {"type": "string"},
    "is_staff": {"type": "boolean"}, "is_active": {"type": "boolean"},
    "date_joined": {"type": "string", "format": "date-time"}}}
_PROPOSAL = {"type": "object", "properties": {
    "id": {"type": "integer"}, "soar_id": {"type": "string"}, "semester": {"type": "string"},
    "title": {"type": "string"}, "abstract": {"type": "string"}, "user": _USER,
    "collaborators": {"type": "array", "items": _USER}}}
_SETTINGS = {"type": "object", "properties": {
    "saturation_threshold": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 100,
                             "description": "Percent of saturated pixels that rejects a flat."},
    "cosmic_ray_rejection": {"type": "string", "enum": [method for method in ("default", "dcr", "lacosmic", "none")
                                                        if method != "dcr" or dcr_available()],
                             "description": "dcr only where its program is installed."},
    "technique": {"type": "string", "enum": ["Spectroscopy", "Imaging"]},
    "ignore_bias": {"type": "boolean"}, "ignore_flats": {"type": "boolean"},
    "min_bias": {"type": "integer", "minimum": 1, "maximum": 500},
    "min_flats": {"type": "integer", "minimum": 1, "maximum": 500},
    "flat_normalization": {"type": "string", "enum": ["mean", "simple", "full"]},
    "flat_normalization_order": {"type": "integer", "minimum": 1, "maximum": 50},
    "extraction": {"type": "string", "enum": ["fractional", "optimal"]},
    "target_fit_model": {"type": "string", "enum": ["moffat", "gaussian"]},
    "max_targets": {"type": "integer", "minimum": 1, "maximum": 10},
    "flux_calibration": {"type": "boolean"},
    "flexure_correction": {"type": "boolean",
                           "description": "Shift each science frame's arc solution by its sky lines' offset."},
    "telluric_correction": {"type": "boolean",
                            "description": "Correct flux-calibrated spectra for the atmosphere's O2 and H2O "
                                           "bands, measured on the standard star."}},
    "additionalProperties": False}


_COLLABORATOR_CHANGE = {"type": "object", "required": ["email", "action"], "properties": {
    "email": {"type": "string", "format": "email"}, "action": {"type": "string", "enum": ["add", "remove"]}}}
_404 = json_content(ERROR_SCHEMA, "No such proposal, or the caller is not a member (the two look the same).")
_BAD_IDENT = error(f"A numeric id that is not from 1 to {MAX_INTEGER}.")
_SETTINGS_400 = {"type": "object", "properties": {
    "detail": {"type": "string"},
    "errors": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "One message per invalid or unknown field."}}}

OPENAPI_PATHS: dict = {
    "/api/proposals/": {"get": {
        "tags": ["proposals"], "operationId": "api_proposals_list", "security": TOKEN_SECURITY,
        "summary": "The proposals the caller is PI or collaborator of (staff: all)",
        "parameters": [*paging_parameters(MAX_PAGE_SIZE),
                       query("search", {"type": "string"}, "Text in the SOAR id or title."),
                       query("semester", {"type": "string", "example": "2026B"})],
        "responses": {"200": json_content(page_of(_PROPOSAL), "One page of proposals."),
                      "400": json_content(ERROR_SCHEMA, "Bad page parameters.")}}},
    "/api/proposals/{id}/": {
        "get": {"tags": ["proposals"], "operationId": "api_proposals_read", "security": TOKEN_SECURITY,
                "summary": "One proposal with its PI and collaborators", "parameters": [_IDENT],
                "responses": {"200": json_content(_PROPOSAL, "The proposal."), "400": _BAD_IDENT, "404": _404}},
        "patch": {"tags": ["proposals"], "operationId": "api_proposals_partial_update", "security": TOKEN_SECURITY,
                  "summary": "Set the PI, semester or title (staff; fields left out keep their value)",
                  "description": "Each change is recorded in the proposal's history. A new PI who was a collaborator "
                                 "stops being one; a placeholder proposal (first seen in a FITS header) that gets a "
                                 "PI is a proper one.",
                  "parameters": [_IDENT],
                  "requestBody": {"required": True, "content": {"application/json": {"schema": {
                      "type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                          "pi": {**ID, "description": "The id of an existing user."},
                          "semester": {"type": "string", "pattern": "^[0-9]{4}[ABab]$", "example": "2026B"},
                          "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_LENGTH}}},
                      "example": {"pi": 2, "semester": "2026B", "title": "Quasar outflows"}}}},
                  "responses": {"200": json_content(_PROPOSAL, "The proposal after the change."),
                                "400": json_content(ERROR_SCHEMA, "Unknown user id, bad semester, empty or too long "
                                                                  "title, an unknown field, or a numeric id that "
                                                                  f"is not from 1 to {MAX_INTEGER}; nothing was "
                                                                  "changed."),
                                "403": json_content(ERROR_SCHEMA, "A member who is not staff."),
                                "404": error("No such proposal (or the caller is not a member), or no user with the "
                                             "id given as pi.")}},
    },
    "/api/proposals/{id}/settings/": {
        "get": {"tags": ["proposals"], "operationId": "api_proposals_settings_read", "security": TOKEN_SECURITY,
                "summary": "The proposal's data reduction settings (every member may read them)",
                "parameters": [_IDENT],
                "responses": {"200": json_content(_SETTINGS, "The settings."), "400": _BAD_IDENT, "404": _404}},
        "put": {"tags": ["proposals"], "operationId": "api_proposals_settings_update", "security": TOKEN_SECURITY,
                "summary": "Change data reduction settings (PI and staff; fields left out keep their value)",
                "description": "Every change is recorded in the proposal's history (who, field, old, new). "
                               "The settings apply to every new file of the proposal.",
                "parameters": [_IDENT],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _SETTINGS}}},
                "responses": {"200": json_content(_SETTINGS, "The settings after the change."),
                              "400": json_content(_SETTINGS_400, "Invalid values; nothing was changed."),
                              "403": json_content(ERROR_SCHEMA, "A member who is not the PI."), "404": _404}},
    },
    "/api/proposals/collaborators/{id}/": {
        "get": {"tags": ["proposals"], "operationId": "api_proposals_collaborators_read", "security": TOKEN_SECURITY,
                "summary": "The proposal with its collaborators", "parameters": [_IDENT],
                "responses": {"200": json_content(_PROPOSAL, "The proposal."), "400": _BAD_IDENT, "404": _404}},
        "post": {"tags": ["proposals"], "operationId": "api_proposals_collaborators_create",
                 "security": TOKEN_SECURITY,
                 "summary": "Add or remove a collaborator by e-mail (PI and staff)",
                 "description": "Adding an e-mail without an account creates the user (username from the "
                                "e-mail) and mails a link to set a password. The PI cannot be removed.",
                 "parameters": [_IDENT],
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": _COLLABORATOR_CHANGE,
                                          "example": {"email": "user@server.net", "action": "add"}},
                     "application/x-www-form-urlencoded": {"schema": _COLLABORATOR_CHANGE}}},
                 "responses": {"200": json_content(_PROPOSAL, "The proposal after the change."),
                               "400": json_content(ERROR_SCHEMA, "Not an e-mail, or an unknown action."),
                               "403": json_content(ERROR_SCHEMA, "A member who is not the PI."),
                               "404": error("No such proposal (or the caller is not a member), or removing someone "
                                            "who is not a collaborator."),
                               "409": error("Adding a member, or removing the PI."),
                               "502": json_content(ERROR_SCHEMA, "The set-password e-mail could not be sent; "
                                                    "nothing was changed.")}},
    },
    "/api/logs/": {"get": {
        "tags": ["logs"], "operationId": "api_logs_list", "security": TOKEN_SECURITY,
        "summary": "Important events, newest first (users: their proposals' and files' events; staff: all)",
        "parameters": [*paging_parameters(LOG_PAGE_SIZE),
                       query("level", {"type": "string", "enum": list(LEVELS)}),
                       query("proposal", {"anyOf": [ID, SOAR_ID]}, "Proposal id or SOAR id."),
                       query("search", {"type": "string"}, "Text in the message, event name or subject.")],
        "responses": {"200": json_content(page_of({"type": "object", "properties": {
            "id": {"type": "integer"}, "created": {"type": "string", "format": "date-time"},
            "level": {"type": "string"}, "event": {"type": "string"}, "message": {"type": "string"},
            "user": {"type": "string", "nullable": True}, "proposal_id": {"type": "string", "nullable": True},
            "file_id": {"type": "integer", "nullable": True}, "subject": {"type": "string"},
            "details": {"type": "object"}}}), "One page of events."),
            "400": json_content(ERROR_SCHEMA, "Bad filter or page parameters.")}}},
}
# PATCH takes the same partial body as PUT.
OPENAPI_PATHS["/api/proposals/{id}/settings/"]["patch"] = {
    **OPENAPI_PATHS["/api/proposals/{id}/settings/"]["put"], "operationId": "api_proposals_settings_partial_update"}
