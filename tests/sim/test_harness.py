"""The free-running harness (:mod:`sim.harness`) records exactly what the per-cycle loop does.

The same design and inputs run twice, once with the harness streaming and recording in the
simulator (the default without pauses) and once with the one-``await``-per-cycle testbench
(``per_cycle=True``): the hardware traces (spikes, busy flags, steps, every cycle stamp), the
first-input and done cycles, the counters read after each inference and at the end, and the
total cycle count must be identical — on an MLP, on a ViT, and when the cycle limit cuts a run
short. Also: the harness refuses a top without the ports it wraps; Verilator's thread count
(chosen by design size, checked against the CPUs) gives the same run as Icarus.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikezip.hw.model.events import EventFormat
from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim import harness as harness_module
from spikezip.sim import simulate as simulate_module
from spikezip.sim.harness import harness_verilog, verilator_args, verilator_threads
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


# -- Verilator threads (sim.harness.verilator_threads) ---------------------------------------------
def test_threads_default_by_design_size(tmp_path, monkeypatch) -> None:
    small, large = tmp_path / "small.v", tmp_path / "large.v"
    small.write_bytes(b"x" * (harness_module.THREADS_MIN_VERILOG - 1))
    large.write_bytes(b"x" * harness_module.THREADS_MIN_VERILOG)
    for cpus, expected in ((1, 1), (2, 2), (16, 2)):
        monkeypatch.setattr(harness_module, "usable_cpus", lambda c=cpus: c)
        assert verilator_threads(small) == 1
        assert verilator_threads(large) == expected
        assert verilator_threads(small, cpus) == cpus  # asked for: any count the CPUs allow
    assert verilator_args(1) == harness_module.VERILATOR_ARGS
    assert verilator_args(3)[-2:] == ("--threads", "3")
    assert "-DVL_LOCK_SPINS=100" in verilator_args(2)  # a waiting thread yields soon


@pytest.mark.parametrize("threads", [0, -1, 3, True, 2.0, "2"])
def test_threads_outside_the_cpus_are_refused(threads, tmp_path, monkeypatch) -> None:
    """More threads than CPUs would build a model that aborts at start: refused up front."""
    monkeypatch.setattr(harness_module, "usable_cpus", lambda: 2)
    with pytest.raises(ValueError, match=r"threads must be an integer from 1 to 2 \(the CPUs"):
        verilator_threads(tmp_path, threads)
    net = random_network(4, depth=2, max_width=6)
    with pytest.raises(ValueError, match="threads must be an integer from 1 to 2"):
        simulate(net, random_inputs(net, 1, 1), root=tmp_path, threads=threads)
    assert not any(tmp_path.iterdir())  # refused before anything was built
    with pytest.raises(ValueError, match="threads applies to Verilator only, not to icarus"):
        simulate(net, random_inputs(net, 1, 1), sim="icarus", root=tmp_path, threads=1)


@pytest.mark.skipif(harness_module.usable_cpus() < 2, reason="needs 2 CPUs for 2 threads")
def test_two_verilator_threads_run_the_same_cycles(tmp_path) -> None:
    """A model on two Verilator threads (the default for the ViT) == Icarus, cycle for cycle."""
    net = random_network(12, depth=3, max_width=12)
    x = random_inputs(net, 5, 2)
    d = design(net, tmp_path, lanes=3)
    two = simulate(net, x, sim="verilator", design_dir=d, threads=2)
    ref = simulate(net, x, sim="icarus", design_dir=d)
    assert (two.threads, ref.threads) == (2, 1)
    assert_same_run(two, ref)
    assert first_divergence(reference(net, x), two.trace) is None
