"""cocotb testbench of the differential softmax core (``hw.cores.softmax.SoftmaxCore``).

Reads a :class:`SoftmaxStimulus` (written by :func:`sim.cases.softmax_case`): the input payloads
(every inference back to back), the expected output payloads with their sample, step and index
(``-1`` for markers) and the cycle model's cycle of each (:func:`hw.model.softmax_model.schedule`).
One loop, one await per cycle (:mod:`sim.tb.kit`); ``valid``/``ready`` pause generators seeded by
``COCOTB_RANDOM_SEED``. At the end: every payload, then (``check_cycles``) every cycle, with the
first mismatch named by sample, step and index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import cocotb
import numpy as np

from spikezip.hw.model.events import EventFormat
from spikezip.sim.tb import kit
from spikezip.sim.tb.files import Record, stimulus_path

__all__ = ["SoftmaxStimulus"]


def _format(v: Any) -> EventFormat:
    return EventFormat(**v)


@dataclass(frozen=True, kw_only=True)
class SoftmaxStimulus(Record):
    """Input of this testbench: payloads in, expected payloads out with their cycles."""

    KIND: ClassVar[str] = "spikezip-stimulus-softmax"
    DECODE: ClassVar[dict[str, Any]] = {"in_format": _format, "out_format": _format}

    in_format: EventFormat
    out_format: EventFormat
    in_words: np.ndarray
    out_words: np.ndarray
    out_sample: np.ndarray
    out_step: np.ndarray
    out_index: np.ndarray  #: ``-1`` for markers
    out_cycle: np.ndarray
    valid: float = 1.0
    ready: float = 1.0
    check_cycles: bool = False


def check_beats(s: SoftmaxStimulus, got: list[tuple[int, int]], cycles: int) -> None:
    """Payloads first (all of them), then cycles."""
    fmt = s.out_format
    for j, ((_, word), exp) in enumerate(zip(got, s.out_words.tolist(), strict=False)):
        if word != exp:
            raise AssertionError(
                f"sample {int(s.out_sample[j])}, step {int(s.out_step[j])}, output beat {j}: "
                f"expected {fmt.unpack(exp)}, actual {fmt.unpack(word)}"
            )
    if len(got) != len(s.out_words):
        raise AssertionError(
            f"{len(got)} output beats, expected {len(s.out_words)} (simulated {cycles} cycles)"
        )
    if s.check_cycles:
        for j, (cycle, _) in enumerate(got):
            if cycle != s.out_cycle[j]:
                idx = int(s.out_index[j])
                what = f"index {idx}" if idx >= 0 else "end-of-step marker"
                raise AssertionError(
                    f"cycle model mismatch: sample {int(s.out_sample[j])}, step "
                    f"{int(s.out_step[j])}, {what}: expected cycle {int(s.out_cycle[j])}, "
                    f"actual {cycle}"
                )


@cocotb.test()
async def matches_definition(dut) -> None:
    """Every output event and marker equals the expected one (and the cycle model's cycle)."""
    s = SoftmaxStimulus.load(stimulus_path())
    dut._log.info("testbench %s", __file__)
    edge = await kit.start(dut, {"i__valid": 0, "i__payload": 0, "o__ready": 0})
    driver = kit.Driver(dut.i__valid, dut.i__payload, s.in_words, kit.pauses(s.valid))
    sink = kit.Sink(dut.o__ready, kit.pauses(s.ready), dut.o__payload)
    i_ready, o_valid = dut.i__ready, dut.o__valid
    n_out = len(s.out_words)
    end = int(s.out_cycle.max()) if n_out else 0
    limit = int((end + 100) * 4 / (min(s.valid, s.ready) or 1.0)) + 1000
    watchdog, cycle = kit.Watchdog("softmax"), 0
    while len(sink.beats) < n_out and cycle < limit:
        driver.step(i_ready.value)
        sink.step(o_valid.value, cycle)
        await edge
        cycle += 1
        if cycle % watchdog.every == 0:
            watchdog.check()
    check_beats(s, sink.beats, cycle)
    dut._log.info("%d output beats in %d cycles", n_out, cycle)
