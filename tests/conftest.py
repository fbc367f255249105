"""Shared fixtures: a tiny tokenizer trained once per session on hand-written text (no hub, no downloads)."""

import os

import pytest

# Deliberate thread counts: 2 cores here, and tests run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = """My boyfriend (27M) and I (25F) have been together for 3 years.
He wants to move to Denver for a job that pays $85,000 a year.
I pay $1,200 a month in rent and my lease ends in June.
Should I go with him or stay here?
TL;DR: boyfriend (27M) wants to move to Denver for $85,000; my lease ends in June. Should I go?
My landlord kept my $900 deposit after I moved out of the apartment in Austin.
The dog, a 4 year old beagle named Max, keeps barking at night.
Q: How much was the deposit? A: $900.
"""


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS * 20, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(corpus_file, tmp_path_factory):
    from training.tokenizer import TokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return train_tokenizer([corpus_file], out, TokenizerConfig(vocab_size=400, min_frequency=2))


@pytest.fixture(scope="session")
def base_and_data(tmp_path_factory, corpus_file, tiny_tokenizer):
    """A tiny pretrained base checkpoint and 32/8 hand-made TL;DR posts (train/valid)."""
    from training.config import PretrainConfig
    from training.data import write_jsonl
    from training.modeling import ModelConfig
    from training.pretrain import run_pretrain

    d = tmp_path_factory.mktemp("stages")
    model_cfg = ModelConfig(arch="gpt2", n_layer=1, d_model=32, n_head=2, max_positions=256)
    pre_cfg = PretrainConfig(steps=4, batch_size=4, seq_len=32, eval_every=4, eval_batches=1, threads=1)
    run_pretrain(corpus_file, tiny_tokenizer, d / "base", model_cfg, pre_cfg, progress=False)
    rows = [
        {
            "id": f"t3_{i}",
            "subreddit": "pets",
            "title": f"Dog number {i}",
            "post": f"My dog is {i} years old.\nShe barks at night.",
            "summary": f"my dog ({i}) barks at night",
        }
        for i in range(40)
    ]
    write_jsonl(d / "train.jsonl", rows[:32])
    write_jsonl(d / "valid.jsonl", rows[32:])
    return d


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The offline world at size tiny, seed 0 (generated once per test session)."""
    from training.world import synth

    out = tmp_path_factory.mktemp("tiny_world") / "world"
    synth(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="session")
def world_policy(tiny_world, tmp_path_factory):
    """A tokenizer trained on the tiny world's corpus and a (barely) pretrained tiny GPT-2 policy checkpoint."""
    from training.config import PretrainConfig
    from training.modeling import ModelConfig
    from training.pretrain import run_pretrain
    from training.tokenizer import TokenizerConfig, train_tokenizer

    d = tmp_path_factory.mktemp("world_policy")
    tok = train_tokenizer([tiny_world / "pretrain.txt"], d / "tokenizer", TokenizerConfig(vocab_size=512))
    model_cfg = ModelConfig(arch="gpt2", n_layer=1, d_model=32, n_head=2, max_positions=512)
    cfg = PretrainConfig(
        steps=20, batch_size=8, seq_len=64, lr=3e-3, warmup_steps=2, eval_every=20, eval_batches=1, threads=1
    )
    run_pretrain(tiny_world / "pretrain.txt", tok, d / "base", model_cfg, cfg, progress=False)
    return d / "base"
