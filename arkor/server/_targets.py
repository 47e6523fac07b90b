"""What answers a chat request: a base model, or a job's adapter on the base it trained on.

Shared by ``/v1/inference/chat`` and by deployments. An adapter resolves to a folder of
its job (the final adapter, or a checkpoint, the newest when no step is given); its base
loads at the Hub commit the job's manifest pinned, so a branch that moved since never
puts the adapter on other weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor.cloud import AdapterRef
from arkor.engine import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME
from arkor.server import _store as store
from arkor.server._errors import not_found
from arkor.server._plane import Plane

_ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ServedModel:
    """The base model (at a commit), the adapter folder, and the name answers report."""

    base_model: str
    base_revision: str | None
    adapter_path: Path | None
    name: str

    def payload(self, **request: Any) -> dict[str, Any]:
        """The inference worker's request body for this model and ``request``'s settings."""
        body: dict[str, Any] = {
            "baseModel": self.base_model,
            "baseRevision": self.base_revision,
            "adapterPath": str(self.adapter_path) if self.adapter_path else None,
            "model": self.name,
        }
        body.update({key: value for key, value in request.items() if value is not None})
        return body


def base_model(name: str) -> ServedModel:
    """A bare base model: a Hub id, a model store name or a folder."""
    return ServedModel(name, None, None, name)


def job_adapter(
    *, plane: Plane, project_id: str, adapter: AdapterRef, base: str | None = None
) -> ServedModel:
    """A job's adapter on its base (or on ``base`` when the caller names one); 404 when missing."""
    job = store.get_job(db=plane.db, job_id=adapter.job_id, project_id=project_id)
    if job is None:
        raise not_found(f"Job `{adapter.job_id}`")
    output = plane.settings.artifacts_dir / job.id
    if adapter.kind == "final":
        folder = output / ADAPTER_DIRNAME
        if not (folder / _ADAPTER_CONFIG).is_file():
            raise not_found(f"The final adapter of job `{job.id}` ({job.status})")
        name = f"{job.id}/final"
    else:
        folder = _checkpoint(output / CHECKPOINTS_DIRNAME, adapter.step, job.id)
        name = f"{job.id}/{folder.name}"
    config = job.to_wire().config
    model = base or config.model
    pin = config.model_pin
    revision = pin.revision if pin is not None and model == config.model else None
    return ServedModel(model, revision, folder, name)


def _checkpoint(root: Path, step: int | None, job_id: str) -> Path:
    """``checkpoint-<step>``, or the newest checkpoint when ``step`` is None."""
    if step is not None:
        folder = root / f"checkpoint-{step}"
        if (folder / _ADAPTER_CONFIG).is_file():
            return folder
        raise not_found(f"Checkpoint {step} of job `{job_id}`")
    steps = [
        int(path.name.removeprefix("checkpoint-"))
        for path in root.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / _ADAPTER_CONFIG).is_file()
    ]
    if not steps:
        raise not_found(f"A checkpoint of job `{job_id}`")
    return root / f"checkpoint-{max(steps)}"
