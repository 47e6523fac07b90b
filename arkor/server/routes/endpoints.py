"""Deployments of a project (PROTOCOL.md "Deployments"): CRUD, API keys, and the runs kept.

``{ref}`` is a deployment's id or its slug. A slug is unique across the plane (it becomes
a host name), so creating one that any project uses answers 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from arkor.cloud._deployments import (
    AdapterTarget,
    CreatedDeploymentKey,
    CreateDeploymentInput,
    CreateDeploymentKeyInput,
    CreateDeploymentKeyResult,
    DeploymentEnvelope,
    DeploymentKeyList,
    DeploymentList,
    DeploymentRunList,
    DeploymentTarget,
    UpdateDeploymentInput,
)
from arkor.server import _deployments as deployments
from arkor.server._deployments import DeploymentRow
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses, not_found
from arkor.server._plane import Plane
from arkor.server._store import ProjectRow
from arkor.server._targets import job_adapter
from arkor.server.deps import PlaneDep, ProjectDep

router = APIRouter(prefix="/v1/endpoints", tags=["deployments"], responses=SCOPED_ERRORS)


def _deployment(plane: Plane, project: ProjectRow, ref: str) -> DeploymentRow:
    deployment = deployments.get_deployment(db=plane.db, project_id=project.id, ref=ref)
    if deployment is None:
        raise not_found(f"Deployment `{ref}`")
    return deployment


def _check_target(plane: Plane, project: ProjectRow, target: DeploymentTarget) -> None:
    """An adapter target must name an adapter the project has (404 otherwise)."""
    if isinstance(target, AdapterTarget):
        job_adapter(plane=plane, project_id=project.id, adapter=target.adapter)


@router.get("", response_model=DeploymentList, response_model_exclude_none=True)
def list_deployments(plane: PlaneDep, project: ProjectDep) -> DeploymentList:
    rows = deployments.list_deployments(db=plane.db, project_id=project.id)
    return DeploymentList(deployments=[row.to_wire(plane.settings) for row in rows])


@router.post(
    "",
    response_model=DeploymentEnvelope,
    status_code=201,
    response_model_exclude_none=True,
    responses=error_responses(409),
)
def create_deployment(
    plane: PlaneDep, project: ProjectDep, body: CreateDeploymentInput
) -> DeploymentEnvelope:
    _check_target(plane, project, body.target)
    row = deployments.create_deployment(db=plane.db, project_id=project.id, body=body)
    if row is None:
        raise ApiError(
            409,
            f"The slug `{body.slug}` is taken on this plane; choose another (it is a host name).",
        )
    return DeploymentEnvelope(deployment=row.to_wire(plane.settings))


@router.get("/{ref}", response_model=DeploymentEnvelope, response_model_exclude_none=True)
def get_deployment(plane: PlaneDep, project: ProjectDep, ref: str) -> DeploymentEnvelope:
    return DeploymentEnvelope(deployment=_deployment(plane, project, ref).to_wire(plane.settings))


@router.patch("/{ref}", response_model=DeploymentEnvelope, response_model_exclude_none=True)
def update_deployment(
    plane: PlaneDep, project: ProjectDep, ref: str, body: UpdateDeploymentInput
) -> DeploymentEnvelope:
    deployment = _deployment(plane, project, ref)
    if body.target is not None:
        _check_target(plane, project, body.target)
    row = deployments.update_deployment(db=plane.db, deployment=deployment, body=body)
    return DeploymentEnvelope(deployment=row.to_wire(plane.settings))


@router.delete("/{ref}", status_code=204, response_class=Response)
def delete_deployment(plane: PlaneDep, project: ProjectDep, ref: str) -> Response:
    deployments.delete_deployment(db=plane.db, deployment=_deployment(plane, project, ref))
    return Response(status_code=204)


@router.get("/{ref}/keys", response_model=DeploymentKeyList, response_model_exclude_none=True)
def list_keys(plane: PlaneDep, project: ProjectDep, ref: str) -> DeploymentKeyList:
    deployment = _deployment(plane, project, ref)
    return DeploymentKeyList(keys=deployments.list_keys(db=plane.db, deployment=deployment))


@router.post(
    "/{ref}/keys",
    response_model=CreateDeploymentKeyResult,
    status_code=201,
    response_model_exclude_none=True,
)
def create_key(
    plane: PlaneDep, project: ProjectDep, ref: str, body: CreateDeploymentKeyInput
) -> CreateDeploymentKeyResult:
    deployment = _deployment(plane, project, ref)
    key, plaintext = deployments.create_key(db=plane.db, deployment=deployment, label=body.label)
    return CreateDeploymentKeyResult(
        key=CreatedDeploymentKey(
            id=key.id,
            label=key.label,
            plaintext=plaintext,
            prefix=key.prefix,
            created_at=key.created_at,
        )
    )


@router.delete("/{ref}/keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(plane: PlaneDep, project: ProjectDep, ref: str, key_id: str) -> Response:
    deployment = _deployment(plane, project, ref)
    if not deployments.revoke_key(db=plane.db, deployment=deployment, key_id=key_id):
        raise not_found(f"Key `{key_id}` of deployment `{deployment.slug}`")
    return Response(status_code=204)


@router.get("/{ref}/runs", response_model=DeploymentRunList, response_model_exclude_none=True)
def list_runs(
    plane: PlaneDep,
    project: ProjectDep,
    ref: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeploymentRunList:
    deployment = _deployment(plane, project, ref)
    return DeploymentRunList(
        runs=deployments.list_runs(db=plane.db, deployment=deployment, limit=limit)
    )
