"""Several exposures of one target combined into one spectrum, and what a spectrum's S/N says.

Inputs are 1D spectra on linear wavelength grids (this pipeline's wavelength- or flux-calibrated
products): F_lambda, or counts per pixel, which are combined as counts per second and given back as
the counts of one exposure of the total time.  Each input is moved to one common grid by a
flux-conserving rebin; per pixel, values far above (or below) the others are rejected (cosmic-ray
residues, bad columns); the rest are averaged with inverse-variance weights taken from each input's
*smoothed* variance: weighting by the per-pixel variance itself would favour pixels that came out low
(their Poisson variance is lower too) and bias faint continua down.  The uncertainty is propagated.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

REJECT_SIGMA = 5.0  # a value this many sigma from the others is an outlier ...
REJECT_TOLERANCE = 0.10  # ... beyond this fraction of the level (exposures at other airmasses, line wings)
WEIGHT_SMOOTHING_PX = 31  # the variance each weight comes from is a running median over this many pixels
MIN_EXPOSURES = 2


@dataclass(frozen=True)
class Exposure:
    """One input: values per pixel at ``wavelength`` (pixel centres, linear and increasing), their 1-sigma
    uncertainty, and the exposure time (counts are divided by it before combining)."""

    wavelength: np.ndarray
    values: np.ndarray
    uncertainty: np.ndarray
    exptime: float


@dataclass(frozen=True)
class Combined:
    wavelength: np.ndarray  # the common linear grid
    values: np.ndarray
    uncertainty: np.ndarray
    contributors: np.ndarray  # per pixel, how many exposures were averaged
    rejected_fraction: float  # of the input pixels inside the grid, the share rejected as outliers
    exptime: float  # total

    @property
    def start(self) -> float:
        return float(self.wavelength[0])

    @property
    def step(self) -> float:
        return float(self.wavelength[1] - self.wavelength[0])


def pixel_edges(wavelength: np.ndarray) -> np.ndarray:
    step = np.diff(wavelength)
    return np.concatenate([[wavelength[0] - step[0] / 2], wavelength[:-1] + step / 2,
                           [wavelength[-1] + step[-1] / 2]])


def rebin(wavelength: np.ndarray, density: np.ndarray, variance: np.ndarray,
          edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving rebin of a density (per Angstrom) and its variance onto the pixels between ``edges``:
    each output pixel is the overlap-weighted mean of the input pixels it covers; NaN where it is not wholly
    covered or covers a non-finite pixel.  (specutils' FluxConservingResampler does the same in ~0.15 s per
    spectrum, too slow for the live path; the tests check the two agree.)"""
    edges_in = pixel_edges(wavelength)
    bad = ~(np.isfinite(density) & np.isfinite(variance))
    density, variance = np.where(bad, 0.0, density), np.where(bad, 0.0, variance)
    first = np.clip(np.searchsorted(edges_in, edges[:-1], side="right") - 1, 0, len(density) - 1)
    width = np.diff(edges)
    reach = int(np.ceil(width.max() / np.diff(edges_in).min())) + 1
    total, spread, covered, touched_bad = (np.zeros(len(width)) for _ in range(4))
    for offset in range(reach):
        index = first + offset
        inside = index < len(density)
        index = np.minimum(index, len(density) - 1)
        overlap = np.minimum(edges_in[index + 1], edges[1:]) - np.maximum(edges_in[index], edges[:-1])
        overlap = np.where(inside, np.clip(overlap, 0.0, None), 0.0)
        total += overlap * density[index]
        spread += overlap ** 2 * variance[index]
        covered += overlap
        touched_bad += overlap * bad[index]
    usable = (covered >= width * (1 - 1e-6)) & (touched_bad == 0)
    return np.where(usable, total / width, np.nan), np.where(usable, spread / width ** 2, np.nan)


def common_grid(exposures: list[Exposure]) -> np.ndarray:
    """One linear grid over every input's range, at the inputs' median step."""
    step = float(np.median([np.median(np.diff(exposure.wavelength)) for exposure in exposures]))
    start = min(float(exposure.wavelength[0]) for exposure in exposures)
    end = max(float(exposure.wavelength[-1]) for exposure in exposures)
    return start + step * np.arange(int(np.floor((end - start) / step + 1e-6)) + 1)


def _on_grid(exposure: Exposure, grid: np.ndarray, counts: bool) -> tuple[np.ndarray, np.ndarray]:
    """An input on ``grid`` as densities per Angstrom (per second, for counts) and their variance."""
    width = np.diff(pixel_edges(exposure.wavelength))
    scale = 1.0 / (width * exposure.exptime) if counts else np.ones_like(width)
    values, variance = rebin(exposure.wavelength, exposure.values * scale, (exposure.uncertainty * scale) ** 2,
                             pixel_edges(grid))
    return values, variance


def _outliers(values: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Per pixel, the inputs far from the others, and their neighbours: with three or more, from their median;
    with two, the higher of two that disagree (cosmic-ray residues are what usually tells them apart, and they
    add light)."""
    present = np.isfinite(values)
    if values.shape[0] >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels no input covers stay NaN
            reference = np.nanmedian(values, axis=0)
        spread = 2.0 * variance
    else:
        reference = np.fmin.reduce(values, axis=0)
        spread = np.nansum(variance, axis=0)[None, :].repeat(values.shape[0], axis=0)
    allowed = REJECT_SIGMA * np.sqrt(spread + (REJECT_TOLERANCE * reference) ** 2)
    with np.errstate(invalid="ignore"):
        outlier = present & (np.abs(values - reference) > allowed)
    # the rebin spreads a hit pixel into its neighbours, where it may hide under the threshold
    grown = outlier.copy()
    grown[:, 1:] |= outlier[:, :-1]
    grown[:, :-1] |= outlier[:, 1:]
    return grown & present


def combine(exposures: list[Exposure], *, counts: bool) -> Combined:
    """Inverse-variance weighted mean of ``exposures`` (at least two) on one grid, outliers rejected per
    pixel.  ``counts``: the inputs are counts per pixel (combined per second, given back as counts of the
    total exposure time); else F_lambda."""
    if len(exposures) < MIN_EXPOSURES:
        raise ValueError(f"combining needs at least {MIN_EXPOSURES} spectra, got {len(exposures)}")
    grid = common_grid(exposures)
    rebinned = [_on_grid(exposure, grid, counts) for exposure in exposures]
    values = np.array([value for value, _ in rebinned])
    variance = np.array([spread for _, spread in rebinned])
    rejected = _outliers(values, variance)
    used = np.isfinite(values) & np.isfinite(variance) & (variance > 0) & ~rejected
    smooth = np.array([median_filter(np.where(np.isfinite(v), v, np.nanmedian(v)), WEIGHT_SMOOTHING_PX,
                                     mode="nearest") for v in variance])
    weight = np.where(used, 1.0 / smooth, 0.0)
    total_weight = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total_weight > 0, (weight * np.where(used, values, 0.0)).sum(axis=0) / total_weight, np.nan)
        sigma = np.where(total_weight > 0,
                         np.sqrt((weight ** 2 * np.where(used, variance, 0.0)).sum(axis=0)) / total_weight, np.nan)
    exptime = float(sum(exposure.exptime for exposure in exposures))
    if counts:  # back to counts per pixel, as one exposure of the total time
        per_pixel = np.diff(pixel_edges(grid)) * exptime
        mean, sigma = mean * per_pixel, sigma * per_pixel
    inside = np.isfinite(values).sum()
    return Combined(grid, mean, sigma, used.sum(axis=0), float(rejected.sum() / inside) if inside else 0.0, exptime)


def median_snr(values, uncertainty) -> float | None:
    """Median S/N per pixel over the central half of a spectrum's range (None without uncertainties)."""
    values = np.asarray(values, dtype=float)
    if uncertainty is None or values.size < 4:
        return None
    uncertainty = np.asarray(uncertainty, dtype=float)
    quarter = values.size // 4
    central = slice(quarter, values.size - quarter)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = values[central] / uncertainty[central]
    ratio = ratio[np.isfinite(ratio) & (uncertainty[central] > 0)]
    return float(np.median(ratio)) if ratio.size else None


def exposures_to_reach(goal: float, snr: float, last_snr: float) -> int:
    """How many more exposures like the last (S/N ``last_snr``) bring a spectrum of S/N ``snr`` to ``goal``:
    independent exposures add their S/N in quadrature."""
    if snr >= goal:
        return 0
    if last_snr <= 0:
        raise ValueError("the last exposure has no signal: more exposures like it reach no S/N")
    return int(np.ceil((goal ** 2 - snr ** 2) / last_snr ** 2 - 1e-9))
