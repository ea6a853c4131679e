"""The Data page's "why and with what" card: the selected file's state with its reason in full, the
calibrations its products were made with (each by its full name, a link that opens it, and why it was
chosen), and a warning when the wavelength solution behind it is poor.

The facts come from ``File.calibrations`` as the job layer writes them (live/tasks.py):
``{"bias": {"id", "file", "why"}, "flat": ..., "arc": ..., "lamp": name, "standard": {..., "star"},
"wavelength_quality": {"verdict", "why"}, "flexure": {...}, "telluric": {...}, "inputs": [...], "why": ...}``.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from components.file_index import STATES
from pipeline import flexure, telluric
from pipeline.chain import DataType

# calibrations key -> what it is, in the order a frame meets them
USED = (("bias", "Master bias"), ("flat", "Master flat"), ("arc", "Arc"), ("lamp", "Library lamp"),
        ("standard", "Standard star"))


def used_calibrations(file, lineage=()) -> dict:
    """What ``file`` was made with. A raw frame shows what its newest products used (its master bias and
    flat from the reduction, its arc from the wavelength calibration...), the newest version first."""
    if file.data_type != DataType.RAW:
        return dict(file.calibrations or {})
    merged = {}
    for product in sorted(lineage, key=lambda f: -f.id):
        for key, value in (product.calibrations or {}).items():
            if key != "record" and value and key not in merged:
                merged[key] = value
    return merged


def quality_warning(quality: dict | None):
    """A visible alert for a poor wavelength solution; nothing when it is good or unknown."""
    if not quality or quality.get("verdict") != "poor":
        return None
    return dbc.Alert([html.I(className="bi bi-exclamation-octagon-fill me-2"),
                      html.Strong("Poor wavelength solution: "), quality.get("why", "")],
                     color="danger", className="py-2 mb-2 small", id="data-wavelength-warning")


def _state_line(file):
    colour, icon, words = STATES.get(file.state, ("secondary", "question-circle", file.state or "?"))
    parts = [dbc.Badge([html.I(className=f"bi bi-{icon} me-1"), words], color=colour, className="me-2")]
    if file.state_reason:
        parts.append(html.Span(file.state_reason, className=f"gsp-provenance-reason text-{colour}"
                               if file.state in ("failed", "waiting") else "gsp-provenance-reason",
                               id="data-state-reason"))
    return html.Div(parts, className="d-flex align-items-start mb-2")


def _name(entry, pick_type: str):
    """The full file name, a link that opens it in place (no id: shown as text)."""
    if isinstance(entry, str):
        return html.Span(entry, className="gsp-provenance-name")
    name = entry.get("file") or entry.get("star") or ""
    if entry.get("id") is None:
        return html.Span(name, className="gsp-provenance-name")
    return dbc.Button(name, color="link", size="sm", className="p-0 text-start gsp-provenance-name",
                      id={"type": pick_type, "src": "provenance", "index": entry["id"]}, n_clicks=0)


def _why(key: str, entry, used: dict) -> str:
    if isinstance(entry, str):
        return used.get(f"{key}_why", "")
    why = entry.get("why") or ""
    if key == "standard" and entry.get("star") and entry.get("file"):
        why = f"{entry['star']}; {why}" if why else entry["star"]
    if key == "standard" and entry.get("table"):  # a sensitivity function names the star's flux table
        why = f"fluxes tabulated in {entry['table']}"
    return why


def _telluric_why(record: dict | None) -> str:
    """How each band's exponent was found: fitted, or taken from elsewhere and why."""
    if not record or not record.get("applied"):
        return ""
    return "; ".join(f"{band}: b {why}" for band, why in record["exponent_why"].items())


def provenance_card(file, used: dict, pick_type: str):
    """State and reason in full, then a table of the calibrations used and why."""
    rows = []
    for key, label in USED:
        entry = used.get(key)
        if entry:
            rows.append(html.Tr([html.Th(label, className="text-nowrap"), html.Td(_name(entry, pick_type)),
                                 html.Td(_why(key, entry, used), className="text-muted")],
                                **{"data-calibration": key}))
    for missing in used.get("missing") or []:
        rows.append(html.Tr([html.Th(missing.capitalize(), className="text-nowrap"),
                             html.Td("not applied", className="text-warning"),
                             html.Td("none was available; the frame was reduced without it", className="text-muted")],
                            **{"data-calibration": missing}))
    if used.get("flexure"):  # the science frame's shift against its arc, measured on its sky lines
        rows.append(html.Tr([html.Th("Flexure", className="text-nowrap"), html.Td(flexure.summary(used["flexure"])),
                             html.Td("measured on the frame's sky lines", className="text-muted")],
                            **{"data-calibration": "flexure"}))
    if used.get("telluric") or file.data_type == DataType.FLUX_CALIBRATED:
        rows.append(html.Tr([html.Th("Telluric", className="text-nowrap"),
                             html.Td(telluric.summary(used.get("telluric"))),
                             html.Td(_telluric_why(used.get("telluric")), className="text-muted")],
                            **{"data-calibration": "telluric"}))
    if used.get("inputs"):  # a master's frames (names), a combined spectrum's spectra ({id, file}: links)
        names = ", ".join(used["inputs"]) if all(isinstance(entry, str) for entry in used["inputs"]) else \
            [part for entry in used["inputs"] for part in (_name(entry, pick_type), html.Br())][:-1]
        rows.append(html.Tr([html.Th("Made of", className="text-nowrap"),
                             html.Td(names, className="gsp-provenance-name"),
                             html.Td(used.get("why", ""), className="text-muted")], **{"data-calibration": "inputs"}))
    table = dbc.Table([html.Tbody(rows)], size="sm", borderless=True, className="mb-0 gsp-provenance-table") \
        if rows else html.Div("No calibrations used (yet).", className="small text-muted")
    return html.Div([
        _state_line(file),
        quality_warning(used.get("wavelength_quality")),
        html.Div("Calibrations used", className="small fw-bold mb-1"),
        table,
    ], className="gsp-provenance small")
