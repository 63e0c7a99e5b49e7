"""Gathers the chat requests that episodes make concurrently into batches for a local engine.

Requests wait in a queue; one worker takes everything pending (up to `max_batch`) and runs the
engine's synchronous batch function in a thread, so the event loop keeps stepping other
episodes. Requests that arrive during a batch form the next one, so batches fill up by
themselves under load and a lone request waits only `wait_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")


@dataclass
class Pending(Generic[R, T]):
    """One queued request and the future its caller awaits."""

    request: R
    future: asyncio.Future[T] = field(repr=False)


class BatchQueue(Generic[R, T]):
    """Runs `run_batch(list_of_requests) -> list_of_results` over requests gathered from callers."""

    def __init__(
        self, run_batch: Callable[[Sequence[R]], list[T]], max_batch: int = 32, wait_s: float = 0.01
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches = 0
        """Batches run so far (for tests and benchmarks)."""
        self.batch_sizes: list[int] = []
        self._queue: asyncio.Queue[Pending[R, T]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, request: R) -> T:
        """Queue one request and wait for its result (the engine's exception is re-raised)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:
            self._queue = asyncio.Queue()
            self._loop = loop
            self._worker = None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(self._queue))
        fut: asyncio.Future[T] = loop.create_future()
        await self._queue.put(Pending(request, fut))
        return await fut

    async def _work(self, queue: asyncio.Queue[Pending[R, T]]) -> None:
        while True:
            first = await queue.get()
            if self.wait_s > 0 and queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.wait_s)
            batch = [first]
            while not queue.empty() and len(batch) < self.max_batch:
                batch.append(queue.get_nowait())
            batch = [p for p in batch if not p.future.cancelled()]
            if not batch:
                continue
            self.batches += 1
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run_batch, [p.request for p in batch])
            except Exception as e:  # the engine failed: every caller in the batch sees it
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)

    async def aclose(self) -> None:
        """Stop the worker (pending callers are cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        self._worker = None


def group_by(items: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, list[int]]:
    """Indices of `items` grouped by `key`, groups in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    return groups
