"""`python3 -m bench SUBCOMMAND [options]`: locust-sink's benchmark suite.

Every subcommand starts the servers it needs on 127.0.0.1 (and removes them), bounds every wait, and
appends ONE JSON line to bench/results/<subcommand>.jsonl: commit, machine, the command line, and each
figure with its interval or resolution. `table` renders the verdict table from the newest lines.
Run it from the repository's root with this tree first on PYTHONPATH (the bench gives its Locust
processes the same), so the locust_sink measured is this tree's.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import ModuleType

# subcommand -> module in this package; each has NAME, HELP, add_arguments(parser) and run(args, argv) -> int
SUBCOMMANDS = {
    "hotpath": "bench.hotpath",
    "overhead": "bench.overhead",
    "profile": "bench.profiler",
    "drain": "bench.drain",
    "peers": "bench.peers",
    "callgrind": "bench.callgrind",
    "live": "bench.live",
    "table": "bench.table",
}
# `report` is bench/report_scale.py's main(argv) (the scale report, written separately): wired in when the
# module exists, otherwise the subcommand says so and exits 2.
REPORT_MODULE = "bench.report_scale"


def _report(argv: list[str]) -> int:
    try:
        module = importlib.import_module(REPORT_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != REPORT_MODULE:
            raise
        print("bench report: bench/report_scale.py is not in this tree yet (it provides main(argv))", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # SIGTERM unwinds like Ctrl-C: every server the run started is removed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop)
    if argv and argv[0] == "report":
        return _report(argv[1:])
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    modules: dict[str, ModuleType] = {}
    for name, path in SUBCOMMANDS.items():
        module = importlib.import_module(path)
        modules[name] = module
        p = sub.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        module.add_arguments(p)
    sub.add_parser("report", help="the scale report (bench/report_scale.py main(argv)), when present")
    args = parser.parse_args(argv)
    return int(modules[args.subcommand].run(args, argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
