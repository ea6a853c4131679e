"""Export (issue 14, point 5): a spectrum as CSV or ECSV, and a night's or a search's files as one streamed
zip, through the permission layer (a user of another proposal gets 404), on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from astropy.table import Table

from tests.conftest import auth_header
from tests.test_data_page import night  # noqa: F401 - the synthetic night's fixture

pytestmark = pytest.mark.both_databases


def test_a_spectrum_exports_as_ecsv_and_csv(client, people, night):  # noqa: F811
    calibrated = night["calibrated_science"]
    pi = auth_header(people["tokens"]["pi"])
    response = client.get(f"/api/files/{calibrated.id}/spectrum.ecsv", headers=pi)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="{Path(calibrated.file_name).stem}.ecsv"'
    table = Table.read(response.get_data(as_text=True), format="ascii.ecsv")
    assert table.colnames == ["wavelength", "flux", "uncertainty"] and str(table["wavelength"].unit) == "Angstrom"
    assert 4900 < table["wavelength"][0] < 5100 and table.meta["object"] == "NGC5128"
    text = client.get(f"/api/files/{calibrated.id}/spectrum.csv", headers=pi).get_data(as_text=True)
    assert text.splitlines()[0] == "wavelength [Angstrom],flux [adu],uncertainty [adu]"
    assert len(text.splitlines()) == len(table) + 1
    # an image is not a spectrum; another proposal's user, and nobody, do not see it
    image = client.get(f"/api/files/{night['raw_science'].id}/spectrum.csv", headers=pi)
    assert image.status_code == 422 and "not a 1D spectrum" in image.json["detail"]
    stranger = auth_header(people["tokens"]["stranger"])
    assert client.get(f"/api/files/{calibrated.id}/spectrum.csv", headers=stranger).status_code == 404
    assert client.get(f"/api/files/{calibrated.id}/spectrum.ecsv").status_code == 401


def test_a_night_downloads_as_one_streamed_zip(client, people, night):  # noqa: F811
    collab = auth_header(people["tokens"]["collab"])
    response = client.get("/api/files/zip/", query_string={"date": night["raw_science"].date}, headers=collab)
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"] == f'attachment; filename="gsp-{night["raw_science"].date}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    names = sorted(Path(name).name for name in archive.namelist())
    expected = [row for key, row in night.items() if key != "secret"]  # the collaborator's proposal, and masters
    assert names == sorted(row.file_name for row in expected)
    raw = night["raw_science"]
    assert archive.read(f"raw/{Path(raw.directory_name).name}/{raw.file_name}") == Path(raw.full_path).read_bytes()
    # the same filters as GET /api/files/: a search
    spectra = client.get("/api/files/zip/", query_string={"data_type": 4}, headers=collab)
    assert len(zipfile.ZipFile(io.BytesIO(spectra.get_data())).namelist()) == 2
    # the stranger sees only their own proposal's file; nothing matching is a 404
    stranger = auth_header(people["tokens"]["stranger"])
    theirs = zipfile.ZipFile(io.BytesIO(client.get("/api/files/zip/", query_string={"data_type": 0},
                                                   headers=stranger).get_data()))
    assert [Path(n).name for n in theirs.namelist()] == [night["secret"].file_name]
    assert client.get("/api/files/zip/", query_string={"data_type": 4}, headers=stranger).status_code == 404
    assert client.get("/api/files/zip/", query_string={"data_type": "x"}, headers=collab).status_code == 400


def test_a_zip_too_large_is_refused_with_why(client, people, night, monkeypatch):  # noqa: F811
    from auth import queries

    monkeypatch.setattr(queries, "MAX_ZIP_FILES", 3)
    response = client.get("/api/files/zip/", headers=auth_header(people["tokens"]["staff"]))
    assert response.status_code == 400
    assert response.json["detail"].startswith(f"{len(night)} files match; a zip holds at most 3.")
