"""Other spectra of the shown file's target, to draw over it (the viewer draws the chosen ones)."""
from __future__ import annotations

from dash import Input, Output, State

from auth import queries
from callbacks.data.common import signed_in_user
from components import ids
from components.data_view import SPECTRA, visible_file
from db.models import File


def compare_options(user, file: File) -> list[dict]:
    """Other spectra of the file's target to draw over it: other frames, targets and versions."""
    if file.data_type not in SPECTRA:
        return []
    return [{"label": f"{other.file_name}" + (f" \u00b7 {other.date_obs:%H:%M}" if other.date_obs else ""),
             "value": other.id} for other in queries.same_target_spectra(user, file)]


# A new file's choices start empty, answered in the browser: the viewer, which draws the chosen ones, waits for
# whatever sets them, and a round trip to the server here held every new file's drawing back.
CLEAR_JS = """
function(_selected, compared) {
    return compared && compared.length ? [] : window.dash_clientside.no_update;
}
"""


def register(app) -> None:
    @app.callback(Output(ids.DATA_COMPARE, "options"), Input(ids.DATA_DRAWN, "data"))
    def compare_choices(selected):
        user = signed_in_user()
        file = visible_file(user, selected)
        return compare_options(user, file) if file is not None else []

    # an unchanged empty value is left alone: writing it would draw the viewer again (and hide it meanwhile)
    app.clientside_callback(CLEAR_JS, Output(ids.DATA_COMPARE, "value"), Input(ids.DATA_SELECTED, "data"),
                            State(ids.DATA_COMPARE, "value"))
