"""Tier 3: the convolution core's generated Verilog under cocotb (docs/cnn.md §11).

A conv core is a layer core with a convolution input map (``hw.model.conv_sites``). Each case is
generated, linted, built and run twice on the same build: input always valid and output always
ready (every beat equal to the reference's, in the exact cycle model's cycle), then random idle
input cycles and output stalls (every beat still exact). Icarus runs fixed layers (analog and
spike-fed, one-slot and padded passes, every pipeline preset, border, stride and padding edges)
and random conv layers; Verilator one layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.flow.verilog import LINT_WAIVERS
from spikezip.ir.cnn import Conv2d, ConvNet
from spikezip.sim.cases import conv_core_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, lint_verilog
from spikezip.sw.cnn.reference import simulate
from tests.hw.test_conv_core import _model_cycles, conv_nets


def _net() -> tuple[ConvNet, np.ndarray]:
    """conv 3×3 p1 (analog, 2 → 4 channels, 5×5) → conv 3×3 s2 p1 (4 → 6, per-channel Θ,
    symmetric bounds)."""
    rng = np.random.default_rng(1)
    first = Conv2d(
        weight=rng.integers(-4, 5, (4, 2, 3, 3)),
        bias=rng.integers(-3, 4, 4),
        threshold=8,
        neg_bound=0,
        pos_bound=7,
        padding=1,
    )
    second = Conv2d(
        weight=rng.integers(-4, 5, (6, 4, 3, 3)),
        bias=rng.integers(-3, 4, 6),
        threshold=np.array([3, 5, 8, 2, 6, 4]),
        neg_bound=-3,
        pos_bound=4,
        padding=1,
        stride=2,
    )
    net = ConvNet(input_shape=(2, 5, 5), input_bounds=(0, 16), layers=(first, second))
    return net, rng.integers(0, 17, (2, 50)) * (rng.random((2, 50)) < 0.7)


def run_both(tmp: Path, sim: str, net, x, layer: int, lanes: int, pipeline: int) -> None:
    case = conv_core_case(tmp / "case", net, x, layer, lanes=lanes, pipeline=pipeline)
    lint_verilog([case.verilog], case.toplevel, {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
    case.run(sim, tmp / "build")
    case.run(sim, tmp / "build", ready=0.6, valid=0.7)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("layer", "lanes", "pipeline"),
    [
        # make test: the padded and the back-to-back passes; the random cases below cover more
        pytest.param(0, 2, 1, marks=pytest.mark.slow),  # analog, span 2
        (0, 4, 3),  # analog, one-word passes padded to min_distance 3
        (1, 6, 0),  # spike-fed, one-slot passes back to back
        pytest.param(1, 3, 2, marks=pytest.mark.slow),  # spike-fed, span 2 (preset 2)
        pytest.param(1, 1, 1, marks=pytest.mark.slow),  # span 6
    ],
)
def test_conv_core_icarus(tmp_path, layer: int, lanes: int, pipeline: int) -> None:
    net, x = _net()
    run_both(tmp_path, "icarus", net, x, layer, lanes, pipeline)


@pytest.mark.sim
def test_conv_core_verilator(tmp_path) -> None:
    net, x = _net()
    run_both(tmp_path, "verilator", net, x, 1, 2, 1)


@pytest.mark.sim
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_conv_cores_icarus(tmp_path_factory, data) -> None:
    """Random conv layers (kernel 1–5, stride 1–3, padding 0–2, channels 1–16, images 3–8)."""
    net = data.draw(conv_nets(max_size=6, max_c0=2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 17, (1, net.n_inputs)) * (rng.random((1, net.n_inputs)) < 0.5)
    layer = data.draw(st.sampled_from([0, 1]))
    c_out = net.layers[layer].c_out
    lanes = data.draw(st.sampled_from([p for p in range(1, c_out + 1) if c_out % p == 0]))
    # (preset 0 is left out here: a known neuron-array lint failure, see the xfail below; the
    # fixed cases and the Amaranth-simulator tests run preset 0)
    pipeline = data.draw(st.sampled_from([1, 2, 3]))
    assume(_model_cycles(net, x, simulate(net, x), layer, lanes, pipeline) < 20_000)
    run_both(tmp_path_factory.mktemp("conv"), "icarus", net, x, layer, lanes, pipeline)


@pytest.mark.sim
@pytest.mark.parametrize(("layer", "lanes", "pipeline"), [(0, 4, 1), (1, 3, 2)])
def test_graded_conv_core_icarus(tmp_path, layer: int, lanes: int, pipeline: int) -> None:
    """Graded neurons: spikes ±2^k out of the analog conv, into the spike-fed one (shifted
    weights)."""
    net, x = _net()
    run_both(tmp_path, "icarus", net.with_neuron("graded"), x, layer, lanes, pipeline)


@pytest.mark.sim
@pytest.mark.xfail(strict=True, reason="known issue: UNOPTFLAT in NeuronArray's DriveOffsets")
def test_known_issue_constant_per_lane_thresholds_at_preset_0(tmp_path) -> None:
    """Found by the random conv test, but not the conv core's: a plain layer core (main has it
    too) whose per-neuron thresholds are the same in every word of a lane (here Θ = 1, 5, …, as
    a conv site's with ``lanes = c_out``), narrow drives and preset 0 (combinational offsets):
    Yosys folds the constant Θ into ``drive + Θ``, whose top bit then copies the next one, and
    aliases the two bits of the port vector — a combinational loop to ``verilator -Wall``
    (UNOPTFLAT). The simulation itself is exact (the Amaranth-simulator tests run preset 0)."""
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.verilog import generate
    from spikezip.ir.network import Encoding, Layer, Network

    l0 = Layer(weight=np.ones((9, 9), int), bias=np.zeros(9, int), threshold=1, neg_bound=0,
               pos_bound=1)  # fmt: skip
    l1 = Layer(weight=np.array([[1] * 9, [0] * 9] * 9), bias=np.zeros(18, int),
               threshold=np.array([1, 5] * 9), neg_bound=0, pos_bound=1)  # fmt: skip
    net = Network(layers=(l0, l1), input_bounds=(0, 16), encoding=Encoding.ANALOG, n_inputs=9)
    path = tmp_path / "core.v"
    path.write_text(generate(LayerCore.for_network(net, 1, lanes=2, pipeline=0), "core"))
    lint_verilog([path], "core", {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
