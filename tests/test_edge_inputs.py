"""Edge inputs answer 4xx JSON with a message, never a 500: ids and page numbers too large for the
databases' integer columns, non-finite numbers, NUL bytes and over-long names."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from tests.conftest import REAL_DATA, auth_header

HUGE = "9" * 30


@pytest.mark.both_databases
@pytest.mark.parametrize("method, url", [
    ("get", f"/api/files/{HUGE}/"),
    ("get", f"/api/files/{HUGE}/download/"),
    ("get", f"/api/files/header/?id={HUGE}"),
    ("get", f"/api/files/?page={HUGE}"),
    ("get", f"/api/files/?parent_file_id={HUGE}"),
    ("get", f"/api/files/?page_size={HUGE}"),
    ("get", f"/api/jobs/{HUGE}/"),
    ("get", f"/api/proposals/{HUGE}/"),
    ("get", f"/api/proposals/?page={HUGE}"),
    ("get", f"/api/logs/?page={HUGE}"),
    ("get", f"/api/logs/?proposal={HUGE}"),
    ("get", f"/api/files/{HUGE}/choices/"),
])
def test_numbers_too_large_are_refused(client, people, method, url):
    response = getattr(client, method)(url, headers=auth_header(people["tokens"]["staff"]))
    assert response.status_code == 400, (url, response.status_code, response.text[:300])
    assert "may be at most 2147483647" in response.json["detail"]


def test_non_finite_sizes_and_nul_bytes_and_long_names_are_refused(app, client, people):
    headers = auth_header(people["tokens"]["staff"])
    raw = Path(app.config["DATA_DIR"]) / "raw"
    shutil.copy(REAL_DATA / "im_g_SDSS.fits", raw / "image.fits")
    created = client.post("/api/files/", json={"full_path": str(raw / "image.fits")}, headers=headers)
    assert created.status_code == 201
    file_id = created.json["id"]
    for width in ("nan", "inf", "-inf"):
        response = client.get(f"/api/files/visualize/?id={file_id}&width={width}", headers=headers)
        assert response.status_code == 400 and response.json["detail"] == \
            f"'width' must be a finite number, not '{width}'."
    for full_path, says in ((str(raw / "a\x00b.fits"), "contains a NUL byte"),
                            (str(raw / ("x" * 300 + ".fits")), "is not a usable path"),
                            ("/".join([str(raw)] + ["d" * 200] * 7) + "/f.fits", "is not a file")):
        response = client.post("/api/files/", json={"full_path": full_path}, headers=headers)
        assert response.status_code == 400 and says in response.json["detail"], response.json
    for name in ("bad\x00name.fits", "y" * 300 + ".fits"):
        upload = client.post("/api/files/", data={"file": (io.BytesIO(b"SIMPLE"), name)}, headers=headers,
                             content_type="multipart/form-data")
        assert upload.status_code == 400, (name[:20], upload.text[:200])
        assert upload.json["detail"] == "Upload names must be at most 200 bytes, without NUL bytes."
    assert sorted(path.name for path in raw.rglob("*") if path.is_file()) == ["image.fits"]  # nothing stored
