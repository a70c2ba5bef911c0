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
# the tests mostly wait (Locust runs of fixed length, servers starting): LOCUST_SINK_TEST_WORKERS processes
# (pytest-xdist) run them side by side; a module's tests stay on one worker unless it sets XDIST_SPREAD
python3 -m pytest -n "${LOCUST_SINK_TEST_WORKERS:-4}" --dist loadgroup "$@"
