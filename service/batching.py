"""Dynamic micro-batching: requests that arrive together share one model call.

Each model has one ``MicroBatcher``. A request submits its items (posts to summarize, or post/summary pairs to
score) under a *key* (the generation settings: only requests with equal keys can share a call) and awaits its
results. A worker task takes the oldest waiting request, then keeps taking waiting requests with the same key until
the batch holds ``max_batch`` items or ``max_wait_s`` has passed since it started the batch, and runs the blocking
model call in a thread, so the event loop keeps serving other requests meanwhile.

The queue is bounded (``max_queue`` items waiting): a request that does not fit is refused at once with
``QueueFull`` (the service answers 503 with Retry-After) instead of waiting without bound. A request's items are
never split across calls. A client that goes away while waiting leaves the queue; one whose batch is already
running simply does not get the (discarded) result.

With ``max_batch=1`` every request runs alone (the "batching off" baseline of ``bench/service_load.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread


class QueueFull(Exception):
    """The batcher's queue has no room for the request; retry after ``retry_after`` seconds."""

    def __init__(self, name: str, waiting: int, limit: int, retry_after: int):
        super().__init__(f"model {name!r} is busy ({waiting} items waiting, limit {limit}); retry in {retry_after} s")
        self.name, self.waiting, self.limit, self.retry_after = name, waiting, limit, retry_after


class BatcherClosed(Exception):
    """The batcher was stopped (the service is shutting down)."""


@dataclass(eq=False)
class _Entry:
    key: Hashable
    items: list[Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


# run(key, items) -> one result per item, in order. Called in a worker thread.
RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]
# on_batch(n_items, n_requests, wait_s): a hook for metrics, called on the event loop before each model call.
OnBatch = Callable[[int, int, float], None]


class MicroBatcher:
    """A bounded queue plus worker task(s) that group same-key requests into one blocking call."""

    def __init__(
        self,
        run: RunBatch,
        *,
        name: str = "model",
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        retry_after_s: int = 1,
        workers: int = 1,
        on_batch: OnBatch | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.run = run
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.n_workers = workers
        self.on_batch = on_batch
        self._pending: deque[_Entry] = deque()
        self._waiting_items = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._seq = itertools.count()

    # ------------------------------------------------------------------------------------------------ lifecycle

    @property
    def depth(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return self._waiting_items

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._closed and all(not t.done() for t in self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._wakeup = asyncio.Event()
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"batcher-{self.name}-{i}") for i in range(self.n_workers)
        ]

    async def stop(self) -> None:
        """Stop the workers; requests still waiting fail with BatcherClosed."""
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        while self._pending:
            e = self._pending.popleft()
            if not e.future.done():
                e.future.set_exception(BatcherClosed(f"model {self.name!r} is shutting down"))
        self._waiting_items = 0

    # ------------------------------------------------------------------------------------------------ submit

    def unique_key(self) -> int:
        """A key no other request has: for requests that must run alone (e.g. seeded sampling)."""
        return -1 - next(self._seq)

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Queue ``items`` under ``key`` and wait for their results (one per item, in order)."""
        if self._closed or self._wakeup is None:
            raise BatcherClosed(f"model {self.name!r} is not running")
        items = list(items)
        if not items:
            return []
        if self._waiting_items + len(items) > self.max_queue:
            raise QueueFull(self.name, self._waiting_items, self.max_queue, self.retry_after_s)
        entry = _Entry(key, items, asyncio.get_running_loop().create_future())
        self._pending.append(entry)
        self._waiting_items += len(items)
        self._wakeup.set()
        try:
            return await entry.future
        except asyncio.CancelledError:
            # The client went away: leave the queue if the batch has not started.
            try:
                self._pending.remove(entry)
                self._waiting_items -= len(entry.items)
            except ValueError:
                pass
            raise

    # ------------------------------------------------------------------------------------------------ worker

    def _take(self, key: Hashable, room: int) -> list[_Entry]:
        """Remove and return waiting entries with ``key`` that fit in ``room`` items, oldest first."""
        taken, keep = [], deque()
        while self._pending:
            e = self._pending.popleft()
            if room > 0 and e.key == key and len(e.items) <= room:
                taken.append(e)
                room -= len(e.items)
            else:
                keep.append(e)
        self._pending = keep
        for e in taken:
            self._waiting_items -= len(e.items)
        return taken

    async def _collect(self) -> list[_Entry]:
        assert self._wakeup is not None
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        first = self._pending.popleft()
        self._waiting_items -= len(first.items)
        batch, size = [first], len(first.items)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            more = self._take(first.key, self.max_batch - size)
            batch += more
            size += sum(len(e.items) for e in more)
            remaining = deadline - loop.time()
            if size >= self.max_batch or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                more = self._take(first.key, self.max_batch - size)
                batch += more
                size += sum(len(e.items) for e in more)
                break
        if self._pending:
            self._wakeup.set()  # other keys are waiting: let a worker (maybe this one, next) pick them up
        return batch

    async def _worker(self) -> None:
        while True:
            batch = await self._collect()
            live = [e for e in batch if not e.future.done()]
            if not live:
                continue
            items = [x for e in live for x in e.items]
            now = time.perf_counter()
            if self.on_batch is not None:
                self.on_batch(len(items), len(live), max(now - e.enqueued for e in live))
            try:
                results = await anyio.to_thread.run_sync(self.run, live[0].key, items)
                results = list(results)
                if len(results) != len(items):
                    raise RuntimeError(
                        f"batch function for {self.name!r} returned {len(results)} results for {len(items)} items"
                    )
            except Exception as exc:  # the model call failed: every request in the batch gets the error
                for e in live:
                    if not e.future.done():
                        e.future.set_exception(exc)
                continue
            start = 0
            for e in live:
                part = results[start : start + len(e.items)]
                start += len(e.items)
                if not e.future.done():
                    e.future.set_result(part)
