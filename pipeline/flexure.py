"""Flexure: how far a science frame sits from its arc along the dispersion, from its night-sky lines.

Goodman flexes as the telescope tracks, so an arc taken an hour before a science frame can be a
pixel or two off.  The sky beside each target (the background that extraction subtracted, stored
in the extracted product's SKY extension) shows emission lines of known air wavelength
(``data/sky_lines.csv``).  Each is looked for within a bounded window around the position the
arc's solution predicts, centroided with a Gaussian, and the per-line shifts are combined.

No correction beats a wrong one: a line counts only when it is detected, alone (no listed or
unlisted neighbour, no wider than the arc's lines), clear of the target's own emission lines and
well centroided; lines that disagree are rejected; the shift is applied only when at least
``min_lines`` lines agree, its uncertainty is small, and it differs significantly from zero.
Otherwise the arc's solution is kept and the record says why.

Shift convention: a feature at pixel ``p`` of the arc lies at ``p + shift_px`` in the science
frame, so the science frame's solution is ``arc_solution(p - shift_px)``.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from pipeline.wavelength import Peak, WavelengthSolution, fit_peaks, lower_envelope, pixel_noise

SKY_LINES_FILE = Path(__file__).parent / "data" / "sky_lines.csv"
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class SkyLine:
    wavelength: float  # Angstrom, air
    species: str
    source: str


@lru_cache(maxsize=1)
def sky_lines() -> tuple[SkyLine, ...]:
    """The night-sky line list (``data/sky_lines.csv``, its header names the sources)."""
    with SKY_LINES_FILE.open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return tuple(SkyLine(float(row["wavelength"]), row["species"], row["source"]) for row in rows)


@dataclass(frozen=True)
class FlexureOptions:
    max_shift_unbinned_px: float = 8.0  # search window: +-4 binned (2x2) pixels around the arc's prediction
    detection_snr: float = 8.0  # a line's peak above the local sky, in pixel-noise units
    blend_fwhm: float = 2.5  # a listed neighbour this close (in line FWHM) pulls the centroid: skip both
    neighbour_fraction: float = 0.1  # an unlisted peak this bright (relative) within blend_fwhm: skip
    width_range: tuple[float, float] = (0.7, 1.4)  # line sigma relative to the arc's: wider is a blend
    max_line_error_px: float = 0.2  # a line centroided worse than this is left out
    line_floor_px: float = 0.02  # added in quadrature per line: the list's wavelengths, the line's shape
    # Added in quadrature to the mean: the arc solution's own zero point is known no better (without flexure,
    # calibrated emission lines land 0.01-0.02 px from the truth: bench/night.py).
    solution_floor_px: float = 0.015
    clip_sigma: float = 3.0  # a line this far (in its own and the others' errors) from the others is an outlier
    min_lines: int = 2
    max_uncertainty_px: float = 0.1
    significance: float = 2.0  # a shift below this many uncertainties is indistinguishable from none


@dataclass
class _Candidate:
    line: SkyLine
    expected_px: float
    peak: int = -1             # brightest pixel near the expected place
    peak_px: float = np.nan
    error_px: float = np.inf
    snr: float = 0.0

    @property
    def shift_px(self) -> float:
        return self.peak_px - self.expected_px

    def as_record(self) -> dict:
        return {"wavelength": self.line.wavelength, "species": self.line.species,
                "expected_px": round(self.expected_px, 3), "pixel": round(self.peak_px, 3),
                "shift_px": round(self.shift_px, 4), "error_px": round(self.error_px, 4), "snr": round(self.snr, 1)}


def measure_shift(sky, solution: WavelengthSolution, line_fwhm_px: float, *, binning: int = 1, target_flux=None,
                  options: FlexureOptions | None = None) -> dict:
    """The shift of the frame whose sky this is against the arc ``solution`` came from.

    ``sky``: the sky per column under the aperture (ADU); ``line_fwhm_px``: the arc lines' FWHM;
    ``target_flux``: the sky-subtracted target, whose own emission lines must not be taken for sky.
    Record: {"shift_px", "uncertainty_px", "lines": [used], "rejected": [{"wavelength", "reason"}],
    "applied": False, "reason"}; ``reason`` is None when the shift can be applied.
    """
    options = options or FlexureOptions()
    record = {"shift_px": None, "uncertainty_px": None, "lines": [], "rejected": [], "applied": False,
              "reason": None}
    if sky is None or not np.any(np.asarray(sky)):
        record["reason"] = "no sky: the extracted spectrum has no background band beside its target"
        return record
    sky = np.nan_to_num(np.asarray(sky, dtype=float))
    residual = sky - lower_envelope(sky, 101)
    noise = pixel_noise(residual)
    target_lines = None if target_flux is None else _emission_lines(target_flux, line_fwhm_px, options)
    sigma = line_fwhm_px / _FWHM_PER_SIGMA
    window = options.max_shift_unbinned_px / max(binning, 1)
    found = [(candidate, reason or _peak(candidate, residual, noise, window, options))
             for candidate, reason in _candidates(solution, len(sky), line_fwhm_px, window, options)]
    detected = [candidate for candidate, reason in found if reason is None]
    fits = iter(fit_peaks(residual, [candidate.peak for candidate in detected], sigma))  # all lines at once
    accepted = []
    for candidate, reason in found:
        if reason is None:
            reason = _centroid(candidate, next(fits), residual, noise, target_lines, sigma, window, options)
        if reason is None:
            accepted.append(candidate)
        else:
            record["rejected"].append({"wavelength": candidate.line.wavelength, "reason": reason})
    used, outliers = _reject_outliers(accepted, options)
    record["rejected"] += [{"wavelength": c.line.wavelength, "reason": f"disagrees with the other lines "
                            f"(shift {c.shift_px:+.2f} px)"} for c in outliers]
    record["lines"] = [c.as_record() for c in used]
    if len(used) < options.min_lines:
        if outliers and len(accepted) >= options.min_lines:
            record["reason"] = "the sky lines disagree about the shift"
        else:
            record["reason"] = (f"only {len(used)} sky line(s) usable, at least {options.min_lines} needed "
                                "(short exposure, blue setup or bright sky)")
        return record
    shift, uncertainty = _combine(used, options)
    uncertainty = float(np.hypot(uncertainty, options.solution_floor_px))
    record.update(shift_px=round(shift, 4), uncertainty_px=round(uncertainty, 4))
    if uncertainty > options.max_uncertainty_px:
        record["reason"] = f"uncertainty {uncertainty:.3f} px is above {options.max_uncertainty_px} px"
    elif abs(shift) < options.significance * uncertainty:
        record["reason"] = f"shift {shift:+.3f} +- {uncertainty:.3f} px is consistent with none"
    return record


def _candidates(solution: WavelengthSolution, n_pixels: int, fwhm: float, window: float,
                options: FlexureOptions):
    """(candidate, reason it cannot be used or None) for each listed line the arc puts on the detector."""
    grid = np.arange(n_pixels, dtype=float)
    wavelengths = solution(grid)
    order = np.argsort(wavelengths)
    listed = np.array([line.wavelength for line in sky_lines()])
    margin = window + 2 * fwhm
    for line in sky_lines():
        expected = float(np.interp(line.wavelength, wavelengths[order], grid[order], left=-np.inf, right=np.inf))
        if not margin <= expected <= n_pixels - 1 - margin:
            continue
        candidate = _Candidate(line, expected)
        per_pixel = abs(float(np.gradient(wavelengths)[round(expected)]))
        close = np.abs(listed - line.wavelength) < options.blend_fwhm * fwhm * per_pixel
        if close.sum() > 1:
            neighbour = listed[close & (listed != line.wavelength)][0]
            yield candidate, f"blends with {neighbour:.2f} A at this resolution"
        else:
            yield candidate, None


def _emission_lines(flux, line_fwhm_px: float, options: FlexureOptions) -> np.ndarray:
    """The target's significant emission lines alone: a running median a few lines wide takes away its
    continuum (a bright star's slopes and absorption bands are not lines), its noise is set to zero."""
    flux = np.nan_to_num(np.asarray(flux, dtype=float))
    lines = flux - ndimage.median_filter(flux, size=int(7 * line_fwhm_px) | 1, mode="nearest")
    return np.where(lines > options.detection_snr * pixel_noise(lines), lines, 0.0)


def _peak(candidate: _Candidate, residual: np.ndarray, noise: float, window: float,
          options: FlexureOptions) -> str | None:
    """Find ``candidate``'s brightest pixel in its search window (filling in ``peak`` and ``snr``); the reason
    it is unusable, or None."""
    low = int(np.ceil(candidate.expected_px - window))
    high = int(np.floor(candidate.expected_px + window)) + 1
    candidate.peak = low + int(np.argmax(residual[low:high]))
    candidate.snr = float(residual[candidate.peak] / noise)
    if candidate.snr < options.detection_snr:
        return f"not detected (S/N {candidate.snr:.1f} < {options.detection_snr:g})"
    if candidate.peak in (low, high - 1):
        return "brightest at the edge of the search window (something else is brighter nearby)"
    return None


def _centroid(candidate: _Candidate, fit: Peak | None, residual: np.ndarray, noise: float,
              target_lines: np.ndarray | None, sigma: float, window: float, options: FlexureOptions) -> str | None:
    """Judge the Gaussian ``fit`` of a detected ``candidate`` (filling in its centroid); the reason it is
    unusable, or None."""
    if fit is None:
        return "Gaussian fit failed"
    if not options.width_range[0] * sigma <= fit.sigma <= options.width_range[1] * sigma:
        return f"width {fit.sigma / sigma:.2f} x the arc lines' (a blend)"
    if abs(fit.centre - candidate.expected_px) > window:
        return "centroid outside the search window"
    reach = options.blend_fwhm * sigma * _FWHM_PER_SIGMA
    span = slice(max(0, int(fit.centre - reach - 2)), int(fit.centre + reach + 3))
    others, _ = signal.find_peaks(residual[span], height=max(options.neighbour_fraction * fit.amplitude,
                                                              options.detection_snr * noise))
    others = others + span.start
    if np.any(np.abs(others - fit.centre) > 2 * sigma):
        return "a neighbouring line would pull the centroid"
    if target_lines is not None:
        # The target's light reaches the sky bands at about a per mille: a target line fainter than the sky
        # line cannot move it; a brighter one (or an extended source's) might.
        near = np.abs(np.arange(len(target_lines)) - fit.centre) <= reach + window
        if target_lines[near].max(initial=0.0) > fit.amplitude:
            return "the target's own emission line is nearby"
    if fit.centre_error > options.max_line_error_px:
        return f"centroid uncertain ({fit.centre_error:.2f} px)"
    candidate.peak_px, candidate.error_px = fit.centre, fit.centre_error
    return None


def _errors(candidates: list[_Candidate], options: FlexureOptions) -> np.ndarray:
    return np.hypot([c.error_px for c in candidates], options.line_floor_px)


def _combine(candidates: list[_Candidate], options: FlexureOptions) -> tuple[float, float]:
    """Weighted mean shift; its uncertainty from the errors, scaled up when the scatter exceeds them."""
    shifts = np.array([c.shift_px for c in candidates])
    weights = 1.0 / _errors(candidates, options) ** 2
    mean = float(np.sum(weights * shifts) / weights.sum())
    uncertainty = 1.0 / np.sqrt(weights.sum())
    if len(shifts) > 1:
        reduced_chi2 = float(np.sum(weights * (shifts - mean) ** 2)) / (len(shifts) - 1)
        uncertainty *= max(1.0, np.sqrt(reduced_chi2))
    return mean, float(uncertainty)


def _reject_outliers(candidates: list[_Candidate], options: FlexureOptions
                     ) -> tuple[list[_Candidate], list[_Candidate]]:
    """Drop, one at a time, the line farthest from the mean of the others (leave-one-out), while it
    is beyond ``clip_sigma``.  Two lines that disagree leave nothing: there is no telling which is right."""
    kept, outliers = list(candidates), []
    while len(kept) >= 2:
        errors = _errors(kept, options)
        deviations = []
        for index, candidate in enumerate(kept):
            shift, uncertainty = _combine(kept[:index] + kept[index + 1:], options)
            deviations.append(abs(candidate.shift_px - shift) / np.hypot(errors[index], uncertainty))
        worst = int(np.argmax(deviations))
        if deviations[worst] <= options.clip_sigma:
            break
        if len(kept) == 2:
            return [], outliers + kept
        outliers.append(kept.pop(worst))
    if len(outliers) > len(kept):  # most lines disagree with the few kept: trust none
        return [], outliers + kept
    return kept, outliers


def shifted_solution(solution: WavelengthSolution, shift_px: float) -> WavelengthSolution:
    """The arc's solution seen in a frame shifted by ``shift_px``: wavelength(p) = arc(p - shift_px).

    A zero-point change only (the model's domain moves with the frame); the arc lines move with it,
    so their residuals, and the RMS, are the arc's."""
    model = solution.model.copy()
    model.domain = tuple(float(edge) + shift_px for edge in solution.model.domain)
    return dataclasses.replace(solution, model=model, pixels=solution.pixels + shift_px)


def summary(record: dict) -> str:
    """One line for people: the shift applied, or why not (``n_lines`` may stand for ``lines``)."""
    n_lines = record.get("n_lines", len(record.get("lines") or []))
    if record.get("applied"):
        return (f"flexure {record['shift_px']:+.2f} \u00b1 {record['uncertainty_px']:.2f} px "
                f"from {n_lines} sky lines")
    return f"flexure not corrected: {record.get('reason')}"
