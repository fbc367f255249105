"""Best-of-N: sample N summaries per query from a policy and keep the one the reward model scores highest
(the paper's appendix baseline; no training, only the RM's judgment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from training.sampling import Generated, generate


@dataclass(frozen=True, slots=True)
class Scored:
    best: Generated
    score: float  # bias-corrected reward of the kept summary
    candidates: tuple[Generated, ...]
    scores: tuple[float, ...]


def score_responses(
    rm_model,
    tokenizer,
    queries: Sequence[Sequence[int]],
    responses: Sequence[Generated],
    bias: float = 0.0,
    pooling: str = "last",
) -> list[float]:
    """Bias-corrected rewards of responses (their tokens + EOS after the query). One query per response."""
    import torch  # noqa: PLC0415

    from training.reward import rewards  # noqa: PLC0415

    seqs = [list(q) + r.tokens + [tokenizer.eos_token_id] for q, r in zip(queries, responses, strict=True)]
    starts = [len(q) for q in queries]
    with torch.no_grad():
        raw = rewards(rm_model.eval(), seqs, tokenizer.pad_token_id, pooling=pooling, starts=starts)
    return (raw - bias).tolist()


def best_of_n(
    policy,
    rm_model,
    tokenizer,
    queries: Sequence[Sequence[int]],
    *,
    n: int,
    max_new_tokens: int,
    temperature: float = 0.7,
    top_p: float = 1.0,
    bias: float = 0.0,
    pooling: str = "last",
    seed: int = 0,
    progress: bool = False,
) -> list[Scored]:
    """For each query, ``n`` samples (temperature ``temperature``, top_k=0) and the one with the highest reward."""
    if n < 1:
        raise ValueError(f"best-of-N needs n >= 1, got {n}")
    candidates = [
        generate(
            policy,
            tokenizer,
            queries,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed * 1_000 + k,
            progress=progress,
        )
        for k in range(n)
    ]  # n lists of len(queries)
    per_query = list(zip(*candidates, strict=True))  # len(queries) tuples of n
    flat_q = [q for q in queries for _ in range(n)]
    flat_r = [g for gens in per_query for g in gens]
    flat_s = score_responses(rm_model, tokenizer, flat_q, flat_r, bias, pooling)
    out = []
    for i, gens in enumerate(per_query):
        scores = tuple(flat_s[i * n : (i + 1) * n])
        k = max(range(n), key=scores.__getitem__)
        out.append(Scored(gens[k], scores[k], tuple(gens), scores))
    return out
