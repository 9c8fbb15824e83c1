"""Retrying a read that failed for a passing reason, with jittered exponential backoff.

The store already fails over between an object's replicas within one read; what is left for
the loader is the moment when every replica is briefly away (a server restarting, a burst of
``503 SlowDown``, a connection reset). Such a read is tried again a few times, waiting
``base * factor**n`` seconds (at most ``cap``, with jitter so that many workers do not retry
in step), before its error reaches the consumer. Errors that say the data is missing, corrupt
or unreadable by design (a missing object, a checksum mismatch, an invalid key) are never
retried: the answer would not change.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tierstore.errors import (
    CatalogError,
    ChecksumMismatch,
    InvalidKey,
    NoReadableReplica,
    ObjectNotFound,
    TierError,
    TierUnavailable,
)

__all__ = ["NEVER", "RETRY", "Backoff", "is_transient", "retrying"]

T = TypeVar("T")

# Words in a backend's message that mark a failure as passing (S3 and HTTP status wording).
_TRANSIENT_WORDS = ("slowdown", "slow down", "serviceunavailable", "service unavailable",
                    "internalerror", "internal error", "requesttimeout", "throttl",
                    "short read", " 500", " 502", " 503", " 504", "connection reset",
                    "temporarily")


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How a passing failure is retried.

    Attributes
    ----------
    attempts : int, default 8
        Tries in all (1: never retry).
    base, factor, cap : float
        The wait before retry ``n`` (from 0) is ``min(cap, base * factor**n)`` seconds
        (0.1, 2.0 and 2.0 by default)...
    jitter : float, default 0.5
        ...times a random factor in ``[1 - jitter, 1]``, so that many workers do not retry
        in step.

    Raises
    ------
    ValueError
        If ``attempts`` or ``factor`` is under 1, ``base`` or ``cap`` is negative, or
        ``jitter`` is not within ``[0, 1]``.
    """

    attempts: int = 8
    base: float = 0.1
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.factor < 1 or self.cap < 0:
            raise ValueError("attempts must be at least 1, factor at least 1, base and cap "
                             "not negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Draw the wait before a retry.

        Parameters
        ----------
        retry : int
            The retry's number (0 for the first).
        rng : random.Random, optional
            Where the jitter is drawn from; the :mod:`random` module's generator if None.

        Returns
        -------
        float
            Seconds to wait: ``min(cap, base * factor**retry)`` times a random factor in
            ``[1 - jitter, 1]``.
        """
        wait = min(self.cap, self.base * self.factor ** retry)
        return wait * (1 - self.jitter * (rng or random).random())


RETRY = Backoff()  # the default: 8 tries over about 3.5-7 s (a gateway restarting)
NEVER = Backoff(attempts=1)


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same read again could succeed."""
    if isinstance(exc, ObjectNotFound | FileNotFoundError | ChecksumMismatch | InvalidKey |
                  PermissionError):
        return False
    if isinstance(exc, NoReadableReplica):
        return bool(exc.failures) and all(is_transient(e) for _, e in exc.failures)
    if isinstance(exc, TierUnavailable | CatalogError | TimeoutError | ConnectionError):
        return True  # a tier or the catalog briefly away (a server restarting)
    if isinstance(exc, TierError):
        text = f" {exc}".lower()
        return any(word in text for word in _TRANSIENT_WORDS)
    return False


async def retrying(attempt: Callable[[], Awaitable[T]], backoff: Backoff, *,
                   on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """``await attempt()``, tried again after a backoff while it fails transiently.

    ``on_retry(error, delay)`` is told of each retry; the last error is raised as it was.
    """
    for retry in range(backoff.attempts):
        try:
            return await attempt()
        except Exception as exc:
            if retry + 1 >= backoff.attempts or not is_transient(exc):
                raise
            delay = backoff.delay(retry)
            if on_retry is not None:
                on_retry(exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
