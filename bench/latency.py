"""Live latency benchmark: a science frame lands in the watched folder -> its wavelength-calibrated row.

    .venv/bin/python bench/latency.py                     # 6 science frames, 1 worker (~3 min)
    .venv/bin/python bench/latency.py --frames 8 --workers 2 --profile

Real services, as in production on one machine: a ``redis-server`` on a free port,
``rq worker -w live.worker.GspWorker`` process(es) and the watcher
(``flask --app app watch``) as subprocesses, against a fresh migrated SQLite
catalogue.  A generated night (one configuration, 400_M2, 2x2) is used: first its
bias frames, flats and first arc are streamed in, and the benchmark waits until
the masters exist and the arc is reduced.  Then its science frames are dropped
one at a time (atomic rename, as ``pipeline.simulate.stream`` does); for each,
the time from the rename to the first (and to the last) data_type 4 row of that
frame in the catalogue is measured (from the rows' ``created`` stamps, cross-checked
by polling), with the per-stage times from the ``jobs`` rows (queue wait and run
time per kind).  The proposal's settings are the defaults except min_bias/min_flats
(= the night's counts), so cosmic rays are removed with LACosmic (default for 2x2).

``--profile`` also runs the three blocks of one science frame in-process under
cProfile (same functions the jobs call) and prints where the time goes.
Results: ``bench/results/latency.json``.  Goal: median < 2 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent
GOAL_MEDIAN_S = 2.0
SECRET = "bench-latency-secret"
PROPOSAL = "SOAR2026B-001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def land(source: Path, folder: Path) -> float:
    """Copy under a hidden name, then rename into place (what the instrument's writer should do).
    Returns the wall-clock time of the rename (UTC epoch seconds)."""
    partial = folder / f".{source.name}.part"
    shutil.copyfile(source, partial)
    moment = time.time()
    os.replace(partial, folder / source.name)
    return moment


def epoch(value) -> float | None:
    """A catalogue timestamp (SQLite gives naive UTC datetimes or strings) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class Catalogue:
    """Read-only look at the benchmark's SQLite catalogue (a separate connection, as the web server has)."""

    def __init__(self, database: Path):
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(f"sqlite:///{database}")

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as connection:
            return list(connection.execute(self.sa.text(sql), params))

    def raw(self, name: str):
        found = self.rows("SELECT id, ingested_at, state, state_reason FROM files WHERE file_name = :n AND data_type = 0",
                          n=name)
        return found[0] if found else None

    def products(self, raw_id: int, data_type: int) -> list:
        return self.rows("SELECT id, file_name, created FROM files WHERE original_file_id = :r AND data_type = :t "
                         "ORDER BY id", r=raw_id, t=data_type)

    def masters_ready(self) -> bool:
        kinds = self.rows("SELECT obstype, normalized FROM files WHERE data_type = 1")
        return any(o == "BIAS" for o, _ in kinds) and any(n for _, n in kinds)

    def reduced_arcs(self) -> int:
        return len(self.rows("SELECT id FROM files WHERE data_type = 2 AND obstype IN ('COMP', 'ARC')"))

    def jobs_for(self, file_ids: list[int]) -> list:
        marks = ",".join(str(int(i)) for i in file_ids) or "NULL"
        return self.rows(f"SELECT id, kind, file_id, state, reason, created, started_at, finished_at FROM jobs "
                         f"WHERE file_id IN ({marks}) ORDER BY id")

    def failed_jobs(self) -> list:
        return self.rows("SELECT id, kind, file_id, reason FROM jobs WHERE state = 'failed'")


def setup_catalogue(config: dict, n_bias: int, n_flats: int) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from auth.accounts import create_proposal, create_user
    from db import db

    server = create_app(config).server
    with server.app_context():
        upgrade()
        pi = create_user(username="pi", email="pi@example.org", password="Spectral-Lines-42")
        create_user(username="staff", email="staff@example.org", password="Spectral-Lines-42", is_staff=True)
        db.session.flush()
        proposal = create_proposal(soar_id=PROPOSAL, semester="2026B", title="Latency", pi=pi)
        proposal.settings.min_bias = n_bias
        proposal.settings.min_flats = n_flats
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def measure_frame(catalogue: Catalogue, source: Path, folder: Path, n_targets: int, timeout: float) -> dict:
    landed = land(source, folder)
    poll_started = time.perf_counter()
    raw = wait_for(lambda: catalogue.raw(source.name), timeout, what=f"{source.name} to be ingested")
    calibrated = wait_for(lambda: (lambda rows: rows if len(rows) >= n_targets else None)(
        catalogue.products(raw.id, 4)), timeout, what=f"{source.name} to be wavelength calibrated")
    polled = time.perf_counter() - poll_started
    reduced = catalogue.products(raw.id, 2)
    extracted = catalogue.products(raw.id, 3)
    jobs = catalogue.jobs_for([raw.id] + [row.id for row in reduced] + [row.id for row in extracted])
    stages = {"watcher: landing -> ingested": epoch(raw.ingested_at) - landed}
    for job in jobs:
        created, started, finished = epoch(job.created), epoch(job.started_at), epoch(job.finished_at)
        stages.setdefault(f"{job.kind}: queue wait", 0.0)
        stages.setdefault(f"{job.kind}: run", 0.0)
        if started and created:
            stages[f"{job.kind}: queue wait"] += started - created
        if finished and started:
            stages[f"{job.kind}: run"] += finished - started
    first = min(epoch(row.created) for row in calibrated) - landed
    last = max(epoch(row.created) for row in calibrated) - landed
    return {"frame": source.name, "targets": len(calibrated), "first_calibrated_s": round(first, 3),
            "all_calibrated_s": round(last, 3), "polled_all_s": round(polled, 3),
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "jobs": [{"kind": j.kind, "state": j.state, "wait_s": round(epoch(j.started_at) - epoch(j.created), 3)
                      if j.started_at else None,
                      "run_s": round(epoch(j.finished_at) - epoch(j.started_at), 3) if j.finished_at else None}
                     for j in jobs]}


def profile_blocks(raw_dir: Path, config: dict, science: Path, top: int = 25) -> dict:
    """cProfile of the three blocks on one science frame, in-process, with the catalogue's masters and arc."""
    import cProfile
    import io
    import pstats

    import sqlalchemy as sa

    from app import create_app
    from db import db
    from db.models import File
    from pipeline import steps

    server = create_app(config).server
    out = Path(config["DATA_DIR"]) / "profile"
    with server.app_context():
        masters = {(m.obstype, m.normalized): Path(m.full_path)
                   for m in db.session.scalars(sa.select(File).where(File.data_type == 1))}
        arc = db.session.scalar(sa.select(File).where(File.data_type == 2, File.obstype == "COMP"))
        settings = db.session.scalar(sa.select(File).where(File.data_type == 0)).proposal.settings.as_settings()
        arc_path = Path(arc.full_path)
        db.session.remove()
    bias = masters[("BIAS", False)]
    flat = next(path for (obstype, normalized), path in masters.items() if normalized)
    timings = {}
    profiler = cProfile.Profile()

    def block(name, function, *args, **kwargs):
        started = time.perf_counter()
        profiler.enable()
        try:
            return function(*args, **kwargs)
        finally:
            profiler.disable()
            timings[name] = round(time.perf_counter() - started, 3)

    reduced = block("reduce", steps.reduce_raw, science, settings, out, technique="Spectroscopy",
                    bias_path=bias, flat_path=flat)
    targets = block("extract", steps.extract_reduced, reduced.path, settings, out, original=science)
    for target in targets:
        arc_1d = block(f"extract arc (target {target.target})", steps.extract_arc_along, arc_path, target.path, out,
                       target=target.target, original=arc_path, science_label="p")
        block(f"calibrate wavelength (target {target.target})", steps.calibrate_wavelength, target.path,
              arc_1d.path, out, original=science, target=target.target)
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    own = io.StringIO()
    pstats.Stats(profiler, stream=own).sort_stats("tottime").print_stats(15)
    return {"frame": science.name, "block_seconds_under_profiler": timings,
            "cumulative": stream.getvalue(), "tottime": own.getvalue()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6, help="science frames dropped one at a time (>= 5)")
    parser.add_argument("--workers", type=int, default=1, help="rq worker processes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for any one step")
    parser.add_argument("--profile", action="store_true", help="cProfile the blocks of one frame in-process")
    parser.add_argument("--keep", help="work in this folder and keep it")
    parser.add_argument("--output", default=str(RESULTS / "latency.json"))
    args = parser.parse_args(argv)

    from astropy.utils import iers

    iers.conf.auto_download = False
    from pipeline.simulate import simulate_night

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gsp-bench-latency-"))
    if work.exists() and args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        source = work / "night"
        truth = json.loads(simulate_night(source, seed=args.seed, configurations=("400_M2",), n_bias=5, n_flats=5,
                                          n_science=args.frames).read_text())
        names = sorted(truth["files"])
        kinds = {name: truth["files"][name]["obstype"] for name in names}
        calibrations = [n for n in names if kinds[n] in ("BIAS", "FLAT")]
        arcs = [n for n in names if kinds[n] == "COMP"]
        science = [n for n in names if kinds[n] == "SPECTRUM"]

        port = free_port()
        redis_url = f"redis://127.0.0.1:{port}/0"
        redis_dir = work / "redis"
        redis_dir.mkdir()
        processes.append(subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: listening(port), 20, what="redis-server")

        database = work / "gsp.sqlite3"
        data_dir = work / "data"
        raw_dir = data_dir / "raw" / truth["night"]["date"].replace("-", "")
        raw_dir.mkdir(parents=True)
        config = {"INSTANCE_DIR": str(work / "instance"), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                  "DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "SECRET_KEY": SECRET}
        setup_catalogue(config, n_bias=len(calibrations) // 2, n_flats=len(calibrations) // 2)
        env = {**os.environ, "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "GSP_DATA_DIR": str(data_dir),
               "GSP_INSTANCE_DIR": config["INSTANCE_DIR"], "SECRET_KEY": SECRET, "REDIS_URL": redis_url,
               "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
        for number in range(args.workers):
            log = open(work / f"worker{number}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(
                [str(VENV_BIN / "rq"), "worker", "-w", "live.worker.GspWorker", "--url", redis_url, "gsp"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        log = open(work / "watcher.log", "w")
        logs.append(log)
        processes.append(subprocess.Popen([str(VENV_BIN / "flask"), "--app", "app", "watch", str(data_dir / "raw")],
                                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        catalogue = Catalogue(database)
        time.sleep(1.0)
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a service exited at start (see logs in {work}): {process.args}")

        started = time.perf_counter()
        for name in calibrations + arcs[:1]:
            land(source / name, raw_dir)
            time.sleep(0.05)
        wait_for(catalogue.masters_ready, args.timeout, 0.1, "master bias and normalized flat")
        wait_for(lambda: catalogue.reduced_arcs() >= 1, args.timeout, 0.1, "the arc to be reduced")
        warmup = time.perf_counter() - started
        print(f"calibrations and arc streamed ({len(calibrations) + 1} frames); masters and reduced arc "
              f"ready after {warmup:.1f} s; workers: {args.workers}", flush=True)

        frames = []
        for name in science:
            targets = len(truth["files"][name]["targets"])
            result = measure_frame(catalogue, source / name, raw_dir, targets, args.timeout)
            frames.append(result)
            stages = ", ".join(f"{k} {v:.2f}" for k, v in result["stages_s"].items())
            print(f"{name:40s} {targets} target(s): first calibrated {result['first_calibrated_s']:.2f} s, all "
                  f"{result['all_calibrated_s']:.2f} s  [{stages}]", flush=True)
        failed = catalogue.failed_jobs()

        first = [f["first_calibrated_s"] for f in frames]
        every = [f["all_calibrated_s"] for f in frames]
        stage_names = list(dict.fromkeys(k for f in frames for k in f["stages_s"]))
        stage_medians = {name: round(statistics.median(f["stages_s"].get(name, 0.0) for f in frames), 3)
                         for name in stage_names}
        results = {
            "frames": frames, "workers": args.workers, "warmup_seconds": round(warmup, 1),
            "failed_jobs": [dict(j._mapping) for j in failed],
            "first_calibrated": {"median_s": round(statistics.median(first), 3), "max_s": round(max(first), 3)},
            "all_targets_calibrated": {"median_s": round(statistics.median(every), 3), "max_s": round(max(every), 3)},
            "stage_medians_s": stage_medians, "goal": {"median_s_below": GOAL_MEDIAN_S},
            "code": code_version(), "load_average_after": os.getloadavg(), "machine": {"cpus": os.cpu_count()},
        }
        results["meets_goal"] = results["first_calibrated"]["median_s"] < GOAL_MEDIAN_S
        print(f"\nlanding -> first wavelength-calibrated row: median {results['first_calibrated']['median_s']:.2f} s, "
              f"max {results['first_calibrated']['max_s']:.2f} s over {len(frames)} frames "
              f"(goal: median < {GOAL_MEDIAN_S:.0f} s): {'ok' if results['meets_goal'] else 'MISSED'}")
        print(f"landing -> every target calibrated   : median {results['all_targets_calibrated']['median_s']:.2f} s, "
              f"max {results['all_targets_calibrated']['max_s']:.2f} s")
        print("median per stage (s):")
        for name, value in stage_medians.items():
            print(f"  {name:40s} {value:6.2f}")
        if failed:
            print(f"FAILED jobs: {[dict(j._mapping) for j in failed]}")

        for process in processes[1:]:
            process.terminate()
        for process in processes[1:]:
            process.wait(20)
        if args.profile:
            profile = profile_blocks(raw_dir, config, raw_dir / science[0])
            results["profile"] = profile
            print(f"\nin-process blocks of {science[0]} under cProfile (s): {profile['block_seconds_under_profiler']}")
            print(profile["tottime"])
        write_results(results, args.output)
        return 0
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
        for log in logs:
            log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
