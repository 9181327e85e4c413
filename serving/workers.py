"""A fixed pool of worker threads for the requests' CPU/GPU work, counted honestly.

Request work (image reading, encoder, decoder, post-processing, serialising) runs in at most
``threads`` threads. A request waits in a bounded queue while every thread is busy; a
request that cannot even queue is refused at once (``Overloaded``, 503). A request whose
time runs out answers 503 at its deadline: if its work had not started, it is cancelled
and never runs; if it had, its thread keeps the slot until the work ends (its result,
such as an embedding, may still be cached), so a slow request never lets more threads
run than configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from serving.errors import Overloaded, RequestTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerStats:
    """``threads``: the pool size; ``running``: work in progress (including work whose
    request already timed out); ``queued``: work waiting for a thread."""

    threads: int
    running: int
    queued: int
    max_queued: int


class WorkerPool:
    """Runs blocking callables in ``threads`` threads with a queue of at most ``max_queued``."""

    def __init__(self, threads: int, max_queued: int) -> None:
        if threads <= 0 or max_queued < 0:
            raise ValueError("threads must be positive and max_queued >= 0")
        self.threads = threads
        self.max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sam-work")
        self._lock = threading.Lock()
        self._running = 0
        self._queued = 0

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(self.threads, self._running, self._queued, self.max_queued)

    async def run(self, work: Callable[[], T], timeout_s: float, request_timeout_s: float | None = None) -> T:
        """Run ``work`` in the pool within ``timeout_s`` (what is left of the request's
        ``request_timeout_s``, which the timeout message names); raise ``Overloaded`` or
        ``RequestTimeout`` (see module docstring)."""
        if timeout_s <= 0:  # the deadline passed while the body arrived: never start work nobody waits for
            raise RequestTimeout(f"the request did not finish within {request_timeout_s or timeout_s:g} s; retry")
        with self._lock:
            if self._running + self._queued >= self.threads + self.max_queued:
                raise Overloaded(f"all {self.threads} workers are busy and {self._queued} requests are waiting; "
                                 "retry shortly")
            self._queued += 1
        future: Future[T] = self._executor.submit(self._counted, work)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
        except TimeoutError as exc:
            if future.cancel():  # never started: it will not run, and it leaves the queue now
                with self._lock:
                    self._queued -= 1
            raise RequestTimeout(f"the request did not finish within {request_timeout_s or timeout_s:g} s; retry "
                              "(its embedding may be cached by then)") from exc
        except asyncio.CancelledError:  # the client went away: do not start work nobody waits for
            if future.cancel():
                with self._lock:
                    self._queued -= 1
            raise

    def _counted(self, work: Callable[[], T]) -> T:
        with self._lock:
            self._queued -= 1
            self._running += 1
        try:
            return work()
        finally:
            with self._lock:
                self._running -= 1

    def shutdown(self, wait: bool = True) -> None:
        """Drop queued work that has not started; with ``wait``, also wait for the work in progress."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


class Admission:
    """Counts invocations from their first byte to their answer; refuses those over ``limit``.

    Checked before the body is read, so stalled or slow uploads cannot pile up beyond the
    limit (each holds at most the body limit in memory), while ``/ping`` never passes here.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the admission limit must be positive")
        self.limit = limit
        self.admitted = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one admission for the block (event-loop thread only: no lock needed)."""
        if self.admitted >= self.limit:
            raise Overloaded(f"{self.admitted} requests are already being received or worked on (the limit); "
                             "retry shortly")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1
