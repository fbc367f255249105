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
