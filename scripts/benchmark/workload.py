"""The benchmark's generated events, written to Kafka, and the plain loop that reads them: what a user
would otherwise write (a kafka-python consumer and a dict of River models), in a process of its own.

>>> workload = Workload(keys=3, windows=2, window_ms=1_000)
>>> workload.events, workload.feature_rows
(6, 6)
>>> [key for key, _ in event_records(workload, partition=0, partitions=2)]
[b'k0', b'k2', b'k0', b'k2']
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from river import linear_model, optim, preprocessing

from scripts import stack
from scripts.benchmark import PROGRESS_EVERY_S, BenchError, log
from udfs.model_spec import build_model

FIRST_WINDOW_MS = 1_700_000_000_000


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
    log(
        f"producing {workload.events:,} events ({workload.keys:,} keys x {workload.windows:,} windows"
        f" x {workload.per_window:,} per window) to {topic}"
    )
    started = time.monotonic()
    n = partitions
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        count = sum(pool.map(produce_partition, [topic] * n, [workload] * n, range(n), [n] * n))
    seconds = time.monotonic() - started
    log(f"  {count:,} events in {seconds:.1f}s ({count / seconds:,.0f} events/s)")


def plain_model():
    """The plain loop's model, written as a user would; `check_plain_model` holds it to conf/job.yaml."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


def check_plain_model(model_spec: dict, source: str) -> None:
    if build_model(model_spec)._get_params() != plain_model()._get_params():
        raise BenchError(f"{source}'s model: is not the plain loop's {plain_model()}; update plain_model()")


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
    return {
        "rows": learned,
        "models": len(models),
        "seconds": seconds,
        "rows_per_s": learned / seconds,
        "peak_rss_mb": stack.proc_status_kb("self", "VmHWM") / 1024,
    }


def run_plain_loop(topic: str, rows: int) -> dict:
    """`plain_loop` in a fresh process, so that its memory is measured alone."""
    log(f"plain loop: {rows:,} rows from {topic}")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            result = pool.submit(plain_loop, topic, rows).result()
        except TimeoutError as e:
            raise BenchError(f"plain loop: {e}") from None
    log(
        f"  {result['rows_per_s']:,.0f} rows/s ({result['seconds']:.1f}s, {result['models']:,} models,"
        f" peak RSS {result['peak_rss_mb']:,.0f} MB)"
    )
    return result
