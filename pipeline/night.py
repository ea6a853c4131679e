"""The offline twin: ``python -m pipeline reduce-night RAW_DIR OUT_DIR [--settings FILE.json]``.

Runs the chain (``pipeline.chain``) over a folder, without web, database or Redis, with the same
science (``pipeline.steps``) and the same rules (``pipeline.matching``) as the live job layer: each raw
frame starts its kind's first step, each product goes on to the step that takes it, and a task that
needs a master, an arc or a standard star starts once every frame that could provide one has been
processed, then picks among them as live does.  Writes the products, ``OUT_DIR/manifest.json`` and
``OUT_DIR/skipped.json`` (every file skipped, with the reason).
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median_low

from threadpoolctl import threadpool_limits

from pipeline import chain, headers, matching, steps
from pipeline.datatypes import DataType
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

    def add(self, product: steps.Product, out_dir: Path, *, raw: Raw | None, parent: str | None,
            arc: str | None = None, standard: str | None = None, inputs: list[str] | None = None) -> None:
        fields = raw.fields if raw else {}
        calibrated = product.data_type == DataType.WAVELENGTH_CALIBRATED
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
            **({"standard": standard, "telluric": product.record.get("telluric")}
               if product.data_type == DataType.FLUX_CALIBRATED else {}),
            **({"inputs": inputs} if product.data_type == DataType.COMBINED else {}),
            "snr": product.record.get("snr"),
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


def _one_thread_each() -> None:
    """The processes are the parallelism: OpenMP (astroscrappy) and BLAS threads in each of
    them would only compete for the same cores (measured: 11 % slower over a night)."""
    threadpool_limits(1)


class TaskGraph:
    """Functions on ``workers`` processes; with one worker everything runs in this process, in
    submission order.  ``run`` hands each ended task's result (or exception) to its caller."""

    def __init__(self, workers: int):
        self._pool = ProcessPoolExecutor(workers, initializer=_one_thread_each) if workers > 1 else None
        self._running: dict[Future, Hashable] = {}
        self._ended_here: deque[tuple[Hashable, object]] = deque()

    def submit(self, key: Hashable, function: Callable, *args) -> None:
        if self._pool is not None:
            self._running[self._pool.submit(function, *args)] = key
            return
        try:
            outcome = function(*args)
        except Exception as error:  # reported per frame by the caller
            outcome = error
        self._ended_here.append((key, outcome))

    def run(self, start_ready: Callable[[], None], on_end: Callable[[Hashable, object], None]) -> None:
        """Until nothing runs: ``start_ready`` submits what may start, each end goes to ``on_end``."""
        try:
            start_ready()
            while self._running or self._ended_here:
                for key, outcome in self._next_ended():
                    on_end(key, outcome)
                start_ready()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)

    def _next_ended(self) -> list[tuple[Hashable, object]]:
        if self._ended_here:
            return [self._ended_here.popleft()]
        done, _ = wait(self._running, return_when=FIRST_COMPLETED)
        return [(self._running.pop(future), future.exception() or future.result()) for future in done]


# --- what a task works on --------------------------------------------------------------------------

@dataclass(eq=False)
class Unit:
    """A raw frame, or a group of calibration frames combined into one master: what a chain runs for.
    ``fields`` are its matching fields (a group's: its configuration and the median time of its frames)."""

    order: int
    kind: str
    frames: list[Raw]
    fields: dict

    @property
    def raw(self) -> Raw:
        return self.frames[0]


@dataclass(eq=False)
class Task:
    """One step of the chain on one input (``path``: a raw frame or a product; ``target``: its target)."""

    step: chain.Step
    unit: Unit
    path: Path | None = None
    target: int | None = None

    @property
    def key(self) -> tuple:
        return list(chain.STEPS).index(self.step.name), self.unit.order, self.target or 0, id(self)


@dataclass
class Made:
    """What a task made: its products for the manifest (product, parent name, extra manifest fields) and
    those that go on along the chain."""

    products: list[tuple[steps.Product, str | None, dict]] = field(default_factory=list)
    onward: list[steps.Product] = field(default_factory=list)
    provided: dict | None = None  # what the unit provides the others (a master, an arc, a sensitivity)


def _master_fields(group: list[Raw]) -> dict:
    moments = sorted(raw.fields["date_obs"] for raw in group)
    return {**group[0].fields, "date_obs": median_low(moments) if isinstance(moments[0], datetime) else moments[0]}


class NightRun:
    """The chain over one folder: which task may start, and what each ended task means."""

    def __init__(self, frames: list[Raw], settings: ReductionSettings, out_dir: Path, result: NightResult):
        self.settings, self.out_dir, self.result = settings, out_dir, result
        self.units: list[Unit] = []
        self.waiting: list[Task] = []
        self.outstanding: Counter = Counter()  # per unit: its tasks not ended yet
        self.outstanding_gathers = 0  # of those, the tasks of steps that gather a target's exposures
        self.provided: dict[str, list[dict]] = {}  # need -> what provides it, with the fields the rules read
        self.outcomes: list[tuple[tuple, NightResult]] = []
        self.spectra: list[dict] = []  # science spectra calibrated so far, with their fields (for combining)
        self.combined: set[frozenset] = set()  # the inputs of each combination made
        self._providers: dict[tuple[int, str], list[Unit]] = {}  # (unit, need) -> units that could provide it
        self._plan(frames)

    def _plan(self, frames: list[Raw]) -> None:
        """Each group of calibration frames (bias first) and each other frame starts its chain."""
        for kind, need in (("bias", chain.MASTER_BIAS), ("flat", chain.MASTER_FLAT)):
            if need not in self._ignored():
                self._plan_masters(kind, [raw for raw in frames if raw.kind == kind])
        for raw in frames:
            first = chain.first_step(raw.kind, raw.fields["technique"])
            if first is None:
                self.result.skip(raw.path.name, f"OBSTYPE {raw.fields['obstype']} is not reduced")
            elif first.name != "calibrations":
                self._add(Task(first, self._unit(raw.kind, [raw], raw.fields), raw.path))

    def _plan_masters(self, kind: str, frames: list[Raw]) -> None:
        minimum = matching.minimum_frames(kind, self.settings)
        for group in matching.calibration_groups(frames, kind, fields_of=lambda raw: raw.fields):
            if len(group) >= minimum:
                self._add(Task(chain.STEPS["calibrations"], self._unit(kind, group, _master_fields(group))))
                continue
            for raw in group:
                self.result.skip(raw.path.name, f"only {len(group)} {kind} frame(s) of this configuration; "
                                                f"the settings ask for at least {minimum}")

    def _unit(self, kind: str, frames: list[Raw], fields: dict) -> Unit:
        unit = Unit(len(self.units), kind, frames, fields)
        self.units.append(unit)
        return unit

    def _ignored(self) -> set[str]:
        return {need for need, setting in chain.IGNORED_BY.items() if getattr(self.settings, setting)}

    def _add(self, task: Task) -> None:
        self.outstanding[task.unit.order] += 1
        self.outstanding_gathers += task.step.gathers
        self.waiting.append(task)

    # --- when a task may start: every frame that could provide what it needs is done --------------

    def needs(self, task: Task) -> list[str]:
        needs = matching.master_needs(task.unit.kind, self.settings) if task.step.name == "calibrations" \
            else task.step.needs
        return [need for need in needs if need not in self._ignored()]

    def _provides(self, unit: Unit) -> set[str]:
        """What a unit's chain provides the others, step by step (live: ``chain.Step.provides``)."""
        provided, step = set(), chain.first_step(unit.kind, unit.fields["technique"])
        while step is not None:
            provided |= {step.provides[unit.kind]} if unit.kind in step.provides else set()
            step = chain.next_step(step, unit.kind, unit.fields["technique"])
        return provided

    def _settled(self, task: Task, need: str) -> bool:
        key = (task.unit.order, need)
        if key not in self._providers:
            self._providers[key] = [unit for unit in self.units if unit is not task.unit
                                    and need in self._provides(unit)
                                    and matching.could_serve(unit.kind, unit.fields, task.unit.fields)]
        return not any(self.outstanding[unit.order] for unit in self._providers[key])

    def candidates(self, task: Task, need: str) -> list[dict]:
        """What was provided of ``need`` that the rules could choose for this task's frame."""
        return [provider for provider in self.provided.get(need, [])
                if matching.could_serve(provider["kind"], provider, task.unit.fields)]

    def _gathered(self, task: Task) -> bool:
        """A step that gathers a target's exposures starts once nothing else is left (``chain.Step.gathers``)."""
        return not task.step.gathers or sum(self.outstanding.values()) == self.outstanding_gathers

    def start_ready(self, graph: TaskGraph) -> None:
        """Start what may start, again while starting ends tasks at once (a task that cannot run ends as it
        starts, and may be what a gathering step waited for)."""
        started = True
        while started:
            waiting, self.waiting, started = self.waiting, [], False
            for task in waiting:
                if self._gathered(task) and all(self._settled(task, need) for need in self.needs(task)):
                    RUNNERS[task.step.name].start(self, graph, task)
                    started = True
                else:
                    self.waiting.append(task)

    # --- what an ended task means ------------------------------------------------------------------

    def ended(self, task: Task, outcome) -> None:
        result = NightResult()
        if isinstance(outcome, Exception):
            for raw in task.unit.frames:
                target = f" of target {task.target}" if task.target else ""
                result.skip(raw.path.name, f"{task.step.title}{target} failed: {outcome}")
        elif isinstance(outcome, str):  # the task did not run, and says why
            result.skip(task.unit.raw.path.name, outcome)
        else:
            self._record(task, outcome, result)
        self.outcomes.append((task.key, result))
        self.outstanding[task.unit.order] -= 1
        self.outstanding_gathers -= task.step.gathers

    def _record(self, task: Task, made: Made, result: NightResult) -> None:
        raw = None if task.step.name == "calibrations" else task.unit.raw
        for product, parent, extra in made.products:
            result.add(product, self.out_dir, raw=extra.pop("raw", raw), parent=parent, **extra)
        if made.provided is not None:
            need = task.step.provides[task.unit.kind]
            self.provided.setdefault(need, []).append({**task.unit.fields, "kind": task.unit.kind, **made.provided})
        for following in chain.next_steps(task.step, task.unit.kind, task.unit.fields["technique"]):
            if following.setting and not getattr(self.settings, following.setting):
                continue
            for product in made.onward:
                self._add(Task(following, task.unit, product.path, product.target))
        self.spectra += [{**task.unit.fields, "data_type": product.data_type, "original": task.unit.raw.path.name,
                          "id": len(self.spectra) + number, "target": product.target, "path": product.path}
                         for number, product in enumerate(made.onward) if task.unit.kind == "science"
                         and product.data_type in (DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED)]

    def ordered_result(self) -> NightResult:
        """Masters, reduced frames, extracted, calibrated and flux-calibrated spectra, each in file order."""
        for _, outcome in sorted(self.outcomes, key=lambda item: item[0]):
            self.result.merge(outcome)
        return self.result


# --- each step offline: which inputs the rules choose, then its science (``pipeline.steps``) ----------

@dataclass(frozen=True)
class Runner:
    """How the twin runs one chain step: ``choose`` picks its calibrations in this process (returning the
    arguments of ``run``, a string saying why it cannot run, or None: nothing to do), ``run`` does the work
    in a pool process."""

    run: Callable[..., Made]
    choose: Callable[[NightRun, Task], tuple | str | None]

    def start(self, night: NightRun, graph: TaskGraph, task: Task) -> None:
        chosen = self.choose(night, task)
        if chosen is None:  # nothing to do (a combination another task made)
            night.ended(task, Made())
        elif isinstance(chosen, str):
            night.ended(task, chosen)
        else:
            graph.submit(task, self.run, *chosen)


def _chosen_path(night: NightRun, task: Task, need: str) -> Path | None:
    chosen, _ = matching.choose_master(task.unit.fields, night.candidates(task, need)) \
        if night.candidates(task, need) else (None, "")
    return chosen["path"] if chosen else None


def _choose_master_inputs(night: NightRun, task: Task) -> tuple:
    bias = _chosen_path(night, task, chain.MASTER_BIAS) if task.unit.kind == "flat" else None
    return (task.unit.kind, [raw.path for raw in task.unit.frames], night.settings, night.out_dir,
            steps.master_name(task.unit.fields, task.unit.kind), bias, task.unit.fields["technique"])


def run_calibrations(kind: str, paths: list[Path], settings, out_dir: Path, name: str, bias: Path | None,
                     technique: str | None) -> Made:
    if kind == "bias":
        master = steps.master_bias(paths, settings, out_dir, name)
        return Made([(master, None, {})], provided={"path": master.path, "file_name": master.path.name})
    master, normalized = steps.master_flat(paths, settings, out_dir, name, bias, technique)
    return Made([(master, None, {}), (normalized, master.path.name, {})],
                provided={"path": normalized.path, "file_name": normalized.path.name})


def _choose_reduce_inputs(night: NightRun, task: Task) -> tuple:
    return (task.unit.raw, night.settings, night.out_dir, _chosen_path(night, task, chain.MASTER_BIAS),
            _chosen_path(night, task, chain.MASTER_FLAT))


def run_reduce(raw: Raw, settings, out_dir: Path, bias: Path | None, flat: Path | None) -> Made:
    reduced = steps.reduce_raw(raw.path, settings, out_dir, technique=raw.fields["technique"], bias_path=bias,
                               flat_path=flat)
    provided = {"file_name": raw.path.name, "reduced": reduced.path, "raw": raw} if raw.kind == "arc" else None
    return Made([(reduced, raw.path.name, {})], [reduced], provided)


def run_extract(raw: Raw, reduced: Path, settings, out_dir: Path) -> Made:
    targets = steps.extract_reduced(reduced, settings, out_dir, original=raw.path)
    return Made([(target, reduced.name, {}) for target in targets], targets)


def _choose_arc(night: NightRun, task: Task) -> tuple | str:
    arc, why = matching.choose_arc(task.unit.fields, night.candidates(task, chain.ARC))
    if arc is None:
        return f"target {task.target} not wavelength calibrated: {why}"
    return task.unit.raw, task.path, task.target, arc, night.settings, night.out_dir


def run_calibrate_wavelength(raw: Raw, extracted: Path, target: int, arc: dict, settings, out_dir: Path) -> Made:
    arc_1d = steps.extract_arc_along(arc["reduced"], extracted, out_dir, target=target, original=arc["raw"].path,
                                     science_label=steps.stem(raw.path))
    science_w, arc_w = steps.calibrate_wavelength(extracted, arc_1d.path, out_dir, original=raw.path, target=target,
                                                  correct_flexure=settings.flexure_correction)
    return Made([(science_w, extracted.name, {"arc": arc["file_name"]}),
                 (arc_1d, arc["reduced"].name, {"raw": arc["raw"]}),
                 (arc_w, arc_1d.path.name, {"raw": arc["raw"]})], [science_w])


def run_sensitivity(raw: Raw, calibrated: Path, out_dir: Path) -> Made:
    function = steps.sensitivity(calibrated, raw.fields["object"], out_dir, original=raw.path)
    return Made([(function, calibrated.name, {})], provided={"path": function.path})


def _choose_standard(night: NightRun, task: Task) -> tuple | str:
    standard, why = matching.choose_standard(task.unit.fields, night.candidates(task, chain.SENSITIVITY))
    if standard is None:
        return f"target {task.target} not flux calibrated: {why}"
    return task.unit.raw, task.path, task.target, standard["path"], why, night.settings, night.out_dir


def run_calibrate_flux(raw: Raw, calibrated: Path, target: int, sensitivity: Path, why: str, settings,
                       out_dir: Path) -> Made:
    fluxed = steps.calibrate_flux(calibrated, sensitivity, out_dir, original=raw.path, target=target, why=why,
                                  correct_telluric=settings.telluric_correction)
    return Made([(fluxed, calibrated.name, {"standard": sensitivity.name})], [fluxed])


def _choose_exposures(night: NightRun, task: Task) -> tuple | None:
    """Every calibrated exposure of the task's target (the night is done), unless another task combined them."""
    fields = {**task.unit.fields, "target": task.target}
    chosen = matching.spectra_to_combine([spectrum for spectrum in night.spectra
                                          if matching.same_target(fields, spectrum)])
    inputs = frozenset(spectrum["path"] for spectrum in chosen)
    if not chosen or inputs in night.combined:
        return None
    night.combined.add(inputs)
    newest = next(raw for raw in night.units if raw.raw.path.name == chosen[-1]["original"]).raw
    return [spectrum["path"] for spectrum in chosen], newest, task.target, night.out_dir


def run_combine(paths: list[Path], newest: Raw, target: int | None, out_dir: Path) -> Made:
    combined = steps.combine_spectra(paths, out_dir, name=steps.combined_name(newest.path, target),
                                     original=newest.path, target=target)
    return Made([(combined, paths[-1].name, {"raw": newest, "inputs": [path.name for path in paths]})])


RUNNERS: dict[str, Runner] = {
    "calibrations": Runner(run_calibrations, _choose_master_inputs),
    "reduce": Runner(run_reduce, _choose_reduce_inputs),
    "extract": Runner(run_extract, lambda night, task: (task.unit.raw, task.path, night.settings, night.out_dir)),
    "calibrate_wavelength": Runner(run_calibrate_wavelength, _choose_arc),
    "sensitivity": Runner(run_sensitivity, lambda night, task: (task.unit.raw, task.path, night.out_dir)),
    "calibrate_flux": Runner(run_calibrate_flux, _choose_standard),
    "combine": Runner(run_combine, _choose_exposures),
}
assert set(RUNNERS) == set(chain.STEPS), "every step of the chain runs offline too"


def reduce_night(raw_dir: Path, out_dir: Path, settings: ReductionSettings | None = None,
                 workers: int | None = None) -> NightResult:
    settings = settings or ReductionSettings()
    workers = workers or os.cpu_count() or 1
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = NightResult()
    run = NightRun(read_raw_folder(raw_dir, result), settings, out_dir, result)
    graph = TaskGraph(workers)
    graph.run(lambda: run.start_ready(graph), run.ended)
    for task in run.waiting:  # a bug, not a night: say so rather than lose the frame quietly
        result.skip(task.unit.raw.path.name, f"{task.step.title} never started: waiting for {run.needs(task)}")
    return run.ordered_result()


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
