"""The SFT/RM/RL math on hand-computed tensors."""

import math

import pytest
import torch

from training.losses import (
    IGNORE_INDEX,
    bradley_terry_loss,
    first_eos_index,
    first_true_index,
    lm_response_loss,
    masked_mean,
    masked_var,
    masked_whiten,
    token_logprobs,
    truncate_response,
)

EOS, PAD = 2, 0


def test_masked_mean_and_per_row():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0], [0, 0, 1]])
    assert masked_mean(v, m).item() == pytest.approx((1 + 2 + 6) / 3)
    assert masked_mean(v, m, dim=1).tolist() == [1.5, 6.0]
    # a fully masked row does not divide by zero
    assert masked_mean(v, torch.zeros_like(m), dim=1).tolist() == [0.0, 0.0]


def test_masked_var_and_whiten():
    v = torch.tensor([[1.0, 3.0, 100.0], [5.0, -50.0, 7.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    # masked values 1, 3, 5, 7: mean 4, sum of squares of deviations 9+1+1+9 = 20, unbiased var 20/3
    assert masked_var(v, m).item() == pytest.approx(20 / 3)
    assert masked_var(v, m, unbiased=False).item() == pytest.approx(5.0)
    w = masked_whiten(v, m)
    sd = math.sqrt(20 / 3)
    assert w[0, 0].item() == pytest.approx((1 - 4) / sd, rel=1e-5)
    assert w[1, 2].item() == pytest.approx((7 - 4) / sd, rel=1e-5)
    w2 = masked_whiten(v, m, shift_mean=False)
    assert w2[0, 0].item() == pytest.approx((1 - 4) / sd + 4, rel=1e-5)
    with pytest.raises(ValueError):
        masked_var(v, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_first_eos_index_and_truncation():
    tokens = torch.tensor([[5, EOS, 7, EOS], [5, 6, 7, 8], [EOS, 1, 1, 1]])
    assert first_eos_index(tokens, EOS).tolist() == [1, 4, 0]
    assert first_true_index(torch.tensor([[False, False], [False, True]])).tolist() == [2, 1]
    assert truncate_response(tokens, EOS, PAD).tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]


def test_token_logprobs():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # (1, 2, 2)
    lp = token_logprobs(logits, torch.tensor([[1, 0]]))
    assert lp[0, 0].item() == pytest.approx(math.log(0.5))
    assert lp[0, 1].item() == pytest.approx(math.log(0.75))


def test_lm_response_loss_counts_only_response_positions():
    # vocab 2; position t predicts t+1. Labels: query at 0-1 ignored, response tokens at 2 and 3.
    logits = torch.zeros(1, 4, 2)
    logits[0, 1] = torch.tensor([math.log(3.0), 0.0])  # predicts pos 2: p(0) = 0.75
    logits[0, 2] = torch.tensor([0.0, 0.0])  # predicts pos 3: p(1) = 0.5
    logits[0, 0] = torch.tensor([100.0, -100.0])  # predicts pos 1 (query): must not count
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 0, 1]])
    expected = -(math.log(0.75) + math.log(0.5)) / 2
    assert lm_response_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_loss():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = (-math.log(1 / (1 + math.exp(-2))) + math.log(2)) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    # symmetric: swapping sides of a tie costs the same; a confident mistake costs a lot
    assert bradley_terry_loss(torch.tensor([-5.0]), torch.tensor([5.0])).item() == pytest.approx(10.0, abs=1e-4)
