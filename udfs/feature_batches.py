"""Feature rows grouped per (shard, window), so that one call into Python carries many keys' rows.

A call from the JVM into Python costs far more than a River update, so the learner does not take
one feature row per call: the job's SQL groups the feature view's rows of one window by a shard of
their key (`MOD(HASH_CODE(key), shards)`) into one record,
`(shard, window_end_ms, keys, labels, feature_1, ..., feature_n)`, one array per column, row i of
the window being element i of each array. The learner is keyed by shard and keeps one state entry
per key inside it. The grouping is a window aggregation on the feature view's own windows, so it
fires with them: it adds no wait.

One array per column, not an array of ROWs: `ARRAY_AGG(ROW(...))` in Flink 2.3 fills the array
with the last row repeated (its row objects are reused).

>>> print(select_batches("features", "entity", "window_start", "window_end", "label", ["x1", "x2"], shards=4))
SELECT `shard`, UTC_MILLIS(`window_end`) AS window_end_ms,
  ARRAY_AGG(`entity`) AS `keys`, ARRAY_AGG(`label`) AS `labels`, ARRAY_AGG(`x1`) AS `x1`, ARRAY_AGG(`x2`) AS `x2`
FROM (SELECT *, MOD(MOD(HASH_CODE(`entity`), 4) + 4, 4) AS `shard` FROM `features`)
GROUP BY `shard`, `window_start`, `window_end`
>>> list(batch_rows(("k1", "k2"), (True, None), [(0.5, 1.5), (2.0, 3.0)]))
[('k1', True, 0.5, 2.0), ('k2', None, 1.5, 3.0)]
"""

from __future__ import annotations

# The batch record's columns before the feature arrays.
BATCH_COLUMNS = ("shard", "window_end_ms", "keys", "labels")


def window_end_ms(column: str) -> str:
    """Epoch milliseconds of a window end: the window TVF's TIMESTAMP(3) on the job's UTC rowtime
    (sql/events.sql), read as UTC by UTC_MILLIS (sql/functions.sql), never through the session time
    zone, which under daylight saving maps the repeated autumn hour onto the hour before it."""
    return f"UTC_MILLIS(`{column}`)"


def select_batches(view: str, key: str, window_start: str, window_end: str, label: str, feature_names,
                   shards: int) -> str:
    """The query turning the feature view into one batch record per shard and window."""
    arrays = ", ".join([f"ARRAY_AGG(`{key}`) AS `keys`", f"ARRAY_AGG(`{label}`) AS `labels`",
                        *(f"ARRAY_AGG(`{name}`) AS `{name}`" for name in feature_names)])
    # HASH_CODE may be negative; the second MOD maps it onto 0 .. shards - 1.
    return (
        f"SELECT `shard`, {window_end_ms(window_end)} AS window_end_ms,\n"
        f"  {arrays}\n"
        f"FROM (SELECT *, MOD(MOD(HASH_CODE(`{key}`), {shards}) + {shards}, {shards}) AS `shard` FROM `{view}`)\n"
        f"GROUP BY `shard`, `{window_start}`, `{window_end}`"
    )


def batch_rows(keys, labels, feature_arrays):
    """A batch's rows, (key, label, *features), from its column arrays."""
    return zip(keys, labels, *feature_arrays)
