"""Benchmark locustfile WITH the sink: the same user as plain.py plus the one line that enables it."""

from _progress import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)

import locust_sink  # noqa: F401  (the one line that enables the sink)
