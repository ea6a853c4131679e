"""Wavelength calibration against synthetic truth and a real Goodman arc."""
import numpy as np
import pytest
from astropy.io import fits
from numpy.polynomial import Polynomial
from scipy import optimize

from pipeline import lamps, simulate, wavelength
from tests.conftest import REAL_DATA

REAL_ARC = REAL_DATA / "sp_400m2.fits"
# (configuration, shift in binned pixels, scale) against the library lamp.
CASES = [
    ("400_M2", 0.0, 1.0),
    ("400_M2", 0.37, 1.0008),
    ("400_M2", -0.71, 0.9991),
    ("930_M2", 0.25, 1.0012),
    ("930_M2", -1.45, 0.999),
]


def electrons(frame):
    return (simulate.trim(frame.data).astype(float) - simulate.BIAS_LEVEL) * simulate.GAIN


def extract(image, trace, half_width=10, sky_gap=20, sky_width=30):
    """Boxcar along the true trace, minus the median sky of two side bands."""
    offset = np.arange(image.shape[0])[:, None] - Polynomial(trace)(np.arange(image.shape[1]))[None, :]
    aperture = np.clip(half_width + 0.5 - np.abs(offset), 0.0, 1.0)
    sky_band = (np.abs(offset) > sky_gap) & (np.abs(offset) < sky_gap + sky_width)
    sky = np.nanmedian(np.where(sky_band, image, np.nan), axis=0)
    return (image * aperture).sum(axis=0) - sky * aperture.sum(axis=0)


def line_centre(wavelengths, flux, guess, half_width=8.0):
    """Centre of a Gaussian + sloped background fitted around ``guess`` (Angstrom)."""
    near = np.abs(wavelengths - guess) < half_width
    x, y = wavelengths[near] - guess, flux[near]

    def residual(params):
        amplitude, centre, sigma, level, slope = params
        return amplitude * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + level + slope * x - y

    return guess + optimize.least_squares(residual, (y.max(), 0.0, 2.0, np.median(y), 0.0)).x[1]


@pytest.fixture(scope="module", params=CASES, ids=[f"{c}{s:+.2f}x{k}" for c, s, k in CASES])
def calibrated_case(request):
    """Arc solved, then every target of every pointing extracted, calibrated and its lines measured."""
    config, shift, scale = request.param
    arc = simulate.make_arc(config, shift_px=shift, scale=scale, seed=11)
    arc_flux = electrons(arc)[200:700].sum(axis=0)
    errors_px = []
    for number, pointing in enumerate(simulate.POINTINGS[config]):
        science = simulate.make_science(config, pointing=pointing, shift_px=shift, scale=scale, seed=20 + number)
        image = electrons(science)
        for target in science.truth["targets"]:
            spectrum, record = wavelength.wavelength_calibrate(
                extract(image, target["trace"]), science.header, arc_flux, arc.header)
            truth = simulate.Dispersion(tuple(science.truth["dispersion"]["coefficients"]))
            for line in target["emission_lines"]:
                measured = line_centre(spectrum.wavelength, spectrum.flux, line["wavelength"])
                local_dispersion = np.polynomial.Polynomial(truth.coefficients).deriv()(line["x"])
                errors_px.append((measured - line["wavelength"]) / local_dispersion)
    return {"arc": arc, "record": record, "spectrum": spectrum, "errors_px": np.abs(errors_px)}


def test_emission_lines_land_on_truth(calibrated_case):
    errors = calibrated_case["errors_px"]
    assert len(errors) >= 8
    assert np.median(errors) < 0.05
    assert errors.max() < 0.15


def test_solution_follows_true_dispersion(calibrated_case):
    arc = calibrated_case["arc"]
    truth = simulate.Dispersion(tuple(arc.truth["dispersion"]["coefficients"]))
    x = np.arange(simulate.TRIMMED_SHAPE[1], dtype=float)
    solution = calibrated_case["spectrum"].solution
    assert np.max(np.abs(solution(x) - truth(x)) / np.gradient(truth(x))) < 0.06
    record = calibrated_case["record"]
    assert record["lines_used"] >= 30
    assert record["library_lamp"] == simulate.configuration(arc.truth["config"]).library_lamp
    assert abs(record["shift_px"] - arc.truth["dispersion"]["shift_px"]) < 1.0


def test_real_arc_calibrates():
    header = fits.getheader(REAL_ARC)
    flux = fits.getdata(REAL_ARC).astype(float)[150:250].mean(axis=0)
    solution, record = wavelength.calibrate_arc(flux, header)
    assert record["library_lamp"] == "goodman_comp_400M2_GG455_HgArNe.fits"
    assert record["lines_used"] >= 35
    assert record["rms_angstrom"] < 0.2
    assert record["wavelength_quality"]["verdict"] == "good", record["wavelength_quality"]  # a real arc, 1x1
    # The library lists Ne I 6143.0623 as 6143.5939: we must use the NIST value.
    assert 6143.0626 in [line["wavelength"] for line in record["lines"]]
    # Untrimmed 1x1 frame: column 0 lies ~50 pixels blue of the library's first pixel (4964 A).
    assert 4880 < solution(0) < 4930 and 8950 < solution(len(flux) - 1) < 9100


def test_product_is_readable_by_specutils(tmp_path):
    from specutils import Spectrum

    config = "400_M2"
    arc = simulate.make_arc(config, shift_px=0.2, seed=3)
    solution, record = wavelength.calibrate_arc(electrons(arc)[200:700].sum(axis=0), arc.header)
    flux = np.linspace(100.0, 200.0, simulate.TRIMMED_SHAPE[1])
    sigma = np.sqrt(flux)
    spectrum, _ = wavelength.apply_solution(flux, solution, sigma)
    path = wavelength.write_product(tmp_path / "w_test.fits", spectrum, arc.header, record=record)

    loaded = Spectrum.read(path, format="wcs1d-fits")
    assert np.allclose(loaded.spectral_axis.to_value("Angstrom"), spectrum.wavelength, rtol=0, atol=1e-3)
    assert loaded.flux.dtype.name == "float32"
    assert np.allclose(loaded.flux.value, spectrum.flux, rtol=1e-6)
    with fits.open(path) as hdul:
        assert hdul[0].header["CTYPE1"] == "WAVE" and hdul[0].header["CUNIT1"] == "Angstrom"
        assert hdul[0].header["GSP_WPOI"] == record["lines_used"]
        assert np.allclose(hdul["UNCERT"].data["uncertainty"], spectrum.uncertainty, rtol=1e-6)
        lines = hdul["LINES"].data
        assert int(lines["used"].sum()) == record["lines_used"]
        assert len(lines) == record["lines_used"] + record["lines_rejected"]
        assert set(lines.names) == {"pixel", "wavelength", "residual", "used"}


def test_resampling_conserves_flux_and_propagates_uncertainty():
    model = wavelength.models.Chebyshev1D(2, c0=6000.0, c1=1000.0, c2=150.0, domain=(0, 999))
    solution = wavelength.WavelengthSolution(model, np.array([]), np.array([]), 0, "none")
    rng = np.random.default_rng(0)
    flux = rng.uniform(50.0, 150.0, 1000)
    sigma = np.full(1000, 2.0)
    spectrum, record = wavelength.apply_solution(flux, solution, sigma)
    assert spectrum.flux.sum() == pytest.approx(flux.sum(), rel=1e-10)
    assert np.allclose(np.diff(spectrum.wavelength), spectrum.cdelt1)
    assert record["n_pixels"] == 1000
    # The propagated uncertainty is the scatter of resampled noisy copies.
    copies = np.array([wavelength.apply_solution(flux + rng.normal(0.0, sigma), solution)[0].flux
                       for _ in range(400)])
    ratio = copies.std(axis=0) / spectrum.uncertainty
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert np.all(np.abs(ratio - 1.0) < 0.25)


def _arc_header(config="400_M2", **changes):
    header = simulate.make_arc(config, seed=0).header.copy()
    for key, value in changes.items():
        header[key] = value
    return header


@pytest.mark.parametrize("changes, message", [
    ({"WAVMODE": "400_M7"}, "no library lamp for grating"),
    ({"GRATING": "600_SYZY", "WAVMODE": "600_M2"}, "no library lamp for grating"),
    ({"LAMP_HGA": "FALSE", "LAMP_NE": "FALSE", "OBJECT": "arc"}, "no comparison lamp is on"),
    ({"LAMP_HGA": "FALSE", "LAMP_AR": "TRUE", "OBJECT": "ArNe"}, "do not match any library lamp"),
    ({"OBJECT": "FeHeAr"}, "lamps disagree"),
])
def test_clear_lamp_errors(changes, message):
    with pytest.raises(wavelength.LampError, match=message):
        lamps.find_library_lamp(_arc_header(**changes))


def test_old_style_headers_find_their_lamp():
    old = fits.getheader(REAL_ARC)  # GRATING SYZY_400, WAVMODE '400 m2', OBSTYPE FOCUS
    assert lamps.find_library_lamp(old).name == "goodman_comp_400M2_GG455_HgArNe.fits"
    comp_2018 = fits.getheader(REAL_DATA / "goodman_red_comp.fits")  # no LAMP_*: OBJECT 'HgArNe'
    assert lamps.lamps_on(comp_2018) == ("LAMP_HGA", "LAMP_NE")
    with pytest.raises(wavelength.WavelengthCalibrationError, match="CAM_TARG"):
        lamps.find_library_lamp(comp_2018)  # 'Custom'-like empty WAVMODE at angles the library lacks


def test_too_few_lines_is_a_clear_error():
    arc = simulate.make_arc("400_M2", seed=0)
    lines = sorted(arc.truth["lines"], key=lambda line: -line["electrons_per_row"])[:4]
    flux = simulate.gaussian_lines([l["x"] for l in lines], [l["electrons_per_row"] * 100 for l in lines])
    flux += np.random.default_rng(1).normal(0.0, 5.0, flux.size) + 100.0
    with pytest.raises(wavelength.TooFewLinesError, match="at least"):
        wavelength.calibrate_arc(flux, arc.header)
