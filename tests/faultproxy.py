"""A small fault-injecting HTTP proxy between the sink and a REAL Elasticsearch.

It forwards every request to the real server and, for `_bulk` requests only: answers 429 or 503 itself for a
share of them (nothing reaches ES), delays a share of them, and rewrites a share of successful items in real
bulk responses to per-item 429s (those documents ARE in ES, so the sink's retry must end in a 409 that counts
as indexed). It records the Authorization scheme of each request (never the value) so the API-key header
path can be checked. Run: python faultproxy.py --upstream http://127.0.0.1:9200 --port 0 [--reject 0.3 ...]
It prints "LISTENING <port>" and serves until killed; GET /_faultproxy/stats returns its counters.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.auth_schemes: dict[str, int] = {}

    def bump(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n


def make_handler(args: argparse.Namespace, stats: Stats):
    upstream = urlsplit(args.upstream)
    rng = random.Random(args.seed)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:  # quiet
            pass

        def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith("/_faultproxy/stats"):
                with stats.lock:
                    data = {"counters": dict(stats.counters), "auth_schemes": dict(stats.auth_schemes)}
                self._reply(200, json.dumps(data).encode())
                return
            auth = self.headers.get("Authorization")
            scheme = auth.split(" ", 1)[0] if auth else "none"
            with stats.lock:
                stats.auth_schemes[scheme] = stats.auth_schemes.get(scheme, 0) + 1
            is_bulk = "/_bulk" in self.path
            if is_bulk:
                stats.bump("bulk_requests")
                roll = rng.random()
                if roll < args.reject:
                    status = rng.choice(args.reject_statuses)
                    stats.bump(f"rejected_{status}")
                    err = {
                        "error": {
                            "type": "es_rejected_execution_exception"
                            if status == 429
                            else "unavailable_shards_exception",
                            "reason": "injected by faultproxy",
                        },
                        "status": status,
                    }
                    self._reply(status, json.dumps(err).encode())
                    return
                if roll < args.reject + args.delay_share:
                    stats.bump("delayed")
                    time.sleep(args.delay)
            if args.require_api_key and scheme != "ApiKey":
                stats.bump("unauthorized")
                self._reply(
                    401,
                    json.dumps(
                        {"error": {"type": "security_exception", "reason": "missing api key"}, "status": 401}
                    ).encode(),
                )
                return
            if args.fake_api_key_ok and scheme == "ApiKey":
                # the stripped test ES cannot create API keys: the proxy checks the header and forwards unauthenticated
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_HEADERS and k.lower() != "authorization"
                }
            else:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Host"] = upstream.netloc
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                ctype = resp.getheader("Content-Type", "application/json")
            except OSError as exc:
                stats.bump("upstream_errors")
                self._reply(502, json.dumps({"error": {"type": "proxy", "reason": str(exc)}, "status": 502}).encode())
                return
            finally:
                conn.close()
            if is_bulk and status == 200 and args.item_429 > 0:
                data = self._rewrite_items(data)
            self._reply(status, data, ctype)

        def _rewrite_items(self, data: bytes) -> bytes:
            try:
                result = json.loads(data)
            except ValueError:
                return data
            items = result.get("items") or []
            changed = 0
            for entry in items:
                detail = next(iter(entry.values()))
                if detail.get("status", 500) < 300 and rng.random() < args.item_429:
                    detail["status"] = 429
                    detail["error"] = {"type": "es_rejected_execution_exception", "reason": "injected item 429"}
                    changed += 1
            if changed:
                result["errors"] = True
                stats.bump("items_429", changed)
                stats.bump("bulks_with_item_429")
            return json.dumps(result).encode()

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reject", type=float, default=0.0, help="share of bulk requests answered 429/503")
    parser.add_argument("--reject-statuses", type=lambda s: [int(x) for x in s.split(",")], default=[429, 503])
    parser.add_argument("--delay-share", type=float, default=0.0, help="share of bulk requests delayed")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds of delay")
    parser.add_argument("--item-429", type=float, default=0.0, help="share of indexed items reported as 429")
    parser.add_argument("--require-api-key", action="store_true")
    parser.add_argument("--fake-api-key-ok", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    stats = Stats()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args, stats))
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
