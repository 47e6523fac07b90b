"""Build the FastAPI app: routers, error bodies, the guards, the version gate, the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from arkor._home import private_dir
from arkor._version import __version__
from arkor.server._db import Database, in_thread
from arkor.server._deployments import sweep_runs
from arkor.server._errors import COMMON_ERRORS, install_error_handlers
from arkor.server._events import EventHub
from arkor.server._guards import BodyLimit, DeploymentHost, HostGuard, RequestContext
from arkor.server._inference import InferenceWorker
from arkor.server._jobs import Supervisor
from arkor.server._oidc import TokenVerifier, prepare_oidc
from arkor.server._plane import Plane
from arkor.server._settings import Settings, load_settings
from arkor.server._store import new_id
from arkor.server._version_gate import VersionGate
from arkor.server.routes import api_router, worker_artifacts

RUN_SWEEP_SECONDS = 600.0
logger = logging.getLogger("arkor.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The control plane as an ASGI app; its database and workers start with its lifespan."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for folder in (
            settings.home,
            settings.state_dir,
            settings.artifacts_dir,
            settings.uploads_dir,
            settings.logs_dir,
        ):
            private_dir(folder)
        metadata = await in_thread(prepare_oidc, settings=settings)
        verifier = (
            TokenVerifier(
                metadata,
                audience=settings.audience or "",
                groups_claim=settings.oidc_groups_claim,
                leeway=settings.oidc_leeway,
                refetch_interval=settings.oidc_jwks_refetch,
            )
            if metadata is not None
            else None
        )
        db = Database(settings.database_path)
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        plane_id = new_id("plane")
        supervisor = Supervisor(settings=settings, db=db, hub=hub, plane_id=plane_id)
        inference = InferenceWorker(settings)
        app.state.plane = Plane(plane_id, settings, db, hub, supervisor, inference, oidc=verifier)
        await supervisor.start()
        sweeper = asyncio.create_task(_sweep_runs(db), name="arkor-run-sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            await supervisor.stop()
            await inference.stop()
            db.close()

    app = FastAPI(
        title="Arkor control plane",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(api_router, responses=COMMON_ERRORS)
    app.include_router(worker_artifacts.router, responses=COMMON_ERRORS)
    # each add_middleware wraps the ones before: RequestContext ends up outermost
    app.add_middleware(
        VersionGate,
        min_version=settings.min_client_version,
        deprecated_below=settings.deprecated_below,
        sunset=settings.sunset,
    )
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(DeploymentHost)
    app.add_middleware(HostGuard, settings=settings)
    app.add_middleware(RequestContext)
    return app


async def _sweep_runs(db: Database) -> None:
    """Delete deployment runs past their retention now, then every ten minutes."""
    while True:
        try:
            await in_thread(sweep_runs, db=db)
        except Exception:  # a sweep that fails is retried next time; serving goes on
            logger.exception("Sweeping deployment runs failed")
        await asyncio.sleep(RUN_SWEEP_SECONDS)
