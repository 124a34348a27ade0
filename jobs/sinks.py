"""The job's Kafka sinks' settings (`sinks:` in conf/job.yaml), checked at submit time, with the one Flink
setting that must agree with them.

A task cancelled while the broker is away waits in its sink's commit or abort for up to
`sinks.transaction_timeout_ms` (the producers' `max.block.ms`, sql/snapshots.sql); Flink stops the whole
TaskManager, every job on it, when a cancellation takes longer than `task.cancellation.timeout`. So the
second must be the longer, or a broker outage that the restart strategy would ride out kills the host.

>>> from jobs.config import Config
>>> flink = {"task.cancellation.timeout": 960000}
>>> config = Config({"sinks": {"transaction_timeout_ms": 900000}, "flink": flink}, "job.yaml")
>>> SinkSettings.from_config(config).transaction_timeout_ms
900000
>>> flink["task.cancellation.timeout"] = "10 min"
>>> SinkSettings.from_config(config)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'flink.task.cancellation.timeout' must be longer than
sinks.transaction_timeout_ms (900000 ms), not 10 min (600000 ms): a task cancelled while the broker is away
waits that long in its sink, and Flink stops the whole TaskManager when a cancellation takes longer
>>> SinkSettings.from_config(Config({"sinks": {"delivery_guarantee": "exactly_once"}}, "job.yaml"))
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'sinks.delivery_guarantee' must be exactly-once or at-least-once, not 'exactly_once'
>>> duration_ms("16 min"), duration_ms(960000), duration_ms("2s"), duration_ms("1 h")
(960000, 960000, 2000, 3600000)
"""

from __future__ import annotations

import dataclasses
import re

from jobs.config import Config, settings_of

DELIVERY = ("exactly-once", "at-least-once")
# Flink's own default for task.cancellation.timeout.
FLINK_CANCELLATION_TIMEOUT_MS = 180_000
# The units Flink's TimeUtils.parseDuration reads, in milliseconds.
_UNITS_MS = {
    **dict.fromkeys(("ms", "milli", "millis", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1_000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), 86_400_000),
}
_DURATION = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def duration_ms(value) -> int | None:
    """A Flink duration setting (a number of ms, or a number with a unit) in ms; None if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    unit = (match[2].lower() or "ms") if match else None
    return int(match[1]) * _UNITS_MS[unit] if unit in _UNITS_MS else None


def _delivery(default: str):
    return dataclasses.field(default=default, metadata={"must": " or ".join(DELIVERY), "check": DELIVERY.__contains__})


@dataclasses.dataclass(frozen=True)
class SinkSettings:
    delivery_guarantee: str = _delivery("exactly-once")
    snapshot_delivery: str = _delivery("at-least-once")
    transactional_id_prefix: str = dataclasses.field(
        default="learner-job", metadata={"must": "non-empty text", "check": bool}
    )
    transaction_timeout_ms: int = dataclasses.field(
        default=900_000, metadata={"must": "a whole number of ms > 0", "check": lambda v: v > 0}
    )

    @classmethod
    def from_config(cls, config: Config) -> SinkSettings:
        settings = settings_of(cls, config.get("sinks", {}) or {}, "sinks", config.error)
        path = "flink.task.cancellation.timeout"
        # A Flink key is one key of the flink: mapping, dots and all.
        value = (config.get("flink", {}) or {}).get("task.cancellation.timeout")
        cancellation_ms = FLINK_CANCELLATION_TIMEOUT_MS if value is None else duration_ms(value)
        if cancellation_ms is None:
            raise config.error(path, f"must be a duration (ms, or a number with a unit: 16 min), not {value!r}")
        if cancellation_ms <= settings.transaction_timeout_ms:
            now = f"Flink's default {cancellation_ms} ms" if value is None else f"{value} ({cancellation_ms} ms)"
            raise config.error(
                path,
                f"must be longer than sinks.transaction_timeout_ms ({settings.transaction_timeout_ms} ms), not"
                f" {now}: a task cancelled while the broker is away waits that long in its sink, and Flink"
                " stops the whole TaskManager when a cancellation takes longer",
            )
        return settings
