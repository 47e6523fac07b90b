"""``.arkor/state.json`` without a plane: path, round trip, bad files, slugs, OAuth callers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arkor.cloud import (
    CloudApiClient,
    OAuthCredentials,
    ProjectState,
    ProjectStateError,
    ensure_project,
    project_slug,
    read_state,
    state_path,
    write_state,
)

STATE = ProjectState(org_slug="anon-abc", project_slug="demo", project_id="prj_1")


def test_path_defaults_to_the_current_folder(project: Path, tmp_path: Path) -> None:
    assert state_path() == project / ".arkor" / "state.json"
    assert state_path(tmp_path) == tmp_path / ".arkor" / "state.json"


def test_round_trip_in_camel_case(project: Path) -> None:
    assert read_state() is None
    path = write_state(STATE)
    assert json.loads(path.read_text()) == {
        "orgSlug": "anon-abc",
        "projectSlug": "demo",
        "projectId": "prj_1",
    }
    assert read_state(project) == STATE


@pytest.mark.parametrize("text", ["{", '{"orgSlug": "a"}', "[]"])
def test_invalid_state_is_a_clear_error(project: Path, text: str) -> None:
    path = state_path()
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ProjectStateError, match="not a valid project state"):
        read_state()


@pytest.mark.parametrize(
    ("folder", "slug"),
    [
        ("my-project", "my-project"),
        ("My Project_2", "my-project-2"),
        ("--Fancy--", "fancy"),
        ("Café Crème", "cafe-creme"),
        ("x" * 39 + "-tail", "x" * 39),
        ("a" * 60, "a" * 40),
        ("日本語", "project"),
        ("", "project"),
    ],
)
def test_project_slug(folder: str, slug: str) -> None:
    assert project_slug(folder) == slug


def test_oauth_callers_never_get_state(project: Path) -> None:
    """No state and an OAuth sign-in: an error that says what to write, and no request."""
    credentials = OAuthCredentials(access_token="at", arkor_cloud_api_url="http://127.0.0.1:9")
    with (
        CloudApiClient.from_credentials(credentials) as client,
        pytest.raises(ProjectStateError, match="only creates projects for anonymous"),
    ):
        ensure_project(client, credentials)
    assert not state_path().exists()


def test_oauth_callers_use_the_state_they_have(project: Path) -> None:
    write_state(STATE)
    credentials = OAuthCredentials(access_token="at", arkor_cloud_api_url="http://127.0.0.1:9")
    with CloudApiClient.from_credentials(credentials) as client:
        assert ensure_project(client, credentials) == STATE
