"""The statistics of the eval report against known values: planted effects, hand counts, textbook intervals."""

import json
import math
import random

import pytest

from evals.lc import (
    PrefRow,
    RatingRow,
    length_controlled_overall,
    length_controlled_preference,
)
from evals.report import win_rates
from evals.stats import wilson_interval
from training.data import load_comparisons

# Planted world: logit P(policy preferred) = ALPHA[p] + BETA * log(len ratio); the policies differ in length, so the
# raw rate mixes quality with length while the length-controlled value at ratio 0 is sigmoid(ALPHA[p]).
ALPHA = {"pretrained": -1.2, "sft": -0.3, "ppo": 0.4}
LOG_RATIO_MEAN = {"pretrained": -0.4, "sft": 0.0, "ppo": 0.45}
BETA = 1.5
SEEDS = 200
PER_POLICY = 120


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _simulate(seed):
    rng = random.Random(f"planted/{seed}")
    rows = []
    for p, a in ALPHA.items():
        for _ in range(PER_POLICY):
            x = rng.gauss(LOG_RATIO_MEAN[p], 0.35)
            rows.append(PrefRow(p, int(rng.random() < _sigmoid(a + BETA * x)), x))
    return rows


def test_length_controlled_intervals_cover_the_planted_values_in_about_95_percent_of_seeds():
    covered = raw_covered = total = 0
    slopes = []
    for seed in range(SEEDS):
        rows = _simulate(seed)
        fit = length_controlled_preference(rows)
        raw = {p: sum(r.preferred for r in rows if r.policy == p) for p in ALPHA}
        slopes.append(fit.slope)
        for p, a in ALPHA.items():
            truth = _sigmoid(a)
            lo, hi = fit.ci[p]
            assert lo <= fit.values[p] <= hi
            covered += lo <= truth <= hi
            rlo, rhi = wilson_interval(raw[p], PER_POLICY)
            raw_covered += rlo <= truth <= rhi
            total += 1
    coverage, raw_coverage = covered / total, raw_covered / total
    msg = f"measured coverage {coverage:.3f} of {total} intervals ({SEEDS} seeds); raw Wilson {raw_coverage:.3f}"
    print(msg)
    # 600 intervals: binomial sd ~0.009 around 0.95; the bounds are ~4 sd wide, with room for small-n logit bias.
    assert 0.91 <= coverage <= 0.985, msg
    # The planted length effect is real: raw rates miss the controlled values far more often.
    assert raw_coverage < 0.6, msg
    assert abs(sum(slopes) / len(slopes) - BETA) < 0.1, f"mean slope {sum(slopes) / len(slopes):.3f} vs {BETA}"


def test_without_a_length_spread_the_controlled_value_is_the_raw_rate():
    # Policy dummies only: the logit's fitted probability per policy is its observed share (score equations).
    rows = [PrefRow("a", y, 0.0) for y in (1, 1, 0, 0, 0)] + [PrefRow("b", y, 0.0) for y in (1, 1, 1, 0)]
    fit = length_controlled_preference(rows)
    assert fit.slope is None and any("no spread" in n for n in fit.notes)
    assert fit.values["a"] == pytest.approx(2 / 5, abs=1e-6)
    assert fit.values["b"] == pytest.approx(3 / 4, abs=1e-6)


def test_a_policy_that_always_loses_gets_no_estimate_and_the_others_still_do():
    rng = random.Random(0)
    rows = [PrefRow("bad", 0, rng.gauss(0, 0.3)) for _ in range(30)]
    rows += [PrefRow("ok", int(rng.random() < 0.5), rng.gauss(0, 0.3)) for _ in range(60)]
    fit = length_controlled_preference(rows)
    assert fit.values["bad"] is None and fit.ci["bad"] is None
    assert any("bad: all 30 judgments went one way (lost)" in n for n in fit.notes)
    assert 0.2 < fit.values["ok"] < 0.8


def test_news_ols_recovers_planted_ratings_at_the_reference_length():
    # overall = A[p] + B * log_chars + N(0, 0.5); at the reference's mean log length m the truth is A[p] + B * m.
    A, B, MU = {"ref": 1.0, "lead3": 0.2, "ppo": 0.6}, 0.9, {"ref": 4.8, "lead3": 5.2, "ppo": 5.0}
    covered = total = 0
    for seed in range(100):
        rng = random.Random(f"news/{seed}")
        rows = []
        for p, a in A.items():
            for _ in range(60):
                x = rng.gauss(MU[p], 0.25)
                rows.append(RatingRow(p, a + B * x + rng.gauss(0, 0.5), x))
        fit = length_controlled_overall(rows)
        m = sum(r.log_chars for r in rows if r.policy == "ref") / 60
        ref_mean = sum(r.overall for r in rows if r.policy == "ref") / 60
        # At its own mean length the reference's prediction is exactly its mean rating (OLS passes through it).
        assert fit.values["ref"] == pytest.approx(ref_mean, abs=1e-9)
        for p, a in A.items():
            lo, hi = fit.ci[p]
            covered += lo <= a + B * m <= hi
            total += 1
    assert 0.9 <= covered / total <= 0.99, f"measured coverage {covered / total:.3f} over {total} intervals"


def test_news_lc_needs_reference_ratings():
    fit = length_controlled_overall([RatingRow("a", 5, 4.0), RatingRow("a", 6, 4.5)])
    assert fit.values == {"a": None} and "no ratings of the reference" in fit.notes[0]


def test_wilson_interval_textbook_value():
    # 3 of 5: the Wilson 95% interval is [0.2307, 0.8824] (Wilson 1927; z = 1.96).
    lo, hi = wilson_interval(3, 5)
    assert (round(lo, 4), round(hi, 4)) == (0.2307, 0.8824)


HAND = [
    # (policy, policy side, choice) for hand counting: policy A wins 3 of 5, B wins 1 of 3.
    ("A", 0, 0),
    ("A", 1, 1),
    ("A", 0, 1),
    ("A", 1, 1),
    ("A", 1, 0),
    ("B", 0, 1),
    ("B", 1, 1),
    ("B", 0, 1),
]


def hand_file(path):
    lines = []
    for i, (policy, side, choice) in enumerate(HAND):
        pol = {"text": f" summary {i} by {policy}", "policy": policy, "note": None}
        ref = {"text": f" reference {i}", "policy": "ref", "note": None}
        summaries = [pol, ref] if side == 0 else [ref, pol]
        info = {"id": f"t3_{i}", "post": "My dog barks.", "title": "dog", "subreddit": "pets"}
        rec = {"info": info, "summaries": summaries, "choice": choice, "worker": "w1", "batch": "b", "split": "valid2"}
        lines.append(json.dumps(rec | {"extra": {"confidence": 5}}))
    # A policy-vs-policy comparison (no reference side) is not counted for either policy.
    info = {"id": "t3_x", "post": "My dog barks.", "title": "dog", "subreddit": "pets"}
    s = [{"text": " a", "policy": "A", "note": None}, {"text": " b", "policy": "B", "note": None}]
    rec = {"info": info, "summaries": s, "choice": 0, "worker": "w1", "batch": "b", "split": "train"}
    lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_raw_rates_equal_hand_counts(tmp_path):
    rates = win_rates(load_comparisons(hand_file(tmp_path / "hand.jsonl")))
    assert set(rates) == {"A", "B"}
    assert (rates["A"]["n"], rates["A"]["wins"]) == (5, 3)
    assert (rates["B"]["n"], rates["B"]["wins"]) == (3, 1)
    assert rates["A"]["win_rate"] == pytest.approx(0.6)
    assert tuple(round(x, 4) for x in rates["A"]["win_rate_ci"]) == (0.2307, 0.8824)
