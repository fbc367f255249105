"""Judges behind one interface: simulated labelers (``sim``), a reward model (``rm``), people (``human``).

A judge turns tasks into public-format records:

- ``compare(tasks)``: one comparison per :class:`PairTask` (two summaries of one post/article; ``choice`` = index of
  the preferred one), in the public comparisons format;
- ``rate(tasks)``: one axis eval per :class:`RateTask` (1-7 overall/accuracy/coverage/coherence), in the public
  axis-evals format.

Every record names its judge, so a report can compare judges on the same pairs: ``worker`` is ``sim:<labeler>``,
``rm:<bundle>`` or ``human:<labeler>``, and ``extra.judge`` repeats the judge (``sim``, ``rm:<bundle>``, ``human``)
beside judge-specific details (the RM's rewards and preference probability, a labeler's confidence).

- ``sim`` reads the offline world's hidden frames (frames.jsonl) and asks the simulated labeler pool
  (evals/labelers.py); a share of pairs (``second_opinion``) is judged by a second, different labeler, so labeler
  agreement can be measured. Only the world's own posts and articles can be judged.
- ``rm`` scores both summaries with a reward model (any :class:`evals.protocols.Scorer`: the ONNX engine, the HTTP
  client) and prefers the higher reward; ``extra.preference`` = sigmoid(r_a - r_b). It gives no 1-7 ratings.
- ``human`` queues pairs on a running service's labeling queue and reads the answers people gave from its export (the
  public comparisons format), or reads a comparisons / axis-evals JSONL a person brings.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from training.data import (
    AxisEval,
    Comparison,
    Info,
    Summary,
    load,
    sniff_format,
    to_json,
)

from .gold import Frame
from .labelers import LabelerPool
from .protocols import Item, Scorer, check_scorer

# The public comparisons format has no test split; evaluation judgments go in valid2 (axis evals may say "test").
EVAL_COMPARISON_SPLIT = "valid2"
EVAL_AXIS_SPLIT = "test"
JUDGES = ("sim", "rm", "human")


class JudgeUnavailable(ValueError):
    """The judge cannot judge these tasks (no frames, no reward model, no server or answers); says how to fix it."""


@dataclass(frozen=True, slots=True)
class PairTask:
    """Two summaries of one post/article to compare, in the order a judge sees them."""

    key: str  # stable and unique within a run, e.g. "t3_abc/sft"
    info: Info
    item: Item  # the API item (what a Scorer or a service needs)
    summaries: tuple[Summary, Summary]
    batch: str = "eval"
    split: str = EVAL_COMPARISON_SPLIT


@dataclass(frozen=True, slots=True)
class RateTask:
    """One summary to rate on the four 1-7 axes."""

    key: str
    info: Info
    item: Item
    summary: Summary
    batch: str = "eval"
    split: str = EVAL_AXIS_SPLIT


class Judge(Protocol):
    kind: str  # "sim" | "rm" | "human"
    name: str  # what records carry in extra.judge

    def compare(self, tasks: Sequence[PairTask], *, progress: bool = False) -> list[dict[str, Any]]: ...

    def rate(self, tasks: Sequence[RateTask], *, progress: bool = False) -> list[dict[str, Any]]: ...


def judge_of(worker: str) -> str:
    """The judge kind behind a record's worker: ``sim``, ``rm`` or ``human`` (any unprefixed worker is a person, as
    in the public release)."""
    head, sep, _ = worker.partition(":")
    if sep and head in ("sim", "rm"):
        return head
    return "human"


def comparison_record(task: PairTask, choice: int, worker: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """A public-format comparison for a judged task; ``extra`` keeps ``confidence`` (1-9 or None) and judge details."""
    confidence = extra.get("confidence")
    rec = to_json(
        Comparison(
            info=task.info,
            summaries=task.summaries,
            choice=choice,
            worker=worker,
            batch=task.batch,
            split=task.split,
            confidence=confidence,
        )
    )
    rec["extra"] = {"confidence": confidence, **{k: v for k, v in extra.items() if k != "confidence"}}
    return rec


def axis_record(task: RateTask, axes, worker: str) -> dict[str, Any]:
    return to_json(AxisEval(task.info, task.split, task.summary, axes, worker, task.batch))


def _bar(iterable: Iterable, total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress, leave=False)


# --------------------------------------------------------------------------------------------------- sim


class SimJudge:
    """The simulated labeler pool over the world's hidden frames (offline world only)."""

    kind = "sim"
    name = "sim"

    def __init__(
        self,
        frames: Mapping[str, Frame],
        *,
        pool: LabelerPool | None = None,
        seed: int = 0,
        second_opinion: float = 0.1,
    ):
        if not 0 <= second_opinion <= 1:
            raise ValueError(f"second_opinion is a share of pairs in [0, 1], got {second_opinion}")
        self.frames = frames
        self.pool = pool or LabelerPool(seed=0)
        self.seed = seed
        self.second_opinion = second_opinion if len(self.pool) > 1 else 0.0

    def check(self, infos: Iterable[Info]) -> None:
        missing = [i.id for i in infos if i.id not in self.frames]
        if missing:
            raise JudgeUnavailable(
                f"the sim judge has no hidden frame for {len(missing)} item(s) (e.g. {missing[0]!r}): it can judge "
                "only the offline world's own posts and articles (frames.jsonl next to tldr/ and news/); use "
                "--judge rm or --judge human for other data"
            )

    def _rng(self, task_key: str) -> random.Random:
        # One stream per task: the same task gets the same labeler and choice whatever else is judged.
        return random.Random(f"prefsum-eval/sim/{self.seed}/{task_key}")

    def compare(self, tasks: Sequence[PairTask], *, progress: bool = False) -> list[dict[str, Any]]:
        self.check(t.info for t in tasks)
        out = []
        for task in _bar(tasks, len(tasks), "judge (sim)", progress):
            rng = self._rng(task.key)
            frame = self.frames[task.info.id]
            labelers = [rng.choice(self.pool.labelers)]
            if rng.random() < self.second_opinion:
                labelers.append(rng.choice([lab for lab in self.pool.labelers if lab is not labelers[0]]))
            a, b = (s.text for s in task.summaries)
            for lab in labelers:
                c = lab.choose(frame, a, b, rng)
                extra = {"confidence": c.confidence, "judge": self.name, "p_first": round(c.p_first, 6)}
                out.append(comparison_record(task, c.choice, f"sim:{lab.id}", extra))
        return out

    def rate(self, tasks: Sequence[RateTask], *, progress: bool = False) -> list[dict[str, Any]]:
        self.check(t.info for t in tasks)
        out = []
        for task in _bar(tasks, len(tasks), "judge (sim)", progress):
            rng = self._rng(task.key)
            lab = rng.choice(self.pool.labelers)
            axes = lab.rate(self.frames[task.info.id], task.summary.text, rng)
            out.append(axis_record(task, axes, f"sim:{lab.id}"))
        return out


# --------------------------------------------------------------------------------------------------- rm


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


class RmJudge:
    """A reward model as a judge: the summary with the higher (bias-corrected) reward is preferred."""

    kind = "rm"

    def __init__(self, scorer: Scorer, *, name: str, seed: int = 0, batch_size: int = 32):
        check_scorer(scorer)
        if not name:
            raise ValueError("the rm judge needs a name (the reward bundle's), for the records' worker field")
        self.scorer = scorer
        self.name = f"rm:{name}"
        self.seed = seed
        self.batch_size = batch_size

    def compare(self, tasks: Sequence[PairTask], *, progress: bool = False) -> list[dict[str, Any]]:
        # Score each distinct (item, text) once: the reference appears in every policy's pair for its post.
        index: dict[tuple[str, str], int] = {}
        pairs: list[tuple[Item, str]] = []
        for task in tasks:
            for s in task.summaries:
                key = (task.info.id, s.text)
                if key not in index:
                    index[key] = len(pairs)
                    pairs.append((task.item, s.text))
        scores: list[float] = []
        starts = range(0, len(pairs), self.batch_size)
        for start in _bar(starts, len(starts), f"judge ({self.name})", progress):
            chunk = pairs[start : start + self.batch_size]
            got = [float(x) for x in self.scorer.score(chunk)]
            if len(got) != len(chunk):
                raise RuntimeError(f"{self.name}: asked for {len(chunk)} scores, got {len(got)}")
            scores += got
        out = []
        for task in tasks:
            ra, rb = (scores[index[(task.info.id, s.text)]] for s in task.summaries)
            if ra == rb:  # identical texts (or a true tie): a fair coin, seeded per task
                choice = random.Random(f"prefsum-eval/rm/{self.seed}/{task.key}").randrange(2)
            else:
                choice = 0 if ra > rb else 1
            extra = {
                "confidence": None,
                "judge": self.name,
                "preference": round(_sigmoid(ra - rb), 6),
                "rewards": [round(ra, 6), round(rb, 6)],
            }
            out.append(comparison_record(task, choice, self.name, extra))
        return out

    def rate(self, tasks: Sequence[RateTask], *, progress: bool = False) -> list[dict[str, Any]]:
        raise JudgeUnavailable(
            "a reward model gives pairwise preferences, not 1-7 ratings: judge the news transfer with --judge sim "
            "(offline world) or --judge human"
        )


# --------------------------------------------------------------------------------------------------- human


class LabelQueue(Protocol):
    """A service's labeling queue (``evals.client.ServiceClient`` satisfies it)."""

    def queue_label_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> list[Any]: ...

    def export_labels(self) -> list[dict[str, Any]]: ...


def pair_key(info_id: str, texts: Iterable[str]) -> tuple[str, str, str]:
    """An order-free key for "these two summaries of this item": answers match tasks whatever side was shown first."""
    a, b = sorted(t.strip() for t in texts)
    return (info_id, a, b)


def task_payload(task: PairTask) -> dict[str, Any]:
    """A pair as the labeling queue takes it: the public comparison fields without a choice."""
    rec = to_json(Comparison(task.info, task.summaries, 0, "queue", task.batch, task.split, None))
    return {"info": rec["info"], "summaries": rec["summaries"], "batch": task.batch, "split": task.split}


class HumanJudge:
    """People: answers from a service's labeling queue, or from a JSONL file a person brings."""

    kind = "human"
    name = "human"

    def __init__(self, *, queue: LabelQueue | None = None, answers: str | Path | None = None):
        if queue is None and answers is None:
            raise JudgeUnavailable(
                "the human judge needs people's answers: pass --server URL (a running `prefsum serve` whose labeling "
                "queue collects them) or --answers FILE (a comparisons or axis-evals JSONL a person brings)"
            )
        self.queue = queue
        self.answers = Path(answers) if answers is not None else None
        if self.answers is not None:
            if not self.answers.is_file():
                raise JudgeUnavailable(f"--answers {self.answers}: no such file")
            if sniff_format(self.answers) not in ("comparisons", "axis"):
                raise JudgeUnavailable(
                    f"--answers {self.answers}: not in the public comparisons or axis-evals format "
                    "(check it with `prefsum data validate FILE --format comparisons`)"
                )

    def check(self, dataset: str) -> None:
        """Fail before any generation when these answers cannot judge the dataset."""
        fmt = sniff_format(self.answers) if self.answers is not None else None
        if dataset == "news" and fmt != "axis":
            raise JudgeUnavailable(
                "1-7 ratings of news summaries from people come from an axis-evals JSONL: pass --answers FILE (the "
                "service's labeling queue collects pairwise comparisons, for TL;DR)"
            )
        if dataset == "tldr" and self.queue is None and fmt != "comparisons":
            raise JudgeUnavailable(
                f"--answers {self.answers} is in the {fmt} format; TL;DR judgments are pairwise: pass a comparisons "
                "JSONL"
            )

    # -- answers

    def _answer_records(self) -> list[dict[str, Any]]:
        if self.answers is not None:
            return [to_json(r) for r in load(self.answers, sniff_format(self.answers) or "comparisons")]
        assert self.queue is not None
        return list(self.queue.export_labels())

    @staticmethod
    def _as_human(rec: dict[str, Any]) -> dict[str, Any]:
        rec = dict(rec)
        worker = str(rec.get("worker", "unknown"))
        rec["worker"] = worker if worker.startswith("human:") else f"human:{worker}"
        extra = dict(rec.get("extra") or {})
        extra["judge"] = "human"
        if "summaries" in rec:
            rec["extra"] = extra
        return rec

    def queue_tasks(self, tasks: Sequence[PairTask]) -> int:
        """Put the pairs on the service's labeling queue; returns how many were queued."""
        if self.queue is None:
            raise JudgeUnavailable("queueing pairs for people needs --server URL (a running `prefsum serve`)")
        return len(self.queue.queue_label_tasks([task_payload(t) for t in tasks]))

    def collect(self, tasks: Sequence[PairTask]) -> tuple[list[dict[str, Any]], list[PairTask]]:
        """(answered records, tasks still without an answer). Every answer for a task's pair counts (several people
        may judge one pair); the records keep the order people saw the summaries in."""
        wanted = {pair_key(t.info.id, (s.text for s in t.summaries)): t for t in tasks}
        found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for rec in self._answer_records():
            if "summaries" not in rec:
                continue
            key = pair_key(str(rec["info"]["id"]), (s["text"] for s in rec["summaries"]))
            if key in wanted:
                found.setdefault(key, []).append(self._as_human(rec))
        records = [r for key in wanted if key in found for r in found[key]]
        missing = [t for key, t in wanted.items() if key not in found]
        return records, missing

    def compare(self, tasks: Sequence[PairTask], *, progress: bool = False) -> list[dict[str, Any]]:
        records, missing = self.collect(tasks)
        if not records:
            raise JudgeUnavailable(
                f"no answers yet for any of the {len(tasks)} pairs; queue them with --server URL and let labelers "
                "answer at /label, then run again with --collect"
            )
        return records

    def rate(self, tasks: Sequence[RateTask], *, progress: bool = False) -> list[dict[str, Any]]:
        if self.answers is None or sniff_format(self.answers) != "axis":
            raise JudgeUnavailable(
                "1-7 ratings from people come from an axis-evals JSONL: pass --answers FILE (the service's labeling "
                "queue collects pairwise comparisons)"
            )
        wanted = {(t.info.id, t.summary.text.strip()): t for t in tasks}
        out = []
        for rec in self._answer_records():
            key = (str(rec["info"]["id"]), rec["summary"]["text"].strip())
            if key in wanted:
                task = wanted[key]
                rec = self._as_human(rec)
                rec["summary"] = dict(rec["summary"], policy=task.summary.policy)
                out.append(rec)
        if not out:
            raise JudgeUnavailable(f"{self.answers}: no rating matches any of the {len(tasks)} summaries to rate")
        return out


_LEADING_ID = re.compile(r'\{\s*"id"\s*:\s*"([^"]*)"')


def frames_for(path: str | Path, ids: Iterable[str]) -> dict[str, Frame]:
    """The frames of the given ids only (frames.jsonl of a default world is ~45 MB; most of it is not needed).
    A bad line raises ``ValueError`` naming ``path:line``."""
    want = set(ids)
    out: dict[str, Frame] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            m = _LEADING_ID.match(line)  # the world writes the id first: skip unwanted lines without parsing them
            if m and m.group(1) not in want:
                continue
            try:
                d = json.loads(line)
                if str(d.get("id")) in want:
                    out[str(d["id"])] = Frame.from_json(d)
            except (ValueError, AttributeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e
    return out
