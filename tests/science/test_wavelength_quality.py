"""The wavelength solution's quality verdict (issue 14, point 4): an arc solved with the wrong library lamp
finds a dozen lines and is "poor", with the reason; the right lamp is "good". The product keeps the lines
the fit rejected beside the ones it used, and the verdict in its header."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from pipeline import simulate, wavelength

WRONG_LAMP = "goodman_comp_400M2_GG455_CuHeAr.fits"  # the arc is HgArNe


@pytest.fixture(scope="module")
def arc():
    frame = simulate.make_arc("400_M2", shift_px=0.2, seed=3)
    return simulate.trim(frame.data.astype(float))[200:700].sum(axis=0), frame.header


def test_the_right_lamp_gives_a_good_solution(arc):
    _, record = wavelength.calibrate_arc(*arc)
    quality = record["wavelength_quality"]
    assert quality["verdict"] == "good", quality
    assert quality["lines_used"] >= 40 and quality["coverage"] > 0.9 and quality["rms_px"] < 0.05


def test_a_wrong_lamp_gives_a_poor_solution_and_says_why(arc):
    _, record = wavelength.calibrate_arc(*arc, wavelength.WavelengthOptions(library_lamp=WRONG_LAMP))
    quality = record["wavelength_quality"]
    assert quality["verdict"] == "poor"
    # a cubic has 4 free parameters: 16 lines at least
    assert f"{record['lines_used']} lines for a degree-3 fit over" in quality["why"]
    assert "(at least 16)" in quality["why"]


def test_the_product_keeps_rejected_lines_and_the_verdict(arc, tmp_path):
    flux, header = arc
    spectrum, record = wavelength.wavelength_calibrate(flux, header, flux, header)
    solution = spectrum.solution
    assert solution.n_rejected > 0 and len(solution.rejected_pixels) == solution.n_rejected
    path = wavelength.write_product(tmp_path / "warc.fits", spectrum, header, record=record)
    with fits.open(path) as hdus:
        lines = hdus["LINES"].data
        assert int(np.sum(~lines["used"])) == solution.n_rejected
        assert int(np.sum(lines["used"])) == len(solution.pixels)
        assert hdus[0].header["GSP_WQUA"] == "good"
    table = solution.lines_table()
    assert sum(not line["used"] for line in table) == solution.n_rejected
