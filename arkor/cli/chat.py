"""``arkor chat``: talk to a trained adapter, one of its checkpoints, or a base model."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli._options import JsonOption

if TYPE_CHECKING:
    from arkor.sdk._chat import Chat, ChatTarget, Reply

_PREVIEW = 60
_HISTORY_LENGTH = 1000


def chat(
    job: Annotated[
        str | None,
        typer.Option(
            "--job",
            help="Chat with this job's final adapter (ids: `arkor jobs list`). Default: the newest completed job.",
            show_default=False,
            metavar="ID",
        ),
    ] = None,
    checkpoint: Annotated[
        int | None,
        typer.Option(
            "--checkpoint",
            min=0,
            help="Chat with the job's checkpoint at this step instead of its final adapter.",
            show_default=False,
            metavar="STEP",
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Chat with what this endpoint (deployment) serves, by its slug.",
            show_default=False,
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Chat with a bare base model instead (a Hub id, a model store name, a folder or a .gguf).",
            show_default=False,
            metavar="MODEL",
        ),
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            "-m",
            help="Ask this, print the answer as it streams, and exit.",
            show_default=False,
            metavar="TEXT",
        ),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help='The system prompt ("" for none). Default for a job: the one its training data shares, if any.',
            show_default=False,
            metavar="TEXT",
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            help="Sampling temperature; 0 always picks the likeliest token (reproducible).",
            show_default=False,
            metavar="T",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            min=1,
            help="The longest answer, in tokens.",
            show_default=False,
            metavar="N",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> int:
    """Chat with a job's adapter, one of its checkpoints, or a base model, on the project's plane.

    With -m (or a message piped in) it answers once; on a terminal it is a conversation:
    /reset clears it, /exit or Ctrl-D leaves, Ctrl-C stops an answer (or, at the prompt, leaves).

    Examples:

      arkor chat

      arkor chat --job job_0123abcd --checkpoint 20 -m "Subject: Charged twice"

      echo "What is 2 + 2?" | arkor chat --base ./my-model --json

      arkor chat --endpoint support-bot -m "Hello"
    """
    import math

    from arkor.errors import UsageError
    from arkor.sdk._chat import check_target_choice

    check_target_choice(job_id=job, step=checkpoint, base_model=base, endpoint=endpoint)
    if temperature is not None and not math.isfinite(temperature):
        raise UsageError(f"--temperature must be a finite number of 0 or more, not {temperature}.")
    text = message
    if text is None and not sys.stdin.isatty():
        text = sys.stdin.read().rstrip("\r\n")
    if text is not None and not text.strip():
        raise UsageError(
            "Nothing to ask: the message is empty. Give it with -m TEXT, or pipe it in."
        )
    if text is None and json_output:
        raise UsageError("--json prints one answer: give the message with -m TEXT, or pipe it in.")
    from arkor.sdk import open_session
    from arkor.sdk._chat import Chat, ChatOptions, resolve_target

    session = open_session()
    try:
        target = resolve_target(
            session, job_id=job, step=checkpoint, base_model=base, endpoint=endpoint
        )
        conversation = Chat(
            session,
            target,
            system=_system_prompt(target, system),
            options=ChatOptions(temperature=temperature, max_tokens=max_tokens),
        )
        if text is None:
            return _converse(conversation)
        if json_output:
            return _answer_as_json(conversation, text)
        return _answer(conversation, text)
    finally:
        session.close()


def _system_prompt(target: ChatTarget, given: str | None) -> str | None:
    """``--system`` when given; else for a job, the system prompt its training data shares."""
    if given is not None:
        return given or None
    if target.job is None:
        return None
    from arkor.sdk import training_system_prompt

    found = training_system_prompt(job=target.job)
    if found is not None:
        preview = " ".join(found.split())
        if len(preview) > _PREVIEW:
            preview = preview[:_PREVIEW] + "…"
        typer.echo(
            f'using the training data\'s system prompt ("{preview}"); --system to change it',
            err=True,
        )
    return found


def _answer(conversation: Chat, text: str) -> int:
    """Stream one answer to stdout."""
    with conversation.ask(text) as reply:
        _show(reply)
    _note_cut(reply, conversation)
    return 0


def _answer_as_json(conversation: Chat, text: str) -> int:
    """One JSON object on stdout: the model that answered, the answer and the token usage."""
    from arkor.cli._output import print_json_line, stdout_reserved_for_json

    with stdout_reserved_for_json() as out:
        with conversation.ask(text) as reply:
            reply.read()
        usage = reply.usage.to_wire() if reply.usage is not None else None
        print_json_line({"model": reply.model, "answer": reply.text, "usage": usage}, out)
    return 0


def _converse(conversation: Chat) -> int:
    """The interactive loop on a terminal; returns when the user leaves."""
    from arkor.cli._output import error_text
    from arkor.errors import ArkorError

    typer.echo(
        f"Chatting with {conversation.target.describe()}.\n"
        "/reset clears the conversation, /exit or Ctrl-D leaves, Ctrl-C stops an answer.",
        err=True,
    )
    with _history():
        while True:
            try:
                line = input("> ")
            except (EOFError, KeyboardInterrupt):
                typer.echo()
                return 0
            command = line.strip()
            if not command:
                continue
            if command == "/exit":
                return 0
            if command == "/reset":
                conversation.reset()
                typer.echo("(conversation cleared)", err=True)
                continue
            try:
                with conversation.ask(line) as reply:
                    _show(reply)
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                sys.stdout.flush()
                typer.echo("(answer stopped)", err=True)
                continue
            except ArkorError as error:  # this question failed (too long, say); the chat goes on
                typer.echo(error_text(str(error)), err=True)
                continue
            _note_cut(reply, conversation)
            typer.echo()


def _show(reply: Reply) -> None:
    """Write the answer to stdout as it arrives, then end its line.

    The conversation keeps everything that arrived as the model's turn, so a Ctrl-C must
    leave exactly that on the screen: the terminal keeps output it has not shown yet, one
    that lands while a chunk is written is raised only once the write is counted, and one
    that lands between a chunk's arrival and its write still writes that chunk before the
    answer stops.
    """
    written = 0
    with _output_kept_on_interrupt(), _interrupts_deferred() as interrupts:
        try:
            for text in reply:
                interrupts.defer = True
                sys.stdout.write(text)
                sys.stdout.flush()
                written += len(text)
                interrupts.defer = False
                interrupts.raise_pending()
        except KeyboardInterrupt:
            interrupts.defer = True  # a second Ctrl-C must not cut the rest of the chunk
            sys.stdout.write(reply.text[written:])
            sys.stdout.flush()
            raise
    sys.stdout.write("\n")
    sys.stdout.flush()


@contextmanager
def _output_kept_on_interrupt() -> Iterator[None]:
    """Set NOFLSH on the terminal for the block, so a Ctrl-C does not discard pending output.

    Without it, the terminal drops what was written but not yet displayed when Ctrl-C is
    typed, and the screen would lack the end of the answer the conversation keeps.
    """
    try:
        import termios
    except ImportError:  # Windows: no termios, and no such discard
        yield
        return
    try:
        descriptor = sys.stdin.fileno()
        attributes = termios.tcgetattr(descriptor)
    except (OSError, ValueError, termios.error):  # not a terminal
        yield
        return
    kept = list(attributes)
    kept[3] |= termios.NOFLSH
    termios.tcsetattr(descriptor, termios.TCSANOW, kept)
    try:
        yield
    finally:
        termios.tcsetattr(descriptor, termios.TCSANOW, attributes)


class _Interrupts:
    """A SIGINT handler that raises KeyboardInterrupt, or holds it while ``defer`` is set.

    A handler that only raises at a safe point (not a signal mask) leaves no moment where the
    interrupt is raised between a write and the count of what it wrote.
    """

    def __init__(self) -> None:
        self.defer = False
        self.pending = False

    def handle(self, signum: int, frame: object) -> None:
        if self.defer:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def raise_pending(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


@contextmanager
def _interrupts_deferred() -> Iterator[_Interrupts]:
    """Route SIGINT through an :class:`_Interrupts` for the block, then restore the handler."""
    import signal
    import threading

    interrupts = _Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts  # only the main thread gets signals (and may set their handlers)
        return
    previous = signal.signal(signal.SIGINT, interrupts.handle)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)


def _note_cut(reply: Reply, conversation: Chat) -> None:
    """Say so when an answer ends because it reached the length limit, not because it was done."""
    if reply.finish_reason == "length":
        limit = conversation.options.max_tokens
        if limit is not None:
            typer.echo(f"(cut at --max-tokens {limit})", err=True)
        else:
            typer.echo("(cut at the plane's default length; --max-tokens N allows more)", err=True)


@contextmanager
def _history() -> Iterator[None]:
    """Readline editing and history (``~/.arkor/chat_history``, 0600) where readline exists."""
    try:
        import readline
    except ImportError:
        yield
        return
    import os

    from arkor._home import PRIVATE_FILE_MODE, arkor_home, private_dir

    path = private_dir(arkor_home()) / "chat_history"
    with suppress(OSError):  # none yet, or unreadable: start afresh
        readline.read_history_file(path)
    readline.set_history_length(_HISTORY_LENGTH)
    try:
        yield
    finally:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
            path.chmod(PRIVATE_FILE_MODE)
            readline.write_history_file(path)
            path.chmod(PRIVATE_FILE_MODE)
        except OSError as error:
            typer.echo(f"The chat history could not be saved to {path}: {error}", err=True)
