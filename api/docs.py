"""The OpenAPI document (/api/openapi.json) and Swagger UI (/api/docs/), served from local files."""
from __future__ import annotations

from importlib import import_module

from flask import jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from api import API_MODULES, API_VERSION, blueprint

DOCS_URL = "/api/docs"
SPEC_URL = "/api/openapi.json"


# What any operation may answer besides its own statuses: always {"detail": "..."} (api/__init__.py).
ERROR_RESPONSES = {"400": "The request cannot be understood (the detail says which parameter and why).",
                   "401": "No valid token or session.", "403": "Not allowed for this user.",
                   "404": "Not found (or not visible to this user).", "405": "Method not allowed on this route.",
                   "413": "The upload is too large.", "422": "The file cannot be read or shown."}
_ERROR_SCHEMA = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


def _with_errors(operation: dict) -> dict:
    responses = operation.setdefault("responses", {})
    for status, description in ERROR_RESPONSES.items():
        responses.setdefault(status, {"description": description,
                                      "content": {"application/json": {"schema": _ERROR_SCHEMA}}})
    return operation


def openapi_document() -> dict:
    paths: dict = {}
    for name in API_MODULES:
        for path, item in getattr(import_module(f"api.{name}"), "OPENAPI_PATHS", {}).items():
            paths.setdefault(path, {}).update({method: _with_errors(dict(operation))
                                               for method, operation in item.items()})
    return {
        "openapi": "3.0.3",
        "info": {"title": "GSP Live API", "version": API_VERSION,
                 "description": "Goodman Spectroscopic Pipeline Live. Authenticate with "
                                "`Authorization: Token <key>` (your key is on the user panel) or a browser session."},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"Token": {"type": "apiKey", "in": "header", "name": "Authorization",
                                                     "description": "Enter: Token <key>"}}},
        "security": [{"Token": []}],
        "paths": dict(sorted(paths.items())),
    }


@blueprint.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document())


OPENAPI_PATHS = {
    "/api/": {"get": {"summary": "Get API status: version, database, queue and workers, jobs by state, counts.",
                      "tags": ["api"],
                      "responses": {"200": {"description": "status"}}}},
}


def swagger_blueprint():
    # validatorUrl None: the UI must not call swagger.io (no internet behind the VPN).
    return get_swaggerui_blueprint(DOCS_URL, SPEC_URL, config={
        "app_name": "GSP Live API", "validatorUrl": None, "persistAuthorization": True,
        "tryItOutEnabled": True})
