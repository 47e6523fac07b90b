"""Projects of an org: list, and create (409 when the slug is taken)."""

from __future__ import annotations

from fastapi import APIRouter

from arkor.cloud import OrgRef, Project, ProjectCreate, ProjectEnvelope, ProjectList
from arkor.server import _store as store
from arkor.server._errors import SCOPED_ERRORS, ApiError, error_responses
from arkor.server._store import ProjectRow
from arkor.server.deps import OrgDep, StoreDep

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=SCOPED_ERRORS)


def _wire(project: ProjectRow) -> Project:
    return Project(id=project.id, slug=project.slug, name=project.name, org_id=project.org_id)


@router.get("", response_model=ProjectList, response_model_exclude_none=True)
def list_projects(db: StoreDep, org: OrgDep) -> ProjectList:
    projects = store.list_projects(db=db, org_id=org.id)
    return ProjectList(org=OrgRef(slug=org.slug), projects=[_wire(p) for p in projects])


@router.post(
    "",
    response_model=ProjectEnvelope,
    status_code=201,
    response_model_exclude_none=True,
    responses=error_responses(409),
)
def create_project(db: StoreDep, org: OrgDep, body: ProjectCreate) -> ProjectEnvelope:
    project = store.create_project(db=db, org_id=org.id, slug=body.slug, name=body.name)
    if project is None:
        raise ApiError(409, f"Org `{org.slug}` already has a project `{body.slug}`.")
    return ProjectEnvelope(project=_wire(project))
