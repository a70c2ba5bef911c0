"""locust-sink: record every Locust request, aggregated stats and run metadata in Elasticsearch.

In a locustfile, `import locust_sink` is all it takes. Importing the package without Locust loaded (the
`locust-sink` CLI) does not import Locust, which would monkey-patch the standard library.
"""

from __future__ import annotations

import sys
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "attach"]


def attach(environment: Any, **options: Any) -> Any:
    """Enable the sink on a hand-built `locust.env.Environment`; returns the `LocustSink`."""
    from .plugin import attach as _attach

    return _attach(environment, **options)


if "locust" in sys.modules:
    from .plugin import register as _register

    _register()
