#!/usr/bin/env bash
# `make run`: the self-contained demo.
#
# Without IFACE, the lab demo: `net-gazer-lab up` builds a network of namespaces on this machine
# (client LAN, gateway, routers, servers; docs/lab.md). The collector (embedded FalkorDB, viewer on
# http://127.0.0.1:8080) runs in the host's namespace and listens on a Unix socket, which a live
# sensor on the lab's gateway (capturing lan0 and wan0) reaches without any interface to the host.
# `net-gazer-lab traffic` runs from the lab's client every few seconds. The lab goes on exit.
#
# With IFACE=eth0, the production path: a live sensor on eth0, the collector on 127.0.0.1:50051.
#
# Ctrl-C (or SIGTERM) stops everything within 5 s: every child is signalled by its PID and
# waited for with a bound, then killed; a second Ctrl-C kills at once.
#
# Environment: RUN_DIR (default .run: data and logs), IFACE (live interface), VENV (default .venv).
# Overrides, for tests: RUN_HTTP (default 127.0.0.1:8080), RUN_GRPC (default 127.0.0.1:50051,
# IFACE only), LAB_NAME (default demo + 4 hex digits), RUN_TRAFFIC_RATE (connections per second,
# default 3), RUN_TRAFFIC_SECONDS (default 20) and RUN_TRAFFIC_PAUSE (default 10).
set -euo pipefail

cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
run_dir=$(realpath -m "${RUN_DIR:-.run}")
iface=${IFACE:-}
http_addr=${RUN_HTTP:-127.0.0.1:8080}
grpc_addr=${RUN_GRPC:-127.0.0.1:50051}
lab=${LAB_NAME:-$(printf 'demo%04x' $((RANDOM)))}
traffic_rate=${RUN_TRAFFIC_RATE:-3}
traffic_seconds=${RUN_TRAFFIC_SECONDS:-20}
traffic_pause=${RUN_TRAFFIC_PAUSE:-10}
url=http://$http_addr
health_wait=30 # seconds
# Tenths of a second a child gets after SIGTERM before SIGKILL: 15 + 25 + the lab's removal
# (about 0.3 s) stay within the 5 s that Ctrl-C may take.
sensor_stop=15
collector_stop=25

if [[ $(id -u) -ne 0 ]]; then
  if [[ -n $iface ]]; then
    echo "Capturing on $iface needs root (CAP_NET_RAW, CAP_NET_ADMIN): run 'sudo make run IFACE=$iface'." >&2
  else
    echo "The demo builds a network of namespaces (net-gazer-lab) and needs root: run 'sudo make run'." >&2
  fi
  exit 1
fi
# True when something accepts TCP connections on HOST:PORT.
listening() {
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}
addrs=("$http_addr")
[[ -n $iface ]] && addrs+=("$grpc_addr")
for addr in "${addrs[@]}"; do
  if listening "$addr"; then
    echo "Something already listens on $addr; stop it first (another 'make run'?)." >&2
    exit 1
  fi
done

mkdir -p "$run_dir/data"
collector_log=$run_dir/collector.log
sensor_log=$run_dir/sensor.log
traffic_log=$run_dir/traffic.log
collector_pid=
sensor_pid=
traffic_pid=
pause_pid=
lab_up=

# True while $1 is a running (not yet exited) process. A child that has exited but not been
# reaped is a zombie, which `kill -0` still reports as alive; ps shows it as state Z.
running() {
  local state
  [[ -n $1 ]] || return 1
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# shellcheck disable=SC2317  # reached from traps, which shellcheck cannot see
# Stop one child: SIGTERM, at most $2 tenths of a second, SIGKILL if it is still there, reap it.
stop() {
  local pid=$1 tenths=$2 name=$3 i
  [[ -n $pid ]] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tenths * 2; i++)); do
      running "$pid" || break
      sleep 0.05
    done
    if running "$pid"; then
      echo "The $name (pid $pid) did not stop within $((tenths / 10)).$((tenths % 10))s; killing it." >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
# Remove the lab. Ctrl-C is ignored meanwhile, by `down` too (it inherits that): the removal is
# short and bounded, and a lab left behind by a second Ctrl-C would be worse than that wait.
lab_down() {
  if [[ -n $lab_up ]]; then
    trap '' INT TERM
    "$venv/bin/net-gazer-lab" down "$lab" || true
    lab_up=
  fi
}

# shellcheck disable=SC2317
# The second Ctrl-C: everything at once.
force_stop() {
  trap '' INT TERM
  local pid
  for pid in "$traffic_pid" "$pause_pid" "$sensor_pid" "$collector_pid"; do
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  done
  lab_down
  exit 130
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  trap force_stop INT TERM
  stop "$traffic_pid" 10 traffic
  stop "$pause_pid" 10 pause
  stop "$sensor_pid" "$sensor_stop" sensor
  stop "$collector_pid" "$collector_stop" collector
  lab_down
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

collector_args=(--http "$http_addr" --data-dir "$run_dir/data")
if [[ -z $iface ]]; then
  sock=$run_dir/collector.sock
  lab_up=1 # from here on, `down` runs on exit: it is idempotent, also after a failed `up`
  "$venv/bin/net-gazer-lab" up --name "$lab" >"$run_dir/lab.log"
  # --locations places the lab's routers and servers on the map, where the collector knows it.
  collector_help=$("$venv/bin/net-gazer-collector" --help)
  if [[ $collector_help == *--locations* ]]; then
    locations=$("$venv/bin/net-gazer-lab" status "$lab" --json |
      "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["locations"])')
    collector_args+=(--locations "$locations")
  fi
  collector_args+=(--listen "unix:$sock")
else
  collector_args+=(--listen "$grpc_addr")
fi

"$venv/bin/net-gazer-collector" "${collector_args[@]}" >"$collector_log" 2>&1 &
collector_pid=$!

for ((i = 0; ; i++)); do
  if curl -fsS -o /dev/null --max-time 1 "$url/healthz" 2>/dev/null; then
    break
  fi
  if ! running "$collector_pid"; then
    echo "The collector exited during start-up; the end of $collector_log:" >&2
    tail -n 30 "$collector_log" >&2 || true
    exit 1
  fi
  if ((i >= health_wait * 2)); then
    echo "The collector did not answer $url/healthz within ${health_wait}s; the end of $collector_log:" >&2
    tail -n 30 "$collector_log" >&2 || true
    exit 1
  fi
  sleep 0.5
done

if [[ -n $iface ]]; then
  echo "net-gazer is up: open $url in a browser; Ctrl-C stops everything (collector log: $collector_log)."
  # The sensor runs as a child that this shell waits for, rather than as a foreground command:
  # bash defers a trap until a foreground command ends, but `wait` returns at once on a signal,
  # so SIGTERM (e.g. from make) stops the demo promptly too. Its output goes to the terminal.
  "$venv/bin/net-gazer-sensor" -i "$iface" --collector "$grpc_addr" &
  sensor_pid=$!
  set +e
  wait "$sensor_pid"
  rc=$?
  set -e
  sensor_pid=
  if ((rc != 0)); then
    echo "The sensor exited with status $rc." >&2
  fi
  exit "$rc"
fi

# The socket is the collector's user and group only (0660): a sensor that drops to the
# net-gazer user needs that group.
if getent group net-gazer >/dev/null; then
  chgrp net-gazer "$sock"
fi
"$venv/bin/net-gazer-lab" sensor --lab "$lab" -- --collector "unix:$sock" --sensor-id lab-gw \
  --no-spool >"$sensor_log" 2>&1 &
sensor_pid=$!
for ((i = 0; ; i++)); do
  if grep -q "connected to collector" "$sensor_log"; then
    break
  fi
  if ! running "$sensor_pid" || ((i >= health_wait * 10)); then
    echo "The lab's sensor did not connect to the collector; the end of $sensor_log:" >&2
    tail -n 30 "$sensor_log" >&2 || true
    exit 1
  fi
  sleep 0.1
done

echo "net-gazer is up: open $url in a browser. Lab $lab: a sensor on its gateway, traffic every" \
  "$((traffic_seconds + traffic_pause))s ('net-gazer-lab status'). Ctrl-C stops everything (logs in $run_dir)."

for ((round = 1; ; round++)); do
  "$venv/bin/net-gazer-lab" traffic --lab "$lab" --rate "$traffic_rate" \
    --duration "$traffic_seconds" --seed "$round" >>"$traffic_log" 2>&1 &
  traffic_pid=$!
  wait "$traffic_pid" || true # a failed connection is in the log; a signal runs the trap
  traffic_pid=
  if ! running "$sensor_pid" || ! running "$collector_pid"; then
    echo "The lab's sensor or the collector exited; see $sensor_log and $collector_log." >&2
    exit 1
  fi
  sleep "$traffic_pause" &
  pause_pid=$!
  wait "$pause_pid" || true
  pause_pid=
done
