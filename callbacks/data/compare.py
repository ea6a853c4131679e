"""Other spectra of the shown file's target, to draw over it (the viewer draws the chosen ones, and clears them
for a new file)."""
from __future__ import annotations

from dash import Input, Output

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


def register(app) -> None:
    @app.callback(Output(ids.DATA_COMPARE, "options"), Input(ids.DATA_DRAWN, "data"))
    def compare_choices(selected):
        user = signed_in_user()
        file = visible_file(user, selected)
        return compare_options(user, file) if file is not None else []
