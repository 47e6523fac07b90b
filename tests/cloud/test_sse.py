"""SSE frames, the reconnect schedule, and follow_events' rules against scripted answers.

The rules (which statuses are permanent, what counts as progress, how long to wait) are
client logic, so these tests drive them with an ``httpx.MockTransport`` that plays a
script of answers and records every request. The real plane is exercised by
``test_follow_proxy.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from arkor.cloud import (
    AuthError,
    CloudApiClient,
    CloudApiError,
    NotFoundError,
    ProjectScope,
    SseFrame,
    SseParser,
    UpgradeRequiredError,
    backoff_delay,
    follow_events,
    iter_frames,
)

SCOPE = ProjectScope(org_slug="org", project_slug="proj")


def frames(text: str) -> list[SseFrame]:
    return list(iter_frames([text]))


# --- the parser --------------------------------------------------------------------------


def test_frame_fields() -> None:
    """id, event and data are read; one space after the colon is dropped, not two."""
    assert frames('id: 7\nevent: training.log\ndata: {"a": 1}\n\n') == [
        SseFrame(data='{"a": 1}', event="training.log", id="7")
    ]
    assert frames("data:x\n\ndata:  y\n\n") == [SseFrame("x"), SseFrame(" y")]


def test_multi_line_data_joins_with_newlines() -> None:
    assert frames("data: one\ndata: two\ndata:\n\n") == [SseFrame("one\ntwo\n")]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_ending(eol: str) -> None:
    text = eol.join(["id: 1", "data: a", "", "id: 2", "data: b", "", ""])
    assert frames(text) == [SseFrame("a", id="1"), SseFrame("b", id="2")]


def test_chunk_boundaries_do_not_matter() -> None:
    """Fed one character at a time (CRLF split across chunks included), the frames are equal."""
    text = ": hello\r\nid: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\r"
    parser = SseParser()
    one_by_one = [frame for char in text for frame in parser.feed(char)] + parser.finish()
    assert one_by_one == frames(text)
    assert one_by_one == [SseFrame("a\nb", event="x", id="1"), SseFrame("c", id="2")]


def test_cr_at_chunk_end_waits_for_a_possible_lf() -> None:
    """``\\r`` then ``\\n`` in the next chunk is one line end, not a blank line."""
    parser = SseParser()
    assert parser.feed("data: a\r") == []
    assert parser.feed("\ndata: b\r\n\r\n") == [SseFrame("a\nb")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    """A comment-only or unknown-field-only block dispatches nothing."""
    assert frames(": keep-alive\n\nfoo: bar\n\n:\n\ndata: x\nfoo\n\n") == [SseFrame("x")]


def test_retry_and_bad_values() -> None:
    """A numeric retry is kept; a non-numeric one and an id with NUL are ignored."""
    assert frames("retry: 2500\n\n") == [SseFrame(retry=2500)]
    assert frames("retry: 2.5\ndata: x\n\n") == [SseFrame("x")]
    assert frames("retry: -1\nid: a\0b\ndata: x\n\n") == [SseFrame("x")]


def test_field_without_colon_and_empty_id() -> None:
    assert frames("data\n\n") == [SseFrame("")]
    assert frames("id\ndata: x\n\n") == [SseFrame("x", id="")]


def test_event_only_frame_is_dispatched() -> None:
    """``event: end`` without data still reaches the follower."""
    assert frames("event: end\n\n") == [SseFrame(event="end")]


def test_unterminated_frame_is_dropped() -> None:
    """A connection that ends mid-frame must not produce half an event."""
    assert frames('id: 1\ndata: done\n\nid: 2\ndata: {"half') == [SseFrame("done", id="1")]
    assert frames("id: 3\ndata: x\n") == []


def test_trailing_cr_at_end_of_stream_ends_the_frame() -> None:
    assert frames("data: x\r\r") == [SseFrame("x")]
    assert frames("data: x\r") == [], "one line end is not a blank line"


def test_the_planes_frames_and_any_others_interleave() -> None:
    """Frames in the plane's own shape and in any other shape parse alike, in order."""
    text = (
        'id: 1\nevent: training.log\ndata: {"step": 1}\n\n'
        "event: ping\ndata: {}\n\n"
        "\n\nid: 2\nevent: a\ndata: one\ndata: two\n\n"
        "id: 3\nevent: b\ndata: x\nretry: 10\n\n"
        "data: y\nid: 4\nevent: c\n\n"
        "id: 5\0\nevent: d\ndata: z\n\n"
        'id: 6\r\nevent: training.log\r\ndata: {"step": 6}\r\n\r\n'
    )
    expected = [
        SseFrame('{"step": 1}', "training.log", "1"),
        SseFrame("{}", "ping"),
        SseFrame("one\ntwo", "a", "2"),
        SseFrame("x", "b", "3", 10),
        SseFrame("y", "c", "4"),
        SseFrame("z", "d"),
        SseFrame('{"step": 6}', "training.log", "6"),
    ]
    assert frames(text) == expected
    parser = SseParser()
    assert [f for size in (7, 3, 11) for f in feed_in(parser, text, size)] == expected * 3


def feed_in(parser: SseParser, text: str, size: int) -> list[SseFrame]:
    """``text`` fed to ``parser`` in chunks of ``size`` characters."""
    return [
        f for start in range(0, len(text), size) for f in parser.feed(text[start : start + size])
    ]


def test_leading_bom_is_skipped_once() -> None:
    assert frames("\ufeffdata: x\n\n") == [SseFrame("x")]
    assert frames("\ufeff\ufeffdata: x\n\n") == []  # the second BOM makes an unknown field


# --- the reconnect schedule --------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=1.0, cap=60.0, jitter=0.0) for n in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay(10_000, base=1.0, cap=60.0, jitter=0.0) == 60


@pytest.mark.parametrize("attempt", [0, 1, 3, 5])
def test_backoff_jitter_is_plus_minus_a_quarter(attempt: int) -> None:
    nominal = 2.0**attempt
    low = backoff_delay(attempt, base=1.0, cap=60.0, rand=lambda: 0.0)
    high = backoff_delay(attempt, base=1.0, cap=60.0, rand=lambda: 1.0)
    assert low == pytest.approx(nominal * 0.75)
    assert high == pytest.approx(nominal * 1.25)
    for _ in range(200):
        assert low <= backoff_delay(attempt, base=1.0, cap=60.0) <= high


def test_backoff_jitter_never_exceeds_the_cap() -> None:
    assert backoff_delay(20, base=1.0, cap=60.0, rand=lambda: 1.0) == 60
    assert backoff_delay(20, base=1.0, cap=60.0, rand=lambda: 0.0) == 45


# --- follow_events against scripted answers ----------------------------------------------


def event_frame(event_id: int, kind: str = "training.log") -> str:
    body: dict[str, object] = {"type": kind, "jobId": "job-1", "timestamp": "2025-01-01T00:00:00Z"}
    if kind == "training.log":
        body["step"] = event_id
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"


PING = "event: ping\ndata: {}\n\n"
END = "event: end\ndata: {}\n\n"


class Drop(Exception):
    """Marks where a scripted stream breaks off, as a dropped TCP connection would."""


@dataclass
class Script:
    """Answers in order: a status, or a list of text chunks (``Drop`` breaks the link)."""

    answers: list[int | list[str | type[Drop]]]
    last_event_ids: list[str | None] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.last_event_ids.append(request.headers.get("Last-Event-ID"))
        if not self.answers:
            raise AssertionError("the follower asked for more than the script holds")
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": f"scripted {answer}"})
        return httpx.Response(
            200, headers={"Content-Type": "text/event-stream"}, content=self._body(answer)
        )

    @staticmethod
    def _body(parts: list[str | type[Drop]]) -> Iterator[bytes]:
        for part in parts:
            if part is Drop:
                raise httpx.ReadError("connection reset by the script")
            assert isinstance(part, str)
            yield part.encode()

    def follow(self, **options: object) -> list[int | str]:
        """Follow the script; log events show as their step, others as their type."""
        settings: dict[str, object] = {"jitter": 0.0, "sleep": self.sleeps.append, **options}
        with httpx.Client(transport=httpx.MockTransport(self.handler)) as http:
            client = CloudApiClient("http://plane.test", "token", http=http)
            events = follow_events(client, SCOPE, "job-1", **settings)
            return [e.step if e.type == "training.log" else e.type for e in events]


def test_resumes_after_a_drop_and_never_repeats() -> None:
    """A drop mid-frame resumes from the last whole event; replayed ids are skipped."""
    script = Script(
        [
            [event_frame(1), event_frame(2), event_frame(3)[:20], Drop],
            [event_frame(2), event_frame(3), event_frame(4, "training.completed"), END],
        ]
    )
    assert script.follow() == [1, 2, 3, "training.completed"]
    assert script.last_event_ids == [None, "2"]
    assert script.sleeps == [1.0]


def test_starts_after_the_given_id() -> None:
    script = Script([[event_frame(5), event_frame(6), END]])
    assert script.follow(last_event_id=5) == [6]
    assert script.last_event_ids == ["5"]


def test_pings_and_garbage_are_not_progress() -> None:
    """Connections that bring only pings or unparseable frames back off exponentially."""
    garbage = 'id: 9\nevent: training.log\ndata: {"type": "training.log", "jobId"\n\n'
    script = Script(
        [
            [PING, Drop],
            [garbage, PING, Drop],
            ["id: x\ndata: {}\n\n", Drop],
            [event_frame(1), Drop],
            [PING, Drop],
            [END],
        ]
    )
    assert script.follow(base_delay=0.5) == [1]
    assert script.sleeps == [0.5, 1.0, 2.0, 0.5, 0.5]


def test_clean_eof_after_data_reconnects_at_the_base_delay() -> None:
    """A plane that closes without ``end`` is reconnected: at once after data, slower without."""
    script = Script([[event_frame(1)], [], [], [event_frame(2)], [END]])
    assert script.follow(base_delay=0.25) == [1, 2]
    assert script.sleeps == [0.25, 0.25, 0.5, 0.25]
    assert script.last_event_ids == [None, "1", "1", "1", "2"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, AuthError), (410, CloudApiError), (426, UpgradeRequiredError)],
)
def test_permanent_statuses_raise_at_once(status: int, error: type[CloudApiError]) -> None:
    script = Script([status])
    with pytest.raises(error) as raised:
        script.follow()
    assert raised.value.status == status
    assert raised.value.message == f"scripted {status}"
    assert script.sleeps == []


def test_other_client_errors_are_permanent_too() -> None:
    script = Script([400])
    with pytest.raises(CloudApiError, match="scripted 400"):
        script.follow()


def test_transient_statuses_retry_with_backoff() -> None:
    script = Script([404, 408, 429, 500, 503, [event_frame(1), END]])
    assert script.follow(base_delay=0.1, max_delay=0.5) == [1]
    assert script.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_max_retries_raises_the_last_error() -> None:
    script = Script([404, 404, 404])
    with pytest.raises(NotFoundError):
        script.follow(max_retries=2)
    assert len(script.sleeps) == 2


def test_progress_resets_the_failure_count() -> None:
    script = Script([404, 404, [event_frame(1), Drop], 404, 404, [END]])
    assert script.follow(max_retries=2) == [1]


def test_a_drop_after_the_terminal_event_needs_no_reconnect() -> None:
    """Nothing follows a terminal event, so a drop before ``end`` just ends the stream."""
    failed = 'id: 2\nevent: training.failed\ndata: {"type": "training.failed", "jobId": "j", "error": "oom"}\n\n'
    script = Script([[event_frame(1), failed, Drop]])
    assert script.follow() == [1, "training.failed"]
    assert script.sleeps == []


def test_retry_hint_sets_the_base_delay() -> None:
    script = Script([["retry: 250\n\n", event_frame(1), Drop], [PING, Drop], [END]])
    assert script.follow() == [1]
    assert script.sleeps == [0.25, 0.25]
