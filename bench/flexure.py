"""Flexure correction on generated nights: ``.venv/bin/python bench/flexure.py [--seeds 51 52 53]``.

Each night (400 and 930 l/mm, two science frames each, three targets per configuration) has its science
frames shifted against their arcs by a known flexure per configuration (``simulate_night(flexure_px=...)``),
both directions and 0.5 to 2 binned px, plus a night without flexure.  Each goes through the offline twin
twice, with the correction (the default) and without it; the calibrated emission lines are compared with
the truth (``bench/night.py``'s measure) and the measured shifts with the true ones.  Then the time the
correction adds per frame: the flexure sky of every target of a reduced frame (``extract.sky_beside``) and
the measurement (``flexure.measure_shift``), in this process.
Goal: lines within 0.05 px median and 0.15 px worst, as without flexure; no false shift without flexure;
under 0.1 s per frame.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from pipeline.truth import accuracy  # noqa: E402
from pipeline import extract, flexure, reduce, wavelength  # noqa: E402
from pipeline.night import reduce_night  # noqa: E402
from pipeline.settings import ReductionSettings  # noqa: E402
from pipeline.simulate import simulate_night  # noqa: E402

FLEXURES = ({"400_M2": 0.5, "930_M2": -2.0}, {"400_M2": -2.0, "930_M2": 1.3}, {"400_M2": 1.3, "930_M2": -0.9},
            {"400_M2": -0.7, "930_M2": 1.8}, {"400_M2": 0.0, "930_M2": 0.0})
CONFIGURATIONS = ("400_M2", "930_M2")


def calibrated_science(manifest: list[dict]) -> list[dict]:
    return [entry for entry in manifest if entry["data_type"] == 4 and entry["obstype"] == "SPECTRUM"]


def night_figures(raw: Path, out: Path, truth: dict, correct: bool) -> tuple[dict, list[dict]]:
    """Per configuration: emission-line accuracy and the flexure records of its calibrated science; the manifest."""
    result = reduce_night(raw, out, ReductionSettings(min_bias=3, min_flats=3, flexure_correction=correct))
    figures = {}
    for config in CONFIGURATIONS:
        entries = [entry for entry in calibrated_science(result.manifest) if entry["wavmode"] == config]
        summary = accuracy([(out / entry["file"], entry["original"]) for entry in entries], truth)["summary"]
        records = [{**entry["flexure"], "true_px": truth["files"][entry["original"]]["flexure_px"]}
                   for entry in entries]
        figures[config] = {"accuracy": summary, "flexure": records}
    return figures, result.manifest


def time_per_frame(out: Path, manifest: list[dict], repeats: int = 5) -> dict:
    """Seconds the correction adds to one science frame: its targets' flexure sky and their measurements."""
    reduced = next(out / entry["file"] for entry in manifest
                   if entry["data_type"] == 2 and entry["obstype"] == "SPECTRUM" and "PN_pair" in entry["file"])
    arc_1d = next(out / entry["file"] for entry in manifest if entry["data_type"] == 3 and "_for_" in entry["file"]
                  and "400_M2" in entry["file"])
    settings = ReductionSettings()
    ccd = reduce.load_frame(str(reduced))
    spectra, _ = extract.extract(ccd, settings)
    solution, record = wavelength.calibrate_arc(fits.getdata(arc_1d).astype(float), fits.getheader(arc_1d))
    traces = [spectrum.trace for spectrum in spectra]
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for spectrum in spectra:
            sky = extract.sky_beside(ccd, spectrum.trace, [t for t in traces if t is not spectrum.trace])
            flexure.measure_shift(sky, solution, record["line_fwhm_px"], binning=record["binning"],
                                  target_flux=spectrum.flux)
        timings.append(time.perf_counter() - started)
    return {"frame": reduced.name, "targets": len(spectra), "median_seconds": float(np.median(timings)),
            "worst_seconds": float(np.max(timings))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[51, 52, 53])
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "flexure.json"))
    args = parser.parse_args()
    runs, timing = [], None
    with tempfile.TemporaryDirectory(prefix="gsp-flexure-") as work:
        for seed in args.seeds:
            for index, flexure_px in enumerate(FLEXURES):
                folder = Path(work) / f"{seed}-{index}"
                truth = json.loads(simulate_night(folder / "raw", seed=seed, n_bias=3, n_flats=3, n_science=2,
                                                  flexure_px=flexure_px).read_text())
                corrected, manifest = night_figures(folder / "raw", folder / "on", truth, correct=True)
                uncorrected, _ = night_figures(folder / "raw", folder / "off", truth, correct=False)
                if timing is None:
                    timing = time_per_frame(folder / "on", manifest)
                for config in CONFIGURATIONS:
                    run = {"seed": seed, "configuration": config, "flexure_px": flexure_px[config],
                           "corrected": corrected[config], "uncorrected": uncorrected[config]["accuracy"]}
                    runs.append(run)
                    shifts = [(r["shift_px"], r["uncertainty_px"], r["applied"]) for r in corrected[config]["flexure"]]
                    print(f"seed {seed} {config} flexure {flexure_px[config]:+.1f} px: lines median "
                          f"{corrected[config]['accuracy']['median_abs_offset_px']:.3f} / worst "
                          f"{corrected[config]['accuracy']['max_abs_offset_px']:.3f} px (uncorrected "
                          f"{uncorrected[config]['accuracy']['median_abs_offset_px']:.3f} / "
                          f"{uncorrected[config]['accuracy']['max_abs_offset_px']:.3f}); measured "
                          + ", ".join(f"{s:+.3f}+-{e:.3f}{'' if a else ' (kept)'}" for s, e, a in shifts),
                          flush=True)
    summary = {}
    for label, moved in (("with flexure", True), ("without flexure", False)):
        for config in CONFIGURATIONS:
            chosen = [run for run in runs if run["configuration"] == config and bool(run["flexure_px"]) == moved]
            records = [record for run in chosen for record in run["corrected"]["flexure"]]
            errors = [abs(r["shift_px"] - r["true_px"]) for r in records if r["shift_px"] is not None]
            within = sum(abs(r["shift_px"] - r["true_px"]) <= r["uncertainty_px"] for r in records)
            summary[f"{config} {label}"] = {
                "nights": len(chosen),
                "lines_median_px_worst_night": max(run["corrected"]["accuracy"]["median_abs_offset_px"]
                                                   for run in chosen),
                "lines_worst_px": max(run["corrected"]["accuracy"]["max_abs_offset_px"] for run in chosen),
                "uncorrected_median_px": float(np.median([run["uncorrected"]["median_abs_offset_px"]
                                                          for run in chosen])),
                "shift_error_median_px": float(np.median(errors)), "shift_error_worst_px": float(np.max(errors)),
                "shift_within_its_uncertainty": f"{within} of {len(records)}",
                "applied": f"{sum(r['applied'] for r in records)} of {len(records)}"}
    summary["time_added_per_frame"] = timing
    summary["load_average"] = os.getloadavg()
    print(json.dumps(summary, indent=1))
    write_results({"code": code_version(), "runs": runs, "summary": summary}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
