"""Telluric correction: the atmosphere's absorption bands, measured on a standard star and scaled to
the science frame's airmass (the classic method of IRAF ``telluric`` and PypeIt's empirical mode).

1. Measure (with the sensitivity function, on the standard): inside each band the transmission is the
   standard's observed counts over its smooth continuum, 1 outside the bands.  The continuum is what the
   star's table, the sensitivity function (fitted with these bands masked) and the extinction predict,
   renormalised by a straight line through the ratio in ``WINDOW`` A of clear continuum beside the band,
   so a slow mismatch of table or slit losses does not leak into the band.  Where the sensitivity
   function does not reach, the transmission is unknown (NaN).
2. Scale to the science frame: optical depth grows with airmass as ``X^b``, so
   ``T_sci = T_std ** ((X_sci / X_std) ** b)``, interpolated on wavelength (the standard's and the
   science's grids differ by their flexure; they share the configuration, so the resolution).
   ``b`` is one per band, fitted on the science frame's own band (the A band first of all: deep, with a
   sharp head) when its S/N and the airmass lever allow: the saturated A band deepens slower than the
   weaker B band, and water's depth follows the night's vapour as much as the airmass.  A band whose fit
   fails takes the median of its molecule's fitted bands, else the molecule's default:
   ``DEFAULT_EXPONENT["O2"] = 0.6`` -- the band's lines are saturated, so at low resolution the band
   deepens like the square root of the column for the strongest lines and linearly for the weak ones;
   0.55-0.6 is the value measured on real spectra (0.61 on this project's simulated A band).
   ``DEFAULT_EXPONENT["H2O"] = 1`` -- weak, unsaturated lines grow with the column (0.85-0.9 on the
   simulated bands, whose strongest lines saturate a little).
3. Apply: the spectrum and its uncertainty are divided by ``T_sci``; bands (or parts of them) the
   standard's measurement does not cover are left as they are, and the record says which.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy.optimize import minimize_scalar


@dataclass(frozen=True)
class Band:
    name: str
    low: float  # Angstrom, air
    high: float
    molecule: str  # "O2" or "H2O": whose default exponent it takes
    key: str  # two characters: its exponent's header card is GSP_TB<key>


BANDS = (Band("O2 B", 6860.0, 6960.0, "O2", "OB"), Band("H2O 7200", 7160.0, 7340.0, "H2O", "W1"),
         Band("O2 A", 7590.0, 7710.0, "O2", "OA"), Band("H2O 8200", 8120.0, 8350.0, "H2O", "W2"),
         Band("H2O 9300", 8900.0, 9800.0, "H2O", "W3"))
DEFAULT_EXPONENT = {"O2": 0.6, "H2O": 1.0}  # the module docstring says why
EXPONENT_LIMITS = (0.3, 1.2)  # a fitted exponent outside these is not physical: the fit was fooled
MAX_EXPONENT_ERROR = 0.1  # a fitted exponent less certain than this is not used
MIN_AIRMASS_LEVER = 0.05  # |ln(X_sci / X_std)| below this: the exponent cannot show (nor matter much)
# Angstrom beyond a band's nominal edges still corrected: the instrument's profile (FWHM ~6 A at 400_M2 2x2)
# spreads the A band's sharp head at 7594 A to below 7590 A.  Outside the absorption the transmission is 1.
EDGE = 10.0
WINDOW = 60.0  # Angstrom of continuum each side of a band
MIN_WINDOW_PIXELS = 5
MIN_TRANSMISSION = 0.02  # a noisy pixel of the standard must not make the atmosphere opaque
HDU_NAME = "TELLURIC"


@dataclass(frozen=True, eq=False)
class Transmission:
    """The atmosphere's transmission measured on a standard star at ``airmass``, per pixel of its spectrum."""

    wavelength: np.ndarray
    transmission: np.ndarray  # 1 outside the bands, NaN where it could not be measured
    airmass: float
    star: str


def in_band(wavelength, band: Band) -> np.ndarray:
    """Pixels of ``band``, its ``EDGE`` included."""
    wavelength = np.asarray(wavelength, dtype=float)
    return (wavelength >= band.low - EDGE) & (wavelength <= band.high + EDGE)


def in_any_band(wavelength) -> np.ndarray:
    return np.any([in_band(wavelength, band) for band in BANDS], axis=0)


def _band_level(wavelength: np.ndarray, values: np.ndarray, band: Band) -> np.ndarray | None:
    """A straight line through ``values`` in the clear windows beside ``band`` (a constant when only one
    side is there), at the band's pixels; None without enough clear pixels beside it."""
    low, high = band.low - EDGE, band.high + EDGE
    beside = ((wavelength >= low - WINDOW) & (wavelength < low)) | ((wavelength > high) & (wavelength <= high + WINDOW))
    clear = beside & ~in_any_band(wavelength) & np.isfinite(values)
    if clear.sum() < MIN_WINDOW_PIXELS:
        return None
    both_sides = (wavelength[clear] < low).any() and (wavelength[clear] > high).any()
    line = np.polynomial.Polynomial.fit(wavelength[clear], values[clear], 1 if both_sides else 0)
    return line(wavelength[in_band(wavelength, band)])


def measure(wavelength, observed, continuum, airmass: float, star: str) -> Transmission:
    """The transmission a standard star shows: ``observed`` counts over their ``continuum`` inside the
    bands (NaN where the continuum is unknown), 1 outside."""
    wavelength = np.asarray(wavelength, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(observed, dtype=float) / np.asarray(continuum, dtype=float)
    transmission = np.ones_like(wavelength)
    for band in BANDS:
        inside = in_band(wavelength, band)
        level = _band_level(wavelength, ratio, band) if inside.any() else None
        transmission[inside] = np.nan if level is None else np.clip(ratio[inside] / level, MIN_TRANSMISSION, None)
    return Transmission(wavelength, transmission, float(airmass), star)


def on_grid(measured: Transmission, wavelength) -> np.ndarray:
    """The standard's transmission at ``wavelength`` (another frame's pixels): 1 outside the bands, NaN
    inside them where it was not measured."""
    wavelength = np.asarray(wavelength, dtype=float)
    values = np.interp(wavelength, measured.wavelength, measured.transmission, left=np.nan, right=np.nan)
    return np.where(in_any_band(wavelength), values, 1.0)


def scaled(standard_transmission: np.ndarray, wavelength, lever: float, exponents: dict) -> np.ndarray:
    """``T_std ** exp(b * lever)`` band by band (``lever`` = ln(X_sci / X_std), ``exponents`` by band name,
    the molecule's default for the others); 1 where the standard's transmission is unknown (not corrected)."""
    result = np.where(np.isfinite(standard_transmission), standard_transmission, 1.0)
    for band in BANDS:
        inside = in_band(wavelength, band)
        result[inside] = result[inside] ** np.exp(exponents.get(band.name, DEFAULT_EXPONENT[band.molecule]) * lever)
    return result


def fit_exponent(wavelength, flux, uncertainty, standard_transmission: np.ndarray, lever: float,
                 band: Band) -> tuple[float | None, str]:
    """The exponent b that makes the standard's ``band``, scaled by ``lever`` = ln(X_sci / X_std), match
    the science frame's (``flux`` over its straight-line continuum): (b, how it was found), or (None, why
    not) when the lever is too short, the band not covered, the S/N too low or b not physical."""
    if abs(lever) < MIN_AIRMASS_LEVER:
        return None, f"the airmasses differ by {abs(lever):.0%}, too little for the exponent to show"
    wavelength, flux = np.asarray(wavelength, dtype=float), np.asarray(flux, dtype=float)
    inside = in_band(wavelength, band)
    level = _band_level(wavelength, flux, band)
    usable = np.isfinite(standard_transmission[inside]) & np.isfinite(flux[inside])
    if level is None or usable.sum() < MIN_WINDOW_PIXELS or uncertainty is None:
        return None, f"the science spectrum does not show the {band.name} band with its continuum and uncertainty"
    ratio, sigma = (flux[inside] / level)[usable], (np.asarray(uncertainty, dtype=float)[inside] / np.abs(level))[usable]
    standard = standard_transmission[inside][usable]

    def chi2(b):
        return np.sum(((ratio - standard ** np.exp(b * lever)) / sigma) ** 2)

    b = float(minimize_scalar(chi2, bounds=(0.0, 2.0), method="bounded").x)
    slope = standard ** np.exp(b * lever) * np.log(standard) * np.exp(b * lever) * lever  # d model / d b
    error = float(1.0 / np.sqrt(np.sum((slope / sigma) ** 2)))
    if error > MAX_EXPONENT_ERROR:
        return None, f"the science frame's {band.name} band is too noisy to fit it ({b:.2f} \u00b1 {error:.2f})"
    if not EXPONENT_LIMITS[0] <= b <= EXPONENT_LIMITS[1]:
        return None, f"the fit on the science frame's {band.name} band gave {b:.2f}, not physical"
    return b, f"fitted on the science frame's {band.name} band (\u00b1 {error:.2f})"


def band_exponents(wavelength, flux, uncertainty, standard_transmission: np.ndarray, lever: float,
                   bands: list[Band]) -> tuple[dict, dict]:
    """b of each of ``bands`` and how it was found: fitted on the band where it can be; else the median of
    its molecule's fitted bands; else the molecule's default (the reason the fit failed kept)."""
    tried = {band.name: fit_exponent(wavelength, flux, uncertainty, standard_transmission, lever, band)
             for band in bands}
    exponents, why = {}, {}
    for band in bands:
        exponents[band.name], why[band.name] = tried[band.name]
        if exponents[band.name] is None:
            fitted = [tried[other.name][0] for other in bands
                      if other.molecule == band.molecule and tried[other.name][0] is not None]
            exponents[band.name] = float(np.median(fitted)) if fitted else DEFAULT_EXPONENT[band.molecule]
            source = f"the median of the {band.molecule} bands fitted" if fitted else f"the {band.molecule} default"
            why[band.name] = f"{source} ({why[band.name]})"
    return exponents, why


def _coverage(wavelength: np.ndarray, covered: np.ndarray, standard: str) -> tuple[list[Band], list[dict]]:
    """The bands corrected, and those (or their parts) inside the spectrum the standard did not cover."""
    corrected, not_covered = [], []
    for band in BANDS:
        inside = in_band(wavelength, band)
        if (inside & covered).any():
            corrected.append(band)
        missed = wavelength[inside & ~covered]
        if missed.size:
            not_covered.append({"band": band.name, "range": [round(float(missed.min()), 1),
                                                               round(float(missed.max()), 1)],
                                "why": f"not covered by the sensitivity function of {standard}"})
    return corrected, not_covered


def correct(wavelength, flux, uncertainty, airmass: float,
            measured: Transmission) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, dict]:
    """The flux and uncertainty divided by the transmission at the science airmass, that transmission
    (per pixel), and the record of what was done."""
    wavelength, flux = np.asarray(wavelength, dtype=float), np.asarray(flux, dtype=float)
    within = np.isfinite(flux)
    if not (in_any_band(wavelength) & within).any():
        span = f"{wavelength[within].min():.0f}-{wavelength[within].max():.0f} A" if within.any() else "nothing"
        return flux, uncertainty, np.ones_like(flux), not_applied(f"no telluric band in the calibrated range ({span})")
    standard = on_grid(measured, wavelength)
    lever = float(np.log(airmass / measured.airmass))
    corrected, not_covered = _coverage(wavelength[within], np.isfinite(standard[within]), measured.star)
    exponents, why = band_exponents(wavelength, flux, uncertainty, standard, lever, corrected)
    transmission = scaled(standard, wavelength, lever, exponents)
    record = {"applied": bool(corrected), "standard": measured.star, "airmass_standard": measured.airmass,
              "airmass_science": float(airmass), "exponent": exponents, "exponent_why": why,
              "bands": [band.name for band in corrected], "not_covered": not_covered}
    if not corrected:
        record["reason"] = f"the sensitivity function of {measured.star} covers no telluric band of this spectrum"
    errors = None if uncertainty is None else np.asarray(uncertainty, dtype=float) / transmission
    return flux / transmission, errors, transmission, record


def not_applied(reason: str) -> dict:
    return {"applied": False, "reason": reason}


def summary(record: dict | None) -> str:
    """One line for people: what was corrected with what, or why not."""
    if not record:
        return "telluric bands not corrected (made before the correction existed)"
    if not record.get("applied"):
        return f"telluric bands not corrected: {record.get('reason')}"
    exponents = ", ".join(f"{name} {value:.2f}" for name, value in record["exponent"].items())
    text = (f"{', '.join(record['bands'])} corrected with {record['standard']} (airmass "
            f"{record['airmass_standard']:.2f} \u2192 {record['airmass_science']:.2f}; b: {exponents})")
    missed = [f"{entry['band']} {entry['range'][0]:.0f}-{entry['range'][1]:.0f} A" for entry in record["not_covered"]]
    return text + (f"; not corrected: {', '.join(missed)} (not covered by the standard)" if missed else "")


# --- FITS -------------------------------------------------------------------------------------------

def standard_hdu(measured: Transmission) -> fits.BinTableHDU:
    """The measured transmission, for the sensitivity function's file."""
    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="wavelength", format="D", unit="Angstrom", array=measured.wavelength),
        fits.Column(name="transmission", format="D", array=measured.transmission)], name=HDU_NAME)
    hdu.header["AIRMASS"] = (measured.airmass, "airmass of the standard")
    hdu.header["GSP_STD"] = (measured.star, "standard star")
    return hdu


def read_standard(path) -> Transmission | None:
    """The transmission a sensitivity function's file carries (None for one written before it did)."""
    with fits.open(path) as hdus:
        if HDU_NAME not in hdus:
            return None
        table, header = hdus[HDU_NAME].data, hdus[HDU_NAME].header
        return Transmission(np.asarray(table["wavelength"], dtype=float),
                            np.asarray(table["transmission"], dtype=float), float(header["AIRMASS"]),
                            str(header["GSP_STD"]))


def product_hdu(transmission: np.ndarray) -> fits.BinTableHDU:
    """The transmission a flux-calibrated spectrum was divided by, per pixel."""
    return fits.BinTableHDU.from_columns(
        [fits.Column(name="transmission", format="E", array=np.asarray(transmission, dtype=np.float32))],
        name=HDU_NAME)


def header_cards(record: dict) -> dict:
    """GSP_TELL* cards of a flux-calibrated product (keywords of 8 characters)."""
    cards = {"GSP_TELL": (bool(record.get("applied")), "telluric bands corrected")}
    if not record.get("applied"):
        return {**cards, "GSP_TWHY": (record.get("reason", ""), "why the telluric bands were not corrected")}
    return {**cards,
            "GSP_TSTD": (record["standard"], "standard the transmission was measured on"),
            "GSP_TXST": (record["airmass_standard"], "airmass of that standard"),
            "GSP_TXSC": (record["airmass_science"], "airmass of this frame"),
            **{f"GSP_TB{band.key}": (round(record["exponent"][band.name], 4), f"{band.name} b: tau ~ airmass**b")
               for band in BANDS if band.name in record["exponent"]},
            "GSP_TBND": (", ".join(record["bands"]), "telluric bands corrected"),
            "GSP_TMIS": (", ".join(entry["band"] for entry in record["not_covered"]) or "none",
                         "bands (or parts) not covered by the standard")}
