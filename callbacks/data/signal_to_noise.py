"""A 1D product's S/N under the "why and with what" card; for a combined spectrum, how many more exposures
like the last would reach the S/N the observer aims at."""
from __future__ import annotations

from dash import Input, Output

from callbacks.data.common import signed_in_user
from components import ids
from components.data_view import visible_file
from db.models import File
from pipeline.combine import exposures_to_reach
from pipeline.datatypes import DataType

DEFAULT_GOAL = 20.0


def snr_text(file: File) -> str:
    if file.data_type != DataType.COMBINED:
        return f"S/N {file.snr:.1f} per pixel (median over the central half)"
    record = (file.calibrations or {}).get("record", {})
    exposures = len(record.get("inputs", []))
    return f"S/N {file.snr:.1f} after {exposures} exposures ({record.get('exptime', file.exptime or 0):.0f} s)"


def advice(file: File, goal) -> str:
    """"N more exposures like the last (T s each) reach S/N G", or that the goal is reached."""
    record = (file.calibrations or {}).get("record", {})
    last_snr = (record.get("input_snr") or [None])[-1]
    try:
        goal = float(goal) if goal not in (None, "") else DEFAULT_GOAL
    except (TypeError, ValueError):
        return "Type the S/N to aim at."
    if goal <= 0:
        return "Type the S/N to aim at."
    if file.snr >= goal:
        return f"S/N {goal:g} reached."
    if not last_snr or last_snr <= 0:
        return "The last exposure has no measurable S/N: more like it would not help."
    more = exposures_to_reach(goal, file.snr, last_snr)
    last = (file.calibrations or {}).get("inputs", [{}])[-1].get("id")
    last_file = visible_file(signed_in_user(), last)
    each = f" ({last_file.exptime:.0f} s each)" if last_file is not None and last_file.exptime else ""
    return f"{more} more exposure{'s' if more != 1 else ''} like the last{each} would reach S/N {goal:g}."


def register(app) -> None:
    @app.callback(Output(ids.DATA_SNR, "hidden"), Output(ids.DATA_SNR_TEXT, "children"),
                  Output(ids.DATA_SNR_FORM, "hidden"), Output(ids.DATA_SNR_ADVICE, "children"),
                  Input(ids.DATA_DRAWN, "data"), Input(ids.DATA_STAMP, "data"), Input(ids.DATA_SNR_GOAL, "value"))
    def signal_to_noise(selected, _stamp, goal):
        file = visible_file(signed_in_user(), selected)
        if file is None or file.snr is None:
            return True, "", True, ""
        combined = file.data_type == DataType.COMBINED
        return False, snr_text(file), not combined, advice(file, goal) if combined else ""
