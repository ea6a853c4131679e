"""Which frames combine together and which calibration serves which frame.

Pure rules shared by the live job layer and the offline twin.  Inputs are
plain dicts as returned by :func:`pipeline.headers.classify` (plus 'id' or
'file_name' and 'date_obs'); outputs are plain data: tuples for group keys,
``(chosen dict or None, reason)`` for choices.  Group keys describe a
configuration only; scoping by proposal or night is the caller's business.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from pipeline import standards
from pipeline.chain import MASTER_BIAS
from pipeline.datatypes import DataType
from pipeline.headers import NO_GRATING, kind, parse_sexagesimal

# Fields of each key, in key order.  Bias frames share a readout; flats must
# also share the light path; arcs and science the light path and geometry
# (the readout does not change wavelengths).
BIAS_GROUP_FIELDS = ("instconf", "binning", "roi", "gain", "rdnoise")
FLAT_GROUP_FIELDS = BIAS_GROUP_FIELDS + (
    "grating", "wavmode", "cam_targ", "grt_targ", "filter", "filter_2", "slit")
SCIENCE_CONFIG_FIELDS = ("instconf", "grating", "wavmode", "cam_targ", "grt_targ",
                         "slit", "roi", "binning", "filter", "filter_2")

# goodman-pipeline groups pointings by OBSRA/OBSDEC rounded to 0.01 deg (36").
POINTING_TOLERANCE_ARCSEC = 36.0


def _field(fields: dict, name: str):
    """One key component, made comparable across float noise and eras."""
    if name == "binning" and "binning" not in fields and "ccdsum" in fields:
        return str(fields["ccdsum"]).replace(" ", "x")
    if name not in fields:
        raise ValueError(f"{_name(fields)} has no '{name}'")
    value = fields[name]
    if name in ("cam_targ", "grt_targ"):
        # Angles mean nothing without a grating (imaging frames carry leftovers).
        if value is None or fields.get("grating") == NO_GRATING:
            return None
        return round(float(value), 2)
    if name in ("gain", "rdnoise"):
        return round(float(value), 2)
    return value


def _key(fields: dict, names: tuple[str, ...]) -> tuple:
    return tuple(_field(fields, name) for name in names)


def bias_group_key(fields: dict) -> tuple:
    """(instconf, binning, roi, gain, rdnoise): bias frames that combine together."""
    return _key(fields, BIAS_GROUP_FIELDS)


def flat_group_key(fields: dict) -> tuple:
    """The bias key plus grating, wavmode, camera/grating angles, filters and slit.

    The angles tell apart custom modes that share WAVMODE 'CUSTOM', as
    goodman-pipeline's night organizer does; they are None without a grating.
    """
    return _key(fields, FLAT_GROUP_FIELDS)


def science_config_key(fields: dict) -> tuple:
    """Optical configuration an arc must share with a science frame to calibrate it."""
    return _key(fields, SCIENCE_CONFIG_FIELDS)


def _describe(names: tuple[str, ...], key: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(names, key))


def _name(fields: dict) -> str:
    return str(fields.get("file_name") or fields.get("id") or "frame")


def _moment(fields: dict) -> datetime:
    """date_obs as an aware UTC datetime (naive values are taken as UTC)."""
    value = fields.get("date_obs")
    if value is None:
        raise ValueError(f"{_name(fields)} has no 'date_obs'")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _gap(seconds: float) -> str:
    """A time difference in the unit a person would use."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _when(candidate: dict, frame: dict, what: str) -> str:
    seconds = (_moment(candidate) - _moment(frame)).total_seconds()
    side = "before" if seconds <= 0 else "after"
    return f"taken {_gap(seconds)} {side} the {what}"


def _closest_in_time(frame: dict, candidates: list[dict]) -> dict:
    """Nearest in time; ties go to the earlier candidate, then by name."""
    target = _moment(frame)

    def order(candidate):
        seconds = (_moment(candidate) - target).total_seconds()
        return abs(seconds), seconds > 0, _name(candidate)

    return min(candidates, key=order)


def _pointing(fields: dict) -> tuple[float, float] | None:
    """(ra, dec) in degrees, None when either is missing or unreadable."""
    try:
        return (parse_sexagesimal(fields["obsra"]) * 15.0,
                parse_sexagesimal(fields["obsdec"]))
    except (KeyError, TypeError, ValueError):
        return None


def separation_arcsec(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Angular distance between two (ra, dec) points in degrees, in arcsec (haversine)."""
    ra1, dec1, ra2, dec2 = map(math.radians, (*a, *b))
    h = (math.sin((dec2 - dec1) / 2) ** 2
         + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2)
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600


def _same_pointing(a: dict, b: dict, tolerance_arcsec: float) -> bool:
    pa, pb = _pointing(a), _pointing(b)
    return pa is not None and pb is not None and separation_arcsec(pa, pb) <= tolerance_arcsec


def choose_arc(science: dict, arcs: list[dict],
               tolerance_arcsec: float = POINTING_TOLERANCE_ARCSEC) -> tuple[dict | None, str]:
    """The arc to calibrate ``science`` with, and why.

    Only arcs (COMP/ARC) with the same science_config_key qualify; among them
    those at the science pointing (OBSRA/OBSDEC within ``tolerance_arcsec``)
    win, then the closest in time.
    """
    key = science_config_key(science)
    compatible = [arc for arc in arcs
                  if kind(arc["obstype"]) == "arc" and science_config_key(arc) == key]
    if not compatible:
        return None, (f"no compatible arc among {len(arcs)} candidate(s) for "
                      f"{_describe(SCIENCE_CONFIG_FIELDS, key)}")
    nearby = [arc for arc in compatible if _same_pointing(science, arc, tolerance_arcsec)]
    best = _closest_in_time(science, nearby or compatible)
    where = "same configuration and pointing" if nearby else (
        "same configuration; no compatible arc at the same pointing")
    return best, f"{_name(best)}: {where}, {_when(best, science, 'science frame')}"


def choose_master(frame: dict, masters: list[dict]) -> tuple[dict | None, str]:
    """The master bias or flat for ``frame`` (same group, closest in time), and why.

    ``masters`` must be all bias or all flat masters: the group rule follows.
    """
    kinds = {kind(master["obstype"]) for master in masters}
    if not kinds <= {"bias", "flat"} or len(kinds) > 1:
        raise ValueError(f"masters must be all bias or all flat, got kinds {sorted(kinds)}")
    if not masters:
        return None, "no master available"
    master_kind = kinds.pop()
    names = BIAS_GROUP_FIELDS if master_kind == "bias" else FLAT_GROUP_FIELDS
    key = _key(frame, names)
    candidates = [master for master in masters if _key(master, names) == key]
    if not candidates:
        return None, (f"no master {master_kind} among {len(masters)} for "
                      f"{_describe(names, key)}")
    best = _closest_in_time(frame, candidates)
    return best, f"{_name(best)}: same {master_kind} group, {_when(best, frame, 'frame')}"


# --- which frames make a master ---------------------------------------------------------------------

# What a master's job waits for, besides the masters and arcs of the chain (``pipeline.chain``).
BLOCK_END = "the end of the block of frames"
NEW_FILES = "the night's new files to be catalogued"


def more_frames(kind: str) -> str:
    """What a master waits for while its group has fewer frames than the settings' minimum."""
    return f"{kind} frames"


def group_key(kind: str, fields: dict) -> tuple:
    """The group a raw bias or flat frame combines in (scoped to one night by the caller)."""
    return bias_group_key(fields) if kind == "bias" else flat_group_key(fields)


def minimum_frames(kind: str, settings) -> int:
    """The fewest frames of a group a master is made of (``ReductionSettings.min_bias`` / ``min_flats``)."""
    return settings.min_bias if kind == "bias" else settings.min_flats


def calibration_groups(frames: list, kind: str, fields_of: Callable[[object], dict] = dict) -> list[list]:
    """``frames`` (all of one ``kind``; ``fields_of`` gives each one's fields) in their groups, each in the
    order given, groups in order of their first frame."""
    groups: dict[tuple, list] = {}
    for frame in frames:
        groups.setdefault(group_key(kind, fields_of(frame)), []).append(frame)
    return list(groups.values())


def master_needs(kind: str, settings) -> tuple[str, ...]:
    """What a master waits for besides its frames: a flat, the master bias it is corrected with."""
    return (MASTER_BIAS,) if kind == "flat" and not settings.ignore_bias else ()


@dataclass(frozen=True)
class MasterPlan:
    """What to do with a group of calibration frames: ``wait`` for ``needs``, ``keep`` the existing master
    ``master`` (its ``name``; ``exact`` when it is made of exactly these frames), or ``build`` a new one;
    ``reason`` says why, in words."""

    action: str
    reason: str
    needs: tuple[str, ...] = ()
    master: str | None = None
    exact: bool = False


def plan_master(kind: str, names: list[str], settings, masters: list[dict], settings_used: dict, *,
                force: bool, files_arriving: Callable[[], bool], bias_missing: Callable[[], bool],
                block_ended: Callable[[], bool]) -> MasterPlan:
    """The master decision for one group of ``names`` (its raw frames) of a night.

    ``masters`` are the group's existing masters, oldest first, as ``{"name", "inputs", "settings",
    "automatic"}``.  A master is built once the minimum exists (and the night's files are in, and a flat's
    master bias), rebuilt at most once more when the block of frames has ended, and never again from the
    same frames with the same settings; ``force`` (by hand) builds whatever there is.  The callables are
    asked only when the decision needs them (they look at the disk or the catalogue)."""
    automatic = [master for master in masters if master.get("automatic")]
    waiting = None if force else _what_to_wait_for(kind, len(names), settings, bool(automatic), files_arriving,
                                                  bias_missing)
    if waiting is not None:
        return waiting
    same = _of_these_frames(masters, names, settings_used)
    if same is not None:
        return MasterPlan("keep", f"combined into {same['name']}", master=same["name"], exact=True)
    if automatic and not force:
        return _rebuild_once(kind, len(names), automatic[-1], len(automatic), block_ended)
    return MasterPlan("build", f"{len(names)} {kind} frames of one configuration")


def _of_these_frames(masters: list[dict], names: list[str], settings_used: dict) -> dict | None:
    """The master made of exactly these frames with these settings, if there is one."""
    return next((master for master in masters if sorted(master.get("inputs", [])) == sorted(names)
                 and master.get("settings") == settings_used), None)


def _what_to_wait_for(kind: str, count: int, settings, built: bool, files_arriving: Callable[[], bool],
                      bias_missing: Callable[[], bool]) -> MasterPlan | None:
    """A group's first master waits for its night's files; every master for its minimum and a flat's bias."""
    if not built and files_arriving():  # asked first: it is what a burst waits for
        return MasterPlan("wait", f"{count} {kind} frames so far; combined once the night's new files are "
                                  "catalogued", (NEW_FILES,))
    minimum = minimum_frames(kind, settings)
    if count < minimum:
        return MasterPlan("wait", f"{count} of the {minimum} {kind} frames needed for a master", (more_frames(kind),))
    if MASTER_BIAS in master_needs(kind, settings) and bias_missing():
        return MasterPlan("wait", f"waiting for the {MASTER_BIAS} its flats are corrected with", (MASTER_BIAS,))
    return None


def _rebuild_once(kind: str, count: int, latest: dict, built: int, block_ended: Callable[[], bool]) -> MasterPlan:
    """An automatic master is rebuilt from all the block's frames once, when the block has ended."""
    if built >= 2:
        return MasterPlan("keep", f"{latest['name']} was already rebuilt once; Build by hand to combine newer "
                                  "frames", master=latest["name"])
    if not block_ended():
        return MasterPlan("wait", f"{latest['name']} holds {len(latest.get('inputs', []))} frames; rebuilt from all "
                                  f"{count} when the block of {kind} frames ends", (BLOCK_END,), master=latest["name"])
    return MasterPlan("build", f"{count} {kind} frames of one configuration")


# --- which standard ---------------------------------------------------------------------------------

def choose_standard(science: dict, standards: list[dict]) -> tuple[dict | None, str]:
    """The sensitivity function to flux-calibrate ``science`` with, and why: among ``standards`` (their
    standard stars' fields, from any night), those of the science configuration, the one observed
    closest in time."""
    key = science_config_key(science)
    candidates = [standard for standard in standards if science_config_key(standard) == key]
    if not candidates:
        return None, f"no standard star among {len(standards)} for {_describe(SCIENCE_CONFIG_FIELDS, key)}"
    try:
        chosen = _closest_in_time(science, candidates)
        minutes = f", {abs((_moment(chosen) - _moment(science)).total_seconds()) / 60:.0f} min apart"
    except ValueError:  # a frame without DATE-OBS: any of them
        chosen, minutes = candidates[0], ""
    return chosen, f"same configuration, standard closest in time ({len(candidates)} available{minutes})"


# --- who may serve a waiting frame ------------------------------------------------------------------

def could_serve(provider_kind: str, provider: dict, frame: dict) -> bool:
    """True when a new master (``provider_kind`` bias or flat), reduced arc ("arc") or standard star's
    sensitivity function ("standard") is one the rules above could choose for ``frame``: masters and arcs
    of its night and group or configuration, standards of its configuration from any night.  A frame
    waiting for one is woken by exactly these."""
    try:
        if provider_kind in ("bias", "flat"):
            return provider.get("date") == frame.get("date") and \
                group_key(provider_kind, provider) == group_key(provider_kind, frame)
        if provider_kind == "arc":
            return provider.get("date") == frame.get("date") and science_config_key(provider) == \
                science_config_key(frame)
        return science_config_key(provider) == science_config_key(frame)
    except (ValueError, TypeError):
        return False


# --- Exposures of one target, combined ------------------------------------------------------------

SAME_TARGET_ARCSEC = 10.0  # pointings of one target's exposures (offsets along the slit stay well within)


def target_key(fields: dict) -> tuple:
    """What spectra of one target share: proposal, night, configuration, OBJECT as typed (case, spaces and
    punctuation aside) and target number along the slit (brightest first, ``pipeline.extract``)."""
    return (fields.get("proposal_id"), fields.get("date"), science_config_key(fields),
            standards.normalize_name(str(fields.get("object") or "")), fields.get("target"))


def same_target(a: dict, b: dict) -> bool:
    """True when two spectra are of one target: same ``target_key`` and pointings within
    SAME_TARGET_ARCSEC (frames without readable coordinates go by the key alone)."""
    try:
        if target_key(a) != target_key(b):
            return False
    except (ValueError, TypeError):
        return False
    pa, pb = _pointing(a), _pointing(b)
    if pa is None or pb is None:
        return pa is None and pb is None
    return separation_arcsec(pa, pb) <= SAME_TARGET_ARCSEC


def not_one_target(spectra: list[dict]) -> str | None:
    """Why ``spectra`` (products' fields) cannot be combined, or None: they must be two or more calibrated
    spectra of one target, each of another exposure."""
    if len(spectra) < 2:
        return "combining needs at least two spectra"
    exposures = [spectrum.get("original") for spectrum in spectra]
    if len(set(exposures)) < len(exposures):
        return "two of the spectra are of the same exposure"
    for spectrum in spectra[1:]:
        if not same_target(spectra[0], spectrum):
            return (f"{_name(spectrum)} is not of the target of {_name(spectra[0])} (the same proposal, night, "
                    f"configuration, OBJECT, target along the slit and pointing within {SAME_TARGET_ARCSEC:.0f}\")")
    return None


def spectra_to_combine(spectra: list[dict]) -> list[dict]:
    """Of one target's calibrated spectra (fields with ``data_type``, ``original``: their exposure, ``id``
    ordering versions), the ones to combine: the newest of each exposure at the most calibrated level
    two or more exposures reach (flux, else wavelength), oldest exposure first; fewer than two: none."""
    for level in (DataType.FLUX_CALIBRATED, DataType.WAVELENGTH_CALIBRATED):
        newest: dict = {}
        for spectrum in sorted(spectra, key=lambda s: s["id"]):
            if spectrum["data_type"] == level:
                newest[spectrum["original"]] = spectrum
        if len(newest) >= 2:
            return sorted(newest.values(), key=lambda s: (_moment(s), s["id"]))
    return []
