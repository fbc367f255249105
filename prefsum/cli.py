"""The ``prefsum`` command line: the composition root, the one place that may import every room.

Every import of a room happens inside the handler that needs it, so ``prefsum --help`` stays instant (no torch).
Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input (argparse's convention). Errors from bad input
print one line; set PREFSUM_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prefsum import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed as ``prefsum: error: ...`` without a traceback, exit code 2."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- data


def cmd_data_validate(args: argparse.Namespace) -> int:
    from training.data import validate_file  # noqa: PLC0415

    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    result = validate_file(path, args.format)
    if result.ok:
        print(f"{path}: {len(result.records)} {args.format} records, no problems")
        return EXIT_OK
    for problem in result.problems:
        print(problem)
    print(
        f"{path}: {len(result.problems)} problem(s); {len(result.records)} good {args.format} records",
        file=sys.stderr,
    )
    return EXIT_USAGE


def cmd_data_synth(args: argparse.Namespace) -> int:
    from training.world import SIZES, synth  # noqa: PLC0415

    if args.size not in SIZES:
        raise CliError(f"unknown --size {args.size!r}; choose one of {', '.join(SIZES)}")
    t0 = time.perf_counter()
    summary = synth(Path(args.out), seed=args.seed, size=args.size)
    summary = dict(summary) | {"seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def cmd_data_stats(args: argparse.Namespace) -> int:
    from evals.world_stats import compute_stats  # noqa: PLC0415

    data = Path(args.dir)
    if not (data / "frames.jsonl").is_file():
        raise CliError(f"{data} is not a world directory (no frames.jsonl); make one with `prefsum data synth`")
    stats = compute_stats(data)
    if args.json:
        print(json.dumps(stats, sort_keys=True))
    else:
        width = max(map(len, stats))
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- train


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415

    from training.checkpoint import sha256_file  # noqa: PLC0415
    from training.data import atomic_write_text  # noqa: PLC0415
    from training.tokenizer import train_tokenizer  # noqa: PLC0415

    profile = _profile(args)
    cfg = profile.tokenizer
    if args.vocab_size is not None:
        cfg = dataclasses.replace(cfg, vocab_size=args.vocab_size)
    if args.min_frequency is not None:
        cfg = dataclasses.replace(cfg, min_frequency=args.min_frequency)
    corpus = args.corpus or [str(Path(profile.world.dir) / "pretrain.txt")]
    out = Path(args.out or _run_dir(args, profile) / "tokenizer")
    t0 = time.perf_counter()
    _say(f"training byte-level BPE (vocab {cfg.vocab_size}) on {', '.join(corpus)} ...")
    tok = train_tokenizer(corpus, out, cfg)
    meta = {
        "stage": "tokenizer",
        "profile": profile.name,
        "config": {"tokenizer": dataclasses.asdict(cfg)},
        "data": {c: sha256_file(c) for c in corpus},
        "vocab_size": len(tok),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(out / "prefsum.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _say(f"wrote {out}: {len(tok)} tokens, eos={tok.eos_token!r} pad={tok.pad_token!r} in {meta['wall_s']}s")
    return EXIT_OK


def _profile(args: argparse.Namespace):
    from training.config import load_profile  # noqa: PLC0415

    profile = load_profile(args.config, args.set)
    if profile.requires_cuda:
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise CliError(
                f"profile {profile.name!r} is sized for CUDA GPUs and none is available here; run it on a GPU "
                "machine (see README, 'GPUs'), or use configs/tiny.toml on a CPU"
            )
    return profile


def _base_dir(profile, run: Path) -> Path:
    """The checkpoint SFT starts from, per the profile's [base] table (converted once for hub/gguf bases)."""
    from training.base import BaseModelUnavailable, resolve_base  # noqa: PLC0415

    if profile.base.source == "pretrain":
        return run / "pretrained"
    try:
        return resolve_base(profile.base, run / "base")
    except BaseModelUnavailable as e:
        raise CliError(str(e)) from e


def _tldr_dir(args: argparse.Namespace, profile) -> Path:
    """Folder with train.jsonl / valid.jsonl in the TL;DR format: --data, or the profile's world (fetched once from
    the hub when world.source = "hub")."""
    if args.data:
        return Path(args.data)
    tldr = Path(profile.world.dir) / "tldr"
    if profile.world.source == "hub" and not (tldr / "train.jsonl").is_file():
        from training.data import materialize_hub_tldr  # noqa: PLC0415

        try:
            materialize_hub_tldr(tldr)
        except RuntimeError as e:
            raise CliError(str(e)) from e
    return tldr


def _run_dir(args: argparse.Namespace, profile) -> Path:
    return Path(args.run) if args.run else Path("runs") / profile.name


def _done(stage: str, out: Path, meta: dict) -> int:
    metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (meta.get("metrics") or {}).items()}
    _say(f"{stage}: wrote {out} in {meta.get('wall_s', '?')}s; final metrics {json.dumps(metrics)}")
    return EXIT_OK


def cmd_train_pretrain(args: argparse.Namespace) -> int:
    from training.pretrain import run_pretrain  # noqa: PLC0415
    from training.tokenizer import load_tokenizer  # noqa: PLC0415

    profile = _profile(args)
    run = _run_dir(args, profile)
    corpus = Path(args.corpus or Path(profile.world.dir) / "pretrain.txt")
    if not corpus.is_file():
        raise CliError(
            f"pretraining corpus {corpus} not found; generate the world with `prefsum data synth --out "
            f"{profile.world.dir}` or pass --corpus"
        )
    tokenizer = load_tokenizer(args.tokenizer or run / "tokenizer")
    out = Path(args.out or run / "pretrained")
    meta = run_pretrain(
        corpus,
        tokenizer,
        out,
        profile.model,
        profile.pretrain,
        resume=args.resume,
        profile_name=profile.name,
        init_from=args.init_from,
    )
    return _done("pretrain", out, meta)


def cmd_train_sft(args: argparse.Namespace) -> int:
    from training.sft import run_sft  # noqa: PLC0415

    profile = _profile(args)
    run = _run_dir(args, profile)
    data = _tldr_dir(args, profile)
    out = Path(args.out or run / "sft")
    meta = run_sft(
        args.base or _base_dir(profile, run),
        data / "train.jsonl",
        data / "valid.jsonl",
        out,
        profile.sft,
        resume=args.resume,
        profile_name=profile.name,
    )
    return _done("sft", out, meta)


def cmd_train_rm(args: argparse.Namespace) -> int:
    from training.data import load_tldr  # noqa: PLC0415
    from training.reward import run_rm  # noqa: PLC0415

    profile = _profile(args)
    run = _run_dir(args, profile)
    comparisons = Path(args.comparisons or run / "comparisons" / "all.jsonl")
    if not comparisons.is_file():
        raise CliError(
            f"comparisons file {comparisons} not found; make one with `prefsum label` or pass "
            "--comparisons FILE (the public comparisons format)"
        )
    references = None
    if args.references:
        references = load_tldr(args.references)
    out = Path(args.out or run / "rm")
    meta = run_rm(
        args.sft or run / "sft",
        comparisons,
        out,
        profile.rm,
        references=references,
        resume=args.resume,
        profile_name=profile.name,
    )
    return _done("rm", out, meta)


def cmd_train_ppo(args: argparse.Namespace) -> int:
    from training.ppo import run_ppo  # noqa: PLC0415

    profile = _profile(args)
    run = _run_dir(args, profile)
    data = _tldr_dir(args, profile)
    sft, rm = Path(args.sft or run / "sft"), Path(args.rm or run / "rm")
    for what, path, how in (("SFT policy", sft, "train sft"), ("reward model", rm, "train rm")):
        if not (path / "prefsum.json").is_file():
            raise CliError(f"{what} {path} not found; run `prefsum {how}` first or pass --{how.split()[1]} DIR")
    out = Path(args.out or run / "ppo")
    meta = run_ppo(
        sft,
        rm,
        data / "train.jsonl",
        out,
        profile.ppo,
        valid_file=data / "valid.jsonl",
        resume=args.resume,
        profile_name=profile.name,
    )
    return _done("ppo", out, meta)


def cmd_train_ppo_sweep(args: argparse.Namespace) -> int:
    from prefsum.workflows import ppo_sweep  # noqa: PLC0415

    profile = _profile(args)
    run = _run_dir(args, profile)
    try:
        coefs = [float(x) for x in args.kl_coefs.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--kl-coefs: numbers separated by commas, e.g. 0.3,0.1,0.03; got {args.kl_coefs!r}") from None
    world = Path(args.data or profile.world.dir)
    if not (world / "frames.jsonl").is_file():
        raise CliError(
            f"{world} has no frames.jsonl: the sweep's gold preference needs the simulated world (pass --data DIR)"
        )
    try:
        points = ppo_sweep(run, world, profile, coefs, n_eval=args.n)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from e
    _say(f"ppo-sweep: wrote {run / 'sweep' / 'sweep.json'} and sweep.png ({len(points)} points)")
    print(json.dumps(points, indent=2))
    return EXIT_OK


def _policies(spec: str) -> dict[str, str]:
    """ "name=DIR,name=DIR" or "DIR,DIR" (names from the folder names)."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
        if name in out:
            raise CliError(f"policy name {name!r} given twice in --policies; name them: name=DIR,name=DIR")
        if not any((Path(path) / f).is_file() for f in ("config.json", "manifest.json")):
            raise CliError(f"--policies: {path} is neither a checkpoint (config.json) nor a bundle (manifest.json)")
        out[name] = path
    if not out:
        raise CliError("--policies needs at least one checkpoint")
    return out


def cmd_label(args: argparse.Namespace) -> int:
    from prefsum.workflows import label_round  # noqa: PLC0415

    if args.labeler != "sim":
        raise CliError(
            "only --labeler sim runs here; to queue the same pairs for people, use the service's "
            "labeling queue (POST /v1/label/tasks)"
        )
    data = Path(args.data)
    if not (data / "frames.jsonl").is_file():
        raise CliError(
            f"{data} has no frames.jsonl: the simulated labelers judge only the offline world (`prefsum data synth`)"
        )
    summary = label_round(
        _policies(args.policies),
        data,
        args.out,
        n_posts=args.posts,
        round_k=args.round,
        temperature=args.temperature,
        samples_per_policy=args.samples,
        include_reference=not args.no_reference,
        max_query_tokens=args.max_query_tokens,
        max_response_tokens=args.max_response_tokens,
        seed=args.seed,
        threads=args.threads,
    )
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def cmd_eval_checkpoint(args: argparse.Namespace) -> int:
    from prefsum.workflows import evaluate_checkpoint  # noqa: PLC0415

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        n=args.n,
        max_query_tokens=args.max_query_tokens,
        max_response_tokens=args.max_response_tokens,
        threads=args.threads,
        best_of=args.best_of,
        reward_model=args.reward_model,
        temperature=args.temperature,
    )
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- pipeline
# (issue 9: the main job end to end; the stages live in prefsum/pipeline.py)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from prefsum.pipeline import PipelineError, run_pipeline, summary_lines  # noqa: PLC0415

    profile = _profile(args)
    out = Path(args.out) if args.out else Path("runs") / profile.name
    try:
        result = run_pipeline(profile, out, force=args.force, until=args.until)
    except PipelineError as e:
        print(f"prefsum: error: {e}", file=sys.stderr)
        return EXIT_FAIL
    if result.report is not None:
        report = json.loads(result.report.read_text(encoding="utf-8"))
        print(f"report: {result.report.with_suffix('.html')} (also report.md, report.json)")
        for line in summary_lines(report):
            print(line)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- export
# (issue 6: ONNX export; the exporter lives in training/export.py, the runtime in service/engine.py)


def cmd_export(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from training.export import export_bundle  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bundle = export_bundle(
        args.checkpoint,
        args.out,
        name=args.name,
        quantize=args.quantize,
        fp16=args.fp16,
        max_query_tokens=args.max_query_tokens,
        max_response_tokens=args.max_response_tokens,
    )
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    size = sum((bundle / f).stat().st_size for f in manifest["files"])
    print(
        f"{manifest['kind']} bundle {bundle} ({size / 1e6:.1f} MB, quantize={manifest['export']['quantize']}, "
        f"fp16={manifest['export']['fp16']}) in {time.perf_counter() - t0:.1f}s"
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- serve
# (issue 7: the Litestar service)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve  # noqa: PLC0415

    flags = {k: getattr(args, k) for k in ("bundles", "host", "port", "workers", "db", "threads")}
    flags["batching"] = False if args.no_batching else None
    return serve(flags)


# --------------------------------------------------------------------------------------------------- parser


def _not_yet(name: str, issue: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise CliError(
            f"`prefsum {name}` is not implemented yet (tracked in issue: {issue}); "
            "see `prefsum --help` for what works today"
        )

    return handler


_STAGE_EPILOG = (
    "\n\nWrites a Hugging Face checkpoint (safetensors) plus prefsum.json (stage, config, data hashes, metrics, "
    "parent), atomically. A killed run continues with --resume and ends with the same metrics."
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps paragraphs of descriptions; shows a default only where there is a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in text
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefsum",
        formatter_class=_Formatter,
        description=(
            "Train text summarizers from human feedback and serve them (Stiennon et al. 2020):\n"
            "SFT on TL;DR -> reward model on pairwise comparisons -> PPO with a KL penalty -> ONNX -> service.\n\n"
            "Runs offline on a CPU in a simulated world with known ground truth (`prefsum data synth`),\n"
            "and on real data and GPUs with the real profiles in configs/."
        ),
        epilog="Run `prefsum COMMAND --help` for each command's options.",
    )
    p.add_argument("--version", action="version", version=f"prefsum {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(parent, name: str, help: str, handler, description: str | None = None):
        sp = parent.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
        sp.set_defaults(handler=handler)
        return sp

    # data ------------------------------------------------------------------------------------------------------
    data = sub.add_parser(
        "data",
        help="validate public-format data files; generate and inspect the offline world",
        description="Data tools: validate files in the public formats, synthesize the offline "
        "world, print its statistics.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    v = add(
        dsub,
        "validate",
        "check a JSONL file in a public format; list every problem as PATH:LINE: field: problem",
        cmd_data_validate,
        "Check every line of a JSONL file against a public format. Prints the record count and exits 0 when the "
        "file is good; otherwise prints each problem as PATH:LINE: field: problem and exits 2. Blank lines are "
        "skipped and a UTF-8 BOM is accepted.\n\nFormats: tldr = {id, subreddit, title, post, summary}; "
        "comparisons = {info, summaries[2], choice, worker, batch, split, extra}; axis = {info, split, "
        "summary{text, policy, note, axes}, worker, batch}; cnndm = {id, article, highlights}.",
    )
    v.add_argument("path", help="the JSONL file")
    v.add_argument(
        "--format",
        required=True,
        choices=["tldr", "comparisons", "axis", "cnndm"],
        help="which public format the file is in",
    )
    s = add(
        dsub,
        "synth",
        "generate the offline world (posts, news, pretraining corpus, hidden frames)",
        cmd_data_synth,
        "Generate the simulated world deterministically for a seed: tldr/{train,valid,test}.jsonl, "
        "news/{valid,test}.jsonl, pretrain.txt and frames.jsonl (hidden ground truth, read only by judges).",
    )
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--seed", type=int, default=0, help="world seed; same seed, same bytes")
    s.add_argument("--size", default="default", help="tiny (tests), default (the tiny training profile) or large")
    st = add(
        dsub,
        "stats",
        "statistics of a generated world (sizes, lengths, labeler agreement, gold sanity checks)",
        cmd_data_stats,
    )
    st.add_argument("dir", help="a directory written by `prefsum data synth`")
    st.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    # train -----------------------------------------------------------------------------------------------------
    train = sub.add_parser(
        "train",
        help="train a stage: tokenizer, pretrain, sft, rm, ppo, ppo-sweep",
        description="Training stages. Each writes a Hugging Face checkpoint plus prefsum.json.",
    )
    tsub = train.add_subparsers(dest="train_command", metavar="STAGE", required=True)

    def common(sp):
        sp.add_argument("--config", help="TOML profile, e.g. configs/tiny.toml (default: the built-in tiny defaults)")
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="STAGE.FIELD=VALUE",
            help="override one config field (repeatable), e.g. --set pretrain.steps=500",
        )
        sp.add_argument("--run", help="run directory holding the stages (default: runs/<profile name>)")
        sp.add_argument("--out", help="output folder (default: RUN/<stage>)")

    tk = add(
        tsub,
        "tokenizer",
        "train a byte-level BPE tokenizer (EOS and [PAD] distinct) on a corpus",
        cmd_train_tokenizer,
        "Train a byte-level BPE on a text corpus and save it as a Hugging Face fast tokenizer with EOS "
        "(<|endoftext|>) and [PAD] as distinct special tokens, plus prefsum.json (config, corpus hash).",
    )
    common(tk)
    tk.add_argument("--corpus", nargs="+", help="text file(s) (default: WORLD/pretrain.txt from the profile)")
    tk.add_argument("--vocab-size", type=int, help="vocabulary size including bytes and specials (default: profile)")
    tk.add_argument("--min-frequency", type=int, help="minimum pair count for a merge (default: profile)")

    def stage(name: str, help_: str, handler, description: str):
        sp = add(tsub, name, help_, handler, description + _STAGE_EPILOG)
        common(sp)
        sp.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
        return sp

    sp = stage(
        "pretrain",
        "pretrain a small causal LM on the world's pretrain.txt",
        cmd_train_pretrain,
        "Pretrain the small base model (the offline stand-in for a given pretrained LM) on a text corpus, "
        "optionally after a synthetic copy warm-up. Logs validation loss and a copy (induction) probe.",
    )
    sp.add_argument("--corpus", help="text corpus (default: WORLD/pretrain.txt from the profile)")
    sp.add_argument("--tokenizer", help="tokenizer folder (default: RUN/tokenizer)")
    sp.add_argument("--init-from", help="continue from this checkpoint instead of a fresh model")
    sp = stage(
        "sft",
        "supervised fine-tuning on reference TL;DRs (loss on response tokens only)",
        cmd_train_sft,
        "Fine-tune the base model on reference summaries: query in the paper's format, response = "
        "' ' + summary + EOS, loss on response tokens only, [PAD] right padding, dropout off.",
    )
    sp.add_argument(
        "--base",
        help="base checkpoint (default: from the profile's [base]: RUN/pretrained when trained "
        "here, else the converted hub/GGUF model in RUN/base)",
    )
    sp.add_argument("--data", help="folder with train.jsonl and valid.jsonl in the TL;DR format (default: WORLD/tldr)")
    sp = stage(
        "rm",
        "reward model on pairwise comparisons (Bradley-Terry), references centred at 0",
        cmd_train_rm,
        "Train a reward model from the SFT checkpoint on comparisons (split 'train'), validate on "
        "valid1/valid2 beside the labelers' own agreement, and store the bias that centres references at 0.",
    )
    sp.add_argument("--sft", help="SFT checkpoint to start from (default: RUN/sft)")
    sp.add_argument("--comparisons", help="comparisons JSONL (default: RUN/comparisons/all.jsonl)")
    sp.add_argument(
        "--references",
        help="TL;DR JSONL whose references set the bias (default: the 'ref' summaries in the comparisons)",
    )
    sp = stage(
        "ppo",
        "PPO against the reward model with a per-token KL penalty to the SFT policy",
        cmd_train_ppo,
        "Reinforcement learning from the reward model (the paper's step 3): sample summaries of training posts "
        "at the rollout temperature, score them with the RM (a fixed penalty when no EOS appears), subtract "
        "beta * (log pi - log pi_SFT) per token, estimate advantages with GAE against a value network "
        "initialised from the RM, and take several clipped PPO epochs per batch. Logs objective/* and ppo/* "
        "metrics to OUT.metrics.jsonl, prints samples with their score and KL, and saves curves.png.",
    )
    sp.add_argument("--sft", help="SFT policy to start from and to stay close to (default: RUN/sft)")
    sp.add_argument("--rm", help="reward model (default: RUN/rm)")
    sp.add_argument("--data", help="folder with train.jsonl and valid.jsonl in the TL;DR format (default: WORLD/tldr)")
    sp = add(
        tsub,
        "ppo-sweep",
        "PPO at several KL coefficients: the over-optimisation curve",
        cmd_train_ppo_sweep,
        "The paper's Figure 5 as a tool: PPO from RUN/sft against RUN/rm at each KL coefficient (RUN/sweep/kl_X/, "
        "reused when current, trained again when older than RUN/sft or RUN/rm or trained with other ppo settings, "
        "resumed when killed), then on held-out posts the KL from the SFT policy, the mean RM score and how often "
        "the simulated labelers prefer the policy to the reference; the SFT policy itself is the KL-0 point. "
        "PPO's settings come from the profile (--set ppo.lr=1e-4 pushes every point further). Writes "
        "RUN/sweep/sweep.json (read by `prefsum eval report --sweep`) and sweep.png. Needs the offline world "
        "(gold labels); real data has no gold judge.",
    )
    common(sp)
    sp.add_argument(
        "--kl-coefs", default="0.3,0.1,0.05,0.02,0.01,0.003", help="KL coefficients (beta), comma-separated"
    )
    sp.add_argument("--data", help="world directory with frames.jsonl (default: the profile's world.dir)")
    sp.add_argument("-n", type=int, default=200, help="held-out test posts to measure each point on")

    # label / export / serve / eval / pipeline ---------------------------------------------------------------------
    lb = add(
        sub,
        "label",
        "run a comparison round: sample summaries from policies and have labelers choose",
        cmd_label,
        "A comparison round as in the paper: sample a summary of each post from every policy (and take the "
        "reference), pair two different summaries per post, and have the simulated labeler pool choose. Writes "
        "the public comparisons format (batch = roundK, worker = labeler, split train/valid1/valid2 by post; "
        "validation posts are judged by two labelers, for the agreement ceiling).",
    )
    lb.add_argument("--policies", required=True, help="checkpoints as name=DIR,name=DIR (or DIR,DIR)")
    lb.add_argument("--data", required=True, help="world directory (with frames.jsonl)")
    lb.add_argument("--posts", type=int, default=2000, help="posts to label in this round")
    lb.add_argument("--round", type=int, default=1, help="round number K: uses training posts [(K-1)N, KN)")
    lb.add_argument("--labeler", default="sim", help="sim (the simulated pool)")
    lb.add_argument("--out", required=True, help="comparisons JSONL to write")
    lb.add_argument("--temperature", type=float, default=0.7, help="sampling temperature for the policies")
    lb.add_argument("--samples", type=int, default=1, help="samples per policy per post")
    lb.add_argument("--no-reference", action="store_true", help="do not put the reference summary in the pairs")
    lb.add_argument("--max-query-tokens", type=int, default=512, help="query budget")
    lb.add_argument("--max-response-tokens", type=int, default=48, help="response budget")
    lb.add_argument("--seed", type=int, default=0, help="sampling and pairing seed")
    lb.add_argument("--threads", type=int, default=2, help="torch threads")
    ex = add(
        sub,
        "export",
        "export a checkpoint to an ONNX bundle (policy with KV cache, or reward model)",
        cmd_export,
        "Writes OUT/NAME/: model.onnx (policy: one merged decoder with past key values; reward model: the "
        "bias-corrected reward at the response's EOS), the tokenizer files and manifest.json (kind, budgets, "
        "EOS/PAD ids, reward bias, source checkpoint and the sha256 of every file). The bundle appears atomically.",
    )
    ex.add_argument("--checkpoint", required=True, help="checkpoint folder (a stage 'rm' checkpoint -> reward bundle)")
    ex.add_argument("--out", required=True, help="bundles folder; the bundle goes to OUT/NAME")
    ex.add_argument("--name", help="bundle name (default: the checkpoint folder's name)")
    ex.add_argument("--quantize", choices=["int8"], help="dynamic int8 weights (CPU speed)")
    ex.add_argument("--fp16", action="store_true", help="float16 weights, for CUDAExecutionProvider")
    ex.add_argument("--max-query-tokens", type=int, help="query budget (default: the checkpoint's config)")
    ex.add_argument("--max-response-tokens", type=int, help="response budget (default: the checkpoint's config)")
    ex.add_argument("--threads", type=int, default=1, help="torch threads while tracing")
    # serve (issue 7: the Litestar service; settings and start-up live in service/settings.py, service/serve.py)
    sv = add(
        sub,
        "serve",
        "serve summaries, reward scores, eval jobs and the labeling page over HTTP",
        cmd_serve,
        "Serve the bundles under --bundles with Litestar under uvicorn: POST /v1/summarize, POST /v1/score, "
        "GET /v1/models, eval jobs (/v1/evals), the labeling queue (/v1/label/...) and page (/label), /metrics, "
        "/health, /ready, OpenAPI at /schema. Every setting can also come from a PREFSUM_* variable (flags win), "
        "e.g. PREFSUM_ADMIN_TOKEN, PREFSUM_MAX_BATCH; see docs/service.md. Every bundle is verified first: a "
        "missing or corrupted file stops start-up with a message naming it.",
    )
    sv.add_argument(
        "--bundles", metavar="DIR", help="folder with one sub-folder per bundle (default: runs/tiny/bundles)"
    )
    sv.add_argument("--host", help="interface to bind (default: 127.0.0.1)")
    sv.add_argument("--port", type=int, help="TCP port, 0 = any free one (default: 8000)")
    sv.add_argument("--workers", type=int, help="uvicorn worker processes (default: 1)")
    sv.add_argument("--db", metavar="PATH", help="SQLite database (default: runs/tiny/service/prefsum.db)")
    sv.add_argument("--threads", type=int, help="ONNX Runtime threads per model (default: ONNX Runtime's choice)")
    sv.add_argument("--no-batching", action="store_true", help="run every request alone (no micro-batching)")
    # end serve (issue 7)
    ev = sub.add_parser(
        "eval",
        help="evaluate policies (raw and length-controlled preference) and write reports",
        description="Evaluations on TL;DR and news transfer.",
    )
    esub = ev.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", required=True)
    # eval run / eval report (issue 8): options and handlers in prefsum/evalcmd.py (stdlib-only at import time)
    from prefsum import evalcmd  # noqa: PLC0415

    evalcmd.configure_run(add(esub, "run", evalcmd.RUN_HELP, evalcmd.cmd_eval_run, evalcmd.RUN_DESCRIPTION))
    ec = add(
        esub,
        "checkpoint",
        "quick check of a policy checkpoint in the offline world: fact recall, wrong values, win rate vs reference",
        cmd_eval_checkpoint,
        "Greedy summaries of N held-out posts from a torch checkpoint, judged by the world's ground truth: fact "
        "recall (facts stated with the right value), wrong-value rate (summaries stating any fact wrong), mean "
        "gold score, and the simulated labelers' preference against the reference TL;DR with a 95% interval.",
    )
    ec.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    ec.add_argument("--data", required=True, help="world directory (with frames.jsonl)")
    ec.add_argument("--split", default="test", choices=["valid", "test"], help="which posts")
    ec.add_argument("-n", type=int, default=300, help="number of posts")
    ec.add_argument("--max-query-tokens", type=int, default=512, help="query budget")
    ec.add_argument("--max-response-tokens", type=int, default=48, help="response budget")
    ec.add_argument("--threads", type=int, default=2, help="torch threads")
    ec.add_argument("--best-of", type=int, default=1, help="N > 1: sample N summaries, keep the reward model's pick")
    ec.add_argument("--reward-model", help="reward model checkpoint for --best-of")
    ec.add_argument("--temperature", type=float, default=0.7, help="sampling temperature for --best-of")
    evalcmd.configure_report(
        add(esub, "report", evalcmd.REPORT_HELP, evalcmd.cmd_eval_report, evalcmd.REPORT_DESCRIPTION)
    )
    # --- pipeline (issue 9) ---
    pl = add(
        sub,
        "pipeline",
        "the whole loop: world -> tokenizer -> pretrain -> SFT -> labels -> RM -> PPO -> export -> evals -> report",
        cmd_pipeline,
        "Run every stage in order with one profile: world, tokenizer, pretrain, sft, label, rm, ppo, export, eval, "
        "report. A stage whose outputs exist and whose inputs and config are unchanged (hashes recorded in "
        "OUT/.pipeline/STAGE.json) is skipped; a killed or failed stage resumes where it stopped; a changed config "
        "field re-runs its stage and every stage after it. Bundles go to OUT/bundles/{pretrained,sft,ppo,rm}, the "
        "evaluation to OUT/eval/ (report.json, report.md, report.html).",
    )
    pl.add_argument("--config", help="TOML profile, e.g. configs/tiny.toml (default: the built-in tiny defaults)")
    pl.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set label.rounds=1",
    )
    pl.add_argument("--out", help="run folder for every stage's output (default: runs/<profile name>)")
    from prefsum.pipeline import STAGE_NAMES  # noqa: PLC0415 - stdlib only, keeps --help instant

    pl.add_argument("--force", metavar="STAGE", choices=STAGE_NAMES, help="redo this stage and every stage after it")
    pl.add_argument("--until", metavar="STAGE", choices=STAGE_NAMES, help="stop after this stage")
    # --- end pipeline ---
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CliError as e:
        print(f"prefsum: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError) as e:  # ConfigError and DataError are ValueErrors
        # Bad paths and bad values from the user's files: a clear message, no traceback (PREFSUM_DEBUG=1 shows it).
        if os.environ.get("PREFSUM_DEBUG") == "1":
            raise
        print(f"prefsum: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prefsum: interrupted", file=sys.stderr)
        return 130
