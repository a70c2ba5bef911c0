"""The `locust-sink report`, `compare` and `runs` commands (argument handling in `locust_sink/cli.py`).

A SOURCE is a file-mode results folder (`locust-results/<run id>`), a results root with `--last` (its newest
run), or with `--es-url` a run id (or `--last`: the newest run in `<prefix>-runs`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import is_run_folder, newest_run_folder, read_run_folder
from .model import RunFigures
from .rules import RuleError, Verdict, check_slos
from .source_error import SourceError

Connect = Callable[[argparse.Namespace], tuple[Any, Any]]
NEEDS_BOKEH = "locust-sink: the HTML report needs Bokeh: pip install 'locust-sink[report]' (or use --format text|json)"


class CommandError(Exception):
    """Bad input: one line for the user, exit status 2."""


def load(source: str | None, args: argparse.Namespace, connect: Connect, es_cache: dict) -> RunFigures:
    path = Path(source) if source else None
    if path is not None and path.exists():
        folder = path
        last = getattr(args, "last", False)
        if path.is_dir() and not last and not is_run_folder(path) and newest_run_folder(path) is not None:
            raise CommandError(f"{path} is a results root: add --last for its newest run, or give a run folder")
        if getattr(args, "last", False) and not is_run_folder(path):
            found = newest_run_folder(path)
            if found is None:
                raise CommandError(f"{path}: no run folders (with .ndjson files) in it")
            folder = found
        return read_run_folder(folder, slowest=args.slowest, hosts=_hosts(args))
    if not args.es_url:
        if source is None:
            raise CommandError("give a results folder (locust-results/<run id>), or a run id with --es-url URL")
        raise CommandError(f"{source}: no such folder; to read run {source} from Elasticsearch add --es-url URL")
    from .es import newest_run_id, read_es_run

    if "es" not in es_cache:
        es_cache["es"] = connect(args)[0]  # the backend transport.connect chose (Elasticsearch or OpenSearch)
    backend = es_cache["es"]
    run_id = newest_run_id(backend, args.es_index_prefix) if source is None else source
    pattern = getattr(args, "host_metrics_index", None)
    return read_es_run(
        backend, run_id, prefix=args.es_index_prefix, slowest=args.slowest,
        host_pattern=None if pattern in (None, "", "none") else pattern, hosts=_hosts(args) or (),
    )  # fmt: skip


def _hosts(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The hosts to chart (empty: every host found); None: host metrics are not read (`--host-metrics-index none`)."""
    if getattr(args, "host_metrics_index", None) == "none":
        return None
    return tuple(getattr(args, "host_metrics_host", None) or ())


def _write(text: str, output: str | None, what: str) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
        return
    Path(output).write_text(text, encoding="utf-8")
    print(f"locust-sink: {what} written to {output} ({len(text.encode()) / 1e6:.2f} MB)", file=sys.stderr)


def _verdict_lines(verdicts: list[Verdict], to_stdout: bool) -> None:
    stream = sys.stderr if to_stdout else sys.stdout
    for v in verdicts:
        if not v.passed:
            print(f"locust-sink: {v.line()}", file=stream)


def report(args: argparse.Namespace, connect: Connect) -> int:
    try:
        if args.source is None and not args.last:
            raise CommandError("give a SOURCE (a results folder, or a run id with --es-url), or --last")
        fig = load(args.source, args, connect, {})
        verdicts = check_slos(fig, args.slo or [])
    except (CommandError, SourceError, RuleError) as exc:
        print(f"locust-sink: {exc}", file=sys.stderr)
        return 2
    output = args.output
    if args.format == "html":
        try:
            from . import html
        except ImportError:
            print(NEEDS_BOKEH, file=sys.stderr)
            return 2
        text = html.render(fig, verdicts)
        output = output or f"report-{fig.run_id}.html"
    elif args.format == "json":
        doc = fig.as_dict()
        doc["verdicts"] = [v.__dict__ for v in verdicts]
        text = json.dumps(doc, indent=1, default=str) + "\n"
    else:
        from . import text as text_renderer

        text = text_renderer.render(fig, verdicts)
    _write(text, output, "report")
    for w in fig.warnings:
        print(f"locust-sink: warning: {w}", file=sys.stderr)
    for w in fig.hosts.warnings if fig.hosts is not None else ():
        print(f"locust-sink: warning: {w}", file=sys.stderr)
    for sentence in fig.bottleneck:
        print(f"locust-sink: {sentence}", file=sys.stderr)
    _verdict_lines(verdicts, output in (None, "-"))
    return 1 if any(not v.passed for v in verdicts) else 0


def compare(args: argparse.Namespace, connect: Connect) -> int:
    from .compare import compare as build

    try:
        cache: dict = {}
        runs = [load(source, args, connect, cache) for source in args.sources]
        result = build(runs[0], runs[1:], args.fail_on or [])
    except (CommandError, SourceError, RuleError) as exc:
        print(f"locust-sink: {exc}", file=sys.stderr)
        return 2
    output = args.output
    if args.format == "html":
        try:
            from . import compare_html
        except ImportError:
            print(NEEDS_BOKEH, file=sys.stderr)
            return 2
        text = compare_html.render(result)
        output = output or f"compare-{runs[0].run_id}-vs-{runs[-1].run_id}.html"
    elif args.format == "json":
        text = json.dumps(result.as_dict(), indent=1, default=str) + "\n"
    else:
        from .compare_text import render as render_text

        text = render_text(result)
    _write(text, output, "comparison")
    _verdict_lines(result.failed, output in (None, "-"))
    return 1 if result.failed else 0


def runs(args: argparse.Namespace, connect: Connect) -> int:
    from . import runs as runs_module
    from .text import runs_table

    root = Path(args.root) if args.root else (None if args.es_url else Path("locust-results"))
    if root is not None and root.exists():
        rows = runs_module.from_folder(root, args.limit)
    elif args.es_url:
        backend, _ = connect(args)
        try:
            rows = runs_module.from_es(backend, args.es_index_prefix, args.limit)
        except SourceError as exc:
            print(f"locust-sink: {exc}", file=sys.stderr)
            return 2
    else:
        where = f"{root}: no such folder" if root is not None else "no results root given"
        print(f"locust-sink: {where}; give a results root (locust-results) or --es-url URL", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=1, default=str) + "\n")
    else:
        sys.stdout.write(runs_table(rows) if rows else "no runs\n")
    return 0
