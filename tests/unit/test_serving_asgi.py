"""The ASGI server's limits hold against hostile clients: fuzzed bodies, half-open connections, slow or
oversized requests, more requests or connections than allowed. In process, on loopback, no Kafka."""

import http.client
import json
import os
import random
import socket
import time

import pytest

from jobs.config import ConfigError
from serving.load import run_load
from serving.replica import Replica
from tests.unit.models import trained
from tests.unit.test_serving_http import config, serve, snapshot

FEATURES = {"x1": 0.5, "x2": 1.0}


@pytest.fixture
def asgi():
    """asgi(**serving settings) -> (replica, port) of an ASGI server serving book-1; stopped at the end."""
    servers = []

    def start(**serving):
        replica = Replica(config(**serving))
        replica.registry.offer(snapshot("book-1", 1, trained(20)), applied_at=6.0)
        servers.append(serve(replica, "asgi"))
        return replica, servers[-1].server_address[1]

    start.servers = servers
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def raw_request(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[int, dict]:
    """Send raw bytes on a new connection; the status and JSON body of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        return read_reply(sock)


def read_reply(sock) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    assert response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(response.read())


def fuzzed_bodies(rng: random.Random, count: int):
    """(path, body) pairs: valid and broken requests, deep nesting, huge integers, NaN/Infinity,
    invalid UTF-8, random bytes and mutations, and a few 1 MiB batches."""
    valid = [
        json.dumps({"key": "book-1", "features": FEATURES}).encode(),
        json.dumps({"requests": [{"key": "book-1", "features": FEATURES}] * 3}).encode(),
        json.dumps({"n": 3, "candidates": ["book-1", "book-2"]}).encode(),
        json.dumps(
            {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in FEATURES.items()]}
        ).encode(),
    ]
    paths = ["/predict", "/predict/batch", "/recommend", "/v2/models/book-1/infer"]
    for i in range(count):
        kind = i % 10
        path = rng.choice(paths)
        if kind == 0:
            depth = 100_000 if i % 100 == 0 else rng.choice([32, 33, 1000, rng.randrange(1, 10_000)])
            opener = rng.choice([b"[", b'{"a":', b'{"features":'])
            body = (
                opener * depth + rng.choice([b"1", b""]) + (b"]" if opener == b"[" else b"}") * rng.randrange(depth + 1)
            )
        elif kind == 1:
            digits = rng.choice([101, 4_300, 4_301, 5_000, rng.randrange(1, 5_001)])
            number = ("-" if rng.random() < 0.5 else "") + "9" * digits
            body = b'{"key": "book-1", "features": {"x1": ' + number.encode() + b', "x2": 1}}'
        elif kind == 2:
            literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
            body = rng.choice(valid).replace(b"0.5", literal, 1)
            if literal in body and rng.random() < 0.3:  # and broken after it
                body = body[: rng.randrange(body.index(literal), len(body))]
        elif kind == 3:
            body = rng.choice(valid)
            at = rng.randrange(len(body))
            body = body[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + body[at:]
        elif kind == 4:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        elif kind == 5:
            body = rng.choice(valid)[: rng.randrange(60)]
        elif kind == 6 and i % 2000 == 6:
            item = json.dumps({"key": rng.choice(["book-1", "book-2"]), "features": FEATURES}).encode()
            body = b'{"requests": [' + b", ".join([item] * ((1 << 20) // (len(item) + 2))) + b"]}"
            path = "/predict/batch"
        elif kind == 9:
            path, body = rng.choice(list(zip(paths, valid)))
        elif kind == 7:
            body = json.dumps(
                rng.choice(
                    [
                        None,
                        [],
                        "x",
                        1,
                        {"key": 1},
                        {"key": "book-1", "features": [1]},
                        {"requests": {}},
                        {"n": True},
                        {"inputs": [{"name": "x1"}]},
                    ]
                )
            ).encode()
        else:
            body = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        yield path, body


def test_ten_thousand_fuzzed_bodies_get_json_answers_and_no_500(asgi):
    _, port = asgi(max_body_bytes=2 << 20)
    rng = random.Random(17)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = {}
    started = time.monotonic()
    for path, body in fuzzed_bodies(rng, 10_000):
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        assert 200 <= response.status < 500, (path, body[:200], response.status, raw[:200])
        assert isinstance(json.loads(raw), dict) and response.getheader("Content-Type") == "application/json"
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.getheader("Connection") == "close":
            connection.close()
    assert time.monotonic() - started < 40
    assert statuses[200] > 1000 and statuses[400] > 5000  # the fuzz reached both the models and the checks


def process_threads() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_a_thousand_half_open_connections_neither_block_nor_cost_threads(asgi):
    replica, port = asgi(request_timeout_s=4.0)
    before = process_threads()
    partial = [b"", b"POST /predict HTTP/1.1\r\nContent-Le", b"POST /predict HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"]
    stalled = []
    try:
        for i in range(1000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(partial[i % 3])
            stalled.append(sock)
        connections = asgi.servers[-1].server.server_state.connections
        # Every one accepted and read from: those whose body is arriving past the 256th were refused (503).
        deadline = time.monotonic() + 3
        while (
            len(connections) + replica.requests.value(path="/predict", status="503") < 1000
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert (len(connections), replica.requests.value(path="/predict", status="503")) == (1000 - 77, 77)
        started = time.perf_counter()
        assert raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == (200, {"status": "ok"})
        took = time.perf_counter() - started
        assert took < 0.1, f"/healthz took {took * 1000:.0f} ms beside {len(connections)} half-open connections"
        assert process_threads() <= before + 2, (before, process_threads())
        assert raw_request(port, b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")[0] == 503  # still full
        # A request still incomplete after serving.request_timeout_s gets a 408, and its connection is closed.
        stalled[1].settimeout(5)
        assert read_reply(stalled[1]) == (
            408,
            {"error": "request not received whole within 4 s (serving.request_timeout_s)"},
        )
        assert read_reply(stalled[2])[0] == 408
        assert stalled[0].recv(1) == b""  # one that sent nothing is closed without an answer to a question not asked
    finally:
        for sock in stalled:
            sock.close()


def test_more_requests_in_flight_than_allowed_get_a_503_naming_the_setting(asgi):
    _, port = asgi(max_concurrent_requests=2)
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for sock in waiting:  # headers sent, body not yet: each request is in flight
            sock.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 60\r\n\r\n")
        time.sleep(0.1)
        body = json.dumps({"key": "book-1", "features": FEATURES}).encode().ljust(60)
        one_more = b"POST /predict HTTP/1.1\r\nContent-Length: 60\r\n\r\n" + body
        assert raw_request(port, one_more) == (
            503,
            {"error": "2 requests in flight, the limit of serving.max_concurrent_requests: retry shortly"},
        )
        assert raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n")[0] == 200  # no body: answered however full
        waiting[0].sendall(body)
        assert read_reply(waiting[0])[0] == 200
        assert raw_request(port, one_more)[0] == 200
    finally:
        for sock in waiting:
            sock.close()


def test_more_connections_than_allowed_get_a_503_naming_the_setting(asgi):
    _, port = asgi(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.1)
        assert raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n") == (
            503,
            {"error": "3 connections open, the limit of serving.max_connections: retry shortly"},
        )
        held[0].sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert read_reply(held[0]) == (200, {"status": "ok"})
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 3_000 + b"\r\n",
    ],
)
def test_request_heads_over_the_limit_get_a_431(asgi, head):
    _, port = asgi(max_header_bytes=16_384)
    assert raw_request(port, head) == (
        431,
        {"error": "request line and headers over 16384 bytes (serving.max_header_bytes)"},
    )


def test_garbage_instead_of_http_gets_a_json_400(asgi):
    _, port = asgi()
    assert raw_request(port, b"\x16\x03\x01 not http at all\r\n\r\n") == (
        400,
        {"error": "invalid HTTP request: Invalid method encountered"},
    )


def test_a_kept_alive_connection_survives_many_requests_within_the_limits(asgi):
    replica, port = asgi(max_header_bytes=1024)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(50):  # 50 heads of ~150 bytes: the limit is per request, not per connection
        connection.request("POST", "/predict", body=json.dumps({"key": "book-1", "features": FEATURES}))
        assert connection.getresponse().read() and replica.requests.value(path="/predict", status="200") > 0


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("request_timeout_s", "10 s", "'serving.request_timeout_s' must be a number of seconds > 0, not '10 s'"),
        ("keep_alive_timeout_s", -1, "'serving.keep_alive_timeout_s' must be a number of seconds > 0, not -1"),
        ("max_json_depth", 0, "'serving.max_json_depth' must be a whole number >= 1, not 0"),
        ("max_concurrent_requests", 2.5, "'serving.max_concurrent_requests' must be a whole number >= 1, not 2.5"),
    ],
)
def test_wrong_limits_name_their_setting(setting, value, message):
    with pytest.raises(ConfigError) as error:
        Replica(config(**{setting: value}))
    assert str(error.value) == f"serving-test.yaml: {message}"


def test_the_load_generator_counts_answers_and_failures(asgi):
    _, port = asgi()
    result = run_load(port, connections=2, seconds=0.5, keys=["book-1"], feature_names=FEATURES)
    assert result["requests"] > 50 and result["failed"] == 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert run_load(port, connections=2, seconds=0.3, keys=["book-9"], feature_names=FEATURES)["failed"] > 50  # 404s
    spread = run_load(port, connections=3, seconds=0.5, keys=["book-1"], feature_names=FEATURES, processes=2)
    assert spread["requests"] > 50 and spread["failed"] == 0
