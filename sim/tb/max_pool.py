"""cocotb testbench of a max-pool core (``hw.cores.max_pool.MaxPoolCore``, docs/cnn.md §12).

Reads a :class:`MaxPoolStimulus` (written by :func:`sim.cases.max_pool_case`): the input
payloads (the source site's spikes in HWC order, every inference back to back), the expected
output payloads (the reference's spikes in HWC order and the busy flags) and the exact cycle
model's cycle of each. One loop, one await per cycle (:mod:`sim.tb.kit`); ``valid``/``ready``
pause generators seeded by ``COCOTB_RANDOM_SEED``. At the end: every payload, then
(``check_cycles``) every cycle, the first mismatch named by sample, step and index.
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import MaxPoolStimulus


@cocotb.test()
async def matches_reference(dut) -> None:
    """Every output event and marker equals the reference's (and the cycle model's cycle)."""
    await kit.single_stream(dut, MaxPoolStimulus)
