"""The limits a replica's HTTP server holds every client to: the fields under `serving:` in the config that
serving.settings reads and checks (each field's metadata says what it takes).

>>> from jobs.config import Config
>>> from serving.settings import ServingSettings
>>> ServingSettings.from_config(Config({"serving": {"max_json_depth": 8}}, "job.yaml")).max_json_depth
8
>>> ServingSettings.from_config(Config({"serving": {"request_timeout_s": 0}}, "job.yaml"))
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'serving.request_timeout_s' must be a number of seconds > 0, not 0
"""

from __future__ import annotations

import dataclasses


def seconds(default: float):
    """A duration field: a number > 0."""
    return dataclasses.field(default=default, metadata={"must": "a number of seconds > 0", "check": lambda v: v > 0})


def at_least_one(default: int):
    """A count or size field: a whole number >= 1."""
    return dataclasses.field(default=default, metadata={"must": "a whole number >= 1", "check": lambda v: v >= 1})


@dataclasses.dataclass(frozen=True)
class Limits:
    # An idle kept-alive connection is closed after this long.
    keep_alive_timeout_s: float = seconds(5.0)
    # A request's line, headers and body must all arrive within this long of its first byte (of the
    # connection, for its first request), else 408 and the connection is closed: no slow client holds
    # a connection for ever.
    request_timeout_s: float = seconds(10.0)
    # Requests whose body is arriving, at once (each holds up to max_body_bytes meanwhile; answers are
    # computed one at a time on the event loop); one more is answered 503 at once. A request with no
    # body (a health check) is answered however full the replica is.
    max_concurrent_requests: int = at_least_one(256)
    # Open connections; one more is answered 503 and closed. Each costs a socket and a few KB, no thread.
    max_connections: int = at_least_one(4096)
    # A request line and headers longer than this are answered 431.
    max_header_bytes: int = at_least_one(16384)
    max_body_bytes: int = at_least_one(1 << 20)
    # JSON nesting and integer digits: deeper bodies or longer integers are answered 400 before parsing.
    max_json_depth: int = at_least_one(32)
    max_json_digits: int = at_least_one(100)
