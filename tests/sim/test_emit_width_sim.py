"""Wide beats between layer cores (``emit_width = k > 1``, issue 16 §3) on the generated Verilog:
cocotb on Icarus and Verilator, the hardware trace equal to the reference spike for spike and
every beat of every layer at the cycle of the exact network model
(``hw.model.network_model``, the receiving cores taking a beat's events in one pass). ``make
test`` runs one small case per simulator; the digits matrix is ``slow``."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.hw.model.network_model import network_schedule
from spikezip.sim.simulate import design, simulate
from spikezip.sw.reference import simulate as reference
from tests.sim.test_network import assert_equal_traces, random_inputs, random_network

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return tmp_path_factory.mktemp("emit-width")


def exact_fifo(network, x, golden, **knobs) -> int:
    """The smallest power of two no FIFO fills at (the model's ``need``)."""
    sched = network_schedule(network, x, golden, fifo_depth=1 << 20, **knobs)
    need = max(f.need for f in sched.fifos)
    return 1 << max(0, (need - 1).bit_length())


def assert_wide_rtl(network, x, builds, sim, *, lanes, pipeline, emit_width):
    golden = reference(network, x)
    knobs = dict(lanes=lanes, pipeline=pipeline, emit_width=emit_width)
    fifo = exact_fifo(network, x, golden, **knobs)
    d = design(network, builds / sim, fifo_depth=fifo, **knobs)
    assert d.params.emit_width == emit_width
    run = simulate(network, x, sim=sim, design_dir=d)
    assert_equal_traces(golden, run.trace)
    model = network_schedule(network, x, golden, d.params)
    assert not model.backpressure and not run.final_counters[:, 3].any()
    for k in range(network.depth):
        for b in range(len(x)):
            marks = model.step_cycles(k, b)
            assert [int(c) for c in run.trace.step_cycles[k][b, : len(marks)]] == marks, (k, b)
            hw = [
                tuple(sorted(int(c) for c in run.trace.spike_cycles[k][b, t] if c >= 0))
                for t in range(len(marks))
            ]
            assert hw == model.spike_cycles(k, b), (k, b)
    np.testing.assert_array_equal(run.done, model.done)
    # the counters count events, not beats
    total = run.final_counters
    for k in range(network.depth):
        spikes = int((golden.spikes[k] != 0).sum())
        events = int((x != 0).sum()) if k == 0 else int((golden.spikes[k - 1] != 0).sum())
        assert total[k, :2].tolist() == [events, spikes], f"layer {k}"
    return model


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wide_random_network(builds, sim) -> None:
    net = random_network(11, depth=3, max_width=12)
    x = random_inputs(net, 3, 11)
    assert_wide_rtl(net, x, builds, sim, lanes=3, pipeline=1, emit_width=2)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("emit_width", [2, 4])
@pytest.mark.parametrize(("lanes", "pipeline"), [(8, 1), ((8, 4), 3), ((16, 8), 0)])
def test_wide_digits(digits_network, digits_data, builds, sim, lanes, pipeline, emit_width):
    x = digits_data.x_test[: 8 if sim == "verilator" else 3]
    assert_wide_rtl(
        digits_network, x, builds, sim, lanes=lanes, pipeline=pipeline, emit_width=emit_width
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_wide_random_graded_networks(builds, seed) -> None:
    net = random_network(seed, depth=3, max_width=16, neuron="graded", max_level=3)
    x = random_inputs(net, 3, seed)
    assert_wide_rtl(net, x, builds, "icarus", lanes=4, pipeline=seed % 4, emit_width=3)
