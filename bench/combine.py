"""Combined spectra on generated nights: ``.venv/bin/python bench/combine.py [--seeds 51 52 53]``.

Each night (one configuration: bias, flats, arcs, a standard star at airmass 1.05, then ``--exposures``
exposures of one source of known F_lambda as it sets, airmass 1.2 + 0.15 per exposure, with the simulator's
cosmic rays) goes through the offline twin (``reduce-night``), which combines the exposures once.
Measured: the combined spectrum's F_lambda against the truth (``pipeline.simulate.flux_accuracy``: median
ratio, shape p90 and worst in 100 A bins), its S/N (the products' median S/N per pixel over the central half)
against sqrt(N) times the single exposures' mean, and the same S/N measured from the scatter about the truth
(the propagated uncertainty is not taken on trust; the smooth calibration error taken out).  Goal: S/N >= 0.9 sqrt(N) of one exposure; F_lambda
within 3 %, shape p90 <= 2 %.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import median_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from pipeline.night import reduce_night  # noqa: E402
from pipeline.products import wavelength_axis  # noqa: E402
from pipeline.settings import ReductionSettings  # noqa: E402
from pipeline.simulate import (FluxSource, file_name, flux_accuracy, make_flux_science, make_standard,  # noqa: E402
                               simulate_night)

SHIFT_PX, SCALE = 0.37, 1.0008  # simulate_night's defaults: the arcs' dispersion


def make_night(folder: Path, seed: int, config: str, exposures: int) -> dict:
    simulate_night(folder, seed=seed, configurations=(config,), n_bias=3, n_flats=3, n_science=0)
    source = FluxSource(f_lambda_5500=4.0e-16, index=-2.5 + 0.5 * (seed % 4))  # S/N about 30 a pixel per exposure
    frames = [make_standard(config, airmass=1.05, seed=seed + 1, shift_px=SHIFT_PX, scale=SCALE,
                            date_obs="2026-11-28T00:10:00.000")]
    for number in range(exposures):
        science = make_flux_science(config, source=source, object_name="SN 2026xyz", airmass=1.2 + 0.15 * number,
                                    seed=seed + 10 + number, shift_px=SHIFT_PX, scale=SCALE,
                                    date_obs=f"2026-11-28T{1 + number:02d}:00:00.000")
        frames.append(science)
    for index, frame in enumerate(frames, start=90):
        fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(folder / file_name(index, frame.header,
                                                                                          "2026-11-27"))
    return source.truth()


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with fits.open(path) as hdus:
        values, header = hdus[0].data.astype(float), hdus[0].header
        uncertainty = np.asarray(hdus["UNCERT"].data["uncertainty"], dtype=float)
    return wavelength_axis(header, values.size), values, uncertainty


def residual(path: Path, source: dict) -> np.ndarray:
    """Fractional residual about the truth per pixel (lines and ends left out, central half), once the
    calibration's smooth shape error (p90 1-1.5 %, the same in every exposure) is taken out by a running
    median over 51 pixels."""
    wavelength, values, _ = read(path)
    true = source["f_lambda_5500"] * (wavelength / 5500.0) ** source["index"]
    quarter = values.size // 4
    central = slice(quarter, values.size - quarter)
    ratio = values[central] / true[central] - 1.0
    clean = np.isfinite(ratio)
    for line in source["lines"]:
        clean &= np.abs(wavelength[central] - line["wavelength"]) > 60
    return np.where(clean, ratio - median_filter(np.where(clean, ratio, 0.0), size=51, mode="nearest"), np.nan)


def spread(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def one_night(work: Path, seed: int, config: str, exposures: int) -> dict:
    """The combined spectrum against the truth and against its exposures. The scatter about the truth holds,
    besides each exposure's noise, a pattern common to all of them (flat field, sensitivity) that no
    combination lowers: the difference of two exposures measures their noise alone."""
    folder, out = work / f"{config}-{seed}" / "raw", work / f"{config}-{seed}" / "out"
    folder.mkdir(parents=True)
    source = make_night(folder, seed, config, exposures)
    started = time.perf_counter()
    result = reduce_night(folder, out, ReductionSettings(min_bias=3, min_flats=3))
    seconds = time.perf_counter() - started
    combined = next(row for row in result.manifest if row["data_type"] == 6)
    singles = [row for row in result.manifest if row["data_type"] == 5 and row["object"] == "SN 2026xyz"]
    single_snr = float(np.mean([row["snr"] for row in singles]))
    residuals = [residual(out / row["file"], source) for row in singles]
    single_noise = float(np.mean([spread(one) for one in residuals]))
    exposure_noise = float(np.mean([spread(one - two) / np.sqrt(2) for one, two in zip(residuals, residuals[1:])]))
    pattern = float(np.sqrt(max(single_noise ** 2 - exposure_noise ** 2, 0.0)))
    combined_noise = spread(residual(out / combined["file"], source))
    accuracy = flux_accuracy(*read(out / combined["file"])[:2], source)
    return {"seed": seed, "configuration": config, "exposures": exposures, "seconds": seconds,
            "inputs": len(combined["inputs"]), "snr": combined["snr"], "single_snr": single_snr,
            "snr_gain_over_sqrt_n": combined["snr"] / (np.sqrt(exposures) * single_snr),
            "scatter_snr": 1 / combined_noise, "single_scatter_snr": 1 / single_noise,
            "scatter_gain_over_sqrt_n": single_noise / (np.sqrt(exposures) * combined_noise),
            "common_pattern": pattern,
            "expected_scatter_snr": 1 / np.sqrt(exposure_noise ** 2 / exposures + pattern ** 2),
            "accuracy": accuracy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[51, 52, 53])
    parser.add_argument("--configurations", nargs="+", default=["400_M2", "930_M2"])
    parser.add_argument("--exposures", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "combine.json"))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="gsp-combine-") as work:
        for seed in args.seeds:
            for config in args.configurations:
                run = one_night(Path(work), seed, config, args.exposures)
                runs.append(run)
                print(f"{config} seed {seed}: {run['inputs']} exposures, S/N {run['snr']:.1f} vs single "
                      f"{run['single_snr']:.1f} ({run['snr_gain_over_sqrt_n']:.2f} of sqrt(N)); from the scatter "
                      f"{run['scatter_snr']:.1f} vs {run['single_scatter_snr']:.1f} "
                      f"({run['scatter_gain_over_sqrt_n']:.2f}; {run['expected_scatter_snr']:.1f} expected with a pattern of "
                      f"{run['common_pattern']:.2%} common to the exposures); F_lambda median {run['accuracy']['median']:.4f}, "
                      f"p90 {run['accuracy']['p90']:.2%}, worst {run['accuracy']['worst']:.2%}")
    summary = {"min_snr_gain_over_sqrt_n": min(run["snr_gain_over_sqrt_n"] for run in runs),
               "min_scatter_gain_over_sqrt_n": min(run["scatter_gain_over_sqrt_n"] for run in runs),
               "worst_median_offset": max(abs(run["accuracy"]["median"] - 1) for run in runs),
               "worst_p90": max(run["accuracy"]["p90"] for run in runs),
               "worst_bin": max(run["accuracy"]["worst"] for run in runs)}
    print(json.dumps(summary, indent=1))
    write_results({"code": code_version(), "runs": runs, "summary": summary}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
