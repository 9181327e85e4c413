"""The worker pool and admission (``serving.workers``) in one event loop: slots are given back on every path."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

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


def test_runs_work_and_returns_its_value() -> None:
    pool = WorkerPool(threads=2, max_queued=0)
    try:
        assert asyncio.run(pool.run(lambda: 41 + 1, timeout_s=DEADLINE_S)) == 42
        assert pool.stats() == WorkerStats(threads=2, running=0, queued=0, max_queued=0)
    finally:
        pool.shutdown()


def test_queued_work_that_times_out_gives_its_slot_back_and_never_runs() -> None:
    """The slot-leak mutation: a timed-out queued request that keeps its slot turns every later one into 503."""
    pool = WorkerPool(threads=1, max_queued=1)
    ran: list[int] = []

    async def scenario() -> None:
        for round_ in range(3):  # a leak of one slot per round would refuse the second round
            started, release, work = blocker()
            busy = asyncio.ensure_future(pool.run(work, timeout_s=DEADLINE_S))
            await asyncio.to_thread(started.wait, DEADLINE_S)
            with pytest.raises(RequestTimeout, match="within 0.05 s"):
                await pool.run(functools.partial(ran.append, round_), timeout_s=0.05)
            assert pool.stats().queued == 0
            release.set()
            assert await busy == "done"
            await until_idle(pool)
        assert await pool.run(lambda: "free", timeout_s=DEADLINE_S) == "free"

    try:
        asyncio.run(scenario())
        assert ran == []  # cancelled before it started: never run
    finally:
        pool.shutdown()


def test_running_work_that_times_out_keeps_its_thread_until_it_ends() -> None:
    pool = WorkerPool(threads=1, max_queued=0)

    async def scenario() -> None:
        started, release, work = blocker()
        with pytest.raises(RequestTimeout, match="within 55 s"):  # the message names the request's limit
            await pool.run(work, timeout_s=0.05, request_timeout_s=55)
        assert started.is_set() and pool.stats().running == 1
        with pytest.raises(Overloaded):  # its thread is still busy: no extra thread, no queue
            await pool.run(lambda: "more", timeout_s=DEADLINE_S)
        release.set()
        await until_idle(pool)
        assert await pool.run(lambda: "next", timeout_s=DEADLINE_S) == "next"

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_beyond_threads_plus_queue_is_overloaded_and_a_passed_deadline_starts_nothing() -> None:
    pool = WorkerPool(threads=1, max_queued=1)
    ran: list[str] = []

    async def scenario() -> None:
        started, release, work = blocker()
        busy = asyncio.ensure_future(pool.run(work, timeout_s=DEADLINE_S))
        await asyncio.to_thread(started.wait, DEADLINE_S)
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

    try:
        asyncio.run(scenario())
        assert ran == []
    finally:
        pool.shutdown()


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    pool = WorkerPool(threads=1, max_queued=1)

    async def scenario() -> None:
        started, release, work = blocker()
        busy = asyncio.ensure_future(pool.run(work, timeout_s=DEADLINE_S))
        await asyncio.to_thread(started.wait, DEADLINE_S)
        waiter = asyncio.ensure_future(pool.run(lambda: "never", timeout_s=DEADLINE_S))
        await asyncio.sleep(0)
        waiter.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.stats().queued == 0
        release.set()
        await busy
        await until_idle(pool)

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


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
