"""The night at a glance, through the permission layer: the nights a user has raw files of, and for one
night its raw files by state, the jobs on its files by state, and per instrument configuration whether
its calibrations are ready (the API's /api/nights/ and the Data page's night panel share these).

A night is visible when the user may see raw files of it (staff: all; members: their proposals' raw
files). Master calibrations, which everyone sees, count towards readiness but never make a night visible.
What a configuration needs comes from the chain (``pipeline.chain.needs_of``) and the settings of the
proposal its frames belong to; how many bias and flat frames are enough, from those settings too.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial

import sqlalchemy as sa

from auth.permissions import visible_files
from db import db
from db.models import File, Proposal
from db.queries import RAW_CALIBRATION_TYPES, config_fields, job_counts, kind_of, sensitivity_functions
from pipeline import chain, matching
from pipeline.chain import DataType
from pipeline.headers import NO_FILTER
from pipeline.settings import ReductionSettings

# Every state a raw file can be in (live/states.py), the ones that need attention first.
FILE_STATES = ("running", "queued", "waiting", "failed", "done", "ingested")
# What a configuration may need, in the chain's words, and the key each has in a summary.
READINESS_KEYS = {chain.MASTER_BIAS: "bias", chain.MASTER_FLAT: "flats", chain.ARC: "arc",
                  chain.SENSITIVITY: "standard"}
# The kinds of raw frame that tell a configuration was (or is about to be) observed: flats come first.
CONFIGURATION_KINDS = ("science", chain.STANDARD, "arc", "imaging", "flat")
# Fields that tell apart configurations whose short labels are the same.
LABEL_FIELDS = ("slit", "binning", "roi", "instconf", "filter", "cam_targ", "grt_targ", "proposal")


def _raw_of_night(user, date: str, columns=None) -> sa.Select:
    query = sa.select(*columns) if columns else sa.select(File)
    return visible_files(user, query, data_type=DataType.RAW).where(File.data_type == DataType.RAW,
                                                                      File.date == date)


def _state_counts(rows) -> dict[str, int]:
    counts = Counter(dict(rows))
    return {state: counts.get(state, 0) for state in FILE_STATES}


def list_nights(user, page: int, page_size: int) -> tuple[list[dict], int]:
    """One page of the nights ``user`` has raw files of, newest first ({date, total, files by state}), and
    how many nights there are."""
    dates = visible_files(user, sa.select(File.date).distinct(), data_type=DataType.RAW).where(
        File.data_type == DataType.RAW, File.date != "")
    count = db.session.scalar(sa.select(sa.func.count()).select_from(dates.subquery())) or 0
    shown = list(db.session.scalars(dates.order_by(File.date.desc()).limit(page_size)
                                    .offset((page - 1) * page_size)))
    if not shown:
        return [], count
    rows = db.session.execute(visible_files(user, sa.select(File.date, File.state, sa.func.count()),
                                            data_type=DataType.RAW)
                              .where(File.data_type == DataType.RAW, File.date.in_(shown))
                              .group_by(File.date, File.state)).all()
    by_night = {date: [] for date in shown}
    for date, state, number in rows:
        by_night[date].append((state, number))
    nights = [{"date": date, "total": sum(n for _s, n in by_night[date]), "files": _state_counts(by_night[date])}
              for date in shown]
    return nights, count


def latest_night(user) -> str | None:
    """The newest night ``user`` has raw files of."""
    return db.session.scalar(visible_files(user, sa.select(sa.func.max(File.date)), data_type=DataType.RAW)
                             .where(File.data_type == DataType.RAW, File.date != ""))


def night_summary(user, date: str) -> dict | None:
    """Raw files by state, jobs by state and each configuration's readiness; None when ``user`` has no raw
    file of that night (so another proposal's night is 'not found', as a file would be)."""
    raw = list(db.session.scalars(_raw_of_night(user, date).order_by(File.id)))
    if not raw:
        return None
    night_files = visible_files(user, sa.select(File.id)).where(File.date == date)
    configurations = _configurations(user, date, raw)
    return {
        "date": date,
        "total": len(raw),
        "files": _state_counts(Counter(file.state for file in raw).items()),
        "jobs": job_counts(night_files),
        "configurations": [configuration.to_dict() for configuration in configurations],
        "missing": [text for configuration in configurations for text in configuration.missing],
    }


# --- readiness ----------------------------------------------------------------------------------------

@dataclass
class Readiness:
    """One thing a configuration may need: whether it does, whether it is there, and what is missing."""

    needed: bool
    have: int  # frames of it tonight (bias, flats, arcs, standard stars)
    need: int  # frames enough for it (the proposal's minimum for bias and flats; one arc or standard)
    master: str | None = None  # what already provides it: a master, a reduced arc, a sensitivity function
    missing: str = ""

    @property
    def ready(self) -> bool:
        return not self.needed or self.master is not None or self.have >= self.need

    def to_dict(self) -> dict:
        return {"needed": self.needed, "ready": self.ready, "have": self.have, "need": self.need,
                "master": self.master, "missing": self.missing if not self.ready else ""}


@dataclass
class Configuration:
    proposal: Proposal | None
    frames: list[File]  # the night's raw frames of this configuration (science, standards, arcs, flats)
    label: str = ""
    readiness: dict[str, Readiness] = field(default_factory=dict)

    @property
    def example(self) -> File:
        return self.frames[0]

    @property
    def missing(self) -> list[str]:
        return [item.missing for item in self.readiness.values() if not item.ready]

    def to_dict(self) -> dict:
        example = self.example
        return {
            "label": self.label,
            "proposal": self.proposal.soar_id if self.proposal else None,
            "camera": example.instconf, "grating": example.grating, "wavmode": example.wavmode,
            "filter_2": example.filter_2, "slit": example.slit, "binning": _binning(example),
            "technique": example.technique,
            "frames": dict(Counter(kind_of(frame) for frame in self.frames)),
            "ready": not self.missing,
            "readiness": {READINESS_KEYS[need]: item.to_dict() for need, item in self.readiness.items()},
            "missing": self.missing,
        }


def _binning(file: File) -> str:
    return str(config_fields(file).get("binning") or "")


def _key(key_of, file: File) -> tuple | None:
    """A matching key of a catalogue row; None when the row lacks a field the key needs."""
    try:
        return key_of(config_fields(file))
    except (ValueError, TypeError, KeyError):
        return None


def _configurations(user, date: str, raw: list[File]) -> list[Configuration]:
    groups: dict[tuple, Configuration] = {}
    for frame in raw:
        key = _key(matching.science_config_key, frame)
        if key is None or frame.state == "failed" or kind_of(frame) not in CONFIGURATION_KINDS:
            continue
        groups.setdefault((frame.proposal_id, key), Configuration(frame.proposal, [])).frames.append(frame)
    configurations = list(groups.values())
    _label(configurations)
    frames = _NightFrames(raw, date)
    for configuration in configurations:
        configuration.readiness = frames.readiness(configuration)
    return configurations


def _label_part(configuration: Configuration, name: str) -> str:
    example = configuration.example
    if name == "proposal":
        return configuration.proposal.soar_id if configuration.proposal else "no proposal"
    if name == "binning":
        return _binning(example)
    value = str(getattr(example, name) or "")
    return "" if value == NO_FILTER else value


def _label(configurations: list[Configuration]) -> None:
    """Short names ("400_M2 / GG455"): the wavelength mode (or the filter when imaging) and the filter 2;
    configurations that would read the same get the fields they differ in ("400_M2 / GG455 / 2x2")."""
    same = defaultdict(list)
    for configuration in configurations:
        example = configuration.example
        first = example.wavmode or example.grating
        if example.technique != chain.SPECTROSCOPY:
            first = f"imaging {example.filter}"
        same[" / ".join(p for p in (first, _label_part(configuration, "filter_2")) if p)].append(configuration)
    for label, group in same.items():
        differing = [name for name in LABEL_FIELDS if len({_label_part(c, name) for c in group}) > 1]
        for configuration in group:
            parts = (_label_part(configuration, name) for name in differing)
            configuration.label = " / ".join([label, *(part for part in parts if part)])


def _night_masters(date: str) -> dict[str, dict[tuple, str]]:
    """The night's newest master bias and normalized flat of each group, by kind (masters are everyone's:
    auth.permissions)."""
    masters = db.session.scalars(sa.select(File).where(File.data_type == DataType.MASTER, File.date == date,
                                                       File.obstype.in_(RAW_CALIBRATION_TYPES))
                                 .order_by(File.id.desc()))
    found = {"bias": {}, "flat": {}}
    for master in masters:
        kind = kind_of(master)
        if kind == "bias" or master.normalized:
            found[kind].setdefault(_key(partial(matching.group_key, kind), master), master.file_name)
    return found


class _NightFrames:
    """The night's raw calibration frames and masters, grouped once for every configuration's readiness."""

    def __init__(self, raw: list[File], date: str):
        usable = [frame for frame in raw if frame.state != "failed"]
        self.groups = {kind: Counter(_key(partial(matching.group_key, kind), f) for f in usable if kind_of(f) == kind)
                       for kind in ("bias", "flat")}
        self.arcs = Counter(_key(matching.science_config_key, f) for f in usable if kind_of(f) == "arc")
        self.standards = Counter(_key(matching.science_config_key, f) for f in usable
                                 if kind_of(f) == chain.STANDARD)
        self.masters = _night_masters(date)

    def _master(self, kind: str, need: str, needed: list[str], example: File, settings, label: str) -> Readiness:
        key = _key(partial(matching.group_key, kind), example)
        have, minimum = self.groups[kind][key], matching.minimum_frames(kind, settings)
        noun = "bias frame" if kind == "bias" else "flat"
        return Readiness(need in needed, have, minimum, self.masters[kind].get(key),
                         f"{_more(minimum - have, noun)} needed for {label}")

    def readiness(self, configuration: Configuration) -> dict[str, Readiness]:
        example = configuration.example
        settings = (configuration.proposal.settings.as_settings()
                    if configuration.proposal and configuration.proposal.settings else ReductionSettings())
        science = "science" if example.technique == chain.SPECTROSCOPY else "imaging"
        needed = chain.needs_of(science, example.technique, settings)
        label = configuration.label
        config_key = _key(matching.science_config_key, example)
        standard = next(iter(sensitivity_functions(example)), None)
        return {
            chain.MASTER_BIAS: self._master("bias", chain.MASTER_BIAS, needed, example, settings, label),
            chain.MASTER_FLAT: self._master("flat", chain.MASTER_FLAT, needed, example, settings, label),
            chain.ARC: Readiness(chain.ARC in needed, self.arcs[config_key], 1, None, f"no arc yet for {label}"),
            chain.SENSITIVITY: Readiness(
                chain.SENSITIVITY in needed, self.standards[config_key], 1,
                standard.file_name if standard is not None else None,
                f"no standard star yet for {label} (flux calibration)"),
        }


def _more(number: int, noun: str) -> str:
    return f"{number} more {noun}{'' if number == 1 else 's'}"
