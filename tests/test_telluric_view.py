"""The Data page's viewer draws the telluric transmission a flux-calibrated spectrum was divided by (the
product's TELLURIC HDU), when the observer ticks it among the overlays."""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from figures.interactive import figure_for_file
from figures.overlays import OVERLAYS
from figures.png import png_for_file
from pipeline import flux, telluric
from pipeline.products import read_product

WAVELENGTH = np.arange(6500.0, 8000.0, 2.0)
TRANSMISSION = np.where(np.abs(WAVELENGTH - 7620.0) < 30.0, 0.55, 1.0)


def flux_product(path, with_telluric=True):
    header = fits.Header()
    header.update({"CRVAL1": (float(WAVELENGTH[0]), ""), "CDELT1": (2.0, ""), "CRPIX1": (1.0, ""),
                   "CTYPE1": ("WAVE", ""), "CUNIT1": ("Angstrom", ""), "OBJECT": "QSO"})
    extra = (telluric.product_hdu(TRANSMISSION),) if with_telluric else ()
    return flux.write_flux_product(path, header, np.full(WAVELENGTH.size, 1e-15), None, header, extra_hdus=extra)


def transmission_traces(fig):
    return [trace for trace in fig.data if trace.name == "telluric transmission used"]


def test_the_transmission_used_is_an_overlay_of_the_flux_calibrated_spectrum(tmp_path):
    path = flux_product(tmp_path / "fw_qso.fits")
    assert np.array_equal(read_product(path).extras["telluric"], TRANSMISSION.astype(np.float32))
    assert OVERLAYS["telluric"][0] == "Telluric transmission used (from the file)"
    (trace,) = transmission_traces(figure_for_file(path, data_type=5, overlays=("telluric", "sky")))
    fig = figure_for_file(path, data_type=5, overlays=("telluric",))
    assert trace.yaxis == "y2" and np.allclose(trace.y, TRANSMISSION) and np.allclose(trace.x, WAVELENGTH)
    assert tuple(fig.layout.yaxis2.range) == (0, 1.05) and fig.layout.yaxis2.overlaying == "y"
    assert fig.layout.yaxis2.title.text == "telluric transmission" and fig.layout.yaxis.title.text.startswith("Flux")
    assert transmission_traces(figure_for_file(path, data_type=5, overlays=("sky",))) == []
    assert png_for_file(path, width=600, overlays=("telluric",)).startswith(b"\x89PNG")


def test_a_spectrum_without_the_transmission_draws_nothing_for_it(tmp_path):
    plain = flux_product(tmp_path / "fw_plain.fits", with_telluric=False)
    assert "telluric" not in read_product(plain).extras
    assert transmission_traces(figure_for_file(plain, data_type=5, overlays=("telluric",))) == []
