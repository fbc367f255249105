"""Sampling: greedy equals a hand-written argmax loop; left padding in a batch changes nothing; sampling is seeded."""

import pytest
import torch

from tests.helpers import tiny_gpt2, tiny_llama
from training.sampling import generate

torch.set_num_threads(1)


def manual_greedy(model, query: list[int], n: int, eos: int) -> list[int]:
    ids = list(query)
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
            ids.append(nxt)
    return out


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
def test_batched_left_padded_greedy_equals_one_at_a_time_argmax(tiny_tokenizer, build):
    model = build(tiny_tokenizer, seed=1).eval()
    queries = [tiny_tokenizer(t)["input_ids"] for t in ["My dog", "My landlord kept my deposit after I moved out"]]
    eos = tiny_tokenizer.eos_token_id
    batched = generate(model, tiny_tokenizer, queries, max_new_tokens=12)
    for q, g in zip(queries, batched, strict=True):
        expected = manual_greedy(model, q, 12, eos)
        assert g.tokens == expected
        assert g.finish_reason == ("eos" if len(expected) < 12 else "length")
        assert g.text == (" " + " ".join(tiny_tokenizer.decode(expected).split()) if expected else "")


def test_sampling_is_seeded_and_validated(tiny_tokenizer):
    model = tiny_gpt2(tiny_tokenizer, seed=2)
    q = [tiny_tokenizer("My dog")["input_ids"]] * 4
    a = generate(model, tiny_tokenizer, q, max_new_tokens=8, temperature=1.0, seed=5)
    b = generate(model, tiny_tokenizer, q, max_new_tokens=8, temperature=1.0, seed=5)
    c = generate(model, tiny_tokenizer, q, max_new_tokens=8, temperature=1.0, seed=6)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    assert [g.tokens for g in a] != [g.tokens for g in c]
    assert len({tuple(g.tokens) for g in a}) > 1  # an untrained model at T=1 samples different rows
    with pytest.raises(ValueError, match="temperature"):
        generate(model, tiny_tokenizer, q, max_new_tokens=2, temperature=-1)
