"""Extractive baselines: the first k sentences of a post or article (lead-2 for TL;DR, lead-3 for CNN/DM).

Outputs follow the public convention for summary texts: a leading space (they follow "TL;DR:").
"""

from __future__ import annotations

import re

from training.data import NewsArticle, TldrPost

# A sentence ends at . ! ? (optionally followed by a closing quote or bracket) before whitespace and a capital,
# digit, quote or bracket (so '"Stop!" said Ann.' stays one sentence), or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[$])|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, in order, stripped; paragraph breaks always end a sentence."""
    parts: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start() + len(m.group(0).rstrip())  # keep a closing quote with its sentence
        piece = text[start:end].strip()
        if piece:
            parts.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def lead_k(text: str, k: int) -> str:
    """The first ``k`` sentences joined by spaces, with a leading space."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return " " + " ".join(split_sentences(text)[:k])


def lead2_post(post: TldrPost) -> str:
    """The paper's lead-2 baseline for a TL;DR post (the post body, not the title)."""
    return lead_k(post.post, 2)


def lead3_article(article: NewsArticle) -> str:
    """The lead-3 baseline for a CNN/DM article."""
    return lead_k(article.article, 3)
