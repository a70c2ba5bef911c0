"""`python3 -m bench callgrind`: instructions per recorded request, counted by valgrind (noise-free).

callgrind counts executed instructions, not seconds: the same total whatever else the machine is doing,
so this is the regression guard that wall-clock timings on a shared 2-vCPU machine cannot be. One
synthetic event stream (bench/synthetic.py: 90 % successes, 10 % 404 failures) goes through Locust's
`request` hook of a hand-built Environment in a process under callgrind (bench/_callgrind_child.py), once
per variant: `baseline` (Locust's own stats only), `sink-file`, `sink-es` (client side: Elasticsearch is
another process and is not counted), `timescale` and `influx` (the peers, each in its own virtualenv from
bench/peers.sh, with their stores on 127.0.0.1). Per variant:

    hot path   instructions per event while firing, minus the baseline's: what the listener adds to
               every request, inline in a user greenlet
    delivery   instructions per record of the listener's own delivery (the sink's flush; the peers'
               final flush), counted in Locust's process

`sink-file` and `sink-es` encode in-process (`--sink-encoder inline`): all of the sink's work is in the
counted process. `sink-file-helper` uses the default encoder helper process, which valgrind does not
follow: what Locust's own process pays with the defaults.

`--check` measures baseline and sink-file only (~30 s) and exits 1 with one line when the sink's hot
path or its hot path + delivery per record is more than 10 % over bench/baseline/callgrind.json;
`--update-baseline` writes that file from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _infra

NAME = "callgrind"
HELP = "valgrind instruction counts per record: the sink's hot path and delivery, and each peer's listener"
VARIANTS = ("baseline", "sink-file", "sink-es", "sink-file-helper", "timescale", "influx")
BASELINE_FILE = _infra.HERE / "baseline" / "callgrind.json"
TOLERANCE = 0.10
WARMUP = 300  # events fired and delivered before the counting starts (first calls, connections)
CHECKED = ("sink-file.hot_path", "sink-file.total")  # the figures --check guards


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma separated, of " + ", ".join(VARIANTS))
    p.add_argument("--records", type=int, default=2000, help="events per variant (the counts are linear in it)")
    p.add_argument(
        "--check", action="store_true", help="baseline + sink-file only; exit 1 past +10 %% of the baseline file"
    )
    p.add_argument("--no-results", action="store_true", help="write no line to bench/results (CI's guard)")
    p.add_argument("--update-baseline", action="store_true", help=f"write {BASELINE_FILE.relative_to(_infra.REPO)}")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")


def parse_dumps(folder: Path) -> list[int]:
    """Instruction totals of the dumps callgrind wrote (cg.out.1, cg.out.2, ...), in order."""
    totals: list[tuple[int, int]] = []
    for path in folder.glob("cg.out.*"):
        suffix = path.name.rsplit(".", 1)[-1]
        if suffix.isdigit():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("summary:"):
                    totals.append((int(suffix), int(line.split()[1])))
    return [total for _, total in sorted(totals)]


def measure(variant: str, records: int, python: str, extra: list[str]) -> dict[str, Any]:
    """One variant under callgrind: (hot path, delivery) instruction totals and the child's report."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-callgrind-{variant}-"))
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--dump-before=getsid*",
        f"--callgrind-out-file={folder}/cg.out",
        python,
        "-m",
        "bench._callgrind_child",
        variant,
        str(records),
        *extra,
    ]
    started = time.monotonic()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=1800, cwd=_infra.REPO, env=_infra.child_env(PYTHONHASHSEED="0")
        )
        dumps = parse_dumps(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines or len(dumps) < 3:
        tail = " | ".join(out.stderr.strip().splitlines()[-4:])
        raise RuntimeError(f"{variant}: exit {out.returncode}, {len(dumps)} dumps: {tail}")
    report = json.loads(lines[-1])
    report.update(hot=dumps[1], delivery=dumps[2], seconds=round(time.monotonic() - started, 1))
    return report


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind not found: run `bash bench/peers.sh install` (or `apt-get install valgrind`)")
    variants = ["baseline", "sink-file"] if args.check else [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variant in {args.variants!r}")
    if "baseline" not in variants:
        variants.insert(0, "baseline")
    es = _infra.Elasticsearch(args.es_url, "bench-callgrind")
    peers = _infra.PeerServers()
    reports: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    started = time.monotonic()
    try:
        if {"timescale", "influx"} & set(variants):
            peers.install()
        if "sink-es" in variants:
            es.start()
        if "timescale" in variants:
            peers.start_pg()
        if "influx" in variants:
            peers.start_influx()
        for variant in variants:
            run_id = f"cg{int(time.time()):010d}{os.getpid() % 100_000:05d}"  # one length: it is in every document
            python, extra = sys.executable, ["--run-id", run_id, "--warmup", str(WARMUP)]
            if variant == "sink-es":
                extra += ["--es-url", str(es.url)]
            elif variant == "timescale":
                python, extra = peers.python("timescale"), [*extra, "--pg-port", str(peers.pg_port)]
                before = int(peers.pg_sql("SELECT count(*) FROM request"))
            elif variant == "influx":
                python, extra = peers.python("influx"), [*extra, "--influx-port", str(peers.influx_port)]
            _infra.log(f"callgrind {variant}: {args.records} records ...")
            try:
                report = measure(variant, args.records, python, extra)
            except RuntimeError as exc:
                problems.append(str(exc))
                continue
            if variant == "timescale":
                report["delivered"] = int(peers.pg_sql("SELECT count(*) FROM request")) - before - WARMUP
            elif variant == "influx":
                result = peers.influx_query(run_id, "SELECT count(response_time) FROM locust_requests")
                series = result["results"][0].get("series") or [{"values": [[0, 0]]}]
                report["delivered"] = int(series[0]["values"][0][1]) - WARMUP
            reports[variant] = report
            _infra.log(
                f"  hot {report['hot'] / args.records:,.0f} / delivery {report['delivery'] / args.records:,.0f} "
                f"instructions per record; delivered {report['delivered']} ({report['seconds']} s)"
            )
    finally:
        es.stop()
        peers.stop()
    figures = figures_of(reports, args.records)
    for key, f in figures.items():
        print(f"{key:24s} {f['value']:>10,.0f} {f['unit']}")
    for variant, report in reports.items():
        if variant != "baseline" and report["delivered"] != args.records:
            problems.append(f"{variant}: {report['delivered']} of {args.records} records delivered")
    failed = check(figures) if args.check else []
    if args.update_baseline and not problems:
        BASELINE_FILE.parent.mkdir(parents=True, exist_ok=True)
        kept = {k: figures[k]["value"] for k in CHECKED if k in figures}
        baseline = {
            "records": args.records,
            "commit": _infra.git("rev-parse", "HEAD"),
            "software": software(),
            "figures": kept,
        }
        BASELINE_FILE.write_text(json.dumps(baseline, indent=2) + "\n")
        _infra.log(f"wrote {BASELINE_FILE.relative_to(_infra.REPO)}")
    details = {"records": args.records, "seconds": round(time.monotonic() - started, 1), "reports": reports}
    if not args.no_results:
        _infra.append_result(NAME, argv, figures, problems + failed, details)
    for problem in problems + failed:
        print(problem if problem in failed else f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems or failed else 0


def figures_of(reports: dict[str, dict[str, Any]], records: int) -> dict[str, Any]:
    resolution = f"instruction counts of {records} records; repeat invocations agree within ~1 %"
    served = (
        f"instruction counts of {records} records; repeat invocations agree within ~3 % (waiting for the store varies)"
    )
    figures: dict[str, Any] = {}
    base = reports.get("baseline")
    if base is not None:
        figures["baseline.hot_path"] = _infra.figure(
            round(base["hot"] / records),
            "instructions per request",
            None,
            resolution + " (Locust's own stats listener and the hook)",
        )
    for variant, r in reports.items():
        if variant == "baseline" or base is None:
            continue
        hot = (r["hot"] - base["hot"]) / records
        delivery = r["delivery"] / records
        figures[f"{variant}.hot_path"] = _infra.figure(round(hot), "instructions per record", None, resolution)
        store = served if variant in ("sink-es", "timescale", "influx") else resolution
        figures[f"{variant}.delivery"] = _infra.figure(round(delivery), "instructions per record", None, store)
        figures[f"{variant}.total"] = _infra.figure(round(hot + delivery), "instructions per record", None, store)
    return figures


def software() -> dict[str, str]:
    """What the counts depend on besides the sink's code: the interpreter and the libraries on the path."""
    code = (
        "import platform, locust, gevent, orjson; "
        "print(platform.python_version(), locust.__version__, gevent.__version__, orjson.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    return dict(zip(("python", "locust", "gevent", "orjson"), out, strict=False))


def check(figures: dict[str, Any], baseline: Path = BASELINE_FILE) -> list[str]:
    """One line per guarded figure more than TOLERANCE over the committed baseline."""
    if not baseline.exists():
        return [f"callgrind check: {baseline} missing (run `python3 -m bench callgrind --update-baseline`)"]
    data = json.loads(baseline.read_text())
    committed = data["figures"]
    if "software" in data and data["software"] != (mine := software()):
        _infra.log(f"callgrind check: the baseline was counted with {data['software']}, this is {mine}")
    failed = []
    for key in CHECKED:
        if key not in figures:
            failed.append(f"callgrind check: {key} was not measured")
            continue
        now, then = figures[key]["value"], committed[key]
        if now > then * (1 + TOLERANCE):
            failed.append(
                f"callgrind check FAILED: {key} is {now:,} instructions per record, "
                f"{100 * (now / then - 1):+.1f} % over the committed {then:,} (limit +{100 * TOLERANCE:.0f} %)"
            )
        else:
            _infra.log(f"callgrind check: {key} {now:,} vs committed {then:,} ({100 * (now / then - 1):+.1f} %): ok")
    return failed
