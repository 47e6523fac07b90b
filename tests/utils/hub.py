"""A Hugging Face Hub cache on disk, laid out as the Hub client lays it out, and a Hub on loopback.

``HubCache.add_commit`` copies a folder in as one commit of a repository: each file's
bytes under ``blobs/`` (named by their digest), ``snapshots/<commit>/`` linking to them,
and ``refs/<branch>`` naming the commit, so ``from_pretrained(id, revision=...)`` and
``load_dataset`` read it offline exactly as they read a real download. ``LoopbackHub``
answers the one Hub API call that resolves a branch to its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.utils.loopback import QuietHandler, serving


@dataclass
class HubCache:
    """The cache folder ``HF_HUB_CACHE`` points at."""

    root: Path

    def repo(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s--{repo_id.replace('/', '--')}"

    def add_commit(
        self, repo_type: str, repo_id: str, folder: Path, *, branch: str = "main"
    ) -> str:
        """Store ``folder``'s files as a commit of ``repo_id`` and point ``branch`` at it."""
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        listing = hashlib.sha1()
        for path in files:
            listing.update(path.relative_to(folder).as_posix().encode())
            listing.update(hashlib.sha256(path.read_bytes()).digest())
        commit = listing.hexdigest()
        repo = self.repo(repo_type, repo_id)
        for path in files:
            data = path.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / commit / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        self.move_branch(repo_type, repo_id, commit, branch=branch)
        return commit

    def move_branch(
        self, repo_type: str, repo_id: str, commit: str, *, branch: str = "main"
    ) -> None:
        refs = self.repo(repo_type, repo_id) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / branch).write_text(commit, encoding="utf-8")

    def remove_snapshot(self, repo_type: str, repo_id: str, commit: str) -> None:
        shutil.rmtree(self.repo(repo_type, repo_id) / "snapshots" / commit)


@dataclass
class LoopbackHub:
    """The Hub's revision API on 127.0.0.1: ``branches[(type, id)]`` is the commit it answers."""

    url: str = ""
    branches: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@contextmanager
def loopback_hub() -> Iterator[LoopbackHub]:
    state = LoopbackHub()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            parts = self.path.split("/")
            # /api/{models|datasets}/{owner}/{name}/revision/{branch}
            if len(parts) == 7 and parts[1] == "api" and parts[5] == "revision":
                commit = state.branches.get((parts[2].removesuffix("s"), f"{parts[3]}/{parts[4]}"))
                if commit is not None:
                    body = json.dumps({"id": f"{parts[3]}/{parts[4]}", "sha": commit}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
            self.send_error(404)

    with serving(Handler) as url:
        state.url = url
        yield state
