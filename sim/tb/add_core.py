"""cocotb testbench of a residual merge core (``hw.cores.add.AddCore``, docs/cnn.md §12).

Reads an :class:`AddStimulus` (written by :func:`sim.cases.add_case`): one
:class:`~sim.tb.kit.Driver` per source (``i0``, ``i1``, …, each with its own pauses), the
:class:`~sim.tb.kit.Sink` on ``o``; one await per cycle; at the end every payload, then
(``check_cycles``) every cycle, the first mismatch named by sample, step and index.
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import AddStimulus, stimulus_path


@cocotb.test()
async def matches_reference(dut) -> None:
    """Every output event and marker equals the reference's (and the cycle model's cycle)."""
    s = AddStimulus.load(stimulus_path())
    sources = s.source_words()
    idle = {"o__ready": 0}
    for k in range(len(sources)):
        idle |= {f"i{k}__valid": 0, f"i{k}__payload": 0}
    edge = await kit.start(dut, idle)
    drivers = [
        (
            kit.Driver(
                getattr(dut, f"i{k}__valid"), getattr(dut, f"i{k}__payload"), w, kit.pauses(s.valid)
            ),
            getattr(dut, f"i{k}__ready"),
        )
        for k, w in enumerate(sources)
    ]
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    cycle = await kit.run_streams(edge, drivers, sink, dut.o__valid, s, name=s.name)
    kit.check_beats(s, sink.beats, cycle, s.name)
    dut._log.info("%d output beats in %d cycles", len(s.out_words), cycle)
