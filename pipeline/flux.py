"""Flux calibration of wavelength-calibrated 1D spectra.

1. Sensitivity function from a standard star: its counts summed over each band
   of the star's table, per second and Angstrom, corrected to airmass 0 with the
   CTIO extinction curve, divided by the table's F_lambda; ``2.5 log10 S`` is
   fitted with a cubic spline under iterative sigma clipping.  Bands touching
   telluric absorption (``pipeline.telluric.BANDS``) or the star's Balmer lines are left out;
   the star's counts over what its table predicts there are its telluric transmission
   (``expected_counts``, measured by ``pipeline.telluric``).
2. Apply: counts / exptime / dispersion, corrected for extinction at the
   science frame's airmass, divided by S.  No extrapolation beyond the bands fitted.
3. Products: the sensitivity function (FITS the web app can plot and the
   pipeline can read back) and the flux-calibrated spectrum (``wcs1d-fits``).

Spectra are on linear wavelength grids (``wavelength`` = pixel centres in
Angstrom, increasing), as :func:`pipeline.wavelength.apply_solution` makes them.
S is in counts/s/A per erg/(s cm2 A), counts being whatever the spectrum holds
(ADU for this pipeline's extractions).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.interpolate import LSQUnivariateSpline

from pipeline import standards, telluric
from pipeline.fitsfiles import PRODUCT_VERIFY
from pipeline.wavelength import _NOT_INHERITED

FLUX_UNIT = "erg / (s cm2 Angstrom)"
# Telluric absorption (Angstrom): O2 B and A bands, H2O bands.
TELLURIC_BANDS = tuple((band.low - telluric.EDGE, band.high + telluric.EDGE) for band in telluric.BANDS)
# Balmer lines H-alpha .. H-epsilon (air, Angstrom) and the half-width masked around each.
BALMER_LINES = (6562.8, 4861.3, 4340.5, 4101.7, 3970.1)
BALMER_HALF_WIDTH = 30.0
MIN_BANDS = 5
CLIP_SIGMA = 3.0
CLIP_ITERATIONS = 5
POINTS_PER_KNOT = 12  # one interior spline knot per this many bands, at most MAX_KNOTS
MAX_KNOTS = 6
PRODUCT_STEP = 1.0  # Angstrom: sampling of the sensitivity product's fitted curve


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """S(lambda), counts/s/A per erg/(s cm2 A) above the atmosphere, measured on one standard star."""

    wavelength: np.ndarray  # band centres [A]
    mag: np.ndarray  # measured 2.5 log10 S per band
    used: np.ndarray  # bands in the final fit
    masked: np.ndarray  # bands left out before fitting (telluric absorption, Balmer lines)
    fit: Callable[[np.ndarray], np.ndarray]  # wavelength -> 2.5 log10 S
    fit_kind: str
    wavelength_range: tuple[float, float]  # where the fit is constrained by used bands
    rms: float  # of the used bands about the fit [mag]
    star: str
    airmass: float
    exptime: float

    @property
    def n_used(self) -> int:
        return int(self.used.sum())

    @property
    def n_rejected(self) -> int:
        """Bands the sigma clipping threw out (masked bands are not counted)."""
        return int((~self.used & ~self.masked).sum())

    @property
    def residual(self) -> np.ndarray:
        return self.mag - self.fit(self.wavelength)

    def at(self, wavelength) -> np.ndarray:
        """S at ``wavelength`` (linear, not mag); NaN outside the fitted range."""
        wavelength = np.asarray(wavelength, dtype=float)
        inside = (wavelength >= self.wavelength_range[0]) & (wavelength <= self.wavelength_range[1])
        return np.where(inside, 10.0 ** (0.4 * self.fit(wavelength)), np.nan)


def _pixel_edges(wavelength: np.ndarray) -> np.ndarray:
    wavelength = np.asarray(wavelength, dtype=float)
    if len(wavelength) < 2 or np.any(np.diff(wavelength) <= 0):
        raise ValueError("the spectrum's wavelengths must increase along the array")
    step = np.diff(wavelength)
    return np.concatenate([[wavelength[0] - step[0] / 2], wavelength[:-1] + step / 2, [wavelength[-1] + step[-1] / 2]])


def band_sums(wavelength, counts, low, high) -> np.ndarray:
    """Counts between ``low`` and ``high`` [A], pixels at the band ends counted in proportion
    (each pixel's counts spread evenly over its width); NaN for a band touching a non-finite pixel."""
    counts = np.asarray(counts, dtype=float)
    bad = ~np.isfinite(counts)
    edges = _pixel_edges(wavelength)

    def summed(values):
        cumulative = np.concatenate([[0.0], np.cumsum(values)])
        return np.interp(high, edges, cumulative) - np.interp(low, edges, cumulative)

    return np.where(summed(bad.astype(float)) > 0, np.nan, summed(np.where(bad, 0.0, counts)))


def is_masked(low, high) -> np.ndarray:
    """Bands [low, high] touching telluric absorption or a Balmer line."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    windows = list(TELLURIC_BANDS) + [(w - BALMER_HALF_WIDTH, w + BALMER_HALF_WIDTH) for w in BALMER_LINES]
    return np.any([(low < end) & (high > start) for start, end in windows], axis=0)


def _spline(wavelength: np.ndarray, mag: np.ndarray) -> tuple[LSQUnivariateSpline, str]:
    """Cubic least-squares spline, interior knots at quantiles of the points (so every
    knot interval holds data, whatever gaps the masks leave)."""
    n_knots = min(MAX_KNOTS, len(wavelength) // POINTS_PER_KNOT)
    knots = np.quantile(wavelength, np.linspace(0.0, 1.0, n_knots + 2)[1:-1])
    return LSQUnivariateSpline(wavelength, mag, knots, k=3), f"cubic spline, {n_knots} interior knots"


def _clipped_fit(wavelength: np.ndarray, mag: np.ndarray, candidates: np.ndarray):
    """Spline refitted after rejecting points beyond CLIP_SIGMA standard deviations, until
    nothing changes (at most CLIP_ITERATIONS); returns (fit, kind, used mask)."""
    used = candidates.copy()
    fit, kind = _spline(wavelength[used], mag[used])
    for _ in range(CLIP_ITERATIONS):
        residual = mag - fit(wavelength)
        keep = candidates & (np.abs(residual) <= CLIP_SIGMA * np.std(residual[used]))
        if keep.sum() < MIN_BANDS or np.array_equal(keep, used):
            break
        used = keep
        fit, kind = _spline(wavelength[used], mag[used])
    return fit, kind, used


def sensitivity_function(wavelength, counts, exptime: float, airmass: float, star: standards.StandardStar, *,
                         mask_telluric: bool = True) -> Sensitivity:
    """Sensitivity function from a wavelength-calibrated standard-star spectrum (counts per pixel).

    Raises ValueError when fewer than MIN_BANDS usable bands of the star's table lie inside the spectrum.
    """
    wavelength = np.asarray(wavelength, dtype=float)
    edges = _pixel_edges(wavelength)
    centre, f_lambda, bandwidth = standards.f_lambda(star)
    low, high = centre - bandwidth / 2.0, centre + bandwidth / 2.0
    inside = (low >= edges[0]) & (high <= edges[-1])
    centre, f_lambda, bandwidth, low, high = (a[inside] for a in (centre, f_lambda, bandwidth, low, high))
    rate = band_sums(wavelength, counts, low, high) / exptime / bandwidth
    above_atmosphere = rate * 10.0 ** (0.4 * standards.extinction_at(centre) * airmass)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = 2.5 * np.log10(above_atmosphere / f_lambda)
    masked = is_masked(low, high) if mask_telluric else np.zeros(len(centre), dtype=bool)
    candidates = ~masked & np.isfinite(mag)
    if candidates.sum() < MIN_BANDS:
        raise ValueError(f"only {int(candidates.sum())} usable bands of {star.name} fall in "
                         f"{edges[0]:.0f}-{edges[-1]:.0f} A (at least {MIN_BANDS} are needed)")
    fit, kind, used = _clipped_fit(centre, mag, candidates)
    residual = (mag - fit(centre))[used]
    return Sensitivity(wavelength=centre, mag=mag, used=used, masked=masked, fit=fit, fit_kind=kind,
                       wavelength_range=(float(low[used].min()), float(high[used].max())),
                       rms=float(np.sqrt(np.mean(residual ** 2))), star=star.name,
                       airmass=float(airmass), exptime=float(exptime))


def expected_counts(wavelength, exptime: float, airmass: float, sensitivity: Sensitivity,
                    star: standards.StandardStar) -> np.ndarray:
    """Counts per pixel a standard star's table predicts through ``sensitivity`` and the extinction at
    ``airmass``, without telluric absorption (its smooth continuum); NaN outside the sensitivity's range."""
    wavelength = np.asarray(wavelength, dtype=float)
    centre, f_lambda, _ = standards.f_lambda(star)
    dispersion = np.diff(_pixel_edges(wavelength))
    return (np.interp(wavelength, centre, f_lambda) * exptime * dispersion * sensitivity.at(wavelength)
            * 10.0 ** (-0.4 * standards.extinction_at(wavelength) * airmass))


def apply_sensitivity(wavelength, counts, uncertainty, exptime: float, airmass: float,
                      sensitivity: Sensitivity) -> tuple[np.ndarray, np.ndarray | None]:
    """F_lambda [erg/(s cm2 A)] and its 1-sigma uncertainty (None without one) from counts per pixel;
    NaN outside the sensitivity function's range."""
    wavelength = np.asarray(wavelength, dtype=float)
    dispersion = np.diff(_pixel_edges(wavelength))
    scale = 10.0 ** (0.4 * standards.extinction_at(wavelength) * airmass) / (
        exptime * dispersion * sensitivity.at(wavelength))
    flux = np.asarray(counts, dtype=float) * scale
    return flux, None if uncertainty is None else np.asarray(uncertainty, dtype=float) * np.abs(scale)


def _inherit(header) -> fits.Header:
    """Cards of a parent header that still describe a 1D product (no array or axis keywords)."""
    source = fits.Header()
    source.update(header or {})  # a Header, or a dict of value or (value, comment)
    inherited = fits.Header()
    for card in source.cards:
        if card.keyword and not _NOT_INHERITED.match(card.keyword):
            inherited[card.keyword] = (card.value, card.comment)
    return inherited


def write_sensitivity(path, sensitivity: Sensitivity, header_cards=None, extra_hdus=()) -> Path:
    """FITS sensitivity function: primary HDU = the fit (2.5 log10 S) on a linear wavelength grid over
    the fitted range; BinTable ``POINTS`` = the bands measured (wavelength, mag, fit, residual, used, masked);
    then ``extra_hdus`` (the standard's telluric transmission)."""
    path = Path(path)
    start, end = sensitivity.wavelength_range
    n = int(np.ceil((end - start) / PRODUCT_STEP)) + 1
    step = (end - start) / (n - 1)
    grid = start + step * np.arange(n)
    primary = fits.PrimaryHDU(data=sensitivity.fit(grid).astype(np.float64), header=_inherit(header_cards))
    primary.header.update({
        "CTYPE1": ("WAVE", "air wavelength"), "CUNIT1": ("Angstrom", ""), "CRVAL1": (start, "wavelength of CRPIX1"),
        "CDELT1": (step, "Angstrom per pixel"), "CRPIX1": (1.0, ""), "WCSAXES": 1,
        "BUNIT": ("mag", "2.5 log10 S, S in counts/s/A per erg/(s cm2 A)"),
        "GSP_STD": (sensitivity.star, "standard star"),
        "GSP_SFIT": (sensitivity.fit_kind, "sensitivity fit"),
        "GSP_SFRM": (sensitivity.n_used, "Number of bands used in the fit"),
        "GSP_SREJ": (sensitivity.n_rejected, "Number of bands rejected by clipping"),
        "GSP_SRMS": (sensitivity.rms, "Sensitivity fit RMS [mag]"),
        "AIRMASS": (sensitivity.airmass, "airmass of the standard"),
        "EXPTIME": (sensitivity.exptime, "exposure time of the standard [s]"),
    })
    points = fits.BinTableHDU.from_columns([
        fits.Column(name="wavelength", format="D", unit="Angstrom", array=sensitivity.wavelength),
        fits.Column(name="mag", format="D", unit="mag", array=sensitivity.mag),
        fits.Column(name="fit", format="D", unit="mag", array=sensitivity.fit(sensitivity.wavelength)),
        fits.Column(name="residual", format="D", unit="mag", array=sensitivity.residual),
        fits.Column(name="used", format="L", array=sensitivity.used),
        fits.Column(name="masked", format="L", array=sensitivity.masked),
    ], name="POINTS")
    fits.HDUList([primary, points, *extra_hdus]).writeto(path, overwrite=True, output_verify=PRODUCT_VERIFY)
    return path


def read_sensitivity(path) -> Sensitivity:
    """A sensitivity function written by :func:`write_sensitivity` (the fit read back as its sampled curve)."""
    with fits.open(path) as hdus:
        header = hdus[0].header
        curve = np.asarray(hdus[0].data, dtype=float)
        points = hdus["POINTS"].data
        grid = header["CRVAL1"] + header["CDELT1"] * (np.arange(len(curve)) + 1.0 - header["CRPIX1"])
        return Sensitivity(
            wavelength=np.asarray(points["wavelength"], dtype=float), mag=np.asarray(points["mag"], dtype=float),
            used=np.asarray(points["used"], dtype=bool), masked=np.asarray(points["masked"], dtype=bool),
            fit=lambda wavelength: np.interp(wavelength, grid, curve), fit_kind=header["GSP_SFIT"],
            wavelength_range=(float(grid[0]), float(grid[-1])), rms=float(header["GSP_SRMS"]),
            star=header["GSP_STD"], airmass=float(header["AIRMASS"]), exptime=float(header["EXPTIME"]))


def write_flux_product(path, wavelength_header, flux, uncertainty, header=None, extra_hdus=(),
                       unit: str = FLUX_UNIT) -> Path:
    """Write a flux-calibrated spectrum readable by ``specutils.Spectrum.read(path, format='wcs1d-fits')``:
    float32 F_lambda (or what ``unit`` says) with the input's linear WCS and BUNIT, BinTable ``UNCERT`` with its
    1-sigma uncertainty (the layout of :func:`pipeline.wavelength.write_product`), then ``extra_hdus`` (the
    telluric transmission it was divided by)."""
    path = Path(path)
    primary = fits.PrimaryHDU(data=np.asarray(flux, dtype=np.float32), header=_inherit(header))
    for key in ("CRVAL1", "CDELT1", "CRPIX1", "CTYPE1", "CUNIT1"):
        primary.header[key] = (wavelength_header[key], wavelength_header.comments[key])
    primary.header.update({"WCSAXES": 1, "DISPAXIS": 1, "BUNIT": (unit, "F_lambda" if unit == FLUX_UNIT else "")})
    values = np.full(len(flux), np.nan) if uncertainty is None else np.asarray(uncertainty)
    uncert = fits.BinTableHDU.from_columns(
        [fits.Column(name="uncertainty", format="E", array=values.astype(np.float32))], name="UNCERT")
    fits.HDUList([primary, uncert, *extra_hdus]).writeto(path, overwrite=True, output_verify=PRODUCT_VERIFY)
    return path
