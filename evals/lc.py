"""Length-controlled preference (Stiennon et al. 2020, Appendix F): how often a policy would be preferred to the
reference if its summaries were as long as the reference's.

Judges, people and simulated labelers alike, tend to prefer longer summaries, so a raw win rate mixes quality with
length. We fit one model over every judgment against the reference:

TL;DR (pairwise)   logit P(policy summary preferred) = a_policy + b * log(policy chars / reference chars)
                   (statsmodels ``logit("preferred ~ C(policy) + log_length_ratio")``); the controlled value of a
                   policy is its predicted probability at log ratio 0 (same length as the reference), with a 95%
                   interval by the delta method on the logit scale, mapped through the sigmoid (so it stays in
                   [0, 1]).
news (1-7 overall) OLS ``overall ~ C(policy) + log_chars``; the controlled value of a policy is its predicted mean
                   rating at the reference's length (the mean log length of the reference summaries), with a 95%
                   interval.

Lengths are counted in characters of the stripped summary text, which does not depend on any tokenizer.
Degenerate data never crash a report: a policy whose judgments all went one way has no finite estimate and is left
out of the fit (value ``None``, with a note); no spread in lengths drops the length term (and says so).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class PrefRow:
    """One judgment of a policy summary against the reference."""

    policy: str
    preferred: int  # 1 if the policy's summary was chosen
    log_length_ratio: float  # log(policy chars / reference chars)


@dataclass(frozen=True, slots=True)
class RatingRow:
    """One 1-7 overall rating of a summary."""

    policy: str
    overall: float
    log_chars: float


@dataclass(frozen=True)
class Controlled:
    """Per-policy controlled values and 95% intervals (``None`` where the data allow no estimate)."""

    values: dict[str, float | None]
    ci: dict[str, tuple[float, float] | None]
    slope: float | None  # the length coefficient (None when the length term was dropped)
    slope_ci: tuple[float, float] | None
    n: int
    notes: list[str] = field(default_factory=list)


def log_length_ratio(policy_text: str, reference_text: str) -> float:
    """log(characters of the policy summary / characters of the reference), texts stripped; at least 1 character."""
    return math.log(max(1, len(policy_text.strip())) / max(1, len(reference_text.strip())))


def log_chars(text: str) -> float:
    return math.log(max(1, len(text.strip())))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _spread(xs: Sequence[float]) -> bool:
    return len(xs) > 1 and max(xs) - min(xs) > 1e-12


def _ordered(policies: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(policies))


def length_controlled_preference(rows: Sequence[PrefRow]) -> Controlled:
    """Fit the logistic model over ``rows`` and predict every policy at log length ratio 0 (see module docstring)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    policies = _ordered([r.policy for r in rows])
    values: dict[str, float | None] = dict.fromkeys(policies)
    ci: dict[str, tuple[float, float] | None] = dict.fromkeys(policies)
    notes: list[str] = []
    fit_policies = []
    for p in policies:
        ys = [r.preferred for r in rows if r.policy == p]
        if min(ys) == max(ys):
            notes.append(
                f"{p}: all {len(ys)} judgments went one way ({'won' if ys[0] else 'lost'}); no length-controlled "
                "estimate (perfect separation)"
            )
        else:
            fit_policies.append(p)
    data = [r for r in rows if r.policy in fit_policies]
    if not data:
        return Controlled(values, ci, None, None, 0, notes)
    df = pd.DataFrame(
        {
            "policy": [r.policy for r in data],
            "preferred": [int(r.preferred) for r in data],
            "log_length_ratio": [float(r.log_length_ratio) for r in data],
        }
    )
    use_length = _spread(df["log_length_ratio"].tolist())
    if not use_length:
        notes.append("no spread in length ratios: the length term was dropped (controlled = raw)")
    terms = (["C(policy)"] if len(fit_policies) > 1 else []) + (["log_length_ratio"] if use_length else [])
    formula = "preferred ~ " + (" + ".join(terms) if terms else "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; failures raise or show as non-finite values
            res = smf.logit(formula, df).fit(disp=0, maxiter=200)
        new = pd.DataFrame({"policy": fit_policies, "log_length_ratio": 0.0})
        frame = res.get_prediction(new, which="linear").summary_frame(alpha=0.05)
    except Exception as e:  # separation, singular designs: reported in the notes, never a crashed report
        notes.append(f"the length-controlled logit could not be fitted: {e}")
        return Controlled(values, ci, None, None, len(data), notes)
    for p, (_, row) in zip(fit_policies, frame.iterrows(), strict=True):
        eta, lo, hi = float(row["predicted"]), float(row["ci_lower"]), float(row["ci_upper"])
        if not all(map(math.isfinite, (eta, lo, hi))):
            notes.append(f"{p}: the fit gave no finite estimate")
            continue
        values[p] = _sigmoid(eta)
        ci[p] = (_sigmoid(lo), _sigmoid(hi))
    slope = slope_ci = None
    if use_length:
        slope = float(res.params["log_length_ratio"])
        lo, hi = res.conf_int(alpha=0.05).loc["log_length_ratio"]
        slope_ci = (float(lo), float(hi))
    return Controlled(values, ci, slope, slope_ci, len(data), notes)


def length_controlled_overall(rows: Sequence[RatingRow], reference: str = "ref") -> Controlled:
    """OLS of the 1-7 overall rating on policy and log length, predicted at the reference's mean log length."""
    import pandas as pd
    import statsmodels.formula.api as smf

    policies = _ordered([r.policy for r in rows])
    values: dict[str, float | None] = dict.fromkeys(policies)
    ci: dict[str, tuple[float, float] | None] = dict.fromkeys(policies)
    notes: list[str] = []
    ref_lengths = [r.log_chars for r in rows if r.policy == reference]
    if not ref_lengths:
        notes.append(f"no ratings of the reference ({reference!r}): no length-controlled overall score")
        return Controlled(values, ci, None, None, len(rows), notes)
    at = sum(ref_lengths) / len(ref_lengths)
    df = pd.DataFrame(
        {
            "policy": [r.policy for r in rows],
            "overall": [float(r.overall) for r in rows],
            "log_chars": [float(r.log_chars) for r in rows],
        }
    )
    use_length = _spread(df["log_chars"].tolist())
    if not use_length:
        notes.append("no spread in lengths: the length term was dropped (controlled = raw means)")
    terms = (["C(policy)"] if len(policies) > 1 else []) + (["log_chars"] if use_length else [])
    formula = "overall ~ " + (" + ".join(terms) if terms else "1")
    if len(df) <= len(policies) + int(use_length):
        notes.append(f"{len(df)} ratings are too few to fit {len(policies)} policies and a length term")
        return Controlled(values, ci, None, None, len(rows), notes)
    try:
        res = smf.ols(formula, df).fit()
        new = pd.DataFrame({"policy": policies, "log_chars": at})
        frame = res.get_prediction(new).summary_frame(alpha=0.05)
    except Exception as e:  # a singular design: reported in the notes
        notes.append(f"the length-controlled regression could not be fitted: {e}")
        return Controlled(values, ci, None, None, len(rows), notes)
    for p, (_, row) in zip(policies, frame.iterrows(), strict=True):
        mean, lo, hi = float(row["mean"]), float(row["mean_ci_lower"]), float(row["mean_ci_upper"])
        if all(map(math.isfinite, (mean, lo, hi))):
            values[p], ci[p] = mean, (lo, hi)
    slope = slope_ci = None
    if use_length:
        slope = float(res.params["log_chars"])
        lo, hi = res.conf_int(alpha=0.05).loc["log_chars"]
        slope_ci = (float(lo), float(hi))
    return Controlled(values, ci, slope, slope_ci, len(rows), notes)
