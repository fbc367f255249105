"""PPO math on hand-computed tensors."""

import pytest
import torch

from training.rl import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    penalize_missing_eos,
    penalize_missing_eos_dense,
)


def test_missing_eos_gets_the_fixed_penalty():
    out = penalize_missing_eos(torch.tensor([0.5, 2.0]), torch.tensor([True, False]), -1.0)
    assert out.tolist() == [0.5, -1.0]


def test_kl_penalized_rewards_put_the_score_on_the_last_real_token():
    scores = torch.tensor([1.0, 2.0])
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-2.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.1)
    # row 0: kl = [0.5, -1, 0]; rewards = -0.1 * kl, + 1.0 on token 2
    # row 1: kl = [1, 0, (masked) 0]; rewards = -0.1 * kl, + 2.0 on token 1
    assert kl.tolist() == [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1, 1.0], [-0.1, 2.0, 0.0]]))


def test_dense_scores_are_added_token_by_token():
    """Per-token scores (a sum-pooled RM's outputs): each token gets its own score beside its KL penalty."""
    token_scores = torch.tensor([[0.5, -0.25, 1.0], [2.0, 3.0, 7.0]])  # row 1's last column is padding
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-2.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = kl_penalized_rewards(token_scores, logp, ref, mask, kl_coef=0.1)
    # row 0: -0.1 * [0.5, -1, 0] + [0.5, -0.25, 1.0]; row 1: -0.1 * [1, 0, 0] + [2, 3, (masked) 0]
    assert kl.tolist() == [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]
    assert torch.allclose(rewards, torch.tensor([[0.45, -0.15, 1.0], [1.9, 3.0, 0.0]]))
    # with gamma 1 the total reward is the same as putting the row's summed score on its last token
    sparse, _ = kl_penalized_rewards((token_scores * mask).sum(1), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(rewards.sum(1), sparse.sum(1))


def test_dense_missing_eos_penalty_replaces_the_whole_row():
    token_scores = torch.tensor([[0.5, 0.5, 0.5], [2.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = penalize_missing_eos_dense(token_scores, mask, torch.tensor([False, True, False]), -1.0)
    # rows 0 and 2 never ended: 0 everywhere, -1 on their last real token; row 1 is kept as it is
    assert out.tolist() == [[0.0, 0.0, -1.0], [2.0, 3.0, 0.0], [-1.0, 0.0, 0.0]]


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.7  # last token: no next value
    d1 = 0.0 + 0.7 - 0.6
    d0 = 0.0 + 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.5 * a2
    a0 = d0 + 0.5 * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]]))
    assert torch.allclose(ret, adv + values)
    # lambda = 1, gamma = 1: returns are the undiscounted reward-to-go
    _, ret1 = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(ret1, torch.tensor([[1.0, 1.0, 1.0]]))


def test_gae_ignores_padding():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.2, 0.4, 9.0]])
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 0.0]]))  # padding's reward and value never leak in
    assert adv[0, 2] == 0


def test_clipped_policy_loss():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    loss, stats = clipped_policy_loss(new, old, adv, torch.ones(1, 2), cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5 (unclipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    lr = torch.log(torch.tensor([1.5, 0.5]))
    assert stats["approxkl"].item() == pytest.approx(0.5 * (lr**2).mean().item())


def test_clipped_value_loss():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    ret = torch.tensor([[0.0, 1.0]])
    loss, stats = clipped_value_loss(new, old, ret, torch.ones(1, 2), cliprange=0.2)
    # token 0: max((1-0)^2, (0.2-0)^2) = 1 ; token 1: max((0.1-1)^2, (0.1-1)^2) = 0.81
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.81) / 2)
    assert stats["clipfrac"].item() == 0.0


def test_kl_controllers():
    fixed = FixedKLController(0.05)
    fixed.update(10.0, 512)
    assert fixed.value == 0.05
    ada = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ada.update(current_kl=12.0, n_steps=100)  # error clipped to +0.2
    assert ada.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    ada.update(current_kl=5.4, n_steps=100)  # error -0.1
    assert ada.value == pytest.approx(0.1 * (1 + 0.2 * 0.01) * (1 - 0.1 * 0.01))
