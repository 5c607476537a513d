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
    drivers = [(xd, dut.x__ready), (yd, dut.y__ready)]
    cycle = await kit.run_streams(edge, drivers, sink, dut.o__valid, s, name="product")
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles", len(s.out_words), cycle)
