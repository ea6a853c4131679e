"""The Data, Search and Account pages in Debian's chromium (Playwright) against a live server.

One observer's night: log in, watch a file arrive live, open a raw science frame, walk its
tabs to the calibrated spectrum, read and search the header, change the colour map and the
limits, switch static/interactive, delete a product (raw files have no delete button),
filter the Search table and open a row; then a user of another proposal sees none of it.
Screenshots of each main view go to tests/artifacts/data-*.png.
"""
from __future__ import annotations

import base64
import io
import re
import shutil
import time
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs_version

from tests.conftest import PASSWORD, screenshot
from tests.test_data_page import add_file, build_night

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    """Jobs run in the web process (no Redis), so a page's action completes during the test."""
    return {"REDIS_URL": ""}


@pytest.fixture
def night(app, people, tmp_path_factory):
    source = Path(str(tmp_path_factory.getbasetemp())) / "gsp-synthetic-products"
    return build_night(Path(app.config["DATA_DIR"]), source, people["proposal"], people["other_proposal"])


COUNT_IS = "(n) => { const c = document.querySelector('#search-count'); return c && c.textContent.trim() === n; }"


def log_in(page, live_server, username):
    page.goto(f"{live_server}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#observed-index .gsp-index-item")


def title(page) -> str:
    return page.inner_text("#data-title").strip()


def wait_title(page, text: str, timeout: float = 10_000):
    """Until the title is ``text`` (it comes with the viewer) and, for a file, its card is in (asked after)."""
    page.wait_for_function("(t) => { const title = document.querySelector('#data-title'); "
                           "const card = document.querySelector('#data-header-file'); "
                           "return title && title.textContent.trim() === t && "
                           "(!t.endsWith('.fits') || !card || card.textContent.trim() === t); }", arg=text, timeout=timeout)


def plot_data(page, index: int = 0, key: str | None = None):
    """A trace (or a trace property) of the interactive figure currently shown."""
    return page.evaluate("([i, k]) => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                         "if (!g || !g.data || !g.data[i]) return null; return k ? g.data[i][k] : g.data[i].type; }",
                         [index, key])


def wait_plot(page, file_name: str, kind: str):
    """Wait until the interactive figure of ``file_name`` is drawn (kind: heatmap | scatter)."""
    page.wait_for_function(
        "([name, kind]) => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
        "const t = document.querySelector('#data-title'); if (!g || !g._fullLayout || !g.data || !t) return false; "
        "return t.textContent.trim() === name && g.data.some(d => d.type === kind) && "
        "(g._fullLayout.uirevision === name); }", arg=[file_name, kind], timeout=15_000)


def heatmap_cells(page) -> list[int]:
    """[rows, columns] of the image drawn."""
    return page.evaluate("() => { const z = document.querySelector('#data-graph .js-plotly-plot')._fullData[0].z; "
                         "return [z.length, z[0].length]; }")


def axis_title(page, axis: str = "xaxis") -> str:
    return page.evaluate("(a) => document.querySelector('#data-graph .js-plotly-plot')._fullLayout[a].title.text",
                         axis)


def open_dropdown(page, dropdown):
    """Click a Dash dropdown until its menu opens (a click before the page is live does nothing)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(10):
        dropdown.click()
        try:
            page.locator(".dash-dropdown-option").first.wait_for(timeout=2000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the dropdown never opened")


def click_tab(page, label: str):
    page.click(f"#data-tabs [data-label='{label}']")


def test_observer_night_on_the_data_page(live_server, page, people, night, app, monkeypatch):
    from db import db
    from db.models import File
    from live import queue as jobs

    outside, scripts = [], []
    page.on("request", lambda request: None if request.url.startswith((live_server, "data:"))
            else outside.append(request.url))
    page.on("request", lambda request: scripts.append(request.url) if request.resource_type == "script" else None)
    refused = []  # what the Content-Security-Policy blocked: nothing the app needs
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    log_in(page, live_server, "pi")
    page.wait_for_selector("#observed-count")
    assert page.inner_text("#observed-count") == "3"
    assert page.inner_text("#calibrations-count") == "1"
    page.wait_for_function("() => document.querySelector('#data-graph .js-plotly-plot, #data-image')")
    # plotly.js's cartesian bundle (1.5 MB, of plotly's own version) draws every viewer
    assert page.evaluate("() => window.Plotly.version") == get_plotlyjs_version()

    # --- a file arrives: it is in the index within 2 s, without a reload ---------------------------
    raw_dir = Path(night["raw_science"].full_path).parent
    arriving = raw_dir / "0016_NGC5128_400_M2_27-11-2026.fits"
    shutil.copyfile(night["raw_science"].full_path, arriving)
    page.evaluate("""() => { window.__gspNoReload = true; window.__gspSeen = {};
        new MutationObserver(() => document.querySelectorAll('#observed-index [data-file-name]').forEach(e => {
            const name = e.getAttribute('data-file-name');
            if (!(name in window.__gspSeen)) { window.__gspSeen[name] = Date.now(); } })
        ).observe(document.body, {subtree: true, childList: true}); }""")
    started = time.time()
    add_file(arriving, proposal=people["proposal"], state="queued")
    db.session.commit()
    page.wait_for_selector(f"#observed-index [data-file-name='{arriving.name}']", timeout=5000)
    latency = page.evaluate("(name) => window.__gspSeen[name]", arriving.name) / 1000 - started
    assert latency < 2.0, f"listed {latency:.2f} s after the commit"
    assert page.evaluate("() => window.__gspNoReload") is True  # same page, no reload
    assert page.inner_text("#observed-count") == "4"
    assert "queued" in page.inner_text(f"#observed-index [data-file-name='{arriving.name}']")
    wait_title(page, arriving.name)  # "Follow" shows the newest frame
    screenshot(page, "data-live-arrival")

    # --- open the raw science frame: a 2D image in pixels, state shown ---------------------------
    raw = night["raw_science"]
    page.click(f"#observed-index [data-file-name='{raw.file_name}']")
    wait_title(page, raw.file_name)
    wait_plot(page, raw.file_name, "heatmap")
    assert heatmap_cells(page) == [316, 690]  # 2071 x 948 pixels in blocks of 3 x 3: about what the plot shows
    assert f"id={raw.id}" in page.url  # linkable
    assert axis_title(page, "xaxis") == "Dispersion Axis (Pixels)"
    assert axis_title(page, "yaxis") == "Spatial Axis (Pixels)"
    tabs = page.locator("#data-tabs [data-label]").all_inner_texts()
    assert [t.strip() for t in tabs] == ["Wavelength Calibrated \u00b7 target 1", "Extracted \u00b7 target 1",
                                        "Reduced", "Observed Raw"]
    assert page.locator("#data-actions >> text=Reduce Raw File").count() == 1
    assert page.locator(".gsp-delete").count() == 0  # raw files are never deleted
    assert "Last Modified" in page.inner_text("#data-modified")
    assert page.get_attribute("#data-download", "href") == f"/api/files/{raw.id}/download/"
    page.wait_for_selector("#data-snr", state="hidden")  # a raw frame has no S/N, nor an S/N to aim at
    screenshot(page, "data-raw-science")

    # --- an action: the job's progress is polled until it is done, or failed with the reason ----
    def slow_reduce(job):
        time.sleep(0.6)
        return {"reduced": None}

    def failing_reduce(job):
        raise ValueError("no master bias for Red 2x2 on 2026-11-27")

    monkeypatch.setitem(jobs.TASKS, "reduce", slow_reduce)  # the real block is tested elsewhere
    page.click("#data-actions >> text=Reduce Raw File")
    page.wait_for_selector(".gsp-job[data-job-state='running'], .gsp-job[data-job-state='queued']")
    page.wait_for_selector(".gsp-job[data-job-state='done']", timeout=10_000)
    assert f"Reduce of {raw.file_name}: done" in page.inner_text("#data-action-message")
    monkeypatch.setitem(jobs.TASKS, "reduce", failing_reduce)
    page.click("#data-actions >> text=Reduce Raw File")
    page.wait_for_selector(".gsp-job[data-job-state='failed']", timeout=10_000)
    assert "no master bias for Red 2x2" in page.inner_text("#data-action-message")
    screenshot(page, "data-job-failed")

    # --- walk the tabs to the calibrated spectrum ----------------------------------------------
    click_tab(page, "Reduced")
    wait_plot(page, night["reduced_science"].file_name, "heatmap")
    page.locator("#data-actions >> text=Extract Target").wait_for()  # a file's actions are asked after its plot
    assert page.locator("#data-actions >> text=Extract Target").count() == 1
    assert night["reduced_arc"].file_name in page.inner_text("#data-actions")  # the compatible arc offered
    click_tab(page, "Extracted \u00b7 target 1")
    wait_plot(page, night["extracted_science"].file_name, "scatter")
    assert axis_title(page) == "Dispersion Axis (Pixels)"
    page.locator("#data-actions >> text=Calibrate Wavelength").wait_for()
    assert page.locator("#data-actions >> text=Calibrate Wavelength").count() == 1
    click_tab(page, "Wavelength Calibrated \u00b7 target 1")
    calibrated = night["calibrated_science"]
    calibrated_id, calibrated_path = calibrated.id, Path(calibrated.full_path)
    wait_plot(page, calibrated.file_name, "scatter")
    assert axis_title(page) == "Wavelength (\u00c5)"
    low, high = page.evaluate("() => document.querySelector('#data-graph .js-plotly-plot')._fullLayout.xaxis.range")
    assert 4900 < low < 5100 and 8800 < high < 9100  # Angstrom, from CRVAL1/CDELT1
    assert f"id={calibrated.id}" in page.url
    screenshot(page, "data-calibrated-spectrum")

    # --- the header: collapsed, then shown and searched ----------------------------------------
    assert not page.is_visible("#data-header-search")
    page.click("#data-header-toggle")
    page.wait_for_selector("#data-header-table tbody tr")
    total = page.locator("#data-header-table tbody tr").count()
    assert total > 30
    page.fill("#data-header-search", "CRVAL1")
    page.wait_for_function("() => document.querySelectorAll('#data-header-table tbody tr').length === 1")
    assert "CRVAL1" in page.inner_text("#data-header-table tbody")
    screenshot(page, "data-header")
    page.fill("#data-header-search", "")
    page.click("#data-header-toggle")

    # --- advanced visualization on the raw frame: colour map, limits, saturation, formats ------
    click_tab(page, "Observed Raw")
    wait_plot(page, raw.file_name, "heatmap")
    page.click("#data-advanced-button")
    page.wait_for_selector("#data-advanced-colormap", state="visible")
    page.select_option("#data-advanced-colormap", "viridis")
    page.wait_for_function("() => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                           "return g && g.data[0].colorscale && "
                           "JSON.stringify(g.data[0].colorscale).includes('#440154'); }")
    page.click("label[for='_dbcprivate_radioitems_data-advanced-scale_input_minmax']")
    page.fill("#data-advanced-zmin", "405")
    page.fill("#data-advanced-zmax", "440")
    page.press("#data-advanced-zmax", "Enter")
    page.wait_for_function("() => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                           "return g && g.data[0].zmin === 405 && g.data[0].zmax === 440; }")
    page.click("#data-advanced-saturated label")
    page.wait_for_function("() => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                           "return g && g.data.some(d => (d.name || '').startsWith('saturated')); }")
    screenshot(page, "data-advanced-visualization")
    page.click("label[for='_dbcprivate_radioitems_data-advanced-format_input_static']")
    page.wait_for_selector("#data-image")
    page.wait_for_function("() => document.querySelector('#data-image').complete")
    width = page.evaluate("() => document.querySelector('#data-image').naturalWidth")
    assert width == 1100
    src = page.get_attribute("#data-image", "src")
    from PIL import Image
    assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size[0] == 1100
    screenshot(page, "data-static")
    page.click("label[for='_dbcprivate_radioitems_data-advanced-format_input_interactive']")
    wait_plot(page, raw.file_name, "heatmap")

    # --- delete a processed file (confirmation modal); the raw file stays ----------------------
    click_tab(page, "Wavelength Calibrated \u00b7 target 1")
    wait_title(page, calibrated.file_name)
    page.click(".gsp-delete")
    page.wait_for_selector("#data-delete-modal", state="visible")
    assert calibrated.file_name in page.inner_text("#data-delete-name")
    page.click("#data-delete-cancel")
    page.wait_for_selector("#data-delete-modal", state="hidden")
    assert Path(calibrated.full_path).exists()
    page.click(".gsp-delete")
    page.wait_for_selector("#data-delete-modal", state="visible")
    page.click("#data-delete-confirm")
    page.wait_for_selector("#data-deleted")
    wait_title(page, night["extracted_science"].file_name)  # back to its parent
    assert page.locator("#data-tabs [data-label='Wavelength Calibrated \u00b7 target 1']").count() == 0
    assert not calibrated_path.exists()
    db.session.expire_all()
    assert db.session.get(File, calibrated_id) is None
    assert Path(raw.full_path).exists()

    # --- comments -----------------------------------------------------------------------------
    page.fill("#data-comment-text", "Seeing 0.9\" \u2014 good spectrum")
    page.click("#data-comment-add")
    page.wait_for_selector("#data-comments >> text=good spectrum")

    # --- the Search table: filter, bookmarkable URL, open a row -------------------------------
    page.goto(f"{live_server}/search")
    page.wait_for_selector("#search-grid .ag-row")
    assert page.inner_text("#search-count") == "10"  # the pi's night (one deleted, one arrived) + the master
    open_dropdown(page, page.locator("#search-filter-obstype, [id*='\"name\":\"obstype\"']").first)
    page.keyboard.type("COMP")
    option = page.locator(".dash-dropdown-option", has_text="COMP").first
    option.wait_for()  # the options have loaded
    # picked as its own click does (Enter takes whichever option is highlighted: keys typed before the search
    # box had the focus were lost once, and another type was chosen)
    option.evaluate("o => o.click()")
    page.wait_for_function(COUNT_IS, arg="4")
    page.wait_for_url(re.compile(r".*/search\?obstype=COMP$"))
    cells = page.locator("#search-grid .ag-row [col-id='obstype']").all_inner_texts()
    assert cells and set(cells) == {"COMP"}
    screenshot(page, "search-filtered")
    bookmark = page.url
    page.goto(bookmark)  # the filters come back from the URL
    page.wait_for_function(COUNT_IS, arg="4")
    page.locator("#search-grid .ag-row [col-id='file_name']").get_by_text(night["raw_arc"].file_name,
                                                                          exact=True).click()
    page.wait_for_url(re.compile(rf".*/\?id={night['raw_arc'].id}$"))
    wait_title(page, night["raw_arc"].file_name)
    screenshot(page, "data-from-search")
    assert outside == []  # every asset is served locally (the app runs behind a VPN)
    assert refused == []
    plotly_scripts = {url.split("?")[0] for url in scripts if "plotly" in url}
    assert plotly_scripts == {f"{live_server}/assets/vendor/plotly/plotly-cartesian.min.js"}  # never the 4.8 MB one


def arrive(night, key: str, name: str, commit: bool = True, **row):
    """A copy of the night's ``key`` file catalogued as ``name`` (raw under raw/, products under processed/)."""
    from db import db
    from tests.test_data_page import add_file

    source = Path(night[key].full_path)
    path = source.with_name(name)
    shutil.copyfile(source, path)
    file = add_file(path, **row)
    if commit:
        db.session.commit()
    return file


def test_follow_shows_the_newest_frames_most_calibrated_file(live_server, page, people, night):
    """Follow opens a frame at its most calibrated spectrum, and moves on as the chain makes each better
    product of it, unless the observer has picked another file since; a new frame is shown at once.  While
    the frame's chain runs its raw frame is shown until a target's spectrum is its last (no job that could make a
    better one is queued or running); a reduced image when the chain ends there."""
    from db import db
    from db.models import Job

    proposal = people["proposal"]
    log_in(page, live_server, "pi")
    wait_title(page, night["calibrated_arc"].file_name)  # the newest frame (the arc) at its best
    assert page.locator("#data-tabs .gsp-tab.active [data-label='Wavelength Calibrated \u00b7 target 1']").count() == 1
    page.evaluate(TITLES_PROBE)

    raw = arrive(night, "raw_science", "0016_NGC5128_400_M2_27-11-2026.fits", proposal=proposal, state="queued")
    wait_title(page, raw.file_name)  # a new frame: shown at once, raw for now
    reduced = arrive(night, "reduced_science", "zst_0016_NGC5128_400_M2_27-11-2026.fits", data_type=2, parent=raw,
                     original=raw, proposal=proposal)
    page.locator("#data-tabs [data-label='Reduced']").wait_for()  # the page has seen it
    page.wait_for_timeout(1000)  # a few changes
    assert title(page) == raw.file_name
    extracted = arrive(night, "extracted_science", "ezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                       commit=False, data_type=3, parent=reduced, original=raw, proposal=proposal, target=1)
    db.session.flush()
    calibrating = Job(kind="calibrate_wavelength", file_id=extracted.id, state="queued")
    db.session.add(calibrating)
    db.session.commit()
    page.locator("#data-tabs [data-label='Extracted \u00b7 target 1']").wait_for()
    calibrated = arrive(night, "calibrated_science", "wezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                        commit=False, data_type=4, parent=extracted, original=raw, proposal=proposal, target=1)
    db.session.flush()
    fluxing = Job(kind="calibrate_flux", file_id=calibrated.id, state="queued")
    calibrating.state = "done"
    db.session.add(fluxing)
    db.session.commit()
    page.locator("#data-tabs [data-label='Wavelength Calibrated \u00b7 target 1']").wait_for()
    page.wait_for_timeout(1000)
    assert title(page) == raw.file_name  # the chain runs on: its flux calibration is queued
    fluxed = arrive(night, "calibrated_science", "fwezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                    commit=False, data_type=5, parent=calibrated, original=raw, proposal=proposal, target=1)
    fluxing.state = "done"
    db.session.commit()
    wait_plot(page, fluxed.file_name, "scatter")  # nothing more to come for its target
    assert page.evaluate("window.__titles") == [raw.file_name, fluxed.file_name]
    assert axis_title(page) == "Wavelength (\u00c5)"
    assert f"id={fluxed.id}" in page.url
    screenshot(page, "data-follow-calibrated")

    # the observer looks at the raw frame: a better product of it does not take the view away
    click_tab(page, "Observed Raw")
    wait_title(page, raw.file_name)
    arrive(night, "calibrated_science", "wezst_0016_NGC5128_400_M2_27-11-2026_target_1_v2.fits", data_type=4,
           parent=extracted, original=raw, proposal=proposal, target=1, version=2)
    page.locator("#data-tabs [data-label='Wavelength Calibrated \u00b7 target 1 \u00b7 v2 (current)']").wait_for()
    page.wait_for_timeout(1500)  # a few polls
    assert title(page) == raw.file_name
    # a new frame is shown at once again
    newer = arrive(night, "raw_science", "0017_NGC5128_400_M2_27-11-2026.fits", proposal=proposal, state="running")
    wait_title(page, newer.file_name)
    # a chain that ends at the reduced image (no target found, or waiting for an arc): shown then
    newer_reduced = arrive(night, "reduced_science", "zst_0017_NGC5128_400_M2_27-11-2026.fits", data_type=2,
                           parent=newer, original=newer, proposal=proposal)
    page.locator("#data-tabs [data-label='Reduced']").wait_for()
    page.wait_for_timeout(1000)
    assert title(page) == newer.file_name
    newer.state, newer.state_reason = "waiting", "waiting for a compatible arc"
    db.session.commit()
    wait_plot(page, newer_reduced.file_name, "heatmap")
    assert f"id={newer_reduced.id}" in page.url


# every text the title shows, in turn
TITLES_PROBE = """() => { window.__titles = []; const title = document.querySelector('#data-title');
    new MutationObserver(() => { const text = title.textContent.trim();
        if (window.__titles[window.__titles.length - 1] !== text) { window.__titles.push(text); } })
    .observe(title, {subtree: true, childList: true, characterData: true}); }"""


def test_follow_is_answered_by_the_change_feed_that_sees_a_new_frame(live_server, page, people, night):
    """A new frame's most calibrated spectrum is shown without a click one round trip after its commit: the page
    waits on the server for the next change (GET /data/changes), whose answer names the file to show, so the
    viewer is asked at once, and the frame's other products, catalogued with it, are never drawn on the way.
    (`bench/latency.py --browser` measures the delay on a live night.)"""
    proposal = people["proposal"]
    log_in(page, live_server, "pi")
    wait_title(page, night["calibrated_arc"].file_name)
    answers = []
    page.on("response", lambda response: answers.append(response) if "/data/changes" in response.url
            and response.status == 200 else None)
    page.evaluate(TITLES_PROBE)
    page.wait_for_timeout(300)  # the page is waiting for a change
    raw = arrive(night, "raw_science", "0016_NGC5128_400_M2_27-11-2026.fits", commit=False, proposal=proposal)
    reduced = arrive(night, "reduced_science", "zst_0016_NGC5128_400_M2_27-11-2026.fits", commit=False, data_type=2,
                     parent=raw, original=raw, proposal=proposal)
    extracted = arrive(night, "extracted_science", "ezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                       commit=False, data_type=3, parent=reduced, original=raw, proposal=proposal, target=1)
    calibrated = arrive(night, "calibrated_science", "wezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                        data_type=4, parent=extracted, original=raw, proposal=proposal, target=1)
    committed = time.time()
    wait_plot(page, calibrated.file_name, "scatter")
    seen = time.time() - committed
    assert page.evaluate("window.__titles") == [calibrated.file_name]
    moves = [answer.json() for answer in answers]
    moves = [answer for answer in moves if "select" in answer]
    assert moves == [{"stamp": moves[0]["stamp"], "select": calibrated.id,
                      "followed": {"frame": raw.id, "file": calibrated.id}, "expecting": False}], moves
    print(f"new frame committed -> its spectrum drawn, as Playwright sees it: {seen:.2f} s")


def test_while_a_new_files_card_is_on_its_way_the_previous_frame_is_not_highlighted(
        live_server, page, people, night, monkeypatch):
    """While a frame runs the file card answers slowly; Follow moving to a new frame's spectrum shows it at
    once (its header, its plot), and the frame shown before must not stay highlighted beside it (it did until
    the card came, and the poll's index brought it back); the new frame is highlighted once its card is in."""
    import callbacks.data.file_card as cards

    made = cards.file_card

    def slow_card(user, file):
        if file.file_name.startswith("wezst_0016"):
            time.sleep(3)
        return made(user, file)

    monkeypatch.setattr(cards, "file_card", slow_card)
    proposal = people["proposal"]
    log_in(page, live_server, "pi")
    wait_title(page, night["calibrated_arc"].file_name)
    shown_before = night["calibrated_arc"].original_file_id
    active = "#observed-index .gsp-index-item.active [data-file-id]"
    page.wait_for_selector(f"#observed-index .gsp-index-item.active [data-file-id='{shown_before}']")
    raw = arrive(night, "raw_science", "0016_NGC5128_400_M2_27-11-2026.fits", proposal=proposal)
    reduced = arrive(night, "reduced_science", "zst_0016_NGC5128_400_M2_27-11-2026.fits", data_type=2, parent=raw,
                     original=raw, proposal=proposal)
    extracted = arrive(night, "extracted_science", "ezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                       data_type=3, parent=reduced, original=raw, proposal=proposal, target=1)
    calibrated = arrive(night, "calibrated_science", "wezst_0016_NGC5128_400_M2_27-11-2026_target_1.fits",
                        data_type=4, parent=extracted, original=raw, proposal=proposal, target=1)
    page.wait_for_url(f"**id={calibrated.id}")  # Follow picked it; its card takes 3 s
    page.wait_for_selector(f"#observed-index [data-file-id='{raw.id}']")
    page.wait_for_timeout(500)  # the highlight is redrawn in the browser after each index
    highlighted = page.locator(active).evaluate_all("es => es.map(e => e.getAttribute('data-file-id'))")
    assert str(shown_before) not in highlighted, highlighted
    wait_title(page, calibrated.file_name)
    page.wait_for_function(f"() => [...document.querySelectorAll('{active}')].map("
                           f"e => e.getAttribute('data-file-id')).join() === '{raw.id}'")


def test_master_names_are_shown_whole_at_1440_px(live_server, page, people, night):
    """A master's name says what it is at its end (filter, binning, night, version): the Calibrations
    index of a 1440 px wide window shows every name whole."""
    arrive(night, "master_bias", "master_bias_Red_400_M2_GG455_1.0_LONG_SLIT_2x2_27-11-2026_v2.fits", data_type=1,
           version=2)
    log_in(page, live_server, "pi")
    page.wait_for_selector("#calibrations-index .gsp-file-name")
    names = page.locator("#calibrations-index .gsp-file-name")
    assert names.count() == 2
    cut = names.evaluate_all("es => es.filter(e => e.scrollWidth > e.clientWidth || e.getBoundingClientRect()"
                             ".right > e.closest('.card').getBoundingClientRect().right).map(e => e.textContent)")
    assert cut == []
    screenshot(page, "data-calibrations-index")


def test_a_failed_action_keeps_the_choices_made(live_server, page, people, night, monkeypatch):
    """Calibrating with a lamp that fails is tried again with another: the lamp chosen stays chosen."""
    from live import queue as jobs

    def failing_calibration(job):
        raise ValueError("only 6 arc lines could be identified against NIST")

    monkeypatch.setitem(jobs.TASKS, "calibrate_wavelength", failing_calibration)
    extracted = night["extracted_science"]
    log_in(page, live_server, "pi")
    page.goto(f"{live_server}/?id={extracted.id}")
    wait_plot(page, extracted.file_name, "scatter")
    lamp = page.locator("#data-actions select[id*='\"param\":\"lamp\"']")
    lamp.locator("option[value='auto']").wait_for(state="attached")  # the actions are drawn after the plot
    choices = lamp.locator("option:not([hidden])").evaluate_all("os => os.map(o => o.value)")
    assert choices[0] == "auto" and len(choices) > 1, choices
    lamp.select_option(choices[1])
    page.locator("#data-actions button.gsp-action", has_text="Calibrate Wavelength").click()
    page.wait_for_selector(".gsp-job[data-job-state='failed']", timeout=10_000)
    assert "only 6 arc lines" in page.inner_text("#data-action-message")
    page.wait_for_timeout(1500)  # the buttons are drawn again once the job has ended
    assert lamp.input_value() == choices[1]
    screenshot(page, "data-failed-action-keeps-lamp")


def test_account_visual_options_apply_to_the_data_page(live_server, page, people, night, tmp_path):
    from db import db
    from db.models import User
    from tests.test_data_page import add_raw_rows

    add_raw_rows(people["proposal"], 30, tmp_path)  # 33 raw files: two pages of the Observed index
    log_in(page, live_server, "collab")
    assert page.inner_text("#observed-count") == "33"
    assert page.inner_text("#observed-page-text") == "Page 1 of 2"
    page.click("#observed-card [title='Next page']")
    page.wait_for_function("() => document.querySelector('#observed-page-text').textContent === 'Page 2 of 2'")
    assert page.locator("#observed-index .gsp-index-item").count() == 13
    page.fill("#observed-page-input", "1")
    page.click("#observed-page-go")
    page.wait_for_function("() => document.querySelector('#observed-page-text').textContent === 'Page 1 of 2'")
    assert page.locator("#observed-index .gsp-index-item").count() == 20
    page.goto(f"{live_server}/account")
    page.wait_for_selector("#account-theme")
    assert page.inner_text("#account-username") == "collab"
    page.click("label[for='_dbcprivate_radioitems_account-format_input_static']")
    page.wait_for_selector("#account-visual-saved")
    page.select_option("#account-colormap", "inferno")
    page.click("label[for='_dbcprivate_radioitems_account-theme_input_light']")
    page.wait_for_selector("#account-visual-saved >> text=reload now")
    page.click("#account-token-button")
    page.click("#account-token-confirm")
    page.wait_for_function("() => document.querySelector('#account-token').textContent.length >= 32")
    screenshot(page, "data-account")
    user = db.session.get(User, people["users"]["collab"].id)
    db.session.refresh(user)
    assert (user.plot_format, user.colormap, user.theme) == ("static", "inferno", "light")
    page.goto(f"{live_server}/?id={night['raw_science'].id}")
    page.wait_for_selector("#data-image")  # static, the user's default
    assert page.evaluate("() => [...document.querySelectorAll('link[rel=stylesheet]')]"
                         ".some(l => l.href.includes('flatly'))")  # the light theme
    assert page.input_value("#data-advanced-colormap") == "inferno"
    # changed in Advanced Visualization, then "Reset to my defaults": the account's choices again, redrawn
    page.click("#data-advanced-button")
    drawn = page.get_attribute("#data-image", "src")
    page.select_option("#data-advanced-colormap", "viridis")
    # redrawn in viridis before the next change (two redraws in flight could answer in either order)
    page.wait_for_function("(drawn) => { const image = document.querySelector('#data-image');"
                           " return image && image.src !== drawn; }", arg=drawn)
    page.click("label[for='_dbcprivate_radioitems_data-advanced-format_input_interactive']")
    page.wait_for_selector("#data-viewer .js-plotly-plot")
    page.click("#data-advanced-reset")
    page.wait_for_selector("#data-image")
    assert page.input_value("#data-advanced-colormap") == "inferno"
    assert page.is_checked("#_dbcprivate_radioitems_data-advanced-format_input_static")


def test_a_user_of_another_proposal_sees_none_of_it(live_server, page, people, night):
    log_in(page, live_server, "stranger")
    assert page.inner_text("#observed-count") == "1"
    assert night["secret"].file_name in page.inner_text("#observed-index")
    assert night["raw_science"].file_name not in page.inner_text("#observed-index")
    assert page.inner_text("#calibrations-count") == "1"  # master calibrations are everyone's
    for key in ("raw_science", "calibrated_science", "reduced_arc"):
        page.goto(f"{live_server}/?id={night[key].id}")
        page.wait_for_selector("#data-file-missing")
        assert title(page) == "File not found"
        assert night[key].file_name not in page.content()
    screenshot(page, "data-stranger-not-found")
    page.goto(f"{live_server}/search")
    page.wait_for_selector("#search-grid .ag-row")
    assert page.inner_text("#search-count") == "2"
    grid = page.inner_text("#search-grid")
    assert night["secret"].file_name in grid and night["raw_science"].file_name not in grid
    proposals = page.evaluate("() => document.body.innerText")
    assert "SOAR2026B-001" not in proposals


def test_ag_grid_runs_only_on_the_search_page(live_server, page, people, night):
    """Every page but Search is spared AG Grid's 1.3 MB script; Search loads it, from a link or a reload."""
    log_in(page, live_server, "stranger")
    assert page.evaluate("() => typeof window.dash_ag_grid") == "undefined"
    assert page.locator("script[src*='dash_ag_grid']").count() == 0
    assert page.locator("link[rel='prefetch'][data-gsp-library='dash_ag_grid']").count() == 1
    page.click("a.nav-link[href='/search']")  # in-page navigation: no new index
    page.wait_for_selector("#search-grid .ag-row")
    assert page.evaluate("() => typeof window.dash_ag_grid") == "object"
    assert page.inner_text("#search-count") == "2"
    screenshot(page, "search-after-data-page")
    page.goto(f"{live_server}/search")  # a new index: the script is loaded again, by Search
    page.wait_for_selector("#search-grid .ag-row")
    assert page.inner_text("#search-count") == "2"
