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
from spikezip.sim.tb.layer_norm import check_beats


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
    watchdog = kit.Watchdog("residual")
    o_valid, n_out = dut.o__valid, len(s.out_words)
    expected_end = int(s.out_cycle.max()) if n_out else 0
    limit = int((expected_end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    cycle = 0
    while len(sink.beats) < n_out and cycle < limit:
        for driver, ready in drivers:
            driver.step(ready.value)
        sink.step(o_valid.value, cycle)
        await edge
        cycle += 1
        if cycle % watchdog.every == 0:
            watchdog.check()
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles", n_out, cycle)
