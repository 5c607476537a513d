"""The composed network cycle model (hw.model.network_model) == the RTL's cycle stamps.

Every output event and marker of every layer, ``first_input`` and ``done`` of every inference,
and every layer's ``stalls`` counter (the cycles its output waited: for a FIFO's producer the
model's :attr:`~hw.model.fifo_model.FifoCheck.waited`), for the digits model and random networks
(analog and spike input), at every pipeline depth (:data:`hw.model.cycle_model.PIPELINES`;
pipelines 2 and 3 also with layers of fewer words than their same-word distance, whose passes have
idle slots), and at any FIFO depth: 1 (the smallest the RTL accepts), 4, 8 and one that never
fills, with and without pauses of the last layer's output (seeded:
:class:`~hw.model.network_model.OutputReady`), on Verilator and Icarus. ``make test`` runs one
Verilator case (digits, depth 1), one Icarus case (a random network at depth 1 with output
pauses) and the first digits case; the rest is ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.hw.model.design import resolve_lanes
from spikezip.hw.model.network_model import OutputReady, network_schedule
from spikezip.sim.simulate import design, simulate
from spikezip.sw.reference import simulate as reference
from tests.sim.test_network import fit_lanes, random_inputs, random_network

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return tmp_path_factory.mktemp("network-model")


def assert_model_equals_rtl(
    network, x, builds, lanes, fifo_depth=None, *, pipeline=1, sim="verilator", ready=1.0, seed=3
):
    golden = reference(network, x)
    d = design(
        network,
        builds / f"fifo{fifo_depth}-d{pipeline}",
        lanes=lanes,
        fifo_depth=fifo_depth,
        pipeline=pipeline,
    )
    assert d.manifest.pipeline == pipeline
    run = simulate(network, x, sim=sim, design_dir=d, ready=ready, seed=seed)
    out_ready = OutputReady(ready, seed) if ready < 1 else None
    model = network_schedule(network, x, golden, d.params, out_ready=out_ready)
    assert model.exact
    trace = run.trace
    for k in range(network.depth):
        for b in range(len(x)):
            marks = model.step_cycles(k, b)
            assert [int(c) for c in trace.step_cycles[k][b, : len(marks)]] == marks, (k, b)
            hw = [
                tuple(sorted(int(c) for c in trace.spike_cycles[k][b, t] if c >= 0))
                for t in range(len(marks))
            ]
            assert hw == model.spike_cycles(k, b), (k, b)
    np.testing.assert_array_equal(run.first_input, model.first_input)
    np.testing.assert_array_equal(run.done, model.done)
    np.testing.assert_array_equal(run.latency, model.latency)
    # the cycles each producer waited for room (the RTL's ``stalls`` counters), and the last
    # layer's waits for the output's pauses
    stalls = run.final_counters[:, 3]
    assert [int(c) for c in stalls[:-1]] == [f.waited for f in model.fifos]
    last = model.runs[-1]
    left = [c for inf in last.beats for ev, mk in inf for c in (*ev, mk)]
    assert int(stalls[-1]) == sum(a - b for a, b in zip(left, last.offered, strict=True))
    assert (int(stalls[-1]) > 0) == (ready < 1)
    return model


@pytest.mark.parametrize(
    ("lanes", "fifo_depth", "pipeline"),
    [
        (16, None, 1),
        pytest.param(8, 1024, 1, marks=pytest.mark.slow),  # deep FIFOs: the random cases (512)
        pytest.param((4, 10), None, 1, marks=pytest.mark.slow),  # one word in layer 1
        # pipeline 2 makes the one-word second layer take two cycles per event: its FIFO must
        # hold about a batch of spikes for the model to be exact (the default 66 does not)
        pytest.param(16, 4096, 2, marks=pytest.mark.slow),
        pytest.param(8, 1024, 0, marks=pytest.mark.slow),
        # ``--fast``: two-entry input buffers, the FIFO carrying layer 1's weight row; small
        # FIFOs, so the earlier ``taken`` of the two entries shows in the backpressure
        pytest.param((8, 4), 4, 3, marks=pytest.mark.slow),
    ],
)
def test_digits_model_equals_rtl(digits_network, digits_data, builds, lanes, fifo_depth, pipeline):
    assert_model_equals_rtl(
        digits_network,
        digits_data.x_test[:24],
        builds / f"p{lanes}",
        lanes,
        fifo_depth,
        pipeline=pipeline,
    )


#: FIFO depths of the backpressure matrix: the smallest the RTL accepts, small ones, and one that
#: never fills (``None``: the model's need, as a power of two, found per case)
DEPTHS = (1, 4, 8, None)


def _never_fills(network, x, lanes, pipeline=1) -> int:
    model = network_schedule(network, x, reference(network, x), lanes=lanes, pipeline=pipeline)
    return 1 << (max(model.fifo_peak) - 1).bit_length()


@pytest.mark.parametrize(
    ("sim", "fifo_depth", "ready"),
    [
        ("verilator", 1, 1.0),
        *[
            pytest.param(s, d, r, marks=pytest.mark.slow)
            for s in ("verilator", "icarus")
            for d in DEPTHS
            for r in (1.0, 0.6)
            if (s, d, r) != ("verilator", 1, 1.0)
        ],
    ],
)
def test_digits_backpressure(digits_network, digits_data, builds, sim, fifo_depth, ready):
    """The digits network at small FIFO depths: the producer waits, the model is exact."""
    x = digits_data.x_test[:6]
    lanes = 8
    never = fifo_depth is None
    if never:
        fifo_depth = _never_fills(digits_network, x, lanes)
    model = assert_model_equals_rtl(
        digits_network, x, builds, lanes, fifo_depth, sim=sim, ready=ready
    )
    assert model.backpressure == (not never)  # the small depths do fill (not vacuous)
    assert all(f.need <= f.depth for f in model.fifos) == never


@pytest.mark.parametrize(
    ("sim", "seed", "depth", "width", "lanes", "encoding", "pipeline", "ready"),
    [
        ("icarus", 41, 3, 16, (4, 1, 2), "analog", 1, 0.6),
        pytest.param("verilator", 42, 3, 20, (8, 1, 3), "spike", 2, 0.5, marks=pytest.mark.slow),
        pytest.param(
            "verilator", 43, 4, 24, (6, 2, 1, 3), "analog", 0, 1.0, marks=pytest.mark.slow
        ),
        pytest.param("icarus", 44, 2, 24, (12, 1), "analog", 3, 0.7, marks=pytest.mark.slow),
        pytest.param("verilator", 45, 3, 16, (1, 16, 1), "spike", 1, 1.0, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize(
    "fifo_depth",
    [
        1,
        pytest.param(4, marks=pytest.mark.slow),
        pytest.param(8, marks=pytest.mark.slow),
        pytest.param(None, marks=pytest.mark.slow),
    ],
)
def test_random_backpressure(
    builds, sim, seed, depth, width, lanes, encoding, pipeline, ready, fifo_depth
):
    """Random small networks at FIFO depths 1, 4, 8 and one that never fills."""
    net = random_network(seed, depth=depth, max_width=width, encoding=encoding)
    lanes = fit_lanes(net, lanes)
    x = random_inputs(net, 5, seed)
    if fifo_depth is None:
        fifo_depth = _never_fills(net, x, lanes, pipeline)
    assert_model_equals_rtl(
        net, x, builds / f"r{seed}", lanes, fifo_depth, pipeline=pipeline, sim=sim, ready=ready
    )


@pytest.mark.parametrize(
    ("seed", "depth", "width", "lanes", "encoding", "pipeline"),
    [
        # all slow: make test runs the digits cases above; each depth's layer timing (idle slots
        # included) is checked in the layer core's cocotb tests (pipeline 0 on Verilator)
        pytest.param(1, 2, 12, 1, "analog", 1, marks=pytest.mark.slow),
        pytest.param(2, 3, 9, 3, "spike", 1, marks=pytest.mark.slow),
        pytest.param(1, 2, 12, 4, "analog", 0, marks=pytest.mark.slow),
        pytest.param(2, 3, 9, (3, 16, 2), "spike", 2, marks=pytest.mark.slow),  # layer 1: one word
        pytest.param(1, 2, 12, (6, 4), "analog", 3, marks=pytest.mark.slow),
        pytest.param(3, 1, 17, 4, "analog", 1, marks=pytest.mark.slow),
        pytest.param(4, 3, 6, 2, "spike", 1, marks=pytest.mark.slow),
        pytest.param(5, 2, 8, 16, "analog", 2, marks=pytest.mark.slow),  # one word everywhere
        pytest.param(6, 3, 10, (1, 4, 16), "spike", 0, marks=pytest.mark.slow),
        pytest.param(7, 3, 12, (5, 1, 12), "analog", 2, marks=pytest.mark.slow),
    ],
)
def test_random_model_equals_rtl(builds, seed, depth, width, lanes, encoding, pipeline):
    _random_model_equals_rtl(builds, seed, depth, width, lanes, encoding, pipeline)


@pytest.mark.parametrize(
    ("seed", "depth", "width", "lanes", "encoding", "pipeline"),
    [
        (31, 3, 12, (4, 1, 3), "analog", 1),
        pytest.param(32, 3, 16, (2, 16, 2), "spike", 2, marks=pytest.mark.slow),
        pytest.param(33, 4, 24, (5, 16, 1, 3), "analog", 3, marks=pytest.mark.slow),
        pytest.param(34, 3, 20, 4, "analog", 0, marks=pytest.mark.slow),
    ],
)
def test_random_graded_model_equals_rtl(builds, seed, depth, width, lanes, encoding, pipeline):
    """Graded neurons: events are ±2^k, fewer steps; the network model stays cycle-exact."""
    _random_model_equals_rtl(builds, seed, depth, width, lanes, encoding, pipeline, "graded")


def _random_model_equals_rtl(
    builds, seed, depth, width, lanes, encoding, pipeline, neuron="stbif"
) -> None:
    net = random_network(seed, depth=depth, max_width=width, encoding=encoding, neuron=neuron)
    lanes = fit_lanes(net, lanes)
    x = random_inputs(net, 6, seed)
    if pipeline >= 2:  # the case covers what it claims: a layer whose passes have idle slots
        per_layer = resolve_lanes(net, lanes)
        timings = [
            LayerTiming(layer.n_out, p, pipeline)
            for p, layer in zip(per_layer, net.layers, strict=True)
        ]
        assert any(t.slots > t.words for t in timings)
    assert_model_equals_rtl(net, x, builds / f"r{seed}", lanes, fifo_depth=512, pipeline=pipeline)
