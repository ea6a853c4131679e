"""The Data page's night panel (components/night_panel.py): it shows the night of the selected file (else
the newest night the user has files of) and is redrawn when the user's change stamp moves (a file added
or its state changed, see callbacks/data/changes.py) and, for the queue's health, every few seconds."""
from __future__ import annotations

from dash import Input, Output, State
from dash.exceptions import PreventUpdate
from flask_login import current_user

from auth.nights import latest_night, night_summary
from auth.permissions import get_visible_file
from callbacks.data.common import changed
from components import ids
from components.night_panel import night_view
from db.queries import is_number
from live.queue import queue_health


def night_of(user, selected) -> str | None:
    """The selected file's night, else the newest night with the user's raw files."""
    file = get_visible_file(user, int(selected)) if is_number(selected) else None
    return file.date if file is not None and file.date else latest_night(user)


def register(app):
    # sent only when it changed: a file shown of the same night, a poll with the same queue, change nothing
    @app.callback(Output(ids.NIGHT_BODY, "children"), Output(ids.NIGHT_DIGEST, "data"), Input(ids.DATA_STAMP, "data"),
                  Input(ids.DATA_DRAWN, "data"), Input(ids.NIGHT_POLL, "n_intervals"), State(ids.NIGHT_DIGEST, "data"))
    def night(_stamp, selected, _ticks, shown):
        if not current_user or not current_user.is_authenticated:
            raise PreventUpdate
        date = night_of(current_user, selected)
        return changed((night_view(night_summary(current_user, date) if date else None, queue_health()),), shown)
