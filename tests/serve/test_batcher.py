"""The load-adaptive batcher on its own (no Ray): loops grow with load, a lone request does not wait, no key starves."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from serve.batcher import LoadAdaptiveBatcher


@dataclass(frozen=True)
class Job:
    key: str
    num_images: int
    name: str = ""


class Recorder:
    """A sampling loop that takes ``seconds`` and records which jobs ran together."""

    def __init__(self, seconds: float = 0.0, gate: threading.Event | None = None) -> None:
        self.seconds, self.gate, self.loops = seconds, gate, []

    def __call__(self, jobs: Sequence[Job]) -> list[str]:
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.seconds)
        self.loops.append([job.name for job in jobs])
        return [f"result of {job.name}" for job in jobs]


def gated(max_images: int) -> tuple[LoadAdaptiveBatcher[Job], Recorder, threading.Event]:
    """A batcher whose loops wait at the returned gate until it is set (``max_wait_s`` 0)."""
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    return LoadAdaptiveBatcher(recorder, max_images=max_images, max_wait_s=0.0), recorder, gate


async def held_first_loop(batcher: LoadAdaptiveBatcher[Job], job: Job) -> asyncio.Task:
    """``job`` submitted alone, its loop started (and held at the gate) when this returns."""
    task = asyncio.create_task(batcher.submit(job))
    await asyncio.sleep(0.05)
    return task


def test_requests_that_arrive_while_a_loop_runs_all_join_the_next_loop() -> None:
    batcher, recorder, gate = gated(256)

    async def scenario() -> list[str]:
        first = await held_first_loop(batcher, Job("a", 4, "first"))
        rest = [asyncio.create_task(batcher.submit(Job("a", 4, f"r{i}"))) for i in range(20)]
        await asyncio.sleep(0.05)
        assert batcher.queued == 20
        gate.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())
    assert recorder.loops == [["first"], [f"r{i}" for i in range(20)]]
    assert results[0] == "result of first" and results[5] == "result of r4"
    assert sum(map(len, recorder.loops)) == 21 and batcher.stats.largest_loop_images == 80


def test_a_lone_request_on_an_idle_replica_does_not_wait_for_company() -> None:
    batcher = LoadAdaptiveBatcher(Recorder(), max_images=256, max_wait_s=2.0)

    async def one() -> float:
        start = time.monotonic()
        await batcher.submit(Job("a", 4, "alone"))
        return time.monotonic() - start

    assert asyncio.run(one()) < 0.5  # far below max_wait_s: the last loop served one request, one is here


def test_after_a_loop_the_next_waits_briefly_for_its_clients_to_come_back() -> None:
    recorder = Recorder(seconds=0.4)  # a loop long enough that a quarter of it covers the clients' return
    batcher = LoadAdaptiveBatcher(recorder, max_images=256, max_wait_s=1.0)

    async def scenario() -> None:
        await asyncio.gather(*(batcher.submit(Job("a", 4, f"x{i}")) for i in range(8)))  # one loop of 8 (queued together)
        first = asyncio.create_task(batcher.submit(Job("a", 4, "y0")))
        await asyncio.sleep(0.05)  # the others come back a moment later, as clients of the last loop do
        await asyncio.gather(first, *(batcher.submit(Job("a", 4, f"y{i}")) for i in range(1, 8)))

    asyncio.run(scenario())
    assert [len(loop) for loop in recorder.loops] == [8, 8]
    assert batcher.stats.collect_wait_s < 0.2  # it waited for the seven, not for the whole budget


def test_a_half_that_queued_behind_a_loop_merges_with_the_half_that_comes_back() -> None:
    gate = threading.Event()
    recorder = Recorder(seconds=0.2, gate=gate)
    batcher = LoadAdaptiveBatcher(recorder, max_images=256, max_wait_s=1.0)

    async def client(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        for round_ in range(3):
            await batcher.submit(Job("a", 4, f"{name}{round_}"))

    async def scenario() -> None:
        clients = [asyncio.create_task(client(f"early{i}-", 0.0)) for i in range(4)]
        await asyncio.sleep(0.05)  # the early half's first loop holds at the gate; the late half queues behind it
        clients += [asyncio.create_task(client(f"late{i}-", 0.0)) for i in range(4)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*clients)

    asyncio.run(scenario())
    sizes = [len(loop) for loop in recorder.loops]
    # the late half queued behind the early half's first loop; the next loop waits for the early half to come back
    assert sizes[:3] == [4, 8, 8], sizes


def test_the_oldest_key_goes_first_and_loops_never_exceed_max_images() -> None:
    batcher, recorder, gate = gated(10)

    async def scenario() -> None:
        blocker = await held_first_loop(batcher, Job("z", 1, "blocker"))
        jobs = [Job("a", 4, "a1"), Job("b", 4, "b1"), Job("a", 4, "a2"), Job("a", 4, "a3"), Job("b", 4, "b2")]
        tasks = []
        for job in jobs:
            tasks.append(asyncio.create_task(batcher.submit(job)))
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(blocker, *tasks)

    asyncio.run(scenario())
    assert recorder.loops == [["blocker"], ["a1", "a2"], ["b1", "b2"], ["a3"]]


def test_a_caller_that_gave_up_is_not_sampled_and_an_error_reaches_every_caller_of_its_loop() -> None:
    batcher, recorder, gate = gated(256)

    async def scenario() -> None:
        blocker = await held_first_loop(batcher, Job("a", 1, "blocker"))
        gone = asyncio.create_task(batcher.submit(Job("a", 1, "gone")))
        kept = asyncio.create_task(batcher.submit(Job("a", 1, "kept")))
        await asyncio.sleep(0.01)
        gone.cancel()
        gate.set()
        await asyncio.gather(blocker, kept)

    asyncio.run(scenario())
    assert recorder.loops == [["blocker"], ["kept"]]

    def broken(jobs: Sequence[Job]) -> list[str]:
        raise RuntimeError("out of memory")

    failing = LoadAdaptiveBatcher(broken, max_images=8)

    async def both() -> list[object]:
        return await asyncio.gather(failing.submit(Job("a", 1)), failing.submit(Job("a", 1)), return_exceptions=True)

    assert [str(error) for error in asyncio.run(both())] == ["out of memory", "out of memory"]


def test_bad_settings_are_refused_and_a_job_larger_than_a_loop_runs_alone() -> None:
    with pytest.raises(ValueError, match="max_images"):
        LoadAdaptiveBatcher(Recorder(), max_images=0)
    recorder = Recorder()
    batcher = LoadAdaptiveBatcher(recorder, max_images=8)

    async def scenario() -> list[str]:
        return await asyncio.gather(batcher.submit(Job("a", 9, "big")), batcher.submit(Job("a", 2, "small")))

    assert asyncio.run(scenario()) == ["result of big", "result of small"]
    assert recorder.loops == [["big"], ["small"]]
