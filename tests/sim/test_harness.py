"""The free-running harness (:mod:`sim.harness`) records exactly what the per-cycle loop does.

The same design and inputs run twice, once with the harness streaming and recording in the
simulator (the default without pauses) and once with the one-``await``-per-cycle testbench
(``per_cycle=True``): the hardware traces (spikes, busy flags, steps, every cycle stamp), the
first-input and done cycles, the counters read after each inference and at the end, and the
total cycle count must be identical — on an MLP, on a ViT, and when the cycle limit cuts a run
short. Also: the harness refuses a top without the ports it wraps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikezip.hw.model.events import EventFormat
from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim import simulate as simulate_module
from spikezip.sim.harness import harness_verilog
from spikezip.sim.simulate import HardwareRun, design, simulate
from spikezip.sw.reference import simulate as reference
from spikezip.sw.vit.reference import run as vit_reference
from tests.sim.test_network import random_inputs, random_network
from tests.sim.test_vit import images, tiny_vit

pytestmark = pytest.mark.sim


def assert_same_run(a: HardwareRun, b: HardwareRun) -> None:
    for f in dataclasses.fields(Trace):
        va, vb = getattr(a.trace, f.name), getattr(b.trace, f.name)
        if f.name == "source":
            continue
        if isinstance(va, tuple) and va and isinstance(va[0], np.ndarray):
            assert len(va) == len(vb), f.name
            for k, (x, y) in enumerate(zip(va, vb, strict=True)):
                assert np.array_equal(x, y), f"trace.{f.name}[{k}] differs"
        elif isinstance(va, np.ndarray):
            assert np.array_equal(va, vb), f"trace.{f.name} differs"
        else:
            assert va == vb, f"trace.{f.name}: {va!r} != {vb!r}"
    for name in ("first_input", "done", "counters", "final_counters"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.total_cycles == b.total_cycles


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_mlp_free_running_equals_per_cycle(sim, tmp_path) -> None:
    net = random_network(11, depth=3, max_width=12)
    x = random_inputs(net, 6, 3)
    d = design(net, tmp_path, lanes=4)
    free = simulate(net, x, sim=sim, design_dir=d)
    loop = simulate(net, x, sim=sim, design_dir=d, per_cycle=True)
    assert_same_run(free, loop)
    assert first_divergence(reference(net, x), free.trace) is None
    assert len(free.done) == 6 and free.counters.shape == (6, net.depth, 4)


@pytest.mark.slow  # make test: tests/sim/test_vit.py runs the tiny ViT through the harness
def test_vit_free_running_equals_per_cycle(tmp_path) -> None:
    vit = tiny_vit()
    x = images(vit, 3, seed=5)
    d = design(vit, tmp_path, lanes=2)
    free = simulate(vit, x, sim="icarus", design_dir=d)
    loop = simulate(vit, x, sim="icarus", design_dir=d, per_cycle=True)
    assert_same_run(free, loop)
    assert first_divergence(vit_reference(vit, x).trace, free.trace) is None


def test_cycle_limit_cuts_both_alike(tmp_path, monkeypatch) -> None:
    """A run stopped by the cycle limit: the same partial trace and facts from both loops."""
    net = random_network(4, depth=2, max_width=10)
    x = random_inputs(net, 4, 1)
    d = design(net, tmp_path, lanes=2)
    full = simulate(net, x, sim="icarus", design_dir=d)
    limit = int(full.done[1]) + 7  # two inferences done, the third cut mid-way
    monkeypatch.setattr(simulate_module, "_max_cycles", lambda *a, **k: limit)
    free = simulate(net, x, sim="icarus", design_dir=d)
    loop = simulate(net, x, sim="icarus", design_dir=d, per_cycle=True)
    assert_same_run(free, loop)
    assert free.total_cycles == limit and len(free.done) == 2
    assert free.trace.capped.tolist() == [False, False, True, True]


def test_harness_refuses_a_top_without_its_ports() -> None:
    fmt = EventFormat(index_width=3, value_width=2)
    ports = [("clk", "in", 1), ("rst", "in", 1), ("i__valid", "in", 1)]
    with pytest.raises(ValueError, match="has no port 'i__payload'"):
        harness_verilog("top", ports, [("beat0", 1, 6)], fmt)
