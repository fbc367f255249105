"""The summarization task as the paper defines it: query formats, truncation to a token budget, responses.

Imports no torch and no tokenizer library: token counts come in as a plain callable (``count_tokens(text) -> int``),
so the service, the evals and the trainers share one definition of what the model sees.

Query formats (Stiennon et al. 2020, App. A / Huang et al. 2024 "N+ details"):

    TL;DR:  "SUBREDDIT: r/{subreddit}\\n\\nTITLE: {title}\\n\\nPOST: {post}\\n\\nTL;DR:"
    news:   "{article}\\n\\nTL;DR:"

Truncation: while the formatted query is over the budget, cut the post (article) at its last "\\n"; when no newline is
left, cut one character at a time. A query that is over budget with an empty post (the title alone overflows) is an
error, never a silently mangled query.

Responses start with a space (they follow "TL;DR:"), end at the first EOS, and padding uses a separate [PAD] token:
padding with EOS would make "stop here" and "nothing here" the same token, which breaks EOS-based reward reading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

TLDR_TEMPLATE = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
NEWS_TEMPLATE = "{article}\n\nTL;DR:"
TASK_FORMATS = ("tldr", "news")

# Paper budgets: 512 query tokens, 48 response tokens (53 in the N+ recipe).
DEFAULT_MAX_QUERY_TOKENS = 512
DEFAULT_MAX_RESPONSE_TOKENS = 48

CountTokens = Callable[[str], int]


class QueryTooLong(ValueError):
    """The fixed part of a query (subreddit + title + template) alone exceeds the token budget."""


@dataclass(frozen=True, slots=True)
class Query:
    """A formatted query and what truncation did to it."""

    text: str
    n_tokens: int
    truncated: bool
    chars_removed: int


def format_tldr(subreddit: str, title: str, post: str) -> str:
    """The paper's TL;DR query; a leading "r/" on the subreddit is not doubled."""
    sub = subreddit[2:] if subreddit.startswith("r/") else subreddit
    return TLDR_TEMPLATE.format(subreddit=sub, title=title.strip(), post=post.strip())


def format_news(article: str) -> str:
    """The paper's CNN/DM transfer query: the article, then "TL;DR:"."""
    return NEWS_TEMPLATE.format(article=article.strip())


def _cut_once(body: str) -> str:
    """One truncation step: drop everything from the last newline on; one character when there is none."""
    i = body.rfind("\n")
    return body[:i] if i >= 0 else body[:-1]


def _truncate(render: Callable[[str], str], body: str, budget: int, count: CountTokens, what: str) -> Query:
    if budget <= 0:
        raise ValueError(f"max query tokens must be positive, got {budget}")
    text = render(body)
    n = count(text)
    if n <= budget:
        return Query(text, n, False, 0)
    empty = count(render(""))
    if empty > budget:
        raise QueryTooLong(
            f"the {what} alone is {empty} tokens, over the query budget of {budget} tokens even with an empty "
            f"body; shorten it or raise max_query_tokens"
        )
    original = len(body)
    while n > budget:
        body = _cut_once(body).rstrip()
        text = render(body)
        n = count(text)
    return Query(text, n, True, original - len(body))


def tldr_query(subreddit: str, title: str, post: str, *, max_tokens: int, count_tokens: CountTokens) -> Query:
    """Format a TL;DR query and truncate its post to ``max_tokens`` the paper's way."""
    post = post.strip()
    return _truncate(
        lambda body: format_tldr(subreddit, title, body), post, max_tokens, count_tokens, "subreddit and title"
    )


def news_query(article: str, *, max_tokens: int, count_tokens: CountTokens) -> Query:
    """Format a news-transfer query and truncate its article to ``max_tokens`` the paper's way."""
    return _truncate(format_news, article.strip(), max_tokens, count_tokens, '"TL;DR:" suffix')


# --------------------------------------------------------------------------------------------------- responses


def check_special_ids(eos_id: int | None, pad_id: int | None) -> None:
    """[PAD] must exist and differ from EOS (padding with EOS would hide where a response really ends)."""
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token; responses must end with one")
    if pad_id is None:
        raise ValueError("the tokenizer has no [PAD] token; add a separate one (never reuse EOS as padding)")
    if eos_id == pad_id:
        raise ValueError(f"EOS and [PAD] are the same id ({eos_id}); add a separate [PAD] token")


def reference_response(summary: str) -> str:
    """A reference summary as a response: exactly one leading space (it follows "TL;DR:"), no trailing whitespace."""
    text = " ".join(summary.split())
    if not text:
        raise ValueError("empty summary")
    return " " + text


def truncate_at_eos(token_ids: Sequence[int], eos_id: int, pad_id: int) -> tuple[list[int], bool]:
    """Cut a generated response after its first EOS and pad the rest.

    Returns ``(ids, found_eos)`` with ``len(ids) == len(token_ids)``: everything after the first EOS becomes ``pad_id``
    (the EOS itself is kept, it is where the reward model reads its score).
    """
    check_special_ids(eos_id, pad_id)
    ids = list(token_ids)
    for i, t in enumerate(ids):
        if t == eos_id:
            return ids[: i + 1] + [pad_id] * (len(ids) - i - 1), True
    return ids, False


def response_tokens(token_ids: Sequence[int], eos_id: int, pad_id: int) -> list[int]:
    """The content tokens of a response: up to (not including) the first EOS, with any [PAD] removed."""
    check_special_ids(eos_id, pad_id)
    out: list[int] = []
    for t in token_ids:
        if t == eos_id:
            break
        if t != pad_id:
            out.append(t)
    return out


def clean_summary(decoded: str) -> str:
    """A decoded response as a public-format summary text: one leading space, whitespace collapsed."""
    text = " ".join(decoded.split())
    return " " + text if text else ""
