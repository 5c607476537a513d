"""Tier 3: the max-pool core's generated Verilog under cocotb (docs/cnn.md §12).

Each case is generated, linted, built and run twice on the same build: input always valid and
output always ready (every beat equal to the reference's, in the exact cycle model's cycle), then
random idle input cycles and output stalls (every beat still exact). Icarus runs a fixed ST-BIF
pool (make test) and, slow, a graded one and random pools (kernel 1–3, stride 1–3, channels
1–16); Verilator one pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.flow.verilog import LINT_WAIVERS
from spikezip.hw.model import pool_model as pm
from spikezip.sim.cases import max_pool_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, lint_verilog
from spikezip.sw.cnn.reference import simulate
from tests.hw.cnn_core_nets import fixed_pool_net, images, pool_nets


def run_both(tmp: Path, sim: str, net, x) -> None:
    case = max_pool_case(tmp / "case", net, x, 1)
    lint_verilog([case.verilog], case.toplevel, {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
    case.run(sim, tmp / "build")
    case.run(sim, tmp / "build", ready=0.6, valid=0.7)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("neuron", "k"),
    [("stbif", None), pytest.param("graded", None, marks=pytest.mark.slow),
     pytest.param("graded", 1, marks=pytest.mark.slow)],
)  # fmt: skip
def test_max_pool_icarus(tmp_path, neuron, k) -> None:
    net = fixed_pool_net(neuron, k)
    run_both(tmp_path, "icarus", net, images(np.random.default_rng(2), net, 2))


@pytest.mark.sim
@pytest.mark.parametrize("neuron", ["graded", pytest.param("stbif", marks=pytest.mark.slow)])
def test_max_pool_verilator(tmp_path, neuron) -> None:
    net = fixed_pool_net(neuron)
    run_both(tmp_path, "verilator", net, images(np.random.default_rng(2), net, 2))


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_padded_max_pool(tmp_path, sim) -> None:
    """Padding (1, 1), negative tracers: the border windows' maxima over their inside elements."""
    net = fixed_pool_net(padding=(1, 1))
    run_both(tmp_path, sim, net, images(np.random.default_rng(4), net, 2))


@pytest.mark.sim
@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_max_pools_icarus(tmp_path_factory, data) -> None:
    """Random pools (kernel 1–3, stride 1–3, padding 0–k // 2, channels 1–16, ST-BIF and
    graded)."""
    net = data.draw(pool_nets(max_size=5))
    x = images(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), net, 1)
    ins, outs = pm.pool_streams(net, x, simulate(net, x), 1)
    assume(pm.timed(pm.pool_geometry(net, 1), ins, outs).offered[-1] < 20_000)
    run_both(tmp_path_factory.mktemp("pool"), "icarus", net, x)


@pytest.mark.sim
@pytest.mark.slow
def test_digits_cnn_pool_verilator(tmp_path, trained_cnn, digits_data) -> None:
    """The digits CNN's ``pool`` site (32×4×4 → 32×2×2) on 6 test images, per cycle."""
    from spikezip.ir.cnn import MaxPool2d
    from spikezip.sw.cnn.convert import to_convnet

    net = to_convnet(trained_cnn.model, name="digits-cnn")
    layer = next(k for k, op in enumerate(net.layers) if isinstance(op, MaxPool2d))
    x = digits_data.x_test[:6]
    case = max_pool_case(tmp_path / "case", net, x, layer)
    case.run("verilator", tmp_path / "build")
    case.run("verilator", tmp_path / "build", ready=0.7, valid=0.8)
