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


# --- header cards that are not valid FITS -------------------------------------------------------------

NOT_VALID = "not valid FITS; shown as written in the file"


def write_with_raw_cards(path: Path, header, data, cards: dict[str, bytes]) -> Path:
    """``data`` under ``header`` with ``cards`` reading exactly as given, byte for byte: astropy refuses to write
    such cards (NaN, non-ASCII), as an instrument's software sometimes does not."""
    from astropy.io import fits

    header = header.copy()
    for keyword in cards:
        header[keyword] = "PLACEHOLDER"
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    blob = path.read_bytes()
    for keyword, text in cards.items():
        start = blob.index(f"{keyword:8}= 'PLACEHOLDER'".encode())
        blob = blob[:start] + f"{keyword:8}= ".encode() + text.ljust(70)[:70] + blob[start + 80:]
    path.write_bytes(blob)
    return path


BROKEN_CARDS = {"EXPTIME": b"NaN", "OBJECT": "Zeta \u03b6 Oph".encode()}  # a number astropy cannot read; unquoted UTF-8


def test_a_raw_frame_with_invalid_cards_is_catalogued_failed_and_its_header_and_image_shown(app, client, people):
    headers = auth_header(people["tokens"]["staff"])
    raw = Path(app.config["DATA_DIR"]) / "raw"
    from astropy.io import fits

    with fits.open(REAL_DATA / "goodman_red_spec.fits") as hdus:
        path = write_with_raw_cards(raw / "broken.fits", hdus[0].header, hdus[0].data, BROKEN_CARDS)
    created = client.post("/api/files/", json={"full_path": str(path)}, headers=headers)
    assert created.status_code == 422
    assert created.json["detail"] == "Could not ingest broken.fits: header problem: EXPTIME: 'NaN' is not a valid " \
                                     "FITS value"
    file_id = created.json["file"]["id"]
    header = client.get(f"/api/files/header/?id={file_id}", headers=headers)
    assert header.status_code == 200
    cards = {card["keyword"]: card for card in header.json["cards"]}
    assert cards["EXPTIME"] == {"keyword": "EXPTIME", "value": "NaN", "comment": "", "invalid": NOT_VALID}
    # astropy reads each non-ASCII byte as "?"
    assert cards["OBJECT"] == {"keyword": "OBJECT", "value": "Zeta ?? Oph", "comment": "", "invalid": NOT_VALID}
    assert cards["OBSTYPE"] == {"keyword": "OBSTYPE", "value": "OBJECT", "comment": "observation type"}
    png = client.get(f"/api/files/visualize/?id={file_id}&width=300", headers=headers)
    assert png.status_code == 200 and png.mimetype == "image/png"


@pytest.fixture
def broken_spectrum(app, people):
    """A wavelength-calibrated spectrum of the PI's proposal whose EXPTIME and OBJECT cards are not valid FITS."""
    import numpy as np
    from astropy.io import fits

    from db import db
    from db.models import File
    from pipeline.datatypes import DataType

    folder = Path(app.config["DATA_DIR"]) / "processed" / "2018-03-19"
    folder.mkdir(parents=True)
    header = fits.Header({"OBSTYPE": "OBJECT", "GRATING": "400_SYZY", "WAVMODE": "400_M2", "CTYPE1": "LINEAR",
                          "CUNIT1": "Angstrom", "CRVAL1": 4000.0, "CDELT1": 2.0, "CRPIX1": 1.0})
    path = write_with_raw_cards(folder / "wecfzst_broken.fits", header, np.linspace(1.0, 2.0, 500), BROKEN_CARDS)
    spectrum = File(file_name=path.name, directory_name=str(folder), full_path=str(path), obstype="OBJECT",
                    technique="Spectroscopy", data_type=DataType.WAVELENGTH_CALIBRATED, state="done",
                    proposal=people["proposal"])
    db.session.add(spectrum)
    db.session.commit()
    return spectrum


def test_a_spectrum_with_invalid_cards_is_drawn_and_its_header_shown_in_the_api_and_the_data_page(
        client, people, broken_spectrum):
    from dash import html

    from components.data_view import render_viewer
    from components.header_table import header_cards, header_table

    spectrum, path = broken_spectrum, Path(broken_spectrum.full_path)
    headers = auth_header(people["tokens"]["staff"])
    for fmt, mimetype in (("png", "image/png"), ("json", "application/json")):
        response = client.get(f"/api/files/visualize/?id={spectrum.id}&format={fmt}", headers=headers)
        assert (response.status_code, response.mimetype) == (200, mimetype), response.text[:300]
    cards = client.get(f"/api/files/header/?id={spectrum.id}", headers=headers).json["cards"]
    assert {"keyword": "EXPTIME", "value": "NaN", "comment": "", "invalid": NOT_VALID} in cards
    # The Data page: the viewer draws it against its wavelengths, the header table flags the two cards.
    figure = render_viewer(spectrum, "interactive", "gray", {}).figure
    assert list(figure["data"][0]["x"][:2]) == [4000.0, 4002.0]
    shown = header_cards(path)
    assert {"keyword": "EXPTIME", "value": "NaN", "comment": "", "invalid": NOT_VALID} in shown
    table = header_table(shown)
    rows = table.children[1].children[1].children
    exptime = next(row for row in rows if row.children[0].children == "EXPTIME")
    assert [part.children for part in exptime.children[1].children] == ["NaN", NOT_VALID]
    assert isinstance(exptime.children[1].children[1], html.Span)


# --- what the catalogue cannot hold, and what is not a raw frame ---------------------------------------

@pytest.mark.both_databases
def test_a_proposal_id_too_long_for_the_catalogue_leaves_the_frame_failed_with_the_reason(app, client, people):
    from db.models import File, LogEntry, Proposal
    from tests.test_catalogue import write_frame

    raw = Path(app.config["DATA_DIR"]) / "raw"
    path = write_frame(raw, "long_proposal.fits", proposal="P" * 5013)  # astropy writes it as CONTINUE cards
    response = client.post("/api/files/", json={"full_path": str(path)}, headers=auth_header(people["tokens"]["staff"]))
    reason = ("header problem: PROPOSAL: 'PPPPPPPPPPPPPPPPPPPP'... is 5013 characters long; a proposal id has at "
              "most 64, so the frame is not reduced.")
    assert response.status_code == 422 and response.json["detail"] == f"Could not ingest long_proposal.fits: {reason}"
    row = File.query.one()
    assert (row.state, row.state_reason, row.proposal_id) == ("failed", reason, None)
    assert Proposal.query.filter(Proposal.soar_id.like("PPP%")).count() == 0
    assert [entry.message for entry in LogEntry.query.filter_by(event="ingest_failed")] == \
        [f"Could not ingest long_proposal.fits: {reason}"]


def test_a_product_under_the_processed_folder_is_not_added_as_a_raw_frame(app, client, people):
    from db.models import File

    folder = Path(app.config["DATA_DIR"]) / "processed" / "2019-05-15"
    folder.mkdir(parents=True)
    shutil.copy(REAL_DATA / "im_g_SDSS.fits", folder / "rfzst_image.fits")
    for given in (str(folder / "rfzst_image.fits"), "processed/2019-05-15/rfzst_image.fits",
                  str(Path(app.config["DATA_DIR"]) / "raw" / ".." / "processed" / "2019-05-15" / "rfzst_image.fits")):
        response = client.post("/api/files/", json={"full_path": given}, headers=auth_header(people["tokens"]["staff"]))
        assert response.status_code == 400
        assert response.json == {"detail": f"'{given}' is under the processed folder: it is a product of the pipeline, "
                                           "not a raw frame (products are catalogued as they are made)."}
    assert File.query.count() == 0


@pytest.mark.browser
def test_the_data_page_draws_such_a_spectrum_and_flags_its_cards(live_server, page, broken_spectrum):
    from tests.conftest import PASSWORD, screenshot

    page.goto(f"{live_server}/login")
    page.fill("#username", "pi")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{live_server}/")
    page.goto(f"{live_server}/?id={broken_spectrum.id}")
    page.wait_for_selector("#data-graph .js-plotly-plot")
    page.click("#data-header-toggle")
    page.fill("#data-header-search", "EXPTIME")
    page.wait_for_function("() => document.querySelectorAll('#data-header-table tbody tr').length === 1")
    assert page.locator("#data-header-table tbody tr td.gsp-val span").all_inner_texts() == ["NaN", NOT_VALID]
    screenshot(page, "data-header-invalid-card")
