"""`python3 -m bench peers`: the sink side by side with the listeners users would pick instead.

Variants, each a separate headless Locust process (FastHttpUser, no wait time, one process):

    baseline   no listener (bench/locustfiles/plain.py)
    sink-file  `import locust_sink` -> NDJSON files
    sink-es    `import locust_sink` -> a real Elasticsearch (scripts/es-local.sh)
    timescale  locust-plugins 5.0.3 `--timescale` -> Debian's PostgreSQL (its schema minus timescaledb)
    influx     locust-influxdb-listener 1.0.2 -> Debian's InfluxDB 1.x

The peers run in their own virtualenvs (bench/peers.sh install: Locust imports `locust_plugins` whenever it
is installed, so the main environment never has it), with the main environment's package versions as
constraints; their stores run on 127.0.0.1 as non-root users. Three phases, one table:

    throughput  --rounds interleaved rounds against the bench's nginx (the variant order rotates): req/s
                and its ratio to the baseline of the same round (median, 95 % bootstrap interval over
                rounds), Locust-process CPU µs per request over the load window (and the sink's helper
                process's, which runs on the other CPU), records stored vs requests made
    latency     the same against httpbin's /delay/0.02 (a fixed 20 ms) with --latency-users users: p50/p99
                as Locust records them, with and without each listener (neither Locust nor httpbin is
                CPU-bound here: this is the listener's distortion of the timing, not capacity)
    rss         one run per variant until Locust has made --rss-requests requests: RSS at the start, its
                peak, and its growth per million requests (least squares over the run after the first 20 %)

Stored counts: NDJSON documents of the run, Elasticsearch `_count`, rows added to PostgreSQL's `request`,
points in the run's own InfluxDB database. A listener that loses records is reported, not failed: the
peers' losses are a result. The sink losing any is a problem (exit status 1).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _infra, _locust, _stats

NAME = "peers"
HELP = "the sink vs locust-plugins' Timescale and locust-influxdb-listener: req/s ratio, CPU, p50/p99, losses, RSS"
VARIANTS = ("baseline", "sink-file", "sink-es", "timescale", "influx")
PHASES = ("throughput", "latency", "rss")
DELAY_PATH = "/delay/0.02"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma separated, of " + ", ".join(VARIANTS))
    p.add_argument("--phases", default=",".join(PHASES), help="comma separated, of " + ", ".join(PHASES))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the throughput and latency phases")
    p.add_argument("--duration", type=int, default=20, help="seconds of load per throughput/latency run")
    p.add_argument("--users", type=int, default=20, help="users of the throughput and rss runs")
    p.add_argument(
        "--latency-users",
        type=int,
        default=5,
        help="users of the latency runs (few: httpbin must not be the bottleneck)",
    )
    p.add_argument("--rss-requests", type=int, default=1_000_000, help="requests of each rss run")
    p.add_argument("--shared", action="store_true", help="no CPU pinning")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")
    p.add_argument("--keep", action="store_true", help="keep every run's folder")


class Harness:
    """The servers, the virtualenvs and one Locust run of any variant with its stored count."""

    def __init__(self, args: argparse.Namespace, variants: list[str]) -> None:
        self.args = args
        self.cpus = _infra.CpuPlan(pinned=not args.shared)
        self.work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
        self.nginx = _infra.Nginx()
        self.httpbin = _infra.HttpBin()
        self.es = _infra.Elasticsearch(args.es_url, "bench-peers")
        self.peers = _infra.PeerServers()
        self.variants = variants
        self.pythons: dict[str, str] = {}
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def start(self, phases: list[str]) -> None:
        if {"timescale", "influx"} & set(self.variants):
            self.peers.install()
        self.nginx.start()
        self.cpus.servers_for(self.nginx.pid)  # type: ignore[arg-type]
        if "latency" in phases:
            self.httpbin.start()
            self.cpus.servers_for(self.httpbin.pid)  # type: ignore[arg-type]
        if "sink-es" in self.variants:
            self.es.start()
            if self.es.pid:
                self.cpus.servers_for(self.es.pid)
        if "timescale" in self.variants:
            self.peers.start_pg()
            self.pythons["timescale"] = self.peers.python("timescale")
        if "influx" in self.variants:
            self.peers.start_influx()
            self.pythons["influx"] = self.peers.python("influx")

    def stop(self) -> None:
        for server in (self.nginx, self.httpbin, self.es, self.peers):
            try:
                server.stop()
            except Exception as exc:  # every server is stopped even when one of them fails to
                _infra.log(f"stopping {type(server).__name__}: {exc}")
        if self.args.keep:
            _infra.log(f"run folders kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def run(self, variant: str, phase: str, rnd: int, duration: float, max_requests: int = 0) -> dict[str, Any]:
        run_id = f"peers-{self.stamp}-{phase}{rnd}-{variant}"
        out = self.work / run_id
        host, env_extra = self.nginx.url, {}
        if phase == "latency":
            host, env_extra = self.httpbin.url, {"LOCUST_BENCH_PATH": DELAY_PATH}
        if max_requests:
            env_extra.update(LOCUST_BENCH_MAX_REQUESTS=str(max_requests), LOCUST_BENCH_PROGRESS=str(out / "progress"))
        python, locustfile, extra = sys.executable, "plain.py", []
        if variant.startswith("sink"):
            locustfile = "sink.py"
            extra = ["--run-id", run_id, "--sink-dir", str(out / "sink")]
            if variant == "sink-es":
                extra += ["--es-url", str(self.es.url), "--es-index-prefix", _infra.INDEX_PREFIX]
        elif variant == "timescale":
            python = self.pythons[variant]
            extra = [
                "--timescale",
                "--pghost",
                "127.0.0.1",
                "--pgport",
                str(self.peers.pg_port),
                "--pguser",
                "locust",
                "--pgdatabase",
                "locust",
            ]
            before = int(self.peers.pg_sql("SELECT count(*) FROM request"))
        elif variant == "influx":
            python, locustfile = self.pythons[variant], "influx.py"
            env_extra.update(
                LOCUST_BENCH_INFLUX_PORT=str(self.peers.influx_port), LOCUST_BENCH_INFLUX_DB=run_id.replace("-", "_")
            )
        users = self.args.latency_users if phase == "latency" else self.args.users
        cmd = _locust.locust_cmd(python, _locust.LOCUSTFILES / locustfile, host, users, duration, *extra)
        result = _locust.run(cmd, out, self.cpus, duration + 300, _infra.child_env(**env_extra))
        row: dict[str, Any] = {"variant": variant, "phase": phase, "round": rnd, "problems": list(result.problems)}
        made = result.requests
        row.update(
            requests=made,
            rps=result.rps(),
            cpu_us=result.cpu_us_per_request(),
            helper_cpu_us=result.window_helper_cpu_s() / made * 1e6 if made else float("nan"),
            p50_ms=result.percentile_ms(0.50),
            p99_ms=result.percentile_ms(0.99),
        )
        rss_start, rss_peak = result.rss_mib()
        row.update(rss_start_mib=rss_start, rss_peak_mib=rss_peak)
        if max_requests:
            progress = out / "progress"
            points = (
                [tuple(map(float, line.split())) for line in progress.read_text().splitlines()]
                if progress.exists()
                else []
            )
            row["rss_growth_mib_per_million"] = _stats.growth_per_million([(int(n), r) for n, r in points])
            row["rss_points"] = len(points)
        try:
            row["stored"] = self.stored(variant, run_id, out, before if variant == "timescale" else 0)
        except Exception as exc:  # a store that cannot be counted is a problem of this run, not of the bench
            row["stored"] = None
            row["problems"].append(f"counting what {variant} stored: {exc}")
        if variant.startswith("sink"):
            sink = result.sink_line()
            if sink is None:
                row["problems"].append("no 'final flush took' line in Locust's log")
            elif sink[0] != made or row["stored"] != made:
                row["problems"].append(f"the sink saw {sink[0]}, stored {row['stored']} of {made} requests")
            row["problems"] += result.log_problems()
        if not row["problems"] and not self.args.keep:
            shutil.rmtree(out, ignore_errors=True)
        return row

    def stored(self, variant: str, run_id: str, out: Path, before: int) -> int | None:
        if variant == "sink-file":
            return _locust.count_file_records(out / "sink", run_id)
        if variant == "sink-es":
            return self.es.count_requests(run_id)
        if variant == "timescale":
            return int(self.peers.pg_sql("SELECT count(*) FROM request")) - before
        if variant == "influx":
            db = run_id.replace("-", "_")
            series = self.peers.influx_query(db, "SELECT count(response_time) FROM locust_requests")["results"][0]
            return int(series["series"][0]["values"][0][1]) if series.get("series") else 0
        return None


def summarize(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rounds = [r for r in rows if r["phase"] == "throughput" and r["requests"]]
    values = [(r["round"], r["variant"], r["rps"]) for r in rounds]
    for variant in variants:
        mine = [r for r in rounds if r["variant"] == variant]
        if mine:
            if variant != "baseline":
                ratios = _stats.paired_round_ratios(values, variant, "baseline")
                low, high = _stats.bootstrap_median(ratios)
                figures[f"{variant}.rps_ratio"] = _infra.figure(
                    round(_stats.median(ratios), 3),
                    "req/s / baseline's (same round)",
                    [round(low, 3), round(high, 3)],
                    f"95 % bootstrap interval of the median of {len(ratios)} same-round ratios",
                )
            cpu = [r["cpu_us"] for r in mine]
            figures[f"{variant}.cpu_us_per_req"] = _infra.figure(
                round(_stats.median(cpu), 1),
                "µs Locust-process CPU per request",
                [round(min(cpu), 1), round(max(cpu), 1)],
                "min-max over rounds; /proc samples every 0.2 s (10 ms ticks)",
            )
            if variant.startswith("sink"):
                helper = [r["helper_cpu_us"] for r in mine]
                figures[f"{variant}.helper_cpu_us_per_req"] = _infra.figure(
                    round(_stats.median(helper), 1),
                    "µs CPU per request in the sink's encoder helper",
                    None,
                    "median over rounds",
                )
        for phase in ("throughput", "latency", "rss"):
            runs = [r for r in rows if r["phase"] == phase and r["variant"] == variant and r["requests"]]
            if variant != "baseline" and runs:
                stored = sum(r["stored"] or 0 for r in runs)
                made = sum(r["requests"] for r in runs)
                figures[f"{variant}.{phase}.stored_share"] = _infra.figure(
                    round(stored / made, 5) if made else None,
                    "records stored / requests made",
                    None,
                    f"{stored} of {made}, counted in the store",
                    stored=stored,
                    made=made,
                )
        lat = [r for r in rows if r["phase"] == "latency" and r["variant"] == variant and r["requests"]]
        if lat:
            for q in ("p50_ms", "p99_ms"):
                vals = [r[q] for r in lat]
                figures[f"{variant}.delay20.{q}"] = _infra.figure(
                    _stats.median(vals),
                    "ms (Locust's histogram)",
                    [min(vals), max(vals)],
                    "min-max over rounds; Locust rounds response times to 2 significant digits",
                )
        rss = [r for r in rows if r["phase"] == "rss" and r["variant"] == variant]
        for r in rss:
            figures[f"{variant}.rss.start_mib"] = _infra.figure(
                round(r["rss_start_mib"], 1), "MiB", None, "/proc statm"
            )
            figures[f"{variant}.rss.peak_mib"] = _infra.figure(round(r["rss_peak_mib"], 1), "MiB", None, "/proc statm")
            figures[f"{variant}.rss.growth_mib_per_million"] = _infra.figure(
                round(r["rss_growth_mib_per_million"], 2),
                "MiB per 1,000,000 requests",
                None,
                f"least-squares slope over {r['rss_points']} one-second samples of {r['requests']} requests",
            )
    return figures


def table(figures: dict[str, Any], variants: list[str]) -> str:
    def get(key: str, fmt: str = "{:.0f}") -> str:
        f = figures.get(key)
        if f is None or f["value"] is None:
            return "-"
        text = fmt.format(f["value"])
        if f.get("interval") and key.endswith("rps_ratio"):
            text += " [" + ", ".join(fmt.format(x) for x in f["interval"]) + "]"
        return text

    lines = [
        "| variant | req/s ratio to baseline [95 % CI] | Locust CPU µs/req (+ helper) | p50 / p99 ms at 20 ms delay "
        "| stored / made | RSS start -> peak MiB (growth per 1M req) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        shares = [figures[k] for k in (f"{v}.{p}.stored_share" for p in PHASES) if k in figures]
        stored = f"{sum(s['stored'] for s in shares)} / {sum(s['made'] for s in shares)}" if shares else "-"
        helper = f" (+{get(f'{v}.helper_cpu_us_per_req', '{:.1f}')})" if f"{v}.helper_cpu_us_per_req" in figures else ""
        ratio = get(f"{v}.rps_ratio", "{:.3f}") if v != "baseline" else "1"
        latency = f"{get(f'{v}.delay20.p50_ms')} / {get(f'{v}.delay20.p99_ms')}"
        growth = get(f"{v}.rss.growth_mib_per_million", "{:+.1f}")
        rss = f"{get(f'{v}.rss.start_mib')} -> {get(f'{v}.rss.peak_mib')} ({growth})"
        lines.append(f"| {v} | {ratio} | {get(f'{v}.cpu_us_per_req')}{helper} | {latency} | {stored} | {rss} |")
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    variants = [v for v in args.variants.split(",") if v]
    phases = [p for p in args.phases.split(",") if p]
    if set(variants) - set(VARIANTS) or set(phases) - set(PHASES):
        raise SystemExit(f"unknown variant or phase in {args.variants!r} / {args.phases!r}")
    if "baseline" not in variants:
        variants.insert(0, "baseline")
    harness = Harness(args, variants)
    rows: list[dict[str, Any]] = []
    try:
        harness.start(phases)
        for phase in ("throughput", "latency"):
            if phase not in phases:
                continue
            for n in range(1, args.rounds + 1):
                shift = (n - 1) % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    _infra.log(f"{phase} round {n}/{args.rounds}: {variant} for {args.duration} s")
                    rows.append(harness.run(variant, phase, n, args.duration))
                    _log(rows[-1])
        if "rss" in phases:
            for variant in variants:
                _infra.log(f"rss: {variant} until {args.rss_requests} requests")
                rows.append(harness.run(variant, "rss", 0, 3600, max_requests=args.rss_requests))
                _log(rows[-1])
    finally:
        harness.stop()
    figures = summarize(rows, variants)
    print(table(figures, variants))
    problems = [f"{r['phase']} round {r['round']} {r['variant']}: {p}" for r in rows for p in r["problems"]]
    details = {
        "cpus": harness.cpus.describe(),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "users": args.users,
        "latency_users": args.latency_users,
        "phases": phases,
        "runs": rows,
    }
    _infra.append_result(NAME, argv, figures, problems, details)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _log(row: dict[str, Any]) -> None:
    _infra.log(
        f"  {row['rps']:.0f} req/s, {row['cpu_us']:.0f} µs CPU/req, "
        f"p50 {row['p50_ms']:.0f} / p99 {row['p99_ms']:.0f} ms, "
        f"stored {row['stored']} of {row['requests']}, RSS {row['rss_start_mib']:.0f} -> {row['rss_peak_mib']:.0f} MiB"
    )
    for problem in row["problems"]:
        _infra.log(f"  PROBLEM: {problem}")
