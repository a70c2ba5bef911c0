"""Load generators' health in a report: each node's CPU % and memory from the `cpu_percent` /
`memory_rss_bytes` of its Aggregated snapshot rows (stats/health.py), and the time ranges in which it was
CPU-saturated, from its `cpu_saturated` / `cpu_recovered` events (docs/hosts.md).

Column layout `NODE_COLUMNS`: `t` (epoch ms of the snapshot), `cpu` (% of one core used), `cpu_wait` (% of
the time its main thread waited for a CPU; 0 where not measured), `demand` (`cpu + cpu_wait`: what saturation
is judged on), `memory_mb` (RSS, MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import fmt
from .requests import epoch

NODE_COLUMNS = ("t", "cpu", "cpu_wait", "demand", "memory_mb")
SATURATED_AT = 90.0  # the recorder's threshold (stats/health.py); stated in the sentence
MAX_POINTS = 480  # per node: past that, neighbouring points are merged (the higher CPU and RSS kept)
MAX_NODES = 200
MAX_EPISODES = 1000


@dataclass
class NodeUsage:
    points: list[tuple[float, float, float, int]] = field(default_factory=list)  # (t, cpu %, wait %, rss)

    def add(self, t: float, cpu: float, wait: float, rss: int) -> None:
        if self.points and t <= self.points[-1][0]:
            return  # a copy of an earlier snapshot
        self.points.append((t, cpu, wait, rss))
        if len(self.points) > 2 * MAX_POINTS:  # merge pairs, keeping the busier one: a short peak stays visible
            pairs = zip(self.points[0::2], self.points[1::2], strict=False)
            merged = [(b[0], *max(a[1:3], b[1:3], key=sum), max(a[3], b[3])) for a, b in pairs]
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged

    def columns(self) -> dict[str, list]:
        return {
            "t": [round(p[0] * 1000) for p in self.points],
            "cpu": [p[1] for p in self.points],
            "cpu_wait": [p[2] for p in self.points],
            "demand": [round(p[1] + p[2], 1) for p in self.points],
            "memory_mb": [round(p[3] / 1e6, 1) for p in self.points],
        }


class LoadGenerators:
    """Fed with the run's Aggregated snapshot rows and its cpu_* events, in any order."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeUsage] = {}
        self.changes: list[tuple[float, str, str, float]] = []  # (t, node, event, cpu %)

    def add_snapshot(self, t: float, doc: dict[str, Any]) -> None:
        cpu, rss, wait = doc.get("cpu_percent"), doc.get("memory_rss_bytes"), doc.get("cpu_wait_percent")
        if not isinstance(cpu, (int, float)):
            return
        node = str(doc.get("node") or "")
        usage = self.nodes.get(node)
        if usage is None:
            if len(self.nodes) >= MAX_NODES:
                return
            usage = self.nodes[node] = NodeUsage()
        wait = float(wait) if isinstance(wait, (int, float)) else 0.0
        usage.add(t, float(cpu), wait, int(rss) if isinstance(rss, (int, float)) else 0)

    def add_event(self, doc: dict[str, Any]) -> None:
        t = epoch(doc.get("@timestamp"))
        if t is None or len(self.changes) >= 2 * MAX_EPISODES:
            return
        cpu = doc.get("cpu_percent")
        self.changes.append((t, str(doc.get("node") or ""), str(doc.get("event")), float(cpu or 0.0)))

    def columns(self) -> dict[str, dict[str, list]]:
        return {node: usage.columns() for node, usage in sorted(self.nodes.items())}

    def episodes(self, run_end: float | None) -> list[dict[str, Any]]:
        """Saturated ranges per node: from a `cpu_saturated` to the next `cpu_recovered` of the same node; an
        episode still open at the end lasts until the node's last snapshot (or the run's end)."""
        open_: dict[str, tuple[float, float]] = {}
        out: list[dict[str, Any]] = []
        for t, node, kind, cpu in sorted(self.changes):
            if kind == "cpu_saturated" and node not in open_:
                open_[node] = (t, cpu)
            elif kind == "cpu_recovered" and node in open_:
                start, _ = open_.pop(node)
                out.append(self._episode(node, start, t, False))
        for node, (start, _) in open_.items():
            usage = self.nodes.get(node)
            end = usage.points[-1][0] if usage and usage.points else (run_end or start)  # type: ignore[assignment]
            out.append(self._episode(node, start, max(end, start), True))
        return sorted(out, key=lambda e: (e["start"], e["node"]))

    def _episode(self, node: str, start: float, end: float, still_open: bool) -> dict[str, Any]:
        usage = self.nodes.get(node)
        inside = [(p[1], p[1] + p[2]) for p in (usage.points if usage else []) if start <= p[0] <= end]
        return {"node": node, "start": start, "end": end, "seconds": round(end - start, 1),
                "peak_cpu": max(c for c, _ in inside) if inside else None,
                "peak_demand": round(max(d for _, d in inside), 1) if inside else None,
                "open_at_end": still_open}  # fmt: skip


def saturation_sentence(episode: dict[str, Any]) -> str:
    """The report's one sentence about one saturated range."""
    peak = ""
    if episode.get("peak_demand") is not None:
        waited = episode["peak_demand"] - (episode["peak_cpu"] or 0.0) >= 1.0
        peak = f", peak {episode['peak_demand']:.0f} %" + (" counting the time it waited for a CPU" if waited else "")
    return (
        f"Between {fmt.when(episode['start'])} and {fmt.when(episode['end'])} load generator {episode['node']} was "
        f"CPU-saturated (>= {SATURATED_AT:.0f} %{peak}): results in that range measure Locust, not the system "
        "under test."
    )


def summary_rows(columns: dict[str, dict[str, list]], episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node: mean and highest CPU, highest RSS, seconds saturated (the text report's table)."""
    rows = []
    for node, cols in columns.items():
        cpu, wait = cols["cpu"], cols["cpu_wait"]
        rows.append({
            "node": node,
            "cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "cpu_max": max(cpu) if cpu else None,
            "wait_mean": round(sum(wait) / len(wait), 1) if wait else None,
            "memory_max_mb": max(cols["memory_mb"]) if cols["memory_mb"] else None,
            "saturated_s": round(sum(e["seconds"] for e in episodes if e["node"] == node), 1),
        })  # fmt: skip
    return rows
