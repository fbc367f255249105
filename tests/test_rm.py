"""Reward model: reward read at the EOS, Bradley-Terry training that learns a planted preference, references centred
at 0, labeler agreement computed on repeated judgments."""

import json

import pytest
import torch

from training.config import RMConfig, SFTConfig
from training.data import Comparison, PostInfo, Summary, write_jsonl
from training.reward import build_reward_model, labeler_agreement, pad_right, rewards, run_rm
from training.sft import run_sft

torch.set_num_threads(1)


def comparison(i: int, a: str, b: str, choice: int, worker: str = "sim-0", split: str = "train") -> Comparison:
    info = PostInfo(f"t3_{i}", f"My dog is {i} years old.\nShe barks at night.", f"Dog number {i}", "pets")
    return Comparison(info, (Summary(" " + a, "sft"), Summary(" " + b, "ref")), choice, worker, "1", split)


def test_labeler_agreement_on_repeated_pairs():
    comps = [
        comparison(1, "x", "y", 0, "a"),
        comparison(1, "x", "y", 0, "b"),  # agree
        comparison(2, "x", "y", 0, "a"),
        comparison(2, "y", "x", 1, "b"),  # agree (same choice, sides swapped)
        comparison(3, "x", "y", 0, "a"),
        comparison(3, "x", "y", 1, "b"),  # disagree
        comparison(4, "x", "y", 0, "a"),  # judged once: no pair
    ]
    assert labeler_agreement(comps) == (pytest.approx(2 / 3), 3)


@pytest.fixture(scope="module")
def sft_dir(base_and_data):
    d = base_and_data
    cfg = SFTConfig(
        steps=4,
        batch_size=8,
        eval_every=4,
        eval_examples=4,
        n_samples=0,
        max_query_tokens=96,
        max_response_tokens=24,
        threads=1,
    )
    run_sft(d / "base", d / "train.jsonl", d / "valid.jsonl", d / "sft_for_rm", cfg, progress=False)
    return d / "sft_for_rm"


def test_reward_is_read_at_the_last_token_before_padding(sft_dir):
    model = build_reward_model(sft_dir).eval()
    pad = model.config.pad_token_id
    seq = [5, 6, 7, 0]  # ends in EOS (id 0)
    ids, mask = pad_right([seq, seq[:2]], pad)
    with torch.no_grad():
        padded = rewards(model, [seq, seq[:2]], pad)
        alone = model(input_ids=torch.tensor([seq])).logits[0, 0]
    assert ids[1].tolist() == [5, 6, pad, pad]
    assert padded[0].item() == pytest.approx(alone.item(), abs=1e-5)
    # the head's init std is 1/sqrt(d_model + 1)
    d = model.score.weight.shape[1]
    assert model.score.weight.std().item() == pytest.approx((d + 1) ** -0.5, rel=0.5)


def test_rm_learns_a_planted_preference_and_centres_references(sft_dir, tmp_path):
    # labelers always prefer the summary that states the age; two labelers judge each valid pair
    comps = []
    for i in range(60):
        split = "train" if i < 48 else "valid1"
        good, bad = f"my dog ({i}) barks at night", "dog stuff happened lol"
        choice = i % 2
        a, b = (good, bad) if choice == 0 else (bad, good)
        comps.append(comparison(i, a, b, choice, "sim-0", split))
        if split == "valid1":
            comps.append(comparison(i, a, b, choice if i % 4 else 1 - choice, "sim-1", split))
    write_jsonl(tmp_path / "comps.jsonl", comps)
    cfg = RMConfig(
        epochs=4,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        eval_every=12,
        max_query_tokens=96,
        max_response_tokens=24,
        threads=1,
    )
    meta = run_rm(sft_dir, tmp_path / "comps.jsonl", tmp_path / "rm", cfg, progress=False)
    # 24 valid judgments, 3 of them sim-1's flips: an RM that learned the preference scores exactly 21/24
    assert meta["metrics"]["val/accuracy"] == pytest.approx(21 / 24)
    # 12 valid pairs judged twice; labeler sim-1 flips every 4th (i % 4 == 0: 48, 52, 56) -> 9/12 agree
    assert meta["metrics"]["labeler_agreement"] == pytest.approx(9 / 12)
    saved = json.loads((tmp_path / "rm" / "prefsum.json").read_text())
    assert saved["reward_bias"] == pytest.approx(meta["reward_bias"])

    # the bias centres the "ref" summaries: recompute their mean raw reward independently
    from transformers import AutoModelForSequenceClassification

    from training.reward import encode_summary
    from training.task import format_tldr
    from training.tokenizer import load_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "rm")).eval()
    tok = load_tokenizer(tmp_path / "rm")
    refs = {(c.info.id, c.summaries[1].text): c for c in comps}
    seqs = [
        # these short posts fit the 96-token budget untruncated, so the plain format is the query
        encode_summary(tok, tok(format_tldr(c.info.subreddit, c.info.title, c.info.post))["input_ids"], text, 24)
        for (_, text), c in refs.items()
    ]
    with torch.no_grad():
        r = rewards(model, seqs, tok.pad_token_id)
    assert (r.mean().item() - saved["reward_bias"]) == pytest.approx(0.0, abs=1e-4)


def test_rm_resume_matches_an_uninterrupted_run(sft_dir, tmp_path, monkeypatch):
    """Die right after a resume checkpoint, then resume: the same metrics and the same reward bias."""
    from training import reward

    comps = [
        comparison(i, f"my dog ({i}) barks", "dog stuff lol", i % 2, "sim-0", "train" if i < 32 else "valid1")
        for i in range(40)
    ]
    write_jsonl(tmp_path / "c.jsonl", comps)
    cfg = RMConfig(
        epochs=2,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        eval_every=4,
        max_query_tokens=96,
        max_response_tokens=24,
        threads=1,
    )
    full = run_rm(sft_dir, tmp_path / "c.jsonl", tmp_path / "full", cfg, progress=False)
    real_save = reward.save_state

    def save_then_die(out, state):
        real_save(out, state)
        if state["step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(reward, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_rm(sft_dir, tmp_path / "c.jsonl", tmp_path / "killed", cfg, progress=False)
    monkeypatch.setattr(reward, "save_state", real_save)
    resumed = run_rm(sft_dir, tmp_path / "c.jsonl", tmp_path / "killed", cfg, resume=True, progress=False)
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in full["history"]] == [4, 8]
    for a, b in zip(full["history"], resumed["history"], strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
        assert a["val/accuracy"] == b["val/accuracy"]
    assert resumed["reward_bias"] == pytest.approx(full["reward_bias"], rel=1e-5)


def test_best_of_n_keeps_the_highest_scored_sample(sft_dir):
    from transformers import AutoModelForCausalLM

    from training.best_of_n import best_of_n
    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(sft_dir)
    policy = AutoModelForCausalLM.from_pretrained(str(sft_dir))
    torch.manual_seed(0)
    rm = build_reward_model(sft_dir).eval()
    queries = [tok("SUBREDDIT: r/pets\n\nTITLE: Dog\n\nPOST: My dog is 3.\n\nTL;DR:")["input_ids"]] * 2
    picked = best_of_n(policy, rm, tok, queries, n=4, max_new_tokens=8, temperature=1.0, bias=0.5, seed=1)
    assert len(picked) == 2
    for q, p in zip(queries, picked, strict=True):
        assert len(p.candidates) == 4 and len({tuple(c.tokens) for c in p.candidates}) > 1
        # score every candidate independently: query + tokens + EOS, raw reward minus the bias
        seqs = [q + c.tokens + [tok.eos_token_id] for c in p.candidates]
        with torch.no_grad():
            expected = [rewards(rm, [s], tok.pad_token_id).item() - 0.5 for s in seqs]
        assert list(p.scores) == pytest.approx(expected, abs=1e-5)
        assert p.score == max(p.scores) and p.best is p.candidates[p.scores.index(max(p.scores))]
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n(policy, rm, tok, queries, n=0, max_new_tokens=4)


def test_summed_reward_is_the_sum_of_the_last_token_rewards_of_its_response_prefixes(sft_dir):
    """rm.pooling = "sum": the head summed over the response and its EOS. With a causal backbone the head's output at
    position t is the last-token reward of the prefix ending at t, so the summed reward must equal the sum of the
    ordinary (last-token) rewards of the response's prefixes: an independent computation through HF's own pooling."""
    model = build_reward_model(sft_dir).eval()
    pad = model.config.pad_token_id
    query, response = [5, 6, 7, 8], [9, 10, 11, 0]  # the response ends in EOS (id 0)
    short_q, short_r = [12, 13], [14, 0]
    with torch.no_grad():
        summed = rewards(model, [query + response, short_q + short_r], pad, pooling="sum", starts=[4, 2])
        prefixes = [query + response[: k + 1] for k in range(len(response))]
        expected = rewards(model, prefixes, pad).sum()
        expected_short = rewards(model, [short_q + short_r[:1], short_q + short_r], pad).sum()
    assert summed[0].item() == pytest.approx(expected.item(), abs=1e-5)
    assert summed[1].item() == pytest.approx(expected_short.item(), abs=1e-5)  # right padding changes nothing
    # the query's positions are not counted: moving the start changes the sum by exactly those positions' scores
    with torch.no_grad():
        wider = rewards(model, [query + response], pad, pooling="sum", starts=[3])
        q_last = rewards(model, [query], pad)
    assert wider.item() == pytest.approx(expected.item() + q_last.item(), abs=1e-5)
    with pytest.raises(ValueError, match="response start"):
        rewards(model, [query + response], pad, pooling="sum")


def test_summed_rm_trains_records_its_pooling_and_centres_references(sft_dir, tmp_path):
    from training.reward import encode_summary, pooling_of
    from training.task import format_tldr
    from training.tokenizer import load_tokenizer

    comps = []
    for i in range(60):
        split = "train" if i < 48 else "valid1"
        good, bad = f"my dog ({i}) barks at night", "dog stuff happened lol"
        a, b = (good, bad) if i % 2 == 0 else (bad, good)
        comps.append(comparison(i, a, b, i % 2, "sim-0", split))
    write_jsonl(tmp_path / "comps.jsonl", comps)
    cfg = RMConfig(
        epochs=4,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        eval_every=12,
        max_query_tokens=96,
        max_response_tokens=24,
        threads=1,
        pooling="sum",
    )
    meta = run_rm(sft_dir, tmp_path / "comps.jsonl", tmp_path / "rm", cfg, progress=False)
    assert meta["metrics"]["val/accuracy"] == 1.0  # 12 noiseless validation pairs
    saved = json.loads((tmp_path / "rm" / "prefsum.json").read_text())
    assert pooling_of(saved) == "sum" and saved["config"]["rm"]["pooling"] == "sum"

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "rm")).eval()
    tok = load_tokenizer(tmp_path / "rm")
    refs = {(c.info.id, c.summaries[1].text): c for c in comps}
    queries = [tok(format_tldr(c.info.subreddit, c.info.title, c.info.post))["input_ids"] for c in refs.values()]
    seqs = [encode_summary(tok, q, text, 24) for q, (_, text) in zip(queries, refs, strict=True)]
    with torch.no_grad():
        r = rewards(model, seqs, tok.pad_token_id, pooling="sum", starts=[len(q) for q in queries])
    assert r.mean().item() == pytest.approx(saved["reward_bias"], abs=1e-4)


def test_rm_pooling_is_checked():
    with pytest.raises(ValueError, match="rm.pooling"):
        RMConfig(pooling="mean")
    from training.reward import pooling_of

    assert pooling_of({}) == "last"  # checkpoints written before pooling existed
    with pytest.raises(ValueError, match="reward_pooling"):
        pooling_of({"reward_pooling": "max"})
