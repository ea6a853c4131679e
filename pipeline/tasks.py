"""The reduction jobs (job layer): catalogue rows in, ``pipeline.steps`` on their files, rows out.

Each task takes its Job row.  The chain, decided here and in ``orchestration``:
calibration frames -> masters; science/arc -> reduce -> extract -> wavelength
calibration.  A frame whose masters or arc are not there yet is left
``waiting`` with the reason, and is picked up when they arrive.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from db import db, queries
from db.events import log_event
from db.models import File, Proposal
from pipeline import headers, matching, steps
from pipeline.catalogue import processed_root
from pipeline.jobs import JobRefused, enqueue, task
from pipeline.night import master_name
from pipeline.settings import ReductionSettings
from pipeline.wavelength import WavelengthOptions

ARC_OBSTYPES = ("COMP", "ARC")


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


def kind_of(file: File) -> str:
    return headers.kind(file.obstype, file.technique)


def out_dir_for(file: File) -> Path:
    return processed_root() / (file.date or "undated")


def original_of(file: File) -> File:
    return file.original or file


def set_state(file: File, state: str, reason: str = "") -> None:
    file.state, file.state_reason = state, reason


def add_product(product: steps.Product, *, parent: File | None, original: File | None, template: File,
                proposal: Proposal | None, calibrations: dict | None = None) -> File:
    """Catalogue a product; it inherits the configuration fields of ``template``."""
    row = File(file_name=product.path.name, directory_name=str(product.path.parent), full_path=str(product.path),
               data_type=product.data_type, parent=parent, original=original, proposal=proposal,
               target=product.target, normalized=product.normalized, state="done", ingested_at=_now(),
               calibrations={**(calibrations or {}), "record": _json_record(product.record)})
    for name in ("obstype", "technique", "object", "instconf", "grating", "wavmode", "filter", "filter_2", "slit",
                 "roi", "cam_targ", "grt_targ", "obsra", "obsdec", "gain", "rdnoise", "saturation_value",
                 "exptime", "date", "date_obs", "classification"):
        setattr(row, name, getattr(template, name))
    db.session.add(row)
    db.session.flush()
    return row


def _json_record(record: dict) -> dict:
    """Block records hold numpy values; keep what JSON can say."""
    import json

    return json.loads(json.dumps(record, default=lambda value: value.tolist() if hasattr(value, "tolist")
                                 else str(value)))


def _used(row: File | None, why: str) -> dict | None:
    return {"id": row.id, "file": row.file_name, "why": why} if row is not None else None


# --- Calibrations ---------------------------------------------------------------------------------

def _masters(kind: str, date: str) -> list[File]:
    """Master bias (kind 'bias') or normalized master flats ('flat') of a night."""
    obstypes = ("BIAS",) if kind == "bias" else ("FLAT", "LAMPFLAT")
    query = sa.select(File).where(File.data_type == 1, File.obstype.in_(obstypes), File.date == date,
                                  File.normalized.is_(kind == "flat"))
    return list(db.session.scalars(query.order_by(File.id)))


def choose_master(frame: File, kind: str) -> tuple[File | None, str]:
    candidates = _masters(kind, frame.date)
    if not candidates:
        return None, f"no master {kind} for {frame.date} yet"
    chosen, why = matching.choose_master(fields_of(frame), [fields_of(m) for m in candidates])
    return (db.session.get(File, chosen["id"]) if chosen else None), why


@task("calibrations")
def calibrations(job) -> dict:
    """Build (or rebuild, as a new version) the master of the group of a raw BIAS/FLAT frame."""
    frame = db.session.get(File, job.file_id)
    kind = kind_of(frame)
    if kind not in ("bias", "flat"):
        raise JobRefused(f"{frame.file_name} is {frame.obstype}, not a bias or flat frame.")
    settings = settings_for(frame)
    key_of = matching.bias_group_key if kind == "bias" else matching.flat_group_key
    key = key_of(fields_of(frame))
    same_night = db.session.scalars(sa.select(File).where(
        File.data_type == 0, File.date == frame.date, File.state != "failed",
        File.obstype.in_(("BIAS",) if kind == "bias" else ("FLAT", "LAMPFLAT"))).order_by(File.id))
    group = [raw for raw in same_night if key_of(fields_of(raw)) == key]
    minimum = settings.min_bias if kind == "bias" else settings.min_flats
    if len(group) < minimum:
        for raw in group:
            set_state(raw, "waiting", f"{len(group)} of the {minimum} {kind} frames needed for a master")
        db.session.commit()
        return {"built": False, "have": len(group), "need": minimum}
    names = sorted(raw.file_name for raw in group)
    for master in _masters(kind, frame.date) if not (job.params or {}).get("force") else ():
        if sorted((master.calibrations or {}).get("inputs", [])) == names:
            return {"built": False, "reason": "a master of exactly these frames exists", "master": master.id}
    name = master_name(fields_of(frame), kind)
    out_dir = out_dir_for(frame)
    inputs = {"inputs": names, "why": f"{len(group)} {kind} frames of one configuration on {frame.date}"}
    if kind == "bias":
        product = steps.master_bias([Path(raw.full_path) for raw in group], settings, out_dir, name)
        rows = [add_product(product, parent=None, original=None, template=frame, proposal=frame.proposal,
                            calibrations=inputs)]
    else:
        bias, why = choose_master(frame, "bias") if not settings.ignore_bias else (None, "ignored by the settings")
        master, normalized = steps.master_flat([Path(raw.full_path) for raw in group], settings, out_dir, name,
                                               Path(bias.full_path) if bias else None, frame.technique)
        used = {**inputs, "bias": _used(bias, why)}
        master_row = add_product(master, parent=None, original=None, template=frame, proposal=frame.proposal,
                                 calibrations=used)
        rows = [master_row, add_product(normalized, parent=master_row, original=None, template=frame,
                                        proposal=frame.proposal, calibrations=used)]
    for raw in group:
        set_state(raw, "done", f"combined into {rows[-1].file_name}")
    log_event("calibration_built", f"Built {', '.join(r.file_name for r in rows)} from {len(group)} frames.",
              proposal_id=frame.proposal_id, file_id=rows[-1].id, commit=False)
    db.session.commit()
    wake_waiting(frame.date, "master")
    return {"built": True, "masters": [row.id for row in rows]}


def wake_waiting(date: str, waiting_for: str) -> None:
    """Re-queue the frames of a night that were waiting for a master or an arc."""
    waiting = db.session.scalars(sa.select(File).where(
        File.date == date, File.state == "waiting", File.data_type == 0,
        File.state_reason.like(f"waiting for%{waiting_for}%")))
    for raw in waiting:
        if waiting_for == "arc":
            for extracted in db.session.scalars(sa.select(File).where(
                    File.original_file_id == raw.id, File.data_type == 3, File.obstype.notin_(ARC_OBSTYPES))):
                enqueue("calibrate_wavelength", file_id=extracted.id)
        else:
            enqueue("reduce", file_id=raw.id)


# --- Reduce ---------------------------------------------------------------------------------------

def _needs_flat(raw: File) -> bool:
    return kind_of(raw) in ("arc", "science", "imaging")


@task("reduce")
def reduce_task(job) -> dict:
    """Reduce a raw frame with the best masters; without them, wait (unless asked by hand)."""
    raw = db.session.get(File, job.file_id)
    if raw.data_type != 0 or kind_of(raw) not in ("arc", "science", "imaging"):
        raise JobRefused(f"{raw.file_name} ({raw.obstype}) is not a frame the Reduce block takes.")
    settings = settings_for(raw)
    force = bool((job.params or {}).get("force"))
    bias, bias_why = (None, "ignored by the settings") if settings.ignore_bias else choose_master(raw, "bias")
    flat, flat_why = (None, "ignored by the settings") if settings.ignore_flats or not _needs_flat(raw) \
        else choose_master(raw, "flat")
    missing = [name for name, row, ignored in (("master bias", bias, settings.ignore_bias),
                                               ("master flat", flat, settings.ignore_flats or not _needs_flat(raw)))
               if row is None and not ignored]
    if missing and not force:
        set_state(raw, "waiting", f"waiting for {' and '.join(missing)}")
        db.session.commit()
        # A master built while this job looked would not have woken this frame: look once more.
        if any(choose_master(raw, name.split()[-1])[0] is not None for name in missing):
            enqueue("reduce", file_id=raw.id)
        return {"reduced": False, "waiting_for": missing}
    product = steps.reduce_raw(Path(raw.full_path), settings, out_dir_for(raw), technique=raw.technique,
                               bias_path=Path(bias.full_path) if bias else None,
                               flat_path=Path(flat.full_path) if flat else None)
    reduced = add_product(product, parent=raw, original=raw, template=raw, proposal=raw.proposal,
                          calibrations={"bias": _used(bias, bias_why), "flat": _used(flat, flat_why),
                                        "missing": missing})
    raw.reduced_at = _now()
    set_state(raw, "done", f"reduced without {' and '.join(missing)}" if missing else "")
    log_event("reduced", f"Reduced {raw.file_name} -> {reduced.file_name}.", proposal_id=raw.proposal_id,
              file_id=reduced.id, commit=False)
    db.session.commit()
    kind = kind_of(raw)
    if kind == "science" and raw.technique == "Spectroscopy":
        set_state(raw, "queued", "reduced; extraction queued")
        db.session.commit()
        enqueue("extract", file_id=reduced.id)
    elif kind == "arc":
        wake_waiting(raw.date, "arc")
    return {"reduced": reduced.id}


# --- Extract --------------------------------------------------------------------------------------

def choose_arc(science: File, arc_id=None, reason: str = "chosen by hand") -> tuple[File | None, str]:
    """The reduced arc for a science frame (or product): the one asked for, or the best compatible one."""
    if arc_id is not None:
        arc = db.session.get(File, int(arc_id))
        if arc is not None and arc.data_type == 0:  # a raw arc was named: take its newest reduction
            arc = db.session.scalar(sa.select(File).where(File.parent_file_id == arc.id, File.data_type == 2)
                                    .order_by(File.id.desc()))
        if arc is None or arc.data_type != 2 or arc.obstype not in ARC_OBSTYPES:
            raise JobRefused(f"File {arc_id} is not a reduced arc (reduce the arc first).")
        return arc, reason
    arcs = list(db.session.scalars(sa.select(File).where(
        File.data_type == 2, File.obstype.in_(ARC_OBSTYPES), File.date == science.date)))
    chosen, why = matching.choose_arc(fields_of(science), [fields_of(arc) for arc in arcs])
    return (db.session.get(File, chosen["id"]) if chosen else None), why


@task("extract")
def extract_task(job) -> dict:
    reduced = db.session.get(File, job.file_id)
    if reduced.data_type != 2 or kind_of(reduced) != "science":
        raise JobRefused(f"{reduced.file_name} is not a reduced science spectrum.")
    raw = original_of(reduced)
    arc_id = (job.params or {}).get("arc_id")
    arc, arc_why = choose_arc(reduced, arc_id)  # fail early on a wrong arc id
    products = steps.extract_reduced(Path(reduced.full_path), settings_for(raw), out_dir_for(raw),
                                     original=Path(raw.full_path))
    rows = [add_product(p, parent=reduced, original=raw, template=reduced, proposal=reduced.proposal,
                        calibrations={"arc": _used(arc, arc_why)}) for p in products]
    raw.extracted_at = _now()
    log_event("extracted", f"Extracted {len(rows)} target(s) from {reduced.file_name}.",
              proposal_id=raw.proposal_id, file_id=reduced.id, commit=False)
    if arc is None:
        set_state(raw, "waiting", f"extracted; waiting for a compatible arc ({arc_why})")
    else:
        set_state(raw, "queued", "extracted; wavelength calibration queued")
    db.session.commit()
    if arc is not None:
        for row in rows:
            enqueue("calibrate_wavelength", file_id=row.id, params={"arc_id": arc.id, "arc_reason": arc_why})
    return {"extracted": [row.id for row in rows], "arc": arc and arc.id}


# --- Wavelength calibration -----------------------------------------------------------------------

@task("calibrate_wavelength")
def calibrate_wavelength_task(job) -> dict:
    extracted = db.session.get(File, job.file_id)
    if extracted.data_type != 3 or extracted.obstype in ARC_OBSTYPES:
        raise JobRefused(f"{extracted.file_name} is not an extracted science spectrum.")
    params = job.params or {}
    raw = original_of(extracted)
    arc, arc_why = choose_arc(extracted, params.get("arc_id"), params.get("arc_reason") or "chosen by hand")
    if arc is None:
        raise JobRefused(f"No compatible arc for {raw.file_name}: {arc_why}")
    arc_raw = original_of(arc)
    out_dir = out_dir_for(raw)
    arc_1d = steps.extract_arc_along(Path(arc.full_path), Path(extracted.full_path), out_dir,
                                     target=extracted.target or 1, original=Path(arc_raw.full_path),
                                     science_label=raw.file_name.split("_")[0])
    arc_1d_row = add_product(arc_1d, parent=arc, original=arc_raw, template=arc, proposal=arc.proposal)
    options = WavelengthOptions(library_lamp=params.get("lamp") or None)
    science_w, arc_w = steps.calibrate_wavelength(Path(extracted.full_path), arc_1d.path, out_dir,
                                                  original=Path(raw.full_path), target=extracted.target,
                                                  options=options)
    used = {"arc": _used(arc, arc_why), "lamp": science_w.record.get("library_lamp")}
    row = add_product(science_w, parent=extracted, original=raw, template=extracted, proposal=extracted.proposal,
                      calibrations=used)
    add_product(arc_w, parent=arc_1d_row, original=arc_raw, template=arc, proposal=arc.proposal,
                calibrations=used)
    raw.calibrated_at = _now()
    set_state(raw, "done", "")
    log_event("wavelength_calibrated", f"{row.file_name}: {science_w.record['lines_used']} lines, "
              f"RMS {science_w.record['rms_angstrom']:.3f} A.", proposal_id=raw.proposal_id, file_id=row.id,
              commit=False)
    db.session.commit()
    return {"calibrated": row.id, "rms_angstrom": science_w.record["rms_angstrom"],
            "lines_used": science_w.record["lines_used"]}


# --- Re-run ---------------------------------------------------------------------------------------

@task("rerun")
def rerun(job) -> dict:
    """Make a product again with the proposal's current settings (a new version; the old one stays)."""
    product = db.session.get(File, job.file_id)
    used = product.calibrations or {}
    arc = (used.get("arc") or {}).get("id")
    if product.data_type in (2, 3, 4) and product.parent_file_id is None:
        raise JobRefused(f"The file {product.file_name} was made from has been deleted.")
    if product.data_type == 1:
        first_input = db.session.scalar(sa.select(File).where(
            File.data_type == 0, File.file_name.in_(used.get("inputs") or [""]), File.date == product.date))
        if first_input is None:
            raise JobRefused(f"The frames {product.file_name} was made of are no longer in the catalogue.")
        follow = enqueue("calibrations", file_id=first_input.id, params={"force": True})
    elif product.data_type == 2:
        follow = enqueue("reduce", file_id=product.parent_file_id, params={"force": True})
    elif product.data_type == 3 and product.obstype not in ARC_OBSTYPES:
        follow = enqueue("extract", file_id=product.parent_file_id, params={"arc_id": arc})
    elif product.data_type == 4 and product.obstype not in ARC_OBSTYPES:
        follow = enqueue("calibrate_wavelength", file_id=product.parent_file_id,
                         params={"arc_id": arc, "lamp": used.get("lamp")})
    else:
        raise JobRefused(f"{product.file_name} is re-made with the science frame it belongs to.")
    return {"queued": follow.id, "kind": follow.kind}
