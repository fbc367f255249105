"""The reward model: the SFT backbone with a scalar head, trained on labeler comparisons (the paper's step 2).

1. encode each comparison as two sequences "query + summary + EOS" (right-padded with [PAD])
2. the reward is the head's output at the EOS (the last non-pad token; HF's sequence-classification models read
   exactly that position), so a whole summary is judged once it is finished; or, with ``rm.pooling = "sum"``, the
   sum of the head's outputs over the response's positions (its tokens and the EOS). A shallow backbone cannot
   gather "is every stated value the post's?" into one position (the tiny 2-layer model's last-token RM rewarded
   invented values; docs/ppo.md), while a sum over positions adds up checks each position can make itself.
3. Bradley-Terry loss -log sigmoid(r_preferred - r_other)
4. validation accuracy against the labelers' choices, beside the labelers' agreement with each other on the same
   pairs (the ceiling an RM can reach against noisy labelers)
5. a bias so that reference summaries score 0 on average, stored in prefsum.json (``reward_bias``)

The model is a standard ``AutoModelForSequenceClassification`` with ``num_labels=1`` so the ONNX exporter handles it
like any text-classification model.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.checkpoint import (
    clear_state,
    read_meta,
    save_checkpoint,
    save_state,
    sha256_file,
    start_run,
    write_metrics_line,
)
from training.config import RMConfig
from training.data import Comparison, load_comparisons
from training.optim import adamw, lr_at, set_lr
from training.sft import _disable_dropout, encode_query
from training.task import QueryTooLong, reference_response

POOLINGS = ("last", "sum")


@dataclass(frozen=True, slots=True)
class Pair:
    preferred: list[int]  # query + summary + EOS
    other: list[int]
    start: int = 0  # query length: the response starts here in both sequences


def pooling_of(meta: dict[str, Any]) -> str:
    """How a reward checkpoint reads its reward (its prefsum.json); checkpoints from before pooling existed: "last"."""
    pooling = str(meta.get("reward_pooling", "last"))
    if pooling not in POOLINGS:
        raise ValueError(f"reward_pooling {pooling!r} in the checkpoint's prefsum.json is not one of {POOLINGS}")
    return pooling


def encode_summary(tokenizer, query_ids: list[int], summary: str, max_response_tokens: int) -> list[int]:
    """query + summary (cut to the budget) + EOS."""
    ids = tokenizer(reference_response(summary), add_special_tokens=False)["input_ids"][: max_response_tokens - 1]
    return query_ids + ids + [tokenizer.eos_token_id]


def encode_pairs(comparisons: list[Comparison], tokenizer, max_query_tokens: int, max_response_tokens: int):
    pairs, dropped, cache = [], 0, {}
    for c in comparisons:
        key = c.info.id
        if key not in cache:
            try:
                cache[key] = encode_query(c.info, tokenizer, max_query_tokens)
            except QueryTooLong:
                cache[key] = None
        q = cache[key]
        if q is None:
            dropped += 1
            continue
        a, b = (encode_summary(tokenizer, q, s.text, max_response_tokens) for s in c.summaries)
        pairs.append(Pair(a, b, len(q)) if c.choice == 0 else Pair(b, a, len(q)))
    return pairs, dropped


def pad_right(seqs: list[list[int]], pad_id: int):
    import torch  # noqa: PLC0415

    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def response_positions(mask, starts: list[int]):
    """(B, T) right-padded attention mask and each row's response start -> (B, T) float, 1 on response + EOS."""
    import torch  # noqa: PLC0415

    cols = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    return ((cols >= torch.tensor(starts, device=mask.device).unsqueeze(1)) & mask.bool()).float()


def token_scores(model, ids, mask, position_ids=None):
    """The scalar head at every position of a sequence-classification model. (B, T) -> (B, T)."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
    return model.score(hidden).squeeze(-1)


def reward_forward(model, ids, mask, pooling: str = "last", starts: list[int] | None = None):
    """Raw rewards (no bias) of right-padded sequences. (B, T) -> (B,). ``starts`` (query lengths) for "sum".

    ``model`` is the sequence-classification model, or (while training "sum") its ``sum_pooled`` wrapper, possibly
    inside DDP: the whole computation then runs in the wrapper's forward, as DDP needs."""
    if pooling == "last":
        return model(input_ids=ids, attention_mask=mask).logits[:, 0]
    if pooling != "sum":
        raise ValueError(f"rm.pooling must be one of {POOLINGS}, got {pooling!r}")
    if starts is None:
        raise ValueError('rm.pooling "sum" needs each sequence\'s response start (its query length)')
    resp = response_positions(mask, starts)
    if hasattr(model, "score"):
        return (token_scores(model, ids, mask) * resp).sum(1)
    return model(ids, mask, resp)  # the sum_pooled wrapper (or DDP around it)


def sum_pooled(model):
    """An nn.Module around a sequence-classification model whose forward(ids, mask, resp) is the summed reward."""
    from torch import nn  # noqa: PLC0415

    class SumPooledReward(nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids, mask, resp):
            return (token_scores(self.inner, ids, mask) * resp).sum(1)

    return SumPooledReward(model)


def rewards(
    model,
    seqs: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    *,
    pooling: str = "last",
    starts: list[int] | None = None,
):
    """Raw rewards (no bias) for token sequences (query + response + EOS). -> (N,) tensor."""
    import torch  # noqa: PLC0415

    out = []
    for s in range(0, len(seqs), batch_size):
        ids, mask = pad_right(seqs[s : s + batch_size], pad_id)
        chunk = None if starts is None else starts[s : s + batch_size]
        out.append(reward_forward(model, ids, mask, pooling, chunk))
    return torch.cat(out) if out else torch.zeros(0)


def labeler_agreement(comparisons: list[Comparison]) -> tuple[float | None, int]:
    """Share of pairs of judgments by different labelers on the same two summaries that agree; and how many pairs."""
    by_pair: dict[tuple, list[tuple[str, str]]] = defaultdict(list)  # pair -> [(preferred text, worker)]
    for c in comparisons:
        a, b = (s.text.strip() for s in c.summaries)
        by_pair[(c.info.id, *sorted((a, b)))].append((c.preferred.text.strip(), c.worker))
    agree = total = 0
    for votes in by_pair.values():
        for (ti, wi), (tj, wj) in itertools.combinations(votes, 2):
            if wi != wj:
                total += 1
                agree += ti == tj
    return (agree / total if total else None), total


def accuracy(model, pairs: list[Pair], pad_id: int, pooling: str = "last") -> float:
    import torch  # noqa: PLC0415

    if not pairs:
        return float("nan")
    starts = [p.start for p in pairs] * 2
    with torch.no_grad():
        r = rewards(
            model, [p.preferred for p in pairs] + [p.other for p in pairs], pad_id, pooling=pooling, starts=starts
        )
    n = len(pairs)
    return (r[:n] > r[n:]).float().mean().item()


def build_reward_model(sft_dir: str | Path):
    """The SFT checkpoint with a fresh scalar head (init std 1/sqrt(d_model + 1), as in the paper)."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForSequenceClassification  # noqa: PLC0415

    model = AutoModelForSequenceClassification.from_pretrained(str(sft_dir), num_labels=1)
    head = model.score
    d = head.weight.shape[1]
    torch.nn.init.normal_(head.weight, std=1 / math.sqrt(d + 1))
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)
    model.config.problem_type = "regression"
    return model


def run_rm(
    sft_dir: str | Path,
    comparisons_file: str | Path,
    out_dir: str | Path,
    cfg: RMConfig,
    *,
    references: list | None = None,
    resume: bool = False,
    profile_name: str = "custom",
    progress: bool = True,
) -> dict[str, Any]:
    """Train the RM on the ``train`` split of a comparisons file; validate on valid1/valid2.

    ``references``: TldrPost records whose reference summaries set the bias (mean reward of references = 0);
    default: the ``ref`` summaries found in the comparisons.
    """
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from training.dist import Dist  # noqa: PLC0415
    from training.losses import bradley_terry_loss  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    dist = Dist()
    out = Path(out_dir)
    read_meta(sft_dir)
    tokenizer = load_tokenizer(sft_dir)
    pad = tokenizer.pad_token_id
    torch.manual_seed(cfg.seed)  # the head's initialisation
    model = build_reward_model(sft_dir)
    _disable_dropout(model)
    model.train()

    comps = load_comparisons(comparisons_file)
    train_c = [c for c in comps if c.split == "train"]
    valid_c = [c for c in comps if c.split != "train"]
    if not train_c:
        raise ValueError(f"{comparisons_file} has no comparisons with split 'train'")
    train, dropped = encode_pairs(train_c, tokenizer, cfg.max_query_tokens, cfg.max_response_tokens)
    valid, _ = encode_pairs(valid_c, tokenizer, cfg.max_query_tokens, cfg.max_response_tokens)
    agreement, n_agree_pairs = labeler_agreement(valid_c)
    if len(train) < cfg.batch_size:
        raise ValueError(f"only {len(train)} training comparisons, fewer than rm.batch_size={cfg.batch_size}")
    per_epoch = len(train) // cfg.batch_size  # full batches only (every process needs an equal share)
    steps = max(1, math.ceil(cfg.epochs * per_epoch))
    dist.log(
        f"RM: {len(train)} train comparisons ({dropped} dropped), {len(valid)} validation, {steps} steps, "
        f"{dist.world} process(es); labeler agreement on validation pairs "
        f"{agreement if agreement is None else round(agreement, 3)} ({n_agree_pairs} judgment pairs)"
    )

    # "sum" trains through a wrapper whose forward is the whole pooled reward (so DDP sees it); "last" is HF's own
    trained = sum_pooled(model) if cfg.pooling == "sum" else model
    opt = adamw(trained, cfg.lr, cfg.weight_decay)
    trained, opt, step, history, metrics_path = start_run(
        out, trained, opt, dist, resume=resume, stage="RM training", total_steps=steps
    )

    # one fixed shuffle per epoch, derived from the seed: batch k is the same whether or not the run was resumed
    def batch_at(k: int) -> list[Pair]:
        epoch, j = divmod(k, per_epoch)
        order = list(range(len(train)))
        random.Random(f"{cfg.seed}:epoch{epoch}").shuffle(order)
        return [train[i] for i in order[j * cfg.batch_size : (j + 1) * cfg.batch_size]]

    bar = tqdm(total=steps, initial=step, desc="rm", disable=not (progress and dist.is_main), dynamic_ncols=True)
    loss_acc = acc_acc = 0.0
    n_acc = 0
    while step < steps:
        set_lr(opt, lr := lr_at(step, cfg.lr, cfg.warmup_steps, steps, cfg.min_lr_ratio))
        batch = dist.local(batch_at(step))
        ids, mask = pad_right([p.preferred for p in batch] + [p.other for p in batch], pad)
        starts = [p.start for p in batch] * 2
        r = reward_forward(trained, ids.to(dist.device), mask.to(dist.device), cfg.pooling, starts)  # (2b,)
        n = len(batch)
        loss = bradley_terry_loss(r[:n], r[n:])  # equal shares: the mean over processes is the global mean
        opt.zero_grad(set_to_none=True)
        dist.backward(loss)
        dist.clip_grad_norm(trained, cfg.grad_clip)
        opt.step()
        step += 1
        loss_acc += dist.sum(loss.item()) / dist.world
        acc_acc += dist.sum((r[:n] > r[n:]).float().mean().item()) / dist.world
        n_acc += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == steps:
            if dist.is_main:
                net = dist.unwrap(trained).eval()  # `model` is (inside) it
                row = {
                    "step": step,
                    "train/loss": loss_acc / n_acc,
                    "train/accuracy": acc_acc / n_acc,
                    "val/accuracy": accuracy(model, valid, pad, cfg.pooling),
                    "train/lr": lr,
                }
                net.train()
                history.append(row)
                write_metrics_line(metrics_path, row)
                bar.write(
                    f"step {step}: loss {row['train/loss']:.3f} train acc {row['train/accuracy']:.3f} "
                    f"val acc {row['val/accuracy']:.3f}"
                )
                save_state(
                    out, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history}
                )
            dist.wait()
            loss_acc = acc_acc = 0.0
            n_acc = 0
    bar.close()

    # 5. centre the references at 0
    model.eval()
    ref_seqs, ref_starts = _reference_sequences(comps, references, tokenizer, cfg)
    with torch.no_grad():
        bias = rewards(model, ref_seqs, pad, pooling=cfg.pooling, starts=ref_starts).mean().item() if ref_seqs else 0.0
    final = dict(history[-1]) if history else {}
    final |= {"labeler_agreement": agreement, "labeler_agreement_pairs": n_agree_pairs}
    if agreement:
        final["val/accuracy_over_agreement"] = final["val/accuracy"] / agreement
    meta = {
        "stage": "rm",
        "profile": profile_name,
        "config": {"rm": asdict(cfg)},
        "data": {
            "comparisons": str(comparisons_file),
            "sha256": sha256_file(comparisons_file),
            "n_train": len(train),
            "n_valid": len(valid),
            "n_references_for_bias": len(ref_seqs),
        },
        "parent": str(sft_dir),
        "reward_bias": bias,
        "reward_pooling": cfg.pooling,
        "processes": dist.world,
        "metrics": final,
        "history": history,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if dist.is_main:
        save_checkpoint(model, tokenizer, out, meta)
        clear_state(out)
    dist.wait()
    return meta


def _reference_sequences(comps, references, tokenizer, cfg: RMConfig) -> tuple[list[list[int]], list[int]]:
    """query + reference + EOS for every reference summary that sets the bias: the given TL;DR posts' summaries, or
    the distinct "ref" summaries in the comparisons."""
    if references is not None:
        items = [(post, post.summary) for post in references]
    else:
        seen = {(c.info.id, s.text): (c.info, s.text) for c in comps for s in c.summaries if s.policy == "ref"}
        items = list(seen.values())
    seqs, starts = [], []
    for item, text in items:
        try:
            q = encode_query(item, tokenizer, cfg.max_query_tokens)
        except QueryTooLong:
            continue
        seqs.append(encode_summary(tokenizer, q, text, cfg.max_response_tokens))
        starts.append(len(q))
    return seqs, starts
