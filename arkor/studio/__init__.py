"""Studio: ``arkor dev``, a web UI on this machine's loopback for one project.

Runs (live), run detail (loss curve, events, checkpoints, artifacts, cancel), new run
(configs, validation, build, start), a playground (chat with a base model, a checkpoint
or an adapter; two side by side), endpoints (deploy, keys, requests) and the data (rows,
tokens per row, what is learned). Studio is a client of the control plane like the CLI,
never a reader of its database. This room needs FastAPI and uvicorn (the server extra).
"""

from arkor.studio._serve import (
    DEFAULT_STUDIO_PORT,
    FALLBACK_PORTS,
    STUDIO_HOST,
    PortTaken,
    bind_studio,
    run_studio,
)
from arkor.studio._token import StudioTokenFile, token_path

__all__ = [
    "DEFAULT_STUDIO_PORT",
    "FALLBACK_PORTS",
    "STUDIO_HOST",
    "PortTaken",
    "StudioTokenFile",
    "bind_studio",
    "run_studio",
    "token_path",
]
