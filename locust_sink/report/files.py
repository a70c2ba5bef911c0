"""File-mode results (`<sink-dir>/<run id>/<node>.ndjson`, bulk format) as a report source.

Every file is streamed line by line (action line, then document) and never loaded whole: stats, events and
run documents go to a `RunCollector`, request documents to a `RequestAccumulator` (bounded state).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .collect import RunCollector, run_rank
from .hosts import host_metric_files, read_file_hosts
from .model import RunFigures
from .requests import RequestAccumulator
from .source_error import SourceError

TAIL_BYTES = 1 << 20


def run_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ndjson") if p.is_file())


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and bool(run_files(path))


def documents(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(family, document) for each bulk item of one file; family is the index name's last part."""
    with path.open("rb") as handle:
        action: bytes | None = None
        for line in handle:
            if not line.strip():
                continue
            if action is None:
                action = line
                continue
            head, action = action, None
            try:
                if b'-requests","_id"' in head:  # the sink's request action lines: no need to parse them
                    index = "requests"
                else:
                    meta = next(iter(orjson.loads(head).values()))
                    index = str(meta.get("_index", ""))
                doc = orjson.loads(line)
            except (orjson.JSONDecodeError, StopIteration, AttributeError):
                continue  # a torn line (a process killed while writing): skip the pair
            if isinstance(doc, dict):
                yield index.rpartition("-")[2], doc


def read_run_folder(
    folder: Path, slowest: int = 20, max_points: int | None = None, hosts: tuple[str, ...] | None = ()
) -> RunFigures:
    """The figures of the run whose documents are in `folder` (the sink writes one folder per run), with the
    host metrics of `locust-sink agent` files (hosts.host_metric_files; `hosts` None: not read)."""
    folder = Path(folder)
    files = run_files(folder) if folder.is_dir() else []
    if not files:
        raise SourceError(f"{folder}: no .ndjson files (expected a file-mode results folder, locust-results/<run id>)")
    collector = RunCollector(None, **({"max_points": max_points} if max_points else {}))
    acc = RequestAccumulator(slowest=slowest)
    for path in files:
        if path.name.startswith("host-"):
            continue  # the agent's host metrics: read below, for the run's time range
        for family, doc in documents(path):
            if family == "requests":
                acc.add(doc)
            else:
                collector.add(family, doc)
    if collector.run_id is None:
        collector.run_id = folder.name
    fig = collector.build(acc.result(), f"files {folder}")
    start, end = fig.run.get("start_epoch"), fig.run.get("end_epoch")
    paths = host_metric_files(folder)
    if hosts is not None and paths and start is not None and end is not None:
        docs = (doc for path in paths for _family, doc in documents(path))
        fig.hosts = read_file_hosts(docs, start, end, f"files {', '.join(p.name for p in paths)}", hosts)
    return fig


def last_run_document(folder: Path) -> dict[str, Any] | None:
    """The newest run document of a results folder, read from the end of its files (where the closing copy
    is written); the whole file is streamed only if its tail has none."""
    best: dict[str, Any] | None = None
    for path in run_files(folder):
        found = _tail_run_documents(path)
        if not found:
            found = [doc for family, doc in documents(path) if family == "runs"]
        for doc in found:
            if best is None or run_rank(doc) >= run_rank(best):
                best = doc
    return best


def _tail_run_documents(path: Path) -> list[dict[str, Any]]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        lines = handle.read().split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    out = []
    for head, body in zip(lines, lines[1:], strict=False):
        if b'-runs"' in head and b'"_index"' in head:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
    return out


def run_folders(root: Path) -> list[Path]:
    """Run folders under a results root (`locust-results/`): subfolders holding .ndjson files (not the spool)."""
    if is_run_folder(root) and not any(is_run_folder(p) for p in root.iterdir() if p.is_dir()):
        return [root]
    skip = {"spool", "dead-letter", "host-metrics"}
    return sorted(p for p in root.iterdir() if p.name not in skip and is_run_folder(p)) if root.is_dir() else []


def newest_run_folder(root: Path) -> Path | None:
    folders = run_folders(root)
    return max(folders, key=lambda p: (p.name, os.stat(p).st_mtime)) if folders else None
