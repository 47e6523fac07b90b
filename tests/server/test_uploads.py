"""Uploads: the digest is checked, and bytes a project already has are not stored again."""

from __future__ import annotations

from hashlib import sha256

from arkor.server import RunningPlane
from tests.utils.plane import Caller, upload

DATA = b'{"messages": []}\n'


def _post(caller: Caller, data: bytes, digest: str) -> tuple[int, dict[str, object]]:
    answer = caller.http.post(
        "/v1/uploads", params=caller.scope, content=data, headers={"X-Content-Sha256": digest}
    )
    return answer.status_code, answer.json()


def test_upload_then_same_bytes_return_the_same_upload(plane: RunningPlane, caller: Caller) -> None:
    digest = sha256(DATA).hexdigest()
    status, first = _post(caller, DATA, digest)
    assert status == 201
    assert first["upload"] == {"id": first["upload"]["id"], "sha256": digest, "size": len(DATA)}  # type: ignore[index]

    status, again = _post(caller, DATA, digest.upper())
    assert status == 200
    assert again == first
    stored = [p for p in plane.settings.uploads_dir.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in stored] == [digest]


def test_a_wrong_digest_is_refused_and_nothing_is_kept(plane: RunningPlane, caller: Caller) -> None:
    status, body = _post(caller, DATA, sha256(b"other").hexdigest())
    assert status == 422
    assert "sha256" in str(body["error"])
    assert list(plane.settings.uploads_dir.iterdir()) == []

    status, body = _post(caller, DATA, "not-hex")
    assert status == 422


def test_the_digest_header_is_required(caller: Caller) -> None:
    answer = caller.http.post("/v1/uploads", params=caller.scope, content=DATA)
    assert answer.status_code == 422
    assert "X-Content-Sha256" in answer.json()["error"]


def test_uploads_belong_to_their_project(plane: RunningPlane, caller: Caller) -> None:
    first = upload(caller, DATA)
    caller.http.post(
        "/v1/projects", params={"orgSlug": caller.org_slug}, json={"name": "b", "slug": "b"}
    ).raise_for_status()
    caller.project_slug = "b"
    second = upload(caller, DATA)
    assert second != first  # a new upload row in project b ...
    assert len(list(plane.settings.uploads_dir.iterdir())) == 1  # ... over the same stored file
