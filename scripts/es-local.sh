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
# Seconds until the cluster must be yellow: ~15 s on an idle machine, but 45-75 s were measured on 2 busy CPUs.
START_TIMEOUT=${LOCUST_SINK_ES_START_TIMEOUT:-120}
STOP_TIMEOUT=${LOCUST_SINK_ES_STOP_TIMEOUT:-30}     # seconds after SIGTERM before SIGKILL

die() { echo "es-local: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

java_home() {
  # ES_JAVA_HOME wants the JDK folder: /usr/lib/jvm/X/bin/java -> /usr/lib/jvm/X
  local java
  java=$(readlink -f "$(command -v java)") || die "java not found (run: $0 install as root)"
  dirname "$(dirname "$java")"
}

# ES refuses to run as root, so root runs it as a dedicated user; anyone else runs it as themselves.
if is_root; then AS_ES=(runuser -u "$ES_OS_USER" --); else AS_ES=(); fi
as_es() { "${AS_ES[@]}" "$@"; }
give_to_es() { if is_root; then chown -R "$ES_OS_USER:" "$@"; fi; }

install_debs() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v curl >/dev/null || missing+=(curl)
  command -v runuser >/dev/null || missing+=(util-linux)
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "missing ${missing[*]} (install them, or run '$0 install' as root)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_install() {
  install_debs
  if is_root && ! id "$ES_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_OS_USER"
  fi
  if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    local dl
    dl=$(mktemp -d)
    # Pin the plugin version: Debian's Maven defaults to an old dependency plugin. The zip is cached in ~/.m2.
    mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$dl" >&2
    # Unpack next to the target and rename, so an interrupted install never looks complete.
    mkdir -p "$(dirname "$ES_HOME")"
    rm -rf "$ES_HOME.tmp" && mkdir -p "$ES_HOME.tmp"
    unzip -q "$dl/elasticsearch-$ES_VERSION.zip" -d "$ES_HOME.tmp"
    mv "$ES_HOME.tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$ES_HOME.tmp" "$dl"
    chmod -R a+rX "$ES_HOME"
  fi
  # The ES user must reach the distribution; under /root that means letting it traverse (not list) the parents.
  if is_root && ! runuser -u "$ES_OS_USER" -- test -x "$ES_HOME/bin/elasticsearch"; then
    local d=$ES_HOME
    while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
  fi
  echo "$ES_HOME"
}

inst_dir() { echo "$RUN_BASE/$1"; }

pid_of() {
  # the pid in the pidfile, if that process is alive and really an Elasticsearch (pids get reused)
  local f pid
  f="$(inst_dir "$1")/pid"
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  grep -qa org.elasticsearch "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
  # the launcher's output and the node's own log: the reason a start failed is in one of them
  local dir=$1 f
  for f in "$dir/stdout.log" "$dir"/logs/*.log; do
    [ -s "$f" ] && { echo "==> $f <==" >&2; tail -n 40 "$f" >&2; }
  done
  return 0
}

cmd_url() {
  local dir
  dir=$(inst_dir "${1:?name}")
  [ -f "$dir/url" ] || die "no instance $1"
  cat "$dir/url"
}

cmd_start() {
  local name=${1:?start needs a NAME}; shift
  local port="" tport="" security=0 tls=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port=${2:?--port needs a value}; shift 2 ;;
      --transport-port) tport=${2:?--transport-port needs a value}; shift 2 ;;
      --security) security=1; shift ;;
      --tls) tls=1; security=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad instance name '$name'"
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
  # ES would fail with a BindException deep in its log; say it plainly instead.
  port_busy "$port" && die "port $port is already in use"
  port_busy "$tport" && die "transport port $tport is already in use"

  mkdir -p "$dir/data" "$dir/logs"
  # A private config dir per instance (ES_PATH_CONF), so users, certs, keystore and settings never clash.
  rm -rf "$dir/config"
  cp -r "$ES_HOME/config" "$dir/config"
  give_to_es "$dir"
  local envs=("ES_JAVA_HOME=$(java_home)" "ES_JAVA_OPTS=-Xms$HEAP -Xmx$HEAP" "ES_PATH_CONF=$dir/config")
  local opts=(-Ediscovery.type=single-node -Enetwork.host=127.0.0.1 "-Ehttp.port=$port"
    "-Etransport.port=$tport" "-Epath.data=$dir/data" "-Epath.logs=$dir/logs"
    "-Enode.name=$name"
    # a nearly full /tmp must not turn indices read-only in the middle of a test
    -Ecluster.routing.allocation.disk.threshold_enabled=false)

  if [ "$security" = 1 ]; then
    opts+=(-Expack.security.enabled=true)
    # file realm: works without a license or a running node; the config dir is fresh, so add every time
    as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-users" useradd "$ES_USER" -p "$ES_PASSWORD" -r superuser
    if [ "$tls" = 1 ]; then
      scheme=https
      # certificates are made once per instance and survive restarts (clients keep trusting ca.pem)
      if [ ! -f "$dir/certs/http/http.crt" ]; then
        rm -rf "$dir/certs" && mkdir -p "$dir/certs" && give_to_es "$dir/certs"
        as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-certutil" ca --pem --silent --out "$dir/certs/ca.zip"
        as_es unzip -q -o "$dir/certs/ca.zip" -d "$dir/certs"
        as_es env "${envs[@]}" "$ES_HOME/bin/elasticsearch-certutil" cert --pem --silent \
          --ca-cert "$dir/certs/ca/ca.crt" --ca-key "$dir/certs/ca/ca.key" \
          --ip 127.0.0.1 --dns localhost --name http --out "$dir/certs/http.zip"
        as_es unzip -q -o "$dir/certs/http.zip" -d "$dir/certs"
      fi
      # ES only reads key material from inside its config dir
      cp -r "$dir/certs" "$dir/config/certs"
      give_to_es "$dir/config/certs"
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

  local url="$scheme://127.0.0.1:$port"
  echo "$url" >"$dir/url"
  rm -f "$dir/pid"
  local t0=$SECONDS
  # -d: the launcher returns once the node has started (or failed) and ES writes its own pid file early;
  # `timeout` bounds a launcher that hangs (the node it may leave behind is killed below through that pid)
  if ! timeout -k 5 "$START_TIMEOUT" "${AS_ES[@]}" env "${envs[@]}" "$ES_HOME/bin/elasticsearch" \
      -d -p "$dir/pid" "${opts[@]}" >"$dir/stdout.log" 2>&1; then
    show_logs "$dir"
    cmd_kill "$name"
    die "$name did not start"
  fi

  local curl_opts=(-s -o /dev/null -w '%{http_code}' --max-time 5)
  [ "$security" = 1 ] && curl_opts+=(-u "$ES_USER:$ES_PASSWORD")
  [ "$tls" = 1 ] && curl_opts+=(--cacert "$dir/ca.pem")
  # GET / answers 405 on this stripped build: health with wait_for_status is the readiness probe (200 = yellow+)
  local code=""
  while :; do
    code=$(curl "${curl_opts[@]}" "$url/_cluster/health?wait_for_status=yellow&timeout=2s" || true)
    [ "$code" = 200 ] && break
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ] || ! pid_of "$name" >/dev/null; then
      show_logs "$dir"
      cmd_kill "$name"   # never leave a half-started node behind
      die "$name not healthy after $((SECONDS - t0))s (last HTTP status ${code:-none})"
    fi
    sleep 1
  done
  echo "es-local: $name healthy after $((SECONDS - t0))s" >&2
  echo "$url"
}

wait_gone() {
  # wait up to $2 seconds for pid $1 to exit
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

cmd_stop() {
  local name=${1:?stop needs a NAME} pid
  pid=$(pid_of "$name") || { echo "es-local: $name not running" >&2; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" "$STOP_TIMEOUT" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 10 || true; }
  rm -f "$(inst_dir "$name")/pid"
}

cmd_kill() {
  # SIGKILL at once: tests use it to simulate a crash
  local name=${1:?kill needs a NAME} pid
  pid=$(pid_of "$name") || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  rm -f "$(inst_dir "$name")/pid"
}

cmd_status() {
  local name=${1:?status needs a NAME}
  if pid_of "$name" >/dev/null; then echo "running $(cmd_url "$name")"; else echo "stopped"; return 3; fi
}

cmd_remove() {
  # stop and delete the instance's folder (config, data, logs)
  local name=${1:?remove needs a NAME}
  cmd_stop "$name"
  rm -rf "$(inst_dir "$name")"
}

cmd_stop_all() {
  [ -d "$RUN_BASE" ] || return 0
  local d
  for d in "$RUN_BASE"/*/; do [ -d "$d" ] && cmd_stop "$(basename "$d")"; done
  return 0
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
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
