#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs what it needs (idempotent), lints, then runs
# the hot-path instruction-count guard, then pytest against real servers and real Locust processes that the
# tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
python3 -m ruff check locust_sink tests bench scripts
python3 -m ruff format --check locust_sink tests bench scripts
# the sink's instructions per record (valgrind --tool=callgrind: noise-free) against the committed figure
PYTHONPATH=. python3 -m bench callgrind --check --no-results
python3 -m pytest "$@"
