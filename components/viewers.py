"""Figures of FITS files: 2D images and 1D spectra, interactive (Plotly) or static (PNG).

Public API (the Data page and ``GET /api/files/visualize/`` use it):

* :func:`figure_for_file` -> ``plotly.graph_objects.Figure``
* :func:`png_for_file` -> PNG bytes (matplotlib Agg: no browser, no kaleido)
* :data:`COLORMAPS` (key -> label), :class:`ViewerError` (unreadable or empty files)

2D frames are shown with ZScale limits by default, block-averaged to at most
``max_pixels`` display pixels; the axes stay in the file's own (0-based) pixels.
1D spectra are flux against wavelength when the header carries a linear
wavelength WCS (CRVAL1/CDELT1/CRPIX1), against pixels otherwise; a 1-sigma
band comes from the ``UNCERT`` HDU and, for arcs with a ``LINES`` HDU, the
lines used are marked and their residuals plotted with the RMS.

No module-level state but a small cache of decoded files (keyed by path,
size and modification time), so switching the colour map or the limits does
not read the file again.
"""
from __future__ import annotations

import io
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from components import spectrum_overlays
from pipeline import flexure, headers

# key -> label; the two maps below translate a key for Plotly and matplotlib.
COLORMAPS: dict[str, str] = {
    "gray": "Gray",
    "gray_r": "Gray (inverted)",
    "viridis": "Viridis",
    "inferno": "Inferno",
    "magma": "Magma",
    "plasma": "Plasma",
    "cividis": "Cividis",
    "hot": "Hot",
    "turbo": "Turbo",
}
_PLOTLY_SCALES = {"gray": "gray", "gray_r": "gray_r", "viridis": "Viridis", "inferno": "Inferno",
                  "magma": "Magma", "plasma": "Plasma", "cividis": "Cividis", "hot": "Hot", "turbo": "Turbo"}
_MPL_CMAPS = {"gray": "gray", "gray_r": "gray_r", "viridis": "viridis", "inferno": "inferno", "magma": "magma",
              "plasma": "plasma", "cividis": "cividis", "hot": "hot", "turbo": "turbo"}

DEFAULT_MAX_PIXELS = 600_000
MAX_SATURATED_MARKERS = 20_000
DIGITAL_SATURATION = headers.DIGITAL_SATURATION
ARC_OBSTYPES = ("COMP", "ARC")
IMAGING_MARKERS = ("IMAGING", "NO_GRATING", "<NO GRATING>")
WAVELENGTH_CTYPES = ("WAVE", "AWAV", "LINEAR", "WAVELENGTH", "LAMBDA")
_UNIT_TO_ANGSTROM = {"angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "nm": 10.0, "um": 1e4, "micron": 1e4,
                     "m": 1e10}

THEMES = {
    "dark": {"template": "plotly_dark", "paper": "rgba(0,0,0,0)", "plot": "#1b1b1b", "text": "#e6e6e6",
             "grid": "#3a3a3a", "line": "#5bc0de", "band": "rgba(91,192,222,0.25)", "mpl_bg": "#222222",
             "mpl_axes": "#1b1b1b"},
    "light": {"template": "plotly_white", "paper": "rgba(0,0,0,0)", "plot": "#ffffff", "text": "#222222",
              "grid": "#dddddd", "line": "#2c3e50", "band": "rgba(44,62,80,0.2)", "mpl_bg": "#ffffff",
              "mpl_axes": "#ffffff"},
}
SATURATED_COLOUR = "#ff2d2d"
# Spectra carry their legend under the plot: above it, it covered the title's RMS and the overlays' labels.
BOTTOM_LEGEND = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0.5,
                 "xanchor": "center"}
BOTTOM_LEGEND_MARGIN = 90
PNG_LEGEND_PX = 26  # a row of legend under a static spectrum
REJECTED_COLOUR = "#d9534f"
COMPARE_COLOURS = ("#f0ad4e", "#5cb85c", "#d9534f", "#b07cd8", "#e8e8e8")  # spectra drawn over the one shown


class ViewerError(ValueError):
    """The file cannot be shown (missing, not FITS, no image or spectrum in it); the message says why."""


# --------------------------------------------------------------------------- reading

@dataclass
class Product:
    """What a FITS file holds, decoded once."""

    name: str
    kind: str  # "image" | "spectrum"
    data: np.ndarray
    header: fits.Header
    uncertainty: np.ndarray | None = None
    lines: dict | None = None  # pixel, wavelength, residual arrays of the LINES HDU
    extras: dict = field(default_factory=dict)


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def read_product(path) -> Product:
    """Decode ``path`` (cached by path, size and mtime). Raises ViewerError."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ViewerError(f"Cannot read {path.name}: {error.strerror or error}.") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    product = _read(path)
    with _CACHE_LOCK:
        _CACHE[key] = product
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return product


def _read(path: Path) -> Product:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _decode(path)
        except ViewerError as error:
            notes = "; ".join(str(w.message) for w in caught if "truncated" in str(w.message))
            if notes and notes not in str(error):
                raise ViewerError(f"{error} ({notes})") from None
            raise


def _decode(path: Path) -> Product:
    try:
        with fits.open(path, memmap=False) as hdus:
            primary = hdus[0]
            image = next((hdu for hdu in hdus
                          if hdu.is_image and hdu.header.get("NAXIS", 0) > 0 and hdu.data is not None
                          and (hdu is primary or hdu.name not in ("UNCERT", "MASK"))), None)
            if image is None:
                raise ViewerError(f"{path.name} holds no image or spectrum data.")
            header = image.header.copy()
            if image is not primary:  # .fits.fz and friends: keep the primary's keywords too
                for card in primary.header.cards:
                    if card.keyword and card.keyword not in header and card.keyword not in ("SIMPLE", "EXTEND"):
                        header.append(card)
            data = np.asarray(image.data)
            uncertainty = _uncertainty(hdus)
            lines = _lines(hdus)
            points = _points(hdus)
    except ViewerError:
        raise
    except Exception as error:  # astropy raises OSError, ValueError, TypeError... on bad input
        raise ViewerError(f"Cannot read {path.name} as FITS: {error}") from None
    data = np.squeeze(data)
    if data.ndim == 0 or data.size == 0:
        raise ViewerError(f"{path.name} holds no image or spectrum data.")
    if data.ndim > 2:  # a cube: show its first plane
        data = data.reshape((-1,) + data.shape[-2:])[0]
    kind = "spectrum" if data.ndim == 1 else "image"
    if uncertainty is not None:
        uncertainty = np.squeeze(uncertainty)
        if uncertainty.shape != data.shape:
            uncertainty = None
    return Product(name=path.name, kind=kind, data=data, header=header, uncertainty=uncertainty, lines=lines,
                   extras={"points": points} if points else {})


def _uncertainty(hdus) -> np.ndarray | None:
    if "UNCERT" not in hdus:
        return None
    hdu = hdus["UNCERT"]
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        if hdu.data is None or not hdu.columns.names:
            return None
        names = [n for n in hdu.columns.names if n.lower() in ("uncertainty", "error", "sigma")]
        values = np.asarray(hdu.data[names[0] if names else hdu.columns.names[0]], dtype=float)
    else:
        if hdu.data is None:
            return None
        values = np.asarray(hdu.data, dtype=float)
        kind = str(hdu.header.get("UTYPE", "StdDevUncertainty"))
        if kind.startswith("Variance"):
            values = np.sqrt(np.clip(values, 0, None))
        elif kind.startswith("InverseVariance"):
            with np.errstate(divide="ignore"):
                values = 1.0 / np.sqrt(values)
    return values


def _lines(hdus) -> dict | None:
    if "LINES" not in hdus:
        return None
    hdu = hdus["LINES"]
    if hdu.data is None or not hasattr(hdu, "columns"):
        return None
    names = {n.lower(): n for n in hdu.columns.names}
    if "wavelength" not in names:
        return None
    table = {key: np.asarray(hdu.data[names[key]], dtype=float) for key in ("pixel", "wavelength", "residual")
             if key in names}
    # older products list only the lines used; newer ones add the rejected ones with used = False
    used = np.asarray(hdu.data[names["used"]], dtype=bool) if "used" in names else np.ones(len(table["wavelength"]),
                                                                                            dtype=bool)
    return {**{key: values[used] for key, values in table.items()},
            "rejected": {key: values[~used] for key, values in table.items()}}


def _points(hdus) -> dict | None:
    """A sensitivity function's POINTS table: the standard's bands, the fit there, and which were used."""
    if "POINTS" not in hdus or hdus["POINTS"].data is None:
        return None
    table = hdus["POINTS"].data
    names = {n.lower(): n for n in table.columns.names}
    if not {"wavelength", "mag", "fit", "used"} <= set(names):
        return None
    return {key: np.asarray(table[names[key]]) for key in ("wavelength", "mag", "fit", "used")}


# --------------------------------------------------------------------------- helpers

def colormap_key(name: str | None) -> str:
    name = (name or "gray").strip()
    if name not in COLORMAPS:
        lowered = name.lower()
        name = lowered if lowered in COLORMAPS else "gray"
    return name


def downsample(data: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int]:
    """Block-average a 2D array by the smallest whole factor that fits ``max_pixels``.

    Returns (array, factor).  Edge rows/columns that do not fill a block are dropped
    (at most factor - 1 of each).  Integer data stay integer (rounded), so they
    travel to the browser at half the size of floats.
    """
    ny, nx = data.shape
    factor = max(1, math.ceil(math.sqrt(ny * nx / max(1, int(max_pixels)))))
    while (ny // factor) * (nx // factor) > max_pixels:
        factor += 1
    if factor == 1:
        return data, 1
    my, mx = (ny // factor) * factor, (nx // factor) * factor
    if my == 0 or mx == 0:
        raise ViewerError(f"image of {nx} x {ny} pixels is too small to show in {max_pixels} pixels")
    blocks = data[:my, :mx].reshape(my // factor, factor, mx // factor, factor)
    small = blocks.mean(axis=(1, 3), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        small = np.clip(np.rint(small), info.min, info.max).astype(data.dtype)
    else:
        small = small.astype(np.float32)
    return small, factor


def compact(values: np.ndarray) -> np.ndarray:
    """The same picture in fewer bytes for the browser: floats whose pixel noise is at least
    1 (counts in ADU or electrons) are rounded to 16-bit integers when they fit, which adds
    less than 5 % to the noise; small-valued data (normalized flats, fluxes in physical
    units) and data with NaNs stay float32."""
    if values.dtype.itemsize <= 2 or not np.issubdtype(values.dtype, np.floating):
        return values
    if not np.isfinite(values).all():
        return values.astype(np.float32, copy=False)
    low, high = float(values.min()), float(values.max())
    sample = _sample(values, 50_000)
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample)))) if sample.size else 0.0
    if noise < 1.0:  # rounding would show
        return values.astype(np.float32, copy=False)
    if -32768 <= low and high <= 32767:
        return np.rint(values).astype(np.int16)
    if 0 <= low and high <= 65535:
        return np.rint(values).astype(np.uint16)
    return values.astype(np.float32, copy=False)


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return mask
    ny, nx = mask.shape
    my, mx = (ny // factor) * factor, (nx // factor) * factor
    return mask[:my, :mx].reshape(my // factor, factor, mx // factor, factor).any(axis=(1, 3))


def _sample(values: np.ndarray, limit: int = 200_000) -> np.ndarray:
    flat = values.ravel()
    if flat.size > limit:
        flat = flat[:: int(math.ceil(flat.size / limit))]
    flat = flat.astype(np.float64, copy=False)
    return flat[np.isfinite(flat)]


def display_limits(values: np.ndarray, *, zmin=None, zmax=None, percentiles=None) -> tuple[float, float]:
    """Colour-scale limits: ZScale, or percentiles (low, high), each overridden by zmin/zmax."""
    sample = _sample(values)
    if sample.size == 0:
        low, high = 0.0, 1.0
    elif percentiles:
        p_low, p_high = (float(p) for p in percentiles)
        if not (0 <= p_low < p_high <= 100):
            raise ViewerError(f"percentiles must satisfy 0 <= low < high <= 100, not {p_low:g}, {p_high:g}")
        low, high = (float(v) for v in np.percentile(sample, [p_low, p_high]))
    else:
        from astropy.visualization import ZScaleInterval

        try:
            low, high = (float(v) for v in ZScaleInterval().get_limits(sample))
        except Exception:  # degenerate data (constant frames)
            low, high = float(sample.min()), float(sample.max())
    if zmin is not None and _finite(zmin):
        low = float(zmin)
    if zmax is not None and _finite(zmax):
        high = float(zmax)
    if not high > low:
        high = low + 1.0
    return low, high


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def saturation_level(header, saturation=None) -> float:
    """The saturation level (ADU) to highlight: given (the catalogue's), SATURATE, or the readout mode's
    (pipeline.headers.saturation_level, the one rule the catalogue follows too).

    Never above the 16-bit ceiling: rows catalogued before that rule may hold a half full well above it.
    """
    if saturation is not None and _finite(saturation):
        return float(min(float(saturation), DIGITAL_SATURATION))
    if _finite(header.get("SATURATE")):
        return float(min(float(header["SATURATE"]), DIGITAL_SATURATION))
    if _finite(header.get("GAIN")) and _finite(header.get("RDNOISE")):
        return float(headers.saturation_level(str(header.get("INSTCONF", "")).strip(), float(header["GAIN"]),
                                              float(header["RDNOISE"])))
    return float(DIGITAL_SATURATION)


def is_spectroscopic(header) -> bool:
    """True unless the header says imaging (WAVMODE IMAGING / no grating)."""
    for key in ("WAVMODE", "GRATING"):
        value = str(header.get(key, "")).strip().upper()
        if value in IMAGING_MARKERS:
            return False
    return True


def is_arc(header) -> bool:
    return str(header.get("OBSTYPE", "")).strip().upper() in ARC_OBSTYPES


def image_axis_titles(header) -> tuple[str, str]:
    if is_spectroscopic(header):
        return "Dispersion Axis (Pixels)", "Spatial Axis (Pixels)"
    return "X (Pixels)", "Y (Pixels)"


def wavelength_axis(header, n: int, data_type=None) -> np.ndarray | None:
    """Wavelengths (Angstrom) of the n pixels from a linear WCS, or None when the header has none."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    crval = header.get("CRVAL1")
    cdelt = header.get("CDELT1", header.get("CD1_1"))
    if not (_finite(crval) and _finite(cdelt)) or float(cdelt) == 0:
        return None
    known = any(ctype.startswith(t) for t in WAVELENGTH_CTYPES)
    if not known and not (ctype == "" and data_type is not None and int(data_type) >= 4):
        return None
    crpix = float(header.get("CRPIX1", 1.0)) if _finite(header.get("CRPIX1", 1.0)) else 1.0
    values = float(crval) + (np.arange(n) + 1.0 - crpix) * float(cdelt)
    if str(header.get("DC-FLAG", "0")).strip() == "1":  # IRAF log-linear
        values = 10.0 ** values
    unit = str(header.get("CUNIT1", "Angstrom")).strip().lower()
    return values * _UNIT_TO_ANGSTROM.get(unit, 1.0)


def flux_title(header, data_type=None) -> str:
    unit = str(header.get("BUNIT", "")).strip()
    if data_type is not None and int(data_type) >= 5 and unit:
        return f"Flux ({unit})"
    if unit:
        return f"Flux ({unit.upper() if unit.lower() == 'adu' else unit})"
    return "Flux (ADU)" if data_type is None or int(data_type) < 5 else "Flux"


def default_title(header, name: str = "") -> str:
    parts = [str(header.get(k, "")).strip() for k in ("OBSTYPE", "OBJECT")]
    first = " ".join(p for p in parts if p) or name
    second = str(header.get("PROPOSAL", header.get("PROPID", ""))).strip()
    return f"{first}<br>{second}" if second else first


def _flexure_text(header) -> str:
    """The flexure correction beside the RMS (header cards of pipeline.wavelength.flexure_cards)."""
    if "GSP_FLXA" not in header:
        return ""
    return " \u00b7 " + flexure.summary({"applied": header["GSP_FLXA"], "shift_px": header.get("GSP_FLEX"),
                                         "uncertainty_px": header.get("GSP_FLXE"), "n_lines": header.get("GSP_FLXN"),
                                         "reason": header.get("GSP_FLXR")})


def _rms_text(lines: dict, header=None) -> str:
    """'RMS 0.019 Å · 60 lines used, 5 rejected', and the verdict when the solution is poor."""
    residual = lines.get("residual")
    rejected = len((lines.get("rejected") or {}).get("wavelength", []))
    if residual is None or len(residual) == 0:
        text = f"{len(lines.get('wavelength', []))} lines used, {rejected} rejected"
    else:
        finite = residual[np.isfinite(residual)]
        rms = float(np.sqrt(np.mean(finite ** 2))) if finite.size else float("nan")
        text = f"RMS {rms:.3f} \u00c5 \u00b7 {finite.size} lines used, {rejected} rejected"
    if header is not None and str(header.get("GSP_WQUA", "")).strip() == "poor":
        text += " \u00b7 POOR SOLUTION"
    return text


# --------------------------------------------------------------------------- Plotly

def figure_for_file(path, *, data_type=None, colormap: str = "gray", zmin=None, zmax=None, percentiles=None,
                    show_saturated: bool = False, saturation=None, title: str = "",
                    max_pixels: int = DEFAULT_MAX_PIXELS, theme: str = "dark", overlays=(),
                    redshift: float = 0.0, show_title: bool = True, height: int | None = None, compare=()):
    """The interactive figure of a FITS file (image or spectrum; ``compare``: (label, path) of other
    spectra to draw over it). Raises ViewerError."""
    product = read_product(path)
    if product.extras.get("points"):
        return sensitivity_figure(product, theme=theme, title=title, show_title=show_title, height=height)
    if product.kind == "image":
        return image_figure(product, colormap=colormap, zmin=zmin, zmax=zmax, percentiles=percentiles,
                            show_saturated=show_saturated, saturation=saturation, title=title,
                            max_pixels=max_pixels, theme=theme, show_title=show_title, height=height)
    return spectrum_figure(product, data_type=data_type, title=title, theme=theme, overlays=overlays,
                           redshift=redshift, show_title=show_title, height=height, compare=compare)


def _style(fig, theme: str, title: str, show_title: bool, height: int | None):
    colours = THEMES.get(theme, THEMES["dark"])
    fig.update_layout(
        template=colours["template"], paper_bgcolor=colours["paper"], plot_bgcolor=colours["plot"],
        font={"color": colours["text"], "size": 12},
        title={"text": title if show_title else "", "x": 0.5, "xanchor": "center", "font": {"size": 15}},
        margin={"l": 70, "r": 20, "t": 70 if show_title and title else 30, "b": 55},
        height=height,
    )
    return colours


def image_figure(product: Product, *, colormap="gray", zmin=None, zmax=None, percentiles=None,
                 show_saturated=False, saturation=None, title="", max_pixels=DEFAULT_MAX_PIXELS,
                 theme="dark", show_title=True, height=None):
    import plotly.graph_objects as go

    data = product.data
    small, factor = downsample(data, max_pixels)
    low, high = display_limits(small, zmin=zmin, zmax=zmax, percentiles=percentiles)
    offset = (factor - 1) / 2.0
    x_title, y_title = image_axis_titles(product.header)
    title = title or default_title(product.header, product.name)
    fig = go.Figure(go.Heatmap(
        z=compact(small), x0=offset, dx=factor, y0=offset, dy=factor, zmin=low, zmax=high,
        colorscale=_PLOTLY_SCALES[colormap_key(colormap)], zsmooth=False, name="image",
        colorbar={"thickness": 14, "outlinewidth": 0},
        hovertemplate=f"{x_title.split(' (')[0]} %{{x:.0f}}<br>{y_title.split(' (')[0]} %{{y:.0f}}"
                      "<br>value %{z}<extra></extra>",
    ))
    if show_saturated:
        level = saturation_level(product.header, saturation)
        full_mask = np.asarray(data >= level)
        count = int(full_mask.sum())
        rows, cols = np.nonzero(_block_any(full_mask, factor))
        if rows.size > MAX_SATURATED_MARKERS:
            keep = slice(None, None, int(math.ceil(rows.size / MAX_SATURATED_MARKERS)))
            rows, cols = rows[keep], cols[keep]
        fig.add_trace(go.Scatter(
            x=cols * factor + offset, y=rows * factor + offset, mode="markers", name=f"saturated ({count} px)",
            marker={"color": SATURATED_COLOUR, "size": 5, "symbol": "square"}, showlegend=False,
            hovertemplate=f"saturated (\u2265 {level:g} ADU)<extra></extra>"))
        fig.add_annotation(text=f"saturated (\u2265 {level:g} ADU): {count:,} px", xref="paper", yref="paper",
                           x=1, y=1.01, xanchor="right", yanchor="bottom", showarrow=False,
                           font={"color": SATURATED_COLOUR, "size": 12}, name="saturated-count")
    _style(fig, theme, title, show_title, height)
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


def _spectrum_axes(product: Product, data_type=None):
    flux = np.asarray(product.data, dtype=np.float64)
    wavelength = wavelength_axis(product.header, flux.size, data_type)
    if wavelength is None:
        return flux, np.arange(flux.size, dtype=float), None, "Dispersion Axis (Pixels)"
    return flux, wavelength, wavelength, "Wavelength (\u00c5)"


def compared_spectra(compare, data_type):
    """(label, x, flux) of each spectrum to draw over the one shown; unreadable ones are left out."""
    drawn = []
    for label, path in compare or ():
        try:
            other = read_product(path)
        except ViewerError:
            continue
        if other.kind == "spectrum":
            flux, x, _, _ = _spectrum_axes(other, data_type)
            drawn.append((label, x, flux))
    return drawn


def spectrum_figure(product: Product, *, data_type=None, title="", theme="dark", overlays=(), redshift=0.0,
                    show_title=True, height=None, show_residuals=None, compare=()):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    flux, x, wavelength, x_title = _spectrum_axes(product, data_type)
    lines = product.lines
    if show_residuals is None:
        show_residuals = bool(lines) and wavelength is not None and is_arc(product.header)
    title = title or default_title(product.header, product.name)
    colours = THEMES.get(theme, THEMES["dark"])
    if show_residuals:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.08,
                            subplot_titles=("", f"Residuals: {_rms_text(lines, product.header)}"))
        where = {"row": 1, "col": 1}
    else:
        fig = go.Figure()
        where = {}
    sigma = product.uncertainty
    if sigma is not None and np.isfinite(sigma).any():
        fig.add_trace(go.Scatter(x=x, y=flux - sigma, mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", name="uncertainty low"), **where)
        fig.add_trace(go.Scatter(x=x, y=flux + sigma, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=colours["band"], name="uncertainty (1\u03c3)", hoverinfo="skip"),
                      **where)
    unit = "\u00c5" if wavelength is not None else "px"
    drawn_over = compared_spectra(compare, data_type)
    fig.add_trace(go.Scatter(x=x, y=flux, mode="lines", name=product.name if drawn_over else "flux",
                             line={"color": colours["line"], "width": 1.3},
                             hovertemplate=f"%{{x:.2f}} {unit}<br>%{{y:.4g}}<extra></extra>"), **where)
    for index, (label, other_x, other_flux) in enumerate(drawn_over):
        fig.add_trace(go.Scatter(x=other_x, y=other_flux, mode="lines", name=label, opacity=0.85,
                                 line={"color": COMPARE_COLOURS[index % len(COMPARE_COLOURS)], "width": 1.1},
                                 hovertemplate=f"{label}<br>%{{x:.2f}} {unit}<br>%{{y:.4g}}<extra></extra>"),
                      **where)
    if show_residuals:
        line_w = lines["wavelength"]
        at = np.interp(line_w, x, flux)
        residual = lines.get("residual", np.zeros_like(line_w))
        fig.add_trace(go.Scatter(
            x=line_w, y=at, mode="markers", name=f"lines used ({len(line_w)})",
            marker={"symbol": "triangle-down", "size": 8, "color": spectrum_overlays.OVERLAYS["arc"][1]},
            customdata=residual, hovertemplate="%{x:.3f} \u00c5<br>residual %{customdata:+.4f} \u00c5<extra></extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(x=line_w, y=residual, mode="markers", name="residuals", showlegend=False,
                                 marker={"size": 6, "color": spectrum_overlays.OVERLAYS["arc"][1]},
                                 hovertemplate="%{x:.3f} \u00c5<br>%{y:+.4f} \u00c5<extra></extra>"), row=2, col=1)
        rejected = lines.get("rejected") or {}
        if len(rejected.get("wavelength", [])):
            marker = {"symbol": "x", "size": 8, "color": REJECTED_COLOUR}
            fig.add_trace(go.Scatter(
                x=rejected["wavelength"], y=np.interp(rejected["wavelength"], x, flux), mode="markers",
                name=f"lines rejected ({len(rejected['wavelength'])})", marker=marker,
                customdata=rejected.get("residual"),
                hovertemplate="%{x:.3f} \u00c5<br>rejected, residual %{customdata:+.4f} \u00c5<extra></extra>"),
                row=1, col=1)
            fig.add_trace(go.Scatter(x=rejected["wavelength"], y=rejected.get("residual"), mode="markers",
                                     name="rejected residuals", showlegend=False, marker=marker,
                                     hovertemplate="%{x:.3f} \u00c5<br>rejected %{y:+.4f} \u00c5<extra></extra>"),
                          row=2, col=1)
        fig.add_hline(y=0, line={"color": colours["grid"], "width": 1}, row=2, col=1)
        fig.update_yaxes(title="\u0394\u03bb (\u00c5)", row=2, col=1)
        fig.update_xaxes(title=x_title, row=2, col=1)
    if wavelength is not None and overlays:
        spectrum_overlays.add_plotly_overlays(fig, [o for o in overlays if not (o == "arc" and show_residuals)],
                                              wavelength=wavelength, flux=flux, redshift=redshift,
                                              lines_table=lines, row=1 if show_residuals else None)
    rms = product.header.get("GSP_WRMS")
    if _finite(rms) and not show_residuals and title:
        title += f" <span style='font-size:12px'>(solution RMS {float(rms):.3f} \u00c5{_flexure_text(product.header)})</span>"
    _style(fig, theme, title, show_title, height)
    fig.update_layout(showlegend=True, hovermode="x", uirevision=product.name,
                      legend=BOTTOM_LEGEND, margin={"b": BOTTOM_LEGEND_MARGIN},
                      meta={"kind": "spectrum", "axis": "wavelength" if wavelength is not None else "pixel",
                            "n": int(flux.size)})
    fig.update_yaxes(title=flux_title(product.header, data_type), gridcolor=colours["grid"], **where,
                     # F_lambda is ~1e-15: "2×10⁻¹⁵", not Plotly's SI "2f" (femto)
                     **({"exponentformat": "power"} if data_type is not None and int(data_type) >= 5 else {}))
    if not show_residuals:
        fig.update_xaxes(title=x_title, gridcolor=colours["grid"])
    else:
        fig.update_xaxes(gridcolor=colours["grid"])
    return fig


def _sensitivity_text(points: dict) -> str:
    used = points["used"].astype(bool)
    residual = (points["mag"] - points["fit"])[used]
    rms = float(np.sqrt(np.mean(residual ** 2))) if residual.size else float("nan")
    return f"RMS {rms:.3f} mag \u00b7 {int(used.sum())} bands used, {int((~used).sum())} rejected or masked"


def _sensitivity_title(product: Product) -> str:
    star = str(product.header.get("GSP_STD", "")).strip()
    return f"Sensitivity function{': ' + star if star else ''}"


SENSITIVITY_AXIS = "2.5 log\u2081\u2080 S (mag)"


def sensitivity_figure(product: Product, *, theme="dark", title="", show_title=True, height=None):
    """A sensitivity function: the standard's bands (used, and rejected or masked) over the fit, and
    the residuals below, so a bad standard or a bad fit shows at a glance."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    points = product.extras["points"]
    used = points["used"].astype(bool)
    residual = points["mag"] - points["fit"]
    colours = THEMES.get(theme, THEMES["dark"])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.08,
                        subplot_titles=("", f"Residuals: {_sensitivity_text(points)}"))
    flux, x, wavelength, x_title = _spectrum_axes(product, data_type=1)
    fig.add_trace(go.Scatter(x=x, y=flux, mode="lines", name="fit", line={"color": colours["line"], "width": 1.5},
                             hovertemplate="%{x:.1f} \u00c5<br>%{y:.3f} mag<extra></extra>"), row=1, col=1)
    for label, chosen, marker in (("bands used", used, {"size": 7, "color": "#5cb85c"}),
                                  ("rejected or masked", ~used, {"size": 8, "color": "#d9534f", "symbol": "x"})):
        fig.add_trace(go.Scatter(x=points["wavelength"][chosen], y=points["mag"][chosen], mode="markers",
                                 name=f"{label} ({int(chosen.sum())})", marker=marker,
                                 hovertemplate="%{x:.1f} \u00c5<br>%{y:.3f} mag<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=points["wavelength"][chosen], y=residual[chosen], mode="markers",
                                 showlegend=False, marker=marker,
                                 hovertemplate="%{x:.1f} \u00c5<br>%{y:+.3f} mag<extra></extra>"), row=2, col=1)
    fig.add_hline(y=0, line={"color": colours["grid"], "width": 1}, row=2, col=1)
    _style(fig, theme, title or _sensitivity_title(product), show_title, height)
    fig.update_layout(showlegend=True, hovermode="closest", uirevision=product.name,
                      legend=BOTTOM_LEGEND, margin={"b": BOTTOM_LEGEND_MARGIN},
                      meta={"kind": "sensitivity", "n": int(points["wavelength"].size)})
    fig.update_yaxes(title=SENSITIVITY_AXIS, gridcolor=colours["grid"], row=1, col=1)
    fig.update_yaxes(title="\u0394 (mag)", gridcolor=colours["grid"], row=2, col=1)
    fig.update_xaxes(gridcolor=colours["grid"])
    fig.update_xaxes(title=x_title, row=2, col=1)
    return fig


# --------------------------------------------------------------------------- PNG

def png_for_file(path, *, colormap: str = "gray", width: int = 1000, zmin=None, zmax=None, percentiles=None,
                 show_saturated: bool = False, saturation=None, title: str = "", data_type=None,
                 theme: str = "dark", overlays=(), redshift: float = 0.0, show_title: bool = True,
                 height: int | None = None, compare=()) -> bytes:
    """A PNG of the file, exactly ``width`` pixels wide (matplotlib Agg). Raises ViewerError."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = int(width)
    if not 100 <= width <= 6000:
        raise ViewerError(f"width must be between 100 and 6000 pixels, not {width}")
    product = read_product(path)
    colours = THEMES.get(theme, THEMES["dark"])
    dpi = 100
    if height is None:
        if product.kind == "image":
            ny, nx = product.data.shape
            aspect = ny / nx if not is_spectroscopic(product.header) else min(max(ny / nx, 0.4), 0.75)
            height = int(width * min(max(aspect, 0.35), 1.0)) + 60
        else:
            height = int(width * 0.5)
    height = int(height)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=colours["mpl_bg"])
    FigureCanvasAgg(figure)
    default = _sensitivity_title(product) if product.extras.get("points") else default_title(product.header,
                                                                                              product.name)
    title_text = (title or default).replace("<br>", "\n") if show_title else ""
    text_colour = colours["text"]
    # Fixed margins in pixels (a layout engine costs more than the drawing itself).
    top = (24 + 18 * title_text.count("\n") + 18) if title_text else 14
    image = product.kind == "image"
    box = _Box(width, height, left=72 if image else 88, right=84 if image else 18, top=top,
               bottom=48 if image else 48 + PNG_LEGEND_PX)
    if product.kind == "image":
        _png_image(figure, product, colormap, zmin, zmax, percentiles, show_saturated, saturation, width,
                   colours, box)
    else:
        _png_spectrum(figure, product, data_type, colours, overlays, redshift, box, compare)
    if title_text:
        figure.text(0.5, 1 - 6 / height, title_text, color=text_colour, fontsize=12, ha="center", va="top")
    for ax in figure.axes:
        ax.tick_params(colors=text_colour, labelsize=9)
        ax.xaxis.label.set_color(text_colour)
        ax.yaxis.label.set_color(text_colour)
        ax.title.set_color(text_colour)
        for spine in ax.spines.values():
            spine.set_color(colours["grid"] if theme == "dark" else "#888888")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor=colours["mpl_bg"], pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


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


def _png_image(figure, product, colormap, zmin, zmax, percentiles, show_saturated, saturation, width, colours,
               box: _Box):
    data = product.data
    ny, nx = data.shape
    small, factor = downsample(data, max(width * width // 2, 100_000))
    low, high = display_limits(small, zmin=zmin, zmax=zmax, percentiles=percentiles)
    ax = figure.add_axes(box.rect())
    ax.set_facecolor(colours["mpl_axes"])
    extent = (-0.5, small.shape[1] * factor - 0.5, -0.5, small.shape[0] * factor - 0.5)
    shown = ax.imshow(small, origin="lower", cmap=_MPL_CMAPS[colormap_key(colormap)], vmin=low, vmax=high,
                      extent=extent, aspect="auto" if is_spectroscopic(product.header) else "equal",
                      interpolation="nearest")
    cax = figure.add_axes((1 - (box.right - 8) / box.width, box.bottom / box.height, 14 / box.width,
                           1 - (box.top + box.bottom) / box.height))
    bar = figure.colorbar(shown, cax=cax)
    bar.ax.tick_params(colors=colours["text"], labelsize=8)
    bar.outline.set_visible(False)
    if show_saturated:
        level = saturation_level(product.header, saturation)
        mask = _block_any(np.asarray(data >= level), factor)
        if mask.any():
            overlay = np.zeros(mask.shape + (4,), dtype=np.float32)
            overlay[mask] = (1.0, 0.18, 0.18, 1.0)
            ax.imshow(overlay, origin="lower", extent=extent, aspect=ax.get_aspect(), interpolation="nearest")
        ax.set_title(f"saturated (\u2265 {level:g} ADU): {int(np.count_nonzero(data >= level)):,} px",
                     fontsize=9, loc="right", color=SATURATED_COLOUR)
    x_title, y_title = image_axis_titles(product.header)
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)


def _png_spectrum(figure, product, data_type, colours, overlays, redshift, box: _Box, compare=()):
    flux, x, wavelength, x_title = _spectrum_axes(product, data_type)
    lines = product.lines
    points = product.extras.get("points")
    show_residuals = bool(points) or bool(lines) and wavelength is not None and is_arc(product.header)
    if show_residuals:
        plot_height = box.height - box.top - box.bottom
        lower = int(plot_height * 0.27)
        gap = 34
        ax = figure.add_axes(box.rect(bottom_px=box.bottom + lower + gap))
        residual_ax = figure.add_axes(box.rect(top_px=box.height - box.bottom - lower), sharex=ax)
        ax.tick_params(labelbottom=False)
    else:
        ax = figure.add_axes(box.rect())
    for axis in figure.axes:
        axis.set_facecolor(colours["mpl_axes"])
        axis.grid(True, color=colours["grid"], lw=0.5)
    sigma = product.uncertainty
    if sigma is not None and np.isfinite(sigma).any():
        ax.fill_between(x, flux - sigma, flux + sigma, color=colours["line"], alpha=0.25, lw=0,
                        label="uncertainty (1\u03c3)")
    ax.plot(x, flux, color=colours["line"], lw=0.9, label="fit" if points else "flux")
    for index, (label, other_x, other_flux) in enumerate(compared_spectra(compare, data_type)):
        ax.plot(other_x, other_flux, color=COMPARE_COLOURS[index % len(COMPARE_COLOURS)], lw=0.8, alpha=0.85,
                label=label)
    ax.set_ylabel(SENSITIVITY_AXIS if points else flux_title(product.header, data_type))
    if points:
        used = points["used"].astype(bool)
        residual = points["mag"] - points["fit"]
        for label, chosen, style in (("bands used", used, {"marker": "o", "color": "#5cb85c", "ms": 4}),
                                     ("rejected or masked", ~used, {"marker": "x", "color": "#d9534f", "ms": 5})):
            ax.plot(points["wavelength"][chosen], points["mag"][chosen], ls="none", label=f"{label} "
                    f"({int(chosen.sum())})", **style)
            residual_ax.plot(points["wavelength"][chosen], residual[chosen], ls="none", **style)
        residual_ax.axhline(0, color=colours["grid"], lw=1)
        residual_ax.set_ylabel("\u0394 (mag)")
        residual_ax.set_xlabel(x_title)
        residual_ax.set_title(f"Residuals: {_sensitivity_text(points)}", fontsize=9, color=colours["text"])
    elif show_residuals:
        line_w = lines["wavelength"]
        residual = lines.get("residual", np.zeros_like(line_w))
        arc_colour = spectrum_overlays.OVERLAYS["arc"][1]
        ax.plot(line_w, np.interp(line_w, x, flux), "v", color=arc_colour, ms=5, label=f"lines used ({len(line_w)})")
        residual_ax.axhline(0, color=colours["grid"], lw=1)
        residual_ax.plot(line_w, residual, "o", color=arc_colour, ms=3.5)
        residual_ax.set_ylabel("\u0394\u03bb (\u00c5)")
        residual_ax.set_xlabel(x_title)
        rejected = lines.get("rejected") or {}
        if len(rejected.get("wavelength", [])):
            ax.plot(rejected["wavelength"], np.interp(rejected["wavelength"], x, flux), "x", color=REJECTED_COLOUR,
                    ms=6, label=f"lines rejected ({len(rejected['wavelength'])})")
            residual_ax.plot(rejected["wavelength"], rejected["residual"], "x", color=REJECTED_COLOUR, ms=5)
        residual_ax.set_title(f"Residuals: {_rms_text(lines, product.header)}", fontsize=9)
    else:
        ax.set_xlabel(x_title)
    if wavelength is not None and overlays:
        spectrum_overlays.add_matplotlib_overlays(ax, [o for o in overlays if not (o == "arc" and show_residuals)],
                                                  wavelength=wavelength, redshift=redshift, lines_table=lines)
    ax.set_xlim(float(np.nanmin(x)), float(np.nanmax(x)))
    # under the plot, as in the interactive figure: over it, it covered the overlays' labels
    handles, labels = ax.get_legend_handles_labels()
    legend = figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 6),
                           fontsize=8, frameon=False)
    for text in legend.get_texts():
        text.set_color(colours["text"])


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()

