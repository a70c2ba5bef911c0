"""The live page's routes: on Locust's own web UI (its Flask app, behind `auth_required_if_enabled`, with a
"Sink" tab through Locust's extended tabs), or on a small `gevent.pywsgi.WSGIServer` for headless runs
(`--sink-live-port`). Never tornado, never a Bokeh server: the routes are plain Flask views answered by
gevent in Locust's process, like Locust's own.

- `GET /locust-sink/live`: the page (`page.py`), built once at the first request in a child process;
  without Bokeh one line saying what to install (status 503), and the load test runs on.
- `GET /locust-sink/live/data[?endpoint=KEY]`: the figures the page polls (`figures.payload`), cached until
  the next snapshot or status.
- The "Sink" tab of Locust's UI: a table of each node's sink health in `/stats/requests`'s
  `extended_stats` (Locust's extension mechanism; its cells are plain text), with the page's address in
  its first row, and a link to the page on the "Download Data" tab (`extended_csv_files`, rendered as links).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Response, request

from .feed import LiveFeed
from .figures import LiveCache
from .page import LivePage

log = logging.getLogger("locust_sink")

PAGE_PATH = "/locust-sink/live"
DATA_PATH = "/locust-sink/live/data"
TAB_KEY = "locust-sink"
TAB_STRUCTURE = (
    ("node", "Node"), ("state", "State"), ("emitted", "Emitted"), ("queued", "Queued"), ("in_flight", "In flight"),
    ("indexed", "Indexed"), ("written", "Written"), ("spooled", "Spooled"), ("dead_lettered", "Dead-lettered"),
    ("dropped", "Dropped"), ("lag_s", "Lag ≈ s"), ("trouble", "Last trouble / live charts"),
)  # fmt: skip


_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding locust_sink/
_BUILD = (
    "import sys; sys.path.insert(0, {parent!r}); from locust_sink.live.page import build; "
    "sys.stdout.buffer.write(build().encode())"
)


def _in_process(build: Callable[[], str]) -> str:
    """Build the page in a child process (gevent's cooperative subprocess): its ~1.4 s of CPU runs on another
    CPU and never holds the GIL that the simulated users' greenlets need. The page does not depend on the
    run's data (it polls the JSON route), so the child builds exactly what `build()` would here. A child
    that cannot import Bokeh means Bokeh is missing (ImportError, as `build()` itself would raise)."""
    from gevent import subprocess

    code = _BUILD.format(parent=_PACKAGE_PARENT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        if "ModuleNotFoundError" in err or "ImportError" in err:
            raise ImportError(err.strip().splitlines()[-1] if err.strip() else "bokeh")
        raise RuntimeError(f"building the live page failed: {err[-500:]}")
    return proc.stdout.decode()


class LiveRoutes:
    """The page and its JSON route over one feed."""

    def __init__(self, feed: LiveFeed, builder: Callable[[Callable[[], str]], str] = _in_process) -> None:
        self.feed = feed
        self.cache = LiveCache(feed)
        self.page = LivePage()
        self._builder = builder  # how the page is built (a child process; tests: in process)

    def page_view(self) -> Response:
        html = self.page.html(self._builder)
        if html is None:
            return Response(str(self.page.missing) + "\n", status=503, mimetype="text/plain")
        return Response(html, mimetype="text/html")

    def data_view(self) -> Response:
        body = self.cache.get(request.args.get("endpoint"))
        return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})

    def add_to(self, app: Flask, guard: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None) -> None:
        wrap = guard or (lambda view: view)
        app.add_url_rule(PAGE_PATH, "locust_sink_live", wrap(self.page_view))
        app.add_url_rule(DATA_PATH, "locust_sink_live_data", wrap(self.data_view), methods=["GET", "POST"])

    # ----- the "Sink" tab of Locust's web UI ---------------------------------------------------------------
    def tab_rows(self, page_url: str) -> list[dict[str, Any]]:
        health = self.feed.health.columns()
        rows = [{"node": "live charts", "trouble": page_url}]
        for i in range(len(health["node"])):
            row = {key: health[key][i] for key, _ in TAB_STRUCTURE}
            rows.append({k: ("-" if v is None else v) for k, v in row.items()})
        return rows

    def add_tab(self, web_ui: Any) -> None:
        """Locust's extended tabs: the tab and its table in the template arguments (kept across Locust's
        `update_template_args`), the rows added to every `/stats/requests` answer."""
        args = web_ui.template_args
        args["extended_tabs"] = [*args.get("extended_tabs", []), {"title": "Sink", "key": TAB_KEY}]
        structure = [{"key": key, "title": title} for key, title in TAB_STRUCTURE]
        args["extended_tables"] = [*args.get("extended_tables", []), {"key": TAB_KEY, "structure": structure}]
        link = {"href": "." + PAGE_PATH, "title": "Live charts (locust-sink)"}
        args["extended_csv_files"] = [*args.get("extended_csv_files", []), link]
        web_ui.app.after_request(self._extend_stats)

    def _extend_stats(self, response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200 or response.mimetype != "application/json":
            return response
        try:
            data = orjson.loads(response.get_data())
            rows = self.tab_rows(request.host_url.rstrip("/") + PAGE_PATH)
            # Locust memoizes this answer (the same Response object for ~2 s): replace our entry, never add twice
            others = [
                e for e in data.get("extended_stats") or [] if not (isinstance(e, dict) and e.get("key") == TAB_KEY)
            ]
            data["extended_stats"] = [*others, {"key": TAB_KEY, "data": rows}]
            response.set_data(orjson.dumps(data))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            log.warning("locust-sink: could not add the Sink tab's rows to /stats/requests: %s", exc)
        return response


def _ours(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("key") == TAB_KEY


class LiveServer:
    """The headless page: the same routes on their own Flask app and `gevent.pywsgi.WSGIServer`."""

    def __init__(self, routes: LiveRoutes, host: str, port: int) -> None:
        from gevent.pywsgi import WSGIServer

        self.app = Flask("locust_sink_live")
        routes.add_to(self.app)
        self.server = WSGIServer((host, port), self.app, log=None, error_log=log)
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server.server_port}{PAGE_PATH}"

    def start(self) -> bool:
        """Listen now (the greenlet serves from then on); False and one error line if the port is taken."""
        try:
            self.server.start()
        except OSError as exc:
            log.error("locust-sink: live page not started: cannot listen on %s:%s: %s", self.host, self.port, exc)
            return False
        log.info("locust-sink: live charts at %s", self.url)
        return True

    def stop(self) -> None:
        self.server.stop(timeout=1)
