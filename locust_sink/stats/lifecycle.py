"""The run's lifecycle on one node: its phase, and the two greenlets the recorder runs (the periodic
snapshot loop, and on the master the grace period after test_stop)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import gevent

log = logging.getLogger("locust_sink")

# The master's wait after test_stop (web UI "stop") for the workers' last reports before the run is
# finalized; Locust's workers report every 3 s. At quit the run is finalized at once (the reports are in).
WORKER_REPORT_GRACE = 4.0


class RunPhase(Enum):
    IDLE = "idle"  # no run started yet in this process (always so on a worker: the master records the run)
    RUNNING = "running"  # snapshots every interval
    STOPPING = "stopping"  # master after test_stop: snapshots go on until the grace period ends or quit
    FINALIZED = "finalized"  # final snapshot written, the run document has its end


class Lifecycle:
    """Phase, start and stop times of the current run; the loop and grace greenlets; `closed` once the
    process has finished (Locust's quit, or close())."""

    def __init__(self) -> None:
        self.phase = RunPhase.IDLE
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.closed = False
        self._loop: gevent.Greenlet | None = None
        self._grace: gevent.Greenlet | None = None

    @property
    def active(self) -> bool:
        """A run started and is not finalized yet."""
        return self.phase in (RunPhase.RUNNING, RunPhase.STOPPING)

    def begin(self, now: float) -> None:
        self.phase = RunPhase.RUNNING
        self.started_at = now
        self.stopped_at = None

    def stop(self, now: float) -> None:
        self.stopped_at = now

    def finalize_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Master after test_stop: run `fn(*args)` after `delay` unless the run is finalized before."""
        self.phase = RunPhase.STOPPING
        if self._grace is None or self._grace.dead:
            self._grace = gevent.spawn_later(delay, fn, *args)

    def end(self) -> bool:
        """The run is being finalized: True once (False when no run is open). Cancels a pending grace period
        unless it is the caller."""
        if not self.active:
            return False
        self.phase = RunPhase.FINALIZED
        if self._grace is not None and self._grace is not gevent.getcurrent():
            self._grace.kill(block=False)
        return True

    def keep_ticking(self, fn: Callable[[], None]) -> None:
        """Run `fn` (the snapshot loop) in its own greenlet unless it already runs."""
        if self._loop is None or self._loop.dead:
            self._loop = gevent.spawn(fn)

    def close(self) -> bool:
        """The process finishes: stop both greenlets. True the first time."""
        if self.closed:
            return False
        self.closed = True
        if self._grace is not None:
            self._grace.kill(block=False)
        if self._loop is not None:
            self._loop.kill(block=False)
        return True


class Guard:
    """Stats must never break the load test: run a step, log each distinct failure once, go on."""

    def __init__(self) -> None:
        self._failed: set[str] = set()

    def __call__(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            message = f"{what}: {type(exc).__name__}: {exc}"
            if message not in self._failed:
                self._failed.add(message)
                log.error("locust-sink: %s", message, exc_info=True)
            return None
