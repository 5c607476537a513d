"""Residual-stream accumulator: one stage per LayerNorm site, producing its stream increments.

Architecture::

    a (base ΔR events) ──┐
                         ├─▶ ResidualSequencer ─ Δ[index] += value ─▶ DeltaStore (Δ, P ROM)
    b (spikes) × m ──────┘        │                                   TokenMask (changed tokens)
                                  └─ scan the touched tokens: emit Δ (+ P at step 0), clear ─▶ o

Protocol, schedule and cycle model: :mod:`hw.model.residual_model`. The multiplier is a
constant: a spike's value selects one of the constants ``±m·2^k`` (``±m`` for ST-BIF; ``k ≤ K``
for graded spikes ``±2^k``): a table, no multiplier. ``Δ`` is zero again after every scan, so no
clear pass is needed.

Pipelined for ≥ 150 MHz on ECP5 (docs/performance.md): the memories' reads go through the block
RAMs' output registers (``no_rw_check``: a word read in the cycle it is written is never used —
the writes of the 4 cycles before an event's read-modify-write are forwarded instead), the scan
reads one entry per cycle, its sums and their non-zero test are registered before the emit
stage, and the token mask is picked through registers (one-hot, then the token's base index).
A non-zero sum that finds ``o`` busy freezes the whole core (``en``) until it leaves.

``geometry.stream`` (what the ViT top builds): both inputs read as they come, and a changed
token scanned as soon as both have passed it (:meth:`ResidualSequencer._elaborate_stream`, the
token mask's per-input thresholds; "Streaming" in :mod:`hw.model.residual_model`): the same
output list, a token's sums leaving while later tokens still arrive.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model.events import EventFormat

__all__ = ["DeltaStore", "ResidualCore", "ResidualSequencer", "TokenMask"]


class DeltaStore(wiring.Component):
    """The step's increments ``Δ`` (zero between steps) and the position ROM ``P``, pipelined.

    ``ev_valid`` in cycle ``c``: ``Δ[ev_index] += ev_value``, read in ``c`` (the block RAM and
    its output register, then a copy near the logic) and written in ``c + 3``
    (:data:`~hw.model.residual_model.EVENT_LATENCY`); the value written in the 3 cycles before
    is forwarded, so events on one entry may follow each other in any order. ``scan_valid`` in
    ``c``: ``Δ[scan_addr] + P[scan_addr]·inject`` in ``total`` with ``nonzero`` and
    ``out_valid`` in ``c + 4`` (:data:`~hw.model.residual_model.SCAN_LATENCY`, the emit stage),
    where the entry is zeroed. ``reading`` (a register: the input phase) selects the read
    address, the event's or the scan's. ``en`` low freezes every stage; ``busy``: a scan read
    in flight; ``issued``: one issued in the cycle before (its entry is zeroed in the cycle an
    event taken now would write).

    Members
    -------
    en, ev_valid, reading, scan_valid, inject : In(1); ev_index, scan_addr : In(index_width);
    ev_value : In(signed(value_width)); total : Out(signed(value_width));
    nonzero, out_valid, busy, issued : Out(1); out_index : Out(index_width)
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, position: np.ndarray | None):
        g = self._geo = geometry
        self._position = position
        super().__init__(
            {
                "en": In(1),
                "ev_valid": In(1),
                "ev_index": In(g.index_width),
                "ev_value": In(signed(g.value_width)),
                "reading": In(1),
                "scan_valid": In(1),
                "scan_addr": In(g.index_width),
                "inject": In(1),
                "total": Out(signed(g.value_width)),
                "nonzero": Out(1),
                "out_valid": Out(1),
                "out_index": Out(g.index_width),
                "busy": Out(1),
                "issued": Out(1),
            }
        )

    @property
    def latency(self) -> int:
        return rm.SCAN_LATENCY

    def elaborate(self, platform):
        m = Module()
        g, vw, en = self._geo, self._geo.value_width, self.en
        iw = g.index_width
        m.submodules.dmem = dmem = memory.Memory(
            shape=signed(vw), depth=g.entries, init=[], attrs={"no_rw_check": 1}
        )
        wr, rd = dmem.write_port(), dmem.read_port()
        word = Signal(signed(vw), reset_less=True)  # the block RAM's output register
        copy = Signal(signed(vw), reset_less=True)  # near the logic
        # the event pipeline (stages 1 … 3) and the scan pipeline (stages 1 … 4)
        ev_v = [Signal(name=f"ev_valid{k}") for k in (1, 2, 3)]
        ev_i = [Signal(iw, name=f"ev_index{k}", reset_less=True) for k in (1, 2, 3)]
        ev_x = [Signal(signed(vw), name=f"ev_value{k}", reset_less=True) for k in (1, 2, 3)]
        sc_v = [Signal(name=f"scan_valid{k}") for k in (1, 2, 3, 4)]
        sc_i = [Signal(iw, name=f"scan_addr{k}", reset_less=True) for k in (1, 2, 3, 4)]
        inj = [Signal(name=f"inject{k}") for k in (1, 2, 3)]
        # the write is formed (events in stage 3, zeroes in the emit stage 4), registered, then
        # performed; w[k] = the write formed k cycles ago (w[0] is the one being performed). An
        # event's read misses the writes formed in the 4 cycles before its stage 3: the newest
        # is compared in stage 3, the older three in stage 2 (hit, older, older_x)
        calc_v, calc_i, calc_x = Signal(), Signal(iw), Signal(signed(vw))
        w_v = [Signal(name=f"w_valid{k}") for k in (1, 2, 3)]
        w_i = [Signal(iw, name=f"w_index{k}", reset_less=True) for k in (1, 2, 3)]
        w_x = [Signal(signed(vw), name=f"w_data{k}", reset_less=True) for k in (1, 2, 3)]
        hit, older = Signal(), Signal()
        older_x = Signal(signed(vw), reset_less=True)
        base = Signal(signed(vw))
        m.d.comb += [
            base.eq(Mux(hit, w_x[0], Mux(older, older_x, copy))),
            calc_v.eq(sc_v[3] | ev_v[2]),
            calc_i.eq(Mux(sc_v[3], sc_i[3], ev_i[2])),
            calc_x.eq(Mux(sc_v[3], 0, base + ev_x[2])),
        ]
        m.d.comb += [
            rd.en.eq(en),
            rd.addr.eq(Mux(self.reading, self.ev_index, self.scan_addr)),
            wr.en.eq(w_v[0]),  # repeated while frozen: the same word again
            wr.addr.eq(w_i[0]),
            wr.data.eq(w_x[0]),
            self.out_valid.eq(sc_v[3]),
            self.out_index.eq(sc_i[3]),
            self.busy.eq(Cat(*sc_v).any()),
            self.issued.eq(sc_v[0]),
        ]
        with m.If(en):
            m.d.sync += [word.eq(rd.data), copy.eq(word)]
            m.d.sync += [ev_v[0].eq(self.ev_valid), ev_i[0].eq(self.ev_index)]
            m.d.sync += [ev_x[0].eq(self.ev_value), sc_v[0].eq(self.scan_valid)]
            m.d.sync += [sc_i[0].eq(self.scan_addr), inj[0].eq(self.inject)]
            for x in (ev_v, ev_i, ev_x, sc_v, sc_i, inj):
                m.d.sync += [d.eq(q) for d, q in zip(x[1:], x[:-1], strict=False)]
            m.d.sync += [w_v[0].eq(calc_v), w_i[0].eq(calc_i), w_x[0].eq(calc_x)]
            for x in (w_v, w_i, w_x):
                m.d.sync += [d.eq(q) for d, q in zip(x[1:], x[:-1], strict=False)]
            m.d.sync += hit.eq(calc_v & (calc_i == ev_i[1]))
            same = [w_v[k] & (w_i[k] == ev_i[1]) for k in range(3)]
            m.d.sync += older.eq(same[0] | same[1] | same[2])
            m.d.sync += older_x.eq(Mux(same[0], w_x[0], Mux(same[1], w_x[1], w_x[2])))
        total = Signal(signed(vw), reset_less=True)
        nonzero = Signal()
        if self._position is not None:
            init = [int(v) for v in np.asarray(self._position).reshape(-1)]
            m.submodules.pos = pos = memory.Memory(shape=signed(vw), depth=g.entries, init=init)
            pr = pos.read_port()
            p_word = Signal(signed(vw), reset_less=True)  # the ROM's output register
            p_copy = Signal(signed(vw), reset_less=True)
            p_neg = Signal(signed(vw + 1), reset_less=True)  # Δ + P ≠ 0 ⟺ Δ ≠ −P: no carry
            m.d.comb += [pr.en.eq(en), pr.addr.eq(self.scan_addr)]
            with m.If(en):
                m.d.sync += [p_word.eq(pr.data), p_copy.eq(p_word), p_neg.eq(-p_word)]
            added = copy + Mux(inj[2], p_copy, 0)
            differs = Mux(inj[2], copy != p_neg, copy != 0)
        else:
            added, differs = copy, copy != 0
        with m.If(en):
            m.d.sync += [total.eq(added), nonzero.eq(differs)]
        m.d.comb += [self.total.eq(total), self.nonzero.eq(nonzero)]
        return m


class TokenMask(wiring.Component):
    """The per-token "changed" mask and its lowest set token, registered.

    ``mark`` sets the token of flat index ``index`` (``token = index·M >> S``, exact for every
    index; the index and the token registered, the bit set :data:`~hw.model.residual_model.
    MARK_LATENCY` cycles after the mark), ``set_all`` every token, ``drop`` the lowest set token.
    ``any`` and ``base`` (the lowest set token's first index, ``token·dim``) follow a change of
    the mask :data:`~hw.model.residual_model.PICK_LATENCY` cycles later (a one-hot word, then an
    OR of constants). ``en`` low freezes it.

    ``geometry.stream``: ``mark`` is any beat taken, ``src`` its input (0: ``a``, 1: ``b``) and
    ``close`` whether it is that input's marker; an event sets its token's bit, and per input a
    thermometer ``below`` of the tokens under its last beat's token (every token after its
    marker) follows with the same latency, so a token is **complete** when it lies below both.
    ``later`` (with ``base``): the lowest set token is complete. ``drop`` and a mark may meet (both
    apply); ``set_all`` is a pulse at an inference's end (the mask starts full when
    ``inject``). ``forget`` (a step's end) resets each thermometer to ``keep_a``/``keep_b``
    (full: that input has ended).

    Members
    -------
    en, mark, set_all, drop : In(1); index : In(index_width); any : Out(1); base : Out(index_width)
    src, close, forget, keep_a, keep_b : In(1); later : Out(1)  (streaming)
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, inject: bool = False) -> None:
        g = self._geo = geometry
        self._inject = inject
        mult, shift = 1, 0
        while any((i * mult) >> shift != i // g.dim for i in range(g.entries)):
            shift += 1
            mult = -(-(1 << shift) // g.dim)
        self._mult, self._shift = mult, shift
        extra = {}
        if g.stream:
            extra = {
                "src": In(1),
                "close": In(1),
                "forget": In(1),
                "keep_a": In(1),
                "keep_b": In(1),
                "later": Out(1),
            }
        super().__init__(
            {
                "en": In(1),
                "mark": In(1),
                "set_all": In(1),
                "drop": In(1),
                "index": In(g.index_width),
                "any": Out(1),
                "base": Out(g.index_width),
                **extra,
            }
        )

    def elaborate(self, platform):
        m = Module()
        g, en = self._geo, self.en
        n = g.tokens
        full = (1 << n) - 1
        mask = Signal(n, init=full if g.stream and self._inject else 0)
        index = Signal(g.index_width, reset_less=True)
        token = Signal(range(n), reset_less=True)
        marks = [Signal(name=f"mark{k}") for k in range(1, rm.MARK_LATENCY)]
        onehot, base = Signal(n), Signal(g.index_width)
        with m.If(en):
            m.d.sync += [index.eq(self.index), token.eq((index * self._mult) >> self._shift)]
            m.d.sync += [marks[0].eq(self.mark)]
            m.d.sync += [d.eq(q) for d, q in zip(marks[1:], marks[:-1], strict=False)]
            if g.stream:
                self._stream(m, mask, token, marks, onehot, full)
            else:
                with m.If(self.set_all):
                    m.d.sync += mask.eq(full)
                with m.Elif(self.drop):
                    m.d.sync += mask.eq(mask & (mask - 1))
                with m.Elif(marks[-1]):
                    m.d.sync += mask.bit_select(token, 1).eq(1)
            m.d.sync += [onehot.eq(mask & (~mask + 1)), self.any.eq(mask.any())]
            for j in range(len(base)):  # bit j of token·dim: the tokens that have it
                rows_j = [r for r in range(n) if (r * g.dim) >> j & 1]
                m.d.sync += base[j].eq(Cat(*(onehot[r] for r in rows_j)).any() if rows_j else 0)
        m.d.comb += self.base.eq(base)
        return m

    def _stream(self, m, mask, token, marks, onehot, full) -> None:
        """The streaming mask (inside ``en``): marks with their input and marker bit, the two
        thermometers, ``later``."""
        g, n = self._geo, self._geo.tokens
        srcs = [Signal(name=f"src{k}") for k in range(1, rm.MARK_LATENCY)]
        closes = [Signal(name=f"close{k}") for k in range(1, rm.MARK_LATENCY)]
        m.d.sync += [srcs[0].eq(self.src), closes[0].eq(self.close)]
        m.d.sync += [d.eq(q) for d, q in zip(srcs[1:], srcs[:-1], strict=False)]
        m.d.sync += [d.eq(q) for d, q in zip(closes[1:], closes[:-1], strict=False)]
        below_a = Signal(n, init=0 if g.has_base else full)
        below_b = Signal(n)
        event = marks[-1] & ~closes[-1]
        with m.If(self.set_all):
            m.d.sync += mask.eq(full)
        with m.Else():
            kept = Mux(self.drop, mask & (mask - 1), mask)
            m.d.sync += mask.eq(kept | Mux(event, Const(1, n) << token, 0))
        # (the last token lies below no token: no constant comparison for it)
        thermo = Mux(closes[-1], full, Cat(*(token > k for k in range(n - 1)), Const(0, 1)))
        with m.If(self.forget):
            m.d.sync += below_a.eq(Mux(self.keep_a, full, 0))
            m.d.sync += below_b.eq(Mux(self.keep_b, full, 0))
        with m.Elif(marks[-1] & srcs[-1]):
            m.d.sync += below_b.eq(thermo)
        with m.Elif(marks[-1]):
            m.d.sync += below_a.eq(thermo)
        m.d.sync += self.later.eq((onehot & below_a & below_b).any())


class ResidualSequencer(wiring.Component):
    """Reads ``a`` then ``b`` until their markers (an ended input is skipped), scans the touched
    tokens (a scan cycle, then one read per entry), emits the non-zero sums (the store's emit
    stage; a non-zero sum waits there for ``o``, freezing the core: ``en``), then the marker once
    the reads are through.

    ``a.ready``/``b.ready`` and ``o.valid`` depend on registers only.

    Members
    -------
    a : In(stream.Signature(event_layout(base format)))   (only with a base input)
    b : In(stream.Signature(event_layout(spike format)))
    o : Out(stream.Signature(event_layout(output format)))
    en : Out(1)
    and the control of :class:`DeltaStore` and :class:`TokenMask`.
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, inject: bool):
        g = self._geo = geometry
        self._inject = inject
        members = {
            "b": In(stream.Signature(event_layout(g.spike_index_width, g.spike_width))),
            "o": Out(stream.Signature(event_layout(g.index_width, g.value_width))),
            "en": Out(1),
            "ev_valid": Out(1),
            "ev_index": Out(g.index_width),
            "ev_value": Out(signed(g.value_width)),
            "reading": Out(1, init=1),
            "scan_valid": Out(1),
            "scan_addr": Out(g.index_width),
            "step0": Out(1, init=1),
            "set_all": Out(1),
            "drop": Out(1),
            "total": In(signed(g.value_width)),
            "nonzero": In(1),
            "out_valid": In(1),
            "out_index": In(g.index_width),
            "scan_busy": In(1),
            "issued": In(1),
            "any": In(1),
            "base": In(g.index_width),
        }
        if g.has_base:
            members["a"] = In(stream.Signature(event_layout(g.index_width, g.base_width)))
        if g.stream:
            members |= {
                "mark": Out(1),
                "src": Out(1),
                "close": Out(1),
                "forget": Out(1),
                "keep_a": Out(1),
                "keep_b": Out(1),
                "later": In(1),
            }
        super().__init__(members)

    def _emit_stage(self, m: Module, addr: Signal) -> tuple[Signal, Signal, Signal]:
        """The emit stage both elaborations share: ``o`` takes the scan's non-zero total when
        free, ``en`` stalls the scan pipeline while a result waits, ``settle`` counts down the
        scan's settling cycles. Returns ``(free, en, settle)``."""
        o = self.o
        settle = Signal(range(max(rm.SCAN_SETTLE, rm.PICK_LATENCY) + 1))
        free, en = Signal(), Signal()
        m.d.comb += [free.eq(~o.valid | o.ready), self.scan_addr.eq(addr)]
        m.d.comb += [en.eq(~(self.out_valid & self.nonzero & ~free)), self.en.eq(en)]
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(en & self.out_valid & self.nonzero):  # the emit stage (free)
            m.d.sync += [o.valid.eq(1), o.payload.marker.eq(0), o.payload.busy.eq(0)]
            m.d.sync += [o.payload.index.eq(self.out_index), o.payload.value.eq(self.total)]
        with m.If(en & (settle != 0)):
            m.d.sync += settle.eq(settle - 1)
        return free, en, settle

    def elaborate(self, platform):
        if self._geo.stream:
            return self._elaborate_stream()
        m = Module()
        g, d, o = self._geo, self._geo.dim, self.o
        ch, addr = Signal(range(d)), Signal(g.index_width)
        busy = Signal()
        a_end, b_end = Signal(), Signal()
        free, en, settle = self._emit_stage(m, addr)
        start = "READ_A" if g.has_base else "READ_B"
        with m.FSM(init=start):
            inject = self.step0 & self._inject
            if g.has_base:
                a = self.a
                ev = (a.payload.index, a.payload.value)
                self._read(m, "READ_A", a, a_end, busy, ev, inject, "READ_B", settle)
            b = self.b
            scaled = _scaled(b.payload.value, g.multiplier, g.spike_max)
            ev = (b.payload.index + g.offset, scaled)
            self._read(m, "READ_B", b, b_end, busy, ev, inject, "SCAN", settle)
            with m.State("SCAN"):
                with m.If(en & (settle == 0)):
                    with m.If(self.any):
                        m.d.comb += self.drop.eq(1)
                        m.d.sync += [addr.eq(self.base), ch.eq(0)]
                        m.d.sync += settle.eq(rm.PICK_LATENCY)
                        m.next = "ISSUE"
                    with m.Elif(~self.scan_busy & free):
                        m.d.sync += [o.valid.eq(1), o.payload.marker.eq(1)]
                        m.d.sync += [o.payload.busy.eq(busy), busy.eq(0)]
                        m.d.sync += [o.payload.index.eq(0), o.payload.value.eq(0)]
                        m.d.sync += [self.step0.eq(0), self.reading.eq(1)]
                        m.next = start
                        with m.If(~busy):  # the inference is over
                            m.d.sync += [self.step0.eq(1), a_end.eq(0), b_end.eq(0)]
            with m.State("ISSUE"):
                with m.If(en):
                    m.d.comb += self.scan_valid.eq(1)
                    m.d.sync += [ch.eq(ch + 1), addr.eq(addr + 1)]
                    with m.If(ch == d - 1):
                        m.next = "SCAN"
        return m

    def _elaborate_stream(self) -> Module:
        """The streaming sequencer: ``READ`` takes a beat of the selected input (``sel_b``: stays
        on ``b`` while it offers beats, moves to ``a`` when only ``a`` does, back as soon as ``b``
        does), except in the cycle after a scan read and while a non-zero sum waits at the emit
        stage; a cycle in which the lowest changed token is complete
        (``later``, settled) is instead the decision of its scan (``ISSUE``, then back to
        ``READ``); after both markers ``SCAN`` scans the changed tokens left and sends the
        marker, as the plain core does."""
        m = Module()
        g, d, o = self._geo, self._geo.dim, self.o
        ch, addr = Signal(range(d)), Signal(g.index_width)
        busy, tail = Signal(), Signal()
        a_end, b_end = Signal(), Signal()
        a_done = Signal(init=0 if g.has_base else 1)
        b_done = Signal()
        free, en, settle = self._emit_stage(m, addr)
        b = self.b
        scaled = _scaled(b.payload.value, g.multiplier, g.spike_max)
        # the input read next: b's while it offers beats, a's while b offers none and a does
        sel_b = Signal(init=1)
        if g.has_base:
            bv, av = b.valid & ~b_done, self.a.valid & ~a_done
            with m.If(en & sel_b & ~bv & av):
                m.d.sync += sel_b.eq(0)
            with m.Elif(en & ~sel_b & bv):
                m.d.sync += sel_b.eq(1)
        with m.FSM(init="READ"):
            with m.State("READ"):
                pick = (settle == 0) & self.later
                decide = en & pick
                # not in the cycle after a scan read (its entry is zeroed in the cycle an event
                # taken then would write) nor when a non-zero sum is at the emit stage (it may
                # freeze the core, and the event would be lost): registers only
                take = ~self.issued & ~(self.out_valid & self.nonzero) & ~pick
                b_rdy = take & sel_b & ~b_done
                m.d.comb += b.ready.eq(b_rdy)
                tb = b_rdy & b.valid
                if g.has_base:
                    a = self.a
                    a_rdy = take & ~sel_b & ~a_done
                    m.d.comb += a.ready.eq(a_rdy)
                    ta = a_rdy & a.valid
                    a_mark = ta & a.payload.marker
                    m.d.comb += [
                        self.ev_index.eq(Mux(tb, b.payload.index + g.offset, a.payload.index)),
                        self.ev_value.eq(Mux(tb, scaled, a.payload.value)),
                    ]
                else:
                    ta = a_mark = Const(0)
                    m.d.comb += [
                        self.ev_index.eq(b.payload.index + g.offset),
                        self.ev_value.eq(scaled),
                    ]
                b_mark = tb & b.payload.marker
                m.d.comb += [
                    self.ev_valid.eq((tb & ~b.payload.marker) | (ta & ~a_mark)),
                    self.src.eq(tb),
                    self.close.eq(a_mark | b_mark),
                ]
                m.d.comb += self.mark.eq(tb | ta)
                with m.If(decide):  # this cycle is the scan decision of a complete token
                    m.d.comb += self.drop.eq(1)
                    m.d.sync += [addr.eq(self.base), ch.eq(0), self.reading.eq(0)]
                    m.d.sync += settle.eq(rm.PICK_LATENCY)
                    m.next = "ISSUE"
                if g.has_base:
                    with m.If(a_mark):
                        m.d.sync += [a_done.eq(1), busy.eq(busy | a.payload.busy)]
                        m.d.sync += a_end.eq(~a.payload.busy)
                with m.If(b_mark):
                    m.d.sync += [b_done.eq(1), busy.eq(busy | b.payload.busy)]
                    m.d.sync += b_end.eq(~b.payload.busy)
                with m.If((a_mark & b_done) | (b_mark & a_done)):  # the step's input is in
                    m.d.sync += [tail.eq(1), settle.eq(rm.SCAN_SETTLE), self.reading.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):
                with m.If(en & (settle == 0)):
                    with m.If(self.any):
                        m.d.comb += self.drop.eq(1)
                        m.d.sync += [addr.eq(self.base), ch.eq(0)]
                        m.d.sync += settle.eq(rm.PICK_LATENCY)
                        m.next = "ISSUE"
                    with m.Elif(~self.scan_busy & free):
                        m.d.sync += [o.valid.eq(1), o.payload.marker.eq(1)]
                        m.d.sync += [o.payload.busy.eq(busy), busy.eq(0)]
                        m.d.sync += [o.payload.index.eq(0), o.payload.value.eq(0)]
                        m.d.sync += [self.step0.eq(0), self.reading.eq(1), tail.eq(0)]
                        m.d.comb += self.forget.eq(1)
                        m.next = "READ"
                        with m.If(busy):  # an ended input stays done
                            m.d.comb += [self.keep_a.eq(a_end), self.keep_b.eq(b_end)]
                            m.d.sync += [a_done.eq(a_end), b_done.eq(b_end)]
                        with m.Else():  # the inference is over
                            m.d.comb += self.set_all.eq(self._inject)
                            m.d.sync += [self.step0.eq(1), a_end.eq(0), b_end.eq(0)]
                            m.d.sync += [a_done.eq(0), b_done.eq(0)]
                        if not g.has_base:
                            m.d.comb += self.keep_a.eq(1)
                            m.d.sync += a_done.eq(1)
            with m.State("ISSUE"):
                with m.If(en):
                    m.d.comb += self.scan_valid.eq(1)
                    m.d.sync += [ch.eq(ch + 1), addr.eq(addr + 1)]
                    with m.If(ch == d - 1):
                        with m.If(tail):
                            m.next = "SCAN"
                        with m.Else():
                            m.d.sync += self.reading.eq(1)
                            m.next = "READ"
        return m

    def _read(self, m, state, port, end, busy, ev, set_all, then, settle) -> None:
        """State ``state``: take ``port``'s events into the delta store (``ev``: index and
        value) until its marker (or at once when the input ``end``-ed the inference), then
        ``then``; ``set_all`` marks every token changed meanwhile (the position injection).
        The core is never frozen here (the scan is through before the marker leaves)."""
        index, value = ev
        with m.State(state):
            m.d.comb += [port.ready.eq(~end), self.ev_index.eq(index), self.ev_value.eq(value)]
            m.d.comb += self.set_all.eq(set_all)
            with m.If(end | (port.valid & port.payload.marker)):
                m.d.sync += busy.eq(busy | (~end & port.payload.busy))
                m.d.sync += end.eq(end | ~port.payload.busy)
                m.d.sync += settle.eq(rm.SCAN_SETTLE)
                if then == "SCAN":
                    m.d.sync += self.reading.eq(0)
                m.next = then
            with m.Elif(port.valid):
                m.d.comb += self.ev_valid.eq(1)


def _scaled(value, multiplier: int, spike_max: int):
    """``value × multiplier`` for a spike ``value = ±2^k`` (``k ≤ log2 spike_max``): constants
    chosen by comparisons (``±m``, then ``±2m`` … ``±m·spike_max``; ``−2·m·spike_max`` for the
    one other power of two the width holds, which no spike takes; else 0)."""
    levels = spike_max.bit_length()
    cases = [(s << k, multiplier * (s << k)) for k in range(levels) for s in (1, -1)]
    cases.append((-(2 << (levels - 1)), -multiplier * (2 << (levels - 1))))
    scaled = 0
    for v, c in reversed(cases):
        scaled = Mux(value == v, c, scaled)
    return scaled


class ResidualCore(wiring.Component):
    """One residual-stream stage (see the module docstring and :mod:`hw.model.residual_model`).

    Latency: one cycle per input event and per input marker, ``SCAN_SETTLE`` cycles, then
    ``geometry.token_cycles`` per touched token, the marker once the last entry's emit stage is
    through (``hw.model.residual_model``). Throughput: one output beat per cycle.

    Parameters
    ----------
    geometry : hw.model.residual_model.ResidualGeometry
        Sizes, multiplier, offset, whether a base input exists.
    position : integer array ``[tokens, dim]``, optional
        ``P``, injected at step 0 (its bound must be ``geometry.position_bound``).

    Members
    -------
    a : In(stream.Signature(event_layout(base_format)))  (with ``geometry.base_bound``)
    b : In(stream.Signature(event_layout(spike_format)))
    o : Out(stream.Signature(event_layout(output_format)))
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, position=None):
        if not isinstance(geometry, rm.ResidualGeometry):
            raise TypeError(f"geometry must be a ResidualGeometry, not {type(geometry).__name__}")
        g = self._geo = geometry
        if position is not None:
            position = np.asarray(position, dtype=np.int64)
            if position.shape != (g.tokens, g.dim):
                raise ValueError(
                    f"position must have shape ({g.tokens}, {g.dim}), not {position.shape}"
                )
            if int(np.abs(position).max()) != g.position_bound:
                raise ValueError(
                    f"position's max |P| must equal geometry.position_bound "
                    f"({g.position_bound}), not {int(np.abs(position).max())}"
                )
            if not position.any():
                position = None
        elif g.position_bound:
            raise ValueError("position must be given when geometry.position_bound > 0")
        self._position = position
        members = {
            "b": In(stream.Signature(event_layout(g.spike_index_width, g.spike_width))),
            "o": Out(stream.Signature(event_layout(g.index_width, g.value_width))),
        }
        if g.has_base:
            members["a"] = In(stream.Signature(event_layout(g.index_width, g.base_width)))
        super().__init__(members)

    @property
    def geometry(self) -> rm.ResidualGeometry:
        return self._geo

    @property
    def base_format(self) -> EventFormat:
        return EventFormat(self._geo.index_width, self._geo.base_width)

    @property
    def spike_format(self) -> EventFormat:
        return EventFormat(self._geo.spike_index_width, self._geo.spike_width)

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self._geo.index_width, self._geo.value_width)

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        m.submodules.store = store = DeltaStore(geometry=g, position=self._position)
        inject = self._position is not None
        m.submodules.changed = changed = TokenMask(geometry=g, inject=inject)
        m.submodules.sequencer = seq = ResidualSequencer(
            geometry=g, inject=self._position is not None
        )
        if g.has_base:
            wiring.connect(m, wiring.flipped(self.a), seq.a)
        wiring.connect(m, wiring.flipped(self.b), seq.b)
        wiring.connect(m, seq.o, wiring.flipped(self.o))
        m.d.comb += [
            store.en.eq(seq.en),
            store.ev_valid.eq(seq.ev_valid),
            store.ev_index.eq(seq.ev_index),
            store.ev_value.eq(seq.ev_value),
            store.reading.eq(seq.reading),
            store.scan_valid.eq(seq.scan_valid),
            store.scan_addr.eq(seq.scan_addr),
            store.inject.eq(seq.step0),
            changed.en.eq(seq.en),
            changed.mark.eq(seq.mark if g.stream else seq.ev_valid),
            changed.index.eq(seq.ev_index),
            changed.set_all.eq(seq.set_all),
            changed.drop.eq(seq.drop),
            seq.total.eq(store.total),
            seq.nonzero.eq(store.nonzero),
            seq.out_valid.eq(store.out_valid),
            seq.out_index.eq(store.out_index),
            seq.scan_busy.eq(store.busy),
            seq.issued.eq(store.issued),
            seq.any.eq(changed.any),
            seq.base.eq(changed.base),
        ]
        if g.stream:
            m.d.comb += [
                changed.src.eq(seq.src),
                changed.close.eq(seq.close),
                changed.forget.eq(seq.forget),
                changed.keep_a.eq(seq.keep_a),
                changed.keep_b.eq(seq.keep_b),
                seq.later.eq(changed.later),
            ]
        return m
