"""NDJSON files in Elasticsearch bulk format: the embedded default (no server) and the spool's format.

Each document is two lines, the bulk action (with index and deterministic id) and the source, so a file
can be sent to `_bulk` as it is, any number of times, without creating duplicates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .bulk import BulkItem, encode_body


def safe_name(text: str) -> str:
    """A file-name-safe version of a run id or node id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120] or "_"


def read_items(path: Path) -> Iterator[BulkItem]:
    """Read a bulk-format NDJSON file back into items (a torn last pair is skipped, not fatal)."""
    with path.open("rb") as handle:
        while True:
            action = handle.readline()
            if not action:
                return
            source = handle.readline()
            if not source.endswith(b"\n"):
                return  # torn write at the end of a killed process: the pair is incomplete
            try:
                meta_obj = orjson.loads(action)
            except orjson.JSONDecodeError:
                continue
            ((op, meta),) = meta_obj.items()
            index = meta.get("_index", "")
            yield BulkItem(op, index, meta.get("_id"), source.rstrip(b"\n"), index.endswith("-requests"))


def iter_batches(path: Path, batch_size: int) -> Iterator[list[BulkItem]]:
    """The items of a bulk-format file, `batch_size` at a time."""
    batch: list[BulkItem] = []
    for item in read_items(path):
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def ndjson_files(target: Path, exclude_dirs: tuple[str, ...] = ("dead-letter",)) -> list[Path]:
    """The bulk files under a folder (or the file itself), oldest first."""
    if target.is_file():
        return [target]
    files = [
        p
        for p in target.rglob("*.ndjson")
        if p.is_file() and not any(part in exclude_dirs for part in p.relative_to(target).parts[:-1])
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


class FileWriter:
    """File mode: one folder per run under the sink dir, one file per node."""

    def __init__(self, sink_dir: str | os.PathLike[str], node: str) -> None:
        self.sink_dir = Path(sink_dir)
        self.node = node
        self._handles: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}

    def path_for(self, run_id: str) -> Path:
        return self.sink_dir / safe_name(run_id) / f"{safe_name(self.node)}.ndjson"

    def prepare(self, run_id: str) -> Path:
        """The run's file path, its folder created: for a writer of its own (the encoder helper appends
        request lines there; this writer appends the other documents, both between each other's writes)."""
        path = self.paths.get(run_id)
        if path is None:
            path = self.path_for(run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.paths[run_id] = path
        return path

    def _handle(self, run_id: str) -> Any:
        handle = self._handles.get(run_id)
        if handle is None:
            path = self.prepare(run_id)
            handle = path.open("ab")
            self._handles[run_id] = handle
        return handle

    def write(self, items: list[BulkItem]) -> int:
        by_run: dict[str, list[BulkItem]] = {}
        for item in items:
            by_run.setdefault(item.run_id, []).append(item)
        total = 0
        for run_id, group in by_run.items():
            total += self.write_body(run_id, encode_body(group))
        return total

    def write_body(self, run_id: str, body: bytes) -> int:
        """Append complete bulk-format lines (action, document, ...) of one run, in one write (a torn write can
        only cut the last pair, which read_items skips)."""
        handle = self._handle(run_id)
        handle.write(body)
        handle.flush()
        return len(body)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
