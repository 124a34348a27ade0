#!/usr/bin/env bash
# A local standalone Flink cluster (one JobManager, one or more TaskManagers) from the distribution
# inside the apache-flink wheel, configured from conf/flink; REST on localhost:8081.
# Usage: scripts/flink.sh start [--taskmanagers N] | stop | status
#   start: starts what is missing until the JobManager and N TaskManagers (default 1) run; each
#   TaskManager is a process of its own with its own slots and, in process mode, its own Python workers.
set -euo pipefail
source "$(dirname "$0")/common.sh"
close_inherited_fds

RUN_DIR="$RUN_ROOT/flink"
REST_URL="http://localhost:8081"
START_TIMEOUT_S=90

export FLINK_CONF_DIR="$RUN_DIR/conf"

daemon_pids() { cat "$RUN_DIR"/flink-*-standalonesession.pid "$RUN_DIR"/flink-*-taskexecutor.pid 2>/dev/null || true; }

rest_overview() { curl -sf --max-time 2 "$REST_URL/overview" 2>/dev/null; }

render_conf() {
  local flink_home="$1"
  mkdir -p "$FLINK_CONF_DIR" "$RUN_DIR/log"
  PYTHON_SITE_PACKAGES=$("$VENV_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  export PROJECT_DIR RUN_DIR PYTHON_SITE_PACKAGES
  render_template "$PROJECT_DIR/conf/flink/config.yaml" "PROJECT_DIR RUN_DIR PYTHON_SITE_PACKAGES" "$FLINK_CONF_DIR/config.yaml"
  # Logging and host lists are the distribution's own.
  cp "$flink_home"/conf/log4j*.properties "$flink_home"/conf/masters "$flink_home"/conf/workers "$FLINK_CONF_DIR/"
}

taskmanager_pids() {
  local pid
  for pid in $(cat "$RUN_DIR"/flink-*-taskexecutor.pid 2>/dev/null); do pid_alive "$pid" && echo "$pid"; done
}

registered_taskmanagers() {
  rest_overview | sed -n 's/.*"taskmanagers":\([0-9]*\).*/\1/p'
}

start() {
  local wanted=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --taskmanagers) wanted="${2:-}"; shift 2 || die "--taskmanagers needs a number" ;;
      *) die "flink.sh start: unknown option $1 (usage: flink.sh start [--taskmanagers N])" ;;
    esac
  done
  [[ "$wanted" =~ ^[1-9][0-9]*$ ]] || die "flink.sh start --taskmanagers: expected a number >= 1, got '$wanted'"
  require_setup
  local flink_home
  flink_home=$(flink_home)
  compgen -G "$flink_home/lib/flink-sql-connector-kafka-*.jar" >/dev/null ||
    die "the Kafka connector is not in $flink_home/lib; run: bash scripts/setup.sh"
  prune_dead_pids "$RUN_DIR"/flink-*.pid
  local jobmanager running
  jobmanager=$(cat "$RUN_DIR"/flink-*-standalonesession.pid 2>/dev/null || true)
  running=$(taskmanager_pids | wc -l)
  if [ -n "$jobmanager" ] && [ "$running" -ge "$wanted" ]; then
    echo "flink: already running at $REST_URL ($running TaskManagers)"
    return 0
  fi
  render_conf "$flink_home"
  # Daemons, and the Python workers they start, run in the run folder: from the project folder, a
  # worker would import the working tree's jobs/ and udfs/ instead of the code shipped with the job.
  cd "$RUN_DIR"
  if [ -z "$jobmanager" ]; then
    [ "$running" -eq 0 ] || stop
    running=0
    rest_overview >/dev/null && die "something else answers at $REST_URL; stop it first"
    "$flink_home/bin/jobmanager.sh" start >"$RUN_DIR/log/start.log" 2>&1 ||
      die "jobmanager.sh failed; see $RUN_DIR/log/start.log"
  fi
  # A JobManager that outlived TaskManagers (a crash, or a fault test) gets new ones.
  for ((; running < wanted; running++)); do
    "$flink_home/bin/taskmanager.sh" start >>"$RUN_DIR/log/start.log" 2>&1 ||
      die "taskmanager.sh failed; see $RUN_DIR/log/start.log"
  done
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until [ "$(registered_taskmanagers)" -ge "$wanted" ] 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$wanted TaskManagers not registered within ${START_TIMEOUT_S}s; see $RUN_DIR/log"
    sleep 0.5
  done
  echo "flink: started (pids $(daemon_pids | tr "\n" " " | xargs)) at $REST_URL"
}

prune_dead_pids() {
  local file pid
  for file in "$@"; do
    [ -f "$file" ] || continue
    for pid in $(cat "$file"); do pid_alive "$pid" && echo "$pid"; done >"$file.live"
    if [ -s "$file.live" ]; then mv "$file.live" "$file"; else rm -f "$file" "$file.live"; fi
  done
}

stop() {
  local pids=() pid
  prune_dead_pids "$RUN_DIR"/flink-*.pid
  # Python workers are children of the TaskManager; collect them before it goes.
  for pid in $(daemon_pids); do
    pid_alive "$pid" && pids+=("$pid" $(descendants "$pid"))
  done
  if [ -d "$FLINK_CONF_DIR" ]; then
    "$(flink_home)/bin/stop-cluster.sh" >"$RUN_DIR/log/stop.log" 2>&1 || true
  fi
  terminate_pids 30 "${pids[@]}"
  rm -f "$RUN_DIR"/flink-*.pid
  if [ ${#pids[@]} -gt 0 ]; then echo "flink: stopped (pids ${pids[*]})"; else echo "flink: not running"; fi
}

status() {
  local overview
  if overview=$(rest_overview); then
    echo "flink: running at $REST_URL $overview"
  else
    echo "flink: not running"
    return 3
  fi
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start [--taskmanagers N] | stop | status" >&2; exit 2 ;;
esac
