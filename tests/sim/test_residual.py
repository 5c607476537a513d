"""Tier 3: the residual-stream stage's generated Verilog under cocotb (Icarus and Verilator):
random stages and a random ViT's chained stages, every beat exact and in the model's cycle, then
again under random valid/ready pauses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from spikezip.hw.cores.residual import ResidualCore
from spikezip.hw.flow.verilog import LINT_WAIVERS
from spikezip.hw.model import residual_model as rm
from spikezip.sim.cases import residual_case
from spikezip.sim.runner import AMARANTH_LINT_WAIVERS, lint_verilog
from tests.hw.test_residual import residual_cases


def run_both(tmp: Path, sim: str, geo, pos, base, spikes) -> None:
    core = ResidualCore(geometry=geo, position=pos)
    p = None if pos is None or not pos.any() else pos
    outputs = rm.golden_outputs(geo, base, spikes, p)
    case = residual_case(tmp / "case", core, base, spikes, outputs)
    lint_verilog([case.verilog], case.toplevel, {**AMARANTH_LINT_WAIVERS, **LINT_WAIVERS})
    case.run(sim, tmp / "build")
    case.run(sim, tmp / "build", ready=0.6, valid=0.7)


@pytest.mark.sim
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(residual_cases())
def test_random_stages_icarus(tmp_path_factory, case) -> None:
    run_both(tmp_path_factory.mktemp("r"), "icarus", *case)


@pytest.mark.sim
@pytest.mark.slow
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(residual_cases())
def test_random_stage_verilator(tmp_path_factory, case) -> None:
    run_both(tmp_path_factory.mktemp("r"), "verilator", *case)


@pytest.mark.sim
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(residual_cases(graded=True))
def test_random_graded_stage_icarus(tmp_path_factory, case) -> None:
    """Graded spikes ``±2^k`` (K in 0–4) on ``b``."""
    run_both(tmp_path_factory.mktemp("r"), "icarus", *case)


def _streaming(case):
    geo, pos, base, spikes = case
    return dataclasses.replace(geo, stream=True), pos, base, spikes


@pytest.mark.sim
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(residual_cases())
def test_random_streaming_stages_icarus(tmp_path_factory, case) -> None:
    """A streaming stage (``geometry.stream``): every beat in the streaming model's cycle."""
    run_both(tmp_path_factory.mktemp("r"), "icarus", *_streaming(case))


@pytest.mark.sim
@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(residual_cases(graded=True))
def test_random_streaming_stage_verilator(tmp_path_factory, case) -> None:
    run_both(tmp_path_factory.mktemp("r"), "verilator", *_streaming(case))
