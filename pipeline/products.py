"""Reading a FITS product back: its image or spectrum, header, uncertainty, and the tables this
project's products carry (``LINES`` of a wavelength solution, ``POINTS`` of a sensitivity function,
``TELLURIC`` of a flux-calibrated spectrum: the transmission it was divided by).

What the viewers, the header table and the spectrum export read.  A small cache of decoded files
(keyed by path, size and modification time) spares a second read when only the way a file is drawn
changes.  Pure: no web, no database.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.datatypes import DataType
from pipeline.fitsfiles import header_cards, readable_header

# Not FITS WCS spectral types, so astropy does not know them for wavelengths; IRAF and older reductions write them.
IRAF_WAVELENGTH_CTYPES = ("LINEAR", "WAVELENGTH", "LAMBDA")
AXIS_KEYWORDS = ("CTYPE1", "CRVAL1", "CDELT1", "CD1_1", "PC1_1")  # the first axis' WCS, but its unit and CRPIX1
IRAF_UNITS = {"angstroms": u.AA, "a": u.AA}  # spellings of CUNIT1 outside the FITS standard that IRAF writes
IRAF_CRPIX = 1.0  # when CRPIX1 is missing (the FITS standard's 0 would move every wavelength by a pixel)
# astropy computes wavelengths in metres; rounding to 1e-9 Angstrom takes off the last bit the round trip
# adds (5000 A came back as 4999.999999999999), far below the precision of any wavelength solution.
ANGSTROM_DECIMALS = 9
UNCERTAINTY_COLUMNS = ("uncertainty", "error", "sigma")
LINES_COLUMNS = ("pixel", "wavelength", "residual")
POINTS_COLUMNS = ("wavelength", "mag", "fit", "used")
CACHE_SIZE = 8


class ProductError(ValueError):
    """The file cannot be read as an image or spectrum (missing, not FITS, none in it); the message says why."""


@dataclass
class Product:
    """What a FITS file holds, decoded once."""

    name: str
    kind: str  # "image" | "spectrum"
    data: np.ndarray
    header: fits.Header  # without the cards astropy cannot parse (fitsfiles.readable_header)
    cards: list[dict]  # every card as written, the unparsable ones flagged (fitsfiles.header_cards)
    uncertainty: np.ndarray | None = None
    lines: dict | None = None  # pixel, wavelength, residual arrays of the LINES HDU
    extras: dict = field(default_factory=dict)


_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def read_product(path) -> Product:
    """Decode ``path`` (cached by path, size and mtime). Raises ProductError."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ProductError(f"Cannot read {path.name}: {error.strerror or error}.") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    product = _read(path)
    with _CACHE_LOCK:
        _CACHE[key] = product
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return product


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _read(path: Path) -> Product:
    """Decode, naming astropy's warning of a truncated file in the error (alone, it says only 'empty')."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _decode(path)
        except ProductError as error:
            notes = "; ".join(str(w.message) for w in caught if "truncated" in str(w.message))
            if notes and notes not in str(error):
                raise ProductError(f"{error} ({notes})") from None
            raise


def _decode(path: Path) -> Product:
    try:
        with fits.open(path, memmap=False) as hdus:
            image = _image_hdu(hdus)
            if image is None:
                raise ProductError(f"{path.name} holds no image or spectrum data.")
            header = _merged_header(image, hdus[0])
            data = np.asarray(image.data)
            uncertainty = _uncertainty(hdus)
            lines = _lines(hdus)
            points = _points(hdus)
            telluric = _telluric(hdus)
    except ProductError:
        raise
    except Exception as error:  # astropy raises OSError, ValueError, TypeError... on bad input
        raise ProductError(f"Cannot read {path.name} as FITS: {error}") from None
    data = _plane(data, path.name)
    return Product(name=path.name, kind="spectrum" if data.ndim == 1 else "image", data=data,
                   header=readable_header(header), cards=header_cards(header),
                   uncertainty=_same_shape(uncertainty, data), lines=lines,
                   extras={key: value for key, value in (("points", points), ("telluric", telluric))
                           if value is not None})


def _image_hdu(hdus):
    """The first HDU with pixels: the primary, or an extension that is not the uncertainty or mask."""
    primary = hdus[0]
    return next((hdu for hdu in hdus
                 if hdu.is_image and hdu.header.get("NAXIS", 0) > 0 and hdu.data is not None
                 and (hdu is primary or hdu.name not in ("UNCERT", "MASK"))), None)


def _merged_header(image, primary) -> fits.Header:
    """The image's header; for .fits.fz and friends, with the primary's keywords it does not repeat."""
    header = image.header.copy()
    if image is not primary:
        for card in primary.header.cards:
            if card.keyword and card.keyword not in header and card.keyword not in ("SIMPLE", "EXTEND"):
                header.append(card)
    return header


def _plane(data: np.ndarray, name: str) -> np.ndarray:
    """The data without length-1 axes; of a cube, its first plane."""
    data = np.squeeze(data)
    if data.ndim == 0 or data.size == 0:
        raise ProductError(f"{name} holds no image or spectrum data.")
    if data.ndim > 2:
        data = data.reshape((-1,) + data.shape[-2:])[0]
    return data


def _same_shape(uncertainty: np.ndarray | None, data: np.ndarray) -> np.ndarray | None:
    """The uncertainty when it describes the data pixel by pixel, else None."""
    if uncertainty is None:
        return None
    uncertainty = np.squeeze(uncertainty)
    return uncertainty if uncertainty.shape == data.shape else None


def _table_columns(hdus, name: str) -> dict[str, np.ndarray] | None:
    """The columns of table HDU ``name`` by lower-case name, or None when there is no such table."""
    if name not in hdus:
        return None
    hdu = hdus[name]
    if hdu.data is None or not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) or not hdu.columns.names:
        return None
    return {column.lower(): np.asarray(hdu.data[column]) for column in hdu.columns.names}


def _uncertainty(hdus) -> np.ndarray | None:
    """The 1-sigma uncertainty of the ``UNCERT`` HDU: a table's column, or an image of astropy's UTYPE."""
    if "UNCERT" not in hdus:
        return None
    columns = _table_columns(hdus, "UNCERT")
    if columns is not None:
        named = [values for key, values in columns.items() if key in UNCERTAINTY_COLUMNS]
        return np.asarray(named[0] if named else next(iter(columns.values())), dtype=float)
    hdu = hdus["UNCERT"]
    if hdu.data is None or isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return None
    return _standard_deviation(np.asarray(hdu.data, dtype=float), str(hdu.header.get("UTYPE", "StdDevUncertainty")))


def _standard_deviation(values: np.ndarray, kind: str) -> np.ndarray:
    if kind.startswith("Variance"):
        return np.sqrt(np.clip(values, 0, None))
    if kind.startswith("InverseVariance"):
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(values)
    return values


def _lines(hdus) -> dict | None:
    """The arc lines of a wavelength solution: those used, and under ``rejected`` those left out."""
    columns = _table_columns(hdus, "LINES")
    if columns is None or "wavelength" not in columns:
        return None
    table = {key: np.asarray(columns[key], dtype=float) for key in LINES_COLUMNS if key in columns}
    # older products list only the lines used; newer ones add the rejected ones with used = False
    used = np.asarray(columns.get("used", np.ones(len(table["wavelength"]))), dtype=bool)
    return {**{key: values[used] for key, values in table.items()},
            "rejected": {key: values[~used] for key, values in table.items()}}


def _points(hdus) -> dict | None:
    """A sensitivity function's POINTS table: the standard's bands, the fit there, and which were used."""
    columns = _table_columns(hdus, "POINTS")
    if columns is None or not set(POINTS_COLUMNS) <= set(columns):
        return None
    return {key: columns[key] for key in POINTS_COLUMNS}


def _telluric(hdus) -> np.ndarray | None:
    """The telluric transmission a flux-calibrated spectrum was divided by, per pixel."""
    columns = _table_columns(hdus, "TELLURIC")
    if columns is None or "transmission" not in columns or "wavelength" in columns:  # a standard's: not per pixel
        return None
    return np.asarray(columns["transmission"], dtype=float)


# --------------------------------------------------------------------------- the spectral axis

def is_finite(value) -> bool:
    """True for a number (or a header value that reads as one) that is finite."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def wavelength_axis(header, n: int, data_type=None) -> np.ndarray | None:
    """Wavelengths (Angstrom) of the n pixels from the header's WCS, or None when it has no wavelength axis.

    A header without CTYPE1 is taken as wavelengths once the file is wavelength calibrated
    (``data_type``); IRAF's log-linear DC-FLAG = 1 is followed.
    """
    cdelt = header.get("CDELT1", header.get("CD1_1"))
    if not (is_finite(header.get("CRVAL1")) and is_finite(cdelt)) or float(cdelt) == 0:
        return None
    wcs = _spectral_wcs(header)
    if wcs is None or not _is_wavelength(wcs, data_type):
        return None
    values = wcs.pixel_to_world_values(np.arange(n, dtype=float))
    if str(header.get("DC-FLAG", "0")).strip() == "1":
        values = 10.0 ** values
    return np.round(values * float(wcs.wcs.cunit[0].to(u.AA)), ANGSTROM_DECIMALS)


def _spectral_wcs(header) -> WCS | None:
    """The WCS of the header's first axis, read as IRAF reads it (CRPIX1 = 1 when missing, and CUNIT1
    as ``_length_unit``), or None when astropy finds it inconsistent."""
    # Its own cards only: astropy reads a whole raw header (some 260 cards) in 9 ms, these in 0.6 ms.
    axis = fits.Header([(key, header[key]) for key in AXIS_KEYWORDS if key in header])
    axis["CUNIT1"] = _length_unit(header.get("CUNIT1")).to_string("fits")
    axis["CRPIX1"] = float(header["CRPIX1"]) if is_finite(header.get("CRPIX1")) else IRAF_CRPIX
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning: notes on how astropy read a card
            return WCS(axis)
    except ValueError:  # astropy's WcsError and its kinds (an unknown projection...)
        return None


def _length_unit(name) -> u.UnitBase:
    """CUNIT1 as a unit of length; Angstrom when it names none (IRAF's spectra often carry no unit)."""
    name = str(name or "").strip().lower()
    try:
        unit = IRAF_UNITS.get(name) or u.Unit(name)
    except ValueError:
        return u.AA
    return unit if unit.physical_type == "length" else u.AA


def _is_wavelength(wcs: WCS, data_type) -> bool:
    physical_type = wcs.world_axis_physical_types[0] or ""
    ctype = wcs.wcs.ctype[0].strip().upper()
    if physical_type.startswith("em.wl") or ctype.startswith(IRAF_WAVELENGTH_CTYPES):
        return True
    return ctype == "" and data_type is not None and int(data_type) >= DataType.WAVELENGTH_CALIBRATED
