"""The reduction tasks (job layer): catalogue rows in, ``pipeline.steps`` on their files, rows out.

What runs after what is ``pipeline.chain``: a newly ingested raw frame starts its kind's first
step, a task's products go on to the chain's next step, and a step that provides something
(a master, a reduced arc) wakes the jobs parked waiting for it.  A task never commits: the
job layer commits its products, its follow-up jobs and its end state together (live/queue.py).
Every task's result names what it made (or settled on) under ``products``, main product first.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from db import db, queries
from db.events import log_event
from db.models import File, Job, Proposal
from db.queries import kind_of
from live.folders import processed_root
from live.queue import (JobRefused, Waiting, again_after_commit, enqueue, periodic, requeue_if_waiting,
                        strike_need, task)
from live.states import set_file_state, settle_file_state
from pipeline import chain, fitsfiles, flexure, headers, matching, standards, steps, telluric
from pipeline.chain import ARC_OBSTYPES, DataType
from pipeline.settings import ReductionSettings
from pipeline.wavelength import WavelengthOptions

# A FITS file this recent (written, copied or renamed) that the catalogue does not know yet is still on
# its way in: the watcher catalogues a file within a second, or as failed after 60 s (give_up_seconds).
ARRIVING_SECONDS = 90


def _now() -> datetime:
    return datetime.now(timezone.utc)


def settings_for(file: File) -> ReductionSettings:
    proposal = file.proposal
    return proposal.settings.as_settings() if proposal and proposal.settings else ReductionSettings()


def fields_of(file: File) -> dict:
    """A row's matching fields (see ``db.queries.config_fields``) with its path and a datetime date_obs."""
    fields = queries.config_fields(file)
    fields["path"] = Path(file.full_path)
    if isinstance(fields.get("date_obs"), str):
        fields["date_obs"] = datetime.fromisoformat(fields["date_obs"])
    return fields


def out_dir_for(file: File) -> Path:
    return processed_root() / (file.date or "undated")


def original_of(file: File) -> File:
    return file.original or file


def catalogued(path: Path) -> bool:
    """A product name is taken once a row has it: a file a lost run left behind is overwritten by
    its retry instead of becoming a ``_v2``."""
    return db.session.scalar(sa.select(File.id).where(File.full_path == str(path))) is not None


def add_product(product: steps.Product, *, parent: File | None, original: File | None, template: File,
                proposal: Proposal | None, calibrations: dict | None = None) -> File:
    """Catalogue a product; it inherits the configuration fields of ``template``."""
    row = File(file_name=product.path.name, directory_name=str(product.path.parent), full_path=str(product.path),
               data_type=product.data_type, parent=parent, original=original, proposal=proposal,
               target=product.target, normalized=product.normalized, ingested_at=_now(), snr=product.record.get("snr"),
               version=steps.version_of(product.path.name),
               calibrations={**(calibrations or {}), "record": _json_record(product.record)})
    set_file_state(row, "done")
    for name in ("obstype", "technique", "object", "instconf", "grating", "wavmode", "filter", "filter_2", "slit",
                 "roi", "cam_targ", "grt_targ", "obsra", "obsdec", "gain", "rdnoise", "saturation_value",
                 "exptime", "date", "date_obs", "classification"):
        setattr(row, name, getattr(template, name))
    db.session.add(row)
    db.session.flush()
    return row


def _json_record(record: dict) -> dict:
    """Block records hold numpy values; keep what JSON can say."""
    return json.loads(json.dumps(record, default=lambda value: value.tolist() if hasattr(value, "tolist")
                                 else str(value)))


def input_of(job, step_name: str) -> tuple[File, chain.Step]:
    """The job's file and step, or JobRefused when the chain says the step does not take that file."""
    file, step = db.session.get(File, job.file_id), chain.STEPS[step_name]
    if file is None or not step.accepts(file.data_type, kind_of(file), file.technique):
        name = file.file_name if file is not None else f"File {job.file_id}"
        raise JobRefused(f"{name} is not {step.expects}.")
    return file, step


def quality_note(calibrations: dict | None) -> str:
    """The state reason a product calibrated with a poor wavelength solution gives its raw file."""
    quality = (calibrations or {}).get("wavelength_quality") or {}
    return f"poor wavelength solution: {quality.get('why', '')}" if quality.get("verdict") == "poor" else ""


def _used(row: File | None, why: str) -> dict | None:
    return {"id": row.id, "file": row.file_name, "why": why} if row is not None else None


# --- the chain, live -------------------------------------------------------------------------------

def on_ingested(file: File) -> None:
    """Queue the first step a newly catalogued (or reclassified) raw file calls for, or say why none."""
    step = chain.first_step(kind_of(file), file.technique)
    if step is None:
        set_file_state(file, "waiting", f"OBSTYPE {file.obstype} is not reduced automatically; "
                                        "reclassify it (e.g. as COMP) to reduce it.")
        return
    masters = _masters_for(file, settings_for(file)) if step.name == "reduce" else None
    job = enqueue(step.name, file_id=file.id, serial_key=serial_key_of(step.name, file),
                  waiting=masters.waiting() if masters and masters.missing else None)
    if job.file_id == file.id:
        return
    # the group's pending job takes this frame too; a new frame is news only to a job that counts frames
    # or waits for its block to end (not to one waiting for the whole night or for its master bias)
    if job.state == "waiting" and job.waiting_for in (matching.more_frames(kind_of(file)), matching.BLOCK_END):
        requeue_if_waiting(job.id, f"{file.file_name} arrived")
    if job.state == "waiting":
        set_file_state(file, "waiting", job.reason)
    else:
        set_file_state(file, "queued", f"{step.name} of its group queued (job {job.id})")


def serial_key_of(step_name: str, file: File) -> str | None:
    """Jobs that must not run at once: the masters of one group of frames of one night, the combinations
    of one target (a pending one takes the next exposure too)."""
    if step_name == "calibrations":
        key = [file.date, kind_of(file), matching.group_key(kind_of(file), fields_of(file))]
    elif chain.STEPS[step_name].gathers:
        key = matching.target_key(queries.exposure_fields(file))
    else:
        return None
    text = json.dumps(key, default=str)
    return f"{step_name}:" + hashlib.sha1(text.encode()).hexdigest()[:40]


def follow(step: chain.Step, raw: File, products: list[File], params_of=lambda row: None) -> None:
    """Queue the chain's next steps on each product (unless the proposal turned a step off), and wake
    the jobs parked for what this step provides."""
    settings = settings_for(raw)
    enabled = [following for following in chain.next_steps(step, kind_of(raw), raw.technique)
               if not following.setting or getattr(settings, following.setting)]
    for following in enabled:
        for row in products:
            if not following.gathers:
                enqueue(following.name, file_id=row.id, params=params_of(row))
            elif not _gathered_after_flux(following, enabled, row):
                _gather_when_not_alone(following, row)
    provided = step.provides.get(kind_of(raw))
    if provided and products:
        wake(kind_of(raw), products[-1], provided)


def _gathered_after_flux(gather: chain.Step, enabled: list[chain.Step], spectrum: File) -> bool:
    """A spectrum whose flux calibration runs now is gathered after it (that step follows with the gather),
    not once more at its own level for nothing; one whose flux calibration waits for a standard is gathered
    at its own level meanwhile."""
    flux = chain.STEPS["calibrate_flux"]
    return (flux in enabled and gather.name in flux.then
            and choose_sensitivity(spectrum)[0] is not None)


def _gather_when_not_alone(step: chain.Step, spectrum: File) -> None:
    """Queue ``step`` (a combination) on ``spectrum`` once its target has another exposure; a first exposure
    queues nothing, so it costs the first frame no job. Two exposures of one target ending at once in two
    workers cannot see each other before their commits, so the check is made again after this job's commit:
    the later of the two then sees both."""
    def enqueue_if_not_alone() -> bool:
        alone = len({row.original_file_id or row.id for row in queries.target_spectra(spectrum)}) < 2
        if not alone:
            enqueue(step.name, file_id=spectrum.id, serial_key=serial_key_of(step.name, spectrum))
        return not alone

    if not enqueue_if_not_alone():
        again_after_commit(enqueue_if_not_alone)


def wake(provider_kind: str, provider: File, provided: str) -> None:
    """Strike ``provided`` (a master, an arc, a sensitivity function) off what the parked jobs it could serve
    wait for (``matching.could_serve``: masters and arcs of their night, standards of any night), and queue
    again those that wait for nothing more: now, and once more after this job's products are committed (a job
    may park in between).  A frame waiting for its master bias and its master flat runs once, when both
    are in, not once per master (in a burst, every frame ran again between the bias and the flats)."""
    offered = fields_of(provider)

    def requeue_parked() -> None:
        for job in parked_for(provider_kind, offered, provided):
            strike_need(job, provided)

    requeue_parked()
    again_after_commit(requeue_parked)


def parked_for(provider_kind: str, offered: dict, need: str) -> list[Job]:
    """The parked jobs waiting for ``need`` that a provider of this kind and these fields could serve."""
    parked = db.session.scalars(sa.select(Job).where(Job.state == "waiting", Job.waiting_for.like(f"%{need}%")))
    return [job for job in parked
            if job.file is not None and matching.could_serve(provider_kind, offered, fields_of(job.file))]


# --- Calibrations ----------------------------------------------------------------------------------

def _group_of(frame: File) -> list[File]:
    """The raw frames of the night that combine with ``frame`` (same kind and group key); a frame failed at
    ingest has no OBSTYPE, and one failed with its group's master is in the group when it is built again."""
    kind = kind_of(frame)
    key = matching.group_key(kind, fields_of(frame))
    same_night = db.session.scalars(sa.select(File).where(
        File.data_type == DataType.RAW, File.date == frame.date, File.obstype.in_(headers.obstypes_of(kind)))
        .order_by(File.id))
    return [raw for raw in same_night if matching.group_key(kind, fields_of(raw)) == key]


def _masters(kind: str, date: str, group: str | None = None) -> list[File]:
    """Master bias (kind 'bias') or normalized master flats ('flat') of a night, oldest first; with ``group``,
    those made of that group of frames (its serial key)."""
    query = sa.select(File).where(File.data_type == DataType.MASTER, File.obstype.in_(headers.obstypes_of(kind)),
                                  File.date == date, File.normalized.is_(kind == "flat"))
    masters = db.session.scalars(query.order_by(File.id))
    return [master for master in masters if group is None or (master.calibrations or {}).get("group") == group]


def choose_master(frame: File, kind: str) -> tuple[File | None, str]:
    candidates = _masters(kind, frame.date)
    if not candidates:
        return None, f"no master {kind} for {frame.date} yet"
    chosen, why = matching.choose_master(fields_of(frame), [fields_of(m) for m in candidates])
    return (db.session.get(File, chosen["id"]) if chosen else None), why


def _block_ended(newest: File) -> bool:
    """A block of calibration frames has ended when a frame of another kind followed its newest
    frame, or none came for CALIBRATION_BLOCK_SECONDS."""
    quiet = timedelta(seconds=float(current_app.config.get("CALIBRATION_BLOCK_SECONDS", 120)))
    if newest.ingested_at is not None and _aware(newest.ingested_at) < _now() - quiet:
        return True
    later = sa.select(File.id).where(File.data_type == DataType.RAW, File.date == newest.date, File.id > newest.id,
                                     File.obstype != newest.obstype).limit(1)
    return db.session.scalar(later) is not None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@periodic
def wake_parked_masters() -> None:
    """Masters waiting for their block of frames to end, or for their night's files to be catalogued,
    go once it has, or they are."""
    parked = db.session.scalars(sa.select(Job).where(Job.kind == "calibrations", Job.state == "waiting",
                                                     Job.waiting_for.in_((matching.BLOCK_END, matching.NEW_FILES))))
    for job in parked:
        if job.waiting_for == matching.BLOCK_END:
            newest = db.session.get(File, (job.result or {}).get("newest_frame_id") or -1)
            if newest is None or _block_ended(newest):
                requeue_if_waiting(job.id, "the block of frames ended")
        else:
            frame = db.session.get(File, job.file_id)
            if frame is None or not _files_arriving(frame):
                requeue_if_waiting(job.id, "the night's files are catalogued")


def _files_arriving(frame: File) -> bool:
    """True while ``frame``'s folder holds recent FITS files the catalogue does not know yet: a night
    copied at once is catalogued in any order, and a master combined then would miss some of its frames
    (and be combined again once they are in)."""
    cutoff = datetime.now().timestamp() - ARRIVING_SECONDS
    try:
        entries = [entry for entry in os.scandir(frame.directory_name)
                   if entry.is_file() and fitsfiles.is_fits_name(entry.name)]
        recent = {entry.name for entry in entries if _last_change(entry) > cutoff}
    except OSError:
        return False
    if not recent:
        return False
    known = db.session.scalars(sa.select(File.file_name).where(
        File.directory_name == frame.directory_name, File.data_type == DataType.RAW, File.file_name.in_(recent)))
    return bool(recent - set(known))


def _last_change(entry: os.DirEntry) -> float:
    """When a file was last written, or copied or renamed in (a copy may keep its old mtime)."""
    stat = entry.stat()
    return max(stat.st_mtime, stat.st_ctime)


def _park_group(group: list[File], needs: list[str], reason: str, **waiting) -> Waiting:
    """Every frame of ``group`` waits, saying ``reason``, and so does the job."""
    for raw in group:
        set_file_state(raw, "waiting", reason)
    return Waiting(needs, reason, **waiting)


def master_failed(job: Job, reason: str) -> None:
    """A master that failed for good: its frames say so, and so do the frames waiting for it (they are
    woken as usual if it is built later, by hand)."""
    frame = db.session.get(File, job.file_id)
    if frame is None:
        return
    kind, offered = kind_of(frame), fields_of(frame)
    need = chain.STEPS["calibrations"].provides[kind]
    failure = f"the {need} {steps.master_name(offered, kind)} failed: {reason}; re-run it"
    job.result = {**(job.result or {}), "failure": failure}
    settle_file_state(frame)  # its own job says it now
    for raw in _group_of(frame):  # the group's other frames
        set_file_state(raw, "failed", failure)
    for waiting in parked_for(kind, offered, need):
        waiting.result = {**(waiting.result or {}), "failure": failure}
        settle_file_state(waiting.file)


@task("calibrations", on_failure=master_failed)
def calibrations(job) -> dict | Waiting:
    """Build the master of a raw BIAS/FLAT frame's group when ``matching.plan_master`` says so; park the
    group, or keep the master it has, when it says that."""
    frame = db.session.get(File, job.file_id)
    kind = kind_of(frame)
    if kind not in ("bias", "flat"):
        raise JobRefused(f"{frame.file_name} is {frame.obstype}, not a bias or flat frame.")
    settings = settings_for(frame)
    group = _group_of(frame)
    key = serial_key_of("calibrations", frame)
    own = {master.file_name: master for master in _masters(kind, frame.date, group=key)}
    newest = max(group, key=lambda raw: raw.id)
    force = bool((job.params or {}).get("force"))
    plan = matching.plan_master(
        kind, [raw.file_name for raw in group], settings,
        [{**(master.calibrations or {}), "name": name} for name, master in own.items()],
        _master_settings(settings, kind), force=force,
        files_arriving=lambda: _files_arriving(frame), block_ended=lambda: _block_ended(newest),
        bias_missing=lambda: choose_master(frame, "bias")[0] is None)
    if plan.action == "build":
        return _build_master(frame, kind, group, settings, {
            "inputs": sorted(raw.file_name for raw in group), "group": key, "automatic": not force,
            "settings": _master_settings(settings, kind), "why": f"{plan.reason} on {frame.date}"})
    return _follow_plan(plan, frame, group, own.get(plan.master), newest, settings)


def _follow_plan(plan: matching.MasterPlan, frame: File, group: list[File], master: File | None, newest: File,
                 settings: ReductionSettings) -> dict | Waiting:
    """Keep ``master`` for the group, or park the group for what the plan waits for."""
    kind = kind_of(frame)
    if plan.action == "keep":
        _settle_group(group, master, plan.reason)
        note = f"{plan.reason} (a master of exactly these frames)" if plan.exact else plan.reason
        return {"built": False, "master": master.id, "products": [master.id], "note": note}
    if plan.needs == (matching.BLOCK_END,):
        _settle_group(group, master, plan.reason, others="waiting")
        return Waiting(list(plan.needs), plan.reason, result={"newest_frame_id": newest.id, "master": master.id})
    if plan.needs == (chain.MASTER_BIAS,):
        return _park_group(group, list(plan.needs), plan.reason,
                           ready=lambda: choose_master(frame, "bias")[0] is not None)
    if plan.needs == (matching.more_frames(kind),):
        return _park_group(group, list(plan.needs), plan.reason,
                           result={"have": len(group), "need": matching.minimum_frames(kind, settings)})
    return _park_group(group, list(plan.needs), plan.reason)


def _master_settings(settings: ReductionSettings, kind: str) -> dict:
    names = ["ignore_bias"] if kind == "bias" else ["ignore_bias", "flat_normalization", "flat_normalization_order"]
    return {name: getattr(settings, name) for name in names}


def _settle_group(group: list[File], master: File, note: str, others: str = "done") -> None:
    """The group's frames in ``master`` are done; the others are ``others`` (done or waiting), saying ``note``."""
    made_of = set((master.calibrations or {}).get("inputs", []))
    for raw in group:
        if raw.file_name in made_of:
            set_file_state(raw, "done", f"combined into {master.file_name}")
        else:
            set_file_state(raw, others, note)


def _build_master(frame: File, kind: str, group: list[File], settings: ReductionSettings, made: dict) -> dict:
    name = steps.master_name(fields_of(frame), kind)
    out_dir = out_dir_for(frame)
    paths = [Path(raw.full_path) for raw in group]
    if kind == "bias":
        product = steps.master_bias(paths, settings, out_dir, name, taken=catalogued)
        rows = [add_product(product, parent=None, original=None, template=frame, proposal=frame.proposal,
                            calibrations=made)]
    else:
        bias, why = choose_master(frame, "bias") if not settings.ignore_bias else (None, "ignored by the settings")
        master, normalized = steps.master_flat(paths, settings, out_dir, name, Path(bias.full_path) if bias else None,
                                               frame.technique, taken=catalogued)
        made = {**made, "bias": _used(bias, why)}
        master_row = add_product(master, parent=None, original=None, template=frame, proposal=frame.proposal,
                                 calibrations=made)
        rows = [master_row, add_product(normalized, parent=master_row, original=None, template=frame,
                                        proposal=frame.proposal, calibrations=made)]
    note = f"combined into {rows[-1].file_name}"
    _settle_group(group, rows[-1], note)
    log_event("calibration_built", f"Built {', '.join(r.file_name for r in rows)} from {len(group)} frames.",
              proposal_id=frame.proposal_id, file_id=rows[-1].id)
    follow(chain.STEPS["calibrations"], frame, rows)
    return {"built": True, "masters": [row.id for row in rows], "products": [row.id for row in reversed(rows)],
            "note": note}


# --- Reduce ----------------------------------------------------------------------------------------

@dataclass
class _FrameMasters:
    """The master bias and flat a raw frame is reduced with, why each, and the names of those it lacks."""

    raw: File
    bias: File | None
    bias_why: str
    flat: File | None
    flat_why: str
    missing: list[str]

    def waiting(self) -> Waiting:
        return Waiting(self.missing, f"waiting for {' and '.join(self.missing)}", ready=lambda: any(
            choose_master(self.raw, name.split()[-1])[0] is not None for name in self.missing))


def _masters_for(raw: File, settings: ReductionSettings) -> _FrameMasters:
    ignored = (None, "ignored by the settings")
    bias, bias_why = ignored if settings.ignore_bias else choose_master(raw, "bias")
    flat, flat_why = ignored if settings.ignore_flats else choose_master(raw, "flat")
    missing = [name for name, row, wanted in ((chain.MASTER_BIAS, bias, not settings.ignore_bias),
                                              (chain.MASTER_FLAT, flat, not settings.ignore_flats))
               if row is None and wanted]
    return _FrameMasters(raw, bias, bias_why, flat, flat_why, missing)


@task("reduce")
def reduce_task(job) -> dict | Waiting:
    """Reduce a raw frame with the best masters; without them, wait (unless asked by hand)."""
    raw, step = input_of(job, "reduce")
    settings = settings_for(raw)
    masters = _masters_for(raw, settings)
    missing = masters.missing
    if missing and not (job.params or {}).get("force"):
        return masters.waiting()
    bias, flat = masters.bias, masters.flat
    product = steps.reduce_raw(Path(raw.full_path), settings, out_dir_for(raw), technique=raw.technique,
                               bias_path=Path(bias.full_path) if bias else None,
                               flat_path=Path(flat.full_path) if flat else None, taken=catalogued)
    reduced = add_product(product, parent=raw, original=raw, template=raw, proposal=raw.proposal,
                          calibrations={"bias": _used(bias, masters.bias_why), "flat": _used(flat, masters.flat_why),
                                        "missing": missing})
    raw.reduced_at = _now()
    log_event("reduced", f"Reduced {raw.file_name} -> {reduced.file_name}.", proposal_id=raw.proposal_id,
              file_id=reduced.id)
    follow(step, raw, [reduced])
    return {"reduced": reduced.id, "products": [reduced.id],
            "note": f"reduced without {' and '.join(missing)}" if missing else ""}


# --- Extract ---------------------------------------------------------------------------------------

def choose_arc(science: File, arc_id=None, reason: str = "chosen by hand") -> tuple[File | None, str]:
    """The reduced arc for a science frame (or product): the one asked for, or the best compatible one."""
    if arc_id is not None:
        arc = db.session.get(File, int(arc_id))
        if arc is not None and arc.data_type == DataType.RAW:  # a raw arc was named: take its newest reduction
            arc = db.session.scalar(sa.select(File).where(File.parent_file_id == arc.id,
                                                          File.data_type == DataType.REDUCED)
                                    .order_by(File.id.desc()))
        if arc is None or arc.data_type != DataType.REDUCED or arc.obstype not in ARC_OBSTYPES:
            raise JobRefused(f"File {arc_id} is not a reduced arc (reduce the arc first).")
        return arc, reason
    arcs = list(db.session.scalars(sa.select(File).where(
        File.data_type == DataType.REDUCED, File.obstype.in_(ARC_OBSTYPES), File.date == science.date)))
    chosen, why = matching.choose_arc(fields_of(science), [fields_of(arc) for arc in arcs])
    return (db.session.get(File, chosen["id"]) if chosen else None), why


@task("extract")
def extract_task(job) -> dict:
    reduced, step = input_of(job, "extract")
    raw = original_of(reduced)
    arc_id = (job.params or {}).get("arc_id")
    arc, arc_why = choose_arc(reduced, arc_id) if arc_id is not None else (None, "")  # fail early on a wrong id
    products = steps.extract_reduced(Path(reduced.full_path), settings_for(raw), out_dir_for(raw),
                                     original=Path(raw.full_path), taken=catalogued)
    rows = [add_product(p, parent=reduced, original=raw, template=reduced, proposal=reduced.proposal)
            for p in products]
    raw.extracted_at = _now()
    log_event("extracted", f"Extracted {len(rows)} target(s) from {reduced.file_name}.",
              proposal_id=raw.proposal_id, file_id=reduced.id)
    follow(step, raw, rows, params_of=lambda row: {"arc_id": arc.id, "arc_reason": arc_why} if arc else None)
    return {"extracted": [row.id for row in rows], "products": [row.id for row in rows]}


# --- Wavelength calibration ------------------------------------------------------------------------

@task("calibrate_wavelength")
def calibrate_wavelength_task(job) -> dict | Waiting:
    extracted, step = input_of(job, "calibrate_wavelength")
    params = job.params or {}
    raw = original_of(extracted)
    arc, arc_why = choose_arc(extracted, params.get("arc_id"), params.get("arc_reason") or "chosen by hand")
    if arc is None:
        return Waiting([chain.ARC], f"extracted; waiting for a compatible arc ({arc_why})",
                       ready=lambda: choose_arc(extracted)[0] is not None)
    arc_raw = original_of(arc)
    out_dir = out_dir_for(raw)
    arc_1d = steps.extract_arc_along(Path(arc.full_path), Path(extracted.full_path), out_dir,
                                     target=extracted.target or 1, original=Path(arc_raw.full_path),
                                     science_label=steps.stem(raw.file_name), taken=catalogued)
    options = WavelengthOptions(library_lamp=params.get("lamp") or None)
    science_w, arc_w = steps.calibrate_wavelength(Path(extracted.full_path), arc_1d.path, out_dir,
                                                  original=Path(raw.full_path), target=extracted.target,
                                                  options=options,
                                                  correct_flexure=settings_for(raw).flexure_correction,
                                                  taken=catalogued)
    # Rows only after the science: the first row written holds SQLite's write lock until the job's commit, and
    # another target's job (or the heartbeats, the watcher) would wait for this one's wavelength solution.
    # The arc extracted along this frame's traces is this frame's (its proposal's), whoever's arc it came from.
    arc_1d_row = add_product(arc_1d, parent=arc, original=arc_raw, template=arc, proposal=extracted.proposal)
    used = {"arc": _used(arc, arc_why), "lamp": science_w.record.get("library_lamp"),
            "wavelength_quality": science_w.record.get("wavelength_quality"),
            "lamp_why": "chosen by hand" if params.get("lamp") else "the library lamp of this grating and mode, "
            "for the first guess; lines identified against NIST"}
    row = add_product(science_w, parent=extracted, original=raw, template=extracted, proposal=extracted.proposal,
                      calibrations={**used, "flexure": science_w.record["flexure"]})
    arc_row = add_product(arc_w, parent=arc_1d_row, original=arc_raw, template=arc, proposal=extracted.proposal,
                          calibrations=used)
    for product in (row, arc_row):  # "done", and says so when the solution is poor
        set_file_state(product, "done", quality_note(used))
    raw.calibrated_at = _now()
    log_event("wavelength_calibrated", f"{row.file_name}: {science_w.record['lines_used']} lines, "
              f"RMS {science_w.record['rms_angstrom']:.3f} A; {flexure.summary(science_w.record['flexure'])}.",
              proposal_id=raw.proposal_id, file_id=row.id)
    follow(step, raw, [row])
    return {"calibrated": row.id, "products": [row.id], "rms_angstrom": science_w.record["rms_angstrom"],
            "lines_used": science_w.record["lines_used"], "note": quality_note(used)}


# --- Flux calibration ------------------------------------------------------------------------------

def star_name_of(file: File) -> str:
    """The standard star a frame (or product) shows, as named: the one a user marked, else its OBJECT."""
    marked = (file.classification or {}).get("standard")
    return marked if isinstance(marked, str) else file.object or ""


@task("sensitivity")
def sensitivity_task(job) -> dict:
    """The sensitivity function of a configuration, from a wavelength-calibrated standard star."""
    calibrated, step = input_of(job, "sensitivity")
    raw = original_of(calibrated)
    product = steps.sensitivity(Path(calibrated.full_path), star_name_of(calibrated), out_dir_for(raw),
                                original=Path(raw.full_path), taken=catalogued)
    star = product.record["star"]
    row = add_product(product, parent=calibrated, original=raw, template=calibrated, proposal=calibrated.proposal,
                      calibrations={"standard": {"star": star, "table": product.record["table"]}})
    warning = "; ".join(product.record["warnings"])
    set_file_state(row, "done", warning)  # "done", and says so when the star saturated
    log_event("sensitivity_built", f"{row.file_name}: {star}, {product.record['points_used']} bands, "
              f"RMS {product.record['rms_mag']:.3f} mag.{' ' + warning if warning else ''}",
              proposal_id=raw.proposal_id, file_id=row.id)
    follow(step, raw, [row])
    return {"sensitivity": row.id, "products": [row.id], "star": star}


def choose_sensitivity(calibrated: File, standard_id=None) -> tuple[File | None, str]:
    """The sensitivity function to calibrate with: the one of the standard asked for, or the one
    the rule chooses (``matching.choose_standard``: same configuration, closest in time, any night)."""
    if standard_id is not None:
        return _sensitivity_asked(standard_id), "chosen by hand"
    candidates = queries.sensitivity_functions(calibrated)
    chosen, why = matching.choose_standard(fields_of(calibrated), [fields_of(row) for row in candidates])
    if chosen is None:
        config = " / ".join(part for part in (calibrated.wavmode, calibrated.filter_2, calibrated.slit,
                                               calibrated.roi) if part)
        return None, f"wavelength calibrated; waiting for a standard star of {config} (flux calibration)"
    return db.session.get(File, chosen["id"]), why


def _sensitivity_asked(standard_id) -> File:
    """The sensitivity function a user named: itself, or the newest of the standard star's frame named."""
    chosen = db.session.get(File, int(standard_id))
    if chosen is not None and chosen.data_type != DataType.MASTER:
        chosen = db.session.scalar(sa.select(File).where(
            File.original_file_id == (chosen.original_file_id or chosen.id), File.data_type == DataType.MASTER)
            .order_by(File.id.desc()))
    if chosen is None or kind_of(chosen) != chain.STANDARD:
        raise JobRefused(f"File {standard_id} is not a standard star with a sensitivity function.")
    return chosen


@task("calibrate_flux")
def calibrate_flux_task(job) -> dict | Waiting:
    calibrated, step = input_of(job, "calibrate_flux")
    raw = original_of(calibrated)
    sensitivity, why = choose_sensitivity(calibrated, (job.params or {}).get("standard_id"))
    if sensitivity is None:
        return Waiting([chain.SENSITIVITY], why, ready=lambda: bool(queries.sensitivity_functions(calibrated)))
    product = steps.calibrate_flux(Path(calibrated.full_path), Path(sensitivity.full_path), out_dir_for(raw),
                                   original=Path(raw.full_path), target=calibrated.target, why=why,
                                   correct_telluric=settings_for(raw).telluric_correction, taken=catalogued)
    standard = {**_used(sensitivity, why), "star": (sensitivity.calibrations or {}).get("standard", {}).get("star")}
    wavelength_used = {key: (calibrated.calibrations or {}).get(key)
                       for key in ("arc", "lamp", "lamp_why", "wavelength_quality", "flexure")}
    row = add_product(product, parent=calibrated, original=raw, template=calibrated, proposal=calibrated.proposal,
                      calibrations={**wavelength_used, "standard": standard, "telluric": product.record["telluric"]})
    log_event("flux_calibrated", f"{row.file_name} with {sensitivity.file_name} ({why}); "
              f"{telluric.summary(product.record['telluric'])}.",
              proposal_id=raw.proposal_id, file_id=row.id)
    follow(step, raw, [row])
    return {"flux_calibrated": row.id, "products": [row.id], "standard": sensitivity.id,
            "note": quality_note(wavelength_used)}


# --- Combine ---------------------------------------------------------------------------------------

def spectra_to_combine(spectrum: File, ids: list[int] | None) -> list[File]:
    """The spectra a combine job works on: those asked for by id, or the newest of each exposure of the
    target at its most calibrated level (``matching.spectra_to_combine``)."""
    if ids:
        asked = [db.session.get(File, int(number)) for number in ids]
        asked = [row for row in asked if row is not None]
        reason = matching.not_one_target([queries.exposure_fields(row) for row in asked]) \
            if len(asked) == len(ids) else "some of the spectra asked for are gone"
        if reason:
            raise JobRefused(f"Cannot combine: {reason}.")
        return sorted(asked, key=lambda row: (row.date_obs is None, row.date_obs, row.id))
    rows = {row.id: row for row in queries.target_spectra(spectrum)}
    chosen = matching.spectra_to_combine([queries.exposure_fields(row) for row in rows.values()])
    return [rows[fields["id"]] for fields in chosen]


def _combined_already(inputs: list[File], spectrum: File) -> File | None:
    """The newest combination of the target, if it is of exactly these inputs."""
    newest = next(iter(queries.combinations(inputs[-1])), None)
    ids = sorted(row.id for row in inputs)
    if newest is not None and sorted(used["id"] for used in newest.calibrations.get("inputs", [])) == ids:
        return newest
    return None


@task("combine")
def combine_task(job) -> dict:
    """A new version of the target's combined spectrum when its exposures (or their calibration) changed."""
    spectrum = db.session.get(File, job.file_id)
    if spectrum is None:
        raise JobRefused(f"File {job.file_id} is gone.")
    ids = (job.params or {}).get("ids")
    if not ids:
        spectrum, _ = input_of(job, "combine")
    inputs = spectra_to_combine(spectrum, ids)
    if not inputs:
        return {"products": [], "note": f"{spectrum.object}: one exposure so far, nothing to combine"}
    done = _combined_already(inputs, spectrum)
    if done is not None and not ids:
        return {"products": [], "combined": done.id, "note": f"{done.file_name} already combines these"}
    newest = original_of(inputs[-1])
    product = steps.combine_spectra([Path(row.full_path) for row in inputs], out_dir_for(newest),
                                    name=steps.combined_name(newest.file_name, inputs[-1].target),
                                    original=Path(newest.full_path), target=inputs[-1].target, taken=catalogued)
    row = add_product(product, parent=inputs[-1], original=newest, template=inputs[-1], proposal=inputs[-1].proposal,
                      calibrations={"inputs": [{"id": used.id, "file": used.file_name} for used in inputs],
                                    "exposures": [used.original_file_id or used.id for used in inputs]})
    row.exptime = product.record["exptime"]
    log_event("combined", f"{row.file_name}: {len(inputs)} exposures ({product.record['exptime']:.0f} s), "
              f"S/N {product.record.get('snr') or 0:.1f}.", proposal_id=newest.proposal_id, file_id=row.id)
    return {"combined": row.id, "products": [row.id], "inputs": [used.id for used in inputs]}


# --- Re-run ----------------------------------------------------------------------------------------

def rerun_params(product: File) -> tuple[chain.Step, File, dict]:
    """The step, input file and parameters that make ``product`` again with the current settings
    (a new version; the old one stays). Raises JobRefused when it cannot be re-made."""
    step = chain.rerun_step(product.data_type, kind_of(product))
    if step is None and product.data_type == DataType.COMBINED:
        raise JobRefused(f"{product.file_name} is made again by combining its exposures "
                         "(POST /api/files/spectrum/combine/).")
    if step is None:
        raise JobRefused(f"{product.file_name} is re-made with the science frame it belongs to.")
    used = product.calibrations or {}
    if step.name == "calibrations":
        first_input = db.session.scalar(sa.select(File).where(
            File.data_type == DataType.RAW, File.file_name.in_(used.get("inputs") or [""]),
            File.date == product.date))
        if first_input is None:
            raise JobRefused(f"The frames {product.file_name} was made of are no longer in the catalogue.")
        return step, first_input, {"force": True}
    if product.parent_file_id is None:
        raise JobRefused(f"The file {product.file_name} was made from has been deleted.")
    return step, product.parent, {**step.manual_params, **{choice: USED_AS[choice](used) for choice in step.choices}}


# What a product's calibrations say was used, as the choice a step takes by hand (chain.Step.choices).
USED_AS = {"arc_id": lambda used: (used.get("arc") or {}).get("id"), "lamp": lambda used: used.get("lamp"),
           "standard_id": lambda used: (used.get("standard") or {}).get("id")}


def enqueue_step(step_name: str, file: File, *, user=None, params: dict | None = None) -> Job:
    """A step asked for by hand (page or API), or a re-run; the caller commits.  Tries of one step on one
    file never run at once (two at once would both take the same free product name): the same try asked
    again before it runs is that job, and a different one waits for the one running."""
    return enqueue(step_name, file_id=file.id, user=user, params=params,
                   serial_key=serial_key_of(step_name, file) or f"{step_name}:{file.id}")
