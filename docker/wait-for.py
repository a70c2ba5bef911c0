#!/usr/bin/env python3
"""wait-for: wait until Elasticsearch and/or Kibana answer, then run a command (installed in the image).

    wait-for [--es URL]... [--es-env VAR] [--kibana URL]... [--tcp HOST:PORT]... [--timeout S] [--linger]
             -- COMMAND [ARG]...

--es URL       an Elasticsearch URL (comma separated list allowed; repeatable); ready = `_cluster/health`
               answers with status yellow or green. Basic auth from LOCUST_ES_USERNAME/LOCUST_ES_PASSWORD,
               or LOCUST_ES_API_KEY; LOCUST_ES_CA_CERTS / LOCUST_ES_VERIFY_CERTS=false for TLS.
--es-env VAR   also wait for the URLs in environment variable VAR (e.g. LOCUST_ES_URL); empty or unset: none
--kibana URL   a Kibana URL; ready = `/api/status` reports `available` (KIBANA_USERNAME/KIBANA_PASSWORD)
--tcp H:P      a TCP port that accepts connections (a Locust worker waits for its master's port 5557)
--timeout S    give up after S seconds (default 300) with exit code 1 and a clear message
--linger       run COMMAND as a child; when it exits with 0, stay up (idle) until stopped. `docker-compose up
               --exit-code-from master` stops the whole stack as soon as ANY container exits: one-shot
               containers (setup) and workers that finish before the master would cut the master's final
               flush short. A non-zero exit is passed on at once.

Only the standard library: this runs before anything else in the container.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def log(message: str) -> None:
    print(f"wait-for: {message}", file=sys.stderr, flush=True)


def split_urls(values: list[str]) -> list[str]:
    return [u.strip().rstrip("/") for v in values for u in v.split(",") if u.strip()]


def es_headers() -> dict[str, str]:
    api_key = os.environ.get("LOCUST_ES_API_KEY")
    if api_key:
        return {"Authorization": f"ApiKey {api_key}"}
    user = os.environ.get("LOCUST_ES_USERNAME")
    if user:
        token = base64.b64encode(f"{user}:{os.environ.get('LOCUST_ES_PASSWORD', '')}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def kibana_headers() -> dict[str, str]:
    user = os.environ.get("KIBANA_USERNAME")
    if user:
        token = base64.b64encode(f"{user}:{os.environ.get('KIBANA_PASSWORD', '')}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def ssl_context() -> ssl.SSLContext:
    if os.environ.get("LOCUST_ES_VERIFY_CERTS", "true").strip().lower() in ("0", "false", "no", "off"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=os.environ.get("LOCUST_ES_CA_CERTS") or None)


def get_json(url: str, headers: dict[str, str]) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5, context=ssl_context()) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def es_ready(url: str) -> str | None:
    """None when ready, else why not (for the log)."""
    status, body = get_json(f"{url}/_cluster/health?wait_for_status=yellow&timeout=2s", es_headers())
    if status in (401, 403):
        raise SystemExit(f"wait-for: {url} answered HTTP {status}: check the credentials (LOCUST_ES_*)")
    if status == 200 and isinstance(body, dict) and body.get("status") in ("yellow", "green"):
        return None
    return f"HTTP {status} {body.get('status') if isinstance(body, dict) else ''}".strip()


def kibana_ready(url: str) -> str | None:
    status, body = get_json(f"{url}/api/status", kibana_headers())
    if status in (401, 403):
        raise SystemExit(f"wait-for: {url} answered HTTP {status}: check KIBANA_USERNAME/KIBANA_PASSWORD")
    overall = body.get("status", {}).get("overall", {}) if isinstance(body, dict) else {}
    level = overall.get("level") or overall.get("state")  # 8.x/9.x: level; 7.x: state
    if status == 200 and level in ("available", "green"):
        return None
    return f"HTTP {status} {level or ''}".strip()


def tcp_ready(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=3):
        return None


def wait(what: str, url: str, ready: Callable[[str], str | None], deadline: float) -> None:
    last = ""
    announced = 0.0
    while True:
        try:
            why = ready(url)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # connection refused, DNS name not there yet, timeouts, a half-started server's bad JSON
            why = str(getattr(exc, "reason", None) or exc)
        if why is None:
            log(f"{what} {url} is ready")
            return
        now = time.monotonic()
        if now > deadline:
            raise SystemExit(f"wait-for: {what} {url} not ready in time (last answer: {why})")
        if why != last or now - announced > 15:
            log(f"waiting for {what} {url}: {why}")
            last, announced = why, now
        time.sleep(1.0)


def run(command: list[str], linger: bool) -> int:
    if not linger:
        os.execvp(command[0], command)  # no return
    child = subprocess.Popen(command)
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child.poll() is None:
            child.send_signal(signum)
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    if code != 0 or stopping:
        return code
    log(f"{command[0]} finished (exit code 0); lingering until the stack stops")
    while True:
        signal.pause()


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(wait-for's own arguments, the command after `--`)."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wait-for", description=__doc__.splitlines()[0])
    parser.add_argument("--es", action="append", default=[], metavar="URL")
    parser.add_argument("--es-env", metavar="VAR")
    parser.add_argument("--kibana", action="append", default=[], metavar="URL")
    parser.add_argument("--tcp", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("WAIT_FOR_TIMEOUT", "300")))
    parser.add_argument("--linger", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    own, command = split_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    es_urls = split_urls(args.es)
    if args.es_env:
        es_urls += split_urls([os.environ.get(args.es_env, "")])
    deadline = time.monotonic() + args.timeout
    for url in es_urls:
        wait("Elasticsearch", url, es_ready, deadline)
    for url in split_urls(args.kibana):
        wait("Kibana", url, kibana_ready, deadline)
    for address in args.tcp:
        wait("port", address, tcp_ready, deadline)
    if not command:
        return 0
    return run(command, args.linger)


if __name__ == "__main__":
    sys.exit(main())
