"""Workflows that compose the rooms (training sampling + evals judges); only the CLI and the pipeline call them."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any


def _policy(ckpt: str | Path, threads: int):
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from training.checkpoint import read_meta  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(threads)
    read_meta(ckpt)
    return AutoModelForCausalLM.from_pretrained(str(ckpt)).eval(), load_tokenizer(ckpt)


def _summaries(
    model,
    tokenizer,
    posts,
    *,
    max_query_tokens: int,
    max_response_tokens: int,
    temperature: float,
    seed: int,
    progress: bool = True,
):
    from training.sampling import generate  # noqa: PLC0415
    from training.sft import encode_query  # noqa: PLC0415

    queries = [encode_query(p, tokenizer, max_query_tokens) for p in posts]
    return generate(
        model,
        tokenizer,
        queries,
        max_new_tokens=max_response_tokens,
        temperature=temperature,
        seed=seed,
        progress=progress,
    )


def evaluate_checkpoint(
    ckpt: str | Path,
    world: str | Path,
    *,
    split: str = "test",
    n: int = 300,
    max_query_tokens: int = 512,
    max_response_tokens: int = 48,
    threads: int = 2,
    seed: int = 0,
    samples: int = 3,
    best_of: int = 1,
    reward_model: str | Path | None = None,
    temperature: float = 0.7,
) -> dict[str, Any]:
    """Greedy summaries of ``n`` posts of the world's ``split`` (or, with ``best_of`` > 1, the reward model's pick of
    that many samples), judged against the ground truth (see evals/world_judge.py): fact recall, wrong-value rate,
    gold score, labeler-pool win rate vs the reference."""
    from evals.gold import load_frames  # noqa: PLC0415
    from evals.world_judge import judge_summaries  # noqa: PLC0415
    from training.data import load_tldr  # noqa: PLC0415

    t0 = time.perf_counter()
    world = Path(world)
    posts = load_tldr(world / "tldr" / f"{split}.jsonl")[:n]
    model, tokenizer = _policy(ckpt, threads)
    if best_of > 1:
        if reward_model is None:
            raise ValueError("best-of-N needs a reward model: pass --reward-model DIR")
        from transformers import AutoModelForSequenceClassification  # noqa: PLC0415

        from training.best_of_n import best_of_n  # noqa: PLC0415
        from training.checkpoint import read_meta  # noqa: PLC0415
        from training.sft import encode_query  # noqa: PLC0415

        bias = read_meta(reward_model).get("reward_bias", 0.0)
        rm = AutoModelForSequenceClassification.from_pretrained(str(reward_model))
        queries = [encode_query(p, tokenizer, max_query_tokens) for p in posts]
        picked = best_of_n(
            model,
            rm,
            tokenizer,
            queries,
            n=best_of,
            max_new_tokens=max_response_tokens,
            temperature=temperature,
            bias=bias,
            seed=seed,
            progress=True,
        )
        gen = [p.best for p in picked]
    else:
        gen = _summaries(
            model,
            tokenizer,
            posts,
            max_query_tokens=max_query_tokens,
            max_response_tokens=max_response_tokens,
            temperature=0.0,
            seed=seed,
        )
    frames = load_frames(world / "frames.jsonl")
    quality = judge_summaries(
        frames, posts, [g.text for g in gen], seed=seed, finish_reasons=[g.finish_reason for g in gen]
    )
    return quality.as_dict() | {
        "checkpoint": str(ckpt),
        "split": split,
        "decoding": "greedy" if best_of <= 1 else f"best-of-{best_of} (T={temperature}, RM {reward_model})",
        "samples": [
            {"post": p.id, "summary": g.text, "reference": " " + p.summary}
            for p, g in list(zip(posts, gen, strict=True))[:samples]
        ],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def split_for(post_id: str, valid_share: float) -> str:
    """train / valid1 / valid2 by a hash of the post id (all comparisons of a post share its split)."""
    u = int(hashlib.sha256(post_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < valid_share / 2:
        return "valid1"
    if u < valid_share:
        return "valid2"
    return "train"


def label_round(
    policies: dict[str, str | Path],
    world: str | Path,
    out: str | Path,
    *,
    n_posts: int,
    round_k: int = 1,
    temperature: float = 0.7,
    samples_per_policy: int = 1,
    include_reference: bool = True,
    valid_share: float = 0.1,
    valid_judgments: int = 2,
    max_query_tokens: int = 512,
    max_response_tokens: int = 48,
    threads: int = 2,
    seed: int = 0,
    pool_seed: int = 0,
) -> dict[str, Any]:
    """A comparison round as in the paper: sample summaries of ``n_posts`` training posts from each policy (and take the
    reference), pair two different summaries per post, have the simulated labeler pool choose.

    Round K uses posts [(K-1)*n, K*n) of the training split, so rounds never relabel the same posts. Posts in the
    validation splits get ``valid_judgments`` judgments by different labelers (for the agreement ceiling).
    """
    from evals.gold import load_frames  # noqa: PLC0415
    from evals.labelers import LabelerPool, info_for  # noqa: PLC0415
    from training.data import Summary, load_tldr, write_jsonl  # noqa: PLC0415

    t0 = time.perf_counter()
    world = Path(world)
    all_posts = load_tldr(world / "tldr" / "train.jsonl")
    start = (round_k - 1) * n_posts
    posts = all_posts[start : start + n_posts]
    if len(posts) < n_posts:
        raise ValueError(
            f"round {round_k} needs training posts {start}..{start + n_posts}, the world has "
            f"{len(all_posts)}; use fewer --posts or a larger world"
        )
    candidates: list[list[Summary]] = [[] for _ in posts]
    for name, ckpt in policies.items():
        model, tokenizer = _policy(ckpt, threads)
        for s in range(samples_per_policy):
            gen = _summaries(
                model,
                tokenizer,
                posts,
                max_query_tokens=max_query_tokens,
                max_response_tokens=max_response_tokens,
                temperature=temperature,
                seed=seed * 7919 + s + 1000 * round_k,
            )
            for i, g in enumerate(gen):
                if g.text:
                    candidates[i].append(Summary(g.text, name, None))
    if include_reference:
        for i, p in enumerate(posts):
            candidates[i].append(Summary(" " + p.summary.strip(), "ref", None))

    frames = load_frames(world / "frames.jsonl")
    pool = LabelerPool(seed=pool_seed)
    rng = random.Random(f"round/{seed}/{round_k}")
    records, skipped = [], 0
    for post, cands in zip(posts, candidates, strict=True):
        distinct = list({s.text: s for s in cands}.values())
        if len(distinct) < 2:
            skipped += 1
            continue
        a, b = rng.sample(distinct, 2)
        split = split_for(post.id, valid_share)
        labelers = rng.sample(pool.labelers, valid_judgments) if split != "train" else [None]
        for lab in labelers:
            records.append(
                pool.compare(
                    frames[post.id], info_for(post), a, b, split=split, batch=f"round{round_k}", labeler=lab, rng=rng
                )
            )
    n = write_jsonl(out, records)
    return {
        "out": str(out),
        "comparisons": n,
        "posts": len(posts),
        "skipped_identical": skipped,
        "policies": list(policies),
        "seconds": round(time.perf_counter() - t0, 1),
    }
