"""Spiking attention products of SpikeZIP-TF (spec §3.5) on integer spikes and tracers.

Per step, with q_t, k_t ∈ {-1, 0, +1} and the tracers Qacc_t = Σ_{τ≤t} q_τ (current step
included):

* ``multi``:  S_t = Qacc_t·k_tᵀ + q_t·Kacc_tᵀ − q_t·k_tᵀ, so Σ_t S_t = Qacc_T·Kacc_Tᵀ;
* ``multi1``: O_t = Aacc_t·v_t + a_t·Vacc_t − a_t·v_t, so Σ_t O_t = Aacc_T·Vacc_T.

Both telescope exactly in integers; every term is a sign-controlled sum of small integers (ACs).
The identities are ring identities: they hold for any integer spike values, e.g. graded ST-BIF's
±2^k (docs/graded.md §5), where each term is a shifted AC.
"""

from __future__ import annotations

import torch

__all__ = ["multi", "multi1"]


def multi(
    q: torch.Tensor, k: torch.Tensor, q_acc: torch.Tensor, k_acc: torch.Tensor
) -> torch.Tensor:
    """Score increment ``Qacc·kᵀ + q·Kaccᵀ − q·kᵀ``: ``[..., n, d] × [..., m, d] → [..., n, m]``."""
    kt, k_acc_t = k.transpose(-1, -2), k_acc.transpose(-1, -2)
    return q_acc @ kt + q @ k_acc_t - q @ kt


def multi1(
    a: torch.Tensor, v: torch.Tensor, a_acc: torch.Tensor, v_acc: torch.Tensor
) -> torch.Tensor:
    """Context increment ``Aacc·v + a·Vacc − a·v`` (``[..., n, m] × [..., m, d] → [..., n, d]``)."""
    return a_acc @ v + a @ v_acc - a @ v
