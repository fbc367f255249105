"""Unit tests of the service's parts that need no model: the micro-batcher (driven by a counting function — the
batcher is what is under test), the Prometheus text format, settings, SQLite storage, and the app before start-up."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.batching import BatcherClosed, MicroBatcher, QueueFull
from service.metrics import Counter, Gauge, Histogram, Registry
from service.settings import Settings, SettingsError, load_settings, to_environ
from service.storage import Conflict, NotFound, Storage

# --------------------------------------------------------------------------------------------------- batching


class Recorder:
    """A batch function that records each call (key, items) and answers item * 10 + the call's index."""

    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None):
        self.calls: list[tuple[object, list[int]]] = []
        self.gate = gate
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, key, items):
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        with self.lock:
            index = len(self.calls)
            self.calls.append((key, list(items)))
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"item {self.fail_on} is poison")
        return [x * 10 + index for x in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_calls_up_to_max_batch_and_get_their_own_results():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=4, max_wait_s=0.05, max_queue=100)
        await b.start()
        # 10 single-item requests submitted together: batches of 4, 4, 2 (all pending before the worker runs).
        results = await asyncio.gather(*(b.submit("k", [i]) for i in range(10)))
        await b.stop()
        return results

    results = run(main())
    assert [len(items) for _, items in rec.calls] == [4, 4, 2]
    assert [items for _, items in rec.calls] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # each request got its own item's answer from the call that ran it
    index_of = {x: i for i, (_, items) in enumerate(rec.calls) for x in items}
    assert results == [[i * 10 + index_of[i]] for i in range(10)]


def test_requests_with_different_keys_never_share_a_call():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=8, max_wait_s=0.02, max_queue=100)
        await b.start()
        keys = ["a", "b", "a", "c", "b", "a"]
        out = await asyncio.gather(*(b.submit(k, [i]) for i, k in enumerate(keys)))
        await b.stop()
        return keys, out

    keys, out = run(main())
    for key, items in rec.calls:
        assert {keys[i] for i in items} == {key}
    assert sorted(i for _, items in rec.calls for i in items) == list(range(6))
    assert sorted(k for k, _ in rec.calls) == ["a", "b", "c"]  # one call per key: they were all waiting together
    assert all(len(r) == 1 for r in out)


def test_a_request_is_never_split_and_order_is_kept():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=4, max_wait_s=0.02, max_queue=100)
        await b.start()
        out = await asyncio.gather(b.submit("k", [1, 2, 3]), b.submit("k", [4, 5]), b.submit("k", [6]))
        await b.stop()
        return out

    out = run(main())
    # [1,2,3] + [4,5] would be 5 > 4: [4,5] waits; [6] fits beside [1,2,3].
    assert [items for _, items in rec.calls] == [[1, 2, 3, 6], [4, 5]]
    assert out == [[10, 20, 30], [41, 51], [60]]


def test_max_batch_one_runs_every_request_alone():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=1, max_wait_s=0.0, max_queue=100)
        await b.start()
        await asyncio.gather(*(b.submit("k", [i]) for i in range(5)))
        await b.stop()

    run(main())
    assert [len(items) for _, items in rec.calls] == [1, 1, 1, 1, 1]


def test_full_queue_refuses_at_once_with_retry_after_and_recovers():
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = MicroBatcher(rec, max_batch=1, max_wait_s=0.0, max_queue=2, retry_after_s=7)
        await b.start()
        first = asyncio.create_task(b.submit("k", [0]))
        while b.depth:  # the worker takes the first request (and blocks on the gate)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(b.submit("k", [i])) for i in (1, 2)]
        await asyncio.sleep(0)
        assert b.depth == 2
        with pytest.raises(QueueFull) as info:
            await b.submit("k", [3])
        assert info.value.retry_after == 7 and info.value.limit == 2
        gate.set()
        out = await asyncio.gather(first, *waiting)
        after = await b.submit("k", [4])  # room again
        await b.stop()
        return out, after

    out, after = run(main())
    assert [r[0] // 10 for r in out] == [0, 1, 2]
    assert after == [40 + 3]
    assert sorted(i for _, items in rec.calls for i in items) == [0, 1, 2, 4]


def test_a_failing_call_fails_its_requests_only_and_the_batcher_keeps_working():
    rec = Recorder(fail_on=13)

    async def main():
        b = MicroBatcher(rec, max_batch=2, max_wait_s=0.02, max_queue=100)
        await b.start()
        bad = await asyncio.gather(b.submit("k", [13]), b.submit("k", [14]), return_exceptions=True)
        good = await b.submit("k", [5])
        await b.stop()
        return bad, good

    bad, good = run(main())
    assert all(isinstance(e, RuntimeError) and "poison" in str(e) for e in bad)
    assert good == [50 + 1]


def test_a_cancelled_waiting_request_leaves_the_queue_and_never_runs():
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = MicroBatcher(rec, max_batch=1, max_wait_s=0.0, max_queue=10)
        await b.start()
        first = asyncio.create_task(b.submit("k", [0]))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(b.submit("k", [1]))
        await asyncio.sleep(0)
        assert b.depth == 1
        gone.cancel()
        await asyncio.sleep(0)
        assert b.depth == 0
        gate.set()
        await first
        await b.stop()

    run(main())
    assert [items for _, items in rec.calls] == [[0]]


def test_wrong_result_count_is_an_error_and_stop_fails_waiters():
    async def main():
        b = MicroBatcher(lambda key, items: items[:-1], max_batch=4, max_wait_s=0.0, max_queue=10)
        await b.start()
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            await b.submit("k", [1, 2])
        await b.stop()
        with pytest.raises(BatcherClosed):
            await b.submit("k", [1])

    run(main())


def test_batcher_rejects_bad_settings():
    for kw, word in [({"max_batch": 0}, "max_batch"), ({"max_queue": 0}, "max_queue"), ({"max_wait_s": -1}, "wait")]:
        with pytest.raises(ValueError, match=word):
            MicroBatcher(lambda k, i: i, **kw)


# --------------------------------------------------------------------------------------------------- metrics


def test_prometheus_text_format_by_hand():
    r = Registry()
    c = r.add(Counter("x_total", "Things", ["route"]))
    g = r.add(Gauge("depth", "Depth", ["model"]))
    h = r.add(Histogram("lat_seconds", "Latency", ["route"], buckets=(0.1, 1)))
    c.inc(route="/a")
    c.inc(2, route="/a")
    c.inc(route='we"ird\nname')
    g.set_function(lambda: 3, model="m")
    for v in (0.05, 0.5, 5):
        h.observe(v, route="/a")
    assert r.render() == (
        "# HELP x_total Things\n"
        "# TYPE x_total counter\n"
        'x_total{route="/a"} 3\n'
        'x_total{route="we\\"ird\\nname"} 1\n'
        "# HELP depth Depth\n"
        "# TYPE depth gauge\n"
        'depth{model="m"} 3\n'
        "# HELP lat_seconds Latency\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{route="/a",le="0.1"} 1\n'
        'lat_seconds_bucket{route="/a",le="1"} 2\n'
        'lat_seconds_bucket{route="/a",le="+Inf"} 3\n'
        'lat_seconds_sum{route="/a"} 5.55\n'
        'lat_seconds_count{route="/a"} 3\n'
    )
    with pytest.raises(ValueError, match="only go up"):
        c.inc(-1, route="/a")
    with pytest.raises(ValueError, match="labels"):
        c.inc(other="x")


# --------------------------------------------------------------------------------------------------- settings


def test_settings_defaults_env_and_flags():
    s = load_settings({}, {})
    assert (s.bundles, s.host, s.port, s.workers) == ("runs/tiny/bundles", "127.0.0.1", 8000, 1)
    env = {"PREFSUM_PORT": "9001", "PREFSUM_BATCHING": "false", "PREFSUM_MAX_WAIT_MS": "2.5", "PREFSUM_THREADS": "2"}
    s = load_settings({"port": 9100, "host": None}, env)
    assert s.port == 9100  # the flag wins over the environment
    assert (s.batching, s.max_wait_ms, s.threads, s.effective_max_batch) == (False, 2.5, 2, 1)
    assert load_settings({}, to_environ(s)) == s  # what worker processes receive round-trips


@pytest.mark.parametrize(
    ("flags", "env", "words"),
    [
        ({}, {"PREFSUM_PORT": "eighty"}, ["PREFSUM_PORT", "int"]),
        ({"max_batch": 0}, {}, ["--max-batch", ">= 1"]),
        ({}, {"PREFSUM_PROVIDER": "tpu"}, ["provider", "auto, cpu or cuda"]),
        ({"bogus": 1}, {}, ["unknown setting", "bogus"]),
    ],
)
def test_bad_settings_name_the_variable(flags, env, words):
    with pytest.raises(SettingsError) as info:
        load_settings(flags, env)
    for w in words:
        assert w in str(info.value)


# --------------------------------------------------------------------------------------------------- storage


def _task(labeler_id, k=0):
    return {
        "labeler_id": labeler_id,
        "info": {"id": f"p{k}", "post": "My dog barks.", "title": "Dog", "subreddit": "pets"},
        "summaries": [{"text": f" a{k}", "policy": "x", "note": None}, {"text": f" b{k}", "policy": "y", "note": None}],
        "batch": "b1",
        "split": "train",
    }


def test_storage_isolation_answers_and_reopen(tmp_path):
    db = tmp_path / "s.db"
    st = Storage(db)
    alice, alice_token = st.create_labeler("alice")
    bob, _ = st.create_labeler("bob")
    with pytest.raises(Conflict, match="already exists"):
        st.create_labeler("alice")
    assert st.labeler_by_token(alice_token) == alice and st.labeler_by_token("nope") is None
    a1, a2, b1 = st.add_tasks([_task(alice.id, 1), _task(alice.id, 2), _task(bob.id, 3)])
    assert st.next_task(alice.id).id == a1 and st.next_task(bob.id).id == b1
    with pytest.raises(NotFound):
        st.get_task(a1, bob.id)  # another labeler's task looks like no task
    with pytest.raises(NotFound):
        st.answer(a1, bob.id, choice=0, confidence=5, axes=None, note=None)
    st.answer(a1, alice.id, choice=1, confidence=8, axes=[{"overall": 6}, None], note="ok")
    with pytest.raises(Conflict, match="already answered"):
        st.answer(a1, alice.id, choice=0, confidence=8, axes=None, note=None)
    with pytest.raises(NotFound):
        st.get_task(2**70, alice.id)
    assert st.progress(alice.id).done == 1 and st.progress(alice.id).total == 2
    assert st.next_task(alice.id).id == a2
    st.close()

    again = Storage(db)  # a new process on the same file sees everything acknowledged
    (t,) = list(again.answered_tasks())
    assert (t.id, t.labeler, t.answer["choice"], t.answer["confidence"], t.answer["note"]) == (a1, "alice", 1, 8, "ok")
    assert t.answer["axes"] == [{"overall": 6}, None]
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_pool_tasks_go_to_exactly_one_labeler(tmp_path):
    st = Storage(tmp_path / "s.db")
    labelers = [st.create_labeler(f"l{i}")[0] for i in range(4)]
    st.add_tasks([_task(None, k) for k in range(6)])
    assert st.progress(labelers[0].id).total == 6

    def claim(lab):
        got = []
        while (t := st.next_task(lab.id)) is not None:
            got.append(t.id)
            st.answer(t.id, lab.id, choice=0, confidence=5, axes=None, note=None)
        return got

    with ThreadPoolExecutor(4) as ex:
        claimed = list(ex.map(claim, labelers))
    flat = sorted(i for ids in claimed for i in ids)
    assert flat == sorted(set(flat)) and len(flat) == 6  # every pool task answered once, by one labeler
    assert st.pool_size() == 0
    st.close()


def test_concurrent_answers_to_one_task_only_one_wins(tmp_path):
    st = Storage(tmp_path / "s.db")
    lab, _ = st.create_labeler("solo")
    (tid,) = st.add_tasks([_task(lab.id)])

    def answer(choice):
        try:
            st.answer(tid, lab.id, choice=choice % 2, confidence=5, axes=None, note=None)
            return "ok"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(8) as ex:
        outcomes = list(ex.map(answer, range(16)))
    assert outcomes.count("ok") == 1 and outcomes.count("conflict") == 15
    st.close()


# --------------------------------------------------------------------------------------------------- app


def test_health_and_ready_differ_before_start_up(tmp_path):
    """In-process, without the lifespan (nothing loaded): alive, but not ready, and model routes answer 503."""
    from service.app import create_app

    app = create_app(Settings(bundles=str(tmp_path / "none"), db=str(tmp_path / "s.db"), admin_token="x"))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            return (
                await c.get("/health"),
                await c.get("/ready"),
                await c.post("/v1/summarize", json={"inputs": [{"text": "a"}]}),
            )

    health, ready, summ = run(main())
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert summ.status_code == 503 and "retry" in summ.json()["detail"] and summ.headers["retry-after"] == "2"


def test_eval_jobs_are_reclaimed_only_from_dead_owners(tmp_path):
    import os

    from service.storage import process_owner

    st = Storage(tmp_path / "s.db")
    dead = st.create_eval_job({"n": 1}, "999999999:gone", max_active=8)
    alive = st.create_eval_job({"n": 2}, f"{os.getppid()}:other", max_active=8)  # the test runner's parent lives
    assert st.create_eval_job({"n": 3}, "x", max_active=2) is None  # two active already: refused
    assert st.reclaim_eval_jobs(process_owner()) == [dead]
    assert st.eval_job(dead)["status"] == "queued"
    assert st.start_eval_job(dead, process_owner(), "out") and not st.start_eval_job(alive, process_owner(), "out")
    st.finish_eval_job(dead, report={"ok": 1}, error=None)
    assert (st.eval_job(dead)["status"], st.eval_job(dead)["report"]) == ("done", {"ok": 1})
    st.close()
