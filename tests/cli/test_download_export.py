"""`arkor jobs show`, `arkor jobs download` and `arkor export` against a real run on a plane.

One project trains the tiny model once for the module on a running plane with a home of
its own (so every file the commands get comes over HTTP); each test then works in that
project. A proxy that alters one file in transit proves the sha256 check refuses it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arkor._fs import sha256_file
from arkor.cli.main import run
from tests.sdk.conftest import build_args
from tests.utils.cli import CliRunner
from tests.utils.engine_answer import greedy_answer
from tests.utils.loopback import QuietHandler, serving
from tests.utils.plane import running_plane
from tests.utils.requires import need

need("fastapi", "the export tests run the real plane")
need("torch", "the export tests train for real")

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "say hello"}]


@dataclass(frozen=True)
class Project:
    """The module's project: its folder, the CLI's home, the plane and the trained job."""

    folder: Path
    home: Path
    plane_url: str
    artifacts: Path
    """The job's folder on the plane (the plane's disk, which the commands never read)."""
    job_id: str

    def enter(self, patch: pytest.MonkeyPatch, url: str | None = None) -> None:
        patch.setenv("ARKOR_HOME", str(self.home))
        patch.setenv("ARKOR_CLOUD_API_URL", url or self.plane_url)
        patch.chdir(self.folder)


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """`arkor init`, `build` and `start` on the tiny model (checkpoints at steps 3 and 6)."""
    folder = tmp_path_factory.mktemp("project")
    home = tmp_path_factory.mktemp("cli-home")
    with (
        running_plane(tmp_path_factory.mktemp("plane-home")) as plane,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("CI", "1")
        patch.setenv("NO_COLOR", "1")
        patch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-hub-cache")))
        project = Project(folder, home, plane.url, Path(), "")
        project.enter(patch)
        try:
            assert run(["init", "--yes", "--template", "blank", "--name", "shipit"]) == 0
            assert run(build_args(tiny_model)) == 0
            assert run(["start"]) == 0
        finally:
            _forget_modules_under(folder)
        from arkor.sdk import open_session

        session = open_session()
        try:
            (job,) = session.client.list_jobs(session.scope)
        finally:
            session.close()
        yield Project(folder, home, plane.url, plane.settings.artifacts_dir / job.id, job.id)


def _forget_modules_under(folder: Path) -> None:
    """`arkor start` imported the project's callbacks; other tests' projects reuse names."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).resolve().is_relative_to(folder.resolve()):
            del sys.modules[name]


@pytest.fixture
def inside(trained: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """This test runs in the module's project, signed in as it was, on its plane."""
    trained.enter(monkeypatch)
    return trained


def test_show_has_the_metrics_checkpoints_and_artifacts(inside: Project, cli: CliRunner) -> None:
    shown = cli("jobs", "show", inside.job_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["metrics"]["step"] == 6 and document["metrics"]["trainLoss"] > 0
    assert document["checkpoints"] == [3, 6]
    sizes = {item["path"]: item["size"] for item in document["artifacts"]}
    weights = "adapter/adapter_model.safetensors"
    assert sizes[weights] == (inside.artifacts / weights).stat().st_size
    assert "checkpoints/checkpoint-3/optimizer.pt" in sizes
    assert document["trainedWith"]["stack"]["torch"]
    text = cli("jobs", "show", inside.job_id)
    assert "metrics    step 6, trainLoss" in text.stdout
    assert "checkpoints at steps 3, 6" in text.stdout
    assert weights in text.stdout and "trained with" in text.stdout


def test_download_gets_the_planes_files_byte_for_byte(
    inside: Project, cli: CliRunner, tiny_model: Path
) -> None:
    final = cli("jobs", "download", inside.job_id, "--json")
    assert final.exit_code == 0, final.stderr
    summary = json.loads(final.stdout)
    folder = Path(f"{inside.job_id}-adapter").resolve()
    assert summary["out"] == str(folder)
    names = {item["path"] for item in summary["files"]}
    assert names == {path.name for path in (inside.artifacts / "adapter").iterdir()}
    for item in summary["files"]:
        on_plane, _ = sha256_file(inside.artifacts / "adapter" / item["path"])
        assert item["sha256"] == on_plane == sha256_file(folder / item["path"])[0]
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == str(tiny_model)
    assert "downloading 6 files" in final.stderr

    checkpoint = cli("jobs", "download", inside.job_id, "--checkpoint", "3")
    assert checkpoint.exit_code == 0, checkpoint.stderr
    folder = Path(f"{inside.job_id}-checkpoint-3")
    assert (folder / "optimizer.pt").read_bytes() == (
        inside.artifacts / "checkpoints" / "checkpoint-3" / "optimizer.pt"
    ).read_bytes()
    assert "sha256" in checkpoint.stdout


def test_every_file_the_worker_wrote_has_one_mode(inside: Project) -> None:
    modes = {
        path.relative_to(inside.artifacts).as_posix(): path.stat().st_mode & 0o777
        for path in inside.artifacts.rglob("*")
        if path.is_file() and path.relative_to(inside.artifacts).parts[0] != "cache"
    }
    assert "adapter/adapter_model.safetensors" in modes and "adapter/tokenizer.json" in modes
    assert set(modes.values()) == {0o600}, modes


class _Corrupting(QuietHandler):
    """Forwards every request to the plane, flipping one byte of any adapter weights sent back."""

    upstream = ""

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        skipped = {"host", "content-length", "connection", "accept-encoding"}
        headers = {key: value for key, value in self.headers.items() if key.lower() not in skipped}
        answer = httpx.request(
            self.command, self.upstream + self.path, content=body, headers=headers, timeout=30
        )
        content = answer.content
        if self.path.split("?")[0].endswith("/adapter_model.safetensors"):
            middle = len(content) // 2
            content = content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1 :]
        self.send_response(answer.status_code)
        dropped = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        for key, value in answer.headers.items():
            if key.lower() not in dropped | {"date", "server"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def test_a_transfer_altered_on_the_way_is_refused(
    inside: Project, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    handler = type("Corrupting", (_Corrupting,), {"upstream": inside.plane_url})
    with serving(handler) as proxy:
        inside.enter(monkeypatch, url=proxy)
        shown = cli("jobs", "show", inside.job_id, "--json")
        refused = cli("jobs", "download", inside.job_id, "--out", str(downloads / "got"))
        exported = cli(
            "export", inside.job_id, "--format", "peft", "--out", str(downloads / "peft")
        )
    assert shown.exit_code == 0, "the proxy passes everything else through unaltered"
    assert refused.exit_code == 1
    assert "`adapter/adapter_model.safetensors` of job" in refused.stderr
    assert "arrived corrupted" in refused.stderr and "Traceback" not in refused.stderr
    assert exported.exit_code == 1 and "arrived corrupted" in exported.stderr
    assert list(downloads.iterdir()) == [], "nothing half-downloaded is left"


@pytest.mark.parametrize("fmt", ["peft", "merged", "gguf"])
def test_export_end_to_end(inside: Project, cli: CliRunner, tiny_model: Path, fmt: str) -> None:
    result = cli("export", inside.job_id, "--format", fmt, "--out", f"out-{fmt}", "--json")
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    summary = json.loads(line)
    out = Path(summary["out"])
    assert out == Path(f"out-{fmt}").resolve() and summary["format"] == fmt
    assert sorted(item["path"] for item in summary["files"]) == sorted(
        path.name for path in out.iterdir()
    )
    assert not list(out.parent.glob(f"out-{fmt}.tmp-*"))
    adapter = inside.artifacts / "adapter"
    if fmt == "peft":
        config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
        assert config["base_model_name_or_path"] == str(tiny_model)
        assert (out / "adapter_model.safetensors").read_bytes() == (
            adapter / "adapter_model.safetensors"
        ).read_bytes()
        assert (out / "tokenizer.json").is_file()
    elif fmt == "merged":
        assert "loading the base model" in result.stderr
        expected = greedy_answer(tiny_model, adapter, HELLO, 6)
        assert greedy_answer(out, None, HELLO, 6) == expected
    else:
        import gguf

        reader = gguf.GGUFReader(out / "shipit.gguf")
        assert reader.fields["general.architecture"].contents() == "llama"
        assert len(reader.tensors) == 20
        assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"


def test_export_refusals(inside: Project, cli: CliRunner) -> None:
    unknown = cli("export", "job_nope", "--format", "peft", "--out", "x")
    assert unknown.exit_code == 2
    assert "has no job `job_nope`" in unknown.stderr and "arkor jobs list" in unknown.stderr

    Path("taken").mkdir()
    Path("taken", "mine.txt").write_text("keep", encoding="utf-8")
    taken = cli("export", inside.job_id, "--format", "merged", "--out", "taken")
    assert taken.exit_code == 2 and "--force" in taken.stderr
    assert [path.name for path in Path("taken").iterdir()] == ["mine.txt"]

    no_step = cli("jobs", "download", inside.job_id, "--checkpoint", "99")
    assert no_step.exit_code == 2
    assert "no checkpoint at step 99: its checkpoints are at steps 3, 6" in no_step.stderr

    bad_format = cli("export", inside.job_id, "--format", "onnx", "--out", "y")
    assert bad_format.exit_code == 2


def test_a_job_without_a_completed_adapter_is_refused(inside: Project, cli: CliRunner) -> None:
    from arkor.cloud import JobCreate
    from arkor.sdk import open_session

    body = JobCreate.model_validate(
        {
            "name": "doomed",
            "config": {
                "model": "/nowhere/at/all",
                "datasetSource": {"type": "huggingface", "name": "nobody/nothing"},
                "maxSteps": 2,
            },
        }
    )
    session = open_session()
    try:
        job = session.client.create_job(session.scope, body)
        for _ in range(600):
            status = session.client.get_job(session.scope, job.id, include_events=False).job.status
            if status in ("failed", "cancelled"):
                break
            time.sleep(0.1)
    finally:
        session.close()
    refused = cli("export", job.id, "--format", "merged", "--out", "never")
    assert refused.exit_code == 1
    assert f"Job {job.id} is {status} and has no completed adapter" in refused.stderr
    assert "it saved no checkpoint" in refused.stderr
    assert not Path("never").exists()
