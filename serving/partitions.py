"""Replicas that hold a subset of the keys: which partitions of the snapshot and features topics a
replica follows (`serving.partitions` or `--partitions`), and on which partition a key lives.

A key lives where the job's Kafka sinks put it: Kafka's default partitioner, murmur2 of the key's bytes
(UTF-8; the sinks write `model_key` with the raw format), made positive, modulo the topic's partitions.
Both topics are keyed and partitioned alike, so a key's model and its features are on the same
partition number, and a replica that follows partitions P of both holds exactly the keys of P.

>>> partition_of("book-1", 4), partition_of("book-2", 4)
(2, 1)
>>> sorted(held_partitions([2, 0])), held_partitions(None) is None, sorted(held_partitions(None, "1,3"))
([0, 2], True, [1, 3])
>>> held_partitions([0], "0,0")
Traceback (most recent call last):
...
jobs.config.ConfigError: --partitions must be a list of distinct partition numbers >= 0, not [0, 0]
>>> KeyPartitions(frozenset({0, 1}), "model-snapshots", count=4).check("book-1")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
serving.partitions.WrongReplica: key 'book-1' is on partition 2 of model-snapshots (4 partitions);
this replica holds partitions 0, 1
"""

from __future__ import annotations

import dataclasses

from kafka.partitioner.default import murmur2

from jobs.config import ConfigError

SETTING = "serving.partitions"


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed `key` on a topic of `partitions`."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def held_partitions(configured: list | None, given: str | None = None) -> frozenset[int] | None:
    """The partitions a replica follows: `given` (the `--partitions` option, "0,1") if set, else
    `configured` (`serving.partitions`, checked by serving.settings); None means every partition."""
    if given is None:
        return None if configured is None else frozenset(configured)
    parts = [part.strip() for part in given.split(",")]
    value = [int(part) if part.isdigit() else part for part in parts]
    if not (value and len(set(value)) == len(value) and all(isinstance(p, int) for p in value)):
        raise ConfigError(f"--partitions must be a list of distinct partition numbers >= 0, not {value!r}")
    return frozenset(value)


class WrongReplica(LookupError):
    """A key this replica does not hold: answered 421 (Misdirected Request) with the key's partition, so
    a router knows which replica to ask."""

    status = 421

    def __init__(self, message: str, partition: int, partitions: int):
        super().__init__(message)
        self.fields = {"partition": partition, "partitions": partitions}


class PartitionsUnknown(LookupError):
    """The topic's partition count is not known yet (the follower has not reached the broker)."""

    status = 503


@dataclasses.dataclass
class KeyPartitions:
    """The partitions a replica holds (None: every one) and the snapshot topic's partition count, which
    the follower sets once it has read the topic's metadata."""

    held: frozenset[int] | None
    topic: str
    count: int | None = None

    def check(self, key: str) -> None:
        """Raise WrongReplica when `key` lives on a partition this replica does not hold."""
        if self.held is None:
            return
        if self.count is None:
            raise PartitionsUnknown(
                f"cannot tell where key '{key}' lives yet: the partitions of {self.topic} "
                f"are not known (is the broker reachable?)"
            )
        partition = partition_of(key, self.count)
        if partition not in self.held:
            raise WrongReplica(
                f"key '{key}' is on partition {partition} of {self.topic} ({self.count} partitions); "
                f"this replica holds partitions {', '.join(map(str, sorted(self.held)))}",
                partition,
                self.count,
            )

    def describe(self) -> dict:
        """What /readyz adds for a replica holding a subset."""
        return {} if self.held is None else {"partitions": sorted(self.held), "partition_count": self.count}
