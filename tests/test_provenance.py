"""Why and with what (issue 14, point 2): a product's header keeps the full names of the calibrations it
used (no 68-character cut), and the Data page's card says the state, its reason in full, and each
calibration by its full name with why it was chosen."""
from __future__ import annotations

from types import SimpleNamespace

from astropy.io import fits

from components.provenance import provenance_card, used_calibrations

LONG_BLOCK = "Red_400_M2_GG455_1.0_LONG_SLIT_2x2_27-11-2026_a_long_block_of_frames"
LONG_BIAS = "master_bias_Red_400_M2_GG455_1.0_LONG_SLIT_2x2_27-11-2026_a_long_block_of_frames_v12.fits"


def _texts(component) -> list[str]:
    """Every string in a Dash component tree."""
    if isinstance(component, str):
        return [component]
    if isinstance(component, (list, tuple)):
        return [text for child in component for text in _texts(child)]
    children = getattr(component, "children", None)
    return _texts(children) if children is not None else []


def test_a_long_calibration_name_survives_in_the_product_header(tmp_path):
    from pipeline import simulate, steps
    from pipeline.settings import ReductionSettings

    science = simulate.make_science(seed=3, cosmic_rays=False)
    raw = tmp_path / "0014_NGC5128_400_M2_27-11-2026.fits"
    fits.PrimaryHDU(science.data, science.header).writeto(raw)
    biases = []
    for seed in (4, 5, 6):
        biases.append(tmp_path / f"000{seed}_bias.fits")
        bias = simulate.make_bias(seed=seed)
        fits.PrimaryHDU(bias.data, bias.header).writeto(biases[-1])
    settings = ReductionSettings(cosmic_ray_rejection="none", ignore_flats=True, min_bias=3)
    master = steps.master_bias(biases, settings, tmp_path / "out", LONG_BLOCK)
    product = steps.reduce_raw(raw, settings, tmp_path / "out", technique="Spectroscopy", bias_path=master.path,
                               flat_path=None)
    header = fits.getheader(product.path)
    assert len(master.path.name) > 68 and header["GSP_BIAS"] == master.path.name
    from components.header_table import header_cards  # the Data page's header table shows it whole too

    assert {"keyword": "GSP_BIAS", "value": master.path.name, "comment": "bias used"} in header_cards(product.path)
    assert header["GSP_PNAM"] == raw.name


def _file(**fields):
    defaults = {"id": 7, "data_type": 2, "state": "done", "state_reason": "", "calibrations": {}}
    return SimpleNamespace(**{**defaults, **fields})


def test_the_card_names_each_calibration_in_full_with_why():
    reduced = _file(id=8, calibrations={
        "bias": {"id": 3, "file": LONG_BIAS, "why": "same binning, closest in time"},
        "flat": None, "missing": ["master flat"]})
    calibrated = _file(id=9, calibrations={
        "arc": {"id": 5, "file": "czst_0015_HgArNe_400_M2_27-11-2026.fits", "why": "same configuration, 10 min"},
        "lamp": "goodman_comp_400M2_GG455_HgArNe.fits",
        "wavelength_quality": {"verdict": "poor", "why": "13 lines for a degree-3 fit"},
        "flexure": {"applied": True, "shift_px": 0.42, "uncertainty_px": 0.03, "lines": [{}, {}, {}]}})
    raw = _file(id=1, data_type=0, state="waiting", state_reason="calibrate_wavelength: waiting for a compatible arc "
                "(no arc of 400_M2 / GG455 / 1.0_LONG_SLIT on 2026-11-27 yet)")
    used = used_calibrations(raw, [raw, reduced, calibrated])
    texts = " | ".join(_texts(provenance_card(raw, used, "pick")))
    assert LONG_BIAS in texts and "same binning, closest in time" in texts
    assert "czst_0015_HgArNe_400_M2_27-11-2026.fits" in texts and "goodman_comp_400M2_GG455_HgArNe.fits" in texts
    assert raw.state_reason in texts  # the reason in full, not cut
    assert "Poor wavelength solution" in texts and "13 lines for a degree-3 fit" in texts
    assert "not applied" in texts  # the flat it lacked
    assert "flexure +0.42 \u00b1 0.03 px from 3 sky lines" in texts


def test_a_master_says_what_it_was_made_of():
    master = _file(data_type=1, calibrations={"inputs": ["0001_bias.fits", "0002_bias.fits"], "why": "2 bias frames"})
    texts = " | ".join(_texts(provenance_card(master, used_calibrations(master, [master]), "pick")))
    assert "0001_bias.fits, 0002_bias.fits" in texts and "2 bias frames" in texts


def test_a_sensitivity_function_names_its_star_and_table():
    function = _file(data_type=1, calibrations={"standard": {"star": "LTT 7379", "table": "ctionewcal/l7379.dat"}})
    texts = " | ".join(_texts(provenance_card(function, used_calibrations(function, [function]), "pick")))
    assert "LTT 7379" in texts and "fluxes tabulated in ctionewcal/l7379.dat" in texts


def test_a_poor_solution_is_the_state_reason_of_what_it_calibrated():
    from live.tasks import quality_note

    poor = {"wavelength_quality": {"verdict": "poor", "why": "13 lines for a degree-3 fit over 4010 A (at least 16)"}}
    assert quality_note(poor) == "poor wavelength solution: 13 lines for a degree-3 fit over 4010 A (at least 16)"
    assert quality_note({"wavelength_quality": {"verdict": "good", "why": "60 lines"}}) == ""
    assert quality_note(None) == ""


def test_a_flux_calibrated_spectrum_says_how_its_telluric_bands_were_corrected():
    record = {"applied": True, "standard": "LTT 7379", "airmass_standard": 1.03, "airmass_science": 1.65,
              "exponent": {"O2 B": 0.62, "O2 A": 0.61}, "bands": ["O2 B", "O2 A"],
              "exponent_why": {"O2 B": "the median of the O2 bands fitted (too noisy)",
                               "O2 A": "fitted on the science frame's O2 A band (\u00b1 0.01)"},
              "not_covered": [{"band": "H2O 8200", "range": [8112.0, 8359.0], "why": "not covered"}]}
    texts = " | ".join(_texts(provenance_card(_file(data_type=5), {"telluric": record}, "pick")))
    assert ("Telluric | O2 B, O2 A corrected with LTT 7379 (airmass 1.03 \u2192 1.65; b: O2 B 0.62, O2 A 0.61); "
            "not corrected: H2O 8200 8112-8359 A (not covered by the standard) | "
            "O2 B: b the median of the O2 bands fitted (too noisy); "
            "O2 A: b fitted on the science frame's O2 A band (\u00b1 0.01)") in texts
    off = {"telluric": {"applied": False, "reason": "telluric correction off"}}
    assert "Telluric | telluric bands not corrected: telluric correction off" in " | ".join(
        _texts(provenance_card(_file(data_type=5), off, "pick")))
    older = " | ".join(_texts(provenance_card(_file(data_type=5), {}, "pick")))  # made before the correction
    assert "telluric bands not corrected (made before the correction existed)" in older
    assert "Telluric" not in " | ".join(_texts(provenance_card(_file(data_type=4), {}, "pick")))
