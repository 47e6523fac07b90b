"""Deployments in the plane's database: the deployment, its API keys, the requests it answered.

A deployment's slug is unique across the plane (it becomes a host name), everything else
is scoped to its project. Keys are stored as sha256 hashes with a short prefix for people
to recognise them; the plaintext exists only in the answer that created it. Runs are kept
per the deployment's retention, and :func:`sweep_runs` deletes the ones past it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from arkor.cloud import utc_now
from arkor.cloud._deployments import (
    KEY_PREFIX,
    CreateDeploymentInput,
    DeploymentDto,
    DeploymentKeyDto,
    DeploymentRun,
    DeploymentTarget,
    UpdateDeploymentInput,
)
from arkor.server._db import Database
from arkor.server._settings import Settings
from arkor.server._store import hash_token, new_id

DEFAULT_RETENTION_DAYS = 30
_KEY_PREFIX_SHOWN = len(KEY_PREFIX) + 6
_TARGET: TypeAdapter[DeploymentTarget] = TypeAdapter(DeploymentTarget)


@dataclass(frozen=True)
class DeploymentRow:
    id: str
    project_id: str
    slug: str
    target: DeploymentTarget
    auth_mode: str
    enabled: bool
    run_retention_mode: str
    run_retention_days: int | None
    created_at: str
    updated_at: str

    def to_wire(self, settings: Settings) -> DeploymentDto:
        url, path_url = base_urls(settings, self.slug)
        return DeploymentDto(
            id=self.id,
            slug=self.slug,
            target=self.target,
            auth_mode=self.auth_mode,
            enabled=self.enabled,
            run_retention_mode=self.run_retention_mode,
            run_retention_days=self.run_retention_days,
            url=url,
            path_url=path_url,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def base_urls(settings: Settings, slug: str) -> tuple[str, str]:
    """The OpenAI base URLs of ``slug``: the host form (or the public URL's), and the path form.

    A plane with a public URL advertises the path form under it (a wildcard DNS name for
    ``<slug>.<host>`` cannot be assumed); a local one ``http://<slug>.localhost:<port>/v1``.
    """
    plane = settings.plane_url.rstrip("/")
    path_url = f"{plane}/d/{slug}/v1"
    if settings.public_url:
        return path_url, path_url
    parts = urlsplit(plane)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{slug}.localhost{port}/v1", path_url


def _row(record: sqlite3.Row) -> DeploymentRow:
    return DeploymentRow(
        id=record["id"],
        project_id=record["project_id"],
        slug=record["slug"],
        target=_TARGET.validate_json(record["target"]),
        auth_mode=record["auth_mode"],
        enabled=bool(record["enabled"]),
        run_retention_mode=record["run_retention_mode"],
        run_retention_days=record["run_retention_days"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


def _target_json(target: DeploymentTarget) -> str:
    return json.dumps(target.to_wire(), sort_keys=True, separators=(",", ":"))


def create_deployment(
    *, db: Database, project_id: str, body: CreateDeploymentInput
) -> DeploymentRow | None:
    """The new deployment, or None when another deployment (any project's) has the slug."""
    mode = body.run_retention_mode or "days"
    days = (body.run_retention_days or DEFAULT_RETENTION_DAYS) if mode == "days" else None
    now = utc_now()
    row = DeploymentRow(
        new_id("dep"),
        project_id,
        body.slug,
        body.target,
        body.auth_mode,
        True,
        mode,
        days,
        now,
        now,
    )
    try:
        with db.transaction() as connection:
            connection.execute(
                "INSERT INTO deployments (id, project_id, slug, target, auth_mode, enabled, "
                "run_retention_mode, run_retention_days, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                (
                    row.id,
                    project_id,
                    row.slug,
                    _target_json(row.target),
                    row.auth_mode,
                    mode,
                    days,
                    now,
                    now,
                ),
            )
    except sqlite3.IntegrityError:
        return None
    return row


def list_deployments(*, db: Database, project_id: str) -> list[DeploymentRow]:
    rows = db.connection().execute(
        "SELECT * FROM deployments WHERE project_id = ? ORDER BY created_at DESC, id",
        (project_id,),
    )
    return [_row(record) for record in rows]


def get_deployment(*, db: Database, project_id: str, ref: str) -> DeploymentRow | None:
    """The project's deployment with the id (or slug) ``ref``."""
    record = (
        db.connection()
        .execute(
            "SELECT * FROM deployments WHERE project_id = ? AND (id = ? OR slug = ?)",
            (project_id, ref, ref),
        )
        .fetchone()
    )
    return _row(record) if record is not None else None


def deployment_by_slug(*, db: Database, slug: str) -> DeploymentRow | None:
    """The deployment serving ``slug``, whichever project it belongs to (for its API only)."""
    record = db.connection().execute("SELECT * FROM deployments WHERE slug = ?", (slug,)).fetchone()
    return _row(record) if record is not None else None


def update_deployment(
    *, db: Database, deployment: DeploymentRow, body: UpdateDeploymentInput
) -> DeploymentRow:
    """Apply the fields ``body`` sets; the slug, and so the URL, stays."""
    changes: dict[str, Any] = {}
    if body.target is not None:
        changes["target"] = _target_json(body.target)
    if body.enabled is not None:
        changes["enabled"] = int(body.enabled)
    if body.auth_mode is not None:
        changes["auth_mode"] = body.auth_mode
    if body.run_retention_mode is not None:
        changes["run_retention_mode"] = body.run_retention_mode
        kept = body.run_retention_days or deployment.run_retention_days or DEFAULT_RETENTION_DAYS
        changes["run_retention_days"] = kept if body.run_retention_mode == "days" else None
    elif body.run_retention_days is not None and deployment.run_retention_mode == "days":
        changes["run_retention_days"] = body.run_retention_days
    changes["updated_at"] = utc_now()
    assignments = ", ".join(f"{column} = ?" for column in changes)
    with db.transaction() as connection:
        connection.execute(
            f"UPDATE deployments SET {assignments} WHERE id = ?", (*changes.values(), deployment.id)
        )
        record = connection.execute(
            "SELECT * FROM deployments WHERE id = ?", (deployment.id,)
        ).fetchone()
    return _row(record)


def delete_deployment(*, db: Database, deployment: DeploymentRow) -> None:
    with db.transaction() as connection:
        connection.execute("DELETE FROM deployments WHERE id = ?", (deployment.id,))


# --- keys ------------------------------------------------------------------------------------


def _key_wire(record: sqlite3.Row) -> DeploymentKeyDto:
    return DeploymentKeyDto(
        id=record["id"],
        label=record["label"],
        prefix=record["prefix"],
        enabled=bool(record["enabled"]),
        created_at=record["created_at"],
        last_used_at=record["last_used_at"],
    )


def create_key(
    *, db: Database, deployment: DeploymentRow, label: str | None
) -> tuple[DeploymentKeyDto, str]:
    """A new key for ``deployment`` and its plaintext (stored only as a hash)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = new_id("key")
    now = utc_now()
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO deployment_keys (id, deployment_id, hash, prefix, label, enabled, "
            "created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
            (
                key_id,
                deployment.id,
                hash_token(plaintext),
                plaintext[:_KEY_PREFIX_SHOWN],
                label,
                now,
            ),
        )
    key = DeploymentKeyDto(
        id=key_id, label=label, prefix=plaintext[:_KEY_PREFIX_SHOWN], enabled=True, created_at=now
    )
    return key, plaintext


def list_keys(*, db: Database, deployment: DeploymentRow) -> list[DeploymentKeyDto]:
    rows = db.connection().execute(
        "SELECT * FROM deployment_keys WHERE deployment_id = ? ORDER BY created_at, id",
        (deployment.id,),
    )
    return [_key_wire(record) for record in rows]


def revoke_key(*, db: Database, deployment: DeploymentRow, key_id: str) -> bool:
    """Delete the key; False when the deployment has no such key."""
    with db.transaction() as connection:
        deleted = connection.execute(
            "DELETE FROM deployment_keys WHERE id = ? AND deployment_id = ?",
            (key_id, deployment.id),
        ).rowcount
    return bool(deleted)


def use_key(*, db: Database, deployment: DeploymentRow, plaintext: str) -> bool:
    """Whether ``plaintext`` is a live key of ``deployment``; records when it was last used."""
    with db.transaction() as connection:
        updated = connection.execute(
            "UPDATE deployment_keys SET last_used_at = ? "
            "WHERE hash = ? AND deployment_id = ? AND enabled = 1",
            (utc_now(), hash_token(plaintext), deployment.id),
        ).rowcount
    return bool(updated)


# --- runs ------------------------------------------------------------------------------------


def add_run(*, db: Database, deployment: DeploymentRow, run: DeploymentRun) -> None:
    """Keep ``run`` unless the deployment's retention is ``disabled``."""
    if deployment.run_retention_mode == "disabled":
        return
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO deployment_runs (id, deployment_id, created_at, created_ts, record) "
            "VALUES (?, ?, ?, ?, ?)",
            (run.id, deployment.id, run.created_at, time.time(), json.dumps(run.to_wire())),
        )


def list_runs(*, db: Database, deployment: DeploymentRow, limit: int) -> list[DeploymentRun]:
    """The newest ``limit`` runs kept, newest first."""
    rows = db.connection().execute(
        "SELECT record FROM deployment_runs WHERE deployment_id = ? ORDER BY seq DESC LIMIT ?",
        (deployment.id, limit),
    )
    return [DeploymentRun.model_validate_json(record["record"]) for record in rows]


def sweep_runs(*, db: Database, now: float | None = None) -> int:
    """Delete the runs past their deployment's retention; return how many went."""
    now = time.time() if now is None else now
    with db.transaction() as connection:
        return connection.execute(
            "DELETE FROM deployment_runs WHERE seq IN ("
            "SELECT r.seq FROM deployment_runs r JOIN deployments d ON d.id = r.deployment_id "
            "WHERE d.run_retention_mode = 'disabled' OR (d.run_retention_mode = 'days' "
            "AND r.created_ts < ? - d.run_retention_days * 86400.0))",
            (now,),
        ).rowcount
