"""What scripts/upgrade.sh needs to upgrade the learner job without a gap.

An upgrade whose SQL is unchanged stops the job with a savepoint and restores all of it, open windows
included. One whose SQL changed starts the SQL operators afresh, so the events of the windows that were
still open would be lost with their state: the new job re-reads them. Its source starts, per partition,
at the first event that may belong to the oldest open window (`resume_plan`), and of the events the old
job had read already (before `source.replay.until_offsets`) takes again only the valid ones of those
windows (`ts` from `source.replay.from_ms` on; sql/checked_events.sql): the rest it learned or
dead-lettered already. The learner skips, and counts in `replayed_rows`, any row of a window a key has
learned.

>>> oldest_open_window_start(watermark_ms=4_999, size_ms=1_000)  # window [4000, 5000) has fired
5000
>>> oldest_open_window_start(watermark_ms=4_998, size_ms=1_000)
4000
>>> oldest_open_window_start(watermark_ms=NO_WATERMARK, size_ms=1_000)  # nothing fired yet
0
>>> resume_start([(10, 7_100), (11, 7_400), (12, 6_900), (13, 7_950), (14, 8_010)], 8_000, 1_000, 15)
13
>>> offsets_setting({0: 12, 1: 40}), offsets_setting({})
('partition:0,offset:12;partition:1,offset:40', '')
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time
import urllib.request

from jobs.config import Config, ConfigError, derive_config, load_config
from jobs.sql import ddl_statements

NO_WATERMARK = -(2**63)  # Flink's Long.MIN_VALUE: no watermark yet
# The settings an upgrade writes for the new job's source; they leave the SQL's fingerprint alone.
RESUME_SETTINGS = {
    "source": {"startup_mode": "group-offsets", "specific_offsets": "", "replay": {"until_offsets": "", "from_ms": 0}}
}
SCAN_CHUNK = 2_000


# The shape of the job's own queries over the feature view (jobs/learner_job.py); a release that changes
# it changes the fingerprint, so that an upgrade from an older release re-reads open windows rather than
# restoring SQL operators' state into operators of another shape. 2: the feature view computed once;
# 3: the latest-features sink on each key's newest row per watermark, the learner's batches made in the
# JVM from its rows instead of by a SQL window.
QUERY_PLAN = 3


def sql_fingerprint(config: Config) -> str:
    """The fingerprint of the job's SQL, which names its SQL operators' uids: an upgrade restores
    their state (open windows) when it is the same. The rendered DDL, rendered with RESUME_SETTINGS
    (so that a job resuming after an upgrade and the next version with the same SQL share it), and
    the settings the job's own queries over the feature view are built from (jobs/learner_job.py)."""
    data = copy.deepcopy(config.data)
    _merge(data, RESUME_SETTINGS)
    queries = {
        "plan": QUERY_PLAN,
        "features": config.get("features", None),
        "learner.shards": config.get("learner.shards", None),
        "sql": {k: v for k, v in (config.get("sql", None) or {}).items() if k != "ddl"},
    }
    text = "\n".join(ddl_statements(Config(data, config.source))) + json.dumps(queries, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _merge(target: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


def oldest_open_window_start(watermark_ms: int, size_ms: int) -> int:
    """The start of the oldest tumbling window a watermark has not fired (it fires at its end - 1)."""
    if watermark_ms == NO_WATERMARK:
        return 0
    return max(0, (watermark_ms + 1) // size_ms * size_ms)


def resume_start(records, from_ms: int, delay_ms: int, until: int) -> int:
    """Where a partition's re-read starts: after the last event, before `until`, whose ts is more than
    the watermark delay before `from_ms`. `records` are (offset, ts or None) in offset order, the tail
    of the partition before `until` (as far back as read). Within the declared bound on disorder (the
    watermark delay) no event before that one has a ts from `from_ms` on. None: read further back."""
    for offset, ts in reversed(records):
        if ts is not None and ts < from_ms - delay_ms:
            return offset + 1
    return None if records else until


def event_ts(value: bytes | None, max_chars: int) -> int | None:
    """An event's ts as the job reads it, None for an event without a usable one."""
    if value is None or len(value) > max_chars * 4:
        return None
    try:
        ts = json.loads(value).get("ts")
    except (ValueError, AttributeError):
        return None
    return ts if type(ts) is int and ts >= 0 else None


def offsets_setting(offsets: dict[int, int]) -> str:
    """Offsets per partition as Flink's 'scan.startup.specific-offsets' takes them."""
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(offsets.items()))


def resume_plan(config: Config, watermark_ms: int) -> dict:
    """The source settings of a job that resumes `config`'s stopped job, whose last watermark was at
    least `watermark_ms`: start offsets per partition, the committed offsets (what the stopped job had
    read) and the start of its oldest open window."""
    from kafka import KafkaConsumer, TopicPartition

    bootstrap, topic, group = config["kafka.bootstrap_servers"], config["topics.events.name"], config["source.group_id"]
    from_ms = oldest_open_window_start(watermark_ms, int(config["window.size_seconds"]) * 1000)
    delay_ms = int(config["source.watermark_delay_seconds"]) * 1000
    # The group's committed offsets (the stopped job's savepoint committed them): what it had read.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        committed = {}
        for p in sorted(consumer.partitions_for_topic(topic) or []):
            offset = consumer.committed(TopicPartition(topic, p))
            if offset is not None and offset >= 0:
                committed[p] = offset
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        missing = [p for p in partitions if p not in committed]
        if missing:
            raise ConfigError(
                f"{os.path.basename(config.source)}: consumer group '{group}' (source.group_id) has "
                f"no committed offset for partitions {missing} of topic '{topic}': cannot tell "
                f"what the stopped job read"
            )
        starts = {}
        for p in partitions:
            tp = TopicPartition(topic, p)
            first = consumer.beginning_offsets([tp])[tp]
            starts[p] = _scan_back(
                consumer, tp, first, committed[p], from_ms, delay_ms, int(config["events.max_chars"])
            )
    finally:
        consumer.close()
    return {
        "startup_mode": "specific-offsets",
        "specific_offsets": offsets_setting(starts),
        "replay": {"until_offsets": ",".join(f"{p}:{o}" for p, o in sorted(committed.items())), "from_ms": from_ms},
    }


def _scan_back(consumer, tp, first: int, until: int, from_ms: int, delay_ms: int, max_chars: int) -> int:
    """resume_start for one partition, reading it backwards from `until` in chunks."""
    end = until
    while end > first:
        start = max(first, end - SCAN_CHUNK)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records = []
        while len(records) < end - start:
            batch = consumer.poll(timeout_ms=2000).get(tp, [])
            if not batch:
                break
            records.extend((r.offset, event_ts(r.value, max_chars)) for r in batch if r.offset < end)
        found = resume_start(records, from_ms, delay_ms, end)
        if found is not None:
            return found
        end = start
    return first


def job_watermark(rest_url: str, job_id: str, vertex_name: str = "learner", wait_s: float = 20) -> int:
    """The lowest input watermark of the job's learner subtasks: every window before it has fired."""

    def get(path):
        with urllib.request.urlopen(rest_url + path, timeout=10) as response:
            return json.loads(response.read())

    vertices = [v for v in get(f"/jobs/{job_id}")["vertices"] if v["name"] == vertex_name]
    if not vertices:
        raise SystemExit(f"error: job {job_id} has no vertex named '{vertex_name}' (jobs/learner_job.py)")
    # REST serves metrics as last fetched (metrics.fetcher.update-interval, 10 s by default): a job that
    # started moments ago may show none yet. An older value only makes the re-read start earlier.
    deadline = time.monotonic() + wait_s
    while True:
        values = [int(float(w["value"])) for w in get(f"/jobs/{job_id}/vertices/{vertices[0]['id']}/watermarks")]
        watermark = min(values) if values else NO_WATERMARK
        if watermark != NO_WATERMARK or time.monotonic() > deadline:
            return watermark
        time.sleep(1)


def job_fingerprint(rest_url: str, job_id: str) -> str | None:
    """The SQL fingerprint a running learner job was built with (jobs/learner_job.py), if it says."""
    with urllib.request.urlopen(f"{rest_url}/jobs/{job_id}/config", timeout=10) as response:
        user_config = json.loads(response.read())["execution-config"].get("user-config", {})
    return user_config.get("sql.fingerprint")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Helpers of scripts/upgrade.sh")
    sub = parser.add_subparsers(dest="command", required=True)
    same = sub.add_parser("same-sql", help="exit 0 when the running job's SQL equals the new config's")
    watermark = sub.add_parser("watermark", help="print the running job's learner input watermark")
    resume = sub.add_parser(
        "resume", help="write the new config with the source settings that resume the stopped job; print its path"
    )
    for p in (same, watermark):
        p.add_argument("job_id")
    for p in (same, resume):
        p.add_argument("--config", required=True)
    resume.add_argument("--watermark", type=int, required=True)
    parser.add_argument("--rest", default="http://" + os.environ.get("JOBMANAGER", "localhost:8081"))
    args = parser.parse_args(argv)
    try:
        if args.command == "watermark":
            print(job_watermark(args.rest, args.job_id))
        elif args.command == "same-sql":
            sys.exit(0 if job_fingerprint(args.rest, args.job_id) == sql_fingerprint(load_config(args.config)) else 1)
        else:
            config = load_config(args.config)
            base, _ = os.path.splitext(args.config)
            derived = derive_config(
                config, f"{base}.resume.yaml", overrides={"source": resume_plan(config, args.watermark)}
            )
            print(derived.source)
    except ConfigError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
