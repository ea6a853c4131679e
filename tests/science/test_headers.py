"""Classification and keyword normalization of Goodman headers (pipeline/headers.py)."""
from datetime import datetime, timezone

import pytest
from astropy.io import fits

from pipeline.headers import (
    HeaderError,
    classify,
    identify_technique,
    is_calibration,
    kind,
    night_date,
    normalize_keyword,
    normalized_fields,
    normalized_header,
    reclassify,
)
from tests.conftest import REAL_DATA

REAL = REAL_DATA


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


# Expected classification of every real file, written out from its header.
RED_2018 = {  # the four SO2018A-011 Red-camera headers share this setup
    "instconf": "Red", "grating": "400_SYZY", "wavmode": "CUSTOM",
    "filter": "NO_FILTER", "filter_2": "NO_FILTER", "slit": "0.45_LONG_SLIT",
    "roi": "user-defined", "ccdsum": "1 2", "binning": "1x2",
    "cam_targ": 13.853463, "grt_targ": 6.926732, "gain": 1.48, "rdnoise": 3.89,
    "saturation_value": 65535, "proposal_id": "SO2018A-011", "lamps": [], "data_type": 0,
    "technique": "Spectroscopy",
}
BLANK_WAVMODE = ["WAVMODE missing or blank; taken as CUSTOM from GRATING, CAM_TARG, GRT_TARG"]
FOCUS_2019 = {  # the two goodman_focus files, one afternoon in May 2019
    "object": "", "instconf": "Red", "filter_2": "NO_FILTER", "slit": "0.45_LONG_SLIT",
    "roi": "user-defined", "ccdsum": "1 1", "binning": "1x1",
    "obsra": "17:23:60.000", "obsdec": "-26:21:11.999", "gain": 1.45, "rdnoise": 5.27,
    "saturation_value": 65535, "date": "2019-05-15", "proposal_id": None,
    "data_type": 0, "notes": [], "obstype": "FOCUS",
}
EXPECTED = {
    "goodman_2016.fits": {
        "obstype": "COMP", "technique": "Spectroscopy", "object": "CuHeAr",
        "instconf": "Blue", "grating": "600_SYZY_OLD", "wavmode": "600_BLUE",
        "filter": "NO_FILTER", "filter_2": "NO_FILTER", "slit": "1.03_LONG_SLIT",
        "roi": "user-defined", "ccdsum": "1 1", "binning": "1x1",
        "cam_targ": 17.0, "grt_targ": 7.0, "obsra": "05:56:24.299", "obsdec": "-27:51:28.800",
        "gain": 5.67, "rdnoise": 8.62, "saturation_value": 12328, "exptime": 120.0,
        "date_obs": utc(2016, 10, 30, 20, 42, 32, 800000), "date": "2016-10-30",
        "proposal_id": "S02016B-104", "lamps": [], "data_type": 0,
        "notes": ["INSTCONF missing; taken as Blue",
                  "WAVMODE missing or blank; taken as 600_BLUE from GRATING, CAM_TARG, GRT_TARG",
                  "ROI missing or blank; taken as user-defined"],
    },
    "goodman_blue_spec.fits": {
        "obstype": "OBJECT", "technique": "Spectroscopy", "object": "HD109379",
        "instconf": "Blue", "grating": "600_SYZY_OLD", "wavmode": "600_BLUE",
        "filter": "NO_FILTER", "filter_2": "NO_FILTER", "slit": "1.03_LONG_SLIT",
        "roi": "user-defined", "ccdsum": "1 1", "binning": "1x1",
        "cam_targ": 17.0, "grt_targ": 7.0, "obsra": "12:34:23.815", "obsdec": "-23:23:53.178",
        "gain": 2.06, "rdnoise": 3.99, "saturation_value": 33932, "exptime": 15.0,
        "date_obs": utc(2017, 7, 5, 1, 26, 2, 49000), "date": "2017-07-04",
        "proposal_id": "SO2017A-016", "lamps": [], "data_type": 0, "notes": [],
    },
    "goodman_red_bias.fits": {
        **RED_2018, "obstype": "BIAS", "object": "ZERO",
        "obsra": "14:31:44.616", "obsdec": "-47:15:27.572", "exptime": 0.0,
        "date_obs": utc(2018, 3, 19, 19, 44, 27, 523000), "date": "2018-03-19",
        "notes": BLANK_WAVMODE,
    },
    "goodman_red_comp.fits": {
        **RED_2018, "obstype": "COMP", "object": "HgArNe",
        "obsra": "14:31:44.616", "obsdec": "-47:15:27.572", "exptime": 0.5,
        "date_obs": utc(2018, 3, 19, 19, 20, 13, 175000), "date": "2018-03-19",
        "notes": BLANK_WAVMODE,
    },
    "goodman_red_flat.fits": {
        **RED_2018, "obstype": "FLAT", "object": "dflat",
        "obsra": "14:31:44.616", "obsdec": "-47:15:27.572", "exptime": 35.0,
        "date_obs": utc(2018, 3, 19, 19, 25, 53, 60000), "date": "2018-03-19",
        "notes": BLANK_WAVMODE,
    },
    "goodman_red_spec.fits": {  # WAVMODE 'Custom' here, blank on its calibrations
        **RED_2018, "obstype": "OBJECT", "object": "HIP50139",
        "obsra": "10:14:08.570", "obsdec": "03:08:53.387", "exptime": 120.0,
        "date_obs": utc(2018, 3, 20, 1, 42, 16, 449000), "date": "2018-03-19",
        "notes": [],
    },
    "goodman_red_imag.fits": {
        "obstype": "OBJECT", "technique": "Imaging", "object": "LTT4816",
        "instconf": "Red", "grating": "NO_GRATING", "wavmode": "IMAGING",
        "filter": "V-Bessel", "filter_2": "NO_FILTER", "slit": "NO_MASK",
        "roi": "Imaging 2x2", "ccdsum": "2 2", "binning": "2x2",
        "cam_targ": 0.0, "grt_targ": 0.0, "obsra": "12:38:50.968", "obsdec": "-49:47:55.021",
        "gain": 1.45, "rdnoise": 5.27, "saturation_value": 65535, "exptime": 5.0,
        "date_obs": utc(2018, 2, 27, 7, 32, 2, 611000), "date": "2018-02-26",
        "proposal_id": "SOAR Engineering", "lamps": [], "data_type": 0, "notes": [],
    },
    "im_g_SDSS.fits": {  # imaging although a slit is in the beam
        **FOCUS_2019, "technique": "Imaging", "grating": "NO_GRATING", "wavmode": "IMAGING",
        "filter": "g-SDSS", "cam_targ": 0.0, "grt_targ": 0.661, "exptime": 3.0,
        "date_obs": utc(2019, 5, 15, 22, 16, 55, 809000), "lamps": ["Dome"],
    },
    "sp_400m2.fits": {
        **FOCUS_2019, "technique": "Spectroscopy", "grating": "400_SYZY", "wavmode": "400_M2",
        "filter": "NO_FILTER", "filter_2": "GG455", "cam_targ": 16.1, "grt_targ": 7.5,
        "exptime": 1.3, "date_obs": utc(2019, 5, 15, 21, 4, 13, 313000),
        "lamps": ["HgAr", "Ne"],
    },
}


def real_header(name):
    return fits.getheader(REAL / name)


def test_every_real_file_has_an_expectation():
    assert sorted(p.name for p in REAL.glob("*.fits")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_real_file(name):
    header = real_header(name)
    before = header.tostring()
    assert classify(header, filename=name) == {"file_name": name, **EXPECTED[name]}
    assert header.tostring() == before


def test_classify_keys_are_the_catalogue_fields():
    assert list(classify(real_header("goodman_red_spec.fits"))) == [
        "file_name", "obstype", "technique", "object", "instconf", "grating", "wavmode",
        "filter", "filter_2", "slit", "roi", "ccdsum", "binning", "cam_targ", "grt_targ",
        "obsra", "obsdec", "gain", "rdnoise", "saturation_value", "exptime", "date_obs",
        "date", "proposal_id", "lamps", "data_type", "notes"]


def test_old_calibrations_and_science_of_one_setup_agree_after_normalization():
    # WAVMODE is blank on the calibrations and 'Custom' on the science frame.
    fields = [normalized_fields(real_header(f"goodman_red_{t}.fits")) for t in
              ("bias", "comp", "flat", "spec")]
    assert {f["WAVMODE"] for f in fields} == {"CUSTOM"}
    assert normalized_fields(real_header("sp_400m2.fits")) == {
        "OBSTYPE": "FOCUS", "INSTCONF": "Red", "GRATING": "400_SYZY", "WAVMODE": "400_M2",
        "FILTER": "NO_FILTER", "FILTER2": "GG455", "SLIT": "0.45_LONG_SLIT",
        "ROI": "user-defined", "CCDSUM": "1 1"}


def test_normalized_header_is_a_copy():
    header = real_header("sp_400m2.fits")
    copy = normalized_header(header)
    assert (copy["GRATING"], copy["WAVMODE"], copy["FILTER"], copy["SLIT"]) == (
        "400_SYZY", "400_M2", "NO_FILTER", "0.45_LONG_SLIT")
    assert copy["EXPTIME"] == 1.3
    assert (header["GRATING"], header["WAVMODE"], header["FILTER"]) == (
        "SYZY_400", "400 m2", "<NO FILTER>")


@pytest.mark.parametrize("name, value, expected", [
    ("GRATING", "SYZY_400", "400_SYZY"),
    ("GRATING", "400_SYZY", "400_SYZY"),
    ("GRATING", "SYZY_600-OLD", "600_SYZY_OLD"),
    ("GRATING", "RALC_1200-BLUE", "1200_RALC_BLUE"),
    ("GRATING", "1200_CANIR", "1200_CANIR"),
    ("GRATING", "<NO GRATING>", "NO_GRATING"),
    ("GRATING", "NO_GRATING", "NO_GRATING"),
    ("WAVMODE", "400 m2", "400_M2"),
    ("WAVMODE", "400_M2", "400_M2"),
    ("WAVMODE", "600 Blue", "600_BLUE"),
    ("WAVMODE", "Imaging", "IMAGING"),
    ("WAVMODE", "Custom", "CUSTOM"),
    ("WAVMODE", "2100_6507A", "2100_6507A"),
    ("FILTER", "<NO FILTER>", "NO_FILTER"),
    ("FILTER", "NO_FILTER", "NO_FILTER"),
    ("FILTER", "", "NO_FILTER"),
    ("FILTER", "g-SDSS", "g-SDSS"),
    ("filter2", "GG455", "GG455"),
    ("SLIT", '0.45" long slit', "0.45_LONG_SLIT"),
    ("SLIT", '1.0" long slit', "1.0_LONG_SLIT"),
    ("SLIT", '1.03" long slit', "1.03_LONG_SLIT"),
    ("SLIT", "1.0_LONG_SLIT", "1.0_LONG_SLIT"),
    ("SLIT", "<NO MASK>", "NO_MASK"),
    ("SLIT", "NO_MASK", "NO_MASK"),
    ("OBSTYPE", " lampflat ", "LAMPFLAT"),
    ("INSTCONF", "RED", "Red"),
    ("ROI", "Spectroscopic  2x2", "Spectroscopic 2x2"),
    ("ROI", "User-Defined", "user-defined"),
    ("ROI", "CUST_0_4142_980_948_1x2", "CUST_0_4142_980_948_1x2"),
    ("EXPTIME", 12.5, 12.5),
])
def test_normalize_keyword(name, value, expected):
    assert normalize_keyword(name, value) == expected


@pytest.mark.parametrize("name, value", [
    ("ROI", "banana"), ("ROI", "2x2"), ("INSTCONF", "Green"), ("OBSTYPE", "  ")])
def test_normalize_keyword_rejects_nonsense(name, value):
    with pytest.raises(HeaderError, match=f"^{name}: "):
        normalize_keyword(name, value)


def modern_header(**changes):
    """A 2021-style Red 2x2 spectroscopic frame; None removes a keyword."""
    header = fits.Header()
    cards = {
        "OBSTYPE": "SPECTRUM", "OBJECT": "NGC5128", "INSTCONF": "Red",
        "GRATING": "400_SYZY", "WAVMODE": "400_M2", "FILTER": "NO_FILTER",
        "FILTER2": "GG455", "SLIT": "1.0_LONG_SLIT", "CAM_TARG": 16.1, "GRT_TARG": 7.5,
        "ROI": "Spectroscopic 2x2", "CCDSUM": "2 2", "GAIN": 1.48, "RDNOISE": 3.89,
        "DATE-OBS": "2026-11-28T02:10:00.5", "EXPTIME": 600.0,
        "OBSRA": "13:25:27.6", "OBSDEC": "-43:01:09", "PROPID": " SOAR2026B-001 ",
        "LAMP_HGA": "FALSE", "LAMP_NE": "FALSE", "LAMP_AR": "FALSE", "LAMP_QUA": "FALSE",
    }
    cards.update(changes)
    for keyword, value in cards.items():
        if value is not None:
            header[keyword] = value
    return header


def old_header(**changes):
    """The same setup written in the pre-2019 keyword style."""
    old = {"GRATING": "SYZY_400", "WAVMODE": "400 m2", "FILTER": "<NO FILTER>",
           "SLIT": '1.0" long slit', "OBSTYPE": "OBJECT", "PROPID": None,
           "PROPOSAL": "SOAR2026B-001"}
    old.update(changes)
    return modern_header(**old)


def test_classify_modern_synthetic():
    assert classify(modern_header(), "0032_NGC5128_400_M2_27-11-2026.fits") == {
        "file_name": "0032_NGC5128_400_M2_27-11-2026.fits", "obstype": "SPECTRUM",
        "technique": "Spectroscopy", "object": "NGC5128", "instconf": "Red",
        "grating": "400_SYZY", "wavmode": "400_M2", "filter": "NO_FILTER",
        "filter_2": "GG455", "slit": "1.0_LONG_SLIT", "roi": "Spectroscopic 2x2",
        "ccdsum": "2 2", "binning": "2x2", "cam_targ": 16.1, "grt_targ": 7.5,
        "obsra": "13:25:27.6", "obsdec": "-43:01:09", "gain": 1.48, "rdnoise": 3.89,
        "saturation_value": 65535, "exptime": 600.0,
        "date_obs": utc(2026, 11, 28, 2, 10, 0, 500000), "date": "2026-11-27",
        "proposal_id": "SOAR2026B-001", "lamps": [], "data_type": 0, "notes": []}


def test_old_style_classifies_like_modern_style():
    old, modern = classify(old_header()), classify(modern_header(OBSTYPE="OBJECT"))
    assert old == modern


def test_custom_wavmode_with_standard_angles_gets_the_mode_name():
    fields = classify(old_header(WAVMODE="Custom"))
    assert fields["wavmode"] == "400_M2"
    assert fields["notes"] == [
        "WAVMODE 'Custom'; taken as 400_M2 from GRATING, CAM_TARG, GRT_TARG"]


def test_missing_wavmode_without_grating_is_imaging():
    header = modern_header(GRATING="<NO GRATING>", WAVMODE=None, ROI="Imaging 2x2",
                           OBSTYPE="EXPOSE", CAM_TARG=0.0, GRT_TARG=0.0)
    fields = classify(header)
    assert (fields["wavmode"], fields["technique"]) == ("IMAGING", "Imaging")


def test_lenient_defaults_are_noted():
    fields = classify(modern_header(FILTER2=None, SLIT=None, OBSRA="nonsense", PROPID=None))
    assert (fields["filter_2"], fields["slit"], fields["obsra"], fields["proposal_id"]) == (
        "NO_FILTER", "NO_MASK", None, None)
    assert fields["notes"] == ["FILTER2 missing or blank; taken as NO_FILTER",
                               "SLIT missing or blank; taken as NO_MASK",
                               "OBSRA 'nonsense' is not sexagesimal; ignored"]


def test_untabulated_readout_falls_back_to_digital_saturation():
    fields = classify(modern_header(GAIN=2.0, RDNOISE=4.0))
    assert fields["saturation_value"] == 65535
    assert fields["notes"] == [
        "no tabulated saturation for Red gain 2 read noise 4; using 65535"]


def test_missing_instconf_is_inferred_from_the_readout():
    fields = classify(modern_header(INSTCONF=None))
    assert (fields["instconf"], fields["saturation_value"]) == ("Red", 65535)  # half full well 69257, 16-bit ADC
    assert fields["notes"] == ["INSTCONF missing; taken as Red"]


def test_ccdsum_taken_from_preset_roi_when_missing():
    assert classify(modern_header(CCDSUM=None))["binning"] == "2x2"


def test_date_only_date_obs_takes_time_from_ut():
    fields = classify(modern_header(**{"DATE-OBS": "2026-11-28", "UT": "02:10:00"}))
    assert fields["date_obs"] == utc(2026, 11, 28, 2, 10)


def test_lamps_accept_booleans():
    fields = classify(modern_header(LAMP_HGA=True, LAMP_NE="TRUE", LAMP_QUA=False))
    assert fields["lamps"] == ["HgAr", "Ne"]


@pytest.mark.parametrize("header, message", [
    (fits.Header(), "OBSTYPE: missing (the header is empty)"),
    (modern_header(OBSTYPE=None), "OBSTYPE: missing"),
    (modern_header(OBSTYPE=""), "OBSTYPE: missing"),
    (modern_header(ROI="nonsense"), "ROI: 'nonsense' is neither a preset"),
    (modern_header(ROI="Spectroscopic 1x1"), "ROI: 'Spectroscopic 1x1' says binning 1x1 but CCDSUM is '2 2'"),
    (modern_header(INSTCONF="Green"), "INSTCONF: 'Green' is not a Goodman camera"),
    (modern_header(GRATING=None), "GRATING: missing"),
    (modern_header(GAIN=None), "GAIN: missing"),
    (modern_header(GAIN="high"), "GAIN: 'high' is not a number"),
    (modern_header(RDNOISE=0.0), "RDNOISE: 0.0 must be above 0"),
    (modern_header(EXPTIME=-1.0), "EXPTIME: -1.0 must be at least 0"),
    (modern_header(EXPTIME=None), "EXPTIME: missing"),
    (modern_header(**{"DATE-OBS": None}), "DATE-OBS: missing"),
    (modern_header(**{"DATE-OBS": "yesterday"}), "DATE-OBS: 'yesterday' is not an ISO date"),
    (modern_header(CCDSUM="2x2"), "CCDSUM: '2x2' is not two positive whole numbers"),
    (modern_header(CCDSUM=None, ROI="user-defined"), "CCDSUM: missing and the ROI"),
    (modern_header(CAM_TARG="tilted"), "CAM_TARG: 'tilted' is not a number"),
])
def test_bad_headers_raise_header_error_naming_the_keyword(header, message):
    with pytest.raises(HeaderError) as error:
        classify(header)
    assert str(error.value).startswith(message)
    assert error.value.keyword == message.split(":")[0]


@pytest.mark.parametrize("moment, expected", [
    (utc(2020, 11, 27, 0, 30), "2020-11-26"),   # 21:30 -03:00, the evening before
    (utc(2021, 2, 18, 13, 22), "2021-02-18"),   # 10:22 -03:00 daytime flats: the coming night
    (utc(2026, 11, 28, 11, 59, 59), "2026-11-27"),
    (utc(2026, 11, 28, 12, 0, 0), "2026-11-28"),
    (datetime.fromisoformat("2026-11-27T22:00:00-03:00"), "2026-11-27"),
])
def test_night_date_rolls_over_at_noon_ut(moment, expected):
    assert night_date(moment) == expected


@pytest.mark.parametrize("obstype, technique, expected", [
    ("BIAS", None, "bias"), ("FLAT", None, "flat"), ("LAMPFLAT", None, "flat"),
    ("COMP", None, "arc"), ("ARC", None, "arc"), ("OBJECT", None, "science"),
    ("SPECTRUM", None, "science"), ("EXPOSE", None, "imaging"),
    ("OBJECT", "Imaging", "imaging"), ("SPECTRUM", "Imaging", "science"),
    ("FOCUS", None, "other"), ("lampflat", None, "flat"),
])
def test_kind(obstype, technique, expected):
    assert kind(obstype, technique) == expected


def test_is_calibration():
    assert [is_calibration(t) for t in ("BIAS", "FLAT", "LAMPFLAT", "COMP", "ARC",
                                        "OBJECT", "SPECTRUM", "EXPOSE", "FOCUS")] == [
        True, True, True, False, False, False, False, False, False]


@pytest.mark.parametrize("args, expected", [
    (("OBJECT", "x", "400_SYZY", "400_M2", "user-defined"), "Spectroscopy"),
    (("OBJECT", "x", "400_SYZY", "IMAGING", "user-defined"), "Imaging"),
    (("OBJECT", "x", "NO_GRATING", "", "user-defined"), "Imaging"),
    (("OBJECT", "x", "NO_GRATING", "", "Spectroscopic 2x2"), "Spectroscopy"),
    (("COMP", "x", "NO_GRATING", "", "user-defined"), "Spectroscopy"),
    (("OBJECT", "AEON_SP_1", "NO_GRATING", "", "user-defined"), "Spectroscopy"),
    (("EXPOSE", "x", "NO_GRATING", "IMAGING", "Imaging 2x2"), "Imaging"),
])
def test_identify_technique(args, expected):
    assert identify_technique(*args) == expected


def test_reclassify_focus_arc_with_lamps_on_is_comp():
    header = real_header("sp_400m2.fits")
    fields = reclassify(header, filename="sp_400m2.fits")
    assert fields == {**classify(header, "sp_400m2.fits"), "obstype": "COMP",
                      "notes": ["OBSTYPE FOCUS reclassified as COMP: arc lamp(s) HgAr, Ne on"]}
    assert header["OBSTYPE"] == "FOCUS"


def test_reclassify_leaves_imaging_focus_and_known_types_alone():
    for name in ("im_g_SDSS.fits", "goodman_red_spec.fits"):
        header = real_header(name)
        assert reclassify(header) == classify(header)


def test_reclassify_explicit_obstype_wins():
    fields = reclassify(real_header("im_g_SDSS.fits"), obstype="lampflat")
    assert (fields["obstype"], fields["technique"]) == ("LAMPFLAT", "Imaging")
    assert fields["notes"][-1] == "OBSTYPE FOCUS reclassified as LAMPFLAT: requested"
    assert reclassify(real_header("sp_400m2.fits"), obstype="OBJECT")["obstype"] == "OBJECT"


def test_reclassify_rejects_unknown_obstype():
    with pytest.raises(HeaderError, match="OBSTYPE: 'FOCUS' is not one of BIAS, FLAT, "
                                          "LAMPFLAT, COMP, ARC, OBJECT, SPECTRUM, EXPOSE"):
        reclassify(real_header("sp_400m2.fits"), obstype="FOCUS")
