"""`arkor chat`: answers from real adapters and base models, the training data's system prompt,
the interactive loop on a pseudo-terminal, and stdin that is not one."""

from __future__ import annotations

import ast
import fcntl
import io
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from arkor._home import arkor_home
from arkor.cloud import (
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChoiceDelta,
    TrainingJob,
)
from arkor.engine import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME
from arkor.manifest import read_manifest
from arkor.scaffold import get_template
from arkor.sdk import shared_system_prompt, training_system_prompt
from tests.sdk.conftest import build_args, trained_project
from tests.server.conftest import FAKE_WORKER
from tests.utils.cli import CliRunner, Result
from tests.utils.engine_answer import greedy_answer
from tests.utils.plane import running_plane
from tests.utils.ports import unused_arkor_port
from tests.utils.projects import MINIMAL_TOML, minimal_project, write, write_jsonl

__all__ = ["trained_project", "unused_arkor_port"]

pytestmark = pytest.mark.usefixtures("unused_arkor_port")

QUESTION = "say hello"
FOLLOW_UP = "what is one plus one?"
TOKENS = 8
BLANK_SYSTEM = "You are a concise, helpful assistant. Give short, accurate answers."
"""The system message every row of the blank template's data (the trained project's) opens with."""


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def chat_row(system: str | None, question: str = "2 + 2?") -> dict[str, object]:
    head = [{"role": "system", "content": system}] if system is not None else []
    return {
        "messages": [
            *head,
            {"role": "user", "content": question},
            {"role": "assistant", "content": "4"},
        ]
    }


# --- the training data's shared system prompt ----------------------------------------------


def test_a_system_prompt_every_row_shares_is_found(project: Path) -> None:
    path = write_jsonl(project, "data.jsonl", [chat_row("Be brief."), chat_row("Be brief.", "3?")])
    assert shared_system_prompt(path) == "Be brief."


@pytest.mark.parametrize(
    "rows",
    [
        [chat_row("Be brief."), chat_row("Be verbose.")],
        [chat_row("Be brief."), chat_row(None)],
        [chat_row(None), chat_row(None)],
        [{"prompt": "2 + 2?", "completion": "4"}],
        [],
    ],
    ids=["rows-differ", "one-row-has-none", "no-row-has-one", "not-chat-rows", "no-rows"],
)
def test_no_system_prompt_unless_every_chat_row_shares_one(
    project: Path, rows: list[dict[str, object]]
) -> None:
    assert shared_system_prompt(write_jsonl(project, "data.jsonl", rows)) is None


def test_a_system_message_after_the_first_turn_is_not_a_shared_prompt(project: Path) -> None:
    row = {"messages": [*user("hi"), {"role": "system", "content": "Be brief."}]}
    assert shared_system_prompt(write_jsonl(project, "data.jsonl", [row, row])) is None


def test_the_dataset_format_mapping_names_the_messages_column(project: Path) -> None:
    rows = [{"dialog": chat_row("Be brief.")["messages"], "messages": "unrelated"}] * 2
    path = write_jsonl(project, "data.jsonl", rows)
    assert shared_system_prompt(path, {"type": "chat", "messages": "dialog"}) == "Be brief."
    assert shared_system_prompt(path) is None, "auto-detected, `messages` is not a chat column"
    assert shared_system_prompt(path, "prompt_completion") is None


def test_csv_rows_hold_their_messages_as_json_text(project: Path) -> None:
    messages = json.dumps(chat_row("Be brief.")["messages"]).replace('"', '""')
    path = write(project, "data.csv", f'messages\n"{messages}"\n"{messages}"\n')
    assert shared_system_prompt(path) == "Be brief."


def test_an_unreadable_file_has_no_system_prompt(project: Path) -> None:
    assert shared_system_prompt(write(project, "data.jsonl", "{not json\n")) is None
    assert shared_system_prompt(project / "missing.jsonl") is None


def test_the_project_prompt_comes_from_the_data_its_manifest_names(
    project: Path, cli: CliRunner
) -> None:
    minimal_project(project)
    assert training_system_prompt(project) is None, "no manifest yet"
    assert cli("build").exit_code == 0
    assert training_system_prompt(project) == "Answer briefly."  # the system message of CHAT_ROW


def test_a_job_gets_the_prompt_only_of_the_data_it_trained_on(
    project: Path, cli: CliRunner
) -> None:
    minimal_project(project)
    assert cli("build").exit_code == 0
    config = read_manifest(project / ".arkor" / "build" / "manifest.json").job.config
    job = TrainingJob(
        id="job_1",
        org_id="o",
        project_id="p",
        name="demo",
        status="completed",
        config=config,
        created_at="2025-01-01T00:00:00Z",
    )
    assert training_system_prompt(project, job=job) == "Answer briefly."
    write_jsonl(project, "data/train.jsonl", [chat_row("Answer at length.")] * 3)
    assert training_system_prompt(project) == "Answer at length."
    assert training_system_prompt(project, job=job) is None, "the job learned the old data"


# --- which job answers (a plane whose worker pretends to train) ----------------------------


def start_job(cli: CliRunner, project: Path, name: str) -> tuple[Result, str]:
    """Build and start a minimal project whose job is called ``name``; the outcome and job id."""
    minimal_project(project, MINIMAL_TOML.replace('name = "demo"', f'name = "{name}"'))
    assert cli("build").exit_code == 0
    started = cli("start")
    return started, next(word for word in started.stdout.split() if word.startswith("job_"))


def test_without_a_completed_job_chat_says_to_train_one(
    project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "plane-home", worker_command=FAKE_WORKER) as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        refused = cli("chat", "-m", QUESTION)
        assert refused.exit_code == 2
        assert "no completed job yet; train one with `arkor start`" in refused.stderr.lower()

        assert start_job(cli, project, "exit:3")[0].exit_code == 1, "a failed job"
        refused = cli("chat", "-m", QUESTION)
    assert refused.exit_code == 2
    assert "no completed job yet" in refused.stderr.lower()
    assert "Traceback" not in refused.stderr


def test_chat_picks_the_newest_completed_job_and_start_points_at_it(
    project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "plane-home", worker_command=FAKE_WORKER) as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        older, older_id = start_job(cli, project, "events:1")
        newer = cli("start", "--json")
        newer_id = json.loads(newer.stdout.splitlines()[-1])["job"]["id"]
        failed, failed_id = start_job(cli, project, "exit:3")
        answer = cli("chat", "-m", QUESTION)
    assert older.exit_code == 0 and newer.exit_code == 0 and failed.exit_code == 1
    assert (
        f"Next: `arkor chat --job {older_id}` to talk to it, `arkor deploy {older_id}` to "
        "serve it." in older.stdout.splitlines()
    )
    assert "arkor chat" not in newer.stdout + newer.stderr, "no hint in JSON mode"
    assert "Next:" not in failed.stdout, "no hint for a failed job"
    # the fake worker trains nothing, so the plane has no adapter for the job chat picked
    assert answer.exit_code == 1
    assert f"final adapter of job `{newer_id}`" in answer.stderr
    assert older_id not in answer.stderr and failed_id not in answer.stderr


# --- answers from what a real run trained --------------------------------------------------


@pytest.mark.slow
def test_a_trained_job_answers_from_its_final_adapter_and_its_checkpoints(
    trained_project: Path, cli: CliRunner, tiny_model: Path, unused_arkor_port: int
) -> None:
    # fp32: a trajectory along which checkpoint 3 and the final adapter answer differently
    # (under bf16 autocast their first 8 greedy tokens happen to agree)
    built = cli(*build_args(tiny_model, "trainer.learning_rate=5e-3", "trainer.precision=fp32"))
    assert built.exit_code == 0, built.stderr
    asked = ("-m", QUESTION, "--temperature", "0", "--max-tokens", str(TOKENS))
    with running_plane(arkor_home(), port=unused_arkor_port):  # `arkor serve`, for every command
        started = cli("start")
        assert started.exit_code == 0, started.stderr
        job_id = next(word for word in started.stdout.split() if word.startswith("job_"))
        newest = cli("chat", *asked)
        checkpoint = cli("chat", "--job", job_id, "--checkpoint", "3", *asked, "--json")
        bare = cli("chat", "--job", job_id, *asked, "--system", "")
    artifacts = arkor_home() / "local" / "artifacts" / job_id
    final, step_3 = artifacts / ADAPTER_DIRNAME, artifacts / CHECKPOINTS_DIRNAME / "checkpoint-3"
    told = [{"role": "system", "content": BLANK_SYSTEM}, *user(QUESTION)]

    assert newest.exit_code == 0, newest.stderr
    assert newest.stderr.splitlines()[0] == (
        "using the training data's system prompt (\"You are a concise, helpful assistant. Give "
        'short, accurate a…"); --system to change it'
    )
    assert newest.stdout == greedy_answer(tiny_model, final, told, TOKENS) + "\n"
    assert newest.stdout != greedy_answer(tiny_model, None, told, TOKENS) + "\n", "not the base"

    assert checkpoint.exit_code == 0, checkpoint.stderr
    answer = json.loads(checkpoint.stdout)
    assert answer["model"] == f"{job_id}/checkpoint-3"
    assert answer["answer"] == greedy_answer(tiny_model, step_3, told, TOKENS)
    assert answer["answer"] + "\n" != newest.stdout, "not the final adapter"

    assert bare.exit_code == 0 and "system prompt" not in bare.stderr
    assert bare.stdout == greedy_answer(tiny_model, final, user(QUESTION), TOKENS) + "\n"


@pytest.mark.slow
def test_the_template_asks_each_checkpoint_under_the_training_data_system_prompt(
    project: Path, cli: CliRunner, tiny_model: Path
) -> None:
    assert cli("init", "--yes", "--template", "blank", "--name", "demo").exit_code == 0
    assert cli(*build_args(tiny_model, "trainer.learning_rate=5e-3")).exit_code == 0
    started = cli("start")
    assert started.exit_code == 0, started.stderr + started.stdout
    job_id = next(word for word in started.stdout.split() if word.startswith("job_"))
    answers = {
        int(line.split()[1]): ast.literal_eval(line.split(" answers: ", 1)[1])
        for line in started.stdout.splitlines()
        if line.startswith("checkpoint ") and " answers: " in line
    }
    assert sorted(answers) == [3, 6]
    sample = get_template("blank").sample_prompt
    told = [{"role": "system", "content": BLANK_SYSTEM}, *user(sample)]
    checkpoints = arkor_home() / "local" / "artifacts" / job_id / CHECKPOINTS_DIRNAME
    for step, answer in answers.items():
        assert answer == greedy_answer(tiny_model, checkpoints / f"checkpoint-{step}", told, 64)


# --- answers from a base model, on the plane embedded in the command ----------------------


def test_one_message_is_answered_as_the_engine_answers_it(cli: CliRunner, tiny_model: Path) -> None:
    asked = ("chat", "--base", str(tiny_model), "-m", QUESTION, "--temperature", "0")
    plain = cli(*asked, "--max-tokens", str(TOKENS))
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout == greedy_answer(tiny_model, None, user(QUESTION), TOKENS) + "\n"
    assert plain.stderr.splitlines()[-1] == f"(cut at --max-tokens {TOKENS})"

    system = [{"role": "system", "content": "Answer briefly."}, *user(QUESTION)]
    told = cli(*asked, "--max-tokens", str(TOKENS), "--system", "Answer briefly.")
    assert told.stdout == greedy_answer(tiny_model, None, system, TOKENS) + "\n"
    assert told.stdout != plain.stdout, "the system prompt reached the model"


def test_json_is_one_object_with_the_model_the_answer_and_the_usage(
    cli: CliRunner, tiny_model: Path
) -> None:
    result = cli(
        "chat", "--base", str(tiny_model), "-m", QUESTION, "--temperature", "0",
        "--max-tokens", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    answer = json.loads(line)
    assert set(answer) == {"model", "answer", "usage"}
    assert answer["model"] == str(tiny_model)
    assert answer["answer"] == greedy_answer(tiny_model, None, user(QUESTION), 5)
    usage = answer["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5 and usage["prompt_tokens"] > 0


def test_usage_errors_are_refused_before_any_plane_starts(cli: CliRunner) -> None:
    both = cli("chat", "--base", "some/model", "--checkpoint", "3", "-m", QUESTION)
    assert both.exit_code == 2 and "--base" in both.stderr and "--checkpoint" in both.stderr
    empty = cli("chat", "-m", "  ")
    assert empty.exit_code == 2 and "Nothing to ask" in empty.stderr
    assert not (arkor_home() / "local").exists(), "no plane was started"


def test_stdin_that_is_not_a_terminal_is_one_message(project: Path, tiny_model: Path) -> None:
    def chat(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arkor", "chat", "--base", str(tiny_model), *args],
            input=stdin, capture_output=True, text=True, cwd=project, timeout=240, check=False,
        )  # fmt: skip

    question = f"{QUESTION}\nand then {FOLLOW_UP}"
    piped = chat("--temperature", "0", "--max-tokens", str(TOKENS), stdin=question + "\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == greedy_answer(tiny_model, None, user(question), TOKENS) + "\n"
    assert ">" not in piped.stderr, "no prompt"

    empty = chat(stdin="\n")
    assert empty.returncode == 2 and "Nothing to ask" in empty.stderr


# --- the interactive chat, on a pseudo-terminal ---------------------------------------------


class Terminal:
    """``arkor ARGS`` on a pseudo-terminal that is its controlling terminal, as in a shell."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self._fd, child = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arkor", *args],
            stdin=child, stdout=child, stderr=child, cwd=cwd,
            env={**os.environ, "TERM": "dumb"}, start_new_session=True,
            preexec_fn=_take_controlling_terminal,
        )  # fmt: skip
        os.close(child)
        self._pending = b""

    def expect(self, token: bytes, timeout: float = 120) -> bytes:
        """Everything up to and including ``token``, which must come within ``timeout``."""
        deadline = time.monotonic() + timeout
        while token not in self._pending:
            ready, _, _ = select.select([self._fd], [], [], max(deadline - time.monotonic(), 0))
            data = b""
            if ready:
                with suppress(OSError):  # EIO: the child has gone and closed the terminal
                    data = os.read(self._fd, 4096)
            if not data:
                raise AssertionError(f"no {token!r} within {timeout} s; got {self._pending!r}")
            self._pending += data
        end = self._pending.index(token) + len(token)
        seen, self._pending = self._pending[:end], self._pending[end:]
        return seen

    def type(self, keys: bytes) -> None:
        os.write(self._fd, keys)

    def ask(self, text: str) -> str:
        """Type a line; what is printed before the next prompt (the echo of the line left out)."""
        self.type(text.encode() + b"\r")
        self.expect(text.encode() + b"\r\n")
        return self.expect(b"\r\n\r\n> ")[: -len(b"\r\n\r\n> ")].decode().replace("\r\n", "\n")

    def exit_code(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        os.close(self._fd)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
            os.close(self._fd)


def _take_controlling_terminal() -> None:
    """In the child, after setsid: make stdin (the pseudo-terminal) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def terminal(project: Path) -> Iterator[list[Terminal]]:
    """Terminals a test opens, each closed (its process killed if still running) at the end."""
    opened: list[Terminal] = []
    yield opened
    for each in opened:
        each.close()


def test_a_conversation_keeps_its_context_until_reset_and_ctrl_d_leaves(
    project: Path, tiny_model: Path, terminal: list[Terminal]
) -> None:
    chat = Terminal(
        ["chat", "--base", str(tiny_model), "--temperature", "0", "--max-tokens", str(TOKENS)],
        project,
    )
    terminal.append(chat)
    intro = chat.expect(b"> ")
    assert b"Chatting with the base model" in intro and b"/reset" in intro

    cut = f"\n(cut at --max-tokens {TOKENS})"  # the tiny model never ends an answer by itself
    first = greedy_answer(tiny_model, None, user(QUESTION), TOKENS)
    assert chat.ask(QUESTION) == first + cut
    context = [*user(QUESTION), {"role": "assistant", "content": first}, *user(FOLLOW_UP)]
    follow_up = greedy_answer(tiny_model, None, context, TOKENS)
    assert chat.ask(FOLLOW_UP) == follow_up + cut
    chat.type(b"/reset\r")
    chat.expect(b"(conversation cleared)")
    afresh = greedy_answer(tiny_model, None, user(FOLLOW_UP), TOKENS)
    assert afresh != follow_up
    assert chat.ask(FOLLOW_UP) == afresh + cut

    chat.type(b"\x04")  # Ctrl-D at the prompt
    assert chat.exit_code() == 0
    history = arkor_home() / "chat_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert QUESTION in history.read_text(encoding="utf-8")


def test_ctrl_c_stops_an_answer_and_at_the_prompt_leaves(
    project: Path, tiny_model: Path, terminal: list[Terminal]
) -> None:
    long = 400
    full = greedy_answer(tiny_model, None, user(QUESTION), long)
    assert len(full) > 200, "a long answer, that takes a while to stream"
    chat = Terminal(
        ["chat", "--base", str(tiny_model), "--temperature", "0", "--max-tokens", str(long)],
        project,
    )
    terminal.append(chat)
    chat.expect(b"> ")
    chat.ask("warm up")  # the first answer loads the model
    chat.type(b"/reset\r")
    chat.expect(b"(conversation cleared)\r\n> ")

    chat.type(QUESTION.encode() + b"\r")
    chat.expect(QUESTION.encode() + b"\r\n")
    chat.expect(full[:2].encode())  # the answer is streaming
    started = time.monotonic()
    chat.type(b"\x03")
    shown = full[:2] + chat.expect(b"\r\n(answer stopped)\r\n> ").decode()
    assert time.monotonic() - started < 10
    # what was written, less the terminal's echo of the key and the stop notice
    partial = shown.replace("^C", "", 1).removesuffix("\r\n(answer stopped)\r\n> ")
    assert full.startswith(partial) and len(partial) < len(full), "stopped part-way"

    # the plane answers the next question, with the part of the answer that was shown as context
    follow = chat.ask(FOLLOW_UP).removesuffix(f"\n(cut at --max-tokens {long})")
    context = [*user(QUESTION), {"role": "assistant", "content": partial}, *user(FOLLOW_UP)]
    assert follow == greedy_answer(tiny_model, None, context, long)

    chat.type(b"\x03")  # Ctrl-C at the prompt
    assert chat.exit_code() == 0


class InterruptedScreen(io.StringIO):
    """A terminal where Ctrl-C lands while the second chunk is being written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        count = super().write(text)
        self.writes += 1
        if self.writes == 2:
            signal.raise_signal(signal.SIGINT)
        return count


def test_a_ctrl_c_during_a_write_leaves_on_screen_exactly_what_the_conversation_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer kept as context is the one the user saw: no chunk lost, none written twice."""
    from arkor.cli.chat import _show
    from arkor.sdk._chat import Reply

    def chunk(text: str) -> ChatCompletionChunk:
        choice = ChatCompletionChunkChoice(delta=ChoiceDelta(content=text), finish_reason=None)
        return ChatCompletionChunk(id="c", created=0, model="m", choices=[choice])

    reply = Reply(iter([chunk("ab"), chunk("cd"), chunk("ef")]))
    screen = InterruptedScreen()
    monkeypatch.setattr(sys, "stdout", screen)
    with pytest.raises(KeyboardInterrupt):
        _show(reply)
    assert screen.getvalue() == reply.text == "abcd"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler restored"
