"""Eval runs in-process on the simulated world: judges, files, validation before work, the CLI end to end.

The Summarizer and Scorer used here are small deterministic classes that satisfy the protocols (a lead-sentence
policy, a length-loving scorer): the code under test is the runner, the judges and the report, not a model. The last
tests export a real (tiny) policy to an ONNX bundle and run `prefsum eval run` / `eval report` through the engine.
"""

import json
import shutil

import pytest

from evals.baselines import lead2_post, lead_k
from evals.gold import load_frames
from evals.judges import HumanJudge, JudgeUnavailable, RmJudge
from evals.labelers import LabelerPool
from evals.protocols import Completion
from evals.report import build_report
from evals.runner import EvalInputError, EvalSpec, run_eval
from training.data import load_axis, load_cnndm, load_comparisons, load_tldr, sniff_format


class LeadSentence:
    """A test policy: the first sentence of the post (or article), counting its calls."""

    def __init__(self):
        self.calls = 0

    def summarize(self, items, *, max_new_tokens=None, temperature=0.0, top_p=1.0, n=1, seed=None):
        self.calls += 1
        out = []
        for item in items:
            text = lead_k(item.get("post") or item["text"], 1)
            out.append([Completion(text, len(text.split()), "eos")])
        return out


class LengthScorer:
    """A test reward model: the number of characters (so the longer summary is always preferred)."""

    name = "length"

    def score(self, pairs):
        return [float(len(text.strip())) for _, text in pairs]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ref_side(c):
    return next(i for i, s in enumerate(c.summaries) if s.policy == "ref")


def test_tldr_run_with_simulated_labelers(tiny_world, tmp_path):
    spec = EvalSpec("tldr", tiny_world, ("lead1",), "sim", 25, seed=3)
    out = run_eval(spec, {"lead1": LeadSentence()}, out_dir=tmp_path / "run")
    judged = out / "tldr-sim.jsonl"
    assert sniff_format(judged) == "comparisons"
    comps = load_comparisons(judged)
    posts = {p.id: p for p in load_tldr(tiny_world / "tldr" / "test.jsonl")[:25]}
    pairs = {(c.info.id, c.summaries[1 - ref_side(c)].policy) for c in comps}
    assert pairs == {(pid, pol) for pid in posts for pol in ("lead2", "lead1")}  # every policy x post, once
    n_second = len(comps) - 50
    assert 0 <= n_second <= 20  # ~10% of pairs get a second labeler
    pool_ids = {lab.id for lab in LabelerPool().labelers}
    raw = [json.loads(line) for line in judged.read_text(encoding="utf-8").splitlines()]
    for c, r in zip(comps, raw, strict=True):
        post = posts[c.info.id]
        ref = c.summaries[ref_side(c)]
        pol = c.summaries[1 - ref_side(c)]
        assert ref.text == " " + " ".join(post.summary.split())
        assert pol.text == (lead2_post(post) if pol.policy == "lead2" else lead_k(post.post, 1))
        assert c.worker.startswith("sim:") and c.worker[4:] in pool_ids
        assert r["extra"]["judge"] == "sim" and 1 <= r["extra"]["confidence"] <= 9
        assert c.split == "valid2" and c.batch == "eval-tldr"
    assert {ref_side(c) for c in comps} == {0, 1}  # the reference is not always on the same side
    run = json.loads((out / "run-tldr-sim.json").read_text(encoding="utf-8"))
    assert run["status"] == "done" and run["pairs"] == 50 and run["judgments"] == len(comps)
    # Same spec, same judgments.
    again = run_eval(spec, {"lead1": LeadSentence()}, out_dir=tmp_path / "again")
    assert (again / "tldr-sim.jsonl").read_bytes() == judged.read_bytes()


def test_news_run_rates_every_summary(tiny_world, tmp_path):
    spec = EvalSpec("news", tiny_world, ("lead1",), "sim", 12)
    out = run_eval(spec, {"lead1": LeadSentence()}, out_dir=tmp_path)
    ratings = load_axis(out / "news-sim.jsonl")
    articles = load_cnndm(tiny_world / "news" / "test.jsonl")[:12]
    assert {(a.info.id, a.summary.policy) for a in ratings} == {
        (x.id, p) for x in articles for p in ("ref", "lead3", "lead1")
    }
    ref = {a.info.id: a.summary.text for a in ratings if a.summary.policy == "ref"}
    assert all(ref[x.id] == " " + " ".join(x.highlights.split()) for x in articles)
    report = build_report(out, tmp_path / "report", figures=False)
    assert set(report["news"]) == {"ref", "lead3", "lead1"}
    assert "gold" in report["news"]["ref"]  # frames found through the run's data folder


def test_rm_judge_prefers_the_higher_score_and_records_it(tiny_world, tmp_path):
    spec = EvalSpec("tldr", tiny_world, ("lead1",), "rm", 10, reward_model="length")
    out = run_eval(spec, {"lead1": LeadSentence()}, out_dir=tmp_path, scorer=LengthScorer())
    raw = [json.loads(line) for line in (out / "tldr-rm.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(raw) == 20
    for r in raw:
        a, b = (len(s["text"].strip()) for s in r["summaries"])
        if a != b:
            assert r["choice"] == (0 if a > b else 1)
        assert r["worker"] == "rm:length" and r["extra"]["judge"] == "rm:length"
        assert r["extra"]["rewards"] == [float(a), float(b)]
        assert r["extra"]["preference"] == pytest.approx(1 / (1 + 2.718281828459045 ** (b - a)), abs=1e-6)
    # A sim run into the same folder: the report sets the RM's picks beside the labelers' on the same pairs.
    run_eval(EvalSpec("tldr", tiny_world, ("lead1",), "sim", 10), {"lead1": LeadSentence()}, out_dir=tmp_path)
    report = build_report(tmp_path, tmp_path / "report", figures=False)
    assert report["meta"]["judges"]["tldr"] == "sim"
    assert report["agreement"]["rm_vs_labelers_n"] >= 20
    assert set(report["meta"]["by_judge"]["tldr"]) == {"sim", "rm"}


def test_human_answers_from_a_file(tiny_world, tmp_path):
    # A person's answers: they judged every pair the run will produce and always picked the reference.
    spec = EvalSpec("tldr", tiny_world, ("lead1",), "human", 6)
    first = run_eval(
        EvalSpec("tldr", tiny_world, ("lead1",), "sim", 6, second_opinion=0.0),
        {"lead1": LeadSentence()},
        out_dir=tmp_path / "sim",
    )
    answers = []
    for line in (first / "tldr-sim.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r["choice"] = next(i for i, s in enumerate(r["summaries"]) if s["policy"] == "ref")
        r["worker"] = "alice"
        answers.append(json.dumps(r))
    (tmp_path / "answers.jsonl").write_text("\n".join(answers[:-1]) + "\n", encoding="utf-8")  # one pair unanswered
    judge = HumanJudge(answers=tmp_path / "answers.jsonl")
    out = run_eval(spec, {"lead1": LeadSentence()}, out_dir=tmp_path / "human", judge=judge)
    comps = load_comparisons(out / "tldr-human.jsonl")
    assert len(comps) == 11
    assert all(c.worker == "human:alice" and c.preferred.policy == "ref" for c in comps)
    report = build_report(out, tmp_path / "report", figures=False)
    assert report["meta"]["judges"]["tldr"] == "human"
    assert report["tldr"]["lead1"]["win_rate"] == 0.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda w: EvalSpec("tldr", w, ("a",), "sim", 0), "n must be a positive"),
        (lambda w: EvalSpec("tldr", w, ("ref",), "sim", 5), "reserved"),
        (lambda w: EvalSpec("tldr", w, ("a", "a"), "sim", 5), "listed twice"),
        (lambda w: EvalSpec("poems", w, ("a",), "sim", 5), "unknown dataset"),
        (lambda w: EvalSpec("tldr", w, ("a",), "oracle", 5), "unknown judge"),
        (lambda w: EvalSpec("news", w, ("a",), "rm", 5), "not the 1-7 ratings"),
    ],
)
def test_bad_specs_say_what_to_fix(tiny_world, make, message):
    with pytest.raises(EvalInputError, match=message):
        make(tiny_world)


def test_inputs_are_checked_before_any_generation(tiny_world, tmp_path):
    policy = LeadSentence()
    # unknown policy
    with pytest.raises(EvalInputError, match="no summarizer for policy 'sft'"):
        run_eval(EvalSpec("tldr", tiny_world, ("sft",), "sim", 5), {"lead1": policy}, out_dir=tmp_path / "a")
    # empty dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "test.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(EvalInputError, match="the dataset is empty"):
        run_eval(EvalSpec("tldr", empty, ("p",), "sim", 5), {"p": policy}, out_dir=tmp_path / "b")
    # sim judge on data without frames.jsonl
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_world / "tldr" / "test.jsonl", bare / "test.jsonl")
    with pytest.raises(JudgeUnavailable, match="frames.jsonl"):
        run_eval(EvalSpec("tldr", bare, ("p",), "sim", 5), {"p": policy}, out_dir=tmp_path / "c")
    # rm judge without a reward model
    with pytest.raises(JudgeUnavailable, match="needs a reward model"):
        run_eval(EvalSpec("tldr", tiny_world, ("p",), "rm", 5), {"p": policy}, out_dir=tmp_path / "d")
    # human judge without a server or answers
    with pytest.raises(JudgeUnavailable, match="--server URL"):
        run_eval(EvalSpec("tldr", tiny_world, ("p",), "human", 5), {"p": policy}, out_dir=tmp_path / "e")
    with pytest.raises(JudgeUnavailable, match="--server URL"):
        HumanJudge()
    # frames that do not cover the items (another world's posts)
    other = tmp_path / "other"
    (other / "tldr").mkdir(parents=True)
    shutil.copy(tiny_world / "tldr" / "test.jsonl", other / "tldr" / "test.jsonl")
    first = (tiny_world / "frames.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (other / "frames.jsonl").write_text(first + "\n", encoding="utf-8")
    with pytest.raises(JudgeUnavailable, match="no hidden frame for 5 item"):
        run_eval(EvalSpec("tldr", other, ("p",), "sim", 5), {"p": policy}, out_dir=tmp_path / "f")
    assert policy.calls == 0
    assert not any((tmp_path / x).exists() for x in "abcdef")


def test_rm_judge_needs_a_name_and_a_scorer():
    with pytest.raises(TypeError, match="score"):
        RmJudge(object(), name="x")
    with pytest.raises(ValueError, match="needs a name"):
        RmJudge(LengthScorer(), name="")


def test_frames_loader_reads_only_the_wanted_ids(tiny_world):
    from evals.judges import frames_for

    everything = load_frames(tiny_world / "frames.jsonl")
    ids = list(everything)[5:9]
    got = frames_for(tiny_world / "frames.jsonl", ids)
    assert got == {i: everything[i] for i in ids}


# --------------------------------------------------------------------------------------------------- engine + CLI


@pytest.fixture(scope="module")
def policy_bundle(world_policy, tmp_path_factory):
    """The tiny world policy checkpoint exported to an ONNX bundle (the engine runs it in-process)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("service.engine")
    from training.export import export_bundle

    torch.set_num_threads(1)
    return export_bundle(
        world_policy, tmp_path_factory.mktemp("bundles"), name="tinypol", max_query_tokens=400, max_response_tokens=24
    )


def test_cli_eval_run_and_report_through_the_engine(policy_bundle, tiny_world, tmp_path, capsys):
    from prefsum.cli import main
    from service.engine import load_engine

    out = tmp_path / "eval"
    args = ["eval", "run", "--dataset", "tldr", "--data", str(tiny_world), "--judge", "sim", "-n", "8"]
    rc = main([*args, "--policies", f"tiny={policy_bundle}", "--out", str(out), "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    comps = load_comparisons(out / "tldr-sim.jsonl")
    # The summaries judged are the engine's greedy summaries.
    engine = load_engine(policy_bundle, threads=1)
    posts = load_tldr(tiny_world / "tldr" / "test.jsonl")[:8]
    greedy = engine.summarize([{"subreddit": p.subreddit, "title": p.title, "post": p.post} for p in posts])
    expected = {p.id: " ".join(g[0].text.split()) or "(empty)" for p, g in zip(posts, greedy, strict=True)}
    for c in comps:
        pol = c.summaries[1 - ref_side(c)]
        if pol.policy == "tiny":
            assert pol.text.strip() == expected[c.info.id]
    rc = main(["eval", "report", "--in", str(out), "--out", str(tmp_path / "report")])
    assert rc == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert set(report["tldr"]) == {"lead2", "tiny"}
    assert "gold" in report["tldr"]["tiny"]
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "x=/nonexistent/bundle", "--judge", "sim"], "does not exist"),
        (["--policies", "x=BUNDLE", "--judge", "rm"], "--judge rm needs --reward-model"),
        (["--policies", "x=BUNDLE", "--judge", "human"], "--judge human needs"),
        (["--policies", "ref=BUNDLE", "--judge", "sim"], "reserved"),
        (["--policies", "x=BUNDLE", "--judge", "rm", "--reward-model", "BUNDLE"], "is a policy bundle"),
        (["--judge", "sim"], "--policies is required"),
    ],
)
def test_cli_bad_inputs_fail_with_exit_2(policy_bundle, tiny_world, tmp_path, capsys, extra, message):
    from prefsum.cli import main

    extra = [str(policy_bundle) if a == "BUNDLE" else a.replace("BUNDLE", str(policy_bundle)) for a in extra]
    args = ["eval", "run", "--dataset", "tldr", "--data", str(tiny_world), "-n", "3", "--out", str(tmp_path / "o")]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server(tiny_tokenizer, tmp_path_factory):
    """`prefsum serve` in a subprocess with two tiny policies and a reward model (tests/service_fixtures.py)."""
    from tests import service_fixtures as fixtures

    bundles, _ = fixtures.service_bundles(tiny_tokenizer, tmp_path_factory)
    srv = fixtures.Server(bundles, tmp_path_factory.mktemp("evals_service") / "prefsum.db").start()
    yield srv
    srv.stop()


def test_eval_run_through_a_running_service_matches_in_process(server, tiny_world, tmp_path):
    from prefsum.cli import main

    base = ["eval", "run", "--dataset", "tldr", "--data", str(tiny_world), "-n", "6", "--judge", "rm"]
    http = [*base, "--server", server.url, "--policies", "a=policy-a,b=policy-b", "--reward-model", "rm"]
    assert main([*http, "--out", str(tmp_path / "http")]) == 0
    local = [*base, "--policies", f"a={server.bundles / 'policy-a'},b={server.bundles / 'policy-b'}"]
    local += ["--reward-model", str(server.bundles / "rm"), "--threads", "1"]
    assert main([*local, "--out", str(tmp_path / "local")]) == 0
    over_http, in_process = (read_jsonl(tmp_path / d / "tldr-rm.jsonl") for d in ("http", "local"))
    assert len(over_http) == len(in_process) == 18
    for h, p in zip(over_http, in_process, strict=True):
        assert h["summaries"] == p["summaries"]  # the same greedy summaries through the service
        assert h["extra"]["rewards"] == pytest.approx(p["extra"]["rewards"], abs=1e-4)
        if abs(h["extra"]["rewards"][0] - h["extra"]["rewards"][1]) > 1e-3:
            assert h["choice"] == p["choice"]


def test_human_judge_through_the_labeling_queue(server, tiny_world, tmp_path, capsys, monkeypatch):
    from prefsum.cli import main
    from tests.service_fixtures import ADMIN_TOKEN

    monkeypatch.delenv("PREFSUM_ADMIN_TOKEN", raising=False)
    out = tmp_path / "human"
    args = ["eval", "run", "--dataset", "tldr", "--data", str(tiny_world), "-n", "3", "--judge", "human"]
    args += ["--server", server.url, "--out", str(out)]
    assert main([*args, "--policies", "a=policy-a"]) == 2  # queueing needs the admin token
    assert "admin token" in capsys.readouterr().err
    assert main([*args, "--policies", "a=policy-a", "--token", ADMIN_TOKEN]) == 0
    assert len((out / "human-tasks-tldr.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    assert json.loads((out / "run-tldr-human.json").read_text(encoding="utf-8"))["status"] == "waiting for labels"
    with server.admin() as admin:
        token = admin.post("/v1/labelers", json={"name": "alice"}).json()["token"]
    answered = 0
    with server.client(token) as labeler:
        while (task := labeler.get("/v1/label/next").json()["task"]) is not None:
            ref = next(i for i, s in enumerate(task["summaries"]) if s["policy"] == "ref")
            assert labeler.post(f"/v1/label/{task['id']}", json={"choice": ref, "confidence": 7}).status_code == 200
            answered += 1
    assert answered == 6
    capsys.readouterr()
    assert main([*args, "--collect", "--token", ADMIN_TOKEN]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 0
    comps = load_comparisons(out / "tldr-human.jsonl")
    assert len(comps) == 6 and all(c.worker == "human:alice" and c.preferred.policy == "ref" for c in comps)
    report = build_report(out, tmp_path / "report", figures=False)
    assert report["meta"]["judges"]["tldr"] == "human"
    assert {p: e["win_rate"] for p, e in report["tldr"].items()} == {"lead2": 0.0, "a": 0.0}


def test_an_unreachable_server_is_a_clear_error(tiny_world, tmp_path, capsys):
    from prefsum.cli import main

    args = ["eval", "run", "--dataset", "tldr", "--data", str(tiny_world), "-n", "3", "--judge", "sim"]
    assert main([*args, "--server", "http://127.0.0.1:9", "--policies", "a", "--out", str(tmp_path / "o")]) == 2
    assert "no prefsum service answers at http://127.0.0.1:9" in capsys.readouterr().err


def test_human_answers_of_the_wrong_kind_fail_before_generation(tiny_world, tmp_path):
    policy = LeadSentence()
    ratings = tmp_path / "ratings.jsonl"
    rec = {
        "info": {"id": "a", "article": "Fire.", "site": None, "title": None},
        "split": "test",
        "summary": {"text": " Fire.", "policy": "x", "note": None, "axes": {"overall": 3}},
        "worker": "bob",
        "batch": "b",
    }
    ratings.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    judge = HumanJudge(answers=ratings)
    with pytest.raises(JudgeUnavailable, match="TL;DR judgments are pairwise"):
        run_eval(EvalSpec("tldr", tiny_world, ("p",), "human", 3), {"p": policy}, out_dir=tmp_path / "a", judge=judge)
    first = tmp_path / "first"
    run_eval(EvalSpec("tldr", tiny_world, ("p",), "sim", 3), {"p": LeadSentence()}, out_dir=first)
    judge = HumanJudge(answers=first / "tldr-sim.jsonl")
    with pytest.raises(JudgeUnavailable, match="axis-evals JSONL"):
        run_eval(EvalSpec("news", tiny_world, ("p",), "human", 3), {"p": policy}, out_dir=tmp_path / "b", judge=judge)
    assert policy.calls == 0


def test_duplicate_item_ids_are_refused(tiny_world, tmp_path):
    line = (tiny_world / "tldr" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "test.jsonl").write_text(line + "\n" + line + "\n", encoding="utf-8")
    spec = EvalSpec("tldr", tmp_path / "test.jsonl", ("p",), "rm", 5)
    with pytest.raises(EvalInputError, match="occurs twice"):
        run_eval(spec, {"p": LeadSentence()}, out_dir=tmp_path / "o", scorer=LengthScorer())
