"""The API keeps its OpenAPI contract under generated input (Schemathesis against the live test server):
no server error, responses that match their schemas, content types and only documented statuses; with a
staff token and without one."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.docs import openapi_document
from tests.conftest import auth_header

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def app_config():
    return {"REDIS_URL": ""}  # a job a generated request starts runs (and fails, or waits) in-process


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "anonymous"])
@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_api_keeps_its_contract(case, live_server, people, with_token):
    headers = auth_header(people["tokens"]["staff"]) if with_token else {}
    case.call_and_validate(base_url=live_server, headers=headers, checks=CHECKS)
