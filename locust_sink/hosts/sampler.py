"""`HostSampler`: one ECS document (hosts/ecs.py) per call from psutil: CPU busy share since the previous
call, memory now, disk and network bytes since the previous call (and per second)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import psutil

from .. import __version__
from ..records import iso_timestamp
from . import ecs


class HostSampler:
    """Samples this host. The first document's deltas cover the time since the sampler was made."""

    def __init__(self, host_name: str | None = None, run_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.host_name = host_name or socket.gethostname()
        self.run_id = run_id
        self.clock = clock
        psutil.cpu_percent(interval=None)  # primes psutil's system-wide CPU delta
        self._last_t = clock()
        self._last = self._counters()

    @staticmethod
    def _counters() -> dict[str, int]:
        out: dict[str, int] = {}
        disk = psutil.disk_io_counters()  # None where the kernel exposes no disk statistics (some containers)
        if disk is not None:
            out[ecs.DISK_READ], out[ecs.DISK_WRITE] = disk.read_bytes, disk.write_bytes
        net = psutil.net_io_counters()
        if net is not None:
            out[ecs.NET_IN], out[ecs.NET_OUT] = net.bytes_recv, net.bytes_sent
        return out

    def sample(self) -> dict[str, Any]:
        """The next document (nested ECS objects, as Metricbeat's look in _source)."""
        now = self.clock()
        cpu = psutil.cpu_percent(interval=None) / 100.0
        memory = psutil.virtual_memory()
        counters = self._counters()
        seconds = max(now - self._last_t, 1e-3)
        flat: dict[str, Any] = {
            ecs.TIMESTAMP: iso_timestamp(now),
            ecs.HOST_NAME: self.host_name,
            ecs.AGENT_TYPE: ecs.AGENT_NAME,
            "agent.version": __version__,
            "event.dataset": "locust_sink.host",
            "metricset.period": round(seconds * 1000),
            "system.cpu.cores": psutil.cpu_count() or 1,
            ecs.CPU_PCT: round(cpu, 4),
            ecs.MEMORY_PCT: round((memory.total - memory.available) / memory.total, 4) if memory.total else 0.0,
            ecs.MEMORY_ACTUAL_BYTES: memory.total - memory.available,
            ecs.MEMORY_USED_BYTES: memory.total - memory.free,
            ecs.MEMORY_TOTAL: memory.total,
        }
        for name, value in counters.items():
            delta = max(0, value - self._last.get(name, value))  # a counter that wrapped or reset: 0, not negative
            flat[name] = delta
            flat[f"{name}_per_sec"] = round(delta / seconds, 1)
        if self.run_id:
            flat[ecs.RUN_ID] = self.run_id
        self._last_t, self._last = now, counters
        return ecs.nested(flat)
