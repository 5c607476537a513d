"""Tier 3: the spike-product core's generated Verilog under cocotb, on Icarus and Verilator.

Each case is generated, linted (``verilator --lint-only -Wall``), built in its own temporary
directory and run twice: inputs always valid and output always ready (every beat equal to the
definition of ``ΔO`` and in the model's cycle, :func:`hw.model.product_model.product_schedule`),
then with random idle input cycles and output stalls (every beat still equal). The stimulus is
random spike trains whose inputs go idle at different steps, three inferences back to back (tier
2 covers the random ViTs' reference traces).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from spikezip.sim.cases import product_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, lint_verilog
from tests.hw.test_product import geometry, random_trains


def _random_case(kind: str, lanes: int):
    geo = geometry(kind=kind, tokens=5, heads=2, head_dim=3, lanes=lanes, x_bounds=(-3, 4))
    if kind == "context":
        geo = geometry(kind=kind, tokens=5, heads=2, head_dim=3, lanes=lanes, x_bounds=(0, 7))
    rng = random.Random(lanes)
    # X idle after Y, then X idle from step 0 on (its beats of the next inference waiting)
    return geo, [random_trains(geo, rng, steps, 0.4) for steps in ((4, 2), (1, 3), (2, 2))]


#: Yosys writes a ``$pmux`` (here: a lane chosen by a narrow index, ``Array(...)[lane]``) as a
#: ``casez`` with ``parallel_case`` over its one-hot select; the arms never match together.
WAIVERS = {
    **AMARANTH_LINT_WAIVERS,
    "CASEOVERLAP": "Yosys $pmux with a one-hot select (parallel_case): arms are exclusive",
}

SLOW = pytest.mark.slow
CASES = [
    pytest.param("icarus", "scores", 1, marks=SLOW),  # W 5
    ("icarus", "scores", 3),  # W 2, last word padded
    ("icarus", "context", 2),  # Wn 3, Wm 2
    pytest.param("icarus", "context", 5, marks=SLOW),  # Wn 1, Wm 1
    pytest.param("verilator", "scores", 5, marks=SLOW),  # (a C++ build each: ~45 s)
    ("verilator", "context", 3),
]


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "kind", "lanes"), CASES)
def test_product(tmp_path: Path, sim: str, kind: str, lanes: int) -> None:
    geo, infs = _random_case(kind, lanes)
    case = product_case(tmp_path / "case", geo, infs)
    if sim == "verilator":
        lint_verilog([case.verilog], case.toplevel, WAIVERS)
    build = tmp_path / "build"
    for env in ({}, {"ready": 0.6, "valid": 0.7}):
        case.run(sim, build, **env)


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "kind"), [("icarus", "scores"), ("verilator", "context")])
def test_graded_product(tmp_path: Path, sim: str, kind: str) -> None:
    """Graded spikes ``±2^k`` on both inputs (K = 3 on X, 2 on Y): the banks' shifts in the
    generated Verilog (lint-clean), every beat equal to the definition in the model's cycle,
    then under stalls."""
    x = (0, 12) if kind == "context" else (-9, 8)
    geo = geometry(kind=kind, tokens=4, heads=2, head_dim=3, lanes=3, x_bounds=x,
                   y_bounds=(-5, 6), x_spike_max=8, y_spike_max=4)  # fmt: skip
    rng = random.Random(7)
    infs = [random_trains(geo, rng, steps, 0.5) for steps in ((4, 3), (1, 3), (3, 3))]
    assert any(abs(v) > 2 for xs, _ in infs for e in xs for _, v in e)
    case = product_case(tmp_path / "case", geo, infs)
    if sim == "verilator":
        lint_verilog([case.verilog], case.toplevel, WAIVERS)
    build = tmp_path / "build"
    for env in ({}, {"ready": 0.6, "valid": 0.7}):
        case.run(sim, build, **env)


# -- the trained digits ViT's own traces -------------------------------------------------------
@pytest.mark.sim
@pytest.mark.parametrize(
    "kind", ["scores", pytest.param("context", marks=SLOW)]
)  # context: ~10k cycles per image more on Icarus
def test_digits_vit_block0(tmp_path: Path, trained_vit, kind: str) -> None:
    """The trained digits ViT, block 0, one test image at the lanes the benchmark recommends
    (P = 17): the reference's recorded score changes (or context drives / w) equal the definition
    of ``ΔO`` on the sites' real spikes, and the RTL emits exactly those, in the model's cycles,
    on Icarus (then again under stalls)."""
    import numpy as np

    from spikezip.hw.model.product_model import reference_product
    from spikezip.sw import digits
    from spikezip.sw.vit.convert import to_transformer
    from tests.hw.test_product import vit_inferences

    vit = to_transformer(trained_vit.model, name="digits-vit")
    x = digits.load().x_test[:1]
    geo, infs, recorded = vit_inferences(vit, x, 0, kind, lanes=17)
    ((xs, ys),) = infs
    assert sum(len(e) for e in xs) + sum(len(e) for e in ys) > 100  # real traffic
    for got, want in zip(reference_product(geo, xs, ys), recorded[0], strict=True):
        np.testing.assert_array_equal(got, want)
    case = product_case(tmp_path / "case", geo, infs)
    build = tmp_path / "build"
    for env in ({}, {"ready": 0.6, "valid": 0.7}):
        case.run("icarus", build, **env)


@pytest.mark.sim
@pytest.mark.parametrize(("kind", "lanes"), [("scores", 2), ("context", 2), ("scores", 4)])
def test_lint_at_power_of_two_lanes(tmp_path: Path, kind: str, lanes: int) -> None:
    """Verilator's lint at lanes 2 and 4, where the last bank's lane rotation once compared a
    1- or 2-bit value with its maximum (CMPCONST)."""
    geo, infs = _random_case(kind, lanes)
    case = product_case(tmp_path / "case", geo, infs)
    lint_verilog([case.verilog], case.toplevel, WAIVERS)
