"""Comparison-lamp knowledge: goodman-pipeline's lamp library and NIST air lines.

goodman-pipeline is used only as a data package: its Python modules are never
imported (they call ``sys.exit``, ``os.chdir``, switch matplotlib backends and
silence warnings process-wide).  We locate its installed folder with
``importlib.util.find_spec`` and read the FITS / text files ourselves.

Library lamps are 1x1 spectra of 4060 pixels (the raw columns 51:4110 that
goodman-pipeline keeps after trimming).  Their stored solution is a
``Chebyshev1D`` in ``GSP_FUNC``/``GSP_ORDR``/``GSP_Cnnn`` evaluated on the raw
0-based pixel index with no domain mapping (what goodman-pipeline does).
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits

# LAMP_* keyword -> the lamp's name part and the elements whose lines it shows.
# FeHeAr and CuHeAr hollow-cathode lamps carry He and Ar fill gas.
LAMP_KEYWORDS = {
    "LAMP_HGA": ("HgAr", ("Hg", "Ar")),
    "LAMP_NE": ("Ne", ("Ne",)),
    "LAMP_AR": ("Ar", ("Ar",)),
    "LAMP_FE": ("FeHeAr", ("Fe", "He", "Ar")),
    "LAMP_CU": ("CuHeAr", ("Cu", "He", "Ar")),
}
# Lamp names written in OBJECT by old headers, longest first so "HgArNe" wins over "HgAr".
_OBJECT_LAMPS = (
    ("HGARNE", ("LAMP_HGA", "LAMP_NE")),
    ("HGNEAR", ("LAMP_HGA", "LAMP_NE")),
    ("ARHG", ("LAMP_HGA",)),
    ("CUHEAR", ("LAMP_CU",)),
    ("FEHEAR", ("LAMP_FE",)),
    ("HGAR", ("LAMP_HGA",)),
    ("NE", ("LAMP_NE",)),
    ("AR", ("LAMP_AR",)),
)
_ANGLE_TOLERANCE_DEG = 0.3  # CAM_TARG/GRT_TARG match for modes without a WAVMODE name


class WavelengthCalibrationError(ValueError):
    """Wavelength calibration cannot proceed; the message says why, for a human."""


class LampError(WavelengthCalibrationError):
    """The arc cannot be matched to a library lamp (none for this mode, or lamps disagree)."""


@dataclass(frozen=True)
class LibraryLamp:
    """One reference lamp: its 1x1 spectrum and stored pixel -> wavelength solution."""

    path: Path
    flux: np.ndarray
    coefficients: np.ndarray  # Chebyshev (numpy chebval) in 1x1 library pixels
    lamp_keywords: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def elements(self) -> tuple[str, ...]:
        return lamp_elements(self.lamp_keywords)

    def wavelength(self, pixel) -> np.ndarray:
        """Stored solution at library (1x1, trimmed) pixel positions."""
        return np.polynomial.chebyshev.chebval(np.asarray(pixel, dtype=float), self.coefficients)

    def binned(self, binning: int) -> tuple[np.ndarray, np.ndarray]:
        """(flux, wavelength) of the lamp summed to ``binning`` pixels per column."""
        n = len(self.flux) // binning
        flux = self.flux[: n * binning].reshape(n, binning).sum(axis=1)
        # A binned pixel p covers library pixels p*b .. p*b+b-1; its centre is below.
        centres = np.arange(n) * binning + (binning - 1) / 2.0
        return flux, self.wavelength(centres)


@dataclass(frozen=True)
class _CatalogueEntry:
    path: Path
    grating: str
    wavmode: str
    cam_targ: float
    grt_targ: float
    lamp_keywords: tuple[str, ...]


def goodman_data_dir() -> Path:
    """goodman-pipeline's installed ``data`` folder, found without importing the package."""
    spec = importlib.util.find_spec("goodman_pipeline")
    if spec is None or not spec.submodule_search_locations:
        raise LampError("goodman-pipeline is not installed: the lamp library is unavailable")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def library_dir() -> Path:
    return goodman_data_dir() / "ref_comp"


def nist_dir() -> Path:
    return goodman_data_dir() / "nist_list"


def normalize_grating(value) -> str:
    """Lines per mm as text: '400_SYZY', 'SYZY_400', '400' -> '400'; '' when unknown."""
    match = re.search(r"(\d{3,4})", str(value or ""))
    return match.group(1) if match else ""


def normalize_wavmode(value) -> str:
    """'400 m2', '400_M2 ' -> '400_M2'; 'Custom', 'Imaging' and '' -> ''."""
    text = re.sub(r"[\s_]+", "_", str(value or "").strip()).upper()
    return text if re.match(r"^\d{3,4}_", text) else ""


def _is_true(value) -> bool:
    return str(value).strip().upper() in ("TRUE", "T", "1", "ON")


def lamps_on(header) -> tuple[str, ...]:
    """Comparison-lamp keywords that are on, e.g. ('LAMP_HGA', 'LAMP_NE').

    Modern headers say it with LAMP_* keywords; old ones (no LAMP_* at all) only
    name the lamp in OBJECT.  When both exist and disagree the file is ambiguous.
    """
    has_keywords = any(key in header for key in LAMP_KEYWORDS)
    from_keywords = tuple(k for k in LAMP_KEYWORDS if _is_true(header.get(k, "")))
    from_object = _lamps_in_object(header.get("OBJECT", ""))
    if has_keywords and from_keywords and from_object and set(from_object) != set(from_keywords):
        raise LampError(
            f"lamps disagree: OBJECT '{header.get('OBJECT')}' names "
            f"{lamp_label(from_object)} but the LAMP_* keywords say {lamp_label(from_keywords)}"
        )
    lamps = from_keywords if has_keywords and from_keywords else from_object
    if not lamps:
        raise LampError("no comparison lamp is on in this header (LAMP_HGA/NE/AR/FE/CU all off)")
    return tuple(sorted(lamps))


def _lamps_in_object(name) -> tuple[str, ...]:
    text = re.sub(r"[^A-Z]", "", str(name or "").upper())
    for label, keywords in _OBJECT_LAMPS:
        if text == label:
            return tuple(sorted(keywords))
    return ()


def lamp_label(keywords) -> str:
    return "+".join(LAMP_KEYWORDS[k][0] for k in sorted(keywords)) or "none"


def lamp_elements(keywords) -> tuple[str, ...]:
    """Elements whose lines the given lamps show, e.g. ('Ar', 'Hg', 'Ne')."""
    return tuple(sorted({e for k in keywords for e in LAMP_KEYWORDS[k][1]}))


@lru_cache(maxsize=1)
def _catalogue() -> tuple[_CatalogueEntry, ...]:
    entries = []
    for path in sorted(library_dir().glob("*.fits")):
        header = fits.getheader(path)
        entries.append(
            _CatalogueEntry(
                path=path,
                grating=normalize_grating(header.get("GRATING")),
                wavmode=normalize_wavmode(header.get("WAVMODE")),
                cam_targ=float(header.get("CAM_TARG", -99)),
                grt_targ=float(header.get("GRT_TARG", -99)),
                lamp_keywords=tuple(sorted(k for k in LAMP_KEYWORDS if _is_true(header.get(k, "")))),
            )
        )
    return tuple(entries)


def _same_mode(entry: _CatalogueEntry, grating: str, wavmode: str, cam: float, grt: float) -> bool:
    if entry.grating != grating:
        return False
    if wavmode:
        return entry.wavmode == wavmode
    # 'Custom' or empty WAVMODE: the camera and grating angles define the mode.
    return abs(entry.cam_targ - cam) < _ANGLE_TOLERANCE_DEG and abs(entry.grt_targ - grt) < _ANGLE_TOLERANCE_DEG


def _mode_of(header) -> tuple[str, str, float, float]:
    return (normalize_grating(header.get("GRATING")), normalize_wavmode(header.get("WAVMODE")),
            float(header.get("CAM_TARG", -99) or -99), float(header.get("GRT_TARG", -99) or -99))


def library_lamps_for(header) -> list[str]:
    """File names of the library lamps of this arc's grating and mode (whatever their lamps):
    the choices offered to a person who picks the lamp by hand."""
    return [entry.path.name for entry in _catalogue() if _same_mode(entry, *_mode_of(header))]


def library_lamp_named(name: str) -> LibraryLamp:
    """A library lamp chosen by file name, or a LampError naming the problem."""
    for entry in _catalogue():
        if entry.path.name == name:
            return read_library_lamp(entry.path)
    raise LampError(f"'{name}' is not a lamp of the library")


def find_library_lamp(header) -> LibraryLamp:
    """The library lamp for this arc's grating, mode and lamps, or a :class:`LampError`."""
    grating, wavmode, cam, grt = _mode_of(header)
    mode_text = wavmode or f"CAM_TARG {cam:g} / GRT_TARG {grt:g}"
    same_mode = [e for e in _catalogue() if _same_mode(e, grating, wavmode, cam, grt)]
    if not same_mode:
        raise LampError(
            f"no library lamp for grating '{header.get('GRATING')}' in mode {mode_text}"
        )
    wanted = lamps_on(header)
    matching = [e for e in same_mode if e.lamp_keywords == wanted]
    if not matching:
        available = ", ".join(sorted({lamp_label(e.lamp_keywords) for e in same_mode}))
        raise LampError(
            f"lamps on ({lamp_label(wanted)}) do not match any library lamp for grating "
            f"{grating} mode {mode_text}; the library has: {available}"
        )
    return read_library_lamp(matching[0].path)


@lru_cache(maxsize=32)
def read_library_lamp(path) -> LibraryLamp:
    path = Path(path)
    with fits.open(path) as hdul:
        header = hdul[0].header
        flux = np.asarray(hdul[0].data, dtype=float)
    if header.get("GSP_FUNC") != "Chebyshev1D":
        raise LampError(f"library lamp {path.name} has an unsupported solution {header.get('GSP_FUNC')!r}")
    degree = int(header["GSP_ORDR"])
    coefficients = np.array([float(header[f"GSP_C{i:03d}"]) for i in range(degree + 1)])
    lamp_keywords = tuple(sorted(k for k in LAMP_KEYWORDS if _is_true(header.get(k, ""))))
    return LibraryLamp(path=path, flux=flux, coefficients=coefficients, lamp_keywords=lamp_keywords)


@dataclass(frozen=True)
class NistLine:
    wavelength: float  # Angstrom, air
    intensity: float  # NIST relative intensity (comparable within one element only)
    species: str  # e.g. 'Ne I'


@lru_cache(maxsize=16)
def _element_lines(element: str) -> tuple[NistLine, ...]:
    lines = []
    for row in (nist_dir() / f"nist_air_strong_lines_{element}.txt").read_text().splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) < 3 or not parts[1]:
            continue
        intensity = re.match(r"\d+", parts[0])
        lines.append(NistLine(float(parts[1]), float(intensity.group()) if intensity else 0.0, parts[2]))
    return tuple(lines)


def nist_lines(elements, wmin: float = 0.0, wmax: float = np.inf) -> list[NistLine]:
    """NIST air lines of ``elements`` between ``wmin`` and ``wmax``, sorted by wavelength."""
    lines = [line for e in elements for line in _element_lines(e) if wmin <= line.wavelength <= wmax]
    return sorted(lines, key=lambda line: line.wavelength)


def preload() -> None:
    """Read the lamp catalogue and every NIST list now: a process that forks one child per job
    (an RQ worker) then hands them to every child instead of each re-reading ~100 files."""
    _catalogue()
    for element in lamp_elements(LAMP_KEYWORDS):
        _element_lines(element)
