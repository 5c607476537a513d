"""Hypothesis strategies for small random integer Vision Transformers and their inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from spikezip.ir import Layer
from spikezip.ir.transformer import Block, Context, LayerNorm, Softmax, VisionTransformer

#: Quantizer levels drawn for random sites (small, so that runs stay short).
LEVELS = (2, 3, 4, 8, 16)


def _bounds(rng: np.random.Generator, *, symmetric: bool | None = None) -> tuple[int, int]:
    levels = int(rng.choice(LEVELS))
    if symmetric is None:
        symmetric = bool(rng.integers(2))
    if symmetric:  # odd levels give SpikeZIP's lopsided ranges (spec §8.2): valid ST-BIF bounds
        return (-levels) // 2, levels // 2 - 1
    return 0, levels - 1


def _threshold(rng: np.random.Generator, channels: int) -> int | np.ndarray:
    tmax = int(rng.choice([1, 2, 3, 5, 16, 64, 255, 1024, 4096]))
    if rng.integers(2):
        return rng.integers(1, tmax + 1, channels)
    return int(rng.integers(1, tmax + 1))


def _layer(rng: np.random.Generator, n_in: int, n_out: int, **kw) -> Layer:
    wmax = int(rng.choice([1, 3, 8, 127, 1000]))
    density = float(rng.choice([0.3, 1.0]))
    weight = rng.integers(-wmax, wmax + 1, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    bias_max = int(rng.choice([0, 1, 10, 500]))
    n, p = _bounds(rng, **kw)
    return Layer(
        weight=weight,
        bias=rng.integers(-bias_max, bias_max + 1, n_out),
        threshold=_threshold(rng, n_out),
        neg_bound=n,
        pos_bound=p,
    )


def _norm(rng: np.random.Generator, dim: int) -> LayerNorm:
    gmax = int(rng.choice([1, 16, 1024]))
    bmax = int(rng.choice([0, 8, 2000]))
    n, p = _bounds(rng, symmetric=True)
    return LayerNorm(
        gain=rng.integers(-gmax, gmax + 1, dim),
        bias=rng.integers(-bmax, bmax + 1, dim),
        eps=int(rng.choice([1, 3, 100, 10_000])),
        threshold=_threshold(rng, dim),
        neg_bound=n,
        pos_bound=p,
    )


def _softmax(rng: np.random.Generator) -> Softmax:
    length = int(rng.integers(1, 40))
    top = 1 << int(rng.integers(0, 17))
    steps = rng.random(length) ** 3
    table = np.floor(top * np.exp(-np.cumsum(np.r_[0.0, steps[:-1]]) * rng.random() * 2))
    table = np.maximum.accumulate(table[::-1])[::-1].astype(np.int64)  # non-increasing
    table[0] = max(int(table[0]), 1)
    n, p = _bounds(rng, symmetric=bool(rng.random() < 0.2))
    return Softmax(
        table=table,
        numerator=int(rng.integers(1, 1 << int(rng.integers(1, 17)) + 1)),
        threshold=int(rng.integers(1, int(rng.choice([2, 64, 4096])) + 1)),
        neg_bound=n,
        pos_bound=p,
    )


def _context(rng: np.random.Generator, dim: int) -> Context:
    n, p = _bounds(rng, symmetric=True)
    weight = int(rng.choice([1, 2, 8, 64, -3, 0]))
    return Context(weight=weight, threshold=_threshold(rng, dim), neg_bound=n, pos_bound=p)


@st.composite
def transformers(draw, *, max_tokens: int = 5, max_dim: int = 8, max_depth: int = 2):
    """A random :class:`VisionTransformer`: ≤ ``max_tokens`` tokens, ≤ ``max_dim`` channels."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    patches = draw(st.integers(1, max_tokens - 1))
    patch_size = draw(st.integers(1, 4))
    n_inputs = draw(st.integers(1, 8))
    dim = draw(st.integers(1, max_dim))
    heads = draw(st.sampled_from([h for h in (1, 2, 4) if dim % h == 0]))
    hidden = draw(st.integers(1, 8))
    depth = draw(st.integers(1, max_depth))
    bounds = draw(st.sampled_from([(0, 16), (-8, 7), (0, 1), (-300, 255)]))
    return build_vit(
        rng,
        patches=patches,
        patch_size=patch_size,
        n_inputs=n_inputs,
        dim=dim,
        heads=heads,
        hidden=hidden,
        depth=depth,
        input_bounds=bounds,
    )


def build_vit(
    rng: np.random.Generator,
    *,
    patches: int,
    patch_size: int,
    n_inputs: int,
    dim: int,
    heads: int,
    hidden: int,
    depth: int,
    input_bounds: tuple[int, int] = (0, 16),
) -> VisionTransformer:
    """A random :class:`VisionTransformer` of the given shape, deterministic in ``rng``."""
    lo, hi = input_bounds
    rmax = int(rng.choice([1, 16, 300]))
    blocks = tuple(
        Block(
            norm1=_norm(rng, dim),
            q=_layer(rng, dim, dim),
            k=_layer(rng, dim, dim),
            v=_layer(rng, dim, dim),
            heads=heads,
            softmax=_softmax(rng),
            context=_context(rng, dim),
            proj=_layer(rng, dim, dim),
            attn_residual=int(rng.integers(-rmax, rmax + 1)),
            norm2=_norm(rng, dim),
            fc1=_layer(rng, dim, hidden, symmetric=bool(rng.random() < 0.2)),
            fc2=_layer(rng, hidden, dim),
            mlp_residual=int(rng.integers(-rmax, rmax + 1)),
        )
        for _ in range(depth)
    )
    pmax = int(rng.choice([0, 10, 5000]))
    return VisionTransformer(
        n_inputs=n_inputs,
        input_bounds=(lo, hi),
        patch_index=rng.integers(0, n_inputs, (patches, patch_size)),
        embed=_layer(rng, patch_size, dim),
        position=rng.integers(-pmax, pmax + 1, (patches + 1, dim)),
        embed_residual=int(rng.integers(-rmax, rmax + 1)),
        blocks=blocks,
        norm=_norm(rng, dim),
        head=_layer(rng, dim, int(rng.integers(1, 5))),
    )


@st.composite
def images(draw, vit: VisionTransformer, *, max_batch: int = 4) -> np.ndarray:
    """A batch of integer inputs within ``vit.input_bounds`` (sparse or dense)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = draw(st.integers(1, max_batch))
    lo, hi = vit.input_bounds
    x = rng.integers(lo, hi + 1, (batch, vit.n_inputs))
    return x * (rng.random(x.shape) < draw(st.sampled_from([0.3, 1.0])))
