"""The control plane: the Arkor cloud API over SQLite, with local worker processes.

``create_app`` builds the ASGI app, ``load_settings`` reads its ``ARKOR_*`` settings,
and ``run_in_thread`` serves it in this process on an ephemeral loopback port (tests and
the embedded mode of ``arkor start``). This room imports FastAPI and uvicorn (the
``server`` extra) but never torch or transformers: training and inference run in
worker processes.
"""

from arkor.server._app import create_app
from arkor.server._oidc import OidcError, prepare_oidc
from arkor.server._run import RunningPlane, bind, prepare_database, run_in_thread, serve
from arkor.server._settings import DEFAULT_PORT, Settings, load_settings

__all__ = [
    "DEFAULT_PORT",
    "OidcError",
    "RunningPlane",
    "Settings",
    "bind",
    "create_app",
    "load_settings",
    "prepare_database",
    "prepare_oidc",
    "run_in_thread",
    "serve",
]
