"""Statistics of a generated world (``prefsum data stats DIR``): sizes, lengths, and sanity checks of its judges.

Token counts use the world's proxy (regex ``\\w+|[^\\w\\s]`` pieces; no tokenizer exists when the world is made).
The judge checks run on a fixed, evenly spaced sample of posts (at most ``max_posts``, default 2,000):

labeler_agreement         mean over pairs of the share of labeler pairs (of the default 8-labeler pool) that chose
                          alike. Each sampled post contributes one pair of two different summaries drawn from a fixed
                          mix: the reference, lead-2, and reference variants with one fact corrupted, dropped, or the
                          text repeated.
gold_ref_vs_lead2         how often the gold function prefers the reference TL;DR to the post's first two sentences
                          (ties count half).
gold_lead3_vs_highlights  news: how often gold prefers lead-3 to the highlights (ties count half).
corruption_detected       share of references (stating at least one fact) whose one-fact corruption (the number
                          changed, or another value of the slot) scores lower accuracy.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.data import NewsArticle, TldrPost, load_cnndm, load_tldr

from .baselines import lead2_post, lead3_article
from .gold import Frame, frame_summary, gold_axes, load_frames, proxy_tokens
from .labelers import LabelerPool, pairwise_agreement

VARIANTS = ("reference", "lead2", "corrupted", "dropped", "repeated")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def n_proxy_tokens(text: str) -> int:
    return len(proxy_tokens(text))


def _stated_phrases(frame: Frame, text: str) -> list[tuple[int, str]]:
    """(fact index, phrase) for the facts whose source phrase occurs verbatim in ``text``."""
    return [(i, f.phrase) for i, f in enumerate(frame.facts) if f.phrase in text]


def _other_number(number: str, rng: random.Random) -> str:
    """A different number in the same notation ("1,200" -> "1,450", "2.4" -> "3.1", "27" -> "31")."""
    if "." in number:
        whole, frac = number.split(".", 1)
        value = int(whole.replace(",", "") or 0) * 10 + int(frac[:1] or 0)
        new = value
        while new == value or new <= 0:
            new = value + rng.choice([-1, 1]) * rng.randint(1, max(2, value // 3))
        return f"{new // 10}.{new % 10}"
    value = int(number.replace(",", ""))
    new = value
    while new == value or new <= 0:
        new = value + rng.choice([-1, 1]) * rng.randint(1, max(2, value // 3))
    return f"{new:,}" if "," in number else str(new)


def corrupt_fact(frame: Frame, text: str, rng: random.Random) -> str | None:
    """The text with one stated fact made wrong: its number changed in place, or (for a non-number fact) the
    phrase swapped for a wrong form of the slot. None when the text states no fact with the source's phrase."""
    stated = _stated_phrases(frame, text)
    if not stated:
        return None
    i, phrase = rng.choice(stated)
    fact = frame.facts[i]
    m = _NUMBER.search(phrase) if fact.kind == "num" else None
    if m:
        wrong = phrase[: m.start()] + _other_number(m.group(0), rng) + phrase[m.end() :]
    elif fact.wrong_forms:
        wrong = fact.wrong_forms[0]
    else:
        return None
    return text.replace(phrase, wrong, 1)


def drop_fact(frame: Frame, text: str, rng: random.Random) -> str | None:
    """The text with one stated fact's phrase removed (and the punctuation tidied)."""
    stated = _stated_phrases(frame, text)
    if len(stated) < 2:
        return None
    _, phrase = rng.choice(stated)
    out = text.replace(phrase, "", 1)
    out = re.sub(r"\s+([,.;?!])", r"\1", out)
    out = re.sub(r"([,;])\s*([,;.])", r"\2", out)
    out = re.sub(r"\s{2,}", " ", out)
    return out if out.strip() else None


def repeat_text(text: str) -> str:
    """The text with its first sentence said again at the end (a typical degenerate sample)."""
    body = text.strip()
    first = re.split(r"(?<=[.?!;])\s", body, maxsplit=1)[0]
    return " " + body + " " + first


def _variant(name: str, post: TldrPost, frame: Frame, rng: random.Random) -> str | None:
    ref = " " + post.summary.strip()
    if name == "reference":
        return ref
    if name == "lead2":
        return lead2_post(post)
    if name == "corrupted":
        return corrupt_fact(frame, ref, rng)
    if name == "dropped":
        return drop_fact(frame, ref, rng)
    return repeat_text(ref)


def _sample(items: Sequence[Any], k: int) -> list[Any]:
    if len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _median(xs: list[int]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def _share(xs: list[float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else float("nan")


def compute_stats(data_dir: str | Path, *, max_posts: int = 2000, pool_seed: int = 0) -> dict[str, Any]:
    """One dict of the world's statistics (see the module docstring for the judge checks)."""
    root = Path(data_dir)
    frames = load_frames(root / "frames.jsonl")
    posts: list[TldrPost] = []
    split_counts: dict[str, int] = {}
    for split in ("train", "valid", "test"):
        path = root / "tldr" / f"{split}.jsonl"
        if path.is_file():
            records = load_tldr(path)
            split_counts[f"tldr/{split}"] = len(records)
            posts += records
    articles: list[NewsArticle] = []
    for split in ("valid", "test"):
        path = root / "news" / f"{split}.jsonl"
        if path.is_file():
            records = load_cnndm(path)
            split_counts[f"news/{split}"] = len(records)
            articles += records
    missing = [p.id for p in posts if p.id not in frames] + [a.id for a in articles if a.id not in frames]
    if missing:
        raise ValueError(f"{root / 'frames.jsonl'} has no frame for {len(missing)} item(s), e.g. {missing[0]!r}")

    ref_tokens = [n_proxy_tokens(p.summary) for p in posts]
    stats: dict[str, Any] = {
        "n_posts": len(posts),
        "n_articles": len(articles),
        "n_subreddits": len({p.subreddit for p in posts}),
        "splits": split_counts,
        "post_tokens_median": _median([n_proxy_tokens(p.post) for p in posts]),
        "post_words_median": _median([len(p.post.split()) for p in posts]),
        "article_tokens_median": _median([n_proxy_tokens(a.article) for a in articles]),
        "reference_tokens_median": _median(ref_tokens),
        "reference_tokens_in_24_48": _share([24 <= t <= 48 for t in ref_tokens]),
        "highlights_tokens_median": _median([n_proxy_tokens(a.highlights) for a in articles]),
        "token_proxy": r"regex \w+|[^\w\s]",
    }

    pool = LabelerPool(seed=pool_seed)
    rng = random.Random(f"prefsum-world-stats/{pool_seed}")
    agreements: list[float] = []
    ref_vs_lead2: list[float] = []
    detected: list[float] = []
    ref_overall: list[float] = []
    lead2_overall: list[float] = []
    oracle_overall: list[float] = []
    ref_likert: list[int] = []
    for post in _sample(posts, max_posts):
        frame = frames[post.id]
        ref = " " + post.summary.strip()
        g_ref = gold_axes(frame, ref)
        g_lead = gold_axes(frame, lead2_post(post))
        ref_vs_lead2.append(1.0 if g_ref.overall > g_lead.overall else 0.5 if g_ref.overall == g_lead.overall else 0.0)
        ref_overall.append(g_ref.overall)
        ref_likert.append(g_ref.likert_overall)
        lead2_overall.append(g_lead.overall)
        oracle_overall.append(gold_axes(frame, frame_summary(frame)).overall)
        corrupted = corrupt_fact(frame, ref, rng)
        if corrupted is not None:
            detected.append(float(gold_axes(frame, corrupted).accuracy < g_ref.accuracy))
        # One labeled pair per post from the fixed mix.
        texts: list[str] = []
        names = list(VARIANTS)
        rng.shuffle(names)
        for name in names:
            text = _variant(name, post, frame, rng)
            if text is not None and text not in texts:
                texts.append(text)
            if len(texts) == 2:
                break
        if len(texts) == 2:
            choices = pool.choose_all(frame, texts[0], texts[1], rng)
            agreements.append(pairwise_agreement([c.choice for c in choices]))

    news_pref: list[float] = []
    for article in _sample(articles, max_posts):
        frame = frames[article.id]
        lead3 = gold_axes(frame, lead3_article(article)).overall
        highlights = gold_axes(frame, " " + article.highlights.strip()).overall
        news_pref.append(1.0 if lead3 > highlights else 0.5 if lead3 == highlights else 0.0)

    stats |= {
        "labeler_agreement": _share(agreements),
        "labeler_pairs": len(agreements),
        "gold_ref_vs_lead2": _share(ref_vs_lead2),
        "gold_lead3_vs_highlights": _share(news_pref),
        "corruption_detected": _share(detected),
        "gold_reference_mean": _share(ref_overall),
        "gold_reference_likert_mean": _share(ref_likert),
        "gold_lead2_mean": _share(lead2_overall),
        "gold_all_facts_mean": _share(oracle_overall),
        "judged_posts": len(ref_overall),
    }
    return stats
