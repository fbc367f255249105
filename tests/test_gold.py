"""The world's judges: the gold quality function, the simulated labelers, baselines and world statistics (tiny)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from evals.baselines import lead3_article, lead_k, split_sentences
from evals.gold import Frame, frame_summary, gold_axes, gold_score, likert, load_frames
from evals.labelers import LabelerPool, info_for, pairwise_agreement
from evals.world_stats import compute_stats, corrupt_fact, drop_fact, repeat_text
from training.data import Summary, load_cnndm, load_tldr, validate_file, write_jsonl
from training.world import synth

HEDGES = (
    " What should I do?",
    " Need advice. What should I do?",
    " lol this is a mess, send help.",
    " Long story, I have a problem and need some advice.",
    " Things are complicated right now and I'm not sure how to handle it.",
)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world-gold")
    synth(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="session")
def frames(world) -> dict[str, Frame]:
    return load_frames(world / "frames.jsonl")


@pytest.fixture(scope="session")
def posts(world):
    return [p for s in ("train", "valid", "test") for p in load_tldr(world / "tldr" / f"{s}.jsonl")]


@pytest.fixture(scope="session")
def articles(world):
    return [a for s in ("valid", "test") for a in load_cnndm(world / "news" / f"{s}.jsonl")]


def test_sources_and_references_are_consistent_with_their_frames(posts, articles, frames):
    for p in posts:
        fr = frames[p.id]
        g_post = gold_axes(fr, p.post)
        assert g_post.contradicted == () and g_post.invented == ()  # copying anything from the post is never wrong
        assert set(g_post.stated) == {f.slot for f in fr.facts}
        g_ref = gold_axes(fr, " " + p.summary)
        assert g_ref.contradicted == () and g_ref.invented == (), p.summary
        assert set(g_ref.stated) == set(fr.reference["facts"])
        assert g_ref.question_stated == fr.reference["question"]
    for a in articles:
        fr = frames[a.id]
        g = gold_axes(fr, a.highlights)
        assert g.contradicted == () and g.invented == () and g.question_stated is None
        assert gold_axes(fr, a.article).contradicted == ()


def test_stating_the_facts_beats_hedging_vague_and_jokey_summaries(posts, frames):
    for p in posts:
        fr = frames[p.id]
        full = gold_axes(fr, frame_summary(fr))
        assert full.overall >= 0.85 and full.likert_overall >= 6
        facts_only = gold_axes(fr, frame_summary(fr, question=False))
        for hedge in HEDGES:
            h = gold_axes(fr, hedge)
            assert h.coverage == 0.0, hedge
            assert full.overall - h.overall >= 0.6
            assert full.likert_overall - h.likert_overall >= 4
            assert facts_only.overall > h.overall + 0.4  # even without the question, facts win
        # The question is a key element too.
        assert full.overall > facts_only.overall


def test_a_policy_that_states_everything_beats_the_average_reference(posts, frames):
    full = [gold_score(frames[p.id], frame_summary(frames[p.id])) for p in posts]
    refs = [gold_score(frames[p.id], " " + p.summary) for p in posts]
    assert sum(full) / len(full) > sum(refs) / len(refs) + 0.08
    assert sum(f > r for f, r in zip(full, refs, strict=True)) / len(posts) >= 0.4


def _replace_with_wrong(fr: Frame, text: str, i: int) -> str:
    fact = fr.facts[i]
    return text.replace(fact.phrase, fact.wrong_forms[0], 1)


def test_a_wrong_fact_scores_below_leaving_it_out(posts, frames):
    n = 0
    for p in posts:
        fr = frames[p.id]
        for i, fact in enumerate(fr.facts):
            others = [f.slot for f in fr.facts if f.slot != fact.slot]
            omitted = gold_axes(fr, frame_summary(fr, others))
            wrong = gold_axes(fr, _replace_with_wrong(fr, frame_summary(fr), i))
            assert fact.slot in wrong.contradicted
            assert omitted.accuracy == 1.0 and wrong.accuracy <= 0.5
            assert wrong.overall < omitted.overall - 0.1, (fact.slot, wrong, omitted)
            n += 1
    assert n > 3 * len(posts)


def test_number_corruptions_are_caught_without_a_listed_wrong_form(posts, frames):
    rng = random.Random(0)
    caught = total = 0
    for p in posts:
        fr = frames[p.id]
        ref = " " + p.summary
        corrupted, dropped = corrupt_fact(fr, ref, rng), drop_fact(fr, ref, rng)
        if corrupted is not None:
            total += 1
            caught += gold_axes(fr, corrupted).accuracy < gold_axes(fr, ref).accuracy
            if dropped is not None:
                assert gold_score(fr, corrupted) < gold_score(fr, dropped)
    assert total > 0.9 * len(posts) and caught / total >= 0.98


def test_word_boundaries_and_case(frames, posts):
    fr = frames[posts[0].id]
    fact = next(f for f in fr.facts if f.kind == "num")
    shouting = " " + fact.phrase.upper() + "."
    assert fact.slot in gold_axes(fr, shouting).stated  # case-insensitive
    glued = " " + fact.phrase + "0."  # "...3 years" -> "...3 years0" is not the fact
    assert fact.slot not in gold_axes(fr, glued).stated


def test_repetition_and_truncated_endings_lower_coherence(posts, frames):
    for p in posts[:300]:
        fr = frames[p.id]
        good = frame_summary(fr)
        g = gold_axes(fr, good)
        repeated = gold_axes(fr, good + good)
        assert repeated.coherence < g.coherence - 0.3 and repeated.overall < g.overall
        looped = gold_axes(fr, repeat_text(" " + p.summary))
        assert looped.coherence < gold_axes(fr, " " + p.summary).coherence
        words = good.split()
        truncated = gold_axes(fr, " ".join(words[: max(2, len(words) // 2)]) + " and the")
        assert truncated.coherence <= g.coherence - 0.45
        no_stop = gold_axes(fr, good.rstrip("?.!"))
        assert no_stop.coherence < g.coherence and no_stop.overall < g.overall


def test_garbage_and_invented_entities_are_penalised(posts, frames):
    fr = frames[posts[1].id]
    good = frame_summary(fr)
    g = gold_axes(fr, good)
    assert gold_axes(fr, good + " @@ ~~ ^^ ## <<").coherence < g.coherence - 0.2
    invented = gold_axes(fr, good + " Also Zorblat owes me 987654.")
    assert invented.invented == ("zorblat", "987654") and invented.accuracy == 0.5
    assert invented.overall < g.overall
    assert gold_axes(fr, "").overall <= 0.1


def test_likert_axes_are_integers_from_1_to_7(posts, frames):
    assert (likert(0.0), likert(0.5), likert(1.0), likert(-3), likert(9)) == (1, 4, 7, 1, 7)
    for p in posts[:100]:
        for text in (" " + p.summary, HEDGES[0], p.post):
            axes = gold_axes(frames[p.id], text).axes()
            for v in (axes.overall, axes.accuracy, axes.coverage, axes.coherence):
                assert isinstance(v, int) and 1 <= v <= 7


def test_world_stats_meet_the_targets_on_tiny(world):
    s = compute_stats(world)
    assert s["n_posts"] == 900 and s["n_articles"] == 120 and s["n_subreddits"] >= 10
    for key in ("post_tokens_median", "article_tokens_median", "reference_tokens_median"):
        assert s[key] > 0
    assert 24 <= s["reference_tokens_median"] <= 48
    assert 0.65 <= s["labeler_agreement"] <= 0.85  # the paper: 72-77%
    assert s["gold_ref_vs_lead2"] >= 0.6
    assert s["corruption_detected"] >= 0.95
    assert 0.0 <= s["gold_lead3_vs_highlights"] <= 1.0
    assert s["gold_all_facts_mean"] > s["gold_reference_mean"] > s["gold_lead2_mean"]


def test_labeler_pool_is_seeded_and_varied():
    a, b, c = LabelerPool(), LabelerPool(), LabelerPool(seed=1)
    assert len(a) == 8 and [lab.id for lab in a.labelers] == [f"sim-{i}" for i in range(8)]
    assert a.labelers == b.labelers and a.labelers != c.labelers
    assert len({lab.temperature for lab in a.labelers}) == 8
    assert a["sim-3"] is a[3]
    with pytest.raises(KeyError):
        a["sim-99"]


def test_labelers_prefer_the_better_summary_and_confidence_tracks_the_margin(posts, frames):
    pool = LabelerPool()
    rng = random.Random(0)
    clear_wins = clear_n = 0
    conf_clear, conf_close = [], []
    for p in posts[:200]:
        fr = frames[p.id]
        good, hedge = frame_summary(fr), HEDGES[0]
        for c in pool.choose_all(fr, good, hedge, rng):
            clear_wins += c.choice == 0
            clear_n += 1
            conf_clear.append(c.confidence)
        for c in pool.choose_all(fr, good, " " + good.strip() + " ", rng):  # the same summary twice: a coin flip
            conf_close.append(c.confidence)
            assert c.p_first == pytest.approx(0.5)
    assert clear_wins / clear_n >= 0.9
    assert all(1 <= x <= 9 for x in conf_clear + conf_close)
    assert sum(conf_clear) / len(conf_clear) > sum(conf_close) / len(conf_close) + 2


def test_labeler_records_validate_as_public_comparisons_and_axis_evals(posts, articles, frames, tmp_path):
    pool = LabelerPool()
    rng = random.Random(1)
    comparisons, evals_ = [], []
    for p in posts[:40]:
        fr, info = frames[p.id], info_for(p)
        ref = Summary(" " + p.summary, "ref")
        lead = Summary(lead_k(p.post, 2), "lead2")
        comparisons.append(pool.compare(fr, info, ref, lead, split="train", batch="b0", rng=rng))
        evals_.append(pool.rate(fr, info, ref, split="valid", batch="b0", labeler="sim-2", rng=rng))
    for a in articles[:10]:
        fr, info = frames[a.id], info_for(a)
        comparisons.append(
            pool.compare(
                fr,
                info,
                Summary(" " + a.highlights, "ref"),
                Summary(lead3_article(a), "lead3"),
                split="valid1",
                rng=rng,
            )
        )
    write_jsonl(tmp_path / "comparisons.jsonl", comparisons)
    write_jsonl(tmp_path / "axis.jsonl", evals_)
    cmp = validate_file(tmp_path / "comparisons.jsonl", "comparisons")
    axis = validate_file(tmp_path / "axis.jsonl", "axis")
    assert cmp.problems == [] and axis.problems == []
    assert len(cmp.records) == 50 and len(axis.records) == 40
    assert {r.worker for r in cmp.records} <= {f"sim-{i}" for i in range(8)}
    assert all(1 <= r.confidence <= 9 for r in cmp.records)
    assert all(r.worker == "sim-2" for r in axis.records)
    assert sum(r.choice == 0 for r in cmp.records[:40]) >= 30  # references usually beat lead-2
    with pytest.raises(ValueError, match="frame"):
        pool.compare(frames[posts[0].id], info_for(posts[1]), ref, lead)


def test_pairwise_agreement():
    assert pairwise_agreement([0, 0, 0, 0]) == 1.0
    assert pairwise_agreement([0, 1]) == 0.0
    assert pairwise_agreement([0, 0, 1, 1]) == pytest.approx(2 / 6)


def test_lead_baselines():
    text = 'First one. "Quoted second!" said Ann.\n\nThird? Fourth costs $2.4 million. Fifth'
    assert split_sentences(text) == [
        "First one.",
        '"Quoted second!" said Ann.',
        "Third?",
        "Fourth costs $2.4 million.",
        "Fifth",
    ]
    assert lead_k(text, 2) == ' First one. "Quoted second!" said Ann.'
    with pytest.raises(ValueError):
        lead_k(text, 0)


def test_generator_and_judge_normalise_text_alike():
    from evals.gold import norm as judge_norm
    from training.world.frames import norm as gen_norm

    for s in (
        "My boyfriend (27M) of 3 years",
        "$1,200 a month in rent, 75 minute commute.",
        "2.4 GPA; 3-1 win",
        "I [25F] can't!",
        "Edit: 140,000 miles",
    ):
        assert gen_norm(s) == judge_norm(s)


def test_load_frames_names_the_bad_line(tmp_path):
    path = tmp_path / "frames.jsonl"
    path.write_text('{"id": "x", "facts": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"frames.jsonl:1"):
        load_frames(path)
