"""cocotb testbench of a differential LayerNorm core (``hw.cores.layer_norm.LayerNormCore``).

Reads a :class:`sim.tb.files.LayerNormStimulus` (written by :func:`sim.cases.layer_norm_case`).
The input :class:`~sim.tb.kit.Driver` sends every inference's payloads back to back, the output
:class:`~sim.tb.kit.Sink` records the output beats (``valid``/``ready`` of the stimulus: pause
generators seeded by ``COCOTB_RANDOM_SEED``); one await per cycle. After the run the scoreboard
reports the first payload mismatch as (inference, site, index, time step, expected, actual) or,
with ``check_cycles``, the first beat that left in another cycle than the model's.
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import LayerNormStimulus


@cocotb.test()
async def matches_golden_drives(dut) -> None:
    """Every output drive and marker equals the golden list (and the cycle model, if enabled)."""
    await kit.single_stream(dut, LayerNormStimulus)
