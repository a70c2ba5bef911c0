"""Kibana saved objects for locust-sink: data views and the "Locust run" dashboard (Lens panels).

`saved_objects.ndjson` next to this file is in the format Kibana 8.x exports (it imports into Kibana 8.11+
and 9.x); `python -m locust_sink.kibana.build` generates it (also for another index prefix).
`import_saved_objects()` posts it to Kibana's saved objects import API. Standard library only: this module
must not import Locust.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_NDJSON",
    "KibanaError",
    "describe_errors",
    "import_saved_objects",
    "load_saved_objects",
    "wait_until_available",
]

DEFAULT_NDJSON = Path(__file__).with_name("saved_objects.ndjson")


class KibanaError(Exception):
    """Kibana could not be reached or refused the request; the message says why."""


def load_saved_objects(ndjson_path: str | Path | None = None) -> list[dict[str, Any]]:
    """The saved objects of an NDJSON export (one JSON object per line; an export summary line is skipped)."""
    path = Path(ndjson_path) if ndjson_path else DEFAULT_NDJSON
    objects = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
        if "exportedCount" in obj and "type" not in obj:
            continue
        objects.append(obj)
    return objects


def _headers(username: str | None, password: str | None) -> dict[str, str]:
    headers = {"kbn-xsrf": "true", "Accept": "application/json"}
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return headers


def _send(request: urllib.request.Request, timeout: float, context: ssl.SSLContext | None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KibanaError(f"cannot reach Kibana at {request.full_url}: {reason}") from None
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")[:500]
    return status, body


def _error_text(status: int, body: Any) -> str:
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or json.dumps(body)[:500]
        return f"HTTP {status}: {message}"
    return f"HTTP {status}: {body}"


def import_saved_objects(
    kibana_url: str,
    ndjson_path: str | Path | None = None,
    username: str | None = None,
    password: str | None = None,
    overwrite: bool = True,
    *,
    timeout: float = 60.0,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """POST the NDJSON to `<kibana_url>/api/saved_objects/_import` and return Kibana's answer.

    The answer has `success`, `successCount`, and `errors` (per object) when something was refused; an
    HTTP error (Kibana not ready, bad credentials, a malformed file) raises KibanaError with Kibana's message.
    `kibana_url` may include a space (`http://kibana:5601/s/perf`).
    """
    path = Path(ndjson_path) if ndjson_path else DEFAULT_NDJSON
    data = path.read_bytes()
    filename = path.name if path.name.endswith(".ndjson") else "saved_objects.ndjson"  # Kibana checks the suffix
    boundary = f"locust-sink-{secrets.token_hex(12)}"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    url = kibana_url.rstrip("/") + "/api/saved_objects/_import" + ("?overwrite=true" if overwrite else "")
    headers = _headers(username, password)
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    status, answer = _send(request, timeout, ssl_context)
    if status != 200 or not isinstance(answer, dict):
        raise KibanaError(f"importing {path.name} into {kibana_url} failed: {_error_text(status, answer)}")
    return answer


def describe_errors(result: dict[str, Any]) -> list[str]:
    """One line per object Kibana refused (`type/id: error type: message`)."""
    lines = []
    for err in result.get("errors") or []:
        detail = err.get("error") or {}
        reason = detail.get("type", "error")
        message = detail.get("message") or detail.get("reason") or ""
        missing = detail.get("references")
        if missing:
            message = f"{message} missing references {missing}".strip()
        lines.append(f"{err.get('type')}/{err.get('id')}: {reason}: {message}".rstrip(": "))
    return lines


def wait_until_available(
    kibana_url: str,
    timeout: float = 300.0,
    username: str | None = None,
    password: str | None = None,
    *,
    interval: float = 2.0,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Poll `<kibana_url>/api/status` until Kibana says it is available; KibanaError after `timeout` s."""
    url = kibana_url.rstrip("/") + "/api/status"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        request = urllib.request.Request(url, headers=_headers(username, password), method="GET")
        try:
            status, body = _send(request, min(10.0, max(timeout, 1.0)), ssl_context)
        except KibanaError as exc:
            last = str(exc)
        else:
            if status in (401, 403):
                raise KibanaError(f"Kibana at {kibana_url} refused the credentials: {_error_text(status, body)}")
            overall = body.get("status", {}).get("overall", {}) if isinstance(body, dict) else {}
            level = overall.get("level") or overall.get("state")  # 8.x/9.x `level`, 7.x `state`
            if status == 200 and level in ("available", "green"):
                return
            last = f"HTTP {status}, status {level or 'unknown'}"
        if time.monotonic() + interval > deadline:
            raise KibanaError(f"Kibana at {kibana_url} not available after {timeout:.0f} s ({last})")
        time.sleep(interval)
