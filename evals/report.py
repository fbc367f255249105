"""The eval report: preference against the reference (raw and length-controlled), news transfer, judges, and the
over-optimisation curve, as ``report.json`` + ``report.md`` + ``report.html`` with PNG figures.

Input: a folder. Every ``*.jsonl`` in it whose first record is in the public comparisons or axis-evals format is read
(as ``evals.runner.run_eval`` writes them, or as a person brings them); other files are listed and ignored.

- The reference side of a comparison is the summary whose ``policy`` is ``ref`` (the public data's convention). A
  comparisons file with no such side at all is an error (the report measures preference against the reference);
  single comparisons without one (policy vs policy) are skipped and counted.
- Whose judgments: people's (``human``, any worker without a ``sim:``/``rm:`` prefix) if any, else the simulated
  labelers' (``sim:``), else the reward model's (``rm:``); ``meta.judges`` says which, and ``meta.by_judge`` gives
  every judge's raw win rates.
- Raw win rate: the share of judgments that chose the policy's summary over the reference (every judgment counts;
  pairs judged twice count twice), 95% Wilson interval.
- Length-controlled win rate: evals/lc.py (logit on policy and log(policy chars / reference chars), predicted at
  equal length). Lengths are in characters of the stripped text, independent of any tokenizer.
- ``mean_tokens``: the mean whitespace-separated word count of the policy's distinct summaries (again no tokenizer).
- ``gold`` (only with the offline world's frames.jsonl: ``frames=``, DIR/frames.jsonl, or the data folder a run
  recorded): fact recall (share of a post's key facts stated with the right value), wrong-value rate (share of
  summaries stating some fact wrong), mean gold overall score in [0, 1].
- News: mean 1-7 rating per axis per policy and the length-controlled overall (OLS on log length at the reference's
  length).
- Agreement: labelers = share of pairs of judgments by different labelers of the same two summaries that chose alike;
  rm_vs_labelers = share of labeler judgments the reward model agrees with on the same pairs (pairs of two identical
  texts excluded).
- Over-optimisation: a sweep file, a JSON list of ``{"kl_coef", "kl", "rm_score", "gold_win_rate"}``; a point
  with ``kl_coef`` null is the SFT policy itself (KL 0), where the curve starts.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data import (
    AXIS_NAMES,
    ArticleInfo,
    AxisEval,
    Comparison,
    PostInfo,
    atomic_write_text,
    current_umask,
    load_axis,
    load_comparisons,
    sniff_format,
)

from .gold import Frame, gold_axes
from .judges import frames_for, judge_of, pair_key
from .lc import (
    Controlled,
    PrefRow,
    RatingRow,
    length_controlled_overall,
    length_controlled_preference,
    log_chars,
    log_length_ratio,
)
from .stats import wilson_interval

REFERENCE = "ref"
JUDGE_PRIORITY = ("human", "sim", "rm")
SWEEP_KEYS = ("kl_coef", "kl", "rm_score", "gold_win_rate")
LENGTH_UNIT = "characters of the stripped summary text (tokenizer-independent)"
TOKENS_UNIT = "mean whitespace-separated word count of the policy's distinct summaries (no tokenizer)"
FIGURES = {
    "preference": "fig_preference.png",
    "raw_vs_lc": "fig_raw_vs_lc.png",
    "likert": "fig_likert.png",
    "overoptimization": "fig_overoptimization.png",
}


class ReportInputError(ValueError):
    """The report's input folder, sweep or frames are unusable; the message says what and how to fix it."""


@dataclass
class Inputs:
    comparisons: list[tuple[str, Comparison]]  # (file name, record)
    axis: list[tuple[str, AxisEval]]
    files: dict[str, dict[str, Any]]
    data_dirs: list[str]


# --------------------------------------------------------------------------------------------------- reading


def read_inputs(in_dir: str | Path) -> Inputs:
    root = Path(in_dir)
    if not root.is_dir():
        raise ReportInputError(f"{root}: no such folder; pass --in the folder `prefsum eval run` wrote")
    comparisons: list[tuple[str, Comparison]] = []
    axis: list[tuple[str, AxisEval]] = []
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("*.jsonl")):
        fmt = sniff_format(path)
        if fmt == "comparisons":
            records = load_comparisons(path)
            if records and not any(REFERENCE in (s.policy for s in c.summaries) for c in records):
                policies = sorted({s.policy for c in records for s in c.summaries})
                raise ReportInputError(
                    f"{path}: none of its {len(records)} comparisons has a reference side (a summary whose policy is "
                    f"{REFERENCE!r}; policies found: {', '.join(policies[:8])}). The report measures preference "
                    f"against the reference: mark the reference summaries with policy {REFERENCE!r}, or move the "
                    "file out of the folder"
                )
            comparisons += [(path.name, c) for c in records]
        elif fmt == "axis":
            records = load_axis(path)
            axis += [(path.name, a) for a in records]
        else:
            files[path.name] = {"format": fmt or "unknown", "used": False}
            continue
        files[path.name] = {"format": fmt, "records": len(records), "used": True}
    if not comparisons and not axis:
        seen = ", ".join(f"{k} ({v['format']})" for k, v in files.items()) or "no .jsonl files"
        raise ReportInputError(
            f"{root} holds no comparisons or axis-evals JSONL ({seen}); run `prefsum eval run --out {root}` first, "
            "or put files in the public comparisons / axis-evals formats there"
        )
    data_dirs = []
    for run in sorted(root.glob("run-*.json")):
        try:
            data_dirs.append(str(json.loads(run.read_text(encoding="utf-8"))["spec"]["data_dir"]))
        except (ValueError, KeyError, TypeError):
            continue
    return Inputs(comparisons, axis, files, data_dirs)


def read_sweep(sweep: str | Path | Sequence[Mapping[str, Any]] | None) -> list[dict[str, float]] | None:
    """Validate a sweep (a JSON file or a list) of ``{"kl_coef", "kl", "rm_score", "gold_win_rate"}``, sorted by kl.
    ``kl_coef`` may be null: the SFT policy's own point (no PPO)."""
    if sweep is None:
        return None
    where = "sweep"
    if isinstance(sweep, (str, Path)):
        where = str(sweep)
        path = Path(sweep)
        if not path.is_file():
            raise ReportInputError(f"--sweep {path}: no such file")
        try:
            sweep = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ReportInputError(f"{path}: bad JSON ({e.msg}, line {e.lineno})") from e
    if isinstance(sweep, Mapping) and isinstance(sweep.get("runs"), list):
        sweep = sweep["runs"]
    if not isinstance(sweep, list) or not sweep:
        raise ReportInputError(f"{where}: expected a non-empty JSON list of {{{', '.join(SWEEP_KEYS)}}} objects")
    rows = []
    for i, entry in enumerate(sweep):
        if not isinstance(entry, Mapping):
            raise ReportInputError(f"{where}: entry {i} is not an object")
        row = {}
        for key in SWEEP_KEYS:
            value = entry.get(key)
            if key == "kl_coef" and value is None:
                row[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ReportInputError(f"{where}: entry {i}: {key!r} must be a finite number, got {value!r}")
            row[key] = float(value)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["kl"], math.inf if r["kl_coef"] is None else r["kl_coef"]))


def find_frames(in_dir: Path, frames: str | Path | None, data_dirs: Iterable[str]) -> Path | None:
    if frames is not None:
        path = Path(frames)
        if not path.is_file():
            raise ReportInputError(f"--frames {path}: no such file (the world's frames.jsonl)")
        return path
    candidates = [in_dir / "frames.jsonl"]
    for d in data_dirs:
        p = Path(d)
        folder = p.parent if p.suffix == ".jsonl" else p
        candidates += [folder / "frames.jsonl", folder.parent / "frames.jsonl"]
    return next((c for c in candidates if c.is_file()), None)


# --------------------------------------------------------------------------------------------------- helpers


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _ci(ci: tuple[float, float] | None) -> list[float | None] | None:
    return None if ci is None else [_r(ci[0]), _r(ci[1])]


def _words(text: str) -> int:
    return len(text.split())


def _primary(kinds: Iterable[str]) -> str | None:
    present = set(kinds)
    return next((k for k in JUDGE_PRIORITY if k in present), None)


def _gold(frames: Mapping[str, Frame], texts: Sequence[tuple[str, str]]) -> dict[str, float] | None:
    """Gold axes over (item id, summary text) pairs; None unless every item has a frame."""
    if not texts or any(i not in frames for i, _ in texts):
        return None
    recall = wrong = overall = 0.0
    for item_id, text in texts:
        frame = frames[item_id]
        g = gold_axes(frame, text)
        recall += len(g.stated) / max(1, len(frame.facts))
        wrong += bool(g.contradicted)
        overall += g.overall
    n = len(texts)
    return {"fact_recall": _r(recall / n), "wrong_value_rate": _r(wrong / n), "overall": _r(overall / n)}


def _distinct(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((i, t.strip()) for i, t in pairs))


# --------------------------------------------------------------------------------------------------- TL;DR


def _ref_sides(c: Comparison) -> tuple[int, int] | None:
    """(policy side, reference side) of a comparison with exactly one reference summary."""
    refs = [i for i, s in enumerate(c.summaries) if s.policy == REFERENCE]
    if len(refs) != 1:
        return None
    return 1 - refs[0], refs[0]


def win_rates(comparisons: Sequence[Comparison]) -> dict[str, dict[str, Any]]:
    """Raw win rate of each policy against the reference: {policy: {n, wins, win_rate, win_rate_ci}}."""
    counts: dict[str, list[int]] = {}
    for c in comparisons:
        sides = _ref_sides(c)
        if sides is None:
            continue
        policy = c.summaries[sides[0]].policy
        n_w = counts.setdefault(policy, [0, 0])
        n_w[0] += 1
        n_w[1] += c.choice == sides[0]
    return {
        p: {"n": n, "wins": w, "win_rate": w / n, "win_rate_ci": wilson_interval(w, n)} for p, (n, w) in counts.items()
    }


def preference_rows(comparisons: Sequence[Comparison]) -> list[PrefRow]:
    rows = []
    for c in comparisons:
        sides = _ref_sides(c)
        if sides is None:
            continue
        pol, ref = (c.summaries[i] for i in sides)
        rows.append(PrefRow(pol.policy, int(c.choice == sides[0]), log_length_ratio(pol.text, ref.text)))
    return rows


def labeler_agreement(comparisons: Sequence[Comparison]) -> tuple[float | None, int]:
    """Share of pairs of judgments by different labelers of the same two summaries that chose alike; and how many
    pairs of judgments there were."""
    votes: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for c in comparisons:
        votes[pair_key(c.info.id, (s.text for s in c.summaries))].append((c.preferred.text.strip(), c.worker))
    agree = total = 0
    for vs in votes.values():
        for (ti, wi), (tj, wj) in itertools.combinations(vs, 2):
            if wi != wj:
                total += 1
                agree += ti == tj
    return (agree / total if total else None), total


def rm_accuracy(labelers: Sequence[Comparison], rm: Sequence[Comparison]) -> tuple[float | None, int]:
    """Share of labeler judgments whose preferred summary the reward model also preferred, on pairs both judged."""
    rm_pick: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for c in rm:
        key = pair_key(c.info.id, (s.text for s in c.summaries))
        if key[1] != key[2]:
            rm_pick[key].append(c.preferred.text.strip())
    agree = total = 0
    for c in labelers:
        key = pair_key(c.info.id, (s.text for s in c.summaries))
        for pick in rm_pick.get(key, ()):
            total += 1
            agree += pick == c.preferred.text.strip()
    return (agree / total if total else None), total


def tldr_section(
    comparisons: Sequence[Comparison], frames: Mapping[str, Frame] | None
) -> tuple[dict[str, Any], Controlled, dict[str, Any]]:
    """(the report's tldr section, the LC fit, facts about the reference)."""
    raw = win_rates(comparisons)
    lc = length_controlled_preference(preference_rows(comparisons))
    texts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for c in comparisons:
        if _ref_sides(c) is not None:
            for s in c.summaries:
                texts[s.policy].append((c.info.id, s.text))
    section: dict[str, Any] = {}
    for policy, r in raw.items():
        distinct = _distinct(texts[policy])
        entry: dict[str, Any] = {
            "n": r["n"],
            "wins": r["wins"],
            "win_rate": _r(r["win_rate"]),
            "win_rate_ci": _ci(r["win_rate_ci"]),
            "lc_win_rate": _r(lc.values.get(policy)),
            "lc_ci": _ci(lc.ci.get(policy)),
            "mean_tokens": _r(statistics.fmean(_words(t) for _, t in distinct), 2),
            "mean_chars": _r(statistics.fmean(len(t) for _, t in distinct), 1),
        }
        gold = _gold(frames, distinct) if frames else None
        if gold is not None:
            entry["gold"] = gold
        section[policy] = entry
    ref = _distinct(texts[REFERENCE])
    reference: dict[str, Any] = {
        "summaries": len(ref),
        "mean_tokens": _r(statistics.fmean(_words(t) for _, t in ref), 2) if ref else None,
        "mean_chars": _r(statistics.fmean(len(t) for _, t in ref), 1) if ref else None,
    }
    gold = _gold(frames, ref) if frames and ref else None
    if gold is not None:
        reference["gold"] = gold
    return section, lc, reference


# --------------------------------------------------------------------------------------------------- news


def _mean_ci(xs: Sequence[float]) -> tuple[float | None, tuple[float, float] | None]:
    if not xs:
        return None, None
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, None
    half = 1.959964 * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, (m - half, m + half)


def news_section(ratings: Sequence[AxisEval], frames: Mapping[str, Frame] | None) -> tuple[dict[str, Any], Controlled]:
    by_policy: dict[str, list[AxisEval]] = defaultdict(list)
    for a in ratings:
        by_policy[a.summary.policy].append(a)
    rows = [
        RatingRow(a.summary.policy, float(a.axes.overall), log_chars(a.summary.text))
        for a in ratings
        if a.axes.overall is not None
    ]
    lc = length_controlled_overall(rows, REFERENCE)
    section: dict[str, Any] = {}
    for policy, evals in by_policy.items():
        axes, axes_ci = {}, {}
        for axis in AXIS_NAMES:
            m, ci = _mean_ci([getattr(a.axes, axis) for a in evals if getattr(a.axes, axis) is not None])
            axes[axis], axes_ci[axis] = _r(m, 3), _ci(ci)
        distinct = _distinct((a.info.id, a.summary.text) for a in evals)
        entry: dict[str, Any] = {
            "n": len(evals),
            "axes": axes,
            "axes_ci": axes_ci,
            "lc_overall": _r(lc.values.get(policy), 3),
            "lc_overall_ci": _ci(lc.ci.get(policy)),
            "mean_tokens": _r(statistics.fmean(_words(t) for _, t in distinct), 2),
            "mean_chars": _r(statistics.fmean(len(t) for _, t in distinct), 1),
        }
        gold = _gold(frames, distinct) if frames else None
        if gold is not None:
            entry["gold"] = gold
        section[policy] = entry
    return section, lc


# --------------------------------------------------------------------------------------------------- build


def _policy_order(policies: Iterable[str]) -> list[str]:
    """Baselines first (lead-k), then the others in order of first appearance."""
    ps = list(dict.fromkeys(policies))
    return sorted(ps, key=lambda p: (not p.startswith("lead"), p == REFERENCE, ps.index(p)))


def build_report(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    sweep: str | Path | Sequence[Mapping[str, Any]] | None = None,
    frames: str | Path | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Read ``in_dir``, write report.json, report.md, report.html and the figures into ``out_dir``; return the
    report.json dict (see the module docstring)."""
    in_dir, out = Path(in_dir), Path(out_dir)
    sweep_rows = read_sweep(sweep)  # validate everything before the work
    inputs = read_inputs(in_dir)
    frames_file = find_frames(in_dir, frames, inputs.data_dirs)
    notes: list[str] = []

    tldr_comps = [c for _, c in inputs.comparisons if isinstance(c.info, PostInfo)]
    skipped = {
        "news_comparisons": sum(isinstance(c.info, ArticleInfo) for _, c in inputs.comparisons),
        "without_reference": sum(_ref_sides(c) is None for c in tldr_comps),
        "tldr_axis_evals": sum(isinstance(a.info, PostInfo) for _, a in inputs.axis),
    }
    news_axis = [a for _, a in inputs.axis if isinstance(a.info, ArticleInfo)]

    frame_map: dict[str, Frame] | None = None
    if frames_file is not None:
        ids = {c.info.id for c in tldr_comps} | {a.info.id for a in news_axis}
        frame_map = frames_for(frames_file, ids)
        if len(frame_map) < len(ids):
            notes.append(
                f"{frames_file} has frames for {len(frame_map)} of {len(ids)} judged items; gold axes only for "
                "policies whose every item has one"
            )

    report: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "reference_policy": REFERENCE,
        "length_unit": LENGTH_UNIT,
        "mean_tokens": TOKENS_UNIT,
        "files": inputs.files,
        "frames": str(frames_file) if frames_file else None,
        "skipped": skipped,
        "judges": {},
        "judgments": {},
        "by_judge": {},
        "notes": notes,
    }
    by_kind: dict[str, list[Comparison]] = defaultdict(list)
    for c in tldr_comps:
        by_kind[judge_of(c.worker)].append(c)
    meta["judgments"]["tldr"] = {k: len(v) for k, v in by_kind.items()}
    lc_tldr = None
    primary = _primary(by_kind)
    if primary is not None and any(_ref_sides(c) for c in by_kind[primary]):
        section, lc_tldr, reference = tldr_section(by_kind[primary], frame_map)
        report["tldr"] = {p: section[p] for p in _policy_order(section)}
        meta["judges"]["tldr"] = primary
        meta["reference"] = {"tldr": reference}
        meta["lc_length_slope"] = {"tldr": {"value": _r(lc_tldr.slope), "ci": _ci(lc_tldr.slope_ci)}}
        notes += [f"tldr: {n}" for n in lc_tldr.notes]
        meta["by_judge"]["tldr"] = {
            kind: {
                p: {"n": r["n"], "win_rate": _r(r["win_rate"]), "win_rate_ci": _ci(r["win_rate_ci"])}
                for p, r in win_rates(comps).items()
            }
            for kind, comps in by_kind.items()
        }
    lab = [c for k, v in by_kind.items() if k != "rm" for c in v]
    if lab or by_kind.get("rm"):
        agree, n_agree = labeler_agreement(lab)
        rm_acc, n_rm = rm_accuracy(lab, by_kind.get("rm", []))
        if n_agree or n_rm:
            report["agreement"] = {
                "labelers": _r(agree),
                "rm_vs_labelers": _r(rm_acc),
                "labelers_n": n_agree,
                "rm_vs_labelers_n": n_rm,
            }

    lc_news = None
    axis_by_kind: dict[str, list[AxisEval]] = defaultdict(list)
    for a in news_axis:
        axis_by_kind[judge_of(a.worker)].append(a)
    meta["judgments"]["news"] = {k: len(v) for k, v in axis_by_kind.items()}
    news_primary = _primary(axis_by_kind)
    if news_primary is not None:
        section, lc_news = news_section(axis_by_kind[news_primary], frame_map)
        report["news"] = {p: section[p] for p in _policy_order(section)}
        meta["judges"]["news"] = news_primary
        meta.setdefault("lc_length_slope", {})["news"] = {"value": _r(lc_news.slope), "ci": _ci(lc_news.slope_ci)}
        notes += [f"news: {n}" for n in lc_news.notes]
    if sweep_rows is not None:
        report["overoptimization"] = [{k: _r(v, 6) for k, v in row.items()} for row in sweep_rows]
    if not ("tldr" in report or "news" in report):
        raise ReportInputError(
            f"{in_dir}: nothing to report: no TL;DR comparison against the reference and no news rating "
            f"(skipped: {skipped})"
        )

    out.mkdir(parents=True, exist_ok=True)
    meta["figures"] = _figures(report, out) if figures else {}
    report["meta"] = meta
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report))
    return report


# --------------------------------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> None:
    """Write a figure atomically (temp file in the same folder, then rename)."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_overoptimization(sweep: Sequence[Mapping[str, Any]], path: Path) -> None:
    """RM score and gold preference against KL from the SFT policy, one point per KL coefficient (written
    atomically); the report's figure and `prefsum train ppo-sweep`'s sweep.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kl = [r["kl"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(kl, [r["rm_score"] for r in sweep], "o-", color="tab:blue", label="RM score")
    ax.set_xlabel("KL(policy || SFT), nats")
    ax.set_ylabel("reward model score", color="tab:blue")
    ax2 = ax.twinx()
    gold = [r["gold_win_rate"] for r in sweep]
    cis = [r.get("gold_win_rate_ci") for r in sweep]
    if all(ci is not None for ci in cis):  # sweep.json carries the 95% intervals; the report's rows do not
        ax2.errorbar(kl, gold, yerr=_err(gold, cis), fmt="s-", color="tab:red", capsize=3, label="gold preference")
        lo, hi = min(ci[0] for ci in cis), max(ci[1] for ci in cis)
    else:
        ax2.plot(kl, gold, "s-", color="tab:red", label="gold preference")
        lo, hi = min(gold), max(gold)
    ax2.set_ylabel("gold preference vs reference (95% CI)", color="tab:red")
    # Scaled to the data (a fixed 0-1 axis flattens a 5-point peak into a line), padded, within [0, 1].
    pad = max(0.05, 0.15 * (hi - lo))
    ax2.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    for r in sweep:
        ax.annotate(
            "SFT" if r["kl_coef"] is None else f"β={r['kl_coef']:g}",
            (r["kl"], r["rm_score"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_title("Over-optimisation: RM score vs gold preference")
    _save(fig, path)
    plt.close(fig)


def _err(values: Sequence[float | None], cis: Sequence[list | None]) -> list[list[float]]:
    lo = [0.0 if v is None or ci is None else v - ci[0] for v, ci in zip(values, cis, strict=True)]
    hi = [0.0 if v is None or ci is None else ci[1] - v for v, ci in zip(values, cis, strict=True)]
    return [lo, hi]


def _figures(report: Mapping[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    tldr = report.get("tldr") or {}
    if tldr:
        names = list(tldr)
        x = list(range(len(names)))
        raw = [tldr[p]["win_rate"] for p in names]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.6))
        ax.errorbar(x, raw, yerr=_err(raw, [tldr[p]["win_rate_ci"] for p in names]), fmt="o", capsize=4)
        ax.axhline(0.5, color="grey", ls="--", lw=1, label="reference (0.5)")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("preferred over reference")
        ax.set_title("Preference vs the reference (95% Wilson intervals)")
        ax.legend(loc="upper left", fontsize=8)
        _save(fig, out / FIGURES["preference"])
        plt.close(fig)
        made["preference"] = FIGURES["preference"]

        lc = [tldr[p]["lc_win_rate"] for p in names]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.6))
        ax.errorbar(
            [i - 0.1 for i in x],
            raw,
            yerr=_err(raw, [tldr[p]["win_rate_ci"] for p in names]),
            fmt="o",
            capsize=4,
            label="raw",
        )
        xs = [i + 0.1 for i, v in zip(x, lc, strict=True) if v is not None]
        lcv = [v for v in lc if v is not None]
        lcc = [tldr[p]["lc_ci"] for p, v in zip(names, lc, strict=True) if v is not None]
        if lcv:
            ax.errorbar(xs, lcv, yerr=_err(lcv, lcc), fmt="s", capsize=4, label="length-controlled")
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("preferred over reference")
        ax.set_title("Raw vs length-controlled (at reference length, chars)")
        ax.legend(loc="upper left", fontsize=8)
        _save(fig, out / FIGURES["raw_vs_lc"])
        plt.close(fig)
        made["raw_vs_lc"] = FIGURES["raw_vs_lc"]

    news = report.get("news") or {}
    if news:
        names = list(news)
        width = 0.8 / len(names)
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for j, p in enumerate(names):
            means = [news[p]["axes"][a] or 0.0 for a in AXIS_NAMES]
            cis = [news[p]["axes_ci"][a] for a in AXIS_NAMES]
            ax.bar(
                [i + j * width for i in range(len(AXIS_NAMES))], means, width, label=p, yerr=_err(means, cis), capsize=2
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(AXIS_NAMES))], AXIS_NAMES)
        ax.set_ylim(1, 7)
        ax.set_ylabel("mean rating (1-7)")
        ax.set_title("News transfer: Likert ratings per axis")
        ax.legend(fontsize=8, ncol=min(5, len(names)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
        _save(fig, out / FIGURES["likert"])
        plt.close(fig)
        made["likert"] = FIGURES["likert"]

    sweep = report.get("overoptimization") or []
    if sweep:
        plot_overoptimization(sweep, out / FIGURES["overoptimization"])
        made["overoptimization"] = FIGURES["overoptimization"]
    return made


# --------------------------------------------------------------------------------------------------- text


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _ci_s(ci: Sequence[float | None] | None, nd: int = 2) -> str:
    return "–" if not ci or ci[0] is None else f"[{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def _tables(report: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, header, rows, caption) for every section; shared by the Markdown and HTML renderers."""
    out = []
    meta = report.get("meta", {})
    tldr = report.get("tldr")
    if tldr:
        gold = any("gold" in e for e in tldr.values())
        header = ["policy", "n", "win rate", "95% CI", "LC win rate", "LC 95% CI", "mean words", "mean chars"]
        if gold:
            header += ["gold fact recall", "gold wrong-value", "gold overall"]
        rows = []
        for p, e in tldr.items():
            row = [
                p,
                str(e["n"]),
                _f(e["win_rate"]),
                _ci_s(e["win_rate_ci"]),
                _f(e["lc_win_rate"]),
                _ci_s(e["lc_ci"]),
                _f(e["mean_tokens"], 1),
                _f(e["mean_chars"], 0),
            ]
            if gold:
                g = e.get("gold") or {}
                row += [_f(g.get("fact_recall")), _f(g.get("wrong_value_rate")), _f(g.get("overall"))]
            rows.append(row)
        ref = meta.get("reference", {}).get("tldr", {})
        slope = meta.get("lc_length_slope", {}).get("tldr", {})
        caption = (
            f"Judge: {meta.get('judges', {}).get('tldr')}. Win rate = share of judgments preferring the policy's "
            f"summary to the reference (`ref`, {ref.get('summaries')} summaries, mean {_f(ref.get('mean_chars'), 0)} "
            "chars). LC = length-controlled: logistic regression on policy and log(policy chars / reference chars), "
            f"predicted at equal length; length slope {_f(slope.get('value'))} {_ci_s(slope.get('ci'))}. Lengths "
            "are in characters (tokenizer-independent); mean words = whitespace-separated words."
        )
        if ref.get("gold"):
            g = ref["gold"]
            caption += (
                f" Reference gold: fact recall {_f(g['fact_recall'])}, wrong-value {_f(g['wrong_value_rate'])}, "
                f"overall {_f(g['overall'])}."
            )
        out.append(("TL;DR: preference vs the reference", header, rows, caption))
    news = report.get("news")
    if news:
        header = ["policy", "n", *AXIS_NAMES, "LC overall", "LC 95% CI", "mean words", "mean chars"]
        rows = [
            [
                p,
                str(e["n"]),
                *(_f(e["axes"][a], 2) for a in AXIS_NAMES),
                _f(e["lc_overall"], 2),
                _ci_s(e["lc_overall_ci"]),
                _f(e["mean_tokens"], 1),
                _f(e["mean_chars"], 0),
            ]
            for p, e in news.items()
        ]
        caption = (
            f"Judge: {meta.get('judges', {}).get('news')}. Mean 1-7 ratings; LC overall = OLS of overall on policy "
            "and log length (chars), predicted at the reference's mean log length."
        )
        out.append(("News transfer: 1-7 ratings", header, rows, caption))
    agreement = report.get("agreement")
    if agreement:
        rows = [
            ["labelers with each other", _f(agreement.get("labelers")), str(agreement.get("labelers_n"))],
            ["reward model vs labelers", _f(agreement.get("rm_vs_labelers")), str(agreement.get("rm_vs_labelers_n"))],
        ]
        caption = "Pairs of judgments of the same two summaries (different labelers; or the RM and a labeler)."
        out.append(("Agreement", ["who", "agreement", "pairs of judgments"], rows, caption))
    sweep = report.get("overoptimization")
    if sweep:
        rows = [
            ["SFT" if r["kl_coef"] is None else _f(r["kl_coef"], 4)]
            + [_f(r[k]) for k in ("kl", "rm_score", "gold_win_rate")]
            for r in sweep
        ]
        out.append(("Over-optimisation sweep", list(SWEEP_KEYS), rows, "Sorted by KL."))
    return out


def render_markdown(report: Mapping[str, Any]) -> str:
    meta = report.get("meta", {})
    lines = ["# Evaluation report", ""]
    for title, header, rows, caption in _tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", caption, ""]
    figs = meta.get("figures") or {}
    if figs:
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figs.items()] + [""]
    notes = meta.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Inputs", ""]
    lines += [
        f"- `{name}`: {f['format']}" + (f", {f['records']} records" if f.get("used") else " (not used)")
        for name, f in meta.get("files", {}).items()
    ]
    lines += ["", f"Lengths: {LENGTH_UNIT}. mean words: {TOKENS_UNIT}.", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;margin:.5em 0}
.cap{color:#555;font-size:.9em;max-width:60em}"""


def render_html(report: Mapping[str, Any]) -> str:
    """One HTML file (inline CSS, no scripts, no external resources); the PNG figures sit next to it."""
    meta = report.get("meta", {})
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Evaluation report</title>",
        f"<style>{_CSS}</style></head><body><h1>Evaluation report</h1>",
    ]
    for title, header, rows, caption in _tables(report):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append(f"</table><p class='cap'>{e(caption)}</p>")
    for key, name in (meta.get("figures") or {}).items():
        parts.append(f"<figure><img src='{e(name)}' alt='{e(key)}'></figure>")
    notes = meta.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<p class='cap'>Lengths: {e(LENGTH_UNIT)}. Mean words: {e(TOKENS_UNIT)}.</p></body></html>\n")
    return "\n".join(parts)
