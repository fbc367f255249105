"""Pretraining the small base model on the world's ``pretrain.txt`` (the offline stand-in for a given pretrained LM).

1. tokenize the corpus into one stream (documents separated by EOS); hold out the tail for validation
2. each step: sample random windows (seeded by step, so a resumed run sees the same batches), next-token loss
3. every ``eval_every`` steps: validation loss, the copy probe, a resume checkpoint
4. at the end: a Hugging Face checkpoint + prefsum.json

The copy probe measures what summarization needs first: a random token sequence shown twice; accuracy of predicting
the second copy (induction). A model that cannot copy will never copy fact values from a post into a summary.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.checkpoint import (
    clear_state,
    save_checkpoint,
    save_state,
    sha256_file,
    start_run,
    write_metrics_line,
)
from training.config import PretrainConfig
from training.modeling import ModelConfig, build_causal_lm, count_parameters
from training.optim import adamw, lr_at, set_lr

VALID_FRACTION = 0.02


def tokenize_corpus(path: str | Path, tokenizer, chunk_docs: int = 2000):
    """The corpus as one 1-D LongTensor of token ids, each document followed by EOS.

    Documents are separated by lines holding the EOS string (as `prefsum data synth` writes them) or, in a corpus
    without any, by blank lines.
    """
    import torch  # noqa: PLC0415

    eos_text, eos = tokenizer.eos_token, tokenizer.eos_token_id
    text = Path(path).read_text(encoding="utf-8")
    if f"\n{eos_text}\n" in f"\n{text}\n":
        docs = [d.strip() for d in text.split(eos_text)]
    else:
        docs = [d.strip() for d in text.split("\n\n")]
    docs = [d for d in docs if d]
    ids: list[int] = []
    for start in range(0, len(docs), chunk_docs):
        # the backend tokenizer: whole documents may exceed model_max_length, which is fine for a stream
        for enc in tokenizer.backend_tokenizer.encode_batch(docs[start : start + chunk_docs], add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def sample_windows(stream, batch_size: int, seq_len: int, generator):
    """(B, seq_len + 1) random windows of the stream."""
    import torch  # noqa: PLC0415

    if batch_size == 0:
        return torch.empty(0, seq_len + 1, dtype=torch.long)
    starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])


def copy_sequences(batch_size: int, length: int, vocab_size: int, n_special: int, span: tuple[int, int], generator):
    """(B, length) synthetic copy sequences: random token spans, each immediately repeated ("a b c a b c d e d e")."""
    import torch  # noqa: PLC0415

    rows = []
    for _ in range(batch_size):
        parts, n = [], 0
        while n < length:
            k = int(torch.randint(span[0], span[1] + 1, (1,), generator=generator))
            s = torch.randint(n_special, vocab_size, (k,), generator=generator)
            parts += [s, s]
            n += 2 * k
        rows.append(torch.cat(parts)[:length])
    return torch.stack(rows)


def copy_probe(model, vocab_size: int, n_special: int, span: int = 24, batch: int = 16, seed: int = 1234) -> float:
    """Accuracy of predicting the second copy of a random token span (tokens after the first of the copy)."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    first = torch.randint(n_special, vocab_size, (batch, span), generator=g)  # (B, S)
    x = torch.cat([first, first], dim=1)  # (B, 2S)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(x).logits  # (B, 2S, V)
    model.train(was_training)
    # position t predicts t+1; predictions for the 2nd copy, skipping its first token (needs no copying cue)
    pred = logits[:, span : 2 * span - 1].argmax(-1)  # (B, S-1)
    target = x[:, span + 1 :]
    return (pred == target).float().mean().item()


def evaluate_lm(model, stream, batch_size: int, seq_len: int, n_batches: int) -> float:
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(999)
    model.eval()
    losses = []
    with torch.no_grad():
        for _ in range(n_batches):
            xb = sample_windows(stream, batch_size, seq_len, g)
            losses.append(model(xb, labels=xb).loss.item())  # HF shifts the labels itself
    model.train()
    return sum(losses) / len(losses)


def run_pretrain(
    corpus: str | Path,
    tokenizer,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    *,
    resume: bool = False,
    profile_name: str = "custom",
    init_from: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain (or continue pretraining ``init_from``) and write the checkpoint to ``out_dir``; returns metrics."""
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from training.dist import Dist  # noqa: PLC0415

    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    dist = Dist()
    out = Path(out_dir)
    stream = tokenize_corpus(corpus, tokenizer)
    n_valid = max(cfg.seq_len * 4, int(len(stream) * VALID_FRACTION))
    if len(stream) < n_valid + cfg.seq_len * 4:
        raise ValueError(f"corpus {corpus} has only {len(stream)} tokens; need several times seq_len={cfg.seq_len}")
    train_stream, valid_stream = stream[:-n_valid], stream[-n_valid:]

    if init_from is not None:
        model = AutoModelForCausalLM.from_pretrained(str(init_from))
    else:
        model = build_causal_lm(model_cfg, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.seed)
    model.train()
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    model, opt, step, history, metrics_path = start_run(
        out, model, opt, dist, resume=resume, stage="pretraining", total_steps=cfg.steps
    )

    n_special = len(tokenizer.all_special_ids)
    bar = tqdm(
        total=cfg.steps, initial=step, desc="pretrain", disable=not (progress and dist.is_main), dynamic_ncols=True
    )
    tokens_per_step = cfg.batch_size * cfg.seq_len
    t_last, loss_acc, n_acc = time.perf_counter(), 0.0, 0
    while step < cfg.steps:
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        set_lr(opt, lr)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # batches depend on the step only
        n_copy = cfg.batch_size if step < cfg.copy_warmup_steps else round(cfg.batch_size * cfg.copy_fraction)
        xb = sample_windows(train_stream, cfg.batch_size - n_copy, cfg.seq_len, g)  # (B - C, T+1)
        if n_copy:
            synth = copy_sequences(n_copy, cfg.seq_len + 1, len(tokenizer), n_special, cfg.copy_span, g)  # (C, T+1)
            xb = torch.cat([xb, synth])
        xb = torch.stack(dist.local(list(xb))).to(dist.device)  # this process's rows; equal shares
        loss = model(xb, labels=xb).loss  # HF shifts the labels: T next-token targets per row
        opt.zero_grad(set_to_none=True)
        dist.backward(loss)
        dist.clip_grad_norm(model, cfg.grad_clip)
        opt.step()
        step += 1
        loss_acc, n_acc = loss_acc + dist.sum(loss.item()) / dist.world, n_acc + 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if dist.is_main:
                now = time.perf_counter()
                net = dist.unwrap(model)
                row = {
                    "step": step,
                    "train/loss": loss_acc / n_acc,
                    "val/loss": evaluate_lm(net, valid_stream, cfg.batch_size, cfg.seq_len, cfg.eval_batches),
                    "probe/copy_acc": copy_probe(net, len(tokenizer), n_special),
                    "train/lr": lr,
                    "time/tokens_per_s": tokens_per_step * n_acc / max(1e-9, now - t_last),
                }
                history.append(row)
                write_metrics_line(metrics_path, row)
                bar.set_postfix(loss=f"{row['val/loss']:.3f}", copy=f"{row['probe/copy_acc']:.2f}")
                bar.write(
                    f"step {step}: train {row['train/loss']:.3f} val {row['val/loss']:.3f} "
                    f"copy {row['probe/copy_acc']:.2f} lr {lr:.2e} {row['time/tokens_per_s']:.0f} tok/s"
                )
                save_state(
                    out, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history}
                )
            dist.wait()
            t_last, loss_acc, n_acc = time.perf_counter(), 0.0, 0
    bar.close()
    final = history[-1] if history else {}
    meta = {
        "stage": "pretrain",
        "profile": profile_name,
        "config": {"model": asdict(model_cfg), "pretrain": asdict(cfg)},
        "data": {"corpus": str(corpus), "sha256": sha256_file(corpus), "tokens": len(stream)},
        "parent": str(init_from) if init_from else None,
        "n_params": count_parameters(dist.unwrap(model)),
        "processes": dist.world,
        "metrics": final,
        "history": history,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if dist.is_main:
        save_checkpoint(dist.unwrap(model), tokenizer, out, meta)
        clear_state(out)
    dist.wait()
    return meta
