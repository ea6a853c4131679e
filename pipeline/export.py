"""A 1D spectrum as a table (wavelength or pixel, flux, uncertainty, with units), written as CSV or ECSV:
what ``GET /api/files/<id>/spectrum.csv|.ecsv`` sends and the Data page's Export buttons link to."""
from __future__ import annotations

import io

import astropy.units as u
import numpy as np
from astropy.table import Table

from pipeline.products import ProductError, read_product, wavelength_axis

FORMATS = {"csv": ("ascii.csv", "text/csv"), "ecsv": ("ascii.ecsv", "text/plain")}  # ECSV has no registered type


def spectrum_table(path, data_type=None, *, name: str = "") -> Table:
    """The spectrum in ``path`` as a Table; ProductError when it is not a 1D spectrum."""
    product = read_product(path)
    if product.kind != "spectrum":
        raise ProductError(f"{name or product.name} is a 2D image, not a 1D spectrum: only spectra export as tables.")
    flux = np.asarray(product.data, dtype=float)
    unit = u.Unit(str(product.header.get("BUNIT", "adu")).strip() or "adu", parse_strict="silent")
    wavelength = wavelength_axis(product.header, flux.size, data_type)
    table = Table()
    if wavelength is not None:
        table["wavelength"] = wavelength * u.AA  # air, as the product's WCS
    else:
        table["pixel"] = np.arange(flux.size)
    table["flux"] = flux * unit
    if product.uncertainty is not None:
        table["uncertainty"] = np.asarray(product.uncertainty, dtype=float) * unit
    header = product.header
    table.meta.update({"file_name": name or product.name, "object": str(header.get("OBJECT", "")).strip(),
                       "date_obs": str(header.get("DATE-OBS", "")).strip(), "data_type": data_type})
    if "GSP_WRMS" in header:
        table.meta["wavelength_rms_angstrom"] = float(header["GSP_WRMS"])
    return table


def write_table(table: Table, fmt: str) -> str:
    """The table as ECSV (units and metadata kept) or CSV (each unit in its column's name, which CSV
    otherwise loses: ``flux [erg / (Angstrom s cm2)]``)."""
    if fmt == "csv":
        table = Table([table[name].value if table[name].unit else table[name] for name in table.colnames],
                      names=[f"{name} [{table[name].unit}]" if table[name].unit else name
                             for name in table.colnames])
    buffer = io.StringIO()
    table.write(buffer, format=FORMATS[fmt][0])
    return buffer.getvalue()
