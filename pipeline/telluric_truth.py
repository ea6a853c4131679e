"""The simulator's atmosphere: telluric absorption whose truth is known (``pipeline.simulate`` draws it).

Each band is a forest of resolved absorption lines (Lorentzian profiles, optical depth in proportion to
the airmass, as a column of air has it) drawn on a 0.04 A grid, then seen through the instrument: the
transmission ``exp(-tau X)`` is convolved with the line profile (a Gaussian of ``fwhm_px`` pixels) and
averaged over each pixel.  At Goodman's resolution the strong, saturated O2 lines make the band's optical
depth grow slower than the airmass (about X^0.6 in the A band), the weak water lines nearly as X: the
behaviour the telluric correction (``pipeline.telluric``) has to model, not a power law put in by hand.

Bands (Angstrom, air): O2 B with its head at 6867, O2 A with its head at 7594 (both shaded to the red,
their lines spaced more widely away from the head), water at 7160-7340, 8120-8350 and 8950-9800.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

GRID_STEP = 0.04  # Angstrom: resolves the lines' cores (their widths are ~0.1 A)
LINE_REACH = 6.0  # Angstrom: each line's wings are drawn this far from its centre
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_WATER_SEED = 20261128  # the water lines' positions and strengths, the same in every frame


@dataclass(frozen=True, eq=False)  # hashed by identity: bands() makes each once
class AbsorptionBand:
    """A band of absorption lines: ``centres`` and ``depths`` (peak optical depth at airmass 1)."""

    name: str
    centres: np.ndarray
    depths: np.ndarray
    half_width: float  # Lorentzian half width at half maximum [A]

    @property
    def span(self) -> tuple[float, float]:
        return float(self.centres.min()) - LINE_REACH, float(self.centres.max()) + LINE_REACH


def _oxygen_band(name: str, head: float, lines: int, spacing: float, growth: float, depth: float) -> AbsorptionBand:
    """Doublets from the head to the red, each pair further from the last; strengths rise to a
    maximum a quarter of the way along and fall off (the rotational envelope)."""
    index = np.arange(lines, dtype=float)
    pairs = head + spacing * index + growth * index ** 2
    envelope = (index + 1) / (lines / 4) * np.exp(1 - (index + 1) / (lines / 4))
    centres = np.concatenate([pairs, pairs + 0.9 * spacing / 2])
    return AbsorptionBand(name, centres, depth * np.concatenate([envelope, envelope]), half_width=0.06)


def _water_band(name: str, low: float, high: float, lines: int, depth: float, rng) -> AbsorptionBand:
    """Lines scattered through the band, strengths exponentially distributed under a bump."""
    centres = np.sort(rng.uniform(low, high, lines))
    bump = np.sin(np.pi * (centres - low) / (high - low))
    return AbsorptionBand(name, centres, depth * bump * rng.exponential(1.0, lines), half_width=0.08)


@lru_cache(maxsize=1)
def bands() -> tuple[AbsorptionBand, ...]:
    rng = np.random.default_rng(_WATER_SEED)
    return (_oxygen_band("O2 B", 6867.2, 30, 1.6, 0.035, depth=2.0),
            _water_band("H2O 7200", 7160.0, 7340.0, 120, 0.25, rng),
            _oxygen_band("O2 A", 7594.0, 34, 1.9, 0.035, depth=12.0),
            _water_band("H2O 8200", 8120.0, 8350.0, 140, 0.35, rng),
            _water_band("H2O 9300", 8950.0, 9800.0, 500, 0.8, rng))


@lru_cache(maxsize=8)
def _optical_depth(band: AbsorptionBand) -> tuple[np.ndarray, np.ndarray]:
    """The band's optical depth at airmass 1 on the fine grid."""
    low, high = band.span
    grid = np.arange(low, high, GRID_STEP)
    tau = np.zeros_like(grid)
    reach = int(LINE_REACH / GRID_STEP)
    for centre, depth in zip(band.centres, band.depths):
        middle = int((centre - low) / GRID_STEP)
        window = slice(max(middle - reach, 0), middle + reach)
        tau[window] += depth * band.half_width ** 2 / ((grid[window] - centre) ** 2 + band.half_width ** 2)
    return grid, tau


def transmission(wavelength, airmass: float, fwhm_px: float) -> np.ndarray:
    """Fraction of the light the atmosphere lets through at ``airmass``, per pixel of a spectrum whose
    pixel centres are ``wavelength`` (increasing or not), at a resolution of ``fwhm_px`` pixels."""
    wavelength = np.asarray(wavelength, dtype=float)
    dispersion = np.abs(np.gradient(wavelength))
    result = np.ones_like(wavelength)
    for band in bands():
        low, high = band.span
        inside = (wavelength >= low) & (wavelength <= high)
        if not inside.any():
            continue
        grid, tau = _optical_depth(band)
        pixel = float(np.median(dispersion[inside]))  # nearly constant over one band
        seen = gaussian_filter1d(np.exp(-tau * airmass), fwhm_px * pixel * FWHM_TO_SIGMA / GRID_STEP, mode="nearest")
        seen = uniform_filter1d(seen, max(int(round(pixel / GRID_STEP)), 1), mode="nearest")
        result[inside] *= np.interp(wavelength[inside], grid, seen)
    return result


def truth(airmass: float, fwhm_px: float) -> dict:
    """What a frame's truth says of its telluric absorption."""
    return {"airmass": airmass, "line_fwhm_px": fwhm_px, "bands": [band.name for band in bands()],
            "model": "pipeline.telluric_truth.transmission(wavelength, airmass, line_fwhm_px): resolved lines, "
                     "optical depth in proportion to the airmass, convolved with the instrument's profile"}


SCORED_BANDS = ((6860.0, 6960.0), (7590.0, 7710.0))  # O2 B and A: where the correction's goal is set
SCORE_BIN = 30.0  # Angstrom
CLEAN_MARGIN = 150.0  # Angstrom: the clean continuum scored against lies this far around the O2 bands


def band_accuracy(wavelength, flux, true_flux, *, scored=SCORED_BANDS, bin_width: float = SCORE_BIN) -> dict:
    """Calibrated over true F_lambda in ``bin_width`` bins inside the ``scored`` bands (flux summed over each bin),
    relative to the same ratio in the clean continuum around them (no telluric band, no NaN): the median
    and worst |ratio / clean - 1| and each bin's ratio, as the telluric correction's goal states them."""
    wavelength, flux, true_flux = (np.asarray(a, dtype=float) for a in (wavelength, flux, true_flux))
    finite = np.isfinite(flux)
    near = (wavelength > min(low for low, _ in scored) - CLEAN_MARGIN) & (
        wavelength < max(high for _, high in scored) + CLEAN_MARGIN)
    absorbed = np.any([(wavelength >= band.span[0]) & (wavelength <= band.span[1]) for band in bands()], axis=0)
    clean = finite & near & ~absorbed
    level = np.sum(flux[clean]) / np.sum(true_flux[clean])
    ratios = []
    for low, high in scored:
        for start in np.arange(low, high - bin_width + 1e-9, bin_width):
            inside = finite & (wavelength >= start) & (wavelength < start + bin_width)
            ratios.append(np.sum(flux[inside]) / np.sum(true_flux[inside]) / level)
    residual = np.abs(np.array(ratios) - 1.0)
    return {"median": float(np.median(residual)), "worst": float(residual.max()),
            "bins": [round(float(ratio), 4) for ratio in ratios], "clean_level": float(level)}
