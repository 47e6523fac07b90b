"""The project bootstrap (PROTOCOL.md) against a real plane: create, reuse on 409, refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.cloud import (
    AnonymousCredentials,
    CloudApiClient,
    ProjectState,
    ProjectStateError,
    ensure_project,
    read_state,
    state_path,
    write_state,
)


def test_an_anonymous_caller_gets_a_project_named_after_the_folder(
    tmp_path: Path, client: CloudApiClient, identity: AnonymousCredentials
) -> None:
    folder = tmp_path / "Support Bot_v2"
    folder.mkdir()
    state = ensure_project(client, identity, folder)
    assert state.org_slug == identity.org_slug
    assert state.project_slug == "support-bot-v2"
    assert read_state(folder) == state
    [project] = client.list_projects(identity.org_slug).projects
    assert (project.id, project.name) == (state.project_id, "Support Bot_v2")

    assert ensure_project(client, identity, folder) == state  # the state is used as it is
    assert len(client.list_projects(identity.org_slug).projects) == 1


def test_a_taken_slug_is_reused(
    project: Path, client: CloudApiClient, identity: AnonymousCredentials
) -> None:
    """The folder's project already exists (another checkout made it): 409, then reuse."""
    existing = client.create_project(identity.org_slug, name="elsewhere", slug="project")
    state = ensure_project(client, identity)
    assert state == ProjectState(
        org_slug=identity.org_slug, project_slug="project", project_id=existing.id
    )
    assert read_state() == state


def test_state_of_another_org_is_an_error_and_left_alone(
    project: Path, client: CloudApiClient, identity: AnonymousCredentials
) -> None:
    write_state(ProjectState(org_slug="someone-else", project_slug="demo", project_id="prj_x"))
    before = state_path().read_bytes()
    with pytest.raises(ProjectStateError) as raised:
        ensure_project(client, identity)
    message = str(raised.value)
    assert "`someone-else`" in message and f"`{identity.org_slug}`" in message
    assert str(state_path()) in message
    assert state_path().read_bytes() == before
    assert client.list_projects(identity.org_slug).projects == []
