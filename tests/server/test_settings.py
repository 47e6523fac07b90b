"""Settings come from ARKOR_* variables, read by a function; bad values are usage errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from arkor.errors import UsageError
from arkor.server import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARKOR_HOME")
    settings = load_settings({})
    assert settings.home == Path.home() / ".arkor"
    assert settings.database_path == Path.home() / ".arkor" / "local" / "arkor.db"
    assert (settings.host, settings.port, settings.max_jobs) == ("127.0.0.1", 8765, 1)
    assert settings.ping_interval == 15
    assert settings.worker_command == (sys.executable, "-m", "arkor.engine.worker")
    assert settings.plane_url == "http://127.0.0.1:8765"


def test_variables_override(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ARKOR_HOME": str(tmp_path),
            "ARKOR_HOST": "0.0.0.0",
            "ARKOR_PORT": "9000",
            "ARKOR_MAX_JOBS": "3",
            "ARKOR_MIN_CLIENT_VERSION": "0.2.0",
            "ARKOR_DEPRECATED_BELOW": "0.3.0",
            "ARKOR_SSE_PING_SECONDS": "0.5",
            "ARKOR_WORKER_COMMAND": "/opt/py/bin/python -m arkor.engine.worker",
        }
    )
    assert settings.artifacts_dir == tmp_path / "local" / "artifacts"
    assert settings.max_jobs == 3 and settings.ping_interval == 0.5
    assert (settings.min_client_version, settings.deprecated_below) == ("0.2.0", "0.3.0")
    assert settings.worker_command == ("/opt/py/bin/python", "-m", "arkor.engine.worker")
    assert settings.plane_url == "http://127.0.0.1:9000"  # workers reach 0.0.0.0 on loopback


@pytest.mark.parametrize(
    "variables",
    [
        {"ARKOR_MAX_JOBS": "0"},
        {"ARKOR_PORT": "eighty"},
        {"ARKOR_PORT": "70000"},
        {"ARKOR_LEASE_TTL_SECONDS": "x"},
    ],
)
def test_bad_values_are_usage_errors(variables: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        load_settings(variables)
