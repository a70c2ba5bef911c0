"""The `locust-sink` command: load NDJSON results, replay the spool, install templates, import Kibana objects,
report, compare and list recorded runs, and sample a host's metrics (`agent`).

This module must not import Locust (it monkey-patches the standard library through gevent).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .bulk import SinkTransportError
from .config import DEFAULT_CLI_ES_URL, EsConfig, redact, split_urls

log = logging.getLogger("locust_sink")


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(name, default)


def _add_es_arguments(parser: argparse.ArgumentParser, url_required: bool = True) -> None:
    """The connection options. `url_required`: the command always talks to a cluster, so --es-url defaults
    to LOCUST_ES_URL, else DEFAULT_CLI_ES_URL; otherwise (report sources) no URL means no cluster."""
    default = _env("LOCUST_ES_URL", DEFAULT_CLI_ES_URL if url_required else None)
    shown = f"; default {DEFAULT_CLI_ES_URL}" if url_required else ""
    parser.add_argument(
        "--es-url",
        default=default,
        help=f"Elasticsearch URL(s), comma separated (env LOCUST_ES_URL{shown})",
    )
    parser.add_argument("--es-username", default=_env("LOCUST_ES_USERNAME"), help="env LOCUST_ES_USERNAME")
    parser.add_argument(
        "--es-password",
        default=_env("LOCUST_ES_PASSWORD"),
        help="prefer the env var LOCUST_ES_PASSWORD: a flag shows in the process list",
    )
    parser.add_argument("--es-api-key", default=_env("LOCUST_ES_API_KEY"), help="prefer env LOCUST_ES_API_KEY")
    parser.add_argument("--es-ca-certs", default=_env("LOCUST_ES_CA_CERTS"), help="CA bundle (PEM)")
    parser.add_argument(
        "--es-verify-certs",
        default=_env("LOCUST_ES_VERIFY_CERTS", "true"),
        choices=("true", "false"),
        help="verify TLS certificates (default true)",
    )
    parser.add_argument("--es-request-timeout", type=float, default=30.0)
    parser.add_argument(
        "--es-backend",
        choices=("auto", "elasticsearch", "opensearch"),
        default=_env("LOCUST_ES_BACKEND", "auto"),
        help="client: auto (from the server's GET / answer), elasticsearch or opensearch (env LOCUST_ES_BACKEND)",
    )


def _add_retry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-timeout",
        type=float,
        default=60.0,
        help="seconds one batch is retried (backoff with jitter) before the command gives up on it (default 60)",
    )


def _es_config(args: argparse.Namespace) -> EsConfig:
    return EsConfig(
        urls=split_urls(args.es_url),
        username=args.es_username,
        password=args.es_password,
        api_key=args.es_api_key,
        ca_certs=args.es_ca_certs,
        verify_certs=args.es_verify_certs == "true",
        request_timeout=args.es_request_timeout,
        backend=args.es_backend,
    )


def _connect(args: argparse.Namespace) -> tuple[Any, EsConfig]:
    """The checked backend for the cluster the arguments name; one clear line and exit 1 when it cannot be."""
    from .transport import connect

    config = _es_config(args)
    try:
        backend = connect(config)
        backend.check()
    except SinkTransportError as exc:
        raise SystemExit(f"locust-sink: {redact(str(exc), config.secrets())} ({config.describe()})") from None
    except ValueError as exc:
        raise SystemExit(f"locust-sink: bad --es-url: {redact(str(exc), config.secrets())}") from None
    return backend, config


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, label: str, stream: Any = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1)}%")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def cmd_load(args: argparse.Namespace, replay: bool = False) -> int:
    from .delivery.retry import RetryPolicy
    from .filesink import ndjson_files
    from .load import deliver_files

    target = Path(args.path)
    if not target.exists():
        print(f"locust-sink: {target} does not exist", file=sys.stderr)
        return 2
    files = ndjson_files(target)
    if replay and target.is_dir():
        files += _stale_open_segments(target)
    if not files:
        print(f"locust-sink: no .ndjson files under {target}")
        return 0
    backend, config = _connect(args)
    if args.setup:
        _install_templates_for(backend, config, files)
    sink_dir = target if target.is_dir() else target.parent
    if replay and sink_dir.name == "spool":
        sink_dir = sink_dir.parent
    started = time.monotonic()
    report = deliver_files(
        backend.bulk,
        files,
        sink_dir=sink_dir,
        delete_delivered=replay,
        batch_size=args.batch_size,
        policy=RetryPolicy(timeout=args.retry_timeout, max_attempts=30),
        max_leaf=getattr(backend, "max_free_form_leaf", None),
        progress=Progress("replaying" if replay else "loading"),
    )
    took = time.monotonic() - started
    verb = "replayed" if replay else "loaded"
    print(
        f"locust-sink: {verb} {report.indexed} documents ({report.requests_indexed} request records) from "
        f"{report.files} file(s) into {backend.describe()} in {took:.1f} s; dead-lettered {report.dead_lettered}"
    )
    if report.dead_lettered:
        print(f"locust-sink: rejected documents are in {sink_dir / 'dead-letter'} with the cluster's reasons")
    for error in report.errors:
        print(f"locust-sink: error: {redact(error, config.secrets())}", file=sys.stderr)
    if report.failed_files:
        print(
            f"locust-sink: {len(report.failed_files)} file(s) not fully delivered; run the command again",
            file=sys.stderr,
        )
        return 1
    return 0


def _install_templates_for(backend: Any, config: EsConfig, files: list[Path]) -> None:
    """Templates for every index prefix the files write to, so loaded data gets the real mappings."""
    from . import schema
    from .filesink import read_items

    prefixes: set[str] = set()
    for path in files:
        first = next(read_items(path), None)
        if first is not None:
            prefix, _, family = first.index.rpartition("-")
            if family in schema.FAMILIES and prefix:
                prefixes.add(prefix)
    for prefix in sorted(prefixes):
        try:
            schema.install_templates(backend, prefix=prefix, replicas=int(os.environ.get("LOCUST_ES_REPLICAS", "0")))
        except Exception as exc:
            print(
                f"locust-sink: template setup for {prefix}-* failed: {redact(str(exc), config.secrets())}",
                file=sys.stderr,
            )


def _stale_open_segments(root: Path, min_age: float = 60.0) -> list[Path]:
    """Segments left open by a process that died: replayable once nobody has written them for a while."""
    now = time.time()
    found = []
    for path in sorted(root.rglob("*.ndjson.open")):
        if now - path.stat().st_mtime >= min_age:
            final = path.with_suffix("")
            path.rename(final)
            found.append(final)
        else:
            print(f"locust-sink: skipping {path}: still being written", file=sys.stderr)
    return found


def cmd_setup(args: argparse.Namespace) -> int:
    from . import schema

    backend, config = _connect(args)
    try:
        result = schema.install_templates(
            backend, prefix=args.es_index_prefix, replicas=args.replicas, ilm_policy=args.ilm_policy
        )
    except Exception as exc:
        print(f"locust-sink: template setup failed: {redact(str(exc), config.secrets())}", file=sys.stderr)
        return 1
    for name, action in result.items():
        print(f"{name}: {action}")
    return 0


def cmd_kibana(args: argparse.Namespace) -> int:
    from .kibana import describe_errors, import_saved_objects

    try:
        result = import_saved_objects(
            args.kibana_url, args.file, username=args.username, password=args.password, overwrite=True
        )
    except Exception as exc:
        print(f"locust-sink: Kibana import failed: {exc}", file=sys.stderr)
        return 1
    print(f"locust-sink: imported {result.get('successCount', 0)} saved objects into {args.kibana_url}")
    for line in describe_errors(result):
        print(f"locust-sink: Kibana refused {line}", file=sys.stderr)
    return 0 if result.get("success", False) else 1


def cmd_report(args: argparse.Namespace) -> int:
    from .report import commands

    return commands.report(args, _connect)


def cmd_compare(args: argparse.Namespace) -> int:
    from .report import commands

    return commands.compare(args, _connect)


def cmd_runs(args: argparse.Namespace) -> int:
    from .report import commands

    return commands.runs(args, _connect)


def cmd_agent(args: argparse.Namespace) -> int:
    from .config import url_problem
    from .hosts.agent import Agent, EsOutput, FileOutput, install_signal_handlers
    from .hosts.sampler import HostSampler

    if args.interval <= 0 or (args.duration is not None and args.duration <= 0) or args.buffer < 1:
        print("locust-sink agent: --interval and --duration must be > 0, --buffer >= 1", file=sys.stderr)
        return 2
    sampler = HostSampler(host_name=args.host_name, run_id=args.run_id)
    if args.out:
        output: Any = FileOutput(Path(args.out), args.index, sampler.host_name, args.run_id)
    elif args.es_url:
        config = _es_config(args)
        problems = [p for p in (url_problem(u) for u in config.urls) if p] or ([] if config.urls else ["no URL"])
        if problems:
            print(f"locust-sink agent: bad --es-url: {redact(problems[0], config.secrets())}", file=sys.stderr)
            return 2

        def connect() -> Any:
            from .transport import connect as connect_backend

            return connect_backend(config)

        output = EsOutput(connect, args.index, config.describe(), replicas=args.replicas)
    else:
        print("locust-sink agent: give --es-url URL (or LOCUST_ES_URL), or --out DIR for NDJSON files", file=sys.stderr)
        return 2
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)  # the agent says each condition once itself
    agent = Agent(sampler, output, args.interval, buffer=args.buffer, duration=args.duration)
    install_signal_handlers(agent)
    return agent.run()


def _add_agent_parser(sub: Any) -> None:
    from .hosts.ecs import DEFAULT_INDEX

    agent = sub.add_parser(
        "agent", help="sample this host's CPU, memory, disk and network (ECS fields) into Elasticsearch or files",
        description="Run it on the system under test's host for the duration of a test; `locust-sink report` "
        "charts its documents (and Metricbeat's) beside the results. Stops on Ctrl-C / SIGTERM with a summary.",
    )  # fmt: skip
    agent.add_argument("--run-id", default=_env("LOCUST_RUN_ID"), help="stored as labels.run_id (env LOCUST_RUN_ID)")
    agent.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    agent.add_argument("--index", default=DEFAULT_INDEX, help=f"index to write (default {DEFAULT_INDEX})")
    agent.add_argument("--out", default=None, help="NDJSON files under DIR (DIR/RUN_ID/host-HOST.ndjson) instead of ES")
    agent.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: never)")
    agent.add_argument("--host-name", default=None, help="host.name to write (default: this host's name)")
    agent.add_argument("--buffer", type=int, default=10_000, help="samples kept while ES is away (default 10000)")
    agent.add_argument("--replicas", type=int, default=int(_env("LOCUST_ES_REPLICAS", "0")))
    _add_es_arguments(agent, url_required=False)
    agent.set_defaults(func=cmd_agent, es_request_timeout=5.0)


def _add_report_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", default=None, help="output file ('-' for stdout; html default: report-RUN.html)"
    )
    parser.add_argument("--format", choices=("html", "json", "text"), default="html")
    parser.add_argument("--slowest", type=int, default=20, help="how many of the slowest requests to list")
    parser.add_argument("--es-index-prefix", default=_env("LOCUST_ES_INDEX_PREFIX", "locust"))
    _add_es_arguments(parser, url_required=False)


def _add_report_parsers(sub: Any) -> None:
    from .hosts.ecs import DEFAULT_READ_PATTERN

    report = sub.add_parser(
        "report", help="one run's report: a self-contained HTML file (or --format json|text)",
        description="SOURCE: a results folder (locust-results/RUN_ID), a results root with --last, or a run id "
        "with --es-url (--last: the newest run).",
    )  # fmt: skip
    report.add_argument("source", nargs="?", help="results folder, results root (with --last) or run id (--es-url)")
    report.add_argument("--last", action="store_true", help="the newest run (of the results root, or in ES)")
    report.add_argument(
        "--slo", action="append", metavar="RULE", help="objective, e.g. 'GET /api p95<200ms' or 'failure_rate<1%%'"
    )
    report.add_argument(
        "--host-metrics-index",
        default=_env("LOCUST_SINK_HOST_METRICS_INDEX", DEFAULT_READ_PATTERN),
        help="indices with the system under test's host metrics (Metricbeat's, `locust-sink agent`'s), read for the "
        f"run's time range; 'none': do not read (default {DEFAULT_READ_PATTERN})".replace("%", "%%"),
    )
    report.add_argument(
        "--host-metrics-host", action="append", metavar="NAME", help="only this host.name (repeatable; default: all)"
    )
    _add_report_source_arguments(report)
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser(
        "compare", help="a baseline and candidate runs side by side, with deltas and --fail-on verdicts"
    )
    compare.add_argument("sources", nargs="+", metavar="RUN", help="BASELINE CANDIDATE [CANDIDATE ...]")
    compare.add_argument(
        "--fail-on", action="append", metavar="RULE", help="breach, e.g. 'p95>+10%%' or 'failure_rate>+1pp'"
    )
    _add_report_source_arguments(compare)
    compare.set_defaults(func=cmd_compare, last=False)

    runs = sub.add_parser("runs", help="recorded runs, newest first (a results root, or --es-url)")
    runs.add_argument("root", nargs="?", default=None, help="results root (default: locust-results without --es-url)")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--format", choices=("text", "json"), default="text")
    runs.add_argument("--es-index-prefix", default=_env("LOCUST_ES_INDEX_PREFIX", "locust"))
    _add_es_arguments(runs, url_required=False)
    runs.set_defaults(func=cmd_runs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locust-sink", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"locust-sink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    load = sub.add_parser("load", help="bulk-load NDJSON result files (file mode) into Elasticsearch")
    load.add_argument("path", help="a results folder (e.g. locust-results/RUN_ID) or one .ndjson file")
    load.add_argument("--batch-size", type=int, default=1000)
    load.add_argument(
        "--no-setup", dest="setup", action="store_false", help="do not install the index templates before loading"
    )
    _add_es_arguments(load)
    _add_retry_argument(load)
    load.set_defaults(func=cmd_load)

    replay = sub.add_parser(
        "replay", help="deliver the spool (what ES could not take during a run); delivered segments are deleted"
    )
    replay.add_argument("path", nargs="?", default="locust-results/spool", help="spool folder")
    replay.add_argument("--batch-size", type=int, default=1000)
    replay.add_argument(
        "--no-setup", dest="setup", action="store_false", help="do not install the index templates before replaying"
    )
    _add_es_arguments(replay)
    _add_retry_argument(replay)
    replay.set_defaults(func=lambda a: cmd_load(a, replay=True))

    setup = sub.add_parser("setup", help="install/upgrade locust-sink's index templates")
    setup.add_argument("--es-index-prefix", default=_env("LOCUST_ES_INDEX_PREFIX", "locust"))
    setup.add_argument("--replicas", type=int, default=int(_env("LOCUST_ES_REPLICAS", "0")))
    setup.add_argument("--ilm-policy", default=_env("LOCUST_ES_ILM_POLICY"), help="ILM policy, if the cluster has ILM")
    _add_es_arguments(setup)
    setup.set_defaults(func=cmd_setup)

    kibana = sub.add_parser("kibana", help="Kibana saved objects (data views and dashboards)")
    ksub = kibana.add_subparsers(dest="kibana_command", required=True)
    kimport = ksub.add_parser("import", help="import the bundled saved objects into Kibana")
    kimport.add_argument("kibana_url")
    kimport.add_argument("--file", default=None, help="saved objects NDJSON (default: the bundled one)")
    kimport.add_argument("--username", default=_env("KIBANA_USERNAME"))
    kimport.add_argument("--password", default=_env("KIBANA_PASSWORD"))
    kimport.set_defaults(func=cmd_kibana)
    _add_report_parsers(sub)
    _add_agent_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
