"""`arkor eval` against a real run: the tiny model trained with an eval block on a plane.

The run's worker evaluates the final adapter against its base on the held-out rows; the
plane's inference worker runs the same eval again on demand. Same rows, same greedy
settings, same engine code: the same answers and numbers.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.cli.main import run
from arkor.evals import few_rows_warning
from tests.sdk.conftest import build_args
from tests.utils.cli import CliRunner
from tests.utils.plane import running_plane
from tests.utils.requires import need

need("fastapi", "these tests run the real plane")
need("torch", "these tests train for real")

pytestmark = pytest.mark.slow

EVAL_SETTINGS = [
    "trainer.eval.held_out=0.5",  # 45 of the blank template's 89 rows
    "trainer.eval.rows=40",
    "trainer.eval.batch_size=4",
    "trainer.eval.max_new_tokens=12",
    'trainer.eval.metrics=["exact_match", "rouge_l", "contains", "shipit.metrics:brevity"]',
]
METRICS = """\
def brevity(prediction, reference, row):
    return 1.0 if len(prediction) <= len(reference) else 0.0
"""
"""A custom metric: the project's code, which runs where `arkor eval` runs, not on the plane."""


@dataclass(frozen=True)
class Project:
    folder: Path
    home: Path
    plane_url: str
    job_id: str

    def enter(self, patch: pytest.MonkeyPatch) -> None:
        patch.setenv("ARKOR_HOME", str(self.home))
        patch.setenv("ARKOR_CLOUD_API_URL", self.plane_url)
        patch.chdir(self.folder)


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """`arkor init` (blank), `build` on the tiny model with an eval block, `start`."""
    folder = tmp_path_factory.mktemp("project")
    home = tmp_path_factory.mktemp("cli-home")
    with (
        running_plane(tmp_path_factory.mktemp("plane-home")) as plane,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("CI", "1")
        patch.setenv("NO_COLOR", "1")
        patch.setenv("ARKOR_TELEMETRY_DISABLED", "1")  # module fixtures come before isolation's
        patch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-hub-cache")))
        project = Project(folder, home, plane.url, "")
        project.enter(patch)
        try:
            assert run(["init", "--yes", "--template", "blank", "--name", "shipit"]) == 0
            (folder / "shipit" / "metrics.py").write_text(METRICS, encoding="utf-8")
            assert run(build_args(tiny_model, *EVAL_SETTINGS)) == 0
            assert run(["start"]) == 0
        finally:
            _forget_modules_under(folder)
        from arkor.sdk import open_session

        session = open_session()
        try:
            (job,) = session.client.list_jobs(session.scope)
        finally:
            session.close()
        assert job.status == "completed", job.error
        yield Project(folder, home, plane.url, job.id)


def _forget_modules_under(folder: Path) -> None:
    """`arkor start` imported the project's callbacks; other tests' projects reuse names."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).resolve().is_relative_to(folder.resolve()):
            del sys.modules[name]


@pytest.fixture
def inside(trained: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    trained.enter(monkeypatch)
    return trained


def evals(cli: CliRunner, job_id: str) -> list[dict[str, Any]]:
    shown = cli("jobs", "show", job_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    found: list[dict[str, Any]] = json.loads(shown.stdout)["evals"]
    return found


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """What a re-run must reproduce: the rows, every answer and score, the metrics."""
    samples = [
        {key: sample.get(key) for key in ("number", "sha256", "prompt", "reference", "base")}
        | {"adapter": sample["adapter"], "scores": sample["scores"]}
        for sample in event["samples"]
    ]
    keys = ("step", "rows", "heldOutRows", "heldOutSha256", "metrics", "warnings")
    return {key: event.get(key) for key in keys} | {"samples": samples}


def test_arkor_eval_reproduces_the_runs_final_eval(inside: Project, cli: CliRunner) -> None:
    (final,) = evals(cli, inside.job_id)
    assert final["final"] is True and "error" not in final, final.get("error")
    assert final["rows"] == 40 and final["heldOutRows"] == 45

    again = cli("eval", inside.job_id, "--json")
    assert again.exit_code == 0, again.stderr
    requested = json.loads(again.stdout)
    assert requested["requested"] is True and requested["final"] is False
    assert comparable(requested) == comparable(final)
    (brevity,) = [score for score in requested["metrics"] if score["name"].startswith("shipit.")]
    short = [len(sample["adapter"]) <= len(sample["reference"]) for sample in requested["samples"]]
    assert brevity == {
        "name": "shipit.metrics:brevity",
        "base": brevity["base"],
        "adapter": sum(short) / 40,
        "count": 40,
    }

    table = cli("eval", inside.job_id)
    assert table.exit_code == 0, table.stderr
    assert table.stdout.startswith("Eval of the adapter at step 6 on 40 held-out rows:\n")
    assert [line.split()[0] for line in table.stdout.splitlines()[1:6]] == [
        "metric",
        "exact_match",
        "rouge_l",
        "contains",
        "shipit.metrics:brevity",
    ]
    assert "evaluating job" in table.stderr and "evaluated:" in table.stderr

    stored = evals(cli, inside.job_id)
    assert stored[0] == final and len(stored) >= 3
    assert all(event["requested"] for event in stored[1:])
    assert stored[-2] == requested, "kept with the job as it was answered"


def test_rows_and_checkpoint_choose_what_is_evaluated(inside: Project, cli: CliRunner) -> None:
    few = cli("eval", inside.job_id, "--rows", "5", "--json")
    assert few.exit_code == 0, few.stderr
    event = json.loads(few.stdout)
    assert event["rows"] == 5 and len(event["samples"]) == 5
    assert event["heldOutRows"] == 45
    assert event["warnings"] == [few_rows_warning(5)]

    checkpoint = cli("eval", inside.job_id, "--checkpoint", "3", "--rows", "4", "--json")
    assert checkpoint.exit_code == 0, checkpoint.stderr
    event = json.loads(checkpoint.stdout)
    assert event["checkpoint"] == 3 and event["step"] == 3 and event["rows"] == 4


def test_one_eval_per_job_at_a_time(inside: Project) -> None:
    from arkor.sdk import open_session

    session = open_session()
    try:
        scope = {"orgSlug": session.scope.org_slug, "projectSlug": session.scope.project_slug}
        headers = {"Authorization": f"Bearer {session.client.token}"}
    finally:
        session.close()
    url = f"{inside.plane_url}/v1/jobs/{inside.job_id}/evals"
    lines: list[dict[str, Any]] = []
    first_progress = threading.Event()
    with httpx.Client(timeout=600, headers=headers, params=scope) as http:

        def first() -> None:
            with http.stream("POST", url, json={"rows": 40}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/x-ndjson"
                for line in response.iter_lines():
                    lines.append(json.loads(line))
                    first_progress.set()

        runner = threading.Thread(target=first)
        runner.start()
        assert first_progress.wait(300)
        second = http.post(url, json={})
        runner.join(600)
    assert second.status_code == 409
    assert "already running" in second.json()["error"]
    assert lines[0]["type"] == "progress" and lines[-1]["type"] == "event"
    assert all(line["type"] == "progress" for line in lines[:-1])
    assert [line["done"] for line in lines[:-1]] == sorted(line["done"] for line in lines[:-1])
    assert lines[-1]["event"]["requested"] is True
