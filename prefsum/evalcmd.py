"""``prefsum eval run`` and ``prefsum eval report``: the composition of engines (or a service client), judges and the
evals' runner and report. Part of the CLI (the composition root); stdlib-only at import time, so ``prefsum --help``
stays instant, and every room is imported inside the handlers.

Everything is validated before any generation starts: the spec (dataset, judge, n, policy names), the dataset file
and its items, the judge's needs (frames.jsonl for ``sim``, a reward bundle or server model for ``rm``, a server or an
answers file for ``human``), and every bundle (hashes verified, kind checked) or server model name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

RUN_HELP = "generate summaries and collect judgments (TL;DR pairwise vs the reference; news 1-7 ratings)"
RUN_DESCRIPTION = (
    "An evaluation run as in the paper: a greedy summary of N items from every policy, plus the baselines (`ref`, "
    "the reference; `lead2` for TL;DR, `lead3` for news), judged against the reference. TL;DR: pairwise "
    "comparisons (public comparisons format); news: 1-7 ratings on four axes (public axis-evals format).\n\n"
    "Judges: sim = the offline world's simulated labelers (needs frames.jsonl beside the data); rm = a reward "
    "bundle (--reward-model), preferring the higher reward; human = people, through a running service's labeling "
    "queue (--server URL queues the pairs; later --collect reads the answers) or from a JSONL a person brings "
    "(--answers FILE).\n\n"
    "Writes into --out: summaries-DATASET.jsonl, DATASET-JUDGE.jsonl (the judgments) and run-DATASET-JUDGE.json. "
    "Runs with different judges may share --out (the report then compares them). Without --server, policies are "
    "ONNX bundles (`prefsum export`) run in-process; with --server, they are names of policies the service loaded."
)
REPORT_HELP = "analyse judgments into a report (raw and length-controlled preference, news Likert, plots)"
REPORT_DESCRIPTION = (
    "Read every *.jsonl in --in that is in the public comparisons or axis-evals format (as `prefsum eval run` "
    "writes them, or as a person brings them); the reference side of a comparison is the summary whose policy is "
    "`ref`. Writes report.json, report.md, report.html and PNG figures into --out: raw win rates vs the reference "
    "with 95% Wilson intervals, length-controlled win rates (logistic regression on policy and log length ratio, "
    "lengths in characters), news ratings per axis with a length-controlled overall score, labeler agreement and "
    "the reward model's agreement with labelers, gold quality when the world's frames.jsonl is found, and the "
    "over-optimisation curve from --sweep. See docs/evals.md for how to read it."
)


class EvalCliError(ValueError):
    """A bad eval command line; printed as one line by prefsum.cli.main (exit code 2)."""


# --------------------------------------------------------------------------------------------------- parsers


def configure_run(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--dataset", required=True, choices=["tldr", "news"], help="TL;DR posts or news transfer")
    sp.add_argument(
        "--data", required=True, help="world folder (tldr/, news/, frames.jsonl), a folder with SPLIT.jsonl, or a file"
    )
    sp.add_argument(
        "--policies",
        help="name=BUNDLE,name=BUNDLE (or BUNDLE,BUNDLE: names from the folders); with --server: service policy "
        "names (name or name=SERVICE_NAME)",
    )
    sp.add_argument("--judge", required=True, choices=["sim", "rm", "human"], help="who judges (see above)")
    sp.add_argument("--n", "-n", type=int, default=300, help="items from the start of the split")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--server", help="URL of a running `prefsum serve`: generate and judge through it over HTTP")
    sp.add_argument("--reward-model", help="reward bundle for --judge rm (with --server: the service's reward name)")
    sp.add_argument("--seed", type=int, default=0, help="seed for judging and the order of the two sides")
    sp.add_argument("--split", default="test", help="which split file of --data")
    sp.add_argument("--max-new-tokens", type=int, help="response budget (default: each bundle's own)")
    sp.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads for in-process bundles")
    sp.add_argument("--token", help="the service's admin token for --judge human (default: $PREFSUM_ADMIN_TOKEN)")
    sp.add_argument("--answers", help="--judge human: a comparisons/axis-evals JSONL with people's answers")
    sp.add_argument(
        "--collect",
        action="store_true",
        help="--judge human: read the answers to pairs an earlier run queued in --out (no generation)",
    )


def configure_report(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--in", dest="in_dir", required=True, help="folder with the judgments (`prefsum eval run --out`)")
    sp.add_argument("--out", required=True, help="folder for report.json, report.md, report.html and the figures")
    sp.add_argument("--sweep", help='JSON list of {"kl_coef", "kl", "rm_score", "gold_win_rate"}: over-optimisation')
    sp.add_argument("--frames", help="the world's frames.jsonl for gold axes (default: found beside the data)")


# --------------------------------------------------------------------------------------------------- helpers


def parse_policies(spec: str | None) -> dict[str, str]:
    """``name=X,name=Y`` or ``X,Y`` (names from the last path part) -> {name: X}."""
    if not spec or not spec.strip():
        raise EvalCliError("--policies is required: name=BUNDLE,name=BUNDLE (bundles from `prefsum export`)")
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, target = part.partition("=")
        if not sep:
            name, target = Path(part.rstrip("/")).name, part
        name, target = name.strip(), target.strip()
        if not name or not target:
            raise EvalCliError(f"--policies: {part!r} is not name=BUNDLE")
        if name in out:
            raise EvalCliError(f"--policies: the name {name!r} is given twice; name them: a=BUNDLE,b=BUNDLE")
        out[name] = target
    return out


def _bundle(path: str, kind: str, flag: str, threads: int | None):
    """Load a bundle after checking it is one and of the right kind; every problem says how to fix it."""
    from service.engine import load_engine

    p = Path(path)
    if not p.is_dir():
        raise EvalCliError(f"{flag}: {p} does not exist; pass a bundle folder written by `prefsum export`")
    if not (p / "manifest.json").is_file():
        if (p / "config.json").is_file():
            raise EvalCliError(
                f"{flag}: {p} is a training checkpoint, not a bundle; export it first: "
                f"`prefsum export --checkpoint {p} --out DIR` and pass DIR/{p.name}"
            )
        raise EvalCliError(f"{flag}: {p} has no manifest.json; pass a bundle folder written by `prefsum export`")
    engine = load_engine(p, threads=threads)  # verifies every file's hash (BundleError names the file)
    if engine.manifest.kind != kind:
        other = "--reward-model" if engine.manifest.kind == "reward" else "--policies"
        raise EvalCliError(f"{flag}: {p} is a {engine.manifest.kind} bundle; pass it with {other}")
    return engine


def _client(args: argparse.Namespace):
    from evals.client import ServiceClient, ServiceError

    token = args.token or os.environ.get("PREFSUM_ADMIN_TOKEN")
    client = ServiceClient(args.server, token=token)
    try:
        models = client.models()
    except ServiceError as e:
        raise EvalCliError(str(e)) from e
    return client, models


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- run


def cmd_eval_run(args: argparse.Namespace) -> int:
    from evals.client import ServiceError
    from evals.judges import HumanJudge
    from evals.runner import EvalSpec, collect_human, frames_path, load_items, run_eval

    if args.judge != "human" and (args.answers or args.collect):
        raise EvalCliError("--answers and --collect belong to --judge human")
    out = Path(args.out)
    if args.collect:
        if not args.server and not args.answers:
            raise EvalCliError("--collect reads answers from --server URL (or --answers FILE); pass one")
        queue = _client(args)[0] if args.server else None
        result = collect_human(out, HumanJudge(queue=queue, answers=args.answers), dataset=args.dataset)
        print(json.dumps(result, indent=2))
        return 0

    names = parse_policies(args.policies)
    spec = EvalSpec(
        dataset=args.dataset,
        data_dir=args.data,
        policies=tuple(names),
        judge=args.judge,
        n=args.n,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        reward_model=Path(args.reward_model).name if args.reward_model else None,
        split=args.split,
    )
    items = load_items(spec)  # the dataset: found, valid, not empty
    if spec.judge == "sim":
        frames_path(spec)  # the judge's ground truth, before loading anything
    if spec.judge == "rm" and not args.reward_model:
        raise EvalCliError(
            "--judge rm needs --reward-model: a reward bundle from `prefsum export` (with --server: the name of a "
            "reward model the service loaded)"
        )
    if spec.judge == "human" and not args.server and not args.answers:
        raise EvalCliError(
            "--judge human needs people's answers: --server URL (queue the pairs on a running `prefsum serve`; "
            "labelers answer at URL/label; then run again with --collect) or --answers FILE"
        )

    scorer = None
    client = None
    if args.server:
        client, models = _client(args)
        loaded = {m["name"]: m.get("kind") for m in models}
        for target in names.values():
            if loaded.get(target) != "policy":
                have = ", ".join(n for n, k in loaded.items() if k == "policy") or "none"
                raise EvalCliError(
                    f"--policies: the service at {args.server} has no policy {target!r} (it has: {have})"
                )
        summarizers: dict[str, Any] = {name: client.summarizer(target) for name, target in names.items()}
        if spec.judge == "rm":
            if loaded.get(args.reward_model) != "reward":
                have = ", ".join(n for n, k in loaded.items() if k == "reward") or "none"
                raise EvalCliError(
                    f"--reward-model: the service at {args.server} has no reward model {args.reward_model!r} "
                    f"(it has: {have})"
                )
            scorer = client.scorer(args.reward_model)
    else:
        summarizers = {name: _bundle(path, "policy", "--policies", args.threads) for name, path in names.items()}
        if spec.judge == "rm":
            scorer = _bundle(args.reward_model, "reward", "--reward-model", args.threads)

    judge = None
    if spec.judge == "human":
        judge = HumanJudge(queue=client, answers=args.answers)
    _say(f"eval run: {spec.dataset}, {len(items)} items, policies {', '.join(names)}, judge {spec.judge}")
    try:
        run_eval(spec, summarizers, out_dir=out, scorer=scorer, progress=True, judge=judge)
    except ServiceError as e:
        raise EvalCliError(str(e)) from e
    run = json.loads((out / f"run-{spec.dataset}-{spec.judge}.json").read_text(encoding="utf-8"))
    run.pop("spec", None)
    print(json.dumps({"out": str(out), **run}, indent=2, ensure_ascii=False))
    if run.get("status") == "waiting for labels":
        _say(
            f"queued {run.get('queued')} pairs on {args.server}; labelers answer at {args.server.rstrip('/')}/label. "
            f"Then: prefsum eval run --dataset {spec.dataset} --data {args.data} --judge human --server "
            f"{args.server} --out {out} --collect"
        )
    else:
        _say(f"next: prefsum eval report --in {out} --out {out / 'report'}")
    return 0


# --------------------------------------------------------------------------------------------------- report


def cmd_eval_report(args: argparse.Namespace) -> int:
    from evals.report import build_report

    report = build_report(args.in_dir, args.out, sweep=args.sweep, frames=args.frames)
    out = Path(args.out)
    for section in ("tldr", "news"):
        judge = report["meta"]["judges"].get(section)
        for policy, e in (report.get(section) or {}).items():
            if section == "tldr":
                lc = "–" if e["lc_win_rate"] is None else f"{e['lc_win_rate']:.3f}"
                print(
                    f"tldr  {policy:>12}: win rate {e['win_rate']:.3f} {e['win_rate_ci']}, length-controlled {lc}, "
                    f"n {e['n']} ({judge})"
                )
            else:
                axes = " ".join(f"{k} {v:.2f}" for k, v in e["axes"].items() if v is not None)
                print(f"news  {policy:>12}: {axes}, n {e['n']} ({judge})")
    print(f"report: {out / 'report.html'} (also report.md, report.json)")
    return 0
