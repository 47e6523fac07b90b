"""Anonymous sign-ins are rate-limited per client address: 429 with ``Retry-After``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from arkor.errors import UsageError
from arkor.server import load_settings
from arkor.server._ratelimit import TokenBucket, retry_after
from tests.utils.plane import client_headers, running_plane


def mint(url: str, source: str = "127.0.0.1") -> httpx.Response:
    """``POST /v1/auth/anonymous`` from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, headers=client_headers()) as http:
        return http.post(f"{url}/v1/auth/anonymous", json={"kind": "cli"})


def test_minting_past_the_burst_is_429_with_retry_after(tmp_path: Path) -> None:
    with running_plane(tmp_path / "home", mint_burst=3, mint_per_minute=0.6) as plane:
        allowed = [mint(plane.url) for _ in range(3)]
        refused = mint(plane.url)
        elsewhere = mint(plane.url, source="127.0.0.2")  # another address has its own bucket
        me = httpx.get(f"{plane.url}/v1/me", headers=client_headers(allowed[0].json()["token"]))
    assert [answer.status_code for answer in allowed] == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 100
    message = refused.json()["error"]
    assert "Too many sign-ins from 127.0.0.1" in message and "at most 3 at once" in message
    assert "token" not in refused.json()
    assert elsewhere.status_code == 200
    assert me.status_code == 200  # signed-in identities are not limited


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=2, per_second=0.5, clock=lambda: now[0])
    assert [bucket.take("a"), bucket.take("a")] == [0.0, 0.0]
    assert bucket.take("a") == pytest.approx(2.0)
    now[0] = 1.0
    assert bucket.take("a") == pytest.approx(1.0)  # half a request refilled, half to go
    now[0] = 2.0
    assert bucket.take("a") == 0.0
    assert bucket.take("b") == 0.0
    now[0] = 100.0
    assert [bucket.take("a"), bucket.take("a"), bucket.take("a")][2] > 0  # capped at the burst
    assert retry_after(0.2) == "1" and retry_after(1.5) == "2"


def test_the_limits_are_settings() -> None:
    settings = load_settings({"ARKOR_MINT_BURST": "5", "ARKOR_MINT_PER_MINUTE": "2.5"})
    assert (settings.mint_burst, settings.mint_per_minute) == (5, 2.5)
    with pytest.raises(UsageError, match="ARKOR_MINT_BURST must be at least 1"):
        load_settings({"ARKOR_MINT_BURST": "0"})
