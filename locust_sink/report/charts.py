"""Bokeh charts of a run, built from `ColumnDataSource`s whose columns are documented in `model.py`
(`SERIES_COLUMNS`, `HISTOGRAM_COLUMNS`, `STATUS_COLUMNS`, `EVENT_COLUMNS`).

Every function takes the sources (and the shared time range) and returns a figure, so a live page can feed
the same charts from `AjaxDataSource`s polling a JSON route that serves the same columns. Time axes are
datetime (epoch ms) for one run, or seconds since the start (`relative=True`) for comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    HoverTool,
    LinearAxis,
    Range1d,
    Select,
    Span,
)
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure

HEIGHT = 260
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
EVENT_COLORS = {
    "test_start": "#2ca02c",
    "test_stop": "#d62728",
    "spawning_complete": "#1f77b4",
    "worker_lost": "#ff7f0e",
    "worker_joined": "#9467bd",
    "sink_trouble": "#8c564b",
}


def palette(n: int) -> list[str]:
    colors = Category10_10 if n <= 10 else Category20_20
    return [colors[i % len(colors)] for i in range(n)]


def time_range() -> DataRange1d:
    """One range for every time chart of a report: zooming or panning one moves them all."""
    return DataRange1d(range_padding=0.02)


def time_figure(title: str, x_range: DataRange1d, y_label: str, relative: bool = False, name: str | None = None):
    fig = figure(
        title=title,
        height=HEIGHT,
        sizing_mode="stretch_width",
        x_axis_type="linear" if relative else "datetime",
        x_range=x_range,
        tools=TOOLS,
        active_drag="box_zoom",
        name=name,
    )
    fig.yaxis.axis_label = y_label
    fig.xaxis.axis_label = "seconds since start" if relative else "time (UTC)"
    fig.toolbar.logo = None
    return fig


def _hover(fig, renderers: Sequence, fields: Sequence[tuple[str, str]], relative: bool = False) -> None:
    time_field = ("t", "@x{0.0} s" if relative else "@t{%F %T}")
    tooltips = [time_field, *fields] if not relative else [("t", "@x{0.0} s"), *fields]
    fig.add_tools(
        HoverTool(
            renderers=list(renderers),
            tooltips=tooltips,
            formatters={"@t": "datetime"},
            mode="vline",
        )
    )


def style_legend(fig) -> None:
    fig.legend.click_policy = "hide"
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "8pt"
    fig.legend.background_fill_alpha = 0.6


def throughput_chart(total: ColumnDataSource, x_range: DataRange1d) -> figure:
    """Requests/s and failures/s of Total (left axis) with the user count (right axis)."""
    fig = time_figure("Requests and failures per second, users", x_range, "per second", name="throughput")
    rps = fig.line("t", "rps", source=total, color="#1f77b4", line_width=2, legend_label="requests/s")
    fails = fig.line("t", "fail_s", source=total, color="#d62728", line_width=2, legend_label="failures/s")
    fig.extra_y_ranges = {"users": DataRange1d(start=0)}
    fig.add_layout(LinearAxis(y_range_name="users", axis_label="users"), "right")
    users = fig.step(
        "t", "users", source=total, y_range_name="users", color="#7f7f7f", line_dash="dashed", legend_label="users"
    )
    _hover(fig, [rps], [("requests/s", "@rps"), ("failures/s", "@fail_s"), ("users", "@users")])
    style_legend(fig)
    del fails, users
    return fig


def response_time_chart(selected: ColumnDataSource, x_range: DataRange1d, title: str) -> figure:
    """p50/p95/p99 over time of one endpoint (or Total): `selected` is swapped by the endpoint selector."""
    fig = time_figure(title, x_range, "response time (ms)", name="response_times")
    lines = [
        fig.line("t", col, source=selected, color=color, line_width=2, legend_label=col)
        for col, color in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728"))
    ]
    fig.line("t", "avg", source=selected, color="#7f7f7f", line_dash="dotted", legend_label="avg")
    _hover(fig, lines[:1], [("p50", "@p50 ms"), ("p95", "@p95 ms"), ("p99", "@p99 ms"), ("requests", "@requests")])
    style_legend(fig)
    return fig


def per_endpoint_chart(
    sources: Mapping[str, ColumnDataSource], x_range: DataRange1d, column: str, title: str, y_label: str
) -> figure:
    """One line per endpoint of one series column (failures/s, p95, requests/s ...); click a legend entry to hide it."""
    fig = time_figure(title, x_range, y_label, name=f"per_endpoint_{column}")
    renderers = []
    for (key, source), color in zip(sources.items(), palette(len(sources)), strict=True):
        renderers.append(fig.line("t", column, source=source, color=color, line_width=2, legend_label=key))
    if renderers:
        fig.add_tools(
            HoverTool(
                renderers=renderers,
                tooltips=[("t", "@t{%F %T}"), (column, f"@{column}")],
                formatters={"@t": "datetime"},
            )
        )
        style_legend(fig)
    return fig


def histogram_chart(selected: ColumnDataSource, title: str) -> figure:
    """Response-time distribution of one endpoint from Locust's histogram (bucket edges on a log axis)."""
    fig = figure(
        title=title,
        height=HEIGHT,
        sizing_mode="stretch_width",
        x_axis_type="log",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        name="histogram",
    )
    fig.toolbar.logo = None
    bars = fig.quad(left="left", right="right", top="count", bottom=0, source=selected, color="#1f77b4", alpha=0.7)
    fig.xaxis.axis_label = "response time (ms, Locust's buckets)"
    fig.yaxis.axis_label = "requests"
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("bucket", "@ms ms"), ("requests", "@count")]))
    return fig


def status_chart(status: ColumnDataSource, codes: Sequence[str], x_range: DataRange1d) -> figure:
    """Requests per second per HTTP status code (`s0`: no response)."""
    fig = time_figure("Status codes over time", x_range, "requests/s", name="status_codes")
    renderers = []
    for col, color in zip(codes, palette(len(codes)), strict=True):
        label = "no response" if col == "s0" else col[1:]
        renderers.append(fig.line("t", col, source=status, color=color, line_width=2, legend_label=label))
    if renderers:
        _hover(fig, renderers[:1], [(c[1:] or "none", f"@{c}") for c in codes])
        style_legend(fig)
    return fig


def add_events(fig, events: ColumnDataSource, kinds: Sequence[str], times: Sequence[float]) -> None:
    """Events as annotations: a marker per event with its message on hover, and a vertical line for the ones
    that mark a phase (`EVENT_COLORS`: start, stop, spawning complete, workers joining or lost, sink trouble)."""
    for t, kind in zip(times, kinds, strict=True):
        if kind not in EVENT_COLORS:
            continue
        fig.add_layout(Span(location=t, dimension="height", line_color=EVENT_COLORS.get(kind, "#bbbbbb"),
                            line_dash="dotted", line_width=1))  # fmt: skip
    marks = fig.scatter("t", 0, source=events, marker="inverted_triangle", size=9, color="#555555", alpha=0.8)
    fig.add_tools(
        HoverTool(
            renderers=[marks],
            tooltips=[("event", "@event"), ("node", "@node"), ("", "@message"), ("t", "@t{%F %T}")],
            formatters={"@t": "datetime"},
        )
    )


def endpoint_selector(
    options: Sequence[str],
    selected_series: ColumnDataSource,
    series: Mapping[str, ColumnDataSource],
    selected_hist: ColumnDataSource,
    hists: Mapping[str, ColumnDataSource],
    titles: Sequence = (),
) -> Select:
    """A Select that swaps the data of the response-time and histogram charts to another endpoint."""
    select = Select(title="Endpoint", value=options[0], options=list(options), name="endpoint_select", width=420)
    select.js_on_change(
        "value",
        CustomJS(
            args={"sel": selected_series, "series": dict(series), "hsel": selected_hist, "hists": dict(hists),
                  "titles": list(titles)},
            code="""
const key = cb_obj.value;
if (series[key]) { sel.data = Object.assign({}, series[key].data); }
if (hists[key]) { hsel.data = Object.assign({}, hists[key].data); }
for (const t of titles) { t.text = t.text.replace(/: .*$/, ': ' + key); }
""",
        ),
    )  # fmt: skip
    return select


def overlay_chart(
    runs: Sequence[tuple[str, ColumnDataSource]], column: str, title: str, y_label: str, x_range: Range1d | DataRange1d
) -> figure:
    """Compare: one line per run of one column, on seconds since each run's start (column `x`)."""
    fig = time_figure(title, x_range, y_label, relative=True, name=f"overlay_{column}")
    renderers = []
    for i, ((label, source), color) in enumerate(zip(runs, palette(len(runs)), strict=True)):
        dash = "dashed" if i == 0 else "solid"
        renderers.append(
            fig.line("x", column, source=source, color=color, line_width=2, line_dash=dash, legend_label=label)
        )
    fig.add_tools(HoverTool(renderers=renderers, tooltips=[("run", "$name"), ("s", "@x{0.0}"), (column, f"@{column}")]))
    for r, (label, _) in zip(renderers, runs, strict=True):
        r.name = label
    style_legend(fig)
    return fig
