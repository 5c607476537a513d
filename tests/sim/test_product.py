"""Tier 3: the spike-product core's generated Verilog under cocotb, on Icarus and Verilator.

Each case is generated, linted (``verilator --lint-only -Wall``), built in its own temporary
directory and run twice: inputs always valid and output always ready (every beat equal to the
definition of ``ΔO`` and in the model's cycle, :func:`hw.model.product_model.product_schedule`),
then with random idle input cycles and output stalls (every beat still equal). The stimulus is
random spike trains (tier 2 covers the random ViTs' reference traces).
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
    return geo, [random_trains(geo, rng, 4, 0.4) for _ in range(2)]


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
