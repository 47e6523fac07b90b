"""Sign-in bootstrap, identity, bearer auth, and tokens stored only as hashes."""

from __future__ import annotations

import hashlib

import httpx

from arkor.server import RunningPlane
from tests.utils.plane import Caller, client_headers, sign_up


def test_cli_config_offers_anonymous_sign_in_only(plane: RunningPlane) -> None:
    answer = httpx.get(f"{plane.url}/v1/auth/cli/config", headers=client_headers())
    assert answer.status_code == 200
    assert answer.json() == {"anonymous": True, "oauth": None}


def test_anonymous_sign_up_gives_a_token_and_a_personal_org(plane: RunningPlane) -> None:
    answer = httpx.post(
        f"{plane.url}/v1/auth/anonymous", json={"kind": "cli"}, headers=client_headers()
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["kind"] == "cli"
    assert len(body["token"]) >= 40
    assert body["anonymousId"].startswith("anon_")
    assert set(body["personalOrg"]) == {"id", "slug", "name"}

    me = httpx.get(f"{plane.url}/v1/me", headers=client_headers(body["token"]))
    assert me.status_code == 200
    assert me.json()["user"]["anonymousId"] == body["anonymousId"]
    assert me.json()["orgs"] == [body["personalOrg"]]


def test_routes_need_a_valid_bearer_token(plane: RunningPlane) -> None:
    missing = httpx.get(f"{plane.url}/v1/me", headers=client_headers())
    wrong = httpx.get(f"{plane.url}/v1/me", headers=client_headers("not-a-token"))
    for answer in (missing, wrong):
        assert answer.status_code == 401
        assert answer.json()["error"]


def test_tokens_are_stored_hashed(plane: RunningPlane, caller: Caller) -> None:
    sign_up(plane.url).close()  # a second identity, so the file holds more than one token
    files = [plane.settings.database_path, plane.settings.database_path.with_name("arkor.db-wal")]
    stored = b"".join(path.read_bytes() for path in files if path.exists())
    assert caller.token.encode() not in stored
    assert hashlib.sha256(caller.token.encode()).hexdigest().encode() in stored


def test_errors_are_json_with_an_error_message(plane: RunningPlane, caller: Caller) -> None:
    unknown = caller.http.get("/v1/nothing-here")
    invalid = caller.http.post("/v1/projects", params={"orgSlug": caller.org_slug}, json={})
    assert unknown.status_code == 404 and unknown.json()["error"]
    assert invalid.status_code == 422
    assert "slug" in invalid.json()["error"] and "name" in invalid.json()["error"]
