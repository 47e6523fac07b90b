#!/usr/bin/env bash
# Set up a virtual environment with the development tools, then run the whole test suite.
# The editor tests drive real language servers: tombi (from PyPI, in the dev extra) and
# yaml-language-server (from npm, into .tools/); ARKOR_REQUIRE_LSP=1 makes them fail
# instead of skip if either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
npm install --silent --no-audit --no-fund --prefix .tools yaml-language-server@1.25.0
ARKOR_REQUIRE_LSP=1 .venv/bin/python -m pytest "$@"
