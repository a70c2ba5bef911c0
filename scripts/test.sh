#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs what it needs (idempotent), lints, then runs
# pytest against a real Elasticsearch and real Locust processes that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
python3 -m ruff check locust_sink tests bench scripts
python3 -m ruff format --check locust_sink tests bench scripts
python3 -m pytest "$@"
