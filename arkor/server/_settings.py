"""The plane's settings, read from ``ARKOR_*`` variables by a function, so every plane
(and every test) gets its own home and limits."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from arkor._env import DEFAULT_PORT as DEFAULT_PORT
from arkor.errors import UsageError

LOOPBACK = "127.0.0.1"


def _default_worker_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "arkor.engine.worker")


def _default_inference_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "arkor.engine.serve_inference")


RAY_WORKER_COMMAND = ("python", "-m", "arkor.engine.worker")
"""The worker's entry point on a Ray node: the Python environment the cluster's nodes have."""
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Settings:
    """Everything one control plane needs to know; see :func:`load_settings` for the variables."""

    home: Path
    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    public_url: str | None = None
    """How workers reach this plane; defaults to the address it listens on."""
    max_jobs: int = 1
    min_client_version: str | None = None
    deprecated_below: str | None = None
    sunset: str | None = None
    """An HTTP date sent as ``Sunset`` to clients below ``deprecated_below``."""
    ping_interval: float = 15.0
    follow_poll_interval: float = 2.0
    """How often an idle event stream re-reads the database, for events another plane stored."""
    lease_ttl: float = 30.0
    """A running job whose worker and owning plane have both been silent this long is orphaned:
    it resumes from its last checkpoint, or fails when it has none."""
    max_resumes: int = 2
    """How many times an orphaned job may resume; after that it fails."""
    cancel_grace: float = 60.0
    """How long a worker may take to stop after a cancel before it is killed."""
    worker_command: tuple[str, ...] = field(default_factory=_default_worker_command)
    inference_command: tuple[str, ...] = field(default_factory=_default_inference_command)
    idempotency_ttl: float = 24 * 3600.0
    max_body_bytes: int = 1 << 20
    """The largest request body but an upload (``ARKOR_MAX_BODY_BYTES``); larger: 413."""
    max_upload_bytes: int = 10 << 30
    """The largest dataset upload, streamed to disk (``ARKOR_MAX_UPLOAD_BYTES``); larger: 413."""
    max_event_bytes: int = 64 << 20
    """The largest event a job's worker may post (``ARKOR_MAX_EVENT_BYTES``); larger: 413.
    An ``eval.completed`` event carries every evaluated row with its prompt and both
    answers: 1000 rows of long answers (4096 tokens each) reach tens of MiB."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names a plane bound to a non-loopback address answers to, besides IP addresses
    and loopback names (``ARKOR_ALLOWED_HOSTS``, comma-separated; ``*.example.com`` allowed).
    Other ``Host`` headers get 400, which keeps DNS rebinding away from the plane."""
    mint_burst: int = 100
    """Anonymous sign-ins one client address may make at once (``ARKOR_MINT_BURST``)."""
    mint_per_minute: float = 60.0
    """The rate they refill at (``ARKOR_MINT_PER_MINUTE``); beyond it: 429 with Retry-After."""
    oidc_issuer: str | None = None
    """The OpenID provider whose access tokens sign people in (``ARKOR_OIDC_ISSUER``)."""
    oidc_client_id: str | None = None
    """The public client a CLI signs in as there (``ARKOR_OIDC_CLIENT_ID``)."""
    oidc_audience: str | None = None
    """The ``aud`` access tokens must carry (``ARKOR_OIDC_AUDIENCE``); default the client id."""
    oidc_groups_claim: str | None = None
    """A token claim listing groups; each group is an org its members share
    (``ARKOR_OIDC_GROUPS_CLAIM``)."""
    oidc_leeway: float = 30.0
    """Clock skew allowed on ``exp``/``nbf``/``iat`` (``ARKOR_OIDC_LEEWAY_SECONDS``)."""
    oidc_jwks_refetch: float = 30.0
    """The least time between two fetches of the provider's keys for an unknown ``kid``
    (``ARKOR_OIDC_JWKS_REFETCH_SECONDS``), so forged key ids can't make the plane hammer it."""
    anonymous: bool = True
    """Whether anyone may mint an anonymous identity (``ARKOR_NO_ANONYMOUS=1`` turns it off)."""
    executor: str = "local"
    """What runs job workers (``ARKOR_EXECUTOR``): ``local`` processes on this machine, at
    most ``max_jobs`` at once, or ``ray``: jobs submitted to the Ray cluster at
    ``ray_address``, which queues them until it has their resources."""
    ray_address: str | None = None
    """The Ray cluster's dashboard (Job Submission) address, e.g. ``http://head:8265``
    (``ARKOR_RAY_ADDRESS``, else ``RAY_ADDRESS``)."""
    ray_runtime_env: Mapping[str, Any] | None = None
    """A Ray ``runtime_env`` for every worker (``ARKOR_RAY_RUNTIME_ENV``, JSON): ``pip``,
    ``working_dir``, ``image_uri``, ``env_vars``; the job's token is added to its env_vars."""
    ray_worker_command: tuple[str, ...] = RAY_WORKER_COMMAND
    """The worker's entry point on the cluster (``ARKOR_RAY_WORKER_COMMAND``, shell words)."""
    ray_cpus: float = 1.0
    """CPUs a job reserves when ``trainer.resources.cpus`` is unset (``ARKOR_RAY_CPUS``)."""
    ray_gpus: float = 0.0
    """GPUs a job reserves when ``trainer.resources.gpus`` is unset (``ARKOR_RAY_GPUS``)."""
    ray_artifacts: str | None = None
    """Where every Ray node sees this plane's artifacts folder (``ARKOR_RAY_ARTIFACTS``: an
    absolute path on a shared volume or NFS mount): workers write their files there directly.
    Unset, they upload them to the plane over HTTP, which needs no shared disk."""

    @property
    def audience(self) -> str | None:
        """The audience access tokens are checked for."""
        return self.oidc_audience or self.oidc_client_id

    @property
    def state_dir(self) -> Path:
        return self.home / "local"

    @property
    def database_path(self) -> Path:
        return self.state_dir / "arkor.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def partial_uploads_dir(self) -> Path:
        """Workers' unfinished artifact uploads, one folder per job (never served)."""
        return self.state_dir / "artifacts-partial"

    @property
    def uploads_dir(self) -> Path:
        return self.state_dir / "uploads"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def plane_url(self) -> str:
        """The URL this plane's workers post to."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment).

    ``ARKOR_HOME`` (default ``~/.arkor``; state under ``<home>/local``), ``ARKOR_HOST``,
    ``ARKOR_PORT``, ``ARKOR_PUBLIC_URL``, ``ARKOR_MAX_JOBS``, ``ARKOR_MAX_RESUMES``,
    ``ARKOR_MIN_CLIENT_VERSION``,
    ``ARKOR_DEPRECATED_BELOW``, ``ARKOR_SUNSET``, ``ARKOR_SSE_PING_SECONDS``,
    ``ARKOR_LEASE_TTL_SECONDS``, ``ARKOR_CANCEL_GRACE_SECONDS``, ``ARKOR_WORKER_COMMAND``
    and ``ARKOR_INFERENCE_COMMAND`` (shell words; a wrapper such as another interpreter),
    ``ARKOR_MAX_BODY_BYTES``, ``ARKOR_MAX_UPLOAD_BYTES``, ``ARKOR_MAX_EVENT_BYTES``,
    ``ARKOR_ALLOWED_HOSTS``,
    ``ARKOR_OIDC_ISSUER``, ``ARKOR_OIDC_CLIENT_ID``, ``ARKOR_OIDC_AUDIENCE``,
    ``ARKOR_OIDC_GROUPS_CLAIM``, ``ARKOR_OIDC_LEEWAY_SECONDS``,
    ``ARKOR_OIDC_JWKS_REFETCH_SECONDS``, ``ARKOR_NO_ANONYMOUS``, and for a Ray cluster
    ``ARKOR_EXECUTOR``, ``ARKOR_RAY_ADDRESS``, ``ARKOR_RAY_RUNTIME_ENV``,
    ``ARKOR_RAY_WORKER_COMMAND``, ``ARKOR_RAY_CPUS``, ``ARKOR_RAY_GPUS`` and
    ``ARKOR_RAY_ARTIFACTS``.
    """
    env = os.environ if environ is None else environ
    configured = env.get("ARKOR_HOME")
    home = Path(configured).expanduser() if configured else Path.home() / ".arkor"
    overrides: dict[str, Any] = {}
    if value := env.get("ARKOR_HOST"):
        overrides["host"] = value
    if value := env.get("ARKOR_PORT"):
        overrides["port"] = _number(int, "ARKOR_PORT", value, minimum=0, maximum=65535)
    if value := env.get("ARKOR_PUBLIC_URL"):
        overrides["public_url"] = value
    if value := env.get("ARKOR_MAX_JOBS"):
        overrides["max_jobs"] = _number(int, "ARKOR_MAX_JOBS", value, minimum=1)
    if value := env.get("ARKOR_MAX_RESUMES"):
        overrides["max_resumes"] = _number(int, "ARKOR_MAX_RESUMES", value, minimum=0)
    if value := env.get("ARKOR_MINT_BURST"):
        overrides["mint_burst"] = _number(int, "ARKOR_MINT_BURST", value, minimum=1)
    if value := env.get("ARKOR_MINT_PER_MINUTE"):
        overrides["mint_per_minute"] = _number(float, "ARKOR_MINT_PER_MINUTE", value, minimum=0.01)
    for name, key in (
        ("ARKOR_MAX_BODY_BYTES", "max_body_bytes"),
        ("ARKOR_MAX_UPLOAD_BYTES", "max_upload_bytes"),
        ("ARKOR_MAX_EVENT_BYTES", "max_event_bytes"),
    ):
        if value := env.get(name):
            overrides[key] = _number(int, name, value, minimum=1)
    if value := env.get("ARKOR_ALLOWED_HOSTS"):
        overrides["allowed_hosts"] = tuple(
            name.strip().lower() for name in value.split(",") if name.strip()
        )
    for name, key in (
        ("ARKOR_MIN_CLIENT_VERSION", "min_client_version"),
        ("ARKOR_DEPRECATED_BELOW", "deprecated_below"),
        ("ARKOR_SUNSET", "sunset"),
        ("ARKOR_OIDC_ISSUER", "oidc_issuer"),
        ("ARKOR_OIDC_CLIENT_ID", "oidc_client_id"),
        ("ARKOR_OIDC_AUDIENCE", "oidc_audience"),
        ("ARKOR_OIDC_GROUPS_CLAIM", "oidc_groups_claim"),
    ):
        if value := env.get(name):
            overrides[key] = value
    for name, key in (
        ("ARKOR_SSE_PING_SECONDS", "ping_interval"),
        ("ARKOR_LEASE_TTL_SECONDS", "lease_ttl"),
        ("ARKOR_CANCEL_GRACE_SECONDS", "cancel_grace"),
    ):
        if value := env.get(name):
            overrides[key] = _number(float, name, value, minimum=0.01)
    for name, key in (
        ("ARKOR_OIDC_LEEWAY_SECONDS", "oidc_leeway"),
        ("ARKOR_OIDC_JWKS_REFETCH_SECONDS", "oidc_jwks_refetch"),
    ):
        if value := env.get(name):
            overrides[key] = _number(float, name, value, minimum=0.0)
    if value := env.get("ARKOR_NO_ANONYMOUS"):
        overrides["anonymous"] = value.strip().lower() in ("", "0", "false", "no")
    overrides.update(_ray_settings(env))
    for name, key in (
        ("ARKOR_WORKER_COMMAND", "worker_command"),
        ("ARKOR_INFERENCE_COMMAND", "inference_command"),
        ("ARKOR_RAY_WORKER_COMMAND", "ray_worker_command"),
    ):
        if value := env.get(name):
            overrides[key] = tuple(shlex.split(value))
    return Settings(home=home, **overrides)


def _ray_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """``ARKOR_EXECUTOR`` and the Ray cluster's settings, checked together."""
    settings: dict[str, Any] = {}
    executor = env.get("ARKOR_EXECUTOR", "").strip().lower() or "local"
    if executor not in EXECUTORS:
        raise UsageError(f"ARKOR_EXECUTOR must be `local` or `ray`, not `{env['ARKOR_EXECUTOR']}`.")
    settings["executor"] = executor
    address = env.get("ARKOR_RAY_ADDRESS") or env.get("RAY_ADDRESS")
    if address:
        settings["ray_address"] = address.rstrip("/")
    if executor == "ray" and not address:
        raise UsageError(
            "The ray executor needs the Ray cluster's dashboard address: pass --ray-address "
            "http://HEAD:8265 (or set ARKOR_RAY_ADDRESS)."
        )
    if value := env.get("ARKOR_RAY_RUNTIME_ENV"):
        try:
            runtime_env = json.loads(value)
        except ValueError as error:
            raise UsageError(f"ARKOR_RAY_RUNTIME_ENV is not valid JSON: {error}.") from None
        if not isinstance(runtime_env, dict):
            raise UsageError(
                'ARKOR_RAY_RUNTIME_ENV must be a JSON object, e.g. {"pip": ["arkor[local]"]}.'
            )
        settings["ray_runtime_env"] = runtime_env
    if value := env.get("ARKOR_RAY_CPUS"):
        settings["ray_cpus"] = _number(float, "ARKOR_RAY_CPUS", value, minimum=0.0)
    if value := env.get("ARKOR_RAY_GPUS"):
        settings["ray_gpus"] = _number(float, "ARKOR_RAY_GPUS", value, minimum=0.0)
    if value := env.get("ARKOR_RAY_ARTIFACTS"):
        if not value.startswith("/"):
            raise UsageError(
                f"ARKOR_RAY_ARTIFACTS must be an absolute path (where the Ray nodes mount this "
                f"plane's artifacts folder), not `{value}`; leave it unset to upload over HTTP."
            )
        settings["ray_artifacts"] = value.rstrip("/") or "/"
    return settings


_Number = TypeVar("_Number", int, float)


def _number(
    kind: type[_Number], name: str, value: str, *, minimum: _Number, maximum: _Number | None = None
) -> _Number:
    try:
        number = kind(value)
    except ValueError:
        raise UsageError(f"{name} must be a number, not `{value}`.") from None
    if number < minimum:
        raise UsageError(f"{name} must be at least {minimum}, not {value}.")
    if maximum is not None and number > maximum:
        raise UsageError(f"{name} must be at most {maximum}, not {value}.")
    return number
