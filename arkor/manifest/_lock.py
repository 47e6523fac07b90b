"""How ``arkor build`` pins a run, and keeps its pins, like a lockfile's resolver.

Remote references (a Hub model's commit, a Hub dataset's commit, a URL's bytes) are
resolved once and then kept while the config names the same thing: a plain rebuild never
moves them; ``--upgrade`` (or ``--upgrade-model`` / ``--upgrade-data``) resolves them again.
Local content (a model folder, a store entry, a ``.gguf`` file, a data or eval file, the
held-out rows of a data file) is hashed on
every build, through a cache, so the pin always says what is on disk. A pin that cannot be
resolved here is left out, with one line saying why; the worker resolves it at replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arkor.cloud import (
    BlobDatasetSource,
    DatasetSource,
    HuggingfaceDatasetSource,
    JobConfig,
    ModelPin,
)
from arkor.config import ConfigError, ConfigIssue, LoadedConfig, resolve_env
from arkor.errors import UsageError
from arkor.manifest._manifest import Manifest

if TYPE_CHECKING:
    from arkor.pins import DigestCache

UPGRADE_TARGETS = ("model", "data")


@dataclass
class Pins:
    """What build resolved, and what it could not (one reason per unresolved pin)."""

    model_pin: ModelPin | None
    dataset_source: DatasetSource
    build_stack: dict[str, str] | None
    unresolved: list[str] = field(default_factory=list)


def upgrade_targets(upgrade: Iterable[str]) -> frozenset[str]:
    """Check ``upgrade`` names (``model``, ``data``); raise a usage error for anything else."""
    targets = frozenset(upgrade)
    unknown = sorted(targets - set(UPGRADE_TARGETS))
    if unknown:
        raise UsageError(
            f"Cannot upgrade {', '.join(unknown)}: the pins that move are "
            f"{' and '.join(UPGRADE_TARGETS)}."
        )
    return targets


def resolve_pins(
    loaded: LoadedConfig,
    source: DatasetSource,
    previous: Manifest | None,
    upgrade: frozenset[str],
) -> Pins:
    """Pin the model, the data and the stack of ``loaded`` (see the module docstring)."""
    from arkor.pins import DigestCache, installed_stack

    cache = DigestCache()
    unresolved: list[str] = []
    before = previous.job.config if previous is not None else None
    model_pin = _model_pin(loaded, before, "model" in upgrade, cache, unresolved)
    source = _data_pin(source, before, "data" in upgrade, unresolved)
    cache.save()
    stack = installed_stack()
    if stack is None:
        unresolved.append(
            "stack: the engine extra is not installed here (pip install 'arkor[local]'); the "
            "worker records the versions it trains with"
        )
    return Pins(model_pin, source, stack, unresolved)


def _model_pin(
    loaded: LoadedConfig,
    before: JobConfig | None,
    upgrade: bool,
    cache: DigestCache,
    unresolved: list[str],
) -> ModelPin | None:
    from arkor.engine._models import ModelError, locate_model
    from arkor.pins import NotOnHub, Unresolved, pin_located

    model = loaded.config.trainer.model
    try:
        located = locate_model(model)
    except ModelError as error:
        unresolved.append(f"model: {error}")
        return None
    kept = before.model_pin if before is not None and before.model == model else None
    if kept is not None and kept.kind == "hub" == located.kind and not upgrade:
        return kept
    try:
        pin, _ = pin_located(located, cache)
    except NotOnHub as error:
        key = ("trainer", "model")
        raise ConfigError(
            [
                ConfigIssue(
                    f"{error}. Check the id (`owner/name`, as on huggingface.co); a private "
                    "model needs HF_TOKEN, and a model on this machine only needs "
                    "`arkor models import PATH --name ID`.",
                    loaded.raw.locate(key),
                    key,
                )
            ]
        ) from None
    except (Unresolved, ModelError) as error:
        unresolved.append(f"model: {error}")
        return None
    return pin


def _data_pin(
    source: DatasetSource,
    before: JobConfig | None,
    upgrade: bool,
    unresolved: list[str],
) -> DatasetSource:
    from arkor.pins import NotOnHub, Unresolved, pin_blob, resolve_revision

    old = before.dataset_source if before is not None else None
    if isinstance(source, HuggingfaceDatasetSource):
        if (
            isinstance(old, HuggingfaceDatasetSource)
            and (old.name, old.subset) == (source.name, source.subset)
            and old.revision is not None
            and not upgrade
        ):
            return source.model_copy(update={"revision": old.revision})
        try:
            revision = resolve_revision("dataset", source.name)
        except (Unresolved, NotOnHub) as error:
            unresolved.append(f"data: {error}")
            return source
        return source.model_copy(update={"revision": revision.sha})
    if isinstance(source, BlobDatasetSource):
        if (
            isinstance(old, BlobDatasetSource)
            and old.url == source.url
            and (old.sha256 or old.etag or old.last_modified)
            and not upgrade
        ):
            return source.model_copy(
                update={"sha256": old.sha256, "etag": old.etag, "last_modified": old.last_modified}
            )
        try:
            url = resolve_env(source.url, "trainer.dataset.url")
            token = resolve_env(source.token, "trainer.dataset.token") if source.token else None
            pin = pin_blob(url, token)
        except (Unresolved, UsageError) as error:
            unresolved.append(f"data: {error}")
            return source
        return source.model_copy(
            update={"sha256": pin.sha256, "etag": pin.etag, "last_modified": pin.last_modified}
        )
    return source


@dataclass(frozen=True)
class Change:
    """One value that differs between two manifests, by its key path."""

    path: str
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.path}: {_show(self.old)} → {_show(self.new)}"


def manifest_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:
    """Every leaf that differs between two manifest bodies (``old`` None: everything is new)."""
    changes: list[Change] = []
    _diff("", old if old is not None else {}, new, changes)
    return changes


def pin_moves(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:
    """The pins that moved between two manifest bodies, one line each (none for a first build)."""
    if old is None:
        return []
    before, after = _pin_values(old), _pin_values(new)
    return [
        Change(label, before.get(label), after.get(label))
        for label in sorted(set(before) | set(after), key=_pin_order)
        if before.get(label) != after.get(label)
    ]


def _pin_values(body: dict[str, Any]) -> dict[str, str | None]:
    """Each pin of a manifest body as one value: ``model NAME``, ``data``, ``stack PACKAGE``."""
    config = body.get("job", {}).get("config", {})
    model_pin = config.get("modelPin") or {}
    source = config.get("datasetSource") or {}
    values: dict[str, str | None] = {
        f"model {config.get('model')}": model_pin.get("revision") or model_pin.get("sha256"),
        "data": next(
            (
                f"{key} {source[key]}" if key in ("etag", "lastModified") else source[key]
                for key in ("revision", "sha256", "etag", "lastModified")
                if source.get(key)
            ),
            None,
        ),
    }
    evaluation = config.get("eval") or {}
    if evaluation.get("source"):
        values["eval data"] = evaluation["source"].get("sha256")
    if evaluation.get("heldOutSha256"):
        values["eval held-out rows"] = evaluation["heldOutSha256"]
    for package, version in (config.get("buildStack") or {}).items():
        values[f"stack {package}"] = version
    return values


def _pin_order(label: str) -> tuple[int, str]:
    return (("model", "data", "eval", "stack").index(label.split(" ")[0]), label)


def _diff(prefix: str, old: Any, new: Any, changes: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            _diff(path, old.get(key), new.get(key), changes)
    elif old != new:
        changes.append(Change(prefix, old, new))


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and len(value) in (40, 64) and value.isalnum():
        return value[:12]
    if isinstance(value, list) and len(value) > 3:
        return f"[{_show(value[0])}, … {len(value)} entries]"  # e.g. held-out row hashes
    if isinstance(value, dict | list):
        import json

        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)
