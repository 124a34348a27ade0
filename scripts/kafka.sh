#!/usr/bin/env bash
# A single-node KRaft Kafka broker on 127.0.0.1:9092, data and logs under run/kafka.
# Usage: scripts/kafka.sh start|stop|status
set -euo pipefail
source "$(dirname "$0")/common.sh"
close_inherited_fds

RUN_DIR="$RUN_ROOT/kafka"
PID_FILE="$RUN_DIR/kafka.pid"
CLASSPATH_GLOB="$PROJECT_DIR/lib/kafka/*"
BROKER_PORT=9092
START_TIMEOUT_S=60

broker_pid() { cat "$PID_FILE" 2>/dev/null || true; }

broker_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; }

JAVA_CMD=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
  -Dkafka.logs.dir="$RUN_DIR/log" -Dlog4j2.configurationFile="$PROJECT_DIR/conf/kafka/log4j2.properties"
  -cp "$CLASSPATH_GLOB")

start() {
  require_setup
  compgen -G "$PROJECT_DIR/lib/kafka/kafka_2.13-*.jar" >/dev/null ||
    die "Kafka broker jars missing in lib/kafka; run: bash scripts/setup.sh"
  if pid_alive "$(broker_pid)"; then
    echo "kafka: already running (pid $(broker_pid))"
  else
    broker_answers && die "something else listens on 127.0.0.1:$BROKER_PORT; stop it first"
    mkdir -p "$RUN_DIR/log"
    export RUN_DIR
    render_template "$PROJECT_DIR/conf/kafka/server.properties" "RUN_DIR" "$RUN_DIR/server.properties"
    if [ ! -f "$RUN_DIR/data/meta.properties" ]; then
      cluster_id=$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid)
      "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$RUN_DIR/server.properties" >"$RUN_DIR/log/format.log" 2>&1 ||
        die "formatting Kafka storage failed; see $RUN_DIR/log/format.log"
    fi
    nohup "${JAVA_CMD[@]}" kafka.Kafka "$RUN_DIR/server.properties" >"$RUN_DIR/log/stdout.log" 2>&1 &
    echo $! >"$PID_FILE"
    deadline=$((SECONDS + START_TIMEOUT_S))
    until broker_answers; do
      pid_alive "$(broker_pid)" || die "broker exited during start-up; see $RUN_DIR/log/server.log"
      [ $SECONDS -lt $deadline ] || die "broker did not answer on 127.0.0.1:$BROKER_PORT within ${START_TIMEOUT_S}s"
      sleep 0.5
    done
    echo "kafka: started (pid $(broker_pid)) on 127.0.0.1:$BROKER_PORT"
  fi
  # Topic creation also waits for the controller to accept requests.
  timeout "$START_TIMEOUT_S" "$VENV_PYTHON" -m jobs.topics "$PROJECT_DIR"/conf/*.yaml
}

stop() {
  local pid
  pid=$(broker_pid)
  if pid_alive "$pid"; then
    # A controlled shutdown writes a clean marker, so the next start skips log recovery.
    terminate_pids 30 "$pid"
    echo "kafka: stopped (pid $pid)"
  else
    echo "kafka: not running"
  fi
  rm -f "$PID_FILE"
}

status() {
  if pid_alive "$(broker_pid)" && broker_answers; then
    echo "kafka: running (pid $(broker_pid)) on 127.0.0.1:$BROKER_PORT"
  else
    echo "kafka: not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
