#!/usr/bin/env bash
# The peers of `python3 -m bench peers` and `python3 -m bench callgrind`: their virtualenvs and their servers.
#
#   bench/peers.sh install                     Debian packages (postgresql, influxdb, valgrind) + one virtualenv
#                                              per peer, each with the main environment's Locust version
#   bench/peers.sh venv NAME                   prints the virtualenv folder of peer NAME (timescale | influx)
#   bench/peers.sh pg-start NAME PORT          a PostgreSQL cluster on 127.0.0.1:PORT, database `locust` with
#                                              locust-plugins' Timescale schema minus its timescaledb lines
#   bench/peers.sh influx-start NAME PORT      an InfluxDB 1.x on 127.0.0.1:PORT (its RPC port PORT+1)
#   bench/peers.sh pg-stop NAME | influx-stop NAME | remove NAME
#
# Each peer lives in a virtualenv of its own because Locust imports `locust_plugins` whenever it is
# installed: the main environment must never have it. Everything is idempotent; servers run as their
# Debian system users (postgres, influxdb), never as root, with data under $LOCUST_SINK_BENCH_RUN/NAME.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH_HOME=${LOCUST_SINK_BENCH_HOME:-$HOME/.cache/locust-sink/bench}
RUN_BASE=${LOCUST_SINK_BENCH_RUN:-/tmp/locust-sink-bench}
PG_BIN=${LOCUST_SINK_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
TIMESCALE_PKG="locust-plugins[dashboards]==5.0.3"
INFLUX_PKG="locust-influxdb-listener==1.0.2"

die() { echo "bench/peers.sh: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
as_user() { local user=$1; shift; if is_root; then runuser -u "$user" -- "$@"; else "$@"; fi; }

venv_dir() { echo "$BENCH_HOME/venv-$1"; }

locust_version() { "$PYTHON" -c "import locust; print(locust.__version__)"; }

install_debs() {
  local need=()
  [ -x "${PG_BIN:-/nonexistent}/initdb" ] || need+=(postgresql)
  command -v influxd >/dev/null 2>&1 || need+=(influxdb)
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
  [ ${#need[@]} -eq 0 ] && return 0
  is_root || die "please install the Debian packages: ${need[*]}"
  echo "bench/peers.sh: installing Debian packages: ${need[*]}" >&2
  # Debian's packages start their services on install unless policy-rc.d says no: the bench starts its own,
  # bound to 127.0.0.1, and wants no default instance listening on every interface.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
}

install_venv() {
  local name=$1 pkg=$2 dir version stamp
  dir=$(venv_dir "$name")
  version=$(locust_version)
  stamp="$version $pkg constrained"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.installed" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "bench/peers.sh: virtualenv $dir (locust==$version $pkg)" >&2
  "$PYTHON" -m venv --clear "$dir"
  # the main environment's versions of everything both have (gevent, geventhttpclient, ...), so that the
  # peers' Locust processes differ from the baseline's by the listener only
  "$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v -e ' @ ' -e '^-e ' >"$dir/constraints.txt"
  "$dir/bin/pip" install -q --disable-pip-version-check -c "$dir/constraints.txt" "locust==$version" "$pkg"
  echo "$stamp" >"$dir/.installed"
}

pg_dir() { echo "$RUN_BASE/$1/pg"; }

pg_start() {
  local name=$1 port=$2 dir schema venv
  dir=$(pg_dir "$name")
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL not installed (run: bash $0 install)"
  mkdir -p "$RUN_BASE/$name"
  chmod 755 "$RUN_BASE" "$RUN_BASE/$name"
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    is_root && chown postgres: "$dir"
    as_user postgres "$PG_BIN/initdb" -D "$dir" -U locust --auth=trust -E UTF8 >"$RUN_BASE/$name/initdb.log"
  fi
  if ! as_user postgres "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    as_user postgres "$PG_BIN/pg_ctl" -D "$dir" -w -t 60 -l "$dir/server.log" \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off" start >/dev/null
  fi
  local psql=(psql -h 127.0.0.1 -p "$port" -U locust)
  if ! as_user postgres "${psql[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'locust'" | grep -q 1; then
    as_user postgres "${psql[@]}" -d postgres -qc "CREATE DATABASE locust" >/dev/null
  fi
  if ! as_user postgres "${psql[@]}" -d locust -Atc "SELECT to_regclass('public.request')" | grep -q request; then
    # the schema's objects are owned by `postgres`, as in the pg_dump it comes from
    as_user postgres "${psql[@]}" -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = 'postgres'" | grep -q 1 \
      || as_user postgres "${psql[@]}" -d postgres -qc "CREATE ROLE postgres" >/dev/null
    venv=$(venv_dir timescale)
    schema=$("$venv/bin/python" -c "import locust_plugins, os; print(os.path.join(os.path.dirname(locust_plugins.__file__), 'dashboards/locust-timescale/timescale_schema.sql'))")
    # the schema as locust-plugins ships it, without the timescaledb extension (Debian has none)
    grep -v -i timescaledb "$schema" | as_user postgres "${psql[@]}" -d locust -q -v ON_ERROR_STOP=1 >/dev/null
  fi
  echo "postgresql://locust@127.0.0.1:$port/locust"
}

pg_stop() {
  local dir
  dir=$(pg_dir "$1")
  [ -f "$dir/PG_VERSION" ] || return 0
  as_user postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

influx_start() {
  local name=$1 port=$2 dir
  dir="$RUN_BASE/$name/influx"
  command -v influxd >/dev/null 2>&1 || die "InfluxDB not installed (run: bash $0 install)"
  mkdir -p "$dir"
  chmod 755 "$RUN_BASE" "$RUN_BASE/$name"
  cat >"$dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$((port + 1))"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[monitor]
  store-enabled = false
EOF
  local user=root
  if is_root && id influxdb >/dev/null 2>&1; then user=influxdb; chown -R influxdb: "$dir"; fi
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$port"
    return 0
  fi
  if [ "$user" = root ]; then
    setsid influxd -config "$dir/influxdb.conf" >"$dir/server.log" 2>&1 </dev/null &
  else
    setsid runuser -u "$user" -- influxd -config "$dir/influxdb.conf" >"$dir/server.log" 2>&1 </dev/null &
  fi
  echo $! >"$dir/pid"
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.5
  done
  die "InfluxDB did not answer on 127.0.0.1:$port within 60 s: $(tail -5 "$dir/server.log")"
}

influx_stop() {
  local dir pid
  dir="$RUN_BASE/$1/influx"
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  # the pid is setsid's child: runuser (or influxd itself); end its whole session
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

cmd=${1:-}
shift || true
case "$cmd" in
  install)
    install_debs
    install_venv timescale "$TIMESCALE_PKG"
    install_venv influx "$INFLUX_PKG"
    ;;
  venv) venv_dir "${1:?peer name}" ;;
  pg-start) pg_start "${1:?instance name}" "${2:?port}" ;;
  pg-stop) pg_stop "${1:?instance name}" ;;
  influx-start) influx_start "${1:?instance name}" "${2:?port}" ;;
  influx-stop) influx_stop "${1:?instance name}" ;;
  remove)
    pg_stop "${1:?instance name}"
    influx_stop "$1"
    rm -rf "${RUN_BASE:?}/$1"
    ;;
  *) die "usage: $0 install | venv NAME | pg-start NAME PORT | pg-stop NAME | influx-start NAME PORT | influx-stop NAME | remove NAME" ;;
esac
