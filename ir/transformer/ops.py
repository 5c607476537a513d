"""Validation helpers of the transformer description and its integer non-linear functions
(the declared roundings of LayerNorm and softmax)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spikezip.ir.network import VALUE_MIN, NeuronFacts, _is_int, check_value


# -- validation helpers -----------------------------------------------------------------------
def _int_field(obj: Any, field: str, *, lo: int | None = None, what: str = "an integer") -> int:
    value = getattr(obj, field)
    if not _is_int(value):
        raise TypeError(f"{field} must be {what}, not {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{field} must be {what} ≥ {lo}, not {value!r}")
    check_value(value, field, lo=VALUE_MIN if lo is None else lo)
    object.__setattr__(obj, field, value)
    return value


def _thresholds(threshold: int | np.ndarray, channels: int) -> np.ndarray:
    out = np.broadcast_to(np.asarray(threshold, dtype=np.int64), (channels,)).copy()
    out.setflags(write=False)
    return out


def _threshold_json(threshold: int | np.ndarray) -> int | list[int]:
    return threshold.tolist() if isinstance(threshold, np.ndarray) else int(threshold)


def _threshold_from(value: Any) -> Any:
    """A threshold from JSON, unconverted: the site's validator checks it before converting."""
    return value


class _Neurons(NeuronFacts):
    """Shared facts of a quantizer site's neurons (mixin of the site dataclasses)."""

    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    neuron: str
    max_level: int | None

    @property
    def levels(self) -> int:
        """Number of quantization levels ``p - n + 1``."""
        return self.pos_bound - self.neg_bound + 1

    @property
    def magnitude(self) -> int:
        """Largest ``|A|`` of the tracer, ``max(-n, p)``."""
        return max(-self.neg_bound, self.pos_bound)

    @property
    def per_channel_threshold(self) -> bool:
        return isinstance(self.threshold, np.ndarray)


# -- integer non-linear functions (the declared roundings) ------------------------------------
def layer_norm_exact(stream: list[int], gain: list[int], bias: list[int], eps: int) -> list[int]:
    """Integer LayerNorm of one token, in Python integers (the definition; see the reference).

    With ``D = len(stream)``, ``S = Σ R_j``, ``Z_i = D·R_i − S``, ``V = D·Σ R_j² − S²`` and
    ``W = V + eps``::

        G_i = bias_i + sgn(a_i) · floor(|a_i| / √W + ½),   a_i = gain_i · Z_i

    i.e. ``gain_i · (R_i − mean) / √(var + eps/D²)`` rounded half away from zero, plus ``bias_i``.
    ``floor(|a|/√W + ½)`` is evaluated exactly: ``r = isqrt(a² // W)``, plus 1 when
    ``4a² ≥ (2r + 1)²·W``.
    """
    d = len(stream)
    s = sum(stream)
    v = d * sum(r * r for r in stream) - s * s
    w = v + eps
    out = []
    for r_i, g_i, b_i in zip(stream, gain, bias, strict=True):
        a = g_i * (d * r_i - s)
        m = abs(a)
        r = math.isqrt(m * m // w)
        if 4 * m * m >= (2 * r + 1) ** 2 * w:
            r += 1
        out.append(b_i + (r if a >= 0 else -r))
    return out


def softmax_exact(scores: list[int], table: list[int], numerator: int) -> list[int]:
    """Integer softmax of one row, in Python integers (the definition; see the reference).

    ``E_j = table[max(P) − P_j]`` (0 beyond the table), ``Σ = Σ_j E_j`` (≥ ``table[0]`` ≥ 1) and
    ``G_j = floor((E_j·numerator + floor(Σ/2)) / Σ)``: ``numerator · E_j/Σ`` rounded half up.
    """
    top = max(scores)
    e = [table[top - p] if top - p < len(table) else 0 for p in scores]
    total = sum(e)
    return [(x * numerator + total // 2) // total for x in e]
