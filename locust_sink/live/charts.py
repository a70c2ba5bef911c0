"""Bokeh pieces of the live page that the report has no counterpart for: per-worker lines (one glyph for
however many workers connect) and the tables. Imported only when the page is first built."""

from __future__ import annotations

from collections.abc import Sequence

from bokeh.models import ColumnDataSource, DataRange1d, DataTable, HoverTool, NumberFormatter, TableColumn
from bokeh.plotting import figure

from ..report.charts import HEIGHT, TOOLS


def worker_chart(source: ColumnDataSource, x_range: DataRange1d, column: str, title: str, y_label: str) -> figure:
    """One line per worker of `column` (lists per row: `xs` and `column`, colored by `color`)."""
    fig = figure(
        title=title,
        height=HEIGHT,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        x_range=x_range,
        tools=TOOLS,
        active_drag="box_zoom",
        name=f"workers_{column}",
    )
    lines = fig.multi_line(xs="xs", ys=column, line_color="color", line_width=2, source=source, legend_field="node")
    fig.add_tools(HoverTool(renderers=[lines], tooltips=[("worker", "@node"), (column, f"@last_{column}")]))
    fig.yaxis.axis_label = y_label
    fig.xaxis.axis_label = "time (UTC)"
    fig.toolbar.logo = None
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "8pt"
    fig.legend.background_fill_alpha = 0.6
    return fig


def table(source: ColumnDataSource, fields: Sequence[tuple[str, str, str | None]], name: str, height: int) -> DataTable:
    """A DataTable of `fields` (column, title, number format or None for text)."""
    cols = [
        TableColumn(field=f, title=title, formatter=NumberFormatter(format=fmt, nan_format="-", null_format="-"))
        if fmt
        else TableColumn(field=f, title=title)
        for f, title, fmt in fields
    ]
    return DataTable(
        source=source, columns=cols, name=name, height=height, sizing_mode="stretch_width", index_position=None
    )
