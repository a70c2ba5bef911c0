"""locust-sink's benchmark suite: `python3 -m bench SUBCOMMAND` (see docs/benchmarks.md)."""
