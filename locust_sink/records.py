"""Request records: their fields, their documents, and the encoder that turns them into bulk lines.

The `request` listener (buffer.py) stores a record's fields flat in the queue, RECORD_WIDTH of them per
record, without building any object; everything here runs later, in the delivery engine's greenlet or in
the encoder helper process. No Locust or gevent import: the helper process imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson


class RequestRecord(NamedTuple):
    """The fields of one request, in the order the hot path stores them.

    The hot path (RecordBuffer.on_request) appends these fields straight to the buffer's flat lists, without
    building this tuple; `RecordBuffer.take` rebuilds records of this shape, and tests use it.
    """

    seq: int
    start_time: float  # epoch seconds, request start
    request_type: str
    name: str
    response_time: float  # ms
    response_length: int
    status_code: int | None
    exception: str | None  # already a string: exceptions pin tracebacks and responses in memory
    context: Mapping[str, Any] | None
    url: str | None
    run_id: str
    sample_rate: float


RECORD_WIDTH = len(RequestRecord._fields)  # fields per record in the buffer's flat lists
RUN_ID = RequestRecord._fields.index("run_id")  # the run id's place in a record: flat[RUN_ID::RECORD_WIDTH]


_second_cache: list[Any] = [None, ""]
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # formatting ".123Z" per record costs ~0.4 µs; a lookup ~0.05


def iso_timestamp(epoch: float) -> str:
    """ISO-8601 UTC with millisecond precision, the one timestamp format of every document; caches the
    per-second prefix (records arrive in order)."""
    whole = int(epoch)
    if _second_cache[0] != whole:
        _second_cache[0] = whole
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return _second_cache[1] + _MILLIS[int((epoch - whole) * 1000)]


def _default(value: Any) -> Any:
    """orjson fallback: anything JSON cannot carry becomes a string instead of an error."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    return str(value)


_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(doc: Mapping[str, Any]) -> bytes:
    """Serialise one document; never raises for odd values (they are stringified)."""
    try:
        # The common case first: plain JSON types need neither `default` nor options (keyword arguments
        # alone cost orjson ~0.15 µs a call, and this runs once per record).
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    try:
        return orjson.dumps(doc, default=_default, option=_OPTS)
    except TypeError:
        # e.g. integers past 64 bits or recursive structures: fall back to a fully stringified copy.
        return orjson.dumps(_stringify(doc), option=_OPTS)


def _stringify(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _stringify(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stringify(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return value
    return _default(value)


def cut_long_leaves(value: Any, limit: int, depth: int = 0) -> Any:
    """`value` with every string longer than `limit` characters cut to `limit` (a copy where anything was cut).
    For a free-form field whose type indexes every leaf without a length limit (OpenSearch's `flat_object`:
    Lucene refuses a term over 32,766 bytes, and with it the whole document)."""
    if isinstance(value, str):
        return value[:limit] if len(value) > limit else value
    if depth > 20:
        return value
    if isinstance(value, Mapping):
        return {k: cut_long_leaves(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cut_long_leaves(v, limit, depth + 1) for v in value]
    return value


def request_document(record: RequestRecord, node: str, max_leaf: int = 0) -> dict[str, Any]:
    """The `<prefix>-requests` document for one record (see docs/DESIGN.md); `max_leaf` > 0 cuts the
    context's long strings (cut_long_leaves)."""
    # Unpacking is several times cheaper than 12 named-attribute lookups; this runs once per record.
    (_seq, start_time, request_type, name, response_time, response_length, status_code, exception, context, url,
     run_id, sample_rate) = record  # fmt: skip
    doc: dict[str, Any] = {
        "@timestamp": iso_timestamp(start_time),
        "run_id": run_id,
        "node": node,
        "request_type": request_type,
        "name": name,
        "url": url,
        "response_time": response_time,
        "response_length": response_length,
        "success": exception is None,
    }
    if status_code is not None:
        doc["status_code"] = status_code
    if exception is not None:
        doc["exception"] = exception
    if context:
        doc["context"] = cut_long_leaves(context, max_leaf) if max_leaf else context
    if sample_rate < 1.0:
        doc["sample_rate"] = sample_rate
    return doc


def document_id(run_id: str, node: str, seq: int) -> str:
    """Deterministic id: a retry or replay of the same record can never create a second document."""
    return f"{run_id}:{node}:{seq}"


class RequestEncoder:
    """Request records -> bulk action lines and documents, for one node and one index.

    The same code runs in Locust's process and in the encoder helper process (encoder.py), so both produce
    the same bytes. Records come as the buffer stores them: flat, RECORD_WIDTH fields each.
    """

    def __init__(self, node: str, action_head: bytes, max_leaf: int = 0) -> None:
        self.node = node
        self.action_head = action_head  # `{"create":{"_index":"<index>","_id":`
        self.max_leaf = max_leaf  # > 0: cut longer strings in contexts (cut_long_leaves)
        self._heads: dict[str, bytes] = {}  # run id -> action head + `"<run>:<node>:` (JSON-escaped)

    def encode(self, flat: Sequence[Any], first: int, last: int, lines: list[bytes]) -> None:
        """Append the action line and the document of records first..last-1 of `flat` to `lines`."""
        node, heads, width, run_field, max_leaf = self.node, self._heads, RECORD_WIDTH, RUN_ID, self.max_leaf
        append = lines.append
        for i in range(first * width, last * width, width):
            record = flat[i : i + width]
            run_id = record[run_field]
            head = heads.get(run_id)
            if head is None:
                head = heads[run_id] = self.action_head + orjson.dumps(f"{run_id}:{node}:")[:-1]
            append(b'%b%d"}}' % (head, record[0]))  # document_id(run_id, node, seq); seq needs no escaping
            append(dumps(request_document(record, node, max_leaf)))  # type: ignore[arg-type]

    @staticmethod
    def body(lines: list[bytes]) -> bytes:
        """Lines -> bulk-format NDJSON (each line ends with a newline; JSON lines hold no raw newline)."""
        lines.append(b"")
        body = b"\n".join(lines)
        lines.pop()
        return body
