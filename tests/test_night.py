"""The offline twin: ``python -m pipeline reduce-night`` over a folder, no web, database or Redis."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REAL_DATA, ROOT


def reduce_night(raw, out, *extra):
    return subprocess.run([sys.executable, "-m", "pipeline", "reduce-night", str(raw), str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(out), "no_proxy": "*",
                               "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})


@pytest.fixture(scope="module")
def future_night(tmp_path_factory):
    """A night dated years past astropy's IERS tables, with a broken file and a FOCUS frame."""
    from pipeline.simulate import simulate_night

    raw = tmp_path_factory.mktemp("raw")
    truth = json.loads(simulate_night(raw, seed=5, configurations=("930_M2",), n_bias=3, n_flats=3, n_science=2,
                                      date="2031-06-01").read_text())
    (raw / "0999_broken.fits").write_bytes(b"SIMPLE  =  nonsense")
    shutil.copy(REAL_DATA / "im_g_SDSS.fits", raw / "0998_focus.fits")
    out = tmp_path_factory.mktemp("out")
    settings = out.parent / "settings.json"
    settings.write_text(json.dumps({"min_bias": 3, "min_flats": 3}))
    result = reduce_night(raw, out, "--settings", str(settings))
    return truth, out, result


def test_products_and_manifest(future_night):
    truth, out, result = future_night
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest:
        assert (out / entry["file"]).is_file()
        assert set(entry) == {"file", "data_type", "parent", "original", "obstype", "object", "wavmode", "target",
                              "arc", "rms_angstrom", "lines_used", "flexure", "snr"} | (
                                  {"inputs"} if entry["data_type"] == 6 else set())
    by_type = {}
    for entry in manifest:
        by_type.setdefault(entry["data_type"], []).append(entry)
    assert [e["file"].split("_Red")[0] for e in by_type[1]] == ["master_bias", "master_flat", "norm_master_flat"]
    science = [name for name, f in truth["files"].items() if f["obstype"] == "SPECTRUM"]
    targets = sum(len(truth["files"][name]["targets"]) for name in science)
    calibrated = [e for e in by_type[4] if e["obstype"] == "SPECTRUM"]
    assert len(calibrated) == targets
    for entry in calibrated:
        assert entry["original"] in science and entry["wavmode"] == "930_M2"
        assert entry["arc"].endswith("_CuHeAr_930_M2_01-06-2031.fits")
        assert entry["rms_angstrom"] < 0.1 and entry["lines_used"] >= 30
        assert entry["parent"].startswith("ecfzst_") and entry["target"] in (1, 2)
    reduced = [e for e in by_type[2] if e["original"] in science]
    assert {e["parent"] for e in reduced} == set(science)


def test_skips_are_listed_with_reasons(future_night):
    _, out, result = future_night
    skipped = {entry["file"]: entry["reason"] for entry in json.loads((out / "skipped.json").read_text())}
    assert skipped["0999_broken.fits"].startswith("cannot classify:")
    assert skipped["0998_focus.fits"] == "OBSTYPE FOCUS is not reduced"
    assert "skipped 0999_broken.fits: cannot classify:" in result.stdout


def test_nothing_to_process_exits_non_zero(tmp_path):
    (tmp_path / "raw").mkdir()
    result = reduce_night(tmp_path / "raw", tmp_path / "out")
    assert result.returncode == 1
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == []
