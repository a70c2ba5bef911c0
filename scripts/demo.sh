#!/usr/bin/env bash
# A short headless demo: Locust runs examples/locustfile.py for 15 s against a local httpbin and
# locust-sink records every request -- into NDJSON files under ./locust-results (the embedded default),
# or into Elasticsearch when LOCUST_ES_URL is set. It ends by writing the run's HTML report
# (`locust-sink report`) and printing its path.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/bootstrap.sh" >/dev/null
sut_venv=${LOCUST_SINK_SUT_VENV:-$here/.venv-sut}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$sut_venv/bin/gunicorn" -b "127.0.0.1:$port" -w 2 -k gthread --threads 16 --log-level warning \
  --pythonpath "$here/scripts" sut_app:app &
sut=$!
trap 'kill $sut 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/status/200" >/dev/null && break; sleep 0.2; done
cd "$here"
run_id="$(date -u +%Y%m%dT%H%M%SZ)-demo$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
python3 -m locust -f examples/locustfile.py --headless -u 10 -r 10 -t "${DEMO_RUN_TIME:-15s}" \
  --host "http://127.0.0.1:$port" --only-summary --exit-code-on-error 0 --run-id "$run_id" \
  --sink-stats-interval 1 "$@"  # a snapshot a second: the report's charts get 1 s windows

# The run's report: one self-contained HTML file (open it in any browser, offline)
if [ -n "${LOCUST_ES_URL:-}" ]; then
  report="locust-results/report-$run_id.html"
  mkdir -p locust-results
  python3 -m locust_sink.cli report "$run_id" --es-url "$LOCUST_ES_URL" -o "$report"
else
  report="locust-results/$run_id/report.html"
  python3 -m locust_sink.cli report "locust-results/$run_id" -o "$report"
fi
echo "demo: the run's report is $here/$report"
