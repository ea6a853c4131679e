"""The blocks over files: read inputs from disk, run one science block, write its products.

Pure (no web, no database): the live job layer (``pipeline/tasks.py``) and the
offline twin (``pipeline/night.py``) both call these, so a night reduced live
and a night reduced offline are reduced the same way.  Product names keep
the Goodman prefix convention; a taken name is never overwritten (a re-run
writes ``_v2``, ``_v3``...).  What "taken" means is the caller's: offline, any
file on disk; live, a catalogued product (a lost run's leftover is overwritten).
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyWarning

from pipeline import combine as combine_block
from pipeline import extract as extract_block
from pipeline import flexure, flux, masters, products, reduce, standards, telluric, wavelength
from pipeline.chain import DataType
from pipeline.fitsfiles import PRODUCT_VERIFY
from pipeline.settings import ReductionSettings
from pipeline.timing import stage

Taken = Callable[[Path], bool]
SKY_EXTENSION = "SKY"


@dataclass
class Product:
    """One file a block wrote."""

    path: Path
    data_type: int
    record: dict
    target: int | None = None
    normalized: bool = False
    extra: dict = field(default_factory=dict)


def free_path(folder: Path, name: str, taken: Taken = Path.exists) -> Path:
    """``folder/name``, or ``name_v2``, ``_v3``... when taken: products are never overwritten."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    stem, suffix = name[: -len(".fits")] if name.endswith(".fits") else name, ".fits"
    version = 2
    while taken(path):
        path = folder / f"{stem}_v{version}{suffix}"
        version += 1
    return path


def version_of(name: str) -> int:
    """A product's version from the name free_path gave it: ``…_v3.fits`` is 3, the first one (no suffix) 1."""
    found = re.search(r"_v(\d+)\.fits(\.fz)?$", name)
    return int(found.group(1)) if found else 1


def stem(path: Path | str) -> str:
    name = Path(path).name
    for suffix in (".fits.fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def base_stem(path: Path | str) -> str:
    """A product's stem without the version ``free_path`` gave it: what is made of ``x_v2.fits`` is named
    from ``x`` and versioned on its own (``fx_v2.fits``, ``fx_v3.fits``), never ``fx_v2_v2.fits``."""
    return re.sub(r"_v\d+$", "", stem(path))


def _write_ccd(ccd: CCDData, path: Path, lineage: dict, extra_hdus: tuple[fits.ImageHDU, ...] = ()) -> Path:
    with warnings.catch_warnings():
        # Long file names are written whole, over CONTINUE cards (the FITS long-string convention):
        # a name cut at 68 characters names no file.
        warnings.simplefilter("ignore", AstropyWarning)
        for keyword, (value, comment) in lineage.items():
            if value is not None:
                ccd.header[keyword] = (str(value), comment)
        hdus = ccd.to_hdu(hdu_mask=None, hdu_flags=None)  # what CCDData.write writes
        hdus.extend(extra_hdus)
        with stage("write"):
            hdus.writeto(path, overwrite=True, output_verify=PRODUCT_VERIFY)  # free_path chose a name not taken
    return path


def _lineage(parent: Path | None = None, original: Path | None = None, **calibrations) -> dict:
    cards = {"GSP_PNAM": (parent and Path(parent).name, "parent file"),
             "GSP_ORIG": (original and Path(original).name, "original raw file")}
    names = {"bias": "GSP_BIAS", "flat": "GSP_FLAT", "arc": "GSP_ARC"}
    for kind, path in calibrations.items():
        cards[names[kind]] = (path and Path(path).name, f"{kind} used")
    return cards


def snr_card(values, uncertainty) -> tuple[dict, dict]:
    """A 1D product's median S/N per pixel over the central half of its range, as its record's ``snr``
    and its header card ``GSP_SNR`` (both empty without an uncertainty)."""
    snr = combine_block.median_snr(values, uncertainty)
    if snr is None:
        return {}, {}
    return {"snr": snr}, {"GSP_SNR": (round(snr, 2), "median S/N per pixel, central half of the range")}


def _technique(settings: ReductionSettings, technique: str | None) -> ReductionSettings:
    """The file's own technique decides the steps (slit trim only for spectroscopy)."""
    return dataclasses.replace(settings, technique=technique) if technique else settings


# --- Calibrations ---------------------------------------------------------------------------------

def master_name(fields: dict, kind: str) -> str:
    """e.g. ``Red_2x2_400_M2_GG455_27-11-2026`` (flats) or ``Red_2x2_27-11-2026`` (bias)."""
    night = "-".join(reversed(str(fields["date"]).split("-")))
    parts = [fields["instconf"], fields["binning"]]
    if kind == "flat":
        parts += [fields["wavmode"], fields["filter"], fields["filter_2"], fields["slit"]]
    parts.append(night)
    return "_".join(str(part).replace(" ", "-").replace("/", "-") for part in parts if part)


def master_bias(raw_paths: list[Path], settings: ReductionSettings, out_dir: Path, name: str,
                taken: Taken = Path.exists) -> Product:
    master, record = masters.build_master_bias([str(p) for p in raw_paths], settings)
    path = _write_ccd(master, free_path(out_dir, f"master_bias_{name}.fits", taken), _lineage())
    return Product(path, DataType.MASTER, record)


def master_flat(raw_paths: list[Path], settings: ReductionSettings, out_dir: Path, name: str,
                bias_path: Path | None, technique: str | None = None, taken: Taken = Path.exists
                ) -> tuple[Product, Product]:
    settings = _technique(settings, technique)
    master, normalized, record = masters.build_master_flat([str(p) for p in raw_paths], settings,
                                                           master_bias=str(bias_path) if bias_path else None)
    lineage = _lineage(bias=bias_path)
    master_path = _write_ccd(master, free_path(out_dir, f"master_flat_{name}.fits", taken), lineage)
    norm_path = _write_ccd(normalized, free_path(out_dir, f"norm_master_flat_{name}.fits", taken),
                           {**lineage, "GSP_PNAM": (master_path.name, "parent file")})
    return (Product(master_path, DataType.MASTER, record),
            Product(norm_path, DataType.MASTER, record, normalized=True))


# --- Reduce ----------------------------------------------------------------------------------------

def reduce_raw(raw_path: Path, settings: ReductionSettings, out_dir: Path, *, technique: str | None,
               bias_path: Path | None, flat_path: Path | None, taken: Taken = Path.exists) -> Product:
    ccd, record = reduce.reduce_frame(str(raw_path), _technique(settings, technique),
                                      master_bias=str(bias_path) if bias_path else None,
                                      master_flat=str(flat_path) if flat_path else None)
    name = f"{record['prefix']}{stem(raw_path)}.fits"
    path = _write_ccd(ccd, free_path(out_dir, name, taken),
                      _lineage(raw_path, raw_path, bias=bias_path if record["bias"]["applied"] else None,
                               flat=flat_path if record["flat"]["applied"] else None))
    return Product(path, DataType.REDUCED, record)


# --- Extract ---------------------------------------------------------------------------------------

def _read_ccd(path: Path) -> CCDData:
    with stage("read frame"):
        return reduce.load_frame(str(path))


def extract_reduced(reduced_path: Path, settings: ReductionSettings, out_dir: Path, *,
                    original: Path | None, taken: Taken = Path.exists) -> list[Product]:
    """Identify, trace and extract every target of a reduced science frame.  Each product keeps the night
    sky beside its target (extension ``SKY``, ADU per column under the aperture): its lines measure the
    frame's flexure."""
    science = _read_ccd(reduced_path)
    spectra, record = extract_block.extract(science, settings)
    products = []
    for spectrum in spectra:
        name = f"e{base_stem(reduced_path)}_target_{spectrum.number}.fits"
        sky = () if spectrum.sky is None else (fits.ImageHDU(spectrum.sky.astype(np.float32), name=SKY_EXTENSION),)
        ccd = extract_block.spectrum_ccd(spectrum, science.header)
        snr, card = snr_card(spectrum.flux, spectrum.uncertainty)
        ccd.header.update(card)
        path = _write_ccd(ccd, free_path(out_dir, name, taken), _lineage(reduced_path, original), sky)
        products.append(Product(path, DataType.EXTRACTED, {**spectrum.record, "frame": record, **snr},
                                target=spectrum.number))
    return products


def stored_trace(extracted_path: Path) -> extract_block.Trace:
    """The trace an extracted spectrum recorded in its header (GSP_TORD, GSP_TCnn)."""
    header = fits.getheader(extracted_path)
    order = int(header["GSP_TORD"])
    return extract_block.Trace(coefficients=tuple(header[f"GSP_TC{p:02d}"] for p in range(order + 1)),
                               fwhm=float(header.get("GSP_FWHM", 0.0)), shape={},
                               rms=float(header.get("GSP_TERR", 0.0)), samples=0, rejected=0)


def extract_arc_along(arc_reduced_path: Path, science_extracted_path: Path, out_dir: Path, *,
                      target: int, original: Path | None, science_label: str, taken: Taken = Path.exists
                      ) -> Product:
    """Extract a reduced arc through the aperture of an extracted science target
    (``science_label``, the science frame's raw stem, names it as that frame's: one per frame and target)."""
    arc = _read_ccd(arc_reduced_path)
    empty = np.zeros(arc.shape[1])
    science = extract_block.ExtractedSpectrum(target, empty, empty, empty, stored_trace(science_extracted_path))
    with stage("arc extraction"):
        arc_spectrum, record = extract_block.extract_arc(arc, science)
    name = f"e{base_stem(arc_reduced_path)}_for_{science_label}_target_{target}.fits"
    path = _write_ccd(extract_block.spectrum_ccd(arc_spectrum, arc.header), free_path(out_dir, name, taken),
                      _lineage(arc_reduced_path, original))
    return Product(path, DataType.EXTRACTED, record, target=target)


# --- Wavelength calibration ------------------------------------------------------------------------

def _read_1d(path: Path) -> tuple[np.ndarray, np.ndarray | None, fits.Header]:
    with fits.open(path) as hdus:
        flux = np.asarray(hdus[0].data, dtype=float)
        header = hdus[0].header.copy()
        uncertainty = np.asarray(hdus["UNCERT"].data, dtype=float) if "UNCERT" in hdus else None
    return flux, uncertainty, header


def _read_sky(path: Path) -> np.ndarray | None:
    with fits.open(path) as hdus:
        return np.asarray(hdus[SKY_EXTENSION].data, dtype=float) if SKY_EXTENSION in hdus else None


def _flexure(science_path: Path, science_flux: np.ndarray, solution: wavelength.WavelengthSolution, record: dict,
             correct: bool) -> tuple[wavelength.WavelengthSolution, dict]:
    """The science frame's solution (the arc's, shifted when its sky lines say so) and the flexure record."""
    if not correct:
        return solution, {"applied": False, "reason": "flexure correction is off in the settings"}
    measured = flexure.measure_shift(_read_sky(science_path), solution, record["line_fwhm_px"],
                                     binning=record["binning"], target_flux=science_flux)
    if measured["reason"] is not None:
        return solution, measured
    return flexure.shifted_solution(solution, measured["shift_px"]), {**measured, "applied": True}


def calibrate_wavelength(science_path: Path, arc_path: Path, out_dir: Path, *, original: Path | None,
                         target: int | None = None, options: wavelength.WavelengthOptions | None = None,
                         correct_flexure: bool = True, taken: Taken = Path.exists) -> tuple[Product, Product]:
    """Solve the extracted arc and apply it to the extracted science spectrum (and to the arc itself,
    so the arc's product shows the lines used and their residuals).  With ``correct_flexure`` the
    solution is first moved by the science frame's shift against the arc, measured on its sky lines
    (record ``flexure``: the shift, its uncertainty, the lines, and why it was not applied if so)."""
    science_flux, science_error, science_header = _read_1d(science_path)
    arc_flux, _, arc_header = _read_1d(arc_path)
    with stage("wavelength solution"):
        arc_solution, arc_record = wavelength.calibrate_arc(arc_flux, arc_header, options)
    with stage("flexure"):
        solution, flexure_record = _flexure(science_path, science_flux, arc_solution, arc_record, correct_flexure)
    spectrum, resampled = wavelength.apply_solution(science_flux, solution, science_error)
    snr, card = snr_card(spectrum.flux, spectrum.uncertainty)
    record = {**arc_record, **resampled, "flexure": flexure_record, **snr}
    lineage = _lineage(science_path, original, arc=arc_path)
    header = science_header.copy()
    header.update({key: value for key, value in lineage.items() if value[0] is not None})
    header.update(card)
    with stage("write"):
        science_out = wavelength.write_product(free_path(out_dir, f"w{base_stem(science_path)}.fits", taken), spectrum,
                                               header, record=record)
    arc_spectrum, arc_resampled = wavelength.apply_solution(arc_flux, arc_solution)
    arc_record = {**arc_record, **arc_resampled}
    arc_header = arc_header.copy()
    arc_header.update({key: value for key, value in _lineage(arc_path, None).items() if value[0] is not None})
    with stage("write"):
        arc_out = wavelength.write_product(free_path(out_dir, f"w{base_stem(arc_path)}.fits", taken), arc_spectrum,
                                           arc_header, record=arc_record)
    return (Product(science_out, DataType.WAVELENGTH_CALIBRATED, record, target=target),
            Product(arc_out, DataType.WAVELENGTH_CALIBRATED, arc_record, target=target))


# --- Flux calibration ------------------------------------------------------------------------------

def _linear_spectrum(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, fits.Header, float, float]:
    """Wavelengths (from the linear WCS), counts, uncertainty, header, exposure time and airmass of a
    wavelength-calibrated product; ValueError when the extinction correction lacks what it needs."""
    counts, uncertainty, header = _read_1d(path)
    pixels = np.arange(counts.size) + 1.0 - float(header.get("CRPIX1", 1.0))
    wavelengths = float(header["CRVAL1"]) + pixels * float(header["CDELT1"])
    missing = [key for key in ("EXPTIME", "AIRMASS") if not isinstance(header.get(key), (int, float))]
    if missing:
        raise ValueError(f"{Path(path).name} has no {' or '.join(missing)} in its header: flux calibration "
                         "needs both (the extinction correction goes by the airmass)")
    return wavelengths, counts, uncertainty, header, float(header["EXPTIME"]), float(header["AIRMASS"])


def sensitivity(calibrated_path: Path, star_name: str, out_dir: Path, *, original: Path | None,
                taken: Taken = Path.exists) -> Product:
    """The sensitivity function of a wavelength-calibrated spectrum of the standard star named ``star_name``,
    measured on that star's table covering most of the spectrum, and the telluric transmission the star
    shows (its HDU ``TELLURIC``: what the flux calibration corrects the bands with)."""
    wavelengths, counts, _, header, exptime, airmass = _linear_spectrum(calibrated_path)
    star = standards.find_standard(star_name, (wavelengths[0], wavelengths[-1]))
    if star is None:
        raise ValueError(f"{star_name!r} is not a standard star of the shipped tables")
    function = flux.sensitivity_function(wavelengths, counts, exptime, airmass, star)
    saturated = saturated_in_aperture(original, calibrated_path) if original is not None else None
    continuum = flux.expected_counts(wavelengths, exptime, airmass, function, star)
    transmission = telluric.measure(wavelengths, counts, continuum, airmass, star.name)
    cards = header.copy()
    cards.update({key: value for key, value in _lineage(calibrated_path, original).items() if value[0] is not None})
    if saturated is not None:
        cards["GSP_SSAT"] = (saturated, "saturated raw pixels in the star's aperture")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # long file names push comments out of their cards
        path = flux.write_sensitivity(free_path(out_dir, f"sens_{base_stem(calibrated_path)}.fits", taken), function,
                                      cards, extra_hdus=(telluric.standard_hdu(transmission),))
    record = {"star": star.name, "table": f"{star.catalogue}/{star.path.name}", "points_used": function.n_used,
              "points_rejected": function.n_rejected, "rms_mag": function.rms, "airmass": airmass,
              "wavelength_range": list(function.wavelength_range), "saturated_pixels": saturated,
              "warnings": [f"{saturated} pixels of the star's aperture are saturated in {Path(original).name}: "
                           "the sensitivity is too low where they are (expose the star for less)"] if saturated else []}
    return Product(path, DataType.MASTER, record)


def saturated_in_aperture(raw_path: Path, spectrum_path: Path) -> int | None:
    """Pixels of a raw frame at or above its saturation level inside the extraction aperture (the trace
    +- APERTURE_FWHM FWHM) of a spectrum made from it, found through the trims and trace its header keeps;
    None when the raw header tells no saturation level (no SATURATE, nor GAIN and RDNOISE for the table).
    A bright standard can saturate in a second, and its extracted counts then fall short of its flux."""
    raw = reduce.load_frame(raw_path)
    try:
        level = reduce.header_saturation(raw.header)
    except reduce.MissingKeywordError:
        return None
    header = fits.getheader(spectrum_path)
    lit = reduce.trim(reduce.trim(raw, header[reduce.IMAGE_TRIM_KEY]), header[reduce.SLIT_TRIM_KEY])
    trace = stored_trace(spectrum_path)
    offsets = np.arange(lit.shape[0])[:, None] - trace(np.arange(lit.shape[1]))[None, :]
    inside = np.abs(offsets) <= extract_block.APERTURE_FWHM * trace.fwhm + 0.5
    return int(np.count_nonzero(inside & (lit.data >= level)))


def _telluric(sensitivity_path: Path, wavelengths, values, errors, airmass: float, correct: bool):
    """The flux and uncertainty with the telluric bands corrected (or as they were), the transmission
    divided by, and the record (``pipeline.telluric.correct``'s, or why not)."""
    unchanged = (values, errors, np.ones_like(values))
    if not correct:
        return *unchanged, telluric.not_applied("telluric correction off")
    measured = telluric.read_standard(sensitivity_path)
    if measured is None:
        return *unchanged, telluric.not_applied(f"{Path(sensitivity_path).name} carries no telluric transmission "
                                                "(made before the correction existed): make it again")
    return telluric.correct(wavelengths, values, errors, airmass, measured)


@stage("flux calibration")
def calibrate_flux(calibrated_path: Path, sensitivity_path: Path, out_dir: Path, *, original: Path | None,
                   target: int | None, why: str, correct_telluric: bool = True, taken: Taken = Path.exists) -> Product:
    """F_lambda of a wavelength-calibrated spectrum with a sensitivity function, both at airmass 0; with
    ``correct_telluric``, the telluric bands divided by the transmission the sensitivity's standard showed,
    scaled to this frame's airmass (record ``telluric``; HDU ``TELLURIC`` holds the transmission used)."""
    wavelengths, counts, uncertainty, header, exptime, airmass = _linear_spectrum(calibrated_path)
    function = flux.read_sensitivity(sensitivity_path)
    values, errors = flux.apply_sensitivity(wavelengths, counts, uncertainty, exptime, airmass, function)
    values, errors, transmission, telluric_record = _telluric(sensitivity_path, wavelengths, values, errors, airmass,
                                                              correct_telluric)
    header = header.copy()
    header.update({key: value for key, value in _lineage(calibrated_path, original).items() if value[0] is not None})
    header["GSP_SENS"] = (Path(sensitivity_path).name, "sensitivity function used")  # whole, over CONTINUE cards
    header["GSP_STD"] = (function.star, "standard star of that function")
    header["GSP_SWHY"] = (why, "why that standard")
    snr, card = snr_card(values, errors)
    header.update(card)
    header.update(telluric.header_cards(telluric_record))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # long values push comments out of their cards: fine
        path = flux.write_flux_product(free_path(out_dir, f"f{base_stem(calibrated_path)}.fits", taken), header, values,
                                       errors, header, extra_hdus=(telluric.product_hdu(transmission),) if telluric_record["applied"] else ())
    covered = np.isfinite(values)
    record = {"star": function.star, "sensitivity": Path(sensitivity_path).name, "why": why, "airmass": airmass,
              "covered_fraction": float(covered.mean()) if values.size else 0.0, "telluric": telluric_record, **snr}
    return Product(path, DataType.FLUX_CALIBRATED, record, target=target)


# --- Combine ---------------------------------------------------------------------------------------

MAX_INPUT_CARDS = 99  # GSP_IN01 .. GSP_IN99 name the inputs


def combined_name(raw_path: Path | str, target: int | None) -> str:
    """``coadd_NGC5128_400_M2_27-11-2026_target_1.fits`` from a raw ``0014_NGC5128_400_M2_27-11-2026.fits``:
    named by the target, not by one exposure (each new combination is a new version of it)."""
    label = re.sub(r"^\d+_", "", stem(raw_path))
    return f"coadd_{label}" + (f"_target_{target}" if target else "") + ".fits"


@stage("combine")
def combine_spectra(paths: list[Path], out_dir: Path, *, name: str, original: Path | None, target: int | None,
                    taken: Taken = Path.exists) -> Product:
    """Combine wavelength-calibrated (counts) or flux-calibrated (F_lambda) spectra of one target, oldest
    first, into one (``pipeline.combine``); the header is the newest input's, with the total exposure time,
    the mean airmass, ``GSP_NCOM`` and the input names."""
    read = [_read_1d(path) for path in paths]
    counts = not str(read[0][2].get("BUNIT", "")).startswith("erg")
    exposures = [combine_block.Exposure(products.wavelength_axis(header, values.size), values,
                                        uncertainty if uncertainty is not None else np.full(values.size, np.nan),
                                        float(header.get("EXPTIME") or 1.0)) for values, uncertainty, header in read]
    combined = combine_block.combine(exposures, counts=counts)
    header = read[-1][2].copy()
    snr, card = snr_card(combined.values, combined.uncertainty)
    airmasses = [float(h["AIRMASS"]) for _, _, h in read if isinstance(h.get("AIRMASS"), (int, float))]
    header.update({key: value for key, value in _lineage(paths[-1], original).items() if value[0] is not None})
    header.update({
        "CTYPE1": ("WAVE", "air wavelength"), "CUNIT1": ("Angstrom", ""), "CRPIX1": (1.0, ""),
        "CRVAL1": (combined.start, "wavelength of pixel CRPIX1"), "CDELT1": (combined.step, "Angstrom per pixel"),
        "WCSAXES": 1, "DISPAXIS": 1, "EXPTIME": (combined.exptime, "total exposure time of the inputs [s]"),
        "DATE-OBS": (read[0][2].get("DATE-OBS", ""), "start of the first input"),
        "GSP_NCOM": (len(paths), "number of spectra combined"),
        "GSP_CREJ": (round(combined.rejected_fraction, 5), "fraction of input pixels rejected as outliers"),
        **card})
    if airmasses:
        header["AIRMASS"] = (float(np.mean(airmasses)), "mean airmass of the inputs")
    for number, path in enumerate(paths[:MAX_INPUT_CARDS], start=1):
        header[f"GSP_IN{number:02d}"] = (Path(path).name, f"input {number}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # long file names go over CONTINUE cards
        path = flux.write_flux_product(free_path(out_dir, name, taken), header, combined.values,
                                       combined.uncertainty, header, unit=header.get("BUNIT", "adu"))
    record = {"inputs": [Path(path).name for path in paths], "level": "flux" if not counts else "wavelength",
              "exptime": combined.exptime, "rejected_fraction": combined.rejected_fraction,
              "input_snr": [snr_card(values, uncertainty)[0].get("snr") for values, uncertainty, _ in read],
              "wavelength_range": [combined.start, float(combined.wavelength[-1])], **snr}
    return Product(path, DataType.COMBINED, record, target=target)
