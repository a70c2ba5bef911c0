"""bench/toggle.py's statistics."""

from __future__ import annotations

import sys

import pytest


def test_toggle_bench_compares_adjacent_windows_only():
    """bench/toggle.py's arithmetic: each adjacent pair (0-1, 2-3, ...) with one on and one off window gives
    one on/off ratio; windows without requests are skipped; the bootstrap interval is seeded and brackets
    the median."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_toggle", bench / "toggle.py")
        toggle = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(toggle)
    finally:
        sys.path.remove(str(bench))

    def window(index: int, on: bool, rate: float, cpu_us: float = 200) -> dict:
        n = int(rate * 2)
        t0 = 3.0 * index
        return {
            "index": index,
            "on": on,
            "t0": t0,
            "t1": t0 + 2,
            "cpu0": 0.0,
            "cpu1": n * cpu_us / 1e6,
            "n0": 0,
            "n1": n,
        }

    # ABBA with a drift: the machine gets slower every window, the sink costs 2 %
    pattern = [True, False, False, True] * 2
    windows = [window(i, on, 5000 * (1 - 0.01 * i) * (0.98 if on else 1.0)) for i, on in enumerate(pattern)]
    summary = toggle.summarize_windows(windows)
    ratios = toggle.pair_ratios(toggle.window_rates(windows))
    assert len(ratios) == summary["pairs"] == 4
    # each pair's windows are one step of drift apart: 0.98 * (1 -/+ 0.01 ...) around 0.98, never the drift itself
    assert all(0.96 < r < 1.0 for r in ratios)
    assert summary["ratio_median"] == pytest.approx(0.98, abs=0.002)
    low, high = summary["ratio_ci95"]
    assert low <= summary["ratio_median"] <= high
    assert toggle.bootstrap_median(ratios) == (low, high)  # seeded
    assert summary["cpu_us_on"] == pytest.approx(200, rel=0.01)

    # a pair of two off windows gives no ratio; a window without requests is skipped and its partner with it,
    # and the pairs after it stay aligned
    odd = [window(0, False, 4000), window(1, False, 4000), {**window(2, True, 3900), "n1": 0}, window(3, False, 4000)]
    odd += [window(4, True, 3920), window(5, False, 4000)]
    assert toggle.pair_ratios(toggle.window_rates(odd)) == [pytest.approx(3920 / 4000, rel=1e-3)]
    assert toggle.summarize_windows(odd)["windows_off"] == 4
