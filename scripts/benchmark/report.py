"""The benchmark's table: one line per measurement made, with its goal and whether it was met.

>>> number(None), number(1234.5), number(0.4567, "x", 2)
('too short', '1,234', '0.46x')
>>> yes_no(True), yes_no(False), yes_no(None)
('yes', 'NO', '-')
"""

from __future__ import annotations

import os


def machine() -> dict:
    """Cores, memory and CPU model, from /proc."""
    with open("/proc/meminfo") as f:
        memory_gib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) / 1024**2
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    cores = os.cpu_count()
    return {
        "cores": cores,
        "memory_gib": round(memory_gib, 1),
        "cpu": model,
        "summary": f"{cores} cores ({model}), {memory_gib:.1f} GiB RAM",
    }


def yes_no(met) -> str:
    return "-" if met is None else "yes" if met else "NO"


def number(value, suffix: str = "", digits: int = 0) -> str:
    """A measured value for the table; a rate the job ran too briefly to time is 'too short'."""
    return "too short" if value is None else f"{value:,.{digits}f}{suffix}"


def table(results: dict) -> str:
    """The side-by-side table: one line per measurement made, nothing else."""
    header = (
        "measure",
        "measured on",
        "windows/key",
        "plain loop",
        "pipeline",
        "ratio",
        "goal",
        "met",
        "checkpoints: n, max size, max time",
        "plain RSS",
        "TM JVM RSS",
        "TM Python RSS",
        "other jobs",
    )
    lines = []
    # A variant's rate beside the default's only on the same rows: a shorter job pays more of its start-up.
    default_rates = {
        (row["keys"], row["rows"]): row["pipeline"]["rows_per_s"]
        for row in results["learner"]
        if not row.get("variant")
    }
    for row in results["learner"]:
        plain, pipeline, goal, variant = row["plain"], row["pipeline"], row["goal_ratio"], row.get("variant")
        beside = ""
        if variant and (default := default_rates.get((row["keys"], row["rows"]))) and pipeline["rows_per_s"]:
            beside = f"; {pipeline['rows_per_s'] / default:.2f}x the default's rate"
        checkpoints = pipeline["checkpoints"]
        lines.append(
            (
                f"learner, {row['keys']:,} keys{', ' + variant if variant else ''} (rows/s{beside})",
                f"{row['rows']:,} rows" + (f", fastest of {len(row['runs'])}" if len(row.get("runs", ())) > 1 else ""),
                f"{row['windows']:,}",
                f"{plain['rows_per_s']:,.0f}",
                number(pipeline["rows_per_s"]),
                number(row["ratio"], "x", 2),
                "-" if goal is None else f">= {goal:.2f}x",
                yes_no(row["met"]),
                (
                    f"{checkpoints['completed']}, {checkpoints['max_size_mb']:,.1f} MB, "
                    f"{checkpoints['max_duration_ms']:,} ms"
                ),
                f"{plain['peak_rss_mb']:,.0f} MB",
                f"{pipeline['peak_jvm_rss_mb']:,.0f} MB",
                f"{pipeline['peak_python_rss_mb']:,.0f} MB",
                str(pipeline["other_jobs"]),
            )
        )
    if "sql_stage" in results:
        sql, run = results["sql_stage"], results["sql_stage"]["run"]
        lines.append(
            (
                "SQL feature stage (events/s; plain: json format)",
                f"{sql['events']:,} events",
                f"{sql['windows']:,}",
                number(sql["plain_json_events_per_s"]),
                number(sql["events_per_s"]),
                number(sql["ratio"], "x", 2),
                f">= {sql['goal_events_per_s']:,}",
                yes_no(sql["met"]),
                "-",
                "-",
                f"{run['peak_jvm_rss_mb']:,.0f} MB",
                f"{run['peak_python_rss_mb']:,.0f} MB",
                str(run["other_jobs"]),
            )
        )
    if "live" in results:
        live = results["live"]
        fresh, predict, others = live["freshness_s"], live["predict_ms"], str(live["other_jobs"])

        def live_line(measure: str, measured_on: str, pipeline: str, goal: str = "-", met: str = "-") -> tuple:
            """A line of the live stream: no plain loop, ratio, checkpoints or memory beside it."""
            return (measure, measured_on, "-", "-", pipeline, "-", goal, met, "-", "-", "-", "-", others)

        goal_p99 = f"p99 < {fresh['goal_p99']:g}"
        lines += [
            live_line(
                "freshness p50 / p99 (s)",
                f"{fresh['samples']:,} snapshots",
                f"{fresh['p50']:.2f} / {fresh['p99']:.2f}",
                goal_p99,
                yes_no(fresh["met"]),
            ),
            live_line(
                "freshness, quiet keys p50 / p99 (s)",
                f"{fresh['quiet_samples']:,} snapshots",
                f"{fresh['quiet_p50']:.2f} / {fresh['quiet_p99']:.2f}",
                goal_p99,
                yes_no(fresh["quiet_met"]),
            ),
            live_line(
                "  of which the job's: to the learner's call (s)",
                "-",
                f"{fresh['published_p50']:.2f} / {fresh['published_p99']:.2f}",
            ),
            live_line(
                "serving predict p50 / p99 (ms)",
                f"{predict['requests']:,} requests",
                f"{predict['p50']:.2f} / {predict['p99']:.2f}, {predict['failed']} failed",
                f"p99 < {predict['goal_p99']:g}, 0 failed",
                yes_no(predict["met"]),
            ),
        ]
        for load in live.get("concurrent", []):
            lines.append(
                live_line(
                    f"serving, {load['server']}, {load['connections']} connections",
                    f"{load['requests']:,} requests",
                    f"{load['rps']:,}/s, p99 {load['p99_ms']:.2f} ms, {load['failed']} failed",
                    load.get("goal", "-"),
                    yes_no(load.get("met")),
                )
            )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(line) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *map(render, lines)])
