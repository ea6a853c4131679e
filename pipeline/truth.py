"""How close calibrated spectra land to a generated night's truth (``pipeline.simulate``).

Each emission line of the matching target is fitted with a Gaussian and its offset from the true
wavelength is converted to binned detector pixels with the true local dispersion.  Used by the
tests and by ``bench/night.py`` (which also scores goodman-pipeline's products: both formats are read).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.polynomial import Polynomial
from scipy.optimize import curve_fit


def read_calibrated(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength, flux) of a calibrated 1D product: goodman's BinTable or our linear-WCS primary."""
    with fits.open(path) as hdus:
        if "SPECTRUM" in hdus and "WAVELENGTH" in hdus["SPECTRUM"].columns.names:
            table = hdus["SPECTRUM"].data
            return np.asarray(table["WAVELENGTH"], float), np.asarray(table["INTENSITY"], float)
        header, flux = hdus[0].header, np.asarray(hdus[0].data, float)
    wave = header["CRVAL1"] + (np.arange(flux.size) + 1 - header.get("CRPIX1", 1.0)) * header["CDELT1"]
    return wave, flux


def gaussian_centre(wave: np.ndarray, flux: np.ndarray) -> float | None:
    def model(x, amplitude, centre, sigma, level):
        return amplitude * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + level

    step = float(np.median(np.abs(np.diff(wave))))
    start = (np.ptp(flux), wave[np.argmax(flux)], 1.5 * step, np.min(flux))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a poorly constrained fit is judged by its centre below
            parameters = curve_fit(model, wave, flux, p0=start, maxfev=5000)[0]
    except (RuntimeError, ValueError):
        return None
    centre = float(parameters[1])
    return centre if wave.min() < centre < wave.max() and parameters[0] > 0 else None


def line_offsets(wave, flux, target_truth: dict, dispersion) -> list[dict]:
    """Fitted minus true position of each emission line, in binned pixels (None when the fit fails)."""
    order = np.argsort(wave)
    wave, flux = wave[order], flux[order]
    slope = dispersion.deriv()
    found = []
    for line in target_truth["emission_lines"]:
        per_pixel = abs(float(slope(line["x"])))  # Angstrom per binned pixel at the line
        if not wave[10] < line["wavelength"] < wave[-10]:
            continue
        window = np.abs(wave - line["wavelength"]) < 5 * per_pixel
        if window.sum() < 5:
            continue
        centre = gaussian_centre(wave[window], flux[window])
        found.append({"wavelength": line["wavelength"],
                      "offset_px": None if centre is None else (centre - line["wavelength"]) / per_pixel})
    return found


def best_target(wave, flux, truth_file: dict) -> tuple[int, list[dict]]:
    """Target numbers differ between pipelines and truth: take the truth target the spectrum matches best."""
    dispersion = Polynomial(truth_file["dispersion"]["coefficients"])
    candidates = []
    for index, target in enumerate(truth_file["targets"]):
        offsets = line_offsets(wave, flux, target, dispersion)
        good = [abs(o["offset_px"]) for o in offsets if o["offset_px"] is not None]
        candidates.append((np.median(good) if good else np.inf, -len(good), index, offsets))
    score, _, index, offsets = min(candidates, key=lambda c: (c[0], c[1]))
    return index, offsets


def accuracy(products: list[tuple[Path, str]], truth: dict) -> dict:
    """Line offsets of every (calibrated science product, raw file name) pair."""
    per_product, offsets, failed = [], [], 0
    for path, raw_name in products:
        wave, flux = read_calibrated(path)
        index, lines = best_target(wave, flux, truth["files"][raw_name])
        good = [o["offset_px"] for o in lines if o["offset_px"] is not None]
        failed += sum(o["offset_px"] is None for o in lines)
        offsets += [abs(o) for o in good]
        per_product.append({"file": path.name, "raw": raw_name, "truth_target": index + 1,
                            "lines_measured": len(good),
                            "median_abs_offset_px": round(float(np.median(np.abs(good))), 3) if good else None,
                            "max_abs_offset_px": round(float(np.max(np.abs(good))), 3) if good else None,
                            "offsets_px": [round(o, 3) for o in good]})
    summary = {"spectra": len(products), "lines_measured": len(offsets), "lines_not_fitted": failed}
    if offsets:
        summary.update(median_abs_offset_px=round(float(np.median(offsets)), 3),
                       p90_abs_offset_px=round(float(np.percentile(offsets, 90)), 3),
                       max_abs_offset_px=round(float(np.max(offsets)), 3))
    return {"summary": summary, "per_product": per_product}
