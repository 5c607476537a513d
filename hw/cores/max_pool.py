"""The differential max-pool core (``ir.cnn.MaxPool2d``; docs/cnn.md §3, §11).

Architecture (one stall signal ``en`` freezes the sweep while a spike waits for ``o``)::

    i ─▶ read: X[index] += value ──────────────▶ X memory (per input element: the source's tracer)
         marker ─▶ sweep: windows in HWC order, one element read per cycle ──┘   │
                     issue ─▶ read ─▶ running max M ─▶ U = M − A ─▶ spike, A += s ─▶ o
                                              A memory (per window: the pool's tracer) ┘

Geometry, golden streams and the exact cycle model: :mod:`hw.model.pool_model`. In short: the
input's events are added into ``X`` (a read-modify-write per cycle; a write is forwarded to an
event on the same element in the next cycle); at the step's marker every window is swept
(``kh·kw`` cycles each, addresses from counters, no multiplier), its spike
``sign(U)·min(2^⌊log2|U|⌋, cap)`` formed and ``A`` updated, non-zero spikes leaving in window
order; then the marker (busy = the input's busy OR a spike). After the input's marker with busy 0
the core sweeps on its own until a step without spikes, then clears ``X`` and ``A``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.model import pool_model as pm
from spikezip.hw.model.events import EventFormat

__all__ = ["MaxPoolCore"]


def _range(n: int) -> range:
    """A counter over ``range(n)``, at least 1 bit."""
    return range(max(2, n))


class MaxPoolCore(wiring.Component):
    """One differential max-pool (see the module docstring and :mod:`hw.model.pool_model`).

    Latency: one cycle per input beat; then ``geometry.sweep_cycles`` issue cycles, a window's
    spike on ``o`` :data:`~hw.model.pool_model.EMIT_LATENCY` + 1 cycles after its last element's
    issue, the marker two cycles after the last window's; ``geometry.clear_cycles`` after an
    inference. Throughput: one input beat per cycle, one output beat per cycle.

    Parameters
    ----------
    geometry : hw.model.pool_model.PoolGeometry

    Members
    -------
    i : In(stream.Signature(event_layout(input format)))
    o : Out(stream.Signature(event_layout(output format)))
    """

    def __init__(self, geometry: pm.PoolGeometry) -> None:
        if not isinstance(geometry, pm.PoolGeometry):
            raise TypeError(f"geometry must be a PoolGeometry, not {type(geometry).__name__}")
        self._geo = g = geometry
        fin, fout = g.input_format, g.output_format
        super().__init__(
            {
                "i": In(stream.Signature(event_layout(fin.index_width, fin.value_width))),
                "o": Out(stream.Signature(event_layout(fout.index_width, fout.value_width))),
            }
        )

    @property
    def geometry(self) -> pm.PoolGeometry:
        return self._geo

    @property
    def input_format(self) -> EventFormat:
        return self._geo.input_format

    @property
    def output_format(self) -> EventFormat:
        return self._geo.output_format

    @property
    def latency(self) -> int:
        return pm.EMIT_LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        g, i, o = self._geo, self.i, self.o
        tw, iw = g.tracer_width, g.input_format.index_width
        ww = g.output_format.index_width
        m.submodules.xmem = xmem = memory.Memory(shape=signed(tw), depth=g.n_in, init=[])
        m.submodules.amem = amem = memory.Memory(shape=signed(tw), depth=g.windows, init=[])
        rx, wx = xmem.read_port(), xmem.write_port()
        ra, wa = amem.read_port(), amem.write_port()
        en = Signal()
        free = Signal()
        m.d.comb += free.eq(~o.valid | o.ready)

        # -- the read phase: X[index] += value, one event per cycle ---------------------------------
        ev0_v, ev1_v = Signal(), Signal()
        ev0_i, ev1_i = Signal(iw), Signal(iw)
        ev0_x, ev1_x = (Signal(signed(g.input_format.value_width)) for _ in range(2))
        fwd = Signal()
        fwd_x, new_x = Signal(signed(tw)), Signal(signed(tw))
        m.d.sync += [ev1_v.eq(ev0_v), ev1_i.eq(ev0_i), ev1_x.eq(ev0_x)]
        m.d.sync += [fwd.eq(ev0_v & ev1_v & (ev0_i == ev1_i)), fwd_x.eq(new_x)]
        m.d.comb += new_x.eq(Mux(fwd, fwd_x, rx.data) + ev1_x)

        # -- the sweep: counters → issue register (s0) → read (s1) → max (s2) → U (s3) → o ------
        kh, kw = g.kernel
        sy, sx = g.stride
        c_n, wo, ho = g.channels, g.out_width, g.out_height
        ky, kx = Signal(_range(kh)), Signal(_range(kw))
        ch, ox, oy = Signal(_range(c_n)), Signal(_range(wo)), Signal(_range(ho))
        w = Signal(_range(g.windows))
        tap_off, pos_base, row_base = (Signal(range(g.n_in)) for _ in range(3))
        s0_v, s0_first, s0_last = Signal(), Signal(), Signal()
        s0_a, s0_w = Signal(iw), Signal(ww)
        s1_v, s1_first, s1_last, s1_w = Signal(), Signal(), Signal(), Signal(ww)
        s2_v, s2_last, s2_w = Signal(), Signal(), Signal(ww)
        s2_a = Signal(signed(tw))  # A of the window
        mx = Signal(signed(tw))  # the running maximum
        s3_v, s3_nz, s3_neg, s3_w = Signal(), Signal(), Signal(), Signal(ww)
        s3_a = Signal(signed(tw))
        s3_mag = Signal(g.membrane_width)  # |U|
        u = Signal(signed(g.membrane_width + 1))
        m.d.comb += [
            en.eq(~(s3_v & s3_nz & ~free)),
            rx.en.eq(en),
            ra.en.eq(en),
            rx.addr.eq(Mux(s0_v, s0_a, ev0_i)),
            ra.addr.eq(s0_w),
            u.eq(mx - s2_a),
        ]
        with m.If(en):
            m.d.sync += [s1_v.eq(s0_v), s1_first.eq(s0_first), s1_last.eq(s0_last), s1_w.eq(s0_w)]
            m.d.sync += [s2_v.eq(s1_v), s2_last.eq(s1_last), s2_w.eq(s1_w)]
            with m.If(s1_v):
                m.d.sync += mx.eq(Mux(s1_first | (rx.data > mx), rx.data, mx))
                with m.If(s1_last):
                    m.d.sync += s2_a.eq(ra.data)
            m.d.sync += [s3_v.eq(s2_v & s2_last), s3_w.eq(s2_w), s3_a.eq(s2_a)]
            m.d.sync += [s3_nz.eq(u != 0), s3_neg.eq(u < 0), s3_mag.eq(Mux(u < 0, -u, u))]
        # the spike: sign(U)·min(2^⌊log2 |U|⌋, cap), a priority choice of constants
        cap = 0 if g.neuron == "stbif" else g.max_level
        mag = 0
        for b in range(g.membrane_width):
            k = b if cap is None else min(b, cap)
            mag = Mux(s3_mag[b], 1 << k, mag)
        spike = Signal(signed(g.output_format.value_width))
        m.d.comb += spike.eq(Mux(s3_neg, -mag, mag))
        m.d.comb += [wa.addr.eq(s3_w), wa.data.eq(s3_a + spike), wa.en.eq(s3_v & en)]
        spiked, fed, ended = Signal(), Signal(), Signal()
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(s3_v & s3_nz & en):  # the output register is free (else en is low)
            m.d.sync += [o.valid.eq(1), o.payload.marker.eq(0), o.payload.busy.eq(0)]
            m.d.sync += [o.payload.index.eq(s3_w), o.payload.value.eq(spike), spiked.eq(1)]

        offsets = (sx * c_n, (g.width - kw + 1) * c_n, sy * g.width * c_n)
        clear = Signal(_range(g.clear_cycles))
        m.d.comb += [wx.addr.eq(ev1_i), wx.data.eq(new_x), wx.en.eq(ev1_v)]
        ev_take = Signal()
        m.d.sync += ev0_v.eq(ev_take)
        with m.FSM(init="READ"):
            with m.State("READ"):
                m.d.comb += i.ready.eq(1)
                m.d.comb += ev_take.eq(i.valid & ~i.payload.marker)
                m.d.sync += [ev0_i.eq(i.payload.index), ev0_x.eq(i.payload.value)]
                with m.If(i.valid & i.payload.marker):
                    m.d.sync += [fed.eq(i.payload.busy), ended.eq(~i.payload.busy)]
                    m.next = "SWEEP"
            with m.State("SWEEP"):
                with m.If(en):
                    m.d.sync += [s0_v.eq(1), s0_a.eq(pos_base + ch + tap_off), s0_w.eq(w)]
                    m.d.sync += [s0_first.eq((ky == 0) & (kx == 0))]
                    m.d.sync += s0_last.eq((ky == kh - 1) & (kx == kw - 1))
                    with m.If(kx != kw - 1):
                        m.d.sync += [kx.eq(kx + 1), tap_off.eq(tap_off + c_n)]
                    with m.Elif(ky != kh - 1):
                        m.d.sync += [kx.eq(0), ky.eq(ky + 1), tap_off.eq(tap_off + offsets[1])]
                    with m.Else():
                        m.d.sync += [kx.eq(0), ky.eq(0), tap_off.eq(0), w.eq(w + 1)]
                        with m.If(ch != c_n - 1):
                            m.d.sync += ch.eq(ch + 1)
                        with m.Elif(ox != wo - 1):
                            m.d.sync += [
                                ch.eq(0),
                                ox.eq(ox + 1),
                                pos_base.eq(pos_base + offsets[0]),
                            ]
                        with m.Elif(oy != ho - 1):
                            nxt = row_base + offsets[2]
                            m.d.sync += [ch.eq(0), ox.eq(0), oy.eq(oy + 1)]
                            m.d.sync += [row_base.eq(nxt), pos_base.eq(nxt)]
                        with m.Else():
                            m.d.sync += [ch.eq(0), ox.eq(0), oy.eq(0), w.eq(0)]
                            m.d.sync += [row_base.eq(0), pos_base.eq(0)]
                            m.next = "MARK"
            with m.State("MARK"):
                with m.If(en):
                    m.d.sync += s0_v.eq(0)
                drained = ~(s0_v | s1_v | s2_v | s3_v)
                with m.If(drained & free):
                    busy = fed | spiked
                    m.d.sync += [o.valid.eq(1), o.payload.marker.eq(1), o.payload.busy.eq(busy)]
                    m.d.sync += [o.payload.index.eq(0), o.payload.value.eq(0)]
                    m.d.sync += [spiked.eq(0), fed.eq(0)]
                    with m.If(~busy):
                        m.d.sync += [ended.eq(0), clear.eq(0)]
                        m.next = "CLEAR"
                    with m.Elif(ended):
                        m.next = "SWEEP"
                    with m.Else():
                        m.next = "READ"
            with m.State("CLEAR"):
                m.d.comb += [wx.addr.eq(clear), wx.data.eq(0), wx.en.eq(1)]
                m.d.comb += [wa.addr.eq(clear), wa.data.eq(0), wa.en.eq(clear < g.windows)]
                m.d.sync += clear.eq(clear + 1)
                with m.If(clear == g.clear_cycles - 1):
                    m.next = "READ"
        return m
