"""Train from history, then stream: the learner job over history files, stopped with a savepoint once it
has read every row, and the streaming job (Kafka) started from that savepoint, every key's state carried.

    scripts/backfill.sh --config conf/job.yaml --from PATH [--savepoint-dir DIR] [--no-stream]

Prints the savepoint, then the streaming job's id on the last line (with --no-stream, the savepoint).
Only the learner's state (uid "learner-shards") carries over: the SQL operators' uids follow the DDL's
text, which differs between the two jobs, so theirs start afresh (--allowNonRestoredState), as in
scripts/upgrade.sh. --drain fires every open window of the history first, so its last window is learned
before the savepoint; the streaming job's rows of windows a key has learned are skipped and counted
(the learner's replay guard, counter replayed_rows).

>>> import pyarrow as pa, pyarrow.parquet as pq, tempfile
>>> folder = tempfile.mkdtemp()
>>> pq.write_table(pa.table({"payload": [b"{}", b"{}"]}), os.path.join(folder, "part-0.parquet"))
>>> history_rows(folder)
2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse

import pyarrow.parquet as pq

from scripts import stack


def history_rows(path: str) -> int:
    """Rows in a Parquet file or in the Parquet files of a folder (and its subfolders), as Flink's
    filesystem connector reads them (it skips files whose names start with '.' or '_')."""
    if os.path.isfile(path):
        return pq.ParquetFile(path).metadata.num_rows
    total = 0
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "_"))]
        total += sum(
            pq.ParquetFile(os.path.join(folder, f)).metadata.num_rows for f in files if not f.startswith((".", "_"))
        )
    return total


def source_rows_read(job_id: str) -> int:
    """Rows the job's sources have read (the source operators' numRecordsIn, over their subtasks)."""
    total = 0
    for vertex in stack.rest(f"/jobs/{job_id}")["vertices"]:
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [
            m["id"]
            for m in stack.rest(path)
            if m["id"].split(".", 1)[-1].startswith("Source__") and m["id"].endswith(".numRecordsIn")
        ]
        if ids:
            query = urllib.parse.urlencode({"get": ",".join(ids)})
            total += sum(int(float(m["value"])) for m in stack.rest(f"{path}?{query}"))
    return total


def wait_until_read(job_id: str, rows: int, timeout_s: float) -> None:
    """Wait until the job has read `rows` rows; a job that fails meanwhile ends this with its root exception."""
    deadline, read = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        state = stack.job_state(job_id)
        if state != "RUNNING" and state not in ("CREATED", "INITIALIZING"):
            sys.exit(f"error: backfill job {job_id} is {state}:\n{stack.root_exception(job_id, wait_s=5)}")
        if state == "RUNNING" and (read := source_rows_read(job_id)) >= rows:
            return
        time.sleep(1)
    sys.exit(
        f"error: backfill job {job_id} read {read} of {rows} history rows in {timeout_s:.0f} s "
        "(--timeout); it is still running"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument(
        "--from",
        dest="history",
        required=True,
        metavar="PATH",
        help="a Parquet file or a folder of them, in event-time order",
    )
    parser.add_argument("--savepoint-dir", help="where the savepoint goes (default: state.savepoints.dir)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the history may take to read")
    parser.add_argument("--no-stream", action="store_true", help="stop after the savepoint")
    args = parser.parse_args(argv)
    # The scripts run in the project folder; paths given relative to where this was started stay right.
    args.config, args.history = os.path.abspath(args.config), os.path.abspath(args.history)

    rows = history_rows(args.history)
    if rows == 0:
        sys.exit(f"error: --from {args.history}: no Parquet rows to learn")
    out = stack.script("submit.sh", "jobs/learner_job.py", "--config", args.config, "--history", args.history)
    job_id = out.strip().splitlines()[-1]
    print(f"backfill job {job_id}: reading {rows} rows of {args.history}", flush=True)
    started = time.monotonic()
    wait_until_read(job_id, rows, args.timeout)
    print(f"read {rows} rows in {time.monotonic() - started:.0f} s; stopping with a savepoint (--drain)", flush=True)
    savepoint = (
        stack.script(
            "savepoint.sh", "--drain", job_id, *([args.savepoint_dir] if args.savepoint_dir else []), timeout=600
        )
        .strip()
        .splitlines()[-1]
    )
    if args.no_stream:
        print(savepoint)
        return
    print(f"savepoint {savepoint}", flush=True)
    out = stack.script(
        "submit.sh",
        "--fromSavepoint",
        savepoint,
        "--allowNonRestoredState",
        "jobs/learner_job.py",
        "--config",
        args.config,
    )
    print(f"streaming job {out.strip().splitlines()[-1]}")
    print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
