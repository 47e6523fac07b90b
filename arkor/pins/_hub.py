"""Resolve a Hub repository's branch to the commit it points at: from the Hub, else the cache.

Read with the Hub's own conventions, so a pin means what ``from_pretrained`` and
``load_dataset`` will load: ``HF_ENDPOINT``, ``HF_TOKEN`` (or the token file ``hf auth
login`` writes), ``HF_HUB_OFFLINE``, and the cache at ``HF_HUB_CACHE`` (else
``HF_HOME/hub``), laid out as ``models--owner--name/{refs,snapshots,blobs}``. Done with
httpx and the file system rather than ``huggingface_hub``, so building needs only the
core install; everything is read at call time, so the environment a process has now is
the one that counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import httpx

RepoType = Literal["model", "dataset"]
DEFAULT_ENDPOINT = "https://huggingface.co"
_TIMEOUT = (10.0, 3.0)
"""Seconds to wait for an answer, and for a connection: a build offline should not hang."""
_COMMIT_LENGTH = 40


@dataclass(frozen=True)
class Revision:
    """A branch resolved to its commit, and where the answer came from."""

    sha: str
    source: Literal["hub", "cache"]


class Unresolved(Exception):
    """The commit could not be found; ``str()`` says why in a few words."""


class NotOnHub(Exception):
    """The Hub answered that the repository does not exist (HTTP 404)."""


def env_flag(name: str) -> bool:
    """Whether an environment variable is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """``HF_HUB_OFFLINE``: never ask the Hub, use the cache alone."""
    return env_flag("HF_HUB_OFFLINE")


def hub_cache_dir() -> Path:
    """The Hub cache folder, as ``huggingface_hub`` finds it."""
    configured = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if configured:
        return Path(configured).expanduser()
    return _hf_home() / "hub"


def _hf_home() -> Path:
    configured = os.environ.get("HF_HOME")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface"


def _token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("HF_TOKEN_PATH") or _hf_home() / "token").expanduser()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def repo_folder(repo_type: RepoType, repo_id: str) -> Path:
    """The cache folder of one repository."""
    return hub_cache_dir() / f"{repo_type}s--{repo_id.replace('/', '--')}"


def snapshot_folder(repo_type: RepoType, repo_id: str, sha: str) -> Path | None:
    """The cached files of ``repo_id`` at commit ``sha``, when that snapshot is in the cache."""
    folder = repo_folder(repo_type, repo_id) / "snapshots" / sha
    return folder if folder.is_dir() else None


def cached_revision(repo_type: RepoType, repo_id: str, branch: str = "main") -> str | None:
    """The commit the cache's ``refs/<branch>`` names, if the cache has the repository."""
    try:
        sha = (repo_folder(repo_type, repo_id) / "refs" / branch).read_text(encoding="utf-8")
    except OSError:
        return None
    sha = sha.strip()
    return sha if _is_commit(sha) else None


def hub_revision(repo_type: RepoType, repo_id: str, branch: str = "main") -> str:
    """Ask the Hub which commit ``branch`` of ``repo_id`` is at now.

    Raises :class:`NotOnHub` on a 404 and :class:`Unresolved` on anything else that stops it.
    """
    import httpx

    url = f"{_endpoint()}/api/{repo_type}s/{repo_id}/revision/{branch}"
    token = _token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=_timeout(), follow_redirects=True)
    except httpx.HTTPError as error:
        raise Unresolved(f"the Hub could not be reached ({type(error).__name__})") from None
    if response.status_code == 404:
        raise NotOnHub(f"the Hub has no {repo_type} `{repo_id}` (HTTP 404)")
    if response.status_code in (401, 403):
        hint = "" if token else "; set HF_TOKEN for a private or gated repository"
        raise Unresolved(f"the Hub refused access (HTTP {response.status_code}){hint}")
    if not response.is_success:
        raise Unresolved(f"the Hub answered HTTP {response.status_code}")
    try:
        sha = response.json().get("sha")
    except (ValueError, AttributeError):
        sha = None
    if not isinstance(sha, str) or not _is_commit(sha):
        raise Unresolved("the Hub's answer named no commit")
    return sha


def resolve_revision(repo_type: RepoType, repo_id: str, branch: str = "main") -> Revision:
    """``branch`` of ``repo_id`` as a commit: the Hub's answer when online, else the cache's.

    Raises :class:`NotOnHub` when the Hub says there is no such repository, and
    :class:`Unresolved` when neither the Hub nor the cache can say.
    """
    problem = "HF_HUB_OFFLINE is set"
    if not offline():
        try:
            return Revision(hub_revision(repo_type, repo_id, branch), "hub")
        except Unresolved as error:
            problem = str(error)
    cached = cached_revision(repo_type, repo_id, branch)
    if cached is not None:
        return Revision(cached, "cache")
    raise Unresolved(f"{problem}, and the local Hub cache has no copy")


def fetch_file(repo_id: str, sha: str, filename: str) -> bytes | None:
    """One small file of a model at commit ``sha`` from the Hub, or None (absent, unreachable)."""
    if offline():
        return None
    import httpx

    token = _token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(
            f"{_endpoint()}/{repo_id}/resolve/{sha}/{filename}",
            headers=headers,
            timeout=_timeout(),
            follow_redirects=True,
        )
    except httpx.HTTPError:
        return None
    return response.content if response.is_success else None


def _timeout() -> httpx.Timeout:
    import httpx

    return httpx.Timeout(_TIMEOUT[0], connect=_TIMEOUT[1])


def _is_commit(text: str) -> bool:
    return len(text) == _COMMIT_LENGTH and all(c in "0123456789abcdef" for c in text)
