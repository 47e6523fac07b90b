#!/usr/bin/env bash
# Install Arkor in a virtual environment, then create a project from the default template
# in a scratch folder, validate it and freeze it into .arkor/build/manifest.json.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$repo/.venv"
"$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo"
demo="$(mktemp -d "${TMPDIR:-/tmp}/arkor-demo.XXXXXX")"
cd "$demo"
"$repo/.venv/bin/arkor" init --yes
"$repo/.venv/bin/arkor" validate
"$repo/.venv/bin/arkor" build
echo
echo "Project and manifest in $demo"
