"""Schemathesis against the running service's own OpenAPI document (/schema/openapi.json): generated requests for
every operation (bounded: 20 examples each), each sent with the admin token, a labeler token and no token; no answer
may be a 5xx, and every answer must match the schema (status code documented, content type, body shape)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis import checks

from tests.service_fixtures import ADMIN_TOKEN, Server, service_bundles

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def schema_server(tiny_tokenizer, tiny_world, tmp_path_factory):
    bundles, _ = service_bundles(tiny_tokenizer, tmp_path_factory)
    d = tmp_path_factory.mktemp("schema_srv")
    # Eval jobs that generated requests start are kept tiny (n <= 2, at most 2 at a time).
    server = Server(bundles, d / "s.db", data_dir=tiny_world, eval_dir=d / "evals", max_eval_n=2, max_eval_jobs=2)
    server.start()
    with server.admin() as admin:
        token = admin.post("/v1/labelers", json={"name": "schemathesis"}).json()["token"]
        admin.post("/v1/label/tasks", json={"tasks": [_task(i) for i in range(3)]})
    server.labeler_token = token
    yield server
    with server.client() as c:
        metrics = c.get("/metrics").text
    server.stop()
    # The generated requests reached the models, not only the validators.
    for route in ("/v1/summarize", "/v1/score", "/v1/label/tasks"):
        assert f'prefsum_http_requests_total{{route="{route}",method="POST",status="200"}}' in metrics, route
    assert 'status="5' not in metrics  # belt and braces: the server counted no 5xx either


def _task(i):
    return {
        "info": {"id": f"s{i}", "post": "My dog barks at night.", "title": "Dog", "subreddit": "pets"},
        "summaries": [{"text": " dog barks", "policy": "a"}, {"text": " a dog", "policy": "ref"}],
        "labelers": ["schemathesis"],
    }


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation, from the app's OpenAPI document (built in-process, no models)."""
    from service.app import create_app
    from service.settings import Settings

    doc = create_app(Settings(admin_token="x")).openapi_schema.to_schema()
    return [
        (m.upper(), p, bool(op.get("parameters") or op.get("requestBody")))
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
    ]


ALL = _operations()
OPERATIONS = [(m, p) for m, p, _ in ALL]
# Negative (schema-violating) requests only exist for operations that take parameters or a body.
CASES = [(m, p, "positive") for m, p, _ in ALL] + [(m, p, "negative") for m, p, inputs in ALL if inputs]


@pytest.fixture(scope="module")
def api_schema(schema_server):
    return schemathesis.openapi.from_url(f"{schema_server.url}/schema/openapi.json")


def test_every_route_is_documented():
    assert ("POST", "/v1/summarize") in OPERATIONS and ("POST", "/v1/label/{task_id}") in OPERATIONS
    assert len(OPERATIONS) >= 18


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{mode}-{m} {p}" for m, p, mode in CASES])
def test_api_conforms_to_its_schema(api_schema, schema_server, method, path, mode):
    from schemathesis import GenerationMode

    strategy = api_schema[path][method].as_strategy(generation_mode=GenerationMode(mode))

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=20 if mode == "positive" else 10,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case):
        for token in (ADMIN_TOKEN, schema_server.labeler_token, None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            case.call_and_validate(base_url=schema_server.url, headers=headers, checks=CHECKS, timeout=120)

    run()
