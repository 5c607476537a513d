"""cocotb testbench of a residual-stream stage (``hw.cores.residual.ResidualCore``).

Reads a :class:`sim.tb.files.ResidualStimulus` (written by :func:`sim.cases.residual_case`): one
:class:`~sim.tb.kit.Driver` per input (the spike input ``b`` and, with ``has_base``, the base
input ``a``), the :class:`~sim.tb.kit.Sink` on ``o``; one await per cycle; the scoreboard of
:mod:`sim.tb.layer_norm` (first payload mismatch, then the first beat off the model's cycle).
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import ResidualStimulus, stimulus_path


@cocotb.test()
async def matches_golden_increments(dut) -> None:
    """Every output increment and marker equals the golden list (and the cycle model)."""
    s = ResidualStimulus.load(stimulus_path())
    idle = {"b__valid": 0, "b__payload": 0, "o__ready": 0}
    if s.has_base:
        idle |= {"a__valid": 0, "a__payload": 0}
    edge = await kit.start(dut, idle)
    drivers = [
        (kit.Driver(dut.b__valid, dut.b__payload, s.in_words, kit.pauses(s.valid)), dut.b__ready)
    ]
    if s.has_base:
        a = kit.Driver(dut.a__valid, dut.a__payload, s.base_words, kit.pauses(s.valid))
        drivers.append((a, dut.a__ready))
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    cycle = await kit.run_streams(edge, drivers, sink, dut.o__valid, s, name=s.name)
    kit.check_beats(s, sink.beats, cycle, s.name)
    dut._log.info("%d output beats in %d cycles", len(s.out_words), cycle)
