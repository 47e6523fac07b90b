"""The console entry point: run a command and turn its outcome into an exit code.

Exit codes (DESIGN.md): 0 success; 1 a runtime failure; 2 a usage, config or manifest
error; 130 interrupted. Errors print as one paragraph on stderr; a traceback only with
``--debug`` or ``ARKOR_DEBUG=1``.

The global flags ``-V/--version`` and ``--debug`` are handled here, before typer, so the
answer to ``--version`` costs one import.

Every command but ``--version`` and help is recorded here, once, for usage telemetry
(:mod:`arkor.telemetry`): its path, the names of the flags used, its exit code and duration.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``arkor`` with ``argv`` (default: the process arguments) and exit."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``arkor`` and return its exit code instead of exiting."""
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ARKOR_DEBUG", "").lower() in ("1", "true", "yes")
    args = [arg for arg in args if arg != "--debug"]
    if args[:1] in (["-V"], ["--version"]):
        from arkor._version import __version__

        print(f"arkor {__version__}")
        return EXIT_OK
    command: Any = None  # the click command tree typer builds (typer ships its own click)
    try:
        import typer.main

        from arkor.cli._app import app

        command = typer.main.get_command(app)
        result = command.main(args=args, prog_name="arkor", standalone_mode=False)
        exit_code = result if isinstance(result, int) else EXIT_OK
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        exit_code = EXIT_INTERRUPTED
    except Exception as error:  # the one place every failure becomes an exit code
        exit_code = _report(error, debug)
    finally:
        _print_deprecation_notice()
    if command is not None and not _asks_for_help(args):
        _record(command, args, exit_code, started)
    return exit_code


def _asks_for_help(args: list[str]) -> bool:
    """Whether this run only prints help (no arguments, or a help flag before ``--``)."""
    before = args[: args.index("--")] if "--" in args else args
    return not args or "-h" in before or "--help" in before


def _record(root: Any, args: list[str], exit_code: int, started: float) -> None:
    """Hand the finished command to telemetry (which returns at once when it is off)."""
    from arkor import telemetry

    if telemetry.disabled():
        return
    path, flags = command_and_flags(root, args)
    duration_ms = (time.monotonic() - started) * 1000
    telemetry.record_command(path, flags, exit_code=exit_code, duration_ms=duration_ms)


def command_and_flags(root: Any, args: list[str]) -> tuple[str, list[str]]:
    """The command path (``jobs list``) and the flags given, by their declared names only.

    A flag counts only when the command declares it, so nothing a user typed as a value
    (``-n5``, a misspelt ``--token=...``) is ever taken for a name.
    """
    names: list[str] = []
    known: dict[str, str] = {}
    flags: list[str] = []
    command = root
    _learn_options(command, known)
    for token in args:
        if token == "--":
            break
        if token.startswith("-"):
            spelling = token.partition("=")[0]
            name = known.get(spelling) or (known.get(spelling[:2]) if len(spelling) > 2 else None)
            if name is not None and name not in flags:
                flags.append(name)
        elif token in getattr(command, "commands", {}):
            names.append(token)
            command = command.commands[token]
            _learn_options(command, known)
    return " ".join(names) or "arkor", flags


def _learn_options(command: Any, known: dict[str, str]) -> None:
    """Map every spelling of ``command``'s options to its long name (``-y`` → ``--yes``)."""
    for param in command.params:
        if param.param_type_name == "option":
            for spellings in (param.opts, param.secondary_opts):
                if spellings:
                    name = max(spellings, key=len)
                    known.update(dict.fromkeys(spellings, name))


def _print_deprecation_notice() -> None:
    """Print, once, the latest deprecation notice a plane sent during the command."""
    if "arkor.cloud._client" not in sys.modules:  # no request made; don't import httpx to know
        return
    from arkor.cli._output import warn
    from arkor.cloud._client import clear_deprecation_notice, deprecation_notice

    notice = deprecation_notice()
    if notice is not None:
        clear_deprecation_notice()
        warn(notice)


def _report(error: Exception, debug: bool) -> int:
    """Print ``error`` for a person and choose the exit code, subclasses first."""
    from arkor.cli._output import error_text
    from arkor.errors import ArkorError

    if debug:
        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, ArkorError):
        print(error_text(str(error)), file=sys.stderr)
        return error.exit_code
    if type(error).__name__ == "Abort":
        print("Aborted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    show = getattr(error, "show", None)
    exit_code = getattr(error, "exit_code", None)
    if callable(show) and isinstance(exit_code, int):  # typer/click usage errors
        show(file=sys.stderr)
        return exit_code
    if not debug:
        print(
            error_text(
                f"Unexpected error: {type(error).__name__}: {error}. Run again with --debug "
                "(or ARKOR_DEBUG=1) to see the traceback, and report it if it looks like a bug."
            ),
            file=sys.stderr,
        )
    return EXIT_FAILURE
