"""Live latency: a science frame lands in `raw/` -> every target's wavelength-calibrated row in the API, with
its timeline (which stage of which job took the time).

    .venv/bin/python bench/latency.py                              # 3 nights, 2 workers (~3 min)
    .venv/bin/python bench/latency.py --seeds 61 62 63 --cosmic-ray-rates 0.1 0.8 --targets 1 2 3 --standards 1
    .venv/bin/python bench/latency.py --browser --timeline         # the Data page following the night, too

Each night is a fresh `make run` instance (`bench/instance.py`: `scripts/run` with its own Redis, 2 `rq worker`s
by default, the watcher, the web app, SQLite), as a new user starts it, with the proposal's default settings
(10 bias, 10 flats; LACosmic for 2x2; flexure, flux and telluric correction on).  Nights are generated: one per
seed (``--seeds``), each with the next of ``--cosmic-ray-rates`` and ``--targets`` (1-3 targets in every science
frame; 0: the usual pointings, of 1 and 2 targets in turn) and ``--configurations``.  Its bias frames, flats,
arcs and (``--standards``) standard stars land first, and the benchmark waits until the queue is idle (masters
built, arcs reduced, sensitivity functions made).  Then its science frames land one at a time, alternating
configurations: the first frame of each configuration is the *cold* case (first use of its masters and arc),
the others *warm*.  For each frame the clock runs from the rename into `raw/` until
`GET /api/files/?search=<frame>` lists a wavelength-calibrated row per target (polled every 100 ms with an API
token), then (with a standard) a flux-calibrated row per target and, from a target's second exposure on, its
combined spectrum.  With ``--browser`` a Data page (Debian's chromium, the admin's account, Follow on, as
the page opens) follows the night, and the delay from the frame's final product being committed (its job's
end) to the page having drawn it (the first animation frame with its title and its plot) is measured.

The timeline of a frame comes from its `jobs` rows (created, started, finished) and the stages the science
timed in each job (``pipeline.timing``; the job's ``result["seconds"]``): the watcher's notice and
catalogue (landing -> the raw row's ``ingested_at``), each job's queue wait, its stages (read, cosmic rays,
targets found and traced, extraction, arc extraction, wavelength solution, flexure, flux, combine, write),
the rest of its run (the job's queries and its commit) and the hand-over to the next job.

Goals (issue 25): cold median < 1.5 s and worst < 2 s; warm median < 1 s; flux-calibrated and combined
within 0.5 s more; the Data page within 0.5 s of the API.  Results: `bench/results/latency.json`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from bench.instance import MakeRun, epoch, land, load_average, wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GOALS = {"cold_median_s": 1.5, "cold_worst_s": 2.0, "warm_median_s": 1.0, "flux_extra_s": 0.5,
         "combined_extra_s": 0.5, "page_delay_s": 0.5}
WAVELENGTH, FLUX, COMBINED = 4, 5, 6

# The page notes, per file name, the first animation frame in which its title and its plot are drawn.
DRAWN_PROBE = """() => { window.__drawn = {}; const check = () => {
    const t = document.querySelector('#data-title'); const g = document.querySelector('#data-graph .js-plotly-plot');
    if (!t || !g || !g._fullLayout) { return; }
    const name = t.textContent.trim();
    if (name && g._fullLayout.uirevision === name && !(name in window.__drawn)) {
        window.__drawn[name] = 0; requestAnimationFrame(() => { window.__drawn[name] = Date.now() / 1000; }); } };
    document.addEventListener('DOMContentLoaded', () => new MutationObserver(check)
        .observe(document.body, {subtree: true, childList: true, attributes: true})); }"""


def timeline(instance: MakeRun, raw_id: int, landed: float, ingested: float) -> list[dict]:
    """The frame's jobs in order of start: kind, file, seconds from landing (created, started, finished),
    and the stages the science timed."""
    rows = instance.jobs(f"file_id = {int(raw_id)} OR file_id IN (SELECT id FROM files WHERE original_file_id = "
                         f"{int(raw_id)})")
    events = [{"kind": "watcher + catalogue", "started": 0.0, "finished": round(ingested - landed, 3)}]
    for job in rows:
        if job.started_at is None or job.finished_at is None:
            continue
        result = _result(job)
        events.append({"kind": job.kind, "file_id": job.file_id, "created": round(epoch(job.created) - landed, 3),
                       "started": round(epoch(job.started_at) - landed, 3),
                       "finished": round(epoch(job.finished_at) - landed, 3),
                       "seconds": result.get("seconds", {})})
    return sorted(events, key=lambda event: event["started"])


def stages_of(events: list[dict], seen: float) -> dict:
    """Seconds per stage, summed over the frame's jobs (its targets' jobs add up): queue waits, the science's
    stages, each job's own queries and commit ("<kind>: rest"), and the time between the last job's end and
    the poll that saw it."""
    stages: dict[str, float] = {"watcher + catalogue": events[0]["finished"]}

    def add(name, value):
        stages[name] = round(stages.get(name, 0.0) + value, 4)
    for event in events[1:]:
        add(f"{event['kind']}: queue wait", event["started"] - event["created"])
        run = event["finished"] - event["started"]
        for name, value in event["seconds"].items():
            add(f"{event['kind']}: {name}", value)
        add(f"{event['kind']}: rest (queries, commit)", run - sum(event["seconds"].values()))
    calibrated = [event["finished"] for event in events if event["kind"] == "calibrate_wavelength"]
    if calibrated:
        add("last wavelength job's end -> seen in the API", seen - max(calibrated))
    return stages


def print_timeline(events: list[dict]) -> None:
    for event in events:
        stages = ", ".join(f"{name} {value:.3f}" for name, value in event.get("seconds", {}).items())
        wait = f" (queued {event['created']:.3f})" if "created" in event else ""
        print(f"      {event['started']:6.3f} -> {event['finished']:6.3f} s  {event['kind']}{wait}"
              f"{'  [' + stages + ']' if stages else ''}")


def measure(instance: MakeRun, source: Path, folder: Path, targets: int, *, flux: bool, combined: bool,
            page, timeout: float) -> dict:
    """Land ``source`` and time it into the API: its wavelength-calibrated rows, then (``flux``) its
    flux-calibrated ones and (``combined``) its combined spectra."""
    stem = source.name.removesuffix(".fits")
    landed = land(source, folder)
    wanted = {WAVELENGTH: targets, FLUX: targets if flux else 0}
    seen: dict[int, float] = {}

    def arrived():
        rows = instance.files(search=stem)
        for level, count in wanted.items():
            if level not in seen and count and sum(int(row["data_type"]) == level for row in rows) >= count:
                seen[level] = time.time() - landed
        return all(level in seen for level, count in wanted.items() if count)
    wait_for(arrived, timeout, 0.1, f"{source.name} to be calibrated")
    raw = instance.files(data_type=0, search=stem)[0]
    if combined:
        def combined_in():
            made = instance.db(f"SELECT COUNT(*) FROM files WHERE data_type = {COMBINED} AND original_file_id = "
                               f"{int(raw['id'])}")[0][0]
            return made >= targets
        wait_for(combined_in, timeout, 0.1, f"{source.name}'s combined spectra")
        seen[COMBINED] = time.time() - landed
    instance.wait_idle(timeout)
    events = timeline(instance, raw["id"], landed, epoch(raw["ingested_at"]) or landed)
    frame = {"frame": source.name, "targets": targets, "seen_in_api_s": round(seen[WAVELENGTH], 3),
             "flux_extra_s": round(seen[FLUX] - seen[WAVELENGTH], 3) if FLUX in seen else None,
             "combined_extra_s": round(seen[COMBINED] - seen[WAVELENGTH], 3) if COMBINED in seen else None,
             "timeline": events, "stages_s": stages_of(events, seen[WAVELENGTH])}
    if page is not None:
        frame["page"] = page_delay(instance, page, raw["id"], timeout)
    return frame


def page_delay(instance: MakeRun, page, raw_id: int, timeout: float) -> dict:
    """The Data page following the night: when it drew the frame's most calibrated file (as Follow chooses it:
    ``auth.queries.most_calibrated_id``), after that file came into the API: the commit of the job that made it
    (its ``finished_at``, set in that commit).  Also from the file's row's ``ingested_at`` (the row is made
    before the job's last steps, 0.1-0.4 s before the commit for a flux calibration or a combined spectrum)."""
    file_id, name, catalogued = instance.db(
        f"SELECT id, file_name, ingested_at FROM files WHERE original_file_id = {int(raw_id)} AND data_type != 1 "
        "ORDER BY data_type DESC, target, id DESC LIMIT 1")[0]
    made = [job for job in instance.jobs(f"finished_at IS NOT NULL AND id > (SELECT MIN(id) FROM jobs WHERE file_id "
                                         f"= {int(raw_id)})") if file_id in _result(job).get("products", ())]
    committed = epoch(made[0].finished_at) if made else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drawn = page.evaluate("(n) => window.__drawn[n] || null", name)
        if drawn:
            return {"file": name, "delay_s": round(drawn - committed, 3) if committed else None,
                    "after_catalogued_s": round(drawn - epoch(catalogued), 3)}
        page.wait_for_timeout(100)
    return {"file": name, "delay_s": None, "after_catalogued_s": None}


def _result(job) -> dict:
    return (json.loads(job.result) if isinstance(job.result, str) else job.result) or {}


def night(work: Path, seed: int, rate: float, targets: int, configurations: list[str], standards: int,
          science: int) -> tuple[Path, dict]:
    from pipeline.simulate import simulate_night

    source = work / "night"
    truth = json.loads(simulate_night(source, seed=seed, n_bias=10, n_flats=10, n_science=science,
                                      n_standards=standards, cosmic_ray_rate=rate, configurations=configurations,
                                      targets=targets or None).read_text())
    return source, truth


def one_run(work: Path, seed: int, rate: float, targets: int, args) -> list:
    source, truth = night(work, seed, rate, targets, args.configurations, args.standards, args.science)
    files = truth["files"]
    science = {}
    for name in sorted(files):
        if files[name]["obstype"] == "SPECTRUM" and "standard" not in files[name]:
            science.setdefault(files[name]["config"], []).append(name)
    instance = MakeRun(work / "instance", workers=args.workers)
    browser = None
    try:
        folder = instance.raw / truth["night"]["date"].replace("-", "")
        folder.mkdir(parents=True)
        started = time.perf_counter()
        for name in sorted(files):
            if not any(name in names for names in science.values()):
                land(source / name, folder)
        arcs = 2 * len(args.configurations)
        wait_for(lambda: instance.idle() and len(instance.files(data_type=2, obstype="COMP")) == arcs,
                 args.timeout, 0.2, "calibrations to be built and arcs reduced")
        instance.wait_idle(args.timeout)
        print(f"  seed {seed} ({rate} cosmic rays/s, {targets or '1-2'} target(s)): calibrations, arcs and standards "
              f"ready {time.perf_counter() - started:.1f} s after landing (load {load_average()})", flush=True)
        page = None
        if args.browser:
            browser, page = data_page(instance)
        frames, exposures = [], {}
        for index in range(args.science):  # alternate configurations: each one's first frame is cold
            for config, names in science.items():
                name = names[index]
                time.sleep(1.0)
                target_key = files[name]["targets"][0]["trace"][0]
                exposures[(config, target_key)] = exposures.get((config, target_key), 0) + 1
                frame = measure(instance, source / name, folder, len(files[name]["targets"]),
                                flux=args.standards > 0, combined=exposures[(config, target_key)] > 1, page=page,
                                timeout=args.timeout)
                frame.update(seed=seed, config=config, cold=index == 0, cosmic_ray_rate=rate, load=load_average())
                frames.append(frame)
                extra = "".join(f", {label} +{frame[key]:.2f} s" for label, key in
                                (("flux", "flux_extra_s"), ("combined", "combined_extra_s")) if frame[key] is not None)
                shown = f", Data page +{frame['page']['delay_s']:.2f} s" if frame.get("page", {}).get("delay_s") \
                    is not None else ""
                print(f"    {name:40s} {'cold' if index == 0 else 'warm'} {frame['targets']} target(s): "
                      f"{frame['seen_in_api_s']:.2f} s{extra}{shown}", flush=True)
                if args.timeline:
                    print_timeline(frame["timeline"])
        failed = instance.jobs("state = 'failed'")
        if failed:
            raise RuntimeError(f"failed jobs: {[tuple(row) for row in failed]}")
        return frames
    finally:
        if browser is not None:
            browser.close()
            browser.playwright.stop()
        instance.stop()


def data_page(instance: MakeRun):
    """A logged-in Data page (the admin's, Follow on) in Debian's chromium, noting when each file is drawn."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_ARGS

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         headless=True, args=CHROMIUM_ARGS)
    browser.playwright = playwright
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.add_init_script(f"({DRAWN_PROBE})()")
    page.goto(f"{instance.url}/login")
    page.fill("#username", "admin")
    page.fill("#password", instance.password)
    page.click("#login-submit")
    page.wait_for_selector("#observed-index .gsp-index-item")
    return browser, page


def summary(values: list[float]) -> dict:
    values = [value for value in values if value is not None]
    if not values:
        return {"n": 0, "median_s": None, "worst_s": None}
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "worst_s": round(max(values), 3)}


def cycle(values: list, index: int):
    return values[index % len(values)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[61, 62, 63], help="one night (make run) per seed")
    parser.add_argument("--cosmic-ray-rates", type=float, nargs="+", default=[0.3],
                        help="hits per second of exposure; the nights take them in turn")
    parser.add_argument("--targets", type=int, nargs="+", default=[0],
                        help="targets in every science frame (1-3; 0: the usual pointings); the nights take them in turn")
    parser.add_argument("--configurations", nargs="+", default=["400_M2", "930_M2"])
    parser.add_argument("--standards", type=int, default=0, help="standard stars per configuration (flux, combined)")
    parser.add_argument("--science", type=int, default=3, help="science frames per configuration and night")
    parser.add_argument("--workers", type=int, default=2, help="rq workers (make run starts 2)")
    parser.add_argument("--browser", action="store_true", help="a Data page follows the night (chromium)")
    parser.add_argument("--timeline", action="store_true", help="print every frame's jobs and stages")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", help="work in this folder and keep it")
    parser.add_argument("--output", default=str(RESULTS / "latency.json"))
    args = parser.parse_args(argv)

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gsp-bench-latency-"))
    frames, load = [], []
    try:
        for run, seed in enumerate(args.seeds):
            load.append(load_average())
            frames += one_run(work / f"run{run}", seed, cycle(args.cosmic_ray_rates, run), cycle(args.targets, run),
                              args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(frames, load, args)
    return 0


def report(frames: list[dict], load: list[float], args) -> None:
    cold = summary([f["seen_in_api_s"] for f in frames if f["cold"]])
    warm = summary([f["seen_in_api_s"] for f in frames if not f["cold"]])
    flux = summary([f["flux_extra_s"] for f in frames])
    combined = summary([f["combined_extra_s"] for f in frames])
    page = summary([f.get("page", {}).get("delay_s") for f in frames])
    page_catalogued = summary([f.get("page", {}).get("after_catalogued_s") for f in frames])
    stage_names = list(dict.fromkeys(key for frame in frames for key in frame["stages_s"]))
    medians = {path: {name: round(statistics.median(f["stages_s"].get(name, 0.0) for f in chosen), 3)
                      for name in stage_names}
               for path, chosen in (("cold", [f for f in frames if f["cold"]]),
                                    ("warm", [f for f in frames if not f["cold"]])) if chosen}
    met = {"cold_median_s": cold["median_s"] < GOALS["cold_median_s"],
           "cold_worst_s": cold["worst_s"] < GOALS["cold_worst_s"],
           "warm_median_s": warm["median_s"] is not None and warm["median_s"] < GOALS["warm_median_s"]}
    for name, part in (("flux_extra_s", flux), ("combined_extra_s", combined), ("page_delay_s", page)):
        if part["n"]:
            met[name] = part["worst_s"] < GOALS[name]
    print(f"\nlanding -> every target wavelength calibrated in GET /api/files/ ({args.workers} workers, "
          f"{len(args.seeds)} nights, load average {min(load)}-{max(load)} at the nights' starts):")
    for label, part, goal in (("cold (first frame of a configuration)", cold, "median < 1.5 s, worst < 2 s"),
                              ("warm", warm, "median < 1 s"), ("flux calibrated: extra", flux, "< 0.5 s"),
                              ("combined: extra", combined, "< 0.5 s"),
                              ("Data page (Follow) after the API", page, "< 0.5 s"),
                              ("  the same, after the row was made", page_catalogued, "")):
        if part["n"]:
            print(f"  {label:40s} median {part['median_s']:.2f} s, worst {part['worst_s']:.2f} s over {part['n']}"
                  + (f" (goal: {goal})" if goal else ""))
    print(f"  goals met: {met}")
    print("median per stage (s), summed over a frame's targets:   cold    warm")
    for name in stage_names:
        print(f"  {name:52s} {medians.get('cold', {}).get(name, 0.0):6.3f}  {medians.get('warm', {}).get(name, 0.0):6.3f}")
    write_results({"frames": frames, "cold": cold, "warm": warm, "flux_extra": flux, "combined_extra": combined,
                   "page_delay": page, "page_delay_after_catalogued": page_catalogued, "stage_medians_s": medians, "goals": GOALS, "met": met,
                   "workers": args.workers, "seeds": args.seeds, "cosmic_ray_rates": args.cosmic_ray_rates,
                   "targets": args.targets, "configurations": args.configurations, "standards": args.standards,
                   "load_average_at_run_start": load, "code": code_version()}, args.output)


if __name__ == "__main__":
    sys.exit(main())
