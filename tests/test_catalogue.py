"""The file catalogue: ingestion (both doors), classification of real files, the files API,
bad input, and the permission matrix."""
from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import REAL_DATA, auth_header

pytestmark = pytest.mark.both_databases


def raw_dir(app) -> Path:
    path = Path(app.config["DATA_DIR"]) / "raw" / "20261127"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_frame(folder: Path, name: str, *, template="goodman_red_spec.fits", proposal="SOAR2026B-001",
                **keywords) -> Path:
    """A small copy of a real frame with its PROPOSAL (and any keyword) changed."""
    with fits.open(REAL_DATA / template) as hdus:
        header = hdus[0].header.copy()
        data = hdus[0].data
    header["PROPOSAL"] = proposal
    for key, value in keywords.items():
        header[key.replace("_", "-") if key == "DATE_OBS" else key] = value
    path = folder / name
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


def ingest(app, path):
    from live.catalogue import ingest as do_ingest

    return do_ingest(path)


# --- classification of every real file ----------------------------------------------------------

REAL_EXPECTED = {
    "goodman_2016.fits": ("COMP", "Spectroscopy", "600_SYZY_OLD", "600_BLUE", "S02016B-104", "2016-10-30"),
    "goodman_blue_spec.fits": ("OBJECT", "Spectroscopy", "600_SYZY_OLD", "600_BLUE", "SO2017A-016", "2017-07-04"),
    "goodman_red_bias.fits": ("BIAS", "Spectroscopy", "400_SYZY", "CUSTOM", "SO2018A-011", "2018-03-19"),
    "goodman_red_comp.fits": ("COMP", "Spectroscopy", "400_SYZY", "CUSTOM", "SO2018A-011", "2018-03-19"),
    "goodman_red_flat.fits": ("FLAT", "Spectroscopy", "400_SYZY", "CUSTOM", "SO2018A-011", "2018-03-19"),
    "goodman_red_imag.fits": ("OBJECT", "Imaging", "NO_GRATING", "IMAGING", "SOAR Engineering", "2018-02-26"),
    "goodman_red_spec.fits": ("OBJECT", "Spectroscopy", "400_SYZY", "CUSTOM", "SO2018A-011", "2018-03-19"),
    "im_g_SDSS.fits": ("FOCUS", "Imaging", "NO_GRATING", "IMAGING", None, "2019-05-15"),
    "sp_400m2.fits": ("FOCUS", "Spectroscopy", "400_SYZY", "400_M2", None, "2019-05-15"),
}


def test_every_real_file_is_ingested_and_classified(app, people):
    folder = raw_dir(app)
    for name in sorted(REAL_EXPECTED):
        shutil.copy(REAL_DATA / name, folder / name)
    before = {name: (folder / name).read_bytes() for name in REAL_EXPECTED}
    for name, expected in sorted(REAL_EXPECTED.items()):
        file, created = ingest(app, folder / name)
        if expected[0] in ("BIAS", "FLAT"):  # the live chain starts at once
            assert (file.state, file.state_reason) == ("queued", "calibrations queued"), name
        elif expected[0] in ("COMP", "OBJECT"):  # its night has no masters yet
            assert (file.state, file.state_reason) == ("waiting", "waiting for master bias and master flat"), name
        else:
            assert (file.state, file.state_reason) == ("waiting", "OBSTYPE FOCUS is not reduced automatically; "
                                                       "reclassify it (e.g. as COMP) to reduce it."), name
        assert created
        proposal = file.proposal.soar_id if file.proposal else None
        assert (file.obstype, file.technique, file.grating, file.wavmode, proposal, file.date) == expected, name
        assert file.data_type == 0 and file.ingested_at is not None
    assert {name: (folder / name).read_bytes() for name in REAL_EXPECTED} == before  # raw files untouched
    from db.models import Proposal

    placeholder = Proposal.query.filter_by(soar_id="SO2018A-011").one()
    assert placeholder.placeholder and placeholder.pi is None


def test_ingest_is_idempotent(app, people):
    path = write_frame(raw_dir(app), "0001_spec.fits")
    first, created = ingest(app, path)
    again, created_again = ingest(app, path)
    assert created and not created_again and first.id == again.id
    from db.models import File

    assert File.query.count() == 1


# --- the API: token auth, list, filters, pagination ---------------------------------------------

@pytest.fixture
def night(app, people):
    """Six frames of SOAR2026B-001, one of the stranger's proposal, and a master flat (data_type 1)."""
    from db import db
    from db.models import File

    folder = raw_dir(app)
    frames = [
        ("0001_bias.fits", "goodman_red_bias.fits", {}),
        ("0002_flat.fits", "goodman_red_flat.fits", {}),
        ("0003_comp.fits", "goodman_red_comp.fits", {}),
        ("0004_NGC1275.fits", "goodman_red_spec.fits", {"OBJECT": "NGC1275"}),
        ("0005_NGC1275.fits", "goodman_red_spec.fits", {"OBJECT": "NGC1275", "DATE-OBS": "2018-03-21T02:00:00.0"}),
        ("0006_imag.fits", "goodman_red_imag.fits", {"FILTER": "g-SDSS"}),
    ]
    files = {}
    for name, template, extra in frames:
        files[name] = ingest(app, write_frame(folder, name, template=template, **extra))[0]
    files["other"] = ingest(app, write_frame(folder, "0007_other.fits", proposal="SOAR2026B-002"))[0]
    master = File(file_name="master_flat.fits", directory_name="/x", full_path=str(folder / "master_flat.fits"),
                  data_type=1, obstype="FLAT", proposal=people["other_proposal"])
    shutil.copy(REAL_DATA / "goodman_red_flat.fits", folder / "master_flat.fits")
    product = File(file_name="cfzst_0004_NGC1275.fits", directory_name="/p",
                   full_path=str(Path(app.config["DATA_DIR"]) / "processed" / "cfzst_0004_NGC1275.fits"),
                   data_type=2, obstype="OBJECT", proposal=people["proposal"], parent=files["0004_NGC1275.fits"],
                   original=files["0004_NGC1275.fits"])
    db.session.add_all([master, product])
    db.session.commit()
    files["master"], files["product"] = master, product
    return files


def test_list_newest_first_with_manual_fields(client, night, people):
    response = client.get("/api/files/", headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 200
    body = response.json
    assert body["count"] == 8  # six raw + product of SOAR2026B-001, plus the master everyone sees
    names = [item["file_name"] for item in body["results"]]
    assert names == ["cfzst_0004_NGC1275.fits", "master_flat.fits", "0006_imag.fits", "0005_NGC1275.fits",
                     "0004_NGC1275.fits", "0003_comp.fits", "0002_flat.fits", "0001_bias.fits"]
    first_raw = body["results"][-1]
    for key in ("id", "created", "last_modified", "original_file", "original_file_id", "parent_file",
                "parent_file_id", "file_name", "obstype", "object", "filter",
                "filter_2", "grating", "slit", "cam_targ", "grt_targ", "obsra", "obsdec", "gain", "rdnoise", "roi",
                "wavmode", "proposal_id", "observation_id", "configuration_id", "block_id", "image_id", "date",
                "data_type", "normalized", "technique", "saturation_value"):
        assert key in first_raw, key
    assert first_raw["data_type"] == "0" and first_raw["proposal_id"] == "SOAR2026B-001"
    assert first_raw["original_file"] == first_raw["file_name"] == "0001_bias.fits"
    assert first_raw["gain"] == "1.48" and first_raw["saturation_value"] == 65535
    assert body["next"] is None and body["previous"] is None


def test_server_paths_only_for_staff(client, night, people):
    """Where a file lives on the server is the staff's business: members read the file, not the machine."""
    raw = night["0004_NGC1275.fits"]
    for who, shown in (("staff", True), ("pi", False), ("collab", False)):
        headers = auth_header(people["tokens"][who])
        listed = client.get("/api/files/?object=NGC1275&data_type=0", headers=headers).json["results"]
        detail = client.get(f"/api/files/{raw.id}/", headers=headers).json
        for record in (*listed, detail):
            assert ("full_path" in record, "directory_name" in record) == (shown, shown), who
        assert detail["file_name"] == "0004_NGC1275.fits" and detail["id"] == raw.id
    staff = client.get(f"/api/files/{raw.id}/", headers=auth_header(people["tokens"]["staff"])).json
    assert (staff["full_path"], staff["directory_name"]) == (raw.full_path, raw.directory_name)
    master = client.get(f"/api/files/{night['master'].id}/", headers=auth_header(people["tokens"]["stranger"])).json
    assert master["file_name"] == "master_flat.fits" and "full_path" not in master  # everyone's file, not its path


@pytest.mark.parametrize("params, expected", [
    ({"data_type": "0", "obstype": "OBJECT"}, ["0006_imag.fits", "0005_NGC1275.fits", "0004_NGC1275.fits"]),
    ({"obstype": "BIAS"}, ["0001_bias.fits"]),
    ({"object": "NGC1275"}, ["0005_NGC1275.fits", "0004_NGC1275.fits"]),
    ({"filter": "g-SDSS"}, ["0006_imag.fits"]),
    ({"filter_2": "NO_FILTER", "data_type": "0", "technique": "Spectroscopy"},
     ["0005_NGC1275.fits", "0004_NGC1275.fits", "0003_comp.fits", "0002_flat.fits", "0001_bias.fits"]),
    ({"slit": "0.45_LONG_SLIT", "obstype": "COMP"}, ["0003_comp.fits"]),
    ({"grating": "NO_GRATING"}, ["0006_imag.fits"]),
    ({"wavmode": "IMAGING"}, ["0006_imag.fits"]),
    ({"slit": "NO_SUCH_SLIT"}, []),
    ({"roi": "Imaging 2x2"}, ["0006_imag.fits"]),
    ({"technique": "Imaging"}, ["0006_imag.fits"]),
    ({"proposal_id": "SOAR2026B-001", "data_type": "2"}, ["cfzst_0004_NGC1275.fits"]),
    ({"date": "2018-03-20"}, ["0005_NGC1275.fits"]),
    ({"date_from": "2018-03-20", "date_to": "2018-03-21"}, ["0005_NGC1275.fits"]),
    ({"data_type": "1"}, ["master_flat.fits"]),
    ({"search": "NGC", "data_type": "0"}, ["0005_NGC1275.fits", "0004_NGC1275.fits"]),
    ({"search": "%"}, []),
    ({"search": "_"}, ["cfzst_0004_NGC1275.fits", "master_flat.fits", "0006_imag.fits", "0005_NGC1275.fits",
                       "0004_NGC1275.fits", "0003_comp.fits", "0002_flat.fits", "0001_bias.fits"]),
    ({"search": "'; DROP TABLE files; --"}, []),
    ({"object": "' OR '1'='1"}, []),
    ({"hide_raw_calibrations": "true", "data_type": "0"}, ["0006_imag.fits", "0005_NGC1275.fits",
                                                           "0004_NGC1275.fits", "0003_comp.fits"]),
])
def test_filters(client, night, people, params, expected):
    response = client.get("/api/files/", query_string=params, headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 200, response.json
    assert [item["file_name"] for item in response.json["results"]] == expected


def test_lineage_filters(client, night, people):
    raw = night["0004_NGC1275.fits"]
    for name in ("parent_file_id", "original_file_id"):
        response = client.get("/api/files/", query_string={name: raw.id}, headers=auth_header(people["tokens"]["pi"]))
        assert [item["file_name"] for item in response.json["results"]] == ["cfzst_0004_NGC1275.fits"]
    product = client.get(f"/api/files/{night['product'].id}/", headers=auth_header(people["tokens"]["pi"])).json
    assert product["parent_file"] == "0004_NGC1275.fits" and product["original_file_id"] == raw.id


def test_pagination(client, night, people):
    headers = auth_header(people["tokens"]["staff"])
    first = client.get("/api/files/?page_size=3", headers=headers).json
    assert first["count"] == 9 and len(first["results"]) == 3 and first["previous"] is None
    assert first["next"].endswith("/api/files/?page_size=3&page=2")
    second = client.get(first["next"].split("localhost")[1], headers=headers).json
    assert second["previous"].endswith("page=1") and len(second["results"]) == 3
    third = client.get("/api/files/?page_size=3&page=3", headers=headers).json
    assert third["next"] is None and len(third["results"]) == 3
    ids = [item["id"] for page in (first, second, third) for item in page["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 9
    assert client.get("/api/files/?page=9", headers=headers).json["results"] == []


@pytest.mark.parametrize("query, message", [
    ("page=0", "'page' must be at least 1."),
    ("page=abc", "'page' must be a whole number, not 'abc'."),
    ("page_size=1001", "'page_size' may be at most 1000."),
    ("data_type=x", "'data_type' must be a whole number, not 'x'."),
    ("parent_file_id=1.5", "'parent_file_id' must be a whole number, not '1.5'."),
    ("date=27-11-2026", "'date' must be a date like 2026-11-27, not '27-11-2026'."),
    ("date_from=yesterday", "'date_from' must be a date like 2026-11-27, not 'yesterday'."),
])
def test_bad_list_parameters(client, people, query, message):
    response = client.get(f"/api/files/?{query}", headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 400
    assert response.json == {"detail": message}


def test_header_as_ordered_cards(client, night, people):
    file = night["0004_NGC1275.fits"]
    response = client.get(f"/api/files/header/?id={file.id}", headers=auth_header(people["tokens"]["collab"]))
    assert response.status_code == 200
    cards = response.json["cards"]
    assert cards[0] == {"keyword": "SIMPLE", "value": True, "comment": "conforms to FITS standard"}
    by_keyword = {card["keyword"]: card["value"] for card in cards}
    assert by_keyword["OBJECT"] == "NGC1275" and by_keyword["PROPOSAL"] == "SOAR2026B-001"


def test_download_streams_the_fits_bytes(client, night, people):
    file = night["0004_NGC1275.fits"]
    response = client.get(f"/api/files/{file.id}/download/", headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 200
    assert response.data == Path(file.full_path).read_bytes()
    assert "0004_NGC1275.fits" in response.headers["Content-Disposition"]
    # a proposal's data is never stored by shared caches; the app's own assets are, for an hour
    assert response.headers["Cache-Control"] == "no-cache, max-age=0"
    asset = client.get("/assets/gsp.css")
    assert asset.status_code == 200 and asset.headers["Cache-Control"] == "public, max-age=3600"


def test_reclassify_focus_arc_as_comp(client, app, people):
    folder = raw_dir(app)
    shutil.copy(REAL_DATA / "sp_400m2.fits", folder / "sp_400m2.fits")
    original = (folder / "sp_400m2.fits").read_bytes()
    file = ingest(app, folder / "sp_400m2.fits")[0]
    headers = auth_header(people["tokens"]["staff"])
    response = client.post("/api/files/reclassify/", json={"id": file.id}, headers=headers)
    assert response.status_code == 200
    assert (response.json["obstype"], response.json["technique"]) == ("COMP", "Spectroscopy")
    response = client.post("/api/files/reclassify/", json={"id": file.id, "obstype": "ARC"}, headers=headers)
    assert response.json["obstype"] == "ARC"
    response = client.post("/api/files/reclassify/", json={"id": file.id, "obstype": "GALAXY"}, headers=headers)
    assert response.status_code == 400 and "GALAXY" in response.json["detail"]
    assert (folder / "sp_400m2.fits").read_bytes() == original


# --- the two doors and bad input ---------------------------------------------------------------

def test_post_full_path_and_upload(client, app, people):
    headers = auth_header(people["tokens"]["staff"])
    path = write_frame(raw_dir(app), "0010_spec.fits")
    response = client.post("/api/files/", json={"full_path": str(path)}, headers=headers)
    assert response.status_code == 201 and response.json["file_name"] == "0010_spec.fits"
    again = client.post("/api/files/", json={"full_path": str(path)}, headers=headers)
    assert again.status_code == 200 and again.json["id"] == response.json["id"]
    content = path.read_bytes()
    upload = client.post("/api/files/", data={"file": (io.BytesIO(content), "0010_spec.fits")}, headers=headers,
                         content_type="multipart/form-data")
    assert upload.status_code == 201
    stored = Path(upload.json["full_path"])
    assert stored.read_bytes() == content and stored.name == "0010_spec.fits" and stored.parent.parent.name == "uploads"
    second = client.post("/api/files/", data={"file": (io.BytesIO(content), "0010_spec.fits")}, headers=headers,
                         content_type="multipart/form-data")
    assert second.status_code == 201 and Path(second.json["full_path"]).name == "0010_spec_1.fits"  # never overwrites


def test_only_staff_may_add_files(client, app, people):
    path = write_frame(raw_dir(app), "0011_spec.fits")
    response = client.post("/api/files/", json={"full_path": str(path)}, headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 403


@pytest.mark.parametrize("make, status, message", [
    (lambda folder, app: "/etc/passwd", 400, "is outside the data folder"),
    (lambda folder, app: str(folder / ".." / ".." / ".." / "outside.fits"), 400, "is outside the data folder"),
    (lambda folder, app: str(folder / "missing.fits"), 400, "is not a file"),
    (lambda folder, app: _symlink_out(folder, app), 400, "is outside the data folder"),
    (lambda folder, app: _write(folder / "notes.txt", b"hello"), 400, "is not a FITS file name"),
    (lambda folder, app: _write(folder / "empty.fits", b""), 422, "empty file"),
    (lambda folder, app: _write(folder / "text.fits", b"x" * 2880), 422, "not a readable FITS file"),
    (lambda folder, app: _truncated(folder), 422, "truncated"),
    (lambda folder, app: _nonsense_header(folder), 422, "header problem: OBSTYPE"),
])
def test_bad_input_is_refused_or_recorded_failed(client, app, people, make, status, message):
    from db.models import File, LogEntry

    folder = raw_dir(app)
    path = make(folder, app)
    before = Path(path).read_bytes() if Path(path).is_file() else None
    response = client.post("/api/files/", json={"full_path": path}, headers=auth_header(people["tokens"]["staff"]))
    assert response.status_code == status
    assert message in response.json["detail"]
    if status == 422:  # a broken FITS file: recorded as failed, with the reason, and logged
        row = File.query.one()
        assert row.state == "failed" and message in row.state_reason
        assert LogEntry.query.filter_by(event="ingest_failed", file_id=row.id).one().level == "ERROR"
        assert Path(path).read_bytes() == before
    else:
        assert File.query.count() == 0
    good = write_frame(folder, "0099_good.fits")  # and the next good file goes in
    assert client.post("/api/files/", json={"full_path": str(good)},
                       headers=auth_header(people["tokens"]["staff"])).status_code == 201


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _symlink_out(folder: Path, app) -> str:
    outside = Path(app.config["DATA_DIR"]).parent / "secret.fits"
    shutil.copy(REAL_DATA / "goodman_red_spec.fits", outside)
    link = folder / "link.fits"
    link.symlink_to(outside)
    return str(link)


def _truncated(folder: Path) -> str:
    data = np.zeros((948, 2071), dtype=np.uint16)
    header = fits.getheader(REAL_DATA / "goodman_red_spec.fits")
    full = folder / "full.fits"
    fits.PrimaryHDU(data=data, header=header).writeto(full)
    cut = folder / "cut.fits"
    cut.write_bytes(full.read_bytes()[: 2880 * 40])
    full.unlink()
    return str(cut)


def _nonsense_header(folder: Path) -> str:
    header = fits.getheader(REAL_DATA / "goodman_red_spec.fits")
    del header["OBSTYPE"]
    path = folder / "no_obstype.fits"
    fits.PrimaryHDU(data=np.zeros((4, 4), dtype=np.uint16), header=header).writeto(path)
    return str(path)


def test_body_too_large_and_bad_json(client, app, people):
    headers = auth_header(people["tokens"]["staff"])
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    response = client.post("/api/files/", data={"file": (io.BytesIO(b"0" * 20_000), "big.fits")}, headers=headers,
                           content_type="multipart/form-data")
    assert response.status_code == 413 and "detail" in response.json
    two_gigabytes = {"CONTENT_LENGTH": str(2 * 1024 ** 3), "CONTENT_TYPE": "multipart/form-data; boundary=x"}
    huge = client.post("/api/files/", data=b"", headers=headers, environ_overrides=two_gigabytes)
    assert huge.status_code == 413 and huge.json["detail"] == "The upload is larger than the limit of 10000 bytes."
    assert client.post("/api/files/", data="not json", headers=headers,
                       content_type="application/json").json == {"detail": "The request body must be a JSON object."}


@pytest.mark.parametrize("url", ["/api/files/header/?id=abc", "/api/files/visualize/?id=x"])
def test_non_integer_ids(client, people, url):
    response = client.get(url, headers=auth_header(people["tokens"]["pi"]))
    assert response.status_code == 400 and "must be a whole number" in response.json["detail"]


@pytest.mark.parametrize("url", ["/api/files/abc/", "/api/files/1.5/download/"])
def test_a_path_whose_file_id_is_not_a_whole_number_is_no_endpoint(client, people, url):
    response = client.get(url, headers=auth_header(people["tokens"]["pi"]))
    assert (response.status_code, response.json) == (404, {"detail": f"No API endpoint {url}."})


def test_delete_processed_only(client, night, people):
    from db.models import File

    headers = auth_header(people["tokens"]["pi"])
    raw = night["0004_NGC1275.fits"]
    response = client.delete("/api/files/", json={"ids": [night["product"].id, raw.id]}, headers=headers)
    assert response.status_code == 400 and "raw files are never deleted" in response.json["detail"]
    assert File.query.count() == 9  # nothing deleted when any id is refused
    response = client.delete("/api/files/", json={"ids": [night["product"].id]}, headers=headers)
    assert response.status_code == 200 and response.json == {"deleted": [night["product"].id]}
    assert File.query.count() == 8 and Path(raw.full_path).exists()



@pytest.mark.both_databases
def test_a_delete_whose_commit_fails_keeps_the_products_file(app, night, people):
    """The file of a deleted product goes only after the commit that removes its row: a commit that fails
    leaves both the row and the file."""
    import sqlalchemy as sa

    from db import db
    from db.models import File
    from live.catalogue import delete_products

    product = night["product"]
    path = Path(product.full_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL_DATA / "goodman_red_spec.fits", path)

    def refuse(session):
        raise sa.exc.OperationalError("COMMIT", {}, Exception("database is locked"))

    sa.event.listen(db.session(), "before_commit", refuse, once=True)
    with pytest.raises(sa.exc.OperationalError):
        delete_products(people["users"]["pi"], [product])
    db.session.rollback()
    assert path.exists() and db.session.get(File, product.id) is not None
    assert delete_products(people["users"]["pi"], [db.session.get(File, product.id)]) == [product.id]
    assert not path.exists() and db.session.get(File, product.id) is None

# --- the permission matrix ---------------------------------------------------------------------

MATRIX = {  # who -> (sees SOAR2026B-001 files, may delete its products)
    "staff": (True, True),
    "pi": (True, True),
    "collab": (True, True),
    "stranger": (False, False),
}


@pytest.mark.parametrize("who", ["anonymous", *MATRIX])
def test_permission_matrix(client, night, people, who):
    headers = auth_header(people["tokens"][who]) if who != "anonymous" else {}
    raw, product, master = night["0004_NGC1275.fits"], night["product"], night["master"]
    urls = [f"/api/files/{raw.id}/", f"/api/files/header/?id={raw.id}", f"/api/files/{raw.id}/download/",
            f"/api/files/visualize/?id={raw.id}&format=png&width=200"]
    if who == "anonymous":
        for url in urls + ["/api/files/"]:
            assert client.get(url).status_code == 401, url
        assert client.delete("/api/files/", json={"ids": [product.id]}).status_code == 401
        return
    sees, may_delete = MATRIX[who]
    for url in urls:
        assert client.get(url, headers=headers).status_code == (200 if sees else 404), url
    listed = {item["id"] for item in client.get("/api/files/?page_size=100", headers=headers).json["results"]}
    assert (raw.id in listed) == sees and master.id in listed  # masters are visible to everyone
    assert client.get(f"/api/files/{master.id}/", headers=headers).status_code == 200
    deleted = client.delete("/api/files/", json={"ids": [product.id]}, headers=headers)
    assert deleted.status_code == (200 if may_delete else 404)


@pytest.mark.both_databases
@pytest.mark.parametrize("who", MATRIX)
def test_permission_matrix_per_data_type(client, night, people, who):
    """Listing one data type narrows the permission rule to that type: same answers as filtering
    the full list."""
    headers = auth_header(people["tokens"][who])
    everything = client.get("/api/files/?page_size=1000", headers=headers).json["results"]
    for data_type in (0, 1, 2, 4):
        response = client.get(f"/api/files/?data_type={data_type}&page_size=1000", headers=headers)
        expected = [item["id"] for item in everything if item["data_type"] == str(data_type)]
        assert [item["id"] for item in response.json["results"]] == expected
        assert response.json["count"] == len(expected)
    masters = client.get("/api/files/?data_type=1", headers=headers).json["results"]
    assert [item["id"] for item in masters] == [night["master"].id]  # another proposal's master: everyone
    raw = {item["id"] for item in client.get("/api/files/?data_type=0", headers=headers).json["results"]}
    assert (night["0004_NGC1275.fits"].id in raw) == MATRIX[who][0]
    assert (night["other"].id in raw) == (who in ("staff", "stranger"))


# --- the watcher --------------------------------------------------------------------------------

def test_a_backlog_is_catalogued_oldest_first(app, people):
    """Files landing at once (a copied night) are catalogued in the order the instrument numbered them."""
    from db.models import File
    from live.watcher import Watcher

    watcher = Watcher(Path(app.config["DATA_DIR"]) / "raw", settle_seconds=0.0)
    names = [f"{number:04d}_backlog.fits" for number in (7, 2, 10, 1, 5)]
    for name in names:
        watcher.notice(str(write_frame(raw_dir(app), name)))
    assert watcher.ingest_ready() is False  # first look: sizes noted
    assert watcher.ingest_ready() is True  # unchanged since: catalogued, caught up (the wake-ups run now)
    catalogued = [row.file_name for row in File.query.order_by(File.id)]
    assert catalogued == sorted(names)


def test_a_file_renamed_into_place_is_catalogued_on_the_first_look(app, people):
    """A file renamed into place (or closed after writing) and complete is catalogued at the watcher's first look;
    one merely seen changing, or renamed in incomplete, waits until its size has settled."""
    from db.models import File
    from live.watcher import Watcher

    watcher = Watcher(Path(app.config["DATA_DIR"]) / "raw", settle_seconds=0.0)
    watcher.notice(str(write_frame(raw_dir(app), "0001_renamed.fits")), written=True)
    watcher.notice(str(write_frame(raw_dir(app), "0002_seen.fits")))
    cut = write_frame(raw_dir(app), "0003_cut.fits")
    cut.write_bytes(cut.read_bytes()[:2880])  # the header alone
    watcher.notice(str(cut), written=True)
    assert watcher.ingest_ready() is False  # first look
    assert [row.file_name for row in File.query.order_by(File.id)] == ["0001_renamed.fits"]
    assert watcher.ingest_ready() is False  # settled: the whole one; the cut one waits to give up
    assert [row.file_name for row in File.query.order_by(File.id)] == ["0001_renamed.fits", "0002_seen.fits"]


def test_watcher_ingests_new_files_within_a_second(dash_app, app, people):
    from live.watcher import Watcher

    folder = Path(app.config["DATA_DIR"]) / "raw"
    early = write_frame(raw_dir(app), "0000_before_start.fits")  # written while no watcher ran
    watcher = Watcher(folder, rescan_seconds=0.5, give_up_seconds=0.5)

    def run():
        with dash_app.server.app_context():
            watcher.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    client = app.test_client()
    headers = auth_header(people["tokens"]["pi"])
    try:
        _wait_for_names(client, headers, {"0000_before_start.fits"}, timeout=5)
        (raw_dir(app) / "junk.fits").write_bytes(b"not fits at all" * 200)  # must not stop the watcher
        template = write_frame(Path(app.config["DATA_DIR"]), "template.fits")
        start = time.monotonic()
        shutil.copy(template, raw_dir(app) / "0001_live.fits")
        _wait_for_names(client, headers, {"0001_live.fits"}, timeout=1.0)
        latency = time.monotonic() - start
        assert latency < 1.0
        shutil.copy(template, raw_dir(app) / "0002_after_junk.fits")
        _wait_for_names(client, headers, {"0002_after_junk.fits"}, timeout=2.0)
        _wait_for_names(client, auth_header(people["tokens"]["staff"]), {"junk.fits"}, timeout=3.0)
    finally:
        watcher.stop_event.set()
        thread.join(5)
    from db.models import File

    junk = File.query.filter_by(file_name="junk.fits").one()
    assert junk.state == "failed" and "not a whole number of FITS blocks" in junk.state_reason
    assert early.exists()


def _wait_for_names(client, headers, names, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {item["file_name"] for item in client.get("/api/files/?page_size=100", headers=headers).json["results"]}
        if names <= listed:
            return
        time.sleep(0.02)
    raise AssertionError(f"{names} not listed within {timeout} s (listed: {sorted(listed)})")


def test_a_waiting_stamp_request_is_answered_by_a_change_the_caller_may_see(live_server, app, people):
    """GET /api/files/stamp/?after=<stamp>&wait=<s> answers when a file the caller may see is added, not
    for another proposal's file, and with the same stamp when the wait is over; a bad wait is a 400."""
    import json
    import urllib.error
    import urllib.request

    from db import db
    from db.models import File

    def get(query, who="pi"):
        request = urllib.request.Request(f"{live_server}/api/files/stamp/{query}",
                                         headers=auth_header(people["tokens"][who]))
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    _, first = get("")
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(get(f"?after={first['stamp']}&wait=15")))
    waiting.start()
    time.sleep(0.3)
    db.session.add(File(file_name="theirs.fits", directory_name="/x", full_path="/x/theirs.fits", data_type=2,
                        proposal=people["other_proposal"]))
    db.session.commit()
    time.sleep(0.5)
    assert waiting.is_alive() and answers == []  # the stranger's file is no change for the PI
    db.session.add(File(file_name="ours.fits", directory_name="/x", full_path="/x/ours.fits", data_type=2,
                        proposal=people["proposal"]))
    db.session.commit()
    waiting.join(5)  # well before the 15 s wait is over
    assert not waiting.is_alive()
    _, now = get("")
    assert answers == [(200, now)] and now["stamp"] != first["stamp"]

    began = time.monotonic()
    assert get(f"?after={now['stamp']}&wait=0.5") == (200, now)
    assert time.monotonic() - began >= 0.5
    assert get(f"?after=older&wait=5") == (200, now)  # a stamp other than the current one: at once
    for wait in ("soon", "31", "-1", "nan"):
        status, body = get(f"?after={now['stamp']}&wait={wait}")
        assert status == 400 and body["detail"].startswith("wait must be"), (wait, body)


def test_change_stamp_follows_only_what_the_user_sees(client, night, people):
    from db import db
    from db.models import File

    def stamp(who):
        return client.get("/api/files/stamp/", headers=auth_header(people["tokens"][who])).json["stamp"]

    before = {who: stamp(who) for who in ("pi", "stranger", "staff")}
    db.session.add(File(file_name="x.fits", directory_name="/x", full_path="/x/x.fits", data_type=2,
                        proposal=people["other_proposal"]))  # the stranger's proposal
    db.session.commit()
    after = {who: stamp(who) for who in ("pi", "stranger", "staff")}
    assert after["pi"] == before["pi"] and after["stranger"] != before["stranger"]
    assert after["staff"] != before["staff"]
    raw = night["0004_NGC1275.fits"]
    raw.state = "running"  # a state change is a change the Data page must show
    db.session.commit()
    assert stamp("pi") != after["pi"] and stamp("stranger") == after["stranger"]
    master_before = stamp("stranger")
    db.session.add(File(file_name="master_bias_new.fits", directory_name="/x", full_path="/x/mb.fits",
                        data_type=1, obstype="BIAS"))  # masters are everyone's
    db.session.commit()
    assert stamp("stranger") != master_before
