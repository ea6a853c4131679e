"""The JSON API blueprint, under /api/ (token or session auth, see auth/)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import HTTPException

blueprint = Blueprint("api", __name__, url_prefix="/api")
API_VERSION = "1.0"


class ApiError(Exception):
    """Raise anywhere in a view: becomes ``{"detail": message}`` with the status."""

    def __init__(self, message: str, status: int = 400, **extra):
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra


def error_response(message: str, status: int, **extra):
    response = jsonify({"detail": message, **extra})
    response.status_code = status
    return response


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError):
    return error_response(error.message, error.status, **error.extra)


def _http_error(error: HTTPException):
    """An HTTP error on an API path, in a view or before one (a URL no route takes, a body too large): JSON,
    with the error's own headers (the Allow of a 405); elsewhere Flask's page."""
    if not request.path.startswith("/api/"):
        return error
    response = error_response(error.description or error.name, error.code or 500)
    response.headers.extend((name, value) for name, value in error.get_headers() if name != "Content-Type")
    return response


@blueprint.errorhandler(Exception)
def _unexpected(error: Exception):
    # Never a traceback to the client; the server log keeps it.
    from flask import current_app

    current_app.logger.exception("API error")
    return error_response("Internal server error; the event was logged.", 500)


# Each module adds its routes to the blueprint on import and describes them in OPENAPI_PATHS.
API_MODULES = ("status", "files", "jobs", "proposals", "nights", "email", "subscriptions", "docs")


def init_app(server):
    from importlib import import_module

    for name in API_MODULES:
        import_module(f"api.{name}")
    server.register_blueprint(blueprint)
    server.register_error_handler(HTTPException, _http_error)
    server.register_blueprint(import_module("api.docs").swagger_blueprint())

    @server.route("/api/<path:unknown>", methods=list(API_METHODS))
    def api_not_found(unknown):
        # Without this, Dash's catch-all page route would answer unknown API URLs with HTML.
        allowed = methods_for(server, f"/api/{unknown}")
        if allowed:
            response = error_response(f"{request.method} is not allowed on /api/{unknown}; use "
                                      f"{', '.join(allowed)}.", 405)
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(f"No API endpoint /api/{unknown}.", 404)

    @server.before_request
    def api_options():
        """OPTIONS lists the methods of the route itself: Flask's own answer would add every method of the
        catch-all above, which matches every API path."""
        if request.method != "OPTIONS" or not request.path.startswith("/api/"):
            return None
        allowed = methods_for(server, request.path)
        if not allowed:
            return error_response(f"No API endpoint {request.path}.", 404)
        response = server.response_class(status=204)
        response.headers["Allow"] = ", ".join([*allowed, *(["HEAD"] if "GET" in allowed else []), "OPTIONS"])
        return response


API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def methods_for(server, path: str) -> list[str]:
    """The methods a known API route takes at ``path`` (empty when no route but the catch-all matches)."""
    adapter = server.url_map.bind("localhost")
    allowed = []
    for method in API_METHODS:
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            continue
        if endpoint != "api_not_found":
            allowed.append(method)
    return allowed
