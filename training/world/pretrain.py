"""The pretraining corpus: world text in many styles, copy-rich, from frames of its own.

Its frames are drawn from an RNG stream of its own ("pretrain", one per document), never the train/valid/test
ones, so the evaluation posts are unseen. Documents are separated by ``DOC_SEPARATOR`` (the tokenizer's EOS on a
line of its own). Styles and shares (post-based 78%, news 22%):

- post_plain 20%: "r/SUB - TITLE" and the post;
- post_tldr 16%: the post, then a TL;DR line restating its facts with the post's phrases, in the spellings seen on
  the web ("TL;DR:", "tl;dr", "TLDR:", sometimes at the top);
- post_query 4%: the paper's exact query format followed by the reference;
- post_replies 14%: the post, then replies that quote a sentence ("> ...") and restate its fact;
- post_qa 14%: the post, then "Q: ... A: <phrase>" lines;
- post_facts 10%: the post, then "Key details: phrase; phrase; phrase.";
- news_highlights 10%, news_tldr 4%, news_plain 8%.
So TL;DR lines appear now and then (a quarter of documents in some spelling, 14% as exactly "TL;DR:"), enough
for a weak zero-shot summarizer.
"""

from __future__ import annotations

import random

from .common import cap, fill, rng_for, wchoice
from .news import sample_article
from .posts import pick_subreddit, render_post, sample_frame
from .references import write_reference

DOC_SEPARATOR = "\n<|endoftext|>\n"

STYLES = (
    "post_plain",
    "post_tldr",
    "post_query",
    "post_replies",
    "post_qa",
    "post_facts",
    "news_highlights",
    "news_tldr",
    "news_plain",
)
WEIGHTS = (0.20, 0.16, 0.04, 0.14, 0.14, 0.10, 0.10, 0.04, 0.08)
TLDR_MARKS = ("TL;DR:", "TL;DR:", "tl;dr:", "TLDR:", "tl;dr", "TL;DR -")
REPLY_LEADS = (
    "Wait, {p}? That changes things.",
    "The part about {p} is what matters here.",
    "Honestly the key detail is {p}.",
    "So {p}. I would think hard about that.",
    "If it really is {p}, I get why you're stressed.",
    "Reading this again, {p} stands out to me.",
)
REPLY_TAILS = ("Good luck.", "Hope it works out.", "Update us please.", "This is good advice.", "Agreed.")


def _post_doc(rng: random.Random, style: str, index: int) -> str:
    sub = pick_subreddit(rng)
    frame = sample_frame(rng, sub, f"pre{index}", "pretrain")
    render_post(rng, frame)
    write_reference(rng, frame)
    header = f"r/{sub.name} - {frame.title}\n\n{frame.post}"
    if style == "post_plain":
        return header
    if style == "post_query":
        return f"SUBREDDIT: r/{sub.name}\n\nTITLE: {frame.title}\n\nPOST: {frame.post}\n\nTL;DR: {frame.reference}"
    if style == "post_tldr":
        mark = rng.choice(TLDR_MARKS)
        if rng.random() < 0.15:
            return f"r/{sub.name} - {frame.title}\n\n{mark} {frame.reference}\n\n{frame.post}"
        return f"{header}\n\n{mark} {frame.reference}"
    if style == "post_replies":
        sentences = [s for par in frame.post.split("\n\n") for s in _sentences(par)]
        replies = []
        for f in rng.sample(frame.facts, min(len(frame.facts), rng.randint(1, 3))):
            quoted = next((s for s in sentences if f.phrase in s), f.phrase)
            reply = fill(rng.choice(REPLY_LEADS), {}, p=f.phrase)
            if rng.random() < 0.4:
                reply += " " + rng.choice(REPLY_TAILS)
            replies.append(f"> {quoted}\n\n{reply}")
        return header + "\n\n" + "\n\n".join(replies)
    if style == "post_qa":
        lines = [
            f"Q: {fill(f.slot.ask, frame.ctx)}\nA: {cap(f.phrase) if rng.random() < 0.3 else f.phrase}."
            for f in frame.facts
            if f.slot.ask
        ]
        lines.append(f"Q: What are you asking?\nA: {cap(frame.q_form)}?")
        return header + "\n\n" + "\n".join(lines)
    # post_facts
    return header + "\n\nKey details: " + "; ".join(f.phrase for f in frame.facts) + "."


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for i, ch in enumerate(paragraph):
        if ch in ".?!" and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            out.append(paragraph[start : i + 1].strip())
            start = i + 1
    if paragraph[start:].strip():
        out.append(paragraph[start:].strip())
    return out


def _news_doc(rng: random.Random, style: str, index: int) -> str:
    frame = sample_article(rng, f"pre-news{index}", "pretrain")
    if style == "news_plain":
        return frame.article
    if style == "news_tldr":
        return f"{frame.article}\n\nTL;DR: {' '.join(frame.highlights.splitlines())}"
    return f"{frame.article}\n\nStory highlights:\n{frame.highlights}"


def pretrain_corpus(seed: int, n_docs: int) -> str:
    docs = []
    for i in range(n_docs):
        rng = rng_for(seed, "pretrain", i)
        style = wchoice(rng, STYLES, WEIGHTS)
        docs.append(_news_doc(rng, style, i) if style.startswith("news") else _post_doc(rng, style, i))
    return DOC_SEPARATOR.join(docs) + DOC_SEPARATOR
