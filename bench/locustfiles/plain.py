"""Benchmark locustfile WITHOUT any listener: the baseline (and, with `--timescale`, locust-plugins' peer)."""

from _progress import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)
