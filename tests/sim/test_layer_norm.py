"""Tier 3: the differential LayerNorm core's generated Verilog under cocotb, on Icarus and
Verilator.

Each case is generated, linted (``verilator --lint-only -Wall``), built once and run twice:

1. input always valid, output always ready: every drive and marker equals the golden list *and*
   leaves in the cycle :func:`hw.model.layer_norm_model.schedule` gives;
2. random idle input cycles and output stalls (seeded): every value is still exact.

Stimulus: random sites and streams (extremes and exact ties included), and the trained digits
ViT's real per-step stream increments, checked against the reference's recorded drives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layer_norm import LayerNormCore
from spikezip.hw.flow.verilog import LINT_WAIVERS, generate
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.sim.cases import layer_norm_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, SimulationError, lint_verilog
from tests.hw.layer_norm_cases import norm_site, random_cases, random_inference, tie_cases

SIMS = ["icarus", "verilator"]


def run_both(tmp_path: Path, sim: str, core, inputs, outputs=None, name="layer_norm") -> None:
    case = layer_norm_case(tmp_path / "case", core, inputs, outputs, name=name)
    lint_verilog([case.verilog], case.toplevel, {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
    build = tmp_path / "build"
    case.run(sim, build)  # exact, and cycle-exact against the model
    case.run(sim, build, ready=0.6, valid=0.7)  # exact under backpressure and idle input


def _mixed_case(seed: int, units: int | None = None):
    """Three inferences on 4 tokens of 6 channels: random streams with the extremes ±bound."""
    rng = np.random.default_rng(seed)
    norm = norm_site(rng.integers(-1024, 1025, 6), rng.integers(-2000, 2001, 6), 100)
    inputs = [random_inference(rng, 4, 6, 5000, int(rng.integers(1, 5))) for _ in range(3)]
    return LayerNormCore(norm=norm, tokens=4, stream_bound=5000, units=units), inputs


@pytest.mark.sim
@pytest.mark.parametrize(
    ("sim", "units"),
    [
        ("icarus", None),  # the default: 6 units, one element per cycle
        ("icarus", 4),
        pytest.param("icarus", 1, marks=pytest.mark.slow),
        pytest.param("verilator", None, marks=pytest.mark.slow),
    ],
)
def test_random_site(tmp_path: Path, sim: str, units: int | None) -> None:
    core, inputs = _mixed_case(7 if sim == "icarus" else 8, units)
    run_both(tmp_path, sim, core, inputs)


@pytest.mark.sim
@pytest.mark.slow  # make test: test_random_site, and random and tie sites in tier 2 (tests/hw)
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(random_cases(max_tokens=3, max_dim=5), tie_cases(max_tokens=2), st.sampled_from([1, 2]))
def test_random_and_tie_sites_icarus(tmp_path_factory, case, ties, units) -> None:
    """Random and tie sites with one unit (the serial schedule) or two."""
    for j, (norm, tokens, bound, inputs) in enumerate((case, ties)):
        core = LayerNormCore(norm=norm, tokens=tokens, stream_bound=bound, units=units)
        run_both(tmp_path_factory.mktemp(f"c{j}"), "icarus", core, inputs)


@pytest.mark.sim
def test_cycle_divergence_is_reported(tmp_path: Path) -> None:
    """A model one cycle late from beat 2 on is caught, with the beat named."""
    core, inputs = _mixed_case(3)
    case = layer_norm_case(tmp_path / "case", core, inputs)
    path = case.directory / "stimulus.npz"
    with np.load(path) as f:
        stim = {k: f[k] for k in f.files}
    stim["out_cycle"][2:] += 1
    np.savez(path, **stim)
    with pytest.raises(SimulationError) as info:
        case.run("icarus", tmp_path / "build")
    assert "cycle model mismatch: sample 0, layer_norm, index" in str(info.value)


@pytest.mark.sim
def test_value_divergence_is_reported(tmp_path: Path) -> None:
    """A golden list with one drive off by one is caught as the first divergence."""
    core, inputs = _mixed_case(4)
    norm = core.norm
    outputs = lnm.golden_outputs(norm.gain, norm.bias, norm.eps, 4, inputs)
    first = outputs[0][0]
    bad = lnm.Step(first.indices, first.values + (np.arange(first.n_events) == 1), first.busy)
    outputs[0][0] = bad
    case = layer_norm_case(tmp_path / "case", core, inputs, outputs)
    with pytest.raises(SimulationError) as info:
        case.run("icarus", tmp_path / "build")
    assert "first divergence: sample 0, layer_norm, index" in str(info.value)


# -- the trained digits ViT --------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_vit(trained_vit):
    """The trained digits ViT (``tests/conftest.py``) and the reference's recorded steps for
    three test images."""
    from spikezip.sw import digits
    from spikezip.sw.vit.convert import to_transformer
    from spikezip.sw.vit.reference import run

    net = to_transformer(trained_vit.model, name="digits-vit")
    x = digits.load().x_test[:3]
    return net, run(net, x, record_drives=True)


def _site(net, result, name: str, samples: int, **knobs):
    j = net.site_names.index(name)
    ins, outs = lnm.reference_steps(result.steps, result.trace.busy, j, name)
    return LayerNormCore.for_site(net, name, **knobs), ins[:samples], outs[:samples]


@pytest.mark.sim
@pytest.mark.parametrize(
    ("sim", "name", "samples", "knobs"),
    [
        # streaming, 4 rounding units (as `--layer-norm-units 4` builds it): 40 % less build time
        # than the full-rate core, which the slow cases below run
        ("verilator", "norm", 1, {"units": 4, "stream": True}),
        pytest.param("verilator", "norm", 1, {}, marks=pytest.mark.slow),
        pytest.param("verilator", "blocks.0.norm1", 2, {"stream": True}, marks=pytest.mark.slow),
        pytest.param("icarus", "blocks.1.norm2", 1, {}, marks=pytest.mark.slow),  # ~80 s
    ],
)
def test_digits_vit(
    tmp_path: Path, digits_vit, sim: str, name: str, samples: int, knobs: dict
) -> None:
    """Real per-step stream increments; the expected drives are the reference's recorded ones."""
    net, result = digits_vit
    core, ins, outs = _site(net, result, name, samples, **knobs)
    run_both(tmp_path, sim, core, ins, outs, name=name)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("name", ["blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "norm"])
def test_digits_vit_every_site(tmp_path: Path, digits_vit, name: str) -> None:
    net, result = digits_vit
    core, ins, outs = _site(net, result, name, 3)
    run_both(tmp_path, "verilator", core, ins, outs, name=name)


@pytest.mark.sim
def test_lint_of_the_digits_sites(tmp_path: Path, digits_vit) -> None:
    net, _ = digits_vit
    path = tmp_path / "ln.v"
    path.write_text(generate(LayerNormCore.for_site(net, "norm"), "layer_norm"))
    lint_verilog([path], "layer_norm", {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
