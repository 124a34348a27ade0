"""Kept-alive `POST /predict` load against a replica: N connections for S seconds, each with one request
in flight, and the throughput and latency percentiles it got.

The client must not be what it measures. Each worker process drives its connections from one
selector loop over raw sockets, sending requests encoded once and reading replies by Content-Length:
about 25 microseconds of client CPU per request, against the server's 77 (asgi) or about 200 (stdlib).
`client_ceiling` measures the client against a server that answers without any work: 51,294
requests/s at 16 connections, several times what a replica answers (README, Serving replicas).

Run: python -m serving.load --port 8101 --connections 16 --seconds 10
     python -m serving.load --compare --seconds 10   (standalone replicas, asgi then stdlib, at 1, 4, 16)

>>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.99)
(3.0, 5.0)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time

from jobs.config import load_config

HEAD_END = b"\r\n\r\n"
# The children (a standalone replica, the canned server) import this project's modules.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(PROJECT_DIR, "conf", "job.yaml")


def percentile(values: list, q: float) -> float:
    """The q-quantile of `values` by the nearest-rank rule."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))] if ordered else float("nan")


def predict_requests(host: str, port: int, keys, feature_names) -> list[bytes]:
    """One encoded `POST /predict` per key, with fixed feature values."""
    requests = []
    for key in keys:
        body = json.dumps({"key": key, "features": {name: 0.5 for name in feature_names}}).encode()
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


class _Connection:
    def __init__(self, host: str, port: int, request: bytes):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.request, self.buffer, self.sent_at = request, b"", 0.0

    def send(self):
        self.buffer, self.sent_at = b"", time.perf_counter()
        self.sock.sendall(self.request)  # a few hundred bytes: the socket buffer takes them at once

    def reply(self):
        """(status, complete) for what has arrived of the reply; None while its head is incomplete."""
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return None
        head, length = self.buffer[:end].lower(), 0
        start = head.find(b"content-length:")
        if start >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else None])
        return int(self.buffer[9:12]), len(self.buffer) >= end + 4 + length


def drive(host: str, port: int, connections: int, seconds: float, requests: list) -> tuple[list, int]:
    """Keep `connections` connections busy for `seconds`: the latency of every answered request (seconds)
    and how many failed (a status other than 200, or a connection lost)."""
    selector = selectors.DefaultSelector()
    open_ = [_Connection(host, port, requests[i % len(requests)]) for i in range(connections)]
    latencies, failed = [], 0
    deadline = time.perf_counter() + seconds
    for conn in open_:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    while open_:
        for event, _ in selector.select(timeout=1.0):
            conn = event.data
            try:
                data = conn.sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # closed by the server: a failure; reconnect while there is time
                failed += 1
                selector.unregister(conn.sock)
                conn.sock.close()
                open_.remove(conn)
                if time.perf_counter() < deadline:
                    try:
                        conn = _Connection(host, port, conn.request)
                    except OSError:
                        continue  # refused as well: one connection fewer from here on
                    open_.append(conn)
                    selector.register(conn.sock, selectors.EVENT_READ, conn)
                    conn.send()
                continue
            conn.buffer += data
            reply = conn.reply()
            if reply is None or not reply[1]:
                continue
            now = time.perf_counter()
            latencies.append(now - conn.sent_at)
            failed += reply[0] != 200
            if now < deadline:
                conn.send()
            else:
                selector.unregister(conn.sock)
                conn.sock.close()
                open_.remove(conn)
    selector.close()
    return latencies, failed


def run_load(
    port: int,
    connections: int,
    seconds: float,
    keys=("k0",),
    feature_names=("x1_avg", "x2_avg"),
    processes: int = 1,
    host: str = "127.0.0.1",
) -> dict:
    """Kept-alive `POST /predict` from `connections` connections (spread over `processes` worker
    processes) for `seconds`: requests, failed, requests per second, p50 and p99 latency in ms."""
    requests = predict_requests(host, port, keys, feature_names)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    shares = [n for n in shares if n]
    if len(shares) == 1:
        results = [drive(host, port, shares[0], seconds, requests)]
    else:
        with concurrent.futures.ProcessPoolExecutor(len(shares)) as pool:
            results = list(pool.map(drive, *zip(*[(host, port, n, seconds, requests) for n in shares])))
    latencies = [latency for result in results for latency in result[0]]
    return {
        "connections": connections,
        "seconds": seconds,
        "requests": len(latencies),
        "failed": sum(result[1] for result in results),
        "rps": round(len(latencies) / seconds),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def _canned_server(sock: socket.socket, stop: threading.Event):
    """Answers every request on every connection at once with the same bytes: no work to wait for."""
    selector = selectors.DefaultSelector()
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_READ)
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    while not stop.is_set():
        for event, _ in selector.select(timeout=0.1):
            if event.fileobj is sock:
                conn, _ = sock.accept()
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
            elif data := event.fileobj.recv(65536):
                event.fileobj.sendall(reply * data.count(b"\r\n\r\n"))  # one reply per request head
            else:
                selector.unregister(event.fileobj)
                event.fileobj.close()
    selector.close()


def client_ceiling(connections: int, seconds: float) -> dict:
    """What the client reaches against a server that does no work, in a process of its own: any
    measurement well below it is the server's."""
    sock = socket.create_server(("127.0.0.1", 0))
    child = subprocess.Popen(
        [sys.executable, "-c", _CANNED.format(fd=sock.fileno())], pass_fds=[sock.fileno()], cwd=PROJECT_DIR
    )
    try:
        return run_load(sock.getsockname()[1], connections, seconds)
    finally:
        child.terminate()
        child.wait(timeout=10)
        sock.close()


_CANNED = (
    "import socket, threading; from serving.load import _canned_server; "
    "_canned_server(socket.socket(fileno={fd}), threading.Event())"
)


def compare(seconds: float, connection_counts=(1, 4, 16), config: str = DEFAULT_CONFIG, port: int = 8101) -> list:
    """Each server kind as a standalone replica (serving.standalone) in turn, at each connection count."""
    names = load_config(config)["features.columns"]
    rows = []
    for server in ("asgi", "stdlib"):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.standalone",
                "--config",
                config,
                "--port",
                str(port),
                "--server",
                server,
                "--keys",
                "100",
            ],
            cwd=PROJECT_DIR,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, child)
            for n in connection_counts:
                rows.append({"server": server, **run_load(port, n, seconds, [f"k{i}" for i in range(100)], names)})
        finally:
            child.terminate()
            child.wait(timeout=10)
    return rows


def _wait_for_port(port: int, child, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the standalone replica exited with {child.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the standalone replica did not listen on port {port} within {timeout_s:g} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Kept-alive POST /predict load against a serving replica")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keys", type=int, default=100, help="keys k0 .. k<n-1>, as serving.standalone serves")
    parser.add_argument("--features", default="x1_avg,x2_avg", help="the model's feature columns, comma-separated")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--compare", action="store_true", help="standalone asgi then stdlib replicas, at 1, 4, 16")
    parser.add_argument("--ceiling", action="store_true", help="the client against a server doing no work")
    args = parser.parse_args(argv)
    if args.compare:
        rows = compare(args.seconds, port=args.port)
    elif args.ceiling:
        rows = [{"server": "canned", **client_ceiling(args.connections, args.seconds)}]
    else:
        rows = [
            run_load(
                args.port,
                args.connections,
                args.seconds,
                [f"k{i}" for i in range(args.keys)],
                args.features.split(","),
                args.processes,
            )
        ]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
