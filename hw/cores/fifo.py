"""A stream FIFO whose output is the block RAM's own output register.

``amaranth.lib.fifo.SyncFIFOBuffered`` hands the memory's read data straight to its reader. On
the ECP5 an unregistered ``DP16KD`` read has a 5.8 ns clock-to-output (:mod:`hw.flow.ecp5`), so a
deep inter-layer FIFO (``spikezip report`` sizes them to 512 entries: block RAM) cannot feed
anything at 200 MHz: the whole digits network placed at 113 MHz with
``fifo0.storage → events1`` its critical path. :class:`RegisteredFIFO` reads into a register
with no reset whose only enable is the pipeline's, which :func:`hw.flow.ecp5.pack_registers`
moves into the block RAM (``REGMODE = OUTREG``): the reader then sees a register.

Architecture::

    w ─▶ memory (depth) ─▶ read address register (inside the RAM) ─▶ output register ─┬─▶ r
         level, produce, consume                     v1                    v2         │
                                                                   skid register ◀────┘

``advance = ~held | ~v2``: the output register takes the word read (``v2 = v1``) unless the skid
register holds the head and it the next; ``fetch = ~v1 | advance``: the memory's read port takes the
next address when the memory holds an entry (``v1``). When the head waits (``v2`` and not
``r.ready``) it moves to the skid register, which ``r`` then shows; so ``r.ready`` reaches only the
skid's registers and the read pipeline runs on registers (a reader's ``ready`` comes out of its
sequencer's logic: into the pointers and the level it was the whole network's critical path).
Nothing else reads the memory's data, and the output register's enable is ``advance`` alone, as the
packing needs.

Timing (the exact network model's :data:`hw.model.cycle_model.REGISTERED_FIFO_LATENCY`): an
entry written in cycle ``c`` into an empty FIFO is valid on ``r`` in cycle ``c + 3``; entries
behind it follow one per cycle (after a stall too: both stages hold theirs), so entry ``n`` is
valid from ``max(written_n + 3, taken_{n-1} + 1)`` on. ``w.ready`` is ``level < depth``, from a
register of its own (``full``): the memory is full with ``depth`` entries not yet read (the FIFO
then holds up to ``depth + 3``). Any ``depth ≥ 1`` works; the exact network model's view of all
this (when a beat is fetched, when the writer has room, how deep it must be never to refuse a
beat) is :data:`hw.model.fifo_model.REGISTERED_FIFO`, checked against this class in
tests/hw/test_fifo.py.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.model.cycle_model import REGISTERED_FIFO_LATENCY

__all__ = ["FlagFIFO", "RegisteredFIFO"]


def _write_side(m: Module, w, wp, full, produce, do_write) -> None:
    """A FIFO's write side: ``w.ready`` while not ``full``, the beat into ``produce``."""
    m.d.comb += [
        w.ready.eq(~full),
        wp.addr.eq(produce),
        wp.data.eq(w.payload),
        wp.en.eq(do_write),
    ]


class RegisteredFIFO(wiring.Component):
    """A FIFO of ``depth`` memory entries with a registered, block-RAM-packable output (see the
    module docstring). Latency 3, one entry per cycle.

    Parameters
    ----------
    width : int
        Bits per entry (≥ 1).
    depth : int
        Entries of the memory (≥ 1).
    registered_empty : bool
        ``level ≠ 0`` as a register of its own (``stored``, like ``full``), so that no compare
        of the level lies in front of the read pointer, the level and the read register's
        enable (the network's presets 2 and 3: ``Pipeline.buffered_input``). The same FIFO
        cycle for cycle.

    Members
    -------
    w_stream : In(stream.Signature(width))
    r_stream : Out(stream.Signature(width))
    """

    #: cycles from a write into an empty FIFO to its entry valid on ``r_stream``
    LATENCY = REGISTERED_FIFO_LATENCY

    def __new__(cls, *, width: int, depth: int, registered_empty: bool = False) -> RegisteredFIFO:
        # checked before the object exists: Amaranth warns about a component created but never
        # elaborated, which a rejected one would otherwise be
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, *, width: int, depth: int, registered_empty: bool = False) -> None:
        self._width, self._depth = width, depth
        self._registered_empty = bool(registered_empty)
        super().__init__(
            {"w_stream": In(stream.Signature(width)), "r_stream": Out(stream.Signature(width))}
        )

    @property
    def width(self) -> int:
        return self._width

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        w, r, depth = self.w_stream, self.r_stream, self._depth
        # a read never meets the write of its cycle (it reads only entries counted in ``level``,
        # written in an earlier cycle; a full memory takes no write): ``_nocollide``
        # (hw.flow.synth.NOCOLLIDE), so Yosys puts no read-first logic after the block RAM
        mem = memory.Memory(shape=self._width, depth=depth, init=[])
        m.submodules.storage_nocollide = mem
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        produce = Signal(range(depth), name="produce")
        consume = Signal(range(depth), name="consume")
        level = Signal(range(depth + 1), name="level")
        full = Signal(name="full")  # level == depth, as a register (w.ready feeds counters)
        v1, v2 = Signal(name="read_valid"), Signal(name="out_valid")
        word = Signal(self._width, name="out_word", reset_less=True)  # the RAM's OUTREG
        held = Signal(name="skid_full")  # the skid register holds the head
        skid = Signal(self._width, name="skid_word", reset_less=True)

        # ``r.ready`` reaches only the skid's two registers: the read pipeline moves on its own
        # registers (the reader's ``ready`` comes out of its sequencer's logic)
        # the output register takes the read word unless both it and the skid hold one (its own
        # goes to the reader or to the skid)
        advance = ~held | ~v2
        fetch = ~v1 | advance  # the read register takes the next address
        do_write = w.valid & w.ready
        if self._registered_empty:
            stored = Signal(name="stored")  # level != 0, as a register
            do_read = fetch & stored
            with m.If(do_write & ~do_read):
                m.d.sync += stored.eq(1)
            with m.Elif(do_read & ~do_write):
                m.d.sync += stored.eq(level != 1)
        else:
            stored = level != 0
            do_read = fetch & stored
        _write_side(m, w, wp, full, produce, do_write)
        m.d.comb += [
            rp.addr.eq(consume),
            rp.en.eq(fetch),
            r.valid.eq(held | v2),
            r.payload.eq(Mux(held, skid, word)),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(_next(produce, depth))
        with m.If(do_read):
            m.d.sync += consume.eq(_next(consume, depth))
        with m.If(do_write & ~do_read):
            m.d.sync += [level.eq(level + 1), full.eq(level == depth - 1)]
        with m.Elif(do_read & ~do_write):
            m.d.sync += [level.eq(level - 1), full.eq(0)]
        with m.If(fetch):
            m.d.sync += v1.eq(stored)
        with m.If(advance):
            m.d.sync += [v2.eq(v1), word.eq(rp.data)]
        with m.If(held):
            with m.If(r.ready):
                m.d.sync += held.eq(0)
        with m.Elif(v2 & ~r.ready):  # the head waits: it moves to the skid register
            m.d.sync += [held.eq(1), skid.eq(word)]
        return m


def _next(pointer: Signal, depth: int):
    """``pointer + 1`` modulo ``depth`` (the increment's low bits for a power of two)."""
    if depth & (depth - 1) == 0:
        return (pointer + 1)[: len(pointer)]
    return Mux(pointer == depth - 1, 0, pointer + 1)


class FlagFIFO(wiring.Component):
    """``amaranth.lib.fifo.SyncFIFOBuffered`` cycle for cycle (an inner memory of ``depth − 1``
    entries, then its read register, which the reader sees: latency 2,
    :data:`hw.model.cycle_model.FIFO_LATENCY`), with the inner memory's "not empty" and "full"
    as registers of their own instead of a level counter compared with 0 and ``depth − 1``.

    The reader's ``ready`` then reaches only the read pointer, the read register's enable, the
    output's valid and the two flags' selects: no compare or carry chain behind it (the emitter's
    queue, whose reader's ``ready`` comes out of the serialiser's logic:
    :attr:`hw.model.cycle_model.Pipeline.registered_emitter`).

    Parameters
    ----------
    width : int
        Bits per entry (≥ 1).
    depth : int
        Entries held at most, the read register included (≥ 2).

    Members
    -------
    w_stream : In(stream.Signature(width))
        ``ready``: the inner memory is not full (a register).
    r_stream : Out(stream.Signature(width))
        From the read register.
    """

    def __new__(cls, *, width: int, depth: int) -> FlagFIFO:
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
            raise ValueError(f"depth must be an integer ≥ 2, not {depth!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, *, width: int, depth: int) -> None:
        self._width, self._depth = width, depth
        super().__init__(
            {"w_stream": In(stream.Signature(width)), "r_stream": Out(stream.Signature(width))}
        )

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        w, r, inner = self.w_stream, self.r_stream, self._depth - 1
        mem = memory.Memory(shape=self._width, depth=inner, init=[])
        m.submodules.storage = mem
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        produce = Signal(range(inner), name="produce")
        consume = Signal(range(inner), name="consume")
        stored = Signal(name="stored")  # the inner memory holds an entry
        full = Signal(name="full")  # ... holds depth − 1 entries
        do_write = w.valid & ~full
        do_read = stored & (~r.valid | r.ready)  # into the read register
        _write_side(m, w, wp, full, produce, do_write)
        m.d.comb += [rp.addr.eq(consume), rp.en.eq(do_read), r.payload.eq(rp.data)]
        produce_next, consume_next = _next(produce, inner), _next(consume, inner)
        with m.If(do_write):
            m.d.sync += produce.eq(produce_next)
        with m.If(do_read):
            m.d.sync += consume.eq(consume_next)
        with m.If(do_write & ~do_read):
            m.d.sync += [stored.eq(1), full.eq(produce_next == consume)]
        with m.Elif(do_read & ~do_write):
            m.d.sync += [stored.eq(consume_next != produce), full.eq(0)]
        with m.If(do_read):
            m.d.sync += r.valid.eq(1)
        with m.Elif(r.ready):
            m.d.sync += r.valid.eq(0)
        return m
