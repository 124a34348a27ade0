"""Flink job entry points and the helpers they share for reading `conf/` and `sql/`."""
