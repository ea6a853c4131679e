"""The API keeps its OpenAPI contract exactly: Schemathesis runs its phases (the schema's examples, the coverage
of each constraint's edges and of undocumented methods, fuzzing) with every check against the
live test server, with a staff token and without one, and finds nothing: no server error, only documented statuses
and content types, responses that match their schemas, valid requests accepted and invalid ones refused, 405 with
the route's methods in `Allow`, OPTIONS listing them, authentication enforced."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.docs import openapi_document

SCHEMATHESIS = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")  # what a route may answer beyond the defaults, and why
# The stateful phase is left out: the document declares no links between operations, so it only repeated fuzzing.
PHASES = "examples,coverage,fuzzing"
MAX_EXAMPLES = 25  # per operation and phase: about 30 s per caller on two cores


@pytest.fixture
def app_config():
    return {"REDIS_URL": ""}  # a job a generated request starts runs (and fails, or waits) in-process


@pytest.mark.parametrize("caller", ["staff", "anonymous"])
def test_the_api_keeps_its_contract(live_server, people, caller, tmp_path):
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(openapi_document()))
    token = ["--header", f"Authorization: Token {people['tokens'][caller]}"] if caller in people["tokens"] else []
    # Deterministic generation: the same requests every run, so a failure here is reproducible.
    run = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", str(schema), "--url", live_server,
         "--checks", "all", "--phases", PHASES, "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic",
         "--workers", "1", "--request-timeout", "30", "--no-color", *token],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]


def test_a_url_too_long_for_the_http_server_is_its_documented_414(live_server, people):
    import requests

    response = requests.get(f"{live_server}/api/files/?search={'x' * 70_000}",
                            headers={"Authorization": f"Token {people['tokens']['staff']}"}, timeout=30)
    assert response.status_code == 414 and response.headers["Content-Type"].startswith("text/html")
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            assert list(operation["responses"]["414"]["content"]) == ["text/html"], (method, path)
