"""The `_bulk` protocol without a client: items, their NDJSON body, per-item results, and failures.

Used by the delivery engine, the spool, file mode and the CLI's load/replay. A failure is classified once
(`SinkTransportError.kind`), so that every caller decides the same way: retryable, a configuration problem
(stop trying, spool, tell the user once), or a permanent rejection of single documents (dead-letter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import orjson

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Refusals that say nothing about the document: an index or cluster block (flood-stage disk watermark:
# 429 read_only_allow_delete; an operator's write block: 403) is lifted some day, so these are retried (and
# spooled), never dead-lettered.
TEMPORARY_ERRORS = frozenset({"cluster_block_exception"})


class BulkItem(NamedTuple):
    """One bulk operation: `op` is `create` (append-only records) or `index` (run documents).

    `action` is the encoded action line when the producer already has it (request records, lines read
    back from files): a batch can be sent, retried, spooled and replayed without re-encoding it.
    """

    op: str
    index: str
    doc_id: str | None
    source: bytes
    is_request: bool = True  # request records and other documents are accounted separately
    run_id: str = ""
    action: bytes = b""

    def action_line(self) -> bytes:
        return self.action or action_line(self.op, self.index, self.doc_id)

    def document_id(self) -> str | None:
        """The `_id`; request records leave `doc_id` None and carry it in their action line only (building
        the string per record would cost Locust's process ~0.15 µs each, and it is needed only for reports)."""
        if self.doc_id is not None or not self.action:
            return self.doc_id
        return orjson.loads(self.action)[self.op].get("_id")


_ACTION_PREFIXES: dict[tuple[str, str], bytes] = {}


def action_prefix(op: str, index: str) -> bytes:
    """`{"create":{"_index":"..."`: the constant part of an action line, built once per (op, index)."""
    prefix = _ACTION_PREFIXES.get((op, index))
    if prefix is None:
        prefix = _ACTION_PREFIXES[(op, index)] = orjson.dumps({op: {"_index": index}})[:-2]
    return prefix


def action_line(op: str, index: str, doc_id: str | None) -> bytes:
    """`{"create":{"_index":...,"_id":...}}`."""
    if doc_id is None:
        return action_prefix(op, index) + b"}}"
    return action_prefix(op, index) + b',"_id":' + orjson.dumps(doc_id) + b"}}"


def encode_body(items: Sequence[BulkItem]) -> bytes:
    """Items -> bulk-format NDJSON (action line, source, ...; every line ends with a newline). The one
    encoder of bulk bodies: requests to Elasticsearch, NDJSON files and spool segments are all this."""
    parts: list[bytes] = []
    for item in items:
        parts.append(item.action_line())
        parts.append(item.source)
    parts.append(b"")
    return b"\n".join(parts)


class ErrorKind(Enum):
    UNREACHABLE = "unreachable"  # connection refused/reset, DNS, timeout
    OVERLOADED = "overloaded"  # 429/5xx, or items refused again and again
    AUTH = "auth"  # 401/403
    TLS = "tls"
    VERSION = "version"  # client and server majors do not fit
    PRODUCT = "product"  # not the product the client talks to
    CONFIG = "config"  # a setting the client cannot use (a URL, a CA file)
    TOO_LARGE = "too_large"  # 413
    BAD_REQUEST = "bad_request"  # other 4xx
    INTERNAL = "internal"  # anything else (a bug, an odd client error)


_RETRYABLE = frozenset({ErrorKind.UNREACHABLE, ErrorKind.OVERLOADED})
_CONFIG = frozenset({ErrorKind.AUTH, ErrorKind.TLS, ErrorKind.VERSION, ErrorKind.PRODUCT, ErrorKind.CONFIG})


class SinkTransportError(Exception):
    """A whole request (a `_bulk`, a health check) failed, classified by `kind`. `cause`: what stays the
    same while the same condition lasts (the message may carry changing counts); defaults to the message."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.cause = cause if cause is not None else message

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE

    @property
    def config_problem(self) -> bool:
        """Trying again will not help until the user changes something: stop, spool, say so once."""
        return self.kind in _CONFIG


@dataclass
class BulkOutcome:
    """Per-item result of one `_bulk` request."""

    indexed: list[BulkItem] = field(default_factory=list)
    retry: list[BulkItem] = field(default_factory=list)
    rejected: list[tuple[BulkItem, int, Any]] = field(default_factory=list)  # (item, status, error)
    retry_statuses: dict[int, int] = field(default_factory=dict)
    retry_reasons: dict[str, str] = field(default_factory=dict)  # error type -> an example reason

    def describe_retries(self) -> str:
        """`429x3, 503x1` plus ES's reason per error type, for the one log line about refused items."""
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(self.retry_statuses.items()))
        reasons = "; ".join(f"{kind}: {reason}" for kind, reason in sorted(self.retry_reasons.items()))
        return f"{statuses} ({reasons})" if reasons else statuses

    def retry_cause(self) -> str:
        """The statuses and error types of the refused items, without counts: one refusal condition."""
        return ",".join([str(s) for s in sorted(self.retry_statuses)] + sorted(self.retry_reasons))


def sort_items(items: Sequence[BulkItem], result: dict[str, Any]) -> BulkOutcome:
    """Sort the items of one `_bulk` request into indexed / retry / rejected by its result.

    A 409 on `create` means the document is already there (an earlier attempt succeeded), so it counts
    as indexed: that is what makes retries and replays idempotent.
    """
    outcome = BulkOutcome()
    if not result.get("errors"):
        outcome.indexed.extend(items)
        return outcome
    results = result.get("items") or []
    if len(results) != len(items):
        raise SinkTransportError(ErrorKind.BAD_REQUEST, "a bulk request was answered with a wrong item count")
    for item, entry in zip(items, results, strict=True):
        detail = next(iter(entry.values()))
        status = int(detail.get("status", 500))
        if status < 300 or (status == 409 and item.op == "create"):
            outcome.indexed.append(item)
        elif status in RETRYABLE_STATUS or _error_type(detail.get("error")) in TEMPORARY_ERRORS:
            outcome.retry.append(item)
            outcome.retry_statuses[status] = outcome.retry_statuses.get(status, 0) + 1
            error = detail.get("error")
            if isinstance(error, dict) and error.get("type") and len(outcome.retry_reasons) < 3:
                outcome.retry_reasons.setdefault(str(error["type"]), str(error.get("reason", ""))[:200])
        else:
            outcome.rejected.append((item, status, detail.get("error")))
    return outcome


def _error_type(error: Any) -> str | None:
    return error.get("type") if isinstance(error, dict) else None
