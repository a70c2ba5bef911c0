"""Whether a Locust process gets a live feed, and where its page is served.

A feed is made on a node that takes snapshots (standalone or master) when someone could look: Locust's web
UI is on, or `--sink-live-port` was given. Otherwise there is no observer at all and the recorder builds
nothing for one. Workers never serve the page: their figures reach the master's page through their reports.
"""

from __future__ import annotations

import logging
from typing import Any

from ..nodes import node_role
from .feed import LiveFeed

log = logging.getLogger("locust_sink")


def _live_port(environment: Any) -> Any:
    parsed = getattr(environment, "parsed_options", None)
    return getattr(parsed, "sink_live_port", None) if parsed is not None else None


def wanted(environment: Any, web_ui: Any) -> LiveFeed | None:
    """A new feed for this process, or None when no page can be asked for."""
    port = _live_port(environment)
    if node_role(environment) == "worker":
        if port is not None:
            log.info("locust-sink: --sink-live-port is ignored on a worker (its figures are on the master's page)")
        return None
    if web_ui is None and port is None:
        return None
    return LiveFeed()


def serve(environment: Any, feed: LiveFeed, web_ui: Any, host: str, port: int | None) -> None:
    """The routes on Locust's web UI (and its Sink tab), and/or the headless server; stopped at `quit`."""
    from .web import LiveRoutes, LiveServer

    routes = LiveRoutes(feed)
    if web_ui is not None:
        routes.add_to(web_ui.app, getattr(web_ui, "auth_required_if_enabled", None))
        routes.add_tab(web_ui)
    if port is None:
        return
    server = LiveServer(routes, host, port)
    if server.start():

        def stop(**_kwargs: Any) -> None:
            server.stop()

        environment.events.quit.add_listener(stop)
