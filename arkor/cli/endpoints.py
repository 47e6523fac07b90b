"""``arkor endpoints``: list, show, change and delete deployments, and manage their keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.cloud import DeploymentDto
    from arkor.sdk import Session

app = typer.Typer(
    help="List, show, change and delete this project's endpoints (deployments), and their keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
keys_app = typer.Typer(
    help="An endpoint's API keys: create (shown once), list (prefixes), revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(keys_app, name="keys")

EndpointArgument = Annotated[
    str, typer.Argument(help="The endpoint's slug (or id).", show_default=False)
]


def _session() -> Session:
    from arkor.sdk import open_session

    return open_session()


@app.command("list")
def list_endpoints(json_output: JsonOption = False) -> int:
    """The project's endpoints, newest first."""
    from arkor.cli._output import echo, print_json_line

    session = _session()
    try:
        deployments = session.client.list_deployments(session.scope)
        embedded = session.kind == "embedded"
    finally:
        session.close()
    if embedded and deployments:
        _not_served_note()
    if json_output:
        for deployment in deployments:
            print_json_line(deployment.to_wire())
        return 0
    if not deployments:
        echo("No endpoints yet. Deploy a trained job with `arkor deploy`.")
        return 0
    echo(f"{'slug':<24}{'state':<10}{'auth':<15}{'serves':<36}url")
    for deployment in deployments:
        state = "enabled" if deployment.enabled else "disabled"
        echo(
            f"{deployment.slug:<24}{state:<10}{deployment.auth_mode:<15}"
            f"{_target(deployment):<36}{deployment.url}"
        )
    return 0


@app.command("show")
def show(endpoint: EndpointArgument, json_output: JsonOption = False) -> int:
    """One endpoint: what it serves, its URLs, auth, retention, and its recent requests."""
    from arkor.cli._output import echo, print_json_line

    session = _session()
    try:
        deployment = session.client.get_deployment(session.scope, endpoint)
        runs = session.client.list_deployment_runs(session.scope, deployment.id, limit=10)
        embedded = session.kind == "embedded"
    finally:
        session.close()
    if embedded:
        _not_served_note()
    if json_output:
        print_json_line(
            {"deployment": deployment.to_wire(), "runs": [run.to_wire() for run in runs]}
        )
        return 0
    echo(f"{deployment.slug}  ({deployment.id})")
    for label, value in (
        ("serves", _target(deployment)),
        ("state", "enabled" if deployment.enabled else "disabled"),
        ("auth", deployment.auth_mode),
        ("url", deployment.url),
        ("path url", deployment.path_url),
        ("retention", _retention(deployment)),
        ("created", deployment.created_at),
    ):
        echo(f"  {label:<11}{value}")
    if runs:
        echo("  recent requests")
        for run in runs:
            tokens = f"{run.completion_tokens} tokens" if run.completion_tokens else ""
            cold = " (cold start)" if run.cold_start else ""
            echo(
                f"    {run.created_at[:19]}  {run.status:<6}{run.latency_ms:>8.0f} ms  {tokens}{cold}"
            )
    return 0


@app.command("update")
def update(
    endpoint: EndpointArgument,
    job: Annotated[
        str | None,
        typer.Option(help="Serve this job's adapter instead (the URL stays).", show_default=False),
    ] = None,
    checkpoint: Annotated[
        int | None,
        typer.Option(min=0, help="With --job: serve this checkpoint.", show_default=False),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="Serve this base model, with no adapter.", show_default=False),
    ] = None,
    enable: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable", help="Serve requests, or refuse them (403).", show_default=False
        ),
    ] = None,
    auth: Annotated[
        Literal["key", "none"] | None,
        typer.Option(help="`key`: requests need an API key; `none`: open.", show_default=False),
    ] = None,
    retention: Annotated[
        Literal["days", "unlimited", "disabled"] | None,
        typer.Option(
            help="How long requests are kept: `days`, `unlimited` or `disabled`.",
            show_default=False,
        ),
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=1, max=3650, help="With `days`: how many (default 30).", show_default=False
        ),
    ] = None,
    json_output: JsonOption = False,
) -> int:
    """Change what an endpoint serves, whether it answers, its auth or its retention."""
    from arkor.cli._output import echo, print_json_line
    from arkor.cloud import AdapterRef, AdapterTarget, BaseModelTarget, UpdateDeploymentInput
    from arkor.errors import UsageError

    if job is not None and base is not None:
        raise UsageError("Give --job or --base, not both: an endpoint serves one model.")
    if checkpoint is not None and job is None:
        raise UsageError("--checkpoint picks a checkpoint of --job; give --job JOB_ID too.")
    target: AdapterTarget | BaseModelTarget | None = None
    if job is not None:
        kind = "checkpoint" if checkpoint is not None else "final"
        target = AdapterTarget(adapter=AdapterRef(kind=kind, job_id=job, step=checkpoint))
    elif base is not None:
        target = BaseModelTarget(base_model=base)
    changes = UpdateDeploymentInput(
        target=target,
        enabled=enable,
        auth_mode={"key": "fixed_api_key", "none": "none", None: None}[auth],
        run_retention_mode=retention,
        run_retention_days=retention_days,
    )
    if not changes.model_fields_set - {"target"} and target is None:
        raise UsageError(
            "Nothing to change: give --job, --base, --enable/--disable, --auth or --retention."
        )
    session = _session()
    try:
        deployment = session.client.update_deployment(session.scope, endpoint, changes)
    finally:
        session.close()
    if json_output:
        print_json_line(deployment.to_wire())
    else:
        state = "enabled" if deployment.enabled else "disabled"
        echo(
            f"Updated `{deployment.slug}`: serves {_target(deployment)}, {state}, auth {deployment.auth_mode}."
        )
    return 0


@app.command("delete")
def delete(
    endpoint: EndpointArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    json_output: JsonOption = False,
) -> int:
    """Delete an endpoint, its keys and its recorded requests."""
    from arkor.cli._output import echo, interactive, print_json_line
    from arkor.errors import UsageError

    if not yes:
        if not interactive():
            raise UsageError(
                f"Deleting `{endpoint}` cannot be undone, and there is no terminal to confirm "
                "on. Run again with --yes."
            )
        if not typer.confirm(f"Delete the endpoint `{endpoint}`, its keys and its requests?"):
            return 1
    session = _session()
    try:
        session.client.delete_deployment(session.scope, endpoint)
    finally:
        session.close()
    if json_output:
        print_json_line({"deleted": endpoint})
    else:
        echo(f"Deleted `{endpoint}`.")
    return 0


@keys_app.command("create")
def create_key(
    endpoint: EndpointArgument,
    label: Annotated[
        str | None, typer.Option(help="A name to recognise the key by.", show_default=False)
    ] = None,
    json_output: JsonOption = False,
) -> int:
    """Make an API key; it is shown this once."""
    from arkor.cli._output import echo, print_json_line
    from arkor.cloud import CreateDeploymentKeyInput

    session = _session()
    try:
        result = session.client.create_deployment_key(
            session.scope, endpoint, CreateDeploymentKeyInput(label=label)
        )
    finally:
        session.close()
    if json_output:
        print_json_line(result.key.to_wire())
    else:
        echo(result.key.plaintext)
        echo(f"(key {result.key.id}: shown this once; store it now)")
    return 0


@keys_app.command("list")
def list_keys(endpoint: EndpointArgument, json_output: JsonOption = False) -> int:
    """The endpoint's keys: id, label, prefix, created and last used (never the key itself)."""
    from arkor.cli._output import echo, print_json_line

    session = _session()
    try:
        keys = session.client.list_deployment_keys(session.scope, endpoint)
    finally:
        session.close()
    if json_output:
        for key in keys:
            print_json_line(key.to_wire())
        return 0
    if not keys:
        echo(f"`{endpoint}` has no keys. Make one with `arkor endpoints keys create {endpoint}`.")
        return 0
    echo(f"{'id':<26}{'prefix':<14}{'label':<16}{'created':<22}last used")
    for key in keys:
        echo(
            f"{key.id:<26}{key.prefix:<14}{key.label or '':<16}{key.created_at[:19]:<22}"
            f"{(key.last_used_at or 'never')[:19]}"
        )
    return 0


@keys_app.command("revoke")
def revoke_key(
    endpoint: EndpointArgument,
    key_id: Annotated[
        str, typer.Argument(help="The key's id (from `keys list`).", show_default=False)
    ],
    json_output: JsonOption = False,
) -> int:
    """Revoke a key: requests with it get 401 from now on."""
    from arkor.cli._output import echo, print_json_line

    session = _session()
    try:
        session.client.revoke_deployment_key(session.scope, endpoint, key_id)
    finally:
        session.close()
    if json_output:
        print_json_line({"revoked": key_id})
    else:
        echo(f"Revoked key {key_id} of `{endpoint}`.")
    return 0


def _target(deployment: DeploymentDto) -> str:
    from arkor.cloud import AdapterTarget

    target = deployment.target
    if isinstance(target, AdapterTarget):
        adapter = target.adapter
        if adapter.kind == "checkpoint":
            return f"{adapter.job_id} checkpoint {adapter.step}"
        return f"{adapter.job_id} (final)"
    return f"base {target.base_model}"


def _retention(deployment: DeploymentDto) -> str:
    if deployment.run_retention_mode == "days":
        return f"requests kept {deployment.run_retention_days} days"
    if deployment.run_retention_mode == "unlimited":
        return "requests kept"
    return "requests not kept"


def _not_served_note() -> None:
    """On stderr: with no plane running, endpoints are stored but not served at these URLs."""
    from arkor.cli._output import warn

    warn(
        "No `arkor serve` is running here, so these endpoints are not being served, and their "
        "URLs name a plane that lives only for this command. Start `arkor serve` (or set "
        "ARKOR_CLOUD_API_URL to the plane you use) and ask again for the URLs that answer."
    )
