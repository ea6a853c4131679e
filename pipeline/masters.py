"""The Calibrations block: master bias and master flat of one configuration.

Frames are grouped by :func:`bias_group_key` / :func:`flat_group_key`; a group
becomes a master once it holds the proposal's minimum count.  Masters are image
trimmed.  The normalized flat of a spectroscopic configuration is also slit
trimmed and carries that section (``reduce.SLIT_TRIM_KEY``), so every frame it
corrects is cut identically.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.io.fits import Header
from astropy.nddata import CCDData
from astropy.stats import mad_std
from numpy.polynomial import chebyshev

from pipeline import headers, matching, reduce
from pipeline.reduce import Frame, ReductionError, SaturationFunction
from pipeline.settings import ReductionSettings

CLIP_SIGMA = 3.0              # sigma clipping (median centre, MAD width) before the median
COMBINE_MEMORY_BYTES = 64e6   # a band of rows combined at once, per thread
MAD_TO_SIGMA = 1.482602218505602  # a normal distribution's sigma per median absolute deviation
COMBINE_THREADS = 2
_DEAD_FLAT_LEVEL = 0.05       # normalized flat pixels below this cannot be divided by


class NotEnoughFramesError(ReductionError):
    """Fewer usable frames than the proposal's minimum."""

    def __init__(self, kind: str, have: int, need: int, detail: str = ""):
        self.kind, self.have, self.need = kind, have, need
        super().__init__(f"not enough {kind} frames (have {have}, need {need}){detail}")


class MixedConfigurationError(ReductionError):
    """Frames of different configurations were handed to one master."""


def bias_group_key(header: Header) -> tuple:
    """Frames with equal keys can be combined into one master bias (the rule of pipeline.matching)."""
    return _group_key(header, matching.bias_group_key)


def flat_group_key(header: Header) -> tuple:
    """Frames with equal keys can be combined into one master flat (the rule of pipeline.matching)."""
    return _group_key(header, matching.flat_group_key)


def _group_key(header: Header, rule) -> tuple:
    try:
        return rule(headers.classify(header))
    except headers.HeaderError as error:
        raise reduce.MissingKeywordError(str(error)) from None


def build_master_bias(frames: Iterable[Frame], settings: ReductionSettings
                      ) -> tuple[CCDData, dict]:
    """Median combine (with sigma clipping) image-trimmed bias frames.

    Record: {"block": "master_bias", "group_key", "inputs", "combined",
    "image_trim_section", "combine", "noise_adu"}.
    """
    trimmed = [reduce.image_trim(ccd, settings.technique)[0]
               for ccd in _one_configuration(frames, bias_group_key, "bias")]
    _require_count("bias", len(trimmed), settings.min_bias)
    master = median_combine(trimmed)
    record = {"block": "master_bias", "group_key": list(bias_group_key(master.header)),
              "inputs": _names(trimmed), "combined": len(trimmed),
              "image_trim_section": master.header[reduce.IMAGE_TRIM_KEY],
              "combine": _COMBINE_DESCRIPTION, "noise_adu": float(mad_std(master.data))}
    master.header.add_history(f"GSP Live: master bias, {_COMBINE_DESCRIPTION} of {len(trimmed)}")
    return master, record


def build_master_flat(frames: Iterable[Frame], settings: ReductionSettings,
                      master_bias: Frame | None = None,
                      saturation_value: SaturationFunction = reduce.header_saturation
                      ) -> tuple[CCDData, CCDData, dict]:
    """Reject saturated flats, bias subtract, scale to a common level and median combine.

    Returns the master flat (ADU, image trimmed), the normalized flat (unit
    mean; slit trimmed for spectroscopy) and a record: {"block": "master_flat",
    "group_key", "inputs", "rejected_saturated": [{"file", "saturated_percent"}],
    "combined", "image_trim_section", "slit_trim_section", "bias", "combine",
    "normalization": {...}, "warnings"}.
    """
    record: dict = {"block": "master_flat", "inputs": [], "rejected_saturated": [], "warnings": []}
    bias = _flat_bias(master_bias, settings, record)
    usable, overscans = [], []
    for raw in _one_configuration(frames, flat_group_key, "flat"):
        record["inputs"].append(raw.header.get("GSP_FNAM"))
        percent = saturated_percent(raw, saturation_value(raw.header))
        if percent > settings.saturation_threshold:
            record["rejected_saturated"].append(
                {"file": raw.header.get("GSP_FNAM"), "saturated_percent": round(percent, 3)})
            continue
        trimmed, section = reduce.image_trim(raw, settings.technique)
        overscans.append(reduce.overscan_level(raw, section))
        usable.append(_bias_subtracted(trimmed, bias))
    _require_count("flat", len(usable), settings.min_flats,
                   f"; {len(record['rejected_saturated'])} rejected as saturated")

    master = median_combine(usable, scale=_common_level_scales(usable))
    master.header.add_history(f"GSP Live: master flat, {_COMBINE_DESCRIPTION} of {len(usable)}")
    record.update(group_key=list(flat_group_key(master.header)), combined=len(usable),
                  combine=_COMBINE_DESCRIPTION, image_trim_section=master.header[reduce.IMAGE_TRIM_KEY],
                  slit_trim_section=None)
    lit = master
    if reduce.is_spectroscopy(settings):
        record["slit_trim_section"] = reduce.slit_trim_section(master, _zero_level(bias, overscans))
        lit = reduce.slit_trim(master, record["slit_trim_section"])
    normalized, record["normalization"] = normalize_flat(lit, settings)
    return master, normalized, record


def saturated_percent(ccd: CCDData, saturation: float) -> float:
    """Percentage of pixels at or above ``saturation`` (ADU, raw frame)."""
    return 100.0 * np.count_nonzero(ccd.data >= saturation) / ccd.data.size


def normalize_flat(flat: CCDData, settings: ReductionSettings) -> tuple[CCDData, dict]:
    """Divide out the lamp so only the detector (and slit) response remains, at unit mean.

    mean: by the mean.  simple: by a Chebyshev fit (order from settings) to the
    dispersion profile (median over rows), keeping the slit illumination.
    full: by a Chebyshev fit along dispersion of every row, leaving only the
    pixel-to-pixel response.  Imaging flats have no dispersion: always mean.
    """
    method = settings.flat_normalization if reduce.is_spectroscopy(settings) else "mean"
    data = np.asarray(flat.data, dtype=np.float64)
    if method == "simple":
        data = data / _chebyshev_along_dispersion(np.median(data, axis=0),
                                                  settings.flat_normalization_order)
    elif method == "full":
        data = data / _chebyshev_along_dispersion(data, settings.flat_normalization_order)
    data = data / data.mean()
    dead = data < _DEAD_FLAT_LEVEL
    data[dead] = 1.0  # leave dead pixels uncorrected rather than divide by ~0

    normalized = flat.copy()
    normalized.data = data.astype(np.float32)
    normalized.header[reduce.NORMALIZATION_KEY] = (method, "flat normalization method")
    record = {"method": method, "order": settings.flat_normalization_order
              if method in ("simple", "full") else None,
              "mean": float(normalized.data.mean()), "dead_pixels_set_to_one": int(dead.sum())}
    if method != settings.flat_normalization:
        record["reason"] = "imaging flats are normalized by their mean"
    normalized.header.add_history(f"GSP Live: normalized ({method})")
    return normalized, record


def _chebyshev_along_dispersion(values: np.ndarray, order: int) -> np.ndarray:
    """Chebyshev fit along the last axis (dispersion), evaluated: one row or all rows at once."""
    x = np.linspace(-1.0, 1.0, values.shape[-1])
    coefficients = chebyshev.chebfit(x, values.T, order)
    return chebyshev.chebval(x, coefficients)


def _one_configuration(frames: Iterable[Frame], key_function, kind: str) -> Iterator[CCDData]:
    """Load frames one at a time (callers keep only what they need), refusing a mix
    of configurations."""
    first = None
    for frame in frames:
        ccd = reduce.load_frame(frame)
        key = key_function(ccd.header)
        if first is None:
            first = key
        elif key != first:
            raise MixedConfigurationError(f"{kind} frames of different configurations: {first} and {key}")
        yield ccd


def _require_count(kind: str, have: int, need: int, detail: str = "") -> None:
    if have < need:
        raise NotEnoughFramesError(kind, have, need, detail)


def _names(ccds: list[CCDData]) -> list:
    return [ccd.header.get("GSP_FNAM") for ccd in ccds]


_COMBINE_DESCRIPTION = f"median, {CLIP_SIGMA:g}-sigma clipped (median/MAD)"


def median_combine(ccds: list[CCDData], scale: np.ndarray | None = None) -> CCDData:
    """Each pixel: the median of its frames' values (times ``scale``) after one CLIP_SIGMA clip about
    their median, sigma from the MAD: ccdproc.combine's median with median/mad_std clipping, except
    that flats are clipped at a common level (ccdproc clips before scaling, so a lamp drift of a few
    percent clips whole frames)."""
    factors = np.ones(len(ccds), dtype=np.float32) if scale is None else np.asarray(scale, dtype=np.float32)
    rows, columns = ccds[0].shape
    # a band's values, their deviations and the masks of the clip (about four float32 copies) within
    # COMBINE_MEMORY_BYTES per thread
    band_rows = max(1, int(COMBINE_MEMORY_BYTES / (4 * 4 * len(ccds) * columns)))
    bands = [(first, min(first + band_rows, rows)) for first in range(0, rows, band_rows)]
    combined = np.empty((rows, columns), dtype=np.float32)

    def combine_band(band):
        first, stop = band
        combined[first:stop] = _clipped_median([ccd.data[first:stop] for ccd in ccds], factors)

    # sorting and numpy's arithmetic release the GIL: bands combine in parallel threads
    with ThreadPoolExecutor(COMBINE_THREADS) as pool:
        list(pool.map(combine_band, bands))
    master = CCDData(combined, unit=ccds[0].unit, header=ccds[0].header.copy())
    # the master is a new file: the job layer names it, not its first input
    master.header.remove("GSP_FNAM", ignore_missing=True)
    master.header["NCOMBINE"] = (len(ccds), "frames combined")
    return master


def _clipped_median(planes: list[np.ndarray], factors: np.ndarray) -> np.ndarray:
    """The clipped median of equal-shaped ``planes`` (times ``factors``), pixel by pixel.

    Each pixel's values are sorted once: the values kept by a clip about the median are then a
    contiguous run of the sorted ones, whose middle is the clipped median."""
    count = len(planes)
    values = np.empty((planes[0].size, count), dtype=np.float32)
    for index, (plane, factor) in enumerate(zip(planes, factors)):
        values[:, index] = plane.ravel() * factor
    values.sort(axis=1)
    centre = _row_median(values)
    deviations = np.abs(values - centre[:, None])
    deviations.sort(axis=1)
    sigma = MAD_TO_SIGMA * _row_median(deviations)
    low = np.count_nonzero(values < (centre - CLIP_SIGMA * sigma)[:, None], axis=1)
    high = count - np.count_nonzero(values > (centre + CLIP_SIGMA * sigma)[:, None], axis=1)
    return _middle(values, low, high).reshape(planes[0].shape)


def _row_median(sorted_values: np.ndarray) -> np.ndarray:
    """Median of each row of ``sorted_values`` (rows sorted)."""
    count = sorted_values.shape[1]
    return (sorted_values[:, (count - 1) // 2] + sorted_values[:, count // 2]) / np.float32(2)


def _middle(sorted_values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Median of ``sorted_values[i, low[i]:high[i]]`` for each row i (rows sorted)."""
    lower = np.take_along_axis(sorted_values, ((low + high - 1) // 2)[:, None], axis=1)[:, 0]
    upper = np.take_along_axis(sorted_values, ((low + high) // 2)[:, None], axis=1)[:, 0]
    return (lower + upper) / np.float32(2)


def _common_level_scales(ccds: list[CCDData]) -> np.ndarray:
    """Scale each flat to the mean level of the set, so lamp drifts don't bias the median."""
    levels = np.array([np.percentile(ccd.data, 75) for ccd in ccds])
    if np.any(levels <= 0):
        raise ReductionError("a flat has no signal (upper quartile <= 0)")
    return levels.mean() / levels


def _flat_bias(master_bias: Frame | None, settings: ReductionSettings, record: dict
               ) -> CCDData | None:
    bias = reduce.calibration_to_apply(master_bias, settings, "bias", record)
    if bias is None:
        return None
    bias, _ = reduce.image_trim(bias, settings.technique)
    record["bias"] = {"applied": True, "file": bias.header.get("GSP_FNAM")}
    return bias


def _zero_level(bias: CCDData | None, overscans: list[float | None]) -> float | None:
    """The master flat's level of no light: 0 once bias subtracted, else its overscan."""
    if bias is not None:
        return 0.0
    known = [level for level in overscans if level is not None]
    return float(np.median(known)) if known else None


def _bias_subtracted(ccd: CCDData, bias: CCDData | None) -> CCDData:
    return ccd if bias is None else reduce.subtract_bias(ccd, bias)
