"""Small networks and inputs that exercise the layer core's corner cases (shared by tiers 2 and 3).

Chosen as Amaranth's FIFO tests choose depths: lane counts 1, powers of two and their neighbours,
``n_out`` and more than ``n_out``; thresholds 1, odd, even and large; tracers that saturate;
symmetric and asymmetric bounds; negative and zero weights; an analog first layer with negative
values; spike-encoded input; zero inputs and bias-only neurons.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np

from spikezip.ir import Layer, Network

__all__ = ["NETWORKS", "graded", "network"]


def _sparse(rng, lo, hi, shape, density):
    return rng.integers(lo, hi + 1, shape) * (rng.random(shape) < density)


def _analog(rng) -> tuple[Network, np.ndarray]:
    """9 → 12 (analog, symmetric L = 16, Θ = 4) → 5 (asymmetric L = 8, per-neuron Θ)."""
    l0 = Layer(
        weight=_sparse(rng, -6, 6, (12, 9), 0.7),
        bias=rng.integers(-5, 6, 12),
        threshold=4,
        neg_bound=-8,
        pos_bound=7,
    )
    l1 = Layer(
        weight=_sparse(rng, -900, 900, (5, 12), 0.8),
        bias=np.array([0, 3, -2, 0, 1000]),
        threshold=np.array([1, 2, 3, 7, 4096]),
        neg_bound=0,
        pos_bound=7,
    )
    net = Network(layers=(l0, l1), n_inputs=9, encoding="analog", input_bounds=(-7, 16))
    x = _sparse(rng, -7, 16, (4, 9), 0.6)
    x[2] = 0  # an all-zero sample
    return net, x


def _saturating(rng) -> tuple[Network, np.ndarray]:
    """Θ = 1 and narrow tracers (L = 4): inputs far beyond the bounds saturate every neuron."""
    l0 = Layer(
        weight=_sparse(rng, -3, 3, (6, 5), 0.9),
        bias=np.zeros(6, dtype=np.int64),
        threshold=1,
        neg_bound=0,
        pos_bound=3,
    )
    l1 = Layer(
        weight=_sparse(rng, -2, 2, (4, 6), 0.9),
        bias=np.array([0, 0, 1, -1]),
        threshold=1,
        neg_bound=-2,
        pos_bound=1,
    )
    net = Network(layers=(l0, l1), n_inputs=5, encoding="analog", input_bounds=(0, 16))
    return net, rng.integers(0, 17, (3, 5))


def _spike(rng) -> tuple[Network, np.ndarray]:
    """Spike-encoded input over 5 steps; per-neuron odd and even Θ; symmetric bounds."""
    l0 = Layer(
        weight=_sparse(rng, -5, 5, (7, 8), 0.7),
        bias=rng.integers(-2, 3, 7),
        threshold=np.array([1, 2, 3, 4, 5, 6, 9]),
        neg_bound=-4,
        pos_bound=3,
    )
    l1 = Layer(
        weight=_sparse(rng, -4, 4, (3, 7), 0.8),
        bias=np.zeros(3, dtype=np.int64),
        threshold=3,
        neg_bound=-2,
        pos_bound=1,
    )
    net = Network(layers=(l0, l1), n_inputs=8, encoding="spike", input_bounds=(-3, 3))
    x = np.zeros((3, 5, 8), dtype=np.int64)
    run = np.zeros((3, 8), dtype=np.int64)
    for t in range(5):
        s = rng.integers(-1, 2, (3, 8)) * (rng.random((3, 8)) < 0.5)
        s[(run + s < -3) | (run + s > 3)] = 0
        x[:, t], run = s, run + s
    x[1, 4] = 0  # one sample's input goes idle in its last step
    return net, x


def _bias_only(rng) -> tuple[Network, np.ndarray]:
    """A zero weight column, a bias-only neuron busy at t = 0, and all-zero samples."""
    w = _sparse(rng, -3, 3, (4, 3), 1.0)
    w[:, 1] = 0
    w[3] = 0
    l0 = Layer(weight=w, bias=np.array([0, 0, 0, 6]), threshold=4, neg_bound=0, pos_bound=15)
    net = Network(layers=(l0,), n_inputs=3, encoding="analog", input_bounds=(0, 9))
    return net, np.array([[0, 0, 0], [5, 9, 0], [0, 0, 0], [9, 0, 9]])


def _large(rng) -> tuple[Network, np.ndarray]:
    """Θ = 4095 (odd, large), weights up to ±1000, L = 32: wide membranes."""
    l0 = Layer(
        weight=_sparse(rng, -1000, 1000, (10, 6), 0.8),
        bias=rng.integers(-3000, 3001, 10),
        threshold=4095,
        neg_bound=-16,
        pos_bound=15,
    )
    net = Network(layers=(l0,), n_inputs=6, encoding="analog", input_bounds=(0, 63))
    return net, rng.integers(0, 64, (3, 6))


def graded(net: Network, max_level: int | None = None) -> Network:
    """``net`` with graded ST-BIF neurons in every layer (spikes ±2^k, ``k ≤ max_level``)."""
    layers = tuple(
        dataclasses.replace(layer, neuron="graded", max_level=max_level) for layer in net.layers
    )
    return dataclasses.replace(net, layers=layers)


def _graded(name: str, max_level: int | None = None):
    def make(rng) -> tuple[Network, np.ndarray]:
        net, x = NETWORKS[name](rng)
        return graded(net, max_level), x

    make.__doc__ = f"``{name}`` with graded neurons (K = {max_level})."
    make.base = name
    return make


NETWORKS = {
    "analog": _analog,
    "saturating": _saturating,
    "spike": _spike,
    "bias_only": _bias_only,
    "large": _large,
}
#: the same networks with graded neurons: levels 1, 2, 4, 8 (L = 16), 16 (L = 32), K = 1
NETWORKS |= {
    "graded_analog": _graded("analog"),
    "graded_saturating": _graded("saturating"),
    "graded_spike": _graded("spike"),
    "graded_large": _graded("large"),
    "graded_analog_k1": _graded("analog", 1),
}


@cache
def network(name: str) -> tuple[Network, np.ndarray]:
    """The named network and its inputs (deterministic; a graded variant is its base network,
    same seed, with graded neurons)."""
    make = NETWORKS[name]
    base = sorted(n for n, f in NETWORKS.items() if not hasattr(f, "base"))
    net, x = make(np.random.default_rng(base.index(getattr(make, "base", name))))
    x.setflags(write=False)
    return net, x
