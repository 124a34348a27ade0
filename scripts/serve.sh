#!/usr/bin/env bash
# Serving replicas on consecutive local ports from serving.base_port in the config.
# Usage: scripts/serve.sh start N [CONFIG] | stop | status
set -euo pipefail
source "$(dirname "$0")/common.sh"

RUN_DIR="$RUN_ROOT/serving"
READY_TIMEOUT_S=60

start() {
  require_setup
  local count="${1:-2}" config="${2:-$PROJECT_DIR/conf/job.yaml}" base i port pid
  [[ "$count" =~ ^[1-9][0-9]*$ ]] || die "usage: $0 start N [CONFIG] (N replicas)"
  # Every serving setting is checked here, so that a mistyped one stops this before any replica starts.
  base=$("$VENV_PYTHON" -c 'import sys; from jobs.config import ConfigError, exit_with, load_config
from serving.settings import ServingSettings
try:
    print(ServingSettings.from_config(load_config(sys.argv[1])).base_port)
except ConfigError as e:
    exit_with(e)' "$config")
  mkdir -p "$RUN_DIR/log"
  for ((i = 0; i < count; i++)); do
    port=$((base + i))
    if pid_alive "$(cat "$RUN_DIR/replica-$port.pid" 2>/dev/null || true)"; then
      echo "serving: replica on port $port already running"
      continue
    fi
    nohup "$VENV_PYTHON" -m serving.replica --config "$config" --port "$port" >"$RUN_DIR/log/replica-$port.log" 2>&1 &
    echo $! >"$RUN_DIR/replica-$port.pid"
  done
  for ((i = 0; i < count; i++)); do
    port=$((base + i))
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until curl -sf --max-time 1 "http://127.0.0.1:$port/readyz" >/dev/null; do
      pid_alive "$(cat "$RUN_DIR/replica-$port.pid")" || die "replica on port $port exited; see $RUN_DIR/log/replica-$port.log"
      [ $SECONDS -lt $deadline ] || die "replica on port $port not ready within ${READY_TIMEOUT_S}s"
      sleep 0.3
    done
    echo "serving: replica ready at http://127.0.0.1:$port (pid $(cat "$RUN_DIR/replica-$port.pid"))"
  done
}

stop() {
  local file pids=()
  for file in "$RUN_DIR"/replica-*.pid; do
    [ -f "$file" ] || continue
    pid_alive "$(cat "$file")" && pids+=("$(cat "$file")")
    rm -f "$file"
  done
  terminate_pids 10 "${pids[@]}"
  echo "serving: stopped ${#pids[@]} replica(s)"
}

status() {
  local file port running=0
  for file in "$RUN_DIR"/replica-*.pid; do
    [ -f "$file" ] || continue
    port=${file##*/replica-}; port=${port%.pid}
    if pid_alive "$(cat "$file")"; then
      running=$((running + 1))
      echo "serving: replica on port $port: $(curl -s --max-time 1 "http://127.0.0.1:$port/readyz")"
    fi
  done
  [ $running -gt 0 ] || { echo "serving: not running"; return 3; }
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start N [CONFIG] | stop | status" >&2; exit 2 ;;
esac
