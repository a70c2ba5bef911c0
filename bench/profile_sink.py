#!/usr/bin/env python3
"""Where does the Locust process spend its CPU with the sink? A CPU-time sampling profile of a real run.

    python3 bench/profile_sink.py --variant es --duration 20 [--es-url URL] [--top 15]

Same setup as bench/overhead.py (its own nginx; its own Elasticsearch via scripts/es-local.sh unless
--es-url), one headless Locust process. Inside that process a SIGPROF timer (ITIMER_PROF: it ticks with the
process's own user+sys CPU time) fires every millisecond and records the Python stack of whatever greenlet
is running. So the samples are proportional to CPU, attributed in place (cold caches, GC and all), with
little distortion, unlike cProfile, which slows function-call-heavy code far more than the rest.

Prints the share of samples with a locust_sink frame on the stack (the sink's whole cost, including the
client libraries it calls), the split of that share by sink function, and the busiest leaf functions.
Caveat: a signal is handled at the next bytecode, so time in C code (orjson, socket calls, the gevent hub's
event loop) is charged to the Python function that runs next, normally the caller.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTERVAL = 0.001  # seconds of process CPU time between samples (in practice the kernel tick, e.g. 4 ms)


def child(out_path: str, locust_args: list[str], window_only: bool = False) -> None:
    """Run Locust in this process under the sampler; write the stack counts as JSON at exit."""
    import atexit
    import runpy
    import signal

    counts: collections.Counter[tuple[str, ...]] = collections.Counter()

    def on_sigprof(_signum: int, frame: object) -> None:
        stack = []
        f = frame
        while f is not None and len(stack) < 60:
            code = f.f_code  # type: ignore[attr-defined]
            stack.append(f"{code.co_filename}:{code.co_name}")
            f = f.f_back  # type: ignore[attr-defined]
        counts[tuple(stack)] += 1

    written = []
    window_cpu: list[dict[str, float]] = []
    # Garbage collection, timed by gc.callbacks: an indirect cost the samples cannot attribute (a collection
    # runs in whatever code allocated the object that crossed the threshold, and scans everybody's objects).
    gc_time = {"s": 0.0, "started": 0.0, "on": 0.0, "full": 0.0}

    def on_gc(phase: str, info: dict) -> None:
        if not gc_time["on"]:
            return
        if phase == "start":
            gc_time["started"] = time.process_time()
        else:
            spent = time.process_time() - gc_time["started"]
            gc_time["s"] += spent
            if info.get("generation") == 2:
                gc_time["full"] += spent

    gc.callbacks.append(on_gc)

    def dump() -> None:
        if written:
            return
        written.append(True)
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        times = os.times()
        cpu_s = window_cpu[0].get("cpu_s", 0.0) if window_cpu else times.user + times.system
        with open(out_path, "w") as fh:
            json.dump(
                {
                    "cpu_s": cpu_s,
                    "gc_s": gc_time["s"],
                    "gc_full_s": gc_time["full"],
                    "samples": [[list(k), v] for k, v in counts.items()],
                },
                fh,
            )

    atexit.register(dump)
    signal.signal(signal.SIGPROF, on_sigprof)
    if window_only:
        # Only the load: from test_start to test_stop (imports, start-up and the final flush are left out),
        # so the share of samples in sink code is the sink's share of the CPU the load test had.
        from locust import events

        window: dict[str, float] = {}

        def cpu_now() -> float:
            t = os.times()
            return t.user + t.system

        @events.test_start.add_listener
        def _start(**_kw: object) -> None:
            window["cpu0"] = cpu_now()
            gc_time["on"] = 1.0
            signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)

        @events.test_stop.add_listener
        def _stop(**_kw: object) -> None:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            gc_time["on"] = 0.0
            window["cpu_s"] = cpu_now() - window.get("cpu0", 0.0)

        window_cpu.append(window)
    else:
        gc_time["on"] = 1.0
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    sys.argv = ["locust", *locust_args]
    try:
        runpy.run_module("locust", run_name="__main__", alter_sys=True)
    finally:
        dump()


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
    """`…/pkg/module.py:function` -> `pkg/module.py:function`."""
    path, _, func = frame.rpartition(":")
    parts = path.split("/")
    return "/".join(parts[-2:]) + ":" + func


def sink_share(data: dict) -> tuple[float, int]:
    """(share of samples with a locust_sink frame on the stack, number of samples)."""
    samples: list[tuple[list[str], int]] = data["samples"]
    total = sum(n for _, n in samples)
    sink = sum(n for stack, n in samples if any("/locust_sink/" in f for f in stack))
    return (sink / total if total else float("nan")), total


def report(data: dict, top: int) -> None:
    samples: list[tuple[list[str], int]] = data["samples"]
    total = sum(n for _, n in samples)
    if not total:
        print("no samples")
        return
    sink = collections.Counter()
    leaf_pkg = collections.Counter()
    leaf_fn = collections.Counter()
    sink_total = 0
    for stack, n in samples:
        leaf_pkg[package(stack[0])] += n
        leaf_fn[short(stack[0])] += n
        sink_frames = [s for s in stack if "/locust_sink/" in s]
        if sink_frames:
            sink_total += n
            # the outermost sink function on the stack: the entry point (on_request, Flusher._run, ...)
            outer = short(sink_frames[-1]).split("/")[-1]
            # and the innermost: where inside the sink (or below it, in a library) the time goes
            inner = short(sink_frames[0]).split("/")[-1]
            below = package(stack[0])
            sink[f"{outer:32s} > {inner:36s} [leaf in {below}]"] += n
    # the kernel checks CPU-time timers on its scheduler tick: a sample per max(INTERVAL, 1/HZ) of CPU
    print(f"\n{total} samples over {data['cpu_s']:.1f} s of Locust-process CPU (user+sys)")
    print(f"samples with a locust_sink frame on the stack: {sink_total} = {100 * sink_total / total:.1f} %")
    print("\nsink samples by entry point > innermost sink function [package of the leaf frame]:")
    for key, n in sink.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {key}")
    print("\nall samples by package of the leaf frame:")
    for key, n in leaf_pkg.most_common():
        print(f"  {100 * n / total:5.1f} %  {key}")
    print(f"\ntop {top} leaf functions:")
    for key, n in leaf_fn.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {key}")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] in ("--child", "--child-window"):
        child(sys.argv[2], sys.argv[3:], window_only=sys.argv[1] == "--child-window")
        return 0
    sys.path.insert(0, str(HERE))
    from overhead import INDEX_PREFIX, LOCUSTFILES, Elasticsearch, Nginx, log

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="es", help="baseline, file, es, or several, comma separated (interleaved)")
    p.add_argument("--runs", type=int, default=1, help="runs per variant; the share is reported per run and median")
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--es-url")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--locustfile", help="profile this locustfile instead of bench/locustfiles/*.py")
    p.add_argument("--sink-args", default="", help="extra options for the sink runs, e.g. '--sink-batch-size 1000'")
    p.add_argument(
        "--whole-process",
        action="store_true",
        help="sample the whole process (imports, start-up, final flush) instead of only test_start..test_stop",
    )
    p.add_argument("--save", type=Path, help="also keep the raw samples of the last run (JSON) here")
    args = p.parse_args()
    variants = [v for v in args.variant.split(",") if v]
    if bad := set(variants) - {"baseline", "file", "es"}:
        p.error(f"unknown variant(s) {bad}")
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    nginx = Nginx()
    es = Elasticsearch(args.es_url)
    shares: dict[str, list[tuple[float, int, float]]] = {v: [] for v in variants}
    try:
        nginx.start()
        if "es" in variants:
            es.start()
        for run in range(1, args.runs + 1):
            for variant in variants:
                out = work / f"samples-{variant}-{run}.json"
                locust_args = [
                    "-f", args.locustfile or str(LOCUSTFILES["baseline" if variant == "baseline" else "sink"]),
                    "--headless", "--only-summary", "-u", str(args.users), "-r", str(args.users),
                    "-t", f"{args.duration}s", "--host", nginx.url, "--exit-code-on-error", "0",
                ]  # fmt: skip
                if variant != "baseline":
                    locust_args += ["--sink-dir", str(work / "sink"), *args.sink_args.split()]
                if variant == "es":
                    locust_args += ["--es-url", str(es.url), "--es-index-prefix", INDEX_PREFIX]
                mode = "--child" if args.whole_process else "--child-window"
                cmd = [args.python, str(Path(__file__).resolve()), mode, str(out), *locust_args]
                log(f"profiling the {variant} variant for {args.duration} s (run {run}/{args.runs})")
                proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=args.duration + 120)
                for line in proc.stderr.splitlines():
                    if "final flush took" in line or "Traceback" in line or "Error" in line:
                        log(line.strip())
                data = json.loads(out.read_text())
                share, n = sink_share(data)
                gc_share = data["gc_s"] / data["cpu_s"] if data["cpu_s"] else float("nan")
                shares[variant].append((share, n, gc_share))
                log(
                    f"  {variant}: {100 * share:.2f} % of {n} samples ({data['cpu_s']:.1f} s CPU) in sink code; "
                    f"garbage collection {100 * gc_share:.2f} % of the CPU (full collections {data['gc_full_s']:.2f} s)"
                )
                if args.save:
                    shutil.copy(out, args.save)
                if args.runs == 1:
                    report(data, args.top)
    finally:
        nginx.stop()
        es.stop()
        shutil.rmtree(work, ignore_errors=True)
    window = "whole process" if args.whole_process else "load window (test_start..test_stop)"
    print(f"\nshare of Locust-process CPU samples with a locust_sink frame, {window}:")
    for variant, rows in shares.items():
        per_run = ", ".join(f"{100 * s:.2f}" for s, _n, _g in rows)
        med = statistics.median(s for s, _n, _g in rows)
        gc_med = statistics.median(g for _s, _n, g in rows)
        gc_runs = ", ".join(f"{100 * g:.2f}" for _s, _n, g in rows)
        print(
            f"  {variant:8s} sink code: median {100 * med:.2f} % (runs: {per_run}; {sum(n for _s, n, _g in rows)} "
            f"samples); garbage collection: median {100 * gc_med:.2f} % (runs: {gc_runs})"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
