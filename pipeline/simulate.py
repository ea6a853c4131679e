"""Synthetic Goodman Red-camera nights whose truth is known.

Frames mimic raw Red-camera spectroscopic 2x2 data: uint16 written with
BZERO 32768, ``NAXIS1 = 2071`` dispersion columns by ``NAXIS2 = 948`` spatial
rows (numpy shape ``(948, 2071)``), an overscan strip, unilluminated rows at
both slit ends and modern (2019+) header keywords.

Use ``simulate_night(out_dir)`` for a whole night on disk (FITS + ``truth.json``),
``stream(src, dest)`` to replay it into a watched folder, or ``make_bias``,
``make_flat``, ``make_arc``, ``make_science``, ``make_standard``,
``make_flux_science`` for one frame in memory: each returns a
``Frame(data, header, truth)`` named tuple (raw uint16 data, the header as
written, the frame's truth dict).

Truth conventions (``truth.json`` and the ``truth`` dict of every frame)
-----------------------------------------------------------------------
* Coordinates are 0-based pixel indices of the **trimmed** frame, i.e. the
  raw frame cut to ``TRIMSEC = [26:2055,2:948]`` (FITS, 1-based, inclusive;
  the section goodman-pipeline uses for 2x2).  ``x`` is the trimmed column
  (dispersion axis, 0..2029), ``y`` the trimmed row (spatial axis, 0..946).
  Raw numpy index = ``(y + 1, x + 25)`` (see ``TRIM_OFFSET``).  Pixel centres
  sit on integers: the pixel ``x = 10`` covers 9.5..10.5.
* ``dispersion``: wavelength (Angstrom, air) of trimmed column ``x`` is
  ``numpy.polynomial.Polynomial(coefficients)(x)`` (power basis, lowest order
  first).  It is the configuration's library-lamp solution (binned 2x2) moved
  by ``shift_px`` binned pixels and stretched by ``scale`` about the detector
  centre, so a line the library puts at binned ``x_lib`` falls at
  ``x_c + (x_lib - x_c) / scale + shift_px`` with ``x_c = 1014.5``.
* Arc lines are drawn one by one at NIST air wavelengths (goodman-pipeline's
  ``data/nist_list``) through that dispersion, never by shifting a library
  spectrum (library line lists contain errors).  Each line is a Gaussian of
  FWHM ``LINE_FWHM_PX`` integrated over the pixel.
* ``trace``: a target's centre row is ``Polynomial(trace)(x)``; its spatial
  profile is a Moffat of the given ``fwhm_px`` and ``beta``.
* ``cosmic_rays``: ``[y, x, electrons]`` per hit pixel.
* Counts are electrons before the gain; raw ADU = bias + electrons / GAIN.
* Flux (``make_standard``, ``make_flux_science``): a source of F_lambda
  [erg/(s cm2 A)] above the atmosphere puts ``F_lambda * flux_throughput(w) *
  10**(-0.4 * k(w) * AIRMASS) * EXPTIME * (A per pixel)`` electrons in a column
  (all rows), ``k`` the CTIO extinction (``pipeline.standards.extinction_at``).
  A standard star's F_lambda is its table's F_lambda (the table covering the
  detector, as the pipeline chooses it) joined by straight lines between band
  centres.  The sensitivity a pipeline measures in ADU is ``flux_throughput / GAIN``
  (before its aperture losses).  The atmosphere also absorbs in telluric bands
  (O2 B and A, water): the electrons are multiplied by
  ``pipeline.telluric_truth.transmission(wavelength, AIRMASS, LINE_FWHM_PX)``
  (truth key ``telluric``), resolved lines seen at the instrument's resolution.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits
from numpy.polynomial import Polynomial
from numpy.polynomial.chebyshev import cheb2poly
from scipy.special import ndtr

from pipeline import lamps, standards, telluric_truth

# The module docstring explains these; truth.json carries them for readers without the code.
TRUTH_CONVENTIONS = {
    "coordinates": "0-based (y = row, x = column) of the trimmed frame (TRIMSEC applied); "
                   "raw numpy index = (y + trim_offset[0], x + trim_offset[1]); pixel centres on integers",
    "dispersion": "wavelength [Angstrom, air] = numpy.polynomial.Polynomial(coefficients)(x)",
    "trace": "target centre row y = numpy.polynomial.Polynomial(trace)(x)",
    "cosmic_rays": "[y, x, electrons] per hit pixel",
    "counts": "electrons; raw ADU = bias + electrons / gain",
}

# Raw 2x2 Red-camera spectroscopic frame and the section that holds the spectrum.
RAW_SHAPE = (948, 2071)
BINNING = 2
TRIMSEC = "[26:2055,2:948]"
TRIM_OFFSET = (1, 25)  # (row, column) of trimmed pixel (0, 0) in the raw frame
TRIMMED_SHAPE = (947, 2030)
OVERSCAN_COLUMNS = slice(2, 24)  # raw columns that see only the bias
SLIT_ROWS = (84, 864)  # trimmed rows lit by the long slit (the rest is dark)
CENTRE_COLUMN = (TRIMMED_SHAPE[1] - 1) / 2.0

GAIN = 1.48  # e-/ADU
RDNOISE = 3.89  # e-
BIAS_LEVEL = 412.0  # ADU
LINE_FWHM_PX = 3.0  # spectral resolution element for the 1.0" slit, binned pixels
SATURATION_ADU = 65535
# Cosmic-ray hits per second of exposure on the 2x2 frame: ~50 in 600 s. Real Goodman frames show
# several times more (~1 hit/cm2/min over ~37 cm2): benchmarks raise it with ``cosmic_ray_rate``.
COSMIC_RAY_RATE = 0.08
DEFAULT_PROPOSAL = "SOAR2026B-001"
DEFAULT_DATE = "2026-11-27"
_FIXED_PATTERN_SEED = 20261127  # detector fixed patterns are the same all night
_ION_WEIGHT = 0.1  # ionised lines are faint in low-pressure arc lamps


@dataclass(frozen=True)
class Configuration:
    """An instrument set-up the simulator knows, tied to its library lamp."""

    wavmode: str
    grating: str
    filter2: str
    cam_targ: float
    grt_targ: float
    library_lamp: str
    arc_lamps: tuple[str, ...] = ("LAMP_HGA", "LAMP_NE")
    slit: str = "1.0_LONG_SLIT"


CONFIGURATIONS = {
    "400_M2": Configuration("400_M2", "400_SYZY", "GG455", 16.1, 7.5, "goodman_comp_400M2_GG455_HgArNe.fits"),
    # Blue modes are calibrated with hollow-cathode lamps: HgArNe shows only ~5 lines there.
    "930_M2": Configuration("930_M2", "930_SYZY", "NO_FILTER", 25.2, 12.6, "goodman_comp_930M2_CuHeAr.fits",
                            arc_lamps=("LAMP_CU",)),
}


@dataclass(frozen=True)
class EmissionLine:
    rest_wavelength: float  # Angstrom, air
    electrons: float  # total counts in the line


@dataclass(frozen=True)
class Target:
    """A point source on the slit."""

    trace: tuple[float, ...]  # centre row = Polynomial(trace)(x), trimmed coordinates
    fwhm_px: float = 4.0
    beta: float = 2.5
    continuum_electrons: float = 3000.0  # per column (all rows) where throughput peaks
    redshift: float = 0.0
    lines: tuple[EmissionLine, ...] = ()


@dataclass(frozen=True)
class Pointing:
    object_name: str
    ra: str
    dec: str
    targets: tuple[Target, ...]


class Frame(NamedTuple):
    data: np.ndarray  # raw uint16 ADU, shape RAW_SHAPE
    header: fits.Header
    truth: dict


@dataclass(frozen=True)
class Dispersion:
    """True wavelength (Angstrom) of trimmed column x: Polynomial(coefficients)(x)."""

    coefficients: tuple[float, ...]

    def __call__(self, x):
        return Polynomial(self.coefficients)(np.asarray(x, dtype=float))

    def pixel(self, wavelength):
        """Inverse of the (monotonic) solution, by Newton steps from a linear guess."""
        wavelength = np.asarray(wavelength, dtype=float)
        poly = Polynomial(self.coefficients)
        slope = poly.deriv()
        grid = np.arange(TRIMMED_SHAPE[1], dtype=float)
        x = np.interp(wavelength, poly(grid), grid, left=np.nan, right=np.nan)
        # Lines just off the detector still need a position (their wings reach in).
        x = np.where(np.isnan(x), (wavelength - poly(CENTRE_COLUMN)) / slope(CENTRE_COLUMN) + CENTRE_COLUMN, x)
        for _ in range(5):
            x = x - (poly(x) - wavelength) / slope(x)
        return x


# Sky emission lines (air Angstrom) and relative strengths: [O I], Na D, OH bands, Hg street lights.
SKY_LINES = (
    (4046.563, 0.3), (4358.328, 0.6), (5460.735, 0.5), (5577.339, 4.0), (5889.950, 1.0), (5895.924, 0.7),
    (6300.304, 2.0), (6363.776, 0.7), (6863.955, 0.8), (7276.405, 0.8), (7316.282, 1.2), (7340.885, 1.2),
    (7750.640, 1.3), (7794.112, 1.3), (7821.503, 1.0), (7913.708, 1.5), (7993.332, 1.5), (8344.602, 2.5),
    (8399.170, 2.0), (8430.174, 2.0), (8761.314, 2.0), (8767.912, 2.0), (8827.096, 3.0), (8885.850, 2.5),
)

# Electrons/s/A in a column per erg/(s cm2 A) above the atmosphere (see flux_throughput).
FLUX_THROUGHPUT = {"peak": 6.0e15, "centre": 6300.0, "sigma": 2200.0, "red_edge": 9300.0, "red_width": 300.0}
# Standard star observed in each configuration (OBJECT as typed at the telescope), and the coordinates
# (J2000) of standards by their tables' names (Hamuy's bright HR stars: data/eso-hamuy/README.md).
STANDARDS = {"400_M2": "LTT7379", "930_M2": "EG274"}
STANDARD_COORDINATES = {
    "LTT 7379": ("18:36:25.950", "-44:18:36.90"), "EG 274": ("16:23:33.840", "-39:13:46.20"),
    "HR 718": ("02:28:09.54", "+08:27:36.2"), "HR 1544": ("04:50:36.69", "+08:54:00.7"),
    "HR 3454": ("08:43:13.46", "+03:23:55.1"), "HR 4468": ("11:36:40.91", "-09:48:08.2"),
    "HR 4963": ("13:09:56.96", "-05:32:20.5"), "HR 5501": ("14:45:30.25", "+00:43:02.7"),
    "HR 7596": ("19:54:44.80", "+00:16:24.6"), "HR 7950": ("20:47:40.55", "-09:29:44.7"),
    "HR 8634": ("22:41:27.64", "+10:49:53.2"), "HR 9087": ("00:01:49.42", "-03:01:39.0"),
}


@dataclass(frozen=True)
class FluxSource:
    """A science point source of known F_lambda above the atmosphere: a power-law continuum plus
    unresolved emission lines (drawn with the instrument's line profile)."""

    f_lambda_5500: float = 1.0e-15  # erg/(s cm2 A) at 5500 A
    index: float = -1.5  # F_lambda ~ (wavelength / 5500 A) ** index
    lines: tuple[tuple[float, float], ...] = (  # (air wavelength [A], flux [erg/(s cm2)])
        (4861.33, 2.0e-14), (5006.84, 6.0e-14), (6562.80, 5.0e-14), (6583.45, 1.5e-14))

    def continuum(self, wavelength) -> np.ndarray:
        return self.f_lambda_5500 * (np.asarray(wavelength, dtype=float) / 5500.0) ** self.index

    def truth(self) -> dict:
        return {"continuum": "f_lambda_5500 * (wavelength / 5500) ** index [erg/(s cm2 A)]",
                "f_lambda_5500": self.f_lambda_5500, "index": self.index,
                "lines": [{"wavelength": w, "flux": f} for w, f in self.lines], "line_flux_unit": "erg/(s cm2)"}


SCIENCE_AIRMASS = 1.2

# Pointings per configuration; lines chosen clear of sky lines and each other.
POINTINGS = {
    "400_M2": (
        Pointing("NGC5128", "13:25:27.615", "-43:01:08.81", (
            Target(trace=(462.0, 0.004, -2.0e-6), fwhm_px=4.2, redshift=0.001830, continuum_electrons=2500.0,
                   lines=(EmissionLine(6562.80, 60000.0), EmissionLine(6583.45, 25000.0),
                          EmissionLine(6716.44, 15000.0), EmissionLine(6730.82, 12000.0),
                          EmissionLine(5006.84, 30000.0), EmissionLine(7135.80, 12000.0))),
        )),
        Pointing("PN_pair", "07:29:02.690", "-18:07:33.00", (
            Target(trace=(300.0, -0.003, 1.5e-6), fwhm_px=3.6, redshift=0.000120, continuum_electrons=1500.0,
                   lines=(EmissionLine(6562.80, 40000.0), EmissionLine(5875.62, 12000.0),
                          EmissionLine(7065.28, 8000.0))),
            Target(trace=(640.0, -0.002, 1.0e-6), fwhm_px=3.9, redshift=0.000350, continuum_electrons=4000.0,
                   lines=(EmissionLine(6678.15, 10000.0), EmissionLine(6548.05, 8000.0))),
        )),
    ),
    "930_M2": (
        Pointing("NGC7009", "21:04:10.877", "-11:21:48.25", (
            Target(trace=(470.0, 0.003, -1.5e-6), fwhm_px=4.0, redshift=-0.000160, continuum_electrons=1200.0,
                   lines=(EmissionLine(4861.33, 50000.0), EmissionLine(4958.91, 40000.0),
                          EmissionLine(5006.84, 90000.0), EmissionLine(4340.47, 20000.0),
                          EmissionLine(4685.68, 15000.0), EmissionLine(4101.74, 10000.0))),
        )),
        Pointing("HII_pair", "05:38:42.000", "-69:06:03.00", (
            Target(trace=(380.0, 0.002, 0.0), fwhm_px=3.8, redshift=0.000900, continuum_electrons=2000.0,
                   lines=(EmissionLine(4861.33, 30000.0), EmissionLine(5006.84, 45000.0),
                          EmissionLine(4471.48, 8000.0))),
            Target(trace=(560.0, 0.002, 0.0), fwhm_px=4.4, redshift=0.000950, continuum_electrons=2500.0,
                   lines=(EmissionLine(4861.33, 20000.0), EmissionLine(4958.91, 15000.0))),
        )),
    ),
}


# ---------------------------------------------------------------- truth models

def configuration(name: str) -> Configuration:
    try:
        return CONFIGURATIONS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; known: {', '.join(CONFIGURATIONS)}") from None


def true_dispersion(config: str, shift_px: float = 0.0, scale: float = 1.0) -> Dispersion:
    """The library solution of ``config`` binned to 2x2, shifted and stretched (see module doc)."""
    lamp = lamps.read_library_lamp(lamps.library_dir() / configuration(config).library_lamp)
    library_poly = Polynomial(cheb2poly(lamp.coefficients))
    # Library (1x1) pixel seen at trimmed binned column x: B * (x_c + (x - shift - x_c) * scale) + (B - 1) / 2.
    slope = BINNING * scale
    offset = BINNING * (CENTRE_COLUMN - (shift_px + CENTRE_COLUMN) * scale) + (BINNING - 1) / 2.0
    return Dispersion(tuple(float(c) for c in library_poly(Polynomial([offset, slope])).coef))


def gaussian_lines(centres, totals, fwhm_px: float = LINE_FWHM_PX, n: int = TRIMMED_SHAPE[1]) -> np.ndarray:
    """Sum of pixel-integrated Gaussians: ``totals`` electrons centred at ``centres``."""
    edges = np.arange(n + 1) - 0.5
    sigma = fwhm_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    cdf = ndtr((edges[None, :] - np.asarray(centres, dtype=float)[:, None]) / sigma)
    return (np.asarray(totals, dtype=float)[:, None] * np.diff(cdf, axis=1)).sum(axis=0)


def throughput(wavelength) -> np.ndarray:
    """Smooth relative efficiency of the red camera + grating (peak 1)."""
    return np.exp(-0.5 * ((np.asarray(wavelength) - 6300.0) / 2200.0) ** 2)


def quartz_spectrum(wavelength) -> np.ndarray:
    """A 3100 K black body times the throughput, normalised to peak 1 over the band."""
    wl_m = np.asarray(wavelength) * 1e-10
    planck = 1.0 / (wl_m ** 5 * np.expm1(1.4388e-2 / (wl_m * 3100.0)))
    spectrum = planck * throughput(wavelength)
    return spectrum / spectrum.max()


def flux_throughput(wavelength) -> np.ndarray:
    """Electrons/s/A per erg/(s cm2 A) above the atmosphere, at the slit centre: a bell (telescope,
    grating, optics) with a red fall-off (the CCD).  The flux-calibration truth; ADU = electrons / GAIN."""
    p = FLUX_THROUGHPUT
    wavelength = np.asarray(wavelength, dtype=float)
    bell = np.exp(-0.5 * ((wavelength - p["centre"]) / p["sigma"]) ** 2)
    return p["peak"] * bell / (1.0 + np.exp((wavelength - p["red_edge"]) / p["red_width"]))


def flux_to_electrons(wavelength, f_lambda, exptime: float, airmass: float) -> np.ndarray:
    """Electrons per pixel (pixel centres at ``wavelength``) from F_lambda above the atmosphere."""
    wavelength = np.asarray(wavelength, dtype=float)
    transmission = (10.0 ** (-0.4 * standards.extinction_at(wavelength) * airmass)
                    * telluric_truth.transmission(wavelength, airmass, LINE_FWHM_PX))
    return f_lambda * flux_throughput(wavelength) * transmission * exptime * np.abs(np.gradient(wavelength))


def standard_f_lambda(star: standards.StandardStar, wavelength) -> np.ndarray:
    """A standard star's true F_lambda [erg/(s cm2 A)]: its table joined by straight lines."""
    centre, f_lambda, _ = standards.f_lambda(star)
    return np.interp(np.asarray(wavelength, dtype=float), centre, f_lambda)


def _flux_truth(airmass: float, exptime: float) -> dict:
    return {"airmass": airmass, "exptime": exptime,
            "throughput": {**FLUX_THROUGHPUT, "unit": "electrons/s/A per erg/(s cm2 A) above the atmosphere",
                           "formula": "peak * exp(-0.5 * ((w - centre) / sigma)**2) "
                                      "/ (1 + exp((w - red_edge) / red_width))"},
            "extinction": "CTIO, pipeline/data/onedstds/ctioextinct.dat, linear in wavelength, times airmass",
            "telluric": telluric_truth.truth(airmass, LINE_FWHM_PX)}


def slit_illumination() -> np.ndarray:
    """Relative light per trimmed row: soft-edged slit with mild vignetting."""
    rows = np.arange(TRIMMED_SHAPE[0], dtype=float)
    low, high = SLIT_ROWS
    edges = ndtr((rows - low) / 1.5) * ndtr((high - rows) / 1.5)
    centre, half = (low + high) / 2.0, (high - low) / 2.0
    return edges * (1.0 - 0.06 * ((rows - centre) / half) ** 2)


@lru_cache(maxsize=1)
def _pixel_response() -> np.ndarray:
    """Fixed pixel-to-pixel sensitivity (1 % rms), identical in every frame."""
    return 1.0 + 0.01 * np.random.default_rng(_FIXED_PATTERN_SEED).standard_normal(TRIMMED_SHAPE)


@lru_cache(maxsize=1)
def _bias_pattern() -> np.ndarray:
    """Fixed bias structure in ADU: a level, a slow row gradient and column stripes."""
    rng = np.random.default_rng(_FIXED_PATTERN_SEED + 1)
    rows = np.linspace(-1.0, 1.0, RAW_SHAPE[0])[:, None]
    columns = rng.normal(0.0, 0.8, RAW_SHAPE[1])[None, :]
    return BIAS_LEVEL + 1.5 * rows + columns


def arc_lines(config: str, dispersion: Dispersion, peak_electrons: float = 1.2e5) -> list[dict]:
    """NIST lines of the arc lamps that land on the detector, with electrons per row."""
    setup = configuration(config)
    ends = dispersion(np.array([-10.0, TRIMMED_SHAPE[1] + 10.0]))
    nist = lamps.nist_lines(lamps.lamp_elements(setup.arc_lamps), ends.min(), ends.max())
    weights = np.array([line.intensity * (1.0 if line.species.endswith(" I") else _ION_WEIGHT) for line in nist])
    totals = peak_electrons * weights / weights.max()
    pixels = dispersion.pixel([line.wavelength for line in nist])
    return [
        {"wavelength": line.wavelength, "species": line.species, "x": float(x), "electrons_per_row": float(e)}
        for line, x, e in zip(nist, pixels, totals)
        if e > 0
    ]


def trace_rows(trace, x=None) -> np.ndarray:
    x = np.arange(TRIMMED_SHAPE[1], dtype=float) if x is None else x
    return Polynomial(trace)(x)


def moffat_profile(target: Target) -> np.ndarray:
    """Trimmed-frame image of the target's spatial profile, each column summing to 1."""
    rows = np.arange(TRIMMED_SHAPE[0], dtype=float)[:, None]
    alpha = target.fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / target.beta) - 1.0))
    profile = (1.0 + ((rows - trace_rows(target.trace)[None, :]) / alpha) ** 2) ** (-target.beta)
    return profile / profile.sum(axis=0, keepdims=True)


def target_spectrum(target: Target, dispersion: Dispersion, exptime_scale: float) -> tuple[np.ndarray, list[dict]]:
    """Electrons per column of one target (continuum + lines) and the lines' truth."""
    wavelength = dispersion(np.arange(TRIMMED_SHAPE[1]))
    continuum = target.continuum_electrons * exptime_scale * throughput(wavelength) * (wavelength / 6000.0) ** -1.5
    observed = [line.rest_wavelength * (1.0 + target.redshift) for line in target.lines]
    centres = dispersion.pixel(observed)
    totals = [line.electrons * exptime_scale for line in target.lines]
    truth = [
        {"rest_wavelength": line.rest_wavelength, "wavelength": w, "x": float(x), "electrons": float(t)}
        for line, w, x, t in zip(target.lines, observed, centres, totals)
    ]
    spectrum = continuum + (gaussian_lines(centres, totals) if target.lines else 0.0)
    return spectrum, truth


def sky_spectrum(dispersion: Dispersion, exptime_scale: float, line_strength: float = 1.0
                 ) -> tuple[np.ndarray, list[dict]]:
    """Electrons per column per slit row of the night sky, and its lines' truth (``line_strength`` scales
    the lines only: 0 for a sky without lines, as under a bright twilight)."""
    wavelength = dispersion(np.arange(TRIMMED_SHAPE[1]))
    ends = sorted(dispersion(np.array([0.0, TRIMMED_SHAPE[1] - 1.0])))
    lines = [(w, s) for w, s in SKY_LINES if ends[0] <= w <= ends[1]]
    centres = dispersion.pixel([w for w, _ in lines]) if lines else []
    totals = [400.0 * s * exptime_scale * line_strength for _, s in lines]
    continuum = 6.0 * exptime_scale * throughput(wavelength)
    spectrum = continuum + (gaussian_lines(centres, totals) if lines else 0.0)
    truth = [{"wavelength": w, "x": float(x), "electrons_per_row": t} for (w, _), x, t in zip(lines, centres, totals)]
    return spectrum, truth


def add_cosmic_rays(image: np.ndarray, rng: np.random.Generator, exptime: float,
                    rate: float = COSMIC_RAY_RATE) -> list[list[float]]:
    """Sharp hits (1-3 pixels each, ``rate`` per second of exposure) added in place; returns their [y, x, electrons]."""
    hits = []
    for _ in range(rng.poisson(rate * exptime)):
        y, x = rng.integers(0, TRIMMED_SHAPE[0]), rng.integers(0, TRIMMED_SHAPE[1])
        for dy, dx in [(0, 0), (0, 1), (1, 0), (1, 1)][: rng.integers(1, 4)]:
            yy, xx = min(y + dy, TRIMMED_SHAPE[0] - 1), min(x + dx, TRIMMED_SHAPE[1] - 1)
            electrons = float(rng.uniform(1500.0, 30000.0))
            image[yy, xx] += electrons
            hits.append([int(yy), int(xx), electrons])
    return hits


# -------------------------------------------------------------- raw frame I/O

def trim(raw: np.ndarray) -> np.ndarray:
    """The TRIMSEC part of a raw frame: the coordinate frame of all truth positions."""
    row, column = TRIM_OFFSET
    return raw[row: row + TRIMMED_SHAPE[0], column: column + TRIMMED_SHAPE[1]]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def to_raw(electrons: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Trimmed-frame electrons -> raw uint16 ADU with bias, photon and read noise."""
    adu = _bias_pattern() + rng.normal(0.0, RDNOISE / GAIN, RAW_SHAPE)
    if electrons is not None:
        trim(adu)[...] += rng.poisson(np.clip(electrons, 0.0, None)) / GAIN
    return np.clip(np.rint(adu), 0, SATURATION_ADU).astype(np.uint16)


def make_header(config: str, *, obstype: str, object_name: str, exptime: float, date_obs: str,
                proposal: str = DEFAULT_PROPOSAL, lamps_on: tuple[str, ...] = (),
                ra: str = "00:00:00.000", dec: str = "-30:00:00.000") -> fits.Header:
    """Modern-style Goodman Red header for one frame."""
    setup = configuration(config)
    header = fits.Header()
    cards = [
        ("TELESCOP", "SOAR 4.1m", ""), ("INSTRUME", "Goodman Spectro", ""),
        ("OBSTYPE", obstype, "observation type"), ("OBJECT", object_name, ""),
        ("INSTCONF", "Red", ""), ("GRATING", setup.grating, "VPH grating [1/mm]"),
        ("WAVMODE", setup.wavmode, "Wavelength"), ("FILTER", "NO_FILTER", "primary filter wheel"),
        ("FILTER2", setup.filter2, "secondary filter wheel"), ("SLIT", setup.slit, "slit [arcsec]"),
        ("CAM_TARG", setup.cam_targ, "camera target [deg]"), ("GRT_TARG", setup.grt_targ, "grating target [deg]"),
        ("CAM_ANG", setup.cam_targ, "camera angle [deg]"), ("GRT_ANG", setup.grt_targ, "grating angle [deg]"),
        ("ROI", "Spectroscopic 2x2", ""), ("CCDSUM", f"{BINNING} {BINNING}", ""),
        ("GAIN", GAIN, "CCD gain [e-/ADU]"), ("RDNOISE", RDNOISE, "CCD readnoise [e-]"),
        ("DATE-OBS", date_obs, "DATE-OBS Format: YYYY-MM-DDThh:mm:ss.sss"),
        ("DATE", date_obs[:10], "Date Format is YYYY-MM-DD"), ("EXPTIME", float(exptime), "integration time"),
        ("OBSRA", ra, "target right ascension [hh:mm:ss.sss]"), ("OBSDEC", dec, "target declination [dd:mm:ss.sss]"),
        ("RA", ra, "right ascension [hh:mm:ss.sss]"), ("DEC", dec, "declination [dd:mm:ss.sss]"),
        ("EQUINOX", 2000.0, "equinox of coordinates"),
        ("DISPAXIS", 1, ""), ("DETSIZE", "[1:4096,1:4096]", ""), ("TRIMSEC", TRIMSEC, ""),
        ("PROPOSAL", proposal, ""), ("OBSERVER", "GSP Live simulator", ""),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    for key in ("LAMP_HGA", "LAMP_NE", "LAMP_AR", "LAMP_FE", "LAMP_CU", "LAMP_QUA", "LAMP_BUL", "LAMP_DOM"):
        header[key] = ("TRUE" if key in lamps_on else "FALSE", "")
    header["LAMP_QPE"] = (50.0 if "LAMP_QUA" in lamps_on else 0.0, "Quartz Percent")
    header["COMMENT"] = "Synthetic frame made by GSP Live pipeline.simulate (truth in truth.json)"
    return header


def _frame(data: np.ndarray, header: fits.Header, truth: dict) -> Frame:
    # The header as it will be written (BITPIX 16, BZERO 32768 for uint16 data).
    return Frame(data, fits.PrimaryHDU(data=data, header=header).header, truth)


# ------------------------------------------------------------- frame makers

def make_bias(config: str = "400_M2", *, seed=None, date_obs: str = f"{DEFAULT_DATE}T23:00:00.000",
              proposal: str = DEFAULT_PROPOSAL) -> Frame:
    header = make_header(config, obstype="BIAS", object_name="BIAS", exptime=0.0, date_obs=date_obs, proposal=proposal)
    return _frame(to_raw(None, _rng(seed)), header, {"obstype": "BIAS", "config": config})


def make_flat(config: str = "400_M2", *, seed=None, exptime: float = 10.0, peak_electrons: float = 25000.0,
              date_obs: str = f"{DEFAULT_DATE}T23:10:00.000", proposal: str = DEFAULT_PROPOSAL) -> Frame:
    """Quartz flat: smooth lamp spectrum x slit illumination x pixel response."""
    wavelength = true_dispersion(config)(np.arange(TRIMMED_SHAPE[1]))
    electrons = peak_electrons * np.outer(slit_illumination(), quartz_spectrum(wavelength)) * _pixel_response()
    header = make_header(config, obstype="FLAT", object_name="quartz", exptime=exptime, date_obs=date_obs,
                         proposal=proposal, lamps_on=("LAMP_QUA",))
    return _frame(to_raw(electrons, _rng(seed)), header, {"obstype": "FLAT", "config": config})


def _dispersion_truth(config: str, dispersion: Dispersion, shift_px: float, scale: float) -> dict:
    return {"coefficients": list(dispersion.coefficients), "basis": "power", "x": "trimmed column",
            "shift_px": shift_px, "scale": scale, "library_lamp": configuration(config).library_lamp}


def make_arc(config: str = "400_M2", *, shift_px: float = 0.0, scale: float = 1.0, seed=None, exptime: float = 2.0,
             date_obs: str = f"{DEFAULT_DATE}T23:20:00.000", proposal: str = DEFAULT_PROPOSAL) -> Frame:
    """Comparison lamp drawn line by line at NIST wavelengths through the true dispersion."""
    setup = configuration(config)
    dispersion = true_dispersion(config, shift_px, scale)
    lines = arc_lines(config, dispersion)
    spectrum = gaussian_lines([l["x"] for l in lines], [l["electrons_per_row"] for l in lines])
    electrons = np.outer(slit_illumination(), spectrum) * _pixel_response()
    name = lamps.lamp_label(setup.arc_lamps).replace("+", "")  # e.g. HgArNe, CuHeAr
    header = make_header(config, obstype="COMP", object_name=name, exptime=exptime, date_obs=date_obs,
                         proposal=proposal, lamps_on=setup.arc_lamps)
    truth = {"obstype": "COMP", "config": config, "dispersion": _dispersion_truth(config, dispersion, shift_px, scale),
             "line_fwhm_px": LINE_FWHM_PX, "lines": lines}
    return _frame(to_raw(electrons, _rng(seed)), header, truth)


def make_science(config: str = "400_M2", *, pointing: Pointing | None = None, shift_px: float = 0.0,
                 scale: float = 1.0, seed=None, exptime: float = 600.0, cosmic_rays: bool = True,
                 cosmic_ray_rate: float = COSMIC_RAY_RATE, date_obs: str = f"{DEFAULT_DATE}T23:30:00.000",
                 proposal: str = DEFAULT_PROPOSAL, sky_line_strength: float = 1.0,
                 airmass: float = SCIENCE_AIRMASS) -> Frame:
    """Targets on tilted/curved traces, sky continuum and lines along the slit (``sky_line_strength``
    scales the lines), cosmic rays."""
    pointing = pointing or POINTINGS[config][0]
    rng = _rng(seed)
    dispersion = true_dispersion(config, shift_px, scale)
    exptime_scale = exptime / 600.0
    sky, sky_truth = sky_spectrum(dispersion, exptime_scale, sky_line_strength)
    electrons = np.outer(slit_illumination(), sky)
    targets_truth = []
    for target in pointing.targets:
        spectrum, lines_truth = target_spectrum(target, dispersion, exptime_scale)
        electrons += moffat_profile(target) * spectrum[None, :] * slit_illumination()[:, None]
        targets_truth.append({"trace": list(target.trace), "fwhm_px": target.fwhm_px, "beta": target.beta,
                              "redshift": target.redshift, "emission_lines": lines_truth})
    electrons *= _pixel_response()
    hits = add_cosmic_rays(electrons, rng, exptime, cosmic_ray_rate) if cosmic_rays else []
    header = make_header(config, obstype="SPECTRUM", object_name=pointing.object_name, exptime=exptime,
                         date_obs=date_obs, proposal=proposal, ra=pointing.ra, dec=pointing.dec)
    header["AIRMASS"] = (float(airmass), "airmass")  # as real frames have (their counts carry no flux truth)
    truth = {"obstype": "SPECTRUM", "config": config,
             "dispersion": _dispersion_truth(config, dispersion, shift_px, scale),
             "line_fwhm_px": LINE_FWHM_PX, "targets": targets_truth, "sky_lines": sky_truth, "cosmic_rays": hits}
    return _frame(to_raw(electrons, rng), header, truth)


def _point_source_frame(config: str, spectrum: np.ndarray, target: Target, dispersion: Dispersion, *,
                        shift_px: float, scale: float, object_name: str, ra: str, dec: str, exptime: float,
                        airmass: float, rng, cosmic_rays: bool, date_obs: str, proposal: str,
                        emission_lines: list[dict] | None = None) -> tuple[np.ndarray, fits.Header, dict]:
    """Raw data, header (with AIRMASS) and truth (``make_science``'s keys and the flux truth) of one
    point source (``spectrum``: electrons per column) on the night sky."""
    sky, sky_truth = sky_spectrum(dispersion, exptime / 600.0)
    electrons = np.outer(slit_illumination(), sky)
    electrons += moffat_profile(target) * spectrum[None, :] * slit_illumination()[:, None]
    electrons *= _pixel_response()
    hits = add_cosmic_rays(electrons, rng, exptime) if cosmic_rays else []
    header = make_header(config, obstype="SPECTRUM", object_name=object_name, exptime=exptime, date_obs=date_obs,
                         proposal=proposal, ra=ra, dec=dec)
    header["AIRMASS"] = (float(airmass), "airmass")
    truth = {"obstype": "SPECTRUM", "config": config,
             "dispersion": _dispersion_truth(config, dispersion, shift_px, scale), "line_fwhm_px": LINE_FWHM_PX,
             **_flux_truth(airmass, exptime),
             "targets": [{"trace": list(target.trace), "fwhm_px": target.fwhm_px, "beta": target.beta,
                          "redshift": 0.0, "emission_lines": emission_lines or []}],
             "sky_lines": sky_truth, "cosmic_rays": hits}
    return to_raw(electrons, rng), header, truth


def make_standard(config: str = "400_M2", *, star: str | None = None, airmass: float = 1.05, exptime: float = 30.0,
                  trace=(470.0, 0.003, -1.5e-6), fwhm_px: float = 4.0, shift_px: float = 0.0, scale: float = 1.0,
                  seed=None, cosmic_rays: bool = True, date_obs: str = f"{DEFAULT_DATE}T23:25:00.000",
                  proposal: str = DEFAULT_PROPOSAL) -> Frame:
    """A spectrophotometric standard (OBJECT ``star``, default the configuration's) whose electrons
    come from F_lambda of its table covering the detector (as the pipeline chooses it) through
    ``flux_throughput`` and the CTIO extinction at ``airmass``.  A short exposure gathers as little
    sky and as few cosmic rays as its time says (a bright HR star is exposed for about a second)."""
    object_name = star or STANDARDS[config]
    dispersion = true_dispersion(config, shift_px, scale)
    wavelength = dispersion(np.arange(TRIMMED_SHAPE[1]))
    table = standards.find_standard(object_name, (wavelength.min(), wavelength.max()))
    if table is None:
        raise ValueError(f"{object_name!r} is not a shipped standard star")
    spectrum = flux_to_electrons(wavelength, standard_f_lambda(table, wavelength), exptime, airmass)
    ra, dec = STANDARD_COORDINATES.get(table.name, ("00:00:00.000", "-30:00:00.000"))
    data, header, truth = _point_source_frame(
        config, spectrum, Target(trace=tuple(trace), fwhm_px=fwhm_px), dispersion, shift_px=shift_px, scale=scale,
        object_name=object_name, ra=ra, dec=dec, exptime=exptime, airmass=airmass, rng=_rng(seed),
        cosmic_rays=cosmic_rays, date_obs=date_obs, proposal=proposal)
    truth["standard"] = {"star": table.name, "table": f"{table.catalogue}/{table.path.name}",
                         "f_lambda": "the table's F_lambda joined by straight lines between band centres"}
    return _frame(data, header, truth)


def make_flux_science(config: str = "400_M2", *, source: FluxSource = FluxSource(), object_name: str = "QSO_J0342",
                      airmass: float = 1.45, exptime: float = 600.0, trace=(430.0, 0.004, -2.0e-6),
                      fwhm_px: float = 4.0, shift_px: float = 0.0, scale: float = 1.0, seed=None,
                      cosmic_rays: bool = True, date_obs: str = f"{DEFAULT_DATE}T23:40:00.000",
                      ra: str = "03:42:10.000", dec: str = "-37:44:00.00", proposal: str = DEFAULT_PROPOSAL) -> Frame:
    """A science point source of known F_lambda (``source``) through the same throughput and extinction."""
    dispersion = true_dispersion(config, shift_px, scale)
    wavelength = dispersion(np.arange(TRIMMED_SHAPE[1]))
    spectrum = flux_to_electrons(wavelength, source.continuum(wavelength), exptime, airmass)
    lines = [(w, f) for w, f in source.lines if min(wavelength) <= w <= max(wavelength)]  # those on the detector
    line_wavelengths = np.array([w for w, _ in lines])
    line_electrons = (np.array([f for _, f in lines]) * flux_throughput(line_wavelengths) * exptime
                      * 10.0 ** (-0.4 * standards.extinction_at(line_wavelengths) * airmass))
    centres = dispersion.pixel(line_wavelengths)
    spectrum = spectrum + gaussian_lines(centres, line_electrons)
    lines_truth = [{"rest_wavelength": w, "wavelength": w, "flux": f, "x": float(x), "electrons": float(e)}
                   for (w, f), x, e in zip(lines, centres, line_electrons)]
    data, header, truth = _point_source_frame(
        config, spectrum, Target(trace=tuple(trace), fwhm_px=fwhm_px), dispersion, shift_px=shift_px, scale=scale,
        object_name=object_name, ra=ra, dec=dec, exptime=exptime, airmass=airmass, rng=_rng(seed),
        cosmic_rays=cosmic_rays, date_obs=date_obs, proposal=proposal, emission_lines=lines_truth)
    truth["source"] = source.truth()
    return _frame(data, header, truth)


# -------------------------------------------------------------------- nights

def crowded_pointing(config: str, targets: int) -> Pointing:
    """One pointing holding the first ``targets`` targets of all the configuration's pointings (1-3), named
    after its first pointing: a night whose every science frame has that many targets."""
    pool = [target for pointing in POINTINGS[config] for target in pointing.targets]
    if not 1 <= targets <= len(pool):
        raise ValueError(f"{config} has 1 to {len(pool)} targets, not {targets}")
    first = POINTINGS[config][0]
    return Pointing(first.object_name, first.ra, first.dec, tuple(pool[:targets]))


def night_plan(configurations, n_bias: int, n_flats: int, n_science: int,
               n_standards: int = 0, targets: int | None = None) -> list[tuple[str, str, dict]]:
    """(kind, config, options) in observing order: per configuration bias, flats, arc, standards, science, arc.
    Science frames visit the configuration's pointings in turn, or, with ``targets``, one pointing of that
    many targets (:func:`crowded_pointing`)."""
    plan = []
    for config in configurations:
        plan += [("bias", config, {})] * n_bias + [("flat", config, {})] * n_flats + [("arc", config, {})]
        plan += [("standard", config, {"airmass": round(1.03 + 0.08 * i, 3)}) for i in range(n_standards)]
        pointings = POINTINGS[config] if targets is None else (crowded_pointing(config, targets),)
        # the pointings in turn, each exposure of a target at a higher airmass than the one before (it sets)
        plan += [("science", config, {"pointing": pointings[i % len(pointings)],
                                      "airmass": round(SCIENCE_AIRMASS + 0.1 * (i // len(pointings)), 3)})
                 for i in range(n_science)]
        plan += [("arc", config, {})]
    return plan


def file_name(index: int, header: fits.Header, date: str) -> str:
    """Goodman-style raw name, e.g. 0001_bias_2x2_27-11-2026.fits, 0014_NGC5128_400_M2_27-11-2026.fits."""
    night = datetime.strptime(date, "%Y-%m-%d").strftime("%d-%m-%Y")
    if header["OBSTYPE"] == "BIAS":
        return f"{index:04d}_bias_{BINNING}x{BINNING}_{night}.fits"
    label = "".join(c if c.isalnum() or c in "-+" else "_" for c in header["OBJECT"])
    return f"{index:04d}_{label}_{header['WAVMODE']}_{night}.fits"


def simulate_night(out_dir, *, seed: int = 0, configurations=("400_M2", "930_M2"), n_bias: int = 6, n_flats: int = 6,
                   n_science: int = 4, shift_px: float = 0.37, scale: float = 1.0008,
                   proposal: str = DEFAULT_PROPOSAL, date: str = DEFAULT_DATE, n_standards: int = 0,
                   cosmic_ray_rate: float = COSMIC_RAY_RATE, flexure_px: float | dict[str, float] = 0.0,
                   targets: int | None = None) -> Path:
    """Write a night of raw frames plus ``truth.json`` into ``out_dir``; return the truth path.

    Every configuration shares ``shift_px`` and ``scale`` against its own library lamp;
    ``n_standards`` standard stars (``STANDARDS``) are observed per configuration after its first arc.
    ``flexure_px`` (binned px along the dispersion, one value or one per configuration) moves the
    science and standard frames against the arcs, as the instrument's flexure does; each file's truth
    gives its ``flexure_px`` and its dispersion includes it. With ``targets`` (1-3), every science frame
    holds that many targets (:func:`night_plan`).
    """
    flexure = flexure_px if isinstance(flexure_px, dict) else {config: flexure_px for config in configurations}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clock = datetime.strptime(date, "%Y-%m-%d") + timedelta(hours=23)  # ~20:00 local at SOAR
    makers = {"bias": make_bias, "flat": make_flat, "arc": make_arc, "science": make_science,
              "standard": make_standard}
    files = {}
    plan = night_plan(configurations, n_bias, n_flats, n_science, n_standards, targets)
    for index, (kind, config, options) in enumerate(plan, start=1):
        moved = float(flexure.get(config, 0.0)) if kind in ("science", "standard") else 0.0
        if kind in ("arc", "science", "standard"):
            options = {**options, "shift_px": shift_px + moved, "scale": scale}
        if kind == "science":
            options["cosmic_ray_rate"] = cosmic_ray_rate
        date_obs = clock.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        frame = makers[kind](config, seed=rng, date_obs=date_obs, proposal=proposal, **options)
        name = file_name(index, frame.header, date)
        fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(out_dir / name, overwrite=True)
        files[name] = {**frame.truth, "date_obs": date_obs, **({"flexure_px": moved} if kind != "arc" else {})}
        clock += timedelta(seconds=float(frame.header["EXPTIME"]) + 45.0)  # readout and overheads
    truth = {
        "conventions": TRUTH_CONVENTIONS,
        "geometry": {"raw_shape": list(RAW_SHAPE), "trimsec": TRIMSEC, "trim_offset": list(TRIM_OFFSET),
                     "trimmed_shape": list(TRIMMED_SHAPE), "slit_rows": list(SLIT_ROWS), "binning": BINNING,
                     "gain": GAIN, "rdnoise": RDNOISE, "bias_level_adu": BIAS_LEVEL},
        "night": {"date": date, "proposal": proposal, "seed": seed, "configurations": list(configurations),
                  "shift_px": shift_px, "scale": scale, "cosmic_ray_rate": cosmic_ray_rate,
                  "flexure_px": {config: float(flexure.get(config, 0.0)) for config in configurations}},
        "files": files,
    }
    truth_path = out_dir / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth_path


def stream(source_dir, dest_dir, *, delay: float = 2.0, pattern: str = "*.fits") -> list[Path]:
    """Copy frames from ``source_dir`` into ``dest_dir`` one by one, in name order, ``delay`` s apart.

    Each file appears atomically (copied under a hidden name, then renamed), so a
    watcher never sees a half-written FITS file.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, source in enumerate(sorted(Path(source_dir).glob(pattern))):
        if number:
            time.sleep(delay)
        partial = dest_dir / f".{source.name}.part"
        shutil.copyfile(source, partial)
        os.replace(partial, dest_dir / source.name)
        written.append(dest_dir / source.name)
    return written


def flux_accuracy(wavelength, flux, source: dict, *, bin_width: float = 100.0) -> dict:
    """Calibrated / true F_lambda of a ``FluxSource`` continuum (its ``truth()``) in ``bin_width`` bins away
    from its lines (60 A), the spectrum's ends (150 A) and NaN: the median ratio, and the shape
    (|ratio / median - 1|) at p90 and worst, as the flux-calibration goal states them."""
    wavelength, flux = np.asarray(wavelength, dtype=float), np.asarray(flux, dtype=float)
    true = source["f_lambda_5500"] * (wavelength / 5500.0) ** source["index"]
    good = np.isfinite(flux)
    for line in source["lines"]:
        good &= np.abs(wavelength - line["wavelength"]) > 60
    low, high = wavelength[good].min() + 150, wavelength[good].max() - 150
    ratios = []
    for start in np.arange(low, high - bin_width, bin_width):
        inside = good & (wavelength >= start) & (wavelength < start + bin_width)
        if inside.sum() > 20:
            ratios.append(np.median(flux[inside]) / np.median(true[inside]))
    ratios = np.array(ratios)
    shape = np.abs(ratios / np.median(ratios) - 1)
    return {"median": float(np.median(ratios)), "p90": float(np.percentile(shape, 90)), "worst": float(shape.max()),
            "bins": int(ratios.size), "blue_ratio": float(ratios[0]), "red_ratio": float(ratios[-1])}


def parse_flexure(values: list[str]) -> float | dict[str, float]:
    """``["1.3"]`` -> 1.3 (every configuration); ``["400_M2=1.3", "930_M2=-0.9"]`` -> per configuration."""
    if len(values) == 1 and "=" not in values[0]:
        return float(values[0])
    per_config = {}
    for value in values:
        config, _, pixels = value.partition("=")
        configuration(config)  # a clear error for an unknown name
        per_config[config] = float(pixels)
    return per_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic Goodman night (and optionally stream it).")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream-to", help="then copy the frames one by one into this folder")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds between streamed frames")
    parser.add_argument("--bias", type=int, default=6, help="bias frames per configuration")
    parser.add_argument("--flats", type=int, default=6, help="flats per configuration")
    parser.add_argument("--standards", type=int, default=1, help="standard stars per configuration")
    parser.add_argument("--flexure", action="append", default=[], metavar="PX or CONFIG=PX",
                        help="shift of science frames against arcs, binned px (e.g. --flexure 400_M2=1.3 "
                             "--flexure 930_M2=-0.9, or one value for all)")
    parser.add_argument("--cosmic-ray-rate", type=float, default=COSMIC_RAY_RATE,
                        help="cosmic-ray hits per second of exposure on science frames")
    args = parser.parse_args(argv)
    truth = simulate_night(args.out_dir, seed=args.seed, n_bias=args.bias, n_flats=args.flats,
                           n_standards=args.standards, flexure_px=parse_flexure(args.flexure),
                           cosmic_ray_rate=args.cosmic_ray_rate)
    print(f"wrote {truth}")
    if args.stream_to:
        for path in stream(args.out_dir, args.stream_to, delay=args.delay):
            print(f"streamed {path.name}", flush=True)


if __name__ == "__main__":
    main()
