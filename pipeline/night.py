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
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from statistics import median_low

from threadpoolctl import threadpool_limits

from pipeline import chain, headers, matching, standards, steps
from pipeline.fitsfiles import is_fits_name, science_header
from pipeline.settings import ReductionSettings

log = logging.getLogger(__name__)


@dataclass
class Raw:
    path: Path
    fields: dict

    @property
    def kind(self) -> str:
        return chain.frame_kind(self.fields["obstype"], self.fields["technique"], self.fields.get("object"))


@dataclass
class NightResult:
    manifest: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    # what later tasks of the same frame need (not merged): its calibrated spectra, a standard's functions
    calibrated: list[steps.Product] = field(default_factory=list)
    sensitivities: list[steps.Product] = field(default_factory=list)

    def add(self, product: steps.Product, out_dir: Path, *, raw: Raw | None, parent: str | None,
            arc: str | None = None, standard: str | None = None) -> None:
        fields = raw.fields if raw else {}
        calibrated = product.data_type == chain.DataType.WAVELENGTH_CALIBRATED
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
            "rms_angstrom": product.record.get("rms_angstrom") if calibrated else None,
            "lines_used": product.record.get("lines_used") if calibrated else None,
            "flexure": product.record.get("flexure") if calibrated else None,
            **({"standard": standard} if product.data_type == chain.DataType.FLUX_CALIBRATED else {}),
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


def _one_thread_each() -> None:
    """The processes are the parallelism: OpenMP (astroscrappy) and BLAS threads in each of
    them would only compete for the same cores (measured: 11 % slower over a night)."""
    threadpool_limits(1)


class TaskGraph:
    """Tasks on ``workers`` processes, each started once the tasks it needs have ended.

    A night has no stage barriers: one configuration's frames are reduced as soon as its
    master flat exists, and a science frame is extracted as soon as it and the arcs that
    could calibrate it are reduced, while other frames are still being worked on.  With
    one worker everything runs in this process, in submission order.
    """

    def __init__(self, workers: int):
        self._pool = ProcessPoolExecutor(workers, initializer=_one_thread_each) if workers > 1 else None
        self._running: dict[Future, Hashable] = {}
        self._ended_here: deque[tuple[Hashable, object]] = deque()
        self._waiting: list[tuple[set, Callable[[], None]]] = []
        self._ended: set = set()

    def submit(self, key: Hashable, function: Callable, *args, **kwargs) -> None:
        if self._pool is not None:
            self._running[self._pool.submit(function, *args, **kwargs)] = key
            return
        try:
            outcome = function(*args, **kwargs)
        except Exception as error:  # reported per frame by the caller
            outcome = error
        self._ended_here.append((key, outcome))

    def when(self, needs: set, start: Callable[[], None]) -> None:
        """Call ``start`` (which submits) once every task in ``needs`` has ended."""
        self._waiting.append((set(needs), start))

    def run(self, on_end: Callable[[Hashable, object], None]) -> None:
        """Until nothing is left: start what is ready, hand each ended task's result or
        exception to ``on_end``."""
        try:
            self._start_ready()
            while self._running or self._ended_here:
                for key, outcome in self._next_ended():
                    self._ended.add(key)
                    on_end(key, outcome)
                self._start_ready()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)

    def _next_ended(self) -> list[tuple[Hashable, object]]:
        if self._ended_here:
            return [self._ended_here.popleft()]
        done, _ = wait(self._running, return_when=FIRST_COMPLETED)
        return [(self._running.pop(future), future.exception() or future.result()) for future in done]

    def _start_ready(self) -> None:
        waiting, self._waiting = self._waiting, []
        for needs, start in waiting:
            if needs <= self._ended:
                start()
            else:
                self._waiting.append((needs, start))


class NightRun:
    """The tasks of one night and what their results mean: masters per group, reduce per
    frame, extraction and wavelength calibration per science frame."""

    def __init__(self, frames: list[Raw], settings: ReductionSettings, out_dir: Path, result: NightResult):
        self.frames, self.settings, self.out_dir, self.result = frames, settings, out_dir, result
        self.by_name = {raw.path.name: raw for raw in frames}
        self.bias_groups = [] if settings.ignore_bias else _calibration_groups(frames, "bias", settings, result)
        self.flat_groups = [] if settings.ignore_flats else _calibration_groups(frames, "flat", settings, result)
        self.bias_masters: list[dict] = []
        self.flat_masters: list[dict] = []
        self.reduced: dict[str, tuple[Raw, steps.Product]] = {}
        self.calibrated: dict[str, list[steps.Product]] = {}  # wavelength-calibrated science, per raw name
        self.sensitivities: list[dict] = []  # {key, path, date_obs, star}
        self.outcomes: dict[tuple, NightResult] = {}  # per task, merged in a fixed order at the end

    def plan(self, graph: TaskGraph) -> None:
        bias_task = {matching.bias_group_key(group[0].fields): ("bias", index)
                     for index, group in enumerate(self.bias_groups)}
        flat_task = {matching.flat_group_key(group[0].fields): ("flat", index)
                     for index, group in enumerate(self.flat_groups)}
        for index, group in enumerate(self.bias_groups):
            graph.submit(("bias", index), steps.master_bias, [raw.path for raw in group], self.settings,
                         self.out_dir, master_name(group[0].fields, "bias"))
        for index, group in enumerate(self.flat_groups):
            graph.when(_existing({bias_task.get(matching.bias_group_key(group[0].fields))}),
                       partial(self._start_flat, graph, index))
        arcs_by_config = defaultdict(set)
        for raw in self.frames:
            if raw.kind == "arc":
                arcs_by_config[matching.science_config_key(raw.fields)].add(("reduce", raw.path.name))
        reduce = chain.STEPS["reduce"]
        for raw in self.frames:
            first = chain.first_step(raw.kind, raw.fields["technique"])
            if first is None:
                self.result.skip(raw.path.name, f"OBSTYPE {raw.fields['obstype']} is not reduced")
            elif first is reduce:
                needs = {bias_task.get(matching.bias_group_key(raw.fields)),
                         flat_task.get(matching.flat_group_key(raw.fields))}
                graph.when(_existing(needs), partial(self._start_reduce, graph, raw))
            if first is reduce and chain.next_step(reduce, raw.kind, raw.fields["technique"]) is not None:
                needs = {("reduce", raw.path.name)} | arcs_by_config[matching.science_config_key(raw.fields)]
                graph.when(needs, partial(self._start_extract, graph, raw))
        self._plan_flux(graph)

    def _plan_flux(self, graph: TaskGraph) -> None:
        """Flux calibration of each science frame, once it and the standards of its configuration are
        calibrated (as live: only with the setting on; without a standard, the reason is listed)."""
        flux = chain.STEPS["calibrate_flux"]
        standards_by_config = defaultdict(set)
        for raw in self.frames:
            if raw.kind == chain.STANDARD:
                standards_by_config[matching.science_config_key(raw.fields)].add(("extract", raw.path.name))
        for raw in self.frames:
            if not flux.accepts(flux.takes, raw.kind, raw.fields["technique"]):
                continue
            if not getattr(self.settings, flux.setting):
                continue
            standards = standards_by_config[matching.science_config_key(raw.fields)]
            if not standards:
                self.result.skip(raw.path.name, "not flux calibrated: no standard star of its configuration "
                                                "in this night")
                continue
            graph.when({("extract", raw.path.name)} | standards, partial(self._start_flux, graph, raw))

    def _start_flux(self, graph: TaskGraph, raw: Raw) -> None:
        calibrated = self.calibrated.get(raw.path.name, [])
        key = matching.science_config_key(raw.fields)
        sensitivities = [sensitivity for sensitivity in self.sensitivities if sensitivity["key"] == key]
        if calibrated and sensitivities:
            graph.submit(("flux", raw.path.name), flux_calibrate, raw, calibrated, sensitivities, self.out_dir)

    def _start_flat(self, graph: TaskGraph, index: int) -> None:
        group = self.flat_groups[index]
        bias, _ = matching.choose_master(group[0].fields, self.bias_masters) if self.bias_masters else (None, "")
        graph.submit(("flat", index), steps.master_flat, [raw.path for raw in group], self.settings, self.out_dir,
                     master_name(group[0].fields, "flat"), bias["path"] if bias else None,
                     group[0].fields["technique"])

    def _start_reduce(self, graph: TaskGraph, raw: Raw) -> None:
        bias, _ = matching.choose_master(raw.fields, self.bias_masters) if self.bias_masters else (None, "")
        flat, _ = matching.choose_master(raw.fields, self.flat_masters) if self.flat_masters else (None, "")
        graph.submit(("reduce", raw.path.name), steps.reduce_raw, raw.path, self.settings, self.out_dir,
                     technique=raw.fields["technique"], bias_path=bias and bias["path"],
                     flat_path=flat and flat["path"])

    def _start_extract(self, graph: TaskGraph, raw: Raw) -> None:
        if raw.path.name not in self.reduced:
            return  # its reduction failed, with the reason already listed
        arcs = [{**arc.fields, "file_name": name, "reduced": product.path, "raw": arc}
                for name, (arc, product) in self.reduced.items() if arc.kind == "arc"]
        graph.submit(("extract", raw.path.name), extract_and_calibrate, raw, self.reduced[raw.path.name][1],
                     arcs, self.settings, self.out_dir)

    def ended(self, key: tuple, outcome) -> None:
        kind, which = key
        result = self.outcomes[key] = NightResult()
        if kind == "bias":
            group = self.bias_groups[which]
            if not _failed(outcome, group, "master bias", result):
                self.bias_masters.append(_master_fields(group, outcome.path))
                result.add(outcome, self.out_dir, raw=None, parent=None)
        elif kind == "flat":
            group = self.flat_groups[which]
            if not _failed(outcome, group, "master flat", result):
                master, normalized = outcome
                self.flat_masters.append(_master_fields(group, normalized.path))
                result.add(master, self.out_dir, raw=None, parent=None)
                result.add(normalized, self.out_dir, raw=None, parent=master.path.name)
        elif kind == "reduce":
            raw = self.by_name[which]
            if not _failed(outcome, [raw], "reduce", result):
                self.reduced[which] = (raw, outcome)
                result.add(outcome, self.out_dir, raw=raw, parent=which)
        elif kind == "extract":
            raw = self.by_name[which]
            if not _failed(outcome, [raw], "extraction", result):
                result.merge(outcome)
                self.calibrated[which] = outcome.calibrated
                self.sensitivities += [{"key": matching.science_config_key(raw.fields), "path": product.path,
                                        "date_obs": raw.fields["date_obs"], "star": product.record.get("star")}
                                       for product in outcome.sensitivities]
        else:
            raw = self.by_name[which]
            if not _failed(outcome, [raw], "flux calibration", result):
                result.merge(outcome)

    def ordered_result(self) -> NightResult:
        """Masters, then reduced frames, then extracted and calibrated ones, each in file order."""
        order = ([("bias", index) for index in range(len(self.bias_groups))]
                 + [("flat", index) for index in range(len(self.flat_groups))]
                 + [("reduce", raw.path.name) for raw in self.frames]
                 + [("extract", raw.path.name) for raw in self.frames]
                 + [("flux", raw.path.name) for raw in self.frames])
        for key in order:
            if key in self.outcomes:
                self.result.merge(self.outcomes[key])
        return self.result


def _existing(keys: set) -> set:
    """Drop the tasks that do not exist (no group of that configuration)."""
    return {key for key in keys if key is not None}


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
    run = NightRun(read_raw_folder(raw_dir, result), settings, out_dir, result)
    graph = TaskGraph(workers)
    run.plan(graph)
    graph.run(run.ended)
    return run.ordered_result()


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
                                                          target=target.target,
                                                          correct_flexure=settings.flexure_correction)
        except Exception as error:
            result.skip(raw.path.name, f"wavelength calibration of target {target.target} failed: {error}")
            continue
        result.add(science_w, out_dir, raw=raw, parent=target.path.name, arc=arc["file_name"])
        result.calibrated.append(science_w)
        if raw.kind == chain.STANDARD:
            try:
                sensitivity = steps.sensitivity(science_w.path, standards.find_standard(raw.fields["object"]),
                                                out_dir, original=raw.path)
            except ValueError as error:
                result.skip(raw.path.name, f"no sensitivity function from target {target.target}: {error}")
            else:
                result.add(sensitivity, out_dir, raw=raw, parent=science_w.path.name)
                result.sensitivities.append(sensitivity)
        result.add(arc_1d, out_dir, raw=arc["raw"], parent=arc["reduced"].name)
        result.add(arc_w, out_dir, raw=arc["raw"], parent=arc_1d.path.name)
    return result


def flux_calibrate(raw: Raw, calibrated: list[steps.Product], sensitivities: list[dict], out_dir: Path
                   ) -> NightResult:
    """Flux-calibrate every calibrated target of one science frame with the sensitivity function
    whose standard was observed closest in time (one process)."""
    result = NightResult()
    def minutes_apart(sensitivity: dict) -> float:
        moments = (sensitivity["date_obs"], raw.fields["date_obs"])
        if not all(isinstance(moment, datetime) for moment in moments):
            return float("inf")
        return abs((moments[0] - moments[1]).total_seconds()) / 60

    chosen = min(sensitivities, key=minutes_apart)
    why = (f"same configuration, standard closest in time ({len(sensitivities)} available, "
           f"{minutes_apart(chosen):.0f} min apart)")
    for spectrum in calibrated:
        try:
            product = steps.calibrate_flux(spectrum.path, chosen["path"], out_dir, original=raw.path,
                                           target=spectrum.target, why=why)
        except ValueError as error:
            result.skip(raw.path.name, f"flux calibration of target {spectrum.target} failed: {error}")
            continue
        result.add(product, out_dir, raw=raw, parent=spectrum.path.name, standard=chosen["path"].name)
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
