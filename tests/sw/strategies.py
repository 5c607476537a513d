"""Hypothesis strategies for random integer networks and inputs (shared by sw and hw tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from spikezip.ir import Layer, Network


def bounds_for(levels: int, symmetric: bool) -> tuple[int, int]:
    """Tracer bounds of an L-level quantizer, spec §1.1 (Python precedence: (-L)//2)."""
    return ((-levels) // 2, levels // 2 - 1) if symmetric else (0, levels - 1)


@st.composite
def layers(draw, n_in: int, n_out: int, *, weight_max: int | None = None) -> Layer:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wmax = weight_max or draw(st.sampled_from([1, 3, 8, 127, 128, 1000, 2**15]))
    density = draw(st.sampled_from([0.1, 0.5, 1.0]))
    weight = rng.integers(-wmax, wmax + 1, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    # thresholds from 1 to 2^12, odd and even, scaled so that neurons actually fire sometimes
    per_neuron = draw(st.booleans())
    tmax = draw(st.sampled_from([1, 2, 3, 5, 64, 255, 1024, 4095, 4096]))
    threshold = rng.integers(1, tmax + 1, n_out) if per_neuron else int(rng.integers(1, tmax + 1))
    bias_max = draw(st.sampled_from([0, 1, 10, 5000]))
    bias = rng.integers(-bias_max, bias_max + 1, n_out)
    levels = draw(st.integers(2, 64))
    neg, pos = bounds_for(levels, draw(st.booleans()))
    return Layer(weight=weight, bias=bias, threshold=threshold, neg_bound=neg, pos_bound=pos)


@st.composite
def networks(draw, *, max_depth: int = 6, max_width: int = 64, encoding: str | None = None):
    depth = draw(st.integers(1, max_depth))
    widths = [draw(st.integers(1, max_width)) for _ in range(depth + 1)]
    enc = encoding or draw(st.sampled_from(["analog", "spike"]))
    if enc == "analog":
        lo = draw(st.sampled_from([0, -1, -16, -300]))
        hi = draw(st.sampled_from([1, 16, 255]))
    else:
        lo, hi = -draw(st.integers(0, 8)), draw(st.integers(0, 8))
        if lo == hi == 0:
            hi = 1
    ls = tuple(draw(layers(widths[k], widths[k + 1])) for k in range(depth))
    return Network(layers=ls, n_inputs=widths[0], encoding=enc, input_bounds=(lo, hi))


@st.composite
def inputs_for(draw, network: Network, *, max_batch: int = 6, max_steps: int = 12):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = draw(st.integers(1, max_batch))
    lo, hi = network.input_bounds
    if network.encoding.value == "analog":
        x = rng.integers(lo, hi + 1, (batch, network.n_inputs))
        return x * (rng.random(x.shape) < draw(st.sampled_from([0.2, 1.0])))
    steps = draw(st.integers(1, max_steps))
    # a random walk kept inside the running-sum bounds
    x = np.zeros((batch, steps, network.n_inputs), dtype=np.int64)
    run = np.zeros((batch, network.n_inputs), dtype=np.int64)
    for t in range(steps):
        s = rng.integers(-1, 2, (batch, network.n_inputs))
        s[(run + s < lo) | (run + s > hi)] = 0
        x[:, t] = s
        run += s
    return x
