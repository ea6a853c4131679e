"""Spectrophotometric standard stars: IRAF's ``onedstds`` tables and ESO's tables of the
Hamuy et al. bright (HR) standards, shipped with the pipeline.

IRAF's tables (AURA/NOAO, see ``data/onedstds/COPYRIGHT``) live in
``pipeline/data/onedstds``: each line is ``wavelength[A] AB-magnitude bandwidth[A]``;
the first line, ``# NAME``, names the star.  ESO's (via PypeIt, BSD-3, see
``data/eso-hamuy/README.md``) live in ``pipeline/data/eso-hamuy``: each line is
``wavelength[A] F_lambda[1e-16 erg/(s cm2 A)] F_nu[mJy] bandwidth[A]``, and the file
name is ``f`` and the star's (``fhr7596.dat``).  Nothing is ever downloaded.
Observers type names freely ("LTT 7379", "ltt7379", "CD-32 9927", "HR 7596"),
IRAF file names abbreviate (``l7379.dat``, ``cd32.dat``): :func:`find_standard`
resolves one to the other through the file names, the tables' own names, the
``names.men`` alternates, and abbreviations learnt from those (``l`` = LTT).
A star can have several tables (catalogues, and ctionewcal's blue and red halves):
given the spectrum's wavelength range, :func:`find_standard` takes the one covering most of it.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).with_name("data") / "onedstds"
ESO_DIR = Path(__file__).with_name("data") / "eso-hamuy"
# Preference when a star has tables in several catalogues that cover a spectrum alike: Hamuy et al.
# (1992, 1994) southern standards first, then Baldwin & Stone, then the KPNO and Oke (1990) ones,
# then ESO's tables of Hamuy's bright secondary standards (no star of those is in the others).
CATALOGUE_FOLDERS = {"ctionewcal": DATA_DIR / "ctionewcal", "ctiocal": DATA_DIR / "ctiocal",
                     "spec50cal": DATA_DIR / "spec50cal", "oke1990": DATA_DIR / "oke1990", "eso-hamuy": ESO_DIR}
CATALOGUES = tuple(CATALOGUE_FOLDERS)
# Catalogues tabulating F_lambda (column 2, in this unit of erg/(s cm2 A); bandwidth in column 4)
# rather than AB magnitudes: ESO's files, named 'f' + the star.
F_LAMBDA_UNIT = {"eso-hamuy": 1e-16}
EXTINCTION_FILE = DATA_DIR / "ctioextinct.dat"
AB_ZERO_POINT = 48.60  # F_nu = 10**(-0.4 * (m + 48.60)) erg/(s cm2 Hz)
SPEED_OF_LIGHT = 2.99792458e18  # Angstrom / s

_PARTIAL = re.compile(r"(blue|red)$")  # ctionewcal's half-range tables: l7379blue.dat
_CATALOGUE_ID = re.compile(r"([a-z]+)(\d.*)")  # 'ltt7379' -> ('ltt', '7379')
_DURCHMUSTERUNG = re.compile(r"^\s*(BD|CD|CPD)\s*[+-]?\s*(\d+)[\s_]+(\d+)\s*$", re.IGNORECASE)
# Tables named by their Durchmusterung zone alone ('# CD 32'), and the one star of that zone each holds:
# any other star of the zone is not a standard.
_ZONE_ONLY = {"cd32": "9927", "bd25": "3941", "bd8": "2015"}

StarKey = tuple[str, str]  # (catalogue, file stem without blue/red)


@dataclass(frozen=True)
class StandardStar:
    name: str  # as in the table's first line, e.g. 'LTT 7379'
    path: Path  # the table file
    catalogue: str  # its onedstds sub-folder


def normalize_name(text: str) -> str:
    """Case, spaces, hyphens, underscores, plus signs and dots do not tell stars apart."""
    return re.sub(r"[\s\-_+.]", "", text).lower()


def _table_name(path: Path) -> str | None:
    """The star's name from a table's ``# NAME`` first line (one table says 'G193-74.dat'), or from
    an ESO file's name ('fhr7596.dat' -> 'HR 7596')."""
    eso_name = _CATALOGUE_ID.fullmatch(path.stem[1:]) if path.parent == ESO_DIR else None
    if eso_name:
        return f"{eso_name[1].upper()} {eso_name[2]}"
    with path.open() as table:
        first = table.readline().strip()
    name = first.lstrip("#").strip() if first.startswith("#") else ""
    return re.sub(r"\.dat$", "", name) or None


def _alternates(path: Path) -> list[tuple[str, str]]:
    """(alternate name, file stem) pairs of a ``names.men`` file."""
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#"):
            pairs.append((normalize_name(fields[0]), fields[1]))
    return pairs


@dataclass(frozen=True)
class _Index:
    tables: dict[StarKey, tuple[StandardStar, ...]]  # the whole-range table first, then the halves
    names: dict[str, set[StarKey]]  # normalized name -> stars it names (file stems, table names, names.men)
    aliases: dict[StarKey, set[str]]  # the reverse: star -> its normalized names
    abbreviations: frozenset[tuple[str, str]]  # (file-name prefix, catalogue prefix), e.g. ('l', 'ltt')


@lru_cache(maxsize=1)
def _index() -> _Index:
    tables: dict[StarKey, list[Path]] = defaultdict(list)
    names: dict[str, set[StarKey]] = defaultdict(set)
    abbreviations = set()
    for catalogue, folder in CATALOGUE_FOLDERS.items():
        for path in sorted(folder.glob("*.dat")):
            key = (catalogue, _PARTIAL.sub("", path.stem))
            tables[key].append(path)
            names[normalize_name(path.stem)].add(key)
            table_name = _table_name(path)
            if table_name:
                names[normalize_name(table_name)].add(key)
                short, full = _CATALOGUE_ID.fullmatch(key[1]), _CATALOGUE_ID.fullmatch(normalize_name(table_name))
                if short and full and short[2] == full[2] and short[1] != full[1] and full[1].startswith(short[1]):
                    abbreviations.add((short[1], full[1]))
        for alternate, stem in _alternates(folder / "names.men"):
            if (catalogue, stem) in tables:
                names[alternate].add((catalogue, stem))
    for alternate, name in _alternates(DATA_DIR / "names.men"):  # IRAF's list for all catalogues
        names[alternate].update(names.get(normalize_name(name), ()))
    star_tables = {key: tuple(StandardStar(name=_table_name(path) or path.stem, path=path, catalogue=key[0])
                              for path in sorted(paths, key=lambda path: path.stem != key[1]))
                   for key, paths in tables.items()}
    aliases = defaultdict(set)
    for name, named in names.items():
        for key in named:
            aliases[key].add(name)
    return _Index(star_tables, dict(names), dict(aliases), frozenset(abbreviations))


def _same_star(index: _Index, keys: set[StarKey]) -> set[StarKey]:
    """Every table reachable from ``keys`` through shared names: one star, all its catalogues."""
    found, todo = set(keys), list(keys)
    while todo:
        for name in index.aliases[todo.pop()]:
            for key in index.names[name] - found:
                found.add(key)
                todo.append(key)
    return found


def _named(index: _Index, text: str) -> set[StarKey]:
    """Tables of the star named ``text``: by an explicit name; else through a learnt abbreviation
    ('LTT 2511' -> l2511.dat) unless that table names another star (l745.dat is L745-46A, not
    LTT 745); else a Durchmusterung star of a table named by its zone alone ('CD-32 9927' -> 'CD 32'),
    only by its own number."""
    name = normalize_name(text)
    if name in index.names:
        return index.names[name]
    for short, full in sorted(index.abbreviations):
        rest = name[len(full):]
        if name.startswith(full) and rest[:1].isdigit():
            keys = {key for key in index.names.get(short + rest, ())
                    if normalize_name(index.tables[key][0].name) in (key[1], name)}
            if keys:
                return keys
    zone = _DURCHMUSTERUNG.match(text)
    if zone is None or _ZONE_ONLY.get(f"{zone[1]}{zone[2]}".lower()) != zone[3]:
        return set()
    return index.names.get(f"{zone[1]}{zone[2]}".lower(), set())


def tables_of(object_name: str) -> list[StandardStar]:
    """Every shipped table of the star an observer named, in order of preference (catalogue order,
    whole-range tables before halves); empty if no table knows it."""
    index = _index()
    keys = sorted(_same_star(index, _named(index, object_name)), key=lambda key: (CATALOGUES.index(key[0]), key[1]))
    return [table for key in keys for table in index.tables[key]]


def find_standard(object_name: str, wavelength_range: tuple[float, float] | None = None) -> StandardStar | None:
    """The shipped table of the star an observer named, or None if no table knows it: the preferred one,
    or, given a spectrum's ``wavelength_range`` [A], the one covering most of it (the preferred among equals)."""
    tables = tables_of(object_name)
    if not tables or wavelength_range is None:
        return tables[0] if tables else None
    return max(tables, key=lambda table: coverage(table, wavelength_range))  # max keeps the first of equals


def coverage(star: StandardStar, wavelength_range: tuple[float, float]) -> float:
    """Fraction of ``wavelength_range`` [A] inside the bands of a star's table."""
    start, end = sorted(wavelength_range)
    low, high = _band_span(star)
    return max(0.0, min(end, high) - max(start, low)) / (end - start) if end > start else float(low <= start <= high)


@lru_cache(maxsize=None)
def _band_span(star: StandardStar) -> tuple[float, float]:
    """First band's blue end and last band's red end [A] of a star's table."""
    centre, _, bandwidth = f_lambda(star)
    return float(np.min(centre - bandwidth / 2)), float(np.max(centre + bandwidth / 2))


def ab_to_f_lambda(wavelength, ab_mag) -> np.ndarray:
    """AB magnitude -> F_lambda [erg/(s cm2 A)]."""
    f_nu = 10.0 ** (-0.4 * (np.asarray(ab_mag, dtype=float) + AB_ZERO_POINT))
    return f_nu * SPEED_OF_LIGHT / np.asarray(wavelength, dtype=float) ** 2


def f_lambda(star: StandardStar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band centres [A], F_lambda [erg/(s cm2 A)] and bandwidths [A] of a star's table, whichever its format."""
    if star.catalogue in F_LAMBDA_UNIT:
        wavelength, tabulated, bandwidth = np.loadtxt(star.path, comments="#", usecols=(0, 1, 3), unpack=True,
                                                      ndmin=2)
        return wavelength, tabulated * F_LAMBDA_UNIT[star.catalogue], bandwidth
    wavelength, ab_mag, bandwidth = np.loadtxt(star.path, comments="#", usecols=(0, 1, 2), unpack=True, ndmin=2)
    return wavelength, ab_to_f_lambda(wavelength, ab_mag), bandwidth


def extinction_curve() -> tuple[np.ndarray, np.ndarray]:
    """CTIO extinction (Stone & Baldwin 1983, Baldwin & Stone 1984): wavelength [A], mag per airmass.
    Cerro Tololo is 10 km from Cerro Pachon, where SOAR stands."""
    wavelength, mag_per_airmass = np.loadtxt(EXTINCTION_FILE, unpack=True)
    return wavelength, mag_per_airmass


def extinction_at(wavelength, curve: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Extinction [mag per airmass] at ``wavelength``: linear between the table's points, constant beyond."""
    table_wavelength, mag_per_airmass = curve if curve is not None else extinction_curve()
    return np.interp(np.asarray(wavelength, dtype=float), table_wavelength, mag_per_airmass)
