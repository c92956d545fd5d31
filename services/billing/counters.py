"""Request counts in fixed windows, for the rate limit service: in Redis, or in this process's memory.

A window is ``[start, start + seconds)`` in Unix seconds; a count is kept per
key and window and counts from zero again in the next window. With Redis every
replica of the rate limit service adds to the same count, so every gateway
replica's requests are counted together; in memory (the embedded default, no
Redis configured) the count is this process's, which is every gateway's as
long as one replica serves them (``orchestrall up``).
"""

from __future__ import annotations

import logging
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.kit.errors import Unavailable

log = logging.getLogger(__name__)

#: Prefix of the rate limit service's keys in Redis (the database may be shared).
KEY_PREFIX = "orchestrall:ratelimit:"


class WindowCounters(Protocol):
    """Counts hits per key in fixed windows."""

    async def add(self, key: str, window_start: int, window_seconds: int, hits: int) -> int:
        """Adds ``hits`` to ``key``'s count in the window that starts at ``window_start``.

        Returns:
            The count after the addition.
        """
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...


class MemoryCounters:
    """Counts in this process: the current window's counts only, older windows are dropped.

    A request for a window older than the newest one seen (a clock that went back) counts
    in the newest window, so memory holds one window's keys at most.
    """

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    async def add(self, key: str, window_start: int, window_seconds: int, hits: int) -> int:
        """Adds ``hits`` to ``key``'s count in the window; returns the count after it."""
        if window_start > self._window:
            self._window = window_start
            self._counts = {}
        count = self._counts.get(key, 0) + hits
        self._counts[key] = count
        return count

    async def close(self) -> None:
        """Nothing to release."""


class RedisCounters:
    """Counts in Redis, one key per counted key and window, shared by every replica.

    Each addition is one round trip: ``INCRBY`` and ``EXPIRE`` in one ``MULTI``/``EXEC``
    transaction (a pipeline), so the count and its expiry are set together and no key
    outlives its window by more than one more window (kept that long for replicas whose
    clocks run a little behind). Replicas take the window from their own clocks; clocks
    kept by NTP differ by milliseconds, so a request at a window's edge may count in the
    neighbouring window.

    Args:
        url: ``redis://host:port/db`` (redis-py's URL forms, ``rediss://`` for TLS).
        timeout: Seconds a command may take before it fails (the gateway waits less anyway).
        keep_seconds: Seconds a key lives after its last addition; None for two windows. Tests
            that hold the service's clock still keep keys longer, since Redis expires them by
            its own clock.
    """

    def __init__(self, url: str, timeout: float = 0.5, keep_seconds: int | None = None) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._keep_seconds = keep_seconds

    async def add(self, key: str, window_start: int, window_seconds: int, hits: int) -> int:
        """Adds ``hits`` to ``key``'s count in the window; returns the count after it.

        Raises:
            Unavailable: ``RATE_COUNTERS_UNAVAILABLE``, Redis could not be reached or refused the
                commands (the gateway then lets the request through to its local bucket).
        """
        name = f"{KEY_PREFIX}{key}:{window_start}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, hits)
                pipe.expire(name, self._keep_seconds or 2 * window_seconds)
                count, _ = await pipe.execute()
        except RedisError as error:
            log.warning("rate limit counters unavailable: %s", error)
            raise Unavailable(
                "RATE_COUNTERS_UNAVAILABLE", "the rate limit counters cannot be reached; retry later"
            ) from None
        return int(count)

    async def ping(self) -> None:
        """Checks that Redis answers.

        Raises:
            redis.RedisError: It does not.
        """
        await self._redis.ping()

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._redis.aclose()


def counters_for(redis_url: str | None) -> WindowCounters:
    """Returns Redis counters at ``redis_url``, or memory counters when it is None."""
    return RedisCounters(redis_url) if redis_url else MemoryCounters()
