"""The shown file's card: state, its related files as tabs, the "why and with what" card, download and export
links, or why there is nothing to show (the title comes with the viewer: callbacks/data/viewer.py)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Input, Output, State, html

from auth import queries
from callbacks.data.common import changed, signed_in_user, utc_text
from components import ids
from components.data_view import SPECTRA, visible_file
from components.file_index import lineage_tabs, state_badge
from components.provenance import provenance_card, used_calibrations
from db.models import File

# the card's parts, in the order of the callback's outputs
CARD_OUTPUTS = (
    Output(ids.DATA_STATE, "children"), Output(ids.DATA_TABS, "children"),
    Output(ids.DATA_MODIFIED, "children"), Output(ids.DATA_DOWNLOAD, "href"),
    Output(ids.DATA_HEADER_FILE, "children"), Output(ids.DATA_NOT_FOUND, "children"),
    Output(ids.DATA_MAIN, "hidden"), Output(ids.DATA_ROOT, "data"), Output(ids.DATA_PROVENANCE, "children"),
    Output(ids.DATA_EXPORT, "children"),
)


def export_links(file: File):
    """CSV and ECSV of a 1D spectrum (through the API and its permission check); nothing for images."""
    if file.data_type not in SPECTRA:
        return None
    return [html.A([html.I(className="bi bi-filetype-csv me-1"), fmt.upper()], href=f"/api/files/{file.id}/"
                   f"spectrum.{fmt}", className="btn btn-outline-success btn-sm gsp-action gsp-export",
                   id=f"data-export-{fmt}", title=f"The spectrum as {fmt.upper()} (wavelength, flux, uncertainty)")
            for fmt in ("csv", "ecsv")]


def no_file_card(selected) -> tuple:
    """The card's parts when there is no file to show: none yet, or one the user may not see."""
    if selected is None:
        note = html.Div([html.I(className="bi bi-hourglass-split me-2"),
                         "Files appear here as the instrument writes them."], className="gsp-empty")
    else:
        note = dbc.Alert([html.I(className="bi bi-question-circle me-2"), f"File {selected} not found."],
                         color="warning", id="data-file-missing")
    return None, None, "", "#", "", note, True, None, None, None


def file_card(user, file: File) -> tuple:
    """The card's parts for a file the user may see."""
    family = queries.lineage(user, file)
    if not any(f.id == file.id for f in family):
        family.append(file)
    tabs = lineage_tabs(family, file.id, ids.DATA_PICK)
    # the reason, in full, is the provenance card's first line; the title bar keeps the badge
    state = html.Div([state_badge(file, compact=False)], className="d-flex align-items-center",
                     id="data-state-badge", **{"data-state": file.state})
    modified = f"Last Modified: {utc_text(file.last_modified)}"
    provenance = provenance_card(file, used_calibrations(file, family), ids.DATA_PICK)
    return (state, tabs, modified, f"/api/files/{file.id}/download/", file.file_name, None,
            False, {"file": file.id, "root": file.original_file_id or file.id}, provenance, export_links(file))


def register(app) -> None:
    # asked once the viewer drew a new file (asked beside it, the two shared the web process and the viewer's
    # answer came ~0.1 s later), and again on every catalogue change (its state, new products' tabs); sent only
    # when it changed
    @app.callback(*CARD_OUTPUTS, Output(ids.DATA_CARD_DIGEST, "data"), Input(ids.DATA_DRAWN, "data"),
                  Input(ids.DATA_STAMP, "data"), State(ids.DATA_CARD_DIGEST, "data"))
    def card(selected, _stamp, shown):
        user = signed_in_user()
        file = visible_file(user, selected)
        return changed(no_file_card(selected) if file is None else file_card(user, file), shown)
