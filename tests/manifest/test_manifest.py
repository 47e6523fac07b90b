"""``arkor build`` and the manifest reader: canonical bytes, digests, staleness, secrets."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import arkor
from arkor.errors import ManifestError
from arkor.manifest import MANIFEST_RELATIVE_PATH, check_staleness, read_manifest
from tests.utils.cli import CliRunner
from tests.utils.projects import (
    CHAT_ROW,
    MINIMAL_TOML,
    callbacks_project,
    minimal_project,
    write,
    write_jsonl,
)

CALLBACKS_TOML = MINIMAL_TOML + '\n[trainer.callbacks]\non_log = "demo_pkg.callbacks:on_log"\n'

BLOB_TOML = """\
[trainer]
name = "demo"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
max_steps = 10

[trainer.dataset]
type = "blob"
url = "https://example.com/data/train.jsonl"
token = "${env:ARKOR_TEST_DATASET_TOKEN}"
"""

EXTENDS_TOML = """\
extends = "configs/base.toml"

[trainer]
name = "demo"
max_steps = 10
"""

BASE_TOML = """\
[trainer]
name = "base"
model = "HuggingFaceTB/SmolLM2-135M-Instruct"
learning_rate = 1e-4

[trainer.dataset]
type = "file"
path = "../data/train.jsonl"
"""

WIRE_KEYS = {
    "model",
    "datasetSource",
    "datasetFormat",
    "maxSteps",
    "numTrainEpochs",
    "learningRate",
    "batchSize",
    "optim",
    "lrSchedulerType",
    "weightDecay",
    "warmupSteps",
    "loggingSteps",
    "saveSteps",
    "evalSteps",
    "loraR",
    "loraAlpha",
    "loraDropout",
    "loraTargetModules",
    "maxLength",
    "loadIn4bit",
    "trainOnResponsesOnly",
    "precision",
    "packing",
    "seed",
    "dryRun",
    "strictStack",
}
PIN_KEYS = {"modelPin", "buildStack"}
"""Present when build could resolve them (a Hub commit, the engine extra installed)."""


def manifest_file(root: Path) -> Path:
    return root / MANIFEST_RELATIVE_PATH


def manifest_data(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manifest_file(root).read_text(encoding="utf-8"))
    return data


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_ok(cli: CliRunner, *args: str) -> bytes:
    """Run ``arkor build`` and return the manifest's bytes, failing with its stderr otherwise."""
    result = cli("build", *args)
    assert result.exit_code == 0, result.stderr
    return manifest_file(Path.cwd()).read_bytes()


# --- canonical, reproducible bytes -------------------------------------------------------------


def test_manifest_is_canonical_json(project: Path, cli: CliRunner) -> None:
    """Sorted keys, two-space indent and one trailing newline make the bytes a function of the data."""
    minimal_project(project)
    text = build_ok(cli).decode("utf-8")
    expected = json.dumps(
        json.loads(text), sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False
    )
    assert text == expected + "\n"
    assert not text.endswith("\n\n")


def test_building_twice_gives_identical_bytes(project: Path, cli: CliRunner) -> None:
    """Same inputs, same bytes: the manifest is a lockfile that diffs cleanly."""
    minimal_project(project, CALLBACKS_TOML)
    callbacks_project(project, "def on_log(ctx):\n    pass\n")
    first = build_ok(cli)
    second = build_ok(cli)
    assert first == second


def test_second_build_reports_up_to_date(project: Path, cli: CliRunner) -> None:
    """An unchanged rebuild says so in its JSON output instead of claiming a change."""
    minimal_project(project)
    assert json.loads(cli("build", "--json").stdout)["changed"] is True
    assert json.loads(cli("build", "--json").stdout)["changed"] is False


def test_copied_project_builds_to_the_same_bytes(
    project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths are recorded relative to the project, so the folder it lives in does not matter."""
    minimal_project(project, CALLBACKS_TOML)
    callbacks_project(project, "def on_log(ctx):\n    pass\n")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(project, copy)
    original = build_ok(cli)
    monkeypatch.chdir(copy)
    assert build_ok(cli) == original


def test_build_json_output_parses(project: Path, cli: CliRunner) -> None:
    """``--json`` prints one document naming the manifest and its digest."""
    minimal_project(project)
    result = cli("build", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert Path(data["manifest"]).resolve() == manifest_file(project).resolve()
    assert data["digest"] == manifest_data(project)["digest"]


def test_build_prints_a_short_summary(project: Path, cli: CliRunner) -> None:
    """The text summary names the manifest, the trainer, the model and the dataset."""
    minimal_project(project)
    result = cli("build")
    assert result.exit_code == 0, result.stderr
    assert ".arkor/build/manifest.json" in result.stdout
    assert "demo" in result.stdout
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in result.stdout
    assert "data/train.jsonl (3 rows, chat)" in result.stdout


# --- digest and version ------------------------------------------------------------------------


def test_digest_covers_the_body_and_verifies(project: Path, cli: CliRunner) -> None:
    """The digest is sha256 over the compact canonical body, and ``read_manifest`` accepts it."""
    minimal_project(project)
    build_ok(cli)
    data = manifest_data(project)
    digest = data.pop("digest")
    compact = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert digest == "sha256:" + hashlib.sha256(compact.encode("utf-8")).hexdigest()
    manifest = read_manifest(manifest_file(project))
    assert manifest.digest == digest
    assert manifest.job.config.max_steps == 10


def test_read_manifest_defaults_to_the_working_folder(project: Path, cli: CliRunner) -> None:
    """With no path, the reader looks in ``./.arkor/build/manifest.json``."""
    minimal_project(project)
    build_ok(cli)
    assert read_manifest().digest == manifest_data(project)["digest"]


def test_hand_edited_manifest_is_refused(project: Path, cli: CliRunner) -> None:
    """Changing one value (still valid JSON) breaks the digest; the error says to rebuild."""
    minimal_project(project)
    path = manifest_file(project)
    text = build_ok(cli).decode("utf-8")
    assert '"maxSteps": 10,' in text
    path.write_text(text.replace('"maxSteps": 10,', '"maxSteps": 11,'), encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(ManifestError, match="digest") as caught:
        read_manifest(path)
    assert "`arkor build`" in str(caught.value)
    assert caught.value.exit_code == 2


def test_hand_edited_manifest_reads_without_verification(project: Path, cli: CliRunner) -> None:
    """``verify=False`` is the explicit escape hatch: the edited value is then what is read."""
    minimal_project(project)
    path = manifest_file(project)
    text = build_ok(cli).decode("utf-8")
    path.write_text(text.replace('"maxSteps": 10,', '"maxSteps": 11,'), encoding="utf-8")
    assert read_manifest(path, verify=False).job.config.max_steps == 11


def test_invalid_json_manifest_is_refused(project: Path, cli: CliRunner) -> None:
    """A truncated manifest is reported as not JSON, with the fix."""
    minimal_project(project)
    path = manifest_file(project)
    text = build_ok(cli).decode("utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid JSON") as caught:
        read_manifest(path)
    assert "`arkor build`" in str(caught.value)


def test_too_new_manifest_version_is_refused(project: Path, cli: CliRunner) -> None:
    """A manifest from a newer Arkor names both versions and says to upgrade."""
    minimal_project(project)
    path = manifest_file(project)
    build_ok(cli)
    data = manifest_data(project)
    newer = data["manifestVersion"] + 1
    data["manifestVersion"] = newer
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match=f"version {newer}") as caught:
        read_manifest(path)
    assert "Upgrade arkor" in str(caught.value)


def test_missing_manifest_says_to_build(project: Path) -> None:
    """Reading before building points at ``arkor build``."""
    with pytest.raises(ManifestError, match="`arkor build`"):
        read_manifest(manifest_file(project))


# --- staleness ---------------------------------------------------------------------------------


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


STALENESS_EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    "config": (lambda root: _append(root / "arkor.toml", "# edited\n"), "arkor.toml"),
    "extended": (
        lambda root: _append(root / "configs" / "base.toml", "# edited\n"),
        "configs/base.toml",
    ),
    "callback": (
        lambda root: _append(root / "demo_pkg" / "callbacks.py", "# edited\n"),
        "demo_pkg/callbacks.py",
    ),
    "dataset": (
        lambda root: _append(root / "data" / "train.jsonl", json.dumps(CHAT_ROW) + "\n"),
        "data/train.jsonl",
    ),
    "deleted dataset": (
        lambda root: (root / "data" / "train.jsonl").unlink(),
        "data/train.jsonl (missing)",
    ),
}


def _staleness_project(root: Path) -> None:
    write(
        root,
        "arkor.toml",
        EXTENDS_TOML + '\n[trainer.callbacks]\non_log = "demo_pkg.callbacks:on_log"\n',
    )
    write(root, "configs/base.toml", BASE_TOML)
    write_jsonl(root, "data/train.jsonl", [CHAT_ROW] * 3)
    callbacks_project(root, "def on_log(ctx):\n    pass\n")


def test_fresh_manifest_is_not_stale(project: Path, cli: CliRunner) -> None:
    """Right after a build nothing has changed."""
    _staleness_project(project)
    build_ok(cli)
    staleness = check_staleness(read_manifest(manifest_file(project)), project)
    assert not staleness.stale
    assert staleness.changed == []


@pytest.mark.parametrize("edit", list(STALENESS_EDITS), ids=list(STALENESS_EDITS))
def test_staleness_reports_what_changed(project: Path, cli: CliRunner, edit: str) -> None:
    """Every digested input is watched; the message names it and says to run ``arkor build``."""
    _staleness_project(project)
    build_ok(cli)
    change, expected = STALENESS_EDITS[edit]
    change(project)
    staleness = check_staleness(read_manifest(manifest_file(project)), project)
    assert staleness.stale
    assert staleness.changed == [expected]
    message = staleness.message(manifest_file(project))
    assert expected in message
    assert "`arkor build`" in message


# --- the job config ----------------------------------------------------------------------------


def test_defaults_are_filled_in_the_job_config(project: Path, cli: CliRunner) -> None:
    """The manifest shows every value the run will use, including ones the config left out."""
    minimal_project(project)
    build_ok(cli)
    config = manifest_data(project)["job"]["config"]
    expected = {  # the defaults arkor.toml.example documents
        "learningRate": 2e-4,
        "batchSize": 4,
        "optim": "adamw_torch",
        "lrSchedulerType": "linear",
        "weightDecay": 0.0,
        "warmupSteps": 0,
        "loggingSteps": 10,
        "saveSteps": 100,
        "evalSteps": 100,
        "numTrainEpochs": 1.0,
        "trainOnResponsesOnly": True,
        "seed": 42,
        "dryRun": False,
        "loraR": 16,
        "loraAlpha": 16,
        "loraDropout": 0.0,
        "loraTargetModules": "all-linear",
        "maxLength": 1024,
        "loadIn4bit": False,
        "precision": "auto",
        "packing": True,
    }
    assert {key: config[key] for key in expected} == expected


def test_eval_steps_default_to_save_steps(project: Path, cli: CliRunner) -> None:
    """Without ``eval_steps``, evaluation follows the checkpoint cadence the config chose."""
    minimal_project(
        project, MINIMAL_TOML.replace("max_steps = 10\n", "max_steps = 10\nsave_steps = 7\n")
    )
    build_ok(cli)
    config = manifest_data(project)["job"]["config"]
    assert config["saveSteps"] == 7
    assert config["evalSteps"] == 7


def test_job_config_uses_the_camel_case_wire_keys(project: Path, cli: CliRunner) -> None:
    """The job config is PROTOCOL.md's JobConfig as sent on the wire, key for key."""
    minimal_project(project)
    build_ok(cli)
    job = manifest_data(project)["job"]
    assert job["name"] == "demo"
    assert set(job["config"]) - PIN_KEYS == WIRE_KEYS
    assert job["config"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert job["config"]["maxSteps"] == 10


def test_values_from_the_config_reach_the_wire_keys(project: Path, cli: CliRunner) -> None:
    """Each snake_case setting lands under its camelCase key, ``loadIn4bit`` included."""
    config = (
        MINIMAL_TOML.replace(
            "max_steps = 10\n",
            "max_steps = 10\ndataset_split = 0.1\ntrain_on_responses_only = false\n",
        )
        + "\n[trainer.lora]\nr = 8\nalpha = 32\nmax_length = 256\nload_in_4bit = true\n"
    )
    minimal_project(project, config)
    build_ok(cli)
    wire = manifest_data(project)["job"]["config"]
    assert wire["datasetSplit"] == 0.1
    assert wire["trainOnResponsesOnly"] is False
    assert (wire["loraR"], wire["loraAlpha"], wire["maxLength"], wire["loadIn4bit"]) == (
        8,
        32,
        256,
        True,
    )


def test_file_dataset_is_frozen_with_its_digest(project: Path, cli: CliRunner) -> None:
    """The dataset entry and the wire source both carry the file's sha256."""
    minimal_project(project, rows=4)
    build_ok(cli)
    data = manifest_data(project)
    dataset_file = project / "data" / "train.jsonl"
    digest = sha256_of(dataset_file)
    assert data["dataset"] == {
        "type": "file",
        "path": "data/train.jsonl",
        "sha256": digest,
        "size": dataset_file.stat().st_size,
        "rows": 4,
        "fileFormat": "jsonl",
    }
    assert data["job"]["config"]["datasetSource"] == {
        "type": "file",
        "path": "data/train.jsonl",
        "sha256": digest,
    }


def test_sources_include_extended_files_with_their_digests(project: Path, cli: CliRunner) -> None:
    """Every file that went into the config is listed, with the sha256 of its bytes."""
    _staleness_project(project)
    build_ok(cli)
    assert manifest_data(project)["sources"] == [
        {"path": "arkor.toml", "role": "config", "sha256": sha256_of(project / "arkor.toml")},
        {
            "path": "configs/base.toml",
            "role": "extends",
            "sha256": sha256_of(project / "configs" / "base.toml"),
        },
    ]
    config = manifest_data(project)["job"]["config"]
    assert config["learningRate"] == 1e-4
    assert manifest_data(project)["job"]["name"] == "demo"


def test_set_overrides_are_recorded_and_applied(project: Path, cli: CliRunner) -> None:
    """``--set`` wins over the file, and the manifest says which overrides made it."""
    minimal_project(project)
    build_ok(cli, "--set", "trainer.max_steps=5", "--set", "trainer.dry_run=true")
    data = manifest_data(project)
    assert data["overrides"] == ["trainer.max_steps=5", "trainer.dry_run=true"]
    assert data["job"]["config"]["maxSteps"] == 5
    assert data["job"]["config"]["dryRun"] is True


def test_override_changes_the_bytes(project: Path, cli: CliRunner) -> None:
    """A build with an override is a different build."""
    minimal_project(project)
    plain = build_ok(cli)
    assert build_ok(cli, "--set", "trainer.max_steps=5") != plain


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("exported", [True, False], ids=["env set", "env unset"])
def test_token_stays_an_env_reference(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exported: bool
) -> None:
    """The manifest keeps ``${env:NAME}``, never the value, and lists the secret the run needs."""
    secret = "tok-" + hashlib.sha256(b"arkor").hexdigest()[:24]
    if exported:
        monkeypatch.setenv("ARKOR_TEST_DATASET_TOKEN", secret)
    else:
        monkeypatch.delenv("ARKOR_TEST_DATASET_TOKEN", raising=False)
    write(project, "arkor.toml", BLOB_TOML)
    raw = build_ok(cli)
    assert secret.encode() not in raw
    data = json.loads(raw)
    assert data["job"]["config"]["datasetSource"] == {
        "type": "blob",
        "url": "https://example.com/data/train.jsonl",
        "token": "${env:ARKOR_TEST_DATASET_TOKEN}",
    }
    assert data["secrets"] == [{"path": "trainer.dataset.token", "env": "ARKOR_TEST_DATASET_TOKEN"}]
    assert data["dataset"] == {"type": "blob", "url": "https://example.com/data/train.jsonl"}


def test_references_in_a_blob_url_stay_references(
    project: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed download URL keeps its ``${env:...}`` parts; every variable is listed once."""
    monkeypatch.setenv("ARKOR_TEST_SIG", "sig-value-never-frozen")
    monkeypatch.setenv("ARKOR_TEST_DATASET_TOKEN", "token-value-never-frozen")
    url = "https://example.com/train.jsonl?sig=${env:ARKOR_TEST_SIG}&again=${env:ARKOR_TEST_SIG}"
    write(project, "arkor.toml", BLOB_TOML.replace("https://example.com/data/train.jsonl", url))
    raw = build_ok(cli)
    assert b"never-frozen" not in raw
    data = json.loads(raw)
    assert data["job"]["config"]["datasetSource"]["url"] == url
    assert data["secrets"] == [
        {"path": "trainer.dataset.token", "env": "ARKOR_TEST_DATASET_TOKEN"},
        {"path": "trainer.dataset.url", "env": "ARKOR_TEST_SIG"},
    ]


def test_literal_token_is_refused_with_the_fix(project: Path, cli: CliRunner) -> None:
    """A secret written into the config is a config error that shows the ``${env:...}`` form."""
    write(
        project,
        "arkor.toml",
        BLOB_TOML.replace("${env:ARKOR_TEST_DATASET_TOKEN}", "hunter2-literal"),
    )
    result = cli("build")
    assert result.exit_code == 2
    assert "arkor.toml:9:" in result.stderr
    assert "trainer.dataset.token" in result.stderr
    assert "${env:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not manifest_file(project).exists()


# --- atomic writes -----------------------------------------------------------------------------


def test_failed_build_keeps_the_previous_manifest(project: Path, cli: CliRunner) -> None:
    """Breaking the config after a good build leaves the old manifest byte for byte, and no temp files."""
    config = minimal_project(project)
    good = build_ok(cli)
    config.write_text(MINIMAL_TOML.replace("max_steps = 10", 'max_steps = "ten"'), encoding="utf-8")
    result = cli("build")
    assert result.exit_code == 2
    assert "max_steps" in result.stderr
    assert manifest_file(project).read_bytes() == good
    assert sorted(p.name for p in manifest_file(project).parent.iterdir()) == ["manifest.json"]


def test_failed_first_build_writes_nothing(project: Path, cli: CliRunner) -> None:
    """A build that fails before any manifest exists leaves no build output at all."""
    minimal_project(project, MINIMAL_TOML.replace("data/train.jsonl", "data/missing.jsonl"))
    assert cli("build").exit_code == 2
    build_dir = manifest_file(project).parent
    assert not build_dir.exists() or list(build_dir.iterdir()) == []


def test_read_fresh_manifest_refuses_a_stale_build(project: Path) -> None:
    """The gate ``arkor start`` uses: fresh passes, an edited source is refused with the fix."""
    minimal_project(project)
    path = arkor.build()
    assert arkor.read_fresh_manifest(path).digest == arkor.read_manifest(path).digest
    config = project / "arkor.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("max_steps = 10", "max_steps = 12")
    )
    with pytest.raises(ManifestError) as error:
        arkor.read_fresh_manifest()
    assert "arkor.toml changed" in str(error.value)
    assert "arkor build" in str(error.value)
