"""One transformer block: its sites and residual weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikezip.ir.network import (
    Layer,
)
from spikezip.ir.transformer.ops import (
    _int_field,
)
from spikezip.ir.transformer.sites import (
    Context,
    LayerNorm,
    Softmax,
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
