"""Flux-calibration accuracy on generated nights: ``.venv/bin/python bench/flux.py [--seeds 31 32 33]
[--standard "HR 7596" --standard-exptime 1]``.

Each night (one configuration: bias, flats, arcs, a standard star at airmass 1.05 (the configuration's
faint one for 30 s, or the one named for the time given, e.g. a bright HR star for a second) and a
science source of known F_lambda at airmass 1.65, another power-law index per seed) goes through the offline twin
(``reduce-night``), and the flux-calibrated science spectrum is compared with the truth in 100 A bins
away from lines and edges (``pipeline.simulate.flux_accuracy``): median ratio, shape p90 and worst.
The same spectra calibrated without the extinction correction (airmass taken as 0 for both the standard
and the science) show what that correction is worth. Goal: median within 3 %, p90 <= 2 %, worst <= 4 %.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import code_version, write_results  # noqa: E402
from pipeline import flux, standards  # noqa: E402
from pipeline.night import reduce_night  # noqa: E402
from pipeline.settings import ReductionSettings  # noqa: E402
from pipeline.simulate import (STANDARDS, FluxSource, file_name, flux_accuracy, make_flux_science,  # noqa: E402
                               make_standard, simulate_night)

SHIFT_PX, SCALE = 0.37, 1.0008  # simulate_night's defaults: the arcs' dispersion


def make_night(folder: Path, seed: int, config: str, star: str | None, exptime: float,
               science_airmass: float = 1.65) -> dict:
    """Calibrations and arcs of ``config``, a standard (``star``, default the configuration's) at airmass
    1.05, then a science source (at 1.65)."""
    simulate_night(folder, seed=seed, configurations=(config,), n_bias=3, n_flats=3, n_science=0)
    source = FluxSource(index=-2.5 + 0.5 * (seed % 4))
    standard = make_standard(config, star=star, airmass=1.05, exptime=exptime, seed=seed + 1, shift_px=SHIFT_PX,
                             scale=SCALE, date_obs="2026-11-28T00:10:00.000")
    science = make_flux_science(config, source=source, airmass=science_airmass, seed=seed + 2, shift_px=SHIFT_PX, scale=SCALE,
                                date_obs="2026-11-28T02:40:00.000")
    names = {}
    for index, frame in ((90, standard), (91, science)):
        names[index] = file_name(index, frame.header, "2026-11-27")
        fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(folder / names[index])
    return {"source": science.truth["source"], "standard": standard.header["OBJECT"], "standard_file": names[90]}


def spectrum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with fits.open(path) as hdus:
        values, header = hdus[0].data.astype(float), hdus[0].header
    return header["CRVAL1"] + (np.arange(values.size) + 1 - header["CRPIX1"]) * header["CDELT1"], values


def without_extinction(out: Path, manifest: list[dict], truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """The science calibrated with a sensitivity function measured and applied at airmass 0."""
    calibrated = {row["original"]: out / row["file"] for row in manifest if row["data_type"] == 4}
    standard = calibrated[truth["standard_file"]]
    science = next(path for name, path in calibrated.items() if "QSO" in name)
    counts = {}
    for key, path in (("standard", standard), ("science", science)):
        header = fits.getheader(path)
        wavelength, values = spectrum(path)
        counts[key] = (wavelength, values, float(header["EXPTIME"]))
    wavelength, values, exptime = counts["standard"]
    star = standards.find_standard(truth["standard"], (wavelength[0], wavelength[-1]))
    sensitivity = flux.sensitivity_function(wavelength, values, exptime, 0.0, star)
    wavelength, values, exptime = counts["science"]
    return wavelength, flux.apply_sensitivity(wavelength, values, None, exptime, 0.0, sensitivity)[0]


def saturated_pixels(out: Path, manifest: list[dict], sensitivity_name: str) -> int:
    """Saturated raw pixels in the standard's aperture, as its sensitivity function counted them."""
    path = next(out / row["file"] for row in manifest if Path(row["file"]).name == sensitivity_name)
    return int(fits.getval(path, "GSP_SSAT"))


def arguments(description: str, seeds: list[int], name: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--configurations", nargs="+", default=["400_M2", "930_M2"])
    parser.add_argument("--standard", help="the standard star observed (OBJECT), default the configuration's "
                                           f"({', '.join(STANDARDS.values())})")
    parser.add_argument("--standard-exptime", type=float, default=30.0, help="its exposure time [s]")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / f"{name}.json"))
    return parser.parse_args()


def reduced_nights(args: argparse.Namespace, science_airmass=lambda seed: 1.65):
    """Each seed's and configuration's night (``make_night``) through the offline twin: yields the seed,
    configuration, truth, output folder, NightResult, the science's flux-calibrated manifest row and the
    seconds the reduction took."""
    with tempfile.TemporaryDirectory(prefix="gsp-flux-") as work:
        for seed in args.seeds:
            for config in args.configurations:
                folder, out = Path(work) / f"{config}-{seed}" / "raw", Path(work) / f"{config}-{seed}" / "out"
                truth = make_night(folder, seed, config, args.standard, args.standard_exptime, science_airmass(seed))
                started = time.perf_counter()
                result = reduce_night(folder, out, ReductionSettings(min_bias=3, min_flats=3))
                row = next(row for row in result.manifest if row["data_type"] == 5 and "QSO" in row["original"])
                yield seed, config, truth, out, result, row, time.perf_counter() - started


def main() -> int:
    args = arguments(__doc__.splitlines()[0], [31, 32, 33], "flux")
    runs = []
    for seed, config, truth, out, result, row, seconds in reduced_nights(args):
        measured = flux_accuracy(*spectrum(out / row["file"]), truth["source"])
        plain = flux_accuracy(*without_extinction(out, result.manifest, truth), truth["source"])
        saturated = saturated_pixels(out, result.manifest, row["standard"])
        runs.append({"seed": seed, "configuration": config, "seconds": seconds,
                     "standard": row["standard"], "standard_star": truth["standard"],
                     "standard_exptime": args.standard_exptime, "standard_saturated_pixels": saturated,
                     "calibrated": measured, "without_extinction": plain})
        print(f"{config} seed {seed}: median {measured['median']:.4f}, p90 {measured['p90']:.2%}, "
              f"worst {measured['worst']:.2%} ({measured['bins']} bins); without the extinction "
              f"correction: median {plain['median']:.3f}, blue end {plain['blue_ratio']:.3f}, "
              f"worst shape {plain['worst']:.1%}; {truth['standard']} {args.standard_exptime:g} s, "
              f"{saturated} saturated pixels")
    summary = {key: {"median_ratio": float(np.median([run["calibrated"]["median"] for run in runs])),
                     "worst_median_offset": float(max(abs(run["calibrated"]["median"] - 1) for run in runs)),
                     "worst_p90": float(max(run["calibrated"]["p90"] for run in runs)),
                     "worst": float(max(run["calibrated"]["worst"] for run in runs))} for key in ("all",)}
    print(json.dumps(summary, indent=1))
    write_results({"code": code_version(), "runs": runs, "summary": summary}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
