"""Wire models of deployments: a trained adapter (or a base model) served as an OpenAI API.

Named after the TypeScript SDK's types (``DeploymentDto``, ``CreateDeploymentInput``, ...)
so the two read alike; PROTOCOL.md's "Deployments" section is the contract.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from arkor.cloud._api_models import AdapterRef
from arkor.cloud._models import Name, ShortText, StrictWireModel, WireInt, WireModel
from arkor.cloud._state import ProjectScope

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,48}[a-z0-9]")
"""2 to 50 characters: lowercase letters, digits and inner dashes (one DNS label)."""
RESERVED_SLUGS = frozenset(
    {
        "admin", "api", "app", "arkor", "assets", "auth", "d", "dashboard", "docs", "internal",
        "localhost", "login", "static", "status", "studio", "v1", "www",
    }
)  # fmt: skip
"""Slugs that name parts of the plane or of a hosted service, refused for deployments."""
KEY_PREFIX = "arkd_"
"""Deployment API keys start with this, so a leaked one is recognisable (and scannable)."""

DeploymentScope = ProjectScope
"""Deployments belong to a project: the same org and project slugs as jobs."""
DeploymentAuthMode = Literal["none", "fixed_api_key"]
DeploymentRunRetentionMode = Literal["days", "unlimited", "disabled"]


def check_slug(slug: str) -> str:
    """``slug`` when it is a valid deployment slug, else a ``ValueError`` saying why."""
    if not SLUG_PATTERN.fullmatch(slug):
        raise ValueError(
            "a slug is 2 to 50 lowercase letters, digits and dashes, starting and ending with "
            "a letter or digit (it becomes a host name: <slug>.localhost)"
        )
    if slug in RESERVED_SLUGS:
        raise ValueError(f"`{slug}` is reserved; choose another slug")
    return slug


class AdapterTarget(StrictWireModel):
    """Serve a job's final adapter or one of its checkpoints, on the job's base model."""

    kind: Literal["adapter"] = "adapter"
    adapter: AdapterRef


class BaseModelTarget(StrictWireModel):
    """Serve a base model with no adapter (a Hub id, a model store name or a folder)."""

    kind: Literal["base_model"] = "base_model"
    base_model: ShortText


DeploymentTarget = Annotated[AdapterTarget | BaseModelTarget, Field(discriminator="kind")]


class DeploymentDto(WireModel):
    """A deployment as the plane reports it; ``url`` is the OpenAI base URL to give a client."""

    id: Name
    slug: Name
    target: DeploymentTarget
    auth_mode: DeploymentAuthMode
    enabled: bool
    run_retention_mode: DeploymentRunRetentionMode
    run_retention_days: WireInt | None = None
    url: ShortText
    """``http://<slug>.localhost:<port>/v1``, or under the plane's public URL."""
    path_url: ShortText
    """The same API under a path (``.../d/<slug>/v1``), for clients that cannot use the host form."""
    created_at: str
    updated_at: str


class _RetentionInput(StrictWireModel):
    run_retention_mode: DeploymentRunRetentionMode | None = None
    run_retention_days: WireInt | None = Field(default=None, ge=1, le=3650)


class CreateDeploymentInput(_RetentionInput):
    """The body of ``POST /v1/endpoints``: retention defaults to 30 days."""

    slug: Name
    target: DeploymentTarget
    auth_mode: DeploymentAuthMode = "fixed_api_key"

    _slug = field_validator("slug")(check_slug)


class UpdateDeploymentInput(_RetentionInput):
    """The body of ``PATCH /v1/endpoints/{id}``: only the fields given change; the URL never does."""

    target: DeploymentTarget | None = None
    enabled: bool | None = None
    auth_mode: DeploymentAuthMode | None = None


class DeploymentEnvelope(WireModel):
    deployment: DeploymentDto


class DeploymentList(WireModel):
    deployments: list[DeploymentDto]


class DeploymentKeyDto(WireModel):
    """A key as listed: never its plaintext, only the prefix it starts with."""

    id: Name
    label: ShortText | None = None
    prefix: Name
    enabled: bool
    created_at: str
    last_used_at: str | None = None


class DeploymentKeyList(WireModel):
    keys: list[DeploymentKeyDto]


class CreateDeploymentKeyInput(StrictWireModel):
    """The body of ``POST /v1/endpoints/{id}/keys``."""

    label: Annotated[str, Field(max_length=100)] | None = None


class CreatedDeploymentKey(WireModel):
    """A new key: the only answer that carries its ``plaintext``."""

    id: Name
    label: ShortText | None = None
    plaintext: Name
    prefix: Name
    created_at: str


class CreateDeploymentKeyResult(WireModel):
    key: CreatedDeploymentKey


class DeploymentRun(WireModel):
    """One request a deployment answered, as its retention keeps it."""

    id: Name
    created_at: str
    status: Literal["ok", "error"]
    http_status: int
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stream: bool
    cold_start: bool
    """The first request this plane served for the deployment: it loaded the model."""
    messages: list[dict[str, str]]
    answer: str | None = None
    error: str | None = None


class DeploymentRunList(WireModel):
    runs: list[DeploymentRun]
