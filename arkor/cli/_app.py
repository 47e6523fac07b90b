"""The typer application: the root options and the command table."""

from __future__ import annotations

import typer

from arkor.cli import (
    build,
    chat,
    deploy,
    dev,
    endpoints,
    eval,
    export,
    init,
    jobs,
    login,
    models,
    orgs,
    schema,
    serve,
    start,
    validate,
)

app = typer.Typer(
    name="arkor",
    help=(
        "Describe, reproduce and run a LoRA fine-tune from a file.\n\n"
        "Start with `arkor init`, check with `arkor validate`, freeze with `arkor build`."
    ),
    epilog=(
        "Global flags: -V/--version prints the version; --debug (or ARKOR_DEBUG=1) shows "
        "tracebacks on errors. Exit codes: 0 ok, 1 failure, 2 usage or config error, 130 interrupted."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root() -> None:
    """Arkor: describe, reproduce and run a LoRA fine-tune from a file."""


app.command("init")(init.init)
app.command("validate")(validate.validate)
app.command("build")(build.build)
app.command("start")(start.start)
app.command("eval")(eval.eval_job)
app.command("export")(export.export)
app.command("chat")(chat.chat)
app.command("deploy")(deploy.deploy)
app.command("schema")(schema.schema)
app.command("serve")(serve.serve)
app.command("dev")(dev.dev)
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("whoami")(login.whoami)
app.add_typer(login.tokens_app, name="tokens")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(orgs.app, name="orgs")
