"""One place for terminal output: colour rules, interactivity rules, human vs JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_STYLES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def interactive() -> bool:
    """Prompts are allowed only on a terminal, outside CI."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def style(text: str, *names: str, stream: TextIO | None = None) -> str:
    """Wrap ``text`` in ANSI styles when ``stream`` (default stdout) shows colour."""
    if not names or not use_color(stream or sys.stdout):
        return text
    codes = ";".join(_STYLES[name] for name in names)
    return f"\033[{codes}m{text}\033[0m"


def error_text(message: str) -> str:
    """An error paragraph for stderr, with a red ``error:`` label on a terminal."""
    return f"{style('error:', 'red', 'bold', stream=sys.stderr)} {message}"


def echo(message: str = "") -> None:
    print(message)


def warn(message: str) -> None:
    print(f"{style('warning:', 'yellow', 'bold', stream=sys.stderr)} {message}", file=sys.stderr)


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any, stream: TextIO | None = None) -> None:
    """One JSON document on one line (JSON Lines), flushed so a reader sees it at once."""
    print(json.dumps(data, ensure_ascii=False), file=stream or sys.stdout, flush=True)


@contextmanager
def stdout_reserved_for_json() -> Iterator[TextIO]:
    """Yield the real stdout for JSON lines and send everything else printed to stderr.

    User code (callbacks and what they log) prints to ``sys.stdout``; while this block
    runs that is stderr, for every thread at once (one swap before the run, not one per
    callback, so no thread sees a half-restored stream), and stdout carries only what is
    written to the yielded stream.
    """
    reserved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield reserved
    finally:
        sys.stdout.flush()
        sys.stdout = reserved


def human_size(size: int) -> str:
    """Bytes for a person, in 1000-based units."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def eval_table_lines(event: Any) -> list[str]:
    """An ``eval.completed`` event as the aligned table every command prints.

    A heading (what was evaluated, on how many held-out rows), then metric / base /
    adapter / change, then the event's warnings.
    """
    from arkor.evals import table_rows

    what = "checkpoint" if event.checkpoint is not None else "adapter"
    step = event.checkpoint if event.checkpoint is not None else event.step
    where = f" at step {step}" if step is not None else ""
    heading = (
        f"Eval of the {what}{where} on {event.rows} held-out row{'s' if event.rows != 1 else ''}"
    )
    if event.error:
        return [f"{heading}: failed. {event.error}"]
    rows = table_rows(event)
    header = ("metric", "base", "adapter", "change")
    cells = [header, *((row.metric, row.base, row.adapter, row.change) for row in rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(4)]
    lines = [f"{heading}:"]
    for position, line in enumerate(cells):
        text = "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        lines.append("  " + (style(text, "bold") if position == 0 else text).rstrip())
    lines.extend(f"  note: {warning}" for warning in event.warnings)
    return lines
