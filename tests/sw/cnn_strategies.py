"""Hypothesis strategies for random convolutional networks, and a direct loop reference."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d

from .strategies import bounds_for


def _neurons(draw, rng, channels: int) -> dict:
    per_channel = draw(st.booleans())
    tmax = draw(st.sampled_from([1, 2, 3, 5, 16, 64, 255]))
    threshold = (
        rng.integers(1, tmax + 1, channels) if per_channel else int(rng.integers(1, tmax + 1))
    )
    levels = draw(st.integers(2, 16))
    neg, pos = bounds_for(levels, draw(st.booleans()))
    return dict(threshold=threshold, neg_bound=neg, pos_bound=pos)


@st.composite
def conv_layers(draw, c_in: int, size: tuple[int, int], *, same: bool = False) -> Conv2d:
    """A random conv on ``[c_in, *size]``: kernel 1–5, stride 1–3, padding 0–2 (< kernel),
    c_out 1–16, fitting the padded input; ``same`` keeps the shape (odd kernel, stride 1)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if same:
        k = [draw(st.sampled_from([1, 3, 5])) for _ in range(2)]
        pad, stride = [(x - 1) // 2 for x in k], [1, 1]
        c_out = c_in
    else:
        k = [draw(st.integers(1, 5)) for _ in range(2)]
        pad = [draw(st.integers(0, min(2, x - 1))) for x in k]
        stride = [draw(st.integers(1, 3)) for _ in range(2)]
        c_out = draw(st.integers(1, 16))
    k = [min(x, s + 2 * p) if not same else x for x, s, p in zip(k, size, pad, strict=True)]
    pad = [min(p, x - 1) for p, x in zip(pad, k, strict=True)]
    wmax = draw(st.sampled_from([1, 3, 8, 127]))
    density = draw(st.sampled_from([0.3, 1.0]))
    shape = (c_out, c_in, *k)
    weight = rng.integers(-wmax, wmax + 1, shape) * (rng.random(shape) < density)
    bias = rng.integers(-20, 21, c_out) * draw(st.sampled_from([0, 1]))
    return Conv2d(
        weight=weight,
        bias=bias,
        stride=tuple(stride),
        padding=tuple(pad),
        **_neurons(draw, rng, c_out),
    )


@st.composite
def conv_pairs(draw, *, max_size: int = 7) -> ConvNet:
    """An analog 1×1/3×3 conv feeding a random spike-fed conv (:func:`conv_layers`)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c0 = draw(st.integers(1, 3))
    size = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    c1 = draw(st.integers(1, 16))
    first = Conv2d(
        weight=rng.integers(-4, 5, (c1, c0, 1, 1)),
        bias=rng.integers(-3, 4, c1),
        **_neurons(draw, rng, c1),
    )
    second = draw(conv_layers(c1, size))
    return ConvNet(input_shape=(c0, *size), input_bounds=(0, 16), layers=(first, second))


@st.composite
def residual_nets(
    draw, *, graded: bool = False, max_size: int = 6, max_channels: int = 6
) -> ConvNet:
    """conv (analog) → same-shape conv → Add(conv, skip) → max- or sum-pool → flatten → linear."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c0 = draw(st.integers(1, 3))
    size = (draw(st.integers(2, max_size)), draw(st.integers(2, max_size)))
    c1 = draw(st.integers(1, max_channels))
    first = Conv2d(
        weight=rng.integers(-4, 5, (c1, c0, 3, 3)),
        bias=rng.integers(-3, 4, c1),
        padding=1,
        **_neurons(draw, rng, c1),
    )
    second = draw(conv_layers(c1, size, same=True))
    m = [int(v) for v in rng.integers(1, 5, 2) * rng.choice([-1, 1], 2)]
    add = Add(multipliers=tuple(m), **_neurons(draw, rng, c1))
    k = (draw(st.integers(1, min(2, size[0]))), draw(st.integers(1, min(2, size[1]))))
    if draw(st.booleans()):  # (padding up to half the kernel: the max over the inside)
        pad = tuple(draw(st.integers(0, v // 2)) for v in k)
        pool = MaxPool2d(kernel=k, padding=pad)
    else:
        pool = SumPool2d(kernel=k, weight=int(rng.integers(1, 4)), **_neurons(draw, rng, c1))
    n = int(np.prod(pool.output_shape((c1, *size))))
    n_out = draw(st.integers(1, 5))
    fc = Layer(
        weight=rng.integers(-5, 6, (n_out, n)),
        bias=rng.integers(-3, 4, n_out),
        **_neurons(draw, rng, n_out),
    )
    net = ConvNet(
        input_shape=(c0, *size),
        input_bounds=(0, 16),
        layers=(first, second, add, pool, Flatten(), fc),
        sources=((-1,), (0,), (1, 0), (2,), (3,), (4,)),
    )
    if graded:
        net = net.with_neuron("graded", draw(st.sampled_from([None, 0, 1, 2])))
    return net


@st.composite
def images_for(draw, net: ConvNet, *, max_batch: int = 4) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = draw(st.integers(1, max_batch))
    lo, hi = net.input_bounds
    x = rng.integers(lo, hi + 1, (batch, net.n_inputs))
    return x * (rng.random(x.shape) < draw(st.sampled_from([0.3, 1.0])))


# -- a direct reference: explicit index arithmetic, Python loops over positions and taps -----------
def conv_direct(op: Conv2d, x: np.ndarray) -> np.ndarray:
    """``[B, c_out, H', W']`` drive of ``x [B, c_in, H, W]`` (no bias), tap by tap."""
    b, _, h, w = x.shape
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, op.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    out = np.zeros((b, op.c_out, ho, wo), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sy - py + ky, ox * sx - px + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        out[:, :, oy, ox] += x[:, :, iy, ix] @ op.weight[:, :, ky, kx].T
    return out


def pool_direct(op, x: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` over each window's elements inside the input (a padded max-pool's window is
    clipped to the input)."""
    b, c, h, w = x.shape
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, op.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    out = np.zeros((b, c, ho, wo), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            y0, x0 = oy * sy - py, ox * sx - px
            win = x[:, :, max(y0, 0) : y0 + kh, max(x0, 0) : x0 + kw]
            out[:, :, oy, ox] = reduce(win)
    return out


def qann_direct(net: ConvNet, pixels: np.ndarray) -> list[np.ndarray]:
    """Integer QANN per layer (Flatten included), from the definitions, in numpy."""
    acts: list[np.ndarray] = []
    img = np.asarray(pixels, dtype=np.int64).reshape(-1, *net.input_shape)

    def src(i: int) -> np.ndarray:
        return img if i < 0 else acts[i]

    def quant(op, d: np.ndarray, thr: np.ndarray) -> np.ndarray:
        thr = thr.reshape((-1,) + (1,) * (d.ndim - 2))
        return np.clip(np.floor_divide(d + thr // 2, thr), op.neg_bound, op.pos_bound)

    for k, op in enumerate(net.layers):
        x = src(net.sources[k][0])
        if isinstance(op, Flatten):
            acts.append(x.reshape(x.shape[0], -1))
        elif isinstance(op, MaxPool2d):
            acts.append(pool_direct(op, x, lambda v: v.max(axis=(2, 3))))
        elif isinstance(op, SumPool2d):
            d = op.weight * pool_direct(op, x, lambda v: v.sum(axis=(2, 3)))
            acts.append(quant(op, d, op.thresholds_for(x.shape[1])))
        elif isinstance(op, Add):
            d = sum(m * src(i) for m, i in zip(op.multipliers, net.sources[k], strict=True))
            acts.append(quant(op, d, op.thresholds_for(x.shape[1])))
        elif isinstance(op, Conv2d):
            d = conv_direct(op, x) + op.bias[None, :, None, None]
            acts.append(quant(op, d, op.thresholds))
        else:
            acts.append(quant(op, x @ op.weight.T + op.bias, op.thresholds))
    return [a for a, op in zip(acts, net.layers, strict=True) if not isinstance(op, Flatten)]


def _neuron(kind, k, u, a, thr, n, p):
    """One ST-BIF or graded step in numpy (spec §2.4, docs/graded.md §1), from the definitions."""
    pos = (u >= thr) & (a < p)
    neg = (u < 0) & (a > n)
    if kind == "stbif":
        s = pos.astype(np.int64) - neg.astype(np.int64)
    else:
        q = np.floor_divide(u, thr)
        room = np.where(pos, np.minimum(q, p - a), np.minimum(-q, a - n))
        room = np.where(pos | neg, np.maximum(room, 1), 1)
        m = np.array([1 << (int(r).bit_length() - 1) for r in room.reshape(-1)]).reshape(room.shape)
        if k is not None:
            m = np.minimum(m, 1 << k)
        s = np.where(pos, m, np.where(neg, -m, 0))
    return s, u - s * thr, a + s


def snn_direct(net: ConvNet, pixels: np.ndarray, n_steps: int) -> list[np.ndarray]:
    """Spikes per site ``[B, T, n]`` of the SNN, step by step from the definitions, with the
    direct (tap-by-tap) drives: an implementation of :func:`sw.cnn.reference.simulate` that
    shares nothing with it."""
    img = np.asarray(pixels, dtype=np.int64).reshape(-1, *net.input_shape)
    b = img.shape[0]
    state: dict[int, tuple] = {}
    cum: dict[int, np.ndarray] = {}
    top: dict[int, np.ndarray] = {}
    rec: dict[int, list] = {k: [] for k, op in enumerate(net.layers) if not isinstance(op, Flatten)}
    for k, op in enumerate(net.layers):
        shape = (b, *net.output_shape(k))
        if isinstance(op, Flatten):
            continue
        if isinstance(op, MaxPool2d):
            thr = np.ones(shape[1], dtype=np.int64)
            bias = np.zeros(shape[1], dtype=np.int64)
            cum[k] = np.zeros((b, *net.input_shape_of(k)), dtype=np.int64)
            top[k] = np.zeros(shape, dtype=np.int64)
        else:
            thr = op.thresholds if hasattr(op, "thresholds") else op.thresholds_for(shape[1])
            bias = getattr(op, "bias", np.zeros(shape[1], dtype=np.int64))
        bshape = (1, -1) + (1,) * (len(shape) - 2)
        thr, bias = thr.reshape(bshape), bias.reshape(bshape)
        state[k] = (
            thr // 2 + bias + np.zeros(shape, dtype=np.int64),
            np.zeros(shape, np.int64),
            thr,
        )
    for t in range(n_steps):
        out = {-1: img if t == 0 else np.zeros_like(img)}
        for k, op in enumerate(net.layers):
            x = out[net.sources[k][0]]
            if isinstance(op, Flatten):
                out[k] = x.reshape(b, -1)
                continue
            u, a, thr = state[k]
            if isinstance(op, Conv2d):
                d = conv_direct(op, x)
                n, p = op.neg_bound, op.pos_bound
            elif isinstance(op, SumPool2d):
                d = op.weight * pool_direct(op, x, lambda v: v.sum(axis=(2, 3)))
                n, p = op.neg_bound, op.pos_bound
            elif isinstance(op, Add):
                d = sum(m * out[i] for m, i in zip(op.multipliers, net.sources[k], strict=True))
                n, p = op.neg_bound, op.pos_bound
            elif isinstance(op, MaxPool2d):
                cum[k] = cum[k] + x
                new = pool_direct(op, cum[k], lambda v: v.max(axis=(2, 3)))
                d, top[k] = new - top[k], new
                n, p = net.source_range(k)
            else:
                d = x @ op.weight.T
                n, p = op.neg_bound, op.pos_bound
            s, u, a = _neuron(op.neuron, op.max_level, u + d, a, thr, n, p)
            state[k] = (u, a, thr)
            out[k] = s
            rec[k].append(s.reshape(b, -1))
    return [np.stack(v, axis=1) for v in rec.values()]


@st.composite
def layer_chains(draw, *, max_size: int = 6, pool: bool | None = None) -> ConvNet:
    """The sites the CNN top builds as layer cores, in a chain: an analog conv → a random
    spike-fed conv (:func:`conv_layers`) → optionally a sum-pool → flatten → linear."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c0 = draw(st.integers(1, 2))
    size = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    c1 = draw(st.integers(1, 8))
    first = Conv2d(
        weight=rng.integers(-4, 5, (c1, c0, 3, 3)),
        bias=rng.integers(-3, 4, c1) * draw(st.sampled_from([0, 1])),
        padding=1,
        **_neurons(draw, rng, c1),
    )
    second = draw(conv_layers(c1, size))
    layers = [first, second]
    shape = second.output_shape((c1, *size))
    if pool if pool is not None else draw(st.booleans()):
        k = (draw(st.integers(1, min(2, shape[1]))), draw(st.integers(1, min(2, shape[2]))))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        sp = SumPool2d(
            kernel=k, stride=stride, weight=int(rng.integers(1, 4)), **_neurons(draw, rng, shape[0])
        )
        shape = sp.output_shape(shape)
        layers.append(sp)
    n_out = draw(st.integers(1, 5))
    fc = Layer(
        weight=rng.integers(-5, 6, (n_out, int(np.prod(shape)))),
        bias=rng.integers(-3, 4, n_out),
        **_neurons(draw, rng, n_out),
    )
    return ConvNet(input_shape=(c0, *size), input_bounds=(0, 16), layers=(*layers, Flatten(), fc))
