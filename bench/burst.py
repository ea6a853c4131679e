"""A whole night landing at once (a copied night, a backlog after an outage) through the live chain on
PostgreSQL, with 1 and 2 `rq worker`s, against the offline twin on the same night.

    .venv/bin/python bench/burst.py                          # seeds 71 and 72 (~6 min)
    .venv/bin/python bench/burst.py --seeds 5 --workers 1 2 3 [--science 10]

Per seed, a generated night (400_M2 and 930_M2, 10 bias and 10 flats per configuration as the
proposal's default minimums ask, a standard star and ``--science`` (4) science frames per configuration,
cosmic rays at ``--cosmic-ray-rate``) is copied into `raw/` of a fresh `make run` instance
(`bench/instance.py`, `DATABASE_URL` on a throw-away PostgreSQL cluster), and the clock runs until
every science target's flux-calibrated row and every standard's sensitivity function exist and no
job is queued or running (polled once a second; the wall time ends with the last job's finish in the
catalogue).  The same night then goes through `python -m pipeline reduce-night`.
Printed: wall times, the speed-up of 2 workers over 1, the ratio to the twin, and where the workers'
time went (run seconds per job kind, and how busy the workers were).

Goals (issue 12): 2 workers >= 1.6x faster than 1; within 1.5x the offline twin.
Results: `bench/results/burst.json`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from bench.instance import MakeRun, PostgresServer, epoch, load_average, wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GOALS = {"speedup_2_over_1_at_least": 1.6, "two_workers_over_twin_at_most": 1.5}


def expected_products(truth: dict) -> tuple[int, int]:
    """Flux-calibrated spectra (one per science target) and sensitivity functions (one per standard)."""
    frames = [frame for frame in truth["files"].values() if frame["obstype"] == "SPECTRUM"]
    standards = [frame for frame in frames if frame.get("standard")]
    science_targets = sum(len(frame["targets"]) for frame in frames if not frame.get("standard"))
    return science_targets, len(standards)


def print_timeline(jobs: list, started: float) -> None:
    """Each job's wait and run, in seconds from the copy, for seeing where workers sat idle."""
    for job in jobs:
        if job.started_at and job.finished_at:
            print(f"    {job.id:4d} {job.kind:<22} file {job.file_id or '-':>5}"
                  f"  created {epoch(job.created) - started:6.2f}"
                  f"  ran {epoch(job.started_at) - started:6.2f} -> {epoch(job.finished_at) - started:6.2f}"
                  f"  (run {job.attempts} times)")


def live_burst(work: Path, night: Path, truth: dict, workers: int, database_url: str, timeout: float,
               timeline: bool = False) -> dict:
    instance = MakeRun(work, workers=workers, database_url=database_url)
    try:
        fluxed, functions = expected_products(truth)
        folder = instance.raw / truth["night"]["date"].replace("-", "")
        started = time.time()
        shutil.copytree(night, folder, ignore=shutil.ignore_patterns("*.json"))

        def finished():
            status = instance.status()
            if status["jobs"]["queued"] or status["jobs"]["running"]:
                return False
            made = instance.get("/api/files/", data_type=5, page_size=1)["count"]
            sensitivity = instance.get("/api/files/", data_type=1, obstype="SPECTRUM", page_size=1)["count"]
            return made >= fluxed and sensitivity >= functions
        wait_for(finished, timeout, 1.0, "the night to be reduced")  # rarely: polling is load on the machine
        jobs = instance.jobs()
        if timeline:
            print_timeline(jobs, started)
        wall = max(epoch(job.finished_at) for job in jobs if job.finished_at) - started  # the last job's end
        failed = [tuple(job) for job in jobs if job.state == "failed"]
        if failed:
            raise RuntimeError(f"failed jobs: {failed}")
        runs = {}
        for job in jobs:
            if job.started_at and job.finished_at:
                runs.setdefault(job.kind, []).append(epoch(job.finished_at) - epoch(job.started_at))
        busy = sum(sum(values) for values in runs.values())
        return {"workers": workers, "wall_s": round(wall, 2), "jobs": len(jobs),
                "run_s_by_kind": {kind: round(sum(values), 2) for kind, values in sorted(runs.items())},
                "jobs_by_kind": {kind: len(values) for kind, values in sorted(runs.items())},
                "workers_busy_fraction": round(busy / (workers * wall), 3)}
    finally:
        instance.stop()


def twin(night: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "reduce-night", str(night), str(out)], cwd=ROOT, check=True,
                   capture_output=True)
    return round(time.perf_counter() - started, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[71, 72])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cosmic-ray-rate", type=float, default=0.3, help="hits per second of exposure")
    parser.add_argument("--science", type=int, default=4, help="science frames per configuration")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--timeline", action="store_true", help="print every job's wait and run")
    parser.add_argument("--output", default=str(RESULTS / "burst.json"))
    args = parser.parse_args(argv)
    from pipeline.simulate import simulate_night

    work = Path(tempfile.mkdtemp(prefix="gsp-bench-burst-"))
    nights = []
    try:
        for seed in args.seeds:
            night = work / f"night{seed}"
            truth = json.loads(simulate_night(night, seed=seed, n_bias=10, n_flats=10, n_science=args.science,
                                              n_standards=1, cosmic_ray_rate=args.cosmic_ray_rate).read_text())
            result = {"seed": seed, "frames": len(truth["files"]), "load_average_at_start": load_average(),
                      "twin_s": twin(night, work / f"twin{seed}"), "live": []}
            print(f"seed {seed}: {result['frames']} frames; offline twin {result['twin_s']:.1f} s", flush=True)
            for workers in args.workers:
                postgres = PostgresServer()
                try:
                    live = live_burst(work / f"live{seed}-{workers}", night, truth, workers, postgres.url,
                                      args.timeout, args.timeline)
                finally:
                    postgres.stop()
                result["live"].append(live)
                print(f"  {workers} worker(s): {live['wall_s']:.1f} s ({live['wall_s'] / result['twin_s']:.2f}x the "
                      f"twin), workers busy {live['workers_busy_fraction']:.0%}; run s by kind "
                      f"{live['run_s_by_kind']}", flush=True)
            by_workers = {live["workers"]: live["wall_s"] for live in result["live"]}
            if 1 in by_workers and 2 in by_workers:
                result["speedup_2_over_1"] = round(by_workers[1] / by_workers[2], 2)
                result["two_workers_over_twin"] = round(by_workers[2] / result["twin_s"], 2)
                print(f"  2 workers over 1: {result['speedup_2_over_1']:.2f}x (goal >= 1.6); 2 workers / twin "
                      f"{result['two_workers_over_twin']:.2f} (goal <= 1.5)", flush=True)
            nights.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    speedups = [n["speedup_2_over_1"] for n in nights if "speedup_2_over_1" in n]
    ratios = [n["two_workers_over_twin"] for n in nights if "two_workers_over_twin" in n]
    summary = {"speedup_2_over_1_median": statistics.median(speedups) if speedups else None,
               "two_workers_over_twin_median": statistics.median(ratios) if ratios else None}
    print(f"\nmedian over {len(nights)} nights: {summary}")
    write_results({"nights": nights, "summary": summary, "goals": GOALS, "cosmic_ray_rate": args.cosmic_ray_rate,
                   "science_per_configuration": args.science,
                   "code": code_version()}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
