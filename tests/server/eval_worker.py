"""A stand-in worker for the eval plane tests: the protocol, an eval event, no model.

The job's name says what it does: ``eval:<rows>`` posts ``training.started`` (with what
``dataset?role=eval`` answered: the status, and the uploaded eval file's sha256 or the
error), writes the files a real run leaves (``eval/held-out.jsonl``, ``adapter/`` and
``checkpoints/checkpoint-2/``, each folder with only its ``adapter_config.json``), posts a
final ``eval.completed`` of ``<rows>`` samples with long texts when the job has an eval
block, and completes at step 4;
``eval-then-wait`` posts an ``eval.completed``, then heartbeats until it is cancelled.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import httpx

from arkor.cloud import (
    EvalCompleted,
    EvalSample,
    EvalScore,
    TrainingCancelled,
    TrainingCompleted,
    TrainingStarted,
)
from arkor.engine._worker import TOKEN_ENV, PlaneClient

TEXT = "x" * 1000
"""About 1 KB: the length of each prompt, reference and answer in a sample."""


def eval_event(job_id: str, rows: int) -> EvalCompleted:
    samples = [
        EvalSample(
            number=index + 1,
            sha256=hashlib.sha256(str(index).encode()).hexdigest(),
            prompt=[{"role": "user", "content": TEXT}],
            reference=TEXT,
            base=TEXT,
            adapter=TEXT,
            scores={"exact_match": {"base": 0.0, "adapter": 1.0}},
            row={"messages": [{"role": "user", "content": TEXT}]},
        )
        for index in range(rows)
    ]
    return EvalCompleted(
        job_id=job_id,
        step=4,
        final=True,
        rows=rows,
        held_out_rows=rows,
        metrics=[EvalScore(name="exact_match", base=0.0, adapter=1.0, count=rows)],
        samples=samples,
    )


def write_outputs(folder: Path) -> None:
    for adapter in ("adapter", "checkpoints/checkpoint-2"):
        (folder / adapter).mkdir(parents=True, exist_ok=True)
        (folder / adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "eval").mkdir(parents=True, exist_ok=True)
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    held_out = {
        "number": 1,
        "sha256": "0" * 64,
        "prompt": row["messages"][:1],
        "reference": "yo",
        "row": row,
    }
    (folder / "eval" / "held-out.jsonl").write_text(json.dumps(held_out) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--plane-url", "--job-id", "--artifacts"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    token = os.environ[TOKEN_ENV]
    plane = PlaneClient(args.plane_url, args.job_id, token, lost_after=5)
    job = plane.job().job
    answer = httpx.get(
        f"{args.plane_url}/v1/internal/jobs/{job.id}/dataset",
        params={"role": "eval"},
        headers={"Authorization": f"Bearer {token}"},
    )
    metadata: dict[str, object] = {"evalFileStatus": answer.status_code}
    if answer.status_code == 200:
        metadata["evalFile"] = hashlib.sha256(answer.content).hexdigest()
        metadata["evalFileHeader"] = answer.headers["x-content-sha256"]
    else:
        metadata["evalFileError"] = answer.json()["error"]
    plane.post_event(TrainingStarted(job_id=job.id, metadata=metadata))
    action, _, argument = job.name.partition(":")
    if action == "eval":
        write_outputs(Path(args.artifacts))
        if job.config.eval is not None:
            plane.post_event(eval_event(job.id, int(argument)))
        plane.post_event(TrainingCompleted(job_id=job.id, metrics={"step": 4}))
        return 0
    plane.post_event(eval_event(job.id, 3))
    while not plane.heartbeat().cancel_requested:  # eval-then-wait: until cancelled
        time.sleep(0.05)
    plane.post_event(TrainingCancelled(job_id=job.id, step=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
