"""The interactive figure of a sensitivity function: the standard's bands (used, and rejected or
masked) over the fit, and the residuals below, so a bad standard or a bad fit shows at a glance."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures.axes import spectrum_axes
from figures.labels import SENSITIVITY_AXIS, sensitivity_text, sensitivity_title
from figures.style import REJECTED_COLOUR, USED_COLOUR, bottom_legend, style_layout
from pipeline.datatypes import DataType
from pipeline.products import Product

MAG_HOVER = "%{x:.1f} \u00c5<br>%{y:.3f} mag<extra></extra>"
BANDS = (("bands used", True, {"size": 7, "color": USED_COLOUR}),
         ("rejected or masked", False, {"size": 8, "color": REJECTED_COLOUR, "symbol": "x"}))


def sensitivity_figure(product: Product, *, theme="dark", title="", show_title=True, height=None):
    points = product.extras["points"]
    used = points["used"].astype(bool)
    residual = points["mag"] - points["fit"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.08,
                        subplot_titles=("", f"Residuals: {sensitivity_text(points)}"))
    colours = style_layout(fig, theme, title or sensitivity_title(product), show_title, height)
    axes = spectrum_axes(product, DataType.MASTER)
    fig.add_trace(go.Scatter(x=axes.x, y=axes.flux, mode="lines", name="fit",
                             line={"color": colours["line"], "width": 1.5}, hovertemplate=MAG_HOVER), row=1, col=1)
    for label, is_used, marker in BANDS:
        chosen = used if is_used else ~used
        fig.add_trace(go.Scatter(x=points["wavelength"][chosen], y=points["mag"][chosen], mode="markers",
                                 name=f"{label} ({int(chosen.sum())})", marker=marker, hovertemplate=MAG_HOVER),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=points["wavelength"][chosen], y=residual[chosen], mode="markers",
                                 showlegend=False, marker=marker,
                                 hovertemplate="%{x:.1f} \u00c5<br>%{y:+.3f} mag<extra></extra>"), row=2, col=1)
    fig.add_hline(y=0, line={"color": colours["grid"], "width": 1}, row=2, col=1)
    bottom_legend(fig, hovermode="closest", uirevision=product.name,
                  meta={"kind": "sensitivity", "n": int(points["wavelength"].size)})
    fig.update_yaxes(title=SENSITIVITY_AXIS, gridcolor=colours["grid"], row=1, col=1)
    fig.update_yaxes(title="\u0394 (mag)", gridcolor=colours["grid"], row=2, col=1)
    fig.update_xaxes(gridcolor=colours["grid"])
    fig.update_xaxes(title=axes.x_title, row=2, col=1)
    return fig
