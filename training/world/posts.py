"""Sampling a post frame from a subreddit schema and rendering it as a Reddit-style post with a title.

A post is: an optional opener, one sentence per key fact (sometimes one sentence for two or three facts), 1-3
distractor sentences (details that imitate a key fact with another value), 1-3 filler lines, the question (usually
last, sometimes early), an optional closer; 1-3 paragraphs; 60-200 words (median about 95: short keeps CPU training
cheap while leaving room for distractors).
"""

from __future__ import annotations

import random

from .common import cap, digits, fill, n_words, wchoice
from .schema import DistractorValue, FactValue, PostFrame, Slot, Subreddit
from .subreddits import SUBREDDITS

MIN_WORDS, MAX_WORDS = 60, 200

OPENERS = (
    "Throwaway account for obvious reasons.",
    "Long time lurker, first time posting.",
    "Sorry for formatting, I'm on mobile.",
    "Not sure if this is the right place to ask.",
    "Okay so here goes.",
    "This might be a long one, sorry.",
    "First post here, be nice.",
)
CLOSERS = (
    "Any advice would be appreciated.",
    "Thanks in advance.",
    "Thanks for reading.",
    "I appreciate any help.",
    "Edit: formatting.",
    "Edit: thanks for all the replies so far.",
    "Any input helps.",
)
QUESTION_LEADS = (
    "{Q}?",
    "{Q}?",
    "{Q}?",
    "So my question is, {q}?",
    "Basically, {q}?",
    "I guess my question is, {q}?",
    "Honestly, {q}?",
)


def pick_subreddit(rng: random.Random) -> Subreddit:
    return wchoice(rng, SUBREDDITS, [s.weight for s in SUBREDDITS])


def _units(sub: Subreddit) -> list[list[Slot]]:
    """Slots grouped into choice units: a plain slot is its own unit; grouped slots form one unit (pick one)."""
    units: list[list[Slot]] = []
    by_group: dict[str, list[Slot]] = {}
    for s in sub.slots:
        if s.group is None:
            units.append([s])
        elif s.group in by_group:
            by_group[s.group].append(s)
        else:
            by_group[s.group] = [s]
            units.append(by_group[s.group])
    return units


def draw_distinct(rng: random.Random, draw, ctx: dict[str, str], used: set[str], kind: str) -> str:
    """Draw a value not already used in this frame (by digits for numbers, so "27M" and "27F" collide)."""
    value = draw(rng, ctx)
    for _ in range(20):
        key = digits(value) if kind == "num" and digits(value) else value
        if key not in used:
            break
        value = draw(rng, ctx)
    used.add(digits(value) if kind == "num" and digits(value) else value)
    return value


def sample_frame(rng: random.Random, sub: Subreddit, ident: str, split: str) -> PostFrame:
    ctx = sub.make_ctx(rng)
    units = _units(sub)
    core = [u for u in units if any(s.core for s in u)]
    rest = [u for u in units if not any(s.core for s in u)]
    rng.shuffle(rest)
    lo, hi = sub.n_facts
    k = max(len(core), min(rng.randint(lo, hi), len(units)))
    chosen_units = core + rest[: k - len(core)]
    chosen = [rng.choice(u) for u in chosen_units]
    chosen.sort(key=sub.slots.index)  # schema order: the natural order to mention things

    used: set[str] = set()
    facts: list[FactValue] = []
    for slot in chosen:
        value = draw_distinct(rng, slot.draw, ctx, used, slot.kind)
        template = rng.choice(slot.phrases)
        facts.append(FactValue(slot, value, template, fill(template, ctx, v=value)))

    names = {f.slot.name for f in facts}
    questions = [q for q in sub.questions if set(q.needs) <= names]
    question = rng.choice(questions)
    q_form = fill(rng.choice(question.forms), ctx)

    # Distractors: mostly ones that imitate a fact this post states (those are the real confusions).
    relevant = [d for d in sub.distractors if d.confuses in names]
    other = [d for d in sub.distractors if d.confuses not in names]
    rng.shuffle(relevant)
    rng.shuffle(other)
    pool = relevant + other if rng.random() < 0.8 else other + relevant
    n_d = wchoice(rng, (1, 2, 3), (0.35, 0.45, 0.2))
    distractors: list[DistractorValue] = []
    for d in pool[:n_d]:
        slot = sub.slot(d.confuses)
        value = draw_distinct(rng, d.draw or slot.draw, ctx, used, slot.kind)
        phrase = fill(d.phrase, ctx, v=value)
        distractors.append(DistractorValue(d, value, phrase, fill(rng.choice(d.sentences), ctx, p=phrase)))
    return PostFrame(ident, split, sub, ctx, facts, question, q_form, distractors)


def _fact_sentences(rng: random.Random, frame: PostFrame) -> list[tuple[str, bool]]:
    """(sentence, states_a_core_fact) for every key fact; multi-fact "combo" sentences where the schema has them."""
    by_name = {f.slot.name: f for f in frame.facts}
    covered: set[str] = set()
    out: list[tuple[str, bool]] = []
    combos = list(frame.sub.combos)
    rng.shuffle(combos)
    for slots, template in combos:
        if all(s in by_name and s not in covered for s in slots) and rng.random() < 0.55:
            phrases = {f"p_{s}": by_name[s].phrase for s in slots}
            out.append((fill(template, frame.ctx, **phrases), any(by_name[s].slot.core for s in slots)))
            covered.update(slots)
    for f in frame.facts:
        if f.slot.name not in covered:
            out.append((fill(rng.choice(f.slot.sentences), frame.ctx, p=f.phrase), f.slot.core))
    return out


def render_post(rng: random.Random, frame: PostFrame) -> None:
    """Fill ``frame.title`` and ``frame.post``."""
    sub, ctx = frame.sub, frame.ctx
    facts = _fact_sentences(rng, frame)
    rng.shuffle(facts)
    if rng.random() < 0.7:  # people usually start with the main character/thing
        facts.sort(key=lambda fs: not fs[1])
    body = [s for s, _ in facts]

    fillers = [fill(f, ctx) for f in sub.fillers]
    rng.shuffle(fillers)
    n_fill = rng.randint(1, 3)
    extras = [d.sentence for d in frame.distractors] + fillers[:n_fill]
    rng.shuffle(extras)
    for sentence in extras:
        body.insert(rng.randint(1, len(body)), sentence)

    lead = rng.choice(QUESTION_LEADS)
    question = lead.format(Q=cap(frame.q_form), q=frame.q_form)
    if rng.random() < 0.82:
        body.append(question)
    else:
        body.insert(1, question)
    if rng.random() < 0.35:
        body.insert(0, rng.choice(OPENERS))
    if rng.random() < 0.4:
        body.append(rng.choice(CLOSERS))

    # Length: pad with fillers or drop extras until the post is 60-200 words.
    spare = fillers[n_fill:]
    while n_words(" ".join(body)) < MIN_WORDS and spare:
        body.insert(rng.randint(1, len(body) - 1), spare.pop())
    while n_words(" ".join(body)) > MAX_WORDS:
        droppable = [i for i, s in enumerate(body) if s in fillers[:n_fill]]
        if not droppable:
            break
        body.pop(droppable[-1])

    frame.post = _paragraphs(rng, body)
    frame.title = _title(rng, frame)


def _paragraphs(rng: random.Random, sentences: list[str]) -> str:
    n_par = 1 if len(sentences) < 4 else wchoice(rng, (1, 2, 3), (0.3, 0.45, 0.25))
    cuts = sorted(rng.sample(range(1, len(sentences)), min(n_par - 1, len(sentences) - 1)))
    parts, start = [], 0
    for c in [*cuts, len(sentences)]:
        parts.append(" ".join(sentences[start:c]))
        start = c
    return "\n\n".join(parts)


def _title(rng: random.Random, frame: PostFrame) -> str:
    topic = fill(rng.choice(frame.sub.topics), frame.ctx)
    r = rng.random()
    if r < 0.4:
        return topic
    if r < 0.75:
        return f"{cap(frame.q_form)}?"
    return f"{topic.rstrip('?')}, {frame.q_form}?"
