"""Static figures: a PNG of a FITS file, exactly as wide as asked (matplotlib Agg: no browser, no kaleido).

Margins are fixed in pixels: a layout engine costs more than the drawing itself.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from figures import overlays as line_overlays
from figures.axes import SpectrumAxes, compared_spectra, shows_residuals, spectrum_axes
from figures.labels import (SENSITIVITY_AXIS, flux_title, image_axis_titles, is_spectroscopic, product_title,
                            rms_text, sensitivity_text)
from figures.pixels import FigureError, block_any, display_limits, downsample, saturation_level
from figures.style import (MPL_CMAPS, PNG_LEGEND_PX, REJECTED_COLOUR, SATURATED_COLOUR, USED_COLOUR, colormap_key,
                           compare_colour, theme_colours)
from pipeline.products import Product, read_product

DPI = 100
WIDTHS = (100, 6000)
RESIDUAL_SHARE = 0.27  # of the plot's height, for the residuals under a spectrum
RESIDUAL_GAP_PX = 34
BANDS = (("bands used", True, {"marker": "o", "color": USED_COLOUR, "ms": 4}),
         ("rejected or masked", False, {"marker": "x", "color": REJECTED_COLOUR, "ms": 5}))


@dataclass(frozen=True)
class _Box:
    """Plot area of a figure, from margins in pixels, as matplotlib figure fractions."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    def rect(self, top_px: int | None = None, bottom_px: int | None = None, right_px: int | None = None):
        top = self.top if top_px is None else top_px
        bottom = self.bottom if bottom_px is None else bottom_px
        right = self.right if right_px is None else right_px
        return (self.left / self.width, bottom / self.height, 1 - (self.left + right) / self.width,
                1 - (top + bottom) / self.height)


def png_for_file(path, *, colormap: str = "gray", width: int = 1000, zmin=None, zmax=None, percentiles=None,
                 show_saturated: bool = False, saturation=None, title: str = "", data_type=None,
                 theme: str = "dark", overlays=(), redshift: float = 0.0, show_title: bool = True,
                 height: int | None = None, compare=()) -> bytes:
    """A PNG of the file, exactly ``width`` pixels wide. Raises ProductError (FigureError for a bad width)."""
    width = int(width)
    if not WIDTHS[0] <= width <= WIDTHS[1]:
        raise FigureError(f"width must be between {WIDTHS[0]} and {WIDTHS[1]} pixels, not {width}")
    product = read_product(path)
    colours = theme_colours(theme)
    height = int(height) if height is not None else _height(product, width)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=colours["mpl_bg"])
    FigureCanvasAgg(figure)
    title_text = (title or product_title(product)).replace("<br>", "\n") if show_title else ""
    box = _box(product, width, height, title_text)
    if product.kind == "image":
        _png_image(figure, product, box, colours, colormap=colormap, zmin=zmin, zmax=zmax, percentiles=percentiles,
                   show_saturated=show_saturated, saturation=saturation)
    else:
        _png_spectrum(figure, product, box, colours, data_type=data_type, overlays=overlays, redshift=redshift,
                      compare=compare)
    if title_text:
        figure.text(0.5, 1 - 6 / height, title_text, color=colours["text"], fontsize=12, ha="center", va="top")
    _colour_axes(figure, colours, theme)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor=colours["mpl_bg"], pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _height(product: Product, width: int) -> int:
    """Half the width for a spectrum; a frame's own aspect (a spectroscopic one's kept between 0.4 and
    0.75), between 0.35 and 1, plus room for the axis titles."""
    if product.kind != "image":
        return int(width * 0.5)
    ny, nx = product.data.shape
    aspect = ny / nx if not is_spectroscopic(product.header) else min(max(ny / nx, 0.4), 0.75)
    return int(width * min(max(aspect, 0.35), 1.0)) + 60


def _box(product: Product, width: int, height: int, title_text: str) -> _Box:
    top = (24 + 18 * title_text.count("\n") + 18) if title_text else 14
    if product.kind == "image":  # the colour bar on the right
        return _Box(width, height, left=72, right=84, top=top, bottom=48)
    return _Box(width, height, left=88, right=18, top=top, bottom=48 + PNG_LEGEND_PX)


def _colour_axes(figure, colours: dict, theme: str) -> None:
    for ax in figure.axes:
        ax.tick_params(colors=colours["text"], labelsize=9)
        ax.xaxis.label.set_color(colours["text"])
        ax.yaxis.label.set_color(colours["text"])
        ax.title.set_color(colours["text"])
        for spine in ax.spines.values():
            spine.set_color(colours["grid"] if theme == "dark" else "#888888")


def _png_image(figure, product: Product, box: _Box, colours: dict, *, colormap, zmin, zmax, percentiles,
               show_saturated, saturation) -> None:
    """The frame, block-averaged to about the PNG's own pixels, with its colour bar."""
    data = product.data
    ny, nx = data.shape
    small, factor = downsample(data, max(box.width * box.width // 2, 100_000))
    low, high = display_limits(small, zmin=zmin, zmax=zmax, percentiles=percentiles)
    ax = figure.add_axes(box.rect())
    ax.set_facecolor(colours["mpl_axes"])
    extent = (-0.5, small.shape[1] * factor - 0.5, -0.5, small.shape[0] * factor - 0.5)
    shown = ax.imshow(small, origin="lower", cmap=MPL_CMAPS[colormap_key(colormap)], vmin=low, vmax=high,
                      extent=extent, aspect="auto" if is_spectroscopic(product.header) else "equal",
                      interpolation="nearest")
    cax = figure.add_axes((1 - (box.right - 8) / box.width, box.bottom / box.height, 14 / box.width,
                           1 - (box.top + box.bottom) / box.height))
    bar = figure.colorbar(shown, cax=cax)
    bar.ax.tick_params(colors=colours["text"], labelsize=8)
    bar.outline.set_visible(False)
    if show_saturated:
        _paint_saturated(ax, data, saturation_level(product.header, saturation), factor, extent)
    x_title, y_title = image_axis_titles(product.header)
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)


def _paint_saturated(ax, data: np.ndarray, level: float, factor: int, extent) -> None:
    """Saturated pixels in red over the frame, and their count above it."""
    mask = block_any(np.asarray(data >= level), factor)
    if mask.any():
        overlay = np.zeros(mask.shape + (4,), dtype=np.float32)
        overlay[mask] = (1.0, 0.18, 0.18, 1.0)
        ax.imshow(overlay, origin="lower", extent=extent, aspect=ax.get_aspect(), interpolation="nearest")
    ax.set_title(f"saturated (\u2265 {level:g} ADU): {int(np.count_nonzero(data >= level)):,} px",
                 fontsize=9, loc="right", color=SATURATED_COLOUR)


def _png_spectrum(figure, product: Product, box: _Box, colours: dict, *, data_type, overlays, redshift,
                  compare) -> None:
    """The spectrum and those compared with it; for an arc its lines and their residuals, for a
    sensitivity function the standard's bands."""
    axes = spectrum_axes(product, data_type)
    points = product.extras.get("points")
    with_residuals = bool(points) or shows_residuals(product, axes)
    ax, residual_ax = _spectrum_panels(figure, box, with_residuals, colours)
    _draw_flux(ax, product, axes, colours, "fit" if points else "flux")
    for index, (label, other_x, other_flux) in enumerate(compared_spectra(compare, data_type)):
        ax.plot(other_x, other_flux, color=compare_colour(index), lw=0.8, alpha=0.85, label=label)
    ax.set_ylabel(SENSITIVITY_AXIS if points else flux_title(product.header, data_type))
    if points:
        _draw_bands(ax, residual_ax, points, colours)
    elif with_residuals:
        _draw_arc_lines(ax, residual_ax, product, axes, colours)
    (ax if residual_ax is None else residual_ax).set_xlabel(axes.x_title)
    if axes.wavelength is not None:
        line_overlays.add_matplotlib_overlays(ax, line_overlays.shown_overlays(overlays, with_residuals),
                                              wavelength=axes.wavelength, redshift=redshift,
                                              lines_table=product.lines)
    _draw_transmission(ax, axes, line_overlays.transmission_asked(product, overlays))
    ax.set_xlim(float(np.nanmin(axes.x)), float(np.nanmax(axes.x)))
    _legend_under(figure, ax, colours)


def _draw_transmission(ax, axes: SpectrumAxes, transmission: np.ndarray | None) -> None:
    """The telluric transmission the spectrum was divided by (if any), on a right-hand axis from 0 to 1."""
    if transmission is None:
        return
    colour = line_overlays.OVERLAYS[line_overlays.TELLURIC][1]
    right = ax.twinx()
    right.plot(axes.x, transmission, color=colour, lw=0.8)
    right.set_ylim(0.0, 1.05)
    right.set_ylabel("telluric transmission used", color=colour)
    right.tick_params(axis="y", colors=colour)


def _spectrum_panels(figure, box: _Box, with_residuals: bool, colours: dict):
    """The spectrum's axes, and under it the residuals' (sharing its x) or None; gridded."""
    if with_residuals:
        lower = int((box.height - box.top - box.bottom) * RESIDUAL_SHARE)
        ax = figure.add_axes(box.rect(bottom_px=box.bottom + lower + RESIDUAL_GAP_PX))
        residual_ax = figure.add_axes(box.rect(top_px=box.height - box.bottom - lower), sharex=ax)
        ax.tick_params(labelbottom=False)
    else:
        ax, residual_ax = figure.add_axes(box.rect()), None
    for axis in figure.axes:
        axis.set_facecolor(colours["mpl_axes"])
        axis.grid(True, color=colours["grid"], lw=0.5)
    return ax, residual_ax


def _draw_flux(ax, product: Product, axes: SpectrumAxes, colours: dict, label: str) -> None:
    sigma = product.uncertainty
    if sigma is not None and np.isfinite(sigma).any():
        ax.fill_between(axes.x, axes.flux - sigma, axes.flux + sigma, color=colours["line"], alpha=0.25, lw=0,
                        label="uncertainty (1\u03c3)")
    ax.plot(axes.x, axes.flux, color=colours["line"], lw=0.9, label=label)


def _draw_bands(ax, residual_ax, points: dict, colours: dict) -> None:
    """A sensitivity function's bands on the fit, and their residuals below."""
    used = points["used"].astype(bool)
    residual = points["mag"] - points["fit"]
    for label, is_used, style in BANDS:
        chosen = used if is_used else ~used
        ax.plot(points["wavelength"][chosen], points["mag"][chosen], ls="none",
                label=f"{label} ({int(chosen.sum())})", **style)
        residual_ax.plot(points["wavelength"][chosen], residual[chosen], ls="none", **style)
    residual_ax.axhline(0, color=colours["grid"], lw=1)
    residual_ax.set_ylabel("\u0394 (mag)")
    residual_ax.set_title(f"Residuals: {sensitivity_text(points)}", fontsize=9, color=colours["text"])


def _draw_arc_lines(ax, residual_ax, product: Product, axes: SpectrumAxes, colours: dict) -> None:
    """An arc's lines used (and rejected) on the spectrum, and their residuals below."""
    lines = product.lines
    line_w = lines["wavelength"]
    arc_colour = line_overlays.OVERLAYS["arc"][1]
    ax.plot(line_w, np.interp(line_w, axes.x, axes.flux), "v", color=arc_colour, ms=5,
            label=f"lines used ({len(line_w)})")
    residual_ax.axhline(0, color=colours["grid"], lw=1)
    residual_ax.plot(line_w, lines.get("residual", np.zeros_like(line_w)), "o", color=arc_colour, ms=3.5)
    residual_ax.set_ylabel("\u0394\u03bb (\u00c5)")
    rejected = lines.get("rejected") or {}
    if len(rejected.get("wavelength", [])):
        ax.plot(rejected["wavelength"], np.interp(rejected["wavelength"], axes.x, axes.flux), "x",
                color=REJECTED_COLOUR, ms=6, label=f"lines rejected ({len(rejected['wavelength'])})")
        residual_ax.plot(rejected["wavelength"], rejected["residual"], "x", color=REJECTED_COLOUR, ms=5)
    residual_ax.set_title(f"Residuals: {rms_text(lines, product.header)}", fontsize=9)


def _legend_under(figure, ax, colours: dict) -> None:
    """The legend under the plot, as in the interactive figure: over it, it covered the overlays' labels."""
    handles, labels = ax.get_legend_handles_labels()
    legend = figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 6),
                           fontsize=8, frameon=False)
    for text in legend.get_texts():
        text.set_color(colours["text"])
