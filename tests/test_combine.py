"""Combined spectra, live and offline: each new exposure of a target makes a new version of its combined
spectrum (a real ``rq worker``), the API combines chosen spectra by hand, the offline twin once per target;
measured against the generated truth (a source of known F_lambda observed three times as it sets)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import auth_header
from tests.test_live_reduction import ingest_in_order, run_worker

SETTINGS = {"min_bias": 3, "min_flats": 3}
AIRMASSES = (1.25, 1.4, 1.6)
EXPOSURES = [f"01{index}0_SN2026abc_400_M2_27-11-2026.fits" for index in range(len(AIRMASSES))]


@pytest.fixture(scope="module")
def exposures_night(tmp_path_factory):
    """Calibrations and arcs, a standard (LTT 7379 at airmass 1.05) and three exposures of one source at
    rising airmass."""
    from pipeline.simulate import FluxSource, make_flux_science, make_standard, simulate_night

    folder = tmp_path_factory.mktemp("exposures")
    simulate_night(folder, seed=8, configurations=("400_M2",), n_bias=3, n_flats=3, n_science=0)
    (folder / "truth.json").unlink()
    dispersion = {"shift_px": 0.37, "scale": 1.0008}  # the night's (simulate_night's defaults)
    frames = {"0050_LTT7379_400_M2_27-11-2026.fits": make_standard("400_M2", seed=2, **dispersion)}
    source = FluxSource(index=-2.0)
    for number, (name, airmass) in enumerate(zip(EXPOSURES, AIRMASSES)):
        frames[name] = make_flux_science("400_M2", source=source, object_name="SN 2026abc", airmass=airmass,
                                         seed=10 + number, date_obs=f"2026-11-28T0{1 + number}:00:00.000",
                                         **dispersion)
    for name, frame in frames.items():
        fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(folder / name)
    return folder, source.truth()


@pytest.fixture
def app_config(redis_db):
    return {"REDIS_URL": redis_db}


def flux_accuracy(path: Path, source: dict) -> dict:
    from pipeline.products import wavelength_axis
    from pipeline.simulate import flux_accuracy as measured

    with fits.open(path) as hdus:
        values, header = hdus[0].data.astype(float), hdus[0].header
    return measured(wavelength_axis(header, values.size), values, source)


def combined_rows():
    from db.models import File

    return File.query.filter_by(data_type=6).order_by(File.id).all()


@pytest.mark.browser
def test_each_new_exposure_makes_a_new_combined_version(app, people, exposures_night, redis_db, client, live_server,
                                                        page):
    """Live with a real worker; then the observer's view in chromium (one night for both: it is the costly part)."""
    from db import db
    from db.models import File, Job

    folder, source = exposures_night
    for key, value in SETTINGS.items():
        setattr(people["proposal"].settings, key, value)
    db.session.commit()
    first = sorted(path.name for path in folder.iterdir() if path.name not in EXPOSURES[1:])
    ingest_in_order(app, folder, first)
    assert run_worker(app, redis_db).returncode == 0
    assert combined_rows() == []
    assert Job.query.filter_by(kind="combine").count() == 0  # a first exposure costs no combine job

    ingest_in_order(app, folder, EXPOSURES[1:2])
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    (first_version,) = combined_rows()
    assert first_version.file_name == "coadd_SN2026abc_400_M2_27-11-2026_target_1.fits"
    inputs = [db.session.get(File, used["id"]) for used in first_version.calibrations["inputs"]]
    assert [row.original.file_name for row in inputs] == EXPOSURES[:2]
    assert all(row.data_type == 5 for row in inputs)

    ingest_in_order(app, folder, EXPOSURES[2:])
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    versions = combined_rows()
    assert [row.file_name for row in versions] == [first_version.file_name,
                                                   "coadd_SN2026abc_400_M2_27-11-2026_target_1_v2.fits"]
    newest = versions[-1]
    assert newest.version == 2 and newest.exptime == 1800.0
    # one combine job per new exposure, after its flux calibration: none at the wavelength level before it
    assert [job.file.data_type for job in Job.query.filter_by(kind="combine").order_by(Job.id)] == [5, 5]
    singles = [db.session.get(File, used["id"]) for used in newest.calibrations["inputs"]]
    assert [row.original.file_name for row in singles] == EXPOSURES
    assert newest.original_file_id == singles[-1].original_file_id and newest.parent_file_id == singles[-1].id
    header = fits.getheader(newest.full_path)
    assert header["GSP_NCOM"] == 3 and [header[f"GSP_IN0{n}"] for n in (1, 2, 3)] == [r.file_name for r in singles]
    assert header["EXPTIME"] == 1800.0 and header["BUNIT"] == "erg / (s cm2 Angstrom)"
    assert header["GSP_SNR"] == pytest.approx(newest.snr, abs=0.01)
    single_snr = np.mean([row.snr for row in singles])
    assert newest.snr >= 0.9 * np.sqrt(3) * single_snr, (newest.snr, [row.snr for row in singles])
    accuracy = flux_accuracy(Path(newest.full_path), source)
    assert abs(accuracy["median"] - 1) < 0.03 and accuracy["p90"] <= 0.02 and accuracy["worst"] <= 0.04, accuracy

    answer = client.get(f"/api/files/{newest.id}/", headers=auth_header(people["tokens"]["collab"])).json
    assert answer["data_type"] == "6" and answer["snr"] == pytest.approx(newest.snr)
    assert [used["id"] for used in answer["calibrations"]["inputs"]] == [row.id for row in singles]
    listed = client.get("/api/files/", query_string={"data_type": 6},
                        headers=auth_header(people["tokens"]["collab"])).json
    assert listed["count"] == 2
    assert all(job.state == "done" for job in Job.query.all())
    see_the_combined_spectrum_on_the_data_page(page, live_server, newest, singles)

    # by hand: two of the three, a new version; what is not one target is refused with the reason
    token = auth_header(people["tokens"]["pi"])
    standard = File.query.filter(File.data_type == 4, File.object == "LTT7379").first()
    extracted = File.query.filter_by(original_file_id=singles[0].original_file_id, data_type=3).first()
    for body, message in (
            ({"ids": [singles[0].id]}, "'ids' must be a list of two or more file ids."),
            ({"ids": [singles[0].id, extracted.id]}, "is not a wavelength- or flux-calibrated science spectrum"),
            ({"ids": [singles[0].id, standard.id]}, "is not a wavelength- or flux-calibrated science spectrum"),
            ({"id": singles[0].id, "ids": [singles[1].id]}, "Give the spectra to combine as 'ids'")):
        answer = client.post("/api/files/spectrum/combine/", json=body, headers=token)
        assert answer.status_code == 400 and message in answer.json["detail"], (body, answer.json)
    same_exposure = File.query.filter_by(original_file_id=singles[0].original_file_id, data_type=4).first()
    answer = client.post("/api/files/spectrum/combine/", json={"ids": [singles[0].id, same_exposure.id]},
                         headers=token)
    assert answer.status_code == 400 and "same exposure" in answer.json["detail"]
    stranger = client.post("/api/files/spectrum/combine/", json={"ids": [singles[0].id, singles[2].id]},
                           headers=auth_header(people["tokens"]["stranger"]))
    assert stranger.status_code == 404
    answer = client.post("/api/files/spectrum/combine/", json={"ids": [singles[0].id, singles[2].id]}, headers=token)
    assert answer.status_code == 202 and answer.json["params"] == {"ids": [singles[0].id, singles[2].id]}
    assert run_worker(app, redis_db).returncode == 0
    db.session.expire_all()
    by_hand = combined_rows()[-1]
    assert by_hand.file_name.endswith("_v3.fits") and [used["id"] for used in by_hand.calibrations["inputs"]] == \
        [singles[0].id, singles[2].id]


def test_the_offline_twin_combines_each_target_once(exposures_night, tmp_path):
    from pipeline.night import reduce_night
    from pipeline.settings import ReductionSettings

    folder, source = exposures_night
    result = reduce_night(folder, tmp_path, ReductionSettings(**SETTINGS))
    combined = [row for row in result.manifest if row["data_type"] == 6]
    assert len(combined) == 1, result.skipped
    row = combined[0]
    assert row["file"] == "coadd_SN2026abc_400_M2_27-11-2026_target_1.fits"
    assert row["inputs"] == [f"fwecfzst_{name[:-5]}_target_1.fits" for name in EXPOSURES]
    assert row["original"] == EXPOSURES[-1] and row["snr"] > 0
    accuracy = flux_accuracy(tmp_path / row["file"], source)
    assert abs(accuracy["median"] - 1) < 0.03 and accuracy["p90"] <= 0.02 and accuracy["worst"] <= 0.04, accuracy
    # wavelength-calibrated spectra (counts) combine as counts of the total exposure time
    from pipeline import steps

    counts = steps.combine_spectra([tmp_path / name[1:] for name in row["inputs"]], tmp_path, name="coadd_w.fits",
                                   original=None, target=1)
    header = fits.getheader(counts.path)
    assert header["BUNIT"] == "adu" and header["EXPTIME"] == 1800.0 and header["GSP_NCOM"] == 3
    assert counts.record["level"] == "wavelength" and counts.record["snr"] == pytest.approx(header["GSP_SNR"], abs=0.01)


def see_the_combined_spectrum_on_the_data_page(page, live_server, combined, singles):
    """The first exposure's page opens on the combined spectrum (its target's first tab), says its S/N after
    three exposures and how many more would reach the S/N typed, and overlays the single exposures."""
    from tests.conftest import screenshot
    from tests.test_browser_data import click_tab, log_in, wait_plot, wait_title

    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={singles[0].original_file_id}")
    wait_title(page, singles[0].original.file_name)
    tabs = [t.strip() for t in page.locator("#data-tabs [data-label]").all_inner_texts()]
    assert tabs[0] == "Combined \u00b7 target 1 \u00b7 v2 (current)", tabs
    click_tab(page, "Combined \u00b7 target 1 \u00b7 v2 (current)")
    wait_plot(page, combined.file_name, "scatter")
    page.wait_for_selector("#data-snr-text:not(:empty)")
    assert page.inner_text("#data-snr-text") == f"S/N {combined.snr:.1f} after 3 exposures (1800 s)"
    last = combined.calibrations["record"]["input_snr"][-1]
    from pipeline.combine import exposures_to_reach

    goal = round(combined.snr * 3)
    page.fill("#data-snr-goal", str(goal))
    more = exposures_to_reach(goal, combined.snr, last)
    page.wait_for_function("(t) => document.querySelector('#data-snr-advice').textContent === t",
                           arg=f"{more} more exposures like the last (600 s each) would reach S/N {goal}.")
    made_of = page.locator("[data-calibration='inputs'] button").all_inner_texts()
    assert made_of == [row.file_name for row in singles]
    screenshot(page, "combined-spectrum")
    page.click("#data-advanced-button")
    page.locator("#data-compare").click()
    page.locator(".dash-dropdown-option").first.wait_for()
    options = page.locator(".dash-dropdown-option").all_inner_texts()
    assert {row.file_name for row in singles} <= {text.split(" \u00b7 ")[0].strip() for text in options}, options
    # overlay an exposure (the list is a popover that follows the page: pick the option as its own click does)
    page.locator(".dash-dropdown-option", has_text=singles[0].file_name).first.evaluate("o => o.click()")
    page.wait_for_function("(name) => document.querySelector('#data-graph .js-plotly-plot').data"
                           ".some(d => d.name === name)", arg=singles[0].file_name)
    page.keyboard.press("Escape")
    screenshot(page, "combined-spectrum-compare")
