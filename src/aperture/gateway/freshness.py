"""State read from the database that a replica may serve only while it is young enough.

The gateway's request path reads keys' bindings, tiers, grants, limits, prices and policies from a
snapshot instead of the database. `Fresh` holds that snapshot and guarantees its one rule: **a
request is never served from a read older than `max_age_s`** (counted from when the read began),
nor from a read begun before the last `invalidate()` (a change made through this process).

- While the value is younger than half its age it is served as it is: nothing waits, nothing is
  read (the fast path: one clock read).
- Near the end of its age a background read is started, and the value is still served: under
  steady traffic the next read lands before the value is too old, so requests never wait. "Near"
  is a quarter of the age, or twice the last read's duration when that is longer (a slow
  database is read earlier); a 1 s age is read again about every 0.75 s.
- Past its age (after an idle period, a slow read, or an invalidation) a request waits for a read
  begun no earlier than its own arrival less `max_age_s`, at most `wait_s` seconds; if the read
  fails or takes longer, the request fails closed with `StateUnavailable` (503).

Reads are single-flight: however many requests wait, one read runs at a time (each in a thread of
its own; asyncio waiters hold no thread). Written here because the rule ties the age to the read's
start and to in-process invalidations, which no caching library we know of does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aperture.core.errors import ApertureError

log = logging.getLogger("aperture.gateway.freshness")

T = TypeVar("T")


class StateUnavailable(ApertureError):
    """The gateway could not read its state in time: refusing beats serving from stale state."""

    code = "gateway_unavailable"
    http_status = 503
    exit_code = 9


@dataclass(frozen=True, slots=True)
class _Read(Generic[T]):
    value: T
    began: float  # monotonic time the read began: its age counts from here
    generation: int  # invalidations seen when it began


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class Fresh(Generic[T]):
    def __init__(
        self,
        load: Callable[[], T],
        *,
        max_age_s: float,
        wait_s: float,
        what: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.max_age_s = max_age_s
        self.wait_s = wait_s
        self.what = what
        self._monotonic = monotonic
        self._read: _Read[T] | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._inflight: concurrent.futures.Future[None] | None = None
        self._refresh_after_s = max_age_s * 0.75  # the age past which a background read begins
        self.reads = 0  # reads begun (for tests and metrics)

    # --- the fast path ------------------------------------------------------------------------

    def peek(self) -> T | None:
        """The value if it may be served now without waiting (starting a background read near the
        end of its age); None when it is too old, invalidated or not read yet."""
        read = self._read
        if read is None or read.generation != self._generation:
            return None
        age = self._monotonic() - read.began
        if age > self.max_age_s:
            return None
        if age >= self._refresh_after_s and self._inflight is None:
            self._start()
        return read.value

    def invalidate(self) -> None:
        """A change made through this process: nothing read before now is served again."""
        with self._lock:
            self._generation += 1

    # --- waiting for a read -------------------------------------------------------------------

    async def get(self) -> T:
        """The value, waiting (without blocking the event loop) for a fresh read if needed."""
        value = self.peek()
        if value is not None:
            return value
        arrival = self._monotonic()
        deadline = arrival + self.wait_s
        while True:
            future = self._start()
            waited = asyncio.wrap_future(future)
            waited.add_done_callback(_retrieved)  # its failure is reported by _settle, never by asyncio
            done, _ = await asyncio.wait({waited}, timeout=max(0.0, deadline - self._monotonic()))
            found = self._settle(future, bool(done), arrival)
            if found is not None:
                return found

    def get_blocking(self) -> T:
        """The value, waiting in this thread for a fresh read if needed (not on an event loop)."""
        value = self.peek()
        if value is not None:
            return value
        arrival = self._monotonic()
        deadline = arrival + self.wait_s
        while True:
            future = self._start()
            concurrent.futures.wait([future], timeout=max(0.0, deadline - self._monotonic()))
            found = self._settle(future, future.done(), arrival)
            if found is not None:
                return found

    def _settle(self, future: concurrent.futures.Future[None], done: bool, arrival: float) -> T | None:
        """After waiting on `future`: the value if a read fit for a request that arrived at
        `arrival` is there; None to wait for the next read; raises when the wait is over."""
        if not done:
            raise StateUnavailable(
                f"the gateway could not read its {self.what} within {self.wait_s:g} s",
                hint="retry shortly; the gateway's database is slow or unreachable",
            )
        error = future.exception()
        if error is not None:
            raise StateUnavailable(
                f"the gateway could not read its {self.what} ({type(error).__name__})",
                hint="retry shortly; the gateway's database is unreachable",
            ) from None
        read = self._read
        if read is not None and read.generation == self._generation and read.began >= arrival - self.max_age_s:
            return read.value
        if self._monotonic() - arrival > self.wait_s:
            raise StateUnavailable(
                f"the gateway could not read its {self.what} within {self.wait_s:g} s",
                hint="retry shortly; the gateway's state is changing faster than it can be read",
            )
        return None  # that read began too early (or before an invalidation): wait for the next

    def _start(self) -> concurrent.futures.Future[None]:
        """The read in flight, or a new one (one at a time)."""
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it
            self._inflight = future
            generation = self._generation
            self.reads += 1
        threading.Thread(target=self._run, args=(future, generation), name="gateway-state-read", daemon=True).start()
        return future

    def _run(self, future: concurrent.futures.Future[None], generation: int) -> None:
        began = self._monotonic()
        try:
            value = self._load()
        except BaseException as error:
            log.warning("could not read the gateway's %s: %s", self.what, error)
            with self._lock:
                self._inflight = None
            future.set_exception(error)
            return
        lead = max(self.max_age_s / 4, 2 * (self._monotonic() - began))
        with self._lock:
            current = self._read
            if current is None or (generation, began) > (current.generation, current.began):
                self._read = _Read(value, began, generation)
            self._refresh_after_s = max(0.0, self.max_age_s - lead)
            self._inflight = None
        future.set_result(None)
