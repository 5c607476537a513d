"""Amaranth-simulator driver for a core on the layer core's stream protocol (tier 2).

One function for every core with an ``i`` input stream and an ``o`` output stream of whole
payload words: the testbench offers the input words in order and collects the output beats with
their cycle numbers, optionally with random idle input cycles and output stalls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.sim import Simulator


def drive_streams(
    core,
    inputs: Sequence[tuple[object, Sequence[int]]],
    n_out: int,
    *,
    limit: int,
    seed: int | None = None,
    valid_p: float = 0.7,
    ready_p: float = 0.6,
) -> list[tuple[int, int]]:
    """Run ``core`` until ``n_out`` beats arrived on ``core.o`` (or ``limit`` cycles); return them
    as ``(cycle, payload)``. ``inputs``: ``(stream port, payload words)`` pairs, each offered in
    order. Cycle 0 is the first after reset. With ``seed``, each input is offered with probability
    ``valid_p`` per cycle and the output taken with ``ready_p``; without, inputs are always valid
    (while words remain) and the output always ready."""
    rng = np.random.default_rng(seed)
    got: list[tuple[int, int]] = []

    def chance(p: float) -> bool:
        return seed is None or p >= 1.0 or rng.random() < p

    async def bench(ctx):
        ptrs, cycle = [0] * len(inputs), 0
        while len(got) < n_out and cycle < limit:
            offered = []
            for j, (port, words) in enumerate(inputs):
                valid = ptrs[j] < len(words) and chance(valid_p)
                ctx.set(port.valid, valid)
                word = words[min(ptrs[j], len(words) - 1)] if len(words) else 0
                ctx.set(port.payload.as_value(), word)
                offered.append(valid)
            ready = chance(ready_p)
            ctx.set(core.o.ready, ready)
            for j, (port, _) in enumerate(inputs):
                ptrs[j] += bool(offered[j] and ctx.get(port.ready))
            if ready and ctx.get(core.o.valid):
                got.append((cycle, ctx.get(core.o.payload.as_value())))
            await ctx.tick()
            cycle += 1

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def drive_stream(core, words: Sequence[int], n_out: int, **kw) -> list[tuple[int, int]]:
    """:func:`drive_streams` with one input, ``core.i``."""
    return drive_streams(core, [(core.i, words)], n_out, **kw)


def drive_timed(
    core,
    inputs: Sequence[tuple[object, Sequence[int], Sequence[int]]],
    n_out: int,
    ready: Sequence[int],
    *,
    limit: int,
) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Run ``core`` with scheduled inputs and backpressure, as a cycle model's ``arrivals`` and
    ``ready`` describe them: ``inputs`` are ``(port, words, valid_from)`` triples, word ``k``
    offered from cycle ``valid_from[k]`` on (once the word before was taken); output beat ``k``
    taken from cycle ``ready[k]`` on (``o.ready`` low before). Returns the cycle each input word
    was taken, per input, and the output beats as ``(cycle, payload)``."""
    got: list[tuple[int, int]] = []
    taken: list[list[int]] = [[] for _ in inputs]

    async def bench(ctx):
        cycle = 0
        while len(got) < n_out and cycle < limit:
            offered = []
            for j, (port, words, valid_from) in enumerate(inputs):
                k = len(taken[j])
                valid = k < len(words) and cycle >= int(valid_from[k])
                ctx.set(port.valid, valid)
                ctx.set(port.payload.as_value(), words[min(k, len(words) - 1)] if words else 0)
                offered.append(valid)
            k = len(got)
            ok = k >= len(ready) or cycle >= int(ready[k])
            ctx.set(core.o.ready, ok)
            for j, (port, _, _) in enumerate(inputs):
                if offered[j] and ctx.get(port.ready):
                    taken[j].append(cycle)
            if ok and ctx.get(core.o.valid):
                got.append((cycle, ctx.get(core.o.payload.as_value())))
            await ctx.tick()
            cycle += 1

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken, got
