"""``arkor dev``: open Studio, the project's web UI, on this machine's loopback."""

from __future__ import annotations

from typing import Annotated

import typer


def dev(
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port to listen on; fails when taken. Default: the first free of 4000-4009.",
            show_default=False,
        ),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open Studio in the default web browser.")
    ] = False,
) -> None:
    """Launch Studio: runs, loss curves, a chat playground, endpoints and the data, in the browser.

    Studio listens on 127.0.0.1 only and talks to the project's control plane (a running
    `arkor serve`, or `[cloud] url`), else to one embedded for as long as it runs. A token
    made for this launch (kept in ~/.arkor/studio-token while it runs) guards its API.
    Ctrl-C stops it.

    Examples:

      arkor dev

      arkor dev --port 4100 --open
    """
    import importlib.util
    from pathlib import Path

    from arkor.cli._output import echo, style
    from arkor.errors import ArkorError
    from arkor.studio import FALLBACK_PORTS, bind_studio, run_studio

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ArkorError(
            "`arkor dev` needs FastAPI and uvicorn, which are not installed. Install them with "
            "`pip install 'arkor[server]'` (or `pip install 'arkor[local]'` to train on this "
            "machine too)."
        )
    sock = bind_studio(port)
    bound = sock.getsockname()[1]
    if port is None and bound != FALLBACK_PORTS[0]:
        echo(f"Port {FALLBACK_PORTS[0]} is taken: using {bound}.")

    def ready(url: str, plane: str) -> None:
        echo(f"Arkor Studio on {style(url, 'bold')}")
        echo(f"  project: {Path.cwd()}")
        echo(f"  plane:   {plane}")
        echo("  Press Ctrl-C to stop.")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    run_studio(Path.cwd(), sock, on_ready=ready)
