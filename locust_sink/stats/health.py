"""Load-generator health: each node's CPU and memory beside its snapshots, and CPU saturation episodes as
events (docs/stats.md, "Load generators' CPU and memory").

A Locust process runs its users on one core: when that core is all it gets, response times measure Locust's
own queueing, not the system under test. A process is short of CPU in two ways: it uses a whole core
(`cpu_percent` near 100), or it wants one and waits for it because other processes on its machine have the
cores (`cpu_wait_percent`: the time its main thread, where the users run, sat runnable in the kernel's run
queue; /proc/self/schedstat, Linux). On a busy CI runner or an overcommitted VM a Locust process at 60 % CPU
waiting 35 % of the time is as saturated as one at 95 %, so saturation is their sum (`Usage.demand`).

Every node measures its own process (`ProcessMeter`: psutil's CPU times and RSS, the kernel's schedstat)
where it already does periodic work off the hot path: standalone and on the master at each stats snapshot,
on a worker in its stats report (`report_to_master`, every 3 s), which carries the figures to the master
(`USAGE_KEY`). Locust measures CPU too (`runner.current_cpu_usage`, the workers' heartbeats), but only every
10 s (`locust.runners.CPU_MONITOR_INTERVAL`) and without the wait; a worker whose report has no usage part
(an older locust-sink) falls back to those figures.

`SaturationWatch` turns the readings into `cpu_saturated` / `cpu_recovered` events with hysteresis: a node
is saturated from its first reading at or above SATURATED_AT until its first reading below RECOVERED_BELOW,
so a node hovering around 90 % is one episode, said once each way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from .events import EventLog

SATURATED_AT = 90.0  # CPU demand % at which a load generator counts as saturated (Locust warns at 90 % CPU)
RECOVERED_BELOW = 80.0  # CPU demand % below which a saturated node counts as recovered
USAGE_KEY = "locust_sink_usage"  # the key of a worker report that carries its process's usage
MIN_WINDOW_S = 1.0  # CPU times tick every 10 ms: a shorter window would read 0 % or several hundred %
SCHEDSTAT = Path("/proc/thread-self/schedstat")  # ns on a CPU, ns runnable waiting for one, timeslices


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Usage:
    """One node's process over the last interval: CPU % of one core (can pass 100 with threads), % of the
    time its main thread waited for a CPU (None where not measured) and RSS."""

    cpu_percent: float
    memory_rss_bytes: int
    cpu_wait_percent: float | None = None

    @property
    def demand(self) -> float:
        """The CPU the process used or waited for, in % of one core: what saturation is judged on."""
        return round(self.cpu_percent + (self.cpu_wait_percent or 0.0), 3)

    def fields(self) -> dict[str, Any]:
        """The snapshot / report fields."""
        out: dict[str, Any] = {"cpu_percent": self.cpu_percent}
        if self.cpu_wait_percent is not None:
            out["cpu_wait_percent"] = self.cpu_wait_percent
        out["memory_rss_bytes"] = self.memory_rss_bytes
        return out

    @classmethod
    def parse(cls, data: Any) -> Usage | None:
        """From a report's usage part; None when absent or malformed."""
        if not isinstance(data, Mapping):
            return None
        cpu, rss, wait = data.get("cpu_percent"), data.get("memory_rss_bytes"), data.get("cpu_wait_percent")
        if not _number(cpu) or not isinstance(rss, int) or (wait is not None and not _number(wait)):
            return None
        return cls(round(float(cpu), 1), rss, round(float(wait), 1) if wait is not None else None)


class UsageMeter(Protocol):
    def read(self) -> Usage | None:
        """This process's usage since the previous reading (None: not measurable)."""
        ...


def _schedstat(path: Path) -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting in the run queue) of the calling thread; None where the kernel has no
    schedstat (not Linux, or built without CONFIG_SCHED_INFO)."""
    try:
        on_cpu, waiting, _slices = path.read_text().split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return None


class ProcessMeter:
    """This process's CPU % since the previous `read()` (or since it was made), its main thread's run-queue
    wait and its RSS (psutil, /proc/thread-self/schedstat). Read it from the main thread (the recorder's
    greenlets run there).

    Children are not counted: the encoder helper runs on another core and does not slow the users down.
    A reading less than MIN_WINDOW_S after the previous one (the final snapshot right after a periodic one)
    repeats the previous figures with the current RSS instead of measuring a window that short.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, schedstat: Path = SCHEDSTAT) -> None:
        self._process = psutil.Process()
        self._clock = clock
        self._schedstat = schedstat
        self._last = self._now()
        self._figures: tuple[float, float | None] | None = None  # the last (cpu %, wait %) measured

    def _now(self) -> tuple[float, float, int | None]:
        times = self._process.cpu_times()
        sched = _schedstat(self._schedstat)
        return times.user + times.system, self._clock(), sched[1] if sched is not None else None

    def read(self) -> Usage | None:
        try:
            now = self._now()
            rss = int(self._process.memory_info().rss)
        except (psutil.Error, OSError):
            return None
        (last_cpu, last_wall, last_wait), (cpu, wall, wait) = self._last, now
        if wall - last_wall < MIN_WINDOW_S:
            return Usage(self._figures[0], rss, self._figures[1]) if self._figures is not None else None
        self._last = now
        seconds = wall - last_wall
        waited = (
            round(100.0 * (wait - last_wait) / 1e9 / seconds, 1) if wait is not None and last_wait is not None else None
        )
        self._figures = (round(100.0 * (cpu - last_cpu) / seconds, 1), waited)
        return Usage(self._figures[0], rss, self._figures[1])


def heartbeat_usage(client: Any) -> Usage | None:
    """Locust's own figures for a worker (from its heartbeats: `WorkerNode.cpu_usage` / `.memory_usage`);
    None before its first heartbeat (memory 0)."""
    cpu, rss = getattr(client, "cpu_usage", None), getattr(client, "memory_usage", None)
    if not isinstance(cpu, (int, float)) or not isinstance(rss, int) or rss <= 0:
        return None
    return Usage(round(float(cpu), 1), rss)


@dataclass
class Episode:
    """A node's saturation since `since` (epoch seconds), with its highest demand."""

    since: float
    peak: float


class SaturationWatch:
    """Per node: one `cpu_saturated` event when its CPU reaches SATURATED_AT, one `cpu_recovered` when it
    drops below RECOVERED_BELOW. An episode still open at the end of the run stays open (the report ends it
    at the node's last snapshot)."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.open: dict[str, Episode] = {}

    def new_run(self) -> None:
        self.open = {}

    def observe(self, node: str, usage: Usage, when: float) -> None:
        cpu = usage.demand
        episode = self.open.get(node)
        if episode is None:
            if cpu >= SATURATED_AT:
                self.open[node] = Episode(when, cpu)
                self.events.event(
                    "cpu_saturated",
                    node=node,
                    when=when,
                    cpu_percent=usage.cpu_percent,
                    message=f"load generator {node} CPU-saturated: {_said(usage)} (>= {SATURATED_AT:.0f} %)",
                    details=_details(usage),
                )
            return
        episode.peak = max(episode.peak, cpu)
        if cpu < RECOVERED_BELOW:
            del self.open[node]
            seconds = round(when - episode.since, 3)
            self.events.event(
                "cpu_recovered",
                node=node,
                when=when,
                cpu_percent=usage.cpu_percent,
                message=f"load generator {node} CPU back to {_said(usage)} (< {RECOVERED_BELOW:.0f} %) after "
                f"{seconds:.0f} s saturated (peak {episode.peak:.1f} %)",
                details={**_details(usage), "saturated_s": seconds, "peak_demand_percent": episode.peak},
            )


def _said(usage: Usage) -> str:
    if usage.cpu_wait_percent:
        return f"{usage.cpu_percent:.1f} % CPU + {usage.cpu_wait_percent:.1f} % waiting for a CPU"
    return f"{usage.cpu_percent:.1f} % CPU"


def _details(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"demand_percent": usage.demand}
    if usage.cpu_wait_percent is not None:
        out["cpu_wait_percent"] = usage.cpu_wait_percent
    return out


class NodeHealth:
    """What the recorder asks about load-generator health: its own usage at a snapshot (observed for
    saturation), the usage part of a worker's report (worker side), a worker's usage from its report or
    heartbeats (master side)."""

    def __init__(self, events: EventLog, meter: UsageMeter | None = None) -> None:
        self.meter: UsageMeter = meter if meter is not None else ProcessMeter()
        self.watch = SaturationWatch(events)

    def begin_run(self) -> None:
        """A run starts: the next reading covers the run only; no episode is open."""
        self.meter.read()
        self.watch.new_run()

    def own(self, node: str, now: float) -> Usage | None:
        """This node's usage since the previous call, observed for saturation."""
        usage = self.meter.read()
        if usage is not None:
            self.watch.observe(node, usage, now)
        return usage

    def outgoing(self) -> dict[str, Any] | None:
        """Worker: the usage part of its next report."""
        usage = self.meter.read()
        return usage.fields() if usage is not None else None

    def worker(self, node: str, data: Mapping[str, Any], client: Any, now: float) -> Usage | None:
        """Master: a worker's usage from its report, else Locust's heartbeat figures; observed."""
        usage = Usage.parse(data.get(USAGE_KEY))
        if usage is None:
            usage = heartbeat_usage(client)
        if usage is not None:
            self.watch.observe(node, usage, now)
        return usage
