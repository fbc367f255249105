"""What the evals need from a model, as small protocols: something that summarizes, something that scores.

The ONNX engine (``service.engine.PolicyEngine`` / ``RewardEngine``) satisfies them in-process; ``evals.client``
satisfies them against a running service over HTTP; a test may pass any object with the same methods. Evals never
import the service: the composition (which object to pass) happens in the CLI and in the service's eval jobs.

Items are plain mappings exactly like the service API's ITEM: ``{"subreddit", "title", "post"}`` for a TL;DR post,
``{"text"}`` for a news article. Summary texts are in the public format: one leading space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from training.data import NewsArticle, PostInfo, TldrPost

Item = Mapping[str, Any]


@runtime_checkable
class CompletionLike(Protocol):
    """One generated summary: ``text`` (public format, leading space), ``tokens`` (response tokens, EOS excluded),
    ``finish_reason`` ("eos" | "length") and an optional reward ``score``."""

    text: str
    tokens: int
    finish_reason: str
    score: float | None


@dataclass(frozen=True, slots=True)
class Completion:
    """The evals' own completion record (what ``evals.client`` returns); same fields as the engine's."""

    text: str
    tokens: int
    finish_reason: str
    score: float | None = None


@runtime_checkable
class Summarizer(Protocol):
    """Something that summarizes: one list of ``n`` completions per item; greedy when ``temperature`` is 0."""

    def summarize(
        self,
        items: Sequence[Item],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
    ) -> Sequence[Sequence[CompletionLike]]: ...


@runtime_checkable
class Scorer(Protocol):
    """Something that scores: bias-corrected rewards for (item, summary text) pairs (references average 0)."""

    def score(self, pairs: Sequence[tuple[Item, str]]) -> Sequence[float]: ...


def item_for(record: TldrPost | NewsArticle | PostInfo) -> dict[str, str]:
    """The API item for a dataset record: a post's ``subreddit``/``title``/``post``, or a news article's ``text``."""
    if isinstance(record, NewsArticle):
        return {"text": record.article}
    return {"subreddit": record.subreddit, "title": record.title, "post": record.post}


def check_summarizer(name: str, obj: Any) -> None:
    """Fail early, naming the policy, when an object cannot summarize."""
    if not callable(getattr(obj, "summarize", None)):
        raise TypeError(f"policy {name!r}: {type(obj).__name__} has no summarize() method; pass a Summarizer")


def check_scorer(obj: Any) -> None:
    if not callable(getattr(obj, "score", None)):
        raise TypeError(f"the reward judge needs a Scorer with score(pairs); got {type(obj).__name__}")
