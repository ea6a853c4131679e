"""What the Data page draws both in its layout (pages/data.py, the first paint) and again from its
callbacks (callbacks/data/): the two file indexes, the viewer, and the controls it is drawn with.

Everything is read through auth.permissions: a file the user may not see is "not found" (None).
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import dash_bootstrap_components as dbc
from dash import html
from plotly.utils import PlotlyJSONEncoder

from auth import queries
from auth.permissions import get_visible_file
from components import ids
from figures.interactive import figure_for_file
from figures.png import png_for_file
from figures.style import COLORMAPS
from pipeline.products import ProductError
from components.file_index import (
    CALIBRATIONS_PAGE_SIZE,
    OBSERVED_PAGE_SIZE,
    index_list,
    page_text,
)
from db import db
from db.models import File
from db.queries import is_number, target_work_pending
from pipeline.datatypes import DataType

OBSERVED = {"data_type": DataType.RAW.value}
CALIBRATIONS = {"data_type": DataType.MASTER.value}
SPECTRA = (DataType.EXTRACTED, DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED, DataType.COMBINED)
CHAIN_RUNNING = ("ingested", "queued", "running")  # a raw frame's states while more of its products are on the way
STATIC_WIDTH = 1100
# A 2D frame is block-averaged to about what the viewer's plot (~850 px wide) can show: a 2x2 Goodman frame (2071 x
# 948) by 3 to 690 x 316.  By 2 (490,000 cells) chromium took 0.25-0.3 s to draw it, by 3 under 0.1 s.
VIEWER_MAX_PIXELS = 250_000

# the Advanced Visualization controls the viewer is drawn with, by their visual_defaults names
VIEWER_CONTROLS = {
    "format": ids.DATA_ADV_FORMAT, "colormap": ids.DATA_ADV_COLORMAP, "scale": ids.DATA_ADV_SCALE,
    "zmin": ids.DATA_ADV_ZMIN, "zmax": ids.DATA_ADV_ZMAX, "plow": ids.DATA_ADV_PLOW, "phigh": ids.DATA_ADV_PHIGH,
    "show_saturated": ids.DATA_ADV_SATURATED, "show_title": ids.DATA_ADV_TITLE, "overlays": ids.DATA_ADV_OVERLAYS,
    "redshift": ids.DATA_ADV_REDSHIFT,
}


def visible_file(user, file_id) -> File | None:
    """The file of this id (an int or its text, as URLs and stores hold it) if the user may see it."""
    if file_id is None or isinstance(file_id, str) and not is_number(file_id):
        return None
    try:
        return get_visible_file(user, int(file_id))
    except (TypeError, ValueError):
        return None


def followed(user) -> dict | None:
    """What Follow shows: the newest raw frame the user may see and its most calibrated file, as
    {"frame": id, "file": id}; None before the first frame.  While the frame's chain runs, the raw frame until its
    first target's spectrum is that target's last (no job of the frame's chain that could make a better one of it
    is queued or running: ``db.queries.target_work_pending``): each file shown costs the page and the web process
    a few tenths of a second of CPU that the workers need too (the drawing, then a dozen requests for the file's
    panels), and the chain's products came faster than that (the extracted spectrum a few tenths of a second
    before the calibrated ones; another target's a moment before the first one's), so the page, still busy with
    one, drew the final one late.  The first target's is shown without waiting for the frame's other targets
    (with three, the last one's jobs end a few tenths of a second later); anything else (a reduced image, when
    the chain ends there) when the chain ends (done, waiting or failed; the job that makes the last product
    settles the frame in the same commit: live/queue.py)."""
    frame = queries.newest_visible_id(user, OBSERVED)
    if frame is None:
        return None
    if not chain_running(frame):
        return {"frame": frame, "file": queries.most_calibrated_id(user, frame)}
    first = queries.most_calibrated_id(user, frame, first_target=True)
    if first is None or target_work_pending(frame, db.session.get(File, first).target):
        first = frame
    return {"frame": frame, "file": first}


def chain_running(frame_id: int) -> bool:
    """Whether more products of this (visible) raw frame are on their way."""
    return db.session.get(File, frame_id).state in CHAIN_RUNNING


def digest(drawn) -> str:
    """A fingerprint of components as they are sent to the browser.  A callback sends nothing when its answer is
    what the page shows: Dash mounts every component of new children afresh, and each mount is one more update of
    the page's store that every component on the page checks (during a frame's chain the indexes and the card were
    redrawn unchanged on every catalogue change, and that took chromium seconds)."""
    return hashlib.sha1(json.dumps(drawn, cls=PlotlyJSONEncoder).encode()).hexdigest()


def observed_view(user, page, selected_id, page_size: int = OBSERVED_PAGE_SIZE):
    """(list component, count text, page text) of the Observed index."""
    result = queries.page_of_files(user, OBSERVED, page, page_size)
    pages = queries.last_page(result.count, page_size)
    return (index_list(result.files, "index", selected_id, ids.DATA_PICK, "No files yet. They appear here as the "
                       "instrument writes them."),
            f"{result.count:,}", page_text(result.page, pages))


def calibrations_view(user, page, selected_id, page_size: int = CALIBRATIONS_PAGE_SIZE):
    """(list component, count text, page text) of the Calibrations index (a master's versions folded)."""
    result = queries.page_of_files(user, CALIBRATIONS, page, page_size)
    pages = queries.last_page(result.count, page_size)
    return (index_list(result.files, "calib", selected_id, ids.DATA_PICK, "No master calibrations yet.",
                       fold_versions=True),
            f"{result.count:,}", page_text(result.page, pages))


def visual_defaults(user) -> dict:
    """Where the Advanced Visualization controls start (and "Reset to my defaults" returns): the user's
    colormap, plot format and saturation choice from their account, ZScale, the title on, no overlays."""
    return {
        "colormap": getattr(user, "colormap", "gray") if getattr(user, "colormap", None) in COLORMAPS
        else "gray",
        "format": getattr(user, "plot_format", "interactive") if getattr(user, "plot_format", "") in
        ("static", "interactive") else "interactive",
        "show_saturated": ["on"] if getattr(user, "show_saturated", False) else [],
        "scale": "zscale", "zmin": None, "zmax": None, "plow": 1, "phigh": 99.5,
        "show_title": ["on"], "overlays": [], "redshift": 0,
    }


def viewer_options(controls: dict) -> dict:
    """The viewers' drawing options from the controls ({VIEWER_CONTROLS name: value})."""
    options = {"show_saturated": bool(controls["show_saturated"]), "show_title": bool(controls["show_title"]),
               "overlays": tuple(controls["overlays"] or ()), "redshift": float(controls["redshift"] or 0.0)}
    if controls["scale"] == "minmax":
        options["zmin"], options["zmax"] = _number(controls["zmin"]), _number(controls["zmax"])
    elif controls["scale"] == "percentiles":
        low, high = _number(controls["plow"]), _number(controls["phigh"])
        if low is not None and high is not None:
            options["percentiles"] = (low, high)
    return options


def _number(value):
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def compared(user, file: File, chosen) -> tuple:
    """(label, path) of the chosen spectra that the compare list offers (``queries.same_target_spectra``: those
    the user may see, in the shown one's units)."""
    chosen = {_number(value) for value in chosen or ()}
    if not chosen:
        return ()
    return tuple((other.file_name, other.full_path) for other in queries.same_target_spectra(user, file)
                 if other.id in chosen)


GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": True, "responsive": True,
                # offline behind the VPN: no "share" or "edit in Chart Studio" (an external service)
                "showSendToCloud": False, "showEditInChartStudio": False,
                "modeBarButtonsToRemove": ["lasso2d", "select2d", "sendDataToCloud"]}


class Drawn(NamedTuple):
    """A file as the viewer shows it: the interactive graph's figure and config, or (figure None: the graph is
    hidden) what shows instead, a static PNG or a warning (None: nothing); and the card's title."""
    figure: dict | None = None
    config: dict | None = None
    instead: object = None
    title: str = "No file selected"


def viewer_view(user, selected, controls: dict, compare=()) -> Drawn:
    """The selected file drawn as the controls ({VIEWER_CONTROLS name: value}) say; nothing for no file."""
    file = visible_file(user, selected)
    if file is None:
        return Drawn(title="No file selected" if selected is None else "File not found")
    options = {**viewer_options(controls), "compare": compared(user, file, compare)}
    drawn = render_viewer(file, controls["format"] or "interactive", controls["colormap"] or "gray", options,
                          theme=getattr(user, "theme", "dark") or "dark")
    return drawn._replace(title=file.file_name)


def render_viewer(file: File, fmt: str, colormap: str, options: dict, theme: str = "dark") -> Drawn:
    """The file as a static PNG or an interactive graph; a warning when it cannot be drawn."""
    common = dict(colormap=colormap, saturation=file.saturation_value, theme=theme, **options)
    try:
        if fmt == "static":
            png = png_for_file(file.full_path, width=STATIC_WIDTH, data_type=file.data_type, **common)
            source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            return Drawn(instead=html.Img(src=source, id=ids.DATA_IMAGE, className="gsp-static-plot",
                                          alt=file.file_name))
        figure = figure_for_file(file.full_path, data_type=file.data_type, height=520, max_pixels=VIEWER_MAX_PIXELS,
                                 **common)
    except ProductError as error:
        return Drawn(instead=dbc.Alert([html.I(className="bi bi-exclamation-triangle me-2"), str(error)],
                                       color="warning", className="my-3", id="data-viewer-error"))
    return Drawn(figure, {**GRAPH_CONFIG, "toImageButtonOptions": {"filename": Path(file.file_name).stem}})


def first_paint(user, selected, observed_page: int, calibrations_page: int, controls: dict, *, stamp: str,
                following: dict | None) -> dict:
    """What the Data page's layout draws at once: both index pages, the selected file's viewer, and the
    user's change stamp they were read after with what Follow shows (``following``, from :func:`followed`, read
    after ``stamp``: a change after that is the change feed's first answer). A login sees its data in the page's
    first answer, not after rounds of callbacks."""
    observed = observed_view(user, observed_page, selected)
    calibrations = calibrations_view(user, calibrations_page, selected)
    return {"stamp": stamp, "followed": following,
            "observed": observed, "observed_digest": digest(observed), "calibrations": calibrations,
            "calibrations_digest": digest(calibrations), "viewer": viewer_view(user, selected, controls)}
