"""Fuzz the plane from its own OpenAPI document: no 5xx, and every answer as documented.

A real plane (uvicorn, SQLite, its real token checks) with a signed-in caller; workers and
the inference process are commands that exit at once, so a fuzzed job or chat costs
milliseconds. Hypothesis runs derandomized with a fixed budget per operation, so the run is
the same on every machine and stays well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from arkor.server import RunningPlane, create_app
from tests.utils.plane import Caller, plane_settings, running_plane, sign_up

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    home: Path = tmp_path_factory.mktemp("fuzzed") / "home"
    with running_plane(home, worker_command=("true",)) as plane:
        yield plane


@pytest.fixture(scope="module")
def fuzzer(fuzzed_plane: RunningPlane) -> Iterator[Caller]:
    caller = sign_up(fuzzed_plane.url)
    yield caller
    caller.close()


schema = schemathesis.openapi.from_dict(
    create_app(plane_settings(Path("/nonexistent/arkor-home"))).openapi()
)
"""The document every plane serves at ``/openapi.json`` (building the app touches no disk)."""


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_plane_answers_every_fuzzed_request_as_documented(
    case: schemathesis.Case, fuzzer: Caller
) -> None:
    """Scoped requests reach the caller's real project, so bodies are checked in depth."""
    if case.query is not None and "orgSlug" in case.query:
        case.query["orgSlug"] = fuzzer.org_slug
        if "projectSlug" in case.query:
            case.query["projectSlug"] = fuzzer.project_slug
    case.call_and_validate(
        base_url=fuzzer.url,
        headers={"Authorization": f"Bearer {fuzzer.token}"},
        checks=CHECKS,
        timeout=30,
    )
