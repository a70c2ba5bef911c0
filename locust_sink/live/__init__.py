"""Live charts while a test runs (docs/report.md, "Live"): a feed the stats recorder shows its snapshots and
statuses to (`feed.LiveFeed`), the JSON figures a page polls (`figures.py`), the page (`page.py`, Bokeh
imported at its first request only) and its routes on Locust's web UI or a small headless server (`web.py`).

Importing this package imports neither Locust, Flask nor Bokeh.
"""

from .feed import LiveFeed

__all__ = ["LiveFeed"]
