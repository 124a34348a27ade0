"""Integration tests get the real Kafka broker and Flink cluster; the stack-restart test runs last."""

import pytest

from scripts import stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("restarts_stack") is not None)


@pytest.fixture(scope="session")
def services():
    """Kafka and Flink, started through the project's scripts unless already up; stopped if started here."""
    started = []
    for name in ("kafka.sh", "flink.sh"):
        if not stack.service_running(name):
            started.append(name)
        stack.script(name, "start")  # also replaces a TaskManager that an earlier run left dead
    yield
    for name in reversed(started):
        stack.script(name, "stop")


@pytest.fixture
def taskmanagers(services):
    """taskmanagers(n): at least n TaskManagers (scripts/flink.sh start --taskmanagers n); those started
    beyond the ones running before the test are killed by PID at its end."""
    before = set(stack.taskmanager_daemon_pids())

    def start(n):
        stack.script("flink.sh", "start", "--taskmanagers", str(n))

    yield start
    running = stack.taskmanager_daemon_pids()
    surplus = len(running) - max(1, len(before))
    for pid in [pid for pid in running if pid not in before][:surplus]:
        stack.kill_with_workers(pid)
    stack.script("flink.sh", "start")


@pytest.fixture
def flink_job():
    """Submit jobs through scripts/submit.sh; every job submitted is cancelled at the end of the test."""
    job_ids = []

    def submit(job, *args):
        job_id = stack.submit(job, *args)
        job_ids.append(job_id)
        return job_id

    yield submit
    for job_id in job_ids:
        stack.cancel(job_id)


@pytest.fixture
def replicas():
    """Start serving replicas with replicas(config, port, *options); every one is stopped by PID at the end."""
    started = []

    def start(config, port, *options):
        replica = stack.Replica(config, port, *options)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()
