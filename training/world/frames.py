"""The judge's view of a frame: what frames.jsonl stores for every post and article.

For each key fact:
- ``forms``: surface strings that state it correctly, the post's own phrase first (every phrase template of the slot
  filled with the true value; the bare value too for distinctive values such as names and cities);
- ``wrong_forms``: the same templates filled with other values: first the values of the post's distractors that
  imitate this fact (the likely confusions), then two random values of the slot;
- ``patterns`` (number-valued slots only): the templates with ``{v}`` left open, so a judge can flag *any* other
  number in that template ("boyfriend ({v})" said with 31M when the post says 27M), not only the listed ones.
Wrong forms and patterns that would fire on the source itself (a distractor that happens to use the same words) are
dropped, so a summary copied from the post never reads as a contradiction. ``source_entities`` lists the numbers and
capitalised words of the source: a summary number or name outside it is invented.

Matching (here and in ``evals.gold``, which re-implements it because evals may not import the generator):
lowercase, tokenise (numbers such as "$1,200" stay whole), join by single spaces; a form matches on token boundaries.
"""

from __future__ import annotations

import random
import re
from typing import Any

from .common import digits, fill, proxy_tokens
from .schema import DistractorValue, FactValue

# Matching tokens: a number written without spaces ("$1,200", "2.4", "27m") is one token, so a list such as
# "$65,000, 75 minute commute" never reads as one number; otherwise ``\w+`` runs and single symbols.
MATCH_RE = re.compile(r"\$?\d+(?:[.,]\d+)*[a-z]*|\w+|[^\w\s]")
# A number value in a pattern: one matching token, or a score/vote such as "3 - 1".
NUM = r"\$?\d+(?:[.,]\d+)*[a-z]*(?: - \d+)?"


def norm(text: str) -> str:
    return " ".join(MATCH_RE.findall(text.lower()))


def padded(text: str) -> str:
    return f" {norm(text)} "


def pattern_regex(template: str) -> re.Pattern[str]:
    """A template with one ``{v}`` as a regex over normalised text; group 1 captures the number."""
    left, right = (norm(part) for part in template.split("{v}", 1))
    body = (re.escape(left) + " " if left else "") + f"({NUM})" + (" " + re.escape(right) if right else "")
    return re.compile(r"(?<!\S)" + body + r"(?!\S)")


def pattern_fires(template: str, text_norm: str, true_value: str) -> bool:
    """Does the template occur in the (normalised) text with a number other than ``true_value``?"""
    want = digits(true_value)
    return any(digits(m.group(1)) != want for m in pattern_regex(template).finditer(text_norm))


def _uniq(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


_GROUP = re.compile(r"\d[\d,.]*")


def _as_confusion(true_value: str, other: str, kind: str) -> str:
    """Reshape a distractor value to the fact's shape: "25F" confusing "27M" becomes "25M"."""
    if kind != "num":
        return other
    shape = _GROUP.sub("#", true_value)
    if shape == _GROUP.sub("#", other):
        return other
    m = _GROUP.search(other)
    return _GROUP.sub(m.group(0), true_value, count=1) if m else other


def source_entities(text: str) -> list[str]:
    """Numbers and capitalised words of a source, lowercased (what a summary may name without inventing)."""
    out = {t.lower() for t in proxy_tokens(text) if any(c.isdigit() for c in t) or t[:1].isupper()}
    return sorted(out)


def fact_record(
    fact: FactValue,
    ctx: dict[str, str],
    distractors: list[DistractorValue],
    source_norm: str,
    rng: random.Random,
) -> dict[str, Any]:
    slot = fact.slot
    templates = [fact.template] + [t for t in slot.phrases if t != fact.template]
    forms = _uniq([fill(t, ctx, v=fact.value) for t in templates] + ([fact.value] if slot.bare else []))
    forms_padded = [padded(f) for f in forms]

    # Wrong values: confusions first, then random draws that differ from the truth (by digits for numbers).
    def key(v: str) -> str:
        return digits(v) if slot.kind == "num" and digits(v) else v.lower()

    wrong_values: list[str] = []
    seen = {key(fact.value)}
    for d in distractors:
        if d.spec.confuses == slot.name:
            v = _as_confusion(fact.value, d.value, slot.kind)
            if key(v) not in seen:
                seen.add(key(v))
                wrong_values.append(v)
    for _ in range(30):
        if len(wrong_values) >= 2 + sum(d.spec.confuses == slot.name for d in distractors):
            break
        v = slot.draw(rng, ctx)
        if key(v) not in seen:
            seen.add(key(v))
            wrong_values.append(v)

    wrong: list[str] = []
    for v in wrong_values:
        wrong += [fill(t, ctx, v=v) for t in templates]
        if slot.bare:
            wrong.append(v)
    wrong_forms = []
    for w in _uniq(wrong):
        pw = padded(w)
        if pw in source_norm or any(pw in pf or pf in pw for pf in forms_padded):
            continue
        wrong_forms.append(w)

    patterns: list[str] = []
    if slot.kind == "num":
        for t in templates:
            open_t = fill(t, ctx, v="{v}")
            if not pattern_fires(open_t, source_norm, fact.value):
                patterns.append(open_t)
    return {
        "slot": slot.name,
        "kind": slot.kind,
        "value": fact.value,
        "phrase": fact.phrase,
        "forms": forms,
        "wrong_forms": wrong_forms,
        "patterns": _uniq(patterns),
        "weight": 1.0,
    }


def frame_record(
    *,
    ident: str,
    file: str,
    split: str,
    kind: str,
    facts: list[FactValue],
    ctx: dict[str, str],
    distractors: list[DistractorValue],
    source: str,
    rng: random.Random,
    subreddit: str | None = None,
    event: str | None = None,
    question: tuple[str, list[str]] | None = None,
    reference: dict[str, Any] | None = None,
    length_budget: int = 48,
) -> dict[str, Any]:
    """One frames.jsonl line. ``question``: (the post's wording, all accepted forms)."""
    source_norm = padded(source)
    return {
        "id": ident,
        "file": file,
        "split": split,
        "kind": kind,
        "subreddit": subreddit,
        "event": event,
        "facts": [fact_record(f, ctx, distractors, source_norm, rng) for f in facts],
        "question": None
        if question is None
        else {"text": question[0], "forms": _uniq([question[0], *question[1]]), "weight": 1.0},
        "distractors": [{"confuses": d.spec.confuses, "value": d.value, "phrase": d.phrase} for d in distractors],
        "source_entities": source_entities(source),
        "reference": reference or {},
        "length_budget": length_budget,
    }
