"""The event log (`<prefix>-events`): one document per event, with a per-node sequence in its id.

Events raised before the run id is known and the sink has started (a worker connecting before the test, a
user error on a worker before the spawn message) are held, up to MAX_PENDING_EVENTS, and written when the
run starts. Live `user_error` events are capped per kind (exception type and raising line): the first
USER_ERROR_EVENTS_PER_KIND of each kind per node and run carry a traceback; the end-of-run rows
(`final_user_error_fields`) have every count.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from locust.stats import RequestStats, StatsError

from ..records import iso_timestamp
from .port import SinkPort

log = logging.getLogger("locust_sink")

USER_ERROR_EVENTS_PER_KIND = 10  # live user_error documents per (exception type, raising line) and node
MAX_ERROR_KINDS = 1000
MAX_PENDING_EVENTS = 1000
MAX_MESSAGE = 4000  # characters of an error message kept in an event
MAX_TRACEBACK = 20000  # characters of a traceback kept in an event (its end: where it was raised)


class EventLog:
    """Builds, holds and submits the event documents of one node."""

    def __init__(self, port: SinkPort, node: Callable[[], str]) -> None:
        self.port = port
        self.node = node  # this node's id, read when a document is made (the runner exists by then)
        self.run_id: str | None = None
        self._seq = 0  # one sequence per process: ids stay unique across the runs of a web-UI session
        self._pending: list[dict[str, Any]] = []
        self._dropped_pending = 0
        self._user_errors: dict[tuple[str, str, int], int] = {}  # kind -> occurrences in this run

    def begin_run(self, run_id: str) -> None:
        """Events from now on belong to `run_id`; user-error caps start again. Held events stay held until
        `release` (the run's own `test_start` comes first)."""
        self.run_id = run_id
        self._user_errors = {}

    def release(self) -> None:
        """Write the held events, if the run id is known and the sink started."""
        if not self.port.started() or self.run_id is None:
            return
        pending, self._pending = self._pending, []
        for doc in pending:
            self._emit(doc)

    def event(self, kind: str, node: str | None = None, when: float | None = None, **fields: Any) -> None:
        """Queue one event document (held until the run id is known and the sink started). Fields that are
        None are left out."""
        doc: dict[str, Any] = {
            "@timestamp": iso_timestamp(when or time.time()),
            "node": node or self.node(),
            "event": kind,
        }
        doc.update({k: v for k, v in fields.items() if v is not None})
        if not self.port.started() or self.run_id is None:
            if len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(doc)
            else:
                self._dropped_pending += 1
                if self._dropped_pending == 1:
                    log.warning(
                        "locust-sink: more than %d events before the run started; later ones are not recorded",
                        MAX_PENDING_EVENTS,
                    )
            return
        self._emit(doc)

    def _emit(self, doc: dict[str, Any]) -> None:
        assert self.run_id is not None
        doc["run_id"] = self.run_id
        self._seq += 1
        self.port.submit("events", doc, self.run_id, doc_id=f"{self.run_id}:{self.node()}:e{self._seq}", op="create")

    def user_error(self, user_instance: Any, exception: BaseException, tb: Any) -> None:
        """Locust's `user_error`: one event with the traceback, for the first occurrences of each kind."""
        last = tb
        while last is not None and last.tb_next is not None:
            last = last.tb_next
        where = (last.tb_frame.f_code.co_filename, last.tb_lineno) if last is not None else ("", 0)
        key = (type(exception).__name__, where[0], where[1])
        count = self._user_errors.get(key, 0) + 1
        if count == 1 and len(self._user_errors) >= MAX_ERROR_KINDS:
            return
        self._user_errors[key] = count
        if count > USER_ERROR_EVENTS_PER_KIND:
            return
        user = getattr(user_instance, "user", user_instance)  # a TaskSet knows its User
        details: dict[str, Any] = {"user_class": type(user).__name__, "occurrence": count}
        if count == USER_ERROR_EVENTS_PER_KIND:
            details["further_occurrences_not_recorded"] = True
        self.event(
            "user_error",
            message=f"{type(exception).__name__}: {exception}"[:MAX_MESSAGE],
            error=type(exception).__name__,
            occurrences=1,
            traceback="".join(traceback.format_exception(type(exception), exception, tb))[-MAX_TRACEBACK:],
            details=details,
        )


def failure_groups(stats: RequestStats) -> list[dict[str, Any]]:
    """The fields of one `failure_group` event per row of Locust's failures table, most frequent first."""
    return [
        {
            "request_type": error.method,
            "name": error.name,
            "error": StatsError.parse_error(error.error),
            "occurrences": error.occurrences,
            "message": error.to_name(),
            "details": {
                "first_seen": iso_timestamp(error.first_seen) if error.first_seen is not None else None,
                "last_seen": iso_timestamp(error.last_seen) if error.last_seen is not None else None,
            },
        }
        for error in sorted(stats.errors.values(), key=lambda e: (-e.occurrences, e.method, e.name))
    ]


def final_user_error_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the end-of-run `user_error` event for one row of Locust's exceptions table."""
    return {
        "message": str(row.get("msg"))[:MAX_MESSAGE],
        "occurrences": row.get("count"),
        "traceback": str(row.get("traceback"))[-MAX_TRACEBACK:],
        "details": {"final": True, "nodes": sorted(str(n) for n in row.get("nodes") or ())},
    }
