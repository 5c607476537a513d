"""cocotb testbench of the spike-product core (``hw.cores.product.SpikeProduct``).

Reads a :class:`sim.tb.files.ProductStimulus` (written by :func:`sim.cases.product_case`): two
:class:`~sim.tb.kit.Driver` send the X and Y payloads (every inference back to back), a
:class:`~sim.tb.kit.Sink` records the output beats (``valid``/``ready`` of the stimulus: pause
generators seeded by ``COCOTB_RANDOM_SEED``). One await per cycle; the comparison is at the end:
the first payload that differs (step, beat, expected, actual), then (``check_cycles``) the first
beat off the cycle model.
"""

from __future__ import annotations

import cocotb

from spikezip.sim.tb import kit
from spikezip.sim.tb.files import ProductStimulus, stimulus_path


def check_beats(s: ProductStimulus, got: list[tuple[int, int]], cycles: int) -> None:
    """The output payloads, then (``check_cycles``) their cycles, against the stimulus."""
    fmt, step = s.out_format, 0
    for j, ((cycle, word), exp) in enumerate(zip(got, s.out_words.tolist(), strict=False)):
        if word != exp:
            raise AssertionError(
                f"{s.product}: step {step}, output beat {j}: expected {fmt.unpack(exp)}, "
                f"actual {fmt.unpack(word)}"
            )
        if s.check_cycles and cycle != s.out_cycle[j]:
            raise AssertionError(
                f"cycle model mismatch: {s.product}, step {step}, beat {j} {fmt.unpack(exp)}: "
                f"expected cycle {int(s.out_cycle[j])}, actual {cycle}"
            )
        step += fmt.unpack(word)[0]
    if len(got) != len(s.out_words):
        raise AssertionError(
            f"{s.product}: {len(got)} output beats, expected {len(s.out_words)} "
            f"(simulated {cycles} cycles)"
        )


@cocotb.test()
async def matches_definition(dut) -> None:
    """Every output beat equals ``ΔO`` of the step (and the cycle model, when enabled)."""
    s = ProductStimulus.load(stimulus_path())
    idle = {"x__valid": 0, "x__payload": 0, "y__valid": 0, "y__payload": 0, "o__ready": 0}
    edge = await kit.start(dut, idle)
    xd = kit.Driver(dut.x__valid, dut.x__payload, s.x_words, kit.pauses(s.valid))
    yd = kit.Driver(dut.y__valid, dut.y__payload, s.y_words, kit.pauses(s.valid))
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    x_ready, y_ready, o_valid = dut.x__ready, dut.y__ready, dut.o__valid
    n_out = len(s.out_words)
    end = int(s.out_cycle.max()) if n_out else 0
    limit = int((end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    watchdog, cycle = kit.Watchdog("product"), 0
    while len(sink.beats) < n_out and cycle < limit:
        xd.step(x_ready.value)
        yd.step(y_ready.value)
        sink.step(o_valid.value, cycle)
        await edge
        cycle += 1
        if cycle % watchdog.every == 0:
            watchdog.check()
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles", n_out, cycle)
