"""The Data page's callback functions and queries: index paging, state text, lineage tabs,
actions, comments, deletion, and the permission matrix (a stranger sees nothing).

Also holds the builders the browser tests share: a synthetic night's lineage (raw science
and arc, reduced, extracted and wavelength-calibrated products, master calibrations) as
FITS files plus catalogue rows created directly with the model.
"""
from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import pytest
from astropy.io import fits

# --------------------------------------------------------------------------- builders (shared)

_PRODUCTS_CACHE: dict[str, Path] = {}


def synthetic_products(folder: Path) -> dict[str, Path]:
    """FITS files of one science frame's lineage and its arc, written once per session.

    The 1D products are made by the real blocks where they exist (pipeline.wavelength on
    a synthetic arc drawn line by line), so the calibrated spectrum is a real one.
    """
    if _PRODUCTS_CACHE and all(p.exists() for p in _PRODUCTS_CACHE.values()):
        return dict(_PRODUCTS_CACHE)
    from pipeline import simulate, wavelength

    folder.mkdir(parents=True, exist_ok=True)
    arc = simulate.make_arc("400_M2", shift_px=0.37, scale=1.0008, seed=11,
                            date_obs="2026-11-27T23:50:00.000")
    science = simulate.make_science("400_M2", shift_px=0.37, scale=1.0008, seed=12,
                                    date_obs="2026-11-27T23:40:00.000")
    bias = simulate.make_bias("400_M2", seed=13)
    paths = {
        "raw_science": folder / "0014_NGC5128_400_M2_27-11-2026.fits",
        "raw_arc": folder / "0015_HgArNe_400_M2_27-11-2026.fits",
        "raw_bias": folder / "0001_bias_2x2_27-11-2026.fits",
    }
    fits.PrimaryHDU(science.data, science.header).writeto(paths["raw_science"], overwrite=True)
    fits.PrimaryHDU(arc.data, arc.header).writeto(paths["raw_arc"], overwrite=True)
    fits.PrimaryHDU(bias.data, bias.header).writeto(paths["raw_bias"], overwrite=True)

    def reduced(frame):
        data = simulate.trim(frame.data.astype(np.float32)) - np.float32(simulate.BIAS_LEVEL)
        header = frame.header.copy()
        header["GSP_PREF"] = "zst_"
        return data, header

    science_2d, science_header = reduced(science)
    arc_2d, arc_header = reduced(arc)
    paths["reduced_science"] = folder / "zst_0014_NGC5128_400_M2_27-11-2026.fits"
    paths["reduced_arc"] = folder / "czst_0015_HgArNe_400_M2_27-11-2026.fits"
    fits.PrimaryHDU(science_2d, science_header).writeto(paths["reduced_science"], overwrite=True)
    fits.PrimaryHDU(arc_2d, arc_header).writeto(paths["reduced_arc"], overwrite=True)

    trace = np.polynomial.Polynomial(science.truth["targets"][0]["trace"])
    centre = int(round(trace(1000)))
    sky = np.median(science_2d[centre + 40:centre + 80], axis=0)
    science_1d = science_2d[centre - 6:centre + 7].sum(axis=0) - 13 * sky
    science_sigma = np.sqrt(np.abs(science_1d) * simulate.GAIN + 13 * simulate.RDNOISE ** 2) / simulate.GAIN
    arc_1d = arc_2d[centre - 6:centre + 7].sum(axis=0)
    for name, flux, sigma, header in (("extracted_science", science_1d, science_sigma, science_header),
                                      ("extracted_arc", arc_1d, np.sqrt(np.abs(arc_1d)), arc_header)):
        path = folder / ("e" + ("zst_0014_NGC5128" if "science" in name else "czst_0015_HgArNe")
                         + "_400_M2_27-11-2026_target_1.fits")
        uncert = fits.ImageHDU(sigma.astype(np.float32), name="UNCERT")
        uncert.header["UTYPE"] = "StdDevUncertainty"
        fits.HDUList([fits.PrimaryHDU(flux.astype(np.float32), header), uncert]).writeto(path, overwrite=True)
        paths[name] = path

    spectrum, record = wavelength.wavelength_calibrate(science_1d, science_header, arc_1d, arc_header,
                                                       science_uncertainty=science_sigma)
    paths["calibrated_science"] = wavelength.write_product(
        folder / "wezst_0014_NGC5128_400_M2_27-11-2026_target_1.fits", spectrum, science_header, record=record)
    arc_spectrum, _ = wavelength.apply_solution(arc_1d, spectrum.solution, np.sqrt(np.abs(arc_1d)))
    paths["calibrated_arc"] = wavelength.write_product(
        folder / "weczst_0015_HgArNe_400_M2_27-11-2026_target_1.fits", arc_spectrum, arc_header, record=record)

    master = np.full((947, 2030), simulate.BIAS_LEVEL, dtype=np.float32)
    paths["master_bias"] = folder / "master_bias_Red_400_M2_2x2_27-11-2026.fits"
    master_header = bias.header.copy()
    master_header["OBSTYPE"] = "BIAS"
    fits.PrimaryHDU(master, master_header).writeto(paths["master_bias"], overwrite=True)
    _PRODUCTS_CACHE.update(paths)
    return dict(paths)


def add_file(path: Path, *, data_type: int = 0, parent=None, original=None, proposal=None, target=None,
             state: str = "done", state_reason: str = "", **overrides):
    """A catalogue row for ``path`` with the fields classify() reads from its header."""
    from db import db
    from db.models import File
    from pipeline import headers

    header = fits.getheader(path)
    fields = headers.classify(header, path.name)
    file = File(file_name=path.name, directory_name=str(path.parent), full_path=str(path), data_type=data_type,
                parent_file_id=getattr(parent, "id", None), original_file_id=getattr(original, "id", None),
                proposal_id=getattr(proposal, "id", None), target=target, state=state, state_reason=state_reason,
                ingested_at=datetime.now(timezone.utc))
    for name in ("obstype", "technique", "object", "instconf", "grating", "wavmode", "filter", "filter_2",
                 "slit", "roi", "date"):
        setattr(file, name, fields[name] or "")
    for name in ("cam_targ", "grt_targ", "obsra", "obsdec", "gain", "rdnoise"):
        value = fields[name]
        setattr(file, name, "" if value is None else f"{value:g}" if isinstance(value, float) else str(value))
    file.saturation_value = fields["saturation_value"]
    file.exptime = fields["exptime"]
    file.date_obs = fields["date_obs"]
    if hasattr(File, "classification"):
        file.classification = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()}
    for name, value in overrides.items():
        setattr(file, name, value)
    db.session.add(file)
    db.session.flush()
    return file


def build_night(folder: Path, source: Path, proposal, other_proposal=None) -> dict:
    """Copy the synthetic products into ``folder`` and catalogue the whole lineage."""
    from db import db

    products = synthetic_products(source)
    raw_dir, processed_dir = folder / "raw" / "20261127", folder / "processed" / "20261127"
    raw_dir.mkdir(parents=True, exist_ok=True)
    processed_dir.mkdir(parents=True, exist_ok=True)
    local = {}
    for key, path in products.items():
        target_dir = raw_dir if key.startswith("raw_") else processed_dir
        local[key] = target_dir / path.name
        shutil.copyfile(path, local[key])
    rows = {}
    rows["raw_bias"] = add_file(local["raw_bias"], proposal=proposal, state="done")
    rows["raw_science"] = add_file(local["raw_science"], proposal=proposal)
    rows["raw_arc"] = add_file(local["raw_arc"], proposal=proposal)
    rows["master_bias"] = add_file(local["master_bias"], data_type=1, proposal=None)
    for kind in ("science", "arc"):
        raw = rows[f"raw_{kind}"]
        rows[f"reduced_{kind}"] = add_file(local[f"reduced_{kind}"], data_type=2, parent=raw, original=raw,
                                           proposal=proposal)
        rows[f"extracted_{kind}"] = add_file(local[f"extracted_{kind}"], data_type=3,
                                             parent=rows[f"reduced_{kind}"], original=raw, proposal=proposal,
                                             target=1)
        rows[f"calibrated_{kind}"] = add_file(local[f"calibrated_{kind}"], data_type=4,
                                              parent=rows[f"extracted_{kind}"], original=raw, proposal=proposal,
                                              target=1)
    if other_proposal is not None:
        secret = raw_dir / "0099_SECRET_400_M2_27-11-2026.fits"
        shutil.copyfile(local["raw_science"], secret)
        rows["secret"] = add_file(secret, proposal=other_proposal, object="SECRET")
    db.session.commit()
    return rows


def add_raw_rows(proposal, count: int, folder: Path, *, start: int = 100, template: Path | None = None):
    """Many light raw rows (no FITS needed unless opened) for paging tests."""
    from db import db
    from db.models import File

    rows = []
    base = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)
    for number in range(start, start + count):
        name = f"{number:04d}_NGC1365_400_M2_27-11-2026.fits"
        rows.append(File(file_name=name, directory_name=str(folder), full_path=str(folder / name),
                         data_type=0, proposal_id=proposal.id, obstype="SPECTRUM", technique="Spectroscopy",
                         object="NGC1365", instconf="Red", grating="400_SYZY", wavmode="400_M2",
                         filter="NO_FILTER", filter_2="GG455", slit="1.0_LONG_SLIT", roi="Spectroscopic 2x2",
                         date="2026-11-27", date_obs=base + timedelta(minutes=number), state="ingested"))
    db.session.add_all(rows)
    db.session.commit()
    return rows


# --------------------------------------------------------------------------- tests

@pytest.fixture
def night(app, people, tmp_path, tmp_path_factory):
    source = Path(str(tmp_path_factory.getbasetemp())) / "gsp-synthetic-products"
    return build_night(Path(app.config["DATA_DIR"]), source, people["proposal"], people["other_proposal"])


@pytest.fixture
def login(app):
    """Run page code as a user (flask-login's current_user in a test request context)."""
    from flask_login import login_user

    contexts = []

    def as_user(user):
        context = app.test_request_context("/")
        context.push()
        contexts.append(context)
        login_user(user)
        return user

    yield as_user
    for context in reversed(contexts):
        context.pop()


def texts(component) -> str:
    """All the text inside a Dash component tree (for assertions)."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(texts(child) for child in component)
    parts = [texts(getattr(component, "children", None))]
    for attr in ("label", "title"):
        value = getattr(component, attr, None) if attr in getattr(component, "_prop_names", ()) else None
        if isinstance(value, str):
            parts.append(value)
    return " ".join(p for p in parts if p)


def find_all(component, predicate) -> list:
    found = []
    if isinstance(component, (list, tuple)):
        for child in component:
            found += find_all(child, predicate)
        return found
    if component is None or isinstance(component, (str, int, float)):
        return found
    if predicate(component):
        found.append(component)
    found += find_all(getattr(component, "children", None), predicate)
    return found


def ids_of(component, kind: str) -> list:
    return [c.id for c in find_all(component, lambda c: isinstance(getattr(c, "id", None), dict)
                                   and c.id.get("type") == kind)]


def test_observed_index_pages_twenty_newest_first_with_count(app, people, tmp_path):
    from components import ids
    from components.data_view import observed_view
    from components.file_index import move_page

    rows = add_raw_rows(people["proposal"], 45, tmp_path)
    listing, count, page_text = observed_view(people["users"]["pi"], 1, None)
    shown = ids_of(listing, ids.DATA_PICK)
    assert count == "45" and page_text == "Page 1 of 3"
    assert [i["index"] for i in shown] == [r.id for r in reversed(rows)][:20]
    listing, _, page_text = observed_view(people["users"]["pi"], 3, None)
    assert len(ids_of(listing, ids.DATA_PICK)) == 5 and page_text == "Page 3 of 3"
    # a page beyond the end shows the last one; the pager stays within 1..pages
    _, _, page_text = observed_view(people["users"]["pi"], 99, None)
    assert page_text == "Page 3 of 3"
    assert [move_page(m, 2, 3) for m in ("first", "prev", "next", "last")] == [1, 1, 3, 3]
    assert move_page("go", 1, 3, "2") == 2 and move_page("go", 1, 3, 50) == 3 and move_page("go", 2, 3, "x") == 2
    # the collaborator sees the same; the stranger sees none of it
    assert observed_view(people["users"]["collab"], 1, None)[1] == "45"
    listing, count, _ = observed_view(people["users"]["stranger"], 1, None)
    assert count == "0" and ids_of(listing, ids.DATA_PICK) == []


def test_state_text_and_badges_say_what_happened(app, people, tmp_path):
    from components.data_view import observed_view
    from components.file_index import state_badge, state_text
    from db import db

    rows = add_raw_rows(people["proposal"], 4, tmp_path)
    for row, (state, reason) in zip(rows, [("queued", ""), ("running", ""), ("done", ""),
                                           ("failed", "no master bias for Red 2x2")]):
        row.state, row.state_reason = state, reason
    db.session.commit()
    assert state_text(rows[3]) == "failed: no master bias for Red 2x2"
    assert state_text(rows[0]) == "queued" and state_text(rows[2]) == "done"
    assert state_badge(rows[1]).title == "running"
    text = texts(observed_view(people["users"]["pi"], 1, None)[0])
    for words in ("queued", "running", "done", "failed", "no master bias for Red 2x2"):
        assert words in text


def test_lineage_tabs_walk_from_raw_to_calibrated(app, people, night, login):
    from auth.queries import lineage
    from components import ids
    from components.data_view import calibrations_view
    from components.file_index import lineage_tabs

    pi = login(people["users"]["pi"])
    family = lineage(pi, night["calibrated_science"])
    assert {f.id for f in family} == {night[k].id for k in ("raw_science", "reduced_science", "extracted_science",
                                                            "calibrated_science")}
    tabs = lineage_tabs(family, night["raw_science"].id, ids.DATA_PICK)
    labels = [span.children[0] for span in find_all(tabs, lambda c: type(c).__name__ == "Span"
                                                     and getattr(c, "title", None))]
    assert labels == ["Wavelength Calibrated \u00b7 target 1", "Extracted \u00b7 target 1", "Reduced",
                      "Observed Raw"]
    active = find_all(tabs, lambda c: type(c).__name__ == "NavLink" and c.active)
    assert [a.id["index"] for a in active] == [night["raw_science"].id]
    # master calibrations: visible to everyone, even the stranger
    for name in ("pi", "stranger"):
        listing, count, _ = calibrations_view(people["users"][name], 1, None)
        assert count == "1" and night["master_bias"].file_name in texts(listing)


def test_follow_shows_a_frames_most_calibrated_file(app, people, night):
    """flux > wavelength > extracted > reduced > raw; a standard's sensitivity function (a calibration) is not
    the frame's spectrum; of two versions the newest; nothing the user may not see."""
    from auth.queries import most_calibrated_id
    from components.data_view import followed
    from db import db

    pi, stranger = people["users"]["pi"], people["users"]["stranger"]
    raw = night["raw_science"]
    assert most_calibrated_id(pi, raw.id) == night["calibrated_science"].id
    assert most_calibrated_id(pi, night["raw_bias"].id) == night["raw_bias"].id  # nothing made of it: itself
    assert most_calibrated_id(stranger, raw.id) is None
    common = {"parent": night["calibrated_science"], "original": raw, "proposal": people["proposal"], "target": 1}
    path = Path(night["calibrated_science"].full_path)
    add_file(path, data_type=1, full_path=str(path.with_name("sens_" + path.name)), **common)
    db.session.commit()
    assert most_calibrated_id(pi, raw.id) == night["calibrated_science"].id
    newer = add_file(path, data_type=4, full_path=str(path.with_name("v2_" + path.name)), version=2, **common)
    db.session.commit()
    assert most_calibrated_id(pi, raw.id) == newer.id
    fluxed = add_file(path, data_type=5, full_path=str(path.with_name("f" + path.name)), **common)
    db.session.commit()
    assert most_calibrated_id(pi, raw.id) == fluxed.id
    assert followed(pi) == {"frame": night["raw_arc"].id, "file": night["calibrated_arc"].id}  # the newest frame


def test_while_a_frame_runs_follow_shows_a_targets_last_spectrum(app, people, night):
    """While a frame's chain runs Follow shows its raw frame, then its first target's most calibrated spectrum
    once no job that could make a better one of it is queued or running, without waiting for the other targets'
    jobs (nor showing theirs on the way); anything else when the chain ends."""
    from components.data_view import followed
    from db import db
    from db.models import Job

    pi, proposal = people["users"]["pi"], people["proposal"]
    source = Path(night["raw_science"].full_path)

    def product(name, data_type, parent, target=None):
        path = source.with_name(name)
        shutil.copyfile(source, path)
        return add_file(path, data_type=data_type, parent=parent, original=raw, proposal=proposal, target=target)

    def job(kind, file, state="queued"):
        db.session.add(Job(kind=kind, file_id=file.id, state=state))

    path = source.with_name("0099_frame.fits")
    shutil.copyfile(source, path)
    raw = add_file(path, proposal=proposal, state="running")
    db.session.flush()
    reduced = product("zst_0099.fits", 2, raw)
    db.session.flush()
    job("extract", reduced)
    db.session.commit()
    assert followed(pi) == {"frame": raw.id, "file": raw.id}
    first, second = (product(f"ezst_0099_target_{n}.fits", 3, reduced, target=n) for n in (1, 2))
    db.session.execute(sa.update(Job).values(state="done"))
    db.session.flush()
    job("calibrate_wavelength", first)
    job("calibrate_wavelength", second)
    db.session.commit()
    assert followed(pi) == {"frame": raw.id, "file": raw.id}  # both targets' spectra are on their way
    product("wezst_0099_target_2.fits", 4, second, target=2)
    db.session.execute(sa.update(Job).where(Job.file_id == second.id).values(state="done"))
    db.session.commit()
    assert followed(pi) == {"frame": raw.id, "file": raw.id}  # the first target's is still on its way
    calibrated = product("wezst_0099_target_1.fits", 4, first, target=1)
    db.session.execute(sa.update(Job).where(Job.file_id == first.id).values(state="done"))
    db.session.commit()
    assert followed(pi) == {"frame": raw.id, "file": calibrated.id}  # target 1's last
    raw.state = "done"
    db.session.commit()
    assert followed(pi) == {"frame": raw.id, "file": calibrated.id}


def test_follow_moves_on_unless_the_user_picked_another_file():
    from callbacks.data.selection import follow_step

    raw, reduced, spectrum = {"frame": 7, "file": 7}, {"frame": 7, "file": 8}, {"frame": 7, "file": 9}
    other = {"frame": 10, "file": 10}
    assert follow_step(reduced, raw, True, 7) == (8, reduced)  # still on what Follow showed: the better product
    assert follow_step(spectrum, reduced, True, 7) == (None, spectrum)  # the user went back to the raw tab
    assert follow_step(other, spectrum, True, 7) == (10, other)  # a new frame: shown at once
    assert follow_step(other, spectrum, False, 9) == (None, other)  # Follow off
    assert follow_step(reduced, None, True, None) == (None, reduced)  # nothing known yet
    assert follow_step(raw, raw, True, 7) == (None, None)  # nothing changed


def test_actions_fit_the_file_and_permissions(app, people, night, login):
    from callbacks.data.actions import action_buttons, available_actions
    from callbacks.data.delete import can_delete
    from components import ids

    pi = people["users"]["pi"]
    kinds = lambda f, u=pi: [a["kind"] for a in available_actions(u, f)]  # noqa: E731
    assert kinds(night["raw_science"]) == ["reduce"]
    assert kinds(night["raw_arc"]) == ["reduce"]
    assert kinds(night["raw_bias"]) == ["calibrations"]
    extract = available_actions(pi, night["reduced_science"])[0]
    assert extract["kind"] == "extract"
    assert [o["value"] for o in extract["inputs"][0]["options"]] == ["auto", str(night["reduced_arc"].id)]
    calibrate = available_actions(pi, night["extracted_science"])[0]
    assert calibrate["kind"] == "calibrate_wavelength"
    arc_input, lamp_input = calibrate["inputs"]
    assert [o["value"] for o in arc_input["options"]] == ["auto", str(night["reduced_arc"].id)]
    lamps = [o["value"] for o in lamp_input["options"]]
    assert lamps[0] == "auto" and any("400" in name and name.endswith(".fits") for name in lamps[1:])
    # arc products are re-made with their science frame: no re-run button there
    assert kinds(night["calibrated_arc"]) == [] and kinds(night["extracted_arc"]) == []
    assert kinds(night["calibrated_science"]) == ["calibrate_flux", "rerun"]
    # raw files are never deletable; products are, for members and staff
    assert not can_delete(pi, night["raw_science"])
    assert ids_of(action_buttons(pi, night["raw_science"]), ids.DATA_DELETE) == []
    assert ids_of(action_buttons(pi, night["reduced_science"]), ids.DATA_DELETE) == \
        [{"type": ids.DATA_DELETE, "index": night["reduced_science"].id}]
    assert can_delete(people["users"]["collab"], night["calibrated_science"])
    assert can_delete(people["users"]["staff"], night["calibrated_science"])
    # a master calibration without a proposal: everyone sees it, only staff change it
    assert available_actions(pi, night["master_bias"]) == [] and not can_delete(pi, night["master_bias"])
    assert kinds(night["master_bias"], people["users"]["staff"]) == ["rerun"]


def test_enqueue_action_checks_permission_and_records_job(app, people, night, login):
    from callbacks.data.actions import enqueue_action
    from db.models import Job
    from live import queue as jobs

    pi = login(people["users"]["pi"])
    calls = []
    from callbacks.data.actions import available_actions
    original = jobs.TASKS.copy()
    for kind in ("reduce", "extract", "calibrate_wavelength", "calibrations"):
        jobs.TASKS[kind] = lambda job, kind=kind: calls.append((kind, job.file_id, job.params)) or {"ok": True}
    try:
        job = enqueue_action(pi, night["reduced_science"], "extract", {"arc_id": str(night["reduced_arc"].id)})
        assert isinstance(job, Job) and job.kind == "extract" and job.params == {"arc_id": night["reduced_arc"].id}
        assert enqueue_action(pi, night["reduced_science"], "extract", {"arc_id": "auto"}).params == \
            {"arc_id": None}
        with pytest.raises(ValueError, match="arc"):
            enqueue_action(pi, night["reduced_science"], "extract", {"arc_id": "999999"})
        with pytest.raises(PermissionError):
            enqueue_action(pi, night["raw_science"], "extract")  # not an action of raw files
        lamp = available_actions(pi, night["extracted_science"])[0]["inputs"][1]["options"][1]["value"]
        job = enqueue_action(pi, night["extracted_science"], "calibrate_wavelength",
                             {"arc_id": "auto", "lamp": lamp})
        assert job.params == {"arc_id": None, "lamp": lamp}
        job = enqueue_action(pi, night["raw_science"], "reduce")
        assert job.params == {"force": True}
        from callbacks.data.actions import job_message

        job.state, job.reason = "failed", "ValueError: no master bias"
        message = job_message(job, "0014.fits")
        assert texts(message).strip() == "Reduce of 0014.fits: failed \u2014 ValueError: no master bias"
        with pytest.raises(PermissionError):
            enqueue_action(people["users"]["stranger"], night["raw_science"], "reduce")
    finally:
        jobs.TASKS.clear()
        jobs.TASKS.update(original)


def test_delete_product_removes_row_and_file_never_raw(app, people, night, login):
    from callbacks.data.delete import delete_product
    from db import db
    from db.models import File

    pi = login(people["users"]["pi"])
    product = night["calibrated_science"]
    path, product_id = Path(product.full_path), product.id
    assert path.exists()
    assert delete_product(pi, product) == path.name
    assert db.session.get(File, product_id) is None and not path.exists()
    with pytest.raises(PermissionError):
        delete_product(pi, night["raw_science"])
    assert Path(night["raw_science"].full_path).exists()
    with pytest.raises(PermissionError):
        delete_product(people["users"]["stranger"], night["reduced_science"])


def test_comments_list_and_add(app, people, night, login):
    from auth import queries

    pi = login(people["users"]["pi"])
    queries.add_comment(pi, night["raw_science"], "  Seeing 0.8\" at 23:40, clouds coming  ")
    queries.add_comment(people["users"]["collab"], night["raw_science"], "Take another exposure?")
    comments = queries.comments_for(pi, night["raw_science"])
    assert [c.text for c in comments] == ["Seeing 0.8\" at 23:40, clouds coming", "Take another exposure?"]
    with pytest.raises(queries.QueryError):
        queries.add_comment(pi, night["raw_science"], "   ")
    with pytest.raises(queries.QueryError):
        queries.add_comment(people["users"]["stranger"], night["raw_science"], "hello")
    assert queries.comments_for(people["users"]["stranger"], night["raw_science"]) == []


def test_stranger_sees_nothing_and_invisible_id_is_not_found(app, people, night, login):
    from auth import queries
    from components.data_view import followed, observed_view, visible_file
    from pages.data import initial_selection

    stranger = people["users"]["stranger"]
    assert visible_file(stranger, night["raw_science"].id) is None
    assert visible_file(stranger, night["calibrated_science"].id) is None
    assert visible_file(stranger, night["secret"].id) is not None  # their own file
    _listing, count, _ = observed_view(stranger, 1, None)
    assert count == "1"
    following = followed(stranger)
    assert following == {"frame": night["secret"].id, "file": night["secret"].id}
    assert initial_selection(None, following) == night["secret"].id
    asked = initial_selection(str(night["raw_science"].id), following)
    assert asked == night["raw_science"].id and visible_file(stranger, asked) is None  # asked for, not found
    assert initial_selection("abc", following) == "abc" and visible_file(stranger, "abc") is None
    # the pi does not see the stranger's file either
    assert visible_file(people["users"]["pi"], night["secret"].id) is None
    assert queries.distinct_values(stranger, ("obstype",))["obstype"] == ["BIAS", "SPECTRUM"]  # + the master
    assert queries.proposal_choices(stranger) == ["SOAR2026B-002"]


def log_in(client, username):
    """Sign in through the login form, as a browser does."""
    import re

    from tests.conftest import PASSWORD

    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code in (302, 303)


def test_the_change_feed_says_where_follow_goes(app, people, night, client):
    """GET /data/changes (the Data page's wait for a change): the stamp, and once it moved past the page's
    ``after``, where Follow goes from the page's state; only the user's own frames; bad input is a 400."""
    from components.data_view import followed
    from db import db
    from tests.conftest import log_out

    pi = people["users"]["pi"]
    log_in(client, "pi")
    now = followed(pi)
    stamp = client.get("/data/changes").json["stamp"]
    assert client.get(f"/data/changes?after={stamp}&wait=0.1").json == {"stamp": stamp}
    shown = {"frame": night["raw_science"].id, "file": night["calibrated_science"].id}
    query = f"after=older&following=1&shown={json.dumps(shown)}&selected={shown['file']}&page=3"
    assert client.get(f"/data/changes?{query}").json == {"stamp": stamp, "select": now["file"], "followed": now,
                                                          "page": 1, "expecting": False}
    raw_shown = {"frame": now["frame"], "file": now["frame"]}  # Follow showed the raw frame; the user picked a bias
    picked = f"after=older&following=1&shown={json.dumps(raw_shown)}&selected={night['raw_bias'].id}&page=1"
    assert client.get(f"/data/changes?{picked}").json == {"stamp": stamp, "followed": now,
                                                           "expecting": False}  # the user's pick stays
    # a new frame whose chain runs: shown at once, raw, and its spectra expected
    path = Path(night["raw_science"].full_path).with_name("0099_running.fits")
    shutil.copyfile(night["raw_science"].full_path, path)
    running = add_file(path, proposal=people["proposal"], state="running")
    db.session.commit()
    answer = client.get(f"/data/changes?{query}").json
    assert answer == {"stamp": answer["stamp"], "select": running.id, "followed": {"frame": running.id,
                      "file": running.id}, "page": 1, "expecting": True}
    for bad in ("wait=soon", "wait=31", "shown=[1]", "shown={", "page=two"):
        answer = client.get(f"/data/changes?after=older&{bad}")
        assert answer.status_code == 400 and answer.json["detail"], bad
    log_out(client)
    log_in(client, "stranger")
    theirs = followed(people["users"]["stranger"])  # the stranger's own frame, never one of the pi's
    assert theirs["frame"] != now["frame"]
    assert client.get(f"/data/changes?{query}").json == {"stamp": client.get("/data/changes").json["stamp"],
                                                          "select": theirs["file"], "followed": theirs, "page": 1,
                                                          "expecting": False}


def test_data_callbacks_through_dash(dash_app, app, people, night, client):
    """The registered callbacks answer through Dash's endpoint (login, then one XHR per callback)."""
    from components import ids
    from tests.conftest import log_out

    log_in(client, "pi")
    selected = night["calibrated_science"].id
    main_outputs = (f"..{ids.DATA_STATE}.children...{ids.DATA_TABS}.children..."
                    f"{ids.DATA_MODIFIED}.children...{ids.DATA_DOWNLOAD}.href...{ids.DATA_HEADER_FILE}.children..."
                    f"{ids.DATA_NOT_FOUND}.children...{ids.DATA_MAIN}.hidden...{ids.DATA_ROOT}.data..."
                    f"{ids.DATA_PROVENANCE}.children...{ids.DATA_EXPORT}.children...{ids.DATA_CARD_DIGEST}.data..")

    def post(output, inputs, state=()):
        body = {"output": output, "outputs": _outputs(output), "inputs": inputs, "state": list(state),
                "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs]}
        return client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")

    def call(output, inputs, state=()):
        answer = post(output, inputs, state)
        assert answer.status_code == 200, answer.data[:500]
        return answer.get_json()["response"]

    def card_shown(digest):
        return [{"id": ids.DATA_CARD_DIGEST, "property": "data", "value": digest}]

    def _outputs(output):
        if not output.startswith(".."):
            return {"id": output.rsplit(".", 1)[0], "property": output.rsplit(".", 1)[1]}
        parts = output.strip(".").split("...")
        return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts if p]

    card_inputs = [{"id": ids.DATA_DRAWN, "property": "data", "value": selected},
                   {"id": ids.DATA_STAMP, "property": "data", "value": "x"}]
    out = call(main_outputs, card_inputs, card_shown(None))
    assert out[ids.DATA_HEADER_FILE]["children"] == night["calibrated_science"].file_name
    assert out[ids.DATA_DOWNLOAD]["href"] == f"/api/files/{selected}/download/"
    assert "Last Modified" in out[ids.DATA_MODIFIED]["children"]
    assert out[ids.DATA_ROOT]["data"] == {"file": selected, "root": night["raw_science"].id}
    # asked again after a change elsewhere: the card the page shows is not sent again
    card_inputs[1]["value"] = "y"
    assert post(main_outputs, card_inputs, card_shown(out[ids.DATA_CARD_DIGEST]["data"])).status_code == 204
    viewer_inputs = [{"id": ids.DATA_SELECTED, "property": "data", "value": selected},
                     {"id": ids.DATA_ADV_FORMAT, "property": "value", "value": "static"},
                     {"id": ids.DATA_ADV_COLORMAP, "property": "value", "value": "viridis"},
                     {"id": ids.DATA_ADV_SCALE, "property": "value", "value": "zscale"},
                     {"id": ids.DATA_ADV_ZMIN, "property": "value", "value": None},
                     {"id": ids.DATA_ADV_ZMAX, "property": "value", "value": None},
                     {"id": ids.DATA_ADV_PLOW, "property": "value", "value": 1},
                     {"id": ids.DATA_ADV_PHIGH, "property": "value", "value": 99.5},
                     {"id": ids.DATA_ADV_SATURATED, "property": "value", "value": []},
                     {"id": ids.DATA_ADV_TITLE, "property": "value", "value": ["on"]},
                     {"id": ids.DATA_ADV_OVERLAYS, "property": "value", "value": ["sky"]},
                     {"id": ids.DATA_ADV_REDSHIFT, "property": "value", "value": 0},
                     {"id": ids.DATA_COMPARE, "property": "value", "value": []}]
    viewer_outputs = (f"..{ids.DATA_GRAPH}.figure...{ids.DATA_GRAPH}.config...{ids.DATA_GRAPH_BOX}.hidden..."
                      f"{ids.DATA_VIEWER_INSTEAD}.children...{ids.DATA_DRAWN}.data...{ids.DATA_COMPARE}.value..."
                      f"{ids.DATA_TITLE}.children..")
    drawn_before = [{"id": ids.DATA_DRAWN, "property": "data", "value": None}]
    # static: the PNG shows and the graph is hidden, its figure left as it was; the file's other panels follow
    out = call(viewer_outputs, viewer_inputs, drawn_before)
    assert set(out) == {ids.DATA_GRAPH_BOX, ids.DATA_VIEWER_INSTEAD, ids.DATA_DRAWN, ids.DATA_TITLE}
    assert out[ids.DATA_DRAWN]["data"] == selected
    assert out[ids.DATA_TITLE]["children"] == night["calibrated_science"].file_name
    assert out[ids.DATA_GRAPH_BOX]["hidden"] is True
    image = out[ids.DATA_VIEWER_INSTEAD]["children"]
    assert image["type"] == "Img" and image["props"]["src"].startswith("data:image/png;base64,")
    viewer_inputs[1]["value"] = "interactive"
    drawn_before[0]["value"] = selected  # the same file drawn another way: its other panels are not asked again
    out = call(viewer_outputs, viewer_inputs, drawn_before)
    assert ids.DATA_DRAWN not in out and ids.DATA_TITLE not in out
    assert out[ids.DATA_GRAPH_BOX]["hidden"] is False and out[ids.DATA_VIEWER_INSTEAD]["children"] is None
    assert out[ids.DATA_GRAPH]["figure"]["layout"]["xaxis"]["title"]["text"] == "Wavelength (\u00c5)"
    assert out[ids.DATA_GRAPH]["config"]["toImageButtonOptions"] == {
        "filename": Path(night["calibrated_science"].file_name).stem}
    alone = out[ids.DATA_GRAPH]["figure"]["data"]
    # a new file is drawn alone, and the compare choices (the previous file's) are cleared
    viewer_inputs[-1]["value"] = [night["calibrated_arc"].id]
    drawn_before[0]["value"] = night["calibrated_arc"].id
    out = call(viewer_outputs, viewer_inputs, drawn_before)
    assert out[ids.DATA_COMPARE]["value"] == [] and out[ids.DATA_DRAWN]["data"] == selected
    assert [trace["name"] for trace in out[ids.DATA_GRAPH]["figure"]["data"]] == [trace["name"] for trace in alone]
    viewer_inputs[-1]["value"] = []
    # the stranger, logged in, gets "not found" for the same id
    log_out(client)
    log_in(client, "stranger")
    out = call(main_outputs, card_inputs, card_shown(None))
    assert out[ids.DATA_MAIN]["hidden"] is True
    drawn_before[0]["value"] = None
    out = call(viewer_outputs, viewer_inputs, drawn_before)
    assert out[ids.DATA_GRAPH_BOX]["hidden"] is True and out[ids.DATA_VIEWER_INSTEAD]["children"] is None
    assert out[ids.DATA_TITLE]["children"] == "File not found"


def test_a_waiting_page_reads_its_users_stamp_only_when_the_catalogue_changed(app, people, tmp_path, monkeypatch):
    """A page waiting for a change (live.changes.stamp_after, behind GET /data/changes) costs the catalogue-wide
    stamp's two index lookups, read by one thread for all waiting pages; its user's own stamp is read again only
    when that one moved, and the wait goes on until a file the user may see changed."""
    import threading

    import live.changes as changes
    from db import db
    from db.models import User

    reads = []
    user_stamp = changes.change_stamp
    monkeypatch.setattr(changes, "change_stamp", lambda user: reads.append(user.username) or user_stamp(user))
    pi = people["users"]["pi"]
    add_raw_rows(people["proposal"], 2, tmp_path)
    before = user_stamp(pi)
    answers = []

    def wait():
        with app.app_context():
            answers.append(changes.stamp_after(db.session.get(User, pi.id), before, 10))

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.5)
    assert reads == ["pi"]  # then only the catalogue-wide stamp, every CHECK_S
    add_raw_rows(people["other_proposal"], 1, tmp_path, start=500)  # a file the pi may not see
    time.sleep(0.5)
    assert reads == ["pi", "pi"] and waiting.is_alive()
    add_raw_rows(people["proposal"], 1, tmp_path, start=600)  # one the pi sees
    waiting.join(5)
    assert not waiting.is_alive() and reads == ["pi", "pi", "pi"]
    assert answers == [user_stamp(pi)] and answers[0] != before


def test_search_table_filters_paging_and_url_state(app, people, night, tmp_path):
    from callbacks.search import row_of, search_params, table_view
    from pages.search import filter_options, filters_from_query

    pi = people["users"]["pi"]
    add_raw_rows(people["proposal"], 60, tmp_path)
    rows, count, page_text, page = table_view(pi, {}, 1, 50)
    assert count == "70" and page_text == "Page 1 of 2" and len(rows) == 50 and page == 1
    assert set(rows[0]) >= {"id", "file_name", "proposal_id", "obstype", "wavmode", "filter", "filter_2", "grating",
                            "slit", "roi", "date", "type"}
    rows, _, page_text, page = table_view(pi, {}, 9, 50)  # beyond the end: the last page
    assert page == 2 and page_text == "Page 2 of 2" and len(rows) == 20
    comp, count, _, _ = table_view(pi, search_params({"obstype": "COMP", "filter": None}, "", []), 1, 50)
    assert count == "4" and {r["obstype"] for r in comp} == {"COMP"}
    assert {r["type"] for r in comp} == {"Raw", "Reduced", "Extracted", "Wavelength Calibrated"}
    hidden = search_params({}, "", ["1"])
    assert hidden == {"hide_raw_calibrations": "1"}
    names = {r["file_name"] for r in table_view(pi, hidden, 1, 100)[0]}
    assert night["raw_bias"].file_name not in names and night["master_bias"].file_name in names
    assert table_view(pi, search_params({"data_type": "4"}, " NGC5128 ", []), 1, 50)[1] == "1"
    assert row_of(night["master_bias"])["type"] == "Calibration" and row_of(night["master_bias"])["proposal_id"] == ""
    # the URL query round trip, and the choices come from what the user may see
    state = filters_from_query({"obstype": "COMP", "page": "3", "hide_raw_calibrations": "1", "bogus": "x"})
    assert state == {"obstype": "COMP", "page": 3, "hide_raw_calibrations": "1"}
    assert filters_from_query({"page": "abc"})["page"] == 1
    options = filter_options(pi)
    assert [o["value"] for o in options["obstype"]] == ["BIAS", "COMP", "SPECTRUM"]
    assert [o["value"] for o in options["proposal_id"]] == ["SOAR2026B-001"]
    stranger = filter_options(people["users"]["stranger"])
    assert [o["value"] for o in stranger["proposal_id"]] == ["SOAR2026B-002"]
    assert "NGC1365" not in str(stranger)


def test_the_plot_toolbar_offers_no_external_service(app, night):
    """The app runs offline behind the VPN: Plotly's "Edit in Chart Studio" / share button is gone."""
    from components.data_view import render_viewer

    config = render_viewer(night["calibrated_science"], "interactive", "gray", {}).config
    assert config["showSendToCloud"] is False and config["showEditInChartStudio"] is False
    assert "sendDataToCloud" in config["modeBarButtonsToRemove"]
    assert config["displaylogo"] is False


def test_job_visibility_follows_the_file(app, people, night):
    """A job is seen by staff, by whoever started it, and by those who may see its file: the Data page's job
    poll and GET /api/jobs/<id>/ both go through auth.permissions.get_visible_job."""
    from auth.permissions import get_visible_job
    from db import db
    from live.queue import enqueue

    job = enqueue("ping", file_id=night["raw_science"].id)
    db.session.commit()
    users = people["users"]
    seen = {name: get_visible_job(user, job.id) is not None for name, user in users.items()}
    assert seen == {"staff": True, "pi": True, "collab": True, "stranger": False}
    mine = enqueue("ping", user=users["stranger"])
    db.session.commit()
    assert get_visible_job(users["stranger"], mine.id) is not None and get_visible_job(users["pi"], mine.id) is None
