"""The gold quality function of the offline world: what a careful labeler would rate, computed from the frame.

Reads frames.jsonl only (never the generator). For a summary of a post or article it scores four axes in [0, 1]:

coverage   weighted share of the key elements stated correctly: every key fact (weight 1) and, for posts, the
           question asked (weight 1). A fact is stated when one of its ``forms`` occurs in the summary (lowercase,
           whitespace-normalised, on token boundaries; tokens are ``\\w+`` runs and single symbols).
accuracy   1 - 0.5 per contradicted fact - 0.25 per further invented entity, floored at 0. A fact is contradicted when
           one of its ``wrong_forms`` occurs, or one of its ``patterns`` (number slots) occurs with another number.
           An entity (a number, or a capitalised word that does not start a sentence) absent from the source is
           invented; invented entities already explained by a contradiction are not counted twice.
coherence  1 - penalties: repeated 4-grams (1.5 x duplicate share, up to 0.6), an unfinished ending (no final
           punctuation: 0.35; a dangling last word, "and"/"the"/"my"..., or without final punctuation also "to"/"it"/
           "is"...: 0.15), garbage tokens (3 x their share, up to 0.5),
           and ungrammatical traces (doubled words, clashing punctuation, unbalanced brackets: 0.1 each, up to 0.3).
overall    (0.1 + 0.9 coverage) x (0.3 + 0.7 accuracy) x (0.4 + 0.6 coherence)
           - 0.004 per token over the frame's length budget (48 posts, 90 articles; up to 0.15)
           - 0.03 per distractor detail repeated (up to 0.09).

So a summary that states nothing (vague, jokey, "what should I do?") gets at most 0.1, far below one that states the
facts; and stating a fact wrong (coverage as if omitted, and accuracy x0.65) scores below leaving it out. Likert axes
map a score x to 1 + round(6x), 1-7.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data import Axes

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Matching tokens (must agree with training/world/frames.py): a number written without spaces ("$1,200", "2.4",
# "27m") is one token, so "$65,000, 75 minute commute" never reads as one number; a pattern's value is one such
# token or a score/vote ("3 - 1").
_MATCH_RE = re.compile(r"\$?\d+(?:[.,]\d+)*[a-z]*|\w+|[^\w\s]")
_NUM = r"\$?\d+(?:[.,]\d+)*[a-z]*(?: - \d+)?"
_DIGITS = re.compile(r"[^0-9.]")

COVERAGE_FLOOR = 0.1
ACCURACY_FLOOR = 0.3
COHERENCE_FLOOR = 0.4
CONTRADICTION_COST = 0.5
INVENTION_COST = 0.25
LENGTH_COST_PER_TOKEN = 0.004
LENGTH_COST_MAX = 0.15
DISTRACTOR_COST = 0.03
DISTRACTOR_COST_MAX = 0.09

OK_ENDINGS = frozenset(".!?)\"'")
# Words a finished sentence never ends on, and (wider) words an unfinished text typically stops at.
DANGLING_ALWAYS = frozenset("a an the and or but my your their our of with because than".split())
DANGLING_OPEN = DANGLING_ALWAYS | frozenset(
    "to for in on at his her is are was were be that this so if when then as from by about into i he she we they it "
    "has have had will would".split()
)
ALLOWED_PUNCT = frozenset(".,!?;:'\"()[]$%-/&")
CLASH_FIRST = frozenset(".,;:")
CLASH_SECOND = frozenset(".,;:!?")
NOT_ENTITIES = frozenset({"i", "tl", "dr", "tldr", "edit", "update", "ok", "okay"})


def proxy_tokens(text: str) -> list[str]:
    """The world's token-count proxy: ``\\w+`` runs and single non-space symbols."""
    return _TOKEN_RE.findall(text)


def norm(text: str) -> str:
    """Lowercase and tokenise for matching; forms and summaries go through the same function."""
    return " ".join(_MATCH_RE.findall(text.lower()))


def _padded(text: str) -> str:
    return f" {norm(text)} "


def _digits(text: str) -> str:
    return _DIGITS.sub("", text)


@functools.lru_cache(maxsize=4096)
def _pattern(template: str) -> re.Pattern[str]:
    left, right = (norm(part) for part in template.split("{v}", 1))
    body = (re.escape(left) + " " if left else "") + f"({_NUM})" + (" " + re.escape(right) if right else "")
    return re.compile(r"(?<!\S)" + body + r"(?!\S)")


def likert(x: float) -> int:
    """Map a score in [0, 1] to a 1-7 rating."""
    return 1 + int(math.floor(6 * min(1.0, max(0.0, x)) + 0.5))


# --------------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class FactSpec:
    slot: str
    kind: str
    value: str
    phrase: str
    forms: tuple[str, ...]
    wrong_forms: tuple[str, ...]
    patterns: tuple[str, ...]
    weight: float
    forms_norm: tuple[str, ...] = field(repr=False, default=())
    wrong_norm: tuple[str, ...] = field(repr=False, default=())


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    text: str
    forms: tuple[str, ...]
    weight: float
    forms_norm: tuple[str, ...] = field(repr=False, default=())


@dataclass(frozen=True, slots=True)
class Frame:
    """One frames.jsonl line: the hidden ground truth of a post or article."""

    id: str
    file: str
    split: str
    kind: str  # "post" | "article"
    subreddit: str | None
    event: str | None
    facts: tuple[FactSpec, ...]
    question: QuestionSpec | None
    distractors: tuple[str, ...]  # distractor phrases
    source_entities: frozenset[str]
    reference: Mapping[str, Any]
    length_budget: int
    distractors_norm: tuple[str, ...] = field(repr=False, default=())

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Frame:
        try:
            facts = tuple(
                FactSpec(
                    slot=f["slot"],
                    kind=f["kind"],
                    value=f["value"],
                    phrase=f["phrase"],
                    forms=tuple(f["forms"]),
                    wrong_forms=tuple(f["wrong_forms"]),
                    patterns=tuple(f.get("patterns", ())),
                    weight=float(f.get("weight", 1.0)),
                    forms_norm=tuple(_padded(x) for x in f["forms"]),
                    wrong_norm=tuple(_padded(x) for x in f["wrong_forms"]),
                )
                for f in d["facts"]
            )
            q = d.get("question")
            question = (
                None
                if q is None
                else QuestionSpec(
                    q["text"], tuple(q["forms"]), float(q.get("weight", 1.0)), tuple(_padded(x) for x in q["forms"])
                )
            )
            distractors = tuple(x["phrase"] for x in d.get("distractors", ()))
            return cls(
                id=str(d["id"]),
                file=d["file"],
                split=d["split"],
                kind=d["kind"],
                subreddit=d.get("subreddit"),
                event=d.get("event"),
                facts=facts,
                question=question,
                distractors=distractors,
                source_entities=frozenset(d.get("source_entities", ())),
                reference=dict(d.get("reference") or {}),
                length_budget=int(d.get("length_budget", 48)),
                distractors_norm=tuple(_padded(x) for x in distractors),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"frame {d.get('id', '?')!r}: missing or malformed field {e}") from e


def load_frames(path: str | Path) -> dict[str, Frame]:
    """Read frames.jsonl into ``{id: Frame}``; a bad line raises ``ValueError`` naming ``path:line``."""
    frames: dict[str, Frame] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                frame = Frame.from_json(json.loads(line))
            except (ValueError, json.JSONDecodeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e
            frames[frame.id] = frame
    return frames


# --------------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class GoldAxes:
    """Continuous axes in [0, 1], their 1-7 Likert ratings, and what the judge saw."""

    coverage: float
    accuracy: float
    coherence: float
    overall: float
    stated: tuple[str, ...]  # slots stated correctly
    contradicted: tuple[str, ...]  # slots stated wrong
    invented: tuple[str, ...]  # entities absent from the source
    question_stated: bool | None  # None for articles
    n_tokens: int

    @property
    def likert_overall(self) -> int:
        return likert(self.overall)

    @property
    def likert_accuracy(self) -> int:
        return likert(self.accuracy)

    @property
    def likert_coverage(self) -> int:
        return likert(self.coverage)

    @property
    def likert_coherence(self) -> int:
        return likert(self.coherence)

    def axes(self) -> Axes:
        """The 1-7 ratings as the public axis-eval record's ``axes``."""
        return Axes(self.likert_overall, self.likert_accuracy, self.likert_coverage, self.likert_coherence)


def _sentence_initial(tokens: list[str], i: int) -> bool:
    return i == 0 or tokens[i - 1] in {".", "!", "?", ":", '"', ";"}


def _invented(frame: Frame, tokens: list[str]) -> list[str]:
    out: list[str] = []
    for i, t in enumerate(tokens):
        low = t.lower()
        if low in NOT_ENTITIES or low in frame.source_entities:
            continue
        if any(c.isdigit() for c in t) or (t[:1].isupper() and not _sentence_initial(tokens, i)):
            if low not in out:
                out.append(low)
    return out


def coherence_score(text: str) -> float:
    """1 minus penalties for repetition, an unfinished ending, garbage tokens and ungrammatical traces."""
    tokens = proxy_tokens(text)
    words = [t for t in tokens if t[0].isalnum()]
    if not words:
        return 0.0
    low = [t.lower() for t in tokens]
    penalty = 0.0
    grams = [tuple(low[i : i + 4]) for i in range(len(low) - 3)]
    if grams:
        dup = 1.0 - len(set(grams)) / len(grams)
        penalty += min(0.6, 1.5 * dup)
    finished = text.rstrip()[-1:] in OK_ENDINGS
    if not finished:
        penalty += 0.35
    last_word = next((t.lower() for t in reversed(tokens) if t[0].isalnum()), "")
    if last_word in (DANGLING_OPEN if not finished else DANGLING_ALWAYS):
        penalty += 0.15
    garbage = sum(
        1 for t in tokens if not t.isascii() or len(t) > 25 or (not t[0].isalnum() and t not in ALLOWED_PUNCT)
    )
    garbage += sum(
        1 for i in range(2, len(tokens)) if not tokens[i][0].isalnum() and tokens[i] == tokens[i - 1] == tokens[i - 2]
    )
    penalty += min(0.5, 3.0 * garbage / len(tokens))
    flaws = sum(1 for a, b in itertools.pairwise(low) if a == b and a[0].isalpha())
    flaws += sum(1 for a, b in itertools.pairwise(tokens) if a in CLASH_FIRST and b in CLASH_SECOND)
    flaws += int(text.count("(") != text.count(")")) + int(text.count("[") != text.count("]"))
    penalty += min(0.3, 0.1 * flaws)
    return max(0.0, 1.0 - penalty)


def gold_axes(frame: Frame, text: str) -> GoldAxes:
    """Score a summary of the frame's post/article (a leading space, as in the public data, is fine)."""
    tokens = proxy_tokens(text)
    padded = _padded(text)

    stated: list[str] = []
    contradicted: list[str] = []
    got = total = 0.0
    for fact in frame.facts:
        total += fact.weight
        if any(f in padded for f in fact.forms_norm):
            stated.append(fact.slot)
            got += fact.weight
        wrong = any(w in padded for w in fact.wrong_norm)
        if not wrong and fact.patterns:
            want = _digits(fact.value)
            wrong = any(
                _digits(m.group(1)) != want for p in fact.patterns for m in _pattern(p).finditer(padded.strip())
            )
        if wrong:
            contradicted.append(fact.slot)
    question_stated = None
    if frame.question is not None:
        total += frame.question.weight
        question_stated = any(f in padded for f in frame.question.forms_norm)
        got += frame.question.weight * question_stated
    coverage = got / total if total else 0.0

    invented = _invented(frame, tokens)
    extra = max(0, len(invented) - len(contradicted))
    accuracy = max(0.0, 1.0 - CONTRADICTION_COST * len(contradicted) - INVENTION_COST * extra)
    coherence = coherence_score(text)

    overall = (
        (COVERAGE_FLOOR + (1 - COVERAGE_FLOOR) * coverage)
        * (ACCURACY_FLOOR + (1 - ACCURACY_FLOOR) * accuracy)
        * (COHERENCE_FLOOR + (1 - COHERENCE_FLOOR) * coherence)
    )
    overall -= min(LENGTH_COST_MAX, LENGTH_COST_PER_TOKEN * max(0, len(tokens) - frame.length_budget))
    overall -= min(DISTRACTOR_COST_MAX, DISTRACTOR_COST * sum(d in padded for d in frame.distractors_norm))
    return GoldAxes(
        coverage=coverage,
        accuracy=accuracy,
        coherence=coherence,
        overall=min(1.0, max(0.0, overall)),
        stated=tuple(stated),
        contradicted=tuple(contradicted),
        invented=tuple(invented),
        question_stated=question_stated,
        n_tokens=len(tokens),
    )


def gold_score(frame: Frame, text: str) -> float:
    """The scalar gold reward: the continuous overall score in [0, 1]."""
    return gold_axes(frame, text).overall


def frame_summary(frame: Frame, slots: Iterable[str] | None = None, *, question: bool = True) -> str:
    """A plain summary that states the chosen facts with the source's phrases (and the question): an upper
    reference for what a copying policy can reach. ``slots=None`` means every fact. Leading space included."""
    wanted = None if slots is None else set(slots)
    phrases = [f.phrase for f in frame.facts if wanted is None or f.slot in wanted]
    body = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1] + "." if phrases else ""
    if question and frame.question is not None:
        q = frame.question.text
        body = f"{body} {q[:1].upper()}{q[1:]}?".strip()
    return " " + body
