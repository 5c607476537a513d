"""Tier 3: the residual merge core's generated Verilog under cocotb (docs/cnn.md §12).

Each case is generated, linted, built and run twice on the same build: every source always valid
and the output always ready (every beat equal to the reference's, in the exact cycle model's
cycle), then random idle cycles on each source and output stalls (every beat still exact).
Icarus runs a fixed 3-source graded merge (make test) and, slow, a 2-source ST-BIF one, other
presets and random merges (2–3 sources, channels 1–16); Verilator two merges (slow: the
merger is a few gates, the layer core behind it runs on Verilator in its own tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.flow.verilog import LINT_WAIVERS
from spikezip.hw.model import add_model as am
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.sim.cases import add_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, lint_verilog
from spikezip.sw.cnn.reference import simulate
from tests.hw.cnn_core_nets import add_nets, fixed_add_net, images


def run_both(tmp: Path, sim: str, net, x, lanes: int, pipeline: int) -> None:
    case = add_case(tmp / "case", net, x, len(net.layers) - 1, lanes=lanes, pipeline=pipeline)
    lint_verilog([case.verilog], case.toplevel, {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
    case.run(sim, tmp / "build")
    case.run(sim, tmp / "build", ready=0.6, valid=0.7)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("n_src", "neuron", "lanes", "pipeline"),
    [
        (3, "graded", 2, 1),
        pytest.param(2, "stbif", 4, 2, marks=pytest.mark.slow),
        pytest.param(2, "stbif", 1, 3, marks=pytest.mark.slow),
    ],
)
def test_add_core_icarus(tmp_path, n_src, neuron, lanes, pipeline) -> None:
    net = fixed_add_net(n_src, neuron)
    run_both(tmp_path, "icarus", net, images(np.random.default_rng(0), net, 3), lanes, pipeline)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("n_src", "neuron"),
    [  # slow: the merger's RTL is small and the layer core behind it runs on Verilator elsewhere
        pytest.param(2, "stbif", marks=pytest.mark.slow),
        pytest.param(3, "graded", marks=pytest.mark.slow),
    ],
)
def test_add_core_verilator(tmp_path, n_src, neuron) -> None:
    net = fixed_add_net(n_src, neuron)
    run_both(tmp_path, "verilator", net, images(np.random.default_rng(0), net, 3), 4, 1)


@pytest.mark.sim
@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_add_cores_icarus(tmp_path_factory, data) -> None:
    """Random merges (2–3 sources, channels 1–16, ST-BIF and graded, random lanes, presets
    1–3)."""
    net = data.draw(add_nets(max_size=3))
    x = images(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), net, 1)
    layer = len(net.layers) - 1
    n = int(np.prod(net.output_shape(layer)))
    lanes = data.draw(st.integers(1, min(8, n)))
    pipeline = data.draw(st.sampled_from([1, 2, 3]))
    sources, _, outs = am.add_streams(net, x, simulate(net, x), layer)
    spec = am.add_spec(net, layer, lanes=lanes)
    timing = LayerTiming(n_out=n, lanes=lanes, pipeline=pipeline)
    assume(am.timed(timing, spec.input_map, sources, outs).offered[-1] < 20_000)
    run_both(tmp_path_factory.mktemp("add"), "icarus", net, x, lanes, pipeline)


@pytest.mark.sim
@pytest.mark.slow
def test_digits_cnn_add_verilator(tmp_path, trained_cnn, digits_data) -> None:
    """The digits CNN's ``add`` site (conv4 + conv2, 32×4×4, lanes 8) on 6 test images, per
    cycle."""
    from spikezip.ir.cnn import Add
    from spikezip.sw.cnn.convert import to_convnet

    net = to_convnet(trained_cnn.model, name="digits-cnn")
    layer = next(k for k, op in enumerate(net.layers) if isinstance(op, Add))
    x = digits_data.x_test[:6]
    case = add_case(tmp_path / "case", net, x, layer, lanes=8, pipeline=1)
    case.run("verilator", tmp_path / "build")
    case.run("verilator", tmp_path / "build", ready=0.7, valid=0.8)
