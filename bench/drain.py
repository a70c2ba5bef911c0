"""`python3 -m bench drain`: how fast the sink empties a full queue into Elasticsearch, against the same
Elasticsearch's raw `_bulk` ceiling measured in the same run (target: ratio >= 0.8).

A child process (bench/_drain_child.py) pre-fills the sink's queue with --records synthetic records and
times its flush into a real Elasticsearch (scripts/es-local.sh, or --es-url); the raw ceiling posts the
same documents, pre-serialised NDJSON in bulk requests of the same --batch-size, back to back over one
keep-alive connection. Rounds alternate which goes first; each round's ratio is sink / raw, and the figure
is the median over rounds with a bootstrap interval (with few rounds, about their min-max). Elasticsearch
indexes on the same 2 vCPUs as the client: both sides of the ratio pay that alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench import _infra, _stats

NAME = "drain"
HELP = "records/s from a pre-filled queue into ES vs the same ES's raw _bulk ceiling (ratio, target >= 0.8)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", type=int, default=100_000, help="records per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1000, help="records per bulk request (the sink's default)")
    p.add_argument("--encoder", default="process", choices=("process", "inline"), help="the sink's --sink-encoder")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    es = _infra.Elasticsearch(args.es_url, "bench-drain")
    problems: list[str] = []
    result: dict = {}
    try:
        es.start()
        cmd = [
            sys.executable,
            "-m",
            "bench._drain_child",
            "--es-url",
            str(es.url),
            "--records",
            str(args.records),
            "--rounds",
            str(args.rounds),
            "--batch-size",
            str(args.batch_size),
            "--encoder",
            args.encoder,
        ]
        _infra.log(f"drain: {args.rounds} rounds of {args.records} records, batches of {args.batch_size} ...")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=_infra.REPO, env=_infra.child_env())
        if out.returncode != 0:
            problems.append(" | ".join(out.stderr.strip().splitlines()[-4:]) or f"exit {out.returncode}")
        else:
            result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        es.stop()
    figures = {}
    rounds = result.get("rounds", [])
    if rounds:
        ratios = [r["sink"] / r["raw"] for r in rounds]
        sink, raw = [r["sink"] for r in rounds], [r["raw"] for r in rounds]
        low, high = _stats.bootstrap_median(ratios)
        resolution = f"95 % bootstrap interval of the median of {len(ratios)} same-round ratios"
        figures["ratio"] = _infra.figure(
            round(_stats.median(ratios), 3),
            "sink / raw _bulk records/s",
            [round(low, 3), round(high, 3)],
            resolution,
            target=0.8,
        )
        figures["sink_records_per_s"] = _infra.figure(
            round(_stats.median(sink)), "records/s", [round(min(sink)), round(max(sink))], "min-max over rounds"
        )
        figures["raw_records_per_s"] = _infra.figure(
            round(_stats.median(raw)), "records/s", [round(min(raw)), round(max(raw))], "min-max over rounds"
        )
        print("| round | sink records/s | raw _bulk records/s | ratio |\n| --- | --- | --- | --- |")
        for r, ratio in zip(rounds, ratios, strict=True):
            print(f"| {r['round']} | {r['sink']:.0f} | {r['raw']:.0f} | {ratio:.3f} |")
        print(f"\nratio (median) {figures['ratio']['value']:.3f} [{low:.3f}, {high:.3f}] (target >= 0.8)")
    details = {
        "records": args.records,
        "batch_size": args.batch_size,
        "encoder": args.encoder,
        "es": es.version,
        **result,
    }
    _infra.append_result(NAME, argv, figures, problems, details)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0
