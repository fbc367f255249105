"""Generation speed, side by side: torch eager ``generate`` vs the exported ONNX bundle (fp32 and int8).

Same prompts, same response budget, the same number of threads for torch and ONNX Runtime, batch 1 and batch 8.
The paths run interleaved, round after round, and each reports its median tokens/s over the rounds (this machine is
shared, so a single timing says little). Tokens counted = response tokens generated including each row's EOS;
the time includes the prompt pass (what a caller waits for).

The floor: a decode step must read every weight once, so tokens/s cannot exceed batch * bandwidth / model bytes,
with the bandwidth measured here by copying a large numpy array. For a model this small the weights sit in the CPU
caches and per-step overheads dominate, so every path lands far below that floor; the table says how far.

    python bench/generate.py [--checkpoint runs/exp/sftI] [--threads 1] [--rounds 3]

Last line: ``ratio tokens/s ort/torch = X`` (fp32, batch 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CKPT = REPO / "runs" / "exp" / "sftI"
DEFAULT_RM = REPO / "runs" / "exp" / "rmI3"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help=f"policy checkpoint (default {DEFAULT_CKPT} if it exists)")
    p.add_argument("--reward-checkpoint", type=Path, help=f"also compare rewards (default {DEFAULT_RM} if it exists)")
    p.add_argument("--threads", type=int, default=1, help="torch threads = ONNX Runtime intra-op threads")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per path")
    p.add_argument("--prompts", type=int, default=16, help="prompts per round (batch 8 uses twice as many)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="response budget")
    return p.parse_args(argv)


def same_size_random_model(work: Path) -> Path:
    """No trained checkpoint here: a random tiny-profile-shaped Llama (2 layers, 128 dims) with a tokenizer trained
    on a freshly generated tiny world, saved as a prefsum checkpoint."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.modeling import ModelConfig, build_causal_lm
    from training.tokenizer import TokenizerConfig, train_tokenizer
    from training.world import synth

    world = REPO / "runs" / "world"
    if not (world / "pretrain.txt").is_file():
        world = work / "world"
        synth(world, seed=0, size="tiny")
    tok = train_tokenizer([world / "pretrain.txt"], work / "tokenizer", TokenizerConfig(vocab_size=4096))
    cfg = ModelConfig(arch="llama", n_layer=2, d_model=128, n_head=4, rope_theta=1e6)
    model = build_causal_lm(cfg, len(tok), tok.eos_token_id, tok.pad_token_id)
    with torch.no_grad():  # larger weights than the default init: peaked logits, varied greedy outputs
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.1)
    return save_checkpoint(model, tok, work / "random", {"stage": "sft", "config": {}})


def prompts(tok, n: int, max_query_tokens: int) -> list[list[int]]:
    from training.data import load_tldr
    from training.sft import encode_query

    for path in (REPO / "runs" / "world" / "tldr" / "valid.jsonl", REPO / "runs" / "world" / "tldr" / "test.jsonl"):
        if path.is_file():
            posts = load_tldr(path)[:n]
            if len(posts) == n:
                return [encode_query(p, tok, max_query_tokens) for p in posts]
    from training.world import synth

    with tempfile.TemporaryDirectory() as d:
        synth(Path(d) / "w", seed=1, size="tiny")
        posts = load_tldr(Path(d) / "w" / "tldr" / "valid.jsonl")[:n]
    return [encode_query(p, tok, max_query_tokens) for p in posts]


def step_bytes(onnx_path: Path) -> int:
    """Bytes of weights a decode step reads: every initializer except those only gathered from (the embedding
    table when the LM head has its own copy: one row per token)."""
    import numpy as np
    import onnx

    g = onnx.load(str(onnx_path)).graph
    users: dict[str, set[str]] = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    total = 0
    for t in g.initializer:
        if users.get(t.name, set()) - {"Gather"}:
            total += int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def memory_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes/s of a large array copy (read + write), the best of a few."""
    import numpy as np

    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prefsum-bench-") as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from service.engine import load_engine
    from training.export import export_bundle
    from training.modeling import count_parameters
    from training.sampling import generate
    from training.task import clean_summary
    from training.tokenizer import load_tokenizer

    ckpt = args.checkpoint or (DEFAULT_CKPT if (DEFAULT_CKPT / "prefsum.json").is_file() else None)
    if ckpt is None:
        print("no trained checkpoint: building a random model of the tiny profile's size", flush=True)
        ckpt = same_size_random_model(work)
    print(f"checkpoint {ckpt}; {args.threads} thread(s) for torch and ONNX Runtime", flush=True)
    tok = load_tokenizer(ckpt)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    n_params = count_parameters(model)
    fp32_dir = export_bundle(ckpt, work / "bundles", name="fp32")
    int8_dir = export_bundle(ckpt, work / "bundles", name="int8", quantize="int8")
    fp32 = load_engine(fp32_dir, threads=args.threads, provider="cpu")
    int8 = load_engine(int8_dir, threads=args.threads, provider="cpu")
    budget = args.max_new_tokens
    queries = prompts(tok, 2 * args.prompts, fp32.manifest.max_query_tokens)

    def torch_path(batch):
        gens = generate(model, tok, batch, max_new_tokens=budget, batch_size=len(batch))
        return [(g.tokens, g.finish_reason) for g in gens]

    def ort_path(eng):
        def run(batch):
            out = eng.generate_ids(batch, budget)
            for toks, _ in out:
                clean_summary(eng.tokenizer.decode(toks))  # the same decode work the torch path does
            return out

        return run

    paths = {"torch eager": torch_path, "ORT fp32": ort_path(fp32), "ORT int8": ort_path(int8)}
    weight_bytes = {
        "torch eager": 4 * n_params,
        "ORT fp32": step_bytes(fp32_dir / "model.onnx"),
        "ORT int8": step_bytes(int8_dir / "model.onnx"),
    }
    bandwidth = memory_bandwidth()
    print(
        f"model: {n_params / 1e6:.2f}M parameters; weights read per decode step: torch "
        f"{weight_bytes['torch eager'] / 1e6:.2f} MB, ORT fp32 {weight_bytes['ORT fp32'] / 1e6:.2f} MB, ORT int8 "
        f"{weight_bytes['ORT int8'] / 1e6:.2f} MB; memory bandwidth (numpy copy) {bandwidth / 1e9:.1f} GB/s"
    )

    results: dict[tuple[str, int], list[float]] = {}
    outputs: dict[tuple[str, int], list] = {}
    for b in (1, 8):
        prompts_b = queries[: args.prompts] if b == 1 else queries[: 2 * args.prompts]
        batches = [prompts_b[i : i + b] for i in range(0, len(prompts_b), b)]
        for fn in paths.values():
            fn(batches[0])  # warm-up
        order = list(paths)
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:  # rotate who runs first
                t = time.perf_counter()
                out = [row for batch in batches for row in paths[name](batch)]
                dt = time.perf_counter() - t
                n_tok = sum(len(toks) + (finish == "eos") for toks, finish in out)
                results.setdefault((name, b), []).append(n_tok / dt)
                outputs[(name, b)] = out

    print(f"\n{'path':<12} {'batch':>5} {'tokens/s':>10} {'vs torch':>9} {'floor tok/s':>12} {'of floor':>9}")
    for b in (1, 8):
        base = statistics.median(results[("torch eager", b)])
        for name in paths:
            tps = statistics.median(results[(name, b)])
            floor = b * bandwidth / weight_bytes[name]
            print(f"{name:<12} {b:>5} {tps:>10.0f} {tps / base:>8.2f}x {floor:>12.0f} {100 * tps / floor:>8.2f}%")
    for b in (1, 8):
        ref = [t for t, _ in outputs[("torch eager", b)]]
        same32 = sum(a == t for a, (t, _) in zip(ref, outputs[("ORT fp32", b)], strict=True))
        f32 = [t for t, _ in outputs[("ORT fp32", b)]]
        same8 = sum(a == t for a, (t, _) in zip(f32, outputs[("ORT int8", b)], strict=True))
        print(
            f"batch {b}: greedy responses equal to torch: fp32 {same32}/{len(ref)}; "
            f"int8 equal to fp32: {same8}/{len(ref)}"
        )
    rm_ckpt = args.reward_checkpoint or (DEFAULT_RM if (DEFAULT_RM / "prefsum.json").is_file() else None)
    if rm_ckpt is not None:
        compare_rewards(rm_ckpt, queries, [t for t, _ in outputs[("torch eager", 8)]], work, args.threads)
    ratio = statistics.median(results[("ORT fp32", 1)]) / statistics.median(results[("torch eager", 1)])
    print(f"ratio tokens/s ort/torch = {ratio:.2f}")
    return 0


def compare_rewards(rm_ckpt: Path, queries, responses, work: Path, threads: int) -> None:
    """Rewards of the torch greedy summaries: torch vs the fp32 reward bundle vs the int8 one."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from service.engine import load_engine
    from training.checkpoint import read_meta
    from training.export import export_bundle
    from training.reward import pooling_of, rewards

    model = AutoModelForSequenceClassification.from_pretrained(str(rm_ckpt)).eval()
    meta = read_meta(rm_ckpt)
    bias, pooling = float(meta.get("reward_bias", 0.0)), pooling_of(meta)
    fp32 = load_engine(export_bundle(rm_ckpt, work / "bundles", name="rm"), threads=threads, provider="cpu")
    int8 = load_engine(
        export_bundle(rm_ckpt, work / "bundles", name="rm-int8", quantize="int8"), threads=threads, provider="cpu"
    )
    eos = fp32.manifest.eos_id
    seqs = [list(q) + list(r) + [eos] for q, r in zip(queries, responses, strict=True)]
    starts = [len(q) for q in queries]
    with torch.no_grad():
        raw = rewards(model, seqs, fp32.manifest.pad_id, pooling=pooling, starts=starts)
    ref = (raw - bias).numpy().astype(np.float64)
    r32, r8 = np.array(fp32.score_ids(seqs, starts)), np.array(int8.score_ids(seqs, starts))
    d32, d8 = np.abs(r32 - ref), np.abs(r8 - r32)
    print(
        f"rewards of {len(seqs)} summaries (std {ref.std():.3f}): |ORT fp32 - torch| max {d32.max():.2e}; "
        f"|int8 - fp32| max {d8.max():.4f} mean {d8.mean():.4f}; same ranking of pairs "
        f"{_pair_agreement(r32, r8):.3f}"
    )


def _pair_agreement(a, b) -> float:
    """Share of pairs (i, j) ordered the same way by both score vectors."""
    import numpy as np

    i, j = np.triu_indices(len(a), k=1)
    return float(np.mean(np.sign(a[i] - a[j]) == np.sign(b[i] - b[j])))


if __name__ == "__main__":
    sys.exit(main())
