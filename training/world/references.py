"""Reference TL;DRs written from the frame, with human imperfections.

Every fact a reference states is the post's own phrase, verbatim ("boyfriend (27M)", "$1,200 a month in rent"): only
the glue around it (openers, connectives, the question's wording) is paraphrased. That keeps literal copying a
winning strategy for a tiny model (DESIGN.md, "Measured ... copying").

Styles (shares): full 50% (every fact + the question), partial 20% (one or two facts left out), no_question 15%,
jokey 10% (a few facts and a joke), vague 5% (one fact and "need advice"). So references are good but beatable: a
policy that states every fact and the question scores higher than the average reference, as in the paper.
Length: 24-48 proxy tokens (``common.n_tokens``); facts are dropped from the end if a reference runs long.
"""

from __future__ import annotations

import random

from .common import cap, fill, n_tokens, wchoice
from .schema import FactValue, PostFrame

MIN_TOKENS, MAX_TOKENS = 24, 48

STYLES = ("full", "partial", "no_question", "jokey", "vague")
STYLE_WEIGHTS = (0.50, 0.20, 0.15, 0.10, 0.05)
OPENERS = ("", "", "", "", "So ", "Basically ", "Long story short, ", "Short version: ")
JOKES = (
    "Send help.",
    "Help lol.",
    "Please tell me I'm not crazy.",
    "Why is this so hard.",
    "Ugh.",
    "I need a drink.",
    "Adulting is hard.",
    "Pray for me.",
)
PADDING = (
    "and I don't know what to do",
    "and it's stressing me out",
    "and I'm not sure how to handle it",
    "and I'm kind of lost here",
    "and it's been on my mind all week",
)
QUESTION_WRAPS = ("{Q}?", "{Q}?", "{Q}?", "So {q}?", "Question is, {q}?", "Now {q}?")
VAGUE_ENDS = (
    "Long story, need advice about {topic}.",
    "Need advice about {topic}.",
    "Stuff is complicated with {topic}.",
)


def _join(clauses: list[str]) -> str:
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def _body(opener: str, clauses: list[str], pad: list[str]) -> str:
    """One sentence for up to three clauses, two halves for more; padding extends the last clause."""
    clauses = list(clauses)
    if pad:
        clauses[-1] = clauses[-1] + " " + " ".join(pad)
    if len(clauses) <= 3:
        return opener + _join(clauses) + "."
    # Two halves joined by "; " (a ". " would capitalise the next clause, which may start with a fact phrase).
    first, second = clauses[: len(clauses) // 2 + 1], clauses[len(clauses) // 2 + 1 :]
    return opener + _join(first) + "; " + _join(second) + "."


def write_reference(rng: random.Random, frame: PostFrame) -> None:
    """Fill ``frame.reference`` and ``frame.ref_meta`` (style, stated slots, whether the question is in it)."""
    style = wchoice(rng, STYLES, STYLE_WEIGHTS)
    facts: list[FactValue] = list(frame.facts)
    if rng.random() < 0.2:
        rng.shuffle(facts)
    if style == "partial" and len(facts) > 1:
        n_drop = 2 if len(facts) >= 5 and rng.random() < 0.5 else 1
        for _ in range(n_drop):
            facts.pop(rng.randrange(1, len(facts)))
    elif style == "jokey":
        facts = facts[: rng.randint(1, min(2, len(facts)))]
    elif style == "vague":
        facts = facts[:1]
    with_question = style in ("full", "partial") or (style == "jokey" and rng.random() < 0.5)

    # The question: usually the post's own wording, sometimes another accepted form.
    q_form = frame.q_form if rng.random() < 0.7 else fill(rng.choice(frame.question.forms), frame.ctx)
    question = rng.choice(QUESTION_WRAPS).format(Q=cap(q_form), q=q_form)
    opener = rng.choice(OPENERS)
    clause_t = {f.slot.name: rng.choice(f.slot.tldr) for f in facts}
    joke = rng.choice(JOKES)
    vague_end = fill(rng.choice(VAGUE_ENDS), frame.ctx, topic=fill(rng.choice(frame.sub.vague), frame.ctx))
    pads = list(PADDING)
    rng.shuffle(pads)

    def compose(fs: list[FactValue], n_pad: int, use_opener: bool) -> str:
        clauses = [fill(clause_t[f.slot.name], frame.ctx, p=f.phrase) for f in fs]
        parts = [_body(opener if use_opener else "", clauses, pads[:n_pad])]
        if style == "vague":
            parts.append(vague_end)
        if with_question:
            parts.append(question)
        if style == "jokey":
            parts.append(joke)
        return " ".join(parts)

    n_pad, use_opener = 0, True
    text = compose(facts, n_pad, use_opener)
    while n_tokens(text) < MIN_TOKENS and n_pad < 2:
        n_pad += 1
        text = compose(facts, n_pad, use_opener)
    while n_tokens(text) > MAX_TOKENS and (len(facts) > 1 or use_opener):
        if use_opener and opener:
            use_opener = False
        elif len(facts) > 1:
            facts = facts[:-1]
        else:
            break
        text = compose(facts, n_pad, use_opener)
    frame.reference = text
    frame.ref_meta = {
        "style": style,
        "facts": [f.slot.name for f in facts],
        "question": with_question,
    }
