"""The transformer's non-linear sites: LayerNorm, softmax and the attention context."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np

from spikezip.ir.network import (
    _int_array,
    neuron_fields,
    neuron_json,
    neuron_kind_from,
)
from spikezip.ir.transformer.ops import (
    _int_field,
    _Neurons,
    _threshold_from,
    _threshold_json,
    _thresholds,
)


# -- sites --------------------------------------------------------------------------------------
class SiteKind(StrEnum):
    """What drives a quantizer site."""

    LINEAR = "linear"  #: a token-wise linear layer (:class:`~ir.network.Layer`)
    LAYERNORM = "layernorm"  #: :class:`LayerNorm` of the residual stream
    SOFTMAX = "softmax"  #: :class:`Softmax` of the attention scores
    CONTEXT = "context"  #: :class:`Context`, the attention-times-value product


@dataclass(frozen=True, kw_only=True, eq=False)
class LayerNorm(_Neurons):
    """Integer LayerNorm of the residual stream followed by its ST-BIF quantizer site.

    The neuron's cumulative input is ``G = layer_norm(R)`` of the cumulative stream ``R`` (one
    vector per token; formula in :func:`layer_norm_exact`), i.e. the float
    ``(γ·(x − μ)/√(σ² + ε) + β)·Θ/s`` on the integer grid of the quantizer it feeds.

    Parameters
    ----------
    gain : integer array ``[dim]``
        ``c_i = round(γ_i·Θ_i/s)``.
    bias : integer array ``[dim]``
        ``B_i = round(β_i·Θ_i/s)``.
    eps : int ≥ 1
        ε on the stream grid: ``round(dim²·ε/u²)`` for a stream unit ``u`` (at least 1, so that
        ``√W > 0``).
    threshold : int ≥ 1 or integer array ``[dim]``
        Θ per site or per channel.
    neg_bound, pos_bound : int
        Tracer bounds ``n ≤ 0 ≤ p``.
    name : str
        Label.
    neuron, max_level : str, int or None
        The neuron kind (``"stbif"`` or ``"graded"``) and a graded neuron's maximum level K
        (as :class:`~ir.network.Layer`).
    """

    gain: np.ndarray
    bias: np.ndarray
    eps: int
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        gain = _int_array(self.gain, field="gain", ndim=1)
        if gain.shape[0] < 1:
            raise ValueError("gain must hold at least one channel")
        object.__setattr__(self, "gain", gain)
        bias = _int_array(self.bias, field="bias", ndim=1)
        if bias.shape != gain.shape:
            raise ValueError(f"bias must have shape {gain.shape} to match gain, not {bias.shape}")
        object.__setattr__(self, "bias", bias)
        _int_field(self, "eps", lo=1, what="a positive integer")
        neuron_fields(self, gain.shape[0], unit="channel")

    @property
    def dim(self) -> int:
        return int(self.gain.shape[0])

    @cached_property
    def thresholds(self) -> np.ndarray:
        """Θ per channel, ``int64 [dim]``."""
        return _thresholds(self.threshold, self.dim)

    def output_bound(self) -> int:
        """An upper bound of ``|G_i − B_i|``.

        ``|Z_i|/√W ≤ √(dim − 1)``, so ``|G_i − B_i| ≤ floor(|c_i|·√(dim − 1) + ½)``.
        """
        return math.isqrt(int(np.abs(self.gain).max()) ** 2 * (self.dim - 1)) + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "gain": self.gain.tolist(),
            "bias": self.bias.tolist(),
            "eps": self.eps,
            "threshold": _threshold_json(self.threshold),
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerNorm:
        return cls(
            gain=d["gain"],
            bias=d["bias"],
            eps=d["eps"],
            threshold=_threshold_from(d["threshold"]),
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Softmax(_Neurons):
    """Integer softmax of the attention scores followed by its ST-BIF quantizer site (``attn``).

    The neuron's cumulative input is ``G = softmax(P)`` of the cumulative integer scores
    ``P = Qacc·Kaccᵀ`` (per head and query row; formula in :func:`softmax_exact`).

    Parameters
    ----------
    table : integer array ``[K]``
        ``table[δ] ≈ 2^F·exp(−c·δ)`` for a score gap ``δ = max_j P_j − P_j ≥ 0``, with
        ``c = s_q·s_k/√d_head``; 0 for ``δ ≥ K``. ``table[0] ≥ 1``, non-increasing, ≥ 0.
    numerator : int ≥ 1
        ``N = round(Θ/s_attn)``: the grid of the softmax output is ``1/N``.
    threshold : int ≥ 1
        Θ of the site (one per site).
    neg_bound, pos_bound : int
        Tracer bounds (SpikeZIP: asymmetric, ``n = 0``).
    name : str
        Label.
    neuron, max_level : str, int or None
        The neuron kind (``"stbif"`` or ``"graded"``) and a graded neuron's maximum level K
        (as :class:`~ir.network.Layer`).
    """

    table: np.ndarray
    numerator: int
    threshold: int
    neg_bound: int
    pos_bound: int
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        table = _int_array(self.table, field="table", ndim=1)
        if table.shape[0] < 1:
            raise ValueError("table must hold at least one entry")
        if table[0] < 1:
            raise ValueError(f"table[0] must be a positive integer, not {int(table[0])}")
        if table.min() < 0:
            raise ValueError(f"table entries must be ≥ 0, not {int(table.min())}")
        if np.any(np.diff(table) > 0):
            i = int(np.flatnonzero(np.diff(table) > 0)[0]) + 1
            raise ValueError(f"table must be non-increasing, but table[{i}] > table[{i - 1}]")
        object.__setattr__(self, "table", table)
        _int_field(self, "numerator", lo=1, what="a positive integer")
        neuron_fields(self, None, unit="channel")

    @cached_property
    def thresholds(self) -> np.ndarray:
        return _thresholds(self.threshold, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "table": self.table.tolist(),
            "numerator": self.numerator,
            "threshold": self.threshold,
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Softmax:
        return cls(
            table=d["table"],
            numerator=d["numerator"],
            threshold=d["threshold"],
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Context(_Neurons):
    """The attention-times-value product and its ST-BIF quantizer site (``after_attn_quan``).

    The neuron's cumulative input is ``weight · (Aacc·Vacc)`` per head, heads concatenated along
    the channels (in the SNN: ``weight`` times the ``multi1`` increments).

    Parameters
    ----------
    weight : int
        ``round(Θ·s_attn·s_v/s_context)``; the converter makes it a power of two (a shift).
    threshold : int ≥ 1 or integer array ``[dim]``
        Θ per site or per channel.
    neg_bound, pos_bound : int
        Tracer bounds.
    name : str
        Label.
    neuron, max_level : str, int or None
        The neuron kind (``"stbif"`` or ``"graded"``) and a graded neuron's maximum level K
        (as :class:`~ir.network.Layer`).
    """

    weight: int
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        _int_field(self, "weight")
        neuron_fields(self, "any", unit="channel")

    def thresholds_for(self, dim: int) -> np.ndarray:
        """Θ per channel, ``int64 [dim]``."""
        return _thresholds(self.threshold, dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "weight": self.weight,
            "threshold": _threshold_json(self.threshold),
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "name": self.name,
            **neuron_json(self),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Context:
        return cls(
            weight=d["weight"],
            threshold=_threshold_from(d["threshold"]),
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
            **neuron_kind_from(d),
        )
