"""The ECS fields of host metrics, as Metricbeat's system module writes them and `locust-sink agent` writes
them too, so that one reader (report/hosts.py) serves both.

Percentages are fractions (0.25 = 25 %), as in Metricbeat. Disk and network figures are the bytes since the
previous sample (ECS `host.disk.*.bytes`, `host.network.*.bytes`: gauges "since the last metric collection");
a reader sums them per time window and divides by the window's length to get bytes per second.
"""

from __future__ import annotations

from typing import Any

TIMESTAMP = "@timestamp"
HOST_NAME = "host.name"
CPU_PCT = "system.cpu.total.norm.pct"  # busy share of all cores, 0..1
MEMORY_PCT = "system.memory.actual.used.pct"  # (total - available) / total, 0..1
MEMORY_ACTUAL_BYTES = "system.memory.actual.used.bytes"
MEMORY_USED_BYTES = "system.memory.used.bytes"  # total - free (Metricbeat's definition)
MEMORY_TOTAL = "system.memory.total"
DISK_READ = "host.disk.read.bytes"
DISK_WRITE = "host.disk.write.bytes"
NET_IN = "host.network.ingress.bytes"
NET_OUT = "host.network.egress.bytes"
RUN_ID = "labels.run_id"
AGENT_TYPE = "agent.type"
AGENT_NAME = "locust-sink"
DELTA_FIELDS = (DISK_READ, DISK_WRITE, NET_IN, NET_OUT)  # bytes since the previous sample: summed per window
GAUGE_FIELDS = (CPU_PCT, MEMORY_PCT)  # averaged per window

# the report's default: Metricbeat's data streams (metrics-system.cpu-default, ...), its classic indices, the agent's
DEFAULT_READ_PATTERN = "metrics-system.*,metricbeat-*,locust-host-metrics*"
DEFAULT_INDEX = "locust-host-metrics"
TEMPLATE_VERSION = 1


def get(doc: dict[str, Any], dotted: str) -> Any:
    """A field by its dotted name, nested (`{"host": {"name": ...}}`) or flat (`{"host.name": ...}`)."""
    if dotted in doc:
        return doc[dotted]
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}` (how Metricbeat's documents look in _source)."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        if dotted == TIMESTAMP:
            out[dotted] = value
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def looks_like_host_metrics(doc: dict[str, Any]) -> bool:
    """A host-metrics document (the agent's, or Metricbeat's copied into a results folder)."""
    return get(doc, HOST_NAME) is not None and any(get(doc, f) is not None for f in (*GAUGE_FIELDS, *DELTA_FIELDS))


def index_template(index: str, replicas: int = 0) -> dict[str, Any]:
    """The agent's index template (`<index>*`): ECS types, so `host.name` aggregates as a keyword."""
    long_, double, keyword = {"type": "long"}, {"type": "double"}, {"type": "keyword"}
    flat = {
        HOST_NAME: keyword,
        AGENT_TYPE: keyword,
        "agent.version": keyword,
        "event.dataset": keyword,
        RUN_ID: keyword,
        "metricset.period": long_,
        "system.cpu.cores": long_,
        CPU_PCT: double,
        MEMORY_PCT: double,
        MEMORY_ACTUAL_BYTES: long_,
        MEMORY_USED_BYTES: long_,
        MEMORY_TOTAL: long_,
        **{f: long_ for f in DELTA_FIELDS},
        **{f"{f}_per_sec": double for f in DELTA_FIELDS},
    }
    properties: dict[str, Any] = {TIMESTAMP: {"type": "date"}}
    for dotted, mapping in flat.items():
        node = properties
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = mapping
    return {
        "index_patterns": [f"{index}*"],
        "priority": 200,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": AGENT_NAME},
        "template": {
            "settings": {"index": {"number_of_shards": 1, "number_of_replicas": replicas}},
            "mappings": {"dynamic": False, "properties": properties},
        },
    }
