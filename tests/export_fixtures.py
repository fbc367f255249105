"""Checkpoints and bundles for the export and engine tests (tiny models built here; nothing from runs/).

Random-init models have nearly uniform logits, where a 1e-6 difference between torch and ONNX Runtime could flip a
greedy argmax and make a parity test flaky for no fault of the exporter. So the weights are re-drawn with a large
standard deviation (decisive logits, gaps far above float error), and the EOS embedding is scaled up so that some
rows end early at EOS while others run to the budget: both stopping paths get exercised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

MAX_QUERY = 96
MAX_RESPONSE = 16
REWARD_BIAS = 0.375

ITEMS = [
    {"subreddit": "a", "title": "b", "post": "c"},  # the shortest possible query
    {"subreddit": "pets", "title": "Dog", "post": "My dog is 4 years old."},
    {
        "subreddit": "relationships",
        "title": "Should I move to Denver with my boyfriend?",
        "post": "My boyfriend (27M) and I (25F) have been together for 3 years.\n"
        "He wants to move to Denver for a job that pays $85,000 a year.",
    },
    {"subreddit": "legaladvice", "title": "Deposit", "post": "My landlord kept my $900 deposit after I moved out."},
    # far over the query budget, cut at newlines by the task rules
    {
        "subreddit": "relationships",
        "title": "Long one",
        "post": "\n".join(f"I pay $1,200 a month in rent and my lease ends in June, line {i}." for i in range(40)),
    },
    # over the budget with no newline at all: cut one character at a time
    {"subreddit": "pets", "title": "Max", "post": " ".join(["The dog, a 4 year old beagle named Max, barks."] * 30)},
    {"text": "The dog, a 4 year old beagle named Max, keeps barking at night.\nNeighbours complained twice."},
]

SUMMARIES = [
    " c",
    " my dog is 4 and barks",
    " boyfriend (27M) wants to move to Denver for $85,000; should I go?",
    " landlord kept my $900 deposit",
    " rent is $1,200 and the lease ends in June",
    " beagle named Max barks",
    " dog keeps barking at night",
]


def decisive(model, eos_id: int, std: float = 0.3, eos_gain: float = 2.0, seed: int = 0):
    """Re-draw every weight matrix with a large std (decisive logits) and scale the EOS embedding row."""
    import torch  # noqa: PLC0415

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        model.get_input_embeddings().weight[eos_id] *= eos_gain
    return model.eval()


def save_policy(tokenizer, out: Path, arch: str, seed: int = 0) -> Path:
    from training.checkpoint import save_checkpoint  # noqa: PLC0415
    from training.modeling import ModelConfig, build_causal_lm  # noqa: PLC0415

    cfg = ModelConfig(arch=arch, n_layer=2, d_model=32, n_head=2, max_positions=256)
    model = build_causal_lm(cfg, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, seed=seed)
    decisive(model, tokenizer.eos_token_id, seed=seed)
    budgets = {"max_query_tokens": MAX_QUERY, "max_response_tokens": MAX_RESPONSE}
    return save_checkpoint(model, tokenizer, out, {"stage": "sft", "config": {"sft": budgets}})


def save_reward(policy_dir: Path, tokenizer, out: Path, seed: int = 0) -> Path:
    import torch  # noqa: PLC0415

    from training.checkpoint import save_checkpoint  # noqa: PLC0415
    from training.reward import build_reward_model  # noqa: PLC0415

    torch.manual_seed(seed)
    model = build_reward_model(policy_dir).eval()
    budgets = {"max_query_tokens": MAX_QUERY, "max_response_tokens": MAX_RESPONSE}
    meta = {"stage": "rm", "config": {"rm": budgets}, "reward_bias": REWARD_BIAS, "parent": str(policy_dir)}
    return save_checkpoint(model, tokenizer, out, meta)


@pytest.fixture(scope="session")
def export_ckpts(tmp_path_factory, tiny_tokenizer):
    """Checkpoints: llama and gpt2 policies, and a reward model on the llama policy."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("export_ckpts")
    llama = save_policy(tiny_tokenizer, d / "llama", "llama", seed=1)
    gpt2 = save_policy(tiny_tokenizer, d / "gpt2", "gpt2", seed=2)
    rm = save_reward(llama, tiny_tokenizer, d / "rm", seed=3)
    gpt2_rm = save_reward(gpt2, tiny_tokenizer, d / "gpt2_rm", seed=4)
    return {"llama": llama, "gpt2": gpt2, "rm": rm, "gpt2_rm": gpt2_rm}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, export_ckpts):
    """Bundles exported from ``export_ckpts`` into one bundles folder: fp32 and int8 of the llama policy and RM."""
    import torch  # noqa: PLC0415

    from training.export import export_bundle  # noqa: PLC0415

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bundles")
    out = {
        "llama": export_bundle(export_ckpts["llama"], root),
        "gpt2": export_bundle(export_ckpts["gpt2"], root),
        "rm": export_bundle(export_ckpts["rm"], root),
        "gpt2_rm": export_bundle(export_ckpts["gpt2_rm"], root),
        "llama-int8": export_bundle(export_ckpts["llama"], root, name="llama-int8", quantize="int8"),
        "rm-int8": export_bundle(export_ckpts["rm"], root, name="rm-int8", quantize="int8"),
    }
    return out


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def manifest_json(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
