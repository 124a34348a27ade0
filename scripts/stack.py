"""The local stack as the tests, the benchmark and the scripts reach it: the project's scripts, processes,
Kafka topics (produce, read to the end, snapshots), Flink's REST API (jobs, their states, metrics,
the root exception, cancel) and serving replicas (start, HTTP, metrics, stop by PID).

>>> os.path.isfile(os.path.join(PROJECT_DIR, "scripts", "stack.py"))
True
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from jobs.config import Config, derive_config, load_config
from jobs.topics import declared_topics, ensure_topics
from udfs.envelope import Snapshot, decode
from udfs.signing import Keyring, SigningSettings

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = "127.0.0.1:9092"
FLINK_REST = "http://localhost:8081"


def script(name: str, *args: str, timeout: float = 180) -> str:
    result = subprocess.run(
        ["bash", os.path.join(PROJECT_DIR, "scripts", name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_DIR,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scripts/{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def alive(pid: int) -> bool:
    """Whether a process runs; a zombie waiting for its parent to reap it does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def proc_status_kb(pid, field: str) -> int:
    """A `kB` field of /proc/<pid>/status; 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [d for child in map(int, out) for d in (child, *descendants(child))]


def taskmanager_daemon_pids() -> list[int]:
    """The TaskManager daemons that run, from the pid file scripts/flink.sh keeps (not their workers)."""
    run = os.path.join(PROJECT_DIR, "run", "flink")
    return [
        int(pid)
        for name in os.listdir(run)
        if name.endswith("-taskexecutor.pid")
        for pid in open(os.path.join(run, name)).read().split()
        if alive(int(pid))
    ]


def kill_with_workers(pid: int) -> None:
    """SIGKILL a process and its descendants (a TaskManager and its Python workers), as a crash would."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not any(alive(v) for v in victims), 10, "the killed processes to go")


def service_running(name: str) -> bool:
    return (
        subprocess.run(
            ["bash", os.path.join(PROJECT_DIR, "scripts", name), "status"], capture_output=True, timeout=30
        ).returncode
        == 0
    )


def isolated_config(tmp_path, base: str, overrides: dict | None = None) -> Config:
    """A copy of a conf/ file with its own topics (created here), consumer group and transactional ids."""
    path = tmp_path / "conf" / os.path.basename(base)
    config = derive_config(load_config(os.path.join(PROJECT_DIR, base)), str(path), uuid.uuid4().hex[:8], overrides)
    ensure_topics(BOOTSTRAP, declared_topics(config))
    return config


def write_config(config: Config, path, overrides: dict) -> Config:
    """A new config file: `config` with `overrides` merged in (same topics, same consumer group)."""
    return derive_config(config, str(path), overrides=overrides)


def produce_json(topic: str, records, key_field: str | None = None) -> int:
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    count = 0
    for record in records:
        key = str(record[key_field]).encode() if key_field else None
        producer.send(topic, key=key, value=json.dumps(record).encode())
        count += 1
    producer.flush(timeout=60)
    producer.close()
    return count


def produce_raw(topic: str, records) -> int:
    """Send (key, value, partition) records as they are: bytes or None (a tombstone) for the value, a
    partition number or None (the key's) for the partition; in order within each partition."""
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, max_request_size=4 * 1024 * 1024)
    count = 0
    for key, value, partition in records:
        producer.send(topic, key=key, value=value, partition=partition)
        count += 1
    producer.flush(timeout=60)
    producer.close()
    return count


def wait_until(condition, timeout_s: float, what) -> None:
    """Poll `condition` until it holds; `what` (or what it returns, if callable) names it on a timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what() if callable(what) else what}")


def produce_to_every_partition(topic: str, record: dict) -> None:
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    for partition in sorted(producer.partitions_for(topic)):
        producer.send(topic, value=json.dumps(record).encode(), partition=partition)
    producer.flush(timeout=60)
    producer.close()


def read_topic(topic: str, expected: int | None, timeout_s: float, read_committed: bool = True) -> list:
    """Read every partition from the start until `expected` records, or with `expected` None until
    the end offsets of when it started (the last stable offsets, read_committed), or the timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions) if expected is None else None

        def done():
            if ends is None:
                return len(records) >= expected
            return all(consumer.position(tp) >= end for tp, end in ends.items())

        records, deadline = [], time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def keyring(config: Config) -> Keyring:
    """The keys the config's job signs snapshots with and its replicas verify them by."""
    return SigningSettings.from_config(config).keyring()


def read_snapshots(config: Config, expected: int | None = 10**9, timeout_s: float = 5) -> list[Snapshot]:
    """The envelopes on the config's snapshot topic (as read_topic reads), verified with its keys;
    tombstones (null values: keys expired or deleted) are not envelopes and are left out."""
    keys = keyring(config)
    return [
        decode(r.value, keys)
        for r in read_topic(config["topics.snapshots.name"], expected, timeout_s)
        if r.value is not None
    ]


def submit(job: str, *args: str) -> str:
    """Submit a job with scripts/submit.sh; returns its JobID once it is RUNNING (or, for a short
    bounded job, once it has run and FINISHED)."""
    job_id = script("submit.sh", job, *args).strip().splitlines()[-1]
    try:
        wait_for_job_state(job_id, "RUNNING", timeout_s=60)
    except AssertionError:
        if job_state(job_id) != "FINISHED":
            raise
    return job_id


def rest(path: str, method: str = "GET") -> dict:
    request = urllib.request.Request(FLINK_REST + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


def job_metrics(job_id: str, prefix: str) -> dict[str, float]:
    """The running job's operator metrics whose names start with `prefix`, from the REST API, each
    summed over the subtasks and operators that have it (REST names them `<subtask>.<operator>.<name>`)."""
    totals: dict[str, float] = {}
    for vertex in rest(f"/jobs/{job_id}")["vertices"]:
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [m["id"] for m in rest(path) if m["id"].rsplit(".", 1)[-1].startswith(prefix)]
        for start in range(0, len(ids), 20):  # a short query string per request
            query = urllib.parse.urlencode({"get": ",".join(ids[start : start + 20])})
            for metric in rest(f"{path}?{query}"):
                name = metric["id"].rsplit(".", 1)[-1]
                totals[name] = totals.get(name, 0.0) + float(metric["value"])
    return totals


def prometheus_counters(job_id: str, prefix: str) -> dict[str, float]:
    """The job's `prefix` operator counters as the TaskManagers' Prometheus reporters serve them
    (conf/flink/config.yaml: the first free port of 9250-9260 each), summed over subtasks."""
    totals: dict[str, float] = {}
    for port in range(9250, 9261):
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name.startswith(f"flink_taskmanager_job_task_operator_{prefix}") and f'job_id="{job_id}"' in rest:
                short = name.removeprefix("flink_taskmanager_job_task_operator_")
                totals[short] = totals.get(short, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def job_state(job_id: str) -> str:
    return rest(f"/jobs/{job_id}")["state"]


def wait_for_job_state(job_id: str, state: str, timeout_s: float) -> None:
    deadline, current = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        current = job_state(job_id)
        if current == state:
            return
        if current in ("FAILED", "CANCELED", "FINISHED") and current != state:
            break
        time.sleep(0.5)
    raise AssertionError(
        f"job {job_id} is {current}, expected {state}; latest exception:\n{root_exception(job_id, wait_s=5)}"
    )


def root_exception(job_id: str, wait_s: float = 0) -> str:
    """The first line and the causes of the job's latest exception, and the innermost cause's first
    frames (a Python error's own among them), from Flink's exception history, which records a failure
    a few seconds after it: waits up to `wait_s` for one."""
    deadline = time.monotonic() + wait_s
    while not (entries := rest(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])):
        if time.monotonic() > deadline:
            return "(none recorded)"
        time.sleep(1)
    lines = entries[0].get("stacktrace", "").splitlines() or ["(no stack trace)"]
    causes = [i for i, line in enumerate(lines) if line.startswith("Caused by:")]
    innermost = lines[causes[-1] + 1 : causes[-1] + 9] if causes else lines[1:9]
    return "\n".join([lines[0], *(lines[i] for i in causes), *innermost])


def jobmanager_log_lines(containing: str) -> list[str]:
    """The lines of the local JobManager's log (scripts/flink.sh's run/flink/log, rotated files too)
    that contain `containing`."""
    log_dir = os.path.join(PROJECT_DIR, "run", "flink", "log")
    lines = []
    for name in sorted(os.listdir(log_dir)):
        if "-standalonesession-" in name and ".log" in name:
            with open(os.path.join(log_dir, name), errors="replace") as f:
                lines += [line for line in f if containing in line]
    return lines


def cancel_jobs_named(name: str) -> None:
    """Cancel every job of the cluster called `name` that has not ended (one a client left running)."""
    for job in rest("/jobs/overview")["jobs"]:
        if job["name"] == name:
            cancel(job["jid"])


def cancel(job_id: str) -> None:
    try:
        state = job_state(job_id)
    except urllib.error.HTTPError as e:
        if e.code == 404:  # the cluster was restarted since; the job is gone with it
            return
        raise
    if state not in ("CANCELED", "FAILED", "FINISHED"):
        rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")
        wait_for_job_state(job_id, "CANCELED", timeout_s=60)


class Replica:
    """A serving replica process on 127.0.0.1:port, stopped by PID; `command` starts it another way than
    the project venv's `python -m serving.replica` (an installed `serving-replica`, say)."""

    def __init__(
        self, config: Config, port: int, *args: str, command: list[str] | None = None, log_path: str | None = None
    ):
        self.port = port
        command = command or [os.path.join(PROJECT_DIR, ".venv", "bin", "python"), "-m", "serving.replica"]
        self.log_path = log_path
        log = open(log_path, "w") if log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [*command, "--config", config.source, "--port", str(port), *args],
                cwd=PROJECT_DIR,
                stdout=log,
                stderr=log,
            )
        finally:
            if log_path:
                log.close()  # the replica holds its own copy

    def http(self, method: str, path: str, body=None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode())

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"replica on port {self.port} exited with {self.process.returncode}" + (
                f"; see {self.log_path}" if self.log_path else ""
            )
            try:
                if self.http("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"replica on port {self.port} not ready within {timeout_s}s")

    def metric(self, name: str) -> float:
        """The sum of every sample of a metric in /metrics."""
        text = self.http("GET", "/metrics")[1]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
