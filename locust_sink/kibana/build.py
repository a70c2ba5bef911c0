"""Generate the Kibana saved objects (`saved_objects.ndjson`): data views, Lens visualizations, one dashboard.

    python -m locust_sink.kibana.build                      # rewrite the bundled saved_objects.ndjson
    python -m locust_sink.kibana.build --prefix perf -o perf.ndjson   # for `--es-index-prefix perf`
    locust-sink kibana import http://127.0.0.1:5601 --file perf.ndjson

The objects are written the way Kibana 8.x exports them, for the OLDEST Kibana we support (8.11): every
object carries `coreMigrationVersion` 8.8.0 and the `typeMigrationVersion` of its type as of 8.11, so newer
Kibanas (8.12+ and 9.x) run their own migrations on import. Lens visualizations are separate objects (the
dashboard references them by id): each is readable on its own, and every reference is checkable.

Field names are those of locust_sink/schema.py's index templates; tests/test_stack.py checks each one.
Only the standard library: this module must not import Locust or Elasticsearch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
PANEL_VERSION = "8.11.0"  # the Kibana version that "created" the dashboard panels (embeddable migrations)
LAYER = "main"  # every Lens visualization here has one data layer
RECORDS = "___records___"  # Lens's pseudo field for document counts

FAMILIES = ("requests", "stats", "runs", "events")
FAMILY_NAMES = {
    "requests": "Locust requests",
    "stats": "Locust stats snapshots",
    "runs": "Locust runs",
    "events": "Locust events",
}

# ------------------------------------------------------------------------------------------------ ids


def data_view_id(prefix: str, family: str) -> str:
    return f"{prefix}-sink-{family}"


def lens_id(prefix: str, name: str) -> str:
    return f"{prefix}-sink-lens-{name}"


def dashboard_id(prefix: str) -> str:
    return f"{prefix}-sink-dashboard-run"


def compact(value: Any) -> str:
    """JSON inside a string attribute (panelsJSON & co), written like Kibana's JSON.stringify."""
    return json.dumps(value, separators=(",", ":"))


def saved_object(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict:
    """Top-level keys in the order Kibana's export writes them."""
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": id_,
        "managed": False,
        "references": references,
        "type": type_,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[type_],
    }


# ------------------------------------------------------------------------------------------ data views


def data_view(prefix: str, family: str) -> dict:
    suffix = "" if prefix == "locust" else f" ({prefix})"
    return saved_object(
        "index-pattern",
        data_view_id(prefix, family),
        {
            "fieldAttrs": "{}",
            "fieldFormatMap": "{}",
            "fields": "[]",
            "name": FAMILY_NAMES[family] + suffix,
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "timeFieldName": "@timestamp",
            "title": f"{prefix}-{family}*",
            "typeMeta": "{}",
        },
        [],
    )


# ------------------------------------------------------------------------------------ Lens columns


def kql(query: str) -> dict[str, str]:
    return {"query": query, "language": "kuery"}


def date_histogram() -> dict:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def count(label: str, filter_: str | None = None, per_second: bool = False, empty_as_null: bool = True) -> dict:
    column: dict[str, Any] = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": RECORDS,
        "params": {"emptyAsNull": empty_as_null},
    }
    if per_second:
        column["timeScale"] = "s"  # Lens normalizes each bucket's count to a rate per second
    if filter_:
        column["filter"] = kql(filter_)
    return column


def metric(operation: str, field: str, label: str, percentile: int | None = None) -> dict:
    """average / max / min / sum / percentile of a numeric field."""
    params: dict[str, Any] = {"emptyAsNull": True} if operation != "percentile" else {"percentile": percentile}
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": field,
        "params": params,
    }


def terms(field: str, label: str, size: int, order_by: str | None, data_type: str = "string") -> dict:
    """Top values of `field`, ordered by the metric column `order_by` (descending) or alphabetically."""
    order = {"type": "column", "columnId": order_by} if order_by else {"type": "alphabetical", "fallback": False}
    return {
        "label": label,
        "customLabel": True,
        "dataType": data_type,
        "operationType": "terms",
        "isBucketed": True,
        "scale": "ordinal",
        "sourceField": field,
        "params": {
            "size": size,
            "orderBy": order,
            "orderDirection": "desc",
            "otherBucket": bool(order_by),
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        },
    }


def last_value(field: str, label: str, data_type: str = "number") -> dict:
    return {
        "label": label,
        "customLabel": True,
        "dataType": data_type,
        "operationType": "last_value",
        "isBucketed": False,
        "scale": "ratio" if data_type == "number" else "ordinal",
        "sourceField": field,
        "filter": kql(f"{field}: *"),  # what Lens adds itself: skip documents without the field
        "params": {"sortField": "@timestamp", "showArrayValues": data_type != "number"},
    }


# --------------------------------------------------------------------------------- Lens visualizations

_AXES = {"x": True, "yLeft": True, "yRight": True}


def xy_state(series_type: str, x: str, accessors: list[str], split: str | None = None, y_title: str = "") -> dict:
    layer: dict[str, Any] = {
        "layerId": LAYER,
        "layerType": "data",
        "seriesType": series_type,
        "xAccessor": x,
        "accessors": accessors,
    }
    if split:
        layer["splitAccessor"] = split
    state: dict[str, Any] = {
        "legend": {"isVisible": True, "position": "bottom"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "axisTitlesVisibilitySettings": dict(_AXES),
        "tickLabelsVisibilitySettings": dict(_AXES),
        "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0},
        "gridlinesVisibilitySettings": dict(_AXES),
        "preferredSeriesType": series_type,
        "layers": [layer],
    }
    if y_title:
        state["yTitle"] = y_title
    return state


def table_state(columns: list[str], sort_by: str) -> dict:
    return {
        "layerId": LAYER,
        "layerType": "data",
        "columns": [{"columnId": c, "isTransposed": False} for c in columns],
        "sorting": {"columnId": sort_by, "direction": "desc"},
        "rowHeight": "single",
        "rowHeightLines": 1,
    }


def lens(
    prefix: str,
    name: str,
    title: str,
    description: str,
    family: str,
    visualization_type: str,
    columns: dict[str, dict],
    visualization: dict,
    query: str = "",
) -> dict:
    """One Lens visualization with one form-based layer on the data view of `family`."""
    attributes = {
        "title": title,
        "description": description,
        "visualizationType": visualization_type,
        "state": {
            "visualization": visualization,
            "query": kql(query),
            "filters": [],
            "datasourceStates": {
                "formBased": {
                    "layers": {
                        LAYER: {
                            "columns": columns,
                            "columnOrder": list(columns),
                            "incompleteColumns": {},
                            "sampling": 1,
                        }
                    }
                },
                "indexpattern": {"layers": {}},
                "textBased": {"layers": {}},
            },
            "internalReferences": [],
            "adHocDataViews": {},
        },
    }
    references = [
        {"type": "index-pattern", "id": data_view_id(prefix, family), "name": f"indexpattern-datasource-layer-{LAYER}"}
    ]
    return saved_object("lens", lens_id(prefix, name), attributes, references)


def visualizations(prefix: str) -> list[dict]:
    rt = "response_time"
    return [
        lens(
            prefix,
            "rps",
            "Requests per second",
            "Request documents per second; failures are the documents with success: false.",
            "requests",
            "lnsXY",
            {
                "time": date_histogram(),
                "rps": count("Requests/s", per_second=True, empty_as_null=False),
                "failures": count("Failures/s", "success : false", per_second=True, empty_as_null=False),
            },
            xy_state("line", "time", ["rps", "failures"], y_title="per second"),
        ),
        lens(
            prefix,
            "response-times",
            "Response time percentiles (ms)",
            "p50, p95 and p99 of response_time over all requests in each time bucket.",
            "requests",
            "lnsXY",
            {
                "time": date_histogram(),
                "p50": metric("percentile", rt, "p50", 50),
                "p95": metric("percentile", rt, "p95", 95),
                "p99": metric("percentile", rt, "p99", 99),
            },
            xy_state("line", "time", ["p50", "p95", "p99"], y_title="ms"),
        ),
        lens(
            prefix,
            "users",
            "Users",
            "Running users from the aggregated stats snapshots of the master (or a standalone run).",
            "stats",
            "lnsXY",
            {"time": date_histogram(), "users": metric("max", "user_count", "Users")},
            xy_state("line", "time", ["users"], y_title="users"),
            query='is_aggregated : true and not source : "worker"',
        ),
        lens(
            prefix,
            "failures",
            "Failures by endpoint",
            "Failed requests per endpoint name, split by status code (0: no HTTP response).",
            "requests",
            "lnsXY",
            {
                "name": terms("name", "Endpoint", 10, "failures"),
                "status": terms("status_code", "Status code", 5, "failures", data_type="number"),
                "failures": count("Failures"),
            },
            xy_state("bar_horizontal_stacked", "name", ["failures"], split="status"),
            query="success : false",
        ),
        lens(
            prefix,
            "endpoints",
            "Endpoints",
            "Per endpoint: requests, failures and response times (ms), like Locust's statistics table.",
            "requests",
            "lnsDatatable",
            {
                "method": terms("request_type", "Type", 20, "requests"),
                "name": terms("name", "Name", 200, "requests"),
                "requests": count("Requests"),
                "failures": count("Failures", "success : false", empty_as_null=False),
                "avg": metric("average", rt, "Average"),
                "p50": metric("percentile", rt, "p50", 50),
                "p95": metric("percentile", rt, "p95", 95),
                "p99": metric("percentile", rt, "p99", 99),
                "max": metric("max", rt, "Max"),
            },
            table_state(["method", "name", "requests", "failures", "avg", "p50", "p95", "p99", "max"], "requests"),
        ),
        lens(
            prefix,
            "runs",
            "Runs",
            "One row per run (newest first): status, users, duration, totals and what the sink delivered.",
            "runs",
            "lnsDatatable",
            {
                "run": terms("run_id", "Run", 50, None),
                "status": last_value("status", "Status", "string"),
                "users": last_value("users", "Users"),
                "duration": last_value("duration_s", "Duration (s)"),
                "requests": last_value("totals.requests", "Requests"),
                "failures": last_value("totals.failures", "Failures"),
                "rps": last_value("totals.rps", "Requests/s"),
                "p95": last_value("totals.p95", "p95 (ms)"),
                "dropped": last_value("sink.dropped", "Records dropped"),
            },
            table_state(["run", "status", "users", "duration", "requests", "failures", "rps", "p95", "dropped"], "run"),
        ),
    ]


# ------------------------------------------------------------------------------------------ dashboard

# (visualization name, x, y, w, h) on Kibana's 48-column grid
LAYOUT = [
    ("rps", 0, 0, 24, 13),
    ("response-times", 24, 0, 24, 13),
    ("users", 0, 13, 24, 13),
    ("failures", 24, 13, 24, 13),
    ("endpoints", 0, 26, 48, 16),
    ("runs", 0, 42, 48, 12),
]
RUN_CONTROL = "run-id"


def dashboard(prefix: str) -> dict:
    panels = []
    references = []
    for number, (name, x, y, w, h) in enumerate(LAYOUT, 1):
        index = f"p{number}"
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": "lens",
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"type": "lens", "id": lens_id(prefix, name), "name": f"{index}:panel_{index}"})
    controls = {
        RUN_CONTROL: {
            "order": 0,
            "width": "large",
            "grow": True,
            "type": "optionsListControl",
            "explicitInput": {
                "id": RUN_CONTROL,
                "title": "Run",
                "fieldName": "run_id",
                "selectedOptions": [],
                "singleSelect": True,
                "sort": {"by": "_key", "direction": "desc"},  # run ids start with their UTC start time
                "enhancements": {},
            },
        }
    }
    references.append(
        {
            "type": "index-pattern",
            "id": data_view_id(prefix, "requests"),
            "name": f"controlGroup_{RUN_CONTROL}:optionsListDataView",
        }
    )
    suffix = "" if prefix == "locust" else f" ({prefix})"
    attributes = {
        "title": "Locust run" + suffix,
        "description": (
            "Requests, response times, failures and users of Locust runs recorded by locust-sink. "
            "Pick a run with the Run control; the time range defaults to the last hour, refreshed every 10 s."
        ),
        "version": 1,
        "timeRestore": True,
        "timeFrom": "now-1h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 10000},
        "optionsJSON": compact(
            {
                "useMargins": True,
                "syncColors": False,
                "syncCursor": True,
                "syncTooltips": False,
                "hidePanelTitles": False,
            }
        ),
        "panelsJSON": compact(panels),
        "controlGroupInput": {
            "chainingSystem": "HIERARCHICAL",
            "controlStyle": "oneLine",
            "ignoreParentSettingsJSON": compact(
                {"ignoreFilters": False, "ignoreQuery": False, "ignoreTimerange": False, "ignoreValidations": False}
            ),
            "panelsJSON": compact(controls),
        },
        "kibanaSavedObjectMeta": {"searchSourceJSON": compact({"query": kql(""), "filter": []})},
    }
    return saved_object("dashboard", dashboard_id(prefix), attributes, references)


# -------------------------------------------------------------------------------------------- output


def build(prefix: str = "locust") -> list[dict]:
    """Every saved object, referenced objects first (data views, then Lens, then the dashboard)."""
    return [data_view(prefix, f) for f in FAMILIES] + visualizations(prefix) + [dashboard(prefix)]


def to_ndjson(objects: list[dict]) -> str:
    return "".join(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n" for obj in objects)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m locust_sink.kibana.build", description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="locust", help="index prefix (--es-index-prefix), default locust")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="file to write (default: the bundled saved_objects.ndjson for prefix locust, else stdout; - = stdout)",
    )
    args = parser.parse_args(argv)
    text = to_ndjson(build(args.prefix))
    output = args.output
    if output is None and args.prefix == "locust":
        output = str(Path(__file__).with_name("saved_objects.ndjson"))
    if output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
