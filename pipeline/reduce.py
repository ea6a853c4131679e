"""The Reduce block: image trim, slit trim (spectroscopy), bias subtraction,
flat fielding and cosmic-ray rejection of one raw frame.

Sections are FITS style, 1-based and inclusive, ``[x1:x2,y1:y2]``; x is the
dispersion axis (columns), y the spatial axis (rows).  The slit-trim section
is relative to the image-trimmed frame and travels in the normalized master
flat's header (:data:`SLIT_TRIM_KEY`), so the flat and every frame it corrects
are cut identically.
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import ccdproc
import numpy as np
from astropy import units as u
from astropy.io.fits import Header
from astropy.nddata import CCDData
from astropy.stats import mad_std
from astropy.wcs import FITSFixedWarning
from scipy import ndimage, stats

from pipeline import cosmics, headers
from pipeline.timing import stage
from pipeline.settings import ReductionSettings

IMAGE_TRIM_KEY = "GSP_TRIM"   # image-trim section applied (1-based, raw frame)
SLIT_TRIM_KEY = "GSP_STRM"    # slit-trim section applied (1-based, image-trimmed frame)
PREFIX_KEY = "GSP_PREF"       # Goodman product prefix, e.g. 'cfzst_'
COSMIC_KEY = "GSP_COSM"       # cosmic-ray method applied (goodman-pipeline keyword)
NORMALIZATION_KEY = "GSP_NORM"  # flat normalization method (goodman-pipeline keyword)

# goodman-pipeline's spectroscopic trim: TRIMSEC in Goodman headers spans the
# whole readout, prescan and overscan columns included; these columns (in
# unbinned pixels) and the first row are never illuminated.
_FIRST_GOOD_COLUMN = 51
_LAST_GOOD_COLUMN = 4110
_FIRST_GOOD_ROW = 2

# Slit edges: a row is lit when its level is at least this fraction of the slit
# plateau; rows this many unbinned pixels further in are also dropped because
# the penumbra of the slit edge is too faint to divide by.
_LIT_FRACTION = 0.5
_EDGE_MARGIN_UNBINNED = 10
_MIN_SLIT_ROWS = 5
# A slit end is a step from dark to lit across the penumbra: the rows beyond the margin on either side
# (as many rows as the margin) differ by half the plateau at least and by this many standard deviations.
_EDGE_STEP_SIGMA = 5.0

Frame = CCDData | str | PathLike
SaturationFunction = Callable[[Header], float]


class ReductionError(ValueError):
    """A frame or calibration cannot be reduced as asked."""


class MissingKeywordError(ReductionError):
    """A header keyword the block needs is absent."""


class IncompatibleCalibrationError(ReductionError):
    """A master calibration does not match the frame (binning, size, slit)."""


# --- headers -----------------------------------------------------------------

def require(header: Header, *keywords: str) -> list:
    """Values of ``keywords``; raises :class:`MissingKeywordError` naming all absent ones."""
    missing = [key for key in keywords if header.get(key) in (None, "")]
    if missing:
        name = header.get("GSP_FNAM") or header.get("FILENAME") or "frame"
        raise MissingKeywordError(f"{name}: missing header keyword(s) {', '.join(missing)}")
    return [header[key] for key in keywords]


def binning(header: Header) -> tuple[int, int]:
    """(serial, parallel) binning from CCDSUM: dispersion first, spatial second."""
    (ccdsum,) = require(header, "CCDSUM")
    try:
        serial, parallel = (int(value) for value in str(ccdsum).split())
    except ValueError as error:
        raise ReductionError(f"CCDSUM {ccdsum!r} is not two whole numbers") from error
    return serial, parallel


def header_saturation(header: Header) -> float:
    """Saturation level in ADU: SATURATE when the header has it, else the camera's
    tabulated half full well for its gain and read noise, never above the 16-bit
    ceiling (some readout modes reach it first)."""
    if header.get("SATURATE") is not None:
        return float(header["SATURATE"])
    gain, read_noise = require(header, "GAIN", "RDNOISE")
    return float(headers.saturation_level(_camera(header), float(gain), float(read_noise)))


def _camera(header: Header) -> str:
    return str(header.get("INSTCONF", "")).strip()


def detector(header: Header, saturation_value: SaturationFunction = header_saturation
             ) -> cosmics.Detector:
    gain, read_noise = (float(value) for value in require(header, "GAIN", "RDNOISE"))
    return cosmics.Detector(gain=gain, read_noise=read_noise,
                            saturation=saturation_value(header),
                            camera=_camera(header),
                            serial_binning=binning(header)[0])


def is_spectroscopy(settings: ReductionSettings) -> bool:
    return settings.technique == "Spectroscopy"


def is_comparison_lamp(header: Header) -> bool:
    return headers.kind(str(header.get("OBSTYPE", ""))) == "arc"


# --- input -------------------------------------------------------------------

def load_frame(frame: Frame) -> CCDData:
    """A float32 CCDData copy of ``frame`` (a CCDData or a FITS path); the input is untouched."""
    if isinstance(frame, CCDData):
        ccd = frame.copy()
    else:
        with warnings.catch_warnings():
            # CCDData.read builds a WCS and reports header fixes nobody asked for
            warnings.simplefilter("ignore", FITSFixedWarning)
            ccd = CCDData.read(frame, unit=u.adu)
        if "GSP_FNAM" not in ccd.header:
            ccd.header["GSP_FNAM"] = Path(frame).name
    ccd.data = np.asarray(ccd.data, dtype=np.float32)
    if ccd.ndim == 3 and ccd.shape[0] == 1:  # early Goodman files (2016) carry a degenerate NAXIS3
        ccd = CCDData(ccd.data[0], unit=u.adu, meta=ccd.header)
        ccd.header.remove("NAXIS3", ignore_missing=True)
    if ccd.ndim != 2:
        raise ReductionError(f"the data have {ccd.ndim} dimensions {ccd.shape}; a Goodman frame has 2")
    # the data are physical values now: a kept BZERO would rescale them on writing
    for keyword in ("BZERO", "BSCALE"):
        ccd.header.remove(keyword, ignore_missing=True)
    return ccd


# --- sections ----------------------------------------------------------------

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def parse_section(section: str) -> tuple[int, int, int, int]:
    """'[x1:x2,y1:y2]' -> (x1, x2, y1, y2), 1-based inclusive."""
    match = _SECTION.match(str(section).strip())
    if not match:
        raise ReductionError(f"not a section: {section!r}")
    return tuple(int(value) for value in match.groups())


def format_section(x1: int, x2: int, y1: int, y2: int) -> str:
    return f"[{x1}:{x2},{y1}:{y2}]"


def image_trim_section(header: Header, shape: tuple[int, int], technique: str) -> str:
    """The image-trim section: TRIMSEC, and for spectroscopy also without the
    prescan/overscan columns and first row that Goodman's TRIMSEC keeps."""
    ny, nx = shape
    trimsec = header.get("TRIMSEC") or format_section(1, nx, 1, ny)
    x1, x2, y1, y2 = parse_section(trimsec)
    x2, y2 = min(x2, nx), min(y2, ny)
    if technique == "Spectroscopy":
        serial, _ = binning(header)
        x1 = max(x1, math.ceil(_FIRST_GOOD_COLUMN / serial))
        x2 = min(x2, _LAST_GOOD_COLUMN // serial)
        y1 = max(y1, _FIRST_GOOD_ROW)
    if x1 >= x2 or y1 >= y2:
        raise ReductionError(f"empty trim section for a {nx}x{ny} frame (TRIMSEC {trimsec})")
    return format_section(x1, x2, y1, y2)


def trim(ccd: CCDData, section: str) -> CCDData:
    """A copy of the section only (ccdproc.trim_image copies the whole frame and
    returns a view of it, which keeps the full-size array alive)."""
    x1, x2, y1, y2 = parse_section(section)
    ny, nx = ccd.shape
    if not (1 <= x1 <= x2 <= nx and 1 <= y1 <= y2 <= ny):
        raise ReductionError(f"section {section} does not fit a {nx}x{ny} frame")
    return ccd[y1 - 1:y2, x1 - 1:x2].copy()


def image_trim(ccd: CCDData, technique: str) -> tuple[CCDData, str]:
    """Trim to the image section once; a frame already trimmed is returned as is."""
    if IMAGE_TRIM_KEY in ccd.header:
        return ccd, ccd.header[IMAGE_TRIM_KEY]
    section = image_trim_section(ccd.header, ccd.shape, technique)
    trimmed = trim(ccd, section)
    trimmed.header[IMAGE_TRIM_KEY] = (section, "image trim section (raw frame)")
    return trimmed, section


def overscan_level(raw: CCDData, image_section: str) -> float | None:
    """Median of the columns the image trim drops (prescan/overscan: bias only),
    None when there are none (the frame was already trimmed)."""
    if IMAGE_TRIM_KEY in raw.header:
        return None
    x1, x2, _, _ = parse_section(image_section)
    outside = np.concatenate([raw.data[:, :x1 - 1], raw.data[:, x2:]], axis=1)
    return float(np.median(outside)) if outside.size else None


def slit_trim_section(ccd: CCDData, zero_level: float | None = 0.0) -> str:
    """Rows lit by the slit, from an image-trimmed flat (best) or frame, as a section.

    The spatial profile is a trimmed mean along dispersion (so arc lines count
    and cosmic rays do not), smoothed over 5 rows (hot rows do not count).  Rows
    below half the slit plateau above ``zero_level`` (the level of no light: 0
    after bias subtraction, else the overscan level) are unlit; the penumbra
    margin beyond them goes too, so no unlit row reaches a flat division.  With
    no zero level known, the darkest rows stand for it.  Only light spread along
    the slit (flat lamp, sky, arc) shows its ends: a frame whose lit rows do not
    end in such a step (a short exposure of a bright star: its wings, no sky) keeps
    every row, as nothing in it tells where the slit ends.
    """
    data = np.asarray(ccd.data, dtype=np.float32)
    ny, nx = data.shape
    row_means = stats.trim_mean(data[:, nx // 8: nx - nx // 8], 0.02, axis=1)
    row_means = row_means - (np.percentile(ndimage.median_filter(row_means, size=5, mode="nearest"), 1)
                             if zero_level is None else zero_level)
    profile = ndimage.median_filter(row_means, size=5, mode="nearest")
    plateau = np.percentile(profile, 90)
    if plateau <= 0:
        raise ReductionError("no illuminated slit found: the frame has no signal")
    low, high = _longest_run(profile >= _LIT_FRACTION * plateau)
    _, parallel = binning(ccd.header)
    margin = math.ceil(_EDGE_MARGIN_UNBINNED / parallel)
    if not _ends_in_steps(row_means, low, high, margin, _LIT_FRACTION * plateau):
        return format_section(1, nx, 1, ny)
    low = low + margin if low > 0 else 0
    high = high - margin if high < ny - 1 else ny - 1
    if high - low + 1 < _MIN_SLIT_ROWS:
        raise ReductionError("no illuminated slit found: lit rows are too few")
    return format_section(1, nx, low + 1, high + 1)


def _ends_in_steps(row_means: np.ndarray, low: int, high: int, margin: int, least_step: float) -> bool:
    """Whether the lit rows ``low..high`` end in slit ends wherever the frame goes on beyond them: a
    step of at least ``least_step`` that stands _EDGE_STEP_SIGMA above the noise of ``row_means`` (per
    row, from neighbour differences), onto a level that stays flat further in (a star's wing keeps
    climbing).  Levels are means of ``margin`` rows, the penumbra's ``margin`` rows left out."""
    if high - low + 1 < 3 * margin:
        return False
    noise = float(mad_std(np.diff(row_means))) / np.sqrt(2.0)
    least_step = max(least_step, _EDGE_STEP_SIGMA * noise * np.sqrt(2.0 / margin))
    ends = [(row_means, low), (row_means[::-1], row_means.size - 1 - high)]
    steps = [_step_and_rise(means, start, margin) for means, start in ends if start >= 2 * margin]
    return all(step >= least_step and rise <= _LIT_FRACTION * step for step, rise in steps)


def _step_and_rise(row_means: np.ndarray, start: int, margin: int) -> tuple[float, float]:
    """Across the lower end ``start`` of lit rows: the step (first level inside - level outside) and
    the rise beyond it (second level inside - first)."""
    outside, first, second = (row_means[start + k * margin: start + (k + 1) * margin].mean() for k in (-2, 1, 2))
    return first - outside, second - first


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of True values."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[::2], edges[1::2]
    if starts.size == 0:
        return 0, -1
    longest = int(np.argmax(stops - starts))
    return int(starts[longest]), int(stops[longest]) - 1


def slit_trim(ccd: CCDData, section: str) -> CCDData:
    """Apply a slit-trim section once; the section is kept in the header."""
    if ccd.header.get(SLIT_TRIM_KEY) == section:
        return ccd
    if SLIT_TRIM_KEY in ccd.header:
        raise IncompatibleCalibrationError(
            f"already slit trimmed to {ccd.header[SLIT_TRIM_KEY]}, asked for {section}")
    trimmed = trim(ccd, section)
    trimmed.header[SLIT_TRIM_KEY] = (section, "slit trim section (image-trimmed frame)")
    return trimmed


# --- the block -----------------------------------------------------------------

def reduce_frame(frame: Frame, settings: ReductionSettings,
                 master_bias: Frame | None = None, master_flat: Frame | None = None,
                 saturation_value: SaturationFunction = header_saturation
                 ) -> tuple[CCDData, dict]:
    """Reduce one raw frame.

    ``master_bias`` is a master bias (image trimmed); ``master_flat`` is the
    *normalized* master flat, which carries its slit-trim section.  A missing
    calibration that is not ignored is skipped and noted in the record.
    Returns the reduced frame and a record::

        {"block": "reduce", "prefix": "cfzst_", "steps": [...], "image_trim_section",
         "slit_trim_section", "bias": {...}, "flat": {...}, "cosmic_rays": {...},
         "shape": [ny, nx], "warnings": [...]}
    """
    record: dict = {"block": "reduce", "steps": [], "warnings": [],
                    "slit_trim_section": None, "bias": None, "flat": None, "cosmic_rays": None}
    with stage("read frame"):
        raw = load_frame(frame)
    with stage("read masters"):
        bias = calibration_to_apply(master_bias, settings, "bias", record)
        flat = calibration_to_apply(master_flat, settings, "flat", record)
    prefix = ""

    ccd, record["image_trim_section"] = image_trim(raw, settings.technique)
    prefix = _done(ccd, record, prefix, "t", f"image trim {record['image_trim_section']}")
    if bias is not None:
        bias, _ = image_trim(bias, settings.technique)
        _check_compatible(ccd, bias, "bias")

    if is_spectroscopy(settings):
        section = _slit_section(ccd, bias, flat, overscan_level(raw, record["image_trim_section"]))
        ccd = slit_trim(ccd, section)
        record["slit_trim_section"] = section
        prefix = _done(ccd, record, prefix, "s", f"slit trim {section}")
        if bias is not None:
            bias = slit_trim(bias, section)

    if bias is not None:
        ccd = subtract_bias(ccd, bias)
        record["bias"] = {"applied": True, "file": bias.header.get("GSP_FNAM")}
        prefix = _done(ccd, record, prefix, "z", _with_file("bias subtracted", bias))

    if flat is not None:
        ccd = _divide_flat(ccd, flat)
        record["flat"] = {"applied": True, "file": flat.header.get("GSP_FNAM")}
        prefix = _done(ccd, record, prefix, "f", _with_file("flat fielded", flat))

    with stage("cosmic rays"):
        ccd, record["cosmic_rays"] = _cosmic_rays(ccd, settings, saturation_value)
    if record["cosmic_rays"]["applied"] != "none" or is_comparison_lamp(ccd.header):
        # arcs get the 'c' anyway, as in goodman-pipeline, so arc and science names match
        prefix = _done(ccd, record, prefix, "c", f"cosmic rays: {record['cosmic_rays']['applied']}")

    record["prefix"] = prefix + "_"
    record["shape"] = list(ccd.shape)
    ccd.header[PREFIX_KEY] = (record["prefix"], "product prefix (t s z f c)")
    return ccd, record


_IGNORE_SETTING = {"bias": "ignore_bias", "flat": "ignore_flats"}


def calibration_to_apply(calibration: Frame | None, settings: ReductionSettings, name: str,
                         record: dict) -> CCDData | None:
    """The calibration ('bias' or 'flat') to apply, loaded, or None with the reason in ``record[name]``."""
    if getattr(settings, _IGNORE_SETTING[name]):
        record[name] = {"applied": False, "reason": f"{_IGNORE_SETTING[name]} is set"}
        return None
    if calibration is None:
        record[name] = {"applied": False, "reason": f"no master {name} available"}
        record["warnings"].append(f"no master {name}: frame not {name} corrected")
        return None
    return load_frame(calibration)


def _done(ccd: CCDData, record: dict, prefix: str, letter: str, description: str) -> str:
    record["steps"].append(description)
    ccd.header.add_history(f"GSP Live: {description}")
    return letter + prefix


def _with_file(description: str, calibration: CCDData) -> str:
    name = calibration.header.get("GSP_FNAM")
    return f"{description} with {name}" if name else description


def _check_binning(ccd: CCDData, calibration: CCDData, name: str) -> None:
    if binning(ccd.header) != binning(calibration.header):
        raise IncompatibleCalibrationError(
            f"master {name} binning {calibration.header['CCDSUM']} != frame {ccd.header['CCDSUM']}")


def _check_compatible(ccd: CCDData, calibration: CCDData, name: str) -> None:
    _check_binning(ccd, calibration, name)
    if calibration.shape != ccd.shape:
        raise IncompatibleCalibrationError(f"master {name} shape {calibration.shape} != frame {ccd.shape}")


def _slit_section(ccd: CCDData, bias: CCDData | None, flat: CCDData | None,
                  overscan: float | None) -> str:
    """The flat's section when there is a flat; else the frame's own lit rows."""
    if flat is not None:
        _check_binning(ccd, flat, "flat")
        if SLIT_TRIM_KEY not in flat.header:
            raise IncompatibleCalibrationError(
                "master flat has no slit-trim section: pass the normalized spectroscopic flat")
        return flat.header[SLIT_TRIM_KEY]
    if bias is not None:
        return slit_trim_section(ccd.subtract(bias, handle_meta="first_found"))
    return slit_trim_section(ccd, zero_level=overscan)


def subtract_bias(ccd: CCDData, bias: CCDData) -> CCDData:
    """Subtract a master bias trimmed like ``ccd``."""
    _check_compatible(ccd, bias, "bias")
    return ccdproc.subtract_bias(ccd, bias, add_keyword=False)


def _divide_flat(ccd: CCDData, flat: CCDData) -> CCDData:
    if NORMALIZATION_KEY not in flat.header:
        raise IncompatibleCalibrationError("master flat is not normalized: pass the normalized flat")
    _check_compatible(ccd, flat, "flat")
    if not np.all(flat.data > 0):
        raise IncompatibleCalibrationError("normalized flat has pixels <= 0: unlit rows survived")
    return ccdproc.flat_correct(ccd, flat, norm_value=1.0, add_keyword=False)


def _cosmic_rays(ccd: CCDData, settings: ReductionSettings,
                 saturation_value: SaturationFunction) -> tuple[CCDData, dict]:
    if is_comparison_lamp(ccd.header):
        record = {"requested": settings.cosmic_ray_rejection, "applied": "none",
                  "reason": "comparison lamp: lines must not be touched", "pixels": 0}
    elif settings.cosmic_ray_rejection == "none":
        # answered here so a frame without GAIN/RDNOISE can still be reduced
        record = {"requested": "none", "applied": "none", "reason": "requested", "pixels": 0}
    else:
        ccd.data, record = cosmics.reject(ccd.data, settings.cosmic_ray_rejection,
                                          detector(ccd.header, saturation_value))
    ccd.header[COSMIC_KEY] = (record["applied"], "cosmic ray rejection method")
    return ccd, record
