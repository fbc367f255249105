"""Supervised fine-tuning on reference TL;DRs (the paper's supervised baseline).

1. encode each post as the paper's query (truncated to the query budget) and its reference as " summary" + EOS
2. each step: a shuffled batch, right-padded with [PAD]; loss on response tokens only (EOS included)
3. every ``eval_every`` steps: validation loss, a few greedy samples printed, a resume checkpoint
4. at the end: a Hugging Face checkpoint + prefsum.json (parent = the base model)

References longer than the response budget are dropped (counted and reported), as the filtered TL;DR set does.
"""

from __future__ import annotations

import random
import time
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
from training.config import SFTConfig
from training.data import TldrPost, load_tldr
from training.optim import adamw, lr_at, set_lr
from training.task import QueryTooLong, news_query, reference_response, tldr_query
from training.tokenizer import token_counter


@dataclass(frozen=True, slots=True)
class Example:
    query: list[int]
    response: list[int]  # reference tokens + EOS
    source: int = -1  # index of the post it came from


def query_text(item, tokenizer, max_query_tokens: int) -> str:
    """The paper's query for a post (TldrPost or PostInfo) or a news article (NewsArticle or ArticleInfo), truncated
    to the query budget."""
    count = token_counter(tokenizer)
    if getattr(item, "article", None) is not None:
        return news_query(item.article, max_tokens=max_query_tokens, count_tokens=count).text
    return tldr_query(item.subreddit, item.title, item.post, max_tokens=max_query_tokens, count_tokens=count).text


def encode_query(item, tokenizer, max_query_tokens: int) -> list[int]:
    """Token ids of ``query_text``."""
    return tokenizer(query_text(item, tokenizer, max_query_tokens), add_special_tokens=False)["input_ids"]


def encode_examples(posts: list[TldrPost], tokenizer, max_query_tokens: int, max_response_tokens: int):
    """-> (examples, n_dropped) ; a reference is dropped when it does not fit the response budget with its EOS."""
    examples, dropped = [], 0
    eos = tokenizer.eos_token_id
    for i, post in enumerate(posts):
        response = tokenizer(reference_response(post.summary), add_special_tokens=False)["input_ids"] + [eos]
        if len(response) > max_response_tokens:
            dropped += 1
            continue
        try:
            query = encode_query(post, tokenizer, max_query_tokens)
        except QueryTooLong:
            dropped += 1
            continue
        examples.append(Example(query, response, i))
    return examples, dropped


def collate(examples: list[Example], pad_id: int):
    """Right-padded (input_ids, attention_mask, labels), each (B, T); labels are -100 outside responses."""
    import torch  # noqa: PLC0415

    from training.losses import IGNORE_INDEX  # noqa: PLC0415

    T = max(len(e.query) + len(e.response) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        seq = e.query + e.response
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(e.query) : len(seq)] = torch.tensor(e.response)
    return ids, mask, labels


def greedy_summaries(model, tokenizer, queries: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy responses for token-id queries, as public-format texts."""
    from training.sampling import generate  # noqa: PLC0415

    return [g.text for g in generate(model, tokenizer, queries, max_new_tokens=max_new_tokens)]


def _eval_loss(model, examples: list[Example], pad_id: int, batch_size: int) -> float:
    import torch  # noqa: PLC0415

    from training.losses import lm_response_loss, n_response_targets  # noqa: PLC0415

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            ids, mask, labels = collate(examples[s : s + batch_size], pad_id)
            total += lm_response_loss(model(input_ids=ids, attention_mask=mask).logits, labels, "sum").item()
            n += n_response_targets(labels)
    model.train()
    return total / max(1, n)


def run_sft(
    base: str | Path,
    train_file: str | Path,
    valid_file: str | Path,
    out_dir: str | Path,
    cfg: SFTConfig,
    *,
    resume: bool = False,
    profile_name: str = "custom",
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune the base checkpoint on reference summaries; writes the SFT checkpoint to ``out_dir``.

    Runs in one process or under ``accelerate launch`` (see training/dist.py): same global batches, same updates.
    """
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from training.dist import Dist  # noqa: PLC0415
    from training.losses import lm_response_loss  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    dist = Dist()
    out = Path(out_dir)
    read_meta(base)  # a clear error if the base is not a prefsum checkpoint
    tokenizer = load_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    _disable_dropout(model)
    model.train()

    train_posts, valid_posts = load_tldr(train_file), load_tldr(valid_file)
    train, dropped = encode_examples(train_posts, tokenizer, cfg.max_query_tokens, cfg.max_response_tokens)
    valid_posts = valid_posts[: cfg.eval_examples]
    valid, _ = encode_examples(valid_posts, tokenizer, cfg.max_query_tokens, cfg.max_response_tokens)
    if not train:
        raise ValueError(f"no usable SFT examples in {train_file} (all {dropped} over the budgets)")
    dist.log(
        f"SFT: {len(train)} train examples ({dropped} dropped: over the budgets), {len(valid)} validation, "
        f"{dist.world} process(es)"
    )

    opt = adamw(model, cfg.lr, cfg.weight_decay)
    model, opt, step, history, metrics_path = start_run(
        out, model, opt, dist, resume=resume, stage="SFT", total_steps=cfg.steps
    )

    pad = tokenizer.pad_token_id
    bar = tqdm(total=cfg.steps, initial=step, desc="sft", disable=not (progress and dist.is_main), dynamic_ncols=True)
    loss_acc, n_acc = 0.0, 0
    while step < cfg.steps:
        set_lr(opt, lr := lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
        rng = random.Random(f"{cfg.seed}:{step}")  # the global batch depends on the step only (exact resume)
        batch = rng.sample(train, min(cfg.batch_size, len(train)))
        n_global = sum(len(e.response) for e in batch)  # response targets in the global batch (EOS included)
        ids, mask, labels = collate(dist.local(batch), pad)
        ids, mask, labels = ids.to(dist.device), mask.to(dist.device), labels.to(dist.device)
        loss_sum = lm_response_loss(model(input_ids=ids, attention_mask=mask).logits, labels, "sum")
        # DDP averages gradients over processes: scale so the result is the global per-token mean
        opt.zero_grad(set_to_none=True)
        dist.backward(loss_sum * dist.world / n_global)
        dist.clip_grad_norm(model, cfg.grad_clip)
        opt.step()
        step += 1
        loss_acc, n_acc = loss_acc + dist.sum(loss_sum.item()) / n_global, n_acc + 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if dist.is_main:
                net = dist.unwrap(model)
                row = {
                    "step": step,
                    "train/loss": loss_acc / n_acc,
                    "val/loss": _eval_loss(net, valid, pad, 32),
                    "train/lr": lr,
                }
                history.append(row)
                write_metrics_line(metrics_path, row)
                bar.write(f"step {step}: train {row['train/loss']:.3f} val {row['val/loss']:.3f}")
                if cfg.n_samples:
                    shown = valid[: cfg.n_samples]
                    texts = greedy_summaries(net, tokenizer, [e.query for e in shown], cfg.max_response_tokens)
                    for e, text in zip(shown, texts, strict=True):
                        ref = reference_response(valid_posts[e.source].summary)
                        bar.write(f"  sample:{text}\n  ref:   {ref}")
                save_state(
                    out, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history}
                )
            dist.wait()
            loss_acc, n_acc = 0.0, 0
    bar.close()
    meta = {
        "stage": "sft",
        "profile": profile_name,
        "config": {"sft": asdict(cfg)},
        "data": {
            "train": str(train_file),
            "train_sha256": sha256_file(train_file),
            "valid": str(valid_file),
            "valid_sha256": sha256_file(valid_file),
            "n_train": len(train),
            "n_dropped": dropped,
        },
        "parent": str(base),
        "processes": dist.world,
        "metrics": history[-1] if history else {},
        "history": history,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if dist.is_main:
        save_checkpoint(dist.unwrap(model), tokenizer, out, meta)
        clear_state(out)
    dist.wait()
    return meta


def _disable_dropout(model) -> None:
    """RLHF recipes train with dropout off: logprobs of the same tokens must not change between passes."""
    import torch  # noqa: PLC0415

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
