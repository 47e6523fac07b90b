"""Data-parallel training: one process per device, the calling process as rank 0.

:func:`train_data_parallel` starts ranks 1..N-1 as ``python -m arkor.engine._rank SPEC``
subprocesses with torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``), the job's config and data files and a private scratch
output folder each, then trains as rank 0 through the same recipe. The Trainer
(accelerate DDP: nccl with one GPU per rank, gloo on the CPU) gives each rank its shard of
every step's rows, averages the gradients over all of the step's tokens and logs the
loss of all of them; ``batch_size`` stays per device.

Rank 0 alone reports events, saves checkpoints and the adapter and evaluates; the others
report nothing. The ranks meet in a store rank 0 hosts, and rank 0 opens the process
group only once every other rank has loaded its model: a rank that dies while loading
fails the run at once instead of leaving rank 0 waiting for it. At each step end the
ranks all-reduce their stop flags, so a cancel or a SIGTERM on any rank stops every rank
at the same step. A rank that dies fails the run with its last output as the reason;
rank 0 returns only once every other rank has exited.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arkor._env import env_int
from arkor.cloud import JobConfig, TrainingFailed
from arkor.engine._device import Placement
from arkor.engine._run import CHECKPOINTS_DIRNAME, TrainingOutcome, TrainingRun
from arkor.errors import ArkorError

if TYPE_CHECKING:
    from torch.distributed import TCPStore  # type: ignore[attr-defined]

logger = logging.getLogger("arkor.engine.parallel")

MASTER_ADDR = "127.0.0.1"
EXIT_GRACE_SECONDS = 60.0
"""How long rank 0 waits for the other ranks to exit once training has ended."""
KILL_GRACE_SECONDS = 5.0
"""How long a rank asked to stop (SIGTERM) has before it is killed."""
FAILURE_GRACE_SECONDS = 5.0
"""How long rank 0, its collective broken, waits for the rank that broke it to exit."""
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)
_TAIL_LINES = 20


def world_size(config: JobConfig, placement: Placement | None = None) -> int:
    """How many processes train ``config``: ``trainer.resources`` says, else one.

    On GPUs each rank takes one, so asking for more ranks than there are GPUs is an error.
    """
    if config.resources is None:
        return 1
    import torch

    kind = device_kind(placement)
    visible = torch.cuda.device_count() if kind == "cuda" else 0
    size = config.resources.world_size(visible)
    if kind == "cuda" and size > visible:
        raise ArkorError(
            f"trainer.resources asks for {size} data-parallel processes, but this machine "
            f"has {visible} GPU{'s' if visible != 1 else ''} and each process takes one. "
            f"Set trainer.resources.processes (or gpus) to at most {visible} in arkor.toml, "
            "or run the job on a machine with more GPUs."
        )
    return size


def device_kind(placement: Placement | None = None) -> str:
    """``cuda`` or ``cpu``: what each rank trains on (``ARKOR_DEVICE`` decides, as for one process)."""
    if placement is not None:
        return "cuda" if placement.on_gpu else "cpu"
    import torch

    wanted = os.environ.get("ARKOR_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return "cuda" if wanted.startswith("cuda") else "cpu"


@dataclass(frozen=True)
class RankSpec:
    """What a rank after the first needs, written to a private file it is started with."""

    rank: int
    world_size: int
    device: str
    port: int
    threads: int
    job_id: str
    config: dict[str, Any]
    output_dir: str
    dataset_file: str | None
    eval_file: str | None
    resume_from: str | None

    def write(self, path: Path) -> None:
        """Write the spec readable by this user alone: a blob dataset's token may be in it."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle)

    @classmethod
    def read(cls, path: Path) -> RankSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class Rank:
    """One process of a data-parallel run, as the training recipe sees it."""

    def __init__(
        self,
        rank: int,
        size: int,
        *,
        device: str,
        port: int,
        threads: int,
        resume_from: str | None,
    ) -> None:
        self.rank = rank
        self.size = size
        self.device = device
        self.port = port
        self.threads = threads
        self.resume_from = resume_from
        """The checkpoint every rank continues from: one in rank 0's output folder."""
        self._flag_device = f"cuda:{rank}" if device == "cuda" else "cpu"
        self.joined = False
        """Whether the process group is open: from then on, a dead rank breaks the others' steps."""

    @property
    def is_lead(self) -> bool:
        """Rank 0: the one that reports, saves and evaluates."""
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    @property
    def devices(self) -> list[str]:
        """Every rank's device, by rank, for ``training.started``."""
        return [f"cuda:{index}" if self.device == "cuda" else "cpu" for index in range(self.size)]

    def placement(self) -> Placement:
        """This rank's GPU, or its share of the CPU threads."""
        import torch

        if self.device == "cuda":
            torch.cuda.set_device(self.rank)
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return Placement(f"cuda:{self.rank}", dtype)
        torch.set_num_threads(self.threads)
        return Placement("cpu", torch.float32)

    def training_options(self) -> dict[str, Any]:
        """The ``TrainingArguments`` a rank of this run takes on top of a single process's."""
        return {
            "ddp_backend": self.backend,
            # LoRA trains every adapter weight at every step: no search for unused ones
            "ddp_find_unused_parameters": False,
            "ddp_timeout": int(PROCESS_GROUP_TIMEOUT.total_seconds()),
        }

    def join(self, stop: threading.Event) -> bool:
        """Open the process group with every other rank; False when ``stop`` came first."""
        import torch.distributed as dist

        store = self._store()
        store.set(f"ready/{self.rank}", "1")
        if not self._await_others(store, stop):
            return False
        dist.init_process_group(
            self.backend,
            store=store,
            rank=self.rank,
            world_size=self.size,
            timeout=PROCESS_GROUP_TIMEOUT,
        )
        self.joined = True
        return True

    def any_stop(self, stop: bool) -> bool:
        """Whether any rank wants to stop; every rank calls it at the same step end."""
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if stop else 0], device=self._flag_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def finish(self) -> None:
        """Leave the process group once training has ended at the same step on every rank."""
        _leave_process_group()

    def explain(self, error: Exception) -> Exception:
        """The reason to report for ``error``."""
        return error

    def _store(self) -> TCPStore:
        from torch.distributed import TCPStore  # type: ignore[attr-defined]

        return TCPStore(
            MASTER_ADDR, self.port, self.size, is_master=False, timeout=PROCESS_GROUP_TIMEOUT
        )

    def _await_others(self, store: TCPStore, stop: threading.Event) -> bool:
        return True


class LeadRank(Rank):
    """Rank 0, in the calling process: starts the other ranks and answers for them."""

    def __init__(self, run: TrainingRun, size: int) -> None:
        from torch.distributed import TCPStore  # type: ignore[attr-defined]
        from transformers.trainer_utils import get_last_checkpoint

        kind = device_kind(run.placement)
        checkpoints = run.output_dir / CHECKPOINTS_DIRNAME
        resume_from = (
            get_last_checkpoint(str(checkpoints))  # type: ignore[no-untyped-call]
            if run.resume and checkpoints.is_dir()
            else None
        )
        self._host_store = TCPStore(
            MASTER_ADDR,
            0,
            size,
            is_master=True,
            timeout=PROCESS_GROUP_TIMEOUT,
            wait_for_workers=False,
        )
        super().__init__(
            0,
            size,
            device=kind,
            port=self._host_store.port,
            threads=_threads_per_rank(size) if kind == "cpu" else 0,
            resume_from=resume_from,
        )
        self.run = run
        self.processes: dict[int, subprocess.Popen[str]] = {}
        self._tails: dict[int, collections.deque[str]] = {}
        self._readers: list[threading.Thread] = []
        self._scratch = Path(tempfile.mkdtemp(prefix="arkor-ranks-"))
        self._saved_env: dict[str, str | None] = {}
        self._saved_threads: int | None = None

    def launch(self) -> None:
        """Start ranks 1..N-1 and give this process rank 0's environment."""
        import torch

        environment = self._environment(0)
        self._saved_env = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        self._saved_threads = torch.get_num_threads()
        for rank in range(1, self.size):
            folder = self._scratch / f"rank-{rank}"
            folder.mkdir()
            spec_file = self._scratch / f"rank-{rank}.json"
            RankSpec(
                rank=rank,
                world_size=self.size,
                device=self.device,
                port=self.port,
                threads=self.threads,
                job_id=self.run.job_id,
                config=self.run.config.to_wire(),
                output_dir=str(folder),
                dataset_file=str(self.run.dataset_file) if self.run.dataset_file else None,
                eval_file=str(self.run.eval_file) if self.run.eval_file else None,
                resume_from=self.resume_from,
            ).write(spec_file)
            process = subprocess.Popen(
                [sys.executable, "-m", "arkor.engine._rank", str(spec_file)],
                env={**os.environ, **self._environment(rank)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            self.processes[rank] = process
            tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
            self._tails[rank] = tail
            assert process.stdout is not None
            reader = threading.Thread(
                target=_read_output,
                args=(rank, process.stdout, tail),
                name=f"arkor-rank-{rank}-output",
                daemon=True,
            )
            reader.start()
            self._readers.append(reader)
        logger.info(
            "Training on %d processes (%s), store on port %d.", self.size, self.backend, self.port
        )

    def _environment(self, rank: int) -> dict[str, str]:
        environment = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(self.size),
            "LOCAL_WORLD_SIZE": str(self.size),
            "MASTER_ADDR": MASTER_ADDR,
            "MASTER_PORT": str(self.port),
        }
        if self.device == "cpu":
            environment["OMP_NUM_THREADS"] = str(self.threads)
        return environment

    def _store(self) -> TCPStore:
        return self._host_store

    def _await_others(self, store: TCPStore, stop: threading.Event) -> bool:
        """Wait until every rank has loaded its model; fail as soon as one has died."""
        keys = [f"ready/{rank}" for rank in range(1, self.size)]
        while not store.check(keys):
            failure = self._failure()
            if failure is not None:
                raise failure
            if stop.wait(0.1):
                return False
        return True

    def finish(self) -> None:
        """Wait for the other ranks to exit, then leave the process group; raise if one failed."""
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                break
        failure = self._failure()
        if failure is None and any(p.poll() is None for p in self.processes.values()):
            failure = ArkorError(
                f"A data-parallel rank did not exit within {EXIT_GRACE_SECONDS:.0f} s after "
                "training ended; it was stopped. Its output is in the worker's log."
            )
        _leave_process_group()
        if failure is not None:
            raise failure

    def explain(self, error: Exception) -> Exception:
        """A rank that died explains a broken collective better than the collective does.

        Before the process group is open, an error of rank 0 is its own.
        """
        if not self.joined:
            return error
        deadline = time.monotonic() + FAILURE_GRACE_SECONDS
        while True:
            failure = self._failure()
            if failure is not None:
                return failure
            if all(p.poll() is None for p in self.processes.values()):
                if time.monotonic() > deadline:
                    return error
                time.sleep(0.1)
            else:
                return error

    def _failure(self) -> ArkorError | None:
        """The first rank to have exited with an error, with its last output as the reason."""
        for rank, process in self.processes.items():
            code = process.poll()
            if code is None or code == 0:
                continue
            for reader in self._readers:
                reader.join(1.0)
            how = (
                f"was killed by {signal.Signals(-code).name}"
                if code < 0 and -code in signal.valid_signals()
                else f"exited with code {code}"
            )
            lines = [line for line in self._tails[rank] if line.strip()][-3:]
            said = f": {' '.join(line.strip() for line in lines)}" if lines else "."
            return ArkorError(f"Data-parallel rank {rank} of {self.size} {how}{said}")
        return None

    def close(self) -> None:
        """Stop every rank still running, leave the process group and restore this process."""
        _leave_process_group()
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in self._readers:
            reader.join(5.0)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
        _reset_accelerate()
        del self._host_store
        shutil.rmtree(self._scratch, ignore_errors=True)


def train_data_parallel(run: TrainingRun, size: int) -> TrainingOutcome:
    """Train ``run`` on ``size`` processes, this one rank 0; every other has exited on return."""
    from arkor.engine._train import train

    lead: LeadRank | None = None
    try:
        try:
            lead = LeadRank(run, size)
            lead.launch()
        except Exception as error:  # ranks that cannot start fail the run
            message = (
                str(error)
                if isinstance(error, ArkorError)
                else f"The data-parallel ranks could not start: {type(error).__name__}: {error}"
            )
            run.sink.emit(TrainingFailed(job_id=run.job_id, error=message))
            return TrainingOutcome("failed", 0, {"step": 0}, None, message)
        return train(run, rank=lead)
    finally:
        if lead is not None:
            lead.close()


def _threads_per_rank(size: int) -> int:
    """Each CPU rank's share of the host's threads (``ARKOR_CPU_THREADS`` sets it)."""
    configured = env_int(
        "ARKOR_CPU_THREADS", minimum=1, example="4", default="a share of every host thread"
    )
    return configured or max(1, (os.cpu_count() or 1) // size)


def _read_output(rank: int, stream: IO[str], tail: collections.deque[str]) -> None:
    """Keep a rank's last lines for a failure's reason and pass each on to the log."""
    with stream:
        for line in stream:
            tail.append(line)
            logger.info("rank %d: %s", rank, line.rstrip())


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _reset_accelerate() -> None:
    """Forget the distributed state accelerate keeps per process, so a later run starts afresh."""
    from accelerate.state import AcceleratorState, GradientState  # type: ignore[import-untyped]

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
