"""Residual-stream accumulator: one stage per LayerNorm site, producing its stream increments.

Architecture::

    a (base ΔR events) ──┐
                         ├─▶ ResidualSequencer ─ Δ[index] += value ─▶ DeltaStore (Δ, P ROM)
    b (spikes) × m ──────┘        │                                   ChangedTokens (mask)
                                  └─ scan the touched tokens: emit Δ (+ P at step 0), clear ─▶ o

Protocol, schedule and cycle model: :mod:`hw.model.residual_model`. The multiplier is a
constant: a power of two costs a shift (Yosys folds the constant product), others a constant
multiplication. ``Δ`` is zero again after every scan, so no clear pass is needed.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layer_norm import ChangedTokens
from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat

__all__ = ["DeltaStore", "ResidualCore", "ResidualSequencer"]


class DeltaStore(wiring.Component):
    """The step's increments ``Δ`` (zero between steps) and the position ROM ``P``.

    ``ev_valid``: ``Δ[ev_index] += ev_value`` (read now, written at the end of the next cycle; a
    transparent read forwards back-to-back events on one entry). ``addr``: ``delta`` and
    ``position`` in the next cycle (latency 1); ``zero``: ``Δ[addr] = 0``.

    Members
    -------
    ev_valid, zero : In(1); ev_index, addr : In(index_width); ev_value : In(signed(value_width))
    delta, position : Out(signed(value_width))
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, position: np.ndarray | None):
        g = self._geo = geometry
        self._position = position
        super().__init__(
            {
                "ev_valid": In(1),
                "ev_index": In(g.index_width),
                "ev_value": In(signed(g.value_width)),
                "addr": In(g.index_width),
                "zero": In(1),
                "delta": Out(signed(g.value_width)),
                "position": Out(signed(g.value_width)),
            }
        )

    @property
    def latency(self) -> int:
        return lnm.READ_LATENCY

    def elaborate(self, platform):
        m = Module()
        g, vw = self._geo, self._geo.value_width
        m.submodules.dmem = dmem = memory.Memory(shape=signed(vw), depth=g.entries, init=[])
        wr = dmem.write_port()
        rd = dmem.read_port(transparent_for=[wr])
        pend, pidx, pval = Signal(), Signal(g.index_width), Signal(signed(vw))
        m.d.sync += [pend.eq(self.ev_valid), pidx.eq(self.ev_index), pval.eq(self.ev_value)]
        m.d.comb += [
            rd.addr.eq(Mux(self.ev_valid, self.ev_index, self.addr)),
            wr.addr.eq(Mux(self.zero, self.addr, pidx)),
            wr.data.eq(Mux(self.zero, 0, rd.data + pval)),
            wr.en.eq(self.zero | pend),
            self.delta.eq(rd.data),
        ]
        if self._position is not None:
            init = [int(v) for v in np.asarray(self._position).reshape(-1)]
            m.submodules.pos = pos = memory.Memory(shape=signed(vw), depth=g.entries, init=init)
            pr = pos.read_port()
            m.d.comb += [pr.addr.eq(self.addr), self.position.eq(pr.data)]
        return m


class ResidualSequencer(wiring.Component):
    """Reads ``a`` then ``b`` until their markers (an ended input is skipped), scans the touched
    tokens (two cycles per entry), emits the non-zero sums, then the marker.

    ``a.ready``/``b.ready`` and ``o.valid`` depend on registers only.

    Members
    -------
    a : In(stream.Signature(event_layout(base format)))   (only with a base input)
    b : In(stream.Signature(event_layout(spike format)))
    o : Out(stream.Signature(event_layout(output format)))
    and the control of :class:`DeltaStore` and :class:`~hw.cores.layer_norm.ChangedTokens`.
    """

    def __init__(self, *, geometry: rm.ResidualGeometry, inject: bool):
        g = self._geo = geometry
        self._inject = inject
        members = {
            "b": In(stream.Signature(event_layout(g.spike_index_width, SPIKE_VALUE_WIDTH))),
            "o": Out(stream.Signature(event_layout(g.index_width, g.value_width))),
            "ev_valid": Out(1),
            "ev_index": Out(g.index_width),
            "ev_value": Out(signed(g.value_width)),
            "addr": Out(g.index_width),
            "zero": Out(1),
            "set_all": Out(1),
            "drop": Out(1),
            "delta": In(signed(g.value_width)),
            "position": In(signed(g.value_width)),
            "any": In(1),
            "first": In(range(g.tokens)),
        }
        if g.has_base:
            members["a"] = In(stream.Signature(event_layout(g.index_width, g.base_width)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        g, d, o = self._geo, self._geo.dim, self.o
        ch, base = Signal(range(d)), Signal(g.index_width)
        busy, step0 = Signal(), Signal(init=1)
        a_end, b_end = Signal(), Signal()
        total = Signal(signed(g.value_width))
        m.d.comb += total.eq(
            self.delta + Mux(step0, self.position, 0) if self._inject else self.delta
        )
        m.d.comb += self.addr.eq(base + ch)
        free = ~o.valid | o.ready
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        start = "READ_A" if g.has_base else "READ_B"
        with m.FSM(init=start):
            inject = step0 & self._inject
            if g.has_base:
                a = self.a
                ev = (a.payload.index, a.payload.value)
                self._read(m, "READ_A", a, a_end, busy, ev, inject, "READ_B")
            b = self.b
            ev = (b.payload.index + g.offset, b.payload.value * g.multiplier)
            self._read(m, "READ_B", b, b_end, busy, ev, inject, "SCAN")
            with m.State("SCAN"):
                with m.If(self.any):
                    m.d.comb += self.drop.eq(1)
                    m.d.sync += [base.eq(self.first * d), ch.eq(0)]
                    m.next = "ADDRESS"
                with m.Elif(free):
                    m.d.sync += [o.valid.eq(1), o.payload.marker.eq(1), o.payload.busy.eq(busy)]
                    m.d.sync += [o.payload.index.eq(0), o.payload.value.eq(0), busy.eq(0)]
                    m.d.sync += step0.eq(0)
                    m.next = start
                    with m.If(~busy):  # the inference is over
                        m.d.sync += [step0.eq(1), a_end.eq(0), b_end.eq(0)]
            with m.State("ADDRESS"):
                m.next = "EMIT"
            with m.State("EMIT"):
                with m.If((total == 0) | free):
                    m.d.comb += self.zero.eq(1)
                    with m.If(total != 0):
                        m.d.sync += [o.valid.eq(1), o.payload.marker.eq(0), o.payload.busy.eq(0)]
                        m.d.sync += [o.payload.index.eq(self.addr), o.payload.value.eq(total)]
                    m.d.sync += ch.eq(ch + 1)
                    m.next = "ADDRESS"
                    with m.If(ch == d - 1):
                        m.d.sync += ch.eq(0)
                        m.next = "SCAN"
        return m

    def _read(self, m: Module, state: str, port, end, busy, ev, set_all, then: str) -> None:
        """State ``state``: take ``port``'s events into the delta store (``ev``: index and
        value) until its marker (or at once when the input ``end``-ed the inference), then
        ``then``; ``set_all`` marks every token changed meanwhile (the position injection)."""
        index, value = ev
        with m.State(state):
            m.d.comb += [port.ready.eq(~end), self.ev_index.eq(index), self.ev_value.eq(value)]
            m.d.comb += self.set_all.eq(set_all)
            with m.If(end | (port.valid & port.payload.marker)):
                m.d.sync += busy.eq(busy | (~end & port.payload.busy))
                m.d.sync += end.eq(end | ~port.payload.busy)
                m.next = then
            with m.Elif(port.valid):
                m.d.comb += self.ev_valid.eq(1)


class ResidualCore(wiring.Component):
    """One residual-stream stage (see the module docstring and :mod:`hw.model.residual_model`).

    Latency: one cycle per input event and per input marker, ``geometry.token_cycles`` per
    touched token, the marker one cycle after. Throughput: one output beat per two cycles.

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
            "b": In(stream.Signature(event_layout(g.spike_index_width, SPIKE_VALUE_WIDTH))),
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
        return EventFormat(self._geo.spike_index_width, SPIKE_VALUE_WIDTH)

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self._geo.index_width, self._geo.value_width)

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        m.submodules.store = store = DeltaStore(geometry=g, position=self._position)
        m.submodules.changed = changed = ChangedTokens(geometry=g)
        m.submodules.sequencer = seq = ResidualSequencer(
            geometry=g, inject=self._position is not None
        )
        if g.has_base:
            wiring.connect(m, wiring.flipped(self.a), seq.a)
        wiring.connect(m, wiring.flipped(self.b), seq.b)
        wiring.connect(m, seq.o, wiring.flipped(self.o))
        m.d.comb += [
            store.ev_valid.eq(seq.ev_valid),
            store.ev_index.eq(seq.ev_index),
            store.ev_value.eq(seq.ev_value),
            store.addr.eq(seq.addr),
            store.zero.eq(seq.zero),
            changed.mark.eq(seq.ev_valid),
            changed.index.eq(seq.ev_index),
            changed.set_all.eq(seq.set_all),
            changed.drop.eq(seq.drop),
            changed.token.eq(seq.first),
            seq.delta.eq(store.delta),
            seq.position.eq(store.position),
            seq.any.eq(changed.any),
            seq.first.eq(changed.first),
        ]
        return m
