"""The live stream: events stamped with the wall clock through the learner job into a serving replica;
each new model version's freshness (window close -> servable) and predict latency while snapshots
swap, then kept-alive load from several connections on the replica's server, and then on a replica with
the standard library's server in its place.

>>> percentile([4, 1, 3, 2], 0.5), percentile([4, 1, 3, 2], 0.99)
(2, 4)
>>> len(live_keys()[0]), len(live_keys()[1])
(1000, 100)
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import random
import socket
import statistics
import time

from kafka import KafkaProducer

from scripts import stack
from scripts.benchmark import PROGRESS_EVERY_S, BenchError, log
from scripts.benchmark.flink_runs import LEARNER_JOB, other_running_jobs
from serving.load import run_load

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
LIVE_FEATURES = ("x1_avg", "x2_avg")
# Concurrent kept-alive clients on the live replica: the goal is at 16 connections, against the
# standard library's server measured beside it.
CONCURRENT_CONNECTIONS = (1, 4, 16)
CONCURRENT_SECONDS = 5
CONCURRENT_GOAL_CONNECTIONS = 16
CONCURRENT_GOAL_SPEEDUP = 2
PREDICT_GOAL_P99_MS = 5.0


def measure(config, seconds: float) -> dict:
    """Freshness and predict latency: a live stream through the learner job, on `config` (an isolated
    copy of conf/job.yaml with LIVE_OVERRIDES), into one replica; then the concurrent load."""
    checkpoint_interval = config["flink"]["execution.checkpointing.interval"]
    log(
        f"live stream: {LIVE_KEYS} keys with an event every {LIVE_EVENT_EVERY_S * 1000:.0f} ms and {LIVE_QUIET_KEYS}"
        f" with one every {LIVE_EVENT_EVERY_S * LIVE_QUIET_EVERY_ROUNDS:g} s, 1 s windows,"
        f" checkpoints every {checkpoint_interval}, one replica; {seconds:.0f} s measured"
    )
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
        result = time_live_requests(job_id, ServingClient(replica.port), seconds)
        # Each server is loaded with its replica the only one following the topics, as on a serving host:
        # a second replica beside it, idle but applying the same 1,000 models a second, took a quarter of
        # a core of the two the measured replica, its client, the job and Kafka share.
        rows = concurrent_rows("asgi", replica.port)
        replica.stop()
        # The standard library's server, which replicas had before, on the same live topics for the comparison.
        old_replica = stack.Replica(config, free_port(), "--server", "stdlib")
        old_replica.wait_ready()
        result["concurrent"] = judge_concurrent(rows + concurrent_rows("stdlib", old_replica.port))
        if stack.job_state(job_id) != "RUNNING":
            raise BenchError(
                f"live stream: job {job_id} is {stack.job_state(job_id)}:\n{stack.root_exception(job_id, wait_s=15)}"
            )
    except AssertionError as e:  # the job or the replica did not come up
        raise BenchError(f"live stream: {e}") from None
    finally:
        stop.set()
        if producer.pid is not None:
            producer.join(timeout=10)
        for started in (replica, old_replica):
            if started is not None:
                started.stop()
        stack.cancel(job_id)
    fresh, predict = result["freshness_s"], result["predict_ms"]
    log(
        f"  freshness p50 {fresh['p50']:.2f}s, p99 {fresh['p99']:.2f}s over {fresh['samples']} snapshots"
        f" (published by the job: p50 {fresh['published_p50']:.2f}s, p99 {fresh['published_p99']:.2f}s);"
        f" quiet keys p50 {fresh['quiet_p50']:.2f}s, p99 {fresh['quiet_p99']:.2f}s over {fresh['quiet_samples']};"
        f" predict p50 {predict['p50']:.2f}ms, p99 {predict['p99']:.2f}ms, {predict['failed']} failed of"
        f" {predict['requests']:,}"
        + (f"; {result['other_jobs']} other job(s) were running" if result["other_jobs"] else "")
    )
    return {
        "checkpoint_interval": checkpoint_interval,
        "keys": LIVE_KEYS,
        "quiet_keys": LIVE_QUIET_KEYS,
        "seconds": seconds,
        **result,
    }


def concurrent_rows(server: str, port: int) -> list:
    """Kept-alive `POST /predict` from 1, 4 and 16 connections over the live keys, while their snapshots
    swap, on one server (serving.load)."""
    rows = []
    for connections in CONCURRENT_CONNECTIONS:
        load = run_load(port, connections, CONCURRENT_SECONDS, live_keys()[0], LIVE_FEATURES)
        log(
            f"  {server} server, {connections} connections: {load['rps']:,} requests/s,"
            f" p50 {load['p50_ms']:.2f}ms, p99 {load['p99_ms']:.2f}ms, {load['failed']} failed"
        )
        rows.append({"server": server, **load})
    return rows


def judge_concurrent(rows: list) -> list:
    """The rows, asgi then stdlib, with the goal at 16 connections set on the asgi row and whether it was met."""
    by = {(row["server"], row["connections"]): row for row in rows}
    new, old = by[("asgi", CONCURRENT_GOAL_CONNECTIONS)], by[("stdlib", CONCURRENT_GOAL_CONNECTIONS)]
    new["goal"] = f"p99 < {PREDICT_GOAL_P99_MS:g}, 0 failed, >= {CONCURRENT_GOAL_SPEEDUP:g}x stdlib's {old['rps']:,}/s"
    new["met"] = (
        new["p99_ms"] < PREDICT_GOAL_P99_MS
        and new["failed"] == 0
        and new["rps"] >= CONCURRENT_GOAL_SPEEDUP * old["rps"]
    )
    return rows


def time_live_requests(job_id: str, client: ServingClient, seconds: float) -> dict:
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
                    # The job's part: window close -> the start of the learner's call that published it
                    # (the envelope's emit time, read once per call).
                    published.append((served["emitted_at_ms"] - served["window_end_ms"]) / 1000)
                except (OSError, http.client.HTTPException) as e:
                    failures.append(f"GET /models/{key}: {e!r}")
        if now - last_report >= PROGRESS_EVERY_S:
            others = max(others, other_running_jobs(job_id))
            log(
                f"  {len(latencies):,} requests, p99 so far {percentile(latencies, 0.99):.2f}ms;"
                f" {len(freshness)} new versions, freshness p99 so far {percentile(freshness, 0.99):.2f}s"
            )
            last_report = now
    others = max(others, other_running_jobs(job_id))
    fresh_p99, predict_p99 = percentile(freshness, 0.99), percentile(latencies, 0.99)
    return {
        "freshness_s": {
            "samples": len(freshness),
            "p50": percentile(freshness, 0.5),
            "p99": fresh_p99,
            "published_p50": percentile(published, 0.5),
            "published_p99": percentile(published, 0.99),
            "max": max(freshness, default=math.nan),
            "goal_p99": FRESHNESS_GOAL_P99_S,
            "met": bool(freshness) and fresh_p99 < FRESHNESS_GOAL_P99_S,
            "quiet_samples": len(quiet_freshness),
            "quiet_p50": percentile(quiet_freshness, 0.5),
            "quiet_p99": percentile(quiet_freshness, 0.99),
            "quiet_met": bool(quiet_freshness) and percentile(quiet_freshness, 0.99) < FRESHNESS_GOAL_P99_S,
        },
        "predict_ms": {
            "requests": len(latencies) + len(failures),
            "failed": len(failures),
            "first_failures": failures[:5],
            "p50": percentile(latencies, 0.5),
            "p99": predict_p99,
            "mean": statistics.fmean(latencies) if latencies else math.nan,
            "max": max(latencies, default=math.nan),
            "goal_p99": PREDICT_GOAL_P99_MS,
            "met": bool(latencies) and predict_p99 < PREDICT_GOAL_P99_MS and not failures,
        },
        "other_jobs": others,
    }


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
        keys = busy + quiet[start : start + quiet_per_round]
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
