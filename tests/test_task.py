"""Query formats, the paper's truncation, and response post-processing, on hand-made posts.

Token counts use simple, hand-checkable counters (characters, UTF-8 bytes, words) so every expected value below is
computed by hand; one test uses a real trained BPE tokenizer.
"""

import pytest

from training.task import (
    QueryTooLong,
    check_special_ids,
    clean_summary,
    format_news,
    format_tldr,
    news_query,
    reference_response,
    response_tokens,
    tldr_query,
    truncate_at_eos,
)


def chars(text: str) -> int:
    return len(text)


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def test_tldr_format_is_the_papers():
    assert format_tldr("relationships", "Title here", "Body") == (
        "SUBREDDIT: r/relationships\n\nTITLE: Title here\n\nPOST: Body\n\nTL;DR:"
    )
    # "r/" is not doubled when the data already carries it
    assert format_tldr("r/pets", "T", "B").startswith("SUBREDDIT: r/pets\n\n")


def test_news_format_is_the_papers():
    assert format_news("An article.\nSecond line.") == "An article.\nSecond line.\n\nTL;DR:"


# "SUBREDDIT: r/test"(17) + "\n\n"(2) + "TITLE: T"(8) + "\n\n"(2) + "POST: "(6) + post + "\n\nTL;DR:"(8)
# = 43 + len(post)
FIXED = 43


@pytest.mark.parametrize(
    ("budget", "post_after", "truncated"),
    [
        (48, "a\nb\nc", False),  # exactly at budget: untouched
        (47, "a\nb", True),  # one over: cut at the last newline
        (46, "a\nb", True),
        (45, "a", True),  # two newline cuts
        (44, "a", True),
        (43, "", True),  # no newline left: one character at a time
    ],
)
def test_truncation_cuts_at_last_newline_then_characters(budget, post_after, truncated):
    q = tldr_query("test", "T", "a\nb\nc", max_tokens=budget, count_tokens=chars)
    assert q.text == f"SUBREDDIT: r/test\n\nTITLE: T\n\nPOST: {post_after}\n\nTL;DR:"
    assert q.n_tokens == FIXED + len(post_after) <= budget
    assert q.truncated is truncated
    assert q.chars_removed == 5 - len(post_after)


def test_title_alone_over_budget_is_an_error_that_says_so():
    with pytest.raises(QueryTooLong, match=r"subreddit and title alone is 43 tokens.*budget of 42"):
        tldr_query("test", "T", "a\nb\nc", max_tokens=42, count_tokens=chars)


def test_no_newline_cuts_one_character_at_a_time():
    post = "one two three four"  # 18 chars, no newline
    q = tldr_query("test", "T", post, max_tokens=FIXED + 10, count_tokens=chars)
    # 10 characters survive: "one two th"
    assert q.text.endswith("POST: one two th\n\nTL;DR:")
    assert q.n_tokens == FIXED + 10


def test_unicode_is_cut_by_character_never_inside_one():
    # fixed part for subreddit "x", title "t": 14 + 2 + 8 + 2 + 6 + 8 = 40 bytes; post is 18 bytes
    post = "héllo wörld 😀"
    assert utf8_bytes(post) == 18
    q = tldr_query("x", "t", post, max_tokens=58, count_tokens=utf8_bytes)
    assert not q.truncated and q.n_tokens == 58
    q = tldr_query("x", "t", post, max_tokens=57, count_tokens=utf8_bytes)
    # dropping the emoji (4 bytes) and then the trailing space leaves 13 bytes: 53 <= 57
    assert q.text.endswith("POST: héllo wörld\n\nTL;DR:")
    assert q.n_tokens == 53
    q.text.encode("utf-8")  # still valid text


def test_several_newlines_keep_the_longest_prefix_of_whole_lines():
    post = "line one\nline two\nline three\nline four"
    count = lambda t: len(t.split())  # noqa: E731 - words, as a simple token proxy
    fixed = count(format_tldr("s", "a title", ""))  # "SUBREDDIT:", "r/s", "TITLE:", "a", "title", "POST:", "TL;DR:" = 7
    assert fixed == 7
    q = tldr_query("s", "a title", post, max_tokens=fixed + 5, count_tokens=count)
    assert q.text.endswith("POST: line one\nline two\n\nTL;DR:")  # 4 words fit, adding "line three" would be 6
    assert q.n_tokens == fixed + 4


def test_news_truncation_cuts_the_article():
    article = "First paragraph.\nSecond paragraph.\nThird."
    q = news_query(article, max_tokens=len("First paragraph.\nSecond paragraph.\n\nTL;DR:"), count_tokens=chars)
    assert q.text == "First paragraph.\nSecond paragraph.\n\nTL;DR:"
    with pytest.raises(QueryTooLong):
        news_query(article, max_tokens=len("\n\nTL;DR:") - 1, count_tokens=chars)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        tldr_query("s", "t", "p", max_tokens=0, count_tokens=chars)


def test_truncation_with_a_real_bpe_tokenizer(tiny_tokenizer):
    from training.tokenizer import token_counter

    count = token_counter(tiny_tokenizer)
    lines = [f"Sentence number {i} of a long post about my dog and my landlord." for i in range(60)]
    post = "\n".join(lines)
    budget = 200
    q = tldr_query("pets", "My dog", post, max_tokens=budget, count_tokens=count)
    assert q.truncated and q.n_tokens == count(q.text) <= budget
    kept = q.text.split("POST: ", 1)[1].rsplit("\n\nTL;DR:", 1)[0]
    assert post.startswith(kept)
    n_kept = kept.count("\n") + 1
    # maximal: one more whole line would have gone over the budget
    longer = format_tldr("pets", "My dog", "\n".join(lines[: n_kept + 1]))
    assert count(longer) > budget


# --------------------------------------------------------------------------------------------------- responses

EOS, PAD = 1, 0


def test_truncate_at_eos_keeps_eos_and_pads_after():
    assert truncate_at_eos([5, 6, EOS, 7, EOS], EOS, PAD) == ([5, 6, EOS, PAD, PAD], True)
    assert truncate_at_eos([EOS, 7], EOS, PAD) == ([EOS, PAD], True)
    assert truncate_at_eos([5, 6, 7], EOS, PAD) == ([5, 6, 7], False)
    assert truncate_at_eos([], EOS, PAD) == ([], False)


def test_response_tokens_stop_before_eos_and_drop_pad():
    assert response_tokens([5, PAD, 6, EOS, 7], EOS, PAD) == [5, 6]
    assert response_tokens([5, 6], EOS, PAD) == [5, 6]


def test_pad_must_differ_from_eos():
    with pytest.raises(ValueError, match="same id"):
        check_special_ids(3, 3)
    with pytest.raises(ValueError, match="no \\[PAD\\]"):
        check_special_ids(3, None)
    with pytest.raises(ValueError, match="no EOS"):
        check_special_ids(None, 0)
    with pytest.raises(ValueError):
        truncate_at_eos([1, 2], 2, 2)


def test_reference_response_has_one_leading_space():
    assert reference_response("  my dog ate   my homework \n") == " my dog ate my homework"
    assert reference_response(" already spaced") == " already spaced"
    with pytest.raises(ValueError):
        reference_response("   ")


def test_clean_summary():
    assert clean_summary("my  dog\nate it ") == " my dog ate it"
    assert clean_summary("   ") == ""
