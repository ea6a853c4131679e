"""Memory benchmark: peak RSS of reducing one 1x1 full frame (1896 x 4142 raw) with LACosmic.

    .venv/bin/python bench/memory.py                # ours + goodman's redccd (~3 min)
    .venv/bin/python bench/memory.py --skip-goodman

Builds a Red-camera 1x1 spectroscopic night fragment from the simulator's 2x2
frames scaled up (each 2x2 pixel's electrons spread over 4 pixels, fresh read
noise, fresh 1x1 cosmic rays): 3 bias, 3 flats and 1 science frame, 4142 x 1896
uint16 (BZERO 32768), ``ROI = Spectroscopic 1x1``, ``CCDSUM = 1 1``,
``TRIMSEC = [1:4142,1:1896]``.  Every measurement runs in its own fresh
subprocess and reports that process's peak RSS:

* imports only (numpy, astropy, ccdproc, astroscrappy, scipy via ``pipeline.steps``);
* our masters (``steps.master_bias`` + ``steps.master_flat`` of the 3 + 3 frames);
* ``steps.reduce_raw`` of the science frame with those masters and ``cosmic_ray_rejection =
  lacosmic`` (the measurement the goal is about: < 1 GB);
* goodman-pipeline's ``redccd --cosmic lacosmic`` over the same folder (its whole run:
  bias/flat combination and the science frame; peak RSS from ``/usr/bin/time -v``).

Our figures are each child's ``VmHWM`` (its own high-water mark): ``ru_maxrss`` of a
process spawned from this (large) one would include this process's RSS at spawn time.

Results: ``bench/results/memory.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent
GOAL_BYTES = 1024 ** 3
SHAPE_1X1 = (1896, 4142)


def to_1x1(frame, rng: np.random.Generator, cosmic_rays: bool):
    """A 2x2 simulator frame as a 1x1 full frame: same electrons per unit area, new noise and hits."""
    from astropy.io import fits

    from pipeline import simulate

    gain, bias = simulate.GAIN, simulate.BIAS_LEVEL
    electrons = np.clip(frame.data.astype(np.float64) - bias, 0, None) * gain / 4.0
    electrons = np.repeat(np.repeat(electrons, 2, axis=0), 2, axis=1)
    adu = bias + rng.normal(0.0, simulate.RDNOISE / gain, SHAPE_1X1) + electrons / gain
    if cosmic_rays:
        for _ in range(rng.poisson(0.3 * float(frame.header["EXPTIME"]))):
            y, x = rng.integers(0, SHAPE_1X1[0]), rng.integers(0, SHAPE_1X1[1])
            adu[y:y + rng.integers(1, 3), x:x + rng.integers(1, 3)] += rng.uniform(1500.0, 30000.0) / gain
    header = frame.header.copy()
    header["ROI"] = "Spectroscopic 1x1"
    header["CCDSUM"] = "1 1"
    header["TRIMSEC"] = f"[1:{SHAPE_1X1[1]},1:{SHAPE_1X1[0]}]"
    data = np.clip(np.rint(adu), 0, simulate.SATURATION_ADU).astype(np.uint16)
    return fits.PrimaryHDU(data=data, header=header)


def build_frames(folder: Path, seed: int) -> dict:
    from pipeline import simulate

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = {"bias": [], "flat": [], "science": None}
    date = simulate.DEFAULT_DATE
    for index in range(3):
        frame = simulate.make_bias("400_M2", seed=rng, date_obs=f"{date}T23:0{index}:00.000")
        name = f"{index + 1:04d}_bias_1x1_27-11-2026.fits"
        to_1x1(frame, rng, False).writeto(folder / name)
        names["bias"].append(name)
    for index in range(3):
        frame = simulate.make_flat("400_M2", seed=rng, date_obs=f"{date}T23:1{index}:00.000")
        name = f"{index + 4:04d}_quartz_400_M2_27-11-2026.fits"
        to_1x1(frame, rng, False).writeto(folder / name)
        names["flat"].append(name)
    frame = simulate.make_science("400_M2", seed=rng, date_obs=f"{date}T23:30:00.000", shift_px=0.37, scale=1.0008)
    names["science"] = "0007_NGC5128_400_M2_27-11-2026.fits"
    to_1x1(frame, rng, True).writeto(folder / names["science"])
    return names


CHILD = r'''
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from astropy.utils import iers
iers.conf.auto_download = False
from pipeline import steps
from pipeline.settings import ReductionSettings
task = {task!r}
raw, out = Path({raw!r}), Path({out!r})
names = {names!r}
settings = ReductionSettings(min_bias=3, min_flats=3, cosmic_ray_rejection="lacosmic")
started = time.perf_counter()
record = {{}}
if task == "masters":
    bias = steps.master_bias([raw / n for n in names["bias"]], settings, out, "bench_1x1")
    _, normalized = steps.master_flat([raw / n for n in names["flat"]], settings, out, "bench_1x1", bias.path,
                                      "Spectroscopy")
    record = {{"bias": str(bias.path), "flat": str(normalized.path)}}
elif task == "reduce":
    masters = json.loads((out / "masters.json").read_text())
    product = steps.reduce_raw(raw / names["science"], settings, out, technique="Spectroscopy",
                               bias_path=Path(masters["bias"]), flat_path=Path(masters["flat"]))
    record = {{"product": str(product.path), "cosmic_rays": product.record.get("cosmic_rays")}}
seconds = time.perf_counter() - started
# VmHWM is this process's own high-water mark; ru_maxrss would also count the parent's RSS at spawn
# (Linux carries the pre-exec high-water mark into ru_maxrss).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("RESULT " + json.dumps({{"peak_rss_bytes": hwm * 1024,
                              "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                              "seconds": round(seconds, 2), "record": record}}, default=str))
'''

def time_v(command: list[str], cwd: Path, env: dict) -> dict:
    """Peak RSS of a command tree via ``/usr/bin/time -v`` (the wrapper itself is tiny, so nothing inherited
    from this process inflates the figure)."""
    started = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = [line for line in process.stderr.splitlines() if "Maximum resident set size" in line]
    return {"peak_rss_bytes": int(peak[-1].split(":")[-1]) * 1024 if peak else None,
            "seconds": round(seconds, 2), "returncode": process.returncode}


def run_child(task: str, raw: Path, out: Path, names: dict, env: dict) -> dict:
    code = CHILD.format(root=str(ROOT), task=task, raw=str(raw), out=str(out), names=names)
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{task} failed: {process.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def mb(value: int) -> str:
    return f"{value / 1024 ** 2:7.0f} MB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-goodman", action="store_true")
    parser.add_argument("--keep", help="work in this folder and keep it")
    parser.add_argument("--output", default=str(RESULTS / "memory.json"))
    args = parser.parse_args(argv)

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gsp-bench-memory-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "xdg" / "astropy"
    config.mkdir(parents=True)
    (config / "astropy.cfg").write_text("[utils.iers.iers]\nauto_download = False\nauto_max_age = 100000\n")
    env = {**os.environ, "MPLBACKEND": "Agg", "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(work / "xdg")}
    try:
        raw, out = work / "raw", work / "ours"
        out.mkdir()
        started = time.perf_counter()
        names = build_frames(raw, args.seed)
        from astropy.io import fits

        shape = fits.getdata(raw / names["science"]).shape
        print(f"built 3 bias, 3 flats, 1 science frame of {shape[1]} x {shape[0]} (1x1) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        results = {"frame_shape": list(shape), "goal_bytes": GOAL_BYTES, "code": code_version(), "machine": {"cpus": os.cpu_count()}}
        results["imports_only"] = run_child("imports", raw, out, names, env)
        masters = run_child("masters", raw, out, names, env)
        (out / "masters.json").write_text(json.dumps(masters["record"]))
        results["ours_masters"] = masters
        results["ours_reduce"] = reduce = run_child("reduce", raw, out, names, env)
        results["meets_goal"] = reduce["peak_rss_bytes"] < GOAL_BYTES
        print(f"ours, imports only           : {mb(results['imports_only']['peak_rss_bytes'])}")
        print(f"ours, masters (3 bias+3 flat): {mb(masters['peak_rss_bytes'])} peak, {masters['seconds']:.1f} s")
        print(f"ours, reduce_raw + LACosmic  : {mb(reduce['peak_rss_bytes'])} peak, {reduce['seconds']:.1f} s "
              f"(goal < {mb(GOAL_BYTES).strip()}): {'ok' if results['meets_goal'] else 'MISSED'}; "
              f"cosmic rays: {reduce['record'].get('cosmic_rays')}")
        if not args.skip_goodman:
            red = work / "goodman_red"
            red.mkdir()
            command = [str(VENV_BIN / "redccd"), "--cosmic", "lacosmic", "--raw-path", str(raw), "--red-path", str(red)]
            goodman = time_v(command, work, env)
            goodman["command"] = " ".join(command)
            goodman["outputs"] = sorted(p.name for p in red.glob("*.fits"))
            results["goodman_redccd"] = goodman
            print(f"goodman redccd --cosmic lacosmic (whole run: masters + science): "
                  f"{mb(goodman['peak_rss_bytes'])} peak, {goodman['seconds']:.1f} s, exit {goodman['returncode']}, "
                  f"{len(goodman['outputs'])} files written")
        write_results(results, args.output)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
