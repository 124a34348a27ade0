"""Feature rows grouped per (shard, window), so that one call into Python carries many keys' rows.

A call from the JVM into Python costs far more than a River update, so the learner does not take
one feature row per call: the job's SQL groups the feature view's rows of one window by a shard of
their key (`MOD(HASH_CODE(key), shards)`) into one record,
`(shard, window_end_ms, keys, labels, feature_1, ..., feature_n)`, one array per column, row i of
the window being element i of each array. The learner is keyed by shard and keeps one state entry
per key inside it.

The feature view is computed once for both of its readers, the batches and the latest-features sink
(jobs/learner_job.py): its rows come back from a DataStream with a rowtime one millisecond before
their window's end (`ROWTIME`, what Flink's own `window_time` is), on which the batches are a
tumbling window of the same size again, a cascaded window: it fires with the feature view's, so it
adds no wait.

One array per column, not an array of ROWs: `ARRAY_AGG(ROW(...))` in Flink 2.3 fills the array
with the last row repeated (its row objects are reused).

>>> print(select_rows("features", "entity", "label", ["x1", "x2"], shards=4))
SELECT `entity`, `label`, `x1`, `x2`, MOD(MOD(HASH_CODE(`entity`), 4) + 4, 4) AS `shard`, `learner_rowtime`
FROM `features`
>>> print(select_batches("learner_rows", "entity", "label", ["x1", "x2"], window_ms=10_000))
SELECT `shard`, UTC_MILLIS(`window_end`) AS window_end_ms,
  ARRAY_AGG(`entity`) AS `keys`, ARRAY_AGG(`label`) AS `labels`, ARRAY_AGG(`x1`) AS `x1`, ARRAY_AGG(`x2`) AS `x2`
FROM TABLE(TUMBLE(TABLE `learner_rows`, DESCRIPTOR(`learner_rowtime`), INTERVAL '10.000' SECOND))
GROUP BY `shard`, window_start, window_end
>>> print(select_deletions("deletion_requests", "model_key", 4, [("labels", "BOOLEAN"), ("x1", "DOUBLE")]))
SELECT MOD(MOD(HASH_CODE(`model_key`), 4) + 4, 4) AS `shard`, CAST(NULL AS BIGINT) AS window_end_ms,
  ARRAY[`model_key`] AS `keys`, ARRAY[CAST(NULL AS BOOLEAN)] AS `labels`, ARRAY[CAST(NULL AS DOUBLE)] AS `x1`
FROM `deletion_requests`
WHERE `model_key` IS NOT NULL
>>> batch = (2, 1000, ("k1", "k2", "k1"), (True, None, False), (0.5, 1.5, 2.5))
>>> without_keys(batch, {"k1"}), without_keys(batch, {"k3"}) is batch, without_keys(batch, {"k1", "k2"})
((2, 1000, ('k2',), (None,), (1.5,)), True, None)
>>> list(batch_rows(("k1", "k2"), (True, None), [(0.5, 1.5), (2.0, 3.0)]))
[('k1', True, 0.5, 2.0), ('k2', None, 1.5, 3.0)]
"""

from __future__ import annotations

# The batch record's columns before the feature arrays.
BATCH_COLUMNS = ("shard", "window_end_ms", "keys", "labels")
# The rowtime of the computed-once feature view's rows.
ROWTIME = "learner_rowtime"


def window_end_ms(column: str) -> str:
    """Epoch milliseconds of a window end: the window TVF's TIMESTAMP(3) on the job's UTC rowtime
    (sql/events.sql), read as UTC by UTC_MILLIS (sql/functions.sql), never through the session time
    zone, which under daylight saving maps the repeated autumn hour onto the hour before it."""
    return f"UTC_MILLIS(`{column}`)"


def rowtime_of(window_end: str) -> str:
    """The SQL expression of `ROWTIME` for a feature row: its window's last millisecond."""
    return f"CAST(`{window_end}` - INTERVAL '0.001' SECOND AS TIMESTAMP(3))"


def shard_of(key: str, shards: int) -> str:
    """The SQL expression of the shard of the key column `key`."""
    # HASH_CODE may be negative; the second MOD maps it onto 0 .. shards - 1.
    return f"MOD(MOD(HASH_CODE(`{key}`), {shards}) + {shards}, {shards})"


def select_rows(view: str, key: str, label: str, feature_names, shards: int) -> str:
    """The learner's columns of the (computed once) feature view, with the shard of each row's key."""
    columns = ", ".join(f"`{name}`" for name in (key, label, *feature_names))
    return f"SELECT {columns}, {shard_of(key, shards)} AS `shard`, `{ROWTIME}`\nFROM `{view}`"


def select_batches(rows_view: str, key: str, label: str, feature_names, window_ms: int) -> str:
    """The query turning `select_rows`' rows into one batch record per shard and window."""
    arrays = ", ".join(
        [
            f"ARRAY_AGG(`{key}`) AS `keys`",
            f"ARRAY_AGG(`{label}`) AS `labels`",
            *(f"ARRAY_AGG(`{name}`) AS `{name}`" for name in feature_names),
        ]
    )
    return (
        f"SELECT `shard`, {window_end_ms('window_end')} AS window_end_ms,\n"
        f"  {arrays}\n"
        f"FROM TABLE(TUMBLE(TABLE `{rows_view}`, DESCRIPTOR(`{ROWTIME}`), INTERVAL '{window_ms / 1000:.3f}' SECOND))\n"
        f"GROUP BY `shard`, window_start, window_end"
    )


def select_deletions(requests_view: str, key: str, shards: int, columns) -> str:
    """The query turning deletion requests (a view with the key column `key`) into batch records of the
    learner's shape: the key's shard, a NULL window end (what tells the learner it is a deletion), the
    key alone in `keys`, and a NULL in the other arrays, `columns` ((name, SQL type of its elements) of
    the batches' arrays after `keys`), so that they join the batches ahead of the learner
    (jobs/learner_job.py). Arrays of a NULL rather than NULL arrays: PyFlink fails on a NULL array."""
    nulls = ", ".join(f"ARRAY[CAST(NULL AS {sql_type})] AS `{name}`" for name, sql_type in columns)
    return (
        f"SELECT {shard_of(key, shards)} AS `shard`, CAST(NULL AS BIGINT) AS window_end_ms,\n"
        f"  ARRAY[`{key}`] AS `keys`, {nulls}\n"
        f"FROM `{requests_view}`\n"
        f"WHERE `{key}` IS NOT NULL"
    )


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
