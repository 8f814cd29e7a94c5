"""Load-adaptive batching for one replica: what waits while a sampling loop runs joins the next loop.

``@serve.batch`` closes a batch ``batch_wait_timeout_s`` after its first request whether or not
the previous batch is still running, so under load it queues many small batches behind the one
that runs (on a GPU, 3.3 requests per loop where 64 would fit). Here one collector takes
requests only when the sampler is free:

- an idle replica starts a lone request at once (no fixed wait);
- requests that arrive while a loop runs all go into the next loop, so loops grow with load;
- when a loop of ``n`` requests ends with ``q`` queued, the next waits for ``q + n`` requests
  (the clients of the last loop sending their next one), at most ``max_wait_s`` and at most a
  quarter of the last loop's duration, so a steady load keeps its loops whole instead of
  splitting into halves that take turns;
- each loop serves the key (model, weights, sampler setting) of the oldest waiting request,
  with every queued request of that key up to ``max_images``, so no key starves (a request
  larger than ``max_images`` runs in a loop of its own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Batchable(Protocol):
    """What the batcher needs of a job: the key that decides who may share a loop, and its size."""

    @property
    def key(self) -> Hashable: ...

    @property
    def num_images(self) -> int: ...


Job = TypeVar("Job", bound=Batchable)


@dataclass
class _Waiting(Generic[Job]):
    job: Job
    future: asyncio.Future[Any]


@dataclass
class BatchStats:
    """What only the batcher knows, for /healthz: its largest loop and the time spent waiting for company (the loops,
    requests and images sampled are the caller's counters)."""

    largest_loop_images: int = 0
    collect_wait_s: float = 0.0


class LoadAdaptiveBatcher(Generic[Job]):
    """Runs ``run(jobs) -> results`` (one result per job, in order) in a worker thread, one loop at a time.

    ``await submit(job)`` returns that job's result. Jobs whose caller gave up (cancelled
    future) before their loop started are dropped. The queue is kept in arrival order.
    """

    WAIT_FRACTION = 0.25
    """The longest wait for company, as a fraction of the last loop's duration."""

    def __init__(self, run: Callable[[Sequence[Job]], Sequence[Any]], max_images: int, max_wait_s: float = 0.05) -> None:
        if max_images < 1 or max_wait_s < 0:
            raise ValueError(f"need max_images >= 1 and max_wait_s >= 0, got {max_images} and {max_wait_s}")
        self.run, self.max_images, self.max_wait_s = run, max_images, max_wait_s
        self.stats = BatchStats()
        self._queue: list[_Waiting[Job]] = []
        self._arrived: asyncio.Event | None = None
        self._collector: asyncio.Task[None] | None = None
        self._expected = 1  # requests the next loop waits for: those queued when the last ended, plus its own
        self._last_loop_s = 0.0

    async def submit(self, job: Job) -> Any:
        """The result of ``job``, computed in a loop with every compatible job that waits with it."""
        if self._collector is None or self._collector.done():
            self._arrived = asyncio.Event()
            self._collector = asyncio.get_running_loop().create_task(self._collect_forever())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(job, future))
        assert self._arrived is not None
        self._arrived.set()
        return await future

    @property
    def queued(self) -> int:
        """Requests waiting for a loop (not counting the loop that runs)."""
        return sum(not waiting.future.done() for waiting in self._queue)

    async def _collect_forever(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            self._queue = [waiting for waiting in self._queue if not waiting.future.done()]
            if not self._queue:
                continue
            await self._fill_up()
            batch = self._take_oldest_key()
            if not batch:
                continue
            await self._run_loop(batch)
            if self._queue:
                self._arrived.set()

    async def _fill_up(self) -> None:
        """Wait until the requests expected back are queued, or the loop would be full, or the wait budget is spent."""
        assert self._arrived is not None
        started = time.monotonic()
        deadline = started + min(self.max_wait_s, self.WAIT_FRACTION * self._last_loop_s)
        while (len(self._queue) < self._expected
               and sum(w.job.num_images for w in self._queue) < self.max_images):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        self.stats.collect_wait_s += time.monotonic() - started

    def _take_oldest_key(self) -> list[_Waiting[Job]]:
        """The oldest live request and every queued one of its key, in arrival order, up to ``max_images``."""
        live = [waiting for waiting in self._queue if not waiting.future.done()]
        if not live:
            self._queue = []
            return []
        oldest = live[0]  # the queue is in arrival order, and what a loop leaves keeps its place
        batch, images, rest = [oldest], oldest.job.num_images, []
        for waiting in live[1:]:
            if waiting.job.key == oldest.job.key and images + waiting.job.num_images <= self.max_images:
                batch.append(waiting)
                images += waiting.job.num_images
            else:
                rest.append(waiting)
        self._queue = rest
        return batch

    async def _run_loop(self, batch: list[_Waiting[Job]]) -> None:
        jobs = [waiting.job for waiting in batch]
        started = time.monotonic()
        try:
            results = await asyncio.to_thread(self.run, jobs)
        except Exception as error:  # noqa: BLE001 - every caller of the loop gets its error
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        finally:
            self._last_loop_s = time.monotonic() - started
            self._expected = self.queued + len(batch)
        self.stats.largest_loop_images = max(self.stats.largest_loop_images, sum(job.num_images for job in jobs))
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)
