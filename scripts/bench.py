"""Side-by-side benchmark, in one run: the learner job against the plain kafka-python + River loop a
user would otherwise write, the SQL feature stage alone, freshness to serving, and serving latency
while models swap.

    bash scripts/bench.sh                      # starts Kafka and Flink if needed; about 13 minutes on 2 cores
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
Each learner row runs both designs twice (`--runs`), alternating, and keeps the fastest run of each.

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
import json
import os
import pathlib
import sys
import time
import uuid

from kafka.admin import KafkaAdminClient

from jobs.config import load_config
from scripts import stack
from scripts.benchmark import BenchError, flink_runs, live, log, report
from scripts.benchmark.flink_runs import LEARNER_JOB, SQL_STAGE_JOB
from scripts.benchmark.workload import Workload, check_plain_model, produce, run_plain_loop

BASE_CONFIG = "conf/job.yaml"
RUN_DIR = pathlib.Path(stack.PROJECT_DIR, "run", "bench")
# Pipeline rows/s as a share of the plain loop's, by key count; and the SQL stage's events/s.
LEARNER_GOALS = {10: 0.5, 10_000: 0.5, 100_000: 0.4}
SQL_STAGE_GOAL = 100_000
# `--quick`'s rows per key count: at 20,000 the 10- and 10,000-key jobs ran shorter than their 2 s fixed
# cost and went unrated; at 60,000 each runs about twice it.
QUICK_ROWS = 60_000
SQL_STAGE_KEYS, SQL_STAGE_EVENTS_PER_WINDOW = 100, 1_000
WARM_UP_EVENTS = 100_000
# The learner bounded at the topic's end, and the same with every model-safety guard of conf/job.yaml on.
BOUNDED_SOURCE = {"source": {"startup_mode": "earliest-offset", "bounded_mode": "latest-offset"}}
GUARDS_ON = {
    "safety": {
        "drift": {"enabled": True},
        "gate": {"enabled": True, "rollback": True},
        "challenger": {"enabled": True},
        "quality": {"enabled": True},
    }
}
# The learner's variants measured beside the default configuration, each on its own copy of the topic.
VARIANTS = {
    "guards on": GUARDS_ON,
    # Two learner subtasks on this 2-core machine: what a second core's worth of slots gives.
    "parallelism 2": {"flink": {"parallelism.default": 2}},
    "rocksdb": {"flink": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": True}},
}


class Bench:
    """The measurements of one benchmark run; each makes its own topics, deleted at the end."""

    def __init__(self, run_id: str, flink_settings: dict, fixed_cost_runs: int, runs: int):
        self.run_id = run_id
        self.flink_settings = flink_settings
        self.fixed_cost_runs = fixed_cost_runs
        self.runs = runs
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
        flink_runs.run_job(job, config, f"{label}, warm-up run", workload.events)
        config, workload = self.workload_topic(f"fixed-cost-{name}", keys=10, windows=10)
        runs = range(1, self.fixed_cost_runs + 1)
        return min(
            flink_runs.run_job(job, config, f"{label} fixed cost, run {i}", workload.events).seconds for i in runs
        )

    def learner(self, keys: int, rows: int, fixed_cost_s: float, variant: str | None = None) -> dict:
        """The learner job against the plain loop on one topic; `variant` names a VARIANTS configuration.

        Both run `self.runs` times, alternating, and the row keeps the fastest of each, as timeit does:
        what slows a run down (the JIT compiling a fresh TaskManager's code in its first job, the other
        work of a shared 2-core machine) only ever adds time. Every run's rates are in the log and the row.
        A variant, which has no goal, runs once."""
        # Two windows at least: a key's first row only creates its model, the second reads its state back.
        name = f"learner-{keys}" + (f"-{variant.replace(' ', '-')}" if variant else "")
        config, workload = self.workload_topic(
            name, keys, windows=max(2, rows // keys), overrides=VARIANTS[variant] if variant else None
        )
        label = f"pipeline, {keys:,} keys" + (f", {variant}" if variant else "")
        attempts, runs = [], 1 if variant else self.runs
        for attempt in range(1, runs + 1):
            plain = run_plain_loop(config["topics.events.name"], workload.feature_rows)
            run_label = label if runs == 1 else f"{label}, run {attempt} of {runs}"
            run = flink_runs.run_job(LEARNER_JOB, config, run_label, workload.events)
            attempts.append((plain, run, flink_runs.rate(workload.feature_rows, run, fixed_cost_s)))
        plain = max((plain for plain, _, _ in attempts), key=lambda plain: plain["rows_per_s"])
        run, pipeline = max(((run, rate) for _, run, rate in attempts), key=lambda pair: pair[1] or 0)
        ratio = None if pipeline is None else pipeline / plain["rows_per_s"]
        if ratio is not None:
            best = "" if runs == 1 else f" (fastest of {runs} runs each)"
            log(f"  pipeline {pipeline:,.0f} rows/s = {ratio:.2f} x the plain loop's {plain['rows_per_s']:,.0f}{best}")
        goal = None if variant else LEARNER_GOALS.get(keys)
        return {
            "keys": keys,
            "variant": variant,
            "rows": workload.feature_rows,
            "windows": workload.windows,
            "runs": [
                {"plain_rows_per_s": plain["rows_per_s"], "pipeline_rows_per_s": rate, "job_seconds": run.seconds}
                for plain, run, rate in attempts
            ],
            "plain": plain,
            "pipeline": {**dataclasses.asdict(run), "rows_per_s": pipeline},
            "ratio": ratio,
            "goal_ratio": goal,
            "met": None if goal is None or ratio is None else ratio >= goal,
        }

    def sql_stage(self, events: int, fixed_cost_s: float) -> dict:
        per_window = SQL_STAGE_KEYS * SQL_STAGE_EVENTS_PER_WINDOW
        config, workload = self.workload_topic(
            "sql-stage", SQL_STAGE_KEYS, max(1, events // per_window), SQL_STAGE_EVENTS_PER_WINDOW
        )
        run = flink_runs.run_job(SQL_STAGE_JOB, config, "SQL feature stage", workload.events)
        events_per_s = flink_runs.rate(workload.events, run, fixed_cost_s)
        # The same topic through Flink's own JSON format, unchecked: what the checks cost, as a ratio.
        plain_run = flink_runs.run_job(
            SQL_STAGE_JOB, config, "SQL feature stage, plain JSON source", workload.events, "--plain-json"
        )
        plain = flink_runs.rate(workload.events, plain_run, fixed_cost_s)
        ratio = None if events_per_s is None or plain is None else events_per_s / plain
        if events_per_s is not None:
            log(
                f"  SQL feature stage {events_per_s:,.0f} events/s"
                + (f" = {ratio:.2f} x the plain JSON source's {plain:,.0f}" if ratio is not None else "")
            )
        return {
            "events": workload.events,
            "keys": workload.keys,
            "windows": workload.windows,
            "events_per_key_window": workload.per_window,
            "run": dataclasses.asdict(run),
            "events_per_s": events_per_s,
            "plain_json_events_per_s": plain,
            "ratio": ratio,
            "goal_events_per_s": SQL_STAGE_GOAL,
            "met": None if events_per_s is None else events_per_s >= SQL_STAGE_GOAL,
        }

    def live(self, seconds: float) -> dict:
        """Freshness and predict latency: a live stream through the learner job into one replica."""
        return live.measure(self.config("live", live.LIVE_OVERRIDES), seconds)

    def delete_topics(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=stack.BOOTSTRAP)
        try:
            admin.delete_topics(self.topics)
        finally:
            admin.close()


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
    # 1,000,000 rows: each job compiles its SQL anew, and the JIT compiles that code again in the job's
    # first seconds, which a job running for days pays once: on 50,000 rows that start-up was a third of
    # the learner's time at 10 keys, and on 200,000 the JIT's compiler threads still used 2.7-4.8 s of CPU
    # in a 15 s job, on the two cores the learner shares (README: Performance).
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="events (= feature rows) per key count, in whole windows, at least two per key",
    )
    parser.add_argument(
        "--keys",
        type=int,
        nargs="*",
        default=[10, 10_000, 100_000],
        help="key counts to measure the learner at; none skips it",
    )
    parser.add_argument(
        "--sql-events", type=int, default=1_000_000, help="events for the SQL feature stage; 0 skips it"
    )
    parser.add_argument(
        "--live-seconds",
        type=float,
        default=30,
        help="how long to time freshness and serving on the live stream; 0 skips it",
    )
    parser.add_argument(
        "--flink",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Flink setting for every job, on top of conf/job.yaml's (repeatable)",
    )
    parser.add_argument(
        "--variant-rows",
        type=int,
        default=200_000,
        help="rows of each variant's run (guards on, parallelism 2, RocksDB), at most --rows; one run each",
    )
    parser.add_argument(
        "--guards-keys",
        type=int,
        default=10_000,
        help="key count of the learner run with every safety guard on; 0 skips it",
    )
    parser.add_argument(
        "--parallel-keys",
        type=int,
        default=10_000,
        help="key count of the learner run at parallelism 2 (beside parallelism 1); 0 skips it",
    )
    parser.add_argument(
        "--rocksdb-keys",
        type=int,
        default=100_000,
        help="key count of the learner run on RocksDB, incremental checkpoints; 0 skips it",
    )
    parser.add_argument(
        "--fixed-cost-runs", type=int, default=2, help="runs on 100 events that time a job's fixed cost"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=2,
        help="runs of each learner row, the plain loop's and the job's alternating; the fastest of each counts",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 10, 10,000 and 100,000 keys, 60,000 rows (two windows per key"
        " at least), one run of each, 200,000 SQL stage events, one fixed-cost run, 10 s live",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.keys, args.rows, args.sql_events, args.fixed_cost_runs = [10, 10_000, 100_000], QUICK_ROWS, 200_000, 1
        args.runs = 1
        args.live_seconds = 10
    for option in ("rows", "variant_rows", "runs", "fixed_cost_runs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, not {getattr(args, option)}")
    try:
        flink_settings = parse_settings(args.flink)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    try:
        check_plain_model(load_config(os.path.join(stack.PROJECT_DIR, BASE_CONFIG))["model"], BASE_CONFIG)
    except BenchError as e:
        sys.exit(f"error: {e}")

    started = time.monotonic()
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    bench = Bench(run_id, flink_settings, args.fixed_cost_runs, args.runs)
    results = {
        "run_id": run_id,
        "machine": report.machine(),
        "command": " ".join(["scripts/bench.py", *sys.argv[1:]]),
        "rows": args.rows,
        "runs": args.runs,
        "keys": args.keys,
        "flink_settings": flink_settings,
        "learner": [],
        "fixed_cost_s": {},
    }
    log(f"benchmark {run_id} on {results['machine']['summary']}")
    try:
        if args.keys:
            results["fixed_cost_s"]["learner"] = bench.fixed_cost(LEARNER_JOB, "learner")
        for keys in args.keys:
            results["learner"].append(bench.learner(keys, args.rows, results["fixed_cost_s"]["learner"]))
        variant_rows = min(args.rows, args.variant_rows)
        for variant, keys in (
            ("guards on", args.guards_keys),
            ("parallelism 2", args.parallel_keys),
            ("rocksdb", args.rocksdb_keys),
        ):
            if args.keys and keys:
                results["learner"].append(
                    bench.learner(keys, variant_rows, results["fixed_cost_s"]["learner"], variant)
                )
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
    print(report.table(results))
    print(
        f"\npipeline rates: rows / (job RUNNING -> FINISHED - fixed cost); fixed cost = the job on 100 events: {fixed}"
    )
    if args.runs > 1 and results["learner"]:
        print(f"learner rows: the fastest of {args.runs} runs of the plain loop and of the job, alternating")
    print(
        f"live stream: checkpoints every {results['live']['checkpoint_interval']}, 1 s windows,"
        f" {results['live']['keys']} keys and {results['live']['quiet_keys']} quiet ones"
        if "live" in results
        else "live stream: not measured"
    )
    print(f"{results['machine']['summary']}; the benchmark took {results['seconds'] / 60:.1f} min; results in {path}")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
