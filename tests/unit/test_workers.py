"""The worker pool and admission (``serving.workers``) in one event loop: slots are given back on every path."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from serving.errors import Overloaded, RequestTimeout
from serving.workers import Admission, WorkerPool, WorkerStats

DEADLINE_S = 30.0  # generous: the machine is shared; nothing here waits for it unless a test fails


def blocker() -> tuple[threading.Event, threading.Event, Callable[[], str]]:
    """(started, release, work): ``work`` sets ``started`` and returns once ``release`` is set."""
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        assert release.wait(DEADLINE_S)
        return "done"
    return started, release, work


async def until_idle(pool: WorkerPool) -> WorkerStats:
    """Poll the pool's counters until nothing runs or waits (the worker thread decrements them)."""
    for _ in range(int(DEADLINE_S / 0.005)):
        stats = pool.stats()
        if stats.running == 0 and stats.queued == 0:
            return stats
        await asyncio.sleep(0.005)
    raise AssertionError(f"the pool never became idle: {pool.stats()}")


def run_scenario(threads: int, max_queued: int, scenario: Callable[[WorkerPool], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario(pool)`` in a new event loop on a new pool, then shut the pool down."""
    pool = WorkerPool(threads=threads, max_queued=max_queued)
    try:
        asyncio.run(scenario(pool))
    finally:
        pool.shutdown()


async def occupy(pool: WorkerPool) -> tuple[asyncio.Future[str], threading.Event]:
    """Start blocking work in the pool and wait until it runs: (its future, the event that ends it)."""
    started, release, work = blocker()
    busy = asyncio.ensure_future(pool.run(work, timeout_s=DEADLINE_S))
    assert await asyncio.to_thread(started.wait, DEADLINE_S)
    return busy, release


def test_runs_work_and_returns_its_value() -> None:
    async def scenario(pool: WorkerPool) -> None:
        assert await pool.run(lambda: 41 + 1, timeout_s=DEADLINE_S) == 42
        assert pool.stats() == WorkerStats(threads=2, running=0, queued=0, max_queued=0)

    run_scenario(2, 0, scenario)


def test_queued_work_that_times_out_gives_its_slot_back_and_never_runs() -> None:
    """The slot-leak mutation: a timed-out queued request that keeps its slot turns every later one into 503."""
    ran: list[int] = []

    async def scenario(pool: WorkerPool) -> None:
        for round_ in range(3):  # a leak of one slot per round would refuse the second round
            busy, release = await occupy(pool)
            with pytest.raises(RequestTimeout, match="within 0.05 s"):
                await pool.run(functools.partial(ran.append, round_), timeout_s=0.05)
            assert pool.stats().queued == 0
            release.set()
            assert await busy == "done"
            await until_idle(pool)
        assert await pool.run(lambda: "free", timeout_s=DEADLINE_S) == "free"

    run_scenario(1, 1, scenario)
    assert ran == []  # cancelled before it started: never run


def test_running_work_that_times_out_keeps_its_thread_until_it_ends() -> None:
    async def scenario(pool: WorkerPool) -> None:
        started, release, work = blocker()
        with pytest.raises(RequestTimeout, match="within 55 s"):  # the message names the request's limit
            await pool.run(work, timeout_s=0.05, request_timeout_s=55)
        assert started.is_set() and pool.stats().running == 1
        with pytest.raises(Overloaded):  # its thread is still busy: no extra thread, no queue
            await pool.run(lambda: "more", timeout_s=DEADLINE_S)
        release.set()
        await until_idle(pool)
        assert await pool.run(lambda: "next", timeout_s=DEADLINE_S) == "next"

    run_scenario(1, 0, scenario)


def test_beyond_threads_plus_queue_is_overloaded_and_a_passed_deadline_starts_nothing() -> None:
    ran: list[str] = []

    async def scenario(pool: WorkerPool) -> None:
        busy, release = await occupy(pool)
        waiting = asyncio.ensure_future(pool.run(lambda: "queued", timeout_s=DEADLINE_S))
        await asyncio.sleep(0)
        assert pool.stats().queued == 1
        with pytest.raises(Overloaded, match="1 requests are waiting"):
            await pool.run(lambda: ran.append("over"), timeout_s=DEADLINE_S)
        with pytest.raises(RequestTimeout):
            await pool.run(lambda: ran.append("late"), timeout_s=0.0)
        release.set()
        assert (await busy, await waiting) == ("done", "queued")
        await until_idle(pool)

    run_scenario(1, 1, scenario)
    assert ran == []


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def scenario(pool: WorkerPool) -> None:
        busy, release = await occupy(pool)
        waiter = asyncio.ensure_future(pool.run(lambda: "never", timeout_s=DEADLINE_S))
        await asyncio.sleep(0)
        waiter.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.stats().queued == 0
        release.set()
        await busy
        await until_idle(pool)

    run_scenario(1, 1, scenario)


def test_admission_counts_until_the_block_ends_even_on_errors() -> None:
    admission = Admission(limit=2)
    with admission.admit(), admission.admit():
        assert admission.admitted == 2
        with pytest.raises(Overloaded, match="2 requests"), admission.admit():
            pass
    assert admission.admitted == 0
    with pytest.raises(KeyError), admission.admit():
        raise KeyError("a failing request")
    assert admission.admitted == 0
    with pytest.raises(ValueError):
        Admission(limit=0)
    with pytest.raises(ValueError):
        WorkerPool(threads=0, max_queued=1)
