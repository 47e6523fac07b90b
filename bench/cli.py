"""Time whole ``arkor`` processes against ``python -c pass`` in the same run.

    python bench/cli.py [--runs 21]

Prints the median wall time of each command, its ratio to the bare interpreter, and the
target it must meet on a 2-core machine: ``--version`` and help ≤ 100 ms, ``build`` ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_MS = {
    "arkor --version": 100.0,
    "arkor --help": 100.0,
    "arkor build --help": 100.0,
    "arkor build": 200.0,
}


def arkor_command() -> list[str]:
    """The console script next to this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "arkor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "arkor"]


def time_runs(command: list[str], cwd: Path, runs: int) -> list[float]:
    env = {**os.environ, "CI": "1", "NO_COLOR": "1"}
    subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, check=True
    )  # warm the page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (default 21)")
    args = parser.parse_args()
    arkor = arkor_command()
    workdir = Path(tempfile.mkdtemp(prefix="arkor-bench-"))
    try:
        subprocess.run(
            [*arkor, "init", "--yes", "--skip-git"], cwd=workdir, capture_output=True, check=True
        )
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "arkor --version": [*arkor, "--version"],
            "arkor --help": [*arkor, "--help"],
            "arkor build --help": [*arkor, "build", "--help"],
            "arkor validate": [*arkor, "validate"],
            "arkor build": [*arkor, "build"],
        }
        medians = {
            name: statistics.median(time_runs(cmd, workdir, args.runs))
            for name, cmd in cases.items()
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    baseline = medians["python -c pass"]
    print(f"{'command':<20}{'median ms':>11}{'× python':>10}{'target ms':>11}  result")
    failed = False
    for name, median in medians.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else ("ok" if median <= target else "OVER")
        failed |= verdict == "OVER"
        target_text = f"{target:.0f}" if target else "-"
        print(f"{name:<20}{median:>11.1f}{median / baseline:>10.2f}{target_text:>11}  {verdict}")
    print(f"({args.runs} runs each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
