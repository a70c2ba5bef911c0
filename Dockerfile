# Locust + locust-sink, built from this repository.
#
#   docker build -t locust-sink:local .
#   docker run --rm -v "$PWD/examples:/mnt/locust:ro" locust-sink:local \
#       -f /mnt/locust/locustfile.py --headless -u 10 -r 5 -t 30s --host http://sut:8080 \
#       --es-url http://elasticsearch:9200
#
# The entrypoint is `locust`; the image also has `locust-sink` (load, replay, setup, kibana import) and
# `wait-for` (waits for Elasticsearch/Kibana, used by the compose files). See docs/docker.md.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Only what the wheel needs: changes to tests or docs do not invalidate this layer.
COPY pyproject.toml README.md ./
COPY locust_sink ./locust_sink
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}

# Locust and the Elasticsearch client are pinned: the image is a measuring instrument. Client 8.19.x talks
# to Elasticsearch 8 and 9 alike (client 9.x talks to Elasticsearch 9 only).
ARG LOCUST_VERSION=2.47.0
ARG ES_CLIENT_VERSION=8.19.3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

COPY --from=build /wheels /tmp/wheels
COPY docker/wait-for.py /usr/local/bin/wait-for

# gevent, greenlet, pyzmq, orjson and psutil all ship manylinux wheels: no compiler in the image.
RUN python -m pip install --no-cache-dir /tmp/wheels/*.whl \
        "locust==${LOCUST_VERSION}" \
        "elasticsearch==${ES_CLIENT_VERSION}" \
    && rm -rf /tmp/wheels \
    && chmod 0755 /usr/local/bin/wait-for \
    && useradd --no-log-init --create-home --uid 1000 --shell /usr/sbin/nologin locust \
    && mkdir -p /mnt/locust /mnt/results \
    && chown locust:locust /mnt/locust /mnt/results \
    && locust --version && locust-sink --version

# /mnt/results: NDJSON files (file mode), the spool and dead letters (`--sink-dir`); a volume keeps them.
VOLUME ["/mnt/results"]
USER 1000:1000
WORKDIR /mnt/locust

# 8089: web UI; 5557: master <-> worker
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
CMD ["--help"]
