"""The limits a replica's HTTP server holds every client to, read from `serving:` in the config; a wrong
value names its file and setting.

>>> from jobs.config import Config
>>> Limits.from_config(Config({"serving": {"max_json_depth": 8}}, "job.yaml")).max_json_depth
8
>>> Limits.from_config(Config({"serving": {"request_timeout_s": 0}}, "job.yaml"))
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'serving.request_timeout_s' must be a number of seconds > 0, not 0
"""

from __future__ import annotations

import dataclasses

from jobs.config import seconds, whole_number


@dataclasses.dataclass(frozen=True)
class Limits:
    # An idle kept-alive connection is closed after this long.
    keep_alive_timeout_s: float = 5.0
    # A request's line, headers and body must all arrive within this long of its first byte (of the
    # connection, for its first request), else 408 and the connection is closed: no slow client holds
    # a connection for ever.
    request_timeout_s: float = 10.0
    # Requests whose body is arriving, at once (each holds up to max_body_bytes meanwhile; answers are
    # computed one at a time on the event loop); one more is answered 503 at once. A request with no
    # body (a health check) is answered however full the replica is.
    max_concurrent_requests: int = 256
    # Open connections; one more is answered 503 and closed. Each costs a socket and a few KB, no thread.
    max_connections: int = 4096
    # A request line and headers longer than this are answered 431.
    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    # JSON nesting and integer digits: deeper bodies or longer integers are answered 400 before parsing.
    max_json_depth: int = 32
    max_json_digits: int = 100

    @classmethod
    def from_config(cls, config) -> Limits:
        values = {}
        for field in dataclasses.fields(cls):
            path = f"serving.{field.name}"
            values[field.name] = (
                seconds(config, path, field.default)
                if field.type == "float"
                else whole_number(config, path, field.default, minimum=1)
            )
        return cls(**values)
