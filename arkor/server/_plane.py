"""What one running plane holds: its settings, database, event hub, job supervisor, inference."""

from __future__ import annotations

from dataclasses import dataclass, field

from arkor.server._db import Database
from arkor.server._events import EventHub
from arkor.server._inference import InferenceWorker
from arkor.server._jobs import Supervisor
from arkor.server._oidc import TokenVerifier
from arkor.server._settings import Settings


@dataclass(frozen=True)
class Plane:
    """The state routes reach through ``deps``; built by the app's lifespan."""

    id: str
    settings: Settings
    db: Database
    hub: EventHub
    supervisor: Supervisor
    inference: InferenceWorker
    served_deployments: set[str] = field(default_factory=set)
    """Deployments this plane has answered for: the next request of any other is a cold start."""
    oidc: TokenVerifier | None = None
    """Checks the OpenID provider's access tokens, when the plane has one."""
    running_evals: set[str] = field(default_factory=set)
    """Jobs with an on-demand eval under way on this plane (one at a time per job)."""
