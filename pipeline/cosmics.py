"""Cosmic-ray rejection choices: ``lacosmic`` (astroscrappy), ``dcr`` (Pych's
DCR, an external C program), ``none``, and ``default`` which picks per binning
the way goodman-pipeline does (DCR for 1x1 serial binning, LACosmic otherwise).

This module only does numerics on arrays described by a :class:`Detector`; the
caller (``pipeline/reduce.py``) reads the header.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import astroscrappy
import numpy as np
from astropy.io import fits
from astroscrappy.utils import sepmedfilt7
from scipy import ndimage

DCR_EXECUTABLE = "dcr"
# astroscrappy's default 4.5 flags ~170 noise pixels per 2x2 frame on a
# read-noise-limited sky (its median-filtered noise model runs low there);
# 6 flags none and still catches every simulated hit (>= 1000 ADU).
LACOSMIC_SIGCLIP = 6.0
# Two passes catch every simulated hit (a third finds only what the first two uncovered around
# bright hits, which the extraction's background rejection handles) at half the time of the default 4.
LACOSMIC_ITERATIONS = 2
# How far a pixel's LACosmic verdict reaches: 7- and 9-wide medians chained (6 px), two
# dilations (2 px) and the 5x5 cleaning of a neighbour (2 px).
_LACOSMIC_REACH_PX = 10
# How far from a first-pass detection its mask can grow (two 3x3 dilations).
_LACOSMIC_GROWTH_PX = 2
# How far the possible-detection test of a pixel reaches: the Laplacian's neighbour (1 px), the 7x7 noise
# median (3 px) and the 7x7 median of the significance (3 px), and one more.
_SIGNIFICANCE_REACH_PX = 8
# Up to this many pixels, their squares are drawn one by one: cheaper than a filter over the whole frame.
_FEW_PIXELS = 1000
# Above this share of the frame in cut-outs, one pass over the whole frame is cheaper.
_LACOSMIC_MAX_CUTOUT_SHARE = 0.5
DCR_TIMEOUT_SECONDS = 60
# astroscrappy and numpy release the GIL: a frame's parts (bands, cut-outs) run on the machine's idle cores
# too. Threads wait without spinning, so they cost little when the other cores are busy.
THREADS = min(2, os.cpu_count() or 1)
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it belongs to, the pool): not across a fork

# goodman-pipeline's GenerateDcrParFile lookup table (camera, serial binning) ->
# THRESH, XRAD, YRAD, NPASS, DIAXIS, LRAD, URAD, GRAD.  Copied as data: its
# python module cannot be imported safely.
_DCR_PARAMETERS = {
    ("red", 1): (3.0, 9, 9, 5, 0, 1, 3, 1),
    ("red", 2): (4.0, 7, 9, 5, 0, 1, 3, 0),
    ("red", 3): (3.0, 9, 9, 5, 0, 1, 3, 1),
    ("blue", 1): (3.0, 8, 8, 5, 0, 1, 3, 1),
    ("blue", 2): (3.0, 9, 9, 5, 0, 1, 3, 1),
    ("blue", 3): (3.0, 9, 9, 5, 0, 1, 3, 1),
}
_DCR_KEYS = ("THRESH", "XRAD", "YRAD", "NPASS", "DIAXIS", "LRAD", "URAD", "GRAD")


class CosmicRayError(RuntimeError):
    """Cosmic-ray rejection cannot run as asked (unknown method, DCR missing or failing)."""


class Detector(NamedTuple):
    """What the rejection needs to know about the detector that took the frame."""

    gain: float          # e-/ADU
    read_noise: float    # e-
    saturation: float    # ADU
    camera: str          # INSTCONF: Red or Blue
    serial_binning: int  # binning along dispersion (first CCDSUM number)


def dcr_available() -> bool:
    return shutil.which(DCR_EXECUTABLE) is not None


def resolve_method(method: str, detector: Detector) -> tuple[str, str]:
    """Turn a requested method into the one that runs, with the reason."""
    if method not in ("default", "dcr", "lacosmic", "none"):
        raise CosmicRayError(f"unknown cosmic-ray rejection method {method!r}")
    if method != "default":
        return method, "requested"
    if detector.serial_binning == 1 and dcr_available():
        return "dcr", "default for 1x1 binning"
    if detector.serial_binning == 1:
        return "lacosmic", "default for 1x1 is dcr, but no dcr executable is on PATH"
    return "lacosmic", f"default for serial binning {detector.serial_binning}"


def lacosmic(data: np.ndarray, detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    """Clean ``data`` (ADU, bias subtracted, sky included) with astroscrappy's LACosmic.

    Same mask as astroscrappy's ``detect_cosmics(niter=LACOSMIC_ITERATIONS)``, at a fraction of its
    time: its median filters, run over the whole frame, cost ~0.7 s a pass on one core, yet only a
    few thousand pixels of a frame can be detections.  Each pass finds those pixels with
    astroscrappy's own Laplacian signal-to-noise test (:func:`_possible_detections`) and runs
    astroscrappy on cut-outs around them.  A later pass can only flag pixels near what the previous
    pass cleaned (everything else sees the same data as before), so it looks only there, and tests
    only there which pixels can be detections (:func:`_possible_near`).
    """
    data = np.asarray(data, dtype=np.float32)
    options = {"gain": detector.gain, "readnoise": detector.read_noise,
               # astroscrappy compares saturation with the data after converting to electrons
               "satlevel": detector.saturation * detector.gain,
               "sigclip": LACOSMIC_SIGCLIP, "sepmed": True, "cleantype": "meanmask"}
    mask = np.zeros(data.shape, dtype=bool)
    cleaned, changed = data, None  # before the first pass, anything may change
    for _ in range(LACOSMIC_ITERATIONS):
        if changed is None:
            region = _near(_possible_everywhere(cleaned, detector), _LACOSMIC_GROWTH_PX)
        else:
            reach = _near(changed, _LACOSMIC_REACH_PX)
            possible = _possible_near(cleaned, _near(reach, _LACOSMIC_GROWTH_PX), detector)
            region = _near(possible, _LACOSMIC_GROWTH_PX) & reach
        changed = _flags_within(cleaned, region, options) & ~mask
        if not changed.any():
            break
        mask |= changed
        cleaned = _clean(data, mask, detector.saturation)
    return cleaned, mask


def _near(pixels: np.ndarray, distance: int) -> np.ndarray:
    """Pixels within ``distance`` px (a square) of any of ``pixels``."""
    ys, xs = np.nonzero(pixels)
    if ys.size > _FEW_PIXELS:
        return ndimage.maximum_filter(pixels, size=2 * distance + 1)
    near = np.zeros_like(pixels, dtype=bool)
    for y, x in zip(ys, xs):
        near[max(y - distance, 0):y + distance + 1, max(x - distance, 0):x + distance + 1] = True
    return near


def _possible_detections(data: np.ndarray, detector: Detector) -> np.ndarray:
    """Every pixel that can pass astroscrappy's first test (S' > sigclip), and a few more.

    astroscrappy's S' is L+ / (2 noise) minus its 7x7 separable median, with L+ the positive
    Laplacian of the 2x-subsampled frame (missing neighbours count as 0) and noise the 7x7
    separable median of the variance.  L+ and noise are computed here as astroscrappy does; the
    median of S is taken only where S alone passes (frame borders, where astroscrappy's median keeps
    the raw value, stay possible).  The 5 % margin absorbs rounding: extra pixels cost time, not
    accuracy.
    """
    threshold = 0.95 * LACOSMIC_SIGCLIP
    electrons = (data * np.float32(detector.gain)).astype(np.float32)
    noise = np.sqrt(np.maximum(sepmedfilt7(electrons + np.float32(detector.read_noise ** 2)), 1e-5))
    padded = np.pad(electrons, 1)
    centre = padded[1:-1, 1:-1]
    laplacian = np.zeros_like(electrons)
    # each of a pixel's four subpixels sees it twice, one row neighbour and one column neighbour
    for row_neighbour in (padded[1:-1, :-2], padded[1:-1, 2:]):
        for column_neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1]):
            laplacian += np.maximum(2 * centre - row_neighbour - column_neighbour, 0)
    significance = laplacian / 4 / (2 * noise)
    possible = significance > threshold
    ys, xs = np.nonzero(possible)
    half = 3
    inner = (ys >= half) & (ys < data.shape[0] - half) & (xs >= half) & (xs < data.shape[1] - half)
    ys, xs = ys[inner], xs[inner]
    offsets = np.arange(-half, half + 1)
    windows = significance[ys[:, None, None] + offsets[None, :, None], xs[:, None, None] + offsets[None, None, :]]
    # rows first, then columns: astroscrappy's separable median
    background = np.median(np.median(windows, axis=2), axis=1)
    too_smooth = significance[ys, xs] - background <= threshold
    possible[ys[too_smooth], xs[too_smooth]] = False
    return possible


def _each(function, items: list) -> list:
    """``function`` over ``items``, on :data:`THREADS` threads."""
    global _pool
    if THREADS < 2 or len(items) < 2:
        return [function(item) for item in items]
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="gsp-cosmics"))
    return list(_pool[1].map(function, items))


def _possible_everywhere(data: np.ndarray, detector: Detector) -> np.ndarray:
    """:func:`_possible_detections` of the whole frame, in :data:`THREADS` bands of rows, each computed with
    the rows its test reaches beyond it."""
    edges = np.linspace(0, data.shape[0], THREADS + 1).astype(int)

    def band(bounds: tuple[int, int]) -> np.ndarray:
        start, stop = bounds
        low, high = max(start - _SIGNIFICANCE_REACH_PX, 0), min(stop + _SIGNIFICANCE_REACH_PX, data.shape[0])
        return _possible_detections(data[low:high], detector)[start - low:stop - low]
    return np.concatenate(_each(band, list(zip(edges[:-1], edges[1:]))))


def _possible_near(data: np.ndarray, wanted: np.ndarray, detector: Detector) -> np.ndarray:
    """:func:`_possible_detections` on the pixels ``wanted`` (False elsewhere)."""
    return _within(data, wanted, _SIGNIFICANCE_REACH_PX, lambda part: _possible_detections(part, detector),
                   whole=lambda image: _possible_everywhere(image, detector))


def _flags_within(image: np.ndarray, region: np.ndarray, options: dict) -> np.ndarray:
    """astroscrappy's one-pass mask of ``image`` inside ``region``."""
    return _within(image, region, _LACOSMIC_REACH_PX,
                   lambda part: astroscrappy.detect_cosmics(part, niter=1, **options)[0])


def _within(image: np.ndarray, region: np.ndarray, reach: int, test, whole=None) -> np.ndarray:
    """``test`` (an image -> a boolean image) on the pixels of ``region`` (False elsewhere), from cut-outs
    ``reach`` px wider than region's parts, so that each pixel's test sees what it would see on the whole
    frame; ``whole`` (default ``test``) of the whole frame when the cut-outs would cover much of it."""
    labels, _ = ndimage.label(_near(region, reach))
    boxes = ndimage.find_objects(labels)
    if sum(image[box].size for box in boxes) > _LACOSMIC_MAX_CUTOUT_SHARE * image.size:
        return (whole or test)(image) & region
    found = np.zeros(region.shape, dtype=bool)
    parts = _each(lambda box: test(image[box]), boxes)
    for label, (box, part) in enumerate(zip(boxes, parts), start=1):
        # a box can overlap another component's pixels: keep only its own
        found[box] |= part & region[box] & (labels[box] == label)
    return found


def _clean(data: np.ndarray, mask: np.ndarray, saturation: float) -> np.ndarray:
    """astroscrappy's ``meanmask`` cleaning: a flagged pixel becomes the mean of the unflagged,
    unsaturated pixels of its 5x5 box (the frame's median where there are none).  Only the flagged
    pixels' boxes are read: a frame has a few thousand, and two whole-frame filters cost ~0.08 s."""
    ys, xs = np.nonzero(mask)
    cleaned = data.copy()
    if ys.size == 0:
        return cleaned
    usable = np.pad(~mask & (data < saturation), 2)
    values = np.pad(data, 2)
    offsets = np.arange(5)
    rows, columns = ys[:, None, None] + offsets[None, :, None], xs[:, None, None] + offsets[None, None, :]
    box_usable = usable[rows, columns]
    total = np.where(box_usable, values[rows, columns].astype(np.float64), 0.0).sum(axis=(1, 2))
    count = box_usable.sum(axis=(1, 2))
    means = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    if not count.all():
        inside = usable[2:-2, 2:-2]
        means[count == 0] = float(np.median(data[inside])) if inside.any() else 0.0
    cleaned[ys, xs] = means
    return cleaned


def dcr(data: np.ndarray, detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    """Clean ``data`` with the DCR executable (built from goodman-pipeline's shipped source)."""
    executable = shutil.which(DCR_EXECUTABLE)
    if executable is None:
        raise CosmicRayError(
            "cosmic-ray method 'dcr' is unavailable: no 'dcr' executable on PATH "
            "(build it from goodman_pipeline/data/dcr_source/dcr, or choose 'lacosmic')")
    with tempfile.TemporaryDirectory(prefix="gsp-dcr-") as folder:
        work = Path(folder)
        # DCR reads dcr.par from its working directory and only float FITS
        (work / "dcr.par").write_text(_dcr_parameter_file(detector))
        fits.writeto(work / "in.fits", np.asarray(data, dtype=np.float32))
        try:
            run = subprocess.run(
                [executable, "in.fits", "out.fits", "cosmics.fits"], cwd=work,
                capture_output=True, timeout=DCR_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as error:
            raise CosmicRayError(f"dcr timed out after {DCR_TIMEOUT_SECONDS} s") from error
        if run.returncode != 0 or not (work / "out.fits").exists() or b"ERROR" in run.stdout:
            raise CosmicRayError(f"dcr failed: {_last_lines(run)}")
        cleaned = fits.getdata(work / "out.fits").astype(np.float32)
        cosmic_image = fits.getdata(work / "cosmics.fits")
    return cleaned, cosmic_image != 0


def reject(data: np.ndarray, method: str, detector: Detector) -> tuple[np.ndarray, dict]:
    """Run the resolved method; return cleaned data and a record of what was done."""
    applied, reason = resolve_method(method, detector)
    if applied == "none":
        return data, {"requested": method, "applied": "none", "reason": reason, "pixels": 0}
    clean = lacosmic if applied == "lacosmic" else dcr
    cleaned, mask = clean(data, detector)
    return cleaned, {"requested": method, "applied": applied, "reason": reason,
                     "pixels": int(np.count_nonzero(mask))}


def _dcr_parameter_file(detector: Detector) -> str:
    key = (detector.camera.strip().lower(), min(max(detector.serial_binning, 1), 3))
    values = _DCR_PARAMETERS.get(key, _DCR_PARAMETERS[("red", key[1])])
    lines = [f"{name:8s}= {value}" for name, value in zip(_DCR_KEYS, values)]
    return "\n".join(lines + ["VERBOSE = 0", "END"]) + "\n"


def _last_lines(run: subprocess.CompletedProcess) -> str:
    text = (run.stdout + run.stderr).decode(errors="replace").strip()
    return " | ".join(text.splitlines()[-3:]) or f"exit code {run.returncode}"
