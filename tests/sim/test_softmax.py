"""Tier 3: the differential softmax core's generated Verilog under cocotb, on Icarus and
Verilator (``sim/tb/softmax.py``).

Each case runs twice on one build: input always valid and output always ready — every output
event and marker equal to the definition (``softmax_exact``) *and* in the cycle of the model
(:mod:`hw.model.softmax_model`); then with random idle input cycles and output stalls — values
only. Stimuli: random blocks (tie-heavy tables included) and the trained digits ViT's real
per-step score changes of both blocks for a few test images, whose recorded ``attn`` drives
(:func:`sw.vit.reference.run` with ``record_drives``) must agree with the definition too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikezip.hw.model import softmax_model as sm
from spikezip.sim.cases import softmax_case
from spikezip.sim.runner import SimulationError
from tests.hw.test_softmax import GOOD, random_inputs

SIMS = ["icarus", "verilator"]


def run_both(tmp_path: Path, sim: str, params, ins, outs=None) -> None:
    case = softmax_case(tmp_path / "case", params, ins, outs)
    build = tmp_path / "build"
    case.run(sim, build)  # exact and cycle-exact
    case.run(sim, build, ready=0.6, valid=0.7)  # exact under stalls


RANDOM = [
    (sm.SoftmaxParams(**GOOD), 3, 5, 0.3),
    # tie-heavy: tiny table and numerator
    (
        sm.SoftmaxParams(
            heads=2, tokens=4, table=(4, 2, 2, 1), numerator=6, score_bound=5, step_bound=3
        ),
        2,
        6,
        0.5,
    ),
    # wide: 16-bit table, N close to 2^16, gaps beyond the table
    (
        sm.SoftmaxParams(
            heads=1,
            tokens=5,
            table=(65535, 40000, 9000, 5),
            numerator=65535,
            score_bound=40,
            step_bound=20,
        ),
        2,
        4,
        0.6,
    ),
]


def _slow_on_verilator(cases, fast):
    """Every case on both simulators; Verilator (a 30–60 s build each) only for ``fast`` ones in
    the default test run, the rest marked ``slow`` (``make test-all``)."""
    return [
        pytest.param(sim, k, marks=[pytest.mark.slow] if (sim, k) not in fast else [])
        for k in cases
        for sim in SIMS
    ]


@pytest.mark.sim
@pytest.mark.parametrize(
    ("sim", "k"),
    # make test: the tie-heavy and the wide block on Icarus (the digits ViT's blocks below run the
    # usual sizes)
    _slow_on_verilator(range(len(RANDOM)), {("icarus", 1), ("icarus", 2)}),
)
def test_random_blocks(tmp_path: Path, sim: str, k: int) -> None:
    params, inferences, steps, density = RANDOM[k]
    ins = random_inputs(params, np.random.default_rng(k), inferences, steps, density)
    run_both(tmp_path, sim, params, ins)


@pytest.fixture(scope="module")
def digits_vit(trained_vit):
    """The trained digits ViT (``tests/conftest.py``) and 3 test images."""
    from spikezip.sw import digits
    from spikezip.sw.vit.convert import to_transformer

    return to_transformer(trained_vit.model, name="digits-vit"), digits.load().x_test[:3]


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "block"), _slow_on_verilator([0, 1], {("icarus", 0)}))
def test_digits_vit_scores(tmp_path: Path, sim: str, block: int, digits_vit) -> None:
    from spikezip.sw.vit.reference import run

    net, x = digits_vit
    result = run(net, x, record_drives=True)
    ins, outs = sm.golden_from_reference(net, block, result)
    assert sum(s.n_events for inf in ins for s in inf) > 100  # real traffic
    run_both(tmp_path, sim, sm.SoftmaxParams.of_block(net, block), ins, outs)


@pytest.mark.sim
def test_cycle_divergence_is_reported(tmp_path: Path) -> None:
    params = sm.SoftmaxParams(**GOOD)
    ins = random_inputs(params, np.random.default_rng(5), 1, 3, 0.3)
    case = softmax_case(tmp_path / "case", params, ins)
    path = case.directory / "stimulus.npz"
    from spikezip.sim.tb.files import SoftmaxStimulus

    stim = SoftmaxStimulus.load(path)
    cycles = stim.out_cycle.copy()
    cycles[3:] += 1
    from dataclasses import replace

    replace(stim, out_cycle=cycles).save(path)
    with pytest.raises(SimulationError) as info:
        case.run("icarus", tmp_path / "build")
    assert "cycle model mismatch" in str(info.value)
