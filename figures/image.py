"""The interactive figure of a 2D frame: a heatmap of block averages between display limits, in the
file's own pixels, and on demand its saturated pixels marked."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from figures.labels import default_title, image_axis_titles, is_spectroscopic
from figures.pixels import (DEFAULT_MAX_PIXELS, MAX_SATURATED_MARKERS, block_any, compact, display_limits, downsample,
                            saturation_level)
from figures.style import PLOTLY_SCALES, SATURATED_COLOUR, colormap_key, style_layout
from pipeline.products import Product


def image_figure(product: Product, *, colormap="gray", zmin=None, zmax=None, percentiles=None,
                 show_saturated=False, saturation=None, title="", max_pixels=DEFAULT_MAX_PIXELS,
                 theme="dark", show_title=True, height=None):
    """``percentiles``: (low, high) instead of ZScale; zmin and zmax override either."""
    data = product.data
    small, factor = downsample(data, max_pixels)
    low, high = display_limits(small, zmin=zmin, zmax=zmax, percentiles=percentiles)
    offset = (factor - 1) / 2.0
    x_title, y_title = image_axis_titles(product.header)
    fig = go.Figure(go.Heatmap(
        z=compact(small), x0=offset, dx=factor, y0=offset, dy=factor, zmin=low, zmax=high,
        colorscale=PLOTLY_SCALES[colormap_key(colormap)], zsmooth=False, name="image",
        colorbar={"thickness": 14, "outlinewidth": 0},
        hovertemplate=f"{x_title.split(' (')[0]} %{{x:.0f}}<br>{y_title.split(' (')[0]} %{{y:.0f}}"
                      "<br>value %{z}<extra></extra>",
    ))
    if show_saturated:
        _add_saturated(fig, data, saturation_level(product.header, saturation), factor)
    style_layout(fig, theme, title or default_title(product.header, product.name), show_title, height)
    # Room for the colour bar from the start: otherwise it pushes the margins and plotly draws twice.
    fig.update_layout(margin={"r": 90, "b": 60})
    ny, nx = data.shape
    axis = {"showgrid": False, "zeroline": False, "ticks": "outside"}
    fig.update_xaxes(title=x_title, range=[-0.5, nx - 0.5], **axis)
    fig.update_yaxes(title=y_title, range=[-0.5, ny - 0.5], **axis)
    if not is_spectroscopic(product.header):
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(uirevision=product.name, meta={"kind": "image", "factor": factor, "shape": [ny, nx],
                                                     "limits": [low, high]})
    return fig


def _add_saturated(fig, data: np.ndarray, level: float, factor: int) -> None:
    """A red square on each display pixel holding a saturated one (at most MAX_SATURATED_MARKERS), and
    their count above the plot."""
    full_mask = np.asarray(data >= level)
    count = int(full_mask.sum())
    rows, cols = np.nonzero(block_any(full_mask, factor))
    if rows.size > MAX_SATURATED_MARKERS:
        keep = slice(None, None, int(math.ceil(rows.size / MAX_SATURATED_MARKERS)))
        rows, cols = rows[keep], cols[keep]
    offset = (factor - 1) / 2.0
    fig.add_trace(go.Scatter(
        x=cols * factor + offset, y=rows * factor + offset, mode="markers", name=f"saturated ({count} px)",
        marker={"color": SATURATED_COLOUR, "size": 5, "symbol": "square"}, showlegend=False,
        hovertemplate=f"saturated (\u2265 {level:g} ADU)<extra></extra>"))
    fig.add_annotation(text=f"saturated (\u2265 {level:g} ADU): {count:,} px", xref="paper", yref="paper",
                       x=1, y=1.01, xanchor="right", yanchor="bottom", showarrow=False,
                       font={"color": SATURATED_COLOUR, "size": 12}, name="saturated-count")
