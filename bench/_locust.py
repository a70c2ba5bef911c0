"""One way to run a headless Locust process for the bench, and watch it from outside.

The process runs with this tree first on PYTHONPATH (`_infra.child_env`), optionally pinned to its own CPU;
its child processes (the sink's encoder helper) are moved to the servers' CPUs when pinned. Every 0.2 s the
parent samples the process's CPU and RSS from /proc; the run is killed past its deadline. Locust's own
`--json-file` stats (when asked for) give the request count, the load window and the latency histogram.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _infra, _stats

HERE = Path(__file__).resolve().parent
LOCUSTFILES = HERE / "locustfiles"
# the sink's closing log line: run id, records seen, where they went, final flush time
FLUSH_RE = re.compile(r"locust-sink: run (\S+): (\d+) request records -> .*?: (.*); final flush took ([0-9.]+) s")


@dataclass
class LocustRun:
    returncode: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0  # whole process (wait4 rusage)
    log: str = ""
    # (wall time, Locust CPU s, Locust RSS MiB, CPU s of its child processes: the sink's encoder helper)
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)
    helper_pids: list[int] = field(default_factory=list)
    stats: list[dict[str, Any]] | None = None  # Locust's --json-file entries
    problems: list[str] = field(default_factory=list)

    # ----- figures from Locust's own stats
    @property
    def requests(self) -> int:
        return sum(e["num_requests"] for e in self.stats or [])

    def window(self) -> tuple[float, float]:
        """(first request start, last request) of Locust's own stats: the load window."""
        entries = self.stats or []
        if not entries:
            return 0.0, 0.0
        start = min(e["start_time"] for e in entries)
        end = max((e["last_request_timestamp"] or 0) for e in entries)
        return start, end

    def rps(self) -> float:
        start, end = self.window()
        return self.requests / (end - start) if end > start else 0.0

    def percentile_ms(self, percent: float) -> float:
        histogram: dict[float, int] = {}
        for e in self.stats or []:
            for k, v in e["response_times"].items():
                histogram[float(k)] = histogram.get(float(k), 0) + v
        return _stats.histogram_percentile(histogram, percent)

    def window_cpu_s(self) -> float:
        """Locust-process CPU over the load window (interpolated /proc samples)."""
        return self._window_delta(1)

    def window_helper_cpu_s(self) -> float:
        """CPU of Locust's child processes (the sink's encoder helper) over the load window."""
        return self._window_delta(3)

    def _window_delta(self, column: int) -> float:
        start, end = self.window()
        pts = [(sample[0], sample[column]) for sample in self.samples]
        if not pts or end <= start:
            return 0.0
        return _interpolate(pts, end) - _interpolate(pts, start)

    def cpu_us_per_request(self) -> float:
        n = self.requests
        return self.window_cpu_s() / n * 1e6 if n else float("nan")

    def rss_mib(self) -> tuple[float, float]:
        """(RSS when the load started, peak RSS) of the Locust process."""
        start, _ = self.window()
        rss = [sample[2] for sample in self.samples if sample[2]]
        loaded = [sample[2] for sample in self.samples if sample[0] >= start and sample[2]]
        return (loaded[0] if loaded else float("nan"), max(rss)) if rss else (float("nan"), float("nan"))

    def sink_line(self) -> tuple[int, str, float] | None:
        """(records the sink saw, its accounting summary, final flush seconds) from its closing log line."""
        matches = list(FLUSH_RE.finditer(self.log))
        if not matches:
            return None
        m = matches[-1]
        return int(m.group(2)), m.group(3), float(m.group(4))

    def log_problems(self) -> list[str]:
        return [
            f"log: {line.strip()[:200]}"
            for line in self.log.splitlines()
            if "Traceback" in line or ("locust-sink" in line and ("ERROR" in line or "WARNING" in line))
        ]


def _interpolate(samples: list[tuple[float, float]], t: float) -> float:
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def locust_args(locustfile: Path, host: str, users: int, duration_s: float, *extra: str) -> list[str]:
    """The arguments of one headless, CPU-bound benchmark run (after `python -m locust`)."""
    return [
        "-f", str(locustfile), "--headless", "--only-summary", "-u", str(users), "-r", str(users),
        "-t", f"{int(duration_s)}s", "--host", host, "--exit-code-on-error", "0", *extra,  # 404s: failures on purpose
    ]  # fmt: skip


def locust_cmd(python: str, locustfile: Path, host: str, users: int, duration_s: float, *extra: str) -> list[str]:
    return [python, "-m", "locust", *locust_args(locustfile, host, users, duration_s, *extra)]


def run(cmd: list[str], cwd: Path, cpus: _infra.CpuPlan, timeout_s: float, env: dict[str, str] | None = None,
        json_file: bool = True) -> LocustRun:  # fmt: skip
    """Run Locust (`cmd` from locust_cmd) in `cwd`, sampled, killed after `timeout_s`."""
    cwd.mkdir(parents=True, exist_ok=True)
    if json_file:
        cmd = [*cmd, "--json-file", str(cwd / "stats")]
    result = LocustRun()
    log_path = cwd / "locust.log"
    started = time.time()
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cpus.locust_cmd(cmd), cwd=cwd, stdout=logf, stderr=subprocess.STDOUT,
                                env=env or _infra.child_env())  # fmt: skip
    deadline = time.monotonic() + timeout_s
    next_scan = 0.0
    status, rusage = 0, None
    while True:
        cpu = _infra.proc_cpu(proc.pid)
        if cpu is not None:
            helpers = [_infra.proc_cpu(pid) for pid in result.helper_pids]
            helper_cpu = sum(c for c in helpers if c is not None)
            if result.samples and helper_cpu < result.samples[-1][3]:
                helper_cpu = result.samples[-1][3]  # a helper that exited keeps its total
            result.samples.append((time.time(), cpu, _infra.proc_rss_mib(proc.pid) or 0.0, helper_cpu))
        if time.monotonic() >= next_scan:  # the sink's encoder helper: off Locust's CPU when pinned
            next_scan = time.monotonic() + 0.5
            for pid in _infra.tree_pids(proc.pid)[1:]:
                if pid not in result.helper_pids:
                    result.helper_pids.append(pid)
                    cpus.servers_for(pid)
        wpid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if wpid == proc.pid:
            break
        if time.monotonic() > deadline:
            result.problems.append(f"Locust did not exit within {timeout_s:.0f} s: killed")
            os.kill(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    proc.returncode = result.returncode = os.waitstatus_to_exitcode(status)
    result.wall_s = time.time() - started
    result.cpu_s = rusage.ru_utime + rusage.ru_stime if rusage else 0.0
    result.log = log_path.read_text(errors="replace")
    if result.returncode != 0:
        result.problems.append(f"Locust exit code {result.returncode}: " + " | ".join(result.log.splitlines()[-5:]))
    stats_path = cwd / "stats.json"
    if json_file:
        if stats_path.exists():
            result.stats = json.loads(stats_path.read_text())
        else:
            result.problems.append("no --json-file written")
    return result


def count_file_records(sink_dir: Path, run_id: str) -> int:
    """Request documents in the sink's NDJSON files of one run (action lines naming a -requests index)."""
    n = 0
    for path in (sink_dir / run_id).glob("*.ndjson"):
        with path.open("rb") as f:
            for i, line in enumerate(f):
                if i % 2 == 0 and b'-requests"' in line:
                    n += 1
    return n
