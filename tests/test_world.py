"""The offline world generator: determinism, public formats, and the properties training relies on (tiny size)."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from training.data import load_cnndm, load_tldr, validate_file
from training.world import DOC_SEPARATOR, SIZES, synth
from training.world.common import n_tokens, n_words

SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "seed0"
    synth(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="session")
def posts(world):
    return {split: load_tldr(world / "tldr" / f"{split}.jsonl") for split in SPLITS}


@pytest.fixture(scope="session")
def frames(world) -> dict[str, dict]:
    with open(world / "frames.jsonl", encoding="utf-8") as f:
        return {d["id"]: d for d in map(json.loads, f)}


def _all_posts(posts):
    return [p for split in SPLITS for p in posts[split]]


def test_same_seed_gives_identical_bytes(world, tmp_path):
    summary = synth(tmp_path / "again", seed=0, size="tiny")
    assert len(summary["files"]) == 8
    for rel in summary["files"]:
        assert (tmp_path / "again" / rel).read_bytes() == (world / rel).read_bytes(), rel


def test_different_seed_gives_a_different_world(world, tmp_path):
    synth(tmp_path / "other", seed=1, size="tiny")
    for rel in ("tldr/train.jsonl", "tldr/test.jsonl", "news/test.jsonl", "pretrain.txt", "frames.jsonl"):
        assert (tmp_path / "other" / rel).read_bytes() != (world / rel).read_bytes(), rel
    ids0 = {p.id for p in load_tldr(world / "tldr" / "test.jsonl")}
    ids1 = {p.id for p in load_tldr(tmp_path / "other" / "tldr" / "test.jsonl")}
    assert len(ids0 & ids1) == 0


def test_every_file_validates_in_its_public_format(world):
    spec = SIZES["tiny"]
    expected = {
        "tldr/train": spec.train,
        "tldr/valid": spec.valid,
        "tldr/test": spec.test,
        "news/valid": spec.news_valid,
        "news/test": spec.news_test,
    }
    for name, n in expected.items():
        fmt = "tldr" if name.startswith("tldr") else "cnndm"
        result = validate_file(world / f"{name}.jsonl", fmt)
        assert result.problems == [], result.problems[:3]
        assert len(result.records) == n
    meta = json.loads((world / "world.json").read_text())
    assert meta["seed"] == 0 and meta["size"] == "tiny"


def test_ids_look_like_reddit_and_are_unique(posts, world):
    ids = [p.id for p in _all_posts(posts)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("t3_") and len(i) == 10 for i in ids)
    news_ids = [a.id for s in ("valid", "test") for a in load_cnndm(world / "news" / f"{s}.jsonl")]
    assert len(set(news_ids)) == len(news_ids) and all(len(i) == 40 for i in news_ids)


def test_frames_cover_every_post_and_article_once(world, posts, frames):
    expected = {p.id: f"tldr/{split}.jsonl" for split in SPLITS for p in posts[split]}
    for split in ("valid", "test"):
        expected |= {a.id: f"news/{split}.jsonl" for a in load_cnndm(world / "news" / f"{split}.jsonl")}
    assert len(frames) == len(expected)
    assert {i: d["file"] for i, d in frames.items()} == expected
    kinds = Counter(d["kind"] for d in frames.values())
    assert kinds == {"post": len(_all_posts(posts)), "article": len(expected) - len(_all_posts(posts))}


def test_at_least_ten_subreddits_with_their_own_schemas(posts, frames):
    all_posts = _all_posts(posts)
    subs = Counter(p.subreddit for p in all_posts)
    assert len(subs) >= 10
    assert min(subs.values()) >= 15  # every subreddit is really present, not a one-off
    slots = defaultdict(set)
    for p in all_posts:
        slots[p.subreddit] |= {f["slot"] for f in frames[p.id]["facts"]}
    # Schemas differ: no two subreddits share the same set of fact slots.
    assert len({frozenset(s) for s in slots.values()}) == len(slots)


def test_posts_have_three_to_six_key_facts_and_ask_their_question(posts, frames):
    for p in _all_posts(posts):
        fr = frames[p.id]
        assert 3 <= len(fr["facts"]) <= 6
        assert fr["question"]["text"].lower() in (p.title + " " + p.post).lower()
        assert fr["distractors"], "every post has at least one distractor"
        for f in fr["facts"]:
            assert f["phrase"] in p.post  # the fact is stated in the post, verbatim
            assert f["phrase"] == f["forms"][0]
            assert f["wrong_forms"], f
        for d in fr["distractors"]:
            assert d["phrase"] in p.post


def test_post_and_article_lengths(posts, world):
    words = [n_words(p.post) for p in _all_posts(posts)]
    assert min(words) >= 60 and max(words) <= 200
    articles = [a for s in ("valid", "test") for a in load_cnndm(world / "news" / f"{s}.jsonl")]
    ratio = statistics.median(n_words(a.article) for a in articles) / statistics.median(words)
    assert 1.6 <= ratio <= 3.0


def test_reference_lengths_are_24_to_48_tokens_for_the_large_majority(posts):
    lengths = [n_tokens(p.summary) for p in _all_posts(posts)]
    inside = sum(24 <= n <= 48 for n in lengths) / len(lengths)
    assert inside >= 0.97, inside  # measured 0.999 at tiny and default size
    assert max(lengths) <= 48 and min(lengths) >= 18


def test_reference_fact_phrases_are_copied_verbatim_from_the_post(posts, frames):
    stated = 0
    for p in _all_posts(posts):
        fr = frames[p.id]
        by_slot = {f["slot"]: f for f in fr["facts"]}
        assert fr["reference"]["facts"], "every reference states at least one fact"
        for slot in fr["reference"]["facts"]:
            phrase = by_slot[slot]["phrase"]
            assert phrase in p.summary and phrase in p.post, (phrase, p.summary)
            stated += 1
        # Facts the reference leaves out are really absent from it.
        for slot, f in by_slot.items():
            if slot not in fr["reference"]["facts"]:
                assert f["phrase"] not in p.summary
    assert stated >= 2.5 * len(_all_posts(posts))


def test_references_have_human_imperfections(posts, frames):
    all_posts = _all_posts(posts)
    styles = Counter(frames[p.id]["reference"]["style"] for p in all_posts)
    assert set(styles) == {"full", "partial", "no_question", "jokey", "vague"}
    assert 0.35 <= styles["full"] / len(all_posts) <= 0.65
    complete = sum(
        len(frames[p.id]["reference"]["facts"]) == len(frames[p.id]["facts"]) and frames[p.id]["reference"]["question"]
        for p in all_posts
    )
    assert 0.2 <= complete / len(all_posts) <= 0.8  # good but beatable


def test_fact_values_vary_so_copying_beats_memorising(posts, frames):
    values = defaultdict(list)
    for p in _all_posts(posts):
        for f in frames[p.id]["facts"]:
            values[(p.subreddit, f["slot"])].append(f["value"])
    checked = 0
    for key, vals in values.items():
        if len(vals) >= 30:
            checked += 1
            top = Counter(vals).most_common(1)[0][1]
            assert top / len(vals) < 0.5, (key, Counter(vals).most_common(3))  # Windows 7/8/10/11 is the smallest
            assert len(set(vals)) >= 4, key
    assert checked >= 15


def test_news_highlights_restate_article_phrases(world, frames):
    for split in ("valid", "test"):
        for a in load_cnndm(world / "news" / f"{split}.jsonl"):
            fr = frames[a.id]
            lines = a.highlights.split("\n")
            assert 1 <= len(lines) <= 4 and all(line.endswith(".") for line in lines)
            by_slot = {f["slot"]: f for f in fr["facts"]}
            assert 4 <= len(by_slot) <= 7
            for slot in fr["reference"]["facts"]:
                assert by_slot[slot]["phrase"] in a.highlights and by_slot[slot]["phrase"] in a.article
            assert fr["question"] is None


def test_pretrain_corpus_is_copy_rich_and_excludes_eval_posts(world, posts):
    text = (world / "pretrain.txt").read_text(encoding="utf-8")
    docs = [d for d in text.split(DOC_SEPARATOR) if d.strip()]
    assert len(docs) == SIZES["tiny"].pretrain_docs
    with_tldr = sum("TL;DR:" in d for d in docs) / len(docs)
    assert 0.08 <= with_tldr <= 0.4  # "now and then"
    assert sum(d.count("\nA: ") > 0 for d in docs) >= 0.05 * len(docs)  # Q/A lines
    assert sum("\n> " in d for d in docs) >= 0.05 * len(docs)  # quoting replies
    for split in ("valid", "test"):
        for p in posts[split]:
            assert p.post not in text


def test_synth_rejects_unknown_size_and_bad_seed(tmp_path):
    with pytest.raises(ValueError, match="unknown world size"):
        synth(tmp_path, seed=0, size="huge")
    with pytest.raises(ValueError, match="seed"):
        synth(tmp_path, seed=-1, size="tiny")
