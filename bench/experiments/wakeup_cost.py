#!/usr/bin/env python3
"""CPU a process pays per wake-up from idle: gevent's hub vs a plain `time.sleep`.

    python3 bench/experiments/wakeup_cost.py [--calls 400]

Why it matters for `python3 -m bench overhead` and `peers`: a CPU-bound Locust never sleeps, but when the
server under test stalls (e.g. because Elasticsearch's indexing takes its CPU) every user waits, the process
goes idle, and each wake-up costs CPU on top of the lost time. That shows as more Locust CPU per request.
Each line runs in a fresh interpreter (gevent's monkey-patching cannot be undone).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys
gevent_mode, calls, delay = sys.argv[1] == "gevent", int(sys.argv[2]), float(sys.argv[3])
if gevent_mode:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    sleep = gevent.sleep
else:
    import time
    sleep = time.sleep
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
sleep(delay)
start = cpu()
for _ in range(calls):
    sleep(delay)
print((cpu() - start) / calls * 1e6)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=400)
    args = p.parse_args()
    for mode in ("plain", "gevent"):
        for delay in (0.005, 0.025):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(args.calls), str(delay)],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout  # fmt: skip
            name = "gevent.sleep" if mode == "gevent" else "time.sleep"
            print(f"{name}({delay}) x {args.calls}: {float(out):.0f} µs of process CPU per wake-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
