"""The version gate: 426 below the minimum, deprecation headers below the next one."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.utils.plane import client_headers, running_plane


def test_old_clients_get_426_and_deprecated_ones_get_headers(plane_home: Path) -> None:
    with running_plane(
        plane_home,
        min_client_version="0.1.0",
        deprecated_below="0.2",
        sunset="Wed, 01 Jul 2026 00:00:00 GMT",
    ) as plane:
        url = f"{plane.url}/v1/auth/cli/config"
        old = httpx.get(url, headers=client_headers(version="0.0.9"))
        assert old.status_code == 426
        assert old.json() == {
            "error": old.json()["error"],
            "minVersion": "0.1.0",
            "upgrade": "pip install --upgrade arkor",
        }
        assert "0.0.9" in old.json()["error"]

        deprecated = httpx.get(url, headers=client_headers(version="0.1.0"))
        assert deprecated.status_code == 200
        assert deprecated.headers["Deprecation"] == "true"
        assert deprecated.headers["Warning"].startswith('299 - "')
        assert deprecated.headers["Sunset"] == "Wed, 01 Jul 2026 00:00:00 GMT"

        current = httpx.get(url, headers=client_headers(version="0.2.0rc1"))
        assert current.status_code == 200 and "Deprecation" not in current.headers

        unknown_client = httpx.get(url)
        assert unknown_client.status_code == 200
