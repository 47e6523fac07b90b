"""Project routing: which org and project a folder's jobs go to, in ``.arkor/state.json``."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from arkor._fs import atomic_write_text
from arkor.cloud._credentials import AnonymousCredentials, Credentials, plane_url
from arkor.cloud._errors import ConflictError, ProjectStateError
from arkor.cloud._models import WireModel

if TYPE_CHECKING:
    from arkor.cloud._client import CloudApiClient

_SLUG_MAX = 40
_NAME_MAX = 100


class ProjectScope(WireModel):
    """The ``?orgSlug=…&projectSlug=…`` every project-scoped route takes."""

    org_slug: str
    project_slug: str


class ProjectState(ProjectScope):
    """``.arkor/state.json``: the project this folder's jobs belong to."""

    project_id: str


def state_path(cwd: Path | None = None) -> Path:
    """``<cwd>/.arkor/state.json`` (``cwd`` defaults to the current folder)."""
    return (cwd if cwd is not None else Path.cwd()) / ".arkor" / "state.json"


def read_state(cwd: Path | None = None) -> ProjectState | None:
    """The folder's project state, or None when it has none yet."""
    path = state_path(cwd)
    try:
        return ProjectState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError as error:
        raise ProjectStateError(
            f"{path} is not a valid project state ({error.errors()[0]['msg']}). Delete it to "
            "let Arkor create the project again, or fix it to name an existing one."
        ) from error


def write_state(state: ProjectState, cwd: Path | None = None) -> Path:
    """Write the folder's project state atomically; returns its path."""
    path = state_path(cwd)
    atomic_write_text(path, json.dumps(state.to_wire(), indent=2) + "\n")
    return path


def project_slug(name: str) -> str:
    """A project slug from a folder name: lowercase ``[a-z0-9-]``, dashes trimmed, ≤ 40 chars."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:_SLUG_MAX].rstrip("-") or "project"


def ensure_project(
    client: CloudApiClient, credentials: Credentials, cwd: Path | None = None
) -> ProjectState:
    """The folder's project state, creating the project for an anonymous caller without one.

    The project is named after the folder; if its slug is taken in the caller's org, that
    project is reused. State naming an org the caller is not a member of is an error and
    the file is left alone; OAuth callers never have state created for them.
    """
    path = state_path(cwd)
    state = read_state(cwd)
    if not isinstance(credentials, AnonymousCredentials):
        if state is not None:
            return state
        raise ProjectStateError(
            f"{path} is missing, and Arkor only creates projects for anonymous sign-ins. "
            'Write it as {"orgSlug": …, "projectSlug": …, "projectId": …} naming a project '
            "of your org."
        )
    org = credentials.org_slug
    if state is not None:
        if state.org_slug != org and state.org_slug not in {o.slug for o in client.me().orgs}:
            raise ProjectStateError(
                f"{path} routes this folder to project `{state.project_slug}` of org "
                f"`{state.org_slug}`, which your identity on {plane_url(credentials)} (org "
                f"`{org}`) is not a member of. If that project lives on another plane, point "
                "this folder there with `[cloud] url` in its config or ARKOR_CLOUD_API_URL. "
                f"Otherwise delete {path} to start a new project in org `{org}`; the old "
                "project and its jobs stay where they are."
            )
        return state
    folder = path.parent.parent.resolve()
    slug = project_slug(folder.name)
    name = folder.name[:_NAME_MAX] or slug
    try:
        project = client.create_project(org, name=name, slug=slug)
    except ConflictError:
        listed = client.list_projects(org).projects
        existing = next((p for p in listed if p.slug == slug), None)
        if existing is None:
            raise
        project = existing
    state = ProjectState(org_slug=org, project_slug=project.slug, project_id=project.id)
    write_state(state, cwd)
    return state


__all__ = [
    "ProjectScope",
    "ProjectState",
    "ensure_project",
    "project_slug",
    "read_state",
    "state_path",
    "write_state",
]
