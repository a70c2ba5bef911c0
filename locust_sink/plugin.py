"""Locust wiring: options, listeners, node role and run id. The only module that imports Locust.

Listeners are registered inside `events.init` (listeners added at import time run before Locust's own and
see empty payloads). The `request` listener is the hot path: it builds one tuple and appends it to a
bounded deque; everything else happens in the flusher greenlet.
"""

from __future__ import annotations

import atexit
import logging
import random
import secrets
import signal
import threading
import time
import weakref
from typing import Any

import gevent
from gevent import getcurrent
from gevent.event import Event
from locust import events as global_events
from locust.env import Environment
from locust.stats import StatsError

from .buffer import RecordBuffer
from .flusher import Flusher
from .nodes import node_id, node_role
from .options import SinkOptions, add_arguments, option_values
from .stats import StatsRecorder
from .transport import DEFAULT_CLI_ES_URL, cli_command

log = logging.getLogger("locust_sink")
# The client logs every request at INFO: thousands of lines per run that say nothing the sink does not.
logging.getLogger("elastic_transport").setLevel(logging.WARNING)


_PLAIN = frozenset({str, int, float, bool, type(None)})
try:  # FastHttpUser's errors carry the URL as this object; its repr is made of its text
    from geventhttpclient.url import URL as _URL
except ImportError:  # pragma: no cover - Locust depends on geventhttpclient
    _URL = None
_PLAIN_OR_URL = _PLAIN | {_URL} if _URL is not None else _PLAIN
_error_texts: dict[Any, str] = {}  # (type, args, attributes) -> StatsError.parse_error text


def _key_part(values: Any) -> Any:
    """`values` as a hashable key that determines their reprs, or None when they are not plain values."""
    types = set(map(type, values))
    if types <= _PLAIN:
        return tuple(values)
    if types <= _PLAIN_OR_URL:
        return tuple((v if type(v) is not _URL else (_URL, str(v))) for v in values)
    return None


def error_text(exception: Any) -> str:
    """`StatsError.parse_error(exception)`, the text Locust's own failure stats use, cached by what it is made of.

    parse_error builds a repr (FastHttpUser's status errors: several Python-level reprs, a few µs), and every
    failed request pays it on the hot path. An exception whose args and attributes are plain values (str, int,
    ..., and geventhttpclient's URL) of a class from Locust, its HTTP clients or the standard library has a repr
    made of exactly those, so equal ones share the text. Anything else (a response object among the
    attributes, a user's own class) is not cached.
    """
    cls = type(exception)
    module = getattr(cls, "__module__", "")
    if module.startswith(("locust.", "geventhttpclient.", "requests.", "urllib3.", "builtins")):
        try:
            attrs = getattr(exception, "__dict__", None) or {}
            args_key = _key_part(exception.args)
            attrs_key = _key_part(attrs.values()) if args_key is not None else None
            if attrs_key is not None:
                key = (cls, args_key, tuple(attrs), attrs_key)
                text = _error_texts.get(key)
                if text is None:
                    if len(_error_texts) >= 1000:
                        _error_texts.clear()  # bounded: error texts with ever-new values are not worth keeping
                    text = _error_texts[key] = StatsError.parse_error(exception)
                return text
        except Exception:  # noqa: BLE001 - odd exception objects: no caching, same text as Locust's
            pass
    return StatsError.parse_error(exception)


def new_run_id() -> str:
    """Sortable and unique enough: UTC start time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class LocustSink:
    """One per Locust process: owns the buffer and the flusher, listens to Locust's events."""

    def __init__(
        self, environment: Environment, overrides: dict[str, Any] | None = None, close_on_quitting: bool = False
    ) -> None:
        self.environment = environment
        self.overrides = dict(overrides or {})
        self.options = SinkOptions.from_values(option_values(environment.parsed_options, self.overrides))
        self.user_run_id = self.options.run_id
        self.run_id = self.user_run_id or new_run_id()
        self._wake = Event()
        self.buffer = RecordBuffer(self.options.settings.queue_size, self.options.settings.batch_size, self._wake)
        self.flusher: Flusher | None = None
        self._seq = 0
        self.sampled_out = 0
        self._sample_rate = self.options.sample_rate
        self._started_logged = False
        self._closed = False
        self.first_start = True
        # Under `locust` (main.py) the final flush runs at `quit`: after the workers' last reports and the
        # --json-file, with the exit code. A hand-built Environment (attach) may only fire `quitting`.
        self.close_on_quitting = close_on_quitting
        self._atexit_registered = False
        self.recorder = StatsRecorder(environment, self, lambda: self.options)

    # ----- configuration ---------------------------------------------------------------------------
    @property
    def role(self) -> str:
        return node_role(self.environment)

    @property
    def node(self) -> str:
        return node_id(self.environment)

    def _configure(self) -> None:
        """(Re)read options at test start: on a worker they arrive from the master with the spawn message."""
        if self.flusher is not None:
            return
        opts = SinkOptions.from_values(option_values(self.environment.parsed_options, self.overrides))
        self.options = opts
        self._sample_rate = opts.sample_rate
        self.buffer.maxsize = opts.settings.queue_size
        self.buffer.batch_size = opts.settings.batch_size
        setup = None
        if opts.es is not None and opts.setup_templates:
            prefix, replicas, ilm_policy = opts.index_prefix, opts.replicas, opts.ilm_policy

            def setup(es: Any) -> None:
                from . import schema

                schema.install_templates(es, prefix=prefix, replicas=replicas, ilm_policy=ilm_policy)

        self.flusher = Flusher(
            self.buffer,
            self._wake,
            node=self.node,
            index_prefix=opts.index_prefix,
            sink_dir=opts.sink_dir,
            settings=opts.settings,
            es_config=opts.es,
            setup=setup,
        )
        self.flusher.start()
        if not self._atexit_registered:
            # fallback when `quit` never fires (e.g. shutdown interrupted between quitting and quit)
            self._atexit_registered = True
            register_exit_hook_before_finalizers(self._close_at_exit)

    def _choose_run_id(self) -> None:
        parsed = self.environment.parsed_options
        if self.role == "worker":
            # The master put its run id into parsed_options, which arrive with the spawn message before
            # test_start fires here, and before any user (so any request) starts on this worker.
            master_run_id = getattr(parsed, "run_id", None) if parsed is not None else None
            self.run_id = master_run_id or self.run_id
            return
        if self.first_start:
            self.first_start = False
        elif not self.user_run_id:
            self.run_id = new_run_id()  # a new test from the web UI is a new run
        if parsed is not None:
            parsed.run_id = self.run_id  # sent to the workers with the spawn message

    # ----- Locust listeners ------------------------------------------------------------------------
    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        context: Any = None,
        exception: Any = None,
        start_time: float | None = None,
        url: str | None = None,
        **_kwargs: Any,
    ) -> None:
        """The hot path: the record's fields go straight into the buffer (RecordBuffer.put, inlined: this
        runs on every request). No formatting, no I/O."""
        if exception is None:
            rate = self._sample_rate
            if rate < 1.0 and random.random() >= rate:
                self.sampled_out += 1
                return
            error = None
        else:
            rate = 1.0  # failures are always kept: their documents carry no sample_rate (weight 1)
            error = error_text(exception)
        self._seq += 1
        buf = self.buffer
        acc = buf.accounting
        acc.emitted += 1
        if buf._len >= buf.maxsize:
            acc.overflowed += 1
            acc.dropped += 1
            return
        tail = buf._tail
        tail += (  # the fields in RequestRecord's order
            self._seq,
            start_time if start_time is not None else time.time() - (response_time or 0) / 1000.0,
            request_type,
            name,
            response_time,
            response_length or 0,
            getattr(response, "status_code", None),
            error,
            context or None,
            url,
            self.run_id,
            rate,
        )
        buf._len += 1
        acc.queued += 1
        if len(tail) >= buf._chunk_len:
            buf._full.append(tail)
            buf._tail = []
        if buf._len == buf.batch_size:
            buf._wake.set()

    def on_test_start(self, environment: Environment, **_kwargs: Any) -> None:
        self._choose_run_id()
        self._configure()
        if self.role == "master":
            target = self.describe_target()
            log.info("locust-sink: run %s: workers send requests to %s; master records stats", self.run_id, target)
        else:
            log.info("locust-sink: run %s: recording requests to %s", self.run_id, self.describe_target())
        self.recorder.start_run(self.run_id)

    def on_test_stop(self, environment: Environment, **_kwargs: Any) -> None:
        self.recorder.stop_run()  # CPU only (standalone: the final snapshot); never blocks
        if self.flusher is not None:
            self.flusher.wake()  # deliver now, but never block Locust's stop sequence

    def on_quitting(self, environment: Environment, **_kwargs: Any) -> None:
        if self.close_on_quitting:
            self.close()
        elif self.flusher is not None:
            self.flusher.wake()  # the final flush waits for `quit` (after the workers' last reports)

    def on_quit(self, exit_code: int | None = None, **_kwargs: Any) -> None:
        self.close(exit_code=exit_code)

    def _close_at_exit(self) -> None:
        if not self._closed:
            log.warning("locust-sink: Locust's quit event did not fire; final flush at interpreter exit")
            self.close()

    def status(self) -> dict[str, Any]:
        """Where records went so far: for the web UI route, the run document and tests."""
        flusher = self.flusher
        return {
            "run_id": self.run_id,
            "node": self.node,
            "target": self.describe_target(),
            "state": flusher.state if flusher else "not started",
            "requests": self.buffer.accounting.as_dict(),
            "documents": flusher.doc_accounting.as_dict() if flusher else {},
            "sampled_out": self.sampled_out,
            "retries": flusher.retry_counts() if flusher else {},
            "encoding": flusher.encoder_counts() if flusher else {},
            "trouble": list(flusher.trouble) if flusher else [],
        }

    # ----- the stats recorder's SinkPort (locust_sink/stats/port.py; status() above is its status) -------
    def started(self) -> bool:
        return self.flusher is not None

    def submit(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        if self.flusher is None:
            return False
        return self.flusher.submit_document(family, doc, run_id, doc_id=doc_id, op=op)

    def request_drain(self) -> None:
        if self.flusher is not None:
            self.flusher.wake()

    def trouble(self) -> list[str]:
        return list(self.flusher.trouble) if self.flusher is not None else []

    def describe_target(self) -> str:
        if self.options.es is not None:
            return f"Elasticsearch {self.options.es.describe()} (indices {self.options.index_prefix}-*)"
        return f"NDJSON files under {self.options.sink_dir}/{self.run_id}/ (no --es-url given)"

    # ----- end of run ------------------------------------------------------------------------------
    def close(self, timeout: float | None = None, exit_code: int | None = None) -> bool:
        """Final snapshot and run document, then the final flush with a deadline; logs where every record
        went. Safe to call twice.

        Two passes: first everything queued (requests, snapshots, events) is delivered, then the run
        document and this node's `sink_summary` event, which carry the accounting of the first pass. The
        second pass only waits if the first one delivered everything (not after a Ctrl-C or an outage).
        """
        if self._closed:
            return True
        self._closed = True
        if self.flusher is None:
            if self.buffer.accounting.emitted == 0:
                return True
            self._configure()
        assert self.flusher is not None
        budget = self.options.settings.flush_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            self.recorder.finish(exit_code)
            spooled = self.buffer.accounting.spooled + self.flusher.doc_accounting.spooled
            done = self.flusher.flush(budget, final=True)
            smooth = (
                done
                and self.buffer.accounting.spooled + self.flusher.doc_accounting.spooled == spooled
                and self.flusher.state in ("up", "file")
            )
            self.recorder.closing_documents(smooth)
            remaining = max(0.0, budget - (time.monotonic() - started)) if smooth else 0.0
            done = self.flusher.close(remaining) and done
        finally:
            self._log_summary(time.monotonic() - started)
        return done

    def _log_summary(self, took: float) -> None:
        assert self.flusher is not None
        acc = self.buffer.accounting
        where = self.describe_target()
        sampled = f", {self.sampled_out} sampled out" if self.sampled_out else ""
        log.info(
            "locust-sink: run %s: %d request records -> %s: %s%s; final flush took %.2f s",
            self.run_id,
            acc.emitted,
            where,
            acc.summary(),
            sampled,
            took,
        )
        if self.flusher.mode == "file" and self.flusher.file_writer and self.flusher.file_writer.paths:
            path = self.flusher.file_writer.paths.get(self.run_id)
            if path is not None:
                log.info(
                    "locust-sink: records are in %s; load them into Elasticsearch with `%s` (add --es-url URL "
                    "for another one than %s)",
                    path.parent,
                    cli_command("load", str(path.parent)),
                    DEFAULT_CLI_ES_URL,
                )
        spooled = acc.spooled + self.flusher.doc_accounting.spooled
        if spooled:
            es = self.options.es
            args = es.cli_args() if es else []
            log.warning(
                "locust-sink: %d documents could not be delivered and wait in the spool %s; deliver them with `%s`%s",
                spooled,
                self.flusher.spool.root,
                cli_command("replay", str(self.flusher.spool.root), *args),
                es.secret_env_hint() if es else "",
            )


class _ExitOrderAnchor:
    """A long-lived object for the finalizer that fixes the order of exit hooks (see below)."""


_EXIT_ORDER_ANCHOR = _ExitOrderAnchor()


def register_exit_hook_before_finalizers(hook: Any) -> None:
    """Register `hook` with atexit so that it runs before the finalizers of `weakref.finalize`.

    atexit runs hooks last-registered-first, and `weakref.finalize` registers its own exit hook when the first
    finalizer of the process is made. urllib3 makes one per connection pool, which empties the pool at exit.
    The sink's Elasticsearch client is created later than this hook (in the flusher greenlet), so without
    this the pool was emptied first, and a final flush at exit whose connection was back in the pool then
    waited for one until its deadline and spooled everything. A finalizer made here (it does nothing, and
    not at exit) puts weakref's exit hook below this one.
    """
    weakref.finalize(_EXIT_ORDER_ANCHOR, int).atexit = False
    atexit.register(hook)


def register_listeners(sink: LocustSink) -> None:
    events = sink.environment.events
    events.request.add_listener(sink.on_request)
    events.test_start.add_listener(sink.on_test_start)
    events.test_stop.add_listener(sink.on_test_stop)
    events.quitting.add_listener(sink.on_quitting)
    events.quit.add_listener(sink.on_quit)
    sink.recorder.register(events)


_ctrl_c_routed = False


def route_ctrl_c_to_main_greenlet() -> bool:
    """Make Ctrl-C raise KeyboardInterrupt in the main greenlet. Returns whether the handler is in place.

    Python raises it in whatever code runs when SIGINT arrives: often a user greenlet, e.g. between Locust's
    stats listener and the sink's (Locust counts a request the sink never sees) or mid-request (a traceback
    per Ctrl-C). This handler forwards it to the main greenlet, where Locust waits for it
    (`main_greenlet.join()`, then its shutdown) and where the sink's final flush runs (a second Ctrl-C ends
    that wait and spools). If the event loop does not run for two Ctrl-Cs in a row (a greenlet that never
    yields), the third one interrupts wherever it lands, as before. Only installed when nobody else has a
    SIGINT handler (Locust's --processes parent has one), and only from the main thread.
    """
    global _ctrl_c_routed
    if _ctrl_c_routed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    hub = gevent.get_hub()
    main = hub.parent  # the greenlet that created the hub: where gevent itself sends KeyboardInterrupt
    pending: list[Any] = []  # one loop callback per Ctrl-C not yet delivered

    def deliver() -> None:  # runs in the hub, between greenlets
        pending.pop(0)
        if not main.dead:
            main.throw(KeyboardInterrupt)

    def on_sigint(_signum: int, _frame: Any) -> None:
        if getcurrent() is main:
            raise KeyboardInterrupt
        if len(pending) >= 2:  # the loop has not run since two Ctrl-Cs: interrupt here instead, once
            for callback in pending:
                callback.stop()
            pending.clear()
            raise KeyboardInterrupt
        pending.append(hub.loop.run_callback(deliver))

    signal.signal(signal.SIGINT, on_sigint)
    _ctrl_c_routed = True
    return True


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    if getattr(environment, "locust_sink", None) is not None:
        return
    if environment.parsed_options is not None:  # launched by `locust` (not a hand-built Environment)
        route_ctrl_c_to_main_greenlet()
    try:
        sink = LocustSink(environment)
    except (ValueError, TypeError) as exc:
        # Bad options must not stop the load test: one clear error, no sink.
        log.error("locust-sink: disabled, bad option: %s", exc)
        return
    environment.locust_sink = sink  # type: ignore[attr-defined]
    register_listeners(sink)
    web_ui = _kwargs.get("web_ui")
    if web_ui is not None:
        add_web_route(web_ui, sink)


def add_web_route(web_ui: Any, sink: LocustSink) -> None:
    """GET /locust-sink/status on Locust's web UI: the sink's accounting as JSON (no secrets in it)."""
    from flask import jsonify

    def locust_sink_status() -> Any:
        return jsonify(sink.status())

    guard = getattr(web_ui, "auth_required_if_enabled", None)
    view = guard(locust_sink_status) if guard else locust_sink_status
    web_ui.app.add_url_rule("/locust-sink/status", "locust_sink_status", view)


_registered = False


def register(events: Any = global_events) -> None:
    """Hook into Locust's global events (called by `import locust_sink` in a locustfile)."""
    global _registered
    if _registered:
        return
    _registered = True
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_on_init)


def attach(environment: Environment, **options: Any) -> LocustSink:
    """Programmatic API for a hand-built Environment: `sink = attach(env, es_url="http://...")`.

    Call it before starting the runner; call `sink.close()` at the end (or fire `quitting`).
    """
    existing = getattr(environment, "locust_sink", None)
    if existing is not None:
        return existing
    sink = LocustSink(environment, options, close_on_quitting=True)
    environment.locust_sink = sink  # type: ignore[attr-defined]
    register_listeners(sink)
    return sink


__all__ = ["LocustSink", "attach", "register"]
