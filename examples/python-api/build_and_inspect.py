"""Load, build and inspect a config from Python, without the CLI.

python examples/python-api/build_and_inspect.py examples/pyproject/pyproject.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import arkor
from arkor.manifest import check_staleness, project_root_of


def main(config: Path) -> int:
    try:
        loaded = arkor.load_config(config, overrides=["trainer.max_steps=5"])
    except arkor.ConfigError as error:
        for issue in error.issues:
            print(f"{issue.location}: {issue.message}", file=sys.stderr)
        return 2
    print(f"{loaded.path.name}: {loaded.config.trainer.name} on {loaded.config.trainer.model}")
    manifest_path = arkor.build(config, ["trainer.max_steps=5"])
    manifest = arkor.read_manifest(manifest_path)
    print(f"manifest {manifest_path} digest {manifest.digest}")
    print(f"max steps {manifest.job.config.max_steps}, lora r {manifest.job.config.lora_r}")
    staleness = check_staleness(manifest, project_root_of(manifest_path))
    print("stale" if staleness.stale else "fresh")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "config",
        type=Path,
        help="the config to build: arkor.toml, arkor.yaml or a pyproject.toml with [tool.arkor]",
    )
    sys.exit(main(parser.parse_args().config))
