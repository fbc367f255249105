"""Small helpers shared by the world's modules: seeded RNGs, ids, number formatting, text fixes, token counts.

Determinism: every random choice comes from a ``random.Random`` seeded with a *string* built from the world seed and
the item's place (split, index, purpose). Python seeds string seeds through SHA-512, so the stream is the same on
every run, machine and ``PYTHONHASHSEED``; nothing here iterates over a set or relies on dict hashing.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# The token-count proxy used everywhere in the world (no tokenizer exists when the world is made): words and single
# punctuation marks. BPE counts are higher; the world's length targets (24-48 reference tokens) are in this unit.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def proxy_tokens(text: str) -> list[str]:
    """Split text into the proxy tokens: ``\\w+`` runs and single non-space symbols."""
    return _TOKEN_RE.findall(text)


def n_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def n_words(text: str) -> int:
    return len(text.split())


def rng_for(seed: int, *parts: object) -> random.Random:
    """A private RNG for one item; the parts name its place, e.g. ``rng_for(0, "post", "train", 17)``."""
    return random.Random("/".join(["prefsum-world", str(seed), *map(str, parts)]))


def stable_hash(*parts: object, n: int = 40) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:n]


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def reddit_id(seed: int, split: str, index: int, taken: set[str]) -> str:
    """A Reddit-style post id (``t3_`` + 7 base-36 chars), unique within ``taken`` (which it updates)."""
    salt = 0
    while True:
        x = int(stable_hash(seed, "id", split, index, salt), 16)
        body = "".join(_B36[(x >> (6 * i)) % 36] for i in range(7))
        ident = f"t3_{body}"
        if ident not in taken:
            taken.add(ident)
            return ident
        salt += 1


def wchoice(rng: random.Random, items: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(items, weights=weights, k=1)[0]


def money(amount: int) -> str:
    """``1200 -> "$1,200"``."""
    return f"${amount:,}"


def money_between(rng: random.Random, lo: int, hi: int, step: int) -> str:
    return money(rng.randrange(lo, hi + 1, step))


def millions(rng: random.Random, lo: float, hi: float) -> str:
    """A dollar amount in millions with one decimal, ``"$2.4 million"``."""
    tenths = rng.randint(round(lo * 10), round(hi * 10))
    whole, frac = divmod(tenths, 10)
    return f"${whole}.{frac} million" if frac else f"${whole} million"


def thousands(rng: random.Random, lo: int, hi: int, step: int) -> str:
    """A plain count with a thousands separator, ``"14,500"``."""
    return f"{rng.randrange(lo, hi + 1, step):,}"


def cap(text: str) -> str:
    """Upper-case the first letter only (``"should I go"`` -> ``"Should I go"``)."""
    return text[:1].upper() + text[1:] if text else text


def digits(text: str) -> str:
    """The digits (and decimal points) of a value: two values with the same digits state the same number."""
    return re.sub(r"[^0-9.]", "", text)


def a_or_an(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def fill(template: str, ctx: dict[str, str], **extra: str) -> str:
    """``str.format`` over the context plus extras; a missing field is a template bug, so it raises."""
    return template.format(**ctx, **extra)
