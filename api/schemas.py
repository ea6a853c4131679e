"""Building blocks of the OpenAPI document (api/docs.py): each API module describes its routes with them, so
the document says exactly what the server takes (types, minimums, no unknown fields) and answers."""
from __future__ import annotations

from db.queries import MAX_INTEGER

TOKEN_SECURITY = [{"Token": []}]
ERROR_SCHEMA = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}
TIME = {"type": "string", "format": "date-time"}
OPTIONAL_TIME = {**TIME, "nullable": True}
DATE = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "example": "2026-11-27"}


def json_content(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> dict:
    """A refusal: ``{"detail": "..."}`` saying why (api.error_response)."""
    return json_content(ERROR_SCHEMA, description)


BAD_ID = error(f"The id is not a whole number from 1 to {MAX_INTEGER}.")
GONE = error("The file is catalogued but missing or unreadable on disk.")


def page_of(item: dict) -> dict:
    """The envelope of every list: {"count", "next", "previous", "results"}."""
    return {"type": "object", "required": ["count", "next", "previous", "results"], "properties": {
        "count": {"type": "integer", "minimum": 0}, "next": {"type": "string", "nullable": True},
        "previous": {"type": "string", "nullable": True}, "results": {"type": "array", "items": item}}}


def counts_of(states) -> dict:
    """How many are in each state, every state present."""
    return {"type": "object", "properties": {state: {"type": "integer", "minimum": 0} for state in states},
            "required": list(states)}


def paging_parameters(maximum: int) -> list[dict]:
    return [query("page", {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}, "Page number, from 1."),
            query("page_size", {"type": "integer", "minimum": 1, "maximum": maximum}, "Items per page.")]


def query(name: str, schema: dict, description: str = "", *, required: bool = False) -> dict:
    """A query parameter; an optional one given empty (``?page=``) is as if left out, as the server reads it."""
    parameter = {"name": name, "in": "query", "required": required, "schema": schema,
                 **({} if required else {"allowEmptyValue": True})}
    return {**parameter, "description": description} if description else parameter


def path_id(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": ID}


def body_schema(properties: dict, required: tuple[str, ...] = (), example: dict | None = None) -> dict:
    """A required JSON object body of exactly ``properties`` (the server refuses any other field)."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False,
              **({"required": list(required)} if required else {})}
    media = {"schema": schema, **({"example": example} if example is not None else {})}
    return {"required": True, "content": {"application/json": media}}
