"""Random small ``ConvNet``s ending in a max-pool or a residual merge, for the max-pool and merge
core tests (tiers 2 and 3), and the helpers that run those cores on a reference trace."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from spikezip.ir.cnn import Add, Conv2d, ConvNet, MaxPool2d
from tests.sw.cnn_strategies import _neurons, conv_layers


def _first(draw, rng, c0: int, c: int) -> Conv2d:
    return Conv2d(
        weight=rng.integers(-4, 5, (c, c0, 3, 3)),
        bias=rng.integers(-3, 4, c),
        padding=1,
        **_neurons(draw, rng, c),
    )


@st.composite
def pool_nets(draw, *, max_size: int = 6, max_channels: int = 16) -> ConvNet:
    """An analog 3×3 conv (1–``max_channels`` channels, ``h × w`` of 2–``max_size``) feeding a
    max-pool of random kernel (1–3 per axis, fitting), stride (1–3) and padding (0–k // 2);
    ST-BIF, or graded (K None, 0, 1 or 2)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c0 = draw(st.integers(1, 2))
    size = (draw(st.integers(2, max_size)), draw(st.integers(2, max_size)))
    c = draw(st.integers(1, max_channels))
    kernel = tuple(draw(st.integers(1, min(3, s))) for s in size)
    stride = tuple(draw(st.integers(1, 3)) for _ in size)
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    pool = MaxPool2d(kernel=kernel, stride=stride, padding=padding)
    net = ConvNet(
        input_shape=(c0, *size),
        input_bounds=(0, 16),
        layers=(_first(draw, rng, c0, c), pool),
    )
    if draw(st.booleans()):
        net = net.with_neuron("graded", draw(st.sampled_from([None, 0, 1, 2])))
    return net


@st.composite
def add_nets(draw, *, max_size: int = 4, max_channels: int = 16) -> ConvNet:
    """An analog 3×3 conv, then 1–2 same-shape convs in a chain, then an ``Add`` of 2–3 of them
    (random multipliers ±1…±7, random neurons); ST-BIF, or graded (K None, 0, 1 or 2)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c0 = draw(st.integers(1, 2))
    size = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    c = draw(st.integers(1, max_channels))
    n_src = draw(st.integers(2, 3))
    layers = [_first(draw, rng, c0, c)]
    for _ in range(n_src - 1):
        layers.append(draw(conv_layers(c, size, same=True)))
    m = [int(v) for v in rng.integers(1, 8, n_src) * rng.choice([-1, 1], n_src)]
    layers.append(Add(multipliers=tuple(m), **_neurons(draw, rng, c)))
    sources = (*tuple((k - 1,) for k in range(n_src)), tuple(range(n_src)))
    net = ConvNet(
        input_shape=(c0, *size), input_bounds=(0, 16), layers=tuple(layers), sources=sources
    )
    if draw(st.booleans()):
        net = net.with_neuron("graded", draw(st.sampled_from([None, 0, 1, 2])))
    return net


def images(rng, net: ConvNet, batch: int, density: float = 0.7) -> np.ndarray:
    x = rng.integers(0, 17, (batch, net.n_inputs))
    return x * (rng.random(x.shape) < density)


def words(steps, fmt) -> list[int]:
    """Every payload of per-inference steps, back to back."""
    return [w for inf in steps for s in inf for w in s.words(fmt)]


def arrivals_of(steps, valid_from):
    """``valid_from`` (one cycle per beat, stream order) as per-inference, per-step lists."""
    it = iter(valid_from)
    return [[[next(it) for _ in range(s.n_events + 1)] for s in inf] for inf in steps]


def fixed_pool_net(
    neuron: str = "stbif", max_level: int | None = None, padding: tuple[int, int] = (0, 0)
) -> ConvNet:
    """conv 3×3 p1 (analog, 1 → 3 channels, 5×6, symmetric bounds −3…7) → max-pool 2×3,
    stride (2, 1), ``padding`` (at most (1, 1))."""
    rng = np.random.default_rng(11)
    conv = Conv2d(weight=rng.integers(-4, 5, (3, 1, 3, 3)), bias=rng.integers(-3, 4, 3),
                  threshold=4, neg_bound=-3, pos_bound=7, padding=1)  # fmt: skip
    pool = MaxPool2d(kernel=(2, 3), stride=(2, 1), padding=padding)
    net = ConvNet(input_shape=(1, 5, 6), input_bounds=(0, 16), layers=(conv, pool))
    return net if neuron == "stbif" else net.with_neuron(neuron, max_level)


def fixed_add_net(n_src: int = 2, neuron: str = "stbif") -> ConvNet:
    """conv 3×3 p1 (analog, 1 → 4 channels, 3×4) → ``n_src − 1`` same-shape convs → an
    ``Add`` of all of them (per-channel Θ, symmetric bounds)."""
    rng = np.random.default_rng(7)
    c = 4
    layers = [Conv2d(weight=rng.integers(-4, 5, (c, 1, 3, 3)), bias=rng.integers(-3, 4, c),
                     threshold=4, neg_bound=0, pos_bound=7, padding=1)]  # fmt: skip
    for _ in range(n_src - 1):
        layers.append(Conv2d(weight=rng.integers(-4, 5, (c, c, 3, 3)),
                             bias=rng.integers(-3, 4, c), threshold=6, neg_bound=-3,
                             pos_bound=4, padding=1))  # fmt: skip
    layers.append(Add(multipliers=(3, -2, 5)[:n_src], threshold=np.array([3, 5, 2, 4]),
                      neg_bound=-4, pos_bound=5))  # fmt: skip
    sources = (*tuple((k - 1,) for k in range(n_src)), tuple(range(n_src)))
    net = ConvNet(input_shape=(1, 3, 4), input_bounds=(0, 16), layers=tuple(layers),
                  sources=sources)  # fmt: skip
    return net if neuron == "stbif" else net.with_neuron(neuron)
