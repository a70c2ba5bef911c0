"""Load generators' health in a report: each node's CPU % and memory from the `cpu_percent` /
`memory_rss_bytes` of its Aggregated snapshot rows (stats/health.py), and the time ranges in which it was
CPU-saturated, from its `cpu_saturated` / `cpu_recovered` events (docs/hosts.md).

Column layout `NODE_COLUMNS`: `t` (epoch ms of the snapshot), `cpu` (% of one core), `memory_mb` (RSS, MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import fmt
from .requests import epoch

NODE_COLUMNS = ("t", "cpu", "memory_mb")
SATURATED_AT = 90.0  # the recorder's threshold (stats/health.py); stated in the sentence
MAX_POINTS = 480  # per node: past that, neighbouring points are merged (the higher CPU and RSS kept)
MAX_NODES = 200
MAX_EPISODES = 1000


@dataclass
class NodeUsage:
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (t, cpu %, rss bytes)

    def add(self, t: float, cpu: float, rss: int) -> None:
        if self.points and t <= self.points[-1][0]:
            return  # a copy of an earlier snapshot
        self.points.append((t, cpu, rss))
        if len(self.points) > 2 * MAX_POINTS:  # merge pairs: a short saturation peak stays visible
            pairs = zip(self.points[0::2], self.points[1::2], strict=False)
            merged = [(b[0], max(a[1], b[1]), max(a[2], b[2])) for a, b in pairs]
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged

    def columns(self) -> dict[str, list]:
        return {
            "t": [round(t * 1000) for t, _, _ in self.points],
            "cpu": [c for _, c, _ in self.points],
            "memory_mb": [round(r / 1e6, 1) for _, _, r in self.points],
        }


class LoadGenerators:
    """Fed with the run's Aggregated snapshot rows and its cpu_* events, in any order."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeUsage] = {}
        self.changes: list[tuple[float, str, str, float]] = []  # (t, node, event, cpu %)

    def add_snapshot(self, t: float, doc: dict[str, Any]) -> None:
        cpu, rss = doc.get("cpu_percent"), doc.get("memory_rss_bytes")
        if not isinstance(cpu, (int, float)):
            return
        node = str(doc.get("node") or "")
        usage = self.nodes.get(node)
        if usage is None:
            if len(self.nodes) >= MAX_NODES:
                return
            usage = self.nodes[node] = NodeUsage()
        usage.add(t, float(cpu), int(rss) if isinstance(rss, (int, float)) else 0)

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
            end = usage.points[-1][0] if usage and usage.points else (run_end or start)
            out.append(self._episode(node, start, max(end, start), True))
        return sorted(out, key=lambda e: (e["start"], e["node"]))

    def _episode(self, node: str, start: float, end: float, still_open: bool) -> dict[str, Any]:
        usage = self.nodes.get(node)
        inside = [c for t, c, _ in (usage.points if usage else []) if start <= t <= end]
        return {"node": node, "start": start, "end": end, "seconds": round(end - start, 1),
                "peak_cpu": max(inside) if inside else None, "open_at_end": still_open}  # fmt: skip


def saturation_sentence(episode: dict[str, Any]) -> str:
    """The report's one sentence about one saturated range."""
    peak = f", peak {episode['peak_cpu']:.0f} %" if episode.get("peak_cpu") is not None else ""
    return (
        f"Between {fmt.when(episode['start'])} and {fmt.when(episode['end'])} load generator {episode['node']} was "
        f"CPU-saturated (>= {SATURATED_AT:.0f} %{peak}): results in that range measure Locust, not the system "
        "under test."
    )


def summary_rows(columns: dict[str, dict[str, list]], episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node: mean and highest CPU, highest RSS, seconds saturated (the text report's table)."""
    rows = []
    for node, cols in columns.items():
        cpu = cols["cpu"]
        rows.append({
            "node": node,
            "cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "cpu_max": max(cpu) if cpu else None,
            "memory_max_mb": max(cols["memory_mb"]) if cols["memory_mb"] else None,
            "saturated_s": round(sum(e["seconds"] for e in episodes if e["node"] == node), 1),
        })  # fmt: skip
    return rows
