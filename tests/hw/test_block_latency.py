# amaranth: UnusedElaboratable=no
"""Every block of the layer core does what its ``latency`` property says (tier 2, Amaranth's
simulator: one beat in, the cycle it comes out), and the core's timing adds those up (tier 1).

As Glasgow's ``Accumulator`` tests model the delay with the block's own ``stages``: the latency
is a property of each block, the cycle model's delays are sums of them, and these tests keep the
two from drifting apart.
"""

from dataclasses import replace

import pytest
from amaranth.hdl import signed
from amaranth.lib import data, fifo
from amaranth.sim import Simulator

from spikezip.hw.cores.accumulator import Accumulator, Products, WeightRead
from spikezip.hw.cores.emitter import OutputBuffer, Serialiser, SpikeEmitter, WordPacker
from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.layouts import Op, event_layout
from spikezip.hw.cores.neuron_array import NeuronArray, Operands, Update
from spikezip.hw.cores.sequencer import EventBuffer, Sequencer, StepCredits
from spikezip.hw.cores.stages import Delay
from spikezip.hw.model.cycle_model import FIFO_LATENCY, PIPELINES, LayerTiming, Pipeline
from tests.hw.layer_configs import network


def _first(dut, drive, seen, limit: int = 30) -> int | None:
    """Drive ``drive(ctx, cycle)`` every cycle; the first cycle ``seen(ctx)`` holds (sampled
    before the clock edge), or None."""
    out = []

    async def testbench(ctx):
        for cycle in range(limit):
            drive(ctx, cycle)
            if seen(ctx):
                out.append(cycle)
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)  # (a combinational block has no clock domain)
    sim.add_testbench(testbench)
    sim.run()
    return out[0] if out else None


def _pulse(port, at: int = 0):
    """Drive ``port`` to 1 in cycle ``at`` only."""
    return lambda ctx, cycle: ctx.set(port, int(cycle == at))


# -- the blocks, one at a time ----------------------------------------------------------------


@pytest.mark.parametrize("cycles", [0, 1, 2, 3])
def test_delay(cycles: int) -> None:
    d = Delay(8, cycles=cycles)
    assert d.latency == cycles
    assert _first(d, _pulse(d.i.valid), lambda ctx: ctx.get(d.o.valid)) == cycles


@pytest.mark.parametrize("bank_depth", [None, 2, 4])
def test_weight_read(bank_depth) -> None:
    rows = [[k, -k] for k in range(7)]
    wr = WeightRead(shape=data.ArrayLayout(signed(5), 2), rows=rows, bank_depth=bank_depth)

    def drive(ctx, cycle):
        ctx.set(wr.address, 5 if cycle == 0 else 1)

    def seen(ctx):
        return ctx.get(wr.data[0]) == 5

    assert _first(wr, drive, seen) == wr.latency == 2


@pytest.mark.parametrize("analog", [False, True])
@pytest.mark.parametrize("registered", [False, True])
def test_products(analog: bool, registered: bool) -> None:
    pr = Products(analog=analog, lanes=2, value_width=4, weight_width=5, registered=registered)
    value = 3 if analog else -1

    def drive(ctx, cycle):
        ctx.set(pr.value, value if cycle == 0 else 0)
        ctx.set(pr.weights[0], 5 if cycle == 0 else 1)
        ctx.set(pr.weights[1], -7 if cycle == 0 else 1)

    def seen(ctx):
        return [ctx.get(pr.products[k]) for k in range(2)] == [5 * value, -7 * value]

    assert _first(pr, drive, seen) == pr.latency == 2 * registered


def test_event_buffer() -> None:
    eb = EventBuffer(index_width=3, value_width=2)
    assert _first(eb, _pulse(eb.i.valid), lambda ctx: ctx.get(eb.o.valid)) == eb.latency == 1


def test_step_credits() -> None:
    """Two sweeps started in cycles 0 and 1: no room from cycle 1 + latency."""
    sc = StepCredits()
    drive = lambda ctx, cycle: ctx.set(sc.start, int(cycle < 2))  # noqa: E731
    assert _first(sc, drive, lambda ctx: not ctx.get(sc.room)) == 1 + sc.latency


def test_fifo_latency() -> None:
    """The library FIFO of the emitter's queue and of the network's links."""
    q = fifo.SyncFIFOBuffered(width=4, depth=5)
    assert _first(q, _pulse(q.w_en), lambda ctx: ctx.get(q.r_rdy)) == FIFO_LATENCY


def test_word_packer() -> None:
    t = LayerTiming(n_out=8, lanes=4)
    wp = WordPacker(timing=t, index_width=3)

    def drive(ctx, cycle):
        ctx.set(wp.i.valid, int(cycle == 0))
        ctx.set(wp.i.payload.spikes[2], 1 if cycle == 0 else 0)
        ctx.set(wp.i.payload.last, 1)

    assert _first(wp, drive, lambda ctx: ctx.get(wp.o.valid)) == wp.latency == 3
    assert _first(wp, drive, lambda ctx: ctx.get(wp.swept)) == wp.status_latency == 2


def test_serialiser_and_output_buffer() -> None:
    se = Serialiser(index_width=3, lanes=4)

    def drive(ctx, cycle):
        ctx.set(se.i.valid, int(cycle == 0))
        ctx.set(se.i.payload.marker, 1)
        ctx.set(se.i.payload.single, 1)
        ctx.set(se.o.ready, 1)

    assert _first(se, drive, lambda ctx: ctx.get(se.o.valid)) == se.latency == 1
    ob = OutputBuffer(layout=event_layout(3, 2))
    assert _first(ob, _pulse(ob.i.valid), lambda ctx: ctx.get(ob.o.valid)) == ob.latency == 1


def _array_blocks(pipeline: Pipeline):
    net, _ = network("analog")
    layer, widths = net.layers[0], net.widths[0]
    arr = NeuronArray(layer=layer, widths=widths, timing=LayerTiming(12, 5, pipeline))
    args = dict(layer=layer, widths=widths, timing=arr.timing, drive_width=widths.drive)
    ops = Operands(**args, word_layout=arr.word_layout)
    upd = Update(**args, word_layout=arr.word_layout, operands=ops.o.payload.shape())
    return arr, ops, upd


@pytest.mark.parametrize("depth", PIPELINES)
def test_operands_and_update(depth: int) -> None:
    arr, ops, upd = _array_blocks(Pipeline.preset(depth))
    assert _first(ops, _pulse(ops.i.valid), lambda ctx: ctx.get(ops.o.valid)) == ops.latency

    def fire(ctx, cycle):
        ctx.set(upd.i.valid, int(cycle == 0))
        ctx.set(upd.i.payload.op, Op.FIRE)

    assert _first(upd, fire, lambda ctx: ctx.get(upd.o.valid)) == upd.latency
    assert arr.latency == ops.latency + upd.latency  # NeuronArray: the sum of its stages


# -- the layer core's blocks and the timing's sums ----------------------------------------------


def _core_blocks(pipeline):
    net, _ = network("analog")
    core = LayerCore.for_network(net, 0, lanes=5, pipeline=pipeline)
    t, fmt = core.timing, core.input_format
    seq = Sequencer(
        timing=t, index_width=fmt.index_width, value_width=fmt.value_width, has_bias=True
    )
    syn = Accumulator(
        layer=core.layer,
        widths=core.widths,
        analog=True,
        timing=t,
        index_width=fmt.index_width,
        value_width=fmt.value_width,
    )
    arr = NeuronArray(layer=core.layer, widths=core.widths, timing=t, drive_width=syn.drive_width)
    return core, seq, syn, arr, SpikeEmitter(timing=t)


CUSTOM = [
    replace(Pipeline.preset(1), bound_flags=False, min_distance=2),
    replace(Pipeline.preset(3), registered_address=False, dsp_registers=False),
    replace(Pipeline.preset(2), registered_offsets=False, banked_weights=False),
    replace(Pipeline.preset(0), bound_flags=True, dsp_registers=True, min_distance=3),
]


@pytest.mark.parametrize("pipeline", [*PIPELINES, *CUSTOM])
def test_blocks_report_the_timing_terms(pipeline) -> None:
    """The timing's delays are the sums of the latencies the blocks report, and the blocks do
    what they report (one operation through the accumulator, one fired word through the
    emitter)."""
    core, seq, syn, arr, emitter = _core_blocks(pipeline)
    t = core.timing
    packer, serialiser = WordPacker(timing=t, index_width=4), Serialiser(index_width=4, lanes=5)
    output = OutputBuffer(layout=event_layout(4, 2))
    assert emitter.latency == packer.latency + FIFO_LATENCY + serialiser.latency + output.latency
    assert t.SPIKE_DELAY == syn.latency + arr.latency + emitter.latency
    assert t.RESULT_DELAY == syn.latency + arr.latency + packer.status_latency + seq.status_latency
    assert t.RESTART_DELAY == seq.status_latency
    assert _first(syn, _pulse(syn.i.valid), lambda ctx: ctx.get(syn.o.valid)) == syn.latency

    def fired(ctx, cycle):
        ctx.set(emitter.i.valid, int(cycle == 0))
        ctx.set(emitter.i.payload.spikes[1], -1 if cycle == 0 else 0)
        ctx.set(emitter.o.ready, 1)

    assert _first(emitter, fired, lambda ctx: ctx.get(emitter.o.valid)) == emitter.latency


def test_sequencer_latency() -> None:
    """A one-word core: INIT in cycle 0; an event accepted in cycle 3 is integrated in
    ``3 + latency``."""
    seq = Sequencer(timing=LayerTiming(1, 1), index_width=2, value_width=2, has_bias=False)

    def drive(ctx, cycle):
        ctx.set(seq.i.valid, int(cycle == 3))

    def seen(ctx):
        return ctx.get(seq.o.valid) and ctx.get(seq.o.payload.op) == Op.INTEGRATE

    assert _first(seq, drive, seen) == 3 + seq.latency == 4


# -- custom pipelines run the whole core like the presets ---------------------------------------


@pytest.mark.parametrize("pipeline", CUSTOM)
@pytest.mark.parametrize(("name", "k", "lanes"), [("analog", 0, 12), ("analog", 1, 2)])
def test_custom_pipeline_matches_golden_and_cycle_model(pipeline, name, k, lanes) -> None:
    from tests.hw.test_layer_core import run_core

    net, x = network(name)
    got, expected, cycles, core = run_core(net, x, k, lanes, pipeline=pipeline)
    assert core.pipeline is None and core.timing.pipeline == pipeline
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles
