"""What a 1D spectrum is drawn against: flux over wavelength when the header has a wavelength axis,
over pixels otherwise; and the other spectra drawn over it, on the same terms."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from figures.labels import PIXEL_AXIS, WAVELENGTH_AXIS, is_arc
from pipeline.products import Product, ProductError, read_product, wavelength_axis


class SpectrumAxes(NamedTuple):
    flux: np.ndarray
    x: np.ndarray  # the wavelengths, or the pixels
    wavelength: np.ndarray | None  # None: the header has no wavelength axis
    x_title: str

    @property
    def x_unit(self) -> str:
        return "\u00c5" if self.wavelength is not None else "px"


def spectrum_axes(product: Product, data_type=None) -> SpectrumAxes:
    flux = np.asarray(product.data, dtype=np.float64)
    wavelength = wavelength_axis(product.header, flux.size, data_type)
    if wavelength is None:
        return SpectrumAxes(flux, np.arange(flux.size, dtype=float), None, PIXEL_AXIS)
    return SpectrumAxes(flux, wavelength, wavelength, WAVELENGTH_AXIS)


def compared_spectra(compare, data_type) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, x, flux) of each spectrum to draw over the one shown; unreadable ones are left out."""
    drawn = []
    for label, path in compare or ():
        try:
            other = read_product(path)
        except ProductError:
            continue
        if other.kind == "spectrum":
            axes = spectrum_axes(other, data_type)
            drawn.append((label, axes.x, axes.flux))
    return drawn


def shows_residuals(product: Product, axes: SpectrumAxes) -> bool:
    """An arc with a wavelength solution shows its lines' residuals under the spectrum."""
    return bool(product.lines) and axes.wavelength is not None and is_arc(product.header)
