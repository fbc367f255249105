"""Simulated labelers: noisy Bradley-Terry choosers built on the gold quality function.

Labeler j sees a summary's gold overall score g (evals.gold) plus a length taste, u_j = g + lambda_j * ln(1 + tokens),
and prefers A to B with probability

    P(A) = eps_j / 2 + (1 - eps_j) * sigmoid((u_j(A) - u_j(B)) / T_j)

(T_j: the labeler's noise temperature, eps_j: the rate of careless random clicks). Confidence 1-9 grows with the
perceived margin |u_j(A) - u_j(B)| / T_j through the labeler's own calibration (scale kappa_j, bias beta_j, plus
rounding noise): some labelers are overconfident, some timid. Likert ratings are the gold 1-7 axes shifted by the
labeler's bias and noise. Defaults give mean pairwise agreement near the paper's 72-77% on the world's standard pair
mix (see evals/world_stats.py); ``docs/world.md`` lists the parameters.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from training.data import ArticleInfo, Axes, AxisEval, Comparison, Info, NewsArticle, PostInfo, Summary, TldrPost

from .gold import Frame, GoldAxes, gold_axes

NEWS_SITE = "world-news"


@dataclass(frozen=True, slots=True)
class Choice:
    """A labeler's pick: ``choice`` is the index (0/1) of the preferred summary; confidence 1 (unsure) - 9 (sure)."""

    choice: int
    confidence: int
    p_first: float  # the labeler's probability of picking the first summary


@dataclass(frozen=True, slots=True)
class Labeler:
    id: str
    temperature: float  # T_j: Bradley-Terry noise on the utility scale (gold overall is in [0, 1])
    length_pref: float  # lambda_j: utility per unit of ln(1 + tokens); >0 likes longer summaries
    lapse: float  # eps_j: share of random clicks
    conf_scale: float  # kappa_j: how fast confidence grows with the perceived margin
    conf_bias: float  # beta_j: added to every confidence (overconfident > 0)
    likert_bias: float  # added to every 1-7 rating before rounding
    likert_noise: float  # std of the rating noise

    def utility(self, g: GoldAxes) -> float:
        return g.overall + self.length_pref * math.log1p(g.n_tokens)

    def p_first(self, a: GoldAxes, b: GoldAxes) -> float:
        z = (self.utility(a) - self.utility(b)) / self.temperature
        z = max(-60.0, min(60.0, z))
        return self.lapse / 2 + (1 - self.lapse) / (1 + math.exp(-z))

    def choose_scored(self, a: GoldAxes, b: GoldAxes, rng: random.Random) -> Choice:
        p = self.p_first(a, b)
        choice = 0 if rng.random() < p else 1
        margin = abs(self.utility(a) - self.utility(b)) / self.temperature
        raw = 1 + 8 * (1 - math.exp(-self.conf_scale * margin)) + self.conf_bias + rng.gauss(0, 0.8)
        return Choice(choice, int(min(9, max(1, round(raw)))), p)

    def choose(self, frame: Frame, text_a: str, text_b: str, rng: random.Random) -> Choice:
        return self.choose_scored(gold_axes(frame, text_a), gold_axes(frame, text_b), rng)

    def rate_scored(self, g: GoldAxes, rng: random.Random) -> Axes:
        def noisy(x: int) -> int:
            return int(min(7, max(1, round(x + self.likert_bias + rng.gauss(0, self.likert_noise)))))

        return Axes(
            overall=noisy(g.likert_overall),
            accuracy=noisy(g.likert_accuracy),
            coverage=noisy(g.likert_coverage),
            coherence=noisy(g.likert_coherence),
        )

    def rate(self, frame: Frame, text: str, rng: random.Random) -> Axes:
        return self.rate_scored(gold_axes(frame, text), rng)


def info_for(record: TldrPost | NewsArticle) -> Info:
    """The ``info`` block of a comparison/axis record for a post or article."""
    if isinstance(record, TldrPost):
        return PostInfo(id=record.id, post=record.post, title=record.title, subreddit=record.subreddit)
    return ArticleInfo(id=record.id, article=record.article, site=NEWS_SITE, title=None)


class LabelerPool:
    """``n`` labelers with seeded, individual parameters; ``sim-0`` ... ``sim-{n-1}``.

    Every method takes an optional ``rng``; without one the pool's own seeded stream is used, so a fixed sequence of
    calls gives the same labels on every run.
    """

    # Parameter ranges (uniform): noise temperature, |length taste|, lapse rate, confidence scale and bias.
    TEMPERATURE = (0.06, 0.16)
    LENGTH_PREF = 0.02
    LAPSE = (0.02, 0.08)
    CONF_SCALE = (0.25, 0.7)
    CONF_BIAS = (-1.0, 1.0)
    LIKERT_BIAS = 0.4
    LIKERT_NOISE = (0.3, 0.7)

    def __init__(self, n: int = 8, seed: int = 0):
        if n < 1:
            raise ValueError(f"a labeler pool needs at least one labeler, got n={n}")
        r = random.Random(f"prefsum-labelers/{seed}")
        self.seed = seed
        self.labelers: tuple[Labeler, ...] = tuple(
            Labeler(
                id=f"sim-{i}",
                temperature=r.uniform(*self.TEMPERATURE),
                length_pref=r.uniform(-self.LENGTH_PREF, self.LENGTH_PREF),
                lapse=r.uniform(*self.LAPSE),
                conf_scale=r.uniform(*self.CONF_SCALE),
                conf_bias=r.uniform(*self.CONF_BIAS),
                likert_bias=r.uniform(-self.LIKERT_BIAS, self.LIKERT_BIAS),
                likert_noise=r.uniform(*self.LIKERT_NOISE),
            )
            for i in range(n)
        )
        self._by_id = {lab.id: lab for lab in self.labelers}
        self._rng = random.Random(f"prefsum-labelers/{seed}/draws")

    def __len__(self) -> int:
        return len(self.labelers)

    def __getitem__(self, key: int | str) -> Labeler:
        if isinstance(key, str):
            if key not in self._by_id:
                raise KeyError(f"no labeler {key!r}; this pool has {', '.join(self._by_id)}")
            return self._by_id[key]
        return self.labelers[key]

    def _pick(self, labeler: Labeler | str | int | None, rng: random.Random) -> Labeler:
        if labeler is None:
            return rng.choice(self.labelers)
        return labeler if isinstance(labeler, Labeler) else self[labeler]

    def choose_all(self, frame: Frame, text_a: str, text_b: str, rng: random.Random | None = None) -> list[Choice]:
        """Every labeler's choice on one pair (for agreement statistics)."""
        rng = rng or self._rng
        a, b = gold_axes(frame, text_a), gold_axes(frame, text_b)
        return [lab.choose_scored(a, b, rng) for lab in self.labelers]

    def compare(
        self,
        frame: Frame,
        info: Info,
        a: Summary,
        b: Summary,
        *,
        split: str = "train",
        batch: str = "sim",
        labeler: Labeler | str | int | None = None,
        rng: random.Random | None = None,
    ) -> Comparison:
        """One labeler (given, or drawn at random) compares two summaries; a public-format comparison record."""
        rng = rng or self._rng
        if info.id != frame.id:
            raise ValueError(f"info is for {info.id!r} but the frame is {frame.id!r}")
        lab = self._pick(labeler, rng)
        c = lab.choose(frame, a.text, b.text, rng)
        return Comparison(
            info=info,
            summaries=(a, b),
            choice=c.choice,
            worker=lab.id,
            batch=batch,
            split=split,
            confidence=c.confidence,
        )

    def rate(
        self,
        frame: Frame,
        info: Info,
        summary: Summary,
        *,
        split: str = "valid",
        batch: str = "sim",
        labeler: Labeler | str | int | None = None,
        rng: random.Random | None = None,
    ) -> AxisEval:
        """One labeler rates a summary on the four 1-7 axes; a public-format axis-eval record."""
        rng = rng or self._rng
        if info.id != frame.id:
            raise ValueError(f"info is for {info.id!r} but the frame is {frame.id!r}")
        lab = self._pick(labeler, rng)
        return AxisEval(
            info=info, split=split, summary=summary, axes=lab.rate(frame, summary.text, rng), worker=lab.id, batch=batch
        )


def pairwise_agreement(choices: Sequence[int]) -> float:
    """Share of labeler pairs that made the same choice on one comparison."""
    n = len(choices)
    if n < 2:
        raise ValueError("agreement needs at least two labelers")
    ones = sum(choices)
    zeros = n - ones
    same = ones * (ones - 1) / 2 + zeros * (zeros - 1) / 2
    return same / (n * (n - 1) / 2)
