"""The standard library's thread-per-connection HTTP server answering the replica's endpoints: the server
replicas had before serving.asgi_server, kept (`--server stdlib`) so that a benchmark can compare the two.

It holds the body and JSON limits, which serving.routes applies, and none of the others: it runs a
thread per connection, with no cap on either and no timeout, as before, so that a comparison is with
the server replicas had.

>>> Handler.protocol_version, Handler.disable_nagle_algorithm
('HTTP/1.1', True)
"""

from __future__ import annotations

import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.routes import BodyError, Reply, answer, body_length, refuse

log = logging.getLogger("serving")


class Handler(BaseHTTPRequestHandler):
    replica = None  # set on the subclass make_stdlib_server makes
    protocol_version = "HTTP/1.1"
    # A reply goes out as headers, then body: with Nagle on, a kept-alive client's delayed ACK holds the
    # body back about 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        replica = self.replica
        try:
            length = body_length(
                self.headers.get("Transfer-Encoding"), self.headers.get("Content-Length"), replica.limits.max_body_bytes
            )
        except BodyError as e:
            return self._send(refuse(replica, self.path, e.status, str(e)))
        self._send(answer(replica, self.command, self.path, self.rfile.read(length)))

    do_POST = do_GET

    def _send(self, reply: Reply):
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.close:
            self.send_header("Connection", "close")  # also makes the handler close after this reply
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        log.debug(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def serve_forever(self, poll_interval: float = 0.05):
        # shutdown() waits up to one poll interval; the base class's half second slows every test.
        super().serve_forever(poll_interval)

    def handle_error(self, request, client_address):
        # A client hanging up (curl -f on a 503 does) is routine; anything else is logged, not printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.exception("connection from %s:%d failed", *client_address[:2])


def make_stdlib_server(replica, host: str, port: int) -> Server:
    """A thread-per-connection server answering from `replica`; port 0 picks a free one."""
    handler = type("ReplicaHandler", (Handler,), {"replica": replica})
    return Server((host, port), handler)
