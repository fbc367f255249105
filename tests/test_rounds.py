"""Judging policies in the world (fact recall, wrong values, win rate) and comparison rounds (prefsum label)."""

import json
from collections import defaultdict

import pytest

from evals.gold import load_frames
from evals.stats import wilson_interval
from evals.world_judge import judge_summaries
from prefsum.cli import main
from training.data import load_comparisons, load_tldr, validate_file


@pytest.fixture(scope="module")
def world_posts(tiny_world):
    return load_tldr(tiny_world / "tldr" / "test.jsonl"), load_frames(tiny_world / "frames.jsonl")


def test_wilson_interval_hand_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


def test_judge_ground_truth_orderings(world_posts):
    from evals.gold import frame_summary

    posts, frames = world_posts
    perfect = judge_summaries(frames, posts, [frame_summary(frames[p.id]) for p in posts])
    refs = judge_summaries(frames, posts, [" " + p.summary for p in posts])
    assert perfect.fact_recall == 1.0 and perfect.wrong_value_rate == 0.0
    # states every fact and the question: beats the imperfect references (expected share 0.65 on these posts)
    assert perfect.win_rate > 0.55 and perfect.gold_overall > refs.gold_overall
    assert refs.win_rate == 0.5  # identical to the reference: half a win each
    assert refs.wrong_value_rate == 0.0 and 0 < refs.fact_recall < 1

    # every fact stated with a wrong value: all summaries contradict the post
    wrong = []
    for p in posts:
        f = frames[p.id]
        text = frame_summary(f)
        for fact in f.facts:
            if fact.wrong_forms:
                text = text.replace(fact.phrase, fact.wrong_forms[0])
        wrong.append(text)
    bad = judge_summaries(frames, posts, wrong)
    assert bad.wrong_value_rate > 0.9
    assert bad.win_rate < refs.win_rate < perfect.win_rate

    hedges = judge_summaries(frames, posts, [" not sure what to do, any advice?"] * len(posts))
    assert hedges.fact_recall == 0.0 and hedges.win_rate < 0.2


def test_label_round_writes_public_comparisons(tiny_world, world_policy, tmp_path, capsys):
    out = tmp_path / "round1.jsonl"
    argv = [
        "label",
        "--policies",
        f"base={world_policy}",
        "--data",
        str(tiny_world),
        "--posts",
        "60",
        "--round",
        "1",
        "--out",
        str(out),
        "--max-query-tokens",
        "256",
        "--max-response-tokens",
        "16",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert validate_file(out, "comparisons").ok
    comps = load_comparisons(out)
    assert summary["comparisons"] == len(comps) > 0
    assert {c.batch for c in comps} == {"round1"}
    assert {s.policy for c in comps for s in c.summaries} <= {"base", "ref"}
    assert all(c.summaries[0].text != c.summaries[1].text for c in comps)
    assert all(c.worker.startswith("sim-") and 1 <= c.confidence <= 9 for c in comps)
    train_posts = {p.id for p in load_tldr(tiny_world / "tldr" / "train.jsonl")[:60]}
    assert {c.info.id for c in comps} <= train_posts
    # validation posts carry two judgments by different labelers; training posts one
    by_post = defaultdict(list)
    for c in comps:
        by_post[(c.info.id, c.split)].append(c.worker)
    for (_, split), workers in by_post.items():
        assert len(workers) == (1 if split == "train" else 2) and len(set(workers)) == len(workers)
    # the same round is reproducible; round 2 labels other posts
    assert main([*argv[:-6], "--out", str(tmp_path / "again.jsonl"), *argv[-6:]]) == 0
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_label_errors(tiny_world, tmp_path, capsys):
    assert main(["label", "--policies", str(tmp_path), "--data", str(tiny_world), "--out", str(tmp_path / "x")]) == 2
    assert "neither a checkpoint (config.json) nor a bundle" in capsys.readouterr().err


def test_eval_checkpoint_greedy_and_best_of_n(tiny_world, world_policy, tmp_path, capsys):
    from training.checkpoint import save_checkpoint
    from training.reward import build_reward_model
    from training.tokenizer import load_tokenizer

    rm_dir = tmp_path / "rm"
    save_checkpoint(
        build_reward_model(world_policy), load_tokenizer(world_policy), rm_dir, {"stage": "rm", "reward_bias": 0.25}
    )
    base = [
        "eval",
        "checkpoint",
        "--checkpoint",
        str(world_policy),
        "--data",
        str(tiny_world),
        "-n",
        "6",
        "--max-query-tokens",
        "256",
        "--max-response-tokens",
        "8",
        "--threads",
        "1",
    ]
    assert main(base) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert greedy["decoding"] == "greedy" and greedy["n"] == 6 and 0 <= greedy["fact_recall"] <= 1
    assert main([*base, "--best-of", "3", "--reward-model", str(rm_dir)]) == 0
    picked = json.loads(capsys.readouterr().out)
    assert picked["decoding"].startswith("best-of-3") and picked["n"] == 6
    # sampled and picked, not greedy: the shown summaries differ from the greedy ones
    assert [x["summary"] for x in picked["samples"]] != [x["summary"] for x in greedy["samples"]]
    assert main([*base, "--best-of", "3"]) == 2
    assert "needs a reward model" in capsys.readouterr().err


def test_label_round_from_bundles_equals_the_checkpoints_at_temperature_zero(tiny_world, world_policy, tmp_path):
    """Comparison rounds can sample exported bundles (ONNX Runtime) instead of checkpoints (torch): with greedy
    decoding both must give the very same summaries, pairs and choices."""
    from prefsum.workflows import label_round
    from training.export import export_bundle

    bundle = export_bundle(world_policy, tmp_path / "bundles", name="p", max_query_tokens=256, max_response_tokens=12)
    kw = {"n_posts": 30, "temperature": 0.0, "max_query_tokens": 256, "max_response_tokens": 12, "threads": 1}
    label_round({"p": world_policy}, tiny_world, tmp_path / "torch.jsonl", **kw)
    label_round({"p": bundle}, tiny_world, tmp_path / "onnx.jsonl", **kw)
    torch_rows = (tmp_path / "torch.jsonl").read_text().splitlines()
    assert len(torch_rows) >= 25
    assert (tmp_path / "onnx.jsonl").read_text().splitlines() == torch_rows
