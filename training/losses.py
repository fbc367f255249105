"""Pure tensor functions for the SFT / reward-model / RL math. Shapes in docstrings; B = batch, T = time.

Each is unit-tested against hand-computed tensors (tests/test_losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true. values, mask: (B, T) -> scalar, or (B,) with ``dim=1``."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries (Bessel-corrected by default). (B, T) -> scalar."""
    mean = masked_mean(values, mask)
    centered = (values - mean) * mask
    n = mask.sum()
    var = (centered**2).sum() / n.clamp(min=1)
    if unbiased:
        if n < 2:
            raise ValueError("masked_var needs at least 2 unmasked values for an unbiased estimate")
        var = var * n / (n - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over masked entries; with ``shift_mean=False`` the mean is added back. (B, T)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def first_true_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True per row, or T when a row has none. (B, T) bool -> (B,) long."""
    T = mask.shape[1]
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.full_like(positions, T)).min(dim=1).values


def first_eos_index(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Index of the first EOS per row, T when there is none. (B, T) -> (B,)."""
    return first_true_index(tokens == eos_id)


def truncate_response(tokens: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """Replace everything after each row's first EOS with [PAD] (the EOS stays). (B, T) -> (B, T)."""
    idx = first_eos_index(tokens, eos_id).unsqueeze(1)  # (B, 1)
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)  # (1, T)
    return torch.where(positions > idx, torch.full_like(tokens, pad_id), tokens)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target_t) from logits aligned with the targets. logits (B, T, V), targets (B, T) -> (B, T)."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)


def lm_response_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token NLL over positions whose label is not IGNORE_INDEX (response tokens only); mean or sum.

    logits (B, T, V) predict position t+1 from t; labels (B, T) hold the token at each position or IGNORE_INDEX.
    """
    shift_logits = logits[:, :-1]  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]).float(),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


def n_response_targets(labels: torch.Tensor) -> int:
    """How many positions ``lm_response_loss`` averages over. (B, T) -> int."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged. (B,), (B,) -> scalar."""
    return -F.logsigmoid(chosen - rejected).mean()
