"""Tier 3: the layer core's generated Verilog under cocotb, on Icarus and Verilator.

Every configuration is generated, linted (``verilator --lint-only -Wall``), built in its own
temporary directory and run twice on the same build:

1. input always valid, output always ready: every output event and marker must equal the golden
   trace (spikes, busy flags, membranes and tracers from the probe) *and* leave in the cycle the
   model (:mod:`hw.model.cycle_model`) gives;
2. random idle input cycles and output stalls (seeded): the output must still be exact.

The golden traces come from :func:`sw.reference.simulate` in this process; the testbench
(``sim/tb/layer_core.py``) reads files only. Icarus builds instantly, so it runs the broad
matrix; Verilator (a C++ build per design) a representative subset. Both run the other pipeline
depths (:data:`hw.model.cycle_model.PIPELINES`) on a few layers besides the default 1, including
passes padded with idle slots (fewer words than the pipeline's same-word distance).

The default test run (``make test``) takes a subset of each matrix (:data:`FAST`): every network
kind, padded and one-word passes, more lanes than neurons, every pipeline depth (passes with idle
slots included), memory storage, and one Verilator build; the rest is ``slow`` (``make test-all``).
Every generated design is linted; ``make test`` lints a subset (:data:`LINT_FAST`).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.flow.verilog import LINT_WAIVERS
from spikezip.hw.model.cycle_model import PIPELINES
from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim.cases import layer_core_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, SimulationError, lint_verilog, run_cocotb
from tests.hw.layer_configs import network

# (network, layer, lanes, storage); words = ceil(n_out / lanes) in the comments
ICARUS = [
    ("analog", 0, 1, None),  # n_out 12: W 12, memory
    ("analog", 0, 2, "registers"),  # W 6 in registers (default would be memory)
    ("analog", 0, 3, None),  # W 4
    ("analog", 0, 4, "memory"),  # W 3 in a memory (default would be registers)
    ("analog", 0, 5, None),  # W 3, last word padded
    ("analog", 0, 7, None),  # 2^3 - 1
    ("analog", 0, 8, None),  # 2^3
    ("analog", 0, 9, None),  # 2^3 + 1
    ("analog", 0, 12, None),  # n_out: W 1
    ("analog", 0, 16, None),  # > n_out
    ("analog", 1, 1, None),  # spike layer, n_out 5, per-neuron Θ up to 4096
    ("analog", 1, 2, None),
    ("analog", 1, 3, None),
    ("analog", 1, 5, None),
    ("analog", 1, 8, None),
    ("saturating", 0, 1, None),  # Θ = 1, p = 3: saturating tracers
    ("saturating", 0, 4, None),
    ("saturating", 1, 3, None),  # symmetric [-2, 1]
    ("spike", 0, 2, None),  # spike-encoded input, odd and even Θ
    ("spike", 0, 7, None),
    ("spike", 1, 1, None),
    ("spike", 1, 4, None),
    ("bias_only", 0, 1, None),  # zero weight column, bias-only neuron, zero samples
    ("bias_only", 0, 4, None),
    ("large", 0, 3, None),  # Θ = 4095, 19-bit membranes
    ("large", 0, 16, None),
    # graded neurons: ±2^k out (8 and 16 levels, K = 1), ±2^k in (shifted weights)
    ("graded_analog", 0, 5, None),
    ("graded_analog", 1, 2, None),  # graded in and out, per-neuron Θ
    ("graded_spike", 1, 1, None),
    ("graded_large", 0, 4, None),
    ("graded_analog_k1", 1, 3, None),
]
VERILATOR = [
    ("analog", 0, 4, None),
    ("analog", 1, 2, "memory"),
    ("spike", 0, 16, None),
    ("large", 0, 3, "registers"),
    ("graded_analog", 1, 3, "memory"),
]
# (network, layer, lanes, storage, pipeline): the other pipeline depths (the lists above: 1)
ICARUS_PIPELINES = [
    ("analog", 0, 4, None, 0),  # W 3
    ("analog", 0, 12, None, 2),  # W 1: every word operation followed by an idle slot
    ("analog", 1, 2, "memory", 2),  # W 3 in a memory
    ("spike", 1, 1, None, 0),  # W 3, spike input
    ("spike", 0, 16, "registers", 2),  # W 1, spike input
    ("saturating", 0, 1, "memory", 2),  # W 6
    ("bias_only", 0, 4, None, 0),  # W 1
    ("analog", 1, 3, None, 3),  # W 2: a pass takes 3 cycles (same word 3 cycles apart)
    ("spike", 0, 8, "memory", 3),  # W 1: two idle slots after every word operation
    ("graded_analog", 1, 2, None, 2),
    ("graded_saturating", 1, 4, None, 3),  # W 1, graded in and out
    ("graded_spike", 0, 3, None, 0),
]
VERILATOR_PIPELINES = [
    ("analog", 0, 16, None, 2),  # W 1
    ("spike", 0, 3, "registers", 0),  # W 3
    ("large", 0, 4, "memory", 2),  # W 3
    ("analog", 0, 6, None, 3),  # W 2
]
#: (simulator, network, layer, lanes, storage, pipeline) run by ``make test``; every other case
#: above is ``slow``.
FAST = {
    ("icarus", "analog", 0, 16, None, 1),  # more lanes than neurons
    ("icarus", "analog", 1, 3, None, 1),  # per-neuron thresholds, last word padded
    ("icarus", "spike", 0, 7, None, 1),  # spike-encoded input
    ("icarus", "bias_only", 0, 1, None, 1),
    ("icarus", "large", 0, 16, None, 1),  # 19-bit membranes
    ("icarus", "analog", 0, 4, None, 0),
    ("icarus", "analog", 0, 12, None, 2),  # W 1: an idle slot after every word operation
    ("icarus", "saturating", 0, 1, "memory", 2),  # saturating tracers
    ("icarus", "spike", 0, 8, "memory", 3),  # two idle slots after every word operation
    # pipeline 1 on Verilator: tests/sim/test_network.py and test_network_model.py
    ("verilator", "spike", 0, 3, "registers", 0),
    ("icarus", "graded_analog", 1, 2, None, 1),  # graded in and out
    ("icarus", "graded_large", 0, 4, None, 1),  # 16 levels, Θ = 4095
    ("icarus", "graded_saturating", 1, 4, None, 3),
}  # (Verilator on a graded layer core: the slow cases and the graded network model)
#: the same for test_lint (Icarus lists): analog, spike and 19-bit membranes, every pipeline depth
LINT_FAST = {
    ("icarus", "analog", 0, 1, None, 1),
    ("icarus", "spike", 0, 7, None, 1),
    ("icarus", "large", 0, 3, None, 1),
    ("icarus", "analog", 0, 4, None, 0),
    ("icarus", "saturating", 0, 1, "memory", 2),
    ("icarus", "spike", 0, 8, "memory", 3),
}


def _cases(sim: str, cases, pipeline=None, *, fast=FAST, with_sim: bool = True) -> list:
    """``cases`` on ``sim`` (with ``pipeline`` appended if given), ``slow`` unless in ``fast``."""
    out = []
    for c in cases:
        case = (sim, *c) if pipeline is None else (sim, *c, pipeline)
        marks = [] if case in fast else [pytest.mark.slow]
        out.append(pytest.param(*(case if with_sim else case[1:]), marks=marks))
    return out


CASES = (
    _cases("icarus", ICARUS, 1)
    + _cases("verilator", VERILATOR, 1)
    + _cases("icarus", ICARUS_PIPELINES)
    + _cases("verilator", VERILATOR_PIPELINES)
)


def test_fast_cases_are_in_the_matrix() -> None:
    """Every FAST entry names a case of the lists (a typo would leave nothing fast in its place)."""
    assert FAST <= {tuple(p.values) for p in CASES}
    assert LINT_FAST <= {tuple(p.values) for p in CASES if p.values[0] == "icarus"}


HERE = Path(__file__).parent


def _run(case, sim: str, build: Path, **env) -> None:
    run_cocotb(
        sim=sim,
        sources=[case.verilog],
        toplevel=case.toplevel,
        test_module="spikezip.sim.tb.layer_core",
        build_dir=build,
        extra_env=case.env(**env),
        seed=env.get("seed_", 1),
    )


def _check_saved_trace(case) -> None:
    """The hardware trace the testbench saved equals the golden one (checked here as well)."""
    hw = Trace.load(case.hardware_trace)
    div = first_divergence(case.golden, hw)
    assert div is None, str(div)
    k = case.layer
    assert hw.step_cycles is not None and (hw.step_cycles[k] >= 0).any()


def run_both(
    tmp_path: Path, sim: str, net, x, layer: int, lanes: int, storage=None, pipeline: int = 1
) -> None:
    case = layer_core_case(
        tmp_path / "case", net, x, layer, lanes=lanes, storage=storage, pipeline=pipeline
    )
    assert case.timing.pipeline.depth == pipeline
    build = tmp_path / "build"
    _run(case, sim, build)  # exact, and cycle-exact against the model
    _check_saved_trace(case)
    _run(case, sim, build, ready=0.6, valid=0.7)  # exact under backpressure and idle input
    _check_saved_trace(case)


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "name", "layer", "lanes", "storage", "pipeline"), CASES)
def test_layer_core(
    tmp_path: Path, sim: str, name: str, layer: int, lanes: int, storage, pipeline: int
) -> None:
    net, x = network(name)
    run_both(tmp_path, sim, net, x, layer, lanes, storage, pipeline)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("name", "layer", "lanes", "storage", "pipeline"),
    _cases("icarus", ICARUS, 1, fast=LINT_FAST, with_sim=False)
    + _cases("icarus", ICARUS_PIPELINES, fast=LINT_FAST, with_sim=False),
)
def test_lint(tmp_path: Path, name: str, layer: int, lanes: int, storage, pipeline: int) -> None:
    """``verilator --lint-only -Wall`` is clean on every generated design (waivers documented)."""
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.verilog import generate

    net, _ = network(name)
    for probe in (False, True):
        core = LayerCore.for_network(
            net, layer, lanes=lanes, storage=storage, pipeline=pipeline, probe=probe
        )
        path = tmp_path / f"core{int(probe)}.v"
        path.write_text(generate(core, "layer_core"))
        lint_verilog([path], "layer_core", {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})


# -- failures reach pytest with the first divergence -------------------------------------------


@pytest.mark.sim
def test_spike_divergence_is_reported(tmp_path: Path) -> None:
    net, x = network("analog")
    case = layer_core_case(tmp_path / "case", net, x, 0, lanes=4)
    golden = case.golden
    spikes = [s.copy() for s in golden.spikes]
    b, t, n = np.argwhere(spikes[0] != 0)[5]
    spikes[0][b, t, n] = 0  # the "golden" model now misses one spike
    Trace(
        network_digest=golden.network_digest,
        spikes=tuple(spikes),
        busy=golden.busy,
        steps=golden.steps,
        capped=golden.capped,
        membranes=golden.membranes,
        tracers=golden.tracers,
        layer_names=golden.layer_names,
    ).save(case.directory / "golden.npz")
    with pytest.raises(SimulationError) as info:
        _run(case, "icarus", tmp_path / "build")
    first = str(info.value).splitlines()[0]
    assert "first divergence in spikes" in first
    assert f"sample {b}, layer 0 (layer0), neuron {n}, time step {t}, cycle " in first
    assert "expected +0, actual" in first


@pytest.mark.sim
def test_cycle_divergence_is_reported(tmp_path: Path) -> None:
    net, x = network("spike")
    case = layer_core_case(tmp_path / "case", net, x, 1, lanes=2)
    path = case.directory / "stimulus.npz"
    with np.load(path) as f:
        stim = {k: f[k] for k in f.files}
    j = 3
    stim["out_cycle"][j:] += 1  # the model is now one cycle late from beat 3 on
    np.savez(path, **stim)
    with pytest.raises(SimulationError) as info:
        _run(case, "icarus", tmp_path / "build")
    first = str(info.value).splitlines()[0]
    b, t, n = (int(stim[k][j]) for k in ("out_sample", "out_step", "out_neuron"))
    what = f"neuron {n}" if n >= 0 else "end-of-step marker"
    assert f"cycle model mismatch: sample {b}, layer 1, {what}, time step {t}: expected" in first


# -- random layers ------------------------------------------------------------------------------


def _random_case(data, max_width: int):
    from tests.sw.strategies import inputs_for, networks

    net = data.draw(networks(max_depth=2, max_width=max_width), label="network")
    if data.draw(st.booleans(), label="graded"):  # every layer graded (spikes ±2^k, random K)
        k = data.draw(st.none() | st.integers(0, 4), label="max_level")
        layers = tuple(replace(layer, neuron="graded", max_level=k) for layer in net.layers)
        net = replace(net, layers=layers)
    x = data.draw(inputs_for(net, max_batch=3, max_steps=4), label="inputs")
    layer = data.draw(st.integers(0, net.depth - 1), label="layer")
    n_out = net.layers[layer].n_out
    lanes = data.draw(st.integers(1, n_out + 2), label="lanes")
    pipeline = data.draw(st.sampled_from(PIPELINES), label="pipeline")
    return net, x, layer, lanes, pipeline


def _random_run(tmp_path_factory, data, sim: str, max_width: int) -> None:
    net, x, layer, lanes, pipeline = _random_case(data, max_width)
    from spikezip.sw.reference import simulate

    trace = simulate(net, x, record_state=True)
    if trace.capped.any():  # cannot happen with the default step bound; guards the strategy
        return
    tmp = tmp_path_factory.mktemp("random")
    run_both(tmp, sim, net, x, layer, lanes, pipeline=pipeline)


@pytest.mark.sim
@settings(
    max_examples=2,  # the first is the simplest layer; test_random_layers_icarus_many: 40
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_layers_icarus(tmp_path_factory, data) -> None:
    _random_run(tmp_path_factory, data, "icarus", max_width=12)


@pytest.mark.sim
@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_layers_icarus_many(tmp_path_factory, data) -> None:
    _random_run(tmp_path_factory, data, "icarus", max_width=24)


@pytest.mark.sim
@pytest.mark.slow
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_layers_verilator(tmp_path_factory, data) -> None:
    _random_run(tmp_path_factory, data, "verilator", max_width=32)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize(("layer", "lanes"), [(0, 16), (1, 10), (1, 1)])
def test_digits_network(tmp_path: Path, layer: int, lanes: int) -> None:
    """The trained digits network on 20 test images (Verilator: ~10k cycles per run)."""
    from spikezip.sw import convert, digits, qann

    net = convert.to_network(qann.load_or_train())
    run_both(tmp_path, "verilator", net, digits.load().x_test[:20], layer, lanes)
