"""Which frames combine together and which calibration serves which frame.

Pure rules shared by the live job layer and the offline twin.  Inputs are
plain dicts as returned by :func:`pipeline.headers.classify` (plus 'id' or
'file_name' and 'date_obs'); outputs are plain data: tuples for group keys,
``(chosen dict or None, reason)`` for choices.  Group keys describe a
configuration only; scoping by proposal or night is the caller's business.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

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
