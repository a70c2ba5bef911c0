"""Aggregated stats snapshots, the run document and events (docs/stats.md), one job per module:

- snapshots.py  snapshot documents from Locust's `RequestStats`, and the `SnapshotCursor` of a (source, node)
- workers.py    the master's per-worker book: reports merged as Locust's master merges them, joins and losses
- events.py     the event log: held until the run starts, user errors capped per kind, sequence ids
- rundoc.py     the run document as pure functions: start fields, end fields, the sink's fields
- trouble.py    the trouble relay: worker -> master in the stats reports, recorded per node
- lifecycle.py  the run's phase, the snapshot loop and grace greenlets, the failure guard
- port.py       `SinkPort` (what the recorder needs from the sink) and `StatsObserver`
- recorder.py   `StatsRecorder`: Locust's listeners and the order in which the pieces run

Nothing here imports the plugin or the delivery engine: the recorder talks to the sink through `SinkPort`.
"""

from __future__ import annotations

from ..meta import git_commit
from .port import SinkPort, StatsObserver
from .recorder import StatsRecorder
from .snapshots import (
    PERCENTILE_FIELDS,
    PERCENTILES,
    SnapshotCursor,
    entry_document,
    percentile_values,
    snapshot_documents,
)
from .workers import merge_report, merge_stats

__all__ = [
    "PERCENTILES",
    "PERCENTILE_FIELDS",
    "SinkPort",
    "SnapshotCursor",
    "StatsObserver",
    "StatsRecorder",
    "entry_document",
    "git_commit",
    "merge_report",
    "merge_stats",
    "percentile_values",
    "snapshot_documents",
]
