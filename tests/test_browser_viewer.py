"""Issue 14 in Debian's chromium (Playwright): why and with what (the provenance card), versions, the
wavelength solution's quality, comparison and export, and the smaller things seen.
Screenshots go to tests/artifacts/viewer-*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import screenshot
from tests.test_browser_data import app_config, log_in, night, wait_title  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

LONG_BIAS = "master_bias_Red_400_M2_GG455_1.0_LONG_SLIT_2x2_27-11-2026_from_a_long_block_of_frames.fits"


@pytest.fixture
def calibrated_night(night):  # noqa: F811 - the imported fixture
    """The synthetic night, with the calibrations each product used as the job layer records them."""
    from db import db

    rows = night
    master = rows["master_bias"]
    master.file_name = LONG_BIAS
    rows["reduced_science"].calibrations = {
        "bias": {"id": master.id, "file": LONG_BIAS, "why": "same binning and ROI, closest in time"},
        "flat": None, "missing": ["master flat"]}
    arc = rows["reduced_arc"]
    rows["calibrated_science"].calibrations = {
        "arc": {"id": arc.id, "file": arc.file_name, "why": "same configuration, closest in time (10 min)"},
        "lamp": "goodman_comp_400M2_GG455_HgArNe.fits", "lamp_why": "chosen by hand"}
    rows["raw_arc"].state, rows["raw_arc"].state_reason = "failed", (
        "calibrate_wavelength failed: only 6 arc lines could be identified against NIST (HgArNe lamp, library "
        "goodman_comp_400M2_GG455_HgArNe.fits); at least 8 are needed")
    db.session.commit()
    return rows


def test_why_and_with_what_in_the_main_panel(live_server, page, calibrated_night):
    rows = calibrated_night
    log_in(page, live_server, "pi")
    science = rows["calibrated_science"]
    page.goto(f"{live_server}/?id={science.id}")
    wait_title(page, science.file_name)
    card = page.locator("#data-provenance")
    card.locator("[data-calibration='arc']").wait_for()
    assert rows["reduced_arc"].file_name in card.inner_text()
    assert "closest in time (10 min)" in card.inner_text()
    assert "goodman_comp_400M2_GG455_HgArNe.fits" in card.inner_text()

    raw = rows["raw_science"]  # a raw frame shows what its products used, the bias by its full name
    page.goto(f"{live_server}/?id={raw.id}")
    wait_title(page, raw.file_name)
    card.locator("[data-calibration='bias']").wait_for()
    assert LONG_BIAS in card.inner_text() and "not applied" in card.inner_text()
    screenshot(page, "viewer-provenance")
    card.locator(f"text={LONG_BIAS}").click()  # the name opens the master
    wait_title(page, LONG_BIAS)

    arc = rows["raw_arc"]  # a failure's reason in full, not cut
    page.goto(f"{live_server}/?id={arc.id}")
    wait_title(page, arc.file_name)
    page.wait_for_selector("#data-state-reason")
    assert page.inner_text("#data-state-reason") == arc.state_reason
    screenshot(page, "viewer-provenance-failed")


def trace_names(page) -> list[str]:
    return page.evaluate("() => document.querySelector('#data-graph .js-plotly-plot').data.map(d => d.name)")


def wait_graph_of(page, file_name: str):
    page.wait_for_function(
        "(name) => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
        "return g && g._fullLayout && g._fullLayout.uirevision === name; }", arg=file_name, timeout=15_000)


def test_wavelength_quality_residuals_and_a_poor_solution(live_server, page, calibrated_night, people):
    from astropy.io import fits

    from db import db
    from pipeline import wavelength
    from tests.test_data_page import add_file

    good = calibrated_night["calibrated_arc"]
    extracted = calibrated_night["extracted_arc"]
    with fits.open(extracted.full_path) as hdus:  # the same arc, solved with the wrong library lamp
        flux, header = hdus[0].data.astype(float), hdus[0].header.copy()
    options = wavelength.WavelengthOptions(library_lamp="goodman_comp_400M2_GG455_CuHeAr.fits")
    solution, record = wavelength.calibrate_arc(flux, header, options)
    spectrum, _ = wavelength.apply_solution(flux, solution)
    path = Path(good.full_path).with_name(good.file_name.replace(".fits", "_v2.fits"))
    wavelength.write_product(path, spectrum, header, record=record)
    quality = record["wavelength_quality"]
    poor = add_file(path, data_type=4, parent=extracted, original=calibrated_night["raw_arc"], proposal=people["proposal"],
                    target=1, state_reason=f"poor wavelength solution: {quality['why']}",
                    calibrations={"lamp": options.library_lamp, "lamp_why": "chosen by hand",
                                  "wavelength_quality": quality})
    db.session.commit()

    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={good.id}")
    wait_graph_of(page, good.file_name)
    names = trace_names(page)
    assert any(name.startswith("lines used (") for name in names)
    assert any(name.startswith("lines rejected (") for name in names)  # the clipping's outliers, marked apart
    assert page.locator("#data-wavelength-warning").count() == 0
    screenshot(page, "viewer-arc-residuals")

    page.goto(f"{live_server}/?id={poor.id}")
    wait_graph_of(page, poor.file_name)
    warning = page.locator("#data-wavelength-warning")
    warning.wait_for()
    assert "Poor wavelength solution" in warning.inner_text() and "for a degree-3 fit" in warning.inner_text()
    subtitle = page.evaluate("() => [...document.querySelectorAll('#data-graph .annotation-text')]"
                             ".map(e => e.textContent).join(' ')")
    assert "POOR SOLUTION" in subtitle
    screenshot(page, "viewer-arc-poor")


def add_versions(row, count: int, **fields):
    """``count`` more versions of a product (``_v2``, ``_v3``...: copies of its file), newest last."""
    import shutil

    from tests.test_data_page import add_file

    versions = []
    for number in range(2, count + 2):
        path = Path(row.full_path).with_name(row.file_name.replace(".fits", f"_v{number}.fits"))
        shutil.copyfile(row.full_path, path)
        versions.append(add_file(path, data_type=row.data_type, parent=row.parent, original=row.original,
                                 proposal=row.proposal, target=row.target, **fields))
    return versions


def test_versions_fold_and_an_action_opens_its_product(live_server, page, calibrated_night, monkeypatch):
    from db import db
    from live import queue as jobs

    first = calibrated_night["calibrated_science"]
    v3 = add_versions(first, 2)[-1]
    add_versions(calibrated_night["master_bias"], 1)
    db.session.commit()

    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={calibrated_night['raw_science'].id}")
    wait_title(page, calibrated_night["raw_science"].file_name)
    labels = [t.strip() for t in page.locator("#data-tabs [data-label]").all_inner_texts()]
    assert labels == ["Wavelength Calibrated \u00b7 target 1 \u00b7 v3 (current)", "Extracted \u00b7 target 1",
                      "Reduced", "Observed Raw"]
    older = page.locator("#data-tabs .gsp-older-versions")
    assert older.get_attribute("data-older") == "2"
    # the Calibrations index lists the master once, its older version folded under it
    assert page.locator("#calibrations-index > .gsp-index > .gsp-index-item").count() == 1
    assert page.inner_text("#calibrations-index .gsp-older-summary") == "1 older version"

    older.locator(".gsp-older-toggle").click()
    older.locator(f"[data-file-id='{first.id}']").click()
    wait_title(page, first.file_name)
    assert "v1 (older)" in page.inner_text("#data-tabs .gsp-older-toggle")
    screenshot(page, "viewer-versions")

    monkeypatch.setitem(jobs.TASKS, "calibrate_wavelength", lambda job: {"products": [v3.id]})
    page.click("#data-actions >> text=Re-run With Current Settings")
    wait_title(page, v3.file_name)  # the new product is shown when the action is done
    assert "v3 (current)" in page.inner_text("#data-tabs .nav-link.active")


def test_smaller_things_seen(live_server, page, calibrated_night, people):
    from db import db
    from db.models import User
    from tests.conftest import PASSWORD
    from tests.test_data_page import add_raw_rows

    raw = calibrated_night["raw_science"]
    add_raw_rows(people["proposal"], 25, Path(raw.full_path).parent)  # the night's frame is now on page 2
    warnings = []
    page.on("console", lambda message: warnings.append(message.text)
            if message.type in ("warning", "error") else None)

    # the login page's title says what it is, once; the app paints its skeleton before its scripts run
    page.goto(f"{live_server}/login")
    assert page.title() == "Sign in \u00b7 GSP Live"
    page.fill("#username", "pi")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#observed-index .gsp-index-item")
    first_paint = page.request.get(f"{live_server}/").text()
    assert "gsp-skeleton" in first_paint and "Loading GSP Live" in first_paint

    # a file opened by its link: the index shows the page of its raw frame, highlighted
    reduced = calibrated_night["reduced_science"]
    page.goto(f"{live_server}/?id={reduced.id}")
    wait_title(page, reduced.file_name)
    page.wait_for_function("() => document.querySelector('#observed-page-text').textContent === 'Page 2 of 2'")
    page.wait_for_selector(f"#observed-index .gsp-index-item.active [data-file-id='{raw.id}']")

    # overlays: labels in rows that do not overlap, the legend under the plot
    science = calibrated_night["calibrated_science"]
    page.goto(f"{live_server}/?id={science.id}")
    wait_title(page, science.file_name)
    page.click("#data-advanced-button")
    for overlay in ("sky", "galaxy"):
        page.click(f"#data-advanced-overlays input[value='{overlay}']")
    page.wait_for_function("() => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                           "return g && g.data.filter(d => (d.name || '').endsWith(' labels')).length === 2; }")
    boxes = page.evaluate("() => [...document.querySelectorAll('#data-graph g.textpoint text')]"
                          ".map(t => t.getBoundingClientRect()).map(r => [r.left, r.top, r.right, r.bottom])")
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                   if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]
    assert len(boxes) > 10 and not overlapping, overlapping[:3]
    legend = page.evaluate("() => document.querySelector('#data-graph g.legend').getBoundingClientRect().top")
    plot = page.evaluate("() => document.querySelector('#data-graph .xtitle').getBoundingClientRect().bottom")
    assert legend >= plot  # under the axis title, away from the title's RMS
    screenshot(page, "viewer-overlays")

    # Search: names and types whole, a State facet, no AG Grid warning
    page.goto(f"{live_server}/search")
    page.wait_for_selector(".ag-row [col-id='file_name']")
    cut = page.evaluate("() => [...document.querySelectorAll(\".ag-row [col-id='file_name'], .ag-row [col-id='type']\")]"
                        ".filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent)")
    assert not cut, cut
    page.locator("#search-filter-state, [id*='\"name\":\"state\"']").first.click()
    page.locator(".dash-dropdown-option, .Select-option", has_text="failed").first.click()
    page.wait_for_function("() => document.querySelector('#search-count').textContent.trim() === '1'")
    screenshot(page, "viewer-search")
    assert not [w for w in warnings if "columnSize" in w or "AG Grid" in w], warnings

    # the theme switch in the navbar: saved as the user's preference, applied at once
    page.click("#nav-theme")
    page.wait_for_function("() => [...document.querySelectorAll('link[rel=stylesheet]')]"
                           ".some(l => l.href.includes('flatly'))")
    db.session.expire_all()
    assert db.session.get(User, people["users"]["pi"].id).theme == "light"
    page.goto(f"{live_server}/?id={science.id}")
    wait_title(page, science.file_name)
    screenshot(page, "viewer-light-theme")


def test_compare_spectra_and_export(live_server, page, calibrated_night):
    import io
    import zipfile

    from astropy.table import Table

    from db import db

    first = calibrated_night["calibrated_science"]
    second = add_versions(first, 1)[0]  # another spectrum of NGC5128
    db.session.commit()
    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={first.id}")
    wait_graph_of(page, first.file_name)
    page.click("#data-advanced-button")
    compare = page.locator("#data-compare")
    # the picker's list opens under it, as wide as it (long names wrap), not out to the window's edge;
    # its options come from a callback, which a loaded machine may answer after the first click
    menu = page.locator(".dash-dropdown-content").first
    for _ in range(3):
        compare.click()
        try:
            menu.get_by_text(second.file_name).first.wait_for(timeout=8000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    picker_box, menu_box = compare.bounding_box(), menu.bounding_box()
    assert picker_box["x"] - 1 <= menu_box["x"] and menu_box["x"] + menu_box["width"] <= picker_box["x"] + \
        picker_box["width"] + 1, (picker_box, menu_box)
    screenshot(page, "viewer-compare-open")
    # the list is a popover that follows the page as Playwright scrolls to it: pick the option as its own click does
    page.locator(".dash-dropdown-option, .Select-option", has_text=second.file_name).first.evaluate("o => o.click()")
    page.wait_for_function("(name) => document.querySelector('#data-graph .js-plotly-plot').data"
                           ".some(d => d.name === name)", arg=second.file_name)
    page.keyboard.press("Escape")
    screenshot(page, "viewer-compare")

    with page.expect_download() as download:
        page.click("#data-export-ecsv")
    table = Table.read(Path(download.value.path()).read_text(), format="ascii.ecsv")
    assert table.colnames == ["wavelength", "flux", "uncertainty"] and table.meta["file_name"] == first.file_name

    page.goto(f"{live_server}/search?data_type=4")
    page.wait_for_function("() => { const c = document.querySelector('#search-count'); "
                           "return c && c.textContent.trim() === '3'; }")
    with page.expect_download() as download:
        page.click("#search-zip")
    names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
    assert sorted(Path(n).name for n in names) == sorted([first.file_name, second.file_name,
                                                          calibrated_night["calibrated_arc"].file_name])
