"""Idle keys expire: `lifecycle.idle_ttl_seconds` (event time) after a key's last row, its state goes.

A key with no row for the TTL (its last window's end older than the watermark minus the TTL) is
removed from the learner's state, and tombstones (null values) go to the compacted snapshot and
features topics, so that replicas drop it and compaction frees the topics. A key that comes back
starts as a new key (cold start applies).

Rather than scan every state, the learner keeps one index per shard: key -> end of its last learned
window, written to Flink state with the shard's states. A shard learns its windows in order, so
moving a key to the end when it learns keeps the index in order of last window: the keys to expire
are a prefix, and a firing reads only the keys it expires.

>>> idle = IdleKeys()
>>> idle.touch("a", 1_000); idle.touch("b", 1_000); idle.touch("a", 2_000)
>>> idle.next_idle_ms(), len(idle)
(1000, 2)
>>> idle.pop_idle(1_500), idle.pop_idle(1_500), idle.as_dict()
(['b'], [], {'a': 2000})
>>> IdleKeys.from_states([("x", 3_000), ("y", 1_000)]).as_dict()
{'y': 1000, 'x': 3000}
>>> from jobs.config import Config
>>> idle_ttl_ms(Config({}, "job.yaml")), idle_ttl_ms(Config({"lifecycle": {"idle_ttl_seconds": 90}}, "job.yaml"))
(0, 90000)
>>> idle_ttl_ms(Config({"lifecycle": {"idle_ttl_seconds": "1 h"}}, "job.yaml"))
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'lifecycle.idle_ttl_seconds' must be a number of seconds > 0, not '1 h'
"""

from __future__ import annotations

from jobs.config import seconds
from udfs.due_keys import pop_prefix

SETTING = "lifecycle.idle_ttl_seconds"


def idle_ttl_ms(config) -> int:
    """The TTL in ms; 0 when the setting is absent or null (keys never expire)."""
    if config.get(SETTING, None) is None:
        return 0
    return int(seconds(config, SETTING, None) * 1000)


class IdleKeys:
    """key -> end (ms) of its last learned window, oldest first; a plain dict, so that it pickles into
    Flink state as one."""

    def __init__(self, last: dict | None = None):
        self._last = dict(last or {})

    @classmethod
    def from_states(cls, items) -> IdleKeys:
        """The index of (key, last window end) pairs in any order: a state of a release before it."""
        return cls(dict(sorted(items, key=lambda item: item[1])))

    def touch(self, key: str, window_end_ms: int) -> None:
        """`key` learned a row of the window ending at `window_end_ms`, the shard's newest so far."""
        # Popped first so that it moves to the end: a dict keeps insertion order, not update order.
        self._last.pop(key, None)
        self._last[key] = window_end_ms

    def pop_idle(self, through_ms: int) -> list:
        """Remove and return the keys whose last window ended by `through_ms`."""
        return pop_prefix(self._last, through_ms)

    def next_idle_ms(self) -> int | None:
        """The oldest last window end, or None for an empty index."""
        return next(iter(self._last.values()), None)

    def discard(self, key: str) -> None:
        self._last.pop(key, None)

    def as_dict(self) -> dict:
        return dict(self._last)

    def __len__(self) -> int:
        return len(self._last)
