"""UI timings in Debian's chromium (Playwright): what an observer waits for.

    .venv/bin/python bench/ui.py [--files 100000] [--repeat 7]

Builds a throw-away app (SQLite in a temp folder) whose catalogue holds ``--files`` raw
rows plus one synthetic night with real FITS products, serves it with werkzeug
(threaded), and prints medians of:

* login -> Data page drawn (index listed and the newest file drawn: the first animation frame in which both
  are visible, noted by the page; and when Playwright's polling saw them), per format;
* switching files (index click / tab click -> the new figure drawn), per format;
* live index latency (a row committed -> it is listed, no reload);
* Search page: table shown, and one filter applied;
* server side: change_stamp and one poll callback, the Observed index query.

Not run by the tests (it takes a minute or two).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.instance import ReductionLoad, load_average  # noqa: E402


def bulk_files(count: int, proposal_ids: list[int], folder: Path) -> None:
    """``count`` light raw rows (no FITS on disk), inserted in batches with SQLAlchemy core."""
    import sqlalchemy as sa

    from db import db
    from db.models import File

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    obstypes = ("BIAS", "FLAT", "COMP", "SPECTRUM", "OBJECT")
    batch = []
    for number in range(count):
        night = start + timedelta(days=number // 400)
        name = f"{number % 400:04d}_bench_{number}_{night:%d-%m-%Y}.fits"
        batch.append({
            "file_name": name, "directory_name": str(folder), "full_path": str(folder / name), "data_type": 0,
            "proposal_id": proposal_ids[number % len(proposal_ids)], "obstype": obstypes[number % len(obstypes)],
            "technique": "Spectroscopy", "object": "bench", "instconf": "Red", "grating": "400_SYZY",
            "wavmode": "400_M2", "filter": "NO_FILTER", "filter_2": "GG455", "slit": "1.0_LONG_SLIT",
            "roi": "Spectroscopic 2x2", "date": f"{night:%Y-%m-%d}", "state": "done", "state_reason": "",
            "created": night, "last_modified": night, "date_obs": night + timedelta(seconds=number),
            "version": 1, "normalized": False,
        })
        if len(batch) == 5000:
            db.session.execute(sa.insert(File), batch)
            batch = []
    if batch:
        db.session.execute(sa.insert(File), batch)
    db.session.commit()


# Playwright's waits poll with growing pauses (up to 0.5 s), so "seen by Playwright" lags what the observer
# sees; the page itself notes the first animation frame in which all of ``selectors`` are in and visible.
DRAWN_PROBE = """(selectors) => { window.__drawn = null; const check = () => {
    if (window.__drawn === null && selectors.every(s => { const e = document.querySelector(s);
        return e && e.checkVisibility({visibilityProperty: true, opacityProperty: true})
               && e.getBoundingClientRect().width > 0; })) {
        window.__drawn = 0; requestAnimationFrame(() => { window.__drawn = Date.now(); }); } };
    document.addEventListener('DOMContentLoaded', () => new MutationObserver(check)
        .observe(document.body, {subtree: true, childList: true, attributes: true})); }"""


def median_ms(values) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms" if values else "    n/a"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--while-reducing", action="store_true",
                        help="measure while a night is reduced on the same machine (at the workers' priority)")
    args = parser.parse_args(argv)

    from tests.conftest import CHROMIUM_ARGS, PASSWORD, make_app, migrate
    from tests.test_data_page import add_file, build_night

    work = Path(tempfile.mkdtemp(prefix="gsp-bench-ui-"))
    app = make_app(work, f"sqlite:///{work / 'gsp.sqlite3'}")
    migrate(app)
    server_rows = {}
    with app.server.app_context():
        from auth.accounts import add_collaborator, create_proposal, create_user
        from db import db

        users = {name: create_user(username=name, email=f"{name}@example.org", password=PASSWORD,
                                   first_name=name.title(), last_name="Bench", is_staff=(name == "staff"))
                 for name in ("staff", "pi", "collab")}
        db.session.flush()
        mine = create_proposal(soar_id="SOAR2026B-001", semester="2026B", title="Bench", pi=users["pi"])
        others = [create_proposal(soar_id=f"SOAR2026B-{n:03d}", semester="2026B", title="Other", pi=None)
                  for n in range(2, 6)]
        db.session.flush()
        add_collaborator(mine, users["collab"])
        users["collab"].plot_format = "static"
        db.session.commit()
        t = time.perf_counter()
        bulk_files(args.files, [mine.id] + [p.id for p in others], work / "data" / "raw" / "bench")
        print(f"catalogue: {args.files:,} raw rows inserted in {time.perf_counter() - t:.1f} s")
        night = build_night(work / "data", work / "products", mine)
        server_rows = {key: (row.id, row.file_name, row.full_path) for key, row in night.items()}
        mine_id = mine.id

        from auth import nights, queries

        pi = users["pi"]
        timings = {}
        for label, call in (("change_stamp (pi)", lambda: queries.change_stamp(pi)),
                            ("change_stamp (staff)", lambda: queries.change_stamp(users["staff"])),
                            ("Observed page 1 (pi)", lambda: queries.page_of_files(pi, {"data_type": 0}, 1, 20)),
                            ("Observed last page (pi)",
                             lambda: queries.page_of_files(pi, {"data_type": 0}, 10**9, 20)),
                            ("Search filter options (pi)", lambda: queries.distinct_values(pi)),
                            ("night at a glance, newest night (pi)",
                             lambda: nights.night_summary(pi, nights.latest_night(pi))),
                            ("Search page 1, obstype=COMP (pi)",
                             lambda: queries.page_of_files(pi, {"obstype": "COMP"}, 1, 50))):
            samples = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t)
            timings[label] = samples

    from werkzeug.serving import make_server

    load = ReductionLoad(work / "load") if args.while_reducing else None
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    results: dict[str, list[float]] = {}

    from playwright.sync_api import sync_playwright

    try:  # the load must not outlive a failed run
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                                 headless=True, args=CHROMIUM_ARGS)
            for username, fmt in (("pi", "interactive"), ("collab", "static")):
                page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
                drawn = ("#data-viewer .js-plotly-plot .heatmaplayer, #data-viewer .js-plotly-plot .scatterlayer"
                         if fmt == "interactive" else "#data-image")
                page.add_init_script(f"({DRAWN_PROBE})({['#observed-index .gsp-index-item', drawn]!r})")
                for attempt in range(max(2, args.repeat // 2)):
                    page.goto(f"{url}/login")
                    page.fill("#username", username)
                    page.fill("#password", PASSWORD)
                    t, wall = time.perf_counter(), time.time()
                    page.click("#login-submit")
                    page.wait_for_selector("#observed-index .gsp-index-item")
                    page.wait_for_selector(drawn, timeout=30_000)
                    seen = time.perf_counter() - t
                    page.wait_for_function("() => window.__drawn > 0")
                    results.setdefault(f"login -> Data page drawn ({fmt})", []).append(
                        page.evaluate("window.__drawn") / 1000 - wall)
                    results.setdefault(f"login -> Data page seen by Playwright ({fmt})", []).append(seen)
                    page.click("#nav-logout")  # Sign Out POSTs its form
                    page.wait_for_url(f"{url}/login")
                page.goto(f"{url}/login")
                page.fill("#username", username)
                page.fill("#password", PASSWORD)
                page.click("#login-submit")
                page.wait_for_selector("#observed-index .gsp-index-item")
                page.click(f"#observed-index [data-file-name='{server_rows['raw_science'][1]}']")
                chain = ["reduced_science", "extracted_science", "calibrated_science", "raw_science"]
                for _ in range(max(1, args.repeat // 4)):
                    for key in chain:
                        file_id, name, _path = server_rows[key]
                        label = {"raw_science": "Observed Raw", "reduced_science": "Reduced",
                                 "extracted_science": "Extracted \u00b7 target 1",
                                 "calibrated_science": "Wavelength Calibrated \u00b7 target 1"}[key]
                        t = time.perf_counter()
                        page.click(f"#data-tabs [data-label='{label}']")
                        if fmt == "interactive":
                            page.wait_for_function(
                                "(n) => { const g = document.querySelector('#data-graph .js-plotly-plot'); "
                                "return g && g._fullLayout && g._fullLayout.uirevision === n; }", arg=name,
                                timeout=30_000)
                        else:
                            page.wait_for_function(
                                "(n) => { const i = document.querySelector('#data-image'); "
                                "return i && i.alt === n && i.complete; }", arg=name, timeout=30_000)
                        kind = "2D" if key in ("raw_science", "reduced_science") else "1D"
                        results.setdefault(f"switch file, {kind} ({fmt})", []).append(time.perf_counter() - t)
                if username == "pi":
                    with app.server.app_context():
                        from db import db

                        raw_dir = Path(server_rows["raw_science"][2]).parent
                        page.evaluate("""() => { window.__seen = {}; new MutationObserver(() =>
                            document.querySelectorAll('#observed-index [data-file-name]').forEach(e => {
                                const n = e.getAttribute('data-file-name');
                                if (!(n in window.__seen)) { window.__seen[n] = Date.now(); } })
                            ).observe(document.body, {subtree: true, childList: true}); }""")
                        for number in range(max(3, args.repeat // 2)):
                            arriving = raw_dir / f"09{number:02d}_arrival_27-11-2026.fits"
                            shutil.copyfile(server_rows["raw_science"][2], arriving)
                            page.wait_for_timeout(1000 * (0.137 * number % 0.7))  # any phase of the 0.7 s poll
                            t, wall = time.perf_counter(), time.time()
                            add_file(arriving, proposal=SimpleNamespace(id=mine_id))
                            db.session.commit()
                            page.wait_for_selector(f"#observed-index [data-file-name='{arriving.name}']",
                                                   timeout=10_000)
                            detected = time.perf_counter() - t
                            listed = page.evaluate("(n) => window.__seen[n]", arriving.name) / 1000 - wall
                            results.setdefault("live index: commit -> listed in the DOM", []).append(listed)
                            results.setdefault("live index: commit -> seen by Playwright", []).append(detected)
                            page.wait_for_timeout(500)
                    for _ in range(max(2, args.repeat // 2)):
                        t = time.perf_counter()
                        page.goto(f"{url}/search")
                        page.wait_for_selector("#search-grid .ag-row")
                        results.setdefault("Search page shown", []).append(time.perf_counter() - t)
                        t = time.perf_counter()
                        page.goto(f"{url}/search?obstype=COMP")
                        page.wait_for_function("() => { const c = document.querySelector('#search-count'); "
                                               "return c && c.textContent.trim() !== '0'; }")
                        page.wait_for_selector("#search-grid .ag-row")
                        results.setdefault("Search page, bookmarked filter", []).append(time.perf_counter() - t)
                page.context.close()
            browser.close()
    finally:
        server.shutdown()
        if load is not None:
            load.stop()

    busy = ", while a night was reduced (nice 10)" if load is not None else ""
    busy += f"; load average {load_average()} on {os.cpu_count()} CPUs"
    print(f"\nGSP Live UI timings ({args.files:,} files, medians; chromium headless, werkzeug threaded{busy})")
    for label, samples in results.items():
        print(f"  {label:<48} {median_ms(samples)}   (n={len(samples)})")
    print("server side:")
    for label, samples in timings.items():
        print(f"  {label:<48} {median_ms(samples)}   (n={len(samples)})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
