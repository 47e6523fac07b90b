"""``python -m arkor.engine._rank SPEC``: one rank after the first of a data-parallel run.

Rank 0 (see :mod:`arkor.engine._parallel`) starts it with a :class:`RankSpec` file. It
trains through the same recipe, reports nothing (rank 0 does), and exits 0 once training
has ended, 1 with the reason as its last line when it failed. SIGTERM stops every rank at
the end of the step; the death of rank 0 ends it at once, so none is left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from arkor.cloud import JobConfig, JobEvent
from arkor.engine._parallel import Rank, RankSpec
from arkor.engine._run import TrainingRun


class NullSink:
    """Rank 0 reports the run; the events of the others go nowhere."""

    def emit(self, event: JobEvent) -> None:
        """Drop ``event``."""


def _exit_when_orphaned(parent: int) -> None:
    """End this rank when rank 0's process is gone: nothing would ever stop it otherwise."""
    while os.getppid() == parent:
        threading.Event().wait(1.0)
    os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Train one rank from the spec file named first in ``argv``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    spec = RankSpec.read(Path(arguments[0]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides what a Ctrl-C stops
    threading.Thread(
        target=_exit_when_orphaned, args=(os.getppid(),), name="arkor-orphan-watch", daemon=True
    ).start()
    from arkor.engine._deps import require_local

    require_local()
    from arkor.engine._train import train

    rank = Rank(
        spec.rank,
        spec.world_size,
        device=spec.device,
        port=spec.port,
        threads=spec.threads,
        resume_from=spec.resume_from,
    )
    outcome = train(
        TrainingRun(
            job_id=spec.job_id,
            config=JobConfig.model_validate(spec.config),
            output_dir=Path(spec.output_dir),
            sink=NullSink(),
            stop=stop,
            dataset_file=Path(spec.dataset_file) if spec.dataset_file else None,
            eval_file=Path(spec.eval_file) if spec.eval_file else None,
        ),
        rank=rank,
    )
    if outcome.status == "failed":
        print(outcome.error, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip the interpreter's teardown: torch.distributed's threads can abort it once the
    # process group is gone, and the run has ended by now
    os._exit(code)
