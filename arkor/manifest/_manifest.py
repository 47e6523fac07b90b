"""The build manifest: a lockfile for one fine-tuning run.

Canonical JSON (sorted keys, fixed separators, trailing newline) with a format version,
the Arkor version, the sources and their sha256, the wire job config with its pins (the
model's Hub commit or file digests, the data's commit or digest, the training stack's
versions), the callbacks and their module digests, the evaluation's inputs (custom
metrics with their module digests, its own file, the held-out rows by hash), the pins
build could not resolve, and a digest over all of it. The reader verifies the digest and version and reports
staleness against the files on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from arkor._fs import sha256_bytes, sha256_file
from arkor.cloud import JobCreate
from arkor.errors import ManifestError

MANIFEST_VERSION = 3
"""3 added ``eval``: an older Arkor would call such a manifest malformed, so it is told to
upgrade instead. A version 2 manifest is the same format without it and still reads."""
_OLDEST_READ = 2
"""Version 1 pinned neither the model nor the training stack: it must be built again."""
MANIFEST_RELATIVE_PATH = Path(".arkor") / "build" / "manifest.json"


class _ManifestPart(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ManifestSource(_ManifestPart):
    """A config file that went into the build."""

    path: str
    role: str
    sha256: str


class ManifestCallback(_ManifestPart):
    """A callback, by dotted path, with the digest of its module file."""

    target: str
    module: str
    attribute: str
    file: str | None = None
    sha256: str | None = None


class ManifestDataset(_ManifestPart):
    """The training data: its source, and for a local file its digest, size and format."""

    type: str
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    rows: int | None = None
    file_format: str | None = None
    name: str | None = None
    url: str | None = None


class ManifestHeldOut(_ManifestPart):
    """The rows the evaluation asks, by hash, so a reader can tell they were never trained on.

    ``source`` is ``dataset`` (a ``fraction`` of the local data file's rows, chosen with
    ``seed`` as the worker chooses them) or ``eval file`` (every row of ``trainer.eval.path``).
    ``row_sha256`` lists each held-out row's hash (:func:`arkor.evals.row_sha256`) in row
    order; ``rows_digest`` is the digest the worker checks (:func:`arkor.evals.rows_digest`).
    """

    source: str
    fraction: float | None = None
    seed: int | None = None
    total_rows: int
    row_sha256: list[str]
    rows_digest: str


class ManifestEval(_ManifestPart):
    """``trainer.eval``'s inputs: custom metrics (module digests), its own file, held-out rows."""

    metrics: list[ManifestCallback]
    file: ManifestDataset | None = None
    held_out: ManifestHeldOut | None = None


class ManifestSecret(_ManifestPart):
    """A secret the run needs: where it goes and which environment variable holds it."""

    path: str
    env: str


class Manifest(_ManifestPart):
    """The frozen build. ``digest`` covers every other field."""

    manifest_version: int
    arkor_version: str
    job: JobCreate
    callbacks: dict[str, ManifestCallback]
    dataset: ManifestDataset
    sources: list[ManifestSource]
    secrets: list[ManifestSecret]
    overrides: list[str]
    cloud_url: str | None = None
    eval: ManifestEval | None = None
    unresolved: list[str]
    """One line per pin build could not resolve (``model: ...``, ``data: ...``, ``stack: ...``)."""
    digest: str

    def body(self) -> dict[str, Any]:
        """The JSON object without its digest: what the digest is computed over."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        data.pop("digest")
        return data


@dataclass(frozen=True)
class Staleness:
    """Which inputs changed on disk since the build."""

    changed: list[str]

    @property
    def stale(self) -> bool:
        return bool(self.changed)

    def message(self, manifest_path: Path) -> str:
        """One paragraph telling the user what changed and what to run."""
        return (
            f"The manifest {manifest_path} is out of date: {', '.join(self.changed)} changed "
            "since it was built. Run `arkor build` to freeze the current config."
        )


def canonical_json(data: Any) -> str:
    """Sorted keys, two-space indent, fixed separators, trailing newline: same data, same bytes."""
    return (
        json.dumps(data, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False)
        + "\n"
    )


def compute_digest(body: dict[str, Any]) -> str:
    """``sha256:<hex>`` over the compact canonical form of ``body``."""
    compact = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + sha256_bytes(compact.encode("utf-8"))


def manifest_path_for(root: Path) -> Path:
    """Where ``arkor build`` writes the manifest of the project at ``root``."""
    return root / MANIFEST_RELATIVE_PATH


def project_root_of(manifest_path: Path) -> Path:
    """The project a manifest belongs to: three levels up from ``.arkor/build/manifest.json``."""
    resolved = manifest_path.resolve()
    if resolved.parent.name == "build" and resolved.parent.parent.name == ".arkor":
        return resolved.parent.parent.parent
    return resolved.parent


def read_manifest(path: str | Path | None = None, *, verify: bool = True) -> Manifest:
    """Load a manifest (default: ``./.arkor/build/manifest.json``), checking version and digest."""
    manifest_path = Path(path) if path is not None else manifest_path_for(Path.cwd())
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"No manifest at {manifest_path}. Run `arkor build` to create it."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"The manifest {manifest_path} is not valid JSON (line {error.lineno}): it was "
            "edited or truncated. Run `arkor build` to write a fresh one."
        ) from None
    version = data.get("manifestVersion") if isinstance(data, dict) else None
    if isinstance(version, int) and version > MANIFEST_VERSION:
        raise ManifestError(
            f"The manifest {manifest_path} has format version {version}, newer than this Arkor "
            f"reads ({MANIFEST_VERSION}). Upgrade arkor, or rebuild it with `arkor build`."
        )
    if isinstance(version, int) and version < _OLDEST_READ:
        raise ManifestError(
            f"The manifest {manifest_path} has format version {version}, from an older Arkor "
            "that pinned neither the model nor the training stack. Run `arkor build` to "
            "re-lock it."
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ManifestError(
            f"The manifest {manifest_path} is malformed ({where}: {first['msg']}). "
            "Run `arkor build` to write a fresh one."
        ) from None
    if verify and compute_digest(manifest.body()) != manifest.digest:
        raise ManifestError(
            f"The manifest {manifest_path} does not match its digest: it was edited by hand or "
            "corrupted. Run `arkor build` to write a fresh one."
        )
    return manifest


def check_staleness(manifest: Manifest, root: Path) -> Staleness:
    """Compare every digested input of ``manifest`` with the files under ``root`` now."""
    checks: list[tuple[str, str | None]] = [
        (source.path, source.sha256) for source in manifest.sources
    ]
    checks += [(cb.file, cb.sha256) for cb in manifest.callbacks.values() if cb.file]
    if manifest.dataset.path is not None:
        checks.append((manifest.dataset.path, manifest.dataset.sha256))
    if manifest.eval is not None:
        checks += [(metric.file, metric.sha256) for metric in manifest.eval.metrics if metric.file]
        if manifest.eval.file is not None and manifest.eval.file.path is not None:
            checks.append((manifest.eval.file.path, manifest.eval.file.sha256))
    changed: list[str] = []
    for relative, expected in checks:
        file = root / relative
        actual = sha256_file(file)[0] if file.is_file() else None
        if actual != expected and relative not in changed:
            changed.append(relative if actual is not None else f"{relative} (missing)")
    return Staleness(changed)


def read_fresh_manifest(path: str | Path | None = None) -> Manifest:
    """Read and verify a manifest, and refuse it when its inputs changed since the build.

    What ``arkor start`` needs: a :class:`ManifestError` that says to run ``arkor build``
    for a missing, tampered, too-new or stale manifest; the manifest otherwise.
    """
    manifest_path = Path(path) if path is not None else manifest_path_for(Path.cwd())
    manifest = read_manifest(manifest_path)
    staleness = check_staleness(manifest, project_root_of(manifest_path))
    if staleness.stale:
        raise ManifestError(staleness.message(manifest_path))
    return manifest
