"""`accelerate launch` with 2 CPU processes (DDP over gloo) computes the same losses as one process with the same
global batch, for SFT and for the reward model."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from training.data import write_jsonl

ENV = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_DISABLE_RICH": "1"}
COMMON = [
    "--set",
    "sft.threads=1",
    "--set",
    "rm.threads=1",
    "--set",
    "sft.max_query_tokens=96",
    "--set",
    "sft.max_response_tokens=24",
    "--set",
    "rm.max_query_tokens=96",
    "--set",
    "rm.max_response_tokens=24",
]


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, check=False, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def launch(n: int, *args: str) -> str:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if n == 1:
        return run([sys.executable, "-m", "prefsum", *args])
    # the shipped config: torchrun launcher, 2 processes, DDP over gloo on a machine without GPUs
    assert n == 2
    return run([accelerate, "launch", "--config_file", "configs/accelerate/ddp-cpu.yaml", "-m", "prefsum", *args])


def history(ckpt) -> list[dict]:
    return json.loads((ckpt / "prefsum.json").read_text())["history"]


@pytest.fixture(scope="module")
def runs(base_and_data):
    d = base_and_data
    sft = [
        "train",
        "sft",
        "--base",
        str(d / "base"),
        "--data",
        str(d),
        *COMMON,
        "--set",
        "sft.steps=6",
        "--set",
        "sft.eval_every=3",
        "--set",
        "sft.batch_size=8",
        "--set",
        "sft.n_samples=0",
    ]
    launch(1, *sft, "--out", str(d / "sft1"))
    out2 = launch(2, *sft, "--out", str(d / "sft2"))
    assert "2 process(es)" in out2
    # comparisons: the summary stating the age is preferred
    from training.data import Comparison, PostInfo, Summary

    comps = []
    for i in range(40):
        info = PostInfo(f"t3_{i}", f"My dog is {i} years old.\nShe barks at night.", f"Dog number {i}", "pets")
        good, bad = Summary(f" my dog ({i}) barks", "sft"), Summary(" dog stuff lol", "ref")
        comps.append(
            Comparison(
                info, (good, bad) if i % 2 else (bad, good), i % 2 ^ 1, "sim-0", "1", "train" if i < 32 else "valid1"
            )
        )
    write_jsonl(d / "comps.jsonl", comps)
    rm = [
        "train",
        "rm",
        "--sft",
        str(d / "sft1"),
        "--comparisons",
        str(d / "comps.jsonl"),
        *COMMON,
        "--set",
        "rm.batch_size=8",
        "--set",
        "rm.epochs=1.5",
        "--set",
        "rm.eval_every=3",
    ]
    launch(1, *rm, "--out", str(d / "rm1"))
    launch(2, *rm, "--out", str(d / "rm2"))
    return d


def test_sft_two_processes_match_one(runs):
    one, two = history(runs / "sft1"), history(runs / "sft2")
    assert [h["step"] for h in one] == [h["step"] for h in two] == [3, 6]
    for a, b in zip(one, two, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-4)
    assert json.loads((runs / "sft2" / "prefsum.json").read_text())["processes"] == 2


def test_rm_two_processes_match_one(runs):
    one, two = history(runs / "rm1"), history(runs / "rm2")
    assert [h["step"] for h in one] == [h["step"] for h in two] == [3, 6]
    for a, b in zip(one, two, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        assert a["val/accuracy"] == pytest.approx(b["val/accuracy"])


def test_ppo_runs_under_accelerate_with_two_processes(runs):
    """PPO through the same launcher: each process samples its half of every rollout batch, DDP averages the
    gradients of the joint policy+value module, and one checkpoint comes out."""
    d = runs
    out = launch(
        2,
        "train",
        "ppo",
        "--sft",
        str(d / "sft1"),
        "--rm",
        str(d / "rm1"),
        "--data",
        str(d),
        "--out",
        str(d / "ppo2"),
        "--set",
        "ppo.threads=1",
        "--set",
        "ppo.steps=2",
        "--set",
        "ppo.rollout_batch_size=8",
        "--set",
        "ppo.minibatches=1",
        "--set",
        "ppo.ppo_epochs=2",
        "--set",
        "ppo.max_query_tokens=96",
        "--set",
        "ppo.max_response_tokens=8",
        "--set",
        "ppo.eval_every=2",
        "--set",
        "ppo.n_samples=0",
    )
    assert "2 process(es)" in out
    meta = json.loads((d / "ppo2" / "prefsum.json").read_text())
    assert meta["processes"] == 2 and meta["stage"] == "ppo"
    assert [h["episodes"] for h in meta["history"]] == [8, 16]
    assert abs(meta["history"][0]["objective/kl"]) < 1e-3  # both halves start from the SFT policy itself
