"""The benchmark suite's own logic (bench/): pairing, bootstrap, percentiles, RSS growth, the callgrind
guard and the results table. Pure functions of plain data: milliseconds, no server."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env
from locust.stats import calculate_response_time_percentile

from bench import _infra, _stats, callgrind, peers, table

ROOT = Path(__file__).resolve().parent.parent


def window(index: int, on: bool, rate: float, cpu_us: float = 200) -> dict:
    """A window as bench/locustfiles/toggle.py writes it: 2 s long, `rate` requests/s."""
    n = int(rate * 2)
    t0 = 3.0 * index
    return {"index": index, "on": on, "t0": t0, "t1": t0 + 2, "cpu0": 0.0, "cpu1": n * cpu_us / 1e6, "n0": 0, "n1": n}


def test_toggle_compares_adjacent_windows_only():
    """Each adjacent pair (0-1, 2-3, ...) with one on and one off window gives one on/off ratio, so a drift
    of the machine across the run does not enter the ratio; the bootstrap interval is seeded and brackets
    the median."""
    pattern = [True, False, False, True] * 2
    assert tuple(pattern[:4]) == _stats.PATTERN
    # the machine gets 1 % slower every window; the sink costs 2 %
    windows = [window(i, on, 5000 * (1 - 0.01 * i) * (0.98 if on else 1.0)) for i, on in enumerate(pattern)]
    summary = _stats.summarize_windows(windows)
    ratios = _stats.pair_ratios(_stats.window_rates(windows))
    assert len(ratios) == summary["pairs"] == 4
    # each pair's windows are one step of drift apart: 0.98 * (1 -/+ 0.01 ...), never the whole drift
    assert all(0.96 < r < 1.0 for r in ratios)
    assert summary["ratio_median"] == pytest.approx(0.98, abs=0.002)
    low, high = summary["ratio_ci95"]
    assert low <= summary["ratio_median"] <= high
    assert _stats.bootstrap_median(ratios) == (low, high)  # seeded
    assert summary["cpu_us_on"] == pytest.approx(200, rel=0.01)
    # a pair of two off windows gives no ratio; a window without requests is skipped and its partner with it,
    # and the pairs after it stay aligned
    odd = [window(0, False, 4000), window(1, False, 4000), {**window(2, True, 3900), "n1": 0}, window(3, False, 4000)]
    odd += [window(4, True, 3920), window(5, False, 4000)]
    assert _stats.pair_ratios(_stats.window_rates(odd)) == [pytest.approx(3920 / 4000, rel=1e-3)]
    assert _stats.summarize_windows(odd)["windows_off"] == 4


def test_median_of_pairs_resists_a_step_that_the_means_do_not():
    """A step change of the machine (10 % slower from window 3 on) lands inside one pair: that pair's ratio
    is off, the median of the pairs is not; the ratio of the whole-run means is."""
    pattern = [True, False, False, True] * 2
    windows = [window(i, on, 5000 * (0.9 if i >= 3 else 1.0) * (0.98 if on else 1.0)) for i, on in enumerate(pattern)]
    summary = _stats.summarize_windows(windows)
    assert summary["ratio_median"] == pytest.approx(0.98, abs=0.001)
    assert summary["rps_on"] / summary["rps_off"] < 0.96


def test_pairs_skip_windows_without_requests_and_unmatched_pairs():
    windows = [
        window(0, True, 5000),
        window(1, False, 5000),
        window(2, False, 0),
        window(3, True, 4000),
        window(4, True, 4000),
        window(5, True, 4000),
    ]
    rates = _stats.window_rates(windows)
    assert [r.index for r in rates] == [0, 1, 3, 4, 5]  # window 2 saw no requests
    assert _stats.pair_ratios(rates) == [pytest.approx(1.0)]  # pair 1 lost its off window; pair 2 has no off
    cpu = _stats.pair_ratios(
        _stats.window_rates([window(0, True, 1000, 210), window(1, False, 1000, 200)]), "cpu_us_per_req"
    )
    assert cpu == [pytest.approx(1.05)]


def test_bootstrap_interval_narrows_with_more_pairs_and_needs_two():
    rng = random.Random(7)
    few = [rng.gauss(0.97, 0.02) for _ in range(10)]
    many = few + [rng.gauss(0.97, 0.02) for _ in range(290)]
    lo_few, hi_few = _stats.bootstrap_median(few)
    lo_many, hi_many = _stats.bootstrap_median(many)
    assert hi_many - lo_many < hi_few - lo_few
    assert lo_many < 0.97 < hi_many
    low, high = _stats.bootstrap_median([1.0])
    assert low != low and high != high  # nan: one pair says nothing about its spread


def test_paired_round_ratios_pair_within_a_round():
    values = [(1, "baseline", 100.0), (1, "sink", 97.0), (2, "baseline", 80.0), (2, "sink", 78.0), (3, "sink", 50.0)]
    # round 2 is 20 % slower for both: the ratio does not see it; round 3 has no baseline and is left out
    assert _stats.paired_round_ratios(values, "sink", "baseline") == [pytest.approx(0.97), pytest.approx(0.975)]


@pytest.mark.parametrize("percent", [0.5, 0.9, 0.99, 0.999, 1.0])
def test_percentile_is_locusts_own_rule(percent):
    rng = random.Random(3)
    histogram: dict[float, int] = {}
    for _ in range(5000):
        rt = round(rng.lognormvariate(3, 0.6))
        histogram[rt] = histogram.get(rt, 0) + 1
    ours = _stats.histogram_percentile({float(k): v for k, v in histogram.items()}, percent)
    assert ours == calculate_response_time_percentile(histogram, sum(histogram.values()), percent)


def test_rss_growth_per_million():
    flat = [(n * 10_000, 80.0 + (n % 3) * 0.1) for n in range(100)]
    assert abs(_stats.growth_per_million(flat)) < 0.5
    # 12 MiB more per 100,000 requests after a start-up jump that the first 20 % of samples hold
    growing = [(n * 10_000, (40.0 if n < 10 else 60.0) + 0.0012 * n * 10_000 / 10) for n in range(100)]
    assert _stats.growth_per_million(growing) == pytest.approx(120.0, rel=0.01)
    assert _stats.growth_per_million([(1, 1.0)]) != _stats.growth_per_million([(1, 1.0)])  # nan


def test_callgrind_figures_subtract_the_baseline_and_check_guards_ten_percent(tmp_path: Path):
    reports = {
        "baseline": {"hot": 46_000_000, "delivery": 2_000},
        "sink-file": {"hot": 55_000_000, "delivery": 16_000_000},
    }
    figures = callgrind.figures_of(reports, 1000)
    assert figures["baseline.hot_path"]["value"] == 46_000
    assert figures["sink-file.hot_path"]["value"] == 9_000
    assert figures["sink-file.delivery"]["value"] == 16_000
    assert figures["sink-file.total"]["value"] == 25_000
    committed = tmp_path / "callgrind.json"
    committed.write_text(json.dumps({"figures": {"sink-file.hot_path": 8_300, "sink-file.total": 23_000}}))
    assert callgrind.check(figures, committed) == []  # +8.4 % and +8.7 %: within the 10 %
    committed.write_text(json.dumps({"figures": {"sink-file.hot_path": 8_000, "sink-file.total": 23_000}}))
    failed = callgrind.check(figures, committed)
    assert len(failed) == 1 and "sink-file.hot_path" in failed[0] and "+12.5 %" in failed[0]
    assert "missing" in callgrind.check(figures, tmp_path / "none.json")[0]


def test_callgrind_reads_its_dumps_in_order(tmp_path: Path):
    for n, total in ((3, 30), (1, 10), (2, 20), (10, 100)):
        (tmp_path / f"cg.out.{n}").write_text(f"version: 1\nsummary: {total}\ntotals: {total}\n")
    (tmp_path / "cg.out").write_text("summary: 999\n")  # the final dump at exit is not a phase
    assert callgrind.parse_dumps(tmp_path) == [10, 20, 30, 100]


def test_committed_callgrind_baseline_covers_the_checked_figures():
    committed = json.loads(callgrind.BASELINE_FILE.read_text())
    assert set(callgrind.CHECKED) <= set(committed["figures"])
    assert all(isinstance(committed["figures"][k], int) and committed["figures"][k] > 0 for k in callgrind.CHECKED)


def test_table_renders_the_newest_line_with_its_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_infra, "RESULTS", tmp_path)
    old = {"figures": {"file.ratio": _infra.figure(0.9, "req/s on / off", [0.8, 1.0], "r")}}
    new = {"figures": {"file.ratio": _infra.figure(0.972, "req/s on / off", [0.964, 0.977], "bootstrap")}}
    common = {"time": "2026-12-03T08:00:00Z", "commit": "abcdef123", "dirty": False, "machine": {"loadavg": [0.3]}}
    other = {"figures": {"es.ratio": _infra.figure(0.95, "req/s on / off", [0.94, 0.96], "bootstrap")}}
    lines = (old, new, other)  # the newest line has no file.ratio: the newest line that has it counts
    (tmp_path / "overhead.jsonl").write_text("".join(json.dumps({**common, **x}) + "\n" for x in lines))
    rendered = table.render()
    assert "**0.972** [0.964, 0.977]" in rendered and "0.9**" not in rendered
    assert "**0.95** [0.94, 0.96]" in rendered
    assert "abcdef1" in rendered and "load 0.3" in rendered


def test_peers_summary_pairs_rounds_and_counts_losses():
    def row(variant: str, phase: str, rnd: int, rps: float, stored: int | None, made: int = 1000, **kw) -> dict:
        base = {
            "variant": variant,
            "phase": phase,
            "round": rnd,
            "requests": made,
            "rps": rps,
            "cpu_us": 200.0,
            "helper_cpu_us": 5.0,
            "p50_ms": 21.0,
            "p99_ms": 30.0,
            "stored": stored,
            "problems": [],
        }
        return {**base, **kw}

    rows = [
        row("baseline", "throughput", 1, 4000, None),
        row("timescale", "throughput", 1, 3200, 990),
        row("baseline", "throughput", 2, 3000, None),
        row("timescale", "throughput", 2, 2500, 1000),
        row("timescale", "latency", 1, 200, 400, made=400, p99_ms=45.0),
        row(
            "timescale",
            "rss",
            0,
            3000,
            5000,
            made=5000,
            rss_start_mib=60.0,
            rss_peak_mib=90.0,
            rss_growth_mib_per_million=25.0,
            rss_points=10,
        ),
    ]
    figures = peers.summarize(rows, ["baseline", "timescale"])
    # each round against its own baseline: 0.8 and 0.833, not 5700 / 7000
    assert figures["timescale.rps_ratio"]["value"] == pytest.approx(0.817, abs=0.001)
    assert figures["timescale.throughput.stored_share"]["value"] == pytest.approx(0.995)
    assert figures["timescale.throughput.stored_share"]["stored"] == 1990
    assert figures["timescale.delay20.p99_ms"]["value"] == 45.0
    assert figures["timescale.rss.growth_mib_per_million"]["value"] == 25.0
    rendered = peers.table(figures, ["baseline", "timescale"])
    assert "| timescale | 0.817 [" in rendered and "7390 / 7400" in rendered and "60 -> 90 (+25.0)" in rendered


def _bench(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict]:
    """`python3 -m bench ARGS` as a user runs it, with its results file in tmp_path; its one new line."""
    env = subprocess_env({"LOCUST_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = (tmp_path / f"{args[0]}.jsonl").read_text().splitlines() if (tmp_path / f"{args[0]}.jsonl").exists() else []
    assert len(lines) == 1, done.stderr[-2000:]
    return done, json.loads(lines[0])


def test_hotpath_end_to_end_through_the_sink_adapter(tmp_path: Path):
    """The real sink through bench/_sink.py: records fed, flushed to NDJSON, every one delivered, one
    results line with commit, machine, command and figures with their intervals."""
    done, line = _bench(tmp_path, "hotpath", "--modes", "file", "--records", "2000", "--repeat", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert line["ok"] and line["command"] == "python3 -m bench hotpath --modes file --records 2000 --repeat 1"
    assert len(line["commit"]) == 40 and line["machine"]["vcpus"] and line["machine"]["locust"]
    assert line["details"]["runs"]["file"][0]["delivered"] == 2000
    hot = line["figures"]["file.hot_path_us"]
    assert hot["value"] > 0 and hot["interval"][0] <= hot["value"] <= hot["interval"][1] and hot["resolution"]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (scripts/bootstrap.sh installs it)")
def test_overhead_toggles_the_sinks_real_listener_and_checks_delivery(tmp_path: Path):
    """One short toggled Locust run against the bench's nginx: windows with the sink's listener on and off
    alternate, and the delivery check finds every record the sink saw in its NDJSON files."""
    done, line = _bench(
        tmp_path,
        "overhead",
        "--modes",
        "file",
        "--runs",
        "1",
        "--duration",
        "12",
        "--window",
        "1",
        "--guard",
        "0.2",
        "--users",
        "4",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = line["details"]["runs"][0]
    assert run["windows_on"] >= 1 and run["windows_off"] >= 1 and run["pairs"] >= 1
    assert run["emitted"] > 0 and run["delivered"] == run["emitted"] and "balanced" in run["sink_summary"]
    assert line["figures"]["file.ratio"]["pairs"] == run["pairs"]
