"""The plane process never imports the ML stack: inference runs in its worker process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "peft", "datasets", "accelerate")

PROBE = """\
import json, sys
sys.path.insert(0, {root!r})
from tests.server.conftest import FAKE_WORKER
from tests.utils.plane import running_plane, sign_up, upload, wait_for_status

with running_plane({home!r}, worker_command=FAKE_WORKER) as plane:
    caller = sign_up(plane.url)
    source = {{"type": "file", "uploadId": upload(caller, b"{{}}\\n")}}
    job = caller.http.post("/v1/jobs", params=caller.scope, json={{
        "name": "events:2", "config": {{"model": "m", "datasetSource": source}}}}).json()["job"]
    wait_for_status(caller, job["id"], {{"completed"}})
    with caller.http.stream("GET", f"/v1/jobs/{{job['id']}}/events/stream",
                            params=caller.scope) as response:
        response.read()
    answer = caller.http.post("/v1/inference/chat", params=caller.scope, timeout=120, json={{
        "messages": [{{"role": "user", "content": "hi"}}], "baseModel": {model!r},
        "maxTokens": 3, "stream": False}})
    assert answer.status_code == 200, answer.text
    caller.close()
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)))
"""


@pytest.mark.slow
def test_the_plane_imports_no_ml_library(tiny_model: Path, tmp_path: Path) -> None:
    probe = PROBE.format(
        root=str(REPO_ROOT), home=str(tmp_path / "home"), model=str(tiny_model), heavy=HEAVY
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []
