"""Wavelength calibration of extracted Goodman spectra.

1. Rough solution: cross-correlate the extracted arc with the library lamp for
   its configuration, over a short grid of stretches, refined below a pixel.
2. Lines: find arc peaks, centroid them with a Gaussian fit and keep the clean
   (single, unsaturated-looking) ones.
3. Identification against NIST air wavelengths (never the library's own line
   list, which contains errors), Chebyshev fit with iterative sigma clipping,
   re-identification with the better solution, refit.
4. Apply: resample the science spectrum to a linear wavelength axis, conserving
   flux and propagating the uncertainty, and write a ``wcs1d-fits`` product.

Pixel coordinates are 0-based indices of the 1D arrays given (pixel ``i``
covers ``i - 0.5 .. i + 0.5``).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits
from astropy.modeling import fitting, models
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyWarning
from scipy import ndimage, signal, sparse

from pipeline import batchfit, lamps
from pipeline.fitsfiles import PRODUCT_VERIFY
from pipeline.lamps import LampError, WavelengthCalibrationError

__all__ = [
    "LampError", "WavelengthCalibrationError", "TooFewLinesError", "WavelengthOptions", "WavelengthSolution",
    "LinearSpectrum", "calibrate_arc", "apply_solution", "wavelength_calibrate", "write_product", "solution_quality",
    "Peak", "fit_peaks", "lower_envelope", "pixel_noise", "flexure_cards",
]

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# Arc lamps are weakly ionised: NIST intensities of ionised lines (measured in hotter
# sources) overstate them, which matters when judging whether a neighbour blends.
_ION_WEIGHT = 0.1


class TooFewLinesError(WavelengthCalibrationError):
    """Not enough arc lines could be identified for a trustworthy solution."""


@dataclass(frozen=True)
class WavelengthOptions:
    degree: int = 3  # Chebyshev degree of the pixel -> wavelength model
    max_stretch: float = 0.01  # cross-correlation explores scales 1 +/- this
    stretch_step: float = 0.0005
    max_shift_fraction: float = 0.15  # largest library shift, as a fraction of the spectrum
    detection_snr: float = 5.0  # peak height above the local background, in noise units
    first_tolerance_fwhm: float = 1.0  # identification window around the rough solution
    final_tolerance_fwhm: float = 0.3  # ... and around a fitted solution
    blend_fwhm: float = 1.5  # a NIST neighbour this close (and not much fainter) spoils a line
    clip_sigma: float = 3.0
    min_lines: int = 8
    library_lamp: str | None = None  # a library file chosen by hand; None: the one matching the header


@dataclass(frozen=True)
class WavelengthSolution:
    """Pixel -> wavelength (Angstrom, air) fitted to identified arc lines."""

    model: models.Chebyshev1D
    pixels: np.ndarray  # lines used
    wavelengths: np.ndarray
    n_rejected: int
    lamp: str
    # identified lines the sigma clipping rejected (kept so the residuals view can show them)
    rejected_pixels: np.ndarray = field(default_factory=lambda: np.empty(0))
    rejected_wavelengths: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __call__(self, pixels) -> np.ndarray:
        return self.model(np.asarray(pixels, dtype=float))

    @property
    def residuals(self) -> np.ndarray:
        return self.wavelengths - self(self.pixels)

    @property
    def rms_angstrom(self) -> float:
        return float(np.sqrt(np.mean(self.residuals ** 2)))

    @property
    def rejected_residuals(self) -> np.ndarray:
        return self.rejected_wavelengths - self(self.rejected_pixels)

    def lines_table(self) -> list[dict]:
        """Every identified line: the ones used, then the ones the clipping rejected."""
        return [{"pixel": float(p), "wavelength": float(w), "residual": float(r), "used": used}
                for pixels, wavelengths, residuals, used in (
                    (self.pixels, self.wavelengths, self.residuals, True),
                    (self.rejected_pixels, self.rejected_wavelengths, self.rejected_residuals, False))
                for p, w, r in zip(pixels, wavelengths, residuals)]


# When a solution is "poor" (shown as a warning on the Data page and in the API; the product is still made):
# - A Chebyshev of degree d has d + 1 free parameters. With few lines more per parameter, the fit follows
#   misidentified lines and the 3-sigma clipping has too few degrees of freedom to catch them; 4 lines per
#   parameter (16 for the default cubic) leaves 12. A right lamp gives 40-80 lines here; a wrong one about 13.
LINES_PER_PARAMETER = 4
# - Beyond the outermost lines the polynomial extrapolates: lines spanning 60 % of the detector leave 20 %
#   at each end, where a cubic's coefficient errors grow by (1.4 / 1)^3, nearly three times.
MIN_LINE_COVERAGE = 0.6
# - Gaussian centroids of unblended arc lines (FWHM 3-4 binned px, S/N > 5) are good to 0.05-0.1 px; an RMS
#   above 0.3 binned px means misidentified or blended lines or a model that does not fit.
MAX_RMS_PX = 0.3


def solution_quality(solution: WavelengthSolution, n_pixels: int) -> dict:
    """{"verdict": "good" | "poor", "why": ASCII words (a FITS card holds them), and the figures judged}:
    enough lines for the fit's free parameters, spread over enough of the detector, with a small RMS in
    binned pixels."""
    degree = int(solution.model.degree)
    ends = solution(np.array([-0.5, n_pixels - 0.5]))
    span = float(abs(ends[1] - ends[0]))
    dispersion = span / n_pixels
    used = len(solution.pixels)
    coverage = float(np.ptp(solution.pixels) / max(n_pixels - 1, 1)) if used else 0.0
    rms_px = solution.rms_angstrom / dispersion if used and dispersion else float("inf")
    needed = LINES_PER_PARAMETER * (degree + 1)
    problems = []
    if used < needed:
        problems.append(f"{used} lines for a degree-{degree} fit over {span:.0f} A (at least {needed})")
    if coverage < MIN_LINE_COVERAGE:
        problems.append(f"lines cover {coverage:.0%} of the detector (at least {MIN_LINE_COVERAGE:.0%})")
    if rms_px > MAX_RMS_PX:
        problems.append(f"RMS {rms_px:.2f} binned px ({solution.rms_angstrom:.3f} A; at most {MAX_RMS_PX} px)")
    why = "; ".join(problems) or (f"{used} lines over {coverage:.0%} of the detector, RMS {rms_px:.2f} binned px")
    return {"verdict": "poor" if problems else "good", "why": why, "lines_used": used,
            "coverage": round(coverage, 3), "rms_px": round(rms_px, 4), "degree": degree}


@dataclass(frozen=True)
class LinearSpectrum:
    """Flux on a linear wavelength axis: wavelength[i] = crval1 + i * cdelt1."""

    flux: np.ndarray
    uncertainty: np.ndarray | None
    crval1: float
    cdelt1: float
    solution: WavelengthSolution = field(repr=False)

    @property
    def wavelength(self) -> np.ndarray:
        return self.crval1 + self.cdelt1 * np.arange(len(self.flux))


@dataclass(frozen=True)
class _Rough:
    """Library-based first guess: template pixel q = (p - shift - centre) * stretch + centre."""

    shift: float
    stretch: float
    centre: float
    correlation: float
    template_wavelength: Callable[[np.ndarray], np.ndarray]  # binned library pixel -> wavelength

    def __call__(self, pixels):
        q = (np.asarray(pixels, dtype=float) - self.shift - self.centre) * self.stretch + self.centre
        return self.template_wavelength(q)


# ----------------------------------------------------------------- helpers

def serial_binning(header) -> int:
    """Binning along the dispersion (first CCDSUM number)."""
    match = re.match(r"\s*(\d+)", str(header.get("CCDSUM", "1 1")))
    return int(match.group(1)) if match else 1


def lower_envelope(flux: np.ndarray, width: int) -> np.ndarray:
    """Smooth lower envelope, so lines and their wings do not raise it."""
    low = ndimage.percentile_filter(flux, 10, size=width, mode="nearest")
    return ndimage.uniform_filter1d(low, width, mode="nearest")


def pixel_noise(residual: np.ndarray) -> float:
    """Robust pixel noise from first differences (insensitive to the lines)."""
    return float(1.4826 * np.median(np.abs(np.diff(residual))) / np.sqrt(2.0)) or 1e-12


def _line_signal(flux: np.ndarray, width: int = 101) -> np.ndarray:
    """Background-free, dynamic-range-compressed arc for cross-correlation."""
    residual = flux - lower_envelope(flux, width)
    compressed = np.sqrt(np.clip(residual / pixel_noise(residual), 0.0, None))
    compressed = ndimage.gaussian_filter1d(compressed, 1.0)
    compressed -= compressed.mean()
    return compressed / (np.linalg.norm(compressed) or 1.0)


def _parabola_vertex(y_minus: float, y0: float, y_plus: float) -> float:
    """Offset (-0.5..0.5) of the vertex of a parabola through three equally spaced points."""
    denominator = y_minus - 2.0 * y0 + y_plus
    return 0.0 if denominator >= 0 else float(np.clip(0.5 * (y_minus - y_plus) / denominator, -0.5, 0.5))


def _correlate(observed: np.ndarray, template: np.ndarray, max_lag: int) -> tuple[float, float]:
    """Best lag L (sub-pixel) with observed(p) ~ template(p - L), and the correlation there."""
    n = len(observed) + len(template)
    spectrum = np.fft.rfft(observed, n) * np.conj(np.fft.rfft(template, n))
    correlation = np.fft.irfft(spectrum, n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = correlation[lags % n]
    best = int(np.argmax(values))
    lag, peak = lags[best], values[best]
    refine = _parabola_vertex(correlation[(lag - 1) % n], peak, correlation[(lag + 1) % n])
    return float(lag + refine), float(peak)


def rough_solution(flux: np.ndarray, lamp: lamps.LibraryLamp, binning: int, options: WavelengthOptions) -> _Rough:
    """Shift and stretch of the library lamp that best match the observed arc."""
    template_flux, _ = lamp.binned(binning)
    observed = _line_signal(flux)
    template = _line_signal(template_flux)
    centre = (len(flux) - 1) / 2.0
    pixels = np.arange(len(flux), dtype=float)
    max_lag = int(options.max_shift_fraction * len(flux))
    stretches = np.arange(1.0 - options.max_stretch, 1.0 + options.max_stretch + 1e-12, options.stretch_step)
    results = []
    for stretch in stretches:
        # Template seen on the observed grid at this stretch (before the shift).
        stretched = np.interp((pixels - centre) * stretch + centre, np.arange(len(template)), template, 0.0, 0.0)
        results.append(_correlate(observed, stretched, max_lag))
    peaks = np.array([peak for _, peak in results])
    best = int(np.argmax(peaks))
    shift = results[best][0]
    stretch = stretches[best]
    if 0 < best < len(stretches) - 1:
        offset = _parabola_vertex(peaks[best - 1], peaks[best], peaks[best + 1])
        stretch += offset * options.stretch_step
        neighbour = best + (1 if offset > 0 else -1)
        shift += abs(offset) * (results[neighbour][0] - shift)
    return _Rough(shift=shift, stretch=float(stretch), centre=centre, correlation=float(peaks[best]),
                  template_wavelength=lambda q: lamp.wavelength(np.asarray(q) * binning + (binning - 1) / 2.0))


class Peak(NamedTuple):
    """A Gaussian fitted to an emission line (pixels; amplitude in the flux's units)."""

    centre: float
    sigma: float
    amplitude: float
    centre_error: float  # 1-sigma, from the fit's covariance scaled by its residuals


def _gaussians(params: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians + constants (params: fits x (amplitude, centre, sigma, constant)) on ``x`` (fits x points), and
    their derivatives."""
    amplitude, centre, sigma, constant = (params[:, [i]] for i in range(4))
    z = (x - centre) / sigma
    core = np.exp(-0.5 * z * z)
    slope = amplitude * core * z / sigma
    jacobian = np.stack([core, slope, slope * z, np.ones_like(x)], axis=-1)
    return amplitude * core + constant, jacobian


def fit_peaks(flux: np.ndarray, peaks, sigma: float) -> list[Peak | None]:
    """A Gaussian + constant fitted around each of ``peaks`` (pixel indices), or None where the fit fails or
    wanders more than 1.5 px off.  Levenberg-Marquardt with the analytic Jacobian, all lines at once."""
    peaks = np.asarray(peaks, dtype=int)
    half = max(3, int(round(sigma * _FWHM_PER_SIGMA)) + 1)
    columns = peaks[:, None] + np.arange(-half, half + 1)
    inside = (columns >= 0) & (columns < len(flux))
    x = columns.astype(float)
    y = np.asarray(flux, dtype=float)[np.clip(columns, 0, len(flux) - 1)]
    highest, lowest = np.where(inside, y, -np.inf).max(axis=1), np.where(inside, y, np.inf).min(axis=1)
    start = np.column_stack([highest - lowest, peaks, np.full(peaks.size, float(sigma)), lowest])

    def problem(params, rows):
        model, jacobian = _gaussians(params, x[rows])
        return model - y[rows], jacobian

    fit = batchfit.levenberg_marquardt(problem, start, inside.astype(float))
    dof = np.maximum(inside.sum(axis=1) - 4, 1)
    with np.errstate(invalid="ignore"):  # a window without pixels: no error, and no peak below
        errors = np.sqrt(fit.covariance[:, 1, 1] * fit.chi2 / dof)
    found = []
    for peak, (amplitude, centre, width, _), converged, error, points in zip(
            peaks, fit.params, fit.converged, errors, inside.sum(axis=1)):
        usable = converged and points >= 5 and amplitude > 0 and abs(centre - peak) <= 1.5
        found.append(Peak(float(centre), float(abs(width)), float(amplitude), float(error)) if usable else None)
    return found


def find_lines(flux: np.ndarray, options: WavelengthOptions) -> tuple[np.ndarray, float]:
    """Centres of clean arc lines (sub-pixel) and the typical line FWHM in pixels."""
    residual = flux - lower_envelope(flux, 101)
    noise = pixel_noise(residual)
    peaks, properties = signal.find_peaks(residual, height=options.detection_snr * noise,
                                          prominence=options.detection_snr * noise)
    if len(peaks) == 0:
        raise TooFewLinesError("no emission lines were found in the arc spectrum")
    heights = properties["peak_heights"]
    strongest = peaks[np.argsort(heights)[-20:]]
    fwhm = float(np.median(signal.peak_widths(residual, strongest, rel_height=0.5)[0]))
    fitted = list(zip(peaks, heights, fit_peaks(residual, peaks, fwhm / _FWHM_PER_SIGMA)))
    fitted = [(p, h, f) for p, h, f in fitted if f is not None]
    if not fitted:
        raise TooFewLinesError("no arc line could be centroided")
    typical = float(np.median([f.sigma for _, _, f in fitted]))
    centres = []
    for p, height, (centre, sigma, _, _) in fitted:
        # Much wider than typical: an unresolved blend (or saturated), its centre is biased.
        # A resolved neighbour above 5 % of this line still pulls on the fit.
        crowded = np.any((np.abs(peaks - p) < 2.0 * fwhm) & (peaks != p) & (heights > 0.05 * height))
        if 0.7 * typical < sigma < 1.3 * typical and not crowded:
            centres.append(centre)
    return np.array(centres), typical * _FWHM_PER_SIGMA


def _clean_nist_lines(elements, wmin: float, wmax: float, blend_angstrom: float) -> np.ndarray:
    """NIST wavelengths with no comparably bright NIST neighbour within ``blend_angstrom``."""
    lines = lamps.nist_lines(elements, wmin, wmax)
    wavelengths = np.array([line.wavelength for line in lines])
    weights = np.array([line.intensity * (1.0 if line.species.endswith(" I") else _ION_WEIGHT) for line in lines])
    clean = []
    for i, (wavelength, weight) in enumerate(zip(wavelengths, weights)):
        near = (np.abs(wavelengths - wavelength) < blend_angstrom) & (np.arange(len(lines)) != i)
        if not np.any(weights[near] > 0.1 * weight):
            clean.append(wavelength)
    return np.array(clean)


def _identify(centres: np.ndarray, solution, reference: np.ndarray, tolerance_px: float,
              dispersion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (pixel, NIST wavelength) where exactly one clean NIST line is within tolerance."""
    predicted = solution(centres)
    window = tolerance_px * np.abs(dispersion)
    pixels, wavelengths = [], []
    for centre, guess, width in zip(centres, predicted, window):
        candidates = reference[np.abs(reference - guess) < width]
        if len(candidates) == 1:
            pixels.append(centre)
            wavelengths.append(candidates[0])
    return np.array(pixels), np.array(wavelengths)


def _fit(pixels: np.ndarray, wavelengths: np.ndarray, degree: int, n_pixels: int, clip_sigma: float):
    """Chebyshev fit with iterative sigma clipping; returns (model, kept mask)."""
    init = models.Chebyshev1D(degree=degree, domain=(0.0, n_pixels - 1.0))
    fitter = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(), sigma_clip, niter=5, sigma=clip_sigma)
    model, outliers = fitter(init, pixels, wavelengths)
    return model, ~np.asarray(outliers, dtype=bool)


# ------------------------------------------------------------------ blocks

def calibrate_arc(flux, header, options: WavelengthOptions | None = None) -> tuple[WavelengthSolution, dict]:
    """Wavelength solution of an extracted 1D arc, and a record of how it was found.

    ``shift_px``/``stretch`` in the record relate the arc to the library lamp binned
    like the arc: library pixel = (pixel - shift_px - centre) * stretch + centre.
    Raises :class:`LampError` (no library lamp / lamps do not match) or
    :class:`TooFewLinesError`; both are :class:`WavelengthCalibrationError`.
    """
    options = options or WavelengthOptions()
    flux = np.nan_to_num(np.asarray(flux, dtype=float))
    lamp = lamps.library_lamp_named(options.library_lamp) if options.library_lamp else lamps.find_library_lamp(header)
    binning = serial_binning(header)
    rough = rough_solution(flux, lamp, binning, options)
    centres, fwhm = find_lines(flux, options)
    grid = np.arange(len(flux), dtype=float)
    span = rough(np.array([-0.5, len(flux) - 0.5]))
    reference = _clean_nist_lines(lamp.elements, span.min(), span.max(),
                                  options.blend_fwhm * fwhm * abs(np.ptp(span)) / len(flux))

    # A low-order fit on the rough guess, then the full order twice with a tight window.
    passes = ((min(2, options.degree), options.first_tolerance_fwhm),
              (options.degree, options.final_tolerance_fwhm), (options.degree, options.final_tolerance_fwhm))
    solution = rough
    for degree, tolerance_fwhm in passes:
        dispersion = np.gradient(solution(grid))[np.clip(np.rint(centres).astype(int), 0, len(flux) - 1)]
        pixels, wavelengths = _identify(centres, solution, reference, tolerance_fwhm * fwhm, dispersion)
        if len(pixels) < max(options.min_lines, degree + 2):
            raise TooFewLinesError(
                f"only {len(pixels)} arc lines could be identified against NIST "
                f"({lamps.lamp_label(lamp.lamp_keywords)} lamp, library {lamp.name}); "
                f"at least {max(options.min_lines, degree + 2)} are needed"
            )
        model, kept = _fit(pixels, wavelengths, degree, len(flux), options.clip_sigma)
        solution = model
    if kept.sum() < options.min_lines:
        raise TooFewLinesError(f"only {kept.sum()} arc lines survived outlier rejection; "
                               f"at least {options.min_lines} are needed")
    result = WavelengthSolution(model=model, pixels=pixels[kept], wavelengths=wavelengths[kept],
                                n_rejected=int((~kept).sum()), lamp=lamp.name, rejected_pixels=pixels[~kept],
                                rejected_wavelengths=wavelengths[~kept])
    record = {
        "library_lamp": lamp.name,
        "lamps": lamps.lamp_label(lamp.lamp_keywords),
        "binning": binning,
        "shift_px": rough.shift,
        "stretch": rough.stretch,
        "correlation": rough.correlation,
        "line_fwhm_px": float(fwhm),
        "lines_detected": int(len(centres)),
        "lines_used": int(kept.sum()),
        "lines_rejected": result.n_rejected,
        "rms_angstrom": result.rms_angstrom,
        "model": "Chebyshev1D",
        "degree": options.degree,
        "domain": [float(d) for d in model.domain],
        "coefficients": [float(c) for c in model.parameters],
        "lines": result.lines_table(),
        "wavelength_quality": solution_quality(result, len(flux)),
    }
    return result, record


def rebin_matrix(input_edges: np.ndarray, output_edges: np.ndarray) -> sparse.csr_matrix:
    """W[j, i] = fraction of input bin i that falls in output bin j (both edge arrays increasing)."""
    rows, cols, values = [], [], []
    n_in = len(input_edges) - 1
    first = np.searchsorted(output_edges, input_edges[:-1], side="right") - 1
    last = np.searchsorted(output_edges, input_edges[1:], side="left") - 1
    widths = np.diff(input_edges)
    for step in range(int(np.max(last - first)) + 1 if n_in else 0):
        j = first + step
        valid = (j <= last) & (j >= 0) & (j < len(output_edges) - 1)
        i = np.nonzero(valid)[0]
        j = j[valid]
        overlap = np.minimum(input_edges[i + 1], output_edges[j + 1]) - np.maximum(input_edges[i], output_edges[j])
        rows.append(j), cols.append(i), values.append(np.clip(overlap, 0.0, None) / widths[i])
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(output_edges) - 1, n_in))


def apply_solution(flux, solution: WavelengthSolution, uncertainty=None) -> tuple[LinearSpectrum, dict]:
    """Resample ``flux`` onto a linear wavelength axis, conserving flux.

    Each pixel's counts are spread uniformly over its wavelength interval and
    summed into output bins of the mean dispersion; the uncertainty is
    propagated through the same weights (variances add with squared weights).
    """
    flux = np.asarray(flux, dtype=float)
    edges = solution(np.arange(len(flux) + 1) - 0.5)
    if edges[-1] < edges[0]:  # wavelength decreasing with pixel
        edges, flux = edges[::-1], flux[::-1]
        uncertainty = None if uncertainty is None else np.asarray(uncertainty, dtype=float)[::-1]
    cdelt1 = (edges[-1] - edges[0]) / len(flux)
    output_edges = edges[0] + cdelt1 * np.arange(len(flux) + 1)
    weights = rebin_matrix(edges, output_edges)
    new_flux = weights @ flux
    new_uncertainty = None
    if uncertainty is not None:
        variance = weights.power(2) @ np.asarray(uncertainty, dtype=float) ** 2
        new_uncertainty = np.sqrt(variance)
    spectrum = LinearSpectrum(flux=new_flux, uncertainty=new_uncertainty, crval1=float(edges[0] + cdelt1 / 2.0),
                              cdelt1=float(cdelt1), solution=solution)
    record = {"crval1": spectrum.crval1, "cdelt1": spectrum.cdelt1, "n_pixels": len(new_flux),
              "wavelength_range": [float(output_edges[0]), float(output_edges[-1])]}
    return spectrum, record


def wavelength_calibrate(science_flux, science_header, arc_flux, arc_header, *, science_uncertainty=None,
                         options: WavelengthOptions | None = None) -> tuple[LinearSpectrum, dict]:
    """The block: solve the extracted arc, apply it to the extracted science spectrum.

    Returns the linear-dispersion spectrum and a record (rms_angstrom,
    lines_used, library_lamp, shift_px, stretch, lines, crval1, cdelt1, ...).
    """
    solution, record = calibrate_arc(arc_flux, arc_header, options)
    spectrum, resample_record = apply_solution(science_flux, solution, science_uncertainty)
    return spectrum, {**record, **resample_record}


def flexure_cards(flexure: dict) -> dict:
    """FITS cards of a flexure record (see ``pipeline.flexure.measure_shift``)."""
    cards = {"GSP_FLXA": (bool(flexure["applied"]), "Flexure shift applied to the arc solution")}
    if flexure.get("shift_px") is not None:
        cards["GSP_FLEX"] = (flexure["shift_px"], "Flexure: science shift from its arc [px]")
        cards["GSP_FLXE"] = (flexure["uncertainty_px"], "Flexure shift uncertainty [px]")
    lines = flexure.get("lines") or []
    cards["GSP_FLXN"] = (len(lines), "Sky lines used for the flexure shift")
    if lines:
        cards["GSP_FLXL"] = (" ".join(f"{line['wavelength']:.1f}" for line in lines)[:50], "sky lines used [A]")
    cards["GSP_FLXR"] = (flexure.get("reason") or "applied", "Flexure: applied, or why not")
    return cards


# Keys of the parent header that would describe the wrong array or axis in the product.
_NOT_INHERITED = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|BZERO|BSCALE|BLANK|PCOUNT|GCOUNT|COMMENT|HISTORY|"
    r"CTYPE|CRVAL|CDELT|CRPIX|CUNIT|CD\d_|PC\d_|WAT\d_|LTV|LTM|WCSDIM|WCSAXES|DC-FLAG|APNUM)"
)


def write_product(path, spectrum: LinearSpectrum, header=None, *, record: dict | None = None) -> Path:
    """Write a 1D product readable by ``specutils.Spectrum.read(path, format='wcs1d-fits')``.

    Primary HDU: float32 flux with a linear WCS; BinTable ``UNCERT`` (the
    propagated 1-sigma uncertainty per pixel) and ``LINES`` (pixel,
    wavelength, residual of every identified arc line, and whether the fit used it or rejected it).
    """
    path = Path(path)
    primary = fits.PrimaryHDU(data=spectrum.flux.astype(np.float32))
    for card in (header or fits.Header()).cards:
        if card.keyword and not _NOT_INHERITED.match(card.keyword):
            primary.header[card.keyword] = (card.value, card.comment)
    primary.header.update({
        "CTYPE1": ("WAVE", "air wavelength"), "CUNIT1": ("Angstrom", ""),
        "CRVAL1": (spectrum.crval1, "wavelength of pixel CRPIX1"), "CDELT1": (spectrum.cdelt1, "Angstrom per pixel"),
        "CRPIX1": (1.0, ""), "WCSAXES": 1, "DISPAXIS": 1,
        "GSP_WRMS": (spectrum.solution.rms_angstrom, "Wavelength solution RMS [Angstrom]"),
        "GSP_WPOI": (len(spectrum.solution.pixels), "Number of lines used in the solution"),
        "GSP_WREJ": (spectrum.solution.n_rejected, "Number of lines rejected"),
        "GSP_LAMP": (spectrum.solution.lamp, "Library lamp (first guess)"),
    })
    if record and "shift_px" in record:
        primary.header["GSP_WSHF"] = (record["shift_px"], "Shift from the library lamp [px]")
    if record and "wavelength_quality" in record:
        quality = record["wavelength_quality"]
        primary.header["GSP_WQUA"] = (quality["verdict"], "Wavelength solution quality (good or poor)")
        primary.header["GSP_WWHY"] = (quality["why"], "why")  # whole, over CONTINUE cards
    if record and "flexure" in record:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # a long reason pushes its comment out of the card: fine
            primary.header.update(flexure_cards(record["flexure"]))
    uncertainty = spectrum.uncertainty if spectrum.uncertainty is not None else np.full(len(spectrum.flux), np.nan)
    uncert = fits.BinTableHDU.from_columns(
        [fits.Column(name="uncertainty", format="E", array=uncertainty.astype(np.float32))], name="UNCERT")
    solution = spectrum.solution
    lines = fits.BinTableHDU.from_columns([
        fits.Column(name="pixel", format="D", array=np.concatenate([solution.pixels, solution.rejected_pixels])),
        fits.Column(name="wavelength", format="D", unit="Angstrom",
                    array=np.concatenate([solution.wavelengths, solution.rejected_wavelengths])),
        fits.Column(name="residual", format="D", unit="Angstrom",
                    array=np.concatenate([solution.residuals, solution.rejected_residuals])),
        fits.Column(name="used", format="L",
                    array=np.arange(len(solution.pixels) + len(solution.rejected_pixels)) < len(solution.pixels)),
    ], name="LINES")
    fits.HDUList([primary, uncert, lines]).writeto(path, overwrite=True, output_verify=PRODUCT_VERIFY)
    return path
