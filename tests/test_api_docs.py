"""The OpenAPI document and Swagger UI, served from local files only."""
import re

import pytest

from tests.conftest import PASSWORD, auth_header

MANUAL_ENDPOINTS = [
    ("get", "/api/"), ("post", "/api/email/"), ("get", "/api/files/"), ("post", "/api/files/"),
    ("delete", "/api/files/"), ("post", "/api/files/calibrations/"), ("get", "/api/files/header/"),
    ("post", "/api/files/reclassify/"), ("post", "/api/files/reduce/"),
    ("post", "/api/files/spectrum/calibrate/wavelength/"), ("post", "/api/files/spectrum/extract/"),
    ("get", "/api/files/visualize/"), ("post", "/api/proposals/collaborators/{}/"),
]


def test_openapi_document_lists_every_endpoint_of_the_manual(client, people):
    document = client.get("/api/openapi.json", headers=auth_header(people["tokens"]["pi"])).json
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["Token"] == {
        "type": "apiKey", "in": "header", "name": "Authorization", "description": "Enter: Token <key>"}
    paths = {_shape(path): item for path, item in document["paths"].items()}
    for method, path in MANUAL_ENDPOINTS:
        assert method in paths.get(path, {}), (method, path)


def _shape(path: str) -> str:
    """A path with its parameters blanked: /api/files/{file_id}/ and /api/files/<file_id>/ -> /api/files/{}/."""
    return re.sub(r"[{<][^}>]*[}>]", "{}", path)


def test_every_route_is_documented(app):
    from api.docs import openapi_document

    documented = {(_shape(path), method.upper()) for path, item in openapi_document()["paths"].items()
                  for method in item}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi_json":
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (_shape(rule.rule), method) in documented, (rule.rule, method)


def test_swagger_ui_is_local(client, people):
    client.get("/login")
    page = client.get("/api/docs/", headers=auth_header(people["tokens"]["pi"]))
    assert page.status_code == 200
    assert "/api/docs/swagger-ui-bundle.js" in page.text and "http" not in page.text.split("<body")[1].split(
        "url")[0]
    assert '"validatorUrl": null' in page.text and '"url": "/api/openapi.json"' in page.text
    bundle = client.get("/api/docs/swagger-ui-bundle.js", headers=auth_header(people["tokens"]["pi"]))
    assert bundle.status_code == 200 and len(bundle.data) > 500_000
    assert client.get("/api/docs/").status_code == 302  # a login like every other page


@pytest.mark.browser
def test_swagger_ui_renders_without_internet(live_server, page, people):
    outside = []
    page.on("request", lambda request: None if request.url.startswith(live_server) or request.url.startswith(
        "data:") else outside.append(request.url))
    page.goto(f"{live_server}/login?next=/api/docs/")
    page.fill("#username", "pi")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("text=/api/files/visualize/", timeout=15000)
    assert page.locator(".authorize").count() == 1  # the Token scheme
    page.locator('.opblock-get .opblock-summary-path[data-path="/api/files/"]').click()
    # "Try it out" is switched on for every operation (tryItOutEnabled), so Execute is there at once.
    page.get_by_role("button", name="Execute").first.click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=10000)
    assert status.inner_text().strip() == "200"
    assert outside == []


def test_documented_limits_and_types_match_the_server(client, people):
    """OpenAPI 3.0: exclusiveMinimum is a boolean beside minimum; the logs' page_size limit is the one enforced;
    timestamps carry their time zone (format date-time)."""
    from auth.audit import MAX_PAGE_SIZE as LOG_PAGE_SIZE

    headers = auth_header(people["tokens"]["staff"])
    document = client.get("/api/openapi.json", headers=headers).json
    settings = document["paths"]["/api/proposals/{id}/settings/"]["put"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["saturation_threshold"]
    assert settings["minimum"] == 0 and settings["exclusiveMinimum"] is True
    logs = {p["name"]: p for p in document["paths"]["/api/logs/"]["get"]["parameters"]}
    assert logs["page_size"]["schema"]["maximum"] == LOG_PAGE_SIZE
    assert client.get(f"/api/logs/?page_size={LOG_PAGE_SIZE}", headers=headers).status_code == 200
    assert client.get(f"/api/logs/?page_size={LOG_PAGE_SIZE + 1}", headers=headers).status_code == 400
    from db import db
    from db.events import log_event

    log_event("settings_changed", "An event to read back.", proposal_id=people["proposal"].id)
    db.session.commit()
    created = client.get("/api/logs/", headers=headers).json["results"][0]["created"]
    assert created.endswith("+00:00")
    joined = client.get(f"/api/proposals/{people['proposal'].id}/", headers=headers).json["user"]["date_joined"]
    assert joined.endswith("+00:00")


def test_a_wrong_method_on_a_known_route_is_405_and_unknown_routes_404(client, people):
    headers = auth_header(people["tokens"]["staff"])
    wrong = client.put("/api/files/1/", headers=headers)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"
    assert wrong.json["detail"] == "PUT is not allowed on /api/files/1/; use GET."
    assert client.delete("/api/jobs/1/", headers=headers).status_code == 405
    unknown = client.get("/api/no-such-thing/", headers=headers)
    assert unknown.status_code == 404 and unknown.json["detail"] == "No API endpoint /api/no-such-thing/."


def test_a_trigger_route_is_not_read_as_a_file_id_and_options_lists_the_routes_own_methods(client, people):
    headers = auth_header(people["tokens"]["staff"])
    trigger = client.get("/api/files/calibrations/", headers=headers)
    assert (trigger.status_code, trigger.headers["Allow"]) == (405, "POST")
    assert trigger.json == {"detail": "GET is not allowed on /api/files/calibrations/; use POST."}
    for path, allow in (("/api/files/stamp/", "GET, HEAD, OPTIONS"),
                        ("/api/files/", "GET, POST, DELETE, HEAD, OPTIONS"),
                        ("/api/files/7/", "GET, HEAD, OPTIONS"), ("/api/email/", "POST, OPTIONS"),
                        ("/api/proposals/1/settings/", "GET, PUT, PATCH, HEAD, OPTIONS")):
        options = client.options(path, headers=headers)
        assert (options.status_code, options.headers["Allow"]) == (204, allow), path
    assert client.options("/api/no-such-thing/", headers=headers).json == {"detail": "No API endpoint "
                                                                                     "/api/no-such-thing/."}
    not_a_number = client.get("/api/files/abc/", headers=headers)
    assert (not_a_number.status_code, not_a_number.json) == (404, {"detail": "No API endpoint /api/files/abc/."})


@pytest.mark.parametrize("url, body, detail", [
    ("/api/email/", {"to": ["pi@example.org"], "subject": "New data", "message": "Reduced.", "cc": "x@example.org"},
     "Unknown field(s): 'cc'; the body takes 'to', 'email', 'subject', 'message'."),
    ("/api/files/reduce/", {"id": 1, "lamp": "HgAr"}, "Unknown field(s): 'lamp'; the body takes 'id'."),
    ("/api/files/spectrum/extract/", {"id": 1, "arc": 2}, "Unknown field(s): 'arc'; the body takes 'id', 'arc_id'."),
    ("/api/files/reclassify/", {"id": 1, "OBSTYPE": "COMP"},
     "Unknown field(s): 'OBSTYPE'; the body takes 'id', 'obstype', 'standard'."),
])
def test_a_body_with_a_field_the_route_does_not_take_is_refused(client, people, url, body, detail):
    response = client.post(url, json=body, headers=auth_header(people["tokens"]["staff"]))
    assert (response.status_code, response.json) == (400, {"detail": detail})


@pytest.mark.parametrize("query, detail", [
    ("width=0", "'width' must be a whole number of pixels between 100 and 4000."),
    ("width=150.5", "'width' must be a whole number of pixels between 100 and 4000."),
    ("show_saturated=maybe", "'show_saturated' must be true or false, not 'maybe'."),
])
def test_visualize_refuses_what_its_schema_does_not_allow(app, client, people, query, detail):
    import shutil
    from pathlib import Path

    from tests.conftest import REAL_DATA

    headers = auth_header(people["tokens"]["staff"])
    shutil.copy(REAL_DATA / "im_g_SDSS.fits", Path(app.config["DATA_DIR"]) / "raw" / "image.fits")
    file_id = client.post("/api/files/", json={"full_path": str(Path(app.config["DATA_DIR"]) / "raw" / "image.fits")},
                          headers=headers).json["id"]
    response = client.get(f"/api/files/visualize/?id={file_id}&{query}", headers=headers)
    assert (response.status_code, response.json) == (400, {"detail": detail})
