"""Connection settings and what goes with them without a client: URL checks, redaction, printed commands.

No client import here: options.py (loaded by Locust's parser on every start) and the CLI's parser use it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_CLI_ES_URL = "http://127.0.0.1:9200"  # the `locust-sink` CLI's --es-url without the flag or LOCUST_ES_URL


@dataclass
class EsConfig:
    """Connection settings; secrets stay in here and are never part of `describe()` or `cli_args()`."""

    urls: list[str]
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 10.0
    backend: str = "auto"  # "elasticsearch", "opensearch", or "auto": whichever the server's `GET /` says

    def describe(self) -> str:
        """The URLs without user info, for log lines and documents."""
        return ", ".join(redact_url(u) for u in self.urls)

    def secrets(self) -> list[str]:
        """Every secret value this config holds (password, API key, passwords inside URLs)."""
        found = [s for s in (self.password, self.api_key) if s]
        for url in self.urls:
            parts = urlsplit(url)
            if parts.password:
                found.append(parts.password)
        return found

    def cli_args(self) -> list[str]:
        """The `locust-sink` CLI arguments that reach the same cluster, without secrets: the CLI reads a
        password or API key from LOCUST_ES_PASSWORD / LOCUST_ES_API_KEY (see `secret_env_hint`)."""
        args = ["--es-url", ",".join(redact_url(u) for u in self.urls)]
        username = self.username or next((urlsplit(u).username for u in self.urls if urlsplit(u).username), None)
        if username:
            args += ["--es-username", username]
        if self.ca_certs:
            args += ["--es-ca-certs", self.ca_certs]
        if not self.verify_certs:
            args += ["--es-verify-certs", "false"]
        if self.backend != "auto":
            args += ["--es-backend", self.backend]
        return args

    def secret_env_hint(self) -> str:
        """Which environment variable the CLI needs for the secret this config uses, if any."""
        if self.api_key:
            return " (with the API key in LOCUST_ES_API_KEY)"
        if self.password or any(urlsplit(u).password for u in self.urls):
            return " (with the password in LOCUST_ES_PASSWORD)"
        return ""


def cli_command(*args: str) -> str:
    """A `locust-sink` command line, quoted for a POSIX shell, that runs as printed."""
    return shlex.join(["locust-sink", *args])


def split_urls(values: str | Sequence[str] | None) -> list[str]:
    """`--es-url` takes one URL, a comma-separated list, or is repeated."""
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    urls: list[str] = []
    for value in values:
        urls.extend(u.strip() for u in str(value).split(",") if u.strip())
    return urls


def url_problem(url: str) -> str | None:
    """Why `url` is not a URL the sink can send to, or None when it is."""
    shown = redact_url(url) if "@" in url else url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"{shown!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return f"{shown!r} is not an http(s)://host:port URL"
    return None


def redact_url(url: str) -> str:
    """The URL without user info: safe for logs and documents."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:  # a malformed port: keep only what cannot be a secret
        return re.sub(r"//[^/@\s]*@", "//***@", url)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact(text: str, secrets: Sequence[str]) -> str:
    """Remove secret values (and URL user info) from a message before it is logged or stored."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)
