"""`python3 -m bench live`: what the live page costs a CPU-bound Locust process, watched and not watched.

Two real headless Locust runs (file mode, `--sink-live-port`, bench/locustfiles/live.py against the local
nginx, Locust pinned to its own CPU): one nobody watches, one with the page open, i.e. the page fetched once
and its JSON route polled every --poll seconds (the page's own rate is 1 s) with the endpoint selector
moving. Inside Locust, the live feed's observer calls and the data route are metered with
`time.thread_time` (bench/_sink.py `instrument_live`; resolution ~1 µs per call); their sum is given as a
share of Locust's CPU time over the test window (`time.process_time` from test_start to test_stop). The page
build (once, in a child process) is reported apart. Requests/s of both runs are given as they came: on
a shared machine their difference is within the noise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from bench import _infra, _locust

NAME = "live"
HELP = "the live page's CPU share of Locust (observer; data route polled like an open page), in-process meters"
LOCUSTFILE = _infra.HERE / "locustfiles" / "live.py"
DATA = "/locust-sink/live/data"
PAGE = "/locust-sink/live"
ENDPOINTS = ("Total", "GET /", "GET /ok", "GET /missing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=40, help="seconds per run")
    p.add_argument("--users", type=int, default=10, help="users (no wait time: Locust is CPU-bound)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between two polls of the data route")
    p.add_argument("--no-pin", action="store_true", help="do not pin Locust to its own CPU")


def _watch(base: str, poll: float, stop: threading.Event, seen: dict[str, int]) -> None:
    """Like an open page: the page once, then the data route every `poll` s (the selector moving)."""
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            status, body = _infra.http("GET", base + PAGE, timeout=30)
            seen["page_bytes"] = len(body)
            break
        except OSError:
            stop.wait(0.3)
    i = 0
    while not stop.is_set():
        endpoint = urllib.parse.quote(ENDPOINTS[(i // 5) % len(ENDPOINTS)])
        try:
            status, _ = _infra.http("GET", f"{base}{DATA}?endpoint={endpoint}", timeout=10)
            seen["polls"] = seen.get("polls", 0) + (status == 200)
        except OSError:
            pass
        i += 1
        stop.wait(poll)


def _one(label: str, args: argparse.Namespace, nginx: _infra.Nginx, cpus: _infra.CpuPlan, work: Path,
         watched: bool) -> dict:  # fmt: skip
    port = _infra.free_port()
    out = work / f"{label}.json"
    cmd = _locust.locust_cmd(
        "python3", LOCUSTFILE, nginx.url, args.users, args.duration,
        "--sink-live-port", str(port), "--sink-dir", str(work / "results"),
    )  # fmt: skip
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_watch, args=(f"http://127.0.0.1:{port}", args.poll, stop, seen), daemon=True)
    if watched:
        watcher.start()
    _infra.log(f"live {label}: {args.users} users, {args.duration:.0f} s ...")
    run = _locust.run(
        cmd, work / label, cpus, args.duration + 120, env=_infra.child_env(LOCUST_BENCH_LIVE_OUT=str(out))
    )
    stop.set()
    if watched:
        watcher.join(15)
    meters = json.loads(out.read_text()) if out.exists() else {}
    return {"run": run, "meters": meters, "seen": seen}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    cpus = _infra.CpuPlan(pinned=not args.no_pin)
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    nginx = _infra.Nginx()
    problems: list[str] = []
    results: dict[str, dict] = {}
    try:
        nginx.start()
        if nginx.pid is not None:
            cpus.servers_for(nginx.pid)
        for label, watched in (("unwatched", False), ("watched", True)):
            results[label] = _one(label, args, nginx, cpus, work, watched)
            problems += [f"{label}: {p}" for p in results[label]["run"].problems]
    finally:
        nginx.stop()
    figures: dict[str, dict] = {}
    details: dict[str, dict] = {}
    for label, res in results.items():
        m, run_ = res["meters"], res["run"]
        if not m or not m.get("window_cpu_s"):
            problems.append(f"{label}: no meters written")
            continue
        cpu = m["window_cpu_s"]
        spent = m["observer_s"] + m["serve_s"]
        res_note = "time.thread_time around each call (~1 µs); share of Locust's process CPU over the test window"
        figures[f"live_{label}_share_pct"] = _infra.figure(round(100 * spent / cpu, 4), "% of Locust's CPU",
                                                           None, res_note)  # fmt: skip
        figures[f"live_{label}_rps"] = _infra.figure(round(m["requests"] / max(m["window_s"], 1e-9), 1),
                                                     "requests/s", None, "one run; shared machine: noisy")  # fmt: skip
        details[label] = {**m, "polls": res["seen"].get("polls", 0), "page_bytes": res["seen"].get("page_bytes"),
                          "locust_cpu_s_total": run_.cpu_s}  # fmt: skip
    if "watched" in details:
        w = details["watched"]
        polls = max(1, w["serve_calls"])
        figures["live_serve_us_per_poll"] = _infra.figure(round(1e6 * w["serve_s"] / polls, 1), "µs CPU per poll",
                                                          None, f"mean over {polls} polls")  # fmt: skip
        figures["live_page_build_s"] = _infra.figure(
            round(w["build_s"], 3), "s CPU in Locust's process, once (built in a child process)", None,
            "time.thread_time around the build call")  # fmt: skip
        figures["live_feed_mib"] = _infra.figure(round(w["feed_bytes"] / (1 << 20), 3), "MiB at the end",
                                                 None, "sys.getsizeof over the rings (deep)")  # fmt: skip
    _infra.append_result(NAME, argv, figures, problems, details)
    for name, fig in figures.items():
        _infra.log(f"{name}: {fig['value']} {fig['unit']}")
    return 1 if problems else 0
