"""prefsum's PPO vs TRL's PPOTrainer, side by side, at equal settings (`make bench-ppo`).

Same tiny GPT-2 policy (2 layers, 128 dims), the same GPT2ForSequenceClassification(num_labels=1) as reward and value
model, the same prompts (posts of a tiny simulated world in the paper's query format), the same hyperparameters:
rollout batch 16, 1 minibatch, 4 PPO epochs, 32-token responses at temperature 0.7, fixed beta 0.05, lr 3e-5,
no missing-EOS penalty, one torch thread. Each engine runs in its own subprocess (``--engine``), alternating, and
the best of ``--repeats`` runs counts. Throughput is steady state: episodes over the time from the end of the first
iteration to the end of the last (setup, model loading and saving excluded for both).

TRL 1.12 is the last release with PPOTrainer (``trl.experimental.ppo``); `make bench-ppo` installs it from
requirements/bench.txt. The last line is ``ratio episodes/s prefsum/trl = X``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, EPOCHS, RESPONSE, TEMP, KL, LR = 16, 4, 32, 0.7, 0.05, 3e-5


def build_assets(work: Path, n_posts: int) -> None:
    """World posts, a tokenizer, a random-init GPT-2 policy and a GPT-2 sequence-classification RM (both engines)."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.data import load_tldr, write_jsonl
    from training.modeling import ModelConfig, build_causal_lm
    from training.reward import build_reward_model
    from training.tokenizer import TokenizerConfig, train_tokenizer
    from training.world import synth

    synth(work / "world", seed=0, size="tiny")
    posts = load_tldr(work / "world" / "tldr" / "train.jsonl")[:n_posts]
    write_jsonl(work / "posts.jsonl", posts)
    tok = train_tokenizer([work / "world" / "pretrain.txt"], work / "tokenizer", TokenizerConfig(vocab_size=2048))
    cfg = ModelConfig(arch="gpt2", n_layer=2, d_model=128, n_head=4, max_positions=1024)
    policy = build_causal_lm(cfg, len(tok), tok.eos_token_id, tok.pad_token_id, seed=0)
    save_checkpoint(policy, tok, work / "sft", {"stage": "sft"})
    torch.manual_seed(0)
    rm = build_reward_model(work / "sft")
    save_checkpoint(rm, tok, work / "rm", {"stage": "rm", "reward_bias": 0.0})


def run_prefsum(work: Path, iters: int) -> dict:
    from training.config import PPOConfig
    from training.ppo import run_ppo

    cfg = PPOConfig(
        steps=iters,
        rollout_batch_size=BATCH,
        minibatches=1,
        ppo_epochs=EPOCHS,
        lr=LR,
        lr_decay=False,
        temperature=TEMP,
        max_response_tokens=RESPONSE,
        penalize_missing_eos=False,
        kl_coef=KL,
        whiten_rewards=False,
        eval_every=10**9,
        n_samples=0,
        threads=1,
    )
    meta = run_ppo(work / "sft", work / "rm", work / "posts.jsonl", work / "out-prefsum", cfg, progress=False)
    hist = meta["history"]
    seconds = sum(BATCH / r["time/episodes_per_s"] for r in hist[1:])  # iterations 2..N
    return {
        "episodes_per_s": BATCH * (len(hist) - 1) / seconds,
        "score_last": sum(r["objective/scores"] for r in hist[-3:]) / 3,
        "kl_last": sum(r["objective/kl"] for r in hist[-3:]) / 3,
    }


def run_trl(work: Path, iters: int) -> dict:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from training.data import load_tldr
    from training.sft import encode_query
    from training.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    tok = load_tokenizer(work / "sft")
    tok.padding_side = "left"
    posts = load_tldr(work / "posts.jsonl")
    ds = Dataset.from_dict({"input_ids": [encode_query(p, tok, 512) for p in posts]})
    policy = AutoModelForCausalLM.from_pretrained(str(work / "sft"))
    ref = AutoModelForCausalLM.from_pretrained(str(work / "sft"))
    value = AutoModelForSequenceClassification.from_pretrained(str(work / "rm"), num_labels=1)
    reward = AutoModelForSequenceClassification.from_pretrained(str(work / "rm"), num_labels=1)
    for m in (policy, ref, value, reward):
        for mod in m.modules():  # dropout off, as prefsum does (RLHF recipes train without it)
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    args = PPOConfig(
        output_dir=str(work / "out-trl"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        num_ppo_epochs=EPOCHS,
        total_episodes=BATCH * iters,
        local_rollout_forward_batch_size=BATCH,
        response_length=RESPONSE,
        temperature=TEMP,
        stop_token="eos",
        missing_eos_penalty=None,
        kl_coef=KL,
        learning_rate=LR,
        lr_scheduler_type="constant",
        whiten_rewards=False,
        num_sample_generations=0,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=0,
        dataloader_num_workers=0,
    )
    marks: list[float] = []
    history: list[dict] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                history.append(dict(logs))

    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref,
        reward_model=reward,
        train_dataset=ds,
        value_model=value,
        callbacks=[Clock()],
    )
    trainer.train()
    scored = [r for r in history if "objective/scores" in r]
    return {
        "episodes_per_s": BATCH * (len(marks) - 1) / (marks[-1] - marks[0]),
        "score_last": sum(r["objective/scores"] for r in scored[-3:]) / max(len(scored[-3:]), 1),
        "kl_last": sum(r["objective/kl"] for r in scored[-3:]) / max(len(scored[-3:]), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=12, help="PPO iterations per run (episodes = 16 x iters)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine, alternating; the best counts")
    ap.add_argument("--posts", type=int, default=512, help="prompts (tiny-world posts)")
    ap.add_argument("--engine", choices=["prefsum", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.engine:  # child process: one engine, one JSON line
        run = run_prefsum if args.engine == "prefsum" else run_trl
        print("RESULT " + json.dumps(run(Path(args.work), args.iters)), flush=True)
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        sys.exit("TRL is not installed: `make bench-ppo` installs it (requirements/bench.txt)")
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        work = Path(tmp)
        print(f"building assets in {work} (tiny world, tokenizer, GPT-2 2x128 policy and RM) ...", flush=True)
        build_assets(work, args.posts)
        results: dict[str, list[dict]] = {"prefsum": [], "trl": []}
        for r in range(args.repeats):
            for engine in ("trl", "prefsum") if r % 2 == 0 else ("prefsum", "trl"):
                cmd = [sys.executable, __file__, "--engine", engine, "--work", str(work), "--iters", str(args.iters)]
                proc = subprocess.run(
                    cmd, check=False, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}
                )
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    sys.exit(f"{engine} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                res = json.loads(line[7:])
                results[engine].append(res)
                print(
                    f"  run {r + 1} {engine:>7}: {res['episodes_per_s']:6.2f} episodes/s, "
                    f"RM score (last 3 iterations) {res['score_last']:+.3f}, KL {res['kl_last']:.3f}",
                    flush=True,
                )
    best = {k: max(v, key=lambda x: x["episodes_per_s"]) for k, v in results.items()}
    print(
        f"settings: batch {BATCH}, {EPOCHS} PPO epochs, 1 minibatch, {RESPONSE}-token responses, temperature {TEMP}, "
        f"beta {KL}, lr {LR}, 1 thread, {args.iters} iterations"
    )
    for k in ("trl", "prefsum"):
        print(f"{k:>7}: {best[k]['episodes_per_s']:.2f} episodes/s (best of {args.repeats})")
    print(f"ratio episodes/s prefsum/trl = {best['prefsum']['episodes_per_s'] / best['trl']['episodes_per_s']:.2f}")


if __name__ == "__main__":
    main()
