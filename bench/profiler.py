"""`python3 -m bench profile`: where the Locust process spends its CPU with the sink (a sampling profile).

Per variant (baseline: no sink; file; es) one headless Locust process against the bench's nginx runs under
a SIGPROF sampler (bench/_profile_child.py: samples proportional to the process's CPU time, attributed in
place, unlike cProfile, which slows call-heavy code far more than the rest). Reported: the share of samples
with a locust_sink frame on the stack (the sink's whole cost in Locust's process, including the client
libraries it calls), the garbage collector's share of the CPU, and with one run per variant the split of
the sink's share by entry point and the busiest leaf functions. A share is a ratio of samples taken in the
same process at the same time, so the machine's drift cannot move it; its resolution is the sample count.
Caveat: a signal is handled at the next bytecode, so time in C code is charged to the Python function that
runs next, normally the caller. No delivery check here: `overhead` and `peers` do that.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import _infra, _locust, _stats

NAME = "profile"
HELP = "SIGPROF sampling profile of a Locust process: the sink's share of its CPU, GC share, hot functions"
VARIANTS = ("baseline", "file", "es")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default="file,es", help=f"comma separated, of {', '.join(VARIANTS)}")
    p.add_argument("--runs", type=int, default=1, help="runs per variant (interleaved)")
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--whole-process", action="store_true", help="sample imports, start-up and final flush too")
    p.add_argument("--sink-args", default="", help="extra sink options, e.g. '--sink-batch-size 2000'")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")


def package(path: str) -> str:
    for marker in ("locust_sink", "elasticsearch", "elastic_transport", "urllib3", "geventhttpclient", "gevent"):
        if f"/{marker}/" in path:
            return marker
    if "/locust/" in path:
        return "locust"
    if "/lib/python3" in path and "site-packages" not in path:
        return "stdlib"
    return "other"


def short(frame: str) -> str:
    """`…/pkg/module.py:function` -> `module.py:function`."""
    path, _, func = frame.rpartition(":")
    return path.rsplit("/", 1)[-1] + ":" + func


def sink_share(samples: list[tuple[list[str], int]]) -> tuple[float, int]:
    """(share of samples with a locust_sink frame on the stack, number of samples)."""
    total = sum(n for _, n in samples)
    sink = sum(n for stack, n in samples if any("/locust_sink/" in f for f in stack))
    return (sink / total if total else float("nan")), total


def report(samples: list[tuple[list[str], int]], top: int) -> None:
    total = sum(n for _, n in samples)
    if not total:
        print("no samples")
        return
    by_entry: collections.Counter[str] = collections.Counter()
    leaf_pkg: collections.Counter[str] = collections.Counter()
    leaf_fn: collections.Counter[str] = collections.Counter()
    for stack, n in samples:
        leaf_pkg[package(stack[0])] += n
        leaf_fn[short(stack[0])] += n
        sink_frames = [s for s in stack if "/locust_sink/" in s]
        if sink_frames:  # outermost sink function (the entry point) > innermost (where the time goes)
            by_entry[f"{short(sink_frames[-1]):32s} > {short(sink_frames[0]):36s} [{package(stack[0])}]"] += n
    print("\nsink samples by entry point > innermost sink function [package of the leaf frame]:")
    for key, n in by_entry.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {key}")
    print("\nall samples by package of the leaf frame:")
    for key, n in leaf_pkg.most_common():
        print(f"  {100 * n / total:5.1f} %  {key}")
    print(f"\ntop {top} leaf functions:")
    for key, n in leaf_fn.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {key}")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variant in {args.variants!r}")
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    nginx = _infra.Nginx()
    es = _infra.Elasticsearch(args.es_url, "bench-profile")
    shares: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    problems: list[str] = []
    try:
        nginx.start()
        if "es" in variants:
            es.start()
        for n in range(1, args.runs + 1):
            for variant in variants:
                out = work / f"samples-{variant}-{n}.json"
                locustfile = _locust.LOCUSTFILES / ("plain.py" if variant == "baseline" else "sink.py")
                extra = [] if variant == "baseline" else ["--sink-dir", str(work / "sink"), *args.sink_args.split()]
                if variant == "es":
                    extra += ["--es-url", str(es.url), "--es-index-prefix", _infra.INDEX_PREFIX]
                cmd = _locust.locust_args(locustfile, nginx.url, args.users, args.duration, *extra)
                scope = "whole" if args.whole_process else "window"
                _infra.log(f"profiling {variant} for {args.duration} s (run {n}/{args.runs})")
                proc = subprocess.run(
                    [sys.executable, "-m", "bench._profile_child", str(out), scope, *cmd],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=args.duration + 180,
                    env=_infra.child_env(),
                )
                if not out.exists():
                    problems.append(f"{variant} run {n}: no samples ({proc.stderr.strip().splitlines()[-1:]})")
                    continue
                data = json.loads(out.read_text())
                share, count = sink_share(data["samples"])
                gc_share = data["gc_s"] / data["cpu_s"] if data["cpu_s"] else float("nan")
                shares[variant].append({"share": share, "samples": count, "gc_share": gc_share, "cpu_s": data["cpu_s"]})
                _infra.log(f"  {variant}: sink code {100 * share:.2f} % of {count} samples, GC {100 * gc_share:.2f} %")
                if args.runs == 1:
                    print(f"\n== {variant}: {count} samples over {data['cpu_s']:.1f} s of Locust-process CPU")
                    report(data["samples"], args.top)
    finally:
        nginx.stop()
        es.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, Any] = {}
    window = "whole process" if args.whole_process else "load window"
    print(f"\nshare of Locust-process CPU samples with a locust_sink frame ({window}):")
    for variant, rows in shares.items():
        if not rows:
            continue
        values = [r["share"] * 100 for r in rows]
        gcs = [r["gc_share"] * 100 for r in rows]
        count = sum(r["samples"] for r in rows)
        figures[f"{variant}.sink_share_pct"] = _infra.figure(
            round(_stats.median(values), 2),
            "% of Locust-process CPU samples",
            [round(min(values), 2), round(max(values), 2)],
            f"min-max of {len(values)} runs; {count} samples (one per kernel tick of CPU time)",
        )
        figures[f"{variant}.gc_share_pct"] = _infra.figure(
            round(_stats.median(gcs), 2),
            "% of Locust-process CPU",
            [round(min(gcs), 2), round(max(gcs), 2)],
            "gc.callbacks timing (process_time)",
        )
        print(
            f"  {variant:8s} sink code {_stats.median(values):.2f} % (runs: {', '.join(f'{v:.2f}' for v in values)}); "
            f"GC {_stats.median(gcs):.2f} %"
        )
    _infra.append_result(
        NAME, argv, figures, problems, {"duration_s": args.duration, "users": args.users, "runs": shares}
    )
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0
