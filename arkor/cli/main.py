"""The console entry point: run a command and turn its outcome into an exit code.

Exit codes (DESIGN.md): 0 success; 1 a runtime failure; 2 a usage, config or manifest
error; 130 interrupted. Errors print as one paragraph on stderr; a traceback only with
``--debug`` or ``ARKOR_DEBUG=1``.

The global flags ``-V/--version`` and ``--debug`` are handled here, before typer, so the
answer to ``--version`` costs one import.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``arkor`` with ``argv`` (default: the process arguments) and exit."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``arkor`` and return its exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ARKOR_DEBUG", "").lower() in ("1", "true", "yes")
    args = [arg for arg in args if arg != "--debug"]
    if args[:1] in (["-V"], ["--version"]):
        from arkor._version import __version__

        print(f"arkor {__version__}")
        return EXIT_OK
    try:
        from arkor.cli._app import app

        result = app(args=args, prog_name="arkor", standalone_mode=False)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # the one place every failure becomes an exit code
        return _report(error, debug)
    finally:
        _print_deprecation_notice()
    return result if isinstance(result, int) else EXIT_OK


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
