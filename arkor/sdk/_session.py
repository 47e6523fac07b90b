"""Which control plane a run talks to, and the signed-in client and project for it.

In order: an explicit URL (``[cloud] url``, ``ARKOR_CLOUD_API_URL``, or a signed-in
remote plane) is used as is. Otherwise the local plane: an ``arkor serve`` answering on
this machine, or, when none is running, the same plane embedded in this process on an
ephemeral loopback port for the life of the run, over the same database, so its jobs
stay visible to a later ``arkor serve``. The client always talks HTTP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arkor.cloud import (
    CloudApiClient,
    ProjectState,
    ensure_credentials,
    ensure_project,
    normalize_url,
    plane_url,
    read_credentials,
)

PlaneKind = Literal["remote", "local", "embedded"]
LOCAL_PLANE_URL = "http://127.0.0.1:8765"
"""Where ``arkor serve`` listens by default; the local plane's identity for credentials."""


@dataclass
class Session:
    """A client signed in to one plane, scoped to this folder's project."""

    client: CloudApiClient
    scope: ProjectState
    kind: PlaneKind
    url: str
    """The address requests go to (for the embedded plane, its ephemeral port)."""
    _embedded: object | None = None

    def describe(self) -> str:
        """One line for the CLI: which plane this run uses."""
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
        """Close the client; stop the embedded plane (its running job stops with it)."""
        self.client.close()
        if self._embedded is not None:
            self._embedded.stop()  # type: ignore[attr-defined]
            self._embedded = None


def configured_url(cloud_url: str | None = None) -> str | None:
    """An explicitly chosen plane: the config's ``[cloud] url``, the environment, or a remote sign-in."""
    explicit = cloud_url or os.environ.get("ARKOR_CLOUD_API_URL")
    if explicit:
        return normalize_url(explicit)
    credentials = read_credentials()
    if credentials is not None and normalize_url(plane_url(credentials)) != LOCAL_PLANE_URL:
        return normalize_url(plane_url(credentials))
    return None


def open_session(*, cloud_url: str | None = None, cwd: Path | None = None) -> Session:
    """Connect to the plane this run should use (see the module docstring)."""
    url = configured_url(cloud_url)
    if url is not None:
        return _signed_in(url, url, "remote", cwd)
    if _answers(LOCAL_PLANE_URL):
        return _signed_in(LOCAL_PLANE_URL, LOCAL_PLANE_URL, "local", cwd)
    from arkor.server import load_settings, run_in_thread

    plane = run_in_thread(load_settings())
    try:
        return _signed_in(LOCAL_PLANE_URL, plane.url, "embedded", cwd, embedded=plane)
    except BaseException:
        plane.stop()
        raise


def _signed_in(
    identity: str,
    address: str,
    kind: PlaneKind,
    cwd: Path | None,
    *,
    embedded: object | None = None,
) -> Session:
    credentials = ensure_credentials(identity, via=address if address != identity else None)
    client = CloudApiClient.from_credentials(
        credentials, via=address if address != identity else None
    )
    try:
        scope = ensure_project(client, credentials, cwd)
    except BaseException:
        client.close()
        raise
    return Session(client, scope, kind, address, embedded)


def _answers(url: str) -> bool:
    """Whether an Arkor plane answers at ``url`` right now (a quick loopback probe)."""
    import httpx

    try:
        response = httpx.get(f"{url}/v1/auth/cli/config", timeout=0.5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "anonymous" in response.text
