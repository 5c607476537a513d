"""Float ViT QANN → integer :class:`~ir.transformer.VisionTransformer` (spec §2.4 Option B, §3).

The only place where the ViT's floats become integers. Every site's quantizer scale ``s`` (the
float threshold θ) disappears into integer parameters; the integer network is then the golden
model, and the float QANN is compared with it statistically (:func:`agreement`).

* **Linear sites** (embed, q, k, v, proj, fc1, fc2, head): :func:`sw.convert.to_network`'s rule.
  Per output channel the largest power-of-two Θ with ``w = round(W·s_in·Θ/s)`` inside
  ``weight_bits`` signed bits; ``B = round(b·Θ/s)``. The embedding's ``s_in`` is the pixel scale.
* **Residual stream**: unit ``u = min(s_embed, s_proj, s_fc2 over blocks) / 2^stream_bits``; each
  contribution becomes ``round(s/u)·code``; class token + position embedding become
  ``round((cls ⊕ pos)/u)``, injected at t = 0.
* **LayerNorm** (γ, β, ε) feeding a quantizer of scale ``s``: per channel the largest power-of-two
  Θ with ``c = round(γ·Θ/s)`` inside ``gain_bits`` signed bits; ``B = round(β·Θ/s)``;
  ``eps = max(1, round(D²·ε/u²))`` — the float ε, on the stream grid.
* **Softmax**: ``c = s_q·s_k/√d_head``; ``table[δ] = round(2^exp_bits·exp(−c·δ))`` for every
  reachable gap ``δ ≤ 2·d_head·max|a_q|·max|a_k|``, cut after its last non-zero entry; Θ the largest
  power of two with ``N = round(Θ/s_attn) < 2^softmax_bits``.
* **Context**: weight ``2^k`` (a shift), ``Θ = round(2^k·s_context/(s_attn·s_v))`` with the
  smallest ``k ≥ 0`` that makes ``Θ ≥ 2^(context_bits − 1)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from spikezip.ir import Layer
from spikezip.ir.network import check_neuron
from spikezip.ir.transformer import Block, Context, LayerNorm, Softmax, VisionTransformer
from spikezip.sw.convert import Agreement, _round, _thresholds
from spikezip.sw.quant import MyQuan
from spikezip.sw.vit.model import QannViT

__all__ = ["agreement", "evaluate_float", "to_transformer"]


def _scale(quant: MyQuan, name: str) -> float:
    s = float(quant.scale.detach())
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"the quantizer of site {name!r} has scale s = {s!r}; it must be > 0")
    return s


def _array(t: torch.Tensor, name: str, field: str) -> np.ndarray:
    arr = t.detach().to(torch.float64).cpu().numpy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"site {name!r} has a non-finite {field}")
    return arr


def _check_bits(value: Any, field: str, lo: int = 2, hi: int = 32) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{field} must lie in [{lo}, {hi}], not {value!r}")
    return value


class _Converter:
    def __init__(
        self,
        *,
        weight_bits: int,
        gain_bits: int,
        per_neuron_threshold: bool,
        max_threshold: int,
    ) -> None:
        self.weight_bits = weight_bits
        self.gain_bits = gain_bits
        self.per_neuron = per_neuron_threshold
        self.max_threshold = max_threshold

    def theta(self, ratio: np.ndarray, bits: int, name: str, what: str) -> np.ndarray:
        theta = _thresholds(
            ratio, weight_bits=bits, power_of_two=True, max_threshold=self.max_threshold
        )
        if (theta < 1).any():
            i = int(np.argmin(theta))
            raise ValueError(
                f"site {name!r}, channel {i}: a {what} of {float(np.abs(ratio[i]).max()):.4g} "
                f"threshold units needs more than {bits} signed bits even at threshold 1"
            )
        if not self.per_neuron:
            theta = np.full_like(theta, theta.min())
        return theta

    def threshold(self, theta: np.ndarray) -> int | np.ndarray:
        return theta if self.per_neuron else int(theta[0])

    def linear(
        self, weight: np.ndarray, bias: np.ndarray, in_scale: float, quant: MyQuan, name: str
    ) -> Layer:
        s = _scale(quant, name)
        ratio = weight * (in_scale / s)
        theta = self.theta(ratio, self.weight_bits, name, "weight")
        return Layer(
            weight=_round(ratio * theta[:, None].astype(np.float64)),
            bias=_round(bias * theta.astype(np.float64) / s),
            threshold=self.threshold(theta),
            neg_bound=quant.neg_bound,
            pos_bound=quant.pos_bound,
            name=name,
        )

    def norm(self, ln: torch.nn.LayerNorm, quant: MyQuan, unit: float, name: str) -> LayerNorm:
        s = _scale(quant, name)
        gamma = _array(ln.weight, name, "LayerNorm weight")
        beta = _array(ln.bias, name, "LayerNorm bias")
        theta = self.theta((gamma / s)[:, None], self.gain_bits, name, "LayerNorm gain")
        d = gamma.shape[0]
        return LayerNorm(
            gain=_round(gamma * theta / s),
            bias=_round(beta * theta / s),
            eps=max(1, int(_round(np.array(d * d * float(ln.eps) / unit**2)))),
            threshold=self.threshold(theta),
            neg_bound=quant.neg_bound,
            pos_bound=quant.pos_bound,
            name=name,
        )


def _magnitude(q: MyQuan) -> int:
    return max(-q.neg_bound, q.pos_bound)


def to_transformer(
    model: QannViT,
    *,
    weight_bits: int = 8,
    gain_bits: int = 12,
    stream_bits: int = 8,
    exp_bits: int = 16,
    softmax_bits: int = 16,
    context_bits: int = 12,
    per_neuron_threshold: bool = True,
    max_threshold: int = 1 << 16,
    name: str = "",
    neuron: str = "stbif",
    max_level: int | None = None,
) -> VisionTransformer:
    """Convert a trained :class:`~sw.vit.model.QannViT` into an integer ViT (module docstring).

    Parameters
    ----------
    model : sw.vit.model.QannViT
        The trained float QANN.
    weight_bits : int
        Signed width of every linear weight, 2…32.
    gain_bits : int
        Signed width of every LayerNorm gain, 2…32.
    stream_bits : int
        Fractional bits of the residual stream below the smallest contributing scale, 0…24.
    exp_bits : int
        Fractional bits of the softmax's exponential table, 1…30.
    softmax_bits : int
        Bits of the softmax numerator ``N``, 1…30.
    context_bits : int
        Bits of the context threshold, 1…30.
    per_neuron_threshold : bool
        One Θ per output channel (default) or one per site for linear and LayerNorm sites.
    max_threshold : int
        Upper limit of Θ (reached by channels whose weights are all 0 or tiny).
    name : str
        The network's name.
    neuron : str
        ``"stbif"`` (default) or ``"graded"`` at every quantizer site (docs/graded.md §5).
    max_level : int, optional
        Graded only: the largest level K (``|s| ≤ 2^K``); None for unbounded.

    Returns
    -------
    ir.transformer.VisionTransformer

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument or site.
    """
    if not isinstance(model, QannViT):
        raise TypeError(f"model must be a sw.vit.model.QannViT, not {type(model).__name__}")
    _check_bits(weight_bits, "weight_bits")
    _check_bits(gain_bits, "gain_bits")
    _check_bits(stream_bits, "stream_bits", 0, 24)
    _check_bits(exp_bits, "exp_bits", 1, 30)
    _check_bits(softmax_bits, "softmax_bits", 1, 30)
    _check_bits(context_bits, "context_bits", 1, 30)
    if not isinstance(per_neuron_threshold, bool):
        raise TypeError(f"per_neuron_threshold must be a bool, not {per_neuron_threshold!r}")
    if isinstance(max_threshold, bool) or not isinstance(max_threshold, int) or max_threshold < 1:
        raise ValueError(f"max_threshold must be a positive integer, not {max_threshold!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {name!r}")
    check_neuron(neuron, max_level)
    conv = _Converter(
        weight_bits=weight_bits,
        gain_bits=gain_bits,
        per_neuron_threshold=per_neuron_threshold,
        max_threshold=max_threshold,
    )
    blocks = list(model.blocks)
    dim = model.config.dim
    s_embed = _scale(model.q_embed, "embed")
    contributors = [s_embed]
    for b, blk in enumerate(blocks):
        contributors += [
            _scale(blk.q_proj, f"blocks.{b}.proj"),
            _scale(blk.q_fc2, f"blocks.{b}.fc2"),
        ]
    unit = min(contributors) / 2.0**stream_bits

    def residual(s: float) -> int:
        return int(_round(np.array(s / unit)))

    embed = conv.linear(
        _array(model.embed.weight, "embed", "weight"),
        _array(model.embed.bias, "embed", "bias"),
        model.input_scale,
        model.q_embed,
        "embed",
    )
    pos = _array(model.pos_embed, "embed", "position embedding")[0].copy()
    pos[0] += _array(model.cls_token, "embed", "class token")[0, 0]
    out_blocks = []
    for b, blk in enumerate(blocks):
        p = f"blocks.{b}."
        s_n1 = _scale(blk.q_norm1, p + "norm1")
        w = _array(blk.qkv.weight, p + "qkv", "weight")
        bias = _array(blk.qkv.bias, p + "qkv", "bias")
        q, k, v = (
            conv.linear(w[i * dim : (i + 1) * dim], bias[i * dim : (i + 1) * dim], s_n1, qz, p + f)
            for i, (f, qz) in enumerate((("q", blk.q_q), ("k", blk.q_k), ("v", blk.q_v)))
        )
        s_q, s_k, s_v = (
            _scale(qz, p + f) for f, qz in (("q", blk.q_q), ("k", blk.q_k), ("v", blk.q_v))
        )
        s_a = _scale(blk.q_attn, p + "attn")
        c = s_q * s_k / math.sqrt(blk.head_dim)
        gaps = np.arange(2 * blk.head_dim * _magnitude(blk.q_q) * _magnitude(blk.q_k) + 1)
        table = _round(2.0**exp_bits * np.exp(-c * gaps.astype(np.float64)))
        table = table[: int(np.flatnonzero(table)[-1]) + 1]
        theta_a = 1 << max(0, math.floor(math.log2((2**softmax_bits - 1) * s_a)))
        while theta_a > 1 and round(theta_a / s_a) >= 2**softmax_bits:
            theta_a //= 2
        softmax = Softmax(
            table=table,
            numerator=max(1, int(_round(np.array(theta_a / s_a)))),
            threshold=theta_a,
            neg_bound=blk.q_attn.neg_bound,
            pos_bound=blk.q_attn.pos_bound,
            name=p + "attn",
        )
        s_c = _scale(blk.q_context, p + "context")
        ratio = s_c / (s_a * s_v)  # Θ per unit of weight
        shift = max(0, math.ceil(math.log2(2 ** (context_bits - 1) / ratio)))
        context = Context(
            weight=1 << shift,
            threshold=max(1, int(_round(np.array(ratio * 2**shift)))),
            neg_bound=blk.q_context.neg_bound,
            pos_bound=blk.q_context.pos_bound,
            name=p + "context",
        )
        proj = conv.linear(
            _array(blk.proj.weight, p + "proj", "weight"),
            _array(blk.proj.bias, p + "proj", "bias"),
            s_c,
            blk.q_proj,
            p + "proj",
        )
        s_n2 = _scale(blk.q_norm2, p + "norm2")
        fc1 = conv.linear(
            _array(blk.fc1.weight, p + "fc1", "weight"),
            _array(blk.fc1.bias, p + "fc1", "bias"),
            s_n2,
            blk.q_fc1,
            p + "fc1",
        )
        fc2 = conv.linear(
            _array(blk.fc2.weight, p + "fc2", "weight"),
            _array(blk.fc2.bias, p + "fc2", "bias"),
            _scale(blk.q_fc1, p + "fc1"),
            blk.q_fc2,
            p + "fc2",
        )
        out_blocks.append(
            Block(
                norm1=conv.norm(blk.norm1, blk.q_norm1, unit, p + "norm1"),
                q=q,
                k=k,
                v=v,
                heads=blk.heads,
                softmax=softmax,
                context=context,
                proj=proj,
                attn_residual=residual(_scale(blk.q_proj, p + "proj")),
                norm2=conv.norm(blk.norm2, blk.q_norm2, unit, p + "norm2"),
                fc1=fc1,
                fc2=fc2,
                mlp_residual=residual(_scale(blk.q_fc2, p + "fc2")),
            )
        )
    head = conv.linear(
        _array(model.head.weight, "head", "weight"),
        _array(model.head.bias, "head", "bias"),
        _scale(model.q_norm, "norm"),
        model.q_head,
        "head",
    )
    vit = VisionTransformer(
        n_inputs=model.n_inputs,
        input_bounds=model.input_bounds,
        patch_index=model.patch_index.numpy(),
        embed=embed,
        position=_round(pos / unit),
        embed_residual=residual(s_embed),
        blocks=tuple(out_blocks),
        norm=conv.norm(model.norm, model.q_norm, unit, "norm"),
        head=head,
        name=name,
    )
    return vit if neuron == "stbif" else vit.with_neuron(neuron, max_level)


def evaluate_float(model: QannViT, inputs: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """The float QANN's integer codes per site, ``int64 [batch, size]`` each (its own floats)."""
    if not isinstance(model, QannViT):
        raise TypeError(f"model must be a sw.vit.model.QannViT, not {type(model).__name__}")
    return model.codes(inputs)


def agreement(
    model: QannViT, vit: VisionTransformer, inputs: np.ndarray | torch.Tensor
) -> Agreement:
    """Compare the float QANN's codes with the integer QANN's, site by site (end to end).

    The integer network is the golden model; this measures how closely the float model it was
    converted from approximates it (rounded weights, gains, stream, exponential table).

    Returns
    -------
    sw.convert.Agreement
        Per site (in ``vit.sites`` order) the fraction of equal codes, of samples with all codes
        equal, the largest difference, and the fraction of equal predictions.
    """
    from spikezip.sw.vit.reference import integer_qann

    if not isinstance(vit, VisionTransformer):
        raise TypeError(
            f"vit must be an ir.transformer.VisionTransformer, not {type(vit).__name__}"
        )
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = vit.check_inputs(inputs)
    float_codes = evaluate_float(model, x)
    int_codes = integer_qann(vit, x).codes
    if len(float_codes) != len(int_codes):
        raise ValueError(f"model has {len(float_codes)} sites but vit has {len(int_codes)}")
    eq = [f == i for f, i in zip(float_codes, int_codes, strict=True)]
    return Agreement(
        neurons=tuple(float(e.mean()) for e in eq),
        samples=tuple(float(e.all(axis=1).mean()) for e in eq),
        max_difference=tuple(
            int(np.abs(f - i).max()) for f, i in zip(float_codes, int_codes, strict=True)
        ),
        prediction=float(
            np.mean(np.argmax(float_codes[-1], axis=1) == np.argmax(int_codes[-1], axis=1))
        ),
    )
