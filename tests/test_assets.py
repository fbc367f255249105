"""The shipped tiny base model: files intact, reproducible from its profile, and able to copy (what SFT builds on)."""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "assets" / "tiny-base"


def test_every_file_matches_its_recorded_sha256():
    lines = (ROOT / "assets" / "tiny-base.sha256").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split()
        listed[name] = digest
        assert hashlib.sha256((BASE / name).read_bytes()).hexdigest() == digest, name
    assert set(listed) == {p.name for p in BASE.iterdir()}


def test_recorded_config_is_the_scratch_profile():
    """`prefsum train pretrain --config configs/tiny-scratch.toml` reproduces it: same model and pretrain fields."""
    from training.config import load_profile

    meta = json.loads((BASE / "prefsum.json").read_text())
    scratch = load_profile(ROOT / "configs" / "tiny-scratch.toml")
    assert meta["stage"] == "pretrain"
    assert meta["config"]["model"] == json.loads(json.dumps(asdict(scratch.model)))
    recorded = dict(meta["config"]["pretrain"])
    assert recorded == json.loads(json.dumps(asdict(scratch.pretrain)))
    tiny = load_profile(ROOT / "configs" / "tiny.toml")
    assert tiny.base.source == "checkpoint" and Path(tiny.base.name) == Path("assets/tiny-base")


def test_base_loads_and_continues_a_repeated_span():
    """The copy circuit is there: shown a span of rare tokens once, the model greedily repeats it."""
    from transformers import AutoModelForCausalLM

    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(BASE)
    assert tok.eos_token_id != tok.pad_token_id
    model = AutoModelForCausalLM.from_pretrained(str(BASE)).eval()
    g = torch.Generator().manual_seed(0)
    span = torch.randint(200, 4000, (12,), generator=g)
    ids = torch.cat([span, span[:4]])[None]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    got = out[0, ids.shape[1] :].tolist()
    assert sum(a == b for a, b in zip(got, span[4:12].tolist(), strict=True)) >= 6, got


@pytest.mark.parametrize("name", ["tiny.toml", "tiny-scratch.toml"])
def test_tiny_profiles_load(name):
    from training.config import load_profile

    profile = load_profile(ROOT / "configs" / name)
    assert profile.ppo.rollout_batch_size % profile.ppo.minibatches == 0
