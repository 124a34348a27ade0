"""Bounded Flink jobs, submitted with scripts/submit.sh and followed through Flink's REST API to FINISHED:
their time from RUNNING to FINISHED, peak memory, busy time per task and checkpoints, and a rate net
of the job's fixed cost.

>>> metric_seconds("1500"), metric_seconds("NaN")
(1.5, nan)
>>> short_name({"name": "learner -> Map"})
'learner'
"""

from __future__ import annotations

import dataclasses
import math
import time

from scripts import stack
from scripts.benchmark import PROGRESS_EVERY_S, BenchError, log

# The jobs measured, as scripts/submit.sh takes them.
LEARNER_JOB = "jobs/learner_job.py"
SQL_STAGE_JOB = "scripts/bench_sql_stage.py"
TERMINAL_STATES = ("FINISHED", "FAILED", "CANCELED")
# A bounded job whose records stop moving for this long is reported as stalled.
STALL_AFTER_S = 180


def taskmanager_rss_mb() -> tuple[float, float]:
    """RSS of the TaskManager JVMs and of their descendants (the Python workers), in MB."""
    jvm = python = 0
    for pid in stack.taskmanager_daemon_pids():
        jvm += stack.proc_status_kb(pid, "VmRSS")
        python += sum(stack.proc_status_kb(child, "VmRSS") for child in stack.descendants(pid))
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
    return (
        f"{out:,} records out of the source for {events:,} events,"
        f" {last['metrics']['read-records']:,} records into {short_name(last)}"
    )


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
    return {
        "completed": stats["counts"]["completed"],
        "max_size_mb": summary.get("checkpointed_size", {}).get("max", 0) / 2**20,
        "max_duration_ms": summary.get("end_to_end_duration", {}).get("max", 0),
    }


def vertex_summary(info: dict) -> list:
    return [
        {
            "name": v["name"],
            "status": v["status"],
            "read_records": v["metrics"]["read-records"],
            "write_records": v["metrics"]["write-records"],
            "busy_s": metric_seconds(v["metrics"].get("accumulated-busy-time")),
            "idle_s": metric_seconds(v["metrics"].get("accumulated-idle-time")),
            "backpressured_s": metric_seconds(v["metrics"].get("accumulated-backpressured-time")),
        }
        for v in info["vertices"]
    ]


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
            log(
                f"  {label}: {info['state']}, {progress(info, events)};"
                f" TaskManager RSS {jvm:,.0f} MB + Python {python:,.0f} MB"
            )
            last_report = time.monotonic()
        time.sleep(1)
    timestamps = info["timestamps"]
    seconds = (timestamps["FINISHED"] - timestamps["RUNNING"]) / 1000 if info["state"] == "FINISHED" else math.nan
    return info, JobRun(
        job_id, seconds, peak_jvm, peak_python, others, vertex_summary(info), checkpoint_summary(job_id)
    )


def why_not_finished(job_id: str, info: dict, run: JobRun) -> str:
    if info["state"] == "RUNNING" and not info["timestamps"].get("RESTARTING"):
        tasks = ", ".join(f"{short_name(v)} {v['status']}" for v in run.vertices)
        return f"made no progress for {STALL_AFTER_S} s (tasks: {tasks})"
    ended = "restarted after a failure" if info["timestamps"].get("RESTARTING") else f"ended {info['state']}"
    return f"{ended}; root exception:\n{stack.root_exception(job_id, wait_s=15)}"


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
        stack.cancel(job_id)
    if info["state"] != "FINISHED":
        raise BenchError(f"{label}: job {job_id} {why_not_finished(job_id, info, run)}")
    log(
        f"  {label}: job {job_id} FINISHED, {run.seconds:.1f}s from RUNNING; peak TaskManager RSS"
        f" {run.peak_jvm_rss_mb:,.0f} MB + Python {run.peak_python_rss_mb:,.0f} MB"
        + (f"; {run.other_jobs} other job(s) were running" if run.other_jobs else "")
    )
    log("  busy time per task: " + ", ".join(f"{short_name(v)} {v['busy_s']:.1f}s" for v in run.vertices))
    return run


def rate(units: int, run: JobRun, fixed_cost_s: float) -> float | None:
    """Units per second of the job's net time; None when the net time is shorter than the fixed cost,
    as the second-to-second variation of start-up then swamps it."""
    net = run.seconds - fixed_cost_s
    if net < fixed_cost_s:
        log(
            f"  not rated: the job ran {run.seconds:.1f}s against a fixed cost of {fixed_cost_s:.1f}s;"
            " raise the number of rows"
        )
        return None
    return units / net
