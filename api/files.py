"""The file catalogue API: list, ingest, delete, detail, download, header, reclassify, visualize."""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from urllib.parse import urlencode

from astropy.io import fits
from flask import Response, jsonify, request, send_file, url_for
from flask_login import current_user

from api import ApiError, blueprint
from api.schemas import (
    BAD_ID,
    DATE,
    ERROR_SCHEMA,
    GONE,
    ID,
    OPTIONAL_TIME,
    TIME,
    body_schema,
    error,
    json_content,
    page_of,
    paging_parameters,
    path_id,
    query,
)
from auth import queries
from auth.permissions import can_add_files, can_change_file, get_visible_file
from auth.queries import QueryError, count_visible, file_record, list_files, parse_integer
from db import db
from db.events import log_event
from db.queries import MAX_INTEGER
from figures.interactive import figure_for_file
from figures.png import png_for_file
from figures.style import COLORMAPS
from live import catalogue, queue, tasks
from live.changes import MAX_WAIT_S, stamp_after, wait_seconds
from pipeline import fitsfiles, headers, standards
from pipeline.chain import DataType
from pipeline.export import FORMATS, spectrum_table, write_table
from pipeline.products import ProductError


def parse_id(value, name: str = "id") -> int:
    try:
        return parse_integer(name, value, minimum=1)
    except QueryError as error:
        raise ApiError(str(error), 400) from None


def visible_file_or_404(value, name: str = "id"):
    """The file the current user may see; anything else is 'not found' (never 'forbidden')."""
    file = get_visible_file(current_user, parse_id(value, name))
    if file is None:
        raise ApiError("File not found.", 404)
    return file


def json_body(fields) -> dict:
    """The request's JSON object, which may hold only ``fields`` (a misspelt field is refused, not ignored)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.", 400)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(f"Unknown field(s): {', '.join(map(repr, unknown))}; the body takes "
                       f"{', '.join(map(repr, fields))}.", 400)
    return data


def _page_url(page: int) -> str:
    params = {**request.args.to_dict(), "page": page}
    return f"{url_for('api.files_list', _external=True)}?{urlencode(params)}"


@blueprint.get("/files/")
def files_list():
    try:
        result = list_files(current_user, request.args.to_dict())
    except QueryError as error:
        raise ApiError(str(error), 400) from None
    return jsonify({
        "count": result.count,
        "next": _page_url(result.page + 1) if result.has_next else None,
        "previous": _page_url(result.page - 1) if result.page > 1 else None,
        "results": [file_record(current_user, file) for file in result.files],
    })


@blueprint.get("/files/stamp/")
def files_stamp():
    """A value that changes whenever a file the user may see is added or changed; with ``after`` (a stamp the
    caller has) and ``wait`` (seconds, at most 30), answered once it differs from ``after`` (live/changes.py)."""
    try:
        wait = wait_seconds(request.args.get("wait"))
    except ValueError as error:
        raise ApiError(str(error), 400) from None
    return jsonify({"stamp": stamp_after(current_user, request.args.get("after"), wait)})


@blueprint.post("/files/")
def files_create():
    if not can_add_files(current_user):
        raise ApiError("Only staff (or the instrument's service account) may add files.", 403)
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:  # refuse before reading a byte
        raise ApiError(f"The upload is larger than the limit of {limit} bytes.", 413)
    try:
        if "file" in request.files:
            upload = request.files["file"]
            path = catalogue.store_upload(upload.stream, upload.filename)
        else:
            full_path = json_body(("full_path",)).get("full_path")
            if not isinstance(full_path, str) or not full_path.strip():
                raise ApiError("Send JSON {\"full_path\": \"...\"} or a multipart upload in field 'file'.", 400)
            path = full_path
        file, created = catalogue.ingest(path, user=current_user)
    except catalogue.IngestError as error:
        log_event("ingest_failed", f"Refused to ingest: {error}", level="WARNING", user=current_user)
        db.session.commit()
        raise ApiError(str(error), 400) from None
    if file.state == "failed":
        raise ApiError(f"Could not ingest {file.file_name}: {file.state_reason}", 422,
                       file=file_record(current_user, file))
    response = jsonify(file_record(current_user, file))
    response.status_code = 201 if created else 200
    return response


@blueprint.delete("/files/")
def files_delete():
    ids = json_body(("ids",)).get("ids")
    if not isinstance(ids, list) or not ids:
        raise ApiError("Send JSON {\"ids\": [...]} with at least one file id.", 400)
    files = [visible_file_or_404(value) for value in ids]
    try:
        deleted = catalogue.delete_products(current_user, files)
    except catalogue.DeleteRefused as error:
        raise ApiError(str(error), error.status) from None
    return jsonify({"deleted": deleted})


@blueprint.get("/files/<int:file_id>/")
def files_detail(file_id):
    return jsonify(file_record(current_user, visible_file_or_404(file_id)))


@blueprint.get("/files/<int:file_id>/download/")
def files_download(file_id):
    file = visible_file_or_404(file_id)
    path = Path(file.full_path)
    if not path.is_file():
        raise ApiError(f"{file.file_name} is catalogued but missing on disk.", 410)
    # max_age=0: a proposal's data is never kept by shared caches (assets are, see SEND_FILE_MAX_AGE_DEFAULT)
    return send_file(path, mimetype="application/fits", as_attachment=True, download_name=file.file_name,
                     conditional=True, max_age=0)


@blueprint.get("/files/header/")
def files_header():
    file = visible_file_or_404(request.args.get("id"))
    return jsonify({"id": file.id, "file_name": file.file_name, "cards": fitsfiles.header_cards(header_of(file))})


def header_of(file):
    """The header that describes the file (fitsfiles.science_header); 410 when it is gone or unreadable."""
    try:
        return fitsfiles.science_header(Path(file.full_path))
    except OSError as error:
        raise ApiError(f"Cannot read the header of {file.file_name}: {error}", 410) from None


RECLASSIFY_FIELDS = ("id", "obstype", "standard")


@blueprint.post("/files/reclassify/")
def files_reclassify():
    data = json_body(RECLASSIFY_FIELDS)
    file = visible_file_or_404(data.get("id"))
    if not can_change_file(current_user, file):
        raise ApiError(f"You may not reclassify {file.file_name}.", 403)
    if file.data_type != DataType.RAW:
        raise ApiError("Only raw files are classified; products inherit their classification.", 400)
    try:
        fields = headers.reclassify(fits.getheader(file.full_path), data.get("obstype"), file.file_name)
    except headers.HeaderError as error:
        raise ApiError(str(error), 400) from None
    standard = data.get("standard", (file.classification or {}).get("standard"))
    if standard not in (None, False):
        star = standards.find_standard(standard) if isinstance(standard, str) else None
        if star is None:
            raise ApiError(f"'standard' must name a spectrophotometric standard of the shipped tables (e.g. "
                           f"'LTT 7379'), or be false; {standard!r} is none.", 400)
        standard = star.name
    before = (file.obstype, file.technique, queries.kind_of(file))
    catalogue.apply_classification(file, {**fields, "standard": standard})
    after = (file.obstype, file.technique, queries.kind_of(file))
    log_event("reclassified", f"{file.file_name}: {'/'.join(before)} -> {'/'.join(after)}.",
              user=current_user, proposal_id=file.proposal_id, file_id=file.id,
              details={"old": list(before), "new": list(after)})
    tasks.on_ingested(file)
    queue.commit()
    return jsonify(file_record(current_user, file))


DEFAULT_WIDTH, MIN_WIDTH, MAX_WIDTH = 1000, 100, 4000
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _width_arg() -> int:
    width = _float_arg("width")
    if width is not None and (not width.is_integer() or not MIN_WIDTH <= width <= MAX_WIDTH):
        raise ApiError(f"'width' must be a whole number of pixels between {MIN_WIDTH} and {MAX_WIDTH}.", 400)
    return DEFAULT_WIDTH if width is None else int(width)


@blueprint.get("/files/visualize/")
def files_visualize():
    file = visible_file_or_404(request.args.get("id"))
    fmt = request.args.get("format") or "png"
    if fmt not in ("png", "json"):
        raise ApiError("'format' must be png or json.", 400)
    colormap = request.args.get("colormap") or current_user.colormap
    if colormap not in COLORMAPS:
        raise ApiError(f"'colormap' must be one of {', '.join(COLORMAPS)}.", 400)
    options = {"colormap": colormap, "zmin": _float_arg("zmin"), "zmax": _float_arg("zmax"),
               "title": f"{file.obstype} {file.object} {file.proposal.soar_id if file.proposal else ''}".strip(),
               "show_saturated": _boolean_arg("show_saturated"),
               "saturation": file.saturation_value}
    try:
        if fmt == "png":
            return Response(png_for_file(file.full_path, width=_width_arg(), **options), mimetype="image/png")
        figure = figure_for_file(file.full_path, data_type=file.data_type, **options)
    except ProductError as error:
        raise ApiError(str(error), 422) from None
    return Response(figure.to_json(), mimetype="application/json")


@blueprint.get("/files/<int:file_id>/spectrum.csv", defaults={"fmt": "csv"})
@blueprint.get("/files/<int:file_id>/spectrum.ecsv", defaults={"fmt": "ecsv"})
def files_spectrum_table(file_id, fmt):
    file = visible_file_or_404(file_id)
    try:
        text = write_table(spectrum_table(file.full_path, file.data_type, name=file.file_name), fmt)
    except ProductError as error:
        raise ApiError(str(error), 422) from None
    name = f"{Path(file.file_name).stem}.{fmt}"
    return Response(text, mimetype=FORMATS[fmt][1], headers={"Content-Disposition": f'attachment; filename="{name}"'})


@blueprint.get("/files/zip/")
def files_zip():
    """The visible files matching the filters of GET /api/files/, as one zip written while it is sent."""
    params = {key: value for key, value in request.args.to_dict().items() if key not in ("page", "page_size")}
    try:
        count = count_visible(current_user, params)
        if count > queries.MAX_ZIP_FILES:
            raise ApiError(f"{count} files match; a zip holds at most {queries.MAX_ZIP_FILES}. Narrow the filters "
                           "(date, proposal_id, data_type...).", 400)
        files = list_files(current_user, {**params, "page": 1, "page_size": max(count, 1)}).files
    except QueryError as error:
        raise ApiError(str(error), 400) from None
    if not files:
        raise ApiError("No file you may see matches these filters.", 404)
    entries = [(f"{Path(f.directory_name).parent.name}/{Path(f.directory_name).name}/{f.file_name}",
                Path(f.full_path)) for f in files]
    name = f"gsp-{params['date']}.zip" if params.get("date") else "gsp-files.zip"
    log_event("download_zip", f"Zip of {len(entries)} files ({urlencode(params) or 'no filter'}).",
              user=current_user)
    db.session.commit()
    return Response(zip_stream(entries), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile then writes each member's sizes after its data, so the
    archive can be sent as it is made, never held whole in memory or on disk."""

    def __init__(self):
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(entries, block: int = 1 << 20):
    """Zip bytes of ``entries`` ((name in the archive, path) pairs), one block at a time. Files stored
    as they are (FITS data hardly compress; the time goes to the network). A file missing on disk is
    named in MISSING.txt."""
    sink, missing = _Sink(), []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for arcname, path in entries:
            try:
                source = open(path, "rb")  # noqa: SIM115 - closed below, after its last block is sent
            except OSError:
                missing.append(arcname)
                continue
            with source, archive.open(arcname, "w", force_zip64=True) as member:
                while chunk := source.read(block):
                    member.write(chunk)
                    yield sink.take()
        if missing:
            archive.writestr("MISSING.txt", "Catalogued but missing on disk:\n" + "\n".join(missing) + "\n")
    yield sink.take()


def _boolean_arg(name: str) -> bool:
    value = request.args.get(name) or "false"
    if value.lower() not in BOOLEANS:
        raise ApiError(f"'{name}' must be true or false, not '{value}'.", 400)
    return BOOLEANS[value.lower()]


def _float_arg(name: str) -> float | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ApiError(f"'{name}' must be a number, not '{value}'.", 400) from None
    if not math.isfinite(number):
        raise ApiError(f"'{name}' must be a finite number, not '{value}'.", 400)
    return number


_STRING_FILTERS = ("obstype", "object", "filter", "filter_2", "grating", "wavmode", "slit", "roi", "technique", "state",
                   "search")
_FILE_FILTERS = [
    query("data_type", {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
          "0 raw, 1 master, 2 reduced, 3 extracted, 4 wavelength calibrated, 5 flux calibrated."),
    *(query(name, {"type": "string"}, "Text in the file name." if name == "search" else "Exactly this value.")
      for name in _STRING_FILTERS),
    query("proposal_id", {"type": "string"}, "The proposal's SOAR id."),
    query("date", DATE, "The night (YYYY-MM-DD)."), query("date_from", DATE), query("date_to", DATE),
    query("parent_file_id", ID), query("original_file_id", ID)]
_FILE = {"type": "object", "required": [
    "id", "created", "last_modified", "original_file", "original_file_id", "parent_file", "parent_file_id",
    "file_name", "obstype", "object", "data_type", "state", "state_reason", "version"], "properties": {
    "id": ID, "created": TIME, "last_modified": TIME,
    "original_file": {"type": "string"}, "original_file_id": ID,
    "parent_file": {"type": "string"}, "parent_file_id": ID,
    "file_name": {"type": "string"},
    "directory_name": {"type": "string", "description": "The server's folder (staff only)."},
    "full_path": {"type": "string", "description": "The server's path (staff only)."},
    **{name: {"type": "string"} for name in (
        "obstype", "object", "filter", "filter_2", "grating", "slit", "cam_targ", "grt_targ", "obsra", "obsdec", "gain",
        "rdnoise", "roi", "wavmode", "date", "technique", "state", "state_reason", "instconf")},
    "proposal_id": {"type": "string", "nullable": True, "description": "The proposal's SOAR id."},
    **{name: {"type": "integer", "nullable": True} for name in (
        "observation_id", "configuration_id", "block_id", "image_id", "saturation_value", "target")},
    "data_type": {"type": "string", "enum": [str(data_type.value) for data_type in DataType]},
    "normalized": {"type": "boolean"}, "exptime": {"type": "number", "nullable": True},
    "date_obs": OPTIONAL_TIME, "version": {"type": "integer", "minimum": 1},
    "snr": {"type": "number", "nullable": True,
            "description": "1D products: median S/N per pixel over the central half of the range."},
    "calibrations": {"type": "object", "description": "What was used, and why (a combined spectrum: its inputs)."},
    "wavelength_quality": {"type": "object", "nullable": True},
    **{name: OPTIONAL_TIME for name in ("ingested_at", "reduced_at", "extracted_at", "calibrated_at")}}}
_FILE_ID = path_id("file_id", "The file's id.")
_ID = query("id", ID, "The file's id.", required=True)
_CARD = {"type": "object", "required": ["keyword", "value", "comment"], "properties": {
    "keyword": {"type": "string"},
    "value": {"nullable": True, "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
              "description": "null: undefined. A card that is not valid FITS: its value as written."},
    "comment": {"type": "string"},
    "invalid": {"type": "string", "description": "Only on a card that is not valid FITS: what is wrong with it."}}}
_NOT_FOUND = error("No such file, or not one the caller may see.")
OPENAPI_PATHS = {
    "/api/files/": {
        "get": {"summary": "Get a list of files, newest first.", "tags": ["files"],
                "parameters": [*_FILE_FILTERS, *paging_parameters(queries.MAX_PAGE_SIZE)],
                "responses": {"200": json_content(page_of(_FILE), "One page of files."),
                              "400": error("A filter or page parameter that cannot be understood.")}},
        "post": {"summary": "Adds a new file to the database (staff): a FITS file in the data folder (not a product "
                            "under processed/), or an upload.", "tags": ["files"],
                 "requestBody": {"required": True, "content": {
                     "application/json": body_schema({"full_path": {"type": "string", "minLength": 1}},
                                                     ("full_path",))["content"]["application/json"],
                     "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                         "file": {"type": "string", "format": "binary"}}}}}},
                 "responses": {"201": json_content(_FILE, "Catalogued."),
                               "200": json_content(_FILE, "Already catalogued."),
                               "400": error("No usable FITS file: outside the data folder, under processed/, not a "
                                            "file, not a FITS name."),
                               "403": error("Not staff."), "413": error("The upload is too large."),
                               "422": json_content({**ERROR_SCHEMA, "properties": {
                                   **ERROR_SCHEMA["properties"], "file": _FILE}},
                                   "Catalogued as failed: the file cannot be read or classified (the reason is in "
                                   "the detail).")}},
        "delete": {"summary": "Deletes products (never raw files), all or none.", "tags": ["files"],
                   "requestBody": body_schema({"ids": {"type": "array", "minItems": 1, "items": ID}}, ("ids",)),
                   "responses": {"200": json_content({"type": "object", "properties": {
                       "deleted": {"type": "array", "items": ID}}}, "Deleted."),
                                 "400": error("No ids, or a raw file among them."),
                                 "403": error("A file the caller may not delete."), "404": _NOT_FOUND}},
    },
    "/api/files/{file_id}/": {"get": {"summary": "One file.", "tags": ["files"], "parameters": [_FILE_ID],
                                      "responses": {"200": json_content(_FILE, "The file."), "400": BAD_ID,
                                                    "404": _NOT_FOUND}}},
    "/api/files/{file_id}/download/": {"get": {
        "summary": "The FITS file.", "tags": ["files"], "parameters": [_FILE_ID],
        "responses": {"200": {"description": "FITS bytes.", "content": {"application/fits": {
            "schema": {"type": "string", "format": "binary"}}}}, "400": BAD_ID, "404": _NOT_FOUND, "410": GONE}}},
    "/api/files/header/": {"get": {
        "summary": "Obtains the header of a FITS file: every card in order; a card that is not valid FITS as "
                   "written, flagged.", "tags": ["files"], "parameters": [_ID],
        "responses": {"200": json_content({"type": "object", "required": ["id", "file_name", "cards"], "properties": {
            "id": ID, "file_name": {"type": "string"}, "cards": {"type": "array", "items": _CARD}}}, "The cards."),
            "400": BAD_ID, "404": _NOT_FOUND, "410": GONE}}},
    "/api/files/stamp/": {"get": {
        "summary": "Change stamp of the visible catalogue; with 'after' and 'wait', waits for it to change.",
        "description": "The stamp changes whenever a file the caller may see is added or changed. With `after` (a "
                       "stamp from an earlier answer) and `wait`, the answer comes as soon as the stamp differs "
                       "from `after`, or after `wait` seconds with the same stamp: a script learns of a new file "
                       "within a few hundredths of a second without polling.", "tags": ["files"],
        "parameters": [query("after", {"type": "string"}, "A stamp the caller has."),
                       query("wait", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
                             "Seconds to wait for a stamp other than `after` (default 0).")],
        "responses": {"200": json_content({"type": "object", "required": ["stamp"],
                                           "properties": {"stamp": {"type": "string"}}}, "The stamp."),
                      "400": error("A wait that is not a number of seconds from 0 to 30.")}}},
    "/api/files/reclassify/": {"post": {
        "summary": "Re-identify OBSTYPE and technique; mark a standard star ('standard': its name) or unmark one "
                   "(false).", "tags": ["files"],
        "requestBody": body_schema({"id": ID, "obstype": {"type": "string"},
                                    "standard": {"nullable": True,
                                                 "anyOf": [{"type": "string"}, {"type": "boolean", "enum": [False]}]}},
                                   ("id",)),
        "responses": {"200": json_content(_FILE, "The file, classified again."),
                      "400": error("Not a raw file, an unknown OBSTYPE or standard, or a header that cannot be "
                                   "classified."),
                      "403": error("A file the caller may not change."), "404": _NOT_FOUND}}},
    "/api/files/{file_id}/spectrum.csv": {"get": {
        "summary": "A 1D spectrum as CSV: wavelength (or pixel), flux, uncertainty; units in the column names.",
        "tags": ["files"], "parameters": [_FILE_ID],
        "responses": {"200": {"description": "CSV text", "content": {"text/csv": {"schema": {"type": "string"}}}},
                      "400": BAD_ID, "404": _NOT_FOUND, "422": error("Not a 1D spectrum, or unreadable.")}}},
    "/api/files/{file_id}/spectrum.ecsv": {"get": {
        "summary": "A 1D spectrum as ECSV (astropy): columns with units, the file's metadata.",
        "tags": ["files"], "parameters": [_FILE_ID],
        "responses": {"200": {"description": "ECSV text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "400": BAD_ID, "404": _NOT_FOUND, "422": error("Not a 1D spectrum, or unreadable.")}}},
    "/api/files/zip/": {"get": {
        "summary": f"The files matching the filters of GET /api/files/ (a night: date=...; a search), as one zip "
                   f"streamed while it is made; at most {queries.MAX_ZIP_FILES} files (400 beyond).",
        "tags": ["files"], "parameters": _FILE_FILTERS,
        "responses": {"200": {"description": "zip bytes",
                              "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                      "400": error(f"A filter that cannot be understood, or more than {queries.MAX_ZIP_FILES} files."),
                      "404": error("No file the caller may see matches.")}}},
    "/api/files/visualize/": {"get": {
        "summary": "Creates visualizations for FITS files.", "tags": ["files"],
        "parameters": [_ID, query("format", {"type": "string", "enum": ["png", "json"], "default": "png"}),
                       query("colormap", {"type": "string", "enum": list(COLORMAPS)}, "Default: the user's."),
                       query("width", {"type": "integer", "minimum": MIN_WIDTH, "maximum": MAX_WIDTH,
                                       "default": DEFAULT_WIDTH}, "PNG width in pixels."),
                       query("zmin", {"type": "number"}), query("zmax", {"type": "number"}),
                       query("show_saturated", {"type": "boolean", "default": False})],
        "responses": {"200": {"description": "A PNG, or a Plotly figure as JSON.", "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object", "properties": {"data": {"type": "array"},
                                                                             "layout": {"type": "object"}}}}}},
                      "400": error("A parameter out of its range."), "404": _NOT_FOUND,
                      "422": error("The file cannot be drawn (unreadable, no image or spectrum in it).")}}},
}
