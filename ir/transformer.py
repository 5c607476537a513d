"""Vision Transformer (ViT-ReLU) ST-BIF networks in hardware units (spec §3, docs/transformer.md).

Every quantity is an integer. A network is a sequence of **quantizer sites** — ST-BIF neuron arrays
with an integer threshold ``Θ`` (per site or per channel), ``H = floor(Θ/2)`` and tracer bounds
``n ≤ 0 ≤ p`` — and the integer operators that drive them:

* :class:`~ir.network.Layer` (reused) for every token-wise linear layer: patch embedding, q, k,
  v, proj, fc1, fc2 and the head. Its bias is injected once, at t = 0, into every token;
* :class:`LayerNorm`: integer LayerNorm of the residual stream, a deterministic function of the
  integer stream vector (the declared rounding is in :func:`layer_norm_exact`);
* :class:`Softmax`: integer softmax of the integer attention scores ``Qacc·Kaccᵀ`` through an
  exponential table and one round-half-up division;
* :class:`Context`: the ``Aacc·Vacc`` product times an integer weight (a power of two after
  conversion, i.e. a shift).

The **residual stream** is an integer vector per token: the class-token/position embedding
(``position``, injected at t = 0) plus ``embed_residual`` times the embedding codes plus, per
block, ``attn_residual`` times the proj codes and ``mlp_residual`` times the fc2 codes.

The sites, in execution order (zero delay within a step), are named ``embed``, then per block
``blocks.{b}.norm1``, ``.q``, ``.k``, ``.v``, ``.attn``, ``.context``, ``.proj``, ``.norm2``,
``.fc1``, ``.fc2``, then ``norm`` and ``head``. A site's neurons are its array flattened in C order:
``[patches, dim]`` (embed), ``[tokens, channels]`` (token sites), ``[heads, tokens, tokens]``
(attn), ``[classes]`` (head, which reads the class token, token 0).

stdlib + numpy only, like :mod:`ir.network`; files are ``.npz`` of kind ``spikezip-transformer``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np

from spikezip.ir._io import read_npz
from spikezip.ir._io import write_npz as _write_npz
from spikezip.ir.errors import FormatError
from spikezip.ir.files import TRANSFORMER_KIND
from spikezip.ir.network import (
    MAX_WIDTH,
    VALUE_MAX,
    VALUE_MIN,
    Layer,
    Network,
    _int_array,
    _is_int,
    check_value,
    neuron_fields,
    signed_width,
)

__all__ = [
    "KIND",
    "Block",
    "Context",
    "LayerNorm",
    "Site",
    "SiteKind",
    "Softmax",
    "VisionTransformer",
    "layer_norm_exact",
    "softmax_exact",
]

KIND = TRANSFORMER_KIND
FORMAT_VERSION = 1


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


class _Neurons:
    """Shared facts of a quantizer site's neurons (mixin of the site dataclasses)."""

    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int

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
    """

    gain: np.ndarray
    bias: np.ndarray
    eps: int
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""

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
    """

    table: np.ndarray
    numerator: int
    threshold: int
    neg_bound: int
    pos_bound: int
    name: str = ""

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
    """

    weight: int
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Context:
        return cls(
            weight=d["weight"],
            threshold=_threshold_from(d["threshold"]),
            neg_bound=d["neg_bound"],
            pos_bound=d["pos_bound"],
            name=d.get("name", ""),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Block:
    """One ViT-ReLU block (spec §3.2) in hardware units.

    ``x ← x + attn_residual · proj(context(softmax(q·kᵀ)·v))`` with q, k, v from ``norm1(x)``,
    then ``x ← x + mlp_residual · fc2(relu(fc1(norm2(x))))``; the asymmetric fc1 quantizer is the
    ReLU.

    Parameters
    ----------
    norm1, norm2 : LayerNorm
    q, k, v : ir.Layer
        ``dim → dim`` each (the three slices of ``qkv``).
    heads : int
        Attention heads; divides ``dim``.
    softmax : Softmax
    context : Context
    proj : ir.Layer
        ``dim → dim``.
    attn_residual, mlp_residual : int
        Stream weights of the proj and fc2 codes (``round(s/u)`` for the stream unit ``u``).
    fc1, fc2 : ir.Layer
        ``dim → hidden`` and ``hidden → dim``.
    """

    norm1: LayerNorm
    q: Layer
    k: Layer
    v: Layer
    heads: int
    softmax: Softmax
    context: Context
    proj: Layer
    attn_residual: int
    norm2: LayerNorm
    fc1: Layer
    fc2: Layer
    mlp_residual: int

    def __post_init__(self) -> None:
        for field, kind in (
            ("norm1", LayerNorm),
            ("q", Layer),
            ("k", Layer),
            ("v", Layer),
            ("softmax", Softmax),
            ("context", Context),
            ("proj", Layer),
            ("norm2", LayerNorm),
            ("fc1", Layer),
            ("fc2", Layer),
        ):
            value = getattr(self, field)
            if not isinstance(value, kind):
                raise TypeError(f"{field} must be a {kind.__name__}, not {type(value).__name__}")
        d = self.norm1.dim
        if self.norm2.dim != d:
            raise ValueError(f"norm2 has {self.norm2.dim} channels but norm1 has {d}")
        for field in ("q", "k", "v", "proj"):
            layer = getattr(self, field)
            if (layer.n_in, layer.n_out) != (d, d):
                raise ValueError(
                    f"{field} must map {d} → {d} channels, not {layer.n_in} → {layer.n_out}"
                )
        if self.fc1.n_in != d:
            raise ValueError(f"fc1 must have {d} inputs, not {self.fc1.n_in}")
        if self.fc2.n_in != self.fc1.n_out or self.fc2.n_out != d:
            raise ValueError(
                f"fc2 must map {self.fc1.n_out} → {d} channels, not "
                f"{self.fc2.n_in} → {self.fc2.n_out}"
            )
        _int_field(self, "heads", lo=1, what="a positive integer")
        if d % self.heads:
            raise ValueError(f"heads must divide the {d} channels, not {self.heads}")
        if self.context.per_channel_threshold and self.context.threshold.shape != (d,):
            raise ValueError(
                f"context threshold must be an integer or have shape ({d},), not "
                f"{self.context.threshold.shape}"
            )
        _int_field(self, "attn_residual")
        _int_field(self, "mlp_residual")

    @property
    def dim(self) -> int:
        return self.norm1.dim

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden(self) -> int:
        return self.fc1.n_out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "norm1": self.norm1.to_dict(),
            "q": self.q.to_dict(),
            "k": self.k.to_dict(),
            "v": self.v.to_dict(),
            "heads": self.heads,
            "softmax": self.softmax.to_dict(),
            "context": self.context.to_dict(),
            "proj": self.proj.to_dict(),
            "attn_residual": self.attn_residual,
            "norm2": self.norm2.to_dict(),
            "fc1": self.fc1.to_dict(),
            "fc2": self.fc2.to_dict(),
            "mlp_residual": self.mlp_residual,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Block:
        return cls(
            norm1=LayerNorm.from_dict(d["norm1"]),
            q=Layer.from_dict(d["q"]),
            k=Layer.from_dict(d["k"]),
            v=Layer.from_dict(d["v"]),
            heads=d["heads"],
            softmax=Softmax.from_dict(d["softmax"]),
            context=Context.from_dict(d["context"]),
            proj=Layer.from_dict(d["proj"]),
            attn_residual=d["attn_residual"],
            norm2=LayerNorm.from_dict(d["norm2"]),
            fc1=Layer.from_dict(d["fc1"]),
            fc2=Layer.from_dict(d["fc2"]),
            mlp_residual=d["mlp_residual"],
        )


@dataclass(frozen=True)
class Site:
    """One quantizer site as the reference, the traces and the energy accounting see it.

    ``shape`` is the neuron array (flattened in C order in traces); ``op`` the IR object that
    drives it (a :class:`~ir.network.Layer`, :class:`LayerNorm`, :class:`Softmax` or
    :class:`Context`); ``block`` the block index (-1 outside blocks); ``role`` the short name
    (``embed``, ``norm1``, ``q`` … ``head``).
    """

    name: str
    kind: SiteKind
    role: str
    block: int
    shape: tuple[int, ...]
    op: Any

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def neg_bound(self) -> int:
        return int(self.op.neg_bound)

    @property
    def pos_bound(self) -> int:
        return int(self.op.pos_bound)


@dataclass(frozen=True)
class Ranges:
    """Exact bounds of the non-spike quantities, valid at every step (transients included).

    Every bound follows from the tracers staying inside their ``[n, p]`` at all times.
    """

    stream: tuple[int, ...]  #: max |R| of the stream entering each LayerNorm, in site order
    layernorm_input: tuple[int, ...]  #: max |gain_i·Z_i| per LayerNorm (the rounding's numerator)
    layernorm_output: tuple[int, ...]  #: max |G| per LayerNorm
    scores: tuple[int, ...]  #: max |Qacc·Kaccᵀ| per block
    score_step: tuple[int, ...]  #: max |multi| increment per block
    context: tuple[int, ...]  #: max |Aacc·Vacc| per block
    context_step: tuple[int, ...]  #: max |multi1| increment per block
    membrane: dict[str, tuple[int, int]]  #: membrane range per site name
    membrane_width: dict[str, int]  #: signed bits per site name


@dataclass(frozen=True, kw_only=True, eq=False)
class VisionTransformer:
    """A ViT-ReLU in hardware units: patch embedding, blocks, final norm, classification head.

    The input is analog: one integer per pixel (``input_bounds``), injected at t = 0.

    Parameters
    ----------
    n_inputs : int
        Pixels per image.
    input_bounds : tuple of int
        ``(lo, hi)`` of every pixel.
    patch_index : integer array ``[patches, patch_size]``
        Pixel index of every patch element (row-major patches), each in ``[0, n_inputs)``.
    embed : ir.Layer
        ``patch_size → dim``, the patch embedding (its first-layer synapses are MACs).
    position : integer array ``[1 + patches, dim]``
        Class token (row 0) plus position embedding on the stream grid, injected at t = 0.
    embed_residual : int
        Stream weight of the embedding codes.
    blocks : sequence of Block
        At least one.
    norm : LayerNorm
        Final norm.
    head : ir.Layer
        ``dim → classes``; reads the class token (token 0).
    name : str
        Label.
    """

    n_inputs: int
    input_bounds: tuple[int, int]
    patch_index: np.ndarray
    embed: Layer
    position: np.ndarray
    embed_residual: int
    blocks: tuple[Block, ...]
    norm: LayerNorm
    head: Layer
    name: str = ""

    def __post_init__(self) -> None:
        _int_field(self, "n_inputs", lo=1, what="a positive integer")
        bounds = tuple(self.input_bounds) if hasattr(self.input_bounds, "__iter__") else ()
        if len(bounds) != 2 or not all(_is_int(b) for b in bounds):
            raise TypeError(f"input_bounds must be a pair of integers, not {self.input_bounds!r}")
        lo, hi = int(bounds[0]), int(bounds[1])
        if lo > hi:
            raise ValueError(f"input_bounds must satisfy lo ≤ hi, not ({lo}, {hi})")
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise ValueError(
                f"input_bounds must lie in [{VALUE_MIN}, {VALUE_MAX}] (the {MAX_WIDTH}-bit "
                f"datapath), not ({lo}, {hi})"
            )
        object.__setattr__(self, "input_bounds", (lo, hi))
        idx = _int_array(self.patch_index, field="patch_index", ndim=2)
        if idx.shape[0] < 1 or idx.shape[1] < 1:
            raise ValueError(f"patch_index must have at least one patch and pixel, not {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.n_inputs:
            raise ValueError(f"patch_index values must lie in [0, {self.n_inputs - 1}]")
        object.__setattr__(self, "patch_index", idx)
        for field, kind in (("embed", Layer), ("norm", LayerNorm), ("head", Layer)):
            if not isinstance(getattr(self, field), kind):
                raise TypeError(
                    f"{field} must be a {kind.__name__}, not {type(getattr(self, field)).__name__}"
                )
        if self.embed.n_in != idx.shape[1]:
            raise ValueError(
                f"embed has {self.embed.n_in} inputs but patches hold {idx.shape[1]} pixels"
            )
        d = self.embed.n_out
        pos = _int_array(self.position, field="position", ndim=2)
        if pos.shape != (idx.shape[0] + 1, d):
            raise ValueError(
                f"position must have shape ({idx.shape[0] + 1}, {d}) (class token + patches, "
                f"channels), not {pos.shape}"
            )
        object.__setattr__(self, "position", pos)
        _int_field(self, "embed_residual")
        if isinstance(self.blocks, Block) or not hasattr(self.blocks, "__iter__"):
            raise TypeError(f"blocks must be a sequence of Block, not {type(self.blocks).__name__}")
        blocks = tuple(self.blocks)
        if not blocks:
            raise ValueError("blocks must hold at least one Block")
        for b, blk in enumerate(blocks):
            if not isinstance(blk, Block):
                raise TypeError(f"blocks[{b}] must be a Block, not {type(blk).__name__}")
            if blk.dim != d:
                raise ValueError(f"blocks[{b}] has {blk.dim} channels but embed has {d}")
        object.__setattr__(self, "blocks", blocks)
        if self.norm.dim != d:
            raise ValueError(f"norm has {self.norm.dim} channels but embed has {d}")
        if self.head.n_in != d:
            raise ValueError(f"head has {self.head.n_in} inputs but the stream has {d} channels")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, not {self.name!r}")
        self._check_ranges()

    # -- shape -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.embed.n_out

    @property
    def n_patches(self) -> int:
        return int(self.patch_index.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.patch_index.shape[1])

    @property
    def tokens(self) -> int:
        """Class token plus patches."""
        return self.n_patches + 1

    @property
    def n_outputs(self) -> int:
        return self.head.n_out

    @property
    def depth(self) -> int:
        """Number of blocks (a trace's depth is ``len(sites)``)."""
        return len(self.blocks)

    @cached_property
    def sites(self) -> tuple[Site, ...]:
        """Every quantizer site in execution order."""
        n, d = self.tokens, self.dim
        out = [Site("embed", SiteKind.LINEAR, "embed", -1, (self.n_patches, d), self.embed)]
        for b, blk in enumerate(self.blocks):
            p = f"blocks.{b}."
            out += [
                Site(p + "norm1", SiteKind.LAYERNORM, "norm1", b, (n, d), blk.norm1),
                Site(p + "q", SiteKind.LINEAR, "q", b, (n, d), blk.q),
                Site(p + "k", SiteKind.LINEAR, "k", b, (n, d), blk.k),
                Site(p + "v", SiteKind.LINEAR, "v", b, (n, d), blk.v),
                Site(p + "attn", SiteKind.SOFTMAX, "attn", b, (blk.heads, n, n), blk.softmax),
                Site(p + "context", SiteKind.CONTEXT, "context", b, (n, d), blk.context),
                Site(p + "proj", SiteKind.LINEAR, "proj", b, (n, d), blk.proj),
                Site(p + "norm2", SiteKind.LAYERNORM, "norm2", b, (n, d), blk.norm2),
                Site(p + "fc1", SiteKind.LINEAR, "fc1", b, (n, blk.hidden), blk.fc1),
                Site(p + "fc2", SiteKind.LINEAR, "fc2", b, (n, d), blk.fc2),
            ]
        out += [
            Site("norm", SiteKind.LAYERNORM, "norm", -1, (n, d), self.norm),
            Site("head", SiteKind.LINEAR, "head", -1, (self.n_outputs,), self.head),
        ]
        return tuple(out)

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    # -- derived facts ---------------------------------------------------------------------------
    def step_bound(self) -> int:
        """Number of steps within which the network provably reaches its first idle step.

        Let ``τ`` be the last step at which a quantity can change. The input and every injection
        (biases, position, the first LayerNorm/softmax evaluation) happen at t = 0. An ST-BIF site
        stops spiking at most ``p − n`` steps after its cumulative input last changed (spec §2.2
        (ii)); a LayerNorm or softmax output changes only when its input does; the scores change
        only when q or k spike, the context product only when attn or v spike; the stream only
        when a contributing site spikes. Hence ``τ`` along the longest path of the site graph::

            τ(embed) = p − n;   τ(site) = max τ(inputs) + (p − n)

        and the run ends one idle step after the last change: ``τ(head) + 2`` steps.
        """

        def span(op: Any) -> int:
            return int(op.pos_bound - op.neg_bound)

        stream = span(self.embed)
        for blk in self.blocks:
            n1 = stream + span(blk.norm1)
            q, k, v = (n1 + span(getattr(blk, f)) for f in ("q", "k", "v"))
            a = max(q, k) + span(blk.softmax)
            c = max(a, v) + span(blk.context)
            stream = max(stream, c + span(blk.proj))
            f1 = stream + span(blk.norm2) + span(blk.fc1)
            stream = max(stream, f1 + span(blk.fc2))
        return stream + span(self.norm) + span(self.head) + 2

    @cached_property
    def ranges(self) -> Ranges:
        """Exact bounds of the stream, the LayerNorm and attention quantities and the membranes."""
        lo, hi = self.input_bounds
        mem: dict[str, tuple[int, int]] = {}

        def linear(name: str, layer: Layer, in_lo: int, in_hi: int, analog: bool) -> None:
            w = layer.widths(in_lo, in_hi, analog=analog)
            mem[name] = (w.membrane_lo, w.membrane_hi)

        def quant(name: str, op: Any, g_lo: int, g_hi: int) -> None:
            # U = H + G − A·Θ with the cumulative input G in [g_lo, g_hi] and A in [n, p]
            thr = np.atleast_1d(np.asarray(op.threshold, dtype=np.int64))
            h = thr // 2
            lo_ = int((h - op.pos_bound * thr).min()) + g_lo
            hi_ = int((h - op.neg_bound * thr).max()) + g_hi
            mem[name] = (lo_, hi_)

        linear("embed", self.embed, lo, hi, True)
        stream = int(np.abs(self.position).max()) + abs(self.embed_residual) * max(
            -self.embed.neg_bound, self.embed.pos_bound
        )
        streams, ln_in, ln_out, scores, score_step, ctx, ctx_step = ([] for _ in range(7))

        def norm(name: str, op: LayerNorm, r: int) -> None:
            streams.append(r)
            z = 2 * (op.dim - 1) * r
            ln_in.append(int(np.abs(op.gain).max()) * z)
            g = op.output_bound() + int(np.abs(op.bias).max())
            ln_out.append(g)
            quant(name, op, -g, g)

        def mag(layer: Any) -> int:
            return max(-layer.neg_bound, layer.pos_bound)

        for b, blk in enumerate(self.blocks):
            p = f"blocks.{b}."
            norm(p + "norm1", blk.norm1, stream)
            for f in ("q", "k", "v"):
                linear(p + f, getattr(blk, f), blk.norm1.neg_bound, blk.norm1.pos_bound, False)
            dh, n = blk.head_dim, self.tokens
            mq, mk, mv, ma = mag(blk.q), mag(blk.k), mag(blk.v), mag(blk.softmax)
            scores.append(dh * mq * mk)
            score_step.append(dh * (mq + mk + 1))
            quant(p + "attn", blk.softmax, 0, blk.softmax.numerator)
            # the per-step drive of the attn neuron is a difference of two softmax outputs
            ctx.append(n * ma * mv)
            ctx_step.append(n * (ma + mv + 1))
            c = abs(blk.context.weight) * n * ma * mv
            quant(p + "context", blk.context, -c, c)
            linear(p + "proj", blk.proj, blk.context.neg_bound, blk.context.pos_bound, False)
            stream += abs(blk.attn_residual) * mag(blk.proj)
            norm(p + "norm2", blk.norm2, stream)
            linear(p + "fc1", blk.fc1, blk.norm2.neg_bound, blk.norm2.pos_bound, False)
            linear(p + "fc2", blk.fc2, blk.fc1.neg_bound, blk.fc1.pos_bound, False)
            stream += abs(blk.mlp_residual) * mag(blk.fc2)
        norm("norm", self.norm, stream)
        linear("head", self.head, self.norm.neg_bound, self.norm.pos_bound, False)
        widths = {
            k: signed_width(min(v[0], 0), max(v[1], int(np.max(self._site_op(k).threshold))))
            for k, v in mem.items()
        }
        return Ranges(
            stream=tuple(streams),
            layernorm_input=tuple(ln_in),
            layernorm_output=tuple(ln_out),
            scores=tuple(scores),
            score_step=tuple(score_step),
            context=tuple(ctx),
            context_step=tuple(ctx_step),
            membrane=mem,
            membrane_width=widths,
        )

    def _site_op(self, name: str) -> Any:
        return next(s.op for s in self.sites if s.name == name)

    def _check_ranges(self) -> None:
        r = self.ranges
        lns = [s for s in self.sites if s.kind is SiteKind.LAYERNORM]
        for site, stream, num in zip(lns, r.stream, r.layernorm_input, strict=True):
            d = site.op.dim
            if d * d * stream * stream + site.op.eps >= 2**62 or num >= 2**62:
                raise ValueError(
                    f"{site.name}: the stream (|R| ≤ {stream}) and gains make the LayerNorm "
                    "exceed 62-bit integers; lower the stream weights or the gains"
                )
        for b, blk in enumerate(self.blocks):
            total = int(blk.softmax.table[0]) * self.tokens
            if total * blk.softmax.numerator >= 2**62:
                raise ValueError(
                    f"blocks.{b}.attn: table[0]·tokens·numerator must stay below 2^62; lower the "
                    "table's scale or the numerator"
                )
        for name, width in r.membrane_width.items():
            if width > MAX_WIDTH:
                raise ValueError(
                    f"{name} needs a {width}-bit membrane; at most {MAX_WIDTH} bits are supported"
                )

    # -- inputs ----------------------------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Validate a batch ``[batch, n_inputs]`` of integer pixels within ``input_bounds``.

        Returns it as read-only ``int64`` (the checks and messages of
        :meth:`ir.Network.check_inputs` for analog inputs).
        """
        return self._input_network.check_inputs(inputs)

    @cached_property
    def _input_network(self) -> Network:
        stub = Layer(
            weight=np.zeros((1, self.n_inputs), dtype=np.int64),
            bias=[0],
            threshold=1,
            neg_bound=0,
            pos_bound=1,
        )
        return Network(
            layers=(stub,),
            n_inputs=self.n_inputs,
            encoding="analog",
            input_bounds=self.input_bounds,
        )

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (arrays as nested lists)."""
        return {
            "name": self.name,
            "n_inputs": self.n_inputs,
            "input_bounds": list(self.input_bounds),
            "patch_index": self.patch_index.tolist(),
            "embed": self.embed.to_dict(),
            "position": self.position.tolist(),
            "embed_residual": self.embed_residual,
            "blocks": [blk.to_dict() for blk in self.blocks],
            "norm": self.norm.to_dict(),
            "head": self.head.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionTransformer:
        try:
            return cls(
                n_inputs=d["n_inputs"],
                input_bounds=tuple(d["input_bounds"]),
                patch_index=d["patch_index"],
                embed=Layer.from_dict(d["embed"]),
                position=d["position"],
                embed_residual=d["embed_residual"],
                blocks=tuple(Block.from_dict(b) for b in d["blocks"]),
                norm=LayerNorm.from_dict(d["norm"]),
                head=Layer.from_dict(d["head"]),
                name=d.get("name", ""),
            )
        except KeyError as e:
            raise ValueError(f"transformer description lacks field {e.args[0]!r}") from None

    def _split(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(metadata JSON, arrays): every integer-array field becomes an array named by its path."""
        arrays: dict[str, np.ndarray] = {}

        def strip(obj: Any, path: str) -> Any:
            if isinstance(obj, dict):
                return {k: strip(v, f"{path}.{k}" if path else k) for k, v in obj.items()}
            if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
                return [strip(v, f"{path}.{i}") for i, v in enumerate(obj)]
            if isinstance(obj, list) and path != "input_bounds":
                arrays[path] = np.asarray(obj, dtype=np.int64)
                return {"array": path}
            return obj

        return strip(self.to_dict(), ""), arrays

    def digest(self) -> str:
        """Stable SHA-256 (hex) of the canonical content: metadata JSON and little-endian arrays."""
        meta, arrays = self._split()
        h = hashlib.sha256()
        h.update(KIND.encode())
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
        for key, arr in sorted(arrays.items()):
            h.update(f"{key}:{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file (JSON metadata + int64 arrays), atomically."""
        meta, arrays = self._split()
        _write_npz(path, {"kind": KIND, "version": FORMAT_VERSION, "network": meta}, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> VisionTransformer:
        """Read a file written by :meth:`save`; :class:`FormatError` names what is wrong."""
        meta, arrays = read_npz(path, kind=KIND)
        name = os.fspath(path)
        version = meta.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise FormatError(f"{name}: unsupported transformer format version {version!r}")
        used: set[str] = set()

        def fill(obj: Any) -> Any:  # the metadata's nesting is bounded by read_npz
            if isinstance(obj, dict):
                if set(obj) == {"array"}:
                    key = obj["array"]
                    if not isinstance(key, str):
                        raise ValueError(f"array reference {key!r} is not a name")
                    used.add(key)
                    return arrays[key]
                return {k: fill(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [fill(v) for v in obj]
            return obj

        try:
            network = fill(meta["network"])
            extra = sorted(set(arrays) - used)
            if extra:
                raise ValueError(f"unexpected array {extra[0]!r}")
            return cls.from_dict(network)
        except KeyError as e:
            raise FormatError(f"{name}: corrupt transformer file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise FormatError(f"{name}: invalid transformer: {e}") from None
