"""The offline twin: ``python -m pipeline reduce-night RAW_DIR OUT_DIR [--settings FILE.json]``.

Runs the same blocks as the live system over a folder, without web, database
or Redis: masters per configuration, reduce, extract (each target, with the
closest compatible arc extracted along its trace), wavelength calibration.
Writes the products and ``OUT_DIR/manifest.json``.
"""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median_low

from pipeline import headers, matching, steps
from pipeline.fitsfiles import is_fits_name, science_header
from pipeline.settings import ReductionSettings

log = logging.getLogger(__name__)


@dataclass
class Raw:
    path: Path
    fields: dict

    @property
    def kind(self) -> str:
        return headers.kind(self.fields["obstype"], self.fields["technique"])


@dataclass
class NightResult:
    manifest: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def add(self, product: steps.Product, out_dir: Path, *, raw: Raw | None, parent: str | None,
            arc: str | None = None) -> None:
        fields = raw.fields if raw else {}
        self.manifest.append({
            "file": str(product.path.relative_to(out_dir)),
            "data_type": product.data_type,
            "parent": parent,
            "original": raw.path.name if raw else None,
            "obstype": fields.get("obstype"),
            "object": fields.get("object"),
            "wavmode": fields.get("wavmode"),
            "target": product.target,
            "arc": arc,
            "rms_angstrom": product.record.get("rms_angstrom") if product.data_type == 4 else None,
            "lines_used": product.record.get("lines_used") if product.data_type == 4 else None,
        })

    def merge(self, other: "NightResult") -> None:
        self.manifest += other.manifest
        self.skipped += other.skipped

    def skip(self, name: str, reason: str) -> None:
        log.warning("skipped %s: %s", name, reason)
        self.skipped.append({"file": name, "reason": reason})


def read_raw_folder(raw_dir: Path, result: NightResult) -> list[Raw]:
    frames = []
    for path in sorted(p for p in raw_dir.rglob("*") if is_fits_name(p)):
        try:
            frames.append(Raw(path, headers.reclassify(science_header(path), filename=path.name)))
        except Exception as error:  # a bad file is listed with its reason; the night goes on
            result.skip(path.name, f"cannot classify: {error}")
    return frames


def _master_fields(group: list[Raw], path: Path) -> dict:
    """A master's fields: its group's configuration, the median time of its inputs."""
    moments = sorted(raw.fields["date_obs"] for raw in group)
    return {**group[0].fields, "file_name": path.name, "path": path,
            "date_obs": median_low(moments) if isinstance(moments[0], datetime) else moments[0]}


def run_parallel(calls: dict, workers: int) -> dict:
    """Run ``{key: (function, args, kwargs)}`` on ``workers`` processes; ``{key: result or exception}``.

    The frames of a night are independent within a stage, so the stages use every core."""
    if workers <= 1 or len(calls) <= 1:
        outcomes = {}
        for key, (function, args, kwargs) in calls.items():
            try:
                outcomes[key] = function(*args, **kwargs)
            except Exception as error:  # reported per frame by the caller
                outcomes[key] = error
        return outcomes
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(function, *args, **kwargs) for key, (function, args, kwargs) in calls.items()}
        return {key: future.exception() or future.result() for key, future in futures.items()}


def _calibration_groups(frames: list[Raw], kind: str, settings: ReductionSettings,
                        result: NightResult) -> list[list[Raw]]:
    """The groups of one kind that hold enough frames (the others are listed as skipped)."""
    key_of = matching.bias_group_key if kind == "bias" else matching.flat_group_key
    minimum = settings.min_bias if kind == "bias" else settings.min_flats
    groups: dict[tuple, list[Raw]] = defaultdict(list)
    for raw in frames:
        if raw.kind == kind:
            groups[key_of(raw.fields)].append(raw)
    usable = []
    for group in groups.values():
        if len(group) >= minimum:
            usable.append(group)
            continue
        for raw in group:
            result.skip(raw.path.name, f"only {len(group)} {kind} frame(s) of this configuration; "
                                       f"the settings ask for at least {minimum}")
    return usable


def build_masters(frames: list[Raw], settings: ReductionSettings, out_dir: Path, result: NightResult,
                  workers: int = 1):
    """Master bias, then normalized master flats, of every group that has enough frames."""
    bias_masters, flat_masters = [], []
    bias_groups = [] if settings.ignore_bias else _calibration_groups(frames, "bias", settings, result)
    made = run_parallel({index: (steps.master_bias, ([raw.path for raw in group], settings, out_dir,
                                                     master_name(group[0].fields, "bias")), {})
                         for index, group in enumerate(bias_groups)}, workers)
    for index, group in enumerate(bias_groups):
        if _failed(made[index], group, "master bias", result):
            continue
        bias_masters.append(_master_fields(group, made[index].path))
        result.add(made[index], out_dir, raw=None, parent=None)

    flat_groups = [] if settings.ignore_flats else _calibration_groups(frames, "flat", settings, result)
    calls = {}
    for index, group in enumerate(flat_groups):
        bias, _ = matching.choose_master(group[0].fields, bias_masters) if bias_masters else (None, "")
        calls[index] = (steps.master_flat, ([raw.path for raw in group], settings, out_dir,
                                            master_name(group[0].fields, "flat"), bias["path"] if bias else None,
                                            group[0].fields["technique"]), {})
    made = run_parallel(calls, workers)
    for index, group in enumerate(flat_groups):
        if _failed(made[index], group, "master flat", result):
            continue
        master, normalized = made[index]
        flat_masters.append(_master_fields(group, normalized.path))
        result.add(master, out_dir, raw=None, parent=None)
        result.add(normalized, out_dir, raw=None, parent=master.path.name)
    return bias_masters, flat_masters


def _failed(outcome, frames: list[Raw], what: str, result: NightResult) -> bool:
    if isinstance(outcome, Exception):
        for raw in frames:
            result.skip(raw.path.name, f"{what} failed: {outcome}")
        return True
    return False


def master_name(fields: dict, kind: str) -> str:
    """e.g. ``Red_2x2_400_M2_GG455_27-11-2026`` (flats) or ``Red_2x2_27-11-2026`` (bias)."""
    night = "-".join(reversed(str(fields["date"]).split("-")))
    parts = [fields["instconf"], fields["binning"]]
    if kind == "flat":
        parts += [fields["wavmode"], fields["filter"], fields["filter_2"], fields["slit"]]
    parts.append(night)
    return "_".join(str(part).replace(" ", "-").replace("/", "-") for part in parts if part)


def reduce_night(raw_dir: Path, out_dir: Path, settings: ReductionSettings | None = None,
                 workers: int | None = None) -> NightResult:
    settings = settings or ReductionSettings()
    workers = workers or os.cpu_count() or 1
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = NightResult()
    frames = read_raw_folder(raw_dir, result)
    bias_masters, flat_masters = build_masters(frames, settings, out_dir, result, workers)

    to_reduce = {}
    for raw in frames:
        if raw.kind == "other":
            result.skip(raw.path.name, f"OBSTYPE {raw.fields['obstype']} is not reduced")
        elif raw.kind in ("arc", "science", "imaging"):
            bias, _ = matching.choose_master(raw.fields, bias_masters) if bias_masters else (None, "")
            flat, _ = matching.choose_master(raw.fields, flat_masters) if flat_masters else (None, "")
            to_reduce[raw.path.name] = (raw, bias and bias["path"], flat and flat["path"])
    made = run_parallel({name: (steps.reduce_raw, (raw.path, settings, out_dir),
                                {"technique": raw.fields["technique"], "bias_path": bias, "flat_path": flat})
                         for name, (raw, bias, flat) in to_reduce.items()}, workers)
    reduced: dict[str, tuple[Raw, steps.Product]] = {}
    for name, (raw, _, _) in to_reduce.items():
        if not _failed(made[name], [raw], "reduce", result):
            reduced[name] = (raw, made[name])
            result.add(made[name], out_dir, raw=raw, parent=name)

    arcs = [{**raw.fields, "file_name": name, "reduced": product.path, "raw": raw}
            for name, (raw, product) in reduced.items() if raw.kind == "arc"]
    science = {name: (raw, product) for name, (raw, product) in reduced.items()
               if raw.kind == "science" and raw.fields["technique"] == "Spectroscopy"}
    made = run_parallel({name: (extract_and_calibrate, (raw, product, arcs, settings, out_dir), {})
                         for name, (raw, product) in science.items()}, workers)
    for name, (raw, _) in science.items():
        if not _failed(made[name], [raw], "extraction", result):
            result.merge(made[name])
    return result


def extract_and_calibrate(raw: Raw, reduced: steps.Product, arcs: list[dict], settings: ReductionSettings,
                          out_dir: Path) -> NightResult:
    """Extract every target of one science frame and calibrate each with the best arc (one process)."""
    result = NightResult()
    targets = steps.extract_reduced(reduced.path, settings, out_dir, original=raw.path)
    arc, reason = matching.choose_arc(raw.fields, arcs)
    for target in targets:
        result.add(target, out_dir, raw=raw, parent=reduced.path.name, arc=arc and arc["file_name"])
    if arc is None:
        result.skip(raw.path.name, f"not wavelength calibrated: {reason}")
        return result
    label = raw.path.name.split("_")[0]
    for target in targets:
        try:
            arc_1d = steps.extract_arc_along(arc["reduced"], target.path, out_dir, target=target.target,
                                             original=arc["raw"].path, science_label=label)
            science_w, arc_w = steps.calibrate_wavelength(target.path, arc_1d.path, out_dir, original=raw.path,
                                                          target=target.target)
        except Exception as error:
            result.skip(raw.path.name, f"wavelength calibration of target {target.target} failed: {error}")
            continue
        result.add(science_w, out_dir, raw=raw, parent=target.path.name, arc=arc["file_name"])
        result.add(arc_1d, out_dir, raw=arc["raw"], parent=arc["reduced"].name)
        result.add(arc_w, out_dir, raw=arc["raw"], parent=arc_1d.path.name)
    return result


def main(raw_dir: str, out_dir: str, settings_file: str | None) -> int:
    settings = ReductionSettings.from_dict(json.loads(Path(settings_file).read_text())) if settings_file else None
    result = reduce_night(Path(raw_dir), Path(out_dir), settings)
    Path(out_dir, "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=str))
    Path(out_dir, "skipped.json").write_text(json.dumps(result.skipped, indent=2))
    print(f"{len(result.manifest)} product(s) written to {out_dir}; {len(result.skipped)} skip(s) listed "
          f"in {Path(out_dir, 'skipped.json')}")
    for skip in result.skipped:
        print(f"  skipped {skip['file']}: {skip['reason']}")
    return 0 if result.manifest else 1
