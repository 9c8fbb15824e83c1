"""Many coroutines at once, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["bounded"]

T = TypeVar("T")
R = TypeVar("R")


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], jobs: int) -> list[R]:
    """``[await fn(item) for item in items]`` with at most ``jobs`` in flight, in order.

    The first failure cancels the work still in flight (each store operation rolls itself
    back) and is raised as itself, not as an exception group.
    """
    todo = iter(enumerate(items))
    results: dict[int, R] = {}

    async def worker() -> None:
        for index, item in todo:
            results[index] = await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, jobs)):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        raise _first(failed) from None
    return [results[index] for index in sorted(results)]


def _first(group: BaseExceptionGroup) -> BaseException:
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner
