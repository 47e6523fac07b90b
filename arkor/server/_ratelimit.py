"""A token bucket per client address, in memory: limits reset when the plane restarts.

Enough for what it guards (anonymous sign-ins on one plane); planes sharing a database each
keep their own buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request

_MAX_CLIENTS = 10_000
"""Past this many addresses, those whose bucket has refilled are forgotten."""


class TokenBucket:
    """``burst`` requests at once per key, refilled at ``per_second``."""

    def __init__(
        self,
        *,
        burst: int,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one request for ``key``: 0 when allowed, else the seconds until one is."""
        now = self._clock()
        with self._lock:
            level = self._level(key, now)
            if level >= 1:
                self._buckets[key] = (level - 1, now)
                if len(self._buckets) > _MAX_CLIENTS:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1 - level) / self.per_second

    def _level(self, key: str, now: float) -> float:
        level, then = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), level + (now - then) * self.per_second)

    def _forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


_buckets_lock = threading.Lock()


def limit_per_address(
    request: Request,
    name: str,
    *,
    burst: int,
    per_minute: float,
    refusal: str,
    hint: str = "",
) -> None:
    """429 with ``Retry-After`` once the caller's address has spent the app's bucket ``name``.

    The message: ``refusal`` ("Too many sign-ins"), the limits, when to retry, ``hint``.
    Each bucket is made on first use and lives on the app's state (one per plane process).
    """
    state = request.app.state
    with _buckets_lock:
        buckets: dict[str, TokenBucket] = getattr(state, "rate_buckets", None) or {}
        state.rate_buckets = buckets
        bucket = buckets.get(name)
        if bucket is None:
            bucket = buckets[name] = TokenBucket(burst=burst, per_second=per_minute / 60)
    address = request.client.host if request.client is not None else "unknown"
    wait = bucket.take(address)
    if wait > 0:
        after = retry_after(wait)
        raise HTTPException(
            429,
            f"{refusal} from {address}: at most {burst} at once and {per_minute:g} a minute. "
            f"Retry in {after} s{hint}.",
            headers={"Retry-After": after},
        )
