"""`python3 -m bench table`: the verdict table, from the newest line of each bench/results/<subcommand>.jsonl.

Prints markdown; `--update-docs` writes it into docs/benchmarks.md between its verdict markers. A row
names the figure, its value with its interval (or the method's resolution), the subcommand that measured
it, and when, at which commit and whether the machine was quiet (its load average at the end).
`--all` lists every figure of those lines instead of the verdict's selection.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

from bench import _infra

NAME = "table"
HELP = "render the verdict table from the newest results lines (--update-docs writes docs/benchmarks.md)"
DOCS = _infra.REPO / "docs" / "benchmarks.md"
START, END = "<!-- verdict:start (python3 -m bench table --update-docs) -->", "<!-- verdict:end -->"

# (subcommand, figure key, what the row says); the order of the verdict table
VERDICT: list[tuple[str, str, str]] = [
    ("overhead", "file.ratio", "req/s kept with the sink on, file mode (CPU-bound Locust, in-process A/B)"),
    ("overhead", "es.ratio", "req/s kept with the sink on, es mode (Elasticsearch on the same VM)"),
    ("overhead", "empty.ratio", "the method's control: an empty listener toggled"),
    ("overhead", "file.cpu_ratio", "Locust CPU per request, sink on / off (file)"),
    ("hotpath", "file.hot_path_us", "µs CPU per record, hot path (request listener)"),
    ("hotpath", "file.flush_us", "µs CPU per record, flush to NDJSON (Locust's process)"),
    ("hotpath", "es.flush_us", "µs CPU per record, flush to Elasticsearch (client side)"),
    ("callgrind", "baseline.hot_path", "instructions per request, Locust's own stats (for scale)"),
    ("callgrind", "sink-file.hot_path", "instructions per record, sink hot path"),
    ("callgrind", "sink-file.delivery", "instructions per record, sink flush to NDJSON (inline encoding)"),
    ("callgrind", "sink-es.delivery", "instructions per record, sink flush to Elasticsearch (client, inline)"),
    ("callgrind", "sink-file-helper.delivery", "instructions per record, sink flush to NDJSON, Locust's side (helper)"),
    ("callgrind", "timescale.hot_path", "instructions per record, Timescale listener (locust-plugins) hot path"),
    ("callgrind", "timescale.delivery", "instructions per record, Timescale listener delivery"),
    ("callgrind", "influx.hot_path", "instructions per record, locust-influxdb-listener hot path"),
    ("callgrind", "influx.delivery", "instructions per record, locust-influxdb-listener delivery"),
    ("profile", "file.sink_share_pct", "sink code's share of Locust's CPU, file mode (SIGPROF samples)"),
    ("profile", "es.sink_share_pct", "sink code's share of Locust's CPU, es mode"),
    ("live", "live_unwatched_share_pct", "live page, nobody watching: its observer's share of Locust's CPU"),
    (
        "live",
        "live_watched_share_pct",
        "live page open (1 s polls): observer + data route, share of Locust's CPU",
    ),
    ("live", "live_serve_us_per_poll", "live page: CPU µs per poll of its data route"),
    ("drain", "ratio", "drain: sink records/s into ES / raw _bulk ceiling (target >= 0.8)"),
    ("drain", "sink_records_per_s", "drain: sink records/s from a full queue into ES"),
]
for _variant in ("sink-file", "sink-es", "timescale", "influx"):
    VERDICT += [
        ("peers", f"{_variant}.rps_ratio", f"peers: {_variant} req/s / baseline's"),
        ("peers", f"{_variant}.cpu_us_per_req", f"peers: {_variant} Locust CPU µs per request"),
        ("peers", f"{_variant}.delay20.p99_ms", f"peers: {_variant} p99 ms at a fixed 20 ms delay"),
        ("peers", f"{_variant}.throughput.stored_share", f"peers: {_variant} records stored / requests made"),
        ("peers", f"{_variant}.rss.growth_mib_per_million", f"peers: {_variant} RSS growth per 1M requests"),
    ]
VERDICT += [
    ("peers", "baseline.cpu_us_per_req", "peers: baseline Locust CPU µs per request"),
    ("peers", "baseline.delay20.p99_ms", "peers: baseline p99 ms at a fixed 20 ms delay"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update-docs", action="store_true", help="write the table into docs/benchmarks.md")
    p.add_argument("--all", action="store_true", help="every figure of the newest lines")


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def cell(f: dict[str, Any]) -> str:
    text = f"**{fmt(f['value'])}**"
    if f.get("interval"):
        text += " [" + ", ".join(fmt(x) for x in f["interval"]) + "]"
    return text


def newest(name: str, key: str) -> dict[str, Any] | None:
    """The newest results line of a subcommand that has this figure (a `callgrind --check` line has only
    the sink's figures, a `peers --phases latency` line no throughput figures)."""
    for line in reversed(_infra.read_results(name)):
        if key in line["figures"]:
            return line
    return None


def render(show_all: bool = False) -> str:
    rows = ["| what | figure [interval] | unit, resolution | measured |", "| --- | --- | --- | --- |"]
    selection = VERDICT
    if show_all:
        names = ("overhead", "hotpath", "callgrind", "profile", "drain", "peers")
        keys = {(name, key) for name in names for line in _infra.read_results(name) for key in line["figures"]}
        selection = [(name, key, key) for name, key in sorted(keys)]
    for name, key, label in selection:
        line = newest(name, key)
        if line is None:
            continue
        f = line["figures"][key]
        commit = line["commit"][:7] + ("+" if line["dirty"] else "")
        when = f"`{name}` {line['time'][:10]} {commit}, load {line['machine']['loadavg'][0]}"
        rows.append(f"| {label} | {cell(f)} | {f['unit']}; {f['resolution']} | {when} |")
    if len(rows) == 2:
        rows.append("| (no results yet: run the commands below) | | | |")
    return "\n".join(rows)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    table = render(args.all)
    print(table)
    if args.update_docs:
        text = DOCS.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOCS} has no verdict markers ({START} ... {END})")
        DOCS.write_text(pattern.sub(lambda _m: f"{START}\n{table}\n{END}", text))
        _infra.log(f"wrote the verdict table into {DOCS.relative_to(_infra.REPO)}")
    return 0
