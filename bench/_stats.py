"""The bench's own statistics: adjacent-window pairing, per-round pairing, the bootstrap interval, percentiles.

Pure functions of plain data (no Locust, no servers), so tests/test_bench.py checks them in milliseconds.

Why pairs: on a 2-vCPU VM whose speed drifts by several per cent within minutes, only measurements taken
seconds apart see the same machine. `overhead` compares each sink-on window with its neighbour (windows
0-1, 2-3, ... of one Locust process, in the order on, off, off, on); `peers` compares each variant's run
with the baseline run of the same round. The median of those ratios, with a seeded percentile-bootstrap
interval, is the figure; its interval is the resolution the machine allowed in that run.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PATTERN = (True, False, False, True)  # the sink on, off, off, on; repeated (a linear drift cancels in each four)


@dataclass(frozen=True)
class WindowRate:
    """One measured window of the toggled Locust process."""

    index: int
    on: bool
    rps: float
    cpu_us_per_req: float


def window_rates(windows: Sequence[dict[str, Any]]) -> list[WindowRate]:
    """The rate and CPU per request of every window that saw requests (a window is the dict the toggle
    locustfile writes: index, on, t0/t1 wall time, cpu0/cpu1 process CPU, n0/n1 Locust's request count)."""
    out = []
    for i, w in enumerate(windows):
        n, t = w["n1"] - w["n0"], w["t1"] - w["t0"]
        if n > 0 and t > 0:
            out.append(WindowRate(w.get("index", i), w["on"], n / t, (w["cpu1"] - w["cpu0"]) / n * 1e6))
    return out


def pair_ratios(rates: Sequence[WindowRate], field: str = "rps") -> list[float]:
    """on/off ratio of `field` for each pair of adjacent windows (0-1, 2-3, ...) that has one of each."""
    pairs: dict[int, list[WindowRate]] = {}
    for rate in rates:
        pairs.setdefault(rate.index // 2, []).append(rate)
    ratios = []
    for pair in pairs.values():
        on = [getattr(r, field) for r in pair if r.on]
        off = [getattr(r, field) for r in pair if not r.on]
        if len(on) == 1 and len(off) == 1 and off[0]:
            ratios.append(on[0] / off[0])
    return ratios


def bootstrap_median(values: Sequence[float], rounds: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median (seeded: the same data give the same interval);
    (nan, nan) for fewer than two values."""
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize_windows(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one toggled run: the median of the adjacent-pair ratios with its interval, and the
    CPU per request in both kinds of window."""
    rates = window_rates(windows)
    on = [r for r in rates if r.on]
    off = [r for r in rates if not r.on]
    ratios = pair_ratios(rates)
    low, high = bootstrap_median(ratios)
    cpu_ratios = pair_ratios(rates, "cpu_us_per_req")
    return {
        "windows_on": len(on),
        "windows_off": len(off),
        "rps_on": statistics.fmean(r.rps for r in on) if on else float("nan"),
        "rps_off": statistics.fmean(r.rps for r in off) if off else float("nan"),
        "pairs": len(ratios),
        "ratio_median": median(ratios),
        "ratio_ci95": [low, high],
        "cpu_us_on": median([r.cpu_us_per_req for r in on]),
        "cpu_us_off": median([r.cpu_us_per_req for r in off]),
        "cpu_ratio_median": median(cpu_ratios),
    }


def paired_round_ratios(values: Sequence[tuple[int, str, float]], variant: str, baseline: str) -> list[float]:
    """variant/baseline ratio within each round: `values` are (round, variant, value) of separate runs."""
    base = {rnd: v for rnd, name, v in values if name == baseline}
    return [v / base[rnd] for rnd, name, v in values if name == variant and base.get(rnd)]


def histogram_percentile(histogram: dict[float, int], percent: float) -> float:
    """Locust's own rule (stats.calculate_response_time_percentile) on its rounded-bucket histogram."""
    total = sum(histogram.values())
    wanted = int(total * percent)
    processed = 0
    for rt in sorted(histogram, reverse=True):
        processed += histogram[rt]
        if total - processed <= wanted:
            return rt
    return 0.0


def growth_per_million(samples: Sequence[tuple[int, float]], skip_share: float = 0.2) -> float:
    """Least-squares slope of RSS against requests made, per 1,000,000 requests, after the first
    `skip_share` of the samples (start-up, connection pools, first batches): flat memory gives ~0."""
    kept = list(samples[int(len(samples) * skip_share) :])
    if len(kept) < 2:
        return float("nan")
    xs = [float(x) for x, _ in kept]
    ys = [y for _, y in kept]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 1e6
