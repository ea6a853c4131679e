"""The interactive figure of a 1D spectrum: flux with its 1-sigma band and the spectra compared with
it; for an arc, the lines of its wavelength solution and their residuals under it."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures import overlays as line_overlays
from figures.axes import SpectrumAxes, compared_spectra, shows_residuals, spectrum_axes
from figures.labels import default_title, flexure_text, flux_title, is_flux_calibrated, rms_text
from figures.style import REJECTED_COLOUR, bottom_legend, compare_colour, style_layout
from pipeline.products import Product, is_finite

UPPER = {"row": 1, "col": 1}
LOWER = {"row": 2, "col": 1}
ARC_COLOUR = line_overlays.OVERLAYS["arc"][1]


def spectrum_figure(product: Product, *, data_type=None, title="", theme="dark", overlays=(), redshift=0.0,
                    show_title=True, height=None, show_residuals=None, compare=()):
    """``show_residuals``: None for "when it is an arc with a wavelength solution"."""
    axes = spectrum_axes(product, data_type)
    if show_residuals is None:
        show_residuals = shows_residuals(product, axes)
    fig, where = _panels(product, show_residuals)
    colours = style_layout(fig, theme, _title(product, title, show_residuals), show_title, height)
    _add_band(fig, axes, product.uncertainty, colours, where)
    _add_flux(fig, product, axes, compared_spectra(compare, data_type), colours, where)
    if show_residuals:
        _add_arc_lines(fig, product.lines, axes, colours)
    if axes.wavelength is not None:
        line_overlays.add_plotly_overlays(fig, line_overlays.shown_overlays(overlays, show_residuals),
                                          wavelength=axes.wavelength, flux=axes.flux, redshift=redshift,
                                          lines_table=product.lines, row=1 if show_residuals else None)
    bottom_legend(fig, hovermode="x", uirevision=product.name,
                  meta={"kind": "spectrum", "axis": "wavelength" if axes.wavelength is not None else "pixel",
                        "n": int(axes.flux.size)})
    fig.update_yaxes(title=flux_title(product.header, data_type), gridcolor=colours["grid"], **where,
                     # F_lambda is ~1e-15: "2×10⁻¹⁵", not Plotly's SI "2f" (femto)
                     **({"exponentformat": "power"} if is_flux_calibrated(data_type) else {}))
    fig.update_xaxes(gridcolor=colours["grid"], **({} if show_residuals else {"title": axes.x_title}))
    _add_transmission(fig, axes, product, overlays)  # after the flux axis' title, which is not its own
    return fig


def _panels(product: Product, show_residuals: bool):
    """The figure, and where the spectrum goes in it: alone, or above its arc lines' residuals."""
    if not show_residuals:
        return go.Figure(), {}
    return make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.08,
                         subplot_titles=("", f"Residuals: {rms_text(product.lines, product.header)}")), UPPER


def _title(product: Product, title: str, show_residuals: bool) -> str:
    """The title asked for (or the product's), with the solution's RMS and flexure when no residual
    panel says them."""
    title = title or default_title(product.header, product.name)
    rms = product.header.get("GSP_WRMS")
    if is_finite(rms) and not show_residuals and title:
        title += (f" <span style='font-size:12px'>(solution RMS {float(rms):.3f} \u00c5"
                  f"{flexure_text(product.header)})</span>")
    return title


def _add_band(fig, axes: SpectrumAxes, sigma, colours: dict, where: dict) -> None:
    """The 1-sigma band: an invisible lower edge, and the upper edge filled down to it."""
    if sigma is None or not np.isfinite(sigma).any():
        return
    fig.add_trace(go.Scatter(x=axes.x, y=axes.flux - sigma, mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip", name="uncertainty low"), **where)
    fig.add_trace(go.Scatter(x=axes.x, y=axes.flux + sigma, mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=colours["band"], name="uncertainty (1\u03c3)", hoverinfo="skip"), **where)


def _add_flux(fig, product: Product, axes: SpectrumAxes, drawn_over: list, colours: dict, where: dict) -> None:
    """The spectrum (named by its file when others are drawn over it), then the others."""
    unit = axes.x_unit
    fig.add_trace(go.Scatter(x=axes.x, y=axes.flux, mode="lines", name=product.name if drawn_over else "flux",
                             line={"color": colours["line"], "width": 1.3},
                             hovertemplate=f"%{{x:.2f}} {unit}<br>%{{y:.4g}}<extra></extra>"), **where)
    for index, (label, other_x, other_flux) in enumerate(drawn_over):
        fig.add_trace(go.Scatter(x=other_x, y=other_flux, mode="lines", name=label, opacity=0.85,
                                 line={"color": compare_colour(index), "width": 1.1},
                                 hovertemplate=f"{label}<br>%{{x:.2f}} {unit}<br>%{{y:.4g}}<extra></extra>"),
                      **where)


def _add_transmission(fig, axes: SpectrumAxes, product: Product, overlays) -> None:
    """The telluric transmission the spectrum was divided by, on a right-hand axis from 0 to 1, when asked
    for and the product carries one."""
    transmission = line_overlays.transmission_asked(product, overlays)
    if transmission is None:
        return
    colour = line_overlays.OVERLAYS[line_overlays.TELLURIC][1]
    fig.add_trace(go.Scatter(x=axes.x, y=transmission, mode="lines", name="telluric transmission used",
                             yaxis="y2", line={"color": colour, "width": 1.1},
                             hovertemplate="%{x:.2f} \u00c5<br>transmission %{y:.3f}<extra></extra>"))
    fig.update_layout(yaxis2={"title": "telluric transmission", "overlaying": "y", "side": "right",
                              "range": [0, 1.05], "tickmode": "linear", "tick0": 0, "dtick": 0.2,
                              "showgrid": False, "color": colour})


def _add_arc_lines(fig, lines: dict, axes: SpectrumAxes, colours: dict) -> None:
    """The lines used, on the spectrum and with their residuals below; then those rejected."""
    line_w = lines["wavelength"]
    residual = lines.get("residual", np.zeros_like(line_w))
    fig.add_trace(go.Scatter(
        x=line_w, y=np.interp(line_w, axes.x, axes.flux), mode="markers", name=f"lines used ({len(line_w)})",
        marker={"symbol": "triangle-down", "size": 8, "color": ARC_COLOUR},
        customdata=residual, hovertemplate="%{x:.3f} \u00c5<br>residual %{customdata:+.4f} \u00c5<extra></extra>"),
        **UPPER)
    fig.add_trace(go.Scatter(x=line_w, y=residual, mode="markers", name="residuals", showlegend=False,
                             marker={"size": 6, "color": ARC_COLOUR},
                             hovertemplate="%{x:.3f} \u00c5<br>%{y:+.4f} \u00c5<extra></extra>"), **LOWER)
    _add_rejected_lines(fig, lines.get("rejected") or {}, axes)
    fig.add_hline(y=0, line={"color": colours["grid"], "width": 1}, **LOWER)
    fig.update_yaxes(title="\u0394\u03bb (\u00c5)", **LOWER)
    fig.update_xaxes(title=axes.x_title, **LOWER)


def _add_rejected_lines(fig, rejected: dict, axes: SpectrumAxes) -> None:
    if not len(rejected.get("wavelength", [])):
        return
    marker = {"symbol": "x", "size": 8, "color": REJECTED_COLOUR}
    fig.add_trace(go.Scatter(
        x=rejected["wavelength"], y=np.interp(rejected["wavelength"], axes.x, axes.flux), mode="markers",
        name=f"lines rejected ({len(rejected['wavelength'])})", marker=marker, customdata=rejected.get("residual"),
        hovertemplate="%{x:.3f} \u00c5<br>rejected, residual %{customdata:+.4f} \u00c5<extra></extra>"), **UPPER)
    fig.add_trace(go.Scatter(x=rejected["wavelength"], y=rejected.get("residual"), mode="markers",
                             name="rejected residuals", showlegend=False, marker=marker,
                             hovertemplate="%{x:.3f} \u00c5<br>rejected %{y:+.4f} \u00c5<extra></extra>"), **LOWER)
