"""Side-by-side benchmark: the Flink learner against the plain kafka-python + River loop a user would
otherwise write, the SQL feature stage alone, freshness to serving, and serving latency during swaps.

    .venv/bin/python scripts/bench.py            # needs Kafka and Flink (scripts/bench.sh starts them)
    .venv/bin/python scripts/bench.py --quick    # small sizes, a couple of minutes

Prints a table and writes run/bench/results.json. Job throughput is rows over the job's run time
minus the fixed cost of starting a job, measured as the run time of a 100-row job of the same kind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from jobs.config import derive_config, load_config
from jobs.topics import declared_topics, ensure_topics
from udfs.model_spec import build_model

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_DIR = os.path.join(PROJECT_DIR, "run", "bench")
REST = "http://localhost:8081"
WINDOW_MS = 1000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def rest(path: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(REST + path, method=method), timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


def bench_config(name: str, overrides: dict):
    run_id = uuid.uuid4().hex[:8]
    config = derive_config(load_config(os.path.join(PROJECT_DIR, "conf", "job.yaml")),
                           os.path.join(RUN_DIR, "conf", f"{name}-{run_id}.yaml"), run_id, overrides)
    ensure_topics(config["kafka.bootstrap_servers"], declared_topics(config))
    return config


def events(n_rows: int, n_keys: int, per_window: int = 1, seed: int = 1):
    """Row i belongs to key i % n_keys; each key gets `per_window` events per 1 s window."""
    rng = random.Random(seed)
    for i in range(n_rows):
        window = (i // n_keys) // per_window
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        yield {"entity": f"k{i % n_keys}", "x1": x1, "x2": x2, "label": x1 + 0.5 * x2 > 0, "ts": window * WINDOW_MS + 1}


def produce(topic: str, records) -> int:
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:9092", linger_ms=20, batch_size=256 * 1024)
    count = 0
    for record in records:
        producer.send(topic, key=record["entity"].encode(), value=json.dumps(record).encode())
        count += 1
    producer.flush()
    producer.close()
    return count


def run_job(job: str, config) -> float:
    """Submit a bounded job, wait for it to finish; returns its run time in seconds."""
    out = subprocess.run(["bash", os.path.join(PROJECT_DIR, "scripts", "submit.sh"), job, "--config", config.source],
                         capture_output=True, text=True, cwd=PROJECT_DIR)
    if out.returncode != 0:
        raise RuntimeError(f"submit failed:\n{out.stderr[-2000:]}")
    job_id = out.stdout.strip().splitlines()[-1]
    while (state := rest(f"/jobs/{job_id}")["state"]) not in ("FINISHED", "FAILED", "CANCELED"):
        time.sleep(0.5)
    if state != "FINISHED":
        raise RuntimeError(f"job {job_id} ended {state}: {rest(f'/jobs/{job_id}/exceptions').get('root-exception', '')[:2000]}")
    info = rest(f"/jobs/{job_id}")
    return (info["end-time"] - info["start-time"]) / 1000


def learner_rows_per_s(n_rows: int, n_keys: int, startup_s: float) -> tuple[float, float]:
    config = bench_config(f"learner-{n_keys}", {"source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0}})
    produce(config["topics.events.name"], events(n_rows, n_keys))
    seconds = run_job("jobs/learner_job.py", config)
    return n_rows / max(seconds - startup_s, 1e-3), seconds


def plain_loop_rows_per_s(n_rows: int, n_keys: int) -> float:
    """The design a user would otherwise pick: one consumer, a dict of River models, predict then learn."""
    config = bench_config(f"plain-{n_keys}", {})
    topic = config["topics.events.name"]
    produce(topic, events(n_rows, n_keys))
    spec = load_config(os.path.join(PROJECT_DIR, "conf", "job.yaml"))["model"]
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9092", enable_auto_commit=False, max_poll_records=5000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    models, seen, started = {}, 0, None
    while seen < n_rows:
        for records in consumer.poll(timeout_ms=1000).values():
            started = started or time.perf_counter()
            for record in records:
                event = json.loads(record.value)
                model = models.get(event["entity"])
                if model is None:
                    model = models[event["entity"]] = build_model(spec)
                x = {"x1_avg": event["x1"], "x2_avg": event["x2"]}
                model.predict_proba_one(x)
                model.learn_one(x, event["label"])
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return n_rows / elapsed


def sql_stage_events_per_s(n_events: int, startup_s: float) -> float:
    config = bench_config("sql-stage", {"source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0}})
    produce(config["topics.events.name"], events(n_events, 10, per_window=100))
    seconds = run_job(os.path.join(PROJECT_DIR, "scripts", "bench_sql_stage.py"), config)
    return n_events / max(seconds - startup_s, 1e-3)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def freshness_and_serving(seconds: float) -> dict:
    """A live stream through the job into a replica: freshness per snapshot, predict latency during swaps."""
    config = bench_config("live", {
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
        "window": {"size_seconds": 1},
        "snapshots": {"policy": "every_window"},
        "flink": {"execution.checkpointing.interval": "500 ms"},
    })
    job_id = subprocess.run(["bash", os.path.join(PROJECT_DIR, "scripts", "submit.sh"), "jobs/learner_job.py",
                             "--config", config.source], capture_output=True, text=True, check=True,
                            cwd=PROJECT_DIR).stdout.strip().splitlines()[-1]
    port = 18199
    replica = subprocess.Popen([sys.executable, "-m", "serving.replica", "--config", config.source, "--port", str(port)],
                               cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = [f"k{i}" for i in range(10)]
    stop = threading.Event()

    def live_events():
        producer = KafkaProducer(bootstrap_servers="127.0.0.1:9092")
        rng = random.Random(3)
        while not stop.is_set():
            for key in keys:
                x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
                event = {"entity": key, "x1": x1, "x2": x2, "label": x1 > 0, "ts": int(time.time() * 1000)}
                producer.send(config["topics.events.name"], key=key.encode(), value=json.dumps(event).encode())
            producer.flush()
            time.sleep(0.05)
        producer.close()

    def call(path, body=None):
        data = json.dumps(body).encode() if body else None
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data), timeout=5) as r:
            return json.loads(r.read())

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call("/readyz")["ready"]:
                    break
            except OSError:
                time.sleep(0.3)
        producer = threading.Thread(target=live_events)
        producer.start()
        freshness, latencies, failures, versions = [], [], 0, {}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key in keys:
                started = time.perf_counter()
                try:
                    answer = call("/predict", {"key": key, "features": {"x1_avg": 0.1, "x2_avg": -0.2}})
                    latencies.append(time.perf_counter() - started)
                except urllib.error.HTTPError as e:
                    failures += e.code != 404  # a key before its first model is not a failure
                    continue
                except OSError:
                    failures += 1
                    continue
                if answer["model_version"] > versions.get(key, 0):
                    versions[key] = answer["model_version"]
                    freshness.append(call(f"/models/{key}")["freshness_s"])
        stop.set()
        producer.join()
    finally:
        replica.terminate()
        replica.wait(timeout=10)
        rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")
    return {"freshness_p50_s": percentile(freshness, 0.5), "freshness_p99_s": percentile(freshness, 0.99),
            "freshness_samples": len(freshness), "predict_p50_ms": percentile(latencies, 0.5) * 1000,
            "predict_p99_ms": percentile(latencies, 0.99) * 1000, "predict_requests": len(latencies),
            "predict_failures": failures}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    sizes = {10: 20_000, 10_000: 40_000, 100_000: 200_000}
    sql_events, live_seconds = 400_000, 20
    if args.quick:
        sizes, sql_events, live_seconds = {10: 2_000, 10_000: 10_000, 100_000: 100_000}, 50_000, 8
    os.makedirs(RUN_DIR, exist_ok=True)
    results = {"machine": f"{os.cpu_count()} cores", "sizes": sizes, "rows": []}

    log("measuring the fixed cost of a job (a 100-row run of each job)")
    _, learner_startup = learner_rows_per_s(100, 10, 0.0)
    config = bench_config("sql-startup", {"source": {"bounded_mode": "latest-offset"}})
    produce(config["topics.events.name"], events(100, 10))
    sql_startup = run_job(os.path.join(PROJECT_DIR, "scripts", "bench_sql_stage.py"), config)
    log(f"  learner job {learner_startup:.1f}s, SQL stage job {sql_startup:.1f}s")

    for n_keys, n_rows in sizes.items():
        log(f"plain loop, {n_keys} keys, {n_rows} rows")
        plain = plain_loop_rows_per_s(n_rows, n_keys)
        log(f"  {plain:,.0f} rows/s; pipeline, same data")
        pipeline, seconds = learner_rows_per_s(n_rows, n_keys, learner_startup)
        log(f"  {pipeline:,.0f} rows/s ({seconds:.1f}s run)")
        goal = 0.5 if n_keys == 10 else 0.25 if n_keys == 100_000 else None
        results["rows"].append({"what": f"learner, {n_keys} keys", "plain_loop": plain, "pipeline": pipeline,
                                "ratio": pipeline / plain, "goal": goal, "unit": "rows/s"})

    log(f"SQL feature stage, {sql_events} events")
    sql = sql_stage_events_per_s(sql_events, sql_startup)
    results["rows"].append({"what": "SQL feature stage", "plain_loop": None, "pipeline": sql, "ratio": None,
                            "goal": 100_000, "unit": "events/s"})
    log(f"  {sql:,.0f} events/s; live stream for {live_seconds}s: freshness and serving latency")
    results["live"] = freshness_and_serving(live_seconds)

    with open(os.path.join(RUN_DIR, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(f"{'measure':28s} {'plain loop':>12s} {'pipeline':>12s} {'ratio':>7s} {'goal':>10s}")
    for row in results["rows"]:
        plain = f"{row['plain_loop']:,.0f}" if row["plain_loop"] else "-"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        goal = (f">= {row['goal']:.2f}" if row["goal"] < 1 else f">= {row['goal']:,}") if row["goal"] else "-"
        print(f"{row['what'] + ' (' + row['unit'] + ')':28s} {plain:>12s} {row['pipeline']:>12,.0f} {ratio:>7s} {goal:>10s}")
    live = results["live"]
    print(f"freshness, window close -> servable: p50 {live['freshness_p50_s']:.2f}s, p99 {live['freshness_p99_s']:.2f}s "
          f"({live['freshness_samples']} snapshots; goal p99 < 1s)")
    print(f"serving predict during swaps: p50 {live['predict_p50_ms']:.2f}ms, p99 {live['predict_p99_ms']:.2f}ms, "
          f"{live['predict_failures']} failed of {live['predict_requests']} (goal p99 < 5ms, 0 failed)")
    print(f"results written to {os.path.join(RUN_DIR, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
