#!/usr/bin/env bash
# A real Elasticsearch on 127.0.0.1 for tests, CI, the benchmark and users without Docker.
#
#   scripts/es-local.sh install                       download (Maven) + unpack + create the ES user
#   scripts/es-local.sh start NAME --port P [--transport-port P2] [--security] [--tls]
#   scripts/es-local.sh stop NAME | kill NAME | status NAME | url NAME | remove NAME | stop-all
#
# Each NAME is an instance with its own config, data and logs under $LOCUST_SINK_ES_RUN/NAME. With
# --security, basic auth is on and a file-realm superuser $ES_USER/$ES_PASSWORD exists; with --tls the HTTP
# layer also uses a certificate from a CA made by elasticsearch-certutil ($RUN/NAME/ca.pem).
# Everything is idempotent; the ES build is Maven Central's integ-test-zip (a stripped ES, see README).
set -euo pipefail

ES_VERSION=${ES_VERSION:-8.19.21}
ES_HOME=${LOCUST_SINK_ES_HOME:-$HOME/.cache/locust-sink/elasticsearch-$ES_VERSION}
RUN_BASE=${LOCUST_SINK_ES_RUN:-/tmp/locust-sink-es}
ES_OS_USER=${LOCUST_SINK_ES_OS_USER:-locust-es}
ES_USER=${ES_USER:-elastic-test}
ES_PASSWORD=${ES_PASSWORD:-changeme-test}
HEAP=${LOCUST_SINK_ES_HEAP:-512m}
START_TIMEOUT=${LOCUST_SINK_ES_START_TIMEOUT:-120}

die() { echo "es-local: $*" >&2; exit 1; }

java_home() {
  local java
  java=$(readlink -f "$(command -v java)") || die "java not found"
  dirname "$(dirname "$java")"
}

as_es() { runuser -u "$ES_OS_USER" -- "$@"; }

install_debs() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v curl >/dev/null || missing+=(curl)
  command -v runuser >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]} (run as root to install them)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

cmd_install() {
  install_debs
  # ES refuses to run as root: a dedicated system user runs every instance.
  id "$ES_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_OS_USER"
  if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    local dl
    dl=$(mktemp -d)
    # pin the plugin version: Debian's Maven defaults to an old dependency plugin
    mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$dl" >&2
    mkdir -p "$(dirname "$ES_HOME")"
    rm -rf "$ES_HOME.tmp" && mkdir -p "$ES_HOME.tmp"
    unzip -q "$dl/elasticsearch-$ES_VERSION.zip" -d "$ES_HOME.tmp"
    mv "$ES_HOME.tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$ES_HOME.tmp" "$dl"
  fi
  # the ES user must be able to read the distribution (and reach it through $HOME)
  chmod -R a+rX "$ES_HOME"
  local d=$ES_HOME
  while [ "$d" != / ]; do chmod a+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  echo "$ES_HOME"
}

inst_dir() { echo "$RUN_BASE/$1"; }

pid_of() {
  local f
  f="$(inst_dir "$1")/pid"
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

cmd_url() {
  local dir
  dir=$(inst_dir "$1")
  [ -f "$dir/url" ] || die "no instance $1"
  cat "$dir/url"
}

cmd_start() {
  local name=${1:?name}; shift
  local port="" tport="" security=0 tls=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port=$2; shift 2 ;;
      --transport-port) tport=$2; shift 2 ;;
      --security) security=1; shift ;;
      --tls) tls=1; security=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ -n "$port" ] || die "start needs --port"
  [ -n "$tport" ] || tport=$((port + 100))
  [ -x "$ES_HOME/bin/elasticsearch" ] || cmd_install >/dev/null
  local dir scheme=http
  dir=$(inst_dir "$name")
  if pid_of "$name" >/dev/null; then
    echo "es-local: $name already running" >&2
    cmd_url "$name"
    return 0
  fi
  mkdir -p "$dir/data" "$dir/logs"
  # a private config dir per instance, so users, certs and settings never clash
  rm -rf "$dir/config"
  cp -r "$ES_HOME/config" "$dir/config"
  local opts=(-Ediscovery.type=single-node -Enetwork.host=127.0.0.1 "-Ehttp.port=$port"
    "-Etransport.port=$tport" "-Epath.data=$dir/data" "-Epath.logs=$dir/logs"
    -Ecluster.routing.allocation.disk.threshold_enabled=false)
  chown -R "$ES_OS_USER" "$dir"
  local envs=("ES_JAVA_HOME=$(java_home)" "ES_JAVA_OPTS=-Xms$HEAP -Xmx$HEAP" "ES_PATH_CONF=$dir/config")
  if [ "$security" = 1 ]; then
    opts+=(-Expack.security.enabled=true)
    as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-users" useradd "$ES_USER" -p "$ES_PASSWORD" -r superuser
    if [ "$tls" = 1 ]; then
      scheme=https
      if [ ! -f "$dir/certs/http.crt" ]; then
        mkdir -p "$dir/certs" && chown "$ES_OS_USER" "$dir/certs"
        as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-certutil" ca --pem --silent --out "$dir/certs/ca.zip"
        as_es unzip -q -o "$dir/certs/ca.zip" -d "$dir/certs"
        as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-certutil" cert --pem --silent \
          --ca-cert "$dir/certs/ca/ca.crt" --ca-key "$dir/certs/ca/ca.key" \
          --ip 127.0.0.1 --dns localhost --name http --out "$dir/certs/http.zip"
        as_es unzip -q -o "$dir/certs/http.zip" -d "$dir/certs"
        cp "$dir/certs/http/http.crt" "$dir/certs/http.crt"
      fi
      cp -r "$dir/certs" "$dir/config/certs"
      chown -R "$ES_OS_USER" "$dir/config/certs"
      cp "$dir/certs/ca/ca.crt" "$dir/ca.pem"
      chmod a+r "$dir/ca.pem"
      opts+=(-Expack.security.http.ssl.enabled=true
        -Expack.security.http.ssl.certificate=certs/http/http.crt
        -Expack.security.http.ssl.key=certs/http/http.key
        -Expack.security.http.ssl.certificate_authorities=certs/ca/ca.crt)
    else
      opts+=(-Expack.security.http.ssl.enabled=false)
    fi
  else
    opts+=(-Expack.security.enabled=false)
  fi
  rm -f "$dir/pid"
  as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$dir/pid" "${opts[@]}" >"$dir/stdout.log" 2>&1 || {
    tail -n 40 "$dir/stdout.log" "$dir"/logs/*.log 2>/dev/null >&2; die "$name did not start"; }
  local url="$scheme://127.0.0.1:$port" curl_opts=(-s -o /dev/null -w '%{http_code}' --max-time 5)
  [ "$security" = 1 ] && curl_opts+=(-u "$ES_USER:$ES_PASSWORD")
  [ "$tls" = 1 ] && curl_opts+=(--cacert "$dir/ca.pem")
  echo "$url" >"$dir/url"
  local waited=0 code
  while :; do
    code=$(curl "${curl_opts[@]}" "$url/_cluster/health?wait_for_status=yellow&timeout=2s" || true)
    [ "$code" = 200 ] && break
    if [ $waited -ge "$START_TIMEOUT" ] || ! pid_of "$name" >/dev/null; then
      tail -n 40 "$dir/stdout.log" "$dir"/logs/*.log 2>/dev/null >&2
      die "$name not healthy after ${waited}s (last HTTP status $code)"
    fi
    sleep 1; waited=$((waited + 1))
  done
  echo "$url"
}

cmd_stop() {
  local name=${1:?name} pid
  pid=$(pid_of "$name") || { echo "es-local: $name not running" >&2; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$(inst_dir "$name")/pid"; return 0; }; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$(inst_dir "$name")/pid"
}

cmd_kill() {
  local name=${1:?name} pid
  pid=$(pid_of "$name") || return 0
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$(inst_dir "$name")/pid"
}

cmd_status() {
  local name=${1:?name}
  if pid_of "$name" >/dev/null; then echo "running $(cmd_url "$name")"; else echo "stopped"; return 3; fi
}

cmd_remove() {
  # stop and delete the instance's folder (config, data, logs)
  local name=${1:?name}
  cmd_stop "$name"
  rm -rf "$(inst_dir "$name")"
}

cmd_stop_all() {
  [ -d "$RUN_BASE" ] || return 0
  for d in "$RUN_BASE"/*/; do [ -d "$d" ] && cmd_stop "$(basename "$d")"; done
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  status) shift; cmd_status "$@" ;;
  url) shift; cmd_url "$@" ;;
  remove) shift; cmd_remove "$@" ;;
  stop-all) cmd_stop_all ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
