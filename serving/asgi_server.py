"""uvicorn (httptools parser, uvloop event loop) answering the replica's endpoints on one event loop, with
the limits of serving.limits held at the two places that can: the HTTP protocol (connections, header
bytes, request time) and the ASGI application (requests in flight, body length).

A prediction is answered inline on the event loop: in a thread pool, kept-alive POST /predict at 16
connections went from 10,369 to 8,816 requests/s and its p99 from 3.5 to 5.2 ms (README, Serving
replicas). The models are swapped by the follower thread without locks (serving.registry). Every
refusal is a JSON answer naming its setting, never a dropped connection, except for a connection that
sent nothing before its time ran out.

>>> raw_reply(Reply.of(408, {"error": "slow"}, close=True)).split(b"\\r\\n")[0]
b'HTTP/1.1 408 Request Timeout'
"""

from __future__ import annotations

import logging
import socket
import threading

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.routes import BodyError, Reply, answer, body_length, refuse

log = logging.getLogger("serving")


def raw_reply(reply: Reply) -> bytes:
    """A reply as bytes on the wire, for what the protocol answers itself."""
    head = f"content-type: {reply.content_type}\r\ncontent-length: {len(reply.body)}\r\nconnection: close\r\n\r\n"
    return STATUS_LINE[reply.status] + head.encode() + reply.body


def _headers(reply: Reply) -> list:
    headers = [(b"content-type", reply.content_type.encode()), (b"content-length", str(len(reply.body)).encode())]
    return headers + [(b"connection", b"close")] if reply.close else headers


class ReplicaApp:
    """The ASGI application: reads a request's body within serving.max_body_bytes, at most
    serving.max_concurrent_requests bodies at a time, and answers it with serving.routes."""

    def __init__(self, replica):
        self.replica = replica
        self.in_flight = 0  # requests whose body is being read

    async def __call__(self, scope, receive, send):
        query = scope["query_string"]
        # The target as it was sent, as the stdlib server sees it: keys are percent-decoded once, by the route.
        target = scope["raw_path"].decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        replica, limits = self.replica, self.replica.limits
        headers = dict(scope["headers"])
        try:
            length = body_length(
                headers.get(b"transfer-encoding"),
                headers.get(b"content-length", b"0").decode("latin-1"),
                limits.max_body_bytes,
            )
        except BodyError as e:
            return await self._send(send, refuse(replica, target, e.status, str(e)))
        if not length:  # nothing to wait for: answered at once, however full, so health checks pass
            return await self._send(send, answer(replica, scope["method"], target, b""))
        if self.in_flight >= limits.max_concurrent_requests:
            return await self._send(
                send,
                refuse(
                    replica,
                    target,
                    503,
                    f"{self.in_flight} requests in flight, the limit of serving.max_concurrent_requests: retry shortly",
                ),
            )
        self.in_flight += 1
        try:
            body = b""
            while len(body) < length:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # nobody to answer: the client left, or the protocol answered 408
                body += message.get("body", b"")
        finally:
            self.in_flight -= 1
        # Answered inline: one prediction is quicker than a hand-off to a thread and back (see above).
        await self._send(send, answer(replica, scope["method"], target, body))

    @staticmethod
    async def _send(send, reply: Reply):
        await send({"type": "http.response.start", "status": reply.status, "headers": _headers(reply)})
        await send({"type": "http.response.body", "body": reply.body})


class _OneWritePerReply:
    """A transport that holds a reply's head back until its body, so that a reply is one write (one
    system call, one packet) instead of uvicorn's two. Everything else passes through."""

    def __init__(self, transport):
        self._transport, self._head = transport, b""

    def write(self, data: bytes):
        if not self._head and data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1" and data.endswith(b"\r\n\r\n"):
            self._head = data  # 1xx (100 Continue) goes out at once: the client waits for it
            return
        data, self._head = self._head + data, b""
        self._transport.write(data)

    def flush(self):
        if self._head:
            self.write(b"")

    def close(self):
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _HeadTooLarge(Exception):
    """Raised in a parser callback; the parser hands it back as the context of its own error."""


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with what it does not limit limited: a request must arrive whole
    within serving.request_timeout_s (uvicorn would wait for ever), its line and headers within
    serving.max_header_bytes (uvicorn would buffer them without bound), and at most
    serving.max_connections connections are served. Its refusals are JSON, like every other answer."""

    replica = None  # set on the subclass AsgiServer makes

    def connection_made(self, transport):
        super().connection_made(_OneWritePerReply(transport))
        limits = self.replica.limits
        self._over_capacity = len(self.connections) > limits.max_connections
        # A request head's size, two ways, each at most its true size (so neither refuses a head within
        # the limit): the request line and headers the parser has passed on, and the reads that began
        # and ended inside the head (which bounds a header the parser is still buffering).
        self._head_bytes: int | None = None  # None outside a head
        self._head_reads = 0
        self._timer = self.loop.call_later(limits.request_timeout_s, self._timed_out)

    def connection_lost(self, exc):
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        limits = self.replica.limits
        if self._over_capacity:
            return self._refuse(
                503,
                f"{len(self.connections) - 1} connections open, the limit of serving.max_connections: retry shortly",
            )
        self._unset_keepalive_if_required()
        if self._timer is None:  # the first bytes of the next request
            self._timer = self.loop.call_later(limits.request_timeout_s, self._timed_out)
        began_in_head = self._head_bytes is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol upgrades are served: the request is answered as an ordinary one
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLarge):  # raised in a callback below
                return self._refuse_head()
            return self._refuse(400, f"invalid HTTP request: {e}")
        if began_in_head and self._head_bytes is not None:
            self._head_reads += len(data)
            if self._head_reads > limits.max_header_bytes:
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._head_reads = 0, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int):
        self._head_bytes += size
        if self._head_bytes > self.replica.limits.max_header_bytes:
            raise _HeadTooLarge()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def _refuse_head(self):
        self._refuse(
            431,
            f"request line and headers over {self.replica.limits.max_header_bytes} bytes (serving.max_header_bytes)",
        )

    def on_response_complete(self) -> None:
        self.transport.flush()  # a reply with no body (to HEAD) has only its head
        super().on_response_complete()

    def on_message_complete(self) -> None:
        self._cancel_timer()  # read whole: the answer is the application's to give
        super().on_message_complete()

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self):
        self._timer = None
        if self.transport.is_closing():
            return
        started = self._head_bytes is not None or (self.cycle is not None and not self.cycle.response_complete)
        if not started or self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # nothing asked, or an answer already on its way: nothing to say
        else:
            self._refuse(
                408,
                f"request not received whole within {self.replica.limits.request_timeout_s:g} s "
                f"(serving.request_timeout_s)",
            )

    def _refuse(self, status: int, message: str):
        self.transport.write(raw_reply(refuse(self.replica, "", status, message)))
        self.transport.close()


class AsgiServer:
    """uvicorn serving a replica on a socket bound here (so that port 0 is known before it runs), with the
    interface of the standard library's servers: serve_forever, shutdown (from another thread), server_close."""

    def __init__(self, replica, host: str, port: int):
        limits = replica.limits
        self.socket = socket.create_server((host, port), backlog=2048)
        self.server_address = self.socket.getsockname()
        config = uvicorn.Config(
            ReplicaApp(replica),
            loop="uvloop",
            http=type("ReplicaProtocol", (LimitedProtocol,), {"replica": replica}),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=limits.keep_alive_timeout_s,
            timeout_graceful_shutdown=limits.request_timeout_s,
        )
        self.server = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self):
        """Serve until shutdown() or SIGINT/SIGTERM (in the main thread), then finish the requests in flight."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout_s: float = 10.0):
        self.server.should_exit = True
        self._stopped.wait(timeout_s)

    def server_close(self):
        self.socket.close()
