"""PPO against the reward model with a per-token KL penalty to the frozen SFT policy (the paper's step 3).

Models: the policy starts from the SFT checkpoint; a frozen copy of it is the reference pi_SFT; the value network
starts from the reward model (backbone + scalar head applied at every position); the reward model itself is frozen.
Dropout is off everywhere (logprobs of the same tokens must not move between passes).

Each iteration:
 1. sample queries: ``rollout_batch_size`` training posts chosen from (seed, step), formatted and truncated the
    paper's way, left-padded
 2. generate: one response per query at ``temperature`` (top_k=0, top_p=1) with a KV cache, cut at the first EOS;
    the sampling loop records log pi(token) from the same logits/temperature (these are PPO's "old" logprobs)
 3. reference logprobs: the frozen SFT policy on the same tokens, also at logits/temperature
 4. scores: the RM's bias-corrected reward (at the EOS, or summed over the response for rm.pooling = "sum"); a
    response with no EOS gets a fixed penalty
 5. KL-penalised rewards: -beta * (log pi - log pi_SFT) on every token, plus the score on the last one (or, with
    ppo.dense_rewards, each token's own share of a sum-pooled score)
 6. advantages and returns: GAE (gamma, lambda) against the value network's estimates, advantages whitened
 7. PPO epochs: ``ppo_epochs`` passes over shuffled minibatches, clipped policy loss + vf_coef * clipped value loss
 8. log: namespaced metrics (objective/*, ppo/*, time/*), a few samples with score and KL, the KL controller update

The math is in training/rl.py (pure, unit-tested); this module is the loop. Speed on CPU comes from computing the
vocabulary projection only where a response token is predicted (``logits_to_keep``), trimming padding per minibatch,
reusing the sampling pass's logprobs as the old logprobs, and stopping generation as soon as every row has ended.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.checkpoint import (
    clear_state,
    load_state,
    read_meta,
    save_checkpoint,
    save_state,
    sha256_file,
    write_metrics_line,
)
from training.config import PPOConfig
from training.data import load_tldr
from training.losses import masked_mean, masked_whiten
from training.reward import pooling_of
from training.rl import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    penalize_missing_eos,
    penalize_missing_eos_dense,
)

# ----------------------------------------------------------------------------------------------- models


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: 0 at each row's first real token. (B, T) -> (B, T)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def attention_for(model, mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """The attention mask to hand ``model`` for the last ``q_len`` of the (B, KV) positions in ``mask``.

    With SDPA attention (the CPU default) it is the finished (B, 1, q_len, KV) boolean mask: causal, padding keys
    excluded, and each query always sees itself, so a padding query's row is never empty (an empty row makes NaNs
    that reach real positions through the next layer's values). transformers passes a 4D mask through untouched;
    built from a 2D one it costs a vmap per forward, an eighth of a small model's PPO iteration (measured in
    bench/ppo_vs_trl.py). Other attention kernels (eager, flash) get the 2D mask and build their own.
    """
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return mask
    kv = mask.shape[1]
    rows = torch.arange(kv - q_len, kv, device=mask.device)[:, None]  # (q_len, 1) absolute query positions
    cols = torch.arange(kv, device=mask.device)[None, :]  # (1, KV)
    causal = cols <= rows  # (q_len, KV)
    return (causal & mask.bool()[:, None, None, :]) | (cols == rows)  # (B, 1, q_len, KV)


class ScalarHeadModel(nn.Module):
    """A sequence-classification checkpoint (the RM) seen as backbone + scalar head at every position."""

    def __init__(self, seq_cls_model, offset: float = 0.0, pooling: str = "last") -> None:
        super().__init__()
        self.backbone = getattr(seq_cls_model, seq_cls_model.base_model_prefix)
        self.head = seq_cls_model.score
        # The RM's bias correction (references score 0), so the value network starts on the scores' scale
        self.register_buffer("offset", torch.tensor(float(offset)), persistent=False)
        self.pooling = pooling  # how rm_scores reads the reward (the RM checkpoint's rm.pooling)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T) scalar at every position."""
        attn = attention_for(self.backbone, mask, ids.shape[1])
        hidden = self.backbone(input_ids=ids, attention_mask=attn, position_ids=positions(mask)).last_hidden_state
        return self.head(hidden).squeeze(-1) + self.offset


class PolicyAndValue(nn.Module):
    """Policy and value network in one module, so one optimizer and one DDP wrapper serve both."""

    def __init__(self, policy, value: ScalarHeadModel) -> None:
        super().__init__()
        self.policy = policy
        self.value = value

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, n_response: int, temperature: float):
        """Response logits and values for sequences whose last ``n_response`` columns are the response.

        ids, mask (B, Tq + T) -> logits (B, T, V) predicting each response token, values (B, T) of the state before it.
        """
        return response_logits(self.policy, ids, mask, n_response, temperature), self.value(ids, mask)[
            :, -n_response - 1 : -1
        ]


def response_logits(policy, ids: torch.Tensor, mask: torch.Tensor, n_response: int, temperature: float):
    """Logits / temperature at the positions that predict the last ``n_response`` tokens. -> (B, T, V).

    ``logits_to_keep`` makes the model project only those positions onto the vocabulary: on a small model with a
    long query that is most of the forward pass saved.
    """
    attn = attention_for(policy, mask, ids.shape[1])
    out = policy(input_ids=ids, attention_mask=attn, position_ids=positions(mask), logits_to_keep=n_response + 1)
    return out.logits[:, :-1].float() / temperature


def fuse_gelu(model) -> int:
    """Swap GPT-2's Python-level tanh GELU ("gelu_new": pow, tanh and four elementwise ops, each with its own
    backward) for torch's fused kernel of the same formula, ``nn.GELU(approximate="tanh")``; outputs agree to
    float rounding. On the bench's 2-layer GPT-2 the activation was a tenth of a PPO iteration. Returns how many
    modules were swapped; the weights and the saved config are unchanged."""
    from transformers.activations import NewGELUActivation  # noqa: PLC0415

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is NewGELUActivation:
                setattr(parent, name, nn.GELU(approximate="tanh"))
                swapped += 1
    return swapped


def _no_dropout(model) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


# --------------------------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample(
    policy,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one response per left-padded query with a KV cache (pure softmax sampling: top_k=0, top_p=1).

    query_ids, query_mask (B, Tq) -> responses (B, T) (EOS kept, [PAD] after it), logprobs (B, T) of the sampled
    tokens under logits/temperature (0 after EOS), entropy (B, T) of the sampling distribution (0 after EOS).
    T <= max_new_tokens: the loop stops once every row has emitted EOS.
    """
    B = query_ids.shape[0]
    mask = query_mask.clone()
    pos = positions(mask)
    attn = attention_for(policy, mask, mask.shape[1])
    out = policy(input_ids=query_ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    next_pos = pos[:, -1:] + 1  # (B, 1)
    done = torch.zeros(B, dtype=torch.bool)
    tokens, logps, ents = [], [], []
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)  # (B, V)
        probs = logp.exp()
        tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        lp = logp.gather(1, tok.clamp(max=logp.shape[1] - 1)[:, None]).squeeze(1)
        ent = -(probs * logp).sum(-1)
        tokens.append(tok)
        logps.append(torch.where(done, torch.zeros_like(lp), lp))
        ents.append(torch.where(done, torch.zeros_like(ent), ent))
        done = done | (tok == eos_id)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], dim=1)
        out = policy(
            input_ids=tok[:, None],
            attention_mask=attention_for(policy, mask, 1),
            position_ids=next_pos,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(logps, 1), torch.stack(ents, 1)


def response_mask(responses: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of real response tokens (up to and including the first EOS) and whether each row has an EOS.

    (B, T) -> mask (B, T) float, has_eos (B,) bool. Rows are assumed [PAD]-filled after their EOS.
    """
    has_eos = (responses == eos_id).any(dim=1)
    mask = (responses != pad_id).float()
    return mask, has_eos


@torch.no_grad()
def rm_scores(
    rm: ScalarHeadModel, ids: torch.Tensor, mask: torch.Tensor, starts: torch.Tensor | None = None
) -> torch.Tensor:
    """Bias-corrected rewards (through ``rm.offset``) of left-padded query + response sequences. (B, T) -> (B,).

    pooling "last": the head at each sequence's last real token; "sum": the head summed over the columns from
    ``starts`` (B,), each row's first response column, to its last real token."""
    values = rm(ids, mask)  # (B, T), each + offset
    if rm.pooling == "sum":
        if starts is None:
            raise ValueError("a sum-pooled reward model needs each row's first response column")
        resp = (torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) >= starts.unsqueeze(1)) & mask.bool()
        return ((values - rm.offset) * resp).sum(1) + rm.offset
    last = mask.shape[1] - 1 - mask.flip(1).long().argmax(1)  # index of the rightmost real token
    return values[torch.arange(len(values)), last]


@torch.no_grad()
def rm_token_scores(rm: ScalarHeadModel, ids: torch.Tensor, mask: torch.Tensor, n_response: int) -> torch.Tensor:
    """A sum-pooled RM's reward spread over the response: the head's output at each of the last ``n_response``
    columns (query + response rows, left-padded queries), with the bias correction (``rm.offset``) added once on each
    row's last real token. Each row sums to its ``rm_scores``. (B, Tq + T) -> (B, T), 0 on padding.

    Position t's output depends on the tokens up to t only (a causal backbone), so it is a reward for emitting token
    t: PPO can take it as a dense reward (ppo.dense_rewards) with the same total as the sequence score."""
    if rm.pooling != "sum":
        raise ValueError('per-token scores need a sum-pooled reward model (rm.pooling = "sum")')
    resp = mask[:, -n_response:].to(torch.float32)  # (B, T)
    out = (rm(ids, mask)[:, -n_response:] - rm.offset) * resp
    last = (resp.sum(1).long() - 1).clamp(min=0)  # (B,) each row's EOS (or last token)
    out[torch.arange(len(out)), last] += rm.offset
    return out


@torch.no_grad()
def score_sequences(rm: ScalarHeadModel, queries, responses, eos_id: int, pad_id: int) -> torch.Tensor:
    """Bias-corrected rewards of query + response tokens + EOS (lists of token ids). -> (B,)."""
    seqs = [list(q) + list(r) + [eos_id] for q, r in zip(queries, responses, strict=True)]
    ids, attn = left_pad(seqs, pad_id)
    starts = torch.tensor([ids.shape[1] - len(s) + len(q) for s, q in zip(seqs, queries, strict=True)])
    return rm_scores(rm, ids, attn, starts)


# ----------------------------------------------------------------------------------------------- rollout


@dataclass
class Rollout:
    """Everything PPO needs about one batch of sampled responses. Tq query columns (left-padded), T response
    columns (right-padded)."""

    ids: torch.Tensor  # (B, Tq + T) query + response
    attn: torch.Tensor  # (B, Tq + T) 1 on real tokens
    responses: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T) float, 1 up to and including EOS
    logprobs: torch.Tensor  # (B, T) old log pi
    ref_logprobs: torch.Tensor  # (B, T) log pi_SFT
    values: torch.Tensor  # (B, T)
    scores: torch.Tensor  # (B,) after the missing-EOS penalty
    raw_scores: torch.Tensor  # (B,) the RM's bias-corrected scores
    has_eos: torch.Tensor  # (B,)
    entropy: torch.Tensor  # (B, T)
    token_scores: torch.Tensor | None = None  # (B, T) the score spread over the tokens (ppo.dense_rewards), penalised


def left_pad(queries: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, queries))
    ids = torch.full((len(queries), T), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, q in enumerate(queries):
        ids[i, T - len(q) :] = torch.tensor(q)
        mask[i, T - len(q) :] = 1
    return ids, mask


@torch.no_grad()
def sample_with_reference(
    policy, ref_policy, queries: list[list[int]], cfg: PPOConfig, *, eos_id: int, pad_id: int, generator
):
    """Sample one response per query (steps 2-3 of the loop) and score its tokens under the reference policy.

    -> ids, attn (B, Tq + T), responses, mask (B, T), has_eos (B,), logprobs, ref_logprobs (0 after EOS), entropy
    (B, T): everything that depends only on the two policies.
    """
    q_ids, q_mask = left_pad(queries, pad_id)
    responses, logprobs, entropy = sample(
        policy,
        q_ids,
        q_mask,
        max_new_tokens=cfg.max_response_tokens,
        temperature=cfg.temperature,
        eos_id=eos_id,
        pad_id=pad_id,
        generator=generator,
    )
    mask, has_eos = response_mask(responses, eos_id, pad_id)
    ids = torch.cat([q_ids, responses], 1)
    attn = torch.cat([q_mask, mask.long()], 1)
    ref_logprobs = _gather(response_logits(ref_policy, ids, attn, responses.shape[1], cfg.temperature), responses)
    return ids, attn, responses, mask, has_eos, logprobs, ref_logprobs * mask, entropy


@torch.no_grad()
def collect(
    policy,
    ref_policy,
    value: ScalarHeadModel,
    rm: ScalarHeadModel,
    queries: list[list[int]],
    cfg: PPOConfig,
    *,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
) -> Rollout:
    """Steps 2-4 of the loop: generate, reference logprobs, values, scores (and with ``cfg.dense_rewards`` the
    per-token scores they sum)."""
    policy.eval()
    ids, attn, responses, mask, has_eos, logprobs, ref_logprobs, entropy = sample_with_reference(
        policy, ref_policy, queries, cfg, eos_id=eos_id, pad_id=pad_id, generator=generator
    )
    policy.train()
    T = responses.shape[1]
    values = value(ids, attn)[:, -T - 1 : -1] * mask
    token_scores = None
    if cfg.dense_rewards:
        token_scores = rm_token_scores(rm, ids, attn, T)  # (B, T)
        raw = token_scores.sum(1)
        if cfg.penalize_missing_eos:
            token_scores = penalize_missing_eos_dense(token_scores, mask, has_eos, cfg.missing_eos_penalty)
    else:
        raw = rm_scores(rm, ids, attn, torch.full((len(ids),), ids.shape[1] - T))
    scores = penalize_missing_eos(raw, has_eos, cfg.missing_eos_penalty) if cfg.penalize_missing_eos else raw
    return Rollout(
        ids, attn, responses, mask, logprobs, ref_logprobs, values, scores, raw, has_eos, entropy, token_scores
    )


def _gather(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token]; tokens may hold [PAD] beyond the vocabulary's real rows. (B,T,V),(B,T) -> (B,T)."""
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(2, tokens.clamp(max=logp.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)


def trim(ro: Rollout, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, slice]:
    """A minibatch's ids/attn without all-padding columns: left query padding and right response padding.

    -> ids, attn (b, Tq' + T'), T' (response columns kept), slice of the response columns kept."""
    ids, attn, mask = ro.ids[rows], ro.attn[rows], ro.mask[rows]
    T = ro.responses.shape[1]
    keep_resp = max(int(mask.sum(1).max().item()), 1)
    q_attn = attn[:, : attn.shape[1] - T]
    first = int((q_attn.sum(0) > 0).long().argmax().item())  # first query column any row uses
    end = attn.shape[1] - T + keep_resp
    return ids[:, first:end], attn[:, first:end], keep_resp, slice(0, keep_resp)


# ---------------------------------------------------------------------------------------------- the loop


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    var_r = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    var_res = masked_mean((returns - values - masked_mean(returns - values, mask)) ** 2, mask)
    return float(1 - var_res / var_r) if var_r > 0 else float("nan")


def load_models(sft_dir: str | Path, rm_dir: str | Path, rm_bias: float = 0.0):
    """Policy (trainable), reference policy (frozen), value network (trainable, from the RM), RM (frozen); the
    RM's outputs and the value network's start are shifted by -rm_bias (references score 0)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: PLC0415

    policy = AutoModelForCausalLM.from_pretrained(str(sft_dir))
    ref = AutoModelForCausalLM.from_pretrained(str(sft_dir))
    value = ScalarHeadModel(AutoModelForSequenceClassification.from_pretrained(str(rm_dir), num_labels=1), -rm_bias)
    pooling = pooling_of(read_meta(rm_dir))
    rm = ScalarHeadModel(
        AutoModelForSequenceClassification.from_pretrained(str(rm_dir), num_labels=1), -rm_bias, pooling
    )
    for m in (policy, ref, value, rm):
        _no_dropout(m)
        fuse_gelu(m)
    for m in (ref, rm):
        m.eval().requires_grad_(False)
    return policy, ref, value, rm


def check_compatible(sft_dir: str | Path, rm_dir: str | Path) -> None:
    """The RM must share the policy's tokenizer: a clear error before any model is loaded otherwise."""
    sft_meta, rm_meta = read_meta(sft_dir), read_meta(rm_dir)
    if rm_meta.get("stage") != "rm":
        raise ValueError(f"{rm_dir} is a {rm_meta.get('stage')!r} checkpoint, not a reward model (train one first)")
    if sft_meta.get("stage") not in ("sft", "ppo", "pretrain"):
        raise ValueError(f"{sft_dir} is a {sft_meta.get('stage')!r} checkpoint; PPO starts from an SFT policy")
    a, b = Path(sft_dir, "tokenizer.json"), Path(rm_dir, "tokenizer.json")
    if a.is_file() and b.is_file() and sha256_file(a) != sha256_file(b):
        raise ValueError(f"{sft_dir} and {rm_dir} use different tokenizers; train the RM from this SFT policy")


def run_ppo(
    sft_dir: str | Path,
    rm_dir: str | Path,
    train_file: str | Path,
    out_dir: str | Path,
    cfg: PPOConfig,
    *,
    valid_file: str | Path | None = None,
    resume: bool = False,
    profile_name: str = "custom",
    progress: bool = True,
) -> dict[str, Any]:
    """Train a policy with PPO from ``sft_dir`` against ``rm_dir`` on the posts of ``train_file``; writes the
    policy checkpoint to ``out_dir`` (+ ``<out>.metrics.jsonl`` and ``curves.png`` inside the checkpoint)."""
    from tqdm import tqdm  # noqa: PLC0415

    from training.dist import Dist  # noqa: PLC0415
    from training.sft import encode_query  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    check_compatible(sft_dir, rm_dir)
    dist = Dist()
    out = Path(out_dir)
    tokenizer = load_tokenizer(sft_dir)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rm_bias = float(read_meta(rm_dir).get("reward_bias", 0.0))

    # 1. queries: every training post, encoded once (the paper's format and truncation)
    posts = load_tldr(train_file)
    if not posts:
        raise ValueError(f"{train_file} has no posts")
    queries = [encode_query(p, tokenizer, cfg.max_query_tokens) for p in posts]
    valid_queries: list[list[int]] = []
    if valid_file is not None:
        valid_queries = [encode_query(p, tokenizer, cfg.max_query_tokens) for p in load_tldr(valid_file)[:64]]

    policy, ref, value, rm = load_models(sft_dir, rm_dir, rm_bias)
    if cfg.dense_rewards and rm.pooling != "sum":
        raise ValueError(
            f"ppo.dense_rewards needs a sum-pooled reward model, but {rm_dir} reads its reward at the EOS "
            '(rm.pooling = "last"): train the RM with --set rm.pooling="sum" or set ppo.dense_rewards=false'
        )
    pv = PolicyAndValue(policy, value)
    opt = torch.optim.AdamW(pv.parameters(), lr=cfg.lr, eps=1e-5, weight_decay=0.0)
    kl_ctl = (
        AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        if cfg.adaptive_kl
        else FixedKLController(cfg.kl_coef)
    )
    step, history = 0, []
    state = load_state(out) if resume else None
    if state is not None:
        pv.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history, kl_ctl.value = state["step"], state["history"], state["kl_coef"]
        dist.log(f"resuming PPO from iteration {step}/{cfg.steps}")
    pv, opt = dist.prepare(pv, opt)
    net = dist.unwrap(pv)
    metrics_path = out.with_name(out.name + ".metrics.jsonl")
    if step == 0 and dist.is_main:
        metrics_path.unlink(missing_ok=True)
    dist.log(
        f"PPO: {len(queries)} training queries, {cfg.steps} iterations x {cfg.rollout_batch_size} episodes, "
        f"beta {kl_ctl.value} ({'adaptive' if cfg.adaptive_kl else 'fixed'}), {dist.world} process(es)"
    )

    bar = tqdm(total=cfg.steps, initial=step, desc="ppo", disable=not (progress and dist.is_main), dynamic_ncols=True)
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        if cfg.lr_decay:
            lr *= 1 - step / cfg.steps
        for g in opt.param_groups:
            g["lr"] = lr
        # 1. sample queries (the global batch depends on (seed, step) only: exact resume)
        rng = random.Random(f"{cfg.seed}:ppo:{step}")
        batch = dist.local(rng.sample(range(len(queries)), min(cfg.rollout_batch_size, len(queries))))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 101 + dist.rank)
        # 2-4. generate, reference logprobs, values, scores
        ro = collect(
            net.policy,
            ref,
            net.value,
            rm,
            [queries[i] for i in batch],
            cfg,
            eos_id=eos,
            pad_id=pad,
            generator=gen,
        )
        t_rollout = time.perf_counter() - t0
        # 5. KL-penalised rewards
        dense = ro.token_scores if ro.token_scores is not None else ro.scores  # (B, T) or (B,)
        rewards, kl = kl_penalized_rewards(dense, ro.logprobs, ro.ref_logprobs, ro.mask, kl_ctl.value)
        if cfg.whiten_rewards:
            rewards = masked_whiten(rewards, ro.mask, shift_mean=False) * ro.mask
        # 6. advantages and returns
        advantages, returns = gae(rewards, ro.values, ro.mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, ro.mask) * ro.mask
        # 7. PPO epochs over shuffled minibatches
        stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "clipfrac", "approxkl", "vf_clipfrac", "ratio")}
        B = len(batch)
        mb = max(B // cfg.minibatches, 1)
        perm_gen = torch.Generator().manual_seed(cfg.seed + 7919 * step)
        n_updates = 0
        for _epoch in range(cfg.ppo_epochs):
            perm = torch.randperm(B, generator=perm_gen)
            for s in range(0, B, mb):
                rows = perm[s : s + mb]
                n_tokens = ro.mask[rows].sum().clamp(min=1)
                micro = cfg.micro_batch_size or len(rows)
                opt.zero_grad(set_to_none=True)
                # gradient accumulation: each micro-batch's token means weighted by its share of the minibatch's
                # tokens, so the update equals one pass over the whole minibatch
                for u in range(0, len(rows), micro):
                    sub = rows[u : u + micro]
                    ids, attn, T, cols = trim(ro, sub)
                    m = ro.mask[sub][:, cols]
                    weight = m.sum() / n_tokens
                    logits, vpred = pv(ids, attn, T, cfg.temperature)
                    new_logprobs = _gather(logits, ro.responses[sub][:, cols])
                    old_logprobs = ro.logprobs[sub][:, cols]
                    pg_loss, pg_stats = clipped_policy_loss(
                        new_logprobs, old_logprobs, advantages[sub][:, cols], m, cfg.cliprange
                    )
                    vf_loss, vf_stats = clipped_value_loss(
                        vpred, ro.values[sub][:, cols], returns[sub][:, cols], m, cfg.cliprange_value
                    )
                    dist.backward((pg_loss + cfg.vf_coef * vf_loss) * weight)
                    w = weight.item()
                    stats["pg"].append(pg_loss.item() * w)
                    stats["vf"].append(vf_loss.item() * w)
                    stats["clipfrac"].append(pg_stats["clipfrac"].item() * w)
                    stats["approxkl"].append(pg_stats["approxkl"].item() * w)
                    stats["vf_clipfrac"].append(vf_stats["clipfrac"].item() * w)
                    stats["ratio"].append(masked_mean(torch.exp(new_logprobs - old_logprobs), m).item() * w)
                dist.clip_grad_norm(pv, cfg.grad_clip)
                opt.step()
                n_updates += 1
        step += 1
        # 8. log and adapt beta
        seq_kl = kl.sum(1)  # (B,) KL of each response from the SFT policy (k1 estimate, nats)
        mean_kl = dist.sum(seq_kl.sum().item()) / (B * dist.world)
        kl_ctl.update(mean_kl, cfg.rollout_batch_size)
        elapsed = time.perf_counter() - t0
        row = {
            "step": step,
            "episodes": step * cfg.rollout_batch_size,
            "objective/kl": mean_kl,
            "objective/kl_coef": kl_ctl.value,
            "objective/scores": dist.sum(ro.scores.sum().item()) / (B * dist.world),
            "objective/rm_raw_scores": dist.sum(ro.raw_scores.sum().item()) / (B * dist.world),
            "objective/non_score_reward": -kl_ctl.value * mean_kl,
            "objective/rlhf_reward": dist.sum((ro.scores - kl_ctl.value * seq_kl).sum().item()) / (B * dist.world),
            "objective/entropy": dist.sum((ro.entropy * ro.mask).sum().item()) / dist.sum(ro.mask.sum().item()),
            "objective/eos_rate": dist.sum(ro.has_eos.float().sum().item()) / (B * dist.world),
            "objective/response_tokens": dist.sum(ro.mask.sum().item()) / (B * dist.world),
            "ppo/policy/loss": sum(stats["pg"]) / n_updates,
            "ppo/val/loss": sum(stats["vf"]) / n_updates,
            "ppo/policy/clipfrac": sum(stats["clipfrac"]) / n_updates,
            "ppo/policy/approxkl": sum(stats["approxkl"]) / n_updates,
            "ppo/val/clipfrac": sum(stats["vf_clipfrac"]) / n_updates,
            "ppo/val/var_explained": _explained_variance(ro.values, returns, ro.mask),
            "ppo/val/mean": masked_mean(ro.values, ro.mask).item(),
            "ppo/ratio": sum(stats["ratio"]) / n_updates,
            "ppo/lr": lr,
            "time/rollout_s": t_rollout,
            "time/episodes_per_s": cfg.rollout_batch_size / elapsed,
        }
        history.append(row)
        bar.update(1)
        bar.set_postfix(score=f"{row['objective/scores']:.2f}", kl=f"{mean_kl:.2f}")
        if dist.is_main:
            write_metrics_line(metrics_path, row)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if dist.is_main:
                _print_samples(bar, tokenizer, ro, seq_kl, cfg.n_samples, row)
                if valid_queries:
                    score = greedy_rm_score(net.policy, rm, tokenizer, valid_queries, cfg)
                    row["eval/greedy_rm_score"] = score
                    bar.write(f"  greedy RM score on {len(valid_queries)} validation posts: {score:.3f}")
                save_state(
                    out,
                    {
                        "model": net.state_dict(),
                        "optimizer": opt.state_dict(),
                        "step": step,
                        "history": history,
                        "kl_coef": kl_ctl.value,
                    },
                )
            dist.wait()
    bar.close()
    meta = {
        "stage": "ppo",
        "profile": profile_name,
        "config": {"ppo": asdict(cfg)},
        "data": {"train": str(train_file), "train_sha256": sha256_file(train_file), "n_queries": len(queries)},
        "parent": str(sft_dir),
        "reward_model": str(rm_dir),
        "processes": dist.world,
        "metrics": _final_metrics(history),
        "history": history,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if dist.is_main:
        save_checkpoint(net.policy, tokenizer, out, meta)
        _plot_curves(history, out / "curves.png")
        clear_state(out)
    dist.wait()
    return meta


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _final_metrics(history: list[dict[str, float]], last: int = 5) -> dict[str, float]:
    """Means of the last few iterations (single iterations are noisy) plus the last row's counters."""
    if not history:
        return {}
    tail = history[-last:]
    keys = [k for k in tail[-1] if k.startswith(("objective/", "ppo/", "time/", "eval/"))]
    out = {k: _mean([r[k] for r in tail if k in r]) for k in keys}
    return out | {"step": history[-1]["step"], "episodes": history[-1]["episodes"]}


@torch.no_grad()
def greedy_rm_score(policy, rm, tokenizer, queries, cfg: PPOConfig) -> float:
    """Mean bias-corrected RM score of greedy summaries (a cheap progress signal, not a judge)."""
    from training.sampling import generate  # noqa: PLC0415

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    gens = generate(policy, tokenizer, queries, max_new_tokens=cfg.max_response_tokens)
    scores = score_sequences(rm, queries, [g.tokens for g in gens], eos, pad)
    if cfg.penalize_missing_eos:
        has_eos = torch.tensor([g.finish_reason == "eos" for g in gens])
        scores = penalize_missing_eos(scores, has_eos, cfg.missing_eos_penalty)
    return scores.mean().item()


def _print_samples(bar, tokenizer, ro: Rollout, seq_kl: torch.Tensor, n: int, row: dict[str, float]) -> None:
    bar.write(
        f"iteration {row['step']}: score {row['objective/scores']:.3f} KL {row['objective/kl']:.2f} "
        f"entropy {row['objective/entropy']:.2f} clipfrac {row['ppo/policy/clipfrac']:.3f} "
        f"var_explained {row['ppo/val/var_explained']:.2f} {row['time/episodes_per_s']:.1f} episodes/s"
    )
    for i in range(min(n, len(ro.scores))):
        toks = [t for t in ro.responses[i].tolist() if t not in (tokenizer.eos_token_id, tokenizer.pad_token_id)]
        bar.write(f"  [score {ro.scores[i]:+.2f} KL {seq_kl[i]:.2f}]{tokenizer.decode(toks)}")


CURVES = (
    ("objective/scores", "RM score"),
    ("objective/kl", "KL from SFT (nats)"),
    ("objective/rlhf_reward", "score - beta KL"),
    ("objective/entropy", "entropy per token"),
    ("ppo/policy/clipfrac", "policy clip fraction"),
    ("ppo/val/var_explained", "value explained variance"),
)


def _plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """A PNG of the main curves against episodes (written atomically)."""
    import os  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    x = [r["episodes"] for r in history]
    for ax, (key, title) in zip(axes.flat, CURVES, strict=True):
        ax.plot(x, [r.get(key, float("nan")) for r in history], lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("episodes", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("PPO against the reward model")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)


@torch.no_grad()
def measure_kl(
    policy, ref_policy, queries: list[list[int]], cfg: PPOConfig, *, eos_id: int, pad_id: int, seed: int = 0
) -> float:
    """KL(pi || pi_SFT) per response in nats, estimated on held-out queries: responses sampled from ``policy`` at the
    rollout temperature, summed k1 = log pi - log pi_SFT over their tokens, averaged (the training metric's
    estimator, on posts the policy was not trained on)."""
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for s in range(0, len(queries), 32):
        *_, mask, _, logprobs, ref, _ = sample_with_reference(
            policy, ref_policy, queries[s : s + 32], cfg, eos_id=eos_id, pad_id=pad_id, generator=gen
        )
        total += ((logprobs - ref) * mask).sum().item()
        n += len(mask)
    return total / max(n, 1)
