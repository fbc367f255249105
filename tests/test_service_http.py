"""The service over real HTTP: `prefsum serve` on 127.0.0.1 (a free port) with bundles exported from tiny models,
driven by httpx. Expected values come from the torch checkpoints the bundles were exported from (greedy summaries,
reward-model scores), from hand computation (sigmoid, counters) and from the public-format loaders."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service_fixtures import (
    ADMIN_TOKEN,
    QUERY_BUDGET,
    RESPONSE_BUDGET,
    REWARD_BIAS,
    ROOT,
    Server,
    post_item,
    service_bundles,
)

NEWS = {"text": "The landlord kept the $900 deposit after the tenant moved out of the apartment in Austin."}


@pytest.fixture(scope="session")
def models(tiny_tokenizer, tmp_path_factory):
    return service_bundles(tiny_tokenizer, tmp_path_factory)


@pytest.fixture(scope="module")
def srv(models, tiny_world, tmp_path_factory):
    d = tmp_path_factory.mktemp("srv")
    # A generous max wait makes clients that arrive together share model calls deterministically.
    server = Server(models[0], d / "db" / "s.db", data_dir=tiny_world, eval_dir=d / "evals", max_wait_ms=50)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def torch_refs(models, tiny_tokenizer):
    """The torch checkpoints the bundles came from: the independent reference for the served numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.set_num_threads(1)
    ckpts = models[1]
    policy = AutoModelForCausalLM.from_pretrained(str(ckpts["policy-a"])).eval()
    rm = AutoModelForSequenceClassification.from_pretrained(str(ckpts["rm"])).eval()
    return policy, rm, tiny_tokenizer


def _query_ids(tok, item):
    from training.task import news_query, tldr_query
    from training.tokenizer import token_counter

    count = token_counter(tok)
    if "text" in item:
        q = news_query(item["text"], max_tokens=QUERY_BUDGET, count_tokens=count)
    else:
        q = tldr_query(item["subreddit"], item["title"], item["post"], max_tokens=QUERY_BUDGET, count_tokens=count)
    return tok(q.text, add_special_tokens=False)["input_ids"]


def _metric(text: str, line_start: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(line_start):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------------------------------- ops


def test_health_ready_models(srv):
    with srv.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True and all(ready.json()["checks"].values())
        m = c.get("/v1/models").json()
    assert (m["default_policy"], m["default_reward"]) == ("policy-a", "rm")
    kinds = {x["name"]: (x["kind"], x["default"]) for x in m["models"]}
    assert kinds == {"policy-a": ("policy", True), "policy-b": ("policy", False), "rm": ("reward", True)}
    rm = next(x for x in m["models"] if x["name"] == "rm")["manifest"]
    assert rm["reward_bias"] == REWARD_BIAS and rm["max_response_tokens"] == RESPONSE_BUDGET
    assert set(rm["files"]) >= {"model.onnx", "tokenizer.json"}


def test_label_page_is_served(srv):
    with srv.client() as c:
        r = c.get("/label")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "prefsum labeling" in r.text and "/v1/label/next" in r.text


# --------------------------------------------------------------------------------------------------- models


def test_greedy_summaries_match_the_torch_checkpoint(srv, torch_refs):
    from training.sampling import generate

    policy, _, tok = torch_refs
    items = [post_item(1), post_item(2), NEWS]
    with srv.client() as c:
        r = c.post("/v1/summarize", json={"inputs": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "policy-a" and len(body["results"]) == 3
    want = generate(policy, tok, [_query_ids(tok, it) for it in items], max_new_tokens=RESPONSE_BUDGET)
    for res, ref in zip(body["results"], want, strict=True):
        (s,) = res["summaries"]
        assert (s["text"], s["tokens"], s["finish_reason"], s["score"]) == (
            ref.text,
            len(ref.tokens),
            ref.finish_reason,
            None,
        )


def test_scores_match_the_torch_reward_model_minus_its_bias(srv, torch_refs):
    import torch

    from training.reward import encode_summary, rewards

    _, rm, tok = torch_refs
    item = post_item(3)
    texts = ["boyfriend wants to move to Denver", " my lease ends in June", "Max the beagle barks"]
    with srv.client() as c:
        three = c.post("/v1/score", json={"input": item, "summaries": texts}).json()
        two = c.post("/v1/score", json={"input": item, "summaries": texts[:2], "reward_model": "rm"}).json()
    q = _query_ids(tok, item)
    with torch.no_grad():
        raw = rewards(rm, [encode_summary(tok, q, t, RESPONSE_BUDGET) for t in texts], tok.pad_token_id)
    want = [float(x) - REWARD_BIAS for x in raw]
    assert three["model"] == "rm" and three["preference"] is None
    assert three["scores"] == pytest.approx(want, abs=1e-4)
    assert two["scores"] == pytest.approx(three["scores"][:2], abs=1e-6)
    diff = two["scores"][0] - two["scores"][1]
    assert two["preference"] == pytest.approx(1 / (1 + math.exp(-diff)), abs=1e-9)


def test_return_scores_and_best_of(srv):
    item = post_item(4)
    with srv.client() as c:
        sampling = {"inputs": [item], "n": 3, "temperature": 0.9, "seed": 5}
        r = c.post("/v1/summarize", json=sampling | {"return_scores": True})
        assert r.status_code == 200, r.text
        sampled = r.json()["results"][0]["summaries"]
        scored = c.post("/v1/score", json={"input": item, "summaries": [s["text"] for s in sampled]}).json()
        again = c.post("/v1/summarize", json={"inputs": [item], "n": 3, "temperature": 0.9, "seed": 5}).json()
        bo = c.post("/v1/summarize", json={"inputs": [item], "best_of": 4, "temperature": 0.9, "seed": 5}).json()
        bo_again = c.post("/v1/summarize", json={"inputs": [item], "best_of": 4, "temperature": 0.9, "seed": 5}).json()
        n4 = c.post("/v1/summarize", json={"inputs": [item], "n": 4, "temperature": 0.9, "seed": 5}).json()
    assert [s["score"] for s in sampled] == pytest.approx(scored["scores"], abs=1e-6)
    assert [s["text"] for s in again["results"][0]["summaries"]] == [s["text"] for s in sampled]  # seeded
    (kept,) = bo["results"][0]["summaries"]
    assert bo["reward_model"] == "rm" and isinstance(kept["score"], float)
    assert kept["text"] in {s["text"] for s in n4["results"][0]["summaries"]}  # picked among the same 4 samples
    assert bo_again == bo


def test_other_policy_and_budget(srv):
    with srv.client() as c:
        a = c.post("/v1/summarize", json={"inputs": [post_item(5)], "max_new_tokens": 3}).json()
        b = c.post("/v1/summarize", json={"inputs": [post_item(5)], "policy": "policy-b", "max_new_tokens": 3}).json()
    assert a["model"] == "policy-a" and b["model"] == "policy-b"
    for body in (a, b):
        (s,) = body["results"][0]["summaries"]
        assert s["tokens"] <= 3 and s["finish_reason"] in ("eos", "length")
        assert s["finish_reason"] == "eos" or s["tokens"] == 3


# --------------------------------------------------------------------------------------------------- load


def test_32_concurrent_clients_zero_errors_and_batched_results_equal_single_ones(srv):
    items = [post_item(100 + i) for i in range(32)]
    with srv.client() as c:
        single = [c.post("/v1/summarize", json={"inputs": [it]}).json()["results"][0] for it in items]
        metrics_before = c.get("/metrics").text

    def one(i):
        with srv.client() as c:
            return c.post("/v1/summarize", json={"inputs": [items[i]]})

    start = threading.Barrier(32)

    def together(i):
        start.wait(10)
        return one(i)

    with ThreadPoolExecutor(32) as ex:
        answers = list(ex.map(together, range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    assert [a.json()["results"][0] for a in answers] == single  # batching never changes a greedy result
    with srv.client() as c:
        metrics_after = c.get("/metrics").text
    calls = _metric(metrics_after, 'prefsum_batch_size_count{model="policy-a"}') - _metric(
        metrics_before, 'prefsum_batch_size_count{model="policy-a"}'
    )
    assert 1 <= calls < 32  # requests that arrived together shared model calls

    # Mixed traffic from 32 clients for a bounded time (and at most 15 requests each): no errors at all.
    deadline = time.monotonic() + 8.0
    bodies = [
        ("POST", "/v1/summarize", {"inputs": [post_item(7)]}),
        ("POST", "/v1/summarize", {"inputs": [post_item(8), NEWS], "temperature": 0.7}),
        ("POST", "/v1/score", {"input": post_item(9), "summaries": ["a summary", "another one"]}),
        ("GET", "/v1/models", None),
        ("GET", "/health", None),
    ]

    def client_loop(k):
        codes = []
        with srv.client() as c:
            for j in range(15):
                if time.monotonic() > deadline:
                    break
                method, path, body = bodies[(k + j) % len(bodies)]
                codes.append(c.request(method, path, json=body).status_code)
        return codes

    with ThreadPoolExecutor(32) as ex:
        codes = [x for cs in ex.map(client_loop, range(32)) for x in cs]
    assert len(codes) >= 32 and set(codes) == {200}


def test_metrics_count_requests_tokens_and_queue(srv):
    with srv.client() as c:
        before = c.get("/metrics").text
        got = [c.post("/v1/summarize", json={"inputs": [post_item(i)], "max_new_tokens": 5}).json() for i in range(3)]
        c.post("/v1/summarize", json={"inputs": []})
        after = c.get("/metrics").text
    ok = 'prefsum_http_requests_total{route="/v1/summarize",method="POST",status="200"}'
    bad = 'prefsum_http_requests_total{route="/v1/summarize",method="POST",status="422"}'
    tokens = 'prefsum_tokens_generated_total{model="policy-a"}'
    assert _metric(after, ok) - _metric(before, ok) == 3
    assert _metric(after, bad) - _metric(before, bad) == 1
    assert _metric(after, tokens) - _metric(before, tokens) == sum(
        s["tokens"] for g in got for r in g["results"] for s in r["summaries"]
    )
    assert 'prefsum_queue_depth{model="policy-a"} 0' in after
    assert "# TYPE prefsum_http_request_duration_seconds histogram" in after
    assert 'status="5' not in after  # no request in this module so far got a 5xx


# --------------------------------------------------------------------------------------------------- bad input


BAD = [
    # (path, body (dict) or raw bytes, status, field)
    ("/v1/summarize", b"{not json", 400, None),
    ("/v1/summarize", b"", 400, "body"),
    ("/v1/summarize", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body"),
    ("/v1/summarize", {}, 422, "inputs"),
    ("/v1/summarize", {"inputs": []}, 422, "inputs"),
    ("/v1/summarize", {"inputs": [{"subreddit": "a", "title": "b", "post": 5}]}, 422, "inputs[0].post"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "temprature": 1}, 422, "temprature"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "temperature": -1}, 422, "temperature"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "top_p": 0}, 422, "top_p"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "n": 0}, 422, "n"),
    ("/v1/summarize", {"inputs": [{"text": "x", "post": "y"}]}, 422, "inputs[0].text"),
    ("/v1/summarize", {"inputs": [{"post": "y"}]}, 422, "inputs[0].subreddit"),
    ("/v1/summarize", {"inputs": [{"text": "   "}]}, 422, "inputs[0].text"),
    ("/v1/summarize", {"inputs": [{"subreddit": "a", "title": "word " * 300, "post": "p"}]}, 422, "inputs[0].title"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "max_new_tokens": RESPONSE_BUDGET + 1}, 422, "max_new_tokens"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "best_of": 2}, 422, "temperature"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "best_of": 2, "temperature": 1, "n": 2}, 422, "n"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "policy": "nope"}, 404, "policy"),
    ("/v1/summarize", {"inputs": [{"text": "x"}], "policy": "rm"}, 404, "policy"),
    (
        "/v1/summarize",
        {"inputs": [{"text": "x"}], "return_scores": True, "reward_model": "policy-a"},
        404,
        "reward_model",
    ),  # noqa: E501
    ("/v1/summarize", [1, 2], 422, "body"),
    ("/v1/score", {"input": {"text": "x"}, "summaries": []}, 422, "summaries"),
    ("/v1/score", {"input": {"text": "x"}, "summaries": ["ok", "  "]}, 422, "summaries[1]"),
    ("/v1/score", {"input": {"text": "x"}, "summaries": ["ok"], "reward_model": "zzz"}, 404, "reward_model"),
    ("/v1/score", {"summaries": ["ok"]}, 422, "input"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_inputs_answer_4xx_json_naming_the_field(srv, path, body, status, field):
    with srv.client() as c:
        if isinstance(body, bytes):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = c.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["status_code"] == status and err["detail"]
    if field is not None:
        assert err["field"] == field, err


def test_body_limit_and_unknown_routes(srv):
    with srv.client() as c:
        big = c.post("/v1/summarize", json={"inputs": [{"text": "word " * 40_000}] * 8})
        nope = c.get("/v1/nope")
        method = c.delete("/v1/summarize")
    assert big.status_code == 413 and "limit 1048576 bytes" in big.json()["detail"]
    assert nope.status_code == 404 and nope.json()["detail"].startswith("no route GET /v1/nope")
    assert method.status_code == 405


# --------------------------------------------------------------------------------------------------- labeling


def _task(i, labelers=None):
    t = {
        "info": {"id": f"t3_{i}", "post": f"My dog is {i} years old.\nShe barks.", "title": "Dog", "subreddit": "pets"},
        "summaries": [
            {"text": f" dog ({i}) barks", "policy": "sft", "note": None},
            {"text": " a dog", "policy": "ref"},
        ],
        "batch": "round1",
        "split": "valid1",
    }
    if labelers is not None:
        t["labelers"] = labelers
    return t


@pytest.fixture(scope="module")
def team(srv):
    with srv.admin() as a:
        tokens = {n: a.post("/v1/labelers", json={"name": n}).json()["token"] for n in ("alice", "bob")}
        ids = a.post(
            "/v1/label/tasks", json={"tasks": [_task(1, ["alice"]), _task(2, ["alice"]), _task(3, ["bob"])]}
        ).json()["ids"]
    return tokens, ids


def test_auth_roles(srv, team):
    tokens, _ = team
    with srv.client() as anon, srv.client("wrong-token") as wrong, srv.client(tokens["alice"]) as alice:
        with srv.admin() as admin:
            r = anon.get("/v1/label/next")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert wrong.get("/v1/label/next").status_code == 401
            assert anon.post("/v1/label/tasks", json={"tasks": [_task(9)]}).status_code == 401
            assert alice.post("/v1/label/tasks", json={"tasks": [_task(9)]}).status_code == 403
            assert alice.get("/v1/label/export").status_code == 403
            assert alice.post("/v1/labelers", json={"name": "mallory"}).status_code == 403
            assert admin.get("/v1/label/next").status_code == 403
            bad = anon.get("/v1/label/me", headers={"Authorization": "Basic abc"})
            assert bad.status_code == 401 and "Bearer" in bad.json()["detail"]
            assert admin.post("/v1/labelers", json={"name": "alice"}).status_code == 409
            r = admin.post("/v1/labelers", json={"name": "bad name!"})
            assert r.status_code == 422 and r.json()["field"] == "name"
            r = admin.post("/v1/label/tasks", json={"tasks": [_task(9, ["nobody"])]})
            assert r.status_code == 404 and "nobody" in r.json()["detail"]


def test_labeling_flow_isolation_and_export(srv, team, tmp_path):
    from training.data import load_axis, load_comparisons

    tokens, (a1, a2, b1) = team
    with srv.client(tokens["alice"]) as alice, srv.client(tokens["bob"]) as bob, srv.admin() as admin:
        me = alice.get("/v1/label/me").json()
        assert me["labeler"] == "alice" and me["progress"] == {"done": 0, "total": 2}
        nxt = alice.get("/v1/label/next").json()
        assert nxt["task"]["id"] == a1 and nxt["task"]["info"]["id"] == "t3_1"
        assert nxt["task"]["summaries"][0]["text"] == " dog (1) barks"
        # isolation: bob can neither read nor answer alice's tasks, and never gets them as "next"
        assert bob.get(f"/v1/label/{a1}").status_code == 404
        r = bob.post(f"/v1/label/{a1}", json={"choice": 0, "confidence": 9})
        assert r.status_code == 404
        assert bob.get("/v1/label/next").json()["task"]["id"] == b1
        # bad answers name the field
        for body, field in [
            ({"choice": 2, "confidence": 5}, "choice"),
            ({"choice": 0, "confidence": 0}, "confidence"),
            ({"choice": 0, "confidence": 5, "axes": [{"overall": 8}, None]}, "axes[0].overall"),
            ({"choice": 0, "confidence": 5, "axes": [None]}, "axes"),
            ({"choice": 0}, "confidence"),
        ]:
            r = alice.post(f"/v1/label/{a1}", json=body)
            assert (r.status_code, r.json()["field"]) == (422, field), r.text
        ack = alice.post(
            f"/v1/label/{a1}",
            json={"choice": 1, "confidence": 7, "axes": [{"overall": 5, "coverage": 4}, None], "note": " close call "},
        )
        assert ack.status_code == 200 and ack.json() == {"task_id": a1, "progress": {"done": 1, "total": 2}}
        assert alice.post(f"/v1/label/{a1}", json={"choice": 0, "confidence": 7}).status_code == 409
        assert alice.get(f"/v1/label/{a1}").json()["answer"]["choice"] == 1
        assert alice.get(f"/v1/label/{2**70}").status_code == 404
        assert alice.get("/v1/label/next").json()["task"]["id"] == a2
        # bob's task was untouched by his failed attempt on alice's
        assert bob.get(f"/v1/label/{b1}").json()["answer"] is None

        comparisons = admin.get("/v1/label/export")
        axis = admin.get("/v1/label/export", params={"format": "axis"})
        assert admin.get("/v1/label/export", params={"format": "xml"}).status_code == 422
        listing = admin.get("/v1/labelers").json()["labelers"]
    assert comparisons.headers["content-type"].startswith("application/x-ndjson")
    (tmp_path / "c.jsonl").write_text(comparisons.text)
    (tmp_path / "a.jsonl").write_text(axis.text)
    mine = [c for c in load_comparisons(tmp_path / "c.jsonl") if c.info.id == "t3_1"]
    assert len(mine) == 1
    c = mine[0]
    assert (c.choice, c.worker, c.batch, c.split, c.confidence) == (1, "alice", "round1", "valid1", 7)
    assert [s.text for s in c.summaries] == [" dog (1) barks", " a dog"]
    (ax,) = [a for a in load_axis(tmp_path / "a.jsonl") if a.info.id == "t3_1"]
    assert (ax.summary.text, ax.axes.overall, ax.axes.coverage, ax.axes.accuracy) == (" dog (1) barks", 5, 4, None)
    done = {x["name"]: x["progress"]["done"] for x in listing}
    assert (done["alice"], done["bob"]) == (1, 0)


def test_pool_tasks_are_claimed_by_one_labeler(srv, team):
    tokens, _ = team
    with srv.admin() as admin:
        carol = admin.post("/v1/labelers", json={"name": "carol"}).json()["token"]
        dave = admin.post("/v1/labelers", json={"name": "dave"}).json()["token"]
        (pool_id,) = admin.post("/v1/label/tasks", json={"tasks": [_task(50)]}).json()["ids"]
    with srv.client(carol) as c, srv.client(dave) as d:
        got = c.get("/v1/label/next").json()["task"]
        assert got["id"] == pool_id
        assert d.get(f"/v1/label/{pool_id}").status_code == 404  # claimed by carol: dave cannot see it
        assert d.get("/v1/label/next").json()["task"] is None
        assert c.post(f"/v1/label/{pool_id}", json={"choice": 0, "confidence": 3}).status_code == 200


# --------------------------------------------------------------------------------------------------- eval jobs


def test_eval_job_end_to_end(srv, tiny_world):
    with srv.admin() as admin, srv.client() as anon:
        assert anon.post("/v1/evals", json={"policies": ["policy-a"], "n": 3}).status_code == 401
        r = admin.post("/v1/evals", json={"policies": ["nope"], "n": 3})
        assert (r.status_code, r.json()["field"]) == (404, "policies[0]")
        r = admin.post("/v1/evals", json={"policies": ["policy-a"], "n": 10**9})
        assert (r.status_code, r.json()["field"]) == (422, "n")
        r = admin.post("/v1/evals", json={"dataset": "news", "judge": "rm", "n": 3})
        assert r.status_code == 422 and "rm judge" in r.json()["detail"]
        assert admin.get("/v1/evals/0123456789abcdef").status_code == 404

        r = admin.post("/v1/evals", json={"dataset": "tldr", "policies": ["policy-a"], "judge": "sim", "n": 4})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running", "done") and job["spec"]["policies"] == ["policy-a"]
        deadline = time.monotonic() + 240
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = admin.get(f"/v1/evals/{job['id']}").json()
        assert job["status"] == "done", job
        report = admin.get(f"/v1/evals/{job['id']}/report")
        listed = admin.get("/v1/evals").json()["jobs"]
    assert report.status_code == 200 and report.json() == job["report"] and job["report"]
    assert job["id"] in [j["id"] for j in listed]
    # The job summarized with the served model: its summaries equal /v1/summarize's greedy ones for the same posts.
    import json

    from training.data import load_tldr

    posts = load_tldr(Path(tiny_world) / "tldr" / "test.jsonl")[:4]
    run_dir = Path(srv.env["PREFSUM_EVAL_DIR"]) / job["id"] / "run"
    rows = [json.loads(x) for x in (run_dir / "summaries-tldr.jsonl").read_text().splitlines()]
    job_texts = {r["id"]: r["text"] for r in rows if r["policy"] == "policy-a"}
    items = [{"subreddit": p.subreddit, "title": p.title, "post": p.post} for p in posts]
    with srv.client() as c:
        served = c.post("/v1/summarize", json={"inputs": items}).json()["results"]
    for p, res in zip(posts, served, strict=True):
        text = res["summaries"][0]["text"] or " (empty)"
        assert job_texts[p.id] == text
    # The report's raw win rates, counted by hand from the job's judgments (public comparisons format).
    judged = [json.loads(x) for x in (run_dir / "tldr-sim.jsonl").read_text().splitlines() if x.strip()]
    for policy in ("policy-a", "lead2"):
        mine = [r for r in judged if policy in [s["policy"] for s in r["summaries"]]]
        wins = sum(r["summaries"][r["choice"]]["policy"] == policy for r in mine)
        got = job["report"]["meta"]["by_judge"]["tldr"]["sim"][policy]
        assert got["n"] == len(mine) >= 4 and got["win_rate"] == pytest.approx(wins / len(mine), abs=1e-4)
    with srv.admin() as admin:
        html = admin.get(f"/v1/evals/{job['id']}/files/report.html")
        missing = admin.get(f"/v1/evals/{job['id']}/files/..%2F..%2Fs.db")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert missing.status_code == 404


# --------------------------------------------------------------------------------------------------- lifecycle


def test_restart_keeps_labels_tokens_and_answers(models, tmp_path):
    server = Server(models[0], tmp_path / "r.db", batching="false")
    server.start()
    try:
        with server.admin() as admin:
            token = admin.post("/v1/labelers", json={"name": "erin"}).json()["token"]
            ids = admin.post("/v1/label/tasks", json={"tasks": [_task(i, ["erin"]) for i in range(3)]}).json()["ids"]
        with server.client(token) as erin:
            assert erin.post(f"/v1/label/{ids[0]}", json={"choice": 1, "confidence": 9}).status_code == 200
        server.restart()
        with server.client(token) as erin, server.admin() as admin:
            assert erin.get("/v1/label/me").json()["progress"] == {"done": 1, "total": 3}
            assert erin.get("/v1/label/next").json()["task"]["id"] == ids[1]
            lines = [x for x in admin.get("/v1/label/export").text.splitlines() if x]
        assert len(lines) == 1 and '"choice":1' in lines[0] and '"worker":"erin"' in lines[0]
    finally:
        server.stop()


def test_full_queue_answers_503_with_retry_after(models, tmp_path):
    # One model call waits up to 3 s for company; requests with other keys (seeded sampling runs alone) queue behind
    # it; a queue of 2 items then has no room for a third.
    server = Server(models[0], tmp_path / "q.db", max_queue=2, max_wait_ms=3000, retry_after_s=4)
    server.start()
    try:
        body = {"temperature": 0.7, "max_new_tokens": 2}
        results = {}

        def send(name, seed, n_items):
            with server.client() as c:
                inputs = [post_item(seed + k) for k in range(n_items)]
                results[name] = c.post("/v1/summarize", json=body | {"seed": seed, "inputs": inputs})

        first = threading.Thread(target=send, args=("first", 1, 1))
        first.start()
        time.sleep(0.5)  # ordering only: the worker has taken "first" and waits for company
        second = threading.Thread(target=send, args=("second", 2, 2))
        second.start()
        time.sleep(0.5)
        send("third", 3, 1)
        first.join(30)
        second.join(30)
        with server.client() as c:
            too_big = c.post("/v1/summarize", json={"inputs": [post_item(1)] * 3})
            metrics = c.get("/metrics").text
    finally:
        server.stop()
    assert results["third"].status_code == 503
    assert results["third"].headers["retry-after"] == "4" and "busy" in results["third"].json()["detail"]
    assert results["first"].status_code == 200 and results["second"].status_code == 200
    assert too_big.status_code == 422 and too_big.json()["field"] == "inputs"  # could never fit: not a 503
    assert 'prefsum_queue_rejected_total{model="policy-a"} 1' in metrics


def test_a_corrupted_bundle_stops_start_up_naming_the_file(models, tmp_path):
    import shutil

    bundles = tmp_path / "bundles"
    shutil.copytree(models[0], bundles)
    onnx = bundles / "rm" / "model.onnx"
    original = onnx.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    cmd = [sys.executable, "-m", "prefsum", "serve", "--bundles", str(bundles), "--db", str(tmp_path / "x.db")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert str(onnx) in r.stderr and "corrupted" in r.stderr and "re-export" in r.stderr
    onnx.write_bytes(original)
    (bundles / "rm" / "tokenizer.json").unlink()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "tokenizer.json" in r.stderr
    cmd = cmd[:5] + [str(tmp_path / "none")] + cmd[6:]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_admin_token_is_generated_once_and_kept(models, tmp_path):
    server = Server(models[0], tmp_path / "g.db")
    del server.env["PREFSUM_ADMIN_TOKEN"]
    server.start()
    try:
        token_file = Path(str(tmp_path / "g.db") + ".admin-token")
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token) >= 24
        with server.client(token) as admin:
            assert admin.get("/v1/labelers").status_code == 200
        server.restart()
        assert token_file.read_text().strip() == token
        with server.client(token) as admin, server.client(ADMIN_TOKEN) as other:
            assert admin.get("/v1/labelers").status_code == 200
            assert other.get("/v1/labelers").status_code == 401
    finally:
        server.stop()


def test_no_5xx_in_the_whole_module(srv):
    with httpx.Client(base_url=srv.url) as c:
        text = c.get("/metrics").text
    assert 'status="5' not in text


def test_an_eval_job_left_by_a_dead_process_is_resumed_at_start(models, tiny_world, tmp_path):
    from evals.runner import EvalSpec
    from service.storage import Storage

    db = tmp_path / "resume.db"
    spec = EvalSpec(dataset="tldr", data_dir=str(tiny_world), policies=("policy-b",), judge="sim", n=2)
    st = Storage(db)
    job_id = st.create_eval_job(spec.as_json(), owner="999999999:gone", max_active=8)  # no such process
    st.close()
    server = Server(models[0], db, data_dir=tiny_world, eval_dir=tmp_path / "evals").start()
    try:
        with server.admin() as admin:
            deadline = time.monotonic() + 240
            job = admin.get(f"/v1/evals/{job_id}").json()
            while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.5)
                job = admin.get(f"/v1/evals/{job_id}").json()
    finally:
        server.stop()
    assert job["status"] == "done", job
    assert job["report"]["meta"]["by_judge"]["tldr"]["sim"]["policy-b"]["n"] >= 2
