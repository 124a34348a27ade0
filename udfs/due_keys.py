"""The keys of one shard whose unpublished updates a timer must publish, in the order they fell due.

`snapshots.max_wait_seconds` (and the `every_seconds` policy) bound how long a key's first
unpublished update waits for a snapshot. Rather than a timer and a state entry per key, the learner
keeps one index per shard: a key goes in with its due time at its first unpublished update and out
when it is published, and the shard's one processing-time timer, at the earliest due time, publishes
the keys due by then. Due times are "now + the wait" with a clock that only moves on, so insertion
order is due order and the due keys are a prefix: a firing reads only the keys it publishes.

>>> due = DueKeys()
>>> due.add("a", 5_000); due.add("b", 6_000); due.add("a", 9_000)  # "a" keeps its first due time
>>> due.next_due(), len(due), "b" in due
(5000, 2, True)
>>> due.pop_due(5_500), due.pop_due(5_500), due.as_dict()
(['a'], [], {'b': 6000})
>>> due.discard("b"); bool(due)
False
"""

from __future__ import annotations


def pop_prefix(ordered: dict, through) -> list:
    """Remove and return the leading keys of `ordered` whose value is at most `through`: the due (or
    idle) keys of an index kept in order of its values, read no further than the first that is not.

    >>> index = {"a": 1, "b": 2, "c": 5, "d": 3}
    >>> pop_prefix(index, 3), index
    (['a', 'b'], {'c': 5, 'd': 3})
    """
    keys = []
    for key, value in ordered.items():
        if value > through:
            break
        keys.append(key)
    for key in keys:
        del ordered[key]
    return keys


class DueKeys:
    """key -> due time (ms), oldest first; a plain dict, so that it pickles into Flink state as one."""

    def __init__(self, due: dict | None = None):
        self._due = dict(due or {})

    def add(self, key: str, due_ms: int) -> None:
        """Add `key` due at `due_ms`, unless it is waiting already (its first update sets the time)."""
        self._due.setdefault(key, due_ms)

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def next_due(self) -> int:
        return next(iter(self._due.values()))

    def pop_due(self, now_ms: int) -> list:
        """Remove and return the keys due by `now_ms`. A key added after a clock step back waits for
        the keys before it, at most one wait longer."""
        return pop_prefix(self._due, now_ms)

    def as_dict(self) -> dict:
        return dict(self._due)

    def __contains__(self, key) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)
