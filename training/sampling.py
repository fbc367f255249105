"""Sampling summaries from a policy checkpoint (torch): used for comparison rounds, SFT samples and evaluation.

Rollout sampling uses ``top_k=0, top_p=1`` unless told otherwise: transformers' ``generate`` defaults to top_k=50,
which silently changes the sampling distribution (and biases any KL estimate computed from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Generated:
    tokens: list[int]  # response tokens before EOS
    text: str  # public-format summary text (leading space)
    finish_reason: str  # "eos" or "length"


def generate(
    model,
    tokenizer,
    queries: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> list[Generated]:
    """Responses for token-id queries; greedy when ``temperature == 0``. Left-padded batches, cut at the first EOS."""
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from training.task import clean_summary, response_tokens  # noqa: PLC0415

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    results: list[Generated] = []
    was_training = model.training
    model.eval()
    starts = range(0, len(queries), batch_size)
    for b, s in enumerate(tqdm(starts, desc="generate", disable=not progress, leave=False)):
        chunk = queries[s : s + batch_size]
        T = max(map(len, chunk))
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, q in enumerate(chunk):
            ids[i, T - len(q) :] = torch.tensor(list(q))
            mask[i, T - len(q) :] = 1
        kwargs = {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(seed * 1_000_003 + b)
            kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                **kwargs,
            )
        for row in out[:, T:].tolist():
            toks = response_tokens(row, eos, pad)
            finish = "eos" if eos in row else "length"
            results.append(Generated(toks, clean_summary(tokenizer.decode(toks)), finish))
    model.train(was_training)
    return results
