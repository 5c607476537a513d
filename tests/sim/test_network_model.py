"""The composed network cycle model (hw.model.network_model) == the RTL's cycle stamps.

Every output event and marker of every layer, ``first_input`` and ``done`` of every inference,
on Verilator, for the digits model and random networks (analog and spike input), at every
pipeline depth (:data:`hw.model.cycle_model.PIPELINES`; pipelines 2 and 3 also with layers of fewer
words than their same-word distance, whose passes have idle slots). The model claims exactness only
when no inter-layer FIFO can fill up; the cases below cover both sides of that check: where it holds
the cycles must agree and the RTL must record no stall; where it fails the RTL must indeed have
stalled (the check is not vacuous). Every case is a Verilator build: ``make test`` runs the first
digits case and the backpressure case, the rest is ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.hw.model.design import resolve_lanes
from spikezip.hw.model.network_model import network_schedule
from spikezip.sim.simulate import design, simulate
from spikezip.sw.reference import simulate as reference
from tests.sim.test_network import fit_lanes, random_inputs, random_network

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return tmp_path_factory.mktemp("network-model")


def assert_model_equals_rtl(network, x, builds, lanes, fifo_depth=None, *, pipeline=1):
    golden = reference(network, x)
    d = design(
        network, builds / f"fifo{fifo_depth}", lanes=lanes, fifo_depth=fifo_depth, pipeline=pipeline
    )
    assert d.manifest.pipeline == pipeline
    run = simulate(network, x, sim="verilator", design_dir=d)
    model = network_schedule(network, x, golden, d.params)
    stalls = run.final_counters[:, 3]
    if not model.exact:
        assert stalls[:-1].any(), "model refused a run in which no FIFO filled up"
        return model
    assert not stalls.any()
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
    return model


@pytest.mark.parametrize(
    ("lanes", "fifo_depth", "pipeline"),
    [
        (16, None, 1),
        pytest.param(8, 1024, 1, marks=pytest.mark.slow),  # deep FIFOs: the random cases (512)
        pytest.param((4, 16), None, 1, marks=pytest.mark.slow),
        # pipeline 2 makes the one-word second layer take two cycles per event: its FIFO must
        # hold about a batch of spikes for the model to be exact (the default 66 does not)
        pytest.param(16, 4096, 2, marks=pytest.mark.slow),
        pytest.param(8, 1024, 0, marks=pytest.mark.slow),
    ],
)
def test_digits_model_equals_rtl(digits_network, digits_data, builds, lanes, fifo_depth, pipeline):
    model = assert_model_equals_rtl(
        digits_network, digits_data.x_test[:24], builds, lanes, fifo_depth, pipeline=pipeline
    )
    assert model.exact


def test_backpressure_is_detected(digits_network, digits_data, builds):
    model = assert_model_equals_rtl(digits_network, digits_data.x_test[:8], builds, 8)
    assert not model.exact


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
    model = assert_model_equals_rtl(net, x, builds, lanes, fifo_depth=512, pipeline=pipeline)
    assert model.exact
