"""Feature rows grouped per (shard, window), so that one call into Python carries many keys' rows.

A call from the JVM into Python costs far more than a River update, so the learner does not take
one feature row per call. The job's SQL gives each row of the feature view the shard of its key
(`MOD(HASH_CODE(key), shards)`) and its window's end in epoch milliseconds (`select_rows`); in the JVM,
java/realtime_learning/PickledBatches.java holds a shard's rows until the next watermark and sends them
as one record of batches, one batch per window, `(shard, window_end_ms, keys, labels, feature_1, ...,
feature_n)`, one tuple per column, row i of the window being element i of each. The learner is keyed
by shard and keeps one state entry per key inside it.

A deletion request takes the same shape, a row with a NULL window end (`select_deletions`): the
learner stays one keyed input.

>>> print(select_rows("features", "entity", "window_end", "label", ["x1", "x2"], shards=4))
SELECT MOD(MOD(HASH_CODE(`entity`), 4) + 4, 4) AS `shard`, UTC_MILLIS(`window_end`) AS window_end_ms,
  `entity`, `label`, `x1`, `x2`
FROM `features`
>>> print(select_deletions("deletion_requests", "model_key", 4, [("label", "BOOLEAN"), ("x1", "DOUBLE")]))
SELECT MOD(MOD(HASH_CODE(`model_key`), 4) + 4, 4) AS `shard`, CAST(NULL AS BIGINT) AS window_end_ms,
  `model_key`, CAST(NULL AS BOOLEAN) AS `label`, CAST(NULL AS DOUBLE) AS `x1`
FROM `deletion_requests`
WHERE `model_key` IS NOT NULL
>>> batch = (2, 1000, ("k1", "k2", "k1"), (True, None, False), (0.5, 1.5, 2.5))
>>> without_keys(batch, {"k1"}), without_keys(batch, {"k3"}) is batch, without_keys(batch, {"k1", "k2"})
((2, 1000, ('k2',), (None,), (1.5,)), True, None)
>>> list(batch_rows(("k1", "k2"), (True, None), [(0.5, 1.5), (2.0, 3.0)]))
[('k1', True, 0.5, 2.0), ('k2', None, 1.5, 3.0)]
>>> merged_windows([(1, 2000, ("a",), (1,), (0.5,)), (1, 1000, ("b",), (0,), (1.5,)), (1, 2000, ("c",), (0,), (2.5,))])
[(1, 1000, ('b',), (0,), (1.5,)), (1, 2000, ('a', 'c'), (1, 0), (0.5, 2.5))]
"""

from __future__ import annotations

import itertools

# The learner rows' columns before the features (`select_rows`); a deletion request has NULL after the key.
ROW_COLUMNS = ("shard", "window_end_ms", "key", "label")


def window_end_ms(column: str) -> str:
    """Epoch milliseconds of a window end: the window TVF's TIMESTAMP(3) on the job's UTC rowtime
    (sql/events.sql), read as UTC by UTC_MILLIS (sql/functions.sql), never through the session time
    zone, which under daylight saving maps the repeated autumn hour onto the hour before it."""
    return f"UTC_MILLIS(`{column}`)"


def shard_of(key: str, shards: int) -> str:
    """The SQL expression of the shard of the key column `key`."""
    # HASH_CODE may be negative; the second MOD maps it onto 0 .. shards - 1.
    return f"MOD(MOD(HASH_CODE(`{key}`), {shards}) + {shards}, {shards})"


def select_rows(view: str, key: str, window_end: str, label: str, feature_names, shards: int) -> str:
    """The learner's rows of the feature view: shard, window end (ms), key, label and features."""
    columns = ", ".join(f"`{name}`" for name in (key, label, *feature_names))
    return (
        f"SELECT {shard_of(key, shards)} AS `shard`, {window_end_ms(window_end)} AS window_end_ms,\n"
        f"  {columns}\nFROM `{view}`"
    )


def select_deletions(requests_view: str, key: str, shards: int, columns) -> str:
    """The query turning deletion requests (a view with the key column `key`) into learner rows
    (`select_rows`): the key's shard, a NULL window end (what tells the learner it is a deletion), the
    key, and a NULL in every other column, `columns` ((name, SQL type) of the rows' columns after the
    key), so that they join the rows ahead of the learner (jobs/learner_job.py)."""
    nulls = ", ".join(f"CAST(NULL AS {sql_type}) AS `{name}`" for name, sql_type in columns)
    return (
        f"SELECT {shard_of(key, shards)} AS `shard`, CAST(NULL AS BIGINT) AS window_end_ms,\n"
        f"  `{key}`, {nulls}\n"
        f"FROM `{requests_view}`\n"
        f"WHERE `{key}` IS NOT NULL"
    )


def merged_windows(batches) -> list:
    """A shard's batches in window order, those of one window merged into one, in the order they came.
    At parallelism > 1 each upstream subtask sends its own batch of a window, with the rows of its keys."""
    merged = []
    for _, same_window in itertools.groupby(sorted(batches, key=lambda batch: batch[1]), key=lambda batch: batch[1]):
        first, *others = same_window
        if others:
            columns = zip(*(batch[2:] for batch in (first, *others)))
            first = first[:2] + tuple(tuple(itertools.chain.from_iterable(column)) for column in columns)
        merged.append(first)
    return merged


def without_keys(batch: tuple, keys: set):
    """The batch without the rows of `keys` (deleted): the batch itself if it has none, None if it has
    nothing else."""
    rows = [i for i, key in enumerate(batch[2]) if key not in keys]
    if len(rows) == len(batch[2]):
        return batch
    if not rows:
        return None
    return batch[:2] + tuple(tuple(column[i] for i in rows) for column in batch[2:])


def batch_rows(keys, labels, feature_arrays):
    """A batch's rows, (key, label, *features), from its column arrays."""
    return zip(keys, labels, *feature_arrays)
