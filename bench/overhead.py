"""`python3 -m bench overhead`: what the sink costs a CPU-bound Locust, inside ONE Locust process.

One headless Locust process (bench/locustfiles/toggle.py: a FastHttpUser without wait time against a local
nginx, plus `import locust_sink`) runs for --duration seconds while a greenlet removes and adds the sink's
real `request` listener every --window seconds (on, off, off, on, ...). Adjacent windows are seconds
apart, so the machine's drift is nearly the same in both: the median of the adjacent-pair ratios of the
request rate, with a 95 % bootstrap interval, is the share of its rate Locust keeps with the sink on.
Locust's CPU per request in both kinds of window comes with it. Runs alternate between the modes:

    file    the sink -> NDJSON files
    es      the sink -> a real Elasticsearch (scripts/es-local.sh; on the same machine: its indexing work
            competes with Locust and nginx for the CPUs, see docs/benchmarks.md)
    empty   the method's control: the sink's listener stays off, an empty listener is toggled instead

Every run ends with the delivery check: every record the sink saw is in the files or in Elasticsearch,
nothing dropped, the accounting balanced; otherwise the run is a problem and the exit status is 1.
Pinned (default): Locust alone on the last CPU; nginx, Elasticsearch and the encoder helper on the others.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _infra, _locust, _stats

NAME = "overhead"
HELP = "the sink on/off in alternating windows of one Locust process: req/s ratio [95 % CI], CPU per request"
MODES = ("file", "es", "empty")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modes", default="file,es", help=f"comma separated, of {', '.join(MODES)}")
    p.add_argument("--runs", type=int, default=2, help="Locust runs per mode (alternating between the modes)")
    p.add_argument("--duration", type=int, default=180, help="seconds of load per Locust run")
    p.add_argument("--window", type=float, default=1.5, help="seconds per window")
    p.add_argument("--guard", type=float, default=0.3, help="seconds after each switch that are not counted")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--shared", action="store_true", help="no CPU pinning")
    p.add_argument("--sink-args", default="", help="extra sink options, e.g. '--sink-encoder inline'")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")
    p.add_argument("--keep", action="store_true", help="keep every run's folder (log, windows, NDJSON)")


def run_once(args: argparse.Namespace, mode: str, run_id: str, nginx: _infra.Nginx, es: _infra.Elasticsearch,
             cpus: _infra.CpuPlan, work: Path) -> dict[str, Any]:  # fmt: skip
    out = work / run_id
    extra = ["--run-id", run_id, "--sink-dir", str(out / "sink"), *args.sink_args.split()]
    if mode == "es":
        extra += ["--es-url", str(es.url), "--es-index-prefix", _infra.INDEX_PREFIX]
    cmd = _locust.locust_cmd(sys.executable, _locust.LOCUSTFILES / "toggle.py", nginx.url, args.users,
                             args.duration, *extra)  # fmt: skip
    env = _infra.child_env(LOCUST_BENCH_WINDOW=str(args.window), LOCUST_BENCH_GUARD=str(args.guard),
                           LOCUST_BENCH_OUT=str(out / "toggle.json"))  # fmt: skip
    if mode == "empty":
        env["LOCUST_BENCH_CONTROL"] = "empty"
    result = _locust.run(cmd, out, cpus, args.duration + 120, env)
    row: dict[str, Any] = {"mode": mode, "run_id": run_id, "problems": list(result.problems)}
    report_path = out / "toggle.json"
    if not report_path.exists():
        row["problems"].append("no toggle report written: " + " | ".join(result.log.splitlines()[-5:]))
        return row
    report = json.loads(report_path.read_text())
    row.update(_stats.summarize_windows(report["windows"]))
    row["windows"] = report["windows"]
    acc = report["accounting"]
    sink = result.sink_line()
    if sink is None:
        row["problems"].append("no 'final flush took' line in Locust's log")
    else:
        row["emitted"], row["sink_summary"], row["flush_s"] = sink
        if "UNBALANCED" in row["sink_summary"]:
            row["problems"].append(f"sink accounting unbalanced: {row['sink_summary']}")
    delivered = es.count_requests(run_id) if mode == "es" else _locust.count_file_records(out / "sink", run_id)
    row["delivered"] = delivered
    if sink is not None and delivered != sink[0]:
        row["problems"].append(f"{delivered} request records delivered, the sink saw {sink[0]}")
    if acc["dropped"]:
        row["problems"].append(f"the sink dropped {acc['dropped']} records")
    row["problems"] += result.log_problems()
    if not row["problems"] and not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def pooled(rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """All runs of a mode together: the adjacent-pair ratios of every run in one sample."""
    runs = [r for r in rows if r["mode"] == mode and "windows" in r]
    rates = [_stats.window_rates(r["windows"]) for r in runs]
    ratios = [x for rs in rates for x in _stats.pair_ratios(rs)]
    cpu = [x for rs in rates for x in _stats.pair_ratios(rs, "cpu_us_per_req")]
    off = [w.cpu_us_per_req for rs in rates for w in rs if not w.on]
    on = [w.cpu_us_per_req for rs in rates for w in rs if w.on]
    return {"runs": len(runs), "pairs": len(ratios), "ratio": _stats.median(ratios),
            "ci95": list(_stats.bootstrap_median(ratios)), "cpu_ratio": _stats.median(cpu),
            "cpu_us_on": _stats.median(on), "cpu_us_off": _stats.median(off),
            "delivered_all": all(r.get("delivered") == r.get("emitted") for r in runs)}  # fmt: skip


def run(args: argparse.Namespace, argv: list[str]) -> int:
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        raise SystemExit(f"unknown mode in {args.modes!r} (of {', '.join(MODES)})")
    if not 0 <= args.guard < args.window:
        raise SystemExit("--guard must be shorter than --window")
    cpus = _infra.CpuPlan(pinned=not args.shared)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    nginx = _infra.Nginx()
    es = _infra.Elasticsearch(args.es_url, "bench-overhead")
    rows: list[dict[str, Any]] = []
    try:
        nginx.start()
        cpus.servers_for(nginx.pid)  # type: ignore[arg-type]
        if "es" in modes:
            es.start()
            if es.pid:
                cpus.servers_for(es.pid)
        for n in range(1, args.runs + 1):
            for mode in modes if n % 2 else list(reversed(modes)):
                run_id = f"overhead-{stamp}-{n}-{mode}"
                _infra.log(
                    f"run {n}/{args.runs} {mode}: {args.duration} s, windows of {args.window} s ({cpus.describe()})"
                )
                row = run_once(args, mode, run_id, nginx, es, cpus, work)
                rows.append(row)
                if "ratio_median" in row:
                    low, high = row["ratio_ci95"]
                    _infra.log(f"  ratio {row['ratio_median']:.3f} [{low:.3f}, {high:.3f}] over {row['pairs']} pairs")
                for problem in row["problems"]:
                    _infra.log(f"  PROBLEM: {problem}")
    finally:
        nginx.stop()
        es.stop()
        if args.keep:
            _infra.log(f"run folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, Any] = {}
    resolution = "95 % bootstrap interval of the median of adjacent on/off window pairs"
    print("| mode | runs | pairs | req/s ratio, sink on / off [95 % CI] | Locust CPU µs/req on / off | delivered |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        p = pooled(rows, mode)
        if not p["pairs"]:
            continue
        figures[f"{mode}.ratio"] = _infra.figure(
            round(p["ratio"], 4), "req/s on / off", [round(x, 4) for x in p["ci95"]], resolution, pairs=p["pairs"]
        )
        figures[f"{mode}.cpu_us_per_req_on"] = _infra.figure(
            round(p["cpu_us_on"], 1), "µs CPU per request", None, "median over windows (the process's own process_time)"
        )
        figures[f"{mode}.cpu_us_per_req_off"] = _infra.figure(
            round(p["cpu_us_off"], 1), "µs CPU per request", None, "median over windows"
        )
        figures[f"{mode}.cpu_ratio"] = _infra.figure(
            round(p["cpu_ratio"], 4), "CPU per request on / off", None, "median of adjacent pairs"
        )
        figures[f"{mode}.delivered_all"] = _infra.figure(p["delivered_all"], "every record delivered")
        low, high = p["ci95"]
        print(
            f"| {mode} | {p['runs']} | {p['pairs']} | {p['ratio']:.3f} [{low:.3f}, {high:.3f}] "
            f"| {p['cpu_us_on']:.0f} / {p['cpu_us_off']:.0f} | {'all' if p['delivered_all'] else 'NO'} |"
        )
    problems = [f"run {r['run_id']}: {p}" for r in rows for p in r["problems"]]
    details = {
        "cpus": cpus.describe(),
        "duration_s": args.duration,
        "window_s": args.window,
        "guard_s": args.guard,
        "users": args.users,
        "runs": [{k: v for k, v in r.items() if k != "windows"} for r in rows],
    }
    _infra.append_result(NAME, argv, figures, problems, details)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0
