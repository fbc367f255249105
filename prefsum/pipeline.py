"""``prefsum pipeline``: the main job as ten stages, each skipped when its outputs exist and its inputs are unchanged.

    world -> tokenizer -> pretrain -> sft -> label -> rm -> ppo -> export -> eval -> report

Every stage declares what it reads (files and folders, by role) and which profile sections configure it, and what it
writes. Before a stage runs, the pipeline hashes its inputs and config (files by content; checkpoint folders by their
``prefsum.json``, bundles by their ``manifest.json``, both of which change whenever the folder is rewritten) and
writes ``OUT/.pipeline/<stage>.json`` with status "running"; after success, status "done". So:

- a stage whose record is "done" with the same hash and whose outputs exist is skipped;
- a stage whose record is "running" with the same hash was killed or failed: it resumes (trainers from their last
  resume checkpoint, the label/export/eval stages from their last finished part);
- anything else runs from scratch, and since its outputs change, every stage that reads them runs again too.

``force`` redoes a stage and every stage after it; ``until`` stops after a stage. A stage whose code has not landed
stops the pipeline with a message that says so, after the stages before it have finished.

This module belongs to the composition root (the CLI): it may import every room, lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data import sha256_file  # stdlib only: `prefsum --help` stays instant

RECORD_DIR = ".pipeline"
POLICIES = ("pretrained", "sft", "ppo")
REWARD = "rm"


class PipelineError(RuntimeError):
    """The pipeline cannot go on (a stage is missing or wrote nothing); the message says what to do."""


class StageUnavailable(PipelineError):
    """A stage's code has not landed yet (or an optional dependency is missing)."""


# --------------------------------------------------------------------------------------------------- the run


@dataclass
class Run:
    """One pipeline run: the profile, the output folder and where every artifact lives."""

    profile: Any
    out: Path
    progress: bool = True

    @property
    def world(self) -> Path:
        return Path(self.profile.world.dir)

    @property
    def tldr(self) -> Path:
        return self.world / "tldr"

    @property
    def comparisons(self) -> Path:
        return self.out / "comparisons"

    @property
    def bundles(self) -> Path:
        return self.out / "bundles"

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    @property
    def judgments(self) -> Path:
        return self.eval_dir / "judgments"

    def ckpt(self, name: str) -> Path:
        return self.out / name

    @property
    def base_dir(self) -> Path:
        """The policy SFT starts from (the "pretrained" policy): trained here, or the profile's converted base."""
        base = self.profile.base
        if base.source == "pretrain":
            return self.out / "pretrained"
        if base.source == "checkpoint":
            return Path(base.name)
        return self.out / "base"


@dataclass
class Attempt:
    """What a stage's ``run`` gets: whether it resumes an interrupted attempt with the same inputs, whether it was
    forced, and a persistent list of finished parts (label rounds, bundles, eval datasets)."""

    resume: bool
    forced: bool
    parts: list[str]
    _save: Callable[[], None]

    def done(self, part: str) -> bool:
        return part in self.parts

    def mark(self, part: str) -> None:
        if part not in self.parts:
            self.parts.append(part)
            self._save()


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. ``inputs`` maps a role to a path (hashed), ``sections`` names the profile tables
    that configure it (hashed), ``outputs`` must all exist after ``run``. ``missing`` says why the stage cannot run
    here (its code has not landed), ``skip_reason`` why it does not apply to this profile; both None normally."""

    name: str
    what: str
    sections: Callable[[Run], tuple[str, ...]]
    inputs: Callable[[Run], dict[str, Path]]
    outputs: Callable[[Run], list[Path]]
    run: Callable[[Run, Attempt], None]
    missing: Callable[[Run], str | None] = lambda run: None
    skip_reason: Callable[[Run], str | None] = lambda run: None
    version: int = 1


# --------------------------------------------------------------------------------------------------- hashing


def fingerprint(path: Path) -> str:
    """A content fingerprint: a file's sha256; a checkpoint's prefsum.json or a bundle's manifest.json (rewritten
    whenever the folder is); any other folder, the sha256 of its (relative path, file sha256) list; "missing"."""
    path = Path(path)
    if path.is_file():
        return "sha256:" + sha256_file(path)
    if path.is_dir():
        for marker in ("prefsum.json", "manifest.json"):
            if (path / marker).is_file():
                return f"{marker}:" + sha256_file(path / marker)
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue  # temp files of an atomic write in progress
            h.update(f"{rel.as_posix()}\0{sha256_file(f)}\n".encode())
        return "tree:" + h.hexdigest()
    return "missing"


def stage_key(stage: Stage, run: Run) -> tuple[str, dict[str, Any]]:
    """The hash of a stage's inputs and config, and what went into it (recorded for people to read)."""
    config = {s: dataclasses.asdict(getattr(run.profile, s)) for s in stage.sections(run)}
    inputs = {role: fingerprint(p) for role, p in sorted(stage.inputs(run).items())}
    what = {"stage": stage.name, "version": stage.version, "config": config, "inputs": inputs}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return digest, what


# --------------------------------------------------------------------------------------------------- records


def record_path(out: Path, stage: str) -> Path:
    return Path(out) / RECORD_DIR / f"{stage}.json"


def read_record(out: Path, stage: str) -> dict[str, Any] | None:
    path = record_path(out, stage)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # cannot happen with atomic writes, but a hand-edited file must not stop the run
        return None


def write_record(out: Path, stage: str, record: dict[str, Any]) -> None:
    from training.data import atomic_write_text  # noqa: PLC0415

    atomic_write_text(record_path(out, stage), json.dumps(record, indent=2, sort_keys=True) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def fmt_seconds(s: float) -> str:
    """3m12s, 45.2s, 1h02m05s."""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s"


# --------------------------------------------------------------------------------------------------- stages


def _world_run(run: Run, attempt: Attempt) -> None:
    cfg = run.profile.world
    if cfg.source == "world":
        from training.world import synth  # noqa: PLC0415

        synth(run.world, seed=cfg.seed, size=cfg.size)
    elif cfg.source == "hub":
        from training.data import materialize_hub_tldr  # noqa: PLC0415

        materialize_hub_tldr(run.tldr, splits=("train", "validation", "test"))
    else:  # "files": nothing to make; say exactly which file is missing
        for p in _world_outputs(run):
            if not p.is_file():
                raise PipelineError(
                    f"world.source = 'files' but {p} does not exist; put the TL;DR files (public format) under "
                    f"{run.tldr}/ as train.jsonl, valid.jsonl and test.jsonl"
                )


def _world_outputs(run: Run) -> list[Path]:
    files = [run.tldr / f"{s}.jsonl" for s in ("train", "valid", "test")]
    if run.profile.world.source == "world":
        files += [run.world / "pretrain.txt", run.world / "frames.jsonl", run.world / "news" / "test.jsonl"]
    return files


def _tokenizer_run(run: Run, attempt: Attempt) -> None:
    from training.checkpoint import sha256_file  # noqa: PLC0415
    from training.data import atomic_write_text  # noqa: PLC0415
    from training.tokenizer import train_tokenizer  # noqa: PLC0415

    cfg, corpus, out = run.profile.tokenizer, run.world / "pretrain.txt", run.ckpt("tokenizer")
    t0 = time.perf_counter()
    tok = train_tokenizer([corpus], out, cfg)
    meta = {
        "stage": "tokenizer",
        "profile": run.profile.name,
        "config": {"tokenizer": dataclasses.asdict(cfg)},
        "data": {str(corpus): sha256_file(corpus)},
        "vocab_size": len(tok),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(out / "prefsum.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _not_trained_here(run: Run) -> str | None:
    if run.profile.base.source != "pretrain":
        return f"the base model comes from base.source = {run.profile.base.source!r} with its own tokenizer"
    return None


def _clear_resume_state(out: Path) -> None:
    from training.checkpoint import clear_state  # noqa: PLC0415

    clear_state(out)


def _pretrain_run(run: Run, attempt: Attempt) -> None:
    profile = run.profile
    if profile.base.source != "pretrain":
        from training.base import resolve_base  # noqa: PLC0415

        resolve_base(profile.base, run.out / "base")
        return
    from training.pretrain import run_pretrain  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    out = run.ckpt("pretrained")
    if not attempt.resume:
        _clear_resume_state(out)
    run_pretrain(
        run.world / "pretrain.txt",
        load_tokenizer(run.ckpt("tokenizer")),
        out,
        profile.model,
        profile.pretrain,
        resume=attempt.resume,
        profile_name=profile.name,
        progress=run.progress,
    )


def _pretrain_inputs(run: Run) -> dict[str, Path]:
    if run.profile.base.source == "pretrain":
        return {"corpus": run.world / "pretrain.txt", "tokenizer": run.ckpt("tokenizer")}
    if run.profile.base.source == "checkpoint":
        return {"checkpoint": Path(run.profile.base.name)}
    return {}


def _pretrain_sections(run: Run) -> tuple[str, ...]:
    return ("model", "pretrain") if run.profile.base.source == "pretrain" else ("base",)


def _sft_run(run: Run, attempt: Attempt) -> None:
    from training.sft import run_sft  # noqa: PLC0415

    out = run.ckpt("sft")
    if not attempt.resume:
        _clear_resume_state(out)
    run_sft(
        run.base_dir,
        run.tldr / "train.jsonl",
        run.tldr / "valid.jsonl",
        out,
        run.profile.sft,
        resume=attempt.resume,
        profile_name=run.profile.name,
        progress=run.progress,
    )


def _label_inputs(run: Run) -> dict[str, Path]:
    src = run.profile.world.source
    if src == "world":
        return {
            "pretrained": run.base_dir,
            "sft": run.ckpt("sft"),
            "posts": run.tldr / "train.jsonl",
            "frames": run.world / "frames.jsonl",
        }
    if src == "files":
        return {"comparisons": run.world / "comparisons"}
    return {}


def _label_run(run: Run, attempt: Attempt) -> None:
    from training.data import load_comparisons, write_jsonl  # noqa: PLC0415

    src, cfg, folder = run.profile.world.source, run.profile.label, run.comparisons
    folder.mkdir(parents=True, exist_ok=True)
    if not attempt.resume:
        for old in folder.glob("round*.jsonl"):
            old.unlink()
    if src == "hub":
        from training.data import load_hub  # noqa: PLC0415

        records = load_hub("comparisons", "train") + load_hub("comparisons", "validation")
        write_jsonl(folder / "all.jsonl", records)
        return
    if src == "files":
        files = sorted((run.world / "comparisons").glob("*.jsonl"))
        if not files:
            raise PipelineError(
                f"world.source = 'files' needs comparisons (public format) as {run.world / 'comparisons'}/*.jsonl"
            )
        write_jsonl(folder / "all.jsonl", [c for f in files for c in load_comparisons(f)])
        return

    from prefsum.workflows import label_round  # noqa: PLC0415

    policies = {"pretrained": str(run.base_dir), "sft": str(run.ckpt("sft"))}
    if cfg.engine == "onnx":  # sample from bundles: several times faster than torch on a CPU, same distribution
        from training.export import export_bundle  # noqa: PLC0415

        for name, ckpt in list(policies.items()):
            policies[name] = str(
                export_bundle(
                    ckpt,
                    folder / "bundles",
                    name=name,
                    max_query_tokens=cfg.max_query_tokens,
                    max_response_tokens=cfg.max_response_tokens,
                )
            )
    rounds = []
    for k in range(1, cfg.rounds + 1):
        path = folder / f"round{k}.jsonl"
        rounds.append(path)
        if attempt.done(f"round{k}") and path.is_file():
            _say(f"    label round {k}/{cfg.rounds}: done before the interruption, kept")
            continue
        _say(f"    label round {k}/{cfg.rounds}: {cfg.posts} posts, policies {', '.join(policies)} and the reference")
        summary = label_round(
            policies,
            run.world,
            path,
            n_posts=cfg.posts,
            round_k=k,
            temperature=cfg.temperature,
            samples_per_policy=cfg.samples_per_policy,
            include_reference=cfg.include_reference,
            max_query_tokens=cfg.max_query_tokens,
            max_response_tokens=cfg.max_response_tokens,
            threads=cfg.threads,
            seed=cfg.seed,
        )
        _say(f"    label round {k}: {summary['comparisons']} comparisons in {summary['seconds']}s")
        attempt.mark(f"round{k}")
    write_jsonl(folder / "all.jsonl", [c for p in rounds for c in load_comparisons(p)])


def _rm_run(run: Run, attempt: Attempt) -> None:
    from training.reward import run_rm  # noqa: PLC0415

    out = run.ckpt("rm")
    if not attempt.resume:
        _clear_resume_state(out)
    run_rm(
        run.ckpt("sft"),
        run.comparisons / "all.jsonl",
        out,
        run.profile.rm,
        resume=attempt.resume,
        profile_name=run.profile.name,
        progress=run.progress,
    )


def _missing(module: str, names: Iterable[str], what: str) -> str | None:
    """None when ``module`` imports and has every name; else a sentence saying what is missing."""
    import importlib  # noqa: PLC0415

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return f"{what} ({module}) has not landed yet"
        return f"{what} ({module}) needs the package {e.name!r}, which is not installed (run `make install`)"
    absent = [n for n in names if not hasattr(mod, n)]
    if absent:
        return f"{what} ({module}) has no {', '.join(absent)} yet"
    return None


def _ppo_missing(run: Run) -> str | None:
    if not hasattr(run.profile, "ppo"):
        return "PPO (training.config has no PPOConfig section 'ppo') has not landed yet"
    return _missing("training.ppo", ["run_ppo"], "PPO")


def _ppo_run(run: Run, attempt: Attempt) -> None:
    from training.ppo import run_ppo  # noqa: PLC0415

    out = run.ckpt("ppo")
    if not attempt.resume:
        _clear_resume_state(out)
    run_ppo(
        run.ckpt("sft"),
        run.ckpt("rm"),
        run.tldr / "train.jsonl",
        out,
        run.profile.ppo,
        valid_file=run.tldr / "valid.jsonl",
        resume=attempt.resume,
        profile_name=run.profile.name,
        progress=run.progress,
    )


def _export_sources(run: Run) -> dict[str, Path]:
    return {"pretrained": run.base_dir, "sft": run.ckpt("sft"), "ppo": run.ckpt("ppo"), REWARD: run.ckpt("rm")}


def _budgets(run: Run, name: str) -> tuple[int, int] | None:
    """Token budgets to export with: the pretrained policy's checkpoint has none of its own, so it gets SFT's (the
    same queries as every other policy); the others keep the ones their checkpoint was trained with."""
    if name == "pretrained":
        return run.profile.sft.max_query_tokens, run.profile.sft.max_response_tokens
    return None


def _bundle_is_current(bundle: Path, ckpt: Path, cfg, budgets: tuple[int, int] | None) -> bool:
    """A bundle made from exactly this checkpoint (its prefsum.json hash) with the same export settings."""
    manifest = bundle / "manifest.json"
    if not manifest.is_file() or not (ckpt / "prefsum.json").is_file():
        return False
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    export = m.get("export") or {}
    return (
        (m.get("source") or {}).get("prefsum_sha256") == sha256_file(ckpt / "prefsum.json")
        and (export.get("quantize") or "") == cfg.quantize
        and bool(export.get("fp16")) == cfg.fp16
        and (budgets is None or (m.get("max_query_tokens"), m.get("max_response_tokens")) == budgets)
    )


def _export_run(run: Run, attempt: Attempt) -> None:
    from training.export import export_bundle  # noqa: PLC0415
    from training.manifest import verify_bundle  # noqa: PLC0415

    cfg = run.profile.export
    for name, ckpt in _export_sources(run).items():
        bundle = run.bundles / name
        budgets = _budgets(run, name)
        if not attempt.forced and _bundle_is_current(bundle, ckpt, cfg, budgets):
            verify_bundle(bundle)
            _say(f"    bundle {name}: already exported from this checkpoint with these settings, kept")
            continue
        t0 = time.perf_counter()
        q, r = budgets or (None, None)
        export_bundle(
            ckpt,
            run.bundles,
            name=name,
            quantize=cfg.quantize or None,
            fp16=cfg.fp16,
            max_query_tokens=q,
            max_response_tokens=r,
        )
        _say(f"    bundle {name}: {bundle} in {fmt_seconds(time.perf_counter() - t0)}")


def _eval_missing(run: Run) -> str | None:
    return _missing("evals.runner", ["EvalSpec", "run_eval"], "eval run") or _missing(
        "service.engine", ["load_engine"], "the inference engine"
    )


def _eval_inputs(run: Run) -> dict[str, Path]:
    inputs = {f"bundle/{n}": run.bundles / n for n in (*POLICIES, REWARD)}
    inputs["tldr/test"] = run.tldr / "test.jsonl"
    if run.profile.world.source == "world":
        inputs["frames"] = run.world / "frames.jsonl"
        if run.profile.eval.news_n > 0:
            inputs["news/test"] = run.world / "news" / "test.jsonl"
    return inputs


def _eval_datasets(run: Run) -> list[tuple[str, int]]:
    cfg = run.profile.eval
    datasets = [("tldr", cfg.n)]
    if run.profile.world.source == "world" and cfg.news_n > 0:
        datasets.append(("news", cfg.news_n))
    return datasets


def _eval_outputs(run: Run) -> list[Path]:
    """The judgments files (named by evals.runner: ``{dataset}-{judge}.jsonl``)."""
    return [run.judgments / f"{d}-{run.profile.eval.judge}.jsonl" for d, _ in _eval_datasets(run)]


class BestOfN:
    """A Summarizer (evals.protocols) that samples ``n`` summaries from ``policy`` and keeps the reward model's pick
    (service.engine.best_of_n); greedy settings asked of it are ignored, it always samples at ``temperature``."""

    def __init__(self, policy, reward, n: int, temperature: float) -> None:
        self.policy, self.reward, self.n, self.temperature = policy, reward, n, temperature
        self.name = f"best_of_{n}"
        self._calls = 0  # callers pass one seed for every chunk: vary it per call, deterministically

    def summarize(self, items, *, max_new_tokens=None, temperature=0.0, top_p=1.0, n=1, seed=None):
        from service.engine import best_of_n  # noqa: PLC0415

        picked = best_of_n(
            self.policy,
            self.reward,
            items,
            n=self.n,
            temperature=self.temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=None if seed is None else seed * 100_003 + self._calls,
        )
        self._calls += 1
        return [[c] for c in picked]


def _eval_policies(run: Run) -> tuple[str, ...]:
    best_of = run.profile.eval.best_of
    return (*POLICIES, f"best_of_{best_of}") if best_of > 1 else POLICIES


def _eval_run(run: Run, attempt: Attempt) -> None:
    from evals.runner import EvalSpec, run_eval  # noqa: PLC0415
    from service.engine import load_engine  # noqa: PLC0415

    cfg = run.profile.eval
    if cfg.judge == "sim" and not (run.world / "frames.jsonl").is_file():
        raise PipelineError(
            f"eval.judge = 'sim' needs the offline world's frames.jsonl in {run.world}; use --set eval.judge=rm "
            "with real data"
        )
    if not attempt.resume and run.judgments.exists():
        shutil.rmtree(run.judgments)
    run.judgments.mkdir(parents=True, exist_ok=True)
    policies = {n: load_engine(run.bundles / n, threads=cfg.threads) for n in POLICIES}
    reward = load_engine(run.bundles / REWARD, threads=cfg.threads)
    if cfg.best_of > 1:  # the paper's baseline: the RM's pick of N samples from the SFT policy
        bon = BestOfN(policies["sft"], reward, cfg.best_of, cfg.best_of_temperature)
        policies[bon.name] = bon
    for dataset, n in _eval_datasets(run):
        if attempt.done(dataset):
            _say(f"    eval {dataset}: done before the interruption, kept")
            continue
        spec = EvalSpec(
            dataset=dataset,
            data_dir=str(run.world),
            policies=_eval_policies(run),
            judge=cfg.judge,
            n=n,
            seed=cfg.seed,
            reward_model=REWARD if cfg.judge == "rm" else None,
        )
        t0 = time.perf_counter()
        path = run_eval(
            spec,
            policies,
            out_dir=run.judgments,
            scorer=reward if cfg.judge == "rm" else None,
            progress=run.progress,
        )
        took = fmt_seconds(time.perf_counter() - t0)
        _say(f"    eval {dataset}: {n} items judged by {cfg.judge} -> {path} in {took}")
        attempt.mark(dataset)


def _report_run(run: Run, attempt: Attempt) -> None:
    from evals.report import build_report  # noqa: PLC0415

    build_report(run.judgments, run.eval_dir)


def _training(name: str, what: str, sections, inputs, run_fn, **kw) -> Stage:
    return Stage(
        name=name,
        what=what,
        sections=sections,
        inputs=inputs,
        outputs=lambda run: [run.ckpt(name) / "prefsum.json"],
        run=run_fn,
        **kw,
    )


STAGES: tuple[Stage, ...] = (
    Stage(
        name="world",
        what="the data: the offline world (posts, news, corpus, hidden frames), or the TL;DR files",
        sections=lambda run: ("world",),
        inputs=lambda run: {},
        outputs=_world_outputs,
        run=_world_run,
    ),
    Stage(
        name="tokenizer",
        what="byte-level BPE on the world corpus",
        sections=lambda run: ("tokenizer",),
        inputs=lambda run: {"corpus": run.world / "pretrain.txt"},
        outputs=lambda run: [run.ckpt("tokenizer") / "tokenizer.json", run.ckpt("tokenizer") / "prefsum.json"],
        run=_tokenizer_run,
        skip_reason=_not_trained_here,
    ),
    Stage(
        name="pretrain",
        what="the base policy: pretrained here on the corpus, or the profile's base model converted once",
        sections=_pretrain_sections,
        inputs=_pretrain_inputs,
        outputs=lambda run: [run.base_dir / "config.json"],
        run=_pretrain_run,
    ),
    _training(
        "sft",
        "supervised fine-tuning on reference summaries",
        lambda run: ("sft",),
        lambda run: {
            "base": run.base_dir,
            "train": run.tldr / "train.jsonl",
            "valid": run.tldr / "valid.jsonl",
        },
        _sft_run,
    ),
    Stage(
        name="label",
        what="comparison rounds: policies' samples judged by labelers",
        sections=lambda run: ("label",),
        inputs=_label_inputs,
        outputs=lambda run: [run.comparisons / "all.jsonl"],
        run=_label_run,
    ),
    _training(
        "rm",
        "reward model on the comparisons",
        lambda run: ("rm",),
        lambda run: {"sft": run.ckpt("sft"), "comparisons": run.comparisons / "all.jsonl"},
        _rm_run,
    ),
    _training(
        "ppo",
        "PPO against the reward model with a KL penalty to SFT",
        lambda run: ("ppo",),
        lambda run: {
            "sft": run.ckpt("sft"),
            "rm": run.ckpt("rm"),
            "train": run.tldr / "train.jsonl",
            "valid": run.tldr / "valid.jsonl",
        },
        _ppo_run,
        missing=_ppo_missing,
    ),
    Stage(
        name="export",
        what="ONNX bundles: policies pretrained, sft, ppo and the reward model rm",
        sections=lambda run: ("export",),
        inputs=_export_sources,
        outputs=lambda run: [run.bundles / n / "manifest.json" for n in (*POLICIES, REWARD)],
        run=_export_run,
        missing=lambda run: (
            _missing("training.export", ["export_bundle"], "ONNX export")
            or _missing("training.manifest", ["verify_bundle"], "the bundle manifest")
        ),
    ),
    Stage(
        name="eval",
        what="summaries of held-out posts (and news) from every policy, judged against the reference",
        sections=lambda run: ("eval",),
        inputs=_eval_inputs,
        outputs=_eval_outputs,
        run=_eval_run,
        missing=_eval_missing,
    ),
    Stage(
        name="report",
        what="the evaluation report: raw and length-controlled preference, Likert axes, plots",
        sections=lambda run: (),
        inputs=lambda run: {"judgments": run.judgments},
        outputs=lambda run: [run.eval_dir / "report.json"],
        run=_report_run,
        missing=lambda run: _missing("evals.report", ["build_report"], "eval report"),
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def stage_index(name: str | None, flag: str) -> int | None:
    if name is None:
        return None
    if name not in STAGE_NAMES:
        raise ValueError(f"{flag} {name!r} is not a stage; the stages are: {', '.join(STAGE_NAMES)}")
    return STAGE_NAMES.index(name)


# --------------------------------------------------------------------------------------------------- the loop


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "resumed", "skipped", "not used"
    seconds: float = 0.0


@dataclass
class PipelineResult:
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None


def run_pipeline(
    profile,
    out: str | Path,
    *,
    force: str | None = None,
    until: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = _say,
) -> PipelineResult:
    """Run the stages in order (see the module docstring); returns what each one did."""
    t_start = time.perf_counter()
    run = Run(profile=profile, out=Path(out), progress=progress)
    i_force = stage_index(force, "--force")
    i_until = stage_index(until, "--until")
    last = len(STAGES) - 1 if i_until is None else i_until
    if i_force is not None and i_force > last:
        raise ValueError(f"--force {force} comes after --until {until}; nothing would be redone")
    run.out.mkdir(parents=True, exist_ok=True)
    with exclusive(run.out):
        return _run_stages(run, i_force, last, say, t_start)


@contextlib.contextmanager
def exclusive(out: Path):
    """Hold OUT/.pipeline/lock for the whole run: two pipelines writing one folder would corrupt each other's
    stages. The lock is an flock, released by the kernel when the process dies (a SIGKILLed run leaves none)."""
    path = Path(out) / RECORD_DIR / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(
                f"another pipeline is running in {out} (it holds {path}); wait for it to finish or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_stages(run: Run, i_force: int | None, last: int, say: Callable[[str], None], t_start: float):
    total = len(STAGES)
    result = PipelineResult()

    unavailable = [(s.name, why) for s in STAGES[: last + 1] if (why := s.missing(run))]
    if unavailable:
        say(
            f"note: not available yet: {', '.join(n for n, _ in unavailable)}; the pipeline will stop before "
            f"{unavailable[0][0]}"
        )

    for i, stage in enumerate(STAGES[: last + 1]):
        tag = f"[{i + 1}/{total}] {stage.name}"
        forced = i_force is not None and i >= i_force
        if reason := stage.skip_reason(run):
            say(f"{tag} not used ({reason})")
            result.stages.append(StageResult(stage.name, "not used"))
            continue
        if why := stage.missing(run):
            say(f"{tag} not available")
            raise StageUnavailable(
                f"stage {stage.name} ({i + 1}/{total}) cannot run: {why}. The stages before it are done and kept; "
                f"run the same command again once it is there (finished stages are skipped), or stop earlier with "
                f"--until {STAGES[i - 1].name if i else stage.name}"
            )
        digest, what = stage_key(stage, run)
        record = read_record(run.out, stage.name)
        same = record is not None and record.get("hash") == digest
        if not forced and same and record.get("status") == "done" and all(p.exists() for p in stage.outputs(run)):
            say(f"{tag} skipped (up to date)")
            result.stages.append(StageResult(stage.name, "skipped"))
            continue
        resume = not forced and same and record.get("status") == "running"
        rec: dict[str, Any] = {
            "stage": stage.name,
            "status": "running",
            "hash": digest,
            **what,
            "parts": list(record.get("parts", [])) if resume else [],
            "attempts": (record.get("attempts", 0) if resume else 0) + 1,
            "started_at": _now(),
        }
        write_record(run.out, stage.name, rec)
        attempt = Attempt(resume, forced, rec["parts"], functools.partial(write_record, run.out, stage.name, rec))
        verb = "resuming" if resume else ("redoing (forced)" if forced else "running")
        say(f"{tag} {verb}: {stage.what} ...")
        t0 = time.perf_counter()
        stage.run(run, attempt)
        seconds = time.perf_counter() - t0
        absent = [str(p) for p in stage.outputs(run) if not p.exists()]
        if absent:
            raise PipelineError(f"stage {stage.name} finished but did not write {', '.join(absent)}")
        rec |= {"status": "done", "finished_at": _now(), "seconds": round(seconds, 1)}
        write_record(run.out, stage.name, rec)
        say(f"{tag} done in {fmt_seconds(seconds)}")
        result.stages.append(StageResult(stage.name, "resumed" if resume else "ran", seconds))

    result.seconds = time.perf_counter() - t_start
    ran = sum(s.status in ("ran", "resumed") for s in result.stages)
    skipped = sum(s.status == "skipped" for s in result.stages)
    say(f"pipeline: {ran} stage(s) ran, {skipped} skipped, in {fmt_seconds(result.seconds)} (output: {run.out})")
    report = run.eval_dir / "report.json"
    if last == len(STAGES) - 1 and report.is_file():
        result.report = report
    return result


# --------------------------------------------------------------------------------------------------- summary


def _num(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "n/a"


def _ordered(section: dict[str, Any], *, include_ref: bool) -> list[str]:
    """Policies in pipeline order, then baselines and anything else (the reference last, when wanted)."""
    rest = sorted(n for n in section if n not in POLICIES and n != "ref")
    return [n for n in POLICIES if n in section] + rest + (["ref"] if include_ref and "ref" in section else [])


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Three lines people read first: preference vs the reference (raw / length-controlled), ground truth, news."""
    tldr = report.get("tldr") or {}
    names = _ordered(tldr, include_ref=False)
    lines = [
        "TL;DR, preferred over the reference (raw / length-controlled): "
        + ", ".join(f"{n} {_num(tldr[n].get('win_rate'))} / {_num(tldr[n].get('lc_win_rate'))}" for n in names)
    ]
    gold = [(n, tldr[n].get("gold")) for n in names if tldr[n].get("gold")]
    if gold:
        lines.append(
            "ground truth (fact recall / wrong-value rate): "
            + ", ".join(f"{n} {_num(g.get('fact_recall'))} / {_num(g.get('wrong_value_rate'))}" for n, g in gold)
        )
    news = report.get("news") or {}
    if news:
        lines.append(
            "news transfer, overall 1-7 (length-controlled): "
            + ", ".join(
                f"{n} {_num((news[n].get('axes') or {}).get('overall'))} ({_num(news[n].get('lc_overall'))})"
                for n in _ordered(news, include_ref=True)
            )
        )
    return lines[:3]
