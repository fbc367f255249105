"""The frame schema: what a subreddit (or a news event type) can say, as data.

A *slot* is one kind of key fact ("partner", "rent", "deposit"). A post's frame fills 3-6 slots with values and renders
each one as a *phrase*, the fact's local surface form ("boyfriend (27M)", "$1,200 a month in rent"). The phrase is
the unit of copying: the post states it inside one of several sentence frames, and the reference TL;DR restates that
exact phrase inside different glue words. A phrase template must therefore be usable verbatim in every sentence
template of its slot (the templates of one slot are syntactically interchangeable), and it never starts a sentence
(so it is never re-capitalised and stays byte-identical between post and TL;DR).

Template fields: ``{v}`` is the value, ``{p}`` the rendered phrase; everything else comes from the frame's context
(pronouns such as ``{he}``/``{him}``/``{his}``/``{He}``, the partner's relation ``{rel}``, the pet's ``{animal}``...).
Multi-slot sentences ("combos") name phrases as ``{p_SLOT}``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

Draw = Callable[[random.Random, dict[str, str]], str]
MakeCtx = Callable[[random.Random], dict[str, str]]


@dataclass(frozen=True)
class Slot:
    """One kind of key fact.

    kind: "num" when the value is a number-like string (ages, money, counts): the judge then also treats the slot's
      templates as patterns, so *any* other number in the same template is a contradiction, not just the listed ones.
      "word" for names, places, things (contradictions are the listed wrong forms plus invented capitalised words).
    draw: samples a value given the frame context.
    phrases: interchangeable phrase templates over ``{v}`` (and context).
    sentences: post sentence templates over ``{p}`` (and context).
    tldr: TL;DR clause templates over ``{p}``; every one contains ``{p}`` verbatim.
    ask: a question about the fact, for the pretraining corpus's Q/A lines.
    group: slots sharing a group are alternatives (at most one per post), e.g. the kinds of relationship trouble.
    bare: the bare value alone also states the fact (distinctive values: names, cities, car models).
    core: always a key fact when the subreddit is drawn.
    """

    name: str
    kind: str
    draw: Draw
    phrases: tuple[str, ...]
    sentences: tuple[str, ...]
    tldr: tuple[str, ...] = ("{p}",)
    ask: str = ""
    group: str | None = None
    bare: bool = False
    core: bool = False

    def __post_init__(self) -> None:
        assert self.kind in ("num", "word"), self.kind
        assert all("{v}" in t for t in self.phrases), self.name
        assert all("{p}" in t for t in self.sentences), self.name
        assert all("{p}" in t for t in self.tldr), self.name


@dataclass(frozen=True)
class Distractor:
    """A non-key detail that looks like a key fact: same value shape as ``confuses``, different cue words.

    Its value is the likeliest confusion for the fact it imitates, so frames list it first among the wrong forms.
    """

    confuses: str
    phrase: str
    sentences: tuple[str, ...]
    draw: Draw | None = None  # None: use the confused slot's own draw

    def __post_init__(self) -> None:
        assert "{v}" in self.phrase and all("{p}" in s for s in self.sentences)


@dataclass(frozen=True)
class Question:
    """The question a post asks; every form states it (lowercase, no question mark). ``needs``: slots it refers to."""

    forms: tuple[str, ...]
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subreddit:
    name: str
    weight: float
    make_ctx: MakeCtx
    slots: tuple[Slot, ...]
    questions: tuple[Question, ...]
    distractors: tuple[Distractor, ...]
    fillers: tuple[str, ...]
    topics: tuple[str, ...]
    combos: tuple[tuple[tuple[str, ...], str], ...] = ()
    n_facts: tuple[int, int] = (3, 6)
    vague: tuple[str, ...] = ("need advice",)  # topic words a vague TL;DR uses ("problem with my {rel}")

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass
class FactValue:
    """A slot filled for one frame."""

    slot: Slot
    value: str
    template: str  # the phrase template the post uses
    phrase: str


@dataclass
class DistractorValue:
    spec: Distractor
    value: str
    phrase: str
    sentence: str = ""


@dataclass
class PostFrame:
    """Everything the generator knows about one post; frames.jsonl keeps the judge's part of it."""

    id: str
    split: str
    sub: Subreddit
    ctx: dict[str, str]
    facts: list[FactValue]
    question: Question
    q_form: str  # the form the post uses
    distractors: list[DistractorValue]
    title: str = ""
    post: str = ""
    reference: str = ""
    ref_meta: dict[str, object] = field(default_factory=dict)

    def fact(self, name: str) -> FactValue:
        for f in self.facts:
            if f.slot.name == name:
                return f
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------- draw helpers


def pick(pool: tuple[str, ...]) -> Draw:
    return lambda rng, ctx: rng.choice(pool)


def integer(lo: int, hi: int, step: int = 1) -> Draw:
    return lambda rng, ctx: str(rng.randrange(lo, hi + 1, step))


def dollars(lo: int, hi: int, step: int) -> Draw:
    return lambda rng, ctx: f"${rng.randrange(lo, hi + 1, step):,}"
