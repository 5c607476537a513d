"""Amaranth-simulator driver for a core on the layer core's stream protocol (tier 2).

One function for every core with an ``i`` input stream and an ``o`` output stream of whole
payload words: the testbench offers the input words in order and collects the output beats with
their cycle numbers, optionally with random idle input cycles and output stalls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.sim import Simulator


def drive_stream(
    core,
    words: Sequence[int],
    n_out: int,
    *,
    limit: int,
    seed: int | None = None,
    valid_p: float = 0.7,
    ready_p: float = 0.6,
) -> list[tuple[int, int]]:
    """Run ``core`` until ``n_out`` output beats arrived (or ``limit`` cycles); return them as
    ``(cycle, payload)``. Cycle 0 is the first after reset. With ``seed``, the input is offered
    with probability ``valid_p`` per cycle and the output taken with ``ready_p``; without, the
    input is always valid (while words remain) and the output always ready."""
    rng = np.random.default_rng(seed)
    got: list[tuple[int, int]] = []

    async def bench(ctx):
        ptr, cycle = 0, 0
        while len(got) < n_out and cycle < limit:
            valid = ptr < len(words) and (seed is None or rng.random() < valid_p)
            ready = seed is None or rng.random() < ready_p
            ctx.set(core.i.valid, valid)
            ctx.set(core.i.payload.as_value(), words[min(ptr, len(words) - 1)] if words else 0)
            ctx.set(core.o.ready, ready)
            ptr += bool(valid and ctx.get(core.i.ready))
            if ready and ctx.get(core.o.valid):
                got.append((cycle, ctx.get(core.o.payload.as_value())))
            await ctx.tick()
            cycle += 1

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got
