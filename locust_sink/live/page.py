"""The live page: one HTML document with BokehJS inline (`bokeh.resources.INLINE`), built from the report's
chart functions over an `AjaxDataSource` that polls the JSON route (`figures.payload`).

Bokeh is imported only when the page is first asked for (never at `import locust_sink`), and the page is
built once and cached. One AjaxDataSource polls (`POLL_MS`); its adapter hands the other parts of the
answer (the selected endpoint, the tables, the workers' lines, the health table) to their sources, so one
request per poll feeds the whole page. The endpoint selector changes the polled URL.
"""

from __future__ import annotations

from typing import Any

from ..report.model import SERIES_COLUMNS, TOTAL
from .figures import ENDPOINT_COLUMNS, WORKER_COLUMNS
from .health import HEALTH_COLUMNS

POLL_MS = 1000
DATA_PATH = "live/data"  # relative to the page (/locust-sink/live): works behind a path prefix too
MISSING_BOKEH = (
    "locust-sink: the live page needs Bokeh, which is not installed: pip install 'locust-sink[report]' "
    "(the load test and the recording go on without it)"
)

# Bokeh's own page, with an empty icon (no favicon request) and some margin
TEMPLATE = """{% extends "file.html.jinja" %}
{% block preamble %}<link rel="icon" href="data:,">{% endblock %}
{% block postamble %}<style>body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
padding: 8px 20px 30px; box-sizing: border-box; }</style>{% endblock %}
"""

ADAPTER_JS = """
const r = cb_data.response;
sel.data = r.series;
endpoints.data = r.endpoints;
workers.data = r.workers;
health.data = r.health;
const opts = r.options;
if (JSON.stringify(select.options) !== JSON.stringify(opts)) { select.options = opts; }
workers_box.visible = r.workers.node.length > 0;
const state = r.final ? "final" : "running";
const more = r.untracked ? ` · ${r.untracked} more endpoints not charted` : "";
status.text = `run <b>${r.run_id || "(not started)"}</b> · ${state} · latest snapshot ${r.updated || "-"} ` +
              `· windows of ${r.window_s} s${more}`;
return r.total;
"""

SELECT_JS = """
src.data_url = path + "?endpoint=" + encodeURIComponent(cb_obj.value);
for (const t of titles) { t.text = t.text.replace(/: .*$/, ": " + cb_obj.value); }
src.get_data("replace");
"""

ENDPOINT_FIELDS = (
    ("key", "endpoint", None), ("requests", "requests", "0,0"), ("failures", "failures", "0,0"),
    ("rps", "requests/s", "0,0.0"), ("fail_s", "failures/s", "0,0.0"), ("p50", "p50 ms", "0,0"),
    ("p95", "p95 ms", "0,0"), ("p99", "p99 ms", "0,0"),
)  # fmt: skip
WORKER_FIELDS = (("node", "worker", None), ("requests", "requests", "0,0"), ("last_rps", "requests/s", "0,0.0"),
                 ("last_p95", "p95 ms", "0,0"))  # fmt: skip
HEALTH_FIELDS = (
    ("node", "node", None), ("state", "state", None), ("emitted", "emitted", "0,0"), ("queued", "queued", "0,0"),
    ("in_flight", "in flight", "0,0"), ("indexed", "indexed", "0,0"), ("written", "written", "0,0"),
    ("retried", "retried (carried)", "0,0"), ("spooled", "spooled", "0,0"),
    ("dead_lettered", "dead-lettered", "0,0"), ("dropped", "dropped", "0,0"), ("lag_s", "lag ≈ s", "0,0.0"),
    ("age_s", "status age s", "0,0.0"), ("trouble", "last trouble", None),
)  # fmt: skip


def build() -> str:
    """The page's HTML (raises ImportError without Bokeh)."""
    from bokeh.core.templates import get_env
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import AjaxDataSource, ColumnDataSource, CustomJS, Div, Select
    from bokeh.resources import INLINE

    from ..report import charts
    from . import charts as live_charts

    x_range = charts.time_range()
    total = AjaxDataSource(data_url=DATA_PATH, polling_interval=POLL_MS, method="GET", mode="replace",
                           data={c: [] for c in SERIES_COLUMNS})  # fmt: skip
    selected = ColumnDataSource({c: [] for c in SERIES_COLUMNS})
    endpoints = ColumnDataSource({c: [] for c in ENDPOINT_COLUMNS})
    workers = ColumnDataSource({c: [] for c in WORKER_COLUMNS})
    health = ColumnDataSource({c: [] for c in HEALTH_COLUMNS})

    status = Div(text="waiting for the first snapshot ...", name="live_status", sizing_mode="stretch_width")
    heading = Div(text="<h2>locust-sink: live</h2>", sizing_mode="stretch_width")
    throughput = charts.throughput_chart(total, x_range)
    throughput.title.text = f"Requests and failures per second, users: {TOTAL}"
    rt = charts.response_time_chart(selected, x_range, f"Response time over the window: {TOTAL}")
    selected_tp = charts.throughput_chart(selected, x_range)
    selected_tp.name = "selected_throughput"
    selected_tp.title.text = f"Requests and failures per second, users: {TOTAL}"
    select = Select(title="Endpoint", value=TOTAL, options=[TOTAL], name="endpoint_select", width=420)
    titles = [rt.title, selected_tp.title]
    select.js_on_change("value", CustomJS(args={"src": total, "path": DATA_PATH, "titles": titles}, code=SELECT_JS))
    worker_rps = live_charts.worker_chart(workers, x_range, "rps", "Requests per second per worker", "requests/s")
    worker_p95 = live_charts.worker_chart(workers, x_range, "p95", "p95 per worker over the window", "ms")
    workers_box = column(
        Div(text="<h3>Workers</h3>"),
        worker_rps,
        worker_p95,
        live_charts.table(workers, WORKER_FIELDS, "workers_table", 160),
        sizing_mode="stretch_width",
        name="workers_box",
        visible=False,
    )
    total.adapter = CustomJS(
        args={"sel": selected, "endpoints": endpoints, "workers": workers, "health": health, "select": select,
              "status": status, "workers_box": workers_box},
        code=ADAPTER_JS,
    )  # fmt: skip
    layout = column(
        heading,
        status,
        throughput,
        Div(text="<h3>Per endpoint</h3>"),
        live_charts.table(endpoints, ENDPOINT_FIELDS, "endpoints_table", 240),
        select,
        rt,
        selected_tp,
        workers_box,
        Div(text="<h3>Sink health per node</h3><p>lag ≈ records waiting (queued + in flight) ÷ the node's "
                 "recent emission rate: the seconds of traffic not yet written or indexed.</p>"),
        live_charts.table(health, HEALTH_FIELDS, "health_table", 160),
        sizing_mode="stretch_width",
    )  # fmt: skip
    template = get_env().from_string(TEMPLATE)
    return file_html(layout, resources=INLINE, title="locust-sink live", template=template)


class LivePage:
    """The page's HTML, built on the first request and cached (or the one line saying what to install)."""

    def __init__(self) -> None:
        self._html: str | None = None
        self.missing: str | None = None

    def html(self, builder: Any = None) -> str | None:
        """The page, or None when Bokeh is missing (then `missing` says what to install).

        `builder(build)` runs the build (the web routes build in a child process, so that building the
        document, ~1.4 s of CPU once, does not hold up the simulated users' greenlets)."""
        if self._html is None and self.missing is None:
            try:
                self._html = builder(build) if builder is not None else build()
            except ImportError:
                self.missing = MISSING_BOKEH
        return self._html
