"""Command-line options, registered on Locust's parser (so they work as flags, LOCUST_* env vars and
locust.conf entries), and their conversion into settings. Registering is idempotent: Locust fires
`init_command_line_parser` again on every web-UI page load."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .flusher import SinkSettings
from .transport import EsConfig, redact_url, split_urls

DEFAULTS: dict[str, Any] = {
    "es_url": None,
    "es_index_prefix": "locust",
    "es_username": None,
    "es_password": None,
    "es_api_key": None,
    "es_ca_certs": None,
    "es_verify_certs": True,
    "es_request_timeout": 10.0,
    "es_setup": True,
    "es_replicas": 0,
    "es_ilm_policy": None,
    "sink_dir": "locust-results",
    "run_id": None,
    "run_tag": None,
    "run_description": None,
    "sink_batch_size": 1000,
    "sink_flush_interval": 1.0,
    "sink_queue_size": 100_000,
    "sink_flush_timeout": 30.0,
    "sink_retry_timeout": 30.0,
    "sink_sample_rate": 1.0,
    "sink_stats_interval": 3.0,
    "sink_spool_max_mb": 1024,
    "sink_overflow": "spool",
    "sink_encoder": "process",
}

SECRET_OPTIONS = ("es_password", "es_api_key")


def str2bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def positive_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value!r}")
    return number


def es_urls(value: Any) -> str:
    """`--es-url`: one or more comma-separated http(s)://host[:port] URLs; refused at start otherwise."""
    urls = split_urls(value)
    if not urls:
        raise argparse.ArgumentTypeError("expected one or more http(s)://host:port URLs, comma separated")
    for url in urls:
        problem = url_problem(url)
        if problem:
            raise argparse.ArgumentTypeError(problem)
    return ",".join(urls)


def url_problem(url: str) -> str | None:
    """Why `url` is not an Elasticsearch URL the sink can use, or None when it is."""
    shown = redact_url(url) if "@" in url else url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"{shown!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return f"{shown!r} is not an http(s)://host:port URL"
    return None


def sample_rate(value: Any) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"sample rate must be in (0, 1], got {value!r}")
    return number


def add_arguments(parser: Any) -> None:
    """Add locust-sink's options to a Locust (configargparse) parser, once."""
    if "--es-url" in getattr(parser, "_option_string_actions", {}):
        return

    def add(flag: str, **kwargs: Any) -> None:
        # Locust's parser maps env vars explicitly per option (no automatic prefix): --es-url <- LOCUST_ES_URL
        kwargs.setdefault("env_var", "LOCUST_" + flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, **kwargs)

    add(
        "--es-url",
        type=es_urls,
        default=None,
        help="Elasticsearch URL(s), comma separated. Without it, records go to NDJSON files in --sink-dir",
    )
    add("--es-index-prefix", default="locust", help="Index prefix: <prefix>-requests, -stats, -runs, -events")
    add("--es-username", default=None, help="Elasticsearch user (basic auth)")
    add(
        "--es-password",
        default=None,
        include_in_web_ui=False,
        is_secret=True,
        help="Elasticsearch password (never logged or stored; hidden from the web UI)",
    )
    add(
        "--es-api-key",
        default=None,
        include_in_web_ui=False,
        is_secret=True,
        help="Elasticsearch API key, base64 'id:key' (never logged or stored; hidden from the web UI)",
    )
    add("--es-ca-certs", default=None, help="CA bundle (PEM) to verify Elasticsearch's TLS certificate")
    add(
        "--es-verify-certs",
        type=str2bool,
        default=True,
        metavar="true|false",
        help="Verify Elasticsearch's TLS certificate (default true)",
    )
    add("--es-request-timeout", type=positive_float, default=10.0, help="Seconds per Elasticsearch request")
    add(
        "--es-setup",
        type=str2bool,
        default=True,
        metavar="true|false",
        help="Install/upgrade locust-sink's index templates at start (default true)",
    )
    add("--es-replicas", type=int, default=0, help="number_of_replicas in the templates (default 0: dev cluster)")
    add(
        "--es-ilm-policy",
        default=None,
        help="ILM policy for the indices, if the cluster has ILM (detected; ignored with a warning otherwise)",
    )
    add(
        "--sink-dir",
        default="locust-results",
        help="Folder for NDJSON files (file mode), the spool and dead letters (default locust-results)",
    )
    add("--run-id", default=None, help="Run id stored on every document (default: generated at test start)")
    add(
        "--run-tag",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="Tag stored in the run document (repeatable)",
    )
    add("--run-description", default=None, help="Free text stored in the run document")
    add("--sink-batch-size", type=positive_int, default=1000, help="Records per bulk request (default 1000)")
    add("--sink-flush-interval", type=positive_float, default=1.0, help="Seconds between flushes (default 1)")
    add(
        "--sink-queue-size",
        type=positive_int,
        default=100_000,
        help="In-memory records before the queue counts as full (default 100000)",
    )
    add(
        "--sink-flush-timeout",
        type=positive_float,
        default=30.0,
        help="Deadline in seconds for the final flush; what is left goes to the spool (default 30)",
    )
    add(
        "--sink-retry-timeout",
        type=positive_float,
        default=30.0,
        help="Seconds one batch is retried before Elasticsearch counts as down and records spool (default 30)",
    )
    add(
        "--sink-sample-rate",
        type=sample_rate,
        default=1.0,
        help="Share of successful request documents to keep, 0 < R <= 1; failures are always kept (default 1)",
    )
    add(
        "--sink-stats-interval",
        type=positive_float,
        default=3.0,
        help="Seconds between aggregated stats snapshots (default 3)",
    )
    add("--sink-spool-max-mb", type=positive_int, default=1024, help="Bound of the on-disk spool (default 1024)")
    add(
        "--sink-overflow",
        choices=("spool", "drop"),
        default="spool",
        help="When Elasticsearch cannot keep up or is down: spool to disk (default) or drop (counted)",
    )
    add(
        "--sink-encoder",
        choices=("process", "inline"),
        default="process",
        help="Where request documents are encoded: a helper process on another CPU (default), or inline in "
        "Locust's process (no extra process; costs Locust ~2 µs CPU per request)",
    )


def option_values(parsed: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Our options from parsed_options (None in library use), with defaults and explicit overrides."""
    values = dict(DEFAULTS)
    if parsed is not None:
        for key in DEFAULTS:
            if hasattr(parsed, key):
                values[key] = getattr(parsed, key)
    if overrides:
        unknown = set(overrides) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown locust-sink option(s): {', '.join(sorted(unknown))}")
        values.update(overrides)
    return values


def parse_tags(tags: list[str] | str | None) -> dict[str, str]:
    """`--run-tag KEY=VALUE` (repeatable; an env var may hold several separated by commas)."""
    if not tags:
        return {}
    if isinstance(tags, str):
        tags = [tags]
    result: dict[str, str] = {}
    for entry in tags:
        for part in str(entry).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--run-tag expects KEY=VALUE, got {part!r}")
            result[key.strip()] = value.strip()
    return result


@dataclass
class SinkOptions:
    """Everything the sink needs, resolved once per configuration."""

    es: EsConfig | None
    index_prefix: str
    sink_dir: str
    settings: SinkSettings
    setup_templates: bool
    replicas: int
    sample_rate: float
    stats_interval: float
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    ilm_policy: str | None = None

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> SinkOptions:
        urls = split_urls(v["es_url"])
        for url in urls:
            problem = url_problem(url)
            if problem:
                raise ValueError(f"--es-url: {problem}")
        es = (
            EsConfig(
                urls=urls,
                username=v["es_username"],
                password=v["es_password"],
                api_key=v["es_api_key"],
                ca_certs=v["es_ca_certs"],
                verify_certs=str2bool(v["es_verify_certs"]),
                request_timeout=float(v["es_request_timeout"]),
            )
            if urls
            else None
        )
        settings = SinkSettings(
            batch_size=int(v["sink_batch_size"]),
            flush_interval=float(v["sink_flush_interval"]),
            queue_size=int(v["sink_queue_size"]),
            flush_timeout=float(v["sink_flush_timeout"]),
            retry_timeout=float(v["sink_retry_timeout"]),
            spool_max_bytes=int(v["sink_spool_max_mb"]) * 1024 * 1024,
            overflow=str(v["sink_overflow"]),
            encoder=str(v["sink_encoder"]),
        )
        rate = sample_rate(v["sink_sample_rate"])
        return cls(
            es=es,
            index_prefix=str(v["es_index_prefix"] or "locust"),
            sink_dir=str(v["sink_dir"] or "locust-results"),
            settings=settings,
            setup_templates=str2bool(v["es_setup"]),
            replicas=int(v["es_replicas"]),
            sample_rate=rate,
            stats_interval=float(v["sink_stats_interval"]),
            run_id=v["run_id"] or None,
            tags=parse_tags(v["run_tag"]),
            description=v["run_description"],
            ilm_policy=v["es_ilm_policy"] or None,
        )
