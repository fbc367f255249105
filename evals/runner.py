"""An evaluation run: summaries from each policy and the baselines, judged against the reference.

1. validate everything first (dataset file and its items, policy names, the judge and what it needs), so a bad input
   fails in a second, not after an hour of generation
2. generate one greedy summary per item for every policy (any :class:`evals.protocols.Summarizer`)
3. add the baselines: ``ref`` (the item's reference: the TL;DR, or the news highlights on one line), ``lead2``
   (TL;DR) / ``lead3`` (news)
4. judge: TL;DR -> every policy and ``lead2`` against ``ref`` in pairwise comparisons (the two sides in a seeded random
   order); news -> 1-7 axis ratings of every summary, ``ref`` and ``lead3`` included
5. write, atomically, into ``out_dir``: ``summaries-{dataset}.jsonl`` (every summary), ``{dataset}-{judge}.jsonl``
   (the judgments, public comparisons / axis-evals format: what ``prefsum eval report`` reads) and
   ``run-{dataset}-{judge}.json`` (the spec, counts, timings)

Runs with different judges may share one ``out_dir``: greedy summaries are the same, so the report can set the
reward model's choices beside the labelers' on the same pairs.

Human judging is asynchronous: with a labeling queue the run queues the pairs (``human-tasks-{dataset}.jsonl``) and
returns; :func:`collect_human` later writes the answers people gave.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.data import (
    NewsArticle,
    Summary,
    TldrPost,
    atomic_write_text,
    load_cnndm,
    load_tldr,
    write_jsonl,
)

from .baselines import lead2_post, lead3_article
from .judges import (
    JUDGES,
    HumanJudge,
    Judge,
    JudgeUnavailable,
    PairTask,
    RateTask,
    RmJudge,
    SimJudge,
    frames_for,
    task_payload,
)
from .labelers import info_for
from .protocols import Scorer, Summarizer, check_scorer, check_summarizer, item_for

DATASETS = ("tldr", "news")
REFERENCE = "ref"
BASELINES = {"tldr": "lead2", "news": "lead3"}
RESERVED = frozenset({REFERENCE, *BASELINES.values()})
# A policy that stops at once has no text; the public formats need one, so the record says so in text and note.
EMPTY_TEXT = " (empty)"
EMPTY_NOTE = "empty: the policy produced no text"
GENERATION_CHUNK = 16


class EvalInputError(ValueError):
    """A bad eval input (spec, data, policies, judge); the message names it and says how to fix it."""


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate. ``data_dir`` is a world folder (``tldr/test.jsonl``, ``news/test.jsonl``, ``frames.jsonl``),
    a folder with ``{split}.jsonl``, or the JSONL file itself; ``policies`` are names (the keys of the summarizers
    passed to :func:`run_eval`); ``n`` items are taken from the start of the split."""

    dataset: str
    data_dir: str | Path
    policies: tuple[str, ...]
    judge: str
    n: int
    seed: int = 0
    max_new_tokens: int | None = None
    reward_model: str | None = None
    split: str = "test"
    second_opinion: float = 0.1  # sim judge: share of TL;DR pairs a second labeler also judges (agreement)
    temperature: float = 0.0  # the paper's evaluations are greedy
    batch: str = field(default="", compare=False)  # the records' batch field (default: eval-<dataset>)

    def __post_init__(self):
        object.__setattr__(self, "policies", tuple(self.policies))
        if self.dataset not in DATASETS:
            raise EvalInputError(f"unknown dataset {self.dataset!r}; choose tldr or news")
        if self.judge not in JUDGES:
            raise EvalInputError(f"unknown judge {self.judge!r}; choose one of {', '.join(JUDGES)}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise EvalInputError(f"n must be a positive number of items, got {self.n!r}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise EvalInputError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise EvalInputError(f"temperature must be >= 0, got {self.temperature}")
        seen: set[str] = set()
        for name in self.policies:
            if not name or not str(name).strip():
                raise EvalInputError("a policy name is empty; name every policy (name=BUNDLE)")
            if name in RESERVED:
                raise EvalInputError(
                    f"policy name {name!r} is reserved for a baseline ({', '.join(sorted(RESERVED))}); rename it"
                )
            if name in seen:
                raise EvalInputError(f"policy {name!r} is listed twice")
            seen.add(name)
        if self.judge == "rm" and self.dataset == "news":
            raise EvalInputError(
                "the rm judge gives pairwise preferences, not the 1-7 ratings the news transfer needs; use --judge sim "
                "(offline world) or --judge human"
            )

    @property
    def batch_name(self) -> str:
        return self.batch or f"eval-{self.dataset}"

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["policies"] = list(self.policies)
        return d


# --------------------------------------------------------------------------------------------------- inputs


def dataset_file(spec: EvalSpec) -> Path:
    """The JSONL file of the spec's items: the path itself, DIR/{dataset}/{split}.jsonl or DIR/{split}.jsonl."""
    root = Path(spec.data_dir)
    if root.is_file():
        return root
    candidates = [root / spec.dataset / f"{spec.split}.jsonl", root / f"{spec.split}.jsonl"]
    for c in candidates:
        if c.is_file():
            return c
    raise EvalInputError(
        f"no {spec.dataset} data in {root}: looked for {' and '.join(map(str, candidates))}; pass --data a world "
        "folder (`prefsum data synth`) or a folder/file in the "
        f"{'TL;DR' if spec.dataset == 'tldr' else 'CNN/DM'} format"
    )


def load_items(spec: EvalSpec) -> list[TldrPost | NewsArticle]:
    path = dataset_file(spec)
    records = load_tldr(path) if spec.dataset == "tldr" else load_cnndm(path)
    if not records:
        raise EvalInputError(f"{path} holds no items: the dataset is empty")
    records = records[: spec.n]
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise EvalInputError(f"{path}: the id {r.id!r} occurs twice; every item needs its own id")
        seen.add(r.id)
    return records


def reference_text(record: TldrPost | NewsArticle) -> str:
    """The reference summary in the public format: one leading space, whitespace (and highlight lines) joined."""
    raw = record.summary if isinstance(record, TldrPost) else record.highlights
    text = " ".join(raw.split())
    return " " + text if text else EMPTY_TEXT


def baseline_text(record: TldrPost | NewsArticle) -> str:
    return lead2_post(record) if isinstance(record, TldrPost) else lead3_article(record)


def frames_path(spec: EvalSpec) -> Path:
    root = Path(spec.data_dir)
    folder = root.parent if root.is_file() else root
    for c in (folder / "frames.jsonl", folder.parent / "frames.jsonl"):
        if c.is_file():
            return c
    raise JudgeUnavailable(
        f"the sim judge needs the offline world's hidden frames (frames.jsonl), and there is none in {folder} or its "
        "parent: evaluate on a world made by `prefsum data synth`, or use --judge rm (with --reward-model) or "
        "--judge human"
    )


def make_judge(spec: EvalSpec, items: Sequence[TldrPost | NewsArticle], scorer: Scorer | None) -> Judge:
    """The judge the spec asks for, checked against the items before any generation."""
    if spec.judge == "sim":
        frames = frames_for(frames_path(spec), (r.id for r in items))
        judge = SimJudge(frames, seed=spec.seed, second_opinion=spec.second_opinion)
        judge.check(info_for(r) for r in items)
        return judge
    if spec.judge == "rm":
        if scorer is None:
            raise JudgeUnavailable(
                "the rm judge needs a reward model: pass --reward-model BUNDLE (a reward bundle from `prefsum "
                "export`), or a reward model name on the --server"
            )
        check_scorer(scorer)
        name = spec.reward_model or getattr(scorer, "name", None) or "reward"
        return RmJudge(scorer, name=Path(str(name)).name, seed=spec.seed)
    raise JudgeUnavailable(
        "the human judge needs people's answers: pass --server URL (a running `prefsum serve` labeling queue) or "
        "--answers FILE"
    )


# --------------------------------------------------------------------------------------------------- generation


@dataclass(frozen=True, slots=True)
class Generated:
    id: str
    policy: str
    text: str
    tokens: int | None
    finish_reason: str | None
    note: str | None = None

    def summary(self) -> Summary:
        return Summary(self.text, self.policy, self.note)


def _generate(
    name: str, summarizer: Summarizer, items: Sequence[TldrPost | NewsArticle], spec: EvalSpec, bar
) -> list[Generated]:
    out: list[Generated] = []
    for start in range(0, len(items), GENERATION_CHUNK):
        chunk = items[start : start + GENERATION_CHUNK]
        results = summarizer.summarize(
            [item_for(r) for r in chunk],
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            n=1,
            seed=spec.seed,
        )
        if len(results) != len(chunk):
            raise RuntimeError(f"policy {name!r} returned {len(results)} results for {len(chunk)} items")
        for record, completions in zip(chunk, results, strict=True):
            if not completions:
                raise RuntimeError(f"policy {name!r} returned no summary for item {record.id}")
            c = completions[0]
            text = " ".join(str(c.text).split())
            note = None
            if not text:
                text, note = EMPTY_TEXT, EMPTY_NOTE
            else:
                text = " " + text
            out.append(Generated(record.id, name, text, int(c.tokens), str(c.finish_reason), note))
        bar.update(len(chunk))
    return out


def generate_all(
    spec: EvalSpec,
    items: Sequence[TldrPost | NewsArticle],
    summarizers: Mapping[str, Summarizer],
    *,
    progress: bool = False,
) -> dict[str, list[Generated]]:
    """Every policy's summary of every item, plus the reference and the lead-k baseline; keyed by policy name."""
    from tqdm import tqdm

    by_policy: dict[str, list[Generated]] = {
        REFERENCE: [Generated(r.id, REFERENCE, reference_text(r), None, None) for r in items],
        BASELINES[spec.dataset]: [
            Generated(r.id, BASELINES[spec.dataset], baseline_text(r), None, None) for r in items
        ],
    }
    with tqdm(total=len(items) * len(spec.policies), desc="generate", disable=not progress, leave=False) as bar:
        for name in spec.policies:
            bar.set_postfix_str(name)
            by_policy[name] = _generate(name, summarizers[name], items, spec, bar)
    return by_policy


# --------------------------------------------------------------------------------------------------- tasks


def pair_tasks(spec: EvalSpec, items, by_policy: Mapping[str, list[Generated]]) -> list[PairTask]:
    """Every non-reference summary against the reference of its post, sides in a seeded random order."""
    refs = {g.id: g for g in by_policy[REFERENCE]}
    tasks = []
    for name, gens in by_policy.items():
        if name == REFERENCE:
            continue
        for record, g in zip(items, gens, strict=True):
            key = f"{record.id}/{name}"
            pair = (g.summary(), refs[record.id].summary())
            if random.Random(f"prefsum-eval/order/{spec.seed}/{key}").random() < 0.5:
                pair = (pair[1], pair[0])
            tasks.append(PairTask(key, info_for(record), item_for(record), pair, batch=spec.batch_name))
    return tasks


def rate_tasks(spec: EvalSpec, items, by_policy: Mapping[str, list[Generated]]) -> list[RateTask]:
    return [
        RateTask(f"{record.id}/{name}", info_for(record), item_for(record), g.summary(), batch=spec.batch_name)
        for name, gens in by_policy.items()
        for record, g in zip(items, gens, strict=True)
    ]


# --------------------------------------------------------------------------------------------------- run


def _write_run(out: Path, spec: EvalSpec, judge_kind: str, info: dict[str, Any]) -> Path:
    path = out / f"run-{spec.dataset}-{judge_kind}.json"
    atomic_write_text(path, json.dumps({"spec": spec.as_json(), **info}, indent=2, ensure_ascii=False) + "\n")
    return path


def run_eval(
    spec: EvalSpec,
    summarizers: Mapping[str, Summarizer],
    *,
    out_dir: str | Path,
    scorer: Scorer | None = None,
    progress: bool = False,
    judge: Judge | None = None,
) -> Path:
    """Generate, judge, write (see the module docstring); returns ``out_dir``. ``judge`` overrides the one the spec
    names (the CLI passes a :class:`HumanJudge` built from --server/--answers)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    # 1. validate before any long work
    missing = [p for p in spec.policies if p not in summarizers]
    if missing:
        known = ", ".join(summarizers) or "none"
        raise EvalInputError(f"no summarizer for policy {missing[0]!r} (have: {known}); pass one per policy name")
    for name in spec.policies:
        check_summarizer(name, summarizers[name])
    items = load_items(spec)
    if judge is None:
        judge = make_judge(spec, items, scorer)
    elif judge.kind != spec.judge:
        raise EvalInputError(f"the spec asks for judge {spec.judge!r} but a {judge.kind!r} judge was passed")
    if isinstance(judge, SimJudge):
        judge.check(info_for(r) for r in items)
    if isinstance(judge, HumanJudge):
        judge.check(spec.dataset)
    out.mkdir(parents=True, exist_ok=True)

    # 2-3. summaries
    t_gen = time.perf_counter()
    by_policy = generate_all(spec, items, summarizers, progress=progress)
    summaries_file = out / f"summaries-{spec.dataset}.jsonl"
    write_jsonl(summaries_file, [asdict(g) for gens in by_policy.values() for g in gens])
    gen_s = time.perf_counter() - t_gen

    # 4-5. judgments
    t_judge = time.perf_counter()
    info: dict[str, Any] = {
        "judge": judge.name,
        "items": len(items),
        "dataset_file": str(dataset_file(spec)),
        "summaries": summaries_file.name,
        "policies": list(by_policy),
    }
    judged = out / f"{spec.dataset}-{judge.kind}.jsonl"
    if spec.dataset == "tldr":
        tasks = pair_tasks(spec, items, by_policy)
        if isinstance(judge, HumanJudge) and judge.queue is not None:
            pending = out / f"human-tasks-{spec.dataset}.jsonl"
            write_jsonl(pending, [_task_json(t) for t in tasks])
            info |= {"queued": judge.queue_tasks(tasks), "pending_file": pending.name, "status": "waiting for labels"}
            _write_run(out, spec, judge.kind, info | {"seconds": _timings(t0, gen_s, t_judge)})
            return out
        records = judge.compare(tasks, progress=progress)
        info["pairs"] = len(tasks)
    else:
        records = judge.rate(rate_tasks(spec, items, by_policy), progress=progress)
    write_jsonl(judged, records)
    info |= {"judgments": len(records), "file": judged.name, "status": "done"}
    _write_run(out, spec, judge.kind, info | {"seconds": _timings(t0, gen_s, t_judge)})
    return out


def _timings(t0: float, gen_s: float, t_judge: float) -> dict[str, float]:
    now = time.perf_counter()
    return {"generate": round(gen_s, 2), "judge": round(now - t_judge, 2), "total": round(now - t0, 2)}


def _task_json(task: PairTask) -> dict[str, Any]:
    return {"key": task.key, "item": dict(task.item), **task_payload(task)}


def collect_human(out_dir: str | Path, judge: HumanJudge, *, dataset: str = "tldr") -> dict[str, Any]:
    """Read people's answers for the pairs an earlier human run queued; write ``{dataset}-human.jsonl``.
    Returns ``{"answered", "pending", "file"}``; raises when nothing was queued in ``out_dir``."""
    from training.data import parse_comparison

    out = Path(out_dir)
    pending_file = out / f"human-tasks-{dataset}.jsonl"
    if not pending_file.is_file():
        raise EvalInputError(
            f"{out} has no {pending_file.name}: queue pairs first with `prefsum eval run --judge human --server URL "
            f"--out {out}`"
        )
    tasks = []
    for line in pending_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            c = parse_comparison(d | {"choice": 0, "worker": "queue"})
            tasks.append(PairTask(d["key"], c.info, d["item"], c.summaries, batch=c.batch, split=c.split))
    records, missing = judge.collect(tasks)
    judged = out / f"{dataset}-human.jsonl"
    if records:
        write_jsonl(judged, records)
    return {
        "answered": len(tasks) - len(missing),
        "pending": len(missing),
        "judgments": len(records),
        "file": str(judged) if records else None,
    }
