"""`python3 -m bench hotpath`: the sink's own CPU per record, in-process, file and es mode.

A child process (bench/_hotpath_child.py) attaches the sink to a hand-built Environment and feeds it
--records synthetic events: the hot path (the `request` listener) and the flush (encoding and delivery,
client side) in µs of process CPU per record, the median of --repeat measurements with their min-max
range. This hardly depends on other load on the machine (it is CPU time, not wall time), but it still
moves with cache and frequency effects; the noise-free figure is `python3 -m bench callgrind`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench import _infra, _stats

NAME = "hotpath"
HELP = "in-process CPU µs per record of the sink's request listener and of its flush (file, es)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", type=int, default=50_000, help="events per measurement")
    p.add_argument("--repeat", type=int, default=3, help="measurements per mode (median, min-max)")
    p.add_argument("--modes", default="file,es", help="file and/or es (comma separated)")
    p.add_argument("--encoder", default="process", choices=("process", "inline"), help="--sink-encoder")
    p.add_argument("--es-url", help="a running Elasticsearch on 127.0.0.1 instead of starting one")


def _range(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def run(args: argparse.Namespace, argv: list[str]) -> int:
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"file", "es"}:
        raise SystemExit(f"unknown mode in {args.modes!r}")
    es = _infra.Elasticsearch(args.es_url, "bench-hotpath")
    figures: dict[str, dict] = {}
    problems: list[str] = []
    raw: dict[str, list] = {}
    try:
        if "es" in modes:
            es.start()
        for mode in modes:
            cmd = [sys.executable, "-m", "bench._hotpath_child", "--records", str(args.records),
                   "--repeat", str(args.repeat), "--encoder", args.encoder]  # fmt: skip
            if mode == "es":
                cmd += ["--es-url", str(es.url), "--es-index-prefix", _infra.INDEX_PREFIX]
            _infra.log(f"hotpath {mode}: {args.repeat} x {args.records} records ...")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=_infra.child_env(),
                                 cwd=_infra.REPO)  # fmt: skip
            if out.returncode != 0:
                problems.append(f"{mode}: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
                continue
            runs = json.loads(out.stdout.strip().splitlines()[-1])
            raw[mode] = runs
            for key in ("hot_path_us", "flush_us"):
                values = [r[key] for r in runs]
                figures[f"{mode}.{key}"] = _infra.figure(
                    round(_stats.median(values), 3), "µs CPU per record", _range(values),
                    f"min-max of {len(values)} runs of {args.records} records; process_time (ns clock)",
                )  # fmt: skip
            total = [r["hot_path_us"] + r["flush_us"] for r in runs]
            figures[f"{mode}.total_us"] = _infra.figure(
                round(_stats.median(total), 3), "µs CPU per record", _range(total),
                f"min-max of {len(total)} runs",
            )  # fmt: skip
    finally:
        es.stop()
    for mode in modes:
        if f"{mode}.hot_path_us" in figures:
            h, f, t = (figures[f"{mode}.{k}"]["value"] for k in ("hot_path_us", "flush_us", "total_us"))
            print(f"{mode:4s}: hot path {h:.2f} µs + flush {f:.2f} µs = {t:.2f} µs of Locust-process CPU per record")
    _infra.append_result(NAME, argv, figures, problems, {"records": args.records, "encoder": args.encoder, "runs": raw})
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0
