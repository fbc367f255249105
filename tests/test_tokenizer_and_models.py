"""The tokenizer builder (EOS and [PAD] distinct, no token_type_ids) and the tiny from-config models."""

import pytest
import torch

from prefsum.cli import main
from tests.helpers import tiny_gpt2, tiny_llama
from training.modeling import ModelConfig, count_parameters
from training.tokenizer import EOS_TOKEN, PAD_TOKEN, load_tokenizer

torch.set_num_threads(1)


def test_special_tokens_are_distinct_and_named(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN
    assert tok.eos_token_id != tok.pad_token_id
    assert {tok.eos_token_id, tok.pad_token_id} == {0, 1}  # specials come first in the vocabulary
    assert len(tok) == 400


def test_no_token_type_ids_and_lossless_round_trip(tiny_tokenizer):
    text = " boyfriend (27M) wants to move to Denver — naïve? 😀"
    enc = tiny_tokenizer(text)
    assert set(enc.keys()) == {"input_ids", "attention_mask"}
    assert tiny_tokenizer.decode(enc["input_ids"]) == text  # byte-level: any text survives, unicode included
    # no BOS/EOS added implicitly: the caller decides where EOS goes
    assert tiny_tokenizer.eos_token_id not in enc["input_ids"]


def test_learned_merges_compress_the_corpus(tiny_tokenizer):
    text = "My boyfriend (27M) and I (25F) have been together for 3 years."
    assert len(tiny_tokenizer(text)["input_ids"]) < len(text.encode()) / 2


def test_save_load_round_trip(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path / "t")
    again = load_tokenizer(tmp_path / "t")
    assert again.model_input_names == ["input_ids", "attention_mask"]
    assert again("the dog")["input_ids"] == tiny_tokenizer("the dog")["input_ids"]
    with pytest.raises(FileNotFoundError, match="prefsum train tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_cli_trains_a_tokenizer(corpus_file, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", "--corpus", str(corpus_file), "--out", str(out), "--vocab-size", "300"]) == 0
    assert (out / "tokenizer.json").is_file()
    assert len(load_tokenizer(out)) == 300
    import hashlib
    import json

    meta = json.loads((out / "prefsum.json").read_text())
    assert meta["stage"] == "tokenizer" and meta["config"]["tokenizer"]["vocab_size"] == 300
    assert meta["data"][str(corpus_file)] == hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    assert main(["train", "tokenizer", "--corpus", str(tmp_path / "none.txt"), "--out", str(out)]) == 2
    assert "prefsum data synth" in capsys.readouterr().err


def test_tiny_gpt2_parameter_count_matches_hand_count(tiny_tokenizer):
    model = tiny_gpt2(tiny_tokenizer, n_layer=2, d_model=32, n_head=2, max_positions=256)
    V, P, d, L = 400, 256, 32, 2
    block = (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (2 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    expected = V * d + P * d + L * block + 2 * d  # output head tied to the input embedding
    assert count_parameters(model) == expected


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
def test_tiny_models_run_and_are_deterministic(tiny_tokenizer, build):
    a, b = build(tiny_tokenizer, seed=3), build(tiny_tokenizer, seed=3)
    ids = torch.tensor([tiny_tokenizer("my dog ate my homework")["input_ids"]])  # (1, T)
    la, lb = a(ids).logits, b(ids).logits
    assert la.shape == (1, ids.shape[1], len(tiny_tokenizer))
    assert torch.equal(la, lb)
    assert a.config.eos_token_id == tiny_tokenizer.eos_token_id and a.config.pad_token_id == tiny_tokenizer.pad_token_id
    c = build(tiny_tokenizer, seed=4)
    assert not torch.equal(la, c(ids).logits)


def test_model_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="rnn")


def test_prev_token_head_init_attends_one_position_back():
    from training.modeling import build_causal_lm

    torch.manual_seed(0)
    model = build_causal_lm(ModelConfig(arch="llama", prev_token_head=True), 512, 0, 1, seed=0)
    model.set_attn_implementation("eager")
    x = torch.randint(2, 512, (2, 120))
    with torch.no_grad():
        att = model(x, output_attentions=True).attentions[0]  # layer 0: (B, H, T, T)
    prev = torch.diagonal(att[:, 0], offset=-1, dim1=1, dim2=2)  # head 0, weight on position t-1: (B, T-1)
    assert prev.min().item() > 0.95
    # the other heads are untouched random heads: no such pattern
    other = torch.diagonal(att[:, 1], offset=-1, dim1=1, dim2=2)
    assert other[:, 20:].mean().item() < 0.5
    with pytest.raises(ValueError, match="llama"):
        ModelConfig(arch="gpt2", prev_token_head=True)


def test_copy_circuit_continues_a_repeated_span_at_initialisation():
    from training.modeling import build_causal_lm

    model = build_causal_lm(ModelConfig(arch="llama", copy_circuit=True, rope_theta=1e6), 4096, 0, 1, seed=0).eval()
    g = torch.Generator().manual_seed(5)
    span = torch.randint(2, 4096, (4, 30), generator=g)  # (B, 30) random tokens, nothing to memorise
    filler = torch.randint(2, 4096, (4, 50), generator=g)
    x = torch.cat([span, filler, span[:, :10]], dim=1)  # the span again, 50 tokens later: continue it
    with torch.no_grad():
        pred = model(x).logits[:, -1].argmax(-1)
    assert pred.tolist() == span[:, 10].tolist()
    # an untrained model without the circuit does not
    plain = build_causal_lm(ModelConfig(arch="llama", rope_theta=1e6), 4096, 0, 1, seed=0).eval()
    with torch.no_grad():
        assert (plain(x).logits[:, -1].argmax(-1) == span[:, 10]).sum() == 0


def test_copy_circuit_config_is_checked():
    with pytest.raises(ValueError, match="rope_theta"):
        ModelConfig(arch="llama", copy_circuit=True)
    with pytest.raises(ValueError, match="n_layer"):
        ModelConfig(arch="llama", copy_circuit=True, rope_theta=1e6, n_layer=1)
