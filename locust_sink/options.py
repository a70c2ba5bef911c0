"""Command-line options: one table (`OPTIONS`) that is the only place their defaults are written.

From it come the options on Locust's parser (flags, `LOCUST_*` environment variables, locust.conf entries),
the defaults of library use (`attach(env, **options)`), the `SinkSettings` of the delivery engine and the
table in docs/DESIGN.md (`python -m locust_sink.options` prints it; a test keeps the two equal).
Registering is idempotent: Locust fires `init_command_line_parser` again on every web-UI page load.
No delivery code and no client is imported here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import EsConfig, split_urls, url_problem


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


def non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value!r}")
    return number


def positive_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value!r}")
    return number


def port_number(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value!r}")
    return number


def sample_rate(value: Any) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"sample rate must be in (0, 1], got {value!r}")
    return number


def es_urls(value: Any) -> str:
    """`--es-url`: one or more comma-separated http(s)://host[:port] URLs; refused at start otherwise. Empty
    (e.g. `LOCUST_ES_URL=` in a worker's environment) means none: file mode."""
    urls = split_urls(value)
    if not urls:
        return ""
    for url in urls:
        problem = url_problem(url)
        if problem:
            raise argparse.ArgumentTypeError(problem)
    return ",".join(urls)


@dataclass(frozen=True)
class Option:
    """One option: its flag, default and parsing, and the two texts that describe it."""

    flag: str
    default: Any
    help: str  # for `locust --help`
    design: str = ""  # the DESIGN.md table's description, when it differs from `help`
    type: Callable[[Any], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    secret: bool = False  # never logged, stored or shown in the web UI
    repeatable: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env_var(self) -> str:
        # Locust's parser maps environment variables per option (no automatic prefix): --es-url <- LOCUST_ES_URL
        return "LOCUST_" + self.dest.upper()

    def default_text(self) -> str:
        if self.default is None or self.repeatable:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return str(self.default)


_BOOL = {"type": str2bool, "metavar": "true|false"}

OPTIONS: tuple[Option, ...] = (
    Option("--es-url", None, "Elasticsearch URL(s), comma separated. Without it, records go to NDJSON files in "
           "--sink-dir", "Elasticsearch URL(s), comma separated; none: file mode", type=es_urls),
    Option("--es-backend", "auto", "Client for the cluster: auto (from the server's GET / answer), elasticsearch, or "
           "opensearch (needs pip install 'locust-sink[opensearch]')", choices=("auto", "elasticsearch", "opensearch")),
    Option("--es-index-prefix", "locust", "Index prefix: <prefix>-requests, -stats, -runs, -events"),
    Option("--es-username", None, "Elasticsearch user (basic auth)"),
    Option("--es-password", None, "Elasticsearch password (never logged or stored; hidden from the web UI)",
           "password (secret: never logged, stored or shown)", secret=True),
    Option("--es-api-key", None, "Elasticsearch API key, base64 'id:key' (never logged or stored; hidden from the "
           "web UI)", "API key, base64 `id:key` (secret)", secret=True),
    Option("--es-ca-certs", None, "CA bundle (PEM) to verify Elasticsearch's TLS certificate"),
    Option("--es-verify-certs", True, "Verify Elasticsearch's TLS certificate", **_BOOL),
    Option("--es-request-timeout", 10.0, "Seconds per Elasticsearch request", type=positive_float),
    Option("--es-setup", True, "Install/upgrade locust-sink's index templates at start", **_BOOL),
    Option("--es-replicas", 0, "number_of_replicas in the templates (0: a single-node cluster stays green)",
           type=non_negative_int),
    Option("--es-ilm-policy", None, "ILM policy for the indices, if the cluster has ILM (detected; ignored with a "
           "warning otherwise)", "ILM policy (used only if `_ilm/status` answers)"),
    Option("--sink-dir", "locust-results", "Folder for NDJSON files (file mode), the spool and dead letters"),
    Option("--run-id", None, "Run id stored on every document (default: generated at test start)",
           "run id (default: UTC time + random, generated at test start)"),
    Option("--run-tag", None, "Tag stored in the run document (repeatable)", metavar="KEY=VALUE", repeatable=True),
    Option("--run-description", None, "Free text stored in the run document"),
    Option("--sink-batch-size", 1000, "Records per bulk request", type=positive_int),
    Option("--sink-flush-interval", 1.0, "Seconds between flushes", type=positive_float),
    Option("--sink-queue-size", 100_000, "In-memory records before the queue counts as full", type=positive_int),
    Option("--sink-flush-timeout", 30.0, "Deadline in seconds for the final flush; what is left goes to the spool",
           type=positive_float),
    Option("--sink-retry-timeout", 30.0, "Seconds one batch is retried before Elasticsearch counts as down and "
           "records spool", type=positive_float),
    Option("--sink-sample-rate", 1.0, "Share of successful request documents to keep, 0 < R <= 1; failures are "
           "always kept", type=sample_rate),
    Option("--sink-stats-interval", 3.0, "Seconds between aggregated stats snapshots", type=positive_float),
    Option("--sink-spool-max-mb", 1024, "Bound of the on-disk spool in MiB", type=positive_int),
    Option("--sink-overflow", "spool", "When Elasticsearch cannot keep up or is down: spool to disk, or drop "
           "(counted)", choices=("spool", "drop")),
    Option("--sink-encoder", "process", "Where request documents are encoded: a helper process on another CPU, "
           "or inline in Locust's process (no extra process; costs Locust ~2 µs CPU per request)",
           choices=("process", "inline")),
    Option("--sink-live-port", None, "Serve the live charts page on this port in headless runs (0: any free port, "
           "printed at start; with the web UI the page is also at /locust-sink/live)",
           "headless live page port (off by default; the web UI has the page at `/locust-sink/live`)",
           type=port_number),
    Option("--sink-live-host", "127.0.0.1", "Interface the headless live page listens on"),
)  # fmt: skip

DEFAULTS: dict[str, Any] = {o.dest: o.default for o in OPTIONS}
SECRET_OPTIONS: tuple[str, ...] = tuple(o.dest for o in OPTIONS if o.secret)


def add_arguments(parser: Any) -> None:
    """Add locust-sink's options to a Locust (configargparse) parser, once."""
    if OPTIONS[0].flag in getattr(parser, "_option_string_actions", {}):
        return
    for opt in OPTIONS:
        default = opt.default_text()
        kwargs: dict[str, Any] = {
            "default": opt.default,
            "env_var": opt.env_var,
            "help": opt.help + (f" (default {default})" if default else ""),
        }
        if opt.repeatable:
            kwargs["action"] = "append"
        for key in ("type", "choices", "metavar"):
            if getattr(opt, key) is not None:
                kwargs[key] = getattr(opt, key)
        if opt.secret:
            kwargs.update(include_in_web_ui=False, is_secret=True)
        parser.add_argument(opt.flag, **kwargs)


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
class SinkSettings:
    """The delivery engine's knobs: the `--sink-*` options plus fixed internal limits."""

    batch_size: int = DEFAULTS["sink_batch_size"]
    flush_interval: float = DEFAULTS["sink_flush_interval"]
    queue_size: int = DEFAULTS["sink_queue_size"]
    flush_timeout: float = DEFAULTS["sink_flush_timeout"]
    retry_timeout: float = DEFAULTS["sink_retry_timeout"]  # how long one batch is retried before ES counts as down
    spool_max_bytes: int = DEFAULTS["sink_spool_max_mb"] * 1024 * 1024
    overflow: str = DEFAULTS["sink_overflow"]  # "spool" or "drop" (counted) when ES cannot take records
    encoder: str = DEFAULTS["sink_encoder"]  # "process" or "inline": see delivery/encoding.py
    max_attempts: int = 30  # the time budget (retry_timeout) is what normally ends retrying
    backoff_base: float = 0.25  # retry n waits uniform(0, min(backoff_cap, backoff_base * 2**n)) seconds
    backoff_cap: float = 8.0
    high_water: float = 0.5  # queue fill ratio past which retrying stops and batches go to the spool
    probe_interval_min: float = 1.0  # the first probe after an outage; doubled up to probe_interval_max
    probe_interval_max: float = 10.0
    docs_queue_size: int = 20_000


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
    live_port: int | None = None  # the headless live page (None: off)
    live_host: str = DEFAULTS["sink_live_host"]

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
                backend=_choice("es_backend", v),
            )
            if urls
            else None
        )
        settings = SinkSettings(
            batch_size=positive_int(v["sink_batch_size"]),
            flush_interval=positive_float(v["sink_flush_interval"]),
            queue_size=positive_int(v["sink_queue_size"]),
            flush_timeout=positive_float(v["sink_flush_timeout"]),
            retry_timeout=positive_float(v["sink_retry_timeout"]),
            spool_max_bytes=positive_int(v["sink_spool_max_mb"]) * 1024 * 1024,
            overflow=_choice("sink_overflow", v),
            encoder=_choice("sink_encoder", v),
        )
        return cls(
            es=es,
            index_prefix=str(v["es_index_prefix"] or DEFAULTS["es_index_prefix"]),
            sink_dir=str(v["sink_dir"] or DEFAULTS["sink_dir"]),
            settings=settings,
            setup_templates=str2bool(v["es_setup"]),
            replicas=non_negative_int(v["es_replicas"]),
            sample_rate=sample_rate(v["sink_sample_rate"]),
            stats_interval=positive_float(v["sink_stats_interval"]),
            run_id=v["run_id"] or None,
            tags=parse_tags(v["run_tag"]),
            description=v["run_description"],
            ilm_policy=v["es_ilm_policy"] or None,
            live_port=None if v["sink_live_port"] in (None, "") else port_number(v["sink_live_port"]),
            live_host=str(v["sink_live_host"] or DEFAULTS["sink_live_host"]),
        )


def _choice(dest: str, values: dict[str, Any]) -> str:
    allowed = next(o.choices for o in OPTIONS if o.dest == dest)
    value = str(values[dest])
    if allowed and value not in allowed:
        raise ValueError(f"--{dest.replace('_', '-')} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def design_table() -> str:
    """The options table of docs/DESIGN.md, generated from OPTIONS."""
    rows = ["| flag | dest | default | meaning |", "| --- | --- | --- | --- |"]
    for opt in OPTIONS:
        flag = f"`{opt.flag}`" + (" (repeatable)" if opt.repeatable else "")
        default = f"`{opt.default_text()}`" if opt.default_text() else "none"
        rows.append(f"| {flag} | {opt.dest} | {default} | {opt.design or opt.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(design_table())
