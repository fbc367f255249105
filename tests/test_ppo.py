"""PPO loop pieces against independent computations, and the loop itself on tiny models: it raises the reward,
starts at KL 0, and a run interrupted after a checkpoint resumes to the same weights."""

import json

import pytest
import torch
from helpers import tiny_gpt2, tiny_llama

from training.config import PPOConfig


@pytest.fixture(scope="module")
def ppo_models(world_policy, tmp_path_factory):
    """An SFT stand-in (the tiny world policy) and a reward model built from it with a fresh head."""
    from training.checkpoint import save_checkpoint
    from training.reward import build_reward_model
    from training.tokenizer import load_tokenizer

    d = tmp_path_factory.mktemp("ppo_models")
    tok = load_tokenizer(world_policy)
    torch.manual_seed(0)
    rm = build_reward_model(world_policy)
    with torch.no_grad():
        rm.score.weight.mul_(4.0)  # rewards that vary across responses by a few units: a clear signal
    save_checkpoint(rm, tok, d / "rm", {"stage": "rm", "reward_bias": 0.25})
    return world_policy, d / "rm"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_sampling_logprobs_equal_a_full_forward_pass(tiny_tokenizer, arch):
    """The KV-cached sampling loop's logprobs are PPO's old logprobs: they must equal log softmax(logits/temp) of a
    plain forward pass over the whole (left-padded) sequence, and every row must stop at its first EOS."""
    from training.ppo import left_pad, response_logits, response_mask, sample

    torch.manual_seed(0)
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tiny_tokenizer).eval()
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    q_ids, q_mask = left_pad([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]], pad)
    gen = torch.Generator().manual_seed(1)
    responses, logprobs, entropy = sample(
        model, q_ids, q_mask, max_new_tokens=12, temperature=0.7, eos_id=eos, pad_id=pad, generator=gen
    )
    mask, has_eos = response_mask(responses, eos, pad)
    for row, m in zip(responses.tolist(), mask.tolist(), strict=True):
        if eos in row:
            k = row.index(eos)
            assert all(t == pad for t in row[k + 1 :]) and sum(m) == k + 1
    ids = torch.cat([q_ids, responses], 1)
    attn = torch.cat([q_mask, mask.long()], 1)
    with torch.no_grad():
        logits = response_logits(model, ids, attn, responses.shape[1], 0.7)
    expected = torch.log_softmax(logits, -1).gather(2, responses.clamp(max=logits.shape[-1] - 1)[..., None])[..., 0]
    torch.testing.assert_close(logprobs * mask, expected * mask, atol=1e-5, rtol=0)
    assert (entropy * mask).min() > 0 and torch.all(entropy[mask == 0] == 0)


def test_the_4d_attention_mask_is_causal_skips_padding_and_never_leaves_a_row_empty(tiny_tokenizer):
    from training.ppo import attention_for

    model = tiny_gpt2(tiny_tokenizer)
    assert model.config._attn_implementation == "sdpa"
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])  # left padding, and a pad column inside row 0
    got = attention_for(model, mask, 2)  # the last two positions as queries
    expected = torch.tensor(
        [
            [[[False, True, True, False], [False, True, True, True]]],  # query 3 is padding: sees only itself
            [[[True, True, True, False], [True, True, True, True]]],
        ]
    )
    assert got.shape == (2, 1, 2, 4) and torch.equal(got, expected)
    model.config._attn_implementation = "eager"  # other kernels build their own mask from the 2D one
    assert attention_for(model, mask, 2) is mask


def test_fused_gelu_gives_gpt2_the_same_outputs_and_gradients(tiny_tokenizer):
    import copy

    from transformers.activations import NewGELUActivation

    from training.ppo import fuse_gelu

    torch.manual_seed(0)
    plain = tiny_gpt2(tiny_tokenizer)
    fused = copy.deepcopy(plain)
    n_layers = plain.config.n_layer
    assert fuse_gelu(fused) == n_layers and fuse_gelu(fused) == 0  # one per MLP; a second call finds none
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    ids = torch.randint(5, 60, (2, 12))
    outs = []
    for model in (plain, fused):
        model.zero_grad()
        logits = model(input_ids=ids).logits
        logits.square().mean().backward()
        outs.append((logits.detach(), model.transformer.h[0].mlp.c_fc.weight.grad.clone()))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-6, rtol=1e-4)
    assert outs[0][1].abs().max() > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_4d_mask_path_matches_the_models_own_masking(tiny_tokenizer, arch):
    """response_logits and the value/RM backbone hand the model a ready 4D mask: on left-padded queries with
    [PAD] after an early EOS, every real position gets what the model computes from the 2D mask itself."""
    from training.ppo import ScalarHeadModel, positions, response_logits

    torch.manual_seed(0)
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tiny_tokenizer).eval()
    ids = torch.randint(5, 60, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, :4] = 0  # left padding
    mask[1, 8:] = 0  # response padding after EOS
    with torch.no_grad():
        got = response_logits(model, ids, mask, 4, 0.7)
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits[:, -5:-1] / 0.7
        backbone = getattr(model, model.base_model_prefix)
        head = torch.nn.Linear(backbone.config.hidden_size, 1)
        seq_cls = torch.nn.Module()
        seq_cls.base_model_prefix, seq_cls.score = "backbone", head
        seq_cls.backbone = backbone
        values = ScalarHeadModel(seq_cls)(ids, mask)
        own = head(backbone(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).last_hidden_state)
    real = mask.bool()
    torch.testing.assert_close(got[real[:, -5:-1]], full[real[:, -5:-1]], atol=1e-5, rtol=0)
    torch.testing.assert_close(values[real], own.squeeze(-1)[real], atol=1e-5, rtol=0)
    assert torch.isfinite(got).all() and torch.isfinite(values).all()


def test_left_padded_rm_scores_equal_the_rm_on_right_padded_sequences(ppo_models):
    """Left padding with explicit position ids must give the RM's own scores (GPT-2 has absolute positions)."""
    from transformers import AutoModelForSequenceClassification

    from training.ppo import ScalarHeadModel, left_pad, rm_scores
    from training.reward import rewards

    _, rm_dir = ppo_models
    seq_cls = AutoModelForSequenceClassification.from_pretrained(str(rm_dir), num_labels=1).eval()
    seqs = [[5, 6, 7, 8, 9, 10, 2], [11, 12, 2], [13, 14, 15, 16]]
    pad = 1
    expected = rewards(seq_cls, seqs, pad_id=pad) - 0.25
    ids, attn = left_pad(seqs, pad)
    got = rm_scores(ScalarHeadModel(seq_cls, offset=-0.25), ids, attn)
    torch.testing.assert_close(got, expected.detach(), atol=1e-5, rtol=0)


def test_summed_rm_scores_in_ppo_equal_the_rm_on_right_padded_sequences(ppo_models):
    """A sum-pooled RM (rm.pooling = "sum"): PPO's scores of left-padded query + response rows, through
    ``score_sequences`` and through ``rm_scores`` with the rollout's response column, equal training.reward's sum
    over the response positions of right-padded sequences, minus the bias."""
    from transformers import AutoModelForSequenceClassification

    from training.ppo import ScalarHeadModel, left_pad, rm_scores, score_sequences
    from training.reward import rewards

    _, rm_dir = ppo_models
    seq_cls = AutoModelForSequenceClassification.from_pretrained(str(rm_dir), num_labels=1).eval()
    queries, responses, eos, pad = [[5, 6, 7, 8], [11, 12], [13, 14, 15]], [[9, 10], [16, 17, 18], []], 2, 1
    seqs = [q + r + [eos] for q, r in zip(queries, responses, strict=True)]
    with torch.no_grad():
        expected = rewards(seq_cls, seqs, pad, pooling="sum", starts=[len(q) for q in queries]) - 0.25
    rm = ScalarHeadModel(seq_cls, offset=-0.25, pooling="sum")
    torch.testing.assert_close(score_sequences(rm, queries, responses, eos, pad), expected, atol=1e-5, rtol=0)
    # the rollout layout: left-padded queries (Tq columns), then right-padded responses
    q_ids, q_mask = left_pad(queries, pad)
    resp = torch.full((3, 4), pad)
    for i, r in enumerate(responses):
        resp[i, : len(r) + 1] = torch.tensor(r + [eos])
    ids, attn = torch.cat([q_ids, resp], 1), torch.cat([q_mask, (resp != pad).long()], 1)
    got = rm_scores(rm, ids, attn, torch.full((3,), q_ids.shape[1]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="response column"):
        rm_scores(rm, ids, attn)


def _sum_pooled_copy(rm_dir, dest):
    """The test RM's checkpoint, marked as trained with rm.pooling = "sum"."""
    import shutil

    shutil.copytree(rm_dir, dest)
    meta = json.loads((dest / "prefsum.json").read_text())
    (dest / "prefsum.json").write_text(json.dumps(meta | {"reward_pooling": "sum"}))
    return dest


def test_token_scores_are_the_rewards_of_the_response_prefixes(ppo_models):
    """ppo.dense_rewards: the score of response token t is the RM head at t, which for a causal backbone is HF's own
    (last-token) reward of the prefix query + response[: t + 1]; the bias correction lands once on the last token,
    so each row sums to the sequence's sum-pooled score."""
    from transformers import AutoModelForSequenceClassification

    from training.ppo import ScalarHeadModel, left_pad, rm_scores, rm_token_scores
    from training.reward import rewards

    _, rm_dir = ppo_models
    seq_cls = AutoModelForSequenceClassification.from_pretrained(str(rm_dir), num_labels=1).eval()
    queries, responses, eos, pad = [[5, 6, 7, 8], [11, 12]], [[9, 10], [16, 17, 18]], 2, 1
    q_ids, q_mask = left_pad(queries, pad)
    resp = torch.full((2, 4), pad)
    for i, r in enumerate(responses):
        resp[i, : len(r) + 1] = torch.tensor(r + [eos])
    ids, attn = torch.cat([q_ids, resp], 1), torch.cat([q_mask, (resp != pad).long()], 1)
    rm = ScalarHeadModel(seq_cls, offset=-0.25, pooling="sum")
    got = rm_token_scores(rm, ids, attn, 4)  # (2, 4)
    for i, (q, r) in enumerate(zip(queries, responses, strict=True)):
        full = r + [eos]
        with torch.no_grad():
            prefix = rewards(seq_cls, [q + full[: t + 1] for t in range(len(full))], pad)
        prefix[-1] -= 0.25
        torch.testing.assert_close(got[i, : len(full)], prefix, atol=1e-5, rtol=0)
        assert torch.all(got[i, len(full) :] == 0)
    torch.testing.assert_close(
        got.sum(1), rm_scores(rm, ids, attn, torch.full((2,), q_ids.shape[1])), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="sum-pooled"):
        rm_token_scores(ScalarHeadModel(seq_cls, offset=-0.25), ids, attn, 4)


def test_dense_rewards_need_a_sum_pooled_rm_and_raise_its_score(ppo_models, tiny_world, tmp_path):
    from training.ppo import run_ppo

    sft, rm = ppo_models
    train = tiny_world / "tldr" / "train.jsonl"
    with pytest.raises(ValueError, match="sum-pooled"):
        run_ppo(sft, rm, train, tmp_path / "refused", _cfg(steps=1, dense_rewards=True), progress=False)
    assert not (tmp_path / "refused").exists()
    summed = _sum_pooled_copy(rm, tmp_path / "rm_sum")
    cfg = _cfg(steps=20, max_response_tokens=2, temperature=1.0, lr=1e-2, eval_every=10, dense_rewards=True)
    meta = run_ppo(sft, summed, train, tmp_path / "ppo", cfg, progress=False)
    hist = meta["history"]
    assert abs(hist[0]["objective/kl"]) < 1e-3
    first = sum(r["objective/scores"] for r in hist[:3]) / 3
    last = sum(r["objective/scores"] for r in hist[-3:]) / 3
    assert last > first + 0.3, f"PPO with dense rewards did not raise the RM score: {first:.3f} -> {last:.3f}"


def test_trimmed_minibatch_gives_the_same_logprobs_and_values(tiny_tokenizer):
    """Dropping all-padding columns (left query padding, right response padding) must not change anything."""
    from training.ppo import PolicyAndValue, Rollout, ScalarHeadModel, _gather, left_pad, trim
    from training.reward import build_reward_model

    torch.manual_seed(0)
    policy = tiny_gpt2(tiny_tokenizer).eval()
    pad, eos = tiny_tokenizer.pad_token_id, tiny_tokenizer.eos_token_id
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        policy.save_pretrained(tmp)
        value = ScalarHeadModel(build_reward_model(tmp)).eval()
    pv = PolicyAndValue(policy, value)
    q_ids, q_mask = left_pad([[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16]], pad)
    responses = torch.tensor([[20, 21, eos, pad, pad, pad], [22, eos, pad, pad, pad, pad], [23, 24, 25, eos, pad, pad]])
    mask = (responses != pad).float()
    ids, attn = torch.cat([q_ids, responses], 1), torch.cat([q_mask, mask.long()], 1)
    z = torch.zeros(3, 6)
    ro = Rollout(ids, attn, responses, mask, z, z, z, z[:, 0], z[:, 0], mask.bool().any(1), z)
    rows = torch.tensor([1, 2])  # both short: the longest query (row 0) is left out, so columns can go
    t_ids, t_attn, T, cols = trim(ro, rows)
    assert T == 4 and t_ids.shape[1] == 3 + 4  # query columns of rows 1-2 (3) + their longest response (4)
    with torch.no_grad():
        full_logits, full_values = pv(ids[rows], attn[rows], 6, 1.0)
        t_logits, t_values = pv(t_ids, t_attn, T, 1.0)
    m = mask[rows][:, cols]
    torch.testing.assert_close(
        _gather(t_logits, responses[rows][:, cols]) * m,
        _gather(full_logits, responses[rows])[:, cols] * m,
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(t_values * m, full_values[:, cols] * m, atol=1e-5, rtol=0)


def _cfg(**kw) -> PPOConfig:
    base = {
        "steps": 12,
        "rollout_batch_size": 16,
        "minibatches": 2,
        "ppo_epochs": 2,
        "lr": 3e-3,
        "lr_decay": False,
        "max_query_tokens": 96,
        "max_response_tokens": 12,
        "penalize_missing_eos": False,
        "kl_coef": 0.01,
        "eval_every": 6,
        "n_samples": 0,
        "threads": 1,
    }
    return PPOConfig(**(base | kw))


def test_ppo_raises_the_reward_and_starts_at_zero_kl(ppo_models, tiny_world, tmp_path):
    from training.ppo import run_ppo

    sft, rm = ppo_models
    # A barely trained policy samples nearly uniformly: two-token responses make the RM's preference learnable in
    # a few hundred episodes (measured: the mean score rises by ~0.5 over 20 iterations)
    cfg = _cfg(steps=20, max_response_tokens=2, temperature=1.0, lr=1e-2, eval_every=10)
    meta = run_ppo(sft, rm, tiny_world / "tldr" / "train.jsonl", tmp_path / "ppo", cfg, progress=False)
    hist = meta["history"]
    # iteration 1 samples from the SFT policy itself: the sampled logprobs equal the reference's, KL ~ 0
    assert abs(hist[0]["objective/kl"]) < 1e-3
    first = sum(r["objective/scores"] for r in hist[:3]) / 3
    last = sum(r["objective/scores"] for r in hist[-3:]) / 3
    assert last > first + 0.3, f"PPO did not raise the RM score: {first:.3f} -> {last:.3f}"
    assert hist[-1]["objective/kl"] > 0.05  # it moved away from the SFT policy to do so
    saved = json.loads((tmp_path / "ppo" / "prefsum.json").read_text())
    assert saved["stage"] == "ppo" and saved["reward_model"] == str(rm)
    assert (tmp_path / "ppo" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(x) for x in (tmp_path / "ppo.metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    for key in ("objective/kl", "objective/entropy", "ppo/policy/clipfrac", "ppo/val/var_explained"):
        assert key in rows[-1]


def test_interrupted_ppo_resumes_to_the_same_policy(ppo_models, tiny_world, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from training import ppo

    sft, rm = ppo_models
    train = tiny_world / "tldr" / "train.jsonl"
    cfg = _cfg(steps=4, eval_every=2)
    ppo.run_ppo(sft, rm, train, tmp_path / "whole", cfg, progress=False)

    real_save = ppo.save_state

    def save_then_die(out, state):
        real_save(out, state)
        if state["step"] == 2:
            raise KeyboardInterrupt  # killed right after the first resume checkpoint

    monkeypatch.setattr(ppo, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ppo.run_ppo(sft, rm, train, tmp_path / "cut", cfg, progress=False)
    monkeypatch.setattr(ppo, "save_state", real_save)
    meta = ppo.run_ppo(sft, rm, train, tmp_path / "cut", cfg, resume=True, progress=False)
    assert [r["step"] for r in meta["history"]] == [1, 2, 3, 4]
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_rm_from_another_tokenizer_is_refused(ppo_models, base_and_data, tmp_path):
    from training.ppo import check_compatible

    sft, rm = ppo_models
    with pytest.raises(ValueError, match="different tokenizers"):
        check_compatible(base_and_data / "base", rm)
    with pytest.raises(ValueError, match="not a reward model"):
        check_compatible(sft, sft)


def test_sweep_writes_the_curve_and_a_strong_penalty_keeps_the_policy_close(ppo_models, tiny_world, tmp_path):
    """Two KL coefficients from the same SFT/RM: the strongly penalised run stays closer to the SFT policy, and
    sweep.json carries the contract's keys with values in range (the gold judge is the world's labeler pool)."""
    import dataclasses
    import shutil

    from prefsum.workflows import ppo_sweep, stale_sweep_point
    from training.config import Profile

    sft, rm = ppo_models
    run = tmp_path / "run"
    shutil.copytree(sft, run / "sft")
    shutil.copytree(rm, run / "rm")
    cfg = _cfg(steps=10, max_response_tokens=4, temperature=1.0, lr=1e-2, eval_every=10)
    profile = dataclasses.replace(Profile(), ppo=cfg)
    points = ppo_sweep(run, tiny_world, profile, [0.0, 3.0], n_eval=24, progress=False)
    saved = json.loads((run / "sweep" / "sweep.json").read_text())
    assert saved == points and [p["kl_coef"] for p in points] == [3.0, 0.0, None]
    for p in points:
        assert {"kl_coef", "kl", "rm_score", "gold_win_rate"} <= set(p) and 0 <= p["gold_win_rate"] <= 1
    strong, free, start = points
    assert start["policy"] == "sft" and start["kl"] == 0.0 and start["checkpoint"] == str(run / "sft")
    assert 0 < strong["kl"] < free["kl"], points
    assert (run / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    # A second sweep reuses both points; after the RM is saved again they are stale and trained again.
    trained = {
        p["kl_coef"]: (run / "sweep" / f"kl_{p['kl_coef']:g}" / "prefsum.json").stat().st_mtime_ns for p in points[:2]
    }
    assert ppo_sweep(run, tiny_world, profile, [0.0, 3.0], n_eval=24, progress=False) == points
    for coef, mtime in trained.items():
        assert (run / "sweep" / f"kl_{coef:g}" / "prefsum.json").stat().st_mtime_ns == mtime
    meta = json.loads((run / "rm" / "prefsum.json").read_text())
    meta["saved_at"] = "9999-01-01T00:00:00Z"
    (run / "rm" / "prefsum.json").write_text(json.dumps(meta))
    assert stale_sweep_point(run / "sweep" / "kl_3", run / "sft", run / "rm", dataclasses.replace(cfg, kl_coef=3.0))
    ppo_sweep(run, tiny_world, profile, [3.0], n_eval=24, progress=False)
    assert (run / "sweep" / "kl_3" / "prefsum.json").stat().st_mtime_ns != trained[3.0]


def test_a_sweep_point_with_other_ppo_settings_is_stale(ppo_models, tmp_path):
    import dataclasses
    import shutil

    from prefsum.workflows import stale_sweep_point

    sft, rm = ppo_models
    cfg = _cfg(steps=1, kl_coef=0.5)
    point = tmp_path / "kl_0.5"
    assert stale_sweep_point(point, sft, rm, cfg) is None  # nothing there yet
    point.mkdir()
    shutil.copy(sft / "prefsum.json", point / "prefsum.json")
    meta = json.loads((point / "prefsum.json").read_text())
    meta.update(saved_at="9999-01-01T00:00:00Z", config={"ppo": dataclasses.asdict(cfg)})
    (point / "prefsum.json").write_text(json.dumps(meta))
    assert stale_sweep_point(point, sft, rm, dataclasses.replace(cfg, threads=1, eval_every=7)) is None
    assert "lr" in stale_sweep_point(point, sft, rm, dataclasses.replace(cfg, lr=cfg.lr * 2))


def test_micro_batches_accumulate_to_the_same_update(ppo_models, tiny_world, tmp_path):
    """Gradient accumulation over micro-batches (uneven: 8 rows in chunks of 3) gives the whole-minibatch update."""
    from safetensors.torch import load_file

    from training.ppo import run_ppo

    sft, rm = ppo_models
    train = tiny_world / "tldr" / "train.jsonl"
    for name, micro in (("whole", 0), ("micro", 3)):
        cfg = _cfg(steps=1, ppo_epochs=1, rollout_batch_size=16, minibatches=2, micro_batch_size=micro)
        run_ppo(sft, rm, train, tmp_path / name, cfg, progress=False)
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "micro" / "model.safetensors")
    moved = max((a[k] - load_file(sft / "model.safetensors")[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # the update is not trivially zero
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
