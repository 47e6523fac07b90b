"""How a run's events look in a terminal: a progress bar on a TTY, plain lines otherwise, JSON on request."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from arkor.cli._output import eval_table_lines, interactive, style
from arkor.cloud import EvalSpec, JobEvent

_BAR_WIDTH = 24


class RunDisplay:
    """Prints each event of a run as it arrives."""

    def __init__(
        self,
        *,
        json_lines: bool = False,
        stream: TextIO | None = None,
        summary_states_error: bool = False,
        evaluation: EvalSpec | None = None,
        final_eval_later: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.summary_states_error = summary_states_error
        """A summary after the run gives the error, so the failed line does not repeat it."""
        self.evaluation = evaluation
        """The run's eval block: after the last step (and checkpoints, when asked) the run
        goes quiet while base and adapter answer the held-out rows, and the display says so."""
        self.final_eval_later = final_eval_later
        """The final eval's table is printed after the run (``arkor start``), not as it arrives."""
        self.held_out_rows: int | None = None
        self._evaluating = False
        self.live = not json_lines and _is_tty(self.stream)
        self.max_steps: int | None = None
        self.started_at: float | None = None
        self.loss: float | None = None
        self.from_step = 0
        """Where this run of the job began: a resumed run continues from its checkpoint."""
        self._step: int | None = None
        self._bar_shown = False

    def event(self, event: JobEvent) -> None:
        """Show one event (before the callbacks run: the bar is lifted so their output lands above it)."""
        self._lift_bar()
        if self.json_lines:
            print(json.dumps(event.to_wire(), ensure_ascii=False), file=self.stream, flush=True)
            return
        if event.type == "training.started":
            metadata = event.metadata or {}
            steps = metadata.get("maxSteps")
            self.max_steps = steps if isinstance(steps, int) and steps > 0 else None
            self.started_at = time.monotonic()
            resumed = metadata.get("resumedFromStep")
            self.from_step = resumed if isinstance(resumed, int) else 0
            details = ", ".join(
                f"{key} {metadata[key]}"
                for key in ("model", "device", "trainRows")
                if key in metadata
            )
            held = metadata.get("heldOutRows")
            self.held_out_rows = held if isinstance(held, int) else None
            began = f"resumed from step {resumed}" if self.from_step else "started"
            self._line(f"training {began} ({details})")
            for warning in metadata.get("warnings") or ():
                self._line(style(f"warning: {warning}", "yellow"))
        elif event.type == "training.log":
            if event.loss is not None:
                self.loss = event.loss
            if not self.live:
                self._line(_log_line(event))
            elif event.eval_loss is not None:
                self._line(f"step {event.step}: eval loss {event.eval_loss:.4f}")
            self._step = event.step
            if not self._at_checkpoints():
                self._maybe_evaluating(event.step)
        elif event.type == "checkpoint.saved":
            self._line(f"checkpoint saved at step {event.step}")
            if self._at_checkpoints():
                self._line(f"evaluating the checkpoint on {self._eval_rows()} held-out rows…")
            else:
                self._maybe_evaluating(event.step)
        elif event.type == "eval.completed":
            if event.final and self.final_eval_later and not event.error:
                seconds = f" in {event.seconds:.1f} s" if event.seconds is not None else ""
                self._line(f"evaluated on {event.rows} held-out rows{seconds}")
            else:
                for line in eval_table_lines(event):
                    self._line(line)
            if event.checkpoint is not None and not event.final and not event.requested:
                self._maybe_evaluating(
                    event.checkpoint
                )  # the last checkpoint's, then the adapter's
        elif event.type == "training.completed":
            self._line(style("training completed", "green"))
        elif event.type == "training.failed":
            said = "" if self.summary_states_error else f": {event.error}"
            self._line(style(f"training failed{said}", "red"))
        elif event.type == "training.cancelled":
            self._line(style(f"training cancelled at step {event.step}", "yellow"))

    def redraw(self, event: JobEvent) -> None:
        """After the callbacks: put the live bar back under whatever they printed."""
        if (
            self.live
            and self._step is not None
            and not self._evaluating
            and event.type in ("training.log", "checkpoint.saved")
        ):
            self._bar(self._step)

    def _maybe_evaluating(self, step: int) -> None:
        """Once the last step is reached, say that the eval runs now (no event comes until it ends)."""
        if self.evaluation is None or self._evaluating or not self._last_step(step):
            return
        self._evaluating = True
        self._line(f"evaluating the adapter against its base on {self._eval_rows()} held-out rows…")

    def _at_checkpoints(self) -> bool:
        return self.evaluation is not None and self.evaluation.at_checkpoints

    def _last_step(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps

    def _eval_rows(self) -> str:
        assert self.evaluation is not None
        if self.held_out_rows is None:
            return f"up to {self.evaluation.rows}"
        return str(min(self.evaluation.rows, self.held_out_rows))

    def _lift_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\033[2K")
            self.stream.flush()
            self._bar_shown = False

    def _bar(self, step: int) -> None:
        total = self.max_steps
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        if total:
            done = min(step / total, 1.0)
            filled = int(done * _BAR_WIDTH)
            bar = "█" * filled + "░" * (_BAR_WIDTH - filled)
            done_here = step - self.from_step
            eta = elapsed / done_here * (total - step) if done_here > 0 else 0.0
            text = f"step {step}/{total} {bar} loss {self._loss()} ETA {_clock(eta)}"
        else:
            text = f"step {step} loss {self._loss()} elapsed {_clock(elapsed)}"
        self.stream.write("\r\033[2K" + text)
        self.stream.flush()
        self._bar_shown = True

    def _line(self, text: str) -> None:
        self._lift_bar()
        print(text, file=self.stream, flush=True)

    def _loss(self) -> str:
        return f"{self.loss:.4f}" if self.loss is not None else "-"


def _log_line(event: JobEvent) -> str:
    assert event.type == "training.log"
    parts = [f"step {event.step}"]
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    if event.eval_loss is not None:
        parts.append(f"eval loss {event.eval_loss:.4f}")
    if event.learning_rate is not None:
        parts.append(f"lr {event.learning_rate:.2e}")
    if event.samples_per_second is not None:
        parts.append(f"{event.samples_per_second:.1f} samples/s")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_tty(stream: TextIO) -> bool:
    """A live bar only on a terminal, outside CI (``interactive`` checks both)."""
    return interactive() and stream.isatty()
