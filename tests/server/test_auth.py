"""Sign-in bootstrap, the plane's id and home key, identity, bearer auth, tokens (hashed, listed, revoked)."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import stat
from pathlib import Path

import httpx

from arkor.cloud import HOME_KEY_FILENAME
from arkor.server import RunningPlane
from arkor.server import _store as store
from arkor.server._db import Database
from tests.utils.plane import Caller, client_headers, running_plane, sign_up


def test_cli_config_offers_anonymous_sign_in_only(plane: RunningPlane) -> None:
    answer = httpx.get(f"{plane.url}/v1/auth/cli/config", headers=client_headers())
    assert answer.status_code == 200
    body = answer.json()
    assert body == {"planeId": body["planeId"], "anonymous": True, "oauth": None}
    assert re.fullmatch(r"plane_[0-9a-f]{32}", body["planeId"])


def plane_id(url: str) -> str:
    answer = httpx.get(f"{url}/v1/auth/cli/config", headers=client_headers())
    answer.raise_for_status()
    found: str = answer.json()["planeId"]
    return found


def test_the_plane_id_belongs_to_the_database_not_the_port(
    plane: RunningPlane, plane_home: Path, tmp_path: Path
) -> None:
    """Two planes over one home (any ports) are one plane; another home is another."""
    first = plane_id(plane.url)
    with running_plane(plane_home) as second, running_plane(tmp_path / "elsewhere") as other:
        assert second.url != plane.url
        assert plane_id(second.url) == first
        assert plane_id(other.url) != first
    with running_plane(plane_home) as restarted:
        assert plane_id(restarted.url) == first


def test_the_home_key_names_the_plane_and_only_its_owner_reads_it(
    plane: RunningPlane,
) -> None:
    announced = plane_id(plane.url)
    path = plane.settings.state_dir / HOME_KEY_FILENAME
    document = json.loads(path.read_text())
    assert document["planeId"] == announced
    assert len(document["key"]) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    plane_id(plane.url)
    assert json.loads(path.read_text()) == document  # written once, not per request


def claim(url: str, key: str, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/auth/anonymous",
        json={"kind": "cli", "homeKey": key},
        headers=client_headers(token),
    )


def test_the_home_key_always_signs_in_as_the_homes_owner(plane: RunningPlane) -> None:
    plane_id(plane.url)
    key = json.loads((plane.settings.state_dir / HOME_KEY_FILENAME).read_text())["key"]
    first, again = claim(plane.url, key).json(), claim(plane.url, key).json()
    assert first["anonymousId"] == again["anonymousId"]
    assert first["personalOrg"] == again["personalOrg"]
    assert first["token"] != again["token"]
    for token in (first["token"], again["token"]):  # both tokens are valid until revoked
        me = httpx.get(f"{plane.url}/v1/me", headers=client_headers(token))
        assert me.json()["user"]["anonymousId"] == first["anonymousId"]

    stranger = sign_up(plane.url, project_slug=None)
    assert stranger.org_slug != first["personalOrg"]["slug"]
    stranger.close()

    wrong = claim(plane.url, key + "x")
    assert wrong.status_code == 403
    assert "home key does not match" in wrong.json()["error"]


def test_the_first_claim_adopts_the_identity_whose_token_it_carries(
    plane: RunningPlane, caller: Caller
) -> None:
    """A sign-in from before the plane knew its owner becomes the owner, with its projects."""
    plane_id(plane.url)
    key = json.loads((plane.settings.state_dir / HOME_KEY_FILENAME).read_text())["key"]
    adopted = claim(plane.url, key, caller.token).json()
    assert adopted["personalOrg"]["slug"] == caller.org_slug
    later = claim(plane.url, key).json()  # no token now: still that owner
    assert later["personalOrg"]["slug"] == caller.org_slug
    projects = httpx.get(
        f"{plane.url}/v1/projects",
        params={"orgSlug": caller.org_slug},
        headers=client_headers(later["token"]),
    )
    assert [p["slug"] for p in projects.json()["projects"]] == ["demo"]

    other = sign_up(plane.url, project_slug=None)
    again = claim(plane.url, key, other.token).json()  # an owner exists: no takeover
    assert again["personalOrg"]["slug"] == caller.org_slug
    other.close()


def test_org_slugs_carry_the_full_random_id(plane: RunningPlane) -> None:
    body = httpx.post(
        f"{plane.url}/v1/auth/anonymous", json={"kind": "cli"}, headers=client_headers()
    ).json()
    org = body["personalOrg"]
    assert org["slug"] == "anon-" + org["id"].removeprefix("org_")
    assert re.fullmatch(r"anon-[0-9a-f]{20}", org["slug"])


def test_tokens_are_listed_and_revoked_by_their_owner_only(plane: RunningPlane) -> None:
    first = httpx.post(
        f"{plane.url}/v1/auth/anonymous", json={"kind": "cli"}, headers=client_headers()
    ).json()
    plane_id(plane.url)
    key = json.loads((plane.settings.state_dir / HOME_KEY_FILENAME).read_text())["key"]
    owner = claim(plane.url, key, first["token"]).json()  # a second token, same identity
    stranger = sign_up(plane.url, project_slug=None)

    listed = httpx.get(f"{plane.url}/v1/auth/tokens", headers=client_headers(owner["token"]))
    assert listed.status_code == 200
    tokens = listed.json()["tokens"]
    assert [t["id"] for t in tokens] == [first["tokenId"], owner["tokenId"]]
    assert [t["current"] for t in tokens] == [False, True]
    assert all(set(t) == {"id", "createdAt", "current"} for t in tokens)

    foreign = stranger.http.delete(f"/v1/auth/tokens/{first['tokenId']}")
    assert foreign.status_code == 404
    revoked = httpx.delete(
        f"{plane.url}/v1/auth/tokens/{first['tokenId']}", headers=client_headers(owner["token"])
    )
    assert revoked.status_code == 204
    gone = httpx.get(f"{plane.url}/v1/me", headers=client_headers(first["token"]))
    assert gone.status_code == 401
    assert httpx.get(f"{plane.url}/v1/me", headers=client_headers(owner["token"])).is_success
    again = httpx.delete(
        f"{plane.url}/v1/auth/tokens/{first['tokenId']}", headers=client_headers(owner["token"])
    )
    assert again.status_code == 404
    stranger.close()


def test_a_version_2_database_gets_a_plane_id_and_keeps_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "arkor.db"
    db = Database(path)
    store.create_anonymous_identity(db=db, token_hash=store.hash_token("old-token"))
    db.close()
    with sqlite3.connect(path) as connection:  # back to the schema before plane ids
        connection.execute("DROP TABLE meta")
        connection.execute("DROP INDEX tokens_by_id")
        connection.execute("ALTER TABLE tokens DROP COLUMN id")
        for column in ("executor", "executor_job_id", "node", "queue_reason"):  # added in 7
            connection.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        connection.execute("PRAGMA user_version = 2")
    connection.close()

    db = Database(path)
    try:
        principal = store.principal_for_token(db=db, token_hash=store.hash_token("old-token"))
        identity = store.plane_identity(db=db)
    finally:
        db.close()
    assert principal is not None and principal.token_id is not None
    assert principal.token_id.startswith("tok_")
    assert identity.startswith("plane_")
    reopened = Database(path)
    try:
        assert store.plane_identity(db=reopened) == identity
    finally:
        reopened.close()


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
