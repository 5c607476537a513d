"""cocotb testbench of the differential softmax core (``hw.cores.softmax.SoftmaxCore``).

Reads a :class:`SoftmaxStimulus` (written by :func:`sim.cases.softmax_case`): the input payloads
(every inference back to back), the expected output payloads with their sample, step and index
(``-1`` for markers) and the cycle model's cycle of each (:func:`hw.model.softmax_model.schedule`).
One loop, one await per cycle (:mod:`sim.tb.kit`); ``valid``/``ready`` pause generators seeded by
``COCOTB_RANDOM_SEED``. At the end: every payload, then (``check_cycles``) every cycle, with the
first mismatch named by sample, step and index.
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import SoftmaxStimulus


@cocotb.test()
async def matches_definition(dut) -> None:
    """Every output event and marker equals the expected one (and the cycle model's cycle)."""
    await kit.single_stream(dut, SoftmaxStimulus)
