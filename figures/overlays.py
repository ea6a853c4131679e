"""Line lists drawn over 1D spectra: arc lines used, bright sky lines, galaxy/stellar lines.

Wavelengths are in Angstrom, in air (what Goodman products are calibrated to).
Galaxy/stellar lines are rest wavelengths moved by ``(1 + z)`` with the redshift
the observer chooses; sky lines never move.  The figures of spectra (figures.spectrum,
figures.png) draw them with the two functions at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go


@dataclass(frozen=True)
class Line:
    label: str
    wavelength: float  # Angstrom, air
    kind: str = "emission"  # emission | absorption | sky | telluric | arc


# Bright night-sky lines at SOAR (airglow, Na D, city Hg) and the telluric O2 band heads.
SKY_LINES: tuple[Line, ...] = (
    Line("Hg I", 4046.56, "sky"),
    Line("Hg I", 4358.34, "sky"),
    Line("Hg I", 5460.74, "sky"),
    Line("[O I]", 5577.34, "sky"),
    Line("Na D2", 5889.95, "sky"),
    Line("Na D1", 5895.92, "sky"),
    Line("[O I]", 6300.30, "sky"),
    Line("[O I]", 6363.78, "sky"),
    Line("O2 B", 6867.19, "telluric"),
    Line("O2 A", 7593.70, "telluric"),
    Line("OH", 8344.60, "sky"),
    Line("OH", 8827.10, "sky"),
)

# Common galaxy and stellar lines (rest frame, air).
GALAXY_LINES: tuple[Line, ...] = (
    Line("[O II]", 3727.42, "emission"),
    Line("Ca II K", 3933.66, "absorption"),
    Line("Ca II H", 3968.47, "absorption"),
    Line("H\u03b4", 4101.74, "emission"),
    Line("G band", 4304.40, "absorption"),
    Line("H\u03b3", 4340.47, "emission"),
    Line("H\u03b2", 4861.33, "emission"),
    Line("[O III]", 4958.91, "emission"),
    Line("[O III]", 5006.84, "emission"),
    Line("Mg b", 5167.32, "absorption"),
    Line("Mg b", 5172.68, "absorption"),
    Line("Mg b", 5183.60, "absorption"),
    Line("He I", 5875.62, "emission"),
    Line("Na D", 5889.95, "absorption"),
    Line("Na D", 5895.92, "absorption"),
    Line("[O I]", 6300.30, "emission"),
    Line("[N II]", 6548.05, "emission"),
    Line("H\u03b1", 6562.80, "emission"),
    Line("[N II]", 6583.45, "emission"),
    Line("[S II]", 6716.44, "emission"),
    Line("[S II]", 6730.82, "emission"),
    Line("Ca II", 8498.02, "absorption"),
    Line("Ca II", 8542.09, "absorption"),
    Line("Ca II", 8662.14, "absorption"),
)

# name -> (label shown to users, colour of the markers)
LINE_OVERLAYS = {
    "arc": ("Arc lines used (from the file)", "#f39c12"),
    "sky": ("Sky lines", "#3498db"),
    "galaxy": ("Galaxy / stellar lines", "#e74c3c"),
}
# The viewer's choices: the line lists, and the telluric transmission a flux-calibrated spectrum was
# divided by (figures.spectrum draws it on an axis of its own).
TELLURIC = "telluric"
OVERLAYS = {**LINE_OVERLAYS, TELLURIC: ("Telluric transmission used (from the file)", "#2ecc71")}
REDSHIFT_RANGE = (0.0, 1.0)


def arc_lines(lines_table: dict | None) -> list[Line]:
    """The arc lines used by a wavelength solution (the product's LINES HDU as arrays)."""
    if not lines_table or "wavelength" not in lines_table:
        return []
    residuals = lines_table.get("residual")
    out = []
    for index, wavelength in enumerate(np.asarray(lines_table["wavelength"], dtype=float)):
        if not np.isfinite(wavelength):
            continue
        label = f"{wavelength:.2f}"
        if residuals is not None and np.isfinite(residuals[index]):
            label += f" ({residuals[index]:+.3f} \u00c5)"
        out.append(Line(label, float(wavelength), "arc"))
    return out


def shifted(lines, redshift: float = 0.0) -> list[Line]:
    """Lines moved to the observed frame of a source at ``redshift``."""
    factor = 1.0 + float(redshift or 0.0)
    return [Line(line.label, line.wavelength * factor, line.kind) for line in lines]


def lines_in_range(lines, wmin: float, wmax: float) -> list[Line]:
    low, high = min(wmin, wmax), max(wmin, wmax)
    return [line for line in lines if low <= line.wavelength <= high]


def overlay_lines(name: str, *, redshift: float = 0.0, lines_table: dict | None = None,
                  wmin: float = -np.inf, wmax: float = np.inf) -> list[Line]:
    """The lines of overlay ``name`` ('arc', 'sky', 'galaxy') that fall in [wmin, wmax]."""
    if name == "arc":
        lines = arc_lines(lines_table)
    elif name == "sky":
        lines = list(SKY_LINES)
    elif name == "galaxy":
        lines = shifted(GALAXY_LINES, redshift)
    else:
        raise ValueError(f"unknown overlay '{name}' (choose from {', '.join(LINE_OVERLAYS)})")
    return lines_in_range(lines, wmin, wmax)


def transmission_asked(product, overlays):
    """The telluric transmission a product was divided by, when the overlay is asked for; else None."""
    return product.extras.get("telluric") if TELLURIC in (overlays or ()) else None


def shown_overlays(overlays, lines_marked: bool = False) -> list[str]:
    """The line overlays asked for that exist; the arc's lines not where a residual panel marks them already."""
    return [name for name in overlays or () if name in LINE_OVERLAYS and not (name == "arc" and lines_marked)]


def add_plotly_overlays(fig, overlays, *, wavelength, flux, redshift: float = 0.0,
                        lines_table: dict | None = None, row: int | None = None) -> None:
    """Dashed vertical lines with hover labels for each overlay, on a wavelength axis."""
    finite = flux[np.isfinite(flux)]
    if wavelength is None or len(wavelength) == 0 or finite.size == 0:
        return
    wmin, wmax = float(np.nanmin(wavelength)), float(np.nanmax(wavelength))
    low, high = float(np.percentile(finite, 0.5)), float(np.max(finite))
    span = (high - low) or 1.0
    top = high + 0.08 * span
    rows = LabelRows(wmin, wmax)  # shared: one overlay's labels do not write over another's
    where = {"row": row, "col": 1} if row else {}
    for name in shown_overlays(overlays):
        lines = overlay_lines(name, redshift=redshift, lines_table=lines_table, wmin=wmin, wmax=wmax)
        if lines:
            fig.add_trace(_plotly_lines(name, lines, low, top, redshift), **where)
            fig.add_trace(_plotly_labels(name, lines, rows, top, span), **where)


def _plotly_lines(name: str, lines: list[Line], bottom: float, top: float, redshift: float):
    """One trace of vertical segments (None between them), saying each line on hover."""
    label, colour = OVERLAYS[name]
    xs, ys, texts = [], [], []
    for line in lines:
        xs += [line.wavelength, line.wavelength, None]
        ys += [bottom, top, None]
        texts += [f"{line.label} {line.wavelength:.2f} \u00c5"] * 2 + [None]
    name_text = label if name != "galaxy" or not redshift else f"{label} (z = {redshift:g})"
    return go.Scatter(x=xs, y=ys, mode="lines", name=name_text, text=texts, hovertemplate="%{text}<extra></extra>",
                      legendgroup=f"overlay-{name}", line={"color": colour, "width": 1, "dash": "dot"})


def _plotly_labels(name: str, lines: list[Line], rows: LabelRows, top: float, span: float):
    """The lines' short labels above the spectrum, those that find room (the rest: on hover only)."""
    colour = OVERLAYS[name][1]
    placed = [(line, rows.place(line.wavelength, short_label(line))) for line in lines]
    placed = [(line, level) for line, level in placed if level is not None]
    return go.Scatter(x=[line.wavelength for line, _ in placed],
                      y=[top + level * LABEL_ROW_HEIGHT * span for _, level in placed], mode="text",
                      showlegend=False, text=[short_label(line) for line, _ in placed],
                      textposition="top center", textfont={"size": 10, "color": colour},
                      hoverinfo="skip", legendgroup=f"overlay-{name}", name=f"{name} labels")


def short_label(line: Line) -> str:
    return line.label.split(" (")[0]


LABEL_ROW_HEIGHT = 0.07  # of the flux range: one row of 10 px text on a ~400 px plot
LABEL_ROWS = 4
LABEL_CHAR_FRACTION = 1 / 160  # a 10 px character on a ~1000 px wide plot, as a fraction of the axis


class LabelRows:
    """Rows of overlay labels above a spectrum: each label goes to the lowest row where it overlaps no
    other; when all rows are taken there, it is left out (its line still says it on hover). Without
    this, dense lists (arc lines, the sky's OH forest) wrote over one another into an unreadable strip."""

    def __init__(self, wmin: float, wmax: float, rows: int = LABEL_ROWS):
        self.char = (wmax - wmin) * LABEL_CHAR_FRACTION
        self.ends: list[list[tuple[float, float]]] = [[] for _ in range(rows)]

    def place(self, wavelength: float, text: str) -> int | None:
        half = (len(text) + 1) * self.char / 2
        start, end = wavelength - half, wavelength + half
        for level, taken in enumerate(self.ends):
            if all(end < low or start > high for low, high in taken):
                taken.append((start, end))
                return level
        return None


def add_matplotlib_overlays(ax, overlays, *, wavelength, redshift: float = 0.0,
                            lines_table: dict | None = None) -> None:
    if wavelength is None or len(wavelength) == 0:
        return
    wmin, wmax = float(np.nanmin(wavelength)), float(np.nanmax(wavelength))
    # Labels stand upright, one character thick: a label closer than that to one already written is left out.
    room = LabelRows(wmin, wmax, rows=1)
    for name in shown_overlays(overlays):
        label, colour = OVERLAYS[name]
        lines = overlay_lines(name, redshift=redshift, lines_table=lines_table, wmin=wmin, wmax=wmax)
        for index, line in enumerate(lines):
            ax.axvline(line.wavelength, color=colour, lw=0.8, ls=":", label=label if index == 0 else None)
            if name != "arc" and room.place(line.wavelength, "x") is not None:
                ax.annotate(line.label, (line.wavelength, 1.0), xycoords=("data", "axes fraction"),
                            rotation=90, va="top", ha="right", fontsize=7, color=colour)
