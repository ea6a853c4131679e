"""Flux calibration on the Data page, in Debian's chromium (Playwright) against a live server.

A night with a spectrophotometric standard (LTT 7379) and a QSO of known F_lambda goes through the live
chain with a real ``rq worker``.  Then the PI relies on the Data page to: find the flux-calibrated
spectrum among the QSO's tabs, in physical units (finite wherever the standard covers); see the sensitivity
function (fit, bands used and rejected, residuals with their RMS) to judge the standard; and flux calibrate
a spectrum by hand, with the automatic standard and with one chosen in the select, watching each job until
it is done.  Jobs go to the test Redis and wait there, visibly "queued", until the test starts a real
``rq worker`` (burst): no in-process thread races the page, and the same worker runs the night's chain.
Screenshots go to tests/artifacts/flux-*.png.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import screenshot
from tests.test_browser_data import axis_title, click_tab, log_in, wait_plot, wait_title
from tests.test_flux_calibration import NIGHT_SETTINGS, SCIENCE, flux_night  # noqa: F401
from tests.test_live_reduction import ingest_in_order, run_worker

pytestmark = pytest.mark.browser

FLUX_TAB = "Flux Calibrated \u00b7 target 1"
WAVELENGTH_TAB = "Wavelength Calibrated \u00b7 target 1"
FLUX_UNIT = "erg / (s cm2 Angstrom)"
AUTOMATIC_STANDARD = "Standard: automatic (closest in time)"


@pytest.fixture
def app_config(redis_db):
    """Jobs go to the test Redis; the test runs them with a real ``rq worker``, also after each click."""
    return {"REDIS_URL": redis_db}


def graph(page, expression: str):
    """Evaluate ``expression`` with ``g`` bound to the plotly figure currently drawn on the Data page."""
    return page.evaluate(f"() => {{ const g = document.querySelector('#data-graph .js-plotly-plot'); "
                         f"return {expression}; }}")


def flux_trace(page) -> dict:
    """The x and y values (plain numbers, NaN kept) of the trace named 'flux'."""
    return graph(page, "(() => { const t = g._fullData.find(d => d.name === 'flux'); "
                       "return {type: t.type, x: Array.from(t.x, Number), y: Array.from(t.y, Number)}; })()")


def test_flux_calibration_on_the_data_page(live_server, page, people, app, flux_night, redis_db):  # noqa: F811
    from db import db
    from db.models import File, Job

    folder, truth = flux_night
    for key, value in NIGHT_SETTINGS.items():
        setattr(people["proposal"].settings, key, value)
    db.session.commit()
    ingest_in_order(app, folder, sorted(truth["files"]))
    worker = run_worker(app, redis_db)
    assert worker.returncode == 0, worker.stderr[-3000:]
    db.session.expire_all()
    raw = File.query.filter_by(file_name=SCIENCE).one()
    assert raw.state == "done", raw.state_reason
    calibrated = File.query.filter_by(original_file_id=raw.id, data_type=4, target=1).one()
    fluxed = File.query.filter_by(original_file_id=raw.id, data_type=5, target=1).one()
    sensitivity = File.query.filter(File.data_type == 1, File.file_name.startswith("sens_wecfzst_")).one()
    names = {"raw": raw.file_name, "calibrated": calibrated.file_name, "fluxed": fluxed.file_name,
             "sensitivity": sensitivity.file_name}
    ids = {"raw": raw.id, "calibrated": calibrated.id, "sensitivity": sensitivity.id}

    # --- the QSO's lineage: the flux-calibrated spectrum, in erg/s/cm2/A ----------------------------
    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={ids['raw']}")
    wait_title(page, names["raw"])
    wait_plot(page, names["raw"], "heatmap")
    tabs = [t.strip() for t in page.locator("#data-tabs [data-label]").all_inner_texts()]
    assert tabs == [FLUX_TAB, WAVELENGTH_TAB, "Extracted \u00b7 target 1", "Reduced", "Observed Raw"]
    click_tab(page, FLUX_TAB)
    wait_plot(page, names["fluxed"], "scatter")
    assert axis_title(page, "yaxis") == f"Flux ({FLUX_UNIT})"
    assert axis_title(page, "xaxis") == "Wavelength (\u00c5)"
    trace = flux_trace(page)
    wavelength, flux = np.array(trace["x"]), np.array(trace["y"])
    assert trace["type"] == "scatter" and flux.size == fits.getval(fluxed.full_path, "NAXIS1")
    # Finite wherever the sensitivity function is defined (the standard's tabulated range), NaN beyond it
    low = fits.getval(sensitivity.full_path, "CRVAL1")
    high = low + (fits.getval(sensitivity.full_path, "NAXIS1") - 1) * fits.getval(sensitivity.full_path, "CDELT1")
    inside = (wavelength >= low) & (wavelength <= high)
    assert inside.sum() > 0.95 * flux.size
    assert np.array_equal(np.isfinite(flux), inside), wavelength[np.isfinite(flux) != inside]
    finite = flux[inside]
    assert 1e-16 < finite.min() and finite.max() < 2e-14, (finite.min(), finite.max())
    continuum = np.median(flux[(wavelength > 5400) & (wavelength < 5600)])  # no emission line there
    assert continuum == pytest.approx(1e-15, rel=0.05)  # the source: 1e-15 erg/s/cm2/A at 5500 A
    assert graph(page, "g.layout.meta.kind") == "spectrum"
    screenshot(page, "flux-calibrated-spectrum")

    # --- the telluric transmission it was divided by, ticked among the overlays --------------------------
    page.click("#data-advanced-button")
    page.click("#data-advanced-overlays input[value='telluric']")
    page.wait_for_function("() => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                           "return g && g.data.some(d => d.name === 'telluric transmission used'); }")
    transmission = graph(page, "(() => { const t = g._fullData.find(d => d.name === 'telluric transmission used'); "
                               "return {axis: t.yaxis, y: Array.from(t.y, Number)}; })()")
    values = np.array(transmission["y"])
    assert transmission["axis"] == "y2" and 0.2 < values.min() < 0.7 and (values == 1.0).mean() > 0.7
    assert "O2 A" in page.inner_text("[data-calibration='telluric']")
    screenshot(page, "flux-telluric-transmission")

    # --- its wavelength-calibrated parent offers "Calibrate Flux" with a choice of standard ----------
    click_tab(page, WAVELENGTH_TAB)
    wait_plot(page, names["calibrated"], "scatter")
    assert axis_title(page, "yaxis") == "Flux (ADU)"
    button = page.locator("#data-actions button.gsp-action", has_text="Calibrate Flux")
    button.wait_for()
    assert button.count() == 1
    group = page.locator("#data-actions .gsp-action-group", has=page.locator("button", has_text="Calibrate Flux"))
    select = group.locator("select.gsp-action-choice")
    assert select.count() == 1
    # dash-bootstrap's Select puts a hidden empty placeholder first; the user sees the others, "auto" chosen
    options = select.locator("option:not([hidden])")
    assert options.evaluate_all("os => os.map(o => o.value)") == ["auto", str(ids["sensitivity"])]
    labels = [text.strip() for text in options.all_text_contents()]
    assert labels[0] == AUTOMATIC_STANDARD
    assert labels[1].startswith(f"Standard: {names['sensitivity']} 2026-11-27 "), labels
    assert select.input_value() == "auto"
    screenshot(page, "flux-actions-panel")

    # --- the sensitivity function: a calibration, drawn as fit + bands + residuals -------------------
    assert page.locator(f"#calibrations-index [data-file-name='{names['sensitivity']}']").count() == 1
    page.goto(f"{live_server}/?id={ids['sensitivity']}")
    wait_plot(page, names["sensitivity"], "scatter")
    figure = graph(page, "({kind: g.layout.meta.kind, traces: g.data.length, names: g.data.map(d => d.name || ''), "
                         "modes: g.data.map(d => d.mode), yaxis2: !!g._fullLayout.yaxis2, "
                         "x2title: g._fullLayout.xaxis2 && g._fullLayout.xaxis2.title.text, "
                         "title: g._fullLayout.title.text, "
                         "notes: (g._fullLayout.annotations || []).map(a => a.text)})")
    assert figure["kind"] == "sensitivity"
    assert figure["traces"] >= 3 and figure["modes"][0] == "lines" and figure["names"][0] == "fit"
    assert any(n.startswith("bands used (") for n in figure["names"])
    assert any(n.startswith("rejected or masked (") for n in figure["names"])
    assert figure["yaxis2"] and figure["x2title"] == "Wavelength (\u00c5)"
    assert figure["title"] == "Sensitivity function: LTT 7379"
    residuals = [text for text in figure["notes"] if "RMS" in text]
    assert len(residuals) == 1 and "bands used" in residuals[0], figure["notes"]
    screenshot(page, "flux-sensitivity-function")

    # --- flux calibrate by hand: the job is queued, a worker runs it, the page follows it to "done" -----
    page.goto(f"{live_server}/?id={ids['calibrated']}")
    wait_plot(page, names["calibrated"], "scatter")
    calibrate_flux_by_hand(page, app, redis_db, names["calibrated"], standard="auto")
    screenshot(page, "flux-job-done")
    db.session.expire_all()
    versions = File.query.filter_by(original_file_id=ids["raw"], data_type=5, target=1).order_by(File.id).all()
    assert [v.file_name for v in versions] == [names["fluxed"], names["fluxed"].replace(".fits", "_v2.fits")]
    assert "closest in time" in versions[-1].calibrations["standard"]["why"]
    assert [v.version for v in versions] == [1, 2]  # the API's "version"
    assert versions[-1].calibrations["standard"]["id"] == ids["sensitivity"]
    wait_title(page, versions[-1].file_name)  # the page opens the new version when the job is done
    current = page.locator("#data-tabs [data-label^='Flux Calibrated']")
    assert current.get_attribute("data-label") == f"{FLUX_TAB} \u00b7 v2 (current)"
    assert current.get_attribute("title") == versions[-1].file_name
    older = page.locator("#data-tabs .gsp-older-versions [data-file-id]")  # v1, folded beside it
    assert older.evaluate_all("es => es.map(e => e.title)") == [versions[0].file_name]

    # ... and with the standard chosen in the select
    page.goto(f"{live_server}/?id={ids['calibrated']}")
    wait_plot(page, names["calibrated"], "scatter")
    calibrate_flux_by_hand(page, app, redis_db, names["calibrated"], standard=str(ids["sensitivity"]))
    db.session.expire_all()
    job = Job.query.filter_by(kind="calibrate_flux", file_id=ids["calibrated"]).order_by(Job.id.desc()).first()
    assert job.state == "done" and job.params == {"standard_id": ids["sensitivity"]}
    newest = File.query.filter_by(original_file_id=ids["raw"], data_type=5).order_by(File.id.desc()).first()
    assert newest.file_name == names["fluxed"].replace(".fits", "_v3.fits")
    assert newest.calibrations["standard"]["id"] == ids["sensitivity"]
    assert newest.calibrations["standard"]["why"] == "chosen by hand"


def calibrate_flux_by_hand(page, app, redis_db, file_name: str, standard: str):
    """Choose the standard, click "Calibrate Flux", see the job queued, run a worker, see it done."""
    page.locator("#data-actions .gsp-action-group select.gsp-action-choice").select_option(standard)
    page.locator("#data-actions button.gsp-action", has_text="Calibrate Flux").click()
    page.wait_for_selector(".gsp-job[data-job-state='queued'][data-job-kind='calibrate_flux']")
    worker = run_worker(app, redis_db)
    assert worker.returncode == 0, worker.stderr[-3000:]
    page.wait_for_selector(".gsp-job[data-job-state='done']", timeout=10_000)
    assert page.inner_text("#data-action-message").strip() == f"Calibrate flux of {file_name}: done"
