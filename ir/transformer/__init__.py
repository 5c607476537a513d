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

from spikezip.ir.transformer.block import Block
from spikezip.ir.transformer.ops import layer_norm_exact, softmax_exact
from spikezip.ir.transformer.sites import Context, LayerNorm, SiteKind, Softmax
from spikezip.ir.transformer.vit import FORMAT_VERSION, KIND, Site, VisionTransformer

__all__ = [
    "FORMAT_VERSION",
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
