"""Judging a policy's summaries in the offline world: fact copying and preference against the reference.

- fact recall: share of a post's key facts whose correct surface form the summary states;
- wrong-value rate: share of summaries that state at least one fact with a wrong value (a contradiction);
- win rate vs reference: one labeler from the simulated pool (drawn per post) compares the policy's summary with the
  post's reference TL;DR, as in the paper's evaluations; identical texts count as half a win. 95% Wilson interval.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from evals.gold import Frame, gold_axes
from evals.labelers import LabelerPool
from evals.stats import wilson_interval
from training.data import TldrPost


@dataclass(frozen=True)
class PolicyQuality:
    n: int
    fact_recall: float
    wrong_value_rate: float
    gold_overall: float
    win_rate: float
    win_rate_ci: tuple[float, float]
    eos_rate: float | None = None

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "fact_recall": round(self.fact_recall, 4),
            "wrong_value_rate": round(self.wrong_value_rate, 4),
            "gold_overall": round(self.gold_overall, 4),
            "win_rate_vs_ref": round(self.win_rate, 4),
            "win_rate_ci95": [round(x, 4) for x in self.win_rate_ci],
            "eos_rate": None if self.eos_rate is None else round(self.eos_rate, 4),
        }


def judge_summaries(
    frames: dict[str, Frame],
    posts: Sequence[TldrPost],
    summaries: Sequence[str],
    *,
    pool: LabelerPool | None = None,
    seed: int = 0,
    finish_reasons: Sequence[str] | None = None,
) -> PolicyQuality:
    """Quality of ``summaries[i]`` (a policy's summary of ``posts[i]``) against the world's ground truth."""
    if len(posts) != len(summaries):
        raise ValueError(f"{len(posts)} posts but {len(summaries)} summaries")
    if not posts:
        raise ValueError("nothing to judge")
    pool = pool or LabelerPool(seed=seed)
    rng = random.Random(f"judge/{seed}")
    recall = wrong = overall = wins = 0.0
    for post, text in zip(posts, summaries, strict=True):
        frame = frames.get(post.id)
        if frame is None:
            raise KeyError(f"no frame for post {post.id}; is this post from the same world (frames.jsonl)?")
        g = gold_axes(frame, text)
        n_facts = max(1, len(frame.facts))
        recall += len(g.stated) / n_facts
        wrong += bool(g.contradicted)
        overall += g.overall
        ref = " " + post.summary.strip()
        if text.strip() == ref.strip():
            wins += 0.5
        else:
            labeler = rng.choice(pool.labelers)
            wins += labeler.choose_scored(g, gold_axes(frame, ref), rng).choice == 0
    n = len(posts)
    eos = None if finish_reasons is None else sum(r == "eos" for r in finish_reasons) / n
    return PolicyQuality(n, recall / n, wrong / n, overall / n, wins / n, wilson_interval(wins, n), eos)
