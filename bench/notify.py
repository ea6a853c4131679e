"""Notifications: a spectrum in the API -> its signed `spectrum.ready` at a subscribed webhook receiver.

    .venv/bin/python bench/notify.py                        # seeds 91 and 92 (~6 min)
    .venv/bin/python bench/notify.py --seeds 93 --science 6

Per seed, a fresh `make run` instance (`bench/instance.py`: `scripts/run` with its own Redis, 2 rq
workers, the watcher with the dispatcher and the notification sender, the web app, SQLite) with
`GSP_WEBHOOK_ALLOW_PRIVATE=1`.  A PI, their proposal and token are made with the `flask` commands, and
the PI subscribes (`POST /api/subscriptions/`, events `["spectrum.ready"]`) two HTTP receivers run in
this process: `ok` answers 200, `503` answers 503 to the first request of each delivery id, then 200.
A generated night (400_M2 and 930_M2, a standard per configuration, ``--science`` frames per
configuration on alternating pointings, so wavelength-calibrated, flux-calibrated and combined spectra)
lands as in `bench/latency.py`: bias, flats and arcs first, then standards and science frames one at a
time, each when the queue is idle.  `GET /api/files/?data_type=4` (5, 6) is polled every 100 ms: a
product's clock starts when a poll first lists it (its catalogue `created` time is kept too) and stops
when a receiver acknowledges (200) a delivery of it whose X-GSP-Signature checks with the secret.

Goal (issue 24): every spectrum reaches each receiver within 15 s of being in the API (60 s for the one
answering 503 first), signed, exactly one acknowledged delivery per product and subscription.
Results: `bench/results/notify.json`.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from bench.instance import VENV_BIN, MakeRun, epoch, land, load_average, wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROPOSAL = "SOAR2026B-001"  # pipeline.simulate's default
GOALS = {"ok_worst_s": 15.0, "503_worst_s": 60.0}
SPECTRA = (4, 5, 6)


class Receiver:
    """A webhook receiver on loopback; ``fail_first``: 503 to the first request of each delivery id."""

    def __init__(self, fail_first: bool):
        self.secret, self.lock = None, threading.Lock()
        self.tried, self.acks, self.bad_signatures = set(), [], 0  # acks: (file id, delivery id, time)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body, now = self.rfile.read(int(self.headers["Content-Length"])), time.time()
                uid = self.headers["X-GSP-Delivery"]
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    status = 503 if fail_first and uid not in receiver.tried else 200
                    receiver.tried.add(uid)
                    if not hmac.compare_digest(expected, self.headers.get("X-GSP-Signature", "")):
                        receiver.bad_signatures += 1
                    elif status == 200:
                        receiver.acks.append((json.loads(body)["file"]["id"], uid, now))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def flask(instance: MakeRun, *args: str) -> str:
    """A `flask` command on the instance (as MakeRun makes its admin token); its last word."""
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=instance.env, check=True,
                          capture_output=True, text=True).stdout.strip().split()[-1]


def subscribe(instance: MakeRun, token: str, url: str) -> dict:
    body = json.dumps({"proposal": PROPOSAL, "events": ["spectrum.ready"], "url": url}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{instance.port}/api/subscriptions/", data=body, method="POST",
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status
        return json.loads(response.read())


def poll(instance: MakeRun, seen: dict, stop: threading.Event) -> None:
    """First sight of each spectrum in the API: id -> (epoch seconds, data_type, name, created)."""
    from pipeline.chain import ARC_OBSTYPES

    while not stop.is_set():
        for data_type in SPECTRA:
            try:
                rows = instance.files(data_type=data_type, proposal_id=PROPOSAL)
            except OSError:  # a busy web app: the next poll
                continue
            now = time.time()
            for row in rows:
                if row["obstype"] not in ARC_OBSTYPES and row["id"] not in seen:
                    seen[row["id"]] = (now, data_type, row["file_name"], epoch(row["created"]))
        stop.wait(0.1)


def spread(values: list[float]) -> dict:
    values = values or [float("nan")]
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "p90_s": round(p90, 3),
            "worst_s": round(max(values), 3)}


def report(receiver: Receiver, seen: dict, subscription: dict, instance: MakeRun) -> dict:
    first = {}
    for file_id, _, moment in receiver.acks:
        first.setdefault(file_id, moment)
    uids = [uid for _, uid, _ in receiver.acks]
    attempts = instance.get(f"/api/subscriptions/{subscription['id']}/deliveries/", page_size=500)["results"]
    return {"products": len(seen), "deliveries_acknowledged": len(receiver.acks),
            "duplicates": len(receiver.acks) - len(first), "duplicate_delivery_ids": len(uids) - len(set(uids)),
            "missing": sorted(set(seen) - set(first)), "not_seen_in_api": sorted(set(first) - set(seen)),
            "bad_signatures": receiver.bad_signatures, "server_attempts": len(attempts),
            "server_attempts_failed": sum(1 for attempt in attempts if attempt["error"]),
            "api_to_receipt": spread([first[i] - seen[i][0] for i in seen if i in first]),
            "created_to_receipt": spread([first[i] - seen[i][3] for i in seen if i in first]),
            "per_product": {i: {"type": seen[i][1], "name": seen[i][2], "api_to_receipt_s":
                                round(first[i] - seen[i][0], 3) if i in first else None} for i in seen}}


def one_run(work: Path, seed: int, science: int, timeout: float) -> dict:
    from pipeline.simulate import simulate_night

    source = work / "night"
    truth = json.loads(simulate_night(source, seed=seed, n_bias=10, n_flats=10, n_science=science, n_standards=1,
                                      cosmic_ray_rate=0.3).read_text())
    files = truth["files"]
    spectra = sorted((not files[name].get("standard"), name) for name in files if files[name]["obstype"] == "SPECTRUM")
    os.environ["GSP_WEBHOOK_ALLOW_PRIVATE"] = "1"  # MakeRun passes this process's environment on
    instance = MakeRun(work / "instance", workers=2)
    receivers = {"ok": Receiver(False), "503": Receiver(True)}
    seen, stop, load = {}, threading.Event(), [load_average()]
    try:
        flask(instance, "users", "create", "--username", "pi", "--email", "pi@example.org", "--password", "bench-pi")
        flask(instance, "proposals", "create", "--soar-id", PROPOSAL, "--semester", "2026B", "--pi", "pi",
              "--title", "Notification benchmark")
        token = flask(instance, "users", "token", "pi")
        subscriptions = {name: subscribe(instance, token, receiver.url) for name, receiver in receivers.items()}
        for name, receiver in receivers.items():
            receiver.secret = subscriptions[name]["secret"]
        poller = threading.Thread(target=poll, args=(instance, seen, stop), daemon=True)
        poller.start()
        folder = instance.raw / truth["night"]["date"].replace("-", "")
        folder.mkdir(parents=True)
        for name in sorted(files):
            if files[name]["obstype"] != "SPECTRUM":
                land(source / name, folder)
        wait_for(lambda: instance.idle() and len(instance.files(data_type=2, obstype="COMP")) == 4, timeout, 0.2,
                 "calibrations to be built and arcs reduced")
        for _, name in spectra:  # the standards first, then the science frames, one at a time
            land(source / name, folder)
            time.sleep(1.0)
            wait_for(instance.idle, timeout, 0.2, f"{name} to be reduced")
            print(f"  seed {seed}: {name} reduced; {len(seen)} spectra in the API", flush=True)
        time.sleep(3.0)
        wait_for(instance.idle, timeout, 0.2, "the last jobs")  # and the poller has seen the last spectra
        load.append(load_average())
        wait_for(lambda: all(set(seen) <= {ack[0] for ack in r.acks} for r in receivers.values()), 90, 0.5,
                 "every spectrum at both receivers")
        time.sleep(15.0)  # a duplicate would come by now (the first retry is 10 s after a failure)
        stop.set()
        poller.join()
        load.append(load_average())
        result = {name: report(receiver, seen, subscriptions[name], instance) for name, receiver in receivers.items()}
        failed = instance.jobs("state = 'failed'")
        return {"seed": seed, "receivers": result, "failed_jobs": len(failed), "load_average": load,
                "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    finally:
        stop.set()
        for receiver in receivers.values():
            receiver.close()
        instance.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[91, 92])
    parser.add_argument("--science", type=int, default=4, help="science frames per configuration")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", help="work in this folder and keep it")
    parser.add_argument("--output", default=str(RESULTS / "notify.json"))
    args = parser.parse_args(argv)

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gsp-bench-notify-"))
    runs = []
    try:
        for seed in args.seeds:
            runs.append(one_run(work / f"seed{seed}", seed, args.science, args.timeout))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    met = True
    print("\nspectrum in GET /api/files/ -> acknowledged spectrum.ready at the receiver:")
    for run in runs:
        print(f" seed {run['seed']} (load average {', '.join(map(str, run['load_average']))}; "
              f"{run['failed_jobs']} failed jobs):")
        for name, got in run["receivers"].items():
            delay, limit = got["api_to_receipt"], GOALS[f"{name}_worst_s"]
            ok = (not got["missing"] and got["duplicates"] == 0 and got["bad_signatures"] == 0
                  and delay["worst_s"] <= limit)
            met &= ok
            print(f"  {name:>3}: {got['products']} products, {got['deliveries_acknowledged']} acknowledged, "
                  f"{got['duplicates']} duplicates, {len(got['missing'])} missing, {got['bad_signatures']} bad "
                  f"signatures, {got['server_attempts']} attempts ({got['server_attempts_failed']} failed); "
                  f"median {delay['median_s']:.2f} s, p90 {delay['p90_s']:.2f} s, worst {delay['worst_s']:.2f} s "
                  f"(created -> receipt worst {got['created_to_receipt']['worst_s']:.2f} s; goal <= {limit:.0f} s): "
                  f"{'ok' if ok else 'MISSED'}")
    write_results({"runs": runs, "goals": GOALS, "met": met, "science": args.science, "code": code_version()},
                  args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
