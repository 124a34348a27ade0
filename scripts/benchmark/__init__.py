"""The benchmark's parts (`scripts/bench.py` runs them): the generated workload and the plain loop
(`workload`), bounded Flink jobs followed through the REST API (`flink_runs`), the live stream's
freshness and serving latency (`live`) and the printed table (`report`).

>>> BenchError("a job stalled").args
('a job stalled',)
"""

import time

# How often long measurements say where they are.
PROGRESS_EVERY_S = 10


class BenchError(RuntimeError):
    """A measurement that could not be made: a job that failed or stalled, a topic short of events."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
