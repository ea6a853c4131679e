"""The pixels of a 2D frame as drawn: fewer of them (block averages), in fewer bytes, between which
limits, and which are saturated."""
from __future__ import annotations

import math

import numpy as np

from pipeline import headers
from pipeline.products import ProductError, is_finite

DEFAULT_MAX_PIXELS = 600_000
MAX_SATURATED_MARKERS = 20_000
SAMPLE_SIZE = 200_000  # pixels enough for limits
NOISE_SAMPLE_SIZE = 50_000


class FigureError(ProductError):
    """The figure cannot be drawn as asked (its width, limits or size); the message says why."""


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
        raise FigureError(f"image of {nx} x {ny} pixels is too small to show in {max_pixels} pixels")
    blocks = data[:my, :mx].reshape(my // factor, factor, mx // factor, factor)
    small = blocks.mean(axis=(1, 3), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        small = np.clip(np.rint(small), info.min, info.max).astype(data.dtype)
    else:
        small = small.astype(np.float32)
    return small, factor


def block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """A boolean mask at the resolution ``downsample`` gives: a block is set when any of its pixels is."""
    if factor == 1:
        return mask
    ny, nx = mask.shape
    my, mx = (ny // factor) * factor, (nx // factor) * factor
    return mask[:my, :mx].reshape(my // factor, factor, mx // factor, factor).any(axis=(1, 3))


def compact(values: np.ndarray) -> np.ndarray:
    """The same picture in fewer bytes for the browser: floats whose pixel noise is at least
    1 (counts in ADU or electrons) are rounded to 16-bit integers when they fit, which adds
    less than 5 % to the noise; small-valued data (normalized flats, fluxes in physical
    units) and data with NaNs stay float32."""
    if values.dtype.itemsize <= 2 or not np.issubdtype(values.dtype, np.floating):
        return values
    if not np.isfinite(values).all() or _noise(values) < 1.0:  # rounding would show
        return values.astype(np.float32, copy=False)
    low, high = float(values.min()), float(values.max())
    if -32768 <= low and high <= 32767:
        return np.rint(values).astype(np.int16)
    if 0 <= low and high <= 65535:
        return np.rint(values).astype(np.uint16)
    return values.astype(np.float32, copy=False)


def _noise(values: np.ndarray) -> float:
    """The pixel noise, from the median absolute deviation of a sample."""
    sample = _sample(values, NOISE_SAMPLE_SIZE)
    return 1.4826 * float(np.median(np.abs(sample - np.median(sample)))) if sample.size else 0.0


def _sample(values: np.ndarray, limit: int = SAMPLE_SIZE) -> np.ndarray:
    """At most about ``limit`` finite values, evenly strided, as float64."""
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
        low, high = _percentile_limits(sample, percentiles)
    else:
        low, high = _zscale_limits(sample)
    low = float(zmin) if zmin is not None and is_finite(zmin) else low
    high = float(zmax) if zmax is not None and is_finite(zmax) else high
    return (low, high) if high > low else (low, low + 1.0)


def _percentile_limits(sample: np.ndarray, percentiles) -> tuple[float, float]:
    p_low, p_high = (float(p) for p in percentiles)
    if not (0 <= p_low < p_high <= 100):
        raise FigureError(f"percentiles must satisfy 0 <= low < high <= 100, not {p_low:g}, {p_high:g}")
    low, high = (float(v) for v in np.percentile(sample, [p_low, p_high]))
    return low, high


def _zscale_limits(sample: np.ndarray) -> tuple[float, float]:
    from astropy.visualization import ZScaleInterval  # a quarter of a second to import: paid by the first image drawn

    try:
        low, high = (float(v) for v in ZScaleInterval().get_limits(sample))
    except Exception:  # degenerate data (constant frames)
        low, high = float(sample.min()), float(sample.max())
    return low, high


def saturation_level(header, saturation=None) -> float:
    """The saturation level (ADU) to highlight: given (the catalogue's), SATURATE, or the readout mode's
    (pipeline.headers.saturation_level, the one rule the catalogue follows too).

    Never above the 16-bit ceiling: rows catalogued before that rule may hold a half full well above it.
    """
    if saturation is not None and is_finite(saturation):
        return float(min(float(saturation), headers.DIGITAL_SATURATION))
    if is_finite(header.get("SATURATE")):
        return float(min(float(header["SATURATE"]), headers.DIGITAL_SATURATION))
    if is_finite(header.get("GAIN")) and is_finite(header.get("RDNOISE")):
        return float(headers.saturation_level(str(header.get("INSTCONF", "")).strip(), float(header["GAIN"]),
                                              float(header["RDNOISE"])))
    return float(headers.DIGITAL_SATURATION)
