"""Load-generator health: each node's CPU and memory beside its snapshots, and CPU saturation episodes as
events (docs/stats.md, "Load generators' CPU and memory").

A Locust process runs its users on one core: near 100 % of it, response times measure Locust's own
queueing, not the system under test. Every node measures its own process (`ProcessMeter`: psutil's CPU
times over the wall time since the previous reading, and the resident set size) where it already does
periodic work off the hot path: standalone and on the master at each stats snapshot, on a worker in its
stats report (`report_to_master`, every 3 s), which carries the figures to the master (`USAGE_KEY`). Locust
measures the same (`runner.current_cpu_usage`, the workers' heartbeats), but only every 10 s
(`locust.runners.CPU_MONITOR_INTERVAL`): too coarse for 3-s snapshots; a worker whose report has no usage
part (an older locust-sink) falls back to those figures.

`SaturationWatch` turns the readings into `cpu_saturated` / `cpu_recovered` events with hysteresis: a
node is saturated from its first reading at or above SATURATED_AT until its first reading below
RECOVERED_BELOW, so a node hovering around 90 % is one episode, said once each way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from .events import EventLog

SATURATED_AT = 90.0  # CPU % at which a load generator counts as saturated (Locust warns at 90 % too)
RECOVERED_BELOW = 80.0  # CPU % below which a saturated node counts as recovered
USAGE_KEY = "locust_sink_usage"  # the key of a worker report that carries its process's usage
MIN_WINDOW_S = 1.0  # CPU times tick every 10 ms: a shorter window would read 0 % or several hundred %


@dataclass(frozen=True)
class Usage:
    """One node's process over the last interval: CPU % of one core (can pass 100 with threads) and RSS."""

    cpu_percent: float
    memory_rss_bytes: int

    def fields(self) -> dict[str, Any]:
        """The snapshot / report fields."""
        return {"cpu_percent": self.cpu_percent, "memory_rss_bytes": self.memory_rss_bytes}

    @classmethod
    def parse(cls, data: Any) -> Usage | None:
        """From a report's usage part; None when absent or malformed."""
        if not isinstance(data, Mapping):
            return None
        cpu, rss = data.get("cpu_percent"), data.get("memory_rss_bytes")
        if not isinstance(cpu, (int, float)) or not isinstance(rss, int) or isinstance(cpu, bool):
            return None
        return cls(round(float(cpu), 1), rss)


class UsageMeter(Protocol):
    def read(self) -> Usage | None:
        """This process's usage since the previous reading (None: not measurable)."""
        ...


class ProcessMeter:
    """This process's CPU % since the previous `read()` (or since it was made) and its RSS, via psutil.

    Children are not counted: the encoder helper runs on another core and does not slow the users down.
    A reading less than MIN_WINDOW_S after the previous one (the final snapshot right after a periodic one)
    repeats the previous figure with the current RSS instead of measuring a window that short.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._process = psutil.Process()
        self._clock = clock
        self._last = self._cpu_and_wall()
        self._cpu: float | None = None  # the last figure measured

    def _cpu_and_wall(self) -> tuple[float, float]:
        times = self._process.cpu_times()
        return times.user + times.system, self._clock()

    def read(self) -> Usage | None:
        try:
            cpu, wall = self._cpu_and_wall()
            rss = int(self._process.memory_info().rss)
        except (psutil.Error, OSError):
            return None
        last_cpu, last_wall = self._last
        if wall - last_wall < MIN_WINDOW_S:
            return Usage(self._cpu, rss) if self._cpu is not None else None
        self._last = (cpu, wall)
        self._cpu = round(100.0 * (cpu - last_cpu) / (wall - last_wall), 1)
        return Usage(self._cpu, rss)


def heartbeat_usage(client: Any) -> Usage | None:
    """Locust's own figures for a worker (from its heartbeats: `WorkerNode.cpu_usage` / `.memory_usage`);
    None before its first heartbeat (memory 0)."""
    cpu, rss = getattr(client, "cpu_usage", None), getattr(client, "memory_usage", None)
    if not isinstance(cpu, (int, float)) or not isinstance(rss, int) or rss <= 0:
        return None
    return Usage(round(float(cpu), 1), rss)


@dataclass
class Episode:
    """A node's saturation since `since` (epoch seconds), with its highest reading."""

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
        cpu = usage.cpu_percent
        episode = self.open.get(node)
        if episode is None:
            if cpu >= SATURATED_AT:
                self.open[node] = Episode(when, cpu)
                self.events.event(
                    "cpu_saturated",
                    node=node,
                    when=when,
                    cpu_percent=cpu,
                    message=f"load generator {node} CPU-saturated: {cpu:.1f} % (>= {SATURATED_AT:.0f} %)",
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
                cpu_percent=cpu,
                message=f"load generator {node} CPU back to {cpu:.1f} % (< {RECOVERED_BELOW:.0f} %) after "
                f"{seconds:.0f} s saturated (peak {episode.peak:.1f} %)",
                details={"saturated_s": seconds, "peak_cpu_percent": episode.peak},
            )


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
