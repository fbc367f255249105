"""Pure functions for PPO with a KL penalty (Stiennon et al. 2020, App. B; Huang et al. 2024, "N+ details").

Shapes: B = batch of responses, T = response tokens. ``mask`` is 1 on real response tokens (up to and including
EOS) and 0 on padding after it. Every function is unit-tested against hand-computed tensors (tests/test_rl.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.losses import masked_mean


def penalize_missing_eos(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float) -> torch.Tensor:
    """Replace the score of a response that never emitted EOS by a fixed ``penalty`` (N+ recipe: -1). (B,) -> (B,)."""
    return torch.where(has_eos, scores, torch.full_like(scores, penalty))


def kl_penalized_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * (log pi - log pi_ref) on every response token, plus the RM score on the last;
    or, given per-token scores (B, T) (a dense reward, e.g. a sum-pooled RM's output at each position), plus each
    token's own score.

    scores (B,) or (B, T), logprobs/ref_logprobs/mask (B, T) -> (rewards (B, T), per-token KL estimate (B, T)).
    """
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask  # (B, T) the k1 estimator, zero on padding
    rewards = -kl_coef * kl
    if scores.dim() == 2:
        return rewards + scores * mask, kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # index of the last real token (the EOS), (B,)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def penalize_missing_eos_dense(
    token_scores: torch.Tensor, mask: torch.Tensor, has_eos: torch.Tensor, penalty: float
) -> torch.Tensor:
    """The dense form of ``penalize_missing_eos``: a row that never emitted EOS gets 0 on every token and
    ``penalty`` on its last real token, so its total is the penalty. (B, T), (B, T), (B,) -> (B, T)."""
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # (B,)
    penalised = torch.zeros_like(token_scores)
    penalised[torch.arange(len(last)), last] = penalty
    return torch.where(has_eos.unsqueeze(1), token_scores, penalised)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens. (B, T) x3 -> (advantages, returns), both (B, T).

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last real token is 0);
    A_t = delta_t + gamma * lam * A_{t+1}; returns = A + V. Padding positions get 0.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, averaged over response tokens. (B, T) x4 -> (loss, stats).

    stats: ``clipfrac`` (share of tokens where the clipped branch is taken) and ``approxkl`` (0.5 * mean (log ratio)^2).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
    }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2), averaged over response tokens. -> (loss, stats)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange, cliprange)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, {"clipfrac": masked_mean((clipped > unclipped).float(), mask)}


@dataclass
class FixedKLController:
    """A constant KL coefficient."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""


@dataclass
class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019): moves ``value`` so the measured KL approaches ``target``.

    value <- value * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)
    """

    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
