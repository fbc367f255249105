"""Generate a whole world directory for a seed and size.

Layout (all files written atomically; same seed and size, same bytes):

    tldr/{train,valid,test}.jsonl   TL;DR posts  {"id","subreddit","title","post","summary"}
    news/{valid,test}.jsonl         CNN/DM       {"id","article","highlights"}
    pretrain.txt                    pretraining corpus, documents separated by DOC_SEPARATOR
    frames.jsonl                    hidden ground truth, one line per post and article (judges only)
    world.json                      seed, size, counts, format version

Each item draws from its own RNG stream ``(seed, kind, split, index)``, so changing one split's size never changes
another split's items.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.data import NewsArticle, TldrPost, atomic_write_text, write_jsonl

from .common import reddit_id, rng_for, stable_hash
from .frames import frame_record
from .news import sample_article
from .posts import pick_subreddit, render_post, sample_frame
from .pretrain import DOC_SEPARATOR, pretrain_corpus
from .references import write_reference

FORMAT_VERSION = 1


@dataclass(frozen=True)
class WorldSize:
    """How many items each file gets."""

    train: int
    valid: int
    test: int
    news_valid: int
    news_test: int
    pretrain_docs: int
    note: str = ""


SIZES: dict[str, WorldSize] = {
    # Tests: a few seconds to generate, still enough items per subreddit for the statistics to mean something.
    "tiny": WorldSize(600, 150, 150, 60, 60, 600, "unit tests"),
    # The tiny CPU training profile: 20k SFT posts (the size the design's measured loop used), 1k valid/test posts for
    # RM/PPO queries and evals, 500+500 news articles for transfer, ~20k pretraining documents (~2.5M words).
    "default": WorldSize(20_000, 1_000, 1_000, 500, 500, 20_000, "tiny CPU training profile"),
    # About the real TL;DR set's size (116k train / 6.5k valid / 6.5k test) for GPU runs.
    "large": WorldSize(116_000, 6_500, 6_500, 2_000, 2_000, 120_000, "GPU profile, real-data scale"),
}


def _posts(seed: int, split: str, n: int, taken: set[str]) -> tuple[list[TldrPost], list[dict[str, Any]]]:
    posts, frames = [], []
    for i in range(n):
        rng = rng_for(seed, "post", split, i)
        ident = reddit_id(seed, split, i, taken)
        frame = sample_frame(rng, pick_subreddit(rng), ident, split)
        render_post(rng, frame)
        write_reference(rng, frame)
        posts.append(TldrPost(ident, frame.sub.name, frame.title, frame.post, frame.reference))
        frames.append(
            frame_record(
                ident=ident,
                file=f"tldr/{split}.jsonl",
                split=split,
                kind="post",
                facts=frame.facts,
                ctx=frame.ctx,
                distractors=frame.distractors,
                source=f"{frame.title}\n{frame.post}",
                rng=rng_for(seed, "wrong", split, i),
                subreddit=frame.sub.name,
                question=(frame.q_form, [q.format(**frame.ctx) for q in frame.question.forms]),
                reference=frame.ref_meta,
            )
        )
    return posts, frames


def _articles(seed: int, split: str, n: int) -> tuple[list[NewsArticle], list[dict[str, Any]]]:
    articles, frames = [], []
    for i in range(n):
        rng = rng_for(seed, "news", split, i)
        ident = stable_hash(seed, "news", split, i)
        frame = sample_article(rng, ident, split)
        articles.append(NewsArticle(ident, frame.article, frame.highlights))
        frames.append(
            frame_record(
                ident=ident,
                file=f"news/{split}.jsonl",
                split=split,
                kind="article",
                facts=frame.facts,
                ctx=frame.ctx,
                distractors=frame.distractors,
                source=frame.article,
                rng=rng_for(seed, "wrong", "news", split, i),
                event=frame.event.name,
                reference=frame.hl_meta,
                length_budget=90,
            )
        )
    return articles, frames


def synth(out_dir: str | Path, seed: int = 0, size: str = "default") -> dict[str, Any]:
    """Write the world for ``seed`` at ``size`` into ``out_dir``; return counts and paths."""
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}; choose one of {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    spec = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_frames: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    taken: set[str] = set()
    for split, n in (("train", spec.train), ("valid", spec.valid), ("test", spec.test)):
        posts, frames = _posts(seed, split, n, taken)
        counts[f"tldr/{split}"] = write_jsonl(out / "tldr" / f"{split}.jsonl", posts)
        all_frames += frames
    for split, n in (("valid", spec.news_valid), ("test", spec.news_test)):
        articles, frames = _articles(seed, split, n)
        counts[f"news/{split}"] = write_jsonl(out / "news" / f"{split}.jsonl", articles)
        all_frames += frames
    write_jsonl(out / "frames.jsonl", all_frames)
    corpus = pretrain_corpus(seed, spec.pretrain_docs)
    atomic_write_text(out / "pretrain.txt", corpus)
    counts["pretrain_docs"] = spec.pretrain_docs
    counts["frames"] = len(all_frames)
    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "sizes": asdict(spec),
        "counts": counts,
        "doc_separator": DOC_SEPARATOR,
    }
    atomic_write_text(out / "world.json", json.dumps(meta, indent=2) + "\n")
    return {
        "out": str(out),
        "seed": seed,
        "size": size,
        "counts": counts,
        "pretrain_chars": len(corpus),
        "files": [*(f"{name}.jsonl" for name in counts if "/" in name), "pretrain.txt", "frames.jsonl", "world.json"],
    }
