#!/usr/bin/env bash
# `make run`: the self-contained demo. Starts the collector (embedded FalkorDB, viewer on
# http://127.0.0.1:8080) in the background, waits until it is healthy, then runs a sensor against it:
# by default replaying tests/pcaps/sample.pcap in a loop; with IFACE=eth0 capturing live on eth0.
# Ctrl-C (or SIGTERM) stops the sensor and then the collector this script started, by their PIDs.
#
# Environment: RUN_DIR (default .run; data and logs), IFACE (live interface, needs root),
# VENV (default .venv).
set -euo pipefail

cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
run_dir=${RUN_DIR:-.run}
iface=${IFACE:-}
grpc_addr=127.0.0.1:50051
http_addr=127.0.0.1:8080
url=http://$http_addr
health_wait=30 # seconds
stop_wait=20   # seconds to let a process exit after SIGTERM before SIGKILL (FalkorDB's AOF)
pcap=tests/pcaps/sample.pcap

if [[ -n $iface && $(id -u) -ne 0 ]]; then
  echo "Capturing on $iface needs root (CAP_NET_RAW, CAP_NET_ADMIN): run 'sudo make run IFACE=$iface'." >&2
  exit 1
fi
if [[ -z $iface && ! -f $pcap ]]; then
  echo "The demo capture $pcap is missing; restore it with 'git checkout -- $pcap'." >&2
  exit 1
fi
# True when something accepts TCP connections on HOST:PORT.
listening() {
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}
for addr in "$http_addr" "$grpc_addr"; do
  if listening "$addr"; then
    echo "Something already listens on $addr; stop it first (another 'make run'?)." >&2
    exit 1
  fi
done

mkdir -p "$run_dir/data"
collector_log=$run_dir/collector.log
collector_pid=
sensor_pid=

# True while $1 is a running (not yet exited) process. A child that has exited but not been
# reaped is a zombie, which `kill -0` still reports as alive; ps shows it as state Z.
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# shellcheck disable=SC2317  # reached from the EXIT trap, which shellcheck cannot see
# Stop one child: SIGTERM, a bounded wait, SIGKILL if it is still there, then reap it.
stop() {
  local pid=$1 name=$2 i
  [[ -n $pid ]] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < stop_wait * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "The $name (pid $pid) did not stop within ${stop_wait}s; killing it." >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$sensor_pid" sensor
  stop "$collector_pid" collector
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$venv/bin/net-gazer-collector" --listen "$grpc_addr" --http "$http_addr" \
  --data-dir "$run_dir/data" >"$collector_log" 2>&1 &
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
  sensor=("$venv/bin/net-gazer-sensor" -i "$iface" --collector "$grpc_addr")
else
  sensor=("$venv/bin/net-gazer-sensor" -r "$pcap" --speed 1 --loop --sensor-id demo
    --collector "$grpc_addr")
fi

echo "net-gazer is up: open $url in a browser; Ctrl-C stops everything (collector log: $collector_log)."

# The sensor runs as a child that this shell waits for, rather than as a foreground command:
# bash defers a trap until a foreground command ends, but `wait` returns at once on a signal,
# so SIGTERM (e.g. from make) stops the demo promptly too. Its output still goes to the terminal.
"${sensor[@]}" &
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
