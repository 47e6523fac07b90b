"""Fixtures that start real language servers bound to Arkor's published JSON Schema.

Missing servers (or a missing schema) skip these tests locally; with
``ARKOR_REQUIRE_LSP=1`` (set in CI) they fail instead, so CI cannot pass by
silently skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ._client import JsonValue, LspClient, ServerRequestHandler
from ._editor import Editor

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMA = REPO_ROOT / "schemas" / "arkor.schema.json"

YAML_LANGUAGE_SERVER_INSTALL = "npm install --prefix .tools yaml-language-server@1.25.0"
TOMBI_INSTALL = "pip install tombi==1.9.6"

# Answers to yaml-language-server's workspace/configuration requests (the other
# sections it asks for, "[yaml]" and "editor", get null). The schema store and
# the Kubernetes CRD store are off so nothing is fetched from the network: the
# schema comes only from the document's modeline.
YAML_SETTINGS: dict[str, JsonValue] = {
    "yaml": {
        "validate": True,
        "completion": True,
        "hover": True,
        "schemaStore": {"enable": False},
        "kubernetesCRDStore": {"enable": False},
        "schemas": {},
    },
    "http": {"proxy": "", "proxyStrictSSL": False},
}


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI demands that these tests really run."""
    if os.environ.get("ARKOR_REQUIRE_LSP") == "1":
        pytest.fail(f"{reason} (ARKOR_REQUIRE_LSP=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def _executable_from(variable: str, candidates: list[Path | None], install: str) -> Path:
    """The server named by ``variable``, else the first existing candidate."""
    override = os.environ.get(variable)
    if override:
        path = Path(override)
        if not path.is_file():
            _unavailable(f"{variable}={override} does not exist")
        return path
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    _unavailable(f"language server not found; install it with `{install}` or set {variable}")


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The schema under test: ``ARKOR_LSP_SCHEMA`` or the repository's published file."""
    path = Path(os.environ.get("ARKOR_LSP_SCHEMA") or DEFAULT_SCHEMA).resolve()
    if not path.is_file():
        _unavailable(f"schema {path} does not exist; generate it first or set ARKOR_LSP_SCHEMA")
    return path


@pytest.fixture(scope="session")
def trainer_schema(schema_path: Path) -> dict[str, JsonValue]:
    """The schema of the ``trainer`` section, with its ``$ref`` followed."""
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    trainer: dict[str, JsonValue] = schema["properties"]["trainer"]
    while "$ref" in trainer:
        pointer = trainer["$ref"].removeprefix("#/").split("/")
        trainer = schema
        for part in pointer:
            trainer = trainer[part]
    return trainer


@pytest.fixture(scope="session")
def yaml_language_server() -> Path:
    """Path of the yaml-language-server launcher."""
    return _executable_from(
        "ARKOR_YAML_LANGUAGE_SERVER",
        [REPO_ROOT / ".tools" / "node_modules" / ".bin" / "yaml-language-server"],
        YAML_LANGUAGE_SERVER_INSTALL,
    )


@pytest.fixture(scope="session")
def tombi() -> Path:
    """Path of the tombi executable (its ``lsp`` subcommand is the TOML server)."""
    on_path = shutil.which("tombi")
    return _executable_from(
        "ARKOR_TOMBI",
        [
            Path(sys.executable).parent / "tombi",
            Path(on_path) if on_path else None,
            REPO_ROOT / ".tools" / "bin" / "tombi",
        ],
        TOMBI_INSTALL,
    )


def _answer_configuration(params: JsonValue) -> list[JsonValue]:
    """Answer each requested settings section (None for sections we don't set)."""
    return [YAML_SETTINGS.get(item.get("section", "")) for item in params["items"]]


def _ignore(params: JsonValue) -> None:
    """Accept a server request that needs no action from a test client."""


# Requests both servers may send that a test client just acknowledges.
_ACKNOWLEDGED: dict[str, ServerRequestHandler] = {
    "client/registerCapability": _ignore,
    "window/workDoneProgress/create": _ignore,
}


@pytest.fixture
def yaml_editor(yaml_language_server: Path, schema_path: Path, tmp_path: Path) -> Iterator[Editor]:
    """yaml-language-server, configured offline, opening ``arkor.yaml`` documents."""
    client = LspClient(
        [str(yaml_language_server), "--stdio"],
        cwd=tmp_path,
        handlers={**_ACKNOWLEDGED, "workspace/configuration": _answer_configuration},
    )
    with client:
        client.initialize(tmp_path)
        # Documents opened before the settings arrive would be validated with defaults.
        client.wait_for_server_request("workspace/configuration")
        yield Editor(
            client=client,
            directory=tmp_path,
            language_id="yaml",
            file_name="arkor.yaml",
            schema_header=f"# yaml-language-server: $schema={schema_path.as_uri()}\n",
        )


@pytest.fixture
def toml_editor(tombi: Path, schema_path: Path, tmp_path: Path) -> Iterator[Editor]:
    """tombi's language server, offline, opening ``arkor.toml`` documents."""
    client = LspClient(
        [str(tombi), "lsp", "--offline"],
        cwd=tmp_path,
        handlers=_ACKNOWLEDGED,
    )
    with client:
        client.initialize(tmp_path)
        yield Editor(
            client=client,
            directory=tmp_path,
            language_id="toml",
            file_name="arkor.toml",
            schema_header=f"#:schema {schema_path.as_uri()}\n",
        )
