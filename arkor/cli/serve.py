"""``arkor serve``: run the control plane in the foreground until Ctrl-C."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated

import typer

from arkor._env import DEFAULT_PORT

if TYPE_CHECKING:
    from arkor.server import Settings

SERVER_EXTRA_HINT = "pip install 'arkor[server]'"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (env ARKOR_HOST). Default 127.0.0.1; any other needs --allow-remote.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help=f"Port to listen on (env ARKOR_PORT; 0 picks a free one). Default {DEFAULT_PORT}.",
            show_default=False,
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a non-loopback --host. Anyone who can reach it can create an identity and run jobs.",
        ),
    ] = False,
    max_jobs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Jobs to run at once (env ARKOR_MAX_JOBS). Default 1.", show_default=False
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help=(
                "With --allow-remote: a host name clients reach the plane by, e.g. "
                "arkor.example.com or *.example.com (repeatable; env ARKOR_ALLOWED_HOSTS, "
                "comma-separated). Loopback names and IP addresses always work; other Host "
                "headers get 400, which keeps DNS rebinding out."
            ),
            show_default=False,
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help=(
                "The URL clients and workers reach this plane by, e.g. https://arkor.example.com "
                "(env ARKOR_PUBLIC_URL): what it advertises, deployments' URLs included."
            ),
            show_default=False,
        ),
    ] = None,
    oidc_issuer: Annotated[
        str | None,
        typer.Option(
            "--oidc-issuer",
            help=(
                "Sign people in through this OpenID Connect provider (its issuer URL; env "
                "ARKOR_OIDC_ISSUER): the plane accepts its access tokens and `arkor login "
                "--oauth` signs in there."
            ),
            show_default=False,
        ),
    ] = None,
    oidc_client_id: Annotated[
        str | None,
        typer.Option(
            "--oidc-client-id",
            help=(
                "The public client registered at the provider for the Arkor CLI (env "
                "ARKOR_OIDC_CLIENT_ID); needed with --oidc-issuer."
            ),
            show_default=False,
        ),
    ] = None,
    oidc_audience: Annotated[
        str | None,
        typer.Option(
            "--oidc-audience",
            help=(
                "The `aud` access tokens must carry (env ARKOR_OIDC_AUDIENCE). Default the "
                "client id."
            ),
            show_default=False,
        ),
    ] = None,
    oidc_groups_claim: Annotated[
        str | None,
        typer.Option(
            "--oidc-groups-claim",
            help=(
                "A token claim listing the person's groups, e.g. groups (env "
                "ARKOR_OIDC_GROUPS_CLAIM): each group is an org of that name, created on first "
                "sight, whose members are exactly the group's."
            ),
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help=(
                "What runs job workers (env ARKOR_EXECUTOR): local (processes on this machine, "
                "--max-jobs at once) or ray (each job a Ray job on the cluster at --ray-address, "
                "queued there until it has the job's [trainer.resources])."
            ),
            show_default=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help=(
                "The Ray cluster's dashboard address, e.g. http://HEAD:8265 (env "
                "ARKOR_RAY_ADDRESS or RAY_ADDRESS); implies --executor ray."
            ),
            show_default=False,
        ),
    ] = None,
    no_anonymous: Annotated[
        bool,
        typer.Option(
            "--no-anonymous",
            help=(
                "Mint no anonymous identities (env ARKOR_NO_ANONYMOUS=1): only people signed in "
                "through the provider (and this home's owner) get in."
            ),
        ),
    ] = False,
) -> None:
    """Run the Arkor control plane: the cloud API, training and inference on this machine.

    State (database, uploads, artifacts, logs) lives under $ARKOR_HOME/local
    (default ~/.arkor/local). Ctrl-C or SIGTERM stops it; running jobs stop at the end of
    a step and resume from their last checkpoint when a plane next starts on this home.

    Examples:

      arkor serve

      arkor serve --port 9000 --max-jobs 2

      arkor serve --host 0.0.0.0 --allow-remote --allowed-host gpu-box.example.com

      arkor serve --oidc-issuer https://id.example.com --oidc-client-id arkor-cli --no-anonymous

      arkor serve --ray-address http://ray-head:8265 --host 0.0.0.0 --allow-remote --public-url http://plane:8765
    """
    import dataclasses
    import importlib.util

    from arkor.cli._output import echo, style, warn
    from arkor.errors import ArkorError, UsageError

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ArkorError(
            f"`arkor serve` needs FastAPI and uvicorn, which are not installed. Install them with "
            f"`{SERVER_EXTRA_HINT}` (or `pip install 'arkor[local]'` to train on this machine too)."
        )
    from arkor.server import bind, load_settings, prepare_database, prepare_oidc
    from arkor.server import serve as serve_plane

    settings = load_settings()
    settings = _with_executor(settings, executor, ray_address)
    settings = dataclasses.replace(
        settings,
        host=host or settings.host,
        max_jobs=max_jobs or settings.max_jobs,
        allowed_hosts=(*settings.allowed_hosts, *(name.lower() for name in allowed_host or ())),
        public_url=public_url or settings.public_url,
        oidc_issuer=oidc_issuer or settings.oidc_issuer,
        oidc_client_id=oidc_client_id or settings.oidc_client_id,
        oidc_audience=oidc_audience or settings.oidc_audience,
        oidc_groups_claim=oidc_groups_claim or settings.oidc_groups_claim,
        anonymous=settings.anonymous and not no_anonymous,
    )
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise UsageError(
            f"--public-url {settings.public_url} is not an http(s) URL. Give the address clients "
            "reach the plane by, e.g. https://arkor.example.com."
        )
    if not _is_loopback(settings.host):
        if not allow_remote:
            raise UsageError(
                f"--host {settings.host} would expose the control plane beyond this machine. "
                "Pass --allow-remote as well if that is what you want."
            )
        if settings.anonymous:
            warn(
                f"Listening on {settings.host}: anyone who can reach this address can create an "
                "identity, upload data and run jobs here. Put it behind a firewall or a proxy "
                "with auth, or sign people in through a provider (--oidc-issuer, --no-anonymous)."
            )
    provider = prepare_oidc(settings)
    prepare_database(settings)
    sock = bind(settings.host, port if port is not None else settings.port)
    settings = dataclasses.replace(settings, port=sock.getsockname()[1])
    echo(f"Arkor control plane on {style(settings.plane_url, 'bold')}")
    if settings.executor == "ray":
        echo(
            f"  data: {settings.state_dir}    jobs run on the Ray cluster at {settings.ray_address}"
        )
        if _is_loopback(settings.host) and not settings.public_url:
            warn(
                f"Ray workers report to {settings.plane_url}, which only a cluster on this "
                "machine can reach. For a cluster elsewhere, listen where its nodes can reach "
                "the plane (--host, --allow-remote) and say how (--public-url)."
            )
    else:
        echo(f"  data: {settings.state_dir}    jobs at once: {settings.max_jobs}")
    if provider is not None:
        anonymous = "also anonymous" if settings.anonymous else "no anonymous identities"
        echo(f"  sign-in: {provider.issuer} (audience {settings.audience}; {anonymous})")
    echo("  Press Ctrl-C to stop.")
    serve_plane(settings, sock)


def _with_executor(settings: Settings, executor: str | None, ray_address: str | None) -> Settings:
    """The settings with --executor and --ray-address applied, checked together."""
    import dataclasses
    import importlib.util

    from arkor.errors import ArkorError, UsageError

    if executor is not None and executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, not `{executor}`.")
    chosen = executor or ("ray" if ray_address else settings.executor)
    address = ray_address.rstrip("/") if ray_address else settings.ray_address
    if chosen == "ray" and not address:
        raise UsageError(
            "--executor ray needs the Ray cluster's dashboard address: add --ray-address "
            "http://HEAD:8265 (or set ARKOR_RAY_ADDRESS)."
        )
    if chosen == "ray" and importlib.util.find_spec("ray") is None:
        raise ArkorError(
            "--executor ray submits jobs with Ray's job client, which is not installed. Install "
            "it with `pip install 'arkor[ray]'`."
        )
    return dataclasses.replace(settings, executor=chosen, ray_address=address)
