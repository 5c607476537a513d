"""Spike-product core: the attention products ``multi`` (scores) and ``multi1`` (context).

Per step it turns the X and Y spike events of a block (q and k, or attn and v) into the events of
``ΔO = Xacc_t·Yacc_t − Xacc_{t−1}·Yacc_{t−1}`` per head (spec §3.5; the order argument is in
:mod:`hw.model.product_model`)::

    x ┐                    ┌─ Accumulator (reused) ──────────────┐
      ├▶ ProductSequencer ─┤ address ─▶ TracerStore ─▶ ±tracer   ├─▶ DeltaBanks ─▶ Emitter ─▶ o
    y ┘  (decode tables,   └─────────────────────────────────────┘   (P skewed     (non-zero
          merge, step FSM) ── tracer update (RMW) ──▶ TracerStore      banks)        entries)

* The tracers ``Xacc`` and ``Yacc`` are the accumulator's "weights": a writable
  :class:`TracerStore` (two memories, a row of ``P`` lanes per word) on the accumulator's
  external weight port instead of its ROM. An X spike ``(h, i, c, s)`` reads the ``Wm`` words of
  ``Yacc[h, c, :]`` (one per cycle) and adds ``s`` to ``Xacc[h, i, c]`` (read-modify-write with
  forwarding, so back-to-back events see each other); a Y spike symmetrically.
* Graded spikes ``±2^k`` (docs/graded.md): the accumulator still adds or subtracts the tracer
  word (the event's sign), the banks shift the lane they add by ``k`` (a (K+1):1 multiplexer in
  the register that already picks the lane: no multiplier, no cycle), and the tracer update
  adds the value itself. ``k`` is the value's trailing zeros, decoded with the index.
* ``ΔO`` lives in ``P`` banks, entry ``(h, i, j)`` in bank ``(i + j) mod P`` (skewed storage), so a
  row word (X spike) and a column word (Y spike) both touch every bank once per cycle.
* At the end of the step (the input markers consumed, the datapath drained) the emitter reads
  ``ΔO`` row by row, clears it, emits each non-zero entry as an event ``(index, value)`` and then
  the marker, with ``busy`` = the OR of the step's input markers. An input whose marker had busy 0
  is idle for the rest of the inference: it is not read again (no wait for its marker; its next
  beats belong to the next inference and wait in its input buffer and stream). A step whose
  output marker has busy 0 (both inputs idle) ends the inference: the core clears the tracers
  (``geo.clear_cycles``) and reads the next one.

Timing (inputs always valid, output always ready): :func:`hw.model.product_model.product_schedule`
gives the cycle of every output beat. An X event costs ``Wm = ceil(m/P)`` cycles, a Y event
``Wn = ceil(n/P)``, with no bubbles (also back to back on the same tracer word); each marker read
one cycle (an idle input's none); the read-out ``max(1, non-zeros)`` cycles per word of ``ΔO``
after a drain of ``geo.drain_cycles`` and ``geo.scan_latency`` cycles.

Clock rate: every memory read is registered and nothing but registers drives a memory's address,
write enable or data through more than a multiplexer or an adder (the tracers' and the banks' read
addresses are registers chosen a cycle ahead, the tracers' only with a registered weight address,
presets 2 and 3); the tracers and the banks are LUT RAM whatever ``P`` (:data:`LUT_RAM`: at ``P =
4`` Yosys made them block RAMs, whose 5.8 ns read fed the read-modify-write adders); no address is
a product (``g·words`` and ``lane·Wm`` are tables, ``word·P·Wm`` a counter); the index decoding is
logic (a block-RAM ROM's 5.6 ns clock-to-output alone limits to ~150 MHz on ECP5); the per-bank
lane rotations are tables, the banks' drive is turned in two registered steps; the read-out decides
from registers (its stall enable one logic level from them; the lanes left to send are masks,
shifted by a carry chain; ``o`` has a skid register, so ``o.ready`` reaches two registers only).
The cycles this costs against a combinational version: one per step for the word operation's
register, two for the banks' drive registers, four per read-out (the emitter's stages), one per
inference for the registered clear.
"""

from __future__ import annotations

import functools
import itertools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.accumulator import Accumulator, WeightPort
from spikezip.hw.cores.layouts import Op, event_layout, op_layout
from spikezip.hw.cores.sequencer import EventBuffer
from spikezip.hw.cores.stages import Delay
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.hw.model.product_model import OP_STAGES, ProductGeometry

__all__ = ["DecodedInput", "DeltaBanks", "ProductEmitter", "SpikeProduct", "TracerStore"]

X, Y = 0, 1

#: the tracer and ΔO memories' mapping (Yosys's ``ram_style``): LUT RAM whatever their depth. A
#: block RAM's unregistered read (5.8 ns clock-to-output on ECP5) feeds the read-modify-write
#: adders in the same cycle and would cap the core near 85 MHz at small ``P`` (deep banks);
#: LUT RAM reads in ~1 ns and keeps the block RAMs for the site cores.
LUT_RAM = {"ram_style": "distributed"}


def _decode_layout(geo: ProductGeometry) -> data.StructLayout:
    return data.StructLayout(
        {
            "h": range(max(2, geo.heads)),
            "row": range(max(2, geo.tracer_depth)),
            "pos_div": range(max(2, geo.words)),
            "pos_mod": range(max(2, geo.lanes)),
            "own": range(max(2, geo.tracer_depth)),
            "base": range(max(2, geo.bank_depth)),
            "shift": range(max(2, geo.max_shift + 1)),
        }
    )


def _table(index, rows: list[int]):
    """``rows[index]`` as logic: a tree of multiplexers on the index bits with constant leaves
    (equal subtrees shared), which Yosys maps to LUTs. (A case statement would become a block-RAM
    ROM, whose 5.6 ns clock-to-output leaves no time for the logic after it.)"""
    width = max(1, max(rows).bit_length())
    rows = rows + [0] * ((1 << len(index)) - len(rows))
    memo: dict = {}

    def node(lo: int, bit: int):
        part = tuple(rows[lo : lo + (1 << (bit + 1))])
        if part not in memo:
            if all(v == part[0] for v in part):
                memo[part] = Const(part[0], width)
            else:
                half = 1 << bit
                memo[part] = Mux(index[bit], node(lo + half, bit - 1), node(lo, bit - 1))
        return memo[part]

    return node(0, len(index) - 1)


def _lowest(bits: list):
    """``(any, several, index)`` of 1-bit values: one is set, two are, the lowest set one's
    position (meaningless if none) — a balanced tree split at powers of two, so no adder."""
    if len(bits) == 1:
        return bits[0], Const(0, 1), Const(0, 1)
    k = 1 << ((len(bits) - 1).bit_length() - 1)  # the largest power of two below the length
    a_lo, s_lo, i_lo = _lowest(bits[:k])
    a_hi, s_hi, i_hi = _lowest(bits[k:])
    lg = k.bit_length() - 1  # bits of a position in the low part
    index = Mux(a_lo, i_lo, Cat(Cat(i_hi, Const(0, lg))[:lg], 1))
    return a_lo | a_hi, s_lo | s_hi | (a_lo & a_hi), index


def _encode(onehot: Value, width: int) -> Value:
    """The position of the set bit of ``onehot`` (an OR per bit of the position: no adder)."""
    return Cat(
        Cat(onehot[k] for k in range(len(onehot)) if k >> b & 1).any()
        if any(k >> b & 1 for k in range(len(onehot)))
        else Const(0, 1)
        for b in range(width)
    )


def _registered_clear(m: Module, clear, address, depth: int):
    """The clear command one cycle later, for a memory of ``depth`` words: (enable, address)
    from registers (``geo.clear_cycles`` has the cycle this costs). ``address`` counts up from 0
    in each clear (the sequencer's), so ``address ≥ depth`` is a flag set after ``depth − 1``:
    no comparator in front of the enable."""
    en = Signal(name="clear1")
    at = Signal(range(max(2, depth)), name="clear_address1", reset_less=True)
    past = Signal(name="clear_past")  # this clear's address passed depth - 1
    m.d.sync += [past.eq(clear & (past | (address == depth - 1))), at.eq(address)]
    m.d.sync += en.eq(clear & ~past)
    return en, at


def _update_layout(geo: ProductGeometry) -> data.StructLayout:
    return data.StructLayout(
        {
            "kind": 1,
            "address": range(max(2, geo.tracer_depth)),
            "lane": range(max(2, geo.lanes)),
            "value": signed(max(geo.spike_widths)),
            "product": 1,
        }
    )


def _side_layout(geo: ProductGeometry) -> data.StructLayout:
    return data.StructLayout(
        {
            "kind": 1,
            "base": range(max(2, geo.bank_depth)),
            "rot": range(max(2, geo.lanes)),
            "shift": range(max(2, geo.max_shift + 1)),
        }
    )


class DecodedInput(wiring.Component):
    """:class:`hw.cores.sequencer.EventBuffer` plus a table decoding the held event's index.

    Latency 1 (the buffer; the table's output register loads with it: the table is logic on the
    incoming index, not a block RAM). ``fields`` of the held event: head ``h``, ``row = g·words``,
    the first tracer word of its tracer row ``g = h·r + c``, its position ``pos = pos_div·P +
    pos_mod`` along the row of its own tracer, ``own``, the address of its own tracer word,
    ``base``, the bank address of its first word operation (:class:`DeltaBanks`; word ``w`` adds
    ``w``, or ``w·P·Wm`` for a Y event), and ``shift``, the ``k`` of its value ``±2^k`` (the
    value's trailing zeros: 0 for ST-BIF).

    Members
    -------
    i : In(stream.Signature(event_layout))
    o : Out(stream.Signature(event_layout))
    event, marker : Out(1)
    fields : Out(decode layout)
    """

    def __init__(self, *, geo: ProductGeometry, side: int) -> None:
        self._geo, self._side = geo, side
        layout = event_layout(geo.index_widths[side], geo.spike_widths[side])
        super().__init__(
            {
                "i": In(stream.Signature(layout)),
                "o": Out(stream.Signature(layout)),
                "event": Out(1),
                "marker": Out(1),
                "fields": Out(_decode_layout(geo)),
            }
        )

    @property
    def latency(self) -> int:
        return 1

    def rows(self) -> list[dict]:
        geo, p, r = self._geo, self._geo.lanes, self._geo.shape[1]
        out = []
        for index in range(1 << geo.index_widths[self._side]):
            size = geo.x_size if self._side == X else geo.y_size
            if index >= size:
                out.append({"h": 0, "row": 0, "pos_div": 0, "pos_mod": 0, "own": 0, "base": 0})
                continue
            if self._side == X:
                h, pos, c = geo.x_entry(index)
            else:
                h, c, pos = geo.y_entry(index)
            g = h * r + c
            rn, wm = geo.column_words * p, geo.row_words
            base = (h * rn + pos) * wm if self._side == X else h * rn * wm + pos // p
            out.append(
                {"h": h, "row": g * geo.words, "pos_div": pos // p, "pos_mod": pos % p,
                 "own": g * geo.words + pos // p, "base": base}
            )  # fmt: skip
        return out

    def elaborate(self, platform):
        m = Module()
        geo, side = self._geo, self._side
        m.submodules.buffer = buf = EventBuffer(
            index_width=geo.index_widths[side], value_width=geo.spike_widths[side]
        )
        wiring.connect(m, wiring.flipped(self.i), buf.i)
        wiring.connect(m, buf.o, wiring.flipped(self.o))
        m.d.comb += [self.event.eq(buf.event), self.marker.eq(buf.marker)]
        layout = _decode_layout(geo)
        rows = [layout.const(row).as_value().value for row in self.rows()]
        fields = Signal(layout, name="fields", reset_less=True)
        # ``±2^k`` has exactly ``k`` trailing zeros (k ≤ K, the side's largest level)
        levels = (geo.x_spike_max if side == X else geo.y_spike_max).bit_length()
        _, _, shift = _lowest([self.i.payload.value[b] for b in range(levels)])
        with m.If(buf.i.ready):  # loads with the buffer's payload register
            m.d.sync += fields.eq(_table(self.i.payload.index, rows))
            if levels > 1:
                m.d.sync += fields.shift.eq(shift)
        m.d.comb += self.fields.eq(fields)
        return m


class TracerStore(wiring.Component):
    """The tracer memories ``Xacc`` and ``Yacc``, read by the accumulator, updated by spikes.

    ``weights``: the accumulator's weight port; address ``g·words + w`` reads ``Yacc`` (for X
    spikes) or, if ``update.payload.product`` is set in that cycle, ``Xacc`` (for Y spikes);
    latency 2 (:data:`hw.model.cycle_model.WEIGHT_READ_LATENCY`). ``update`` adds ``value`` to lane
    ``lane`` of word ``address`` of ``Xacc`` (``kind`` 0) or ``Yacc`` (1): read in that cycle
    (an X spike's own update reads ``Xacc`` while its product reads ``Yacc``), written one cycle
    later; the write of the cycle before is forwarded to every read, so reads always see every
    earlier update. ``clear`` writes a zero word to both memories.

    With ``early``, ``next_address`` and ``next_update`` are the values ``weights.address`` and
    ``update.payload`` take in the next cycle: each memory's read address is then chosen a cycle
    ahead into a register (the same address in every cycle, and no multiplexer between a
    register and the LUT RAM).

    Members
    -------
    weights : In(WeightPort)
    update : In(stream.Signature(update layout, always_ready=True))
    clear : In(1)
    clear_address : In(range(clear_cycles))
    next_address : In(range(tracer_depth))
        Only with ``early``.
    next_update : In(update layout)
        Only with ``early``.
    """

    def __init__(self, *, geo: ProductGeometry, early: bool = False) -> None:
        self._geo, self._early = geo, early
        self._word = data.ArrayLayout(signed(geo.tracer_width), geo.lanes)
        members = {
            "weights": In(WeightPort(shape=self._word, depth=geo.tracer_depth)),
            "update": In(stream.Signature(_update_layout(geo), always_ready=True)),
            "clear": In(1),
            "clear_address": In(range(max(2, geo.clear_cycles))),
        }
        if early:  # next cycle's ``weights.address`` and ``update.payload``
            members["next_address"] = In(range(max(2, geo.tracer_depth)))
            members["next_update"] = In(_update_layout(geo))
        super().__init__(members)

    @property
    def latency(self) -> int:
        return 2

    def elaborate(self, platform):
        m = Module()
        geo, upd, half = self._geo, self.update, self._geo.tracer_depth
        reads_x = upd.payload.product  # the product reads Xacc (a Y spike's)
        data_reg = Signal(self._word, name="tracer_word", reset_less=True)
        sel1 = Signal(name="read_x")
        m.d.sync += sel1.eq(reads_x)
        clear, clear_address = _registered_clear(m, self.clear, self.clear_address, half)
        for kind, name in ((X, "x"), (Y, "y")):
            m.submodules[f"{name}acc"] = mem = memory.Memory(
                shape=self._word, depth=half, init=[], attrs=LUT_RAM
            )
            rp, wp = mem.read_port(), mem.write_port()
            product = reads_x if kind == X else ~reads_x
            if self._early:  # the same address, chosen a cycle ahead into a register
                ahead = self.next_update.product if kind == X else ~self.next_update.product
                address = Signal.like(rp.addr, name=f"{name}_read_address", reset_less=True)
                m.d.sync += address.eq(Mux(ahead, self.next_address, self.next_update.address))
                m.d.comb += rp.addr.eq(address)
            else:
                m.d.comb += rp.addr.eq(Mux(product, self.weights.address, upd.payload.address))
            a1 = Signal.like(rp.addr, name=f"{name}_address1")
            u1 = Signal(name=f"{name}_update1")
            lane1 = Signal(geo.lanes, name=f"{name}_lane1")  # one-hot
            value1 = Signal.like(upd.payload.value, name=f"{name}_value1")
            m.d.sync += [a1.eq(rp.addr), value1.eq(upd.payload.value)]
            m.d.sync += lane1.eq(Cat(upd.payload.lane == k for k in range(geo.lanes)))
            m.d.sync += u1.eq(upd.valid & (upd.payload.kind == kind) & ~product)
            # the word read is the one written now: forward it (compared a cycle ahead)
            same = Signal(name=f"{name}_forward")
            m.d.sync += same.eq(u1 & (a1 == rp.addr))
            pd = Signal(self._word, name=f"{name}_written_word")
            fwd = Signal(self._word, name=f"{name}_word")
            m.d.comb += fwd.eq(Mux(same, pd, rp.data))
            new = Signal(self._word, name=f"{name}_new")
            for k in range(geo.lanes):
                m.d.comb += new[k].eq(fwd[k] + Mux(lane1[k], value1, 0))
            with m.If(u1):
                m.d.comb += [wp.en.eq(1), wp.addr.eq(a1), wp.data.eq(new)]
            with m.Elif(clear):
                m.d.comb += [wp.en.eq(1), wp.addr.eq(clear_address), wp.data.eq(0)]
            m.d.sync += pd.eq(new)
            with m.If(sel1 == (kind == X)):
                m.d.sync += data_reg.eq(fwd)
        m.d.comb += self.weights.data.eq(data_reg)
        return m


class DeltaBanks(wiring.Component):
    """``ΔO`` in ``P`` skewed banks: accumulate row or column words, read out row words.

    A command (``cmd``, in the cycle of its ``drive``, which is registered and then turned in two
    registered steps) adds lane ``k`` of ``drive``, shifted left by the command's ``shift`` (a
    graded spike's ``k``), to entry
    ``(h, i, w·P + k)`` (an X spike's row ``i``, ``kind`` 0) or ``(h, w·P + k, j)`` (a Y spike's
    column ``j``, ``kind`` 1); bank ``(row + col) mod P`` holds an entry, at
    address ``(h·Wn·P + row)·Wm + col // P``. Each bank's address and lane are registered from the
    command, then the entry is read, summed into a register and written from it (read-modify-write
    with the sum of the cycle before forwarded and the read port transparent for the write of
    its cycle: one command per cycle). ``scan`` reads (and then clears) the row word
    at ``scan_address`` (the banks' address whenever no command is in flight); ``word`` shows it
    from the next cycle on, lane ``b`` from bank ``b`` (column ``(b − row) mod P``), until the next
    scan.

    Members
    -------
    cmd : In(stream.Signature(side layout, always_ready=True))
    drive : In(ArrayLayout(signed(tracer_width + 1), P))
    scan : In(1)
    scan_address : In(range(bank_depth))
    next_scan_address : In(range(bank_depth))
        ``scan_address`` of the next cycle (the read address is a register chosen a cycle
        ahead: no multiplexer between a register and the LUT RAM).
    word : Out(ArrayLayout(signed(value_width), P))
    clear : In(1)
    clear_address : In(range(clear_cycles))
    """

    def __init__(self, *, geo: ProductGeometry) -> None:
        self._geo = geo
        self._value = signed(geo.value_width)
        super().__init__(
            {
                "cmd": In(stream.Signature(_side_layout(geo), always_ready=True)),
                "drive": In(data.ArrayLayout(signed(geo.tracer_width + 1), geo.lanes)),
                "scan": In(1),
                "scan_address": In(range(max(2, geo.bank_depth))),
                "next_scan_address": In(range(max(2, geo.bank_depth))),
                "word": Out(data.ArrayLayout(self._value, geo.lanes)),
                "clear": In(1),
                "clear_address": In(range(max(2, geo.clear_cycles))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        geo, p, cmd = self._geo, self._geo.lanes, self.cmd
        scan1 = Signal(name="scan1")
        m.d.sync += scan1.eq(self.scan)
        drive = Signal.like(self.drive, name="drive", reset_less=True)  # the products, registered
        m.d.sync += drive.eq(self.drive)
        clear, clear_address = _registered_clear(m, self.clear, self.clear_address, geo.bank_depth)
        valid1, kind1 = Signal(name="command_valid1"), Signal(name="command_kind1")
        base1 = Signal.like(cmd.payload.base, name="command_base1")
        m.d.sync += [valid1.eq(cmd.valid), kind1.eq(cmd.payload.kind), base1.eq(cmd.payload.base)]
        # bank b adds lane (b − rot) mod P of the drive: the drive word turned by ``rot mod 4``
        # lanes (one register for all banks), then per bank by the rest (4:1, then
        # ceil(P/4):1 multiplexers, no adder; ``geo.drain_cycles`` has the cycle this costs)
        rot1 = Signal.like(cmd.payload.rot, name="command_rot1")
        rot2 = Signal.like(cmd.payload.rot, name="command_rot2")
        m.d.sync += [rot1.eq(cmd.payload.rot), rot2.eq(rot1)]
        turned = Signal.like(self.drive, name="drive_turned", reset_less=True)
        for k in range(p):
            m.d.sync += turned[k].eq(Array(drive[(k - r) % p] for r in range(4))[rot1[:2]])
        hi = rot2[2:] if len(rot2) > 2 else Const(0, 1)
        # a graded spike's shift, registered with the command twice: the turned drive's lane is
        # shifted into ``d1`` (a (K+1):1 multiplexer after the lane's ceil(P/4):1)
        shift1 = Signal.like(cmd.payload.shift, name="command_shift1")
        shift0 = Signal.like(cmd.payload.shift, name="command_shift0")
        m.d.sync += [shift1.eq(cmd.payload.shift), shift0.eq(shift1)]
        k_max = geo.max_shift
        for b in range(p):
            m.submodules[f"bank{b}"] = mem = memory.Memory(
                shape=self._value, depth=geo.bank_depth, init=[], attrs=LUT_RAM
            )
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))  # (a read sees the write of its cycle)
            # the command's lane (b − rot) mod P (a table), then its bank address, registered
            # (a Y command's offset ``lane·Wm``, from a table: no multiplication)
            lane_offset = Signal(range(max(2, p * geo.row_words)), name=f"lane_offset{b}")
            table = Array(Const((b - r) % p * geo.row_words, lane_offset.shape()) for r in range(p))
            m.d.sync += lane_offset.eq(table[cmd.payload.rot])
            offset = Mux(kind1 == Y, lane_offset, 0)
            v0, a0 = Signal(name=f"command{b}"), Signal.like(rp.addr, name=f"command_address{b}")
            m.d.sync += [v0.eq(valid1), a0.eq(base1 + offset)]
            # the read address, chosen a cycle ahead (the command's, else the scan's next)
            ra = Signal.like(rp.addr, name=f"read_address{b}", reset_less=True)
            m.d.sync += ra.eq(Mux(valid1, base1 + offset, self.next_scan_address))
            m.d.comb += rp.addr.eq(ra)
            m.d.comb += rp.en.eq(v0 | self.scan)
            v1, a1 = Signal(name=f"add{b}"), Signal.like(rp.addr, name=f"address{b}")
            d1 = Signal(signed(geo.tracer_width + 1 + k_max), name=f"drive{b}")
            picked = Array(turned[(b - 4 * q) % p] for q in range(-(-p // 4)))[hi]
            if k_max:
                picked = Array(Value.cast(picked << k) for k in range(k_max + 1))[shift0]
            m.d.sync += [v1.eq(v0), a1.eq(rp.addr), d1.eq(picked)]
            # the write port is registers: the sum (0 for the scan's and the clear's writes) is
            # written in the next cycle; a read in that cycle sees it (transparent port), the
            # read the cycle before takes it from ``pd`` (the entry read is the one summed now)
            same = Signal(name=f"forward{b}")
            m.d.sync += same.eq(v1 & (a1 == rp.addr))
            pd = Signal(self._value, name=f"written_value{b}")
            total = Signal(self._value, name=f"sum{b}")
            m.d.comb += total.eq(Mux(same, pd, rp.data) + d1)
            m.d.sync += pd.eq(Mux(v1, total, 0))  # (a synchronous reset)
            we, wa = Signal(name=f"write{b}"), Signal.like(a1, name=f"write_address{b}")
            m.d.sync += [we.eq(v1 | scan1 | clear), wa.eq(Mux(clear, clear_address, a1))]
            m.d.comb += [wp.en.eq(we), wp.addr.eq(wa), wp.data.eq(pd)]
            m.d.comb += self.word[b].eq(rp.data)
        return m


class ProductSequencer(wiring.Component):
    """Merges the X and Y streams into word operations and runs the step.

    States: ``clear`` (``geo.clear_cycles`` cycles, after reset and after a step whose busy is
    0), ``accumulate`` (one word operation per cycle: an X event's ``Wm`` words, then the next
    event, X before Y; a marker takes one cycle of its own; an input whose marker had busy 0 is
    not read again until the clear), ``drain`` (``geo.drain_cycles``), ``scan`` (until the
    emitter is ``done``). Latency 1 (the inputs' buffers).

    Members
    -------
    x, y : In(stream.Signature(event_layout))
    op : Out(stream.Signature(op_layout, always_ready=True))
    update : Out(stream.Signature(update layout, always_ready=True))
    side : Out(stream.Signature(side layout, always_ready=True))
    clear : Out(1)
    clear_address : Out(range(clear_cycles))
    start : Out(1)
        The step's ``ΔO`` is complete: the emitter starts in the next cycle ...
    busy : Out(1)
        ... and this is the step's busy flag (held until the next ``start``).
    done : In(1)
        The emitter sent the marker.
    """

    def __init__(self, *, geo: ProductGeometry) -> None:
        self._geo = geo
        iw = geo.index_widths
        self._op = op_layout(words=geo.words, index_width=self.op_index_width, value_width=2)
        super().__init__(
            {
                "x": In(stream.Signature(event_layout(iw[X], geo.spike_widths[X]))),
                "y": In(stream.Signature(event_layout(iw[Y], geo.spike_widths[Y]))),
                "op": Out(stream.Signature(self._op, always_ready=True)),
                "update": Out(stream.Signature(_update_layout(geo), always_ready=True)),
                "side": Out(stream.Signature(_side_layout(geo), always_ready=True)),
                "clear": Out(1),
                "clear_address": Out(range(max(2, geo.clear_cycles))),
                "start": Out(1),
                "busy": Out(1),
                "done": In(1),
            }
        )

    @property
    def op_index_width(self) -> int:
        """Bits of ``op.index``: the tracer row's first word ``g·words``."""
        return max(1, (self._geo.tracer_depth - 1).bit_length())

    def _operation(self, m: Module, xi, yi, take_x, take_y, word, stride):
        """The word operation of the cycle (``op``, ``update``, ``side`` payloads) of the X
        event (``take_x``) or the Y event held (``word`` its word, ``stride`` = word·P·Wm);
        returns whether it is the event's last word."""
        geo = self._geo
        f = Signal(_decode_layout(geo), name="fields")
        m.d.comb += f.eq(Mux(take_x, xi.fields.as_value(), yi.fields.as_value()))
        last = Mux(take_x, word == geo.row_words - 1, word == geo.column_words - 1)
        op, side, upd = self.op.payload, self.side.payload, self.update.payload
        m.d.comb += [op.op.eq(Op.INTEGRATE), op.word.eq(word), op.last.eq(last)]
        # the tracer row's first word (``g·words``, from the table: no multiplication);
        # ``update.product`` chooses the memory
        m.d.comb += op.index.eq(f.row)
        # the accumulator adds or subtracts the tracer word (the sign); the banks shift it by
        # ``k`` (graded spikes ``±2^k``); the tracer update adds the value itself
        value = Mux(take_x, xi.o.payload.value, yi.o.payload.value)
        m.d.comb += op.value.eq(Mux(value < 0, -1, 1))
        m.d.comb += [upd.kind.eq(take_y), upd.address.eq(f.own), upd.lane.eq(f.pos_mod)]
        m.d.comb += [upd.value.eq(value), upd.product.eq(take_y)]
        m.d.comb += [side.kind.eq(take_y), side.rot.eq(f.pos_mod), side.shift.eq(f.shift)]
        if geo.words == 1:  # (``word`` is always 0)
            m.d.comb += side.base.eq(f.base)
        else:  # ``stride`` = word·P·Wm, counted along with ``word`` (no multiplication)
            m.d.comb += side.base.eq(f.base + Mux(take_x, word, stride))
        return last

    def elaborate(self, platform):
        m = Module()
        geo = self._geo
        m.submodules.x_input = xi = DecodedInput(geo=geo, side=X)
        m.submodules.y_input = yi = DecodedInput(geo=geo, side=Y)
        wiring.connect(m, wiring.flipped(self.x), xi.i)
        wiring.connect(m, wiring.flipped(self.y), yi.i)
        count = Signal(range(max(2, geo.clear_cycles, geo.drain_cycles)), name="count")
        word = Signal(range(max(2, geo.words)), name="word")
        # word·P·Wm (a Y event's bank address step per word), counted along with ``word``
        stride = Signal(range(max(2, geo.words * geo.lanes * geo.row_words)), name="y_stride")
        cur_y = Signal(name="current_y")  # the event in progress is a Y event
        x_done, y_done = Signal(name="x_done"), Signal(name="y_done")  # no more in this step
        x_idle, y_idle = Signal(name="x_idle"), Signal(name="y_idle")  # no more in this inference
        busy = Signal(name="step_busy")
        start = Signal(name="start")  # a register: 1 in the drain's last cycle
        m.d.sync += start.eq(0)
        go_x = ~x_done & xi.event
        take_x = Mux(word != 0, ~cur_y, go_x)
        take_y = Mux(word != 0, cur_y, ~go_x & ~y_done & yi.event)
        last = self._operation(m, xi, yi, take_x, take_y, word, stride)
        with m.FSM(init="clear"):
            with m.State("clear"):
                m.d.comb += [self.clear.eq(1), self.clear_address.eq(count)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == geo.clear_cycles - 1):
                    m.d.sync += [count.eq(0), x_done.eq(0), y_done.eq(0), busy.eq(0)]
                    m.d.sync += [x_idle.eq(0), y_idle.eq(0)]
                    m.next = "accumulate"
            with m.State("accumulate"):
                with m.If(take_x | take_y):
                    m.d.comb += [self.op.valid.eq(1), self.side.valid.eq(1)]
                    m.d.comb += self.update.valid.eq(word == 0)
                    m.d.sync += [word.eq(Mux(last, 0, word + 1)), cur_y.eq(take_y)]
                    m.d.sync += stride.eq(Mux(last, 0, stride + geo.lanes * geo.row_words))
                    m.d.comb += [xi.o.ready.eq(take_x & last), yi.o.ready.eq(take_y & last)]
                with m.Else():
                    x_end = ~x_done & xi.marker
                    y_end = ~x_end & ~y_done & yi.marker
                    m.d.comb += [xi.o.ready.eq(x_end), yi.o.ready.eq(y_end)]
                    end_busy = Mux(x_end, xi.o.payload.busy, yi.o.payload.busy)
                    with m.If(x_end | y_end):
                        m.d.sync += [x_done.eq(x_done | x_end), y_done.eq(y_done | y_end)]
                        m.d.sync += busy.eq(busy | end_busy)
                        m.d.sync += x_idle.eq(x_idle | (x_end & ~end_busy))
                        m.d.sync += y_idle.eq(y_idle | (y_end & ~end_busy))
                    with m.If((x_done | x_end) & (y_done | y_end)):
                        m.next = "drain"
            with m.State("drain"):
                m.d.sync += count.eq(count + 1)
                m.d.sync += start.eq(count == geo.drain_cycles - 2)  # (drain_cycles ≥ 2)
                with m.If(count == geo.drain_cycles - 1):
                    m.d.sync += count.eq(0)
                    m.next = "scan"
            with m.State("scan"):
                with m.If(self.done):  # an idle input stays done: its marker is not awaited
                    m.d.sync += [x_done.eq(x_idle), y_done.eq(y_idle), busy.eq(0)]
                    with m.If(busy):
                        m.next = "accumulate"
                    with m.Else():
                        m.next = "clear"
        m.d.comb += [self.busy.eq(busy), self.start.eq(start)]
        return m


class ProductEmitter(wiring.Component):
    """Reads ``ΔO`` out row word by row word and emits its non-zero entries, then the marker.

    A pipeline of word registers that all move together (``advance``, one logic level from
    registers): the banks' read register (bank order), the word turned by ``row mod 4`` lanes, the
    word in column order, its non-zero flags (and the mask of those after the lowest), its lanes'
    order (the first non-zero lane, the masks of the lanes after it and after the second), and the
    word whose events are being sent (``held``): a send takes the lane the masks give
    (``rest ^ rest2``) and shifts them (``rest2 & (rest2 − 1)``, a carry chain): no search.
    ``start`` reads the first word of the ``geo.scan_words`` (head, row, word), the first word is
    held ``geo.scan_latency`` cycles later, then a word costs ``max(1, non-zeros)`` cycles (one
    event per cycle, lowest column first), the marker one more; ``done`` in the cycle the marker
    is loaded. Every decision depends on registers only; ``o`` is a register with a skid register
    behind it (a beat is sent while the skid register is free: with ``o`` held, one more beat
    waits in it), so ``o.ready`` reaches these two registers only.

    Members
    -------
    start, busy : In(1)
    done : Out(1)
    scan : Out(1)
    scan_address : Out(range(bank_depth))
    next_scan_address : Out(range(bank_depth))
        ``scan_address`` of the next cycle.
    word : In(ArrayLayout(signed(value_width), P))
        The word read, in bank order.
    o : Out(stream.Signature(event_layout(output format)))
    """

    def __init__(self, *, geo: ProductGeometry) -> None:
        self._geo = geo
        super().__init__(
            {
                "start": In(1),
                "busy": In(1),
                "done": Out(1),
                "scan": Out(1),
                "scan_address": Out(range(max(2, geo.bank_depth))),
                "next_scan_address": Out(range(max(2, geo.bank_depth))),
                "word": In(data.ArrayLayout(signed(geo.value_width), geo.lanes)),
                "o": Out(stream.Signature(event_layout(geo.index_widths[2], geo.value_width))),
            }
        )

    def _reader(self, m: Module, issue):
        """The read pointer (the next word: its bank address, rotation and output index of
        lane 0), back at word 0 after the last word's read; returns (its output index, last)."""
        geo, p = self._geo, self._geo.lanes
        n, wm, heads = geo.shape[0], geo.row_words, geo.heads
        hs, rs = geo.out_strides
        ph = Signal(range(max(2, heads)), name="read_head")
        pi = Signal(range(max(2, n)), name="read_row")
        pw = Signal(range(max(2, wm)), name="read_word")
        prot = Signal(range(max(2, p)), name="read_rot")
        pa = Signal(range(max(2, geo.bank_depth)), name="read_address")
        pb, prb, phb = (Signal(range(max(2, geo.out_size)), name=f"read_{x}base")
                        for x in ("", "row_", "head_"))  # fmt: skip
        p_last = Signal(name="read_last", init=geo.scan_words == 1)
        m.d.comb += self.scan_address.eq(pa)
        nxt = self.next_scan_address  # (pa's next value, for the banks' registered address)
        end_w, end_i = pw == wm - 1, pi == n - 1
        nh, ni = Mux(end_w & end_i, ph + 1, ph), Mux(end_w, Mux(end_i, 0, pi + 1), pi)
        nw = Mux(end_w, 0, pw + 1)
        jump = (geo.column_words * p - n) * wm + 1  # to the next head's row 0
        step = pa + Mux(end_w & end_i, jump, 1)
        m.d.comb += nxt.eq(Mux(issue, Mux(p_last, 0, step), pa))
        with m.If(issue & p_last):  # back to word 0 for the next step
            m.d.sync += [x.eq(0) for x in (ph, pi, pw, prot, pa, pb, prb, phb)]
            m.d.sync += p_last.eq(geo.scan_words == 1)
        with m.Elif(issue):
            m.d.sync += [ph.eq(nh), pi.eq(ni), pw.eq(nw), pa.eq(step)]
            m.d.sync += p_last.eq((nh == heads - 1) & (ni == n - 1) & (nw == wm - 1))
            with m.If(end_w & end_i):
                m.d.sync += [prot.eq(0), phb.eq(phb + hs), prb.eq(phb + hs), pb.eq(phb + hs)]
            with m.Elif(end_w):
                m.d.sync += [prot.eq(Mux(prot == p - 1, 0, prot + 1))]
                m.d.sync += [prb.eq(prb + rs), pb.eq(prb + rs)]
            with m.Else():
                m.d.sync += pb.eq(pb + p)
        return pb, p_last, prot

    def elaborate(self, platform):
        m = Module()
        geo, p, o = self._geo, self._geo.lanes, self.o
        word_shape = data.ArrayLayout(signed(geo.value_width), p)
        lane = range(max(2, p))
        # a beat is loaded into ``o`` or, if ``o`` is held, into the skid register behind it
        # (and moves on when ``o`` leaves): the emitter sends while the skid register is free,
        # a register, so ``o.ready`` reaches only these two registers
        load = Signal(name="load")
        beat = Signal.like(o.payload, name="beat")
        s_valid, s_valid_n = Signal(name="skid_valid"), Signal(name="skid_valid_next")
        skid = Signal.like(o.payload, name="skid", reset_less=True)
        free = ~s_valid
        m.d.comb += s_valid_n.eq(s_valid)
        with m.If(o.ready | ~o.valid):
            m.d.sync += o.valid.eq(s_valid | load)
            m.d.sync += o.payload.eq(Mux(s_valid, skid, beat))
            m.d.comb += s_valid_n.eq(0)
        with m.Elif(load):
            m.d.sync += skid.eq(beat)
            m.d.comb += s_valid_n.eq(1)
        # the held word
        h_valid, h_last = Signal(name="held_valid"), Signal(name="held_last")
        held = Signal(word_shape, name="held", reset_less=True)
        h_base = Signal(range(max(2, geo.out_size)), name="held_base", reset_less=True)
        # the lane sent next: its value and output index, registers (picked when it is chosen)
        low_value = Signal(signed(geo.value_width), name="held_value", reset_less=True)
        low_index = Signal.like(o.payload.index, name="held_index", reset_less=True)
        # the non-zero lanes after the one chosen, and those after the lowest of them (masks): the
        # next lane is ``rest ^ rest2`` (one-hot), the send shifts them (a carry chain)
        rest = Signal(p, name="held_rest", reset_less=True)
        rest2 = Signal(p, name="held_rest2", reset_less=True)
        at_marker = Signal(name="at_marker")
        # the held word has two or more lanes left to send, or one: the stages move unless
        # ``stuck``, or one is left and the skid register is full (one logic level from
        # registers; as a register of its own, computed from their next values, its input net
        # fans out to the ~40 copies the flow makes of it and measured slower)
        stuck, one_left = Signal(name="held_stuck"), Signal(name="held_one_left")
        stuck_n, one_left_n = Signal(name="held_stuck_next"), Signal(name="held_one_left_next")
        m.d.comb += [stuck_n.eq(stuck), one_left_n.eq(one_left)]
        m.d.sync += [stuck.eq(stuck_n), one_left.eq(one_left_n), s_valid.eq(s_valid_n)]
        advance = Signal(name="advance")
        m.d.comb += advance.eq(~stuck & ~(one_left & s_valid))
        active = Signal(name="reading")  # words of the step left to read
        issue = advance & (self.start | active)
        m.d.comb += self.scan.eq(issue)
        base, last, rot = self._reader(m, issue)
        with m.If(issue):
            m.d.sync += active.eq(~last)
        # the stages behind ``held``: the banks' read register (valid, base, last, rotation), the
        # word turned by ``rot mod 4``, the word in column order (turned by the rest), the word
        # with its non-zero flags, the word with its lanes' order (first lane and masks)
        stages = []
        for name in ("read", "turn", "word", "flags", "order"):
            stages.append(
                (Signal(name=f"{name}_valid"), Signal.like(h_base, name=f"{name}_base"),
                 Signal(name=f"{name}_last"), Signal.like(rot, name=f"{name}_rot"))
            )  # fmt: skip
        t_word = Signal(word_shape, name="turn_word", reset_less=True)
        u_word = Signal(word_shape, name="word_reg", reset_less=True)
        z_word = Signal(word_shape, name="flags_word", reset_less=True)
        z_nz = Signal(p, name="flags")
        z_rest = Signal(p, name="flags_rest")  # the non-zero lanes after the lowest
        n_word = Signal(word_shape, name="order_word", reset_less=True)
        n_empty, n_first, n_final = (Signal(name="order_empty"), Signal(lane, name="order_first"),
                                     Signal(name="order_final"))  # fmt: skip
        n_rest = Signal(p, name="order_rest", reset_less=True)
        n_rest2 = Signal(p, name="order_rest2", reset_less=True)
        with m.If(advance):
            m.d.sync += [a.eq(b) for a, b in zip(stages[0], (issue, base, last, rot), strict=True)]
            for prev, cur in itertools.pairwise(stages):
                m.d.sync += [a.eq(b) for a, b in zip(cur, prev, strict=True)]
            # column k is in bank (rot + k) mod P: two rotations, by rot mod 4 and the rest (4:1
            # and ceil(P/4):1 multiplexers, no adder)
            r_rot, t_rot = stages[0][3], stages[1][3]
            lo, hi = r_rot[:2], (t_rot[2:] if len(t_rot) > 2 else Const(0, 1))
            for k in range(p):
                m.d.sync += t_word[k].eq(Array(self.word[(k + r) % p] for r in range(4))[lo])
                turns = Array(t_word[(k + 4 * r) % p] for r in range(-(-p // 4)))
                m.d.sync += u_word[k].eq(turns[hi])
            nz = Signal(p, name="word_nonzero")
            m.d.comb += nz.eq(Cat(u_word[k] != 0 for k in range(p)))
            m.d.sync += [z_word.eq(u_word), z_nz.eq(nz), z_rest.eq(nz & (nz - 1))]
            # the order: the first non-zero lane, the rest, the rest after the second
            any_, _, first = _lowest([z_nz[k] for k in range(p)])
            m.d.sync += [n_word.eq(z_word), n_empty.eq(~any_), n_first.eq(first)]
            m.d.sync += [n_final.eq(z_rest == 0), n_rest.eq(z_rest)]
            m.d.sync += n_rest2.eq(z_rest & (z_rest - 1))
            # into ``held``
            n_valid, n_base, n_last, _ = stages[4]
            m.d.sync += [h_valid.eq(n_valid), h_base.eq(n_base), h_last.eq(n_last)]
            m.d.sync += held.eq(n_word)
            m.d.sync += low_value.eq(Array(n_word[k] for k in range(p))[n_first])
            m.d.sync += low_index.eq(n_base + n_first)
            m.d.comb += stuck_n.eq(n_valid & ~n_empty & ~n_final)
            m.d.comb += one_left_n.eq(n_valid & ~n_empty & n_final)
            m.d.sync += [rest.eq(n_rest), rest2.eq(n_rest2)]
        with m.If((stuck | one_left) & free):  # send the lane chosen
            m.d.comb += [load.eq(1), beat.marker.eq(0), beat.busy.eq(0)]
            m.d.comb += [beat.index.eq(low_index), beat.value.eq(low_value)]
            with m.If(~advance):  # (else the next word's first lane)
                nxt = rest ^ rest2  # one-hot
                picked = [Mux(nxt[k], Value.cast(held[k]), 0) for k in range(p)]
                m.d.sync += low_value.eq(functools.reduce(operator.or_, picked))
                m.d.sync += low_index.eq(h_base + _encode(nxt, max(1, (p - 1).bit_length())))
                m.d.sync += rest.eq(rest2)
                m.d.sync += rest2.eq(rest2 & (rest2 - 1))
                m.d.comb += [stuck_n.eq(rest2 != 0), one_left_n.eq(rest2 == 0)]
        with m.If(advance & h_valid & h_last):  # (the last word is finished)
            m.d.sync += at_marker.eq(1)
        with m.If(at_marker & free):
            m.d.comb += [load.eq(1), beat.marker.eq(1), beat.busy.eq(self.busy)]
            m.d.comb += [beat.index.eq(0), beat.value.eq(0), self.done.eq(1)]
            m.d.sync += at_marker.eq(0)
        return m


class SpikeProduct(wiring.Component):
    """The spike-product core of one block (see the module docstring).

    Parameters
    ----------
    geo : hw.model.product_model.ProductGeometry
        Shapes, bounds and lanes (``ProductGeometry.for_block``).
    pipeline : hw.model.cycle_model.Pipeline or int
        The reused accumulator's register stages (a preset 0–3, default 1).

    Members
    -------
    x : In(stream.Signature(event_layout(x index bits, spike_value_width(x_spike_max))))
        The X site's spikes (q, or attn; ±1, or ±2^k from graded neurons), then its marker, per
        step.
    y : In(stream.Signature(event_layout(y index bits, spike_value_width(y_spike_max))))
        The Y site's spikes (k, or v).
    o : Out(stream.Signature(event_layout(out index bits, value_width)))
        The non-zero entries of ``ΔO`` (index of the scores or the context site), then the
        marker with the inputs' busy.
    """

    def __new__(cls, *, geo: ProductGeometry, pipeline=1) -> SpikeProduct:
        # Checked before the object exists: Amaranth warns about a component created but never
        # elaborated, which a rejected one would otherwise be.
        if not isinstance(geo, ProductGeometry):
            raise TypeError(f"geo must be a ProductGeometry, not {type(geo).__name__}")
        timing = LayerTiming(n_out=max(geo.shape[0], geo.shape[2]), lanes=geo.lanes,
                             pipeline=pipeline)  # fmt: skip
        lat = timing.accumulator_latency
        if geo.accumulator_latency != lat:
            raise ValueError(
                f"geo.accumulator_latency must be {lat} for this pipeline, "
                f"not {geo.accumulator_latency}"
            )
        self = super().__new__(cls, src_loc_at=1)
        self._timing = timing
        return self

    def __init__(self, *, geo: ProductGeometry, pipeline=1) -> None:
        self._geo = geo
        iw = geo.index_widths
        super().__init__(
            {
                "x": In(stream.Signature(event_layout(iw[X], geo.spike_widths[X]))),
                "y": In(stream.Signature(event_layout(iw[Y], geo.spike_widths[Y]))),
                "o": Out(stream.Signature(event_layout(iw[2], geo.value_width))),
            }
        )

    @property
    def geo(self) -> ProductGeometry:
        return self._geo

    @property
    def timing(self) -> LayerTiming:
        return self._timing

    def elaborate(self, platform):
        m = Module()
        geo, timing = self._geo, self._timing
        m.submodules.sequencer = seq = ProductSequencer(geo=geo)
        m.submodules.synapses = acc = Accumulator(
            layer=None, widths=None, analog=False, timing=timing,
            index_width=seq.op_index_width, value_width=2,  # the sign; the banks shift
            external=(geo.tracer_width, geo.tracer_depth),
        )  # fmt: skip
        # with a registered weight address (presets 2, 3) the tracers' read address is chosen a
        # cycle ahead, so nothing but a register drives the LUT RAMs' address
        early = timing.pipeline.address_latency == 1
        m.submodules.tracers = store = TracerStore(geo=geo, early=early)
        m.submodules.banks = banks = DeltaBanks(geo=geo)
        m.submodules.emitter = emit = ProductEmitter(geo=geo)
        # the sequencer's word operation is registered (``OP_STAGES``) before the accumulator,
        # the tracer update and the banks' command; the banks take the command with its drive
        m.submodules.op_stage = ops = Delay(
            seq.op.payload.shape(), cycles=OP_STAGES, name="word_op"
        )
        m.submodules.update_stage0 = upd0 = Delay(_update_layout(geo), cycles=OP_STAGES,
                                                  name="update0")  # fmt: skip
        m.submodules.update_stage = upd = Delay(
            _update_layout(geo), cycles=timing.pipeline.address_latency, name="update"
        )
        m.submodules.side_stage = side = Delay(
            _side_layout(geo), cycles=OP_STAGES + acc.latency, name="side"
        )
        wiring.connect(m, wiring.flipped(self.x), seq.x)
        wiring.connect(m, wiring.flipped(self.y), seq.y)
        wiring.connect(m, seq.op, ops.i)
        wiring.connect(m, ops.o, acc.i)
        wiring.connect(m, acc.weights, store.weights)
        wiring.connect(m, seq.update, upd0.i)
        wiring.connect(m, upd0.o, upd.i)
        wiring.connect(m, upd.o, store.update)
        if early:  # (the accumulator's row stage holds ``index + word`` of the op stage's op)
            m.d.comb += store.next_update.eq(upd0.o.payload)
            m.d.comb += store.next_address.eq(ops.o.payload.index + ops.o.payload.word)
        wiring.connect(m, seq.side, side.i)
        wiring.connect(m, side.o, banks.cmd)
        m.d.comb += banks.drive.eq(acc.o.payload.drive)
        for part in (store, banks):
            m.d.comb += [part.clear.eq(seq.clear), part.clear_address.eq(seq.clear_address)]
        m.d.comb += [emit.start.eq(seq.start), emit.busy.eq(seq.busy), seq.done.eq(emit.done)]
        m.d.comb += [banks.scan.eq(emit.scan), banks.scan_address.eq(emit.scan_address)]
        m.d.comb += banks.next_scan_address.eq(emit.next_scan_address)
        m.d.comb += emit.word.eq(banks.word)
        wiring.connect(m, emit.o, wiring.flipped(self.o))
        return m
