"""The composed network cycle model (hw.network_model) == the RTL's cycle stamps.

Every output event and marker of every layer, ``first_input`` and ``done`` of every inference,
on Verilator, for the digits model and random networks (analog and spike input). The model claims
exactness only when no inter-layer FIFO can fill up; the cases below cover both sides of that
check: where it holds the cycles must agree and the RTL must record no stall; where it fails the
RTL must indeed have stalled (the check is not vacuous).
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.network_model import network_schedule
from sim.network import design, simulate
from sw.reference import simulate as reference
from tests.sim.test_network import random_inputs, random_network

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return tmp_path_factory.mktemp("network-model")


def assert_model_equals_rtl(network, x, builds, lanes, fifo_depth=None):
    golden = reference(network, x)
    d = design(network, builds / f"fifo{fifo_depth}", lanes=lanes, fifo_depth=fifo_depth)
    run = simulate(network, x, sim="verilator", design_dir=d)
    model = network_schedule(network, x, golden, lanes, d.manifest["parameters"]["fifo_depths"])
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
    ("lanes", "fifo_depth"),
    [(16, None), (8, 1024), pytest.param((4, 16), None, marks=pytest.mark.slow)],
)
def test_digits_model_equals_rtl(digits_network, digits_data, builds, lanes, fifo_depth):
    model = assert_model_equals_rtl(
        digits_network, digits_data.x_test[:24], builds, lanes, fifo_depth
    )
    assert model.exact


def test_backpressure_is_detected(digits_network, digits_data, builds):
    model = assert_model_equals_rtl(digits_network, digits_data.x_test[:8], builds, 8)
    assert not model.exact


@pytest.mark.parametrize(
    ("seed", "depth", "width", "lanes", "encoding"),
    [
        (1, 2, 12, 1, "analog"),
        (2, 3, 9, 3, "spike"),
        pytest.param(3, 1, 17, 4, "analog", marks=pytest.mark.slow),
        pytest.param(4, 3, 6, 2, "spike", marks=pytest.mark.slow),
    ],
)
def test_random_model_equals_rtl(builds, seed, depth, width, lanes, encoding):
    net = random_network(seed, depth=depth, max_width=width, encoding=encoding)
    x = random_inputs(net, 6, seed)
    assert_model_equals_rtl(net, x, builds, lanes, fifo_depth=512)
