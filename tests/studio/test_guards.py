"""Studio's guards on the real app: the launch token on every /api route, loopback Host only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.requires import need
from tests.utils.studio import LOOPBACK, fastapi_app, studio_for, template_project

need("fastapi", "Studio is a FastAPI app")

TOKEN = "launch-token-for-tests"


@pytest.fixture
def app(project: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from arkor.studio._app import create_app

    monkeypatch.setenv("ARKOR_PORT", "0")  # no `arkor serve` to find: an embedded plane
    template_project(project, tiny_model)
    with studio_for(project) as studio:
        yield create_app(studio, TOKEN)


def _client(app: Any, host: str = "127.0.0.1:4000") -> Any:
    from starlette.testclient import TestClient

    return TestClient(app, base_url=LOOPBACK, headers={"host": host}, raise_server_exceptions=True)


def _api_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of Studio's API, path parameters filled in."""
    routes = []
    for route in fastapi_app(app).routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/") or path == "/api/openapi.json":
            continue
        filled = re.sub(r"\{[^}]+\}", "x", path)
        routes += [(method, filled) for method in sorted(route.methods - {"HEAD"})]
    return routes


def test_every_api_route_needs_the_launch_token_in_its_header(app: Any) -> None:
    routes = _api_routes(app)
    assert len(routes) >= 25, routes
    with _client(app) as client:
        for method, path in routes:
            for headers in ({}, {"X-Arkor-Studio-Token": "wrong"}, {"X-Arkor-Studio-Token": ""}):
                answer = client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert "token" in answer.json()["error"]["message"]
            answer = client.request(method, path, headers={"X-Arkor-Studio-Token": TOKEN})
            assert answer.status_code != 401, (method, path, answer.text)


def test_the_query_token_is_taken_only_by_the_routes_a_browser_opens_without_headers(
    app: Any,
) -> None:
    streams = {"/api/runs/x/events", "/api/runs/x/artifacts/x"}
    with _client(app) as client:
        for method, path in _api_routes(app):
            answer = client.request(method, f"{path}?studioToken={TOKEN}")
            if method == "GET" and path in streams:
                assert answer.status_code != 401, (method, path)
                assert client.get(f"{path}?studioToken=wrong").status_code == 401
            else:
                assert answer.status_code == 401, (method, path, answer.text)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:4000",
        "127.0.0.1.nip.io:4000",
        "10.0.0.5:4000",
        "",
        "[::2]:4000",
    ],
)
def test_a_foreign_host_is_refused_before_anything_else(app: Any, host: str) -> None:
    with _client(app, host) as client:
        for path in ("/", "/runs", "/static/app.js", "/api/project"):
            answer = client.get(path, headers={"X-Arkor-Studio-Token": TOKEN})
            assert answer.status_code == 400, (host, path)
            assert "loopback" in answer.json()["error"]["message"]
            assert TOKEN not in answer.text


@pytest.mark.parametrize(
    "host", ["127.0.0.1:4000", "localhost:4000", "[::1]:4000", "localhost", "127.0.0.2:4001"]
)
def test_loopback_names_are_served(app: Any, host: str) -> None:
    with _client(app, host) as client:
        assert client.get("/").status_code == 200
        answer = client.get("/api/project", headers={"X-Arkor-Studio-Token": TOKEN})
        assert answer.status_code == 200
        assert answer.json()["plane"]["kind"] == "embedded"


def test_pages_carry_the_token_and_a_strict_policy_and_no_cors(app: Any) -> None:
    with _client(app) as client:
        for path in ("/", "/runs", "/runs/job_1", "/new", "/playground", "/endpoints", "/data"):
            page = client.get(path, headers={"Origin": "https://evil.example"})
            assert page.status_code == 200, path
            assert f'<meta name="arkor-studio-token" content="{TOKEN}">' in page.text
            policy = page.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            assert page.headers["x-frame-options"] == "DENY"
            assert "access-control-allow-origin" not in page.headers
        preflight = client.options(
            "/api/project",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        assert preflight.status_code in (401, 405)


def test_static_assets_are_served_by_content_hash_and_nothing_outside_them(app: Any) -> None:
    with _client(app) as client:
        page = client.get("/").text
        scripts = re.findall(r'src="(/static/app\.js\?v=[0-9a-f]{12})"', page)
        styles = re.findall(r'href="(/static/style\.css\?v=[0-9a-f]{12})"', page)
        assert scripts and styles
        script = client.get(scripts[0])
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "immutable" in script.headers["cache-control"]
        module = client.get("/static/api.js")
        assert module.headers["cache-control"] == "no-cache"
        etag = module.headers["etag"]
        assert client.get("/static/api.js", headers={"If-None-Match": etag}).status_code == 304
        for escape in ("/static/..%2f_app.py", "/static/_app.py", "/static/.hidden.js"):
            assert client.get(escape).status_code == 404, escape


def test_an_unknown_api_route_is_a_json_404(app: Any) -> None:
    with _client(app) as client:
        answer = client.get("/api/nope", headers={"X-Arkor-Studio-Token": TOKEN})
        assert answer.status_code == 404
        assert "No Studio API route" in answer.json()["error"]["message"]
