"""The differential max-pool core (docs/cnn.md §3, §12; ``hw.cores.max_pool``).

Tier 1: the geometry's validation and facts (windows, tap offsets, widths), the spike rule
against the reference's neuron (``sw.reference.neuron_step`` with Θ = 1), the golden streams
from the definition against the reference's (``sw.cnn.reference``), the cycle model by hand.
Tier 2: random pools (kernel 1–3, stride 1–3, channels 1–16, ST-BIF and graded) in Amaranth's
simulator: every output beat equals the reference's in the exact model's cycle; with random
input gaps and output stalls the same beats; with scheduled arrivals and backpressure every
input beat taken and every output beat leaving in the model's cycle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.max_pool import MaxPoolCore
from spikezip.hw.model import pool_model as pm
from spikezip.hw.model.events import Step
from spikezip.ir.cnn import MaxPool2d
from spikezip.sw.cnn.reference import simulate
from spikezip.sw.reference import neuron_step
from tests.hw.cnn_core_nets import (
    arrivals_of,
    fixed_add_net,
    fixed_pool_net,
    images,
    pool_nets,
    words,
)
from tests.hw.stream_bench import drive_stream, drive_timed

# -- tier 1 ---------------------------------------------------------------------------------------

GEO = dict(channels=2, height=4, width=5, kernel=(2, 3), stride=(2, 1), neg_bound=-3, pos_bound=7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": 0}, "channels must be an integer ≥ 1, not 0"),
        ({"kernel": (5, 1)}, r"kernel must fit the 4×5 input, not 5×1"),
        ({"stride": (0, 1)}, r"stride\[0\] must be an integer ≥ 1, not 0"),
        ({"kernel": (1, 2, 3)}, r"kernel must be a pair"),
        ({"neg_bound": 1}, r"bounds must be integers with n ≤ 0 ≤ p and n < p, not \[1, 7\]"),
        ({"in_spike_max": 3}, "in_spike_max must be a power of two ≥ 1, not 3"),
        ({"in_spike_max": 2}, "an ST-BIF max-pool needs ±1 input spikes"),
        ({"neuron": "lif"}, "neuron must be 'stbif' or 'graded'"),
        ({"max_level": 2}, "max_level must be None or"),
    ],
)
def test_geometry_validation(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        pm.PoolGeometry(**{**GEO, **change})


def test_geometry_facts() -> None:
    """Windows in HWC order, their elements in HWC order (the pool's window), tap offsets,
    widths, formats, the sweep and clear costs."""
    g = pm.PoolGeometry(**GEO)
    assert (g.out_height, g.out_width, g.windows, g.taps) == (2, 3, 12, 6)
    pool = MaxPool2d(kernel=g.kernel, stride=g.stride)
    assert pool.output_shape((2, 4, 5)) == (2, 2, 3)
    for w in range(g.windows):
        (oy, ox), c = divmod(w // 2, 3), w % 2
        expect = [((oy * 2 + ky) * 5 + ox + kx) * 2 + c for ky in range(2) for kx in range(3)]
        assert g.window_elements(w) == expect
        assert [e - expect[0] for e in expect] == g.tap_offsets()
    assert (g.tracer_width, g.membrane_width, g.spike_max) == (4, 5, 1)
    assert g.input_format.index_width == 6 and g.output_format.index_width == 4
    assert g.sweep_cycles == 72 and g.clear_cycles == 40
    graded = pm.PoolGeometry(**GEO, neuron="graded", in_spike_max=4)
    assert graded.spike_max == 8 and graded.output_format.value_width == 5
    assert pm.PoolGeometry(**GEO, neuron="graded", max_level=1).spike_max == 2


@pytest.mark.parametrize(("neuron", "k"), [("stbif", None), ("graded", None), ("graded", 0),
                                           ("graded", 2)])  # fmt: skip
def test_spike_rule_is_the_reference_neuron(neuron, k) -> None:
    """``spike(M − A)`` equals the reference neuron's spike (Θ = 1, membrane ``M − A`` before
    firing) for every tracer ``A`` and maximum ``M`` in the bounds (for ST-BIF: |M − A| ≤ 1)."""
    n, p = -5, 9
    g = pm.PoolGeometry(**{**GEO, "neg_bound": n, "pos_bound": p}, neuron=neuron, max_level=k,
                        in_spike_max=1)  # fmt: skip
    a, mx = np.meshgrid(np.arange(n, p + 1), np.arange(n, p + 1))
    a, mx = a.ravel(), mx.ravel()
    if neuron == "stbif":
        keep = np.abs(mx - a) <= 1
        a, mx = a[keep], mx[keep]
    s, _, _ = neuron_step(
        neuron,
        torch.from_numpy(mx - a),
        torch.zeros(a.size, dtype=torch.int64),
        torch.from_numpy(a),
        threshold=torch.ones(a.size, dtype=torch.int64),
        neg_bound=n,
        pos_bound=p,
        max_level=k,
    )
    assert [g.spike(int(u)) for u in mx - a] == s.tolist()


def test_pool_geometry_refuses_other_layers() -> None:
    net = fixed_add_net()
    with pytest.raises(ValueError, match="is a Conv2d, not a MaxPool2d"):
        pm.pool_geometry(net, 0)
    with pytest.raises(ValueError, match="layer must be an integer in"):
        pm.pool_geometry(net, 9)


def _idle(n: int = 0) -> Step:
    return Step(indices=np.arange(n, dtype=np.int64), values=np.ones(n, np.int64), busy=n > 0)


def test_schedule_by_hand() -> None:
    """One channel, 2×2 input, kernel 2×1, stride 1 (2 windows of 2 taps): step 0 reads two
    events and the marker in cycles 0–2, waits ``SETTLE`` cycles, the sweep issues its 4 reads,
    window 1's spike is formed ``EMIT_LATENCY`` cycles after its last issue and leaves one cycle
    later, the marker is decided the cycle after, the next step reads from the cycle after that;
    a step with a duplicate index is refused."""
    g = pm.PoolGeometry(channels=1, height=2, width=2, kernel=(2, 1), stride=(1, 1),
                        neg_bound=0, pos_bound=3)  # fmt: skip
    assert g.windows == 2 and g.taps == 2
    ins = [[Step(np.array([1, 3]), np.array([1, 1]), True), _idle()]]
    outs = pm.golden_outputs(g, ins)
    assert [s.indices.tolist() for s in outs[0]] == [[1], []]
    run = pm.timed(g, ins, outs)
    start = 3 + pm.SETTLE
    spike = start + 3 + pm.EMIT_LATENCY
    (s0, s1) = run.beats[0]
    assert s0 == ((spike + 1,), spike + 2)
    read1 = spike + 2  # the step-1 marker is read the cycle after the decision
    assert s1 == ((), read1 + 1 + pm.SETTLE + g.sweep_cycles - 1 + pm.EMIT_LATENCY + 2)
    assert run.taken[0] == (0, 1, 2, read1)
    twice = [[Step(np.array([1, 1]), np.array([1, 1]), True), _idle()]]
    with pytest.raises(ValueError, match="step 0 of inference 0 has input index 1 twice"):
        pm.golden_outputs(g, twice)
    with pytest.raises(ValueError, match="has input index 1 twice"):
        pm.timed(g, twice, outs)


# -- tier 2 ---------------------------------------------------------------------------------------


def _check(net, x, *, timed_seed=None) -> None:
    trace = simulate(net, x)
    geo = pm.pool_geometry(net, 1)
    ins, outs = pm.pool_streams(net, x, trace, 1)
    fi, fo = geo.input_format, geo.output_format
    # the definition (integers, no reference) gives the reference's spikes and busy flags
    assert words(pm.golden_outputs(geo, ins), fo) == words(outs, fo)
    core = MaxPoolCore(geo)
    expected = words(outs, fo)
    run = pm.timed(geo, ins, outs)
    cycles = [c for inf in run.beats for ev, mk in inf for c in (*ev, mk)]
    got = drive_stream(core, words(ins, fi), len(expected), limit=4 * cycles[-1] + 100)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles
    if timed_seed is None:
        return
    rng = np.random.default_rng(timed_seed)
    n_in = len(words(ins, fi))
    valid_from = np.cumsum(rng.integers(0, 4, n_in)).tolist()
    ready = np.cumsum(rng.integers(0, 5, len(expected))).tolist()
    run = pm.timed(geo, ins, outs, arrivals_of(ins, valid_from), ready)
    taken, got = drive_timed(
        core, [(core.i, words(ins, fi), valid_from)], len(expected), ready,
        limit=8 * (cycles[-1] + ready[-1] + valid_from[-1]) + 100,
    )  # fmt: skip
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == [c for inf in run.beats for ev, mk in inf for c in (*ev, mk)]
    assert taken[0] == list(run.taken[0])
    assert list(run.offered) == sorted(run.offered)


def _random(data, max_cycles: int) -> None:
    net = data.draw(pool_nets())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = images(rng, net, data.draw(st.integers(1, 2)), data.draw(st.sampled_from([0.4, 1.0])))
    geo = pm.pool_geometry(net, 1)
    ins, outs = pm.pool_streams(net, x, simulate(net, x), 1)
    assume(pm.timed(geo, ins, outs).offered[-1] <= max_cycles)
    _check(net, x, timed_seed=data.draw(st.integers(0, 99)))


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_pools_equal_the_reference_and_the_model(data) -> None:
    """Random max-pools: spikes and busy flags equal the reference's, each beat in the exact
    model's cycle, also with scheduled input gaps and backpressure (the ``_many`` twin: 60,
    slow)."""
    _random(data, 1_500)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_pools_many(data) -> None:
    _random(data, 20_000)


def test_padded_pool_is_the_max_inside() -> None:
    """Padding (1, 1) on a source with negative tracers: a border window's maximum is over its
    elements inside the input (a zero-padded maximum would differ), and the core equals the
    reference and the exact model, also under scheduled gaps and backpressure."""
    net = fixed_pool_net(padding=(1, 1))
    geo = pm.pool_geometry(net, 1)
    assert (geo.out_height, geo.out_width, geo.padding) == (3, 6, (1, 1))
    assert len(geo.window_elements(0)) == 2 and geo.window_origin(0) == (0, -1, -1)
    x = images(np.random.default_rng(4), net, 2)
    trace = simulate(net, x)
    src = net.output_shape(0)
    counts = trace.counts(0).reshape(2, *src)  # the source's final tracers, C order
    corner = counts[:, :, 0, :2].max(axis=2)  # window (0, 0): rows 0, columns 0–1
    assert (corner < 0).any(), "a negative border maximum is what padding must not hide"
    np.testing.assert_array_equal(trace.counts(1).reshape(2, 3, 3, 6)[:, :, 0, 0], corner)
    _check(net, x, timed_seed=3)


def test_random_pauses_keep_the_beats() -> None:
    """A graded pool with K = 1 under random input gaps and output stalls: the same beats."""
    net = fixed_pool_net("graded", 1)
    rng = np.random.default_rng(5)
    x = images(rng, net, 2)
    trace = simulate(net, x)
    geo = pm.pool_geometry(net, 1)
    ins, outs = pm.pool_streams(net, x, trace, 1)
    core = MaxPoolCore(geo)
    expected = words(outs, geo.output_format)
    got = drive_stream(core, words(ins, geo.input_format), len(expected), limit=10**6, seed=3)
    assert [w for _, w in got] == expected


def test_core_validation() -> None:
    with pytest.raises(TypeError, match="geometry must be a PoolGeometry"):
        MaxPoolCore({"channels": 1})
