"""Bokeh charts of "who is the bottleneck": the load generators' CPU and memory per node, with the ranges in
which a node was CPU-saturated shaded, and the system under test's hosts (CPU, memory, disk, network), all
on the report's one linked time axis (`charts.time_range()`). Columns: `loadgen.NODE_COLUMNS`,
`hosts.HOST_COLUMNS`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bokeh.models import BoxAnnotation, ColumnDataSource, DataRange1d, HoverTool, Span

from .charts import palette, style_legend, time_figure
from .loadgen import SATURATED_AT

SATURATED_COLOR = "#d62728"


def _source(cols: Mapping[str, list]) -> ColumnDataSource:
    """None (a window without that figure) becomes NaN: a gap in the line, not a drop to zero."""
    return ColumnDataSource({k: [math.nan if v is None else v for v in vs] for k, vs in cols.items()})


def _lines(fig: Any, sources: Mapping[str, ColumnDataSource], column: str, unit: str, dash: str = "solid",
           suffix: str = "") -> list:  # fmt: skip
    renderers = []
    for (key, source), color in zip(sources.items(), palette(len(sources)), strict=True):
        renderers.append(fig.line("t", column, source=source, color=color, line_width=2, line_dash=dash,
                                  legend_label=f"{key}{suffix}"))  # fmt: skip
    if renderers:
        tooltips = [("t", "@t{%F %T}"), (column, f"@{column}{{0.0}} {unit}")]
        fig.add_tools(HoverTool(renderers=renderers, tooltips=tooltips, formatters={"@t": "datetime"}))
    return renderers


def shade(fig: Any, saturation: Sequence[Mapping[str, Any]]) -> None:
    """The ranges in which a load generator was CPU-saturated, as red bands over the whole chart height."""
    for episode in saturation:
        fig.add_layout(BoxAnnotation(left=episode["start"] * 1000, right=episode["end"] * 1000,
                                     fill_color=SATURATED_COLOR, fill_alpha=0.12, line_alpha=0))  # fmt: skip


def loadgen_cpu_chart(nodes: Mapping[str, Mapping[str, list]], saturation: Sequence[Mapping[str, Any]],
                      x_range: DataRange1d) -> Any:  # fmt: skip
    fig = time_figure("Load generators: CPU % per node (of one core; dashed: used + waited for; red: saturated)",
                      x_range, "CPU %", name="loadgen_cpu")  # fmt: skip
    fig.y_range = DataRange1d(start=0)
    sources = {k: _source(v) for k, v in nodes.items()}
    _lines(fig, sources, "cpu", "%", suffix=" used")
    if any(any(s.data["cpu_wait"]) for s in sources.values()):
        _lines(fig, sources, "demand", "%", dash="dashed", suffix=" used + waited for")
    fig.add_layout(Span(location=SATURATED_AT, dimension="width", line_color=SATURATED_COLOR, line_dash="dashed"))
    shade(fig, saturation)
    if nodes:
        style_legend(fig)
    return fig


def loadgen_memory_chart(nodes: Mapping[str, Mapping[str, list]], x_range: DataRange1d) -> Any:
    fig = time_figure("Load generators: memory (RSS) per node", x_range, "MB", name="loadgen_memory")
    _lines(fig, {k: _source(v) for k, v in nodes.items()}, "memory_mb", "MB")
    if nodes:
        style_legend(fig)
    return fig


def host_cpu_chart(hosts: Mapping[str, Mapping[str, list]], saturation: Sequence[Mapping[str, Any]],
                   x_range: DataRange1d) -> Any:  # fmt: skip
    fig = time_figure("System under test's hosts: CPU % (all cores) and memory % (dashed)", x_range, "%",
                  name="host_cpu")  # fmt: skip
    fig.y_range = DataRange1d(start=0)
    sources = {k: _source(v) for k, v in hosts.items()}
    _lines(fig, sources, "cpu", "%", suffix=" CPU")
    _lines(fig, sources, "memory", "%", dash="dashed", suffix=" memory")
    shade(fig, saturation)
    style_legend(fig)
    return fig


def host_io_chart(hosts: Mapping[str, Mapping[str, list]], x_range: DataRange1d) -> Any:
    fig = time_figure("System under test's hosts: disk and network (bytes/s)", x_range, "bytes/s", name="host_io")
    sources = {k: _source(v) for k, v in hosts.items()}
    drawn = []
    kinds = (("net_in", "solid", "net in"), ("net_out", "dashed", "net out"), ("disk_read", "dotted", "disk read"),
             ("disk_write", "dotdash", "disk write"))  # fmt: skip
    for column, dash, label in kinds:
        if any(not math.isnan(v) for s in sources.values() for v in s.data[column]):
            drawn += _lines(fig, sources, column, "B/s", dash=dash, suffix=f" {label}")
    if drawn:
        style_legend(fig)
    return fig
