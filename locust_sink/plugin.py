"""Locust wiring: options, listeners, node role and run id, the end of a run.

Listeners are registered inside `events.init` (listeners added at import time run before Locust's own and
see empty payloads). The `request` listener is the request buffer's own `on_request` (buffer.py): the hot
path appends the record's fields and returns; everything else happens in the delivery engine's greenlet
(delivery/) and, for snapshots, run documents and events, in the stats recorder (stats/).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from locust import events as global_events
from locust.env import Environment

from .buffer import RecordBuffer
from .config import DEFAULT_CLI_ES_URL, cli_command
from .delivery.engine import Delivery
from .errors import error_text
from .interrupts import register_exit_hook_before_finalizers, route_ctrl_c_to_main_greenlet
from .live import wiring as live
from .nodes import node_id, node_role
from .options import SinkOptions, add_arguments, option_values
from .stats import StatsObserver, StatsRecorder

log = logging.getLogger("locust_sink")
# The client logs every request at INFO: thousands of lines per run that say nothing the sink does not.
logging.getLogger("elastic_transport").setLevel(logging.WARNING)


def new_run_id() -> str:
    """Sortable and unique enough: UTC start time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _no_delivery_yet() -> None:
    """The buffer's wake-up before the delivery engine exists (records queued before the first test start)."""


class LocustSink:
    """One per Locust process: the request buffer, the delivery engine, the stats recorder.

    The delivery engine is made at the first test start: on a worker, the options arrive from the master
    with the spawn message. Towards the stats recorder this object is its `SinkPort` (stats/port.py).
    """

    def __init__(
        self,
        environment: Environment,
        overrides: dict[str, Any] | None = None,
        close_on_quitting: bool = False,
        observer: StatsObserver | None = None,
    ) -> None:
        self.environment = environment
        self.overrides = dict(overrides or {})
        self.options = SinkOptions.from_values(option_values(environment.parsed_options, self.overrides))
        self.user_run_id = self.options.run_id
        settings = self.options.settings
        self.buffer = RecordBuffer(
            settings.queue_size,
            settings.batch_size,
            _no_delivery_yet,
            error_text=error_text,
            run_id=self.user_run_id or new_run_id(),
            sample_rate=self.options.sample_rate,
        )
        self.delivery: Delivery | None = None
        self._closed = False
        self._first_start = True
        # Under `locust` (main.py) the final flush runs at `quit`: after the workers' last reports and the
        # --json-file, with the exit code. A hand-built Environment (attach) may only fire `quitting`.
        self.close_on_quitting = close_on_quitting
        self._atexit_registered = False
        self.recorder = StatsRecorder(environment, self, lambda: self.options, observer=observer)

    # ----- identity ---------------------------------------------------------------------------------
    @property
    def role(self) -> str:
        return node_role(self.environment)

    @property
    def node(self) -> str:
        return node_id(self.environment)

    @property
    def run_id(self) -> str:
        return self.buffer.run_id

    def _choose_run_id(self) -> None:
        parsed = self.environment.parsed_options
        if self.role == "worker":
            # The master put its run id into parsed_options, which arrive with the spawn message before
            # test_start fires here, and before any user (so any request) starts on this worker.
            master_run_id = getattr(parsed, "run_id", None) if parsed is not None else None
            self.buffer.run_id = master_run_id or self.buffer.run_id
            return
        if self._first_start:
            self._first_start = False
        elif not self.user_run_id:
            self.buffer.run_id = new_run_id()  # a new test from the web UI is a new run
        if parsed is not None:
            parsed.run_id = self.run_id  # sent to the workers with the spawn message

    def _configure(self) -> Delivery:
        """The delivery engine, made once (at the first test start) from the options of that moment."""
        if self.delivery is not None:
            return self.delivery
        opts = SinkOptions.from_values(option_values(self.environment.parsed_options, self.overrides))
        self.options = opts
        self.buffer.resize(opts.settings.queue_size, opts.settings.batch_size)
        self.buffer.sample_rate = opts.sample_rate
        setup = None
        if opts.es is not None and opts.setup_templates:
            prefix, replicas, ilm_policy = opts.index_prefix, opts.replicas, opts.ilm_policy

            def setup(backend: Any) -> None:
                from . import schema

                schema.install_templates(backend, prefix=prefix, replicas=replicas, ilm_policy=ilm_policy)

        self.delivery = Delivery(
            self.buffer, self.node, opts.index_prefix, opts.sink_dir, opts.settings, opts.es, setup
        )
        self.delivery.start()
        if not self._atexit_registered:
            # fallback when `quit` never fires (e.g. shutdown interrupted between quitting and quit)
            self._atexit_registered = True
            register_exit_hook_before_finalizers(self._close_at_exit)
        return self.delivery

    # ----- SinkPort (what the stats recorder may use) -----------------------------------------------
    def started(self) -> bool:
        return self.delivery is not None

    def submit(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        if self.delivery is None:
            return False
        return self.delivery.submit_document(family, doc, run_id, doc_id=doc_id, op=op)

    def request_drain(self) -> None:
        if self.delivery is not None:
            self.delivery.request_drain()

    def status(self) -> dict[str, Any]:
        """Where this node's records go and went so far: the web UI route, the run document, worker reports,
        the programmatic API (no secrets in it)."""
        where = {"run_id": self.run_id, "node": self.node, "target": self.describe_target()}
        if self.delivery is not None:
            return {**where, **self.delivery.status()}
        return {
            **where,
            "state": "not started",
            "requests": self.buffer.accounting.as_dict(),
            "documents": {},
            "sampled_out": self.buffer.sampled_out,
            "retries": {},
            "encoding": {},
            "trouble": [],
        }

    def trouble(self) -> list[str]:
        return self.delivery.trouble.messages if self.delivery is not None else []

    # ----- Locust listeners (the request listener is self.buffer.on_request) -----------------------
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
        self.request_drain()  # deliver now, but never block Locust's stop sequence

    def on_quitting(self, environment: Environment, **_kwargs: Any) -> None:
        if self.close_on_quitting:
            self.close()
        else:
            self.request_drain()  # the final flush waits for `quit` (after the workers' last reports)

    def on_quit(self, exit_code: int | None = None, **_kwargs: Any) -> None:
        self.close(exit_code=exit_code)

    def _close_at_exit(self) -> None:
        if not self._closed:
            log.warning("locust-sink: Locust's quit event did not fire; final flush at interpreter exit")
            self.close()

    def describe_target(self) -> str:
        es = self.options.es
        if es is not None:
            # the product once the link has connected (or as forced); with `auto` unknown before: not guessed
            known = self.delivery.product() if self.delivery is not None else None
            product = known or {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}.get(es.backend)
            return f"{product + ' ' if product else ''}{es.describe()} (indices {self.options.index_prefix}-*)"
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
        if self.delivery is None and self.buffer.accounting.emitted == 0:
            return True
        delivery = self._configure()
        budget = self.options.settings.flush_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            self.recorder.finish(exit_code)
            spooled = delivery.spooled
            done = delivery.flush(budget)
            # smooth: nothing new went to the spool (a replay during the flush may have emptied it)
            smooth = done and delivery.spooled <= spooled and delivery.state == "up"
            self.recorder.closing_documents(smooth)
            remaining = max(0.0, budget - (time.monotonic() - started)) if smooth else 0.0
            done = delivery.close(remaining) and done
        finally:
            self._log_summary(delivery, time.monotonic() - started)
        return done

    def _log_summary(self, delivery: Delivery, took: float) -> None:
        acc = self.buffer.accounting
        sampled = f", {self.buffer.sampled_out} sampled out" if self.buffer.sampled_out else ""
        log.info(
            "locust-sink: run %s: %d request records -> %s: %s%s; final flush took %.2f s",
            self.run_id,
            acc.emitted,
            self.describe_target(),
            acc.summary(),
            sampled,
            took,
        )
        path = delivery.file_for(self.run_id)
        if path is not None:
            log.info(
                "locust-sink: records are in %s; load them into Elasticsearch with `%s` (add --es-url URL for "
                "another one than %s)",
                path.parent,
                cli_command("load", str(path.parent)),
                DEFAULT_CLI_ES_URL,
            )
        es = self.options.es
        if delivery.spooled and delivery.spool is not None and es is not None:
            log.warning(
                "locust-sink: %d documents could not be delivered and wait in the spool %s; deliver them with `%s`%s",
                delivery.spooled,
                delivery.spool.root,
                cli_command("replay", str(delivery.spool.root), *es.cli_args()),
                es.secret_env_hint(),
            )


def register_listeners(sink: LocustSink) -> None:
    events = sink.environment.events
    events.request.add_listener(sink.buffer.on_request)
    events.test_start.add_listener(sink.on_test_start)
    events.test_stop.add_listener(sink.on_test_stop)
    events.quitting.add_listener(sink.on_quitting)
    events.quit.add_listener(sink.on_quit)
    sink.recorder.register(events)


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    if getattr(environment, "locust_sink", None) is not None:
        return
    if environment.parsed_options is not None:  # launched by `locust` (not a hand-built Environment)
        route_ctrl_c_to_main_greenlet()
    web_ui = _kwargs.get("web_ui")
    feed = live.wanted(environment, web_ui)
    try:
        sink = LocustSink(environment, observer=feed)
    except (ValueError, TypeError) as exc:
        # Bad options must not stop the load test: one clear error, no sink.
        log.error("locust-sink: disabled, bad option: %s", exc)
        return
    environment.locust_sink = sink  # type: ignore[attr-defined]
    register_listeners(sink)
    if web_ui is not None:
        add_web_route(web_ui, sink)
    if feed is not None:
        live.serve(environment, feed, web_ui, sink.options.live_host, sink.options.live_port)


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
