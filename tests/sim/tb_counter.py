"""cocotb tests for the enable counter of ``test_runner.py`` (run in the simulator, not by pytest).

The design: ``count`` (``COUNTER_WIDTH`` bits, from the environment) increments on every rising
edge of ``clk`` where ``en`` is high, wraps around, and clears on a synchronous, active-high
``rst``.

Speed habits: one ``await`` per cycle on a ``FallingEdge`` trigger built once; drive ``en`` and
read ``count`` as whole Python ints on that edge (so reads see post-edge values on both
simulators); compare against the model once, at the end, and report the first divergence.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

WIDTH = int(os.environ.get("COUNTER_WIDTH", "8"))


async def _run(dut, cycles: int, *, model_error_at: int | None = None) -> None:
    """Drive a random enable pattern and check ``count`` each cycle against the model.

    ``model_error_at`` makes the model wrong (one count too high) from that cycle on, to show how
    a failure is reported.
    """
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    falling = FallingEdge(dut.clk)

    dut.en.value = 0
    dut.rst.value = 1
    await falling
    await falling
    dut.rst.value = 0

    enables = [random.getrandbits(1) for _ in range(cycles)]
    actual = []
    for en in enables:
        dut.en.value = en
        await falling
        actual.append(int(dut.count.value))

    expected, count = [], 0
    for cycle, en in enumerate(enables):
        count = (count + en) % (1 << WIDTH)
        wrong = model_error_at is not None and cycle >= model_error_at
        expected.append((count + wrong) % (1 << WIDTH))

    for cycle, (exp, act) in enumerate(zip(expected, actual, strict=True)):
        if exp != act:
            raise AssertionError(
                f"first divergence: counter, cycle {cycle}, expected {exp}, actual {act}"
            )


@cocotb.test()
async def counts_enabled_cycles(dut) -> None:
    """``count`` follows a random enable pattern long enough to wrap around."""
    await _run(dut, cycles=3 << WIDTH)


@cocotb.test(skip=True)  # runs only when selected by name (testcase= / test_filter=)
async def fails_on_purpose(dut) -> None:
    """A wrong model: checks that the runner reports the first divergence to pytest."""
    await _run(dut, cycles=100, model_error_at=57)
