"""Telluric correction on generated nights: ``.venv/bin/python bench/telluric.py [--seeds 41 42 43]``.

Each night (bench/flux.py's: calibrations, arcs, a standard star at airmass 1.05 and a science source of
known F_lambda, here at airmass 1.3, 1.55 or 1.8 by seed) goes through the offline twin (``reduce-night``)
with the telluric correction on.  The flux-calibrated science spectrum over the true F_lambda is scored in
30 A bins inside the O2 B (6860-6960 A) and A (7590-7710 A) bands, relative to the same ratio in the clean
continuum around them (``pipeline.telluric_truth.band_accuracy``): median and worst |ratio - 1|.  The same
spectrum times the transmission it was divided by (its ``TELLURIC`` HDU) is the uncorrected one.
Goal: median <= 2 %, worst <= 5 % (uncorrected: about 18 % / 51 %).  930_M2 (3790-5480 A) covers no
telluric band: its nights say so and are not scored.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from bench.flux import arguments, reduced_nights, spectrum  # noqa: E402
from pipeline.simulate import FluxSource  # noqa: E402
from pipeline.telluric_truth import band_accuracy  # noqa: E402

STANDARD_AIRMASS = 1.05  # bench/flux.make_night's
GOAL = {"median": 0.02, "worst": 0.05}


def science_airmass(seed: int) -> float:
    return 1.3 + 0.25 * (seed % 3)


def score(out: Path, row: dict, source: dict) -> dict:
    """Corrected and uncorrected accuracy of one flux-calibrated product (the record when not corrected)."""
    wavelength, corrected = spectrum(out / row["file"])
    with fits.open(out / row["file"]) as hdus:
        if "TELLURIC" not in hdus:
            return {"telluric": row["telluric"]}
        transmission = np.asarray(hdus["TELLURIC"].data["transmission"], dtype=float)
    true = FluxSource(source["f_lambda_5500"], source["index"]).continuum(wavelength)
    return {"telluric": row["telluric"], "corrected": band_accuracy(wavelength, corrected, true),
            "uncorrected": band_accuracy(wavelength, corrected * transmission, true)}


def main() -> int:
    args = arguments(__doc__.splitlines()[0], [41, 42, 43], "telluric")
    runs = []
    for seed, config, truth, out, _, row, seconds in reduced_nights(args, science_airmass):
        run = {"seed": seed, "configuration": config, "airmass": [STANDARD_AIRMASS, science_airmass(seed)],
               "seconds": seconds, **score(out, row, truth["source"])}
        runs.append(run)
        print(describe(run))
    scored = [run for run in runs if "corrected" in run]
    summary = {kind: {"worst_median": max(run[kind]["median"] for run in scored),
                      "worst_bin": max(run[kind]["worst"] for run in scored)}
               for kind in ("corrected", "uncorrected")} if scored else {}
    print(json.dumps(summary, indent=1))
    write_results({"code": code_version(), "goal": GOAL, "runs": runs, "summary": summary}, args.output)
    return 0


def describe(run: dict) -> str:
    head = f"{run['configuration']} seed {run['seed']} (airmass {run['airmass'][0]} -> {run['airmass'][1]})"
    if "corrected" not in run:
        return f"{head}: not corrected: {run['telluric'].get('reason')}"
    corrected, uncorrected = run["corrected"], run["uncorrected"]
    oxygen = ", ".join(f"{band} {b:.2f}" for band, b in run["telluric"]["exponent"].items() if band.startswith("O2"))
    return (f"{head}: b {oxygen}; corrected median {corrected['median']:.2%}, worst {corrected['worst']:.2%}; "
            f"uncorrected median {uncorrected['median']:.1%}, worst {uncorrected['worst']:.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
