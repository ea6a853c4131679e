"""The OpenAPI document (/api/openapi.json) and Swagger UI (/api/docs/), served from local files."""
from __future__ import annotations

from importlib import import_module

from flask import jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from api import API_MODULES, API_VERSION, blueprint
from api.schemas import error

DOCS_URL = "/api/docs"
SPEC_URL = "/api/openapi.json"


# What every operation may answer besides its own statuses: the token is missing or wrong (auth/__init__.py), or
# the request line is longer than the HTTP server in front of the app reads (gunicorn: 4094 bytes, the
# development server: 64 KiB), which answers with its own HTML page before the app sees the request.
COMMON_STATUSES = {"401": error("No valid token or session."),
                   "414": {"description": "The URL is too long for the HTTP server (its own HTML page).",
                           "content": {"text/html": {"schema": {"type": "string"}}}}}


def _with_common_statuses(operation: dict) -> dict:
    return {**operation, "responses": {**operation["responses"], **COMMON_STATUSES}}


def openapi_document() -> dict:
    paths: dict = {}
    for name in API_MODULES:
        for path, item in getattr(import_module(f"api.{name}"), "OPENAPI_PATHS", {}).items():
            paths.setdefault(path, {}).update({method: _with_common_statuses(operation)
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


def swagger_blueprint():
    # validatorUrl None: the UI must not call swagger.io (no internet behind the VPN).
    return get_swaggerui_blueprint(DOCS_URL, SPEC_URL, config={
        "app_name": "GSP Live API", "validatorUrl": None, "persistAuthorization": True,
        "tryItOutEnabled": True})
