"""Grouping and calibration choice rules (pipeline/matching.py)."""
from datetime import datetime, timedelta, timezone

import pytest
from astropy.io import fits

from pipeline.headers import classify
from pipeline.matching import (
    BLOCK_END,
    NEW_FILES,
    MasterPlan,
    bias_group_key,
    calibration_groups,
    choose_arc,
    choose_master,
    choose_standard,
    could_serve,
    flat_group_key,
    plan_master,
    science_config_key,
    separation_arcsec,
)
from pipeline.settings import ReductionSettings
from tests.conftest import REAL_DATA

REAL = REAL_DATA
T0 = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)


def real(name):
    return classify(fits.getheader(REAL / name), filename=name)


def frame(name, obstype="SPECTRUM", minutes=0.0, **changes):
    """A classify()-shaped Red 2x2 400_M2 frame taken ``minutes`` after T0."""
    fields = {
        "file_name": name, "obstype": obstype, "technique": "Spectroscopy",
        "object": "NGC5128", "instconf": "Red", "grating": "400_SYZY", "wavmode": "400_M2",
        "filter": "NO_FILTER", "filter_2": "GG455", "slit": "1.0_LONG_SLIT",
        "roi": "Spectroscopic 2x2", "ccdsum": "2 2", "binning": "2x2",
        "cam_targ": 16.1, "grt_targ": 7.5, "obsra": "13:25:27.6", "obsdec": "-43:01:09",
        "gain": 1.48, "rdnoise": 3.89, "date_obs": T0 + timedelta(minutes=minutes),
    }
    fields.update(changes)
    return fields


# ------------------------------------------------------------------ group keys

def test_keys_of_real_2018_red_setup():
    bias, flat = real("goodman_red_bias.fits"), real("goodman_red_flat.fits")
    assert bias_group_key(bias) == ("Red", "1x2", "user-defined", 1.48, 3.89)
    assert bias_group_key(flat) == bias_group_key(bias)
    assert flat_group_key(flat) == ("Red", "1x2", "user-defined", 1.48, 3.89, "400_SYZY",
                                    "CUSTOM", 13.85, 6.93, "NO_FILTER", "NO_FILTER",
                                    "0.45_LONG_SLIT")
    assert science_config_key(real("goodman_red_spec.fits")) == (
        "Red", "400_SYZY", "CUSTOM", 13.85, 6.93, "0.45_LONG_SLIT", "user-defined", "1x2",
        "NO_FILTER", "NO_FILTER")
    assert science_config_key(real("goodman_red_comp.fits")) == science_config_key(
        real("goodman_red_spec.fits"))


def test_real_old_blue_files_of_one_mode_share_a_configuration():
    # goodman_2016 has no WAVMODE; goodman_blue_spec says '600 Blue'.
    keys = {science_config_key(real(n)) for n in ("goodman_2016.fits", "goodman_blue_spec.fits")}
    assert keys == {("Blue", "600_SYZY_OLD", "600_BLUE", 17.0, 7.0, "1.03_LONG_SLIT",
                     "user-defined", "1x1", "NO_FILTER", "NO_FILTER")}


def test_imaging_keys_ignore_leftover_angles():
    imaging = frame("a", obstype="LAMPFLAT", grating="NO_GRATING", wavmode="IMAGING",
                    cam_targ=0.0, grt_targ=0.661, filter="g-SDSS", filter_2="NO_FILTER",
                    slit="NO_MASK", roi="Imaging 2x2")
    other = {**imaging, "grt_targ": 0.0}
    assert flat_group_key(imaging) == flat_group_key(other) == (
        "Red", "2x2", "Imaging 2x2", 1.48, 3.89, "NO_GRATING", "IMAGING", None, None,
        "g-SDSS", "NO_FILTER", "NO_MASK")


def test_keys_survive_float_noise_and_strings():
    noisy = frame("a", gain="1.4800000001", rdnoise=3.8899999, cam_targ="16.100000")
    assert flat_group_key(noisy) == flat_group_key(frame("b"))


def test_keys_split_on_each_field():
    base = frame("a")
    assert bias_group_key({**base, "rdnoise": 5.27}) != bias_group_key(base)
    assert bias_group_key({**base, "grating": "930_SYZY"}) == bias_group_key(base)
    assert flat_group_key({**base, "slit": "0.45_LONG_SLIT"}) != flat_group_key(base)
    assert flat_group_key({**base, "cam_targ": 16.2}) != flat_group_key(base)
    assert science_config_key({**base, "gain": 3.87}) == science_config_key(base)
    assert science_config_key({**base, "filter_2": "NO_FILTER"}) != science_config_key(base)


def test_binning_falls_back_to_ccdsum_and_missing_fields_are_named():
    without = {k: v for k, v in frame("a").items() if k != "binning"}
    assert bias_group_key(without) == bias_group_key(frame("b"))
    with pytest.raises(ValueError, match="a has no 'gain'"):
        bias_group_key({k: v for k, v in frame("a").items() if k != "gain"})


# ------------------------------------------------------------------ choose_arc

def test_choose_arc_prefers_same_pointing_then_time():
    science = frame("sci.fits", minutes=0)
    arcs = [
        frame("other_pointing.fits", "COMP", minutes=2, obsra="05:34:22.372"),
        frame("other_grating.fits", "COMP", minutes=1, grating="930_SYZY"),
        frame("a_flat.fits", "FLAT", minutes=0),
        frame("late.fits", "ARC", minutes=20),
        frame("early.fits", "COMP", minutes=-20),
        frame("far.fits", "COMP", minutes=-300),
    ]
    arc, reason = choose_arc(science, arcs)
    assert arc is arcs[4]
    assert reason == ("early.fits: same configuration and pointing, "
                      "taken 20.0 min before the science frame")


def test_choose_arc_falls_back_to_closest_compatible_arc():
    arc, reason = choose_arc(real("goodman_red_spec.fits"),
                             [real("goodman_red_comp.fits"), real("goodman_red_flat.fits")])
    assert arc["file_name"] == "goodman_red_comp.fits"
    assert reason == ("goodman_red_comp.fits: same configuration; no compatible arc at the "
                      "same pointing, taken 6.4 h before the science frame")


def test_choose_arc_pointing_tolerance():
    science = frame("sci.fits")
    near = frame("near.fits", "COMP", minutes=30, obsdec="-43:01:39")   # 30" away
    far = frame("far.fits", "COMP", minutes=1, obsdec="-43:01:49")      # 40" away
    assert choose_arc(science, [near, far])[0] is near
    assert choose_arc(science, [near, far], tolerance_arcsec=10)[0] is far


def test_choose_arc_accepts_iso_strings_and_naive_times():
    science = frame("sci.fits", date_obs="2026-11-28T02:00:00")
    arc = frame("arc.fits", "COMP", date_obs="2026-11-28T02:00:45+00:00")
    assert choose_arc(science, [arc]) == (
        arc, "arc.fits: same configuration and pointing, taken 45 s after the science frame")


def test_choose_arc_without_a_compatible_arc():
    science = frame("sci.fits")
    assert choose_arc(science, [frame("x.fits", "COMP", slit="0.45_LONG_SLIT")]) == (
        None, "no compatible arc among 1 candidate(s) for instconf=Red, grating=400_SYZY, "
              "wavmode=400_M2, cam_targ=16.1, grt_targ=7.5, slit=1.0_LONG_SLIT, "
              "roi=Spectroscopic 2x2, binning=2x2, filter=NO_FILTER, filter_2=GG455")


def test_separation_arcsec():
    assert separation_arcsec((10.0, -43.0), (10.0, -43.0 + 30 / 3600)) == pytest.approx(30.0)
    assert separation_arcsec((0.0, 0.0), (180.0, 0.0)) == pytest.approx(180 * 3600)


# --------------------------------------------------------------- choose_master

def test_choose_master_bias_same_group_closest_in_time():
    science = frame("sci.fits")
    masters = [
        frame("master_bias_other_readout.fits", "BIAS", minutes=-10, gain=3.87, rdnoise=7.05),
        frame("master_bias_evening.fits", "BIAS", minutes=-120),
        frame("master_bias_morning.fits", "BIAS", minutes=300),
    ]
    assert choose_master(science, masters) == (
        masters[1], "master_bias_evening.fits: same bias group, taken 2.0 h before the frame")


def test_choose_master_flat_needs_the_light_path():
    science = frame("sci.fits")
    masters = [
        frame("master_flat_045.fits", "LAMPFLAT", minutes=-5, slit="0.45_LONG_SLIT"),
        frame("master_flat_10.fits", "FLAT", minutes=-90),
    ]
    master, reason = choose_master(science, masters)
    assert master is masters[1]
    assert reason == "master_flat_10.fits: same flat group, taken 1.5 h before the frame"


def test_choose_master_reports_why_nothing_fits():
    science = frame("sci.fits")
    assert choose_master(science, []) == (None, "no master available")
    assert choose_master(science, [frame("mb.fits", "BIAS", binning="1x1")]) == (
        None, "no master bias among 1 for instconf=Red, binning=2x2, "
              "roi=Spectroscopic 2x2, gain=1.48, rdnoise=3.89")


def test_choose_master_rejects_mixed_or_non_master_kinds():
    science = frame("sci.fits")
    with pytest.raises(ValueError, match="all bias or all flat"):
        choose_master(science, [frame("b", "BIAS"), frame("f", "FLAT")])
    with pytest.raises(ValueError, match="all bias or all flat"):
        choose_master(science, [frame("a", "COMP")])


# ------------------------------------------------------- which frames make a master

def test_calibration_groups_keep_the_order_and_split_on_the_readout():
    frames = [frame("b1", "BIAS"), frame("b2", "BIAS", rdnoise=7.05), frame("b3", "BIAS")]
    assert [[f["file_name"] for f in group] for group in calibration_groups(frames, "bias")] == [["b1", "b3"], ["b2"]]


def plan(names, masters=(), *, force=False, arriving=False, bias_missing=False, ended=False, **settings):
    asked = []

    def ask(what, answer):
        return lambda: asked.append(what) or answer

    decision = plan_master("flat", names, ReductionSettings(**{"min_flats": 3, **settings}), list(masters),
                           {"ignore_bias": False}, force=force, files_arriving=ask("arriving", arriving),
                           bias_missing=ask("bias", bias_missing), block_ended=ask("ended", ended))
    return decision, asked


def test_a_master_waits_for_the_night_its_minimum_and_its_bias_in_that_order():
    assert plan(["f1", "f2", "f3"], arriving=True) == (
        MasterPlan("wait", "3 flat frames so far; combined once the night's new files are catalogued", (NEW_FILES,)),
        ["arriving"])
    decision, _ = plan(["f1", "f2"])
    assert (decision.action, decision.needs, decision.reason) == ("wait", ("flat frames",),
                                                                  "2 of the 3 flat frames needed for a master")
    decision, _ = plan(["f1", "f2", "f3"], bias_missing=True)
    assert (decision.action, decision.needs) == ("wait", ("master bias",))
    decision, asked = plan(["f1", "f2", "f3"], bias_missing=True, ignore_bias=True)
    assert decision.action == "build" and "bias" not in asked  # not asked: the settings ignore the bias
    assert plan(["f1"], force=True, arriving=True, bias_missing=True)[0].action == "build"  # by hand: what there is


def test_a_master_is_rebuilt_once_when_its_block_ends_and_never_from_the_same_frames():
    first = {"name": "master_flat_a.fits", "inputs": ["f1", "f2", "f3"], "settings": {"ignore_bias": False},
             "automatic": True}
    decision, asked = plan(["f1", "f2", "f3"], [first], arriving=True)
    assert (decision.action, decision.master, decision.exact) == ("keep", "master_flat_a.fits", True)
    assert "arriving" not in asked  # a master exists: the night's files are not waited for again
    decision, _ = plan(["f1", "f2", "f3", "f4"], [first])
    assert (decision.action, decision.needs, decision.master) == ("wait", (BLOCK_END,), "master_flat_a.fits")
    assert decision.reason == "master_flat_a.fits holds 3 frames; rebuilt from all 4 when the block of flat frames ends"
    assert plan(["f1", "f2", "f3", "f4"], [first], ended=True)[0].action == "build"
    second = {**first, "name": "master_flat_a_v2.fits", "inputs": ["f1", "f2", "f3", "f4"]}
    decision, _ = plan(["f1", "f2", "f3", "f4", "f5"], [first, second], ended=True)
    assert (decision.action, decision.master, decision.exact) == ("keep", "master_flat_a_v2.fits", False)
    assert plan(["f1", "f2", "f3", "f4", "f5"], [first, second], force=True)[0].action == "build"


# ------------------------------------------------------------- which standard

def test_choose_standard_same_configuration_closest_in_time_any_night():
    science = frame("sci.fits", minutes=0)
    standards = [frame("sens_other_slit.fits", minutes=5, slit="0.45_LONG_SLIT"),
                 frame("sens_last_week.fits", minutes=-7 * 24 * 60, date="2026-11-21"),
                 frame("sens_tonight.fits", minutes=-50)]
    assert choose_standard(science, standards) == (
        standards[2], "same configuration, standard closest in time (2 available, 50 min apart)")
    assert choose_standard(science, standards[1:2])[0] is standards[1]  # another night's, when it is the only one
    chosen, why = choose_standard(science, standards[:1])
    assert chosen is None and why.startswith("no standard star among 1 for instconf=Red")


def test_who_may_serve_a_waiting_frame():
    science = frame("sci.fits", date="2026-11-27")
    assert could_serve("bias", frame("mb", "BIAS", date="2026-11-27", grating="930_SYZY"), science)
    assert not could_serve("bias", frame("mb", "BIAS", date="2026-11-26"), science)  # masters: of its night
    assert not could_serve("flat", frame("mf", "FLAT", date="2026-11-27", slit="0.45_LONG_SLIT"), science)
    assert could_serve("arc", frame("arc", "COMP", date="2026-11-27"), science)
    assert not could_serve("arc", frame("arc", "COMP", date="2026-11-28"), science)
    assert could_serve("standard", frame("std", date="2026-10-01"), science)  # standards: any night
    assert not could_serve("standard", frame("std", date="2026-11-27", wavmode="400_M1"), science)
