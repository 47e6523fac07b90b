"""Projects: create, list, 409 on a taken slug, 404 for an unknown org."""

from __future__ import annotations

from tests.utils.plane import Caller


def test_create_and_list_projects(caller: Caller) -> None:
    params = {"orgSlug": caller.org_slug}
    created = caller.http.post("/v1/projects", params=params, json={"name": "Bot", "slug": "bot"})
    assert created.status_code == 201
    project = created.json()["project"]
    assert project["slug"] == "bot" and project["name"] == "Bot" and project["orgId"]

    listed = caller.http.get("/v1/projects", params=params).json()
    assert listed["org"] == {"slug": caller.org_slug}
    assert [p["slug"] for p in listed["projects"]] == ["demo", "bot"]


def test_a_taken_slug_is_409(caller: Caller) -> None:
    again = caller.http.post(
        "/v1/projects", params={"orgSlug": caller.org_slug}, json={"name": "x", "slug": "demo"}
    )
    assert again.status_code == 409
    assert "demo" in again.json()["error"]


def test_bad_slugs_are_rejected(caller: Caller) -> None:
    for slug in ("Has Caps", "-dash", "a" * 41):
        answer = caller.http.post(
            "/v1/projects", params={"orgSlug": caller.org_slug}, json={"name": "x", "slug": slug}
        )
        assert answer.status_code == 422, slug


def test_an_unknown_org_is_404(caller: Caller) -> None:
    assert caller.http.get("/v1/projects", params={"orgSlug": "nope"}).status_code == 404
