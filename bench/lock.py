"""What pinning costs ``arkor build``: a model folder hashed cold, then from the digest cache.

    python bench/lock.py [--size-mib 512] [--runs 7]

Builds a project whose model is a local folder holding one weights file of ``--size-mib``
MiB, in fresh processes. Baselines timed in the same run: ``python -c pass``, a build
whose model is an (offline, unpinned) Hub id, and hashing the weights file alone with
``hashlib``. Prints each median and the ratios that matter: what pinning adds to a cold
build against hashing the file alone (paid once per change of the weights), and a cached
build against the Hub-id build (what it costs on every build after).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
[trainer]
name = "bench"
model = "{model}"
max_steps = 10

[trainer.dataset]
type = "file"
path = "train.jsonl"
"""
ROW = (
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
)


def arkor_command() -> list[str]:
    script = Path(sys.executable).parent / "arkor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "arkor"]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=True)
    return (time.perf_counter() - start) * 1000


def project(root: Path, model: str) -> Path:
    root.mkdir(parents=True)
    (root / "arkor.toml").write_text(CONFIG.format(model=model), encoding="utf-8")
    (root / "train.jsonl").write_text(ROW * 8, encoding="utf-8")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="weights file size (MiB)")
    parser.add_argument("--runs", type=int, default=7, help="runs per warm case (default 7)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="arkor-bench-lock-"))
    try:
        model = workdir / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        with (model / "model.safetensors").open("wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(1 << 20))
        folder_project = project(workdir / "folder-project", str(model))
        hub_project = project(workdir / "hub-project", "HuggingFaceTB/SmolLM2-135M-Instruct")
        env = {
            **os.environ,
            "CI": "1",
            "NO_COLOR": "1",
            "HF_HUB_OFFLINE": "1",
            "ARKOR_HOME": str(workdir / "home"),
            "HF_HUB_CACHE": str(workdir / "hf-cache"),
        }
        arkor = [*arkor_command(), "build"]
        timed([sys.executable, "-c", "pass"], workdir, env)  # warm the page cache
        timed(arkor, hub_project, env)

        def hash_file() -> float:
            start = time.perf_counter()
            digest = hashlib.sha256()
            with (model / "model.safetensors").open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            return (time.perf_counter() - start) * 1000

        hashing = statistics.median(hash_file() for _ in range(3))
        cold = timed(arkor, folder_project, env)
        results = {
            "python -c pass": statistics.median(
                timed([sys.executable, "-c", "pass"], workdir, env) for _ in range(args.runs)
            ),
            "build, Hub id (unpinned, offline)": statistics.median(
                timed(arkor, hub_project, env) for _ in range(args.runs)
            ),
            f"hash {args.size_mib} MiB with hashlib": hashing,
            f"build, {args.size_mib} MiB folder, cold": cold,
            f"build, {args.size_mib} MiB folder, cached": statistics.median(
                timed(arkor, folder_project, env) for _ in range(args.runs)
            ),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(map(len, results))
    for name, ms in results.items():
        print(f"{name:<{width}}  {ms:8.1f} ms")
    hub = results["build, Hub id (unpinned, offline)"]
    cached = results[f"build, {args.size_mib} MiB folder, cached"]
    print(
        f"\npinning, cold (cold build - Hub-id build) / hashing alone:  {(cold - hub) / hashing:5.2f}x"
    )
    print(f"cached build / Hub-id build:                                 {cached / hub:5.2f}x")
    print(f"cold build / cached build:                                   {cold / cached:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
