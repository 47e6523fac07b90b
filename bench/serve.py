"""A deployment against the engine in-process: what serving over HTTP costs, in one run.

    python bench/serve.py [--new-tokens 48] [--repeats 5] [--streams 8]

The same prompt, greedy, the same number of new tokens, answered:

- ``in-process``: ``arkor.engine.InferenceEngine.stream`` in this process (the baseline);
- ``deployment``: a deployment of the same base model on a real plane (uvicorn on
  loopback, its inference worker process), through the official ``openai`` client.

Both warm (one request first). Prints time to first token (TTFT) and tokens/s for one
stream and for ``--streams`` concurrent streams, the deployment's ratio to in-process
(target for one stream: ≥ 0.9x tokens/s), and the plane's overhead per request: a
one-token answer's latency over HTTP minus in-process, in ms.

Runs on a tiny random model always, and on SmolLM2-135M-Instruct when it is in the local
model store (``arkor models import``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = [
    {"role": "system", "content": "You triage support tickets."},
    {"role": "user", "content": "My card was charged twice for the March invoice. Please help."},
]


@dataclass(frozen=True)
class Sample:
    ttft: float
    seconds: float
    tokens: int


def in_process(engine: object, folder: str, new_tokens: int) -> Sample:
    from arkor.engine import GenerationRequest, InferenceEngine

    assert isinstance(engine, InferenceEngine)
    request = GenerationRequest(
        base_model=folder,
        adapter_path=None,
        messages=PROMPT,
        temperature=0,
        max_tokens=new_tokens,
    )
    start = time.perf_counter()
    first = None
    tokens = 0
    for chunk in engine.stream(request):
        if chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return Sample(first or 0.0, time.perf_counter() - start, tokens)


def over_http(client: object, new_tokens: int) -> Sample:
    import openai

    assert isinstance(client, openai.OpenAI)
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model="bench",
        messages=PROMPT,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=new_tokens,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return Sample(first or 0.0, time.perf_counter() - start, tokens)


def single(run: Callable[[], Sample], repeats: int) -> tuple[float, float]:
    """Median TTFT (ms) and tokens/s of ``repeats`` runs one after another."""
    samples = [run() for _ in range(repeats)]
    ttft = statistics.median(s.ttft for s in samples) * 1000
    rate = statistics.median(s.tokens / s.seconds for s in samples)
    return ttft, rate


def concurrent(run: Callable[[], Sample], streams: int) -> tuple[float, float]:
    """Mean TTFT (ms) and total tokens/s of ``streams`` runs at once."""
    results: list[Sample] = []
    lock = threading.Lock()

    def one() -> None:
        sample = run()
        with lock:
            results.append(sample)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return statistics.mean(s.ttft for s in results) * 1000, sum(s.tokens for s in results) / wall


def overhead(in_proc: Callable[[], Sample], http: Callable[[], Sample], repeats: int) -> float:
    """Median one-token latency over HTTP minus in-process, in ms."""
    local = statistics.median(in_proc().seconds for _ in range(repeats))
    remote = statistics.median(http().seconds for _ in range(repeats))
    return (remote - local) * 1000


def bench(folder: str, label: str, args: argparse.Namespace) -> None:
    import openai

    from arkor.cloud import (
        BaseModelTarget,
        CloudApiClient,
        CreateDeploymentInput,
        ProjectState,
        request_anonymous_token,
    )
    from arkor.engine import InferenceEngine
    from tests.utils.plane import running_plane

    engine = InferenceEngine()
    local = lambda tokens: in_process(engine, folder, tokens)  # noqa: E731
    local(4)  # load and warm
    with (
        tempfile.TemporaryDirectory(prefix="arkor-bench-serve-") as home,
        running_plane(Path(home)) as plane,
    ):
        if True:
            identity = request_anonymous_token(plane.url)
            with CloudApiClient.from_credentials(identity) as cloud:
                cloud.create_project(identity.org_slug, name="bench", slug="bench")
                scope = ProjectState(
                    org_slug=identity.org_slug, project_slug="bench", project_id="-"
                )
                deployment = cloud.create_deployment(
                    scope,
                    CreateDeploymentInput(
                        slug="bench", target=BaseModelTarget(base_model=folder), auth_mode="none"
                    ),
                )
            client = openai.OpenAI(base_url=deployment.path_url, api_key="unused", timeout=600)
            remote = lambda tokens: over_http(client, tokens)  # noqa: E731
            remote(4)  # the worker loads the model
            rows = {
                "in-process, 1 stream": single(lambda: local(args.new_tokens), args.repeats),
                "deployment, 1 stream": single(lambda: remote(args.new_tokens), args.repeats),
                f"in-process, {args.streams} streams": concurrent(
                    lambda: local(args.new_tokens), args.streams
                ),
                f"deployment, {args.streams} streams": concurrent(
                    lambda: remote(args.new_tokens), args.streams
                ),
            }
            cost = overhead(lambda: local(1), lambda: remote(1), args.repeats)
    print(f"\n{label}: {args.new_tokens} new tokens, greedy, warm")
    for name, (ttft, rate) in rows.items():
        print(f"  {name:<26} TTFT {ttft:8.1f} ms   {rate:8.1f} tokens/s")
    one_local, one_remote = rows["in-process, 1 stream"], rows["deployment, 1 stream"]
    many_local = rows[f"in-process, {args.streams} streams"]
    many_remote = rows[f"deployment, {args.streams} streams"]
    print(
        f"  deployment / in-process tokens/s, 1 stream:  {one_remote[1] / one_local[1]:5.2f}x (target >= 0.9x)"
    )
    print(
        f"  deployment / in-process tokens/s, {args.streams} streams: {many_remote[1] / many_local[1]:5.2f}x"
    )
    print(f"  plane overhead per request (1-token answer):  {cost:6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5, help="runs per single-stream case")
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams")
    args = parser.parse_args()

    from arkor.engine._store import ModelStore
    from tests.utils.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="arkor-tiny-") as tiny:
        bench(str(build_tiny_model(Path(tiny), vocab_size=4000)), "tiny model", args)
    stored = ModelStore().lookup(SMOLLM2)
    if stored is not None:
        bench(str(stored), SMOLLM2, args)
    else:
        print(f"\n({SMOLLM2} is not in the model store; `arkor models import` it to bench it too)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
