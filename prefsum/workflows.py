"""Workflows that compose the rooms (training sampling + evals judges); only the CLI and the pipeline call them."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
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
        from training.reward import pooling_of  # noqa: PLC0415
        from training.sft import encode_query  # noqa: PLC0415

        rm_meta = read_meta(reward_model)
        bias = rm_meta.get("reward_bias", 0.0)
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
            pooling=pooling_of(rm_meta),
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


def _sample_texts(
    policy: str | Path,
    posts,
    *,
    threads: int,
    max_query_tokens: int,
    max_response_tokens: int,
    temperature: float,
    seed: int,
) -> list[str]:
    """One sampled summary per post from a policy: an exported bundle (ONNX Runtime, several times faster on a CPU)
    or a training checkpoint (torch)."""
    if (Path(policy) / "manifest.json").is_file():
        from tqdm import tqdm  # noqa: PLC0415

        from service.engine import load_engine  # noqa: PLC0415

        engine = load_engine(policy, threads=threads)
        items = [{"subreddit": p.subreddit, "title": p.title, "post": p.post} for p in posts]
        out: list[str] = []
        for k in tqdm(range(0, len(items), 256), desc=f"sample {Path(policy).name}", leave=False):
            rows = engine.summarize(
                items[k : k + 256], max_new_tokens=max_response_tokens, temperature=temperature, seed=seed * 997 + k
            )
            out += [row[0].text for row in rows]
        return out
    model, tokenizer = _policy(policy, threads)
    gen = _summaries(
        model,
        tokenizer,
        posts,
        max_query_tokens=max_query_tokens,
        max_response_tokens=max_response_tokens,
        temperature=temperature,
        seed=seed,
    )
    return [g.text for g in gen]


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
        for s in range(samples_per_policy):
            texts = _sample_texts(
                ckpt,
                posts,
                threads=threads,
                max_query_tokens=max_query_tokens,
                max_response_tokens=max_response_tokens,
                temperature=temperature,
                seed=seed * 7919 + s + 1000 * round_k,
            )
            for i, text in enumerate(texts):
                if text:
                    candidates[i].append(Summary(text, name, None))
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


def ppo_sweep(
    run: str | Path,
    world: str | Path,
    profile,
    kl_coefs: list[float],
    *,
    n_eval: int = 200,
    split: str = "test",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The over-optimisation curve (the paper's Figure 5): PPO from RUN/sft against RUN/rm at each KL coefficient
    (RUN/sweep/kl_<coef>/, reused when already trained, resumed when killed), then on ``n_eval`` held-out posts:
    the KL from the SFT policy (sampled responses), the mean RM score and the labeler pool's preference vs the
    reference (greedy summaries, judged by the world's simulated labelers). The SFT policy itself is the last
    point (``kl_coef`` None, KL 0), where the curve starts. A kl_<coef>/ older than RUN/sft or RUN/rm, or trained
    with other PPO settings, is stale and trained again. Writes RUN/sweep/sweep.json and sweep.png;
    returns the points sorted by KL coefficient, largest first, then SFT."""
    import dataclasses  # noqa: PLC0415

    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from evals.gold import load_frames  # noqa: PLC0415
    from evals.world_judge import judge_summaries  # noqa: PLC0415
    from training.checkpoint import read_meta  # noqa: PLC0415
    from training.data import atomic_write_text, load_tldr  # noqa: PLC0415
    from training.ppo import load_models, measure_kl, run_ppo, score_sequences  # noqa: PLC0415
    from training.sampling import generate  # noqa: PLC0415
    from training.sft import encode_query  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    run, world = Path(run), Path(world)
    sft, rm_dir = run / "sft", run / "rm"
    for what, path in (("SFT policy", sft), ("reward model", rm_dir)):
        if not (path / "prefsum.json").is_file():
            raise FileNotFoundError(
                f"{what} {path} not found: the sweep needs a run with sft/ and rm/ (prefsum pipeline)"
            )
    if not kl_coefs or any(c < 0 for c in kl_coefs):
        raise ValueError(f"--kl-coefs needs one or more coefficients >= 0, got {kl_coefs}")
    posts = load_tldr(world / "tldr" / f"{split}.jsonl")[:n_eval]
    frames = load_frames(world / "frames.jsonl")
    tokenizer = load_tokenizer(sft)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    base_cfg = profile.ppo
    queries = [encode_query(p, tokenizer, base_cfg.max_query_tokens) for p in posts]
    rm_bias = float(read_meta(rm_dir).get("reward_bias", 0.0))
    _, ref, _, rm = load_models(sft, rm_dir, rm_bias)
    torch.set_num_threads(base_cfg.threads)

    def measure(policy, cfg, kl_coef: float | None, checkpoint: Path) -> dict[str, Any]:
        # The SFT point (kl_coef None) is the reference itself: its KL is 0 by definition.
        kl = 0.0 if policy is ref else measure_kl(policy, ref, queries, cfg, eos_id=eos, pad_id=pad, seed=cfg.seed)
        gens = generate(policy, tokenizer, queries, max_new_tokens=cfg.max_response_tokens)
        scores = score_sequences(rm, queries, [g.tokens for g in gens], eos, pad)
        quality = judge_summaries(
            frames, posts, [g.text for g in gens], seed=0, finish_reasons=[g.finish_reason for g in gens]
        )
        point = {
            "kl_coef": kl_coef,
            "policy": "sft" if kl_coef is None else f"ppo beta={kl_coef:g}",
            "kl": round(kl, 4),
            "rm_score": round(scores.mean().item(), 4),
            "gold_win_rate": round(quality.win_rate, 4),
            "gold_win_rate_ci": [round(x, 4) for x in quality.win_rate_ci],
            "fact_recall": round(quality.fact_recall, 4),
            "wrong_value_rate": round(quality.wrong_value_rate, 4),
            "n": len(posts),
            "checkpoint": str(checkpoint),
        }
        print(
            f"sweep: {point['policy']}: KL {kl:.2f} nats, RM score {point['rm_score']:+.3f}, "
            f"preferred to the reference {quality.win_rate:.1%}",
            flush=True,
        )
        return point

    points = []
    for coef in sorted(set(kl_coefs), reverse=True):
        out = run / "sweep" / f"kl_{coef:g}"
        cfg = dataclasses.replace(base_cfg, kl_coef=coef, adaptive_kl=False)
        stale = stale_sweep_point(out, sft, rm_dir, cfg)
        if stale:
            print(f"sweep: {out} is stale ({stale}); training it again", flush=True)
            shutil.rmtree(out)
        if not (out / "prefsum.json").is_file():
            print(f"sweep: PPO at beta {coef:g} -> {out}", flush=True)
            run_ppo(sft, rm_dir, world / "tldr" / "train.jsonl", out, cfg, resume=True, progress=progress)
        torch.set_num_threads(base_cfg.threads)
        policy = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        points.append(measure(policy, cfg, coef, out))
    # The starting point of the curve: the SFT policy itself, at KL 0.
    points.append(measure(ref, base_cfg, None, sft))
    path = run / "sweep" / "sweep.json"
    atomic_write_text(path, json.dumps(points, indent=2) + "\n")
    plot_sweep(points, run / "sweep" / "sweep.png")
    return points


# PPO fields that do not change what a sweep point measures (threads, logging cadence, gradient accumulation).
_SWEEP_IRRELEVANT = ("threads", "eval_every", "micro_batch_size")


def stale_sweep_point(out: Path, sft: Path, rm_dir: Path, cfg) -> str | None:
    """Why an existing sweep checkpoint OUT does not belong to this sweep (None when it does, or when OUT has no
    finished checkpoint): the SFT policy or the RM was saved after it, or it has another PPO config."""
    import dataclasses  # noqa: PLC0415

    from training.checkpoint import read_meta  # noqa: PLC0415

    if not (out / "prefsum.json").is_file():
        return None
    meta = read_meta(out)
    # Paths in the metadata are as typed at training time (relative to that cwd), so identity is judged by time:
    # a point trained before the current SFT policy or RM was saved was trained from other models.
    for path in (sft, rm_dir):
        if str(read_meta(path).get("saved_at", "")) > str(meta.get("saved_at", "")):
            return f"{path} was saved after it"
    have = {k: v for k, v in (meta.get("config") or {}).get("ppo", {}).items() if k not in _SWEEP_IRRELEVANT}
    want = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _SWEEP_IRRELEVANT}
    changed = sorted(k for k in want.keys() | have.keys() if have.get(k) != want.get(k))
    if changed:
        return f"trained with other ppo settings: {', '.join(changed)}"
    return None


def plot_sweep(points: list[dict[str, Any]], path: Path) -> None:
    """RM score and gold preference against KL from the SFT policy: the report's over-optimisation figure."""
    from evals.report import plot_overoptimization  # noqa: PLC0415

    plot_overoptimization(sorted(points, key=lambda p: p["kl"]), path)
