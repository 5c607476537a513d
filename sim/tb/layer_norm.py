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
from spikezip.sim.tb.files import LayerNormStimulus, stimulus_path


def check_beats(s: LayerNormStimulus, got: list[tuple[int, int]], cycles: int) -> None:
    """The output payloads, then (``check_cycles``) their cycles, against the stimulus."""
    fmt = s.out_format
    for j, ((cycle, word), exp) in enumerate(zip(got, s.out_words.tolist(), strict=False)):
        index = int(s.out_index[j])
        what = f"index {index}" if index >= 0 else "end-of-step marker"
        where = f"sample {int(s.out_sample[j])}, {s.name}, {what}, time step {int(s.out_step[j])}"
        if word != exp:
            raise AssertionError(
                f"first divergence: {where}, cycle {cycle}: expected {fmt.unpack(exp)}, "
                f"actual {fmt.unpack(word)}"
            )
        if s.check_cycles and cycle != s.out_cycle[j]:
            raise AssertionError(
                f"cycle model mismatch: {where}: expected cycle {int(s.out_cycle[j])}, "
                f"actual {cycle}"
            )
    if len(got) != len(s.out_words):
        raise AssertionError(
            f"{s.name}: {len(got)} output beats, expected {len(s.out_words)} "
            f"(simulated {cycles} cycles)"
        )


@cocotb.test()
async def matches_golden_drives(dut) -> None:
    """Every output drive and marker equals the golden list (and the cycle model, if enabled)."""
    s = LayerNormStimulus.load(stimulus_path())
    dut._log.info("testbench %s", __file__)
    edge = await kit.start(dut, {"i__valid": 0, "i__payload": 0, "o__ready": 0})
    driver = kit.Driver(dut.i__valid, dut.i__payload, s.in_words, kit.pauses(s.valid))
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    watchdog = kit.Watchdog("layer_norm")
    i_ready, o_valid = dut.i__ready, dut.o__valid
    n_out = len(s.out_words)
    expected_end = int(s.out_cycle.max()) if n_out else 0
    limit = int((expected_end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    cycle = 0
    while len(sink.beats) < n_out and cycle < limit:
        driver.step(i_ready.value)
        sink.step(o_valid.value, cycle)
        await edge
        cycle += 1
        if cycle % watchdog.every == 0:
            watchdog.check()
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles", n_out, cycle)
