#!/usr/bin/env python3
"""The sink's cost to a CPU-bound Locust, measured inside ONE Locust process: sink on and off in windows.

    python3 bench/toggle.py --runs 2 --duration 180

bench/overhead.py compares separate Locust processes, 15-20 s each, one after another; on a VM whose speed
drifts by ±15 % within minutes that cannot resolve a few per cent. Here one headless Locust process
(bench/locustfiles/toggle.py: the benchmark's FastHttpUser, no wait time, plus `import locust_sink`) runs for
--duration seconds while a greenlet detaches and re-attaches the sink's `request` listener every --window
seconds (on, off, off, on, ...). Adjacent windows are a few seconds apart, so the drift is nearly the same in
both; the ratio of their request rates is the sink's per-record cost. Everything else of the sink (flusher,
stats snapshots, run documents) runs in both kinds of window: bench/overhead.py's control run found it costs
nothing measurable.

Reported per run: the request rate with the sink on / off over all windows, the median of the ratios of
adjacent on/off pairs with a 95 % bootstrap interval, Locust's CPU per request in both, and a delivery check
(every record the sink saw is in the NDJSON files or in Elasticsearch, nothing dropped), else exit status 1.
A second table pools the pairs of all runs of a variant (the number to quote).
Runs alternate between the variants (file, es). CPU modes as in bench/overhead.py (`pinned`: Locust on the
last CPU; nginx, Elasticsearch and the sink's encoder helper on the others).

Variants: `file` and `es` toggle the sink (NDJSON files / the real Elasticsearch). Two more toggle a neighbour
process on the other CPUs instead (SIGCONT for the on windows, SIGSTOP for the off windows; the sink's listener
stays detached): `es-neighbour` is bench/es_neighbour.py sending --neighbour-rate records/s through the sink
to the same Elasticsearch (the es variant's indexing work, without the sink in Locust: what an Elasticsearch
indexing on the same machine costs Locust), and `memory-walker` a Python loop writing to a 64 MiB buffer (what
any memory-heavy neighbour costs Locust on this machine). The work Elasticsearch does lags the windows
(refreshes, merges), so part of it lands in the off windows of es and es-neighbour alike. `es-swap` lets the
sink (-> Elasticsearch) and es_neighbour.py take turns: the sink records in the on windows, the neighbour
sends in the off windows, so Elasticsearch indexes about the same stream all the time and only the sink's own
work in Locust differs. The neighbour's own client CPU (the sink's code in a process of its own, ~0.05 cores)
runs on the other CPU in the off windows only and slows them a little: es-swap, if anything, understates the
sink's cost; read it together with es vs es-neighbour. `noop-listener` toggles a `request` listener with the
sink's signature that does nothing (the sink's own stays detached): the price of one more listener call.
`file-inline` is `file` with `--sink-encoder inline`: the documents are encoded in Locust's process, so the
encoder helper's work on the other CPU (where nginx runs) is gone and Locust pays it instead.
`listener-only` toggles the sink's listener into a buffer of its own that a greenlet empties and discards every
0.25 s: the hot path's cost in situ, without encoding, helper or file (the records are not delivered, by design;
the delivery check then covers only the sink's real buffer, which these records never enter).
`slim-listener` toggles an experimental hot path (bench/locustfiles/toggle.py's SlimHotPath: one object with
__slots__, 9 fields a record, one len() check) into chunks that are discarded the same way: what a slimmer
hot path could save, to compare with listener-only in the same invocation.

Raw results go to bench/results/toggle-<UTC time>.json. Traffic only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from overhead import (
    FLUSH_RE,
    INDEX_PREFIX,
    Elasticsearch,
    Nginx,
    count_file_records,
    cpu_plan,
    log,
    machine_info,
    measured_locust_sink,
    set_affinity,
    tree_pids,
)

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfiles" / "toggle.py"
VARIANTS = (
    "file", "es", "es-neighbour", "memory-walker", "es-swap", "noop-listener", "file-inline", "listener-only",
    "slim-listener",
)  # fmt: skip
ES_SINK = ("es", "es-swap")  # Locust's sink -> Elasticsearch
MEMORY_WALKER = "b = bytearray(64 << 20)\nwhile True:\n    for i in range(0, len(b), 64):\n        b[i] = 1\n"


def window_rates(windows: list[dict[str, Any]]) -> list[tuple[int, bool, float, float]]:
    """(window index, sink on?, requests/s, CPU µs per request) of every window that saw requests."""
    out = []
    for i, w in enumerate(windows):
        n, t = w["n1"] - w["n0"], w["t1"] - w["t0"]
        if n > 0 and t > 0:
            out.append((w.get("index", i), w["on"], n / t, (w["cpu1"] - w["cpu0"]) / n * 1e6))
    return out


def pair_ratios(rates: list[tuple[int, bool, float, float]], field: int = 2) -> list[float]:
    """on/off ratio of each pair of adjacent windows (0-1, 2-3, ...) that has one of each: of the request
    rate (field 2) or of the CPU per request (field 3)."""
    pairs: dict[int, list[tuple[int, bool, float, float]]] = {}
    for rate in rates:
        pairs.setdefault(rate[0] // 2, []).append(rate)
    ratios = []
    for pair in pairs.values():
        on = [r[field] for r in pair if r[1]]
        off = [r[field] for r in pair if not r[1]]
        if len(on) == 1 and len(off) == 1:
            ratios.append(on[0] / off[0])
    return ratios


def bootstrap_median(values: list[float], rounds: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median (seeded: the same data give the same interval)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def summarize_windows(windows: list[dict[str, Any]]) -> dict[str, Any]:
    rates = window_rates(windows)
    on = [r for r in rates if r[1]]
    off = [r for r in rates if not r[1]]
    ratios = pair_ratios(rates)
    low, high = bootstrap_median(ratios)

    def overall(ws: list[tuple[int, bool, float, float]]) -> float:
        return statistics.fmean(r[2] for r in ws) if ws else float("nan")

    return {
        "windows_on": len(on),
        "windows_off": len(off),
        "rps_on": overall(on),
        "rps_off": overall(off),
        "ratio_overall": overall(on) / overall(off) if on and off else float("nan"),
        "pairs": len(ratios),
        "ratio_median": statistics.median(ratios) if ratios else float("nan"),
        "ratio_ci95": [low, high],
        "cpu_us_on": statistics.median(r[3] for r in on) if on else float("nan"),
        "cpu_us_off": statistics.median(r[3] for r in off) if off else float("nan"),
    }


def stop_neighbour(neighbour: subprocess.Popen[bytes], variant: str, result: dict[str, Any]) -> list[str]:
    """Resume and stop the neighbour; es_neighbour.py must have indexed every record it emitted."""
    with contextlib.suppress(ProcessLookupError):
        neighbour.send_signal(signal.SIGCONT)
        neighbour.send_signal(signal.SIGKILL if variant == "memory-walker" else signal.SIGTERM)
    try:
        output, _ = neighbour.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        neighbour.kill()
        output, _ = neighbour.communicate()
        return [f"{variant} did not stop within 120 s"]
    if variant == "memory-walker":
        return []
    lines = (output or b"").decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        return ["es_neighbour.py: " + " | ".join(lines[-5:])]
    result["neighbour"] = report
    if report["indexed"] != report["emitted"]:
        return [f"es_neighbour.py: {report['summary']}"]
    return []


def run_once(
    args: argparse.Namespace, variant: str, run_id: str, nginx: Nginx, es: Elasticsearch, work: Path,
    locust_cpu: int | None, other_cpus: set[int] | None,
) -> dict[str, Any]:  # fmt: skip
    out = work / run_id
    out.mkdir()
    cmd = [
        args.python, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(args.users), "-r", str(args.users), "-t", f"{args.duration}s", "--host", nginx.url,
        "--exit-code-on-error", "0", "--run-id", run_id, "--sink-dir", str(out / "sink"),
    ]  # fmt: skip
    if variant in ES_SINK:
        cmd += ["--es-url", str(es.url), "--es-index-prefix", INDEX_PREFIX]
    if variant == "file-inline":
        cmd += ["--sink-encoder", "inline"]
    neighbour: subprocess.Popen[bytes] | None = None
    if variant in ("es-neighbour", "es-swap"):
        neighbour = subprocess.Popen(
            [args.python, str(HERE / "es_neighbour.py"), "--es-url", str(es.url), "--es-index-prefix", INDEX_PREFIX,
             "--rate", str(args.neighbour_rate), "--duration", str(args.duration + 60), "--run-id", run_id + "-nb"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    elif variant == "memory-walker":
        neighbour = subprocess.Popen([args.python, "-c", MEMORY_WALKER])
    if neighbour is not None:
        if other_cpus is not None:
            set_affinity(neighbour.pid, other_cpus)
        time.sleep(1.5)  # imports, connection and templates, before Locust starts
    if locust_cpu is not None:
        cmd = ["taskset", "-c", str(locust_cpu), *cmd]
    env = dict(os.environ, PYTHONUNBUFFERED="1", LOCUST_SINK_TOGGLE_WINDOW=str(args.window),
               LOCUST_SINK_TOGGLE_GUARD=str(args.guard), LOCUST_SINK_TOGGLE_OUT=str(out / "toggle.json"))  # fmt: skip
    if variant == "noop-listener":
        env["LOCUST_SINK_TOGGLE_LISTENER"] = "noop"
    elif variant == "listener-only":
        env["LOCUST_SINK_TOGGLE_LISTENER"] = "discard"
    elif variant == "slim-listener":
        env["LOCUST_SINK_TOGGLE_LISTENER"] = "slim"
    if neighbour is not None:
        env["LOCUST_SINK_TOGGLE_PID"] = str(neighbour.pid)
        env["LOCUST_SINK_TOGGLE_SWAP"] = "1" if variant == "es-swap" else "0"
    env.pop("LOCUST_ES_URL", None)
    problems: list[str] = []
    log_path = out / "locust.log"
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=out, stdout=logf, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + args.duration + 120
    moved = False
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            problems.append("Locust did not exit in time: killed")
            break
        if other_cpus is not None and not moved:
            helpers = [p for p in tree_pids(proc.pid) if p != proc.pid]
            if helpers:  # the sink's encoder helper: off Locust's CPU, like bench/overhead.py
                for pid in helpers:
                    set_affinity(pid, other_cpus)
                moved = True
        time.sleep(0.2)
    result: dict[str, Any] = {"variant": variant, "run_id": run_id, "exit_code": proc.returncode}
    if neighbour is not None:
        problems += stop_neighbour(neighbour, variant, result)
    text = log_path.read_text(errors="replace")
    report_path = out / "toggle.json"
    if not report_path.exists():
        problems.append("no toggle report written")
        result.update(problems=problems, log_tail=text.splitlines()[-15:])
        return result
    report = json.loads(report_path.read_text())
    result.update(summarize_windows(report["windows"]))
    result["windows"] = report["windows"]
    matches = list(FLUSH_RE.finditer(text))
    if not matches:
        problems.append("no 'final flush took' line in Locust's log")
        emitted = None
    else:
        emitted = int(matches[-1].group(2))
        result["sink_summary"], result["flush_s"] = matches[-1].group(3), float(matches[-1].group(4))
        if "UNBALANCED" in result["sink_summary"]:
            problems.append(f"sink accounting unbalanced: {result['sink_summary']}")
    delivered = es.count_requests(run_id) if variant in ES_SINK else count_file_records(out / "sink", run_id)
    result.update(emitted=emitted, delivered=delivered, dropped=report["sink_dropped"])
    if emitted is not None and delivered != emitted:
        problems.append(f"{delivered} request records delivered, the sink saw {emitted}")
    if report["sink_dropped"]:
        problems.append(f"the sink dropped {report['sink_dropped']} records")
    for line in text.splitlines():
        if "Traceback" in line or ("locust-sink" in line and ("ERROR" in line or "WARNING" in line)):
            problems.append(f"log: {line.strip()[:200]}")
    result["problems"] = problems
    if not problems and not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run | CPUs | variant | windows on/off | req/s on | req/s off | ratio (all windows) "
        "| ratio, median of pairs [95 % CI] | Locust CPU µs/req on / off | records delivered |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(results, 1):
        if "rps_on" not in r:
            lines.append(f"| {i} | {r['mode']} | {r['variant']} | failed: {'; '.join(r['problems'])[:200]} |")
            continue
        low, high = r["ratio_ci95"]
        complete = r["delivered"] == r["emitted"] and not r["dropped"]
        delivered = "all" if complete else f"**{r['delivered']}/{r['emitted']}**"
        lines.append(
            f"| {i} | {r['mode']} | {r['variant']} | {r['windows_on']}/{r['windows_off']} | {r['rps_on']:.0f} "
            f"| {r['rps_off']:.0f} | {r['ratio_overall']:.3f} | {r['ratio_median']:.3f} [{low:.3f}, {high:.3f}] "
            f"| {r['cpu_us_on']:.0f} / {r['cpu_us_off']:.0f} | {delivered} |"
        )
    return "\n".join(lines)


def pooled_table(results: list[dict[str, Any]]) -> str:
    """All runs of a variant together: the adjacent-pair ratios of every run in one sample."""
    lines = [
        "| CPUs | variant | runs | pairs | ratio, median of pairs [95 % CI] | mean of pairs "
        "| Locust CPU per request, on / off (median of pairs) | Locust CPU µs/req, off windows (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        if "windows" in r:
            groups.setdefault((r["mode"], r["variant"]), []).append(r)
    for (mode, variant), runs in groups.items():
        rates = [rate for r in runs for rate in window_rates(r["windows"])]
        ratios = [ratio for r in runs for ratio in pair_ratios(window_rates(r["windows"]))]
        if not ratios:
            continue
        low, high = bootstrap_median(ratios)
        cpu = statistics.median(ratio for r in runs for ratio in pair_ratios(window_rates(r["windows"]), 3))
        cpu_off = statistics.median(x[3] for x in rates if not x[1])
        lines.append(
            f"| {mode} | {variant} | {len(runs)} | {len(ratios)} | {statistics.median(ratios):.3f} "
            f"[{low:.3f}, {high:.3f}] | {statistics.fmean(ratios):.3f} | {cpu:.3f} | {cpu_off:.0f} |"
        )
    return "\n".join(lines)


def pool_saved(paths: list[Path]) -> str:
    """The pooled table of saved results files; variants are labelled with the git commit of the locust_sink
    tree each file measured, so that two versions of the sink can be compared over interleaved invocations."""
    runs = []
    for path in paths:
        saved = json.loads(path.read_text())
        tree = Path(saved["machine"]["locust_sink_path"]).parent
        commit = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        for r in saved["runs"]:
            runs.append(dict(r, variant=f"{r['variant']} @ {commit or tree}"))
    return pooled_table(runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2, help="runs per variant (alternating between the variants)")
    p.add_argument("--duration", type=int, default=180, help="seconds of load per Locust run")
    p.add_argument("--window", type=float, default=1.5, help="seconds per window (sink on or off)")
    p.add_argument("--guard", type=float, default=0.3, help="seconds after each switch that are not counted")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--neighbour-rate", type=float, default=4000.0, help="records/s of the es-neighbour variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--modes", default="pinned", help="pinned and/or shared (comma separated)")
    p.add_argument("--es-url", help="use this running Elasticsearch (127.0.0.1) instead of starting one")
    p.add_argument("--python", default=sys.executable, help="interpreter that has locust and locust_sink")
    p.add_argument("--keep", action="store_true", help="keep every run's folder (log, windows, NDJSON)")
    p.add_argument("--output", type=Path, default=HERE / "results")
    p.add_argument(
        "--pool", nargs="+", type=Path, metavar="RESULTS_JSON",
        help="measure nothing: pool the runs of these saved results files (bench/results/toggle-*.json), one row "
        "per variant and sink code (the locust_sink tree each file measured)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.pool:
        print(pool_saved(args.pool))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    modes = [m for m in args.modes.split(",") if m]
    if bad := set(variants) - set(VARIANTS) or set(modes) - {"shared", "pinned"}:
        p.error(f"unknown variant/mode {bad}")
    if not 0 <= args.guard < args.window:
        p.error("--guard must be shorter than --window")
    all_cpus, locust_cpu, server_cpus = cpu_plan(modes)
    info = machine_info()
    info["locust_sink_path"] = measured_locust_sink(args.python)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="bench-toggle-"))
    nginx = Nginx()
    es = Elasticsearch(args.es_url)
    results: list[dict[str, Any]] = []
    try:
        nginx.start()
        if {"es", "es-neighbour", "es-swap"} & set(variants):
            es.start()
        for run in range(1, args.runs + 1):
            for mode in modes if run % 2 else list(reversed(modes)):
                pinned = mode == "pinned"
                set_affinity(nginx.proc.pid, server_cpus if pinned else all_cpus)  # type: ignore[union-attr]
                if es.pid:
                    set_affinity(es.pid, server_cpus if pinned else all_cpus)
                for variant in variants if run % 2 else list(reversed(variants)):
                    run_id = f"toggle-{stamp}-{run}-{mode}-{variant}"
                    log(f"run {run}/{args.runs} {mode} {variant}: {args.duration} s, windows of {args.window} s ...")
                    r = run_once(
                        args, variant, run_id, nginx, es, work,
                        locust_cpu if pinned else None, server_cpus if pinned else None,
                    )  # fmt: skip
                    r["mode"] = mode
                    results.append(r)
                    if "ratio_median" in r:
                        low, high = r["ratio_ci95"]
                        log(
                            f"  on {r['rps_on']:.0f} / off {r['rps_off']:.0f} req/s: ratio {r['ratio_overall']:.3f}, "
                            f"pairs {r['ratio_median']:.3f} [{low:.3f}, {high:.3f}] ({r['pairs']} pairs)"
                        )
                    for problem in r["problems"]:
                        log(f"  PROBLEM: {problem}")
    finally:
        if es.pid:
            set_affinity(es.pid, all_cpus)
        nginx.stop()
        es.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"run folders kept in {work}")
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"toggle-{stamp}.json"
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    path.write_text(json.dumps({"command": command, "machine": info, "runs": results}, indent=2))
    print(table(results))
    print()
    print(pooled_table(results))
    print(f"\nraw results: {path}")
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
