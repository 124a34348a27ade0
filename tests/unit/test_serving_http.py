"""The replica's HTTP answers, in process on a loopback port, with models offered directly (no Kafka),
from both servers (`--server asgi`, the default, and `--server stdlib`): they answer alike."""

import dataclasses
import http.client
import json
import os
import subprocess
import sys
import threading

import pytest
from river import preprocessing

from jobs.config import Config, ConfigError, load_config
from serving.replica import SERVERS, Replica, make_server
from serving.routes import ENDPOINTS, route
from serving.settings import ServingSettings
from tests.unit.models import MODEL, PROJECT_DIR, SIGNING, snapshot, trained
from udfs.envelope import dump_model

FEATURES = ["x1", "x2"]


def config(**serving):
    return Config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},  # never dialled: the follower is not started here
            "topics": {"snapshots": {"name": "snapshots"}, "features": {"name": "features"}},
            "features": {"columns": FEATURES},
            "model": MODEL,
            "signing": SIGNING,
            "serving": {"max_body_bytes": 200, **serving},
        },
        "serving-test.yaml",
    )


def serve(replica, server):
    """A server of kind `server` answering from `replica` in a thread, once it accepts connections."""
    http_server = make_server(replica, "127.0.0.1", 0, server)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    return http_server


@pytest.fixture(params=SERVERS)
def start(request):
    kind = request.param
    """start(**serving settings) -> (replica, request(method, path, body=None, headers=None) -> (status, body));
    request.headers are the last response's headers."""
    servers = []

    def start_replica(**serving):
        replica = Replica(config(**serving))
        server = serve(replica, kind)
        servers.append(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)

        def request(method, path, body=None, headers=None):
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            request.headers = response.headers
            is_json = response.getheader("Content-Type") == "application/json"
            return response.status, json.loads(raw) if is_json else raw.decode()

        request.server = kind
        return replica, request

    yield start_replica
    for server in servers:
        server.shutdown()
        server.server_close()


def test_predict_and_describe_a_served_model(start):
    replica, request = start()
    model = trained(60)
    replica.registry.offer(snapshot("book-1", 3, model, n_learned=30, metric_value=0.4), applied_at=6.0)
    status, answer = request("POST", "/predict", {"key": "book-1", "features": {"x1": 0.5, "x2": 1}})
    assert status == 200
    assert answer["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": 1.0})[True]
    assert (answer["key"], answer["model_version"]) == ("book-1", 3) and answer["model_age_s"] > 0
    status, described = request("GET", "/models/book-1")
    assert status == 200
    assert (described["model_version"], described["n_learned"], described["window_end_ms"]) == (3, 30, 1_000)
    assert described["metric"] == {"name": "LogLoss", "value": 0.4} and described["freshness_s"] == 5.0
    assert request("GET", "/models/book-2") == (404, {"error": "no model for key 'book-2'"})


def test_bad_requests_get_clear_answers_on_a_connection_that_stays_usable(start):
    replica, request = start()
    replica.registry.offer(snapshot("book-1", 1, trained(5)), applied_at=6.0)
    assert request("POST", "/predict", b'{"key": "book-1", "features": ') == (
        400,
        {"error": "body is not valid JSON: Expecting value: line 1 column 31 (char 30)"},
    )
    assert request.headers["Connection"] is None  # the body was read whole, so the connection goes on
    assert request("POST", "/predict", {"key": "book-1", "features": {"x1": 1}}) == (
        400,
        {"error": "missing feature 'x2'"},
    )
    assert request("POST", "/predict", {"key": "book-1", "features": {"x1": 1, "x2": [2]}}) == (
        400,
        {"error": "feature 'x2' must be a number, got list"},
    )
    assert request("POST", "/predict", {"key": "nope", "features": {"x1": 1, "x2": 2}}) == (
        404,
        {"error": "no model for key 'nope'"},
    )
    assert request("GET", "/predict") == (404, {"error": "no such path: /predict"})
    assert request("POST", "/predict", {"key": "book-1", "features": {"x1": 1, "x2": 2}})[0] == 200


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ({"Content-Length": "5000"}, 413, "body of 5000 bytes is over the limit of 200 (serving.max_body_bytes)"),
        ({"Content-Length": "-1"}, 400, "Content-Length must be a whole number of bytes, got '-1'"),
        ({"Content-Length": "ten"}, 400, "Content-Length must be a whole number of bytes, got 'ten'"),
        ({"Transfer-Encoding": "chunked"}, 411, "send the body with a Content-Length header, not chunked"),
    ],
)
def test_a_body_that_is_not_read_is_refused_and_the_connection_closed(start, headers, status, message):
    _, request = start()
    if request.server == "asgi" and status == 400:  # uvicorn's parser refuses the header before the application
        message = "invalid HTTP request: Invalid character in Content-Length"
    # http.client sends these headers as given; the server must answer without waiting for a body.
    assert request("POST", "/predict", headers={**headers, "Content-Type": "application/json"}) == (
        status,
        {"error": message},
    )
    assert request.headers["Connection"] == "close"


def test_unknown_keys_get_the_fallback_model_when_one_is_configured(start):
    replica, request = start(fallback_key="global")
    replica.registry.offer(snapshot("global", 2, trained(20)), applied_at=6.0)
    status, answer = request("POST", "/predict", {"key": "new-book", "features": {"x1": 0, "x2": 0}})
    assert status == 200 and (answer["model_key"], answer["model_version"], answer["fallback"]) == ("global", 2, True)


def test_a_batch_reports_errors_per_item(start):
    replica, request = start(max_body_bytes=10_000)
    replica.registry.offer(snapshot("book-1", 1, trained(5)), applied_at=6.0)
    status, answer = request(
        "POST",
        "/predict/batch",
        {
            "requests": [
                {"key": "book-1", "features": {"x1": 1, "x2": 2}},
                {"key": "book-9", "features": {"x1": 1, "x2": 2}},
                {"key": "book-1", "features": {"x1": "1", "x2": 2}},
            ]
        },
    )
    assert status == 200
    ok, unknown, bad = answer["results"]
    assert ok["model_version"] == 1
    assert unknown == {"error": "no model for key 'book-9'", "status": 404}
    assert bad == {"error": "feature 'x1' must be a number, got str", "status": 400}


def test_a_model_that_cannot_predict_gets_a_500_not_a_dropped_connection(start):
    replica, request = start()
    replica.registry.offer(snapshot("book-1", 1, preprocessing.StandardScaler()), applied_at=6.0)  # a transformer
    status, answer = request("POST", "/predict", {"key": "book-1", "features": {"x1": 1, "x2": 2}})
    assert status == 500 and answer["error"].startswith("internal error: AttributeError")


def test_ready_once_caught_up_and_unhealthy_once_following_failed(start):
    replica, request = start()
    assert request("GET", "/readyz") == (503, {"ready": False, "models": 0})
    assert request("GET", "/healthz") == (200, {"status": "ok"})
    replica.follower.ready.set()
    assert request("GET", "/readyz") == (200, {"ready": True, "models": 0})
    replica.follower.error = "RuntimeError: topic 'snapshots' does not exist"
    assert request("GET", "/healthz") == (
        503,
        {"status": "not following the topics", "error": "RuntimeError: topic 'snapshots' does not exist"},
    )


def test_metrics_count_requests_by_endpoint(start):
    _, request = start()
    for path in ("/models/a", "/models/b", "/wp-admin", "/readyz"):
        request("GET", path)
    status, text = request("GET", "/metrics")
    assert status == 200
    assert 'serving_requests_total{path="/models",status="404"} 2.0' in text
    assert 'serving_requests_total{path="other",status="404"} 1.0' in text
    assert 'serving_requests_total{path="/readyz",status="503"} 1.0' in text
    for name in (
        "serving_snapshots_applied_total",
        "serving_snapshots_rejected_total",
        "serving_consumer_lag",
        "serving_freshness_seconds",
    ):
        assert f"# TYPE {name} " in text


@pytest.mark.parametrize(
    "path, label",
    [
        ("/predict", "/predict"),
        ("/predict/batch", "/predict/batch"),
        ("/models/k/x", "/models"),
        ("/features/k", "/features"),
        ("/models", "other"),
        ("/predict?debug=1", "other"),
    ],
)
def test_route_labels(path, label):
    assert route(path) == label


def test_models_shows_the_rollback_the_versions_held_and_the_jobs_safety_facts(start):
    replica, request = start(history_per_key=2)
    good = trained(40)
    replica.registry.offer(snapshot("book-1", 1, good), applied_at=6.0)
    replica.registry.offer(snapshot("book-1", 2, trained(5)), applied_at=7.0)
    record = dataclasses.replace(
        snapshot("book-1", 3, good),
        extra={
            "rollback": {"from_version": 2, "to_version": 1, "reason": "v2 scored 0.9 against 0.4"},
            "drift": {"count": 1, "last_window_end_ms": 4_000, "last_action": "none"},
            "held_back": 2,
        },
    )
    replica.registry.offer(record, applied_at=8.0)
    status, described = request("GET", "/models/book-1")
    assert status == 200 and described["model_version"] == 3 and described["history_versions"] == [2, 3]
    assert described["rollback"] == {
        "version": 3,
        "from_version": 2,
        "to_version": 1,
        "applied_at": 8.0,
        "reason": "v2 scored 0.9 against 0.4",
        "source": "history",
    }
    assert described["drift"]["count"] == 1 and described["held_back"] == 2
    x = {"x1": 0.5, "x2": 1}
    assert (
        request("POST", "/predict", {"key": "book-1", "features": x})[1]["prediction"]
        == good.predict_proba_one({"x1": 0.5, "x2": 1.0})[True]
    )


def test_shadow_predictions_are_answered_and_counted(start):
    replica, request = start(shadow_challenger=True, max_body_bytes=10_000)
    champion, challenger = trained(20), trained(200)
    replica.registry.offer(
        dataclasses.replace(
            snapshot("book-1", 1, champion),
            challenger_payload=dump_model(challenger),
            extra={"challenger": {"metric_value": 0.3, "role": "challenger"}},
        ),
        applied_at=6.0,
    )
    x = {"x1": 0.5, "x2": 1.0}
    status, answer = request("POST", "/predict", {"key": "book-1", "features": x})
    assert status == 200 and answer["prediction"] == champion.predict_proba_one(x)[True]
    shadow = challenger.predict_proba_one(x)
    assert answer["shadow"] == {
        "prediction": shadow[True],
        "predicted": "true" if shadow[True] > shadow[False] else "false",
        "probabilities": {"true": shadow[True], "false": shadow[False]},
        "role": "challenger",
    }
    request("POST", "/predict/batch", {"requests": [{"key": "book-1", "features": x}] * 2})
    text = request("GET", "/metrics")[1]
    assert 'serving_shadow_predictions_total{outcome="ok"} 3.0' in text
    assert "# TYPE serving_rollbacks_total counter" in text


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("history_per_key", 0, "'serving.history_per_key' must be a whole number of at least 1, got 0"),
        ("shadow_challenger", "yes", "'serving.shadow_challenger' must be true or false, not 'yes'"),
    ],
)
def test_wrong_safety_settings_name_themselves(setting, value, message):
    with pytest.raises(ConfigError) as error:
        Replica(config(**{setting: value}))
    assert str(error.value) == f"serving-test.yaml: {message}"


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("max_feature_age_s", "5m", "'serving.max_feature_age_s' must be a number of seconds > 0, not '5m'"),
        (
            "freshness_buckets",
            [1, 0.5],
            "'serving.freshness_buckets' must be a non-empty list of seconds > 0 in increasing order, not [1, 0.5]",
        ),
        ("fallback_key", 7, "'serving.fallback_key' must be non-empty text, not 7"),
        ("reader_process", "yes", "'serving.reader_process' must be true or false, not 'yes'"),
        ("max_body_byte", 10, "'serving.max_body_byte' is not a setting: did you mean 'max_body_bytes'? (serving has "),
        ("max_json_depth", 2.5, "'serving.max_json_depth' must be a whole number >= 1, not 2.5"),
        ("max_connections", 0, "'serving.max_connections' must be a whole number >= 1, not 0"),
        ("keep_alive_timeout_s", True, "'serving.keep_alive_timeout_s' must be a number of seconds > 0, not True"),
        ("base_port", 70000, "'serving.base_port' must be a port number (1 to 65535), not 70000"),
        ("fallback_key", "", "'serving.fallback_key' must be non-empty text, not ''"),
        ("history_per_key", "3", "'serving.history_per_key' must be a whole number of at least 1, not '3'"),
    ],
)
def test_wrong_serving_settings_name_themselves(setting, value, message):
    with pytest.raises(ConfigError) as error:
        Replica(config(**{setting: value}))
    assert str(error.value).startswith(f"serving-test.yaml: {message}")
    assert "\n" not in str(error.value)


def test_every_serving_setting_of_the_shipped_configs_is_one_the_replica_reads():
    for name in ("job.yaml", "bookstore.yaml"):
        config = load_config(os.path.join(PROJECT_DIR, "conf", name))
        settings = ServingSettings.from_config(config)  # a mistyped key would be refused here
        assert {key: getattr(settings, key) for key in config["serving"]} == config["serving"], name


def test_wrong_feature_columns_and_topics_name_themselves():
    for section, value, message in [
        (
            "features",
            {"columns": "x1"},
            "'features.columns' must be a non-empty list of distinct column names, not 'x1'",
        ),
        ("kafka", {"bootstrap_servers": 9092}, "'kafka.bootstrap_servers' must be non-empty text, not 9092"),
    ]:
        with pytest.raises(ConfigError) as error:
            Replica(Config({**config().data, section: value}, "serving-test.yaml"))
        assert str(error.value) == f"serving-test.yaml: {message}"


@pytest.mark.parametrize(
    "options, setting, line",
    [
        (
            [],
            {"serving": {"request_timeout_s": "ten"}},
            "error: replica.yaml: 'serving.request_timeout_s' must be a number of seconds > 0, not 'ten'",
        ),
        (["--port", "80a"], {}, "argument --port: '80a' is not a port number (0 to 65535)"),
    ],
)
def test_the_command_ends_a_wrong_setting_or_option_in_one_line_and_exit_code_2(tmp_path, options, setting, line):
    path = tmp_path / "conf" / "replica.yaml"
    path.parent.mkdir()
    path.write_text(json.dumps({**config().data, **setting}))  # JSON is YAML
    result = subprocess.run(
        [sys.executable, "-m", "serving.replica", "--config", str(path), *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_DIR,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(line) and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, "body is nested 100000 deep, over the limit of 32 (serving.max_json_depth)"),
        (
            b'{"key": "book-1", "features": {"x1": ' + b"7" * 5_000 + b', "x2": 1}}',
            "'features.x1' is an integer of 5000 digits, over the limit of 100 (serving.max_json_digits)",
        ),
        (
            b'{"key": "book-1", "features": {"x1": 1, "x2": -Infinity}}',
            "'features.x2' is -Infinity, which is not a JSON number",
        ),
        (
            b'{"requests": [{"key": "book-1", "features": {"x1": NaN}}]}',
            "'requests[0].features.x1' is NaN, which is not a JSON number",
        ),
        (
            b'{"key": "book-\xff"}',
            "body is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 14: invalid start byte",
        ),
    ],
)
def test_bodies_that_would_crash_or_stall_the_parser_get_a_400_naming_the_problem(start, body, message):
    replica, request = start(max_body_bytes=300_000)
    replica.registry.offer(snapshot("book-1", 1, trained(5)), applied_at=6.0)
    assert request("POST", "/predict", body) == (400, {"error": message})
    assert request("POST", "/predict", {"key": "book-1", "features": {"x1": 1, "x2": 2}})[0] == 200  # still usable


def test_the_open_inference_protocol_round_trip(start):
    replica, request = start(max_body_bytes=10_000)
    model = trained(60)
    replica.registry.offer(snapshot("book/1", 2, trained(5)), applied_at=6.0)
    replica.registry.offer(snapshot("book/1", 3, model), applied_at=7.0)
    assert request("GET", "/v2/health/live") == (200, {"live": True})
    assert request("GET", "/v2/health/ready") == (503, {"ready": False})
    replica.follower.ready.set()
    assert request("GET", "/v2/health/ready") == (200, {"ready": True})
    assert request("GET", "/v2/models/book%2F1") == (
        200,
        {
            "name": "book/1",
            "versions": ["2", "3"],
            "platform": "river",
            "inputs": [
                {"name": "x1", "datatype": "FP64", "shape": [-1]},
                {"name": "x2", "datatype": "FP64", "shape": [-1]},
            ],
            "outputs": [
                {"name": "prediction", "datatype": "FP64", "shape": [-1]},
                {"name": "predicted", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, -1]},
            ],
        },
    )
    assert request("GET", "/v2/models/book%2F1/ready") == (200, {"name": "book/1", "ready": True})
    assert request("GET", "/v2/models/book-2/ready") == (404, {"error": "no model for key 'book-2'"})
    rows = [{"x1": 0.5, "x2": 1.0}, {"x1": -1.0, "x2": 3.0}, {"x1": 2.0, "x2": 0.0}]
    status, answer = request(
        "POST",
        "/v2/models/book%2F1/infer",
        {
            "id": "r-1",
            "inputs": [
                {"name": name, "shape": [3], "datatype": "FP64", "data": [row[name] for row in rows]}
                for name in ("x2", "x1")
            ],
        },
    )
    assert status == 200
    # What /predict answers, as tensors: the probability of true, the class, every class's probability.
    said = [model.predict_proba_one(r) for r in rows]
    assert answer == {
        "id": "r-1",
        "model_name": "book/1",
        "model_version": "3",
        "outputs": [
            {"name": "prediction", "shape": [3], "datatype": "FP64", "data": [p[True] for p in said]},
            {
                "name": "predicted",
                "shape": [3],
                "datatype": "BYTES",
                "data": [str(p[True] > p[False]).lower() for p in said],
            },
            {
                "name": "probabilities",
                "shape": [3, 2],
                "datatype": "FP64",
                "data": [p[c] for p in said for c in (False, True)],
                "parameters": {"classes": ["false", "true"]},
            },
        ],
    }
    for row, p in zip(rows, said):
        assert request("POST", "/predict", {"key": "book/1", "features": row})[1]["probabilities"] == {
            "false": p[False],
            "true": p[True],
        }
    assert request(
        "POST",
        "/v2/models/book%2F1/infer",
        {
            "inputs": [
                {"name": "x1", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                {"name": "x2", "shape": [2], "datatype": "FP64", "data": [1, "a"]},
            ]
        },
    ) == (400, {"error": "row 1: feature 'x2' must be a number, got str"})
    assert request(
        "POST", "/v2/models/book%2F1/infer", {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP64", "data": [1]}]}
    ) == (400, {"error": "missing input 'x2'"})
    assert request(
        "POST",
        "/v2/models/nope/infer",
        {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [1]} for n in ("x1", "x2")]},
    ) == (404, {"error": "no model for key 'nope'"})
    text = request("GET", "/metrics")[1]
    assert 'serving_requests_total{path="/v2/models/{key}/infer",status="200"} 1.0' in text
    assert 'serving_requests_total{path="/v2/models/{key}/infer",status="400"} 2.0' in text


def test_the_openapi_document_lists_exactly_the_endpoints_served(start):
    _, request = start()
    status, document = request("GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == {(e.method, e.path) for e in ENDPOINTS}
    for path, item in document["paths"].items():
        for operation in item.values():
            assert ("{key}" in path) == any(p["name"] == "key" for p in operation["parameters"]), path
