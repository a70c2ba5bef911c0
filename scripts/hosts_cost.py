"""What load-generator health and the host agent cost (the figures in docs/hosts.md).

python3 scripts/hosts_cost.py snapshot   # one NodeHealth.own() per snapshot: µs
python3 scripts/hosts_cost.py agent      # `locust-sink agent --interval 5`: CPU over 60 s after start-up
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def snapshot(n: int = 20_000, rounds: int = 5) -> str:
    sys.path.insert(0, str(ROOT))
    from locust_sink.stats.events import EventLog
    from locust_sink.stats.health import NodeHealth, ProcessMeter

    class Port:
        def started(self) -> bool:
            return True

        def submit(self, *_args: object, **_kwargs: object) -> bool:
            return True

    fake = [0.0]

    def clock() -> float:
        fake[0] += 3.0  # every reading measures a 3-s window (never the cached figure of a short one)
        return fake[0]

    health = NodeHealth(EventLog(Port(), lambda: "local"), ProcessMeter(clock=clock))  # type: ignore[arg-type]
    for _ in range(1000):
        health.own("local", 0.0)
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            health.own("local", 0.0)
        per_call.append((time.perf_counter() - t0) / n * 1e6)
    per_call.sort()
    best, median = per_call[0], per_call[rounds // 2]
    return f"NodeHealth.own(): {best:.1f} µs per snapshot (best of {rounds} x {n}; median {median:.1f} µs)"


def agent(seconds: float = 60.0, warmup: float = 5.0) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "locust_sink.cli", "agent", "--out", out, "--interval", "5",
               "--duration", str(seconds + warmup + 5)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        process = psutil.Process(proc.pid)
        time.sleep(warmup)
        start, w0 = process.cpu_times(), time.monotonic()
        time.sleep(seconds)
        end, w1, rss = process.cpu_times(), time.monotonic(), process.memory_info().rss
        proc.terminate()
        proc.wait(30)
    cpu = (end.user + end.system) - (start.user + start.system)
    share = 100 * cpu / (w1 - w0)
    return (f"locust-sink agent --interval 5: {cpu * 1000:.0f} ms CPU in {w1 - w0:.0f} s = {share:.3f} % of one core; "
            f"RSS {rss / 1e6:.0f} MB; start-up {start.user + start.system:.2f} s CPU")  # fmt: skip


if __name__ == "__main__":
    what = sys.argv[1:] or ["snapshot", "agent"]
    for name in what:
        print({"snapshot": snapshot, "agent": agent}[name]())
