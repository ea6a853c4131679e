"""Classify raw Goodman frames and normalize their header keywords.

Pure functions on :class:`astropy.io.fits.Header`; the input header is never
modified.  Goodman headers come in two keyword styles: since 2019 values look
like ``400_SYZY``, ``400_M2``, ``NO_FILTER``, ``1.0_LONG_SLIT``; before, like
``SYZY_400``, ``400 m2``, ``<NO FILTER>``, ``0.45" long slit``.  Everything
here speaks the modern style so that frames of both eras group and match.

Tables copied from goodman-pipeline 3.1.0 (``goodman_pipeline/core/core.py``,
BSD-3) rather than imported, because importing its modules has side effects
(``sys.exit``, ``chdir``, matplotlib backend switch).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from astropy.io import fits

from pipeline.datatypes import DataType
from pipeline.fitsfiles import written_value

# Observation types the pipeline knows how to process.
OBSTYPES = ("BIAS", "FLAT", "LAMPFLAT", "COMP", "ARC", "OBJECT", "SPECTRUM", "EXPOSE")

_KINDS = {
    "BIAS": "bias",
    "FLAT": "flat",
    "LAMPFLAT": "flat",
    "COMP": "arc",
    "ARC": "arc",
    "OBJECT": "science",
    "SPECTRUM": "science",
    "EXPOSE": "imaging",
}

NO_FILTER = "NO_FILTER"
NO_GRATING = "NO_GRATING"
NO_MASK = "NO_MASK"
IMAGING_MODE = "IMAGING"
CUSTOM_MODE = "CUSTOM"
USER_DEFINED_ROI = "user-defined"

# Raw frames are unsigned 16 bit: the digital ceiling when no tabulated value applies.
DIGITAL_SATURATION = 65535

# The night date rolls over at 12:00 UT (08:00/09:00 Chilean time), so a frame
# belongs to the night that began on the evening before it, and the morning's
# daytime calibrations belong to the coming night.  Rubin Observatory, on the
# same mountain, defines its observing day the same way (UTC-12 h); the GSP
# Live manual's examples agree (a 21:30 -03:00 frame dated that evening, a
# 10:22 -03:00 flat dated that same day).
NIGHT_ROLLOVER = timedelta(hours=12)

# Lamp keywords and the lamp each one switches, in header order.
LAMPS = (
    ("LAMP_HGA", "HgAr"),
    ("LAMP_NE", "Ne"),
    ("LAMP_AR", "Ar"),
    ("LAMP_FE", "Fe"),
    ("LAMP_CU", "Cu"),
    ("LAMP_QUA", "Quartz"),
    ("LAMP_BUL", "Bulb"),
    ("LAMP_DOM", "Dome"),
)
ARC_LAMPS = frozenset({"HgAr", "Ne", "Ar", "Fe", "Cu"})

# goodman-pipeline 3.1.0, core/core.py, class SaturationValues: (camera,
# read rate kHz, analog attenuation, gain e-/ADU, read noise e-, half full well
# ADU).  goodman-pipeline (and the manual's API examples) use the half full well as ``saturation_value``;
# GSP Live catalogues saturation_level(): the same, capped at the 16-bit converter's ceiling.
SATURATION_TABLE = (
    ("Blue", 50, 0, 0.25, 3.33, 279600),
    ("Blue", 50, 2, 0.47, 3.35, 148723),
    ("Blue", 50, 3, 0.91, 3.41, 76813),
    ("Blue", 100, 0, 0.56, 3.69, 124821),
    ("Blue", 100, 2, 1.06, 3.72, 65943),
    ("Blue", 100, 3, 2.06, 3.99, 33932),
    ("Blue", 200, 0, 1.4, 4.74, 49928),
    ("Blue", 200, 2, 2.67, 5.12, 26179),
    ("Blue", 400, 0, 5.67, 8.62, 12328),
    ("Red", 100, 3, 1.54, 3.45, 66558),
    ("Red", 100, 2, 3.48, 5.88, 29454),
    ("Red", 344, 3, 1.48, 3.89, 69257),
    ("Red", 344, 0, 3.87, 7.05, 26486),
    ("Red", 750, 2, 1.47, 5.27, 69728),
    ("Red", 750, 2, 1.45, 5.27, 69728),
    ("Red", 750, 0, 3.77, 8.99, 27188),
    ("Red", 750, 0, 3.78, 8.99, 27188),
)

# goodman-pipeline 3.1.0, core/core.py, class SpectroscopicMode: (grating
# l/mm, mode, CAM_TARG deg, GRT_TARG deg).  Its 1800/2100/2400 rows have no
# angles (always custom) and are left out.
SPECTROSCOPIC_MODES = (
    ("400", "M1", 11.6, 5.8),
    ("400", "M2", 16.1, 7.5),
    ("600", "UV", 15.25, 7.0),
    ("600", "BLUE", 17.0, 7.0),
    ("600", "MID", 20.0, 10.0),
    ("600", "RED", 27.0, 12.0),
    ("930", "M1", 20.6, 10.3),
    ("930", "M2", 25.2, 12.6),
    ("930", "M3", 29.9, 15.0),
    ("930", "M4", 34.6, 18.3),
    ("930", "M5", 39.4, 19.7),
    ("930", "M6", 44.2, 22.1),
    ("1200", "M0", 26.0, 16.3),
    ("1200", "M1", 29.5, 16.3),
    ("1200", "M2", 34.4, 18.7),
    ("1200", "M3", 39.4, 20.2),
    ("1200", "M4", 44.4, 22.2),
    ("1200", "M5", 49.6, 24.8),
    ("1200", "M6", 54.8, 27.4),
    ("1200", "M7", 60.2, 30.1),
)
# Target angles are set values, so a small tolerance only absorbs float printing.
_ANGLE_TOLERANCE = 0.05
# Header gain/noise are printed with two decimals.
_READOUT_TOLERANCE = 0.005

_ROI_PRESET = re.compile(r"^[A-Za-z][A-Za-z ]*? (\d+)x(\d+)$")  # "Spectroscopic 2x2"
_ROI_CUSTOM = re.compile(r"^CUST(?:_\d+){4}_(\d+)x(\d+)$", re.IGNORECASE)  # "CUST_0_4142_980_948_1x2"


class HeaderError(ValueError):
    """A keyword the classification needs is missing or makes no sense."""

    def __init__(self, keyword: str, problem: str):
        self.keyword = keyword
        super().__init__(f"{keyword}: {problem}")


# ---------------------------------------------------------------- obstype kinds

def kind(obstype: str, technique: str | None = None) -> str:
    """'bias' | 'flat' | 'arc' | 'science' | 'imaging' | 'other' for an OBSTYPE.

    OBJECT is used for both techniques; pass the technique to tell an imaging
    OBJECT ('imaging') from a spectroscopic one ('science').
    """
    name = str(obstype).strip().upper()
    if name == "OBJECT" and technique == "Imaging":
        return "imaging"
    return _KINDS.get(name, "other")


def obstypes_of(frame_kind: str) -> tuple[str, ...]:
    """The OBSTYPEs of a frame kind (after normalization): ``obstypes_of("arc") == ("COMP", "ARC")``."""
    return tuple(name for name, of_kind in _KINDS.items() if of_kind == frame_kind)


def is_calibration(obstype: str) -> bool:
    """True for the frames combined into masters (BIAS, FLAT, LAMPFLAT).

    Arcs are treated as science frames, as in the GSP Live manual.
    """
    return kind(obstype) in ("bias", "flat")


# ------------------------------------------------------- keyword normalization

def _normalize_obstype(value) -> str:
    text = str(value).strip().upper()
    if not text:
        raise HeaderError("OBSTYPE", "is empty")
    return text


def _normalize_instconf(value) -> str:
    text = str(value).strip().capitalize()
    if text not in ("Red", "Blue"):
        raise HeaderError("INSTCONF", f"{value!r} is not a Goodman camera (Red or Blue)")
    return text


def _normalize_grating(value) -> str:
    text = re.sub(r"[\s\-]+", "_", str(value).strip().strip("<>").strip().upper())
    if text in ("", NO_GRATING):
        return NO_GRATING
    parts = text.split("_")
    # Old style names the maker first (SYZY_400); modern puts the ruling first.
    if not parts[0].isdigit():
        ruling = next((p for p in parts if p.isdigit()), None)
        if ruling is not None:
            parts.remove(ruling)
            parts.insert(0, ruling)
    return "_".join(parts)


def _normalize_wavmode(value) -> str:
    return re.sub(r"\s+", "_", str(value).strip()).upper()


def _says_none(text: str, sentinel: str) -> bool:
    """True for blank or either spelling of a sentinel ('<NO FILTER>', 'NO_FILTER')."""
    return re.sub(r"[\s_]+", "_", text.strip("<>").strip().upper()) in ("", sentinel)


def _normalize_filter(value) -> str:
    text = str(value).strip()
    return NO_FILTER if _says_none(text, NO_FILTER) else text


def _normalize_slit(value) -> str:
    text = str(value).strip()
    if _says_none(text, NO_MASK):
        return NO_MASK
    # Old style quotes the width in arcsec: 0.45" long slit -> 0.45_LONG_SLIT.
    text = text.replace("''", "").replace('"', "")
    return re.sub(r"\s+", "_", text.strip()).upper()


def roi_binning(roi: str) -> str | None:
    """The 'SxP' binning an ROI name states, or None (user-defined)."""
    match = _ROI_PRESET.match(roi) or _ROI_CUSTOM.match(roi)
    return f"{match.group(1)}x{match.group(2)}" if match else None


def _normalize_roi(value) -> str:
    text = " ".join(str(value).split())
    if text.lower() == USER_DEFINED_ROI:
        return USER_DEFINED_ROI
    if roi_binning(text) is None:
        raise HeaderError("ROI", f"{value!r} is neither a preset like 'Spectroscopic 2x2', "
                                 "a CUST_..._SxP window nor 'user-defined'")
    return text


_NORMALIZERS = {
    "OBSTYPE": _normalize_obstype,
    "INSTCONF": _normalize_instconf,
    "GRATING": _normalize_grating,
    "WAVMODE": _normalize_wavmode,
    "FILTER": _normalize_filter,
    "FILTER2": _normalize_filter,
    "SLIT": _normalize_slit,
    "ROI": _normalize_roi,
}


def normalize_keyword(name: str, value):
    """One keyword's value in the modern style; keywords without two styles pass through.

    >>> normalize_keyword("GRATING", "SYZY_400")
    '400_SYZY'
    """
    normalizer = _NORMALIZERS.get(name.strip().upper())
    return value if normalizer is None else normalizer(value)


# ------------------------------------------------------------- header reading

def _value(header: fits.Header, keyword: str):
    """The keyword's value, None when absent, undefined or blank; HeaderError when it is not valid FITS."""
    try:
        value = header.get(keyword)
    except fits.VerifyError:
        raise HeaderError(keyword, f"{written_value(header.cards[keyword])!r} is not a valid FITS value") from None
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _required(header: fits.Header, keyword: str):
    value = _value(header, keyword)
    if value is None:
        empty = " (the header is empty)" if len(header) == 0 else ""
        raise HeaderError(keyword, f"missing{empty}")
    return value


def _number(keyword: str, value, minimum: float | None = None, strictly: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HeaderError(keyword, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise HeaderError(keyword, f"{value!r} is not a finite number")
    if minimum is not None and (number < minimum or (strictly and number == minimum)):
        relation = "above" if strictly else "at least"
        raise HeaderError(keyword, f"{value!r} must be {relation} {minimum:g}")
    return number


def _readout(header: fits.Header) -> tuple[float, float]:
    """(GAIN e-/ADU, RDNOISE e-), both required and positive."""
    return (_number("GAIN", _required(header, "GAIN"), 0, strictly=True),
            _number("RDNOISE", _required(header, "RDNOISE"), 0, strictly=True))


def _optional_angle(header: fits.Header, keyword: str) -> float | None:
    value = _value(header, keyword)
    return None if value is None else _number(keyword, value)


def _ccdsum(header: fits.Header, roi: str) -> str:
    """CCDSUM as 'S P'; taken from a preset ROI when the keyword is missing."""
    value = _value(header, "CCDSUM")
    if value is None:
        binning = roi_binning(roi)
        if binning is None:
            raise HeaderError("CCDSUM", "missing and the ROI does not state the binning")
        return binning.replace("x", " ")
    parts = str(value).split()
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise HeaderError("CCDSUM", f"{value!r} is not two positive whole numbers like '2 2'")
    return " ".join(parts)


def _matches(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance


def _camera_from_readout(gain: float, rdnoise: float) -> str | None:
    """The camera whose tabulated readout mode has this gain and noise, if only one."""
    cameras = {row[0] for row in SATURATION_TABLE
               if _matches(row[3], gain, _READOUT_TOLERANCE)
               and _matches(row[4], rdnoise, _READOUT_TOLERANCE)}
    return cameras.pop() if len(cameras) == 1 else None


def saturation_value(instconf: str, gain: float, rdnoise: float) -> int | None:
    """Half full well (ADU) of the camera's readout mode, None when not tabulated."""
    for camera, _rate, _attenuation, row_gain, row_noise, half_full_well in SATURATION_TABLE:
        if (camera == instconf and _matches(row_gain, gain, _READOUT_TOLERANCE)
                and _matches(row_noise, rdnoise, _READOUT_TOLERANCE)):
            return half_full_well
    return None


def saturation_level(instconf: str, gain: float, rdnoise: float) -> int:
    """The level (ADU) at which a pixel of this readout mode saturates: the half full well, or the
    16-bit converter's ceiling when that comes first (the Red camera's 69257 ADU half full well at
    gain 1.48 is never read: the converter stops at 65535). The catalogue, the API, the reduction and
    the viewer all use this one value."""
    tabulated = saturation_value(instconf, gain, rdnoise)
    return min(tabulated or DIGITAL_SATURATION, DIGITAL_SATURATION)


def standard_mode(grating: str, cam_targ: float | None, grt_targ: float | None) -> str | None:
    """Name of the standard spectroscopic mode ('400_M2') these angles set, or None."""
    if cam_targ is None or grt_targ is None:
        return None
    ruling = grating.split("_")[0]
    for mode_ruling, mode, mode_cam, mode_grt in SPECTROSCOPIC_MODES:
        if (mode_ruling == ruling and _matches(mode_cam, cam_targ, _ANGLE_TOLERANCE)
                and _matches(mode_grt, grt_targ, _ANGLE_TOLERANCE)):
            return f"{ruling}_{mode}"
    return None


def _wavmode(header: fits.Header, grating: str, notes: list[str]) -> str:
    """WAVMODE, derived from the optics when the header leaves it blank or 'Custom'.

    Old headers write WAVMODE blank on calibrations but 'Custom' on science
    frames of the same setup; deriving it makes both agree.  The blocking
    filter is left out of the derivation (goodman-pipeline includes it)
    because FILTER2 is compared on its own wherever frames are matched.
    """
    raw = _value(header, "WAVMODE")
    stated = _normalize_wavmode(raw) if raw is not None else ""
    if stated not in ("", CUSTOM_MODE):
        return stated
    if grating == NO_GRATING:
        derived = IMAGING_MODE
    else:
        derived = standard_mode(grating, _optional_angle(header, "CAM_TARG"),
                                _optional_angle(header, "GRT_TARG")) or CUSTOM_MODE
    if derived != stated:
        stated_text = "missing or blank" if raw is None else repr(raw)
        notes.append(f"WAVMODE {stated_text}; taken as {derived} from GRATING, CAM_TARG, GRT_TARG")
    return derived


def _normalize(header: fits.Header) -> tuple[dict, list[str]]:
    """Normalized style-dependent keywords, plus notes on every default applied."""
    notes: list[str] = []
    fields = {"OBSTYPE": _normalize_obstype(_required(header, "OBSTYPE"))}

    raw_instconf = _value(header, "INSTCONF")
    if raw_instconf is None:
        gain, rdnoise = _readout(header)
        # Headers without INSTCONF predate the Red camera: Blue unless the readout says otherwise.
        fields["INSTCONF"] = _camera_from_readout(gain, rdnoise) or "Blue"
        notes.append(f"INSTCONF missing; taken as {fields['INSTCONF']}")
    else:
        fields["INSTCONF"] = _normalize_instconf(raw_instconf)

    fields["GRATING"] = _normalize_grating(_required(header, "GRATING"))
    fields["WAVMODE"] = _wavmode(header, fields["GRATING"], notes)
    for keyword, default in (("FILTER", NO_FILTER), ("FILTER2", NO_FILTER),
                             ("SLIT", NO_MASK), ("ROI", USER_DEFINED_ROI)):
        raw = _value(header, keyword)
        if raw is None:
            notes.append(f"{keyword} missing or blank; taken as {default}")
        fields[keyword] = default if raw is None else normalize_keyword(keyword, raw)

    fields["CCDSUM"] = _ccdsum(header, fields["ROI"])
    stated = roi_binning(fields["ROI"])
    binning = fields["CCDSUM"].replace(" ", "x")
    if stated is not None and stated != binning:
        raise HeaderError("ROI", f"{fields['ROI']!r} says binning {stated} but CCDSUM is "
                                 f"{fields['CCDSUM']!r}")
    return fields, notes


def normalized_fields(header: fits.Header) -> dict:
    """{keyword: modern-style value} for OBSTYPE, INSTCONF, GRATING, WAVMODE,
    FILTER, FILTER2, SLIT, ROI and CCDSUM, with lenient defaults filled in."""
    return _normalize(header)[0]


def normalized_header(header: fits.Header) -> fits.Header:
    """A copy of the header with its style-dependent keywords in the modern style."""
    copy = header.copy()
    for keyword, value in normalized_fields(header).items():
        copy[keyword] = value
    return copy


# ------------------------------------------------------------ time and place

def parse_date_obs(header: fits.Header) -> datetime:
    """DATE-OBS as an aware UTC datetime (date-only values take the time from UT)."""
    raw = str(_required(header, "DATE-OBS"))
    text = raw
    if "T" not in text and _value(header, "UT") is not None:
        text = f"{text}T{_value(header, 'UT')}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HeaderError("DATE-OBS", f"{raw!r} is not an ISO date and time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def night_date(date_obs: datetime) -> str:
    """YYYY-MM-DD of the night a frame belongs to (see NIGHT_ROLLOVER)."""
    return (date_obs.astimezone(timezone.utc) - NIGHT_ROLLOVER).date().isoformat()


def parse_sexagesimal(text: str) -> float:
    """'hh:mm:ss.s' or '-dd:mm:ss.s' as a signed number of hours or degrees.

    Components are summed, so a seconds field of 60 (seen in real headers) works.
    """
    parts = str(text).strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{text!r} is not sexagesimal")
    numbers = [float(p) for p in parts]
    sign = -1.0 if parts[0].strip().startswith("-") else 1.0
    return sign * sum(abs(n) / 60 ** i for i, n in enumerate(numbers))


def _coordinate(header: fits.Header, keyword: str, notes: list[str]) -> str | None:
    value = _value(header, keyword)
    if value is None:
        return None
    try:
        parse_sexagesimal(value)
    except ValueError:
        notes.append(f"{keyword} {value!r} is not sexagesimal; ignored")
        return None
    return str(value)


# ---------------------------------------------------------------- classification

def lamps_on(header: fits.Header) -> list[str]:
    """Names of the lamps whose LAMP_* keyword is TRUE, in header order."""
    on = []
    for keyword, lamp in LAMPS:
        value = _value(header, keyword)
        if value is True or str(value).upper() in ("TRUE", "T"):
            on.append(lamp)
    return on


def identify_technique(obstype: str, object_name: str, grating: str, wavmode: str, roi: str) -> str:
    """'Imaging' or 'Spectroscopy' from normalized values.

    goodman-pipeline 3.1.0 has two rules: per night, WAVMODE IMAGING means
    Imaging (DataClassifier._get_obs_technique); per file, spectroscopy is any
    of a Spectroscopic ROI, an ARC/COMP/SPECTRUM OBSTYPE, a slit or grating in
    the beam, or '_SP_' in OBJECT (core.identify_technique).  We apply the
    first, then the second without the slit test (the real imaging frame
    im_g_SDSS.fits has a slit in the beam), and call everything else Imaging
    since no grating in the beam means nothing disperses the light.
    """
    if wavmode == IMAGING_MODE:
        return "Imaging"
    if ("Spectroscopic" in roi or obstype in ("ARC", "COMP", "SPECTRUM")
            or grating != NO_GRATING or "_SP_" in object_name):
        return "Spectroscopy"
    return "Imaging"


def classify(header: fits.Header, filename: str | None = None) -> dict:
    """The catalogue fields of a raw frame, named as in the GSP Live manual.

    Raises HeaderError naming the keyword when a needed keyword is missing or
    nonsense; keywords with a sensible default get it and a line in 'notes'.
    """
    fields, notes = _normalize(header)
    gain, rdnoise = _readout(header)
    exptime = _number("EXPTIME", _required(header, "EXPTIME"), 0)
    date_obs = parse_date_obs(header)
    object_name = str(_value(header, "OBJECT") or "")

    saturation = saturation_level(fields["INSTCONF"], gain, rdnoise)
    if saturation_value(fields["INSTCONF"], gain, rdnoise) is None:
        notes.append(f"no tabulated saturation for {fields['INSTCONF']} gain {gain:g} "
                     f"read noise {rdnoise:g}; using {DIGITAL_SATURATION}")

    proposal = _value(header, "PROPOSAL") or _value(header, "PROPID")
    return {
        "file_name": filename,
        "obstype": fields["OBSTYPE"],
        "technique": identify_technique(fields["OBSTYPE"], object_name, fields["GRATING"],
                                        fields["WAVMODE"], fields["ROI"]),
        "object": object_name,
        "instconf": fields["INSTCONF"],
        "grating": fields["GRATING"],
        "wavmode": fields["WAVMODE"],
        "filter": fields["FILTER"],
        "filter_2": fields["FILTER2"],
        "slit": fields["SLIT"],
        "roi": fields["ROI"],
        "ccdsum": fields["CCDSUM"],
        "binning": fields["CCDSUM"].replace(" ", "x"),
        "cam_targ": _optional_angle(header, "CAM_TARG"),
        "grt_targ": _optional_angle(header, "GRT_TARG"),
        "obsra": _coordinate(header, "OBSRA", notes),
        "obsdec": _coordinate(header, "OBSDEC", notes),
        "gain": gain,
        "rdnoise": rdnoise,
        "saturation_value": saturation,
        "exptime": exptime,
        "date_obs": date_obs,
        "date": night_date(date_obs),
        "proposal_id": None if proposal is None else str(proposal),
        "lamps": lamps_on(header),
        "data_type": DataType.RAW.value,
        "notes": notes,
    }


def _inferred_obstype(fields: dict) -> tuple[str, str | None]:
    """(obstype, reason) for a frame whose OBSTYPE the pipeline does not know."""
    if fields["obstype"] in OBSTYPES:
        return fields["obstype"], None
    arcs = [lamp for lamp in fields["lamps"] if lamp in ARC_LAMPS]
    if arcs and fields["technique"] == "Spectroscopy":
        return "COMP", f"arc lamp(s) {', '.join(arcs)} on"
    return fields["obstype"], None


def reclassify(header: fits.Header, obstype: str | None = None,
               filename: str | None = None) -> dict:
    """classify(), then fix OBSTYPE: an explicit ``obstype`` wins; otherwise an
    unknown OBSTYPE (FOCUS...) of a spectroscopic frame with arc lamps on
    becomes COMP.  The technique is re-derived and the change noted."""
    fields = classify(header, filename)
    if obstype is not None:
        new = _normalize_obstype(obstype)
        if new not in OBSTYPES:
            raise HeaderError("OBSTYPE", f"{obstype!r} is not one of {', '.join(OBSTYPES)}")
        reason = "requested"
    else:
        new, reason = _inferred_obstype(fields)
    if new == fields["obstype"]:
        return fields
    technique = identify_technique(new, fields["object"], fields["grating"],
                                   fields["wavmode"], fields["roi"])
    notes = fields["notes"] + [f"OBSTYPE {fields['obstype']} reclassified as {new}: {reason}"]
    return {**fields, "obstype": new, "technique": technique, "notes": notes}
