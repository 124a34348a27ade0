"""scripts/kafka.sh stop and scripts/flink.sh stop leave no broker, JobManager, TaskManager or Python worker."""

import os
import time

import pytest

from scripts import stack


def _pid_file(path):
    with open(path) as f:
        return [int(line) for line in f.read().split()]


def _command(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


@pytest.mark.restarts_stack
@pytest.mark.timeout(300)
def test_stop_leaves_no_process_behind(services, flink_job, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/smoke.yaml")
    flink_job("jobs/smoke_job.py", "--config", config.source)
    # The Python UDF's worker starts with the first record.
    stack.produce_json(config["topics.events.name"], [{"id": 1, "user": "a", "amount": 1.0}])
    assert stack.read_topic(config["topics.transformed.name"], expected=1, timeout_s=60)

    run = os.path.join(stack.PROJECT_DIR, "run")
    broker = _pid_file(f"{run}/kafka/kafka.pid")
    daemons = [
        p for name in os.listdir(f"{run}/flink") if name.endswith(".pid") for p in _pid_file(f"{run}/flink/{name}")
    ]
    workers = [p for d in daemons for p in stack.descendants(d)]
    assert len(daemons) == 2, daemons
    assert any("python" in _command(p) for p in workers), [_command(p) for p in workers]

    try:
        stack.script("flink.sh", "stop")
        stack.script("kafka.sh", "stop")
        deadline = time.monotonic() + 10
        while any(stack.alive(p) for p in broker + daemons + workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {p: _command(p) for p in broker + daemons + workers if stack.alive(p)}
        assert not left, f"still running after stop: {left}"
    finally:
        # Later fixtures and tests expect the services the session started.
        stack.script("kafka.sh", "start")
        stack.script("flink.sh", "start")
