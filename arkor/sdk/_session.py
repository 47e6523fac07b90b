"""Which control plane a command talks to, and the signed-in client and project for it.

One resolution for every command run in a project (``start``, ``jobs``, ``login``,
``logout``, ``whoami``) and for the SDK, in order: an explicit URL (the config's
``[cloud] url``, ``ARKOR_CLOUD_API_URL``, or the plane signed in to last when it is not
this home's own) is used as is. Otherwise this home's local plane: an ``arkor serve``
answering on this machine at the port it reads too (``ARKOR_PORT``, default 8765), or,
when none is running, the same plane embedded in this process on an ephemeral loopback
port for the life of the command, over the same database, so its jobs stay visible to a
later ``arkor serve``. The client always talks HTTP, and credentials follow the plane's
id, not its address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from arkor import telemetry
from arkor._env import DEFAULT_PORT, env_int
from arkor.cloud import (
    CloudApiClient,
    Credentials,
    ProjectState,
    authorized_client,
    ensure_credentials,
    ensure_project,
    is_home_plane,
    normalize_url,
    plane_url,
    read_credentials,
)
from arkor.cloud._credentials import DEFAULT_ARKOR_CLOUD_API_URL

if TYPE_CHECKING:
    from arkor.cloud import TrainingJob
    from arkor.server import RunningPlane

PlaneKind = Literal["remote", "local", "embedded"]
LOCAL_PLANE_URL = DEFAULT_ARKOR_CLOUD_API_URL
"""The URL this home's plane is known by (stored with credentials), whatever its port."""


@dataclass
class PlaneTarget:
    """A plane reached for one command: where requests go, and the URL that names it."""

    kind: PlaneKind
    url: str
    """The address requests go to (for the embedded plane, its ephemeral port)."""
    identity: str
    """The URL stored with credentials (this home's plane: :data:`LOCAL_PLANE_URL`)."""
    embedded: RunningPlane | None = None

    @property
    def via(self) -> str | None:
        """The address to pass as ``via`` when it is not the identity URL."""
        return self.url if self.url != self.identity else None

    def describe(self) -> str:
        """One line for the CLI: which plane this command uses."""
        if self.kind == "embedded":
            from arkor._home import arkor_home

            return (
                f"embedded local plane at {self.url} (no `arkor serve` running; its jobs stay in "
                f"{arkor_home() / 'local'} for a later `arkor serve`)"
            )
        if self.kind == "local":
            return f"local plane at {self.url} (`arkor serve`)"
        return f"control plane at {self.url}"

    def close(self) -> None:
        """Stop the embedded plane, if this command started one (its running job stops too)."""
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


@dataclass
class Session:
    """A client signed in to one plane, scoped to this folder's project."""

    client: CloudApiClient
    scope: ProjectState
    kind: PlaneKind
    url: str
    """The address requests go to (for the embedded plane, its ephemeral port)."""
    _target: PlaneTarget | None = None

    def describe(self) -> str:
        """One line for the CLI: which plane this run uses."""
        target = self._target or PlaneTarget(self.kind, self.url, self.url)
        return target.describe()

    def newest_completed_job(self) -> TrainingJob | None:
        """The project's most recent job that completed (what chat and deploy default to)."""
        jobs = self.client.list_jobs(self.scope)  # newest first
        return next((job for job in jobs if job.status == "completed"), None)

    def close(self) -> None:
        """Close the client; stop the embedded plane (its running job stops with it)."""
        self.client.close()
        if self._target is not None:
            self._target.close()


def project_cloud_url(cwd: Path | None = None) -> str | None:
    """The ``[cloud] url`` of the project in ``cwd``; None outside a project or when unset."""
    from pydantic import ValidationError

    from arkor.config import (
        CONFIG_FILENAMES,
        Cloud,
        ConfigError,
        ConfigIssue,
        has_arkor_table,
        load_raw,
    )

    folder = cwd if cwd is not None else Path.cwd()
    pyproject = folder / "pyproject.toml"
    if not any((folder / name).is_file() for name in CONFIG_FILENAMES) and not (
        pyproject.is_file() and has_arkor_table(pyproject)
    ):
        return None
    raw = load_raw(cwd=folder)
    cloud = raw.data.get("cloud")
    url = cloud.get("url") if isinstance(cloud, dict) else None
    if url is None:
        return None
    try:
        return Cloud.model_validate({"url": url}).url
    except ValidationError as error:
        where = ("cloud", "url")
        raise ConfigError(
            [ConfigIssue(error.errors()[0]["msg"], raw.locate(where), where)]
        ) from None


def resolve_plane(cloud_url: str | None = None, *, cwd: Path | None = None) -> str | None:
    """The plane chosen explicitly for commands run in ``cwd``, or None for this home's own.

    In order: ``cloud_url`` (a manifest's copy of ``[cloud] url``), the project's
    ``[cloud] url``, ``ARKOR_CLOUD_API_URL``, the plane signed in to last unless it is
    this home's plane.
    """
    explicit = cloud_url or project_cloud_url(cwd) or os.environ.get("ARKOR_CLOUD_API_URL")
    if explicit and explicit.strip():
        return normalize_url(explicit)
    credentials = read_credentials()
    if credentials is None or _is_home(credentials):
        return None
    url = plane_url(credentials)
    return url if url != LOCAL_PLANE_URL else None


def connect(cloud_url: str | None = None, *, cwd: Path | None = None) -> PlaneTarget:
    """Reach the plane commands in ``cwd`` use (see the module docstring).

    Close the target when done: it may be an embedded plane that lives until then. A plane
    that outlives the command is noted for telemetry, which sends the command's usage event
    there at exit (an embedded plane's events wait for the next command with a plane).
    """
    url = resolve_plane(cloud_url, cwd=cwd)
    if url is not None:
        telemetry.note_plane(url)
        return PlaneTarget("remote", url, url)
    served = local_plane_address()
    if served is not None and _answers(served):
        telemetry.note_plane(served)
        return PlaneTarget("local", served, LOCAL_PLANE_URL)
    from arkor.server import load_settings, run_in_thread

    plane = run_in_thread(load_settings())
    return PlaneTarget("embedded", plane.url, LOCAL_PLANE_URL, plane)


def open_session(*, cloud_url: str | None = None, cwd: Path | None = None) -> Session:
    """Connect to the plane this run should use, signed in, with the folder's project."""
    target = connect(cloud_url, cwd=cwd)
    try:
        credentials = ensure_credentials(target.identity, via=target.via)
        client = authorized_client(credentials, via=target.url)
    except BaseException:
        target.close()
        raise
    try:
        scope = ensure_project(client, credentials, cwd)
    except BaseException:
        client.close()
        target.close()
        raise
    return Session(client, scope, target.kind, target.url, target)


def local_plane_address() -> str | None:
    """Where an ``arkor serve`` run with this environment answers: loopback, on the port
    ``ARKOR_PORT`` gives it (default 8765); None for port 0, a free port nobody can guess."""
    port = env_int(
        "ARKOR_PORT", minimum=0, maximum=65535, example="9000", default=f"port {DEFAULT_PORT}"
    )
    if port == 0:
        return None
    return f"http://127.0.0.1:{DEFAULT_PORT if port is None else port}"


def _is_home(credentials: Credentials) -> bool:
    return is_home_plane(credentials.plane_id)


def _answers(url: str) -> bool:
    """Whether an Arkor plane answers at ``url`` right now (a quick loopback probe)."""
    import httpx

    try:
        response = httpx.get(f"{url}/v1/auth/cli/config", timeout=0.5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "anonymous" in response.text
