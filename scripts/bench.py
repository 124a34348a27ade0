"""Side-by-side benchmark, in one run: the learner job against the plain kafka-python + River loop a
user would otherwise write, the SQL feature stage alone, freshness to serving, and serving latency
while models swap.

    bash scripts/bench.sh                      # starts Kafka and Flink if needed; about 12 minutes on 2 cores
    .venv/bin/python scripts/bench.py --quick  # smaller sizes, a few minutes; needs Kafka and Flink running
    .venv/bin/python scripts/bench.py --keys 10000 --rows 50000 --sql-events 0 --live-seconds 0 \
        --flink python.state.cache-size=20000  # one measurement with a Flink setting on top of conf/job.yaml's

Prints a table at the end and writes run/bench/results.json.

(a) For each key count, one topic of events is produced, and both designs read all of it:

- the plain loop: one kafka-python consumer and a dict of River models, one per key (conf/job.yaml's
  model, written out as a user would); each event is predicted (`predict_proba_one`), then learned.
  It runs in a process of its own, so its peak RSS is its own;
- the pipeline: `jobs/learner_job.py`, submitted with `scripts/submit.sh` and a copy of conf/job.yaml
  whose source is bounded at the topic's end offsets, so the job finishes at the end of the data.

Every key gets one event per window, so the job learns one feature row per event, as the plain loop
does. A job's rate is rows / (job time - fixed cost): the job time runs from the job's RUNNING to its
FINISHED timestamp (REST /jobs/<id>), and the fixed cost is the shortest job time of the same job on
100 events (Python workers starting, Kafka connections, the final checkpoint that commits the sinks).

(b) The SQL feature stage (`scripts/bench_sql_stage.py`: the DDL and feature view into a blackhole
sink) is timed the same way, on many events per key and window.

(c, d) A live stream: events stamped with the wall clock flow through the learner job (1 s windows,
no watermark delay, a snapshot per window) into one serving replica. Freshness is each new model
version's window close -> servable in the replica (`GET /models/{key}`); predict latency is timed by
a client on one kept-alive connection, sending requests back to back while snapshots swap.

Memory: peak RSS of the TaskManager JVM and, separately, of its descendants (the Python workers),
sampled every second while a job runs. The cluster may be shared: the most other jobs seen running
during a measurement is reported with it, as they take CPU and memory from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import http.client
import json
import math
import multiprocessing
import os
import pathlib
import random
import socket
import statistics
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from river import linear_model, optim, preprocessing

from jobs.config import load_config
from serving.load import run_load
from tests.integration import stack
from udfs.model_spec import build_model

BASE_CONFIG = "conf/job.yaml"
RUN_DIR = pathlib.Path(stack.PROJECT_DIR, "run", "bench")
LEARNER_JOB = "jobs/learner_job.py"
SQL_STAGE_JOB = "scripts/bench_sql_stage.py"
# Pipeline rows/s as a share of the plain loop's, by key count; and the SQL stage's events/s.
LEARNER_GOALS = {10: 0.5, 10_000: 0.5, 100_000: 0.4}
SQL_STAGE_GOAL = 100_000
SQL_STAGE_KEYS, SQL_STAGE_EVENTS_PER_WINDOW = 100, 1_000
FIRST_WINDOW_MS = 1_700_000_000_000
TERMINAL_STATES = ("FINISHED", "FAILED", "CANCELED")
TASK_MANAGER_MAIN = b"org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
PROGRESS_EVERY_S = 10
STALL_AFTER_S = 180
# The live stream: 1,000 keys, 1 s windows closed as soon as the wall clock passes them, a snapshot per
# window, conf/job.yaml's checkpoint interval; exactly-once sinks publish on checkpoints, so that
# interval bounds freshness.
LIVE_KEYS = 1_000
LIVE_EVENT_EVERY_S = 0.5
# Quiet keys beside them, each with a row in every tenth window only (a long-tail item): their models
# must be as fresh as the busy keys'.
LIVE_QUIET_KEYS = 100
LIVE_QUIET_EVERY_ROUNDS = 20
LIVE_OVERRIDES = {
    "source": {"startup_mode": "earliest-offset", "watermark_delay_seconds": 0, "idle_timeout": "1 s"},
    "window": {"size_seconds": 1},
    "snapshots": {"policy": "every_window"},
}
FRESHNESS_GOAL_P99_S = 0.25
WARM_UP_EVENTS = 100_000
LIVE_FEATURES = ("x1_avg", "x2_avg")
# Concurrent kept-alive clients on the live replica: the goal is at 16 connections, against the
# standard library's server measured beside it.
CONCURRENT_CONNECTIONS = (1, 4, 16)
CONCURRENT_SECONDS = 5
CONCURRENT_GOAL_CONNECTIONS = 16
CONCURRENT_GOAL_SPEEDUP = 2
# The learner bounded at the topic's end, and the same with every model-safety guard of conf/job.yaml on.
BOUNDED_SOURCE = {"source": {"startup_mode": "earliest-offset", "bounded_mode": "latest-offset"}}
GUARDS_ON = {"safety": {"drift": {"enabled": True}, "gate": {"enabled": True, "rollback": True},
                        "challenger": {"enabled": True}, "quality": {"enabled": True}}}
# The learner's variants measured beside the default configuration, each on its own copy of the topic.
VARIANTS = {
    "guards on": GUARDS_ON,
    # Two learner subtasks on this 2-core machine: what a second core's worth of slots gives.
    "parallelism 2": {"flink": {"parallelism.default": 2}},
    "rocksdb": {"flink": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": True}},
}
PREDICT_GOAL_P99_MS = 5.0


class BenchError(RuntimeError):
    """A measurement that could not be made: a job that failed or stalled, a topic short of events."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- Data ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """`keys` keys, each with `per_window` events in each of `windows` consecutive windows."""

    keys: int
    windows: int
    window_ms: int
    per_window: int = 1

    @property
    def events(self) -> int:
        return self.keys * self.windows * self.per_window

    @property
    def feature_rows(self) -> int:
        return self.keys * self.windows


def event_records(workload: Workload, partition: int, partitions: int, seed: int = 7):
    """The (key, value) bytes of one partition's events, in event-time order.

    Key `k{i}` goes to partition `i % partitions`; its label is a noisy linear function of x1 and x2,
    so the models have something to learn."""
    rng = random.Random(seed * 1_000 + partition)
    keys = [f"k{i}" for i in range(partition, workload.keys, partitions)]
    step_ms = workload.window_ms // workload.per_window
    for window in range(workload.windows):
        for i in range(workload.per_window):
            ts = FIRST_WINDOW_MS + window * workload.window_ms + i * step_ms
            for key in keys:
                x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
                label = x1 + 0.5 * x2 + rng.gauss(0, 0.5) > 0
                event = {"entity": key, "x1": x1, "x2": x2, "label": label, "ts": ts}
                yield key.encode(), json.dumps(event).encode()


def produce_partition(topic: str, workload: Workload, partition: int, partitions: int) -> int:
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP, linger_ms=20, batch_size=512 * 1024)
    count = 0
    for key, value in event_records(workload, partition, partitions):
        producer.send(topic, key=key, value=value, partition=partition)
        count += 1
        if count % 250_000 == 0:
            log(f"  partition {partition}: {count:,} events sent")
    producer.flush()
    producer.close()
    return count


def produce(topic: str, workload: Workload, partitions: int) -> None:
    """Write the workload to `topic`, one producer process per partition (kafka-python is slow)."""
    log(f"producing {workload.events:,} events ({workload.keys:,} keys x {workload.windows:,} windows"
        f" x {workload.per_window:,} per window) to {topic}")
    started = time.monotonic()
    n = partitions
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        count = sum(pool.map(produce_partition, [topic] * n, [workload] * n, range(n), [n] * n))
    seconds = time.monotonic() - started
    log(f"  {count:,} events in {seconds:.1f}s ({count / seconds:,.0f} events/s)")


# -- Processes and the plain loop ------------------------------------------------------------------


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


def plain_model():
    """The plain loop's model, written as a user would; `check_plain_model` holds it to conf/job.yaml."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


def check_plain_model(model_spec: dict) -> None:
    if build_model(model_spec)._get_params() != plain_model()._get_params():
        raise BenchError(f"{BASE_CONFIG}'s model: is not the plain loop's {plain_model()}; update plain_model()")


def plain_loop(topic: str, rows: int) -> dict:
    """The design a user would otherwise pick: a consumer and a dict of River models, one per key.

    Every event is predicted, then learned, by its key's model; returns the rows learned per second
    from the first poll to the last row, and the process's peak RSS."""
    consumer = KafkaConsumer(bootstrap_servers=stack.BOOTSTRAP, enable_auto_commit=False, max_poll_records=5_000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    models, learned = {}, 0
    started = last_record = last_report = time.monotonic()
    while learned < rows:
        batches = consumer.poll(timeout_ms=1_000).values()
        now = time.monotonic()
        if batches:
            last_record = now
        elif now - last_record > 30:
            raise TimeoutError(f"{topic}: no events for 30 s after {learned:,} of {rows:,} rows")
        for batch in batches:
            for record in batch:
                event = json.loads(record.value)
                model = models.get(event["entity"])
                if model is None:
                    model = models[event["entity"]] = plain_model()
                # One event per key and window: the window averages are the event's values.
                x = {"x1_avg": event["x1"], "x2_avg": event["x2"]}
                model.predict_proba_one(x)
                model.learn_one(x, event["label"])
                learned += 1
        if now - last_report >= PROGRESS_EVERY_S:
            log(f"  plain loop: {learned:,}/{rows:,} rows learned")
            last_report = now
    seconds = time.monotonic() - started
    consumer.close()
    return {"rows": learned, "models": len(models), "seconds": seconds, "rows_per_s": learned / seconds,
            "peak_rss_mb": proc_status_kb("self", "VmHWM") / 1024}


def run_plain_loop(topic: str, rows: int) -> dict:
    """`plain_loop` in a fresh process, so that its memory is measured alone."""
    log(f"plain loop: {rows:,} rows from {topic}")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            result = pool.submit(plain_loop, topic, rows).result()
        except TimeoutError as e:
            raise BenchError(f"plain loop: {e}") from None
    log(f"  {result['rows_per_s']:,.0f} rows/s ({result['seconds']:.1f}s, {result['models']:,} models,"
        f" peak RSS {result['peak_rss_mb']:,.0f} MB)")
    return result


# -- Flink jobs ------------------------------------------------------------------------------------


def taskmanager_pids() -> list[int]:
    """The TaskManager JVMs: from run/flink's pid files, else (a cluster started from another
    folder) every process running Flink's TaskManagerRunner."""
    pid_files = glob.glob(os.path.join(stack.PROJECT_DIR, "run", "flink", "flink-*-taskexecutor.pid"))
    if pid_files:
        return [int(pid) for path in pid_files for pid in pathlib.Path(path).read_text().split()]
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if TASK_MANAGER_MAIN in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def taskmanager_rss_mb() -> tuple[float, float]:
    """RSS of the TaskManager JVMs and of their descendants (the Python workers), in MB."""
    jvm = python = 0
    for pid in taskmanager_pids():
        jvm += proc_status_kb(pid, "VmRSS")
        python += sum(proc_status_kb(child, "VmRSS") for child in stack.descendants(pid))
    return jvm / 1024, python / 1024


def other_running_jobs(job_id: str) -> int:
    return sum(job["jid"] != job_id and job["state"] == "RUNNING" for job in stack.rest("/jobs/overview")["jobs"])


def short_name(vertex: dict) -> str:
    """A task named by its first operator."""
    return vertex["name"].split(" -> ")[0][:40]


def metric_seconds(value) -> float:
    """A REST time metric in ms as seconds; Flink reports NaN (as text) for a task that never ran."""
    try:
        return float(value) / 1000
    except (TypeError, ValueError):
        return math.nan


def progress(info: dict, events: int) -> str:
    """Records out of the job's source task and into the learner's task (or the last task of a job
    without a learner). The source's task sends each event to every branch that reads it, so its
    count runs past the events produced."""
    vertices = info["vertices"]
    out = next((v["metrics"]["write-records"] for v in vertices if v["name"].startswith("Source")), 0)
    last = next((v for v in vertices if v["name"].startswith("learner")), vertices[-1])
    return (f"{out:,} records out of the source for {events:,} events,"
            f" {last['metrics']['read-records']:,} records into {short_name(last)}")


@dataclasses.dataclass
class JobRun:
    """A bounded job, followed from submission to FINISHED."""

    job_id: str
    seconds: float  # from the RUNNING to the FINISHED timestamp
    peak_jvm_rss_mb: float
    peak_python_rss_mb: float
    other_jobs: int  # the most other jobs seen running at once
    vertices: list  # per task: name, records in and out, busy/idle/backpressured seconds
    checkpoints: dict  # completed, and the largest checkpointed size (MB) and end-to-end duration (ms)


def checkpoint_summary(job_id: str) -> dict:
    stats = stack.rest(f"/jobs/{job_id}/checkpoints")
    summary = stats.get("summary", {})
    return {"completed": stats["counts"]["completed"],
            "max_size_mb": summary.get("checkpointed_size", {}).get("max", 0) / 2**20,
            "max_duration_ms": summary.get("end_to_end_duration", {}).get("max", 0)}


def vertex_summary(info: dict) -> list:
    return [{
        "name": v["name"],
        "status": v["status"],
        "read_records": v["metrics"]["read-records"],
        "write_records": v["metrics"]["write-records"],
        "busy_s": metric_seconds(v["metrics"].get("accumulated-busy-time")),
        "idle_s": metric_seconds(v["metrics"].get("accumulated-idle-time")),
        "backpressured_s": metric_seconds(v["metrics"].get("accumulated-backpressured-time")),
    } for v in info["vertices"]]


def follow(job_id: str, label: str, events: int) -> tuple[dict, JobRun]:
    """Poll a job every second until it ends, restarts or stalls, sampling memory and reporting progress."""
    peak_jvm = peak_python = 0.0
    others, last_report = 0, time.monotonic()
    last_change, last_counts = time.monotonic(), None
    while True:
        info = stack.rest(f"/jobs/{job_id}")
        jvm, python = taskmanager_rss_mb()
        peak_jvm, peak_python = max(peak_jvm, jvm), max(peak_python, python)
        others = max(others, other_running_jobs(job_id))
        if info["state"] in TERMINAL_STATES or info["timestamps"].get("RESTARTING"):
            break  # a restart after a failure spoils the timing: the job is reported as failed
        counts = [(v["status"], v["metrics"]["read-records"], v["metrics"]["write-records"]) for v in info["vertices"]]
        if counts != last_counts:
            last_change, last_counts = time.monotonic(), counts
        elif time.monotonic() - last_change > STALL_AFTER_S:
            break
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            log(f"  {label}: {info['state']}, {progress(info, events)};"
                f" TaskManager RSS {jvm:,.0f} MB + Python {python:,.0f} MB")
            last_report = time.monotonic()
        time.sleep(1)
    timestamps = info["timestamps"]
    seconds = (timestamps["FINISHED"] - timestamps["RUNNING"]) / 1000 if info["state"] == "FINISHED" else math.nan
    return info, JobRun(job_id, seconds, peak_jvm, peak_python, others, vertex_summary(info), checkpoint_summary(job_id))


def root_exception(job_id: str) -> str:
    """The first line and the causes of the job's latest exception, from Flink's exception history
    (recorded a few seconds after a failure, so this waits up to 15 s for it)."""
    deadline = time.monotonic() + 15
    while not (entries := stack.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]):
        if time.monotonic() > deadline:
            return "(none recorded)"
        time.sleep(1)
    lines = entries[0]["stacktrace"].splitlines()
    return "\n".join([lines[0], *(line for line in lines[1:] if line.startswith("Caused by:"))])


def why_not_finished(job_id: str, info: dict, run: JobRun) -> str:
    if info["state"] == "RUNNING" and not info["timestamps"].get("RESTARTING"):
        tasks = ", ".join(f"{short_name(v)} {v['status']}" for v in run.vertices)
        return f"made no progress for {STALL_AFTER_S} s (tasks: {tasks})"
    ended = "restarted after a failure" if info["timestamps"].get("RESTARTING") else f"ended {info['state']}"
    return f"{ended}; root exception:\n{root_exception(job_id)}"


def cancel(job_id: str) -> None:
    """Cancel a job that has not ended, without waiting for it."""
    if stack.job_state(job_id) not in TERMINAL_STATES:
        stack.rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")


def run_job(job: str, config, label: str, events: int, *job_args: str) -> JobRun:
    """Submit a bounded job and follow it to FINISHED; a job that does not get there raises BenchError
    saying why, and a job still running when anything goes wrong is cancelled."""
    log(f"{label}: submitting {job}")
    try:
        job_id = stack.script("submit.sh", job, "--config", config.source, *job_args).strip().splitlines()[-1]
    except RuntimeError as e:
        raise BenchError(f"{label}: {e}") from None
    try:
        info, run = follow(job_id, label, events)
    finally:
        cancel(job_id)
    if info["state"] != "FINISHED":
        raise BenchError(f"{label}: job {job_id} {why_not_finished(job_id, info, run)}")
    log(f"  {label}: job {job_id} FINISHED, {run.seconds:.1f}s from RUNNING; peak TaskManager RSS"
        f" {run.peak_jvm_rss_mb:,.0f} MB + Python {run.peak_python_rss_mb:,.0f} MB"
        + (f"; {run.other_jobs} other job(s) were running" if run.other_jobs else ""))
    log("  busy time per task: " + ", ".join(f"{short_name(v)} {v['busy_s']:.1f}s" for v in run.vertices))
    return run


def rate(units: int, run: JobRun, fixed_cost_s: float) -> float | None:
    """Units per second of the job's net time; None when the net time is shorter than the fixed cost,
    as the second-to-second variation of start-up then swamps it."""
    net = run.seconds - fixed_cost_s
    if net < fixed_cost_s:
        log(f"  not rated: the job ran {run.seconds:.1f}s against a fixed cost of {fixed_cost_s:.1f}s;"
            " raise the number of rows")
        return None
    return units / net


# -- The live stream: freshness and serving latency ------------------------------------------------


def live_keys() -> tuple[list, list]:
    """The live stream's busy keys and quiet keys."""
    return [f"k{i}" for i in range(LIVE_KEYS)], [f"q{i}" for i in range(LIVE_QUIET_KEYS)]


def live_events(topic: str, stop) -> None:
    """Events stamped with the wall clock, one per busy key every LIVE_EVENT_EVERY_S and one per quiet
    key every LIVE_QUIET_EVERY_ROUNDS times that, spread evenly over that time (as independent keys
    send), until `stop` is set. Runs in a process of its own, so that it takes no time from the timed
    client's interpreter.

    Spread, not sent in one burst per round: a window closes for the job when an event stamped after
    its end arrives, so bursts every half second would add up to half a second to every window."""
    producer = KafkaProducer(bootstrap_servers=stack.BOOTSTRAP, linger_ms=5)
    rng = random.Random(3)
    busy, quiet = live_keys()
    quiet_per_round = -(-len(quiet) // LIVE_QUIET_EVERY_ROUNDS)
    due, round_ = time.monotonic(), 0
    while not stop.is_set():
        start = round_ % LIVE_QUIET_EVERY_ROUNDS * quiet_per_round
        keys = busy + quiet[start:start + quiet_per_round]
        rng.shuffle(keys)
        step_s = LIVE_EVENT_EVERY_S / len(keys)
        for key in keys:
            x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
            event = {"entity": key, "x1": x1, "x2": x2, "label": x1 + 0.5 * x2 > 0, "ts": int(time.time() * 1000)}
            producer.send(topic, key=key.encode(), value=json.dumps(event).encode())
            due += step_s
            if (ahead := due - time.monotonic()) > 0.005:
                time.sleep(ahead)
        round_ += 1
    producer.close()


class ServingClient:
    """Requests to a replica on one kept-alive connection, as a serving client would send them."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def call(self, method: str, path: str, body=None) -> tuple[int, dict, float]:
        """(status, answer, seconds from sending the request to having read the answer)."""
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request opens a new connection
            raise
        seconds = time.perf_counter() - started
        return response.status, json.loads(payload) if payload else {}, seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list, q: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- Measurements ----------------------------------------------------------------------------------


class Bench:
    """The measurements of one benchmark run; each makes its own topics, deleted at the end."""

    def __init__(self, run_id: str, flink_settings: dict, fixed_cost_runs: int):
        self.run_id = run_id
        self.flink_settings = flink_settings
        self.fixed_cost_runs = fixed_cost_runs
        self.topics: list[str] = []

    def config(self, name: str, overrides: dict | None = None):
        """An isolated copy of conf/job.yaml with its own topics (created): with a source bounded at the
        topics' end unless `overrides` say otherwise, and the --flink settings on top."""
        overrides = overrides or BOUNDED_SOURCE
        flink = {**overrides.get("flink", {}), **self.flink_settings}
        config = stack.isolated_config(RUN_DIR / self.run_id / name, BASE_CONFIG, {**overrides, "flink": flink})
        self.topics += [spec["name"] for spec in config["topics"].values()]
        return config

    def workload_topic(self, name: str, keys: int, windows: int, per_window: int = 1, overrides: dict | None = None):
        config = self.config(name, {**BOUNDED_SOURCE, **(overrides or {})})
        workload = Workload(keys, windows, int(float(config["window.size_seconds"]) * 1000), per_window)
        produce(config["topics.events.name"], workload, int(config["topics.events.partitions"]))
        return config, workload

    def fixed_cost(self, job: str, label: str) -> float:
        """The job time of `job` on 100 events (10 keys x 10 windows): the shortest of a few runs after
        an uncounted one on 100,000 events, which warms a fresh TaskManager up (its JIT compiles the
        runtime's code once; a long-running job pays that once in its life)."""
        name = pathlib.Path(job).stem
        config, workload = self.workload_topic(f"warm-up-{name}", keys=10, windows=WARM_UP_EVENTS // 10)
        run_job(job, config, f"{label}, warm-up run", workload.events)
        config, workload = self.workload_topic(f"fixed-cost-{name}", keys=10, windows=10)
        runs = range(1, self.fixed_cost_runs + 1)
        return min(run_job(job, config, f"{label} fixed cost, run {i}", workload.events).seconds for i in runs)

    def learner(self, keys: int, rows: int, fixed_cost_s: float, variant: str | None = None) -> dict:
        """The learner job against the plain loop on one topic; `variant` names a VARIANTS configuration."""
        # Two windows at least: a key's first row only creates its model, the second reads its state back.
        name = f"learner-{keys}" + (f"-{variant.replace(' ', '-')}" if variant else "")
        config, workload = self.workload_topic(name, keys, windows=max(2, rows // keys),
                                               overrides=VARIANTS[variant] if variant else None)
        plain = run_plain_loop(config["topics.events.name"], workload.feature_rows)
        label = f"pipeline, {keys:,} keys" + (f", {variant}" if variant else "")
        run = run_job(LEARNER_JOB, config, label, workload.events)
        pipeline = rate(workload.feature_rows, run, fixed_cost_s)
        ratio = None if pipeline is None else pipeline / plain["rows_per_s"]
        if ratio is not None:
            log(f"  pipeline {pipeline:,.0f} rows/s = {ratio:.2f} x the plain loop's {plain['rows_per_s']:,.0f}")
        goal = None if variant else LEARNER_GOALS.get(keys)
        return {"keys": keys, "variant": variant, "rows": workload.feature_rows, "windows": workload.windows,
                "plain": plain, "pipeline": {**dataclasses.asdict(run), "rows_per_s": pipeline}, "ratio": ratio,
                "goal_ratio": goal, "met": None if goal is None or ratio is None else ratio >= goal}

    def sql_stage(self, events: int, fixed_cost_s: float) -> dict:
        per_window = SQL_STAGE_KEYS * SQL_STAGE_EVENTS_PER_WINDOW
        config, workload = self.workload_topic("sql-stage", SQL_STAGE_KEYS, max(1, events // per_window),
                                               SQL_STAGE_EVENTS_PER_WINDOW)
        run = run_job(SQL_STAGE_JOB, config, "SQL feature stage", workload.events)
        events_per_s = rate(workload.events, run, fixed_cost_s)
        # The same topic through Flink's own JSON format, unchecked: what the checks cost, as a ratio.
        plain_run = run_job(SQL_STAGE_JOB, config, "SQL feature stage, plain JSON source", workload.events, "--plain-json")
        plain = rate(workload.events, plain_run, fixed_cost_s)
        ratio = None if events_per_s is None or plain is None else events_per_s / plain
        if events_per_s is not None:
            log(f"  SQL feature stage {events_per_s:,.0f} events/s"
                + (f" = {ratio:.2f} x the plain JSON source's {plain:,.0f}" if ratio is not None else ""))
        return {"events": workload.events, "keys": workload.keys, "windows": workload.windows,
                "events_per_key_window": workload.per_window, "run": dataclasses.asdict(run),
                "events_per_s": events_per_s, "plain_json_events_per_s": plain, "ratio": ratio,
                "goal_events_per_s": SQL_STAGE_GOAL,
                "met": None if events_per_s is None else events_per_s >= SQL_STAGE_GOAL}

    def live(self, seconds: float) -> dict:
        """Freshness and predict latency: a live stream through the learner job into one replica."""
        config = self.config("live", LIVE_OVERRIDES)
        checkpoint_interval = config["flink"]["execution.checkpointing.interval"]
        log(f"live stream: {LIVE_KEYS} keys with an event every {LIVE_EVENT_EVERY_S * 1000:.0f} ms and {LIVE_QUIET_KEYS}"
            f" with one every {LIVE_EVENT_EVERY_S * LIVE_QUIET_EVERY_ROUNDS:g} s, 1 s windows,"
            f" checkpoints every {checkpoint_interval}, one replica; {seconds:.0f} s measured")
        try:
            job_id = stack.script("submit.sh", LEARNER_JOB, "--config", config.source).strip().splitlines()[-1]
        except RuntimeError as e:
            raise BenchError(f"live stream: {e}") from None
        spawn = multiprocessing.get_context("spawn")
        stop = spawn.Event()
        producer = spawn.Process(target=live_events, args=(config["topics.events.name"], stop), daemon=True)
        replica = old_replica = None
        try:
            stack.wait_for_job_state(job_id, "RUNNING", timeout_s=60)
            replica = stack.Replica(config, free_port())
            replica.wait_ready()
            producer.start()
            result = self._time_live_requests(job_id, ServingClient(replica.port), seconds)
            # The standard library's server, which replicas had before, beside it on the same topics for
            # the comparison; started only now, as its follower would take the timed replica's CPU.
            old_replica = stack.Replica(config, free_port(), "--server", "stdlib")
            old_replica.wait_ready()
            result["concurrent"] = self._concurrent_load(replica.port, old_replica.port)
            if stack.job_state(job_id) != "RUNNING":
                raise BenchError(f"live stream: job {job_id} is {stack.job_state(job_id)}:\n{root_exception(job_id)}")
        except AssertionError as e:  # the job or the replica did not come up
            raise BenchError(f"live stream: {e}") from None
        finally:
            stop.set()
            if producer.pid is not None:
                producer.join(timeout=10)
            for started in (replica, old_replica):
                if started is not None:
                    started.stop()
            cancel(job_id)
        fresh, predict = result["freshness_s"], result["predict_ms"]
        log(f"  freshness p50 {fresh['p50']:.2f}s, p99 {fresh['p99']:.2f}s over {fresh['samples']} snapshots"
            f" (published by the job: p50 {fresh['published_p50']:.2f}s, p99 {fresh['published_p99']:.2f}s);"
            f" quiet keys p50 {fresh['quiet_p50']:.2f}s, p99 {fresh['quiet_p99']:.2f}s over {fresh['quiet_samples']};"
            f" predict p50 {predict['p50']:.2f}ms, p99 {predict['p99']:.2f}ms, {predict['failed']} failed of"
            f" {predict['requests']:,}" + (f"; {result['other_jobs']} other job(s) were running" if result["other_jobs"] else ""))
        return {"checkpoint_interval": checkpoint_interval, "keys": LIVE_KEYS, "quiet_keys": LIVE_QUIET_KEYS,
                "seconds": seconds, **result}

    @staticmethod
    def _concurrent_load(port: int, old_port: int) -> list:
        """Kept-alive `POST /predict` from 1, 4 and 16 connections over the live keys, while their
        snapshots swap: the replica's server, then the standard library's (serving.load)."""
        rows = []
        keys = live_keys()[0]
        for connections in CONCURRENT_CONNECTIONS:
            for server, target in (("asgi", port), ("stdlib", old_port)):
                load = run_load(target, connections, CONCURRENT_SECONDS, keys, LIVE_FEATURES)
                log(f"  {server} server, {connections} connections: {load['rps']:,} requests/s,"
                    f" p50 {load['p50_ms']:.2f}ms, p99 {load['p99_ms']:.2f}ms, {load['failed']} failed")
                rows.append({"server": server, **load})
        by = {(row["server"], row["connections"]): row for row in rows}
        new, old = by[("asgi", CONCURRENT_GOAL_CONNECTIONS)], by[("stdlib", CONCURRENT_GOAL_CONNECTIONS)]
        new["goal"] = (f"p99 < {PREDICT_GOAL_P99_MS:g}, 0 failed,"
                       f" >= {CONCURRENT_GOAL_SPEEDUP:g}x stdlib's {old['rps']:,}/s")
        new["met"] = (new["p99_ms"] < PREDICT_GOAL_P99_MS and new["failed"] == 0
                      and new["rps"] >= CONCURRENT_GOAL_SPEEDUP * old["rps"])
        return rows

    @staticmethod
    def _time_live_requests(job_id: str, client: ServingClient, seconds: float) -> dict:
        """Wait until every key is served, then predict for each key in turn for `seconds`; each new
        model version a prediction names adds its freshness (window close -> servable in the replica)."""
        busy, quiet = live_keys()
        keys, quiet = busy + quiet, set(quiet)
        features = dict(zip(LIVE_FEATURES, (0.1, -0.2)))
        versions: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while len(versions) < len(keys):  # a key answers 404 until its first window's snapshot is served
            if time.monotonic() > deadline:
                raise BenchError(f"live stream: {len(keys) - len(versions)} keys still had no model after 90 s")
            for key in keys:
                try:
                    status, answer, _ = client.call("POST", "/predict", {"key": key, "features": features})
                except (OSError, http.client.HTTPException):
                    continue  # counted as failures only once timing starts
                if status == 200:
                    versions[key] = answer["model_version"]
            time.sleep(0.1)
        log("  every key is served; timing requests")
        freshness, quiet_freshness, published, latencies, failures, others = [], [], [], [], [], 0
        started = last_report = time.monotonic()
        while (now := time.monotonic()) < started + seconds:
            for key in keys:
                try:
                    status, answer, took = client.call("POST", "/predict", {"key": key, "features": features})
                except (OSError, http.client.HTTPException) as e:
                    failures.append(f"{key}: {e!r}")
                    continue
                if status != 200:
                    failures.append(f"{key}: HTTP {status} {answer}")
                    continue
                latencies.append(took * 1000)
                if answer["model_version"] > versions[key]:
                    versions[key] = answer["model_version"]
                    try:
                        served = client.call("GET", f"/models/{key}")[1]
                        (quiet_freshness if key in quiet else freshness).append(served["freshness_s"])
                        # The job's part: window close -> the snapshot handed to Kafka.
                        published.append((served["emitted_at_ms"] - served["window_end_ms"]) / 1000)
                    except (OSError, http.client.HTTPException) as e:
                        failures.append(f"GET /models/{key}: {e!r}")
            if now - last_report >= PROGRESS_EVERY_S:
                others = max(others, other_running_jobs(job_id))
                log(f"  {len(latencies):,} requests, p99 so far {percentile(latencies, 0.99):.2f}ms;"
                    f" {len(freshness)} new versions, freshness p99 so far {percentile(freshness, 0.99):.2f}s")
                last_report = now
        others = max(others, other_running_jobs(job_id))
        fresh_p99, predict_p99 = percentile(freshness, 0.99), percentile(latencies, 0.99)
        return {
            "freshness_s": {"samples": len(freshness), "p50": percentile(freshness, 0.5), "p99": fresh_p99,
                            "published_p50": percentile(published, 0.5), "published_p99": percentile(published, 0.99),
                            "max": max(freshness, default=math.nan), "goal_p99": FRESHNESS_GOAL_P99_S,
                            "met": bool(freshness) and fresh_p99 < FRESHNESS_GOAL_P99_S,
                            "quiet_samples": len(quiet_freshness), "quiet_p50": percentile(quiet_freshness, 0.5),
                            "quiet_p99": percentile(quiet_freshness, 0.99),
                            "quiet_met": bool(quiet_freshness) and percentile(quiet_freshness, 0.99) < FRESHNESS_GOAL_P99_S},
            "predict_ms": {"requests": len(latencies) + len(failures), "failed": len(failures),
                           "first_failures": failures[:5], "p50": percentile(latencies, 0.5), "p99": predict_p99,
                           "mean": statistics.fmean(latencies) if latencies else math.nan,
                           "max": max(latencies, default=math.nan), "goal_p99": PREDICT_GOAL_P99_MS,
                           "met": bool(latencies) and predict_p99 < PREDICT_GOAL_P99_MS and not failures},
            "other_jobs": others,
        }

    def delete_topics(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=stack.BOOTSTRAP)
        try:
            admin.delete_topics(self.topics)
        finally:
            admin.close()


# -- Report ----------------------------------------------------------------------------------------


def machine() -> dict:
    """Cores, memory and CPU model, from /proc."""
    with open("/proc/meminfo") as f:
        memory_gib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) / 1024**2
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    cores = os.cpu_count()
    return {"cores": cores, "memory_gib": round(memory_gib, 1), "cpu": model,
            "summary": f"{cores} cores ({model}), {memory_gib:.1f} GiB RAM"}


def yes_no(met) -> str:
    return "-" if met is None else "yes" if met else "NO"


def number(value, suffix: str = "", digits: int = 0) -> str:
    """A measured value for the table; a rate the job ran too briefly to time is 'too short'."""
    return "too short" if value is None else f"{value:,.{digits}f}{suffix}"


def table(results: dict) -> str:
    """The side-by-side table: one line per measurement made, nothing else."""
    header = ("measure", "measured on", "windows/key", "plain loop", "pipeline", "ratio", "goal", "met",
              "checkpoints: n, max size, max time", "plain RSS", "TM JVM RSS", "TM Python RSS", "other jobs")
    lines = []
    default_rates = {row["keys"]: row["pipeline"]["rows_per_s"] for row in results["learner"] if not row.get("variant")}
    for row in results["learner"]:
        plain, pipeline, goal, variant = row["plain"], row["pipeline"], row["goal_ratio"], row.get("variant")
        beside = ""
        if variant and default_rates.get(row["keys"]) and pipeline["rows_per_s"]:
            beside = f"; {pipeline['rows_per_s'] / default_rates[row['keys']]:.2f}x the default's rate"
        checkpoints = pipeline["checkpoints"]
        lines.append((f"learner, {row['keys']:,} keys{', ' + variant if variant else ''} (rows/s{beside})",
                      f"{row['rows']:,} rows", f"{row['windows']:,}",
                      f"{plain['rows_per_s']:,.0f}", number(pipeline["rows_per_s"]), number(row["ratio"], "x", 2),
                      "-" if goal is None else f">= {goal:.2f}x", yes_no(row["met"]),
                      f"{checkpoints['completed']}, {checkpoints['max_size_mb']:,.1f} MB, {checkpoints['max_duration_ms']:,} ms",
                      f"{plain['peak_rss_mb']:,.0f} MB", f"{pipeline['peak_jvm_rss_mb']:,.0f} MB",
                      f"{pipeline['peak_python_rss_mb']:,.0f} MB", str(pipeline["other_jobs"])))
    if "sql_stage" in results:
        sql, run = results["sql_stage"], results["sql_stage"]["run"]
        lines.append(("SQL feature stage (events/s; plain: json format)", f"{sql['events']:,} events",
                      f"{sql['windows']:,}", number(sql["plain_json_events_per_s"]), number(sql["events_per_s"]),
                      number(sql["ratio"], "x", 2), f">= {sql['goal_events_per_s']:,}", yes_no(sql["met"]),
                      "-", "-", f"{run['peak_jvm_rss_mb']:,.0f} MB", f"{run['peak_python_rss_mb']:,.0f} MB",
                      str(run["other_jobs"])))
    if "live" in results:
        live = results["live"]
        fresh, predict, others = live["freshness_s"], live["predict_ms"], str(live["other_jobs"])
        lines.append(("freshness p50 / p99 (s)", f"{fresh['samples']:,} snapshots", "-", "-",
                      f"{fresh['p50']:.2f} / {fresh['p99']:.2f}", "-", f"p99 < {fresh['goal_p99']:g}",
                      yes_no(fresh["met"]), "-", "-", "-", "-", others))
        lines.append(("freshness, quiet keys p50 / p99 (s)", f"{fresh['quiet_samples']:,} snapshots", "-", "-",
                      f"{fresh['quiet_p50']:.2f} / {fresh['quiet_p99']:.2f}", "-", f"p99 < {fresh['goal_p99']:g}",
                      yes_no(fresh["quiet_met"]), "-", "-", "-", "-", others))
        lines.append(("  of which the job's: to Kafka (s)", "-", "-", "-",
                      f"{fresh['published_p50']:.2f} / {fresh['published_p99']:.2f}", "-", "-", "-", "-", "-", "-", "-", others))
        lines.append(("serving predict p50 / p99 (ms)", f"{predict['requests']:,} requests", "-", "-",
                      f"{predict['p50']:.2f} / {predict['p99']:.2f}, {predict['failed']} failed", "-",
                      f"p99 < {predict['goal_p99']:g}, 0 failed", yes_no(predict["met"]), "-", "-", "-", "-", others))
        for load in live.get("concurrent", []):
            lines.append((f"serving, {load['server']}, {load['connections']} connections", f"{load['requests']:,} requests",
                          "-", "-", f"{load['rps']:,}/s, p99 {load['p99_ms']:.2f} ms, {load['failed']} failed", "-",
                          load.get("goal", "-"), yes_no(load.get("met")), "-", "-", "-", "-", others))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(line) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *map(render, lines)])


def parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--flink expects KEY=VALUE, not {pair!r}")
        settings[key.strip()] = value.strip()
    return settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 200,000 rows: each job compiles its SQL anew, and the JIT warms that code up in the job's first
    # seconds; on 50,000 rows that start-up was a third of the learner's time at 10 keys.
    parser.add_argument("--rows", type=int, default=200_000,
                        help="events (= feature rows) per key count, in whole windows, at least two per key")
    parser.add_argument("--keys", type=int, nargs="*", default=[10, 10_000, 100_000],
                        help="key counts to measure the learner at; none skips it")
    parser.add_argument("--sql-events", type=int, default=1_000_000, help="events for the SQL feature stage; 0 skips it")
    parser.add_argument("--live-seconds", type=float, default=30,
                        help="how long to time freshness and serving on the live stream; 0 skips it")
    parser.add_argument("--flink", action="append", default=[], metavar="KEY=VALUE",
                        help="a Flink setting for every job, on top of conf/job.yaml's (repeatable)")
    parser.add_argument("--guards-keys", type=int, default=10_000,
                        help="key count of the learner run with every safety guard on; 0 skips it")
    parser.add_argument("--parallel-keys", type=int, default=10_000,
                        help="key count of the learner run at parallelism 2 (beside parallelism 1); 0 skips it")
    parser.add_argument("--rocksdb-keys", type=int, default=100_000,
                        help="key count of the learner run on RocksDB, incremental checkpoints; 0 skips it")
    parser.add_argument("--fixed-cost-runs", type=int, default=2, help="runs on 100 events that time a job's fixed cost")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 10, 10,000 and 100,000 keys, 20,000 rows (two windows per key"
                             " at least), 200,000 SQL stage events, one fixed-cost run, 10 s live")
    args = parser.parse_args(argv)
    if args.quick:
        args.keys, args.rows, args.sql_events, args.fixed_cost_runs = [10, 10_000, 100_000], 20_000, 200_000, 1
        args.live_seconds = 10
    try:
        flink_settings = parse_settings(args.flink)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    try:
        check_plain_model(load_config(os.path.join(stack.PROJECT_DIR, BASE_CONFIG))["model"])
    except BenchError as e:
        sys.exit(f"error: {e}")

    started = time.monotonic()
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    bench = Bench(run_id, flink_settings, args.fixed_cost_runs)
    results = {"run_id": run_id, "machine": machine(), "command": " ".join(["scripts/bench.py", *sys.argv[1:]]),
               "rows": args.rows, "keys": args.keys, "flink_settings": flink_settings, "learner": [],
               "fixed_cost_s": {}}
    log(f"benchmark {run_id} on {results['machine']['summary']}")
    try:
        if args.keys:
            results["fixed_cost_s"]["learner"] = bench.fixed_cost(LEARNER_JOB, "learner")
        for keys in args.keys:
            results["learner"].append(bench.learner(keys, args.rows, results["fixed_cost_s"]["learner"]))
        for variant, keys in (("guards on", args.guards_keys), ("parallelism 2", args.parallel_keys),
                              ("rocksdb", args.rocksdb_keys)):
            if args.keys and keys:
                results["learner"].append(bench.learner(keys, args.rows, results["fixed_cost_s"]["learner"], variant))
        if args.sql_events:
            results["fixed_cost_s"]["sql_stage"] = bench.fixed_cost(SQL_STAGE_JOB, "SQL stage")
            results["sql_stage"] = bench.sql_stage(args.sql_events, results["fixed_cost_s"]["sql_stage"])
        if args.live_seconds:
            results["live"] = bench.live(args.live_seconds)
    except BenchError as e:
        log(f"error: {e}")
        results["error"] = str(e)
    finally:
        bench.delete_topics()
    results["seconds"] = time.monotonic() - started

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    path = RUN_DIR / "results.json"
    path.write_text(json.dumps(results, indent=2))
    fixed = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in results["fixed_cost_s"].items())
    print()
    print(table(results))
    print(f"\npipeline rates: rows / (job RUNNING -> FINISHED - fixed cost); fixed cost = the job on 100 events: {fixed}")
    print(f"live stream: checkpoints every {results['live']['checkpoint_interval']}, 1 s windows,"
          f" {results['live']['keys']} keys and {results['live']['quiet_keys']} quiet ones"
          if "live" in results else "live stream: not measured")
    print(f"{results['machine']['summary']}; the benchmark took {results['seconds'] / 60:.1f} min; results in {path}")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
