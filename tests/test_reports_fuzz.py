"""Fuzz the reports API's parameters from its own OpenAPI schema (schemathesis): never a 500, and every
answer matches the schema and the status codes it documents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from leadflow.config import Settings
from reports_api.app import create_app
from reports_api.security import LoginLimiter, issue_token
from tests.reports_world import World, build_world


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def reports_app(settings: Settings, world: World) -> Iterator[FastAPI]:
    # A limiter that never trips: the fuzzer logs in far more often than any person may.
    app = create_app(settings.database_url, world.tokens, limiter=LoginLimiter(attempts=10**9))
    yield app


def test_no_parameter_makes_the_api_fail(reports_app: FastAPI, world: World) -> None:
    # Driven with Hypothesis directly: schemathesis' pytest plugin does not run on pytest 9 yet.
    schema = schemathesis.openapi.from_asgi("/openapi.json", reports_app)
    # As broker A's admin on broker A's paths, so the fuzzed parameters reach the queries (other brokers'
    # ids are refused before any query; test_reports_api covers that).
    headers = {"Authorization": f"Bearer {issue_token(world.tokens, world.users['admin_a'])}"}
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 9  # every operation's schema is valid
    answered: Counter[tuple[str, int]] = Counter()
    # 25 cases per operation: with the workspace, admin and appointment routes there are dozens of them, and the
    # suite has a 30-minute budget; each still gets a spread of edge values (empty, huge, odd unicode, negative).
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: schemathesis.Case) -> None:
            if case.path_parameters and "broker_id" in case.path_parameters:
                case.path_parameters["broker_id"] = world.a.broker_id
            response = case.call(headers=headers)
            answered[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                      response_schema_conformance])

        fuzz()
    # The fuzz got through validation to the database, not only to 422s.
    for label in ("GET /brokers/{broker_id}/funnel", "GET /brokers/{broker_id}/leads",
                  "GET /brokers/{broker_id}/conversion", "GET /brokers/{broker_id}/cohorts"):
        assert answered[(label, 200)] > 0, answered
