"""The API: one router per resource, included here and nowhere else."""

from __future__ import annotations

from fastapi import APIRouter

from arkor.server.routes import (
    artifacts,
    auth,
    data,
    endpoints,
    evals,
    events,
    inference,
    internal,
    jobs,
    openai,
    orgs,
    projects,
    telemetry,
    uploads,
)

api_router = APIRouter()
for _module in (
    auth,
    orgs,
    projects,
    jobs,
    events,
    evals,
    artifacts,
    uploads,
    inference,
    data,
    endpoints,
    openai,
    internal,
    telemetry,
):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
