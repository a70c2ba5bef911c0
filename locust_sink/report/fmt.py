"""Formatting shared by the text and HTML renderers."""

from __future__ import annotations

import time
from typing import Any


def ms(value: Any) -> str:
    if value is None:
        return ""
    v = float(value)
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def num(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):,.{digits}f}"


def when(epoch: float | None, with_date: bool = True) -> str:
    if epoch is None:
        return ""
    pattern = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return time.strftime(pattern, time.gmtime(epoch)) + (" UTC" if with_date else "")


def duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def tags(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)
