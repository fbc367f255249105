"""SFT: response-only labels, right padding with [PAD], and a tiny end-to-end run that learns and resumes exactly."""

import json

import pytest
import torch

from training.config import SFTConfig
from training.losses import IGNORE_INDEX
from training.sft import Example, collate, encode_examples, run_sft

torch.set_num_threads(1)


def test_collate_pads_right_and_labels_only_the_response():
    ids, mask, labels = collate([Example([5, 6, 7], [8, 2]), Example([5], [9, 9, 2])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7, 8, 2], [5, 9, 9, 2, 1]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    X = IGNORE_INDEX
    assert labels.tolist() == [[X, X, X, 8, 2], [X, 9, 9, 2, X]]


def test_encode_examples_appends_eos_and_drops_over_budget(tiny_tokenizer):
    from training.data import TldrPost

    posts = [
        TldrPost("t3_a", "pets", "My dog", "My dog Max barks.\nAll night.", "dog barks"),
        TldrPost("t3_b", "pets", "My dog", "Short.", "word " * 60),
    ]
    examples, dropped = encode_examples(posts, tiny_tokenizer, max_query_tokens=64, max_response_tokens=12)
    assert dropped == 1 and len(examples) == 1
    e = examples[0]
    assert e.response[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(e.response[:-1]) == " dog barks"
    assert tiny_tokenizer.decode(e.query).endswith("\n\nTL;DR:")


CFG = SFTConfig(
    steps=12,
    batch_size=8,
    lr=3e-3,
    warmup_steps=2,
    eval_every=6,
    eval_examples=8,
    n_samples=1,
    max_query_tokens=96,
    max_response_tokens=24,
    threads=1,
)


def test_sft_learns_and_records_its_lineage(base_and_data):
    d = base_and_data
    meta = run_sft(d / "base", d / "train.jsonl", d / "valid.jsonl", d / "sft", CFG, progress=False)
    losses = [h["val/loss"] for h in meta["history"]]
    assert losses[-1] < losses[0]
    saved = json.loads((d / "sft" / "prefsum.json").read_text())
    assert saved["stage"] == "sft" and saved["parent"] == str(d / "base")
    assert saved["data"]["n_train"] == 32 and len(saved["data"]["train_sha256"]) == 64
    assert (d / "sft" / "model.safetensors").is_file()
    assert not (d / "sft.resume").exists()  # resume state is cleared once the stage finishes


def test_sft_resume_matches_an_uninterrupted_run(base_and_data, monkeypatch):
    """Die right after the first resume checkpoint, then resume: the metrics equal a run that never stopped."""
    from training import sft

    d = base_and_data
    full = run_sft(d / "base", d / "train.jsonl", d / "valid.jsonl", d / "full", CFG, progress=False)

    real_save = sft.save_state

    def save_then_die(out, state):
        real_save(out, state)
        if state["step"] == 6:
            raise KeyboardInterrupt  # the process is gone after writing its step-6 state

    monkeypatch.setattr(sft, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_sft(d / "base", d / "train.jsonl", d / "valid.jsonl", d / "killed", CFG, progress=False)
    assert not (d / "killed").exists() and (d / "killed.resume" / "state.pt").is_file()
    monkeypatch.setattr(sft, "save_state", real_save)
    resumed = run_sft(d / "base", d / "train.jsonl", d / "valid.jsonl", d / "killed", CFG, resume=True, progress=False)
    assert [h["step"] for h in resumed["history"]] == [6, 12]
    for a, b in zip(full["history"], resumed["history"], strict=True):
        assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5)
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)


def test_checkpoints_get_normal_permissions(base_and_data):
    import os

    mask = os.umask(0)
    os.umask(mask)
    folder = base_and_data / "base"  # written by save_checkpoint in the fixture
    assert (folder / "prefsum.json").is_file()
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
