"""The differential max-pool core (``ir.cnn.MaxPool2d``; docs/cnn.md §3, §12).

Architecture (one stall signal ``en`` freezes the sweep while a spike waits for ``o``)::

    i ─▶ read: X[index] += value ──────────────▶ X memory (per input element: the source's tracer)
         marker ─▶ sweep: windows in HWC order, one element read per cycle ──┘   │
                     issue ─▶ read ─▶ running max M ─▶ U = M − A ─▶ spike, A += s ─▶ o
                                              A memory (per window: the pool's tracer) ┘

Geometry, golden streams and the exact cycle model: :mod:`hw.model.pool_model`. In short: the
input's events are added into ``X`` (a read-modify-write per cycle through the same pipeline as
the sweep's reads: address register, read, the block RAM's output register, a copy; each element
at most once per step, as a site's spikes are, so nothing is forwarded); ``SETTLE`` cycles after
the step's marker every window is swept
(``kh·kw`` cycles each, addresses from counters, no multiplier), its spike
``sign(U)·min(2^⌊log2|U|⌋, cap)`` formed and ``A`` updated, non-zero spikes leaving in window
order; then the marker (busy = the input's busy OR a spike). After the input's marker with busy 0
the core sweeps on its own until a step without spikes, then clears ``X`` and ``A``.

With padding the sweep still visits every tap (the same cycles), but a tap outside the input (a
per-row and a per-column constant table, indexed by the window and tap counters) reads address 0
and does not enter the maximum; the window's first tap starts it at the tracer width's minimum
when it lies outside (every window has an element inside: padding ≤ k // 2).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
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

    Latency: one cycle per input beat, :data:`~hw.model.pool_model.SETTLE`; then
    ``geometry.sweep_cycles`` issue cycles, a window's spike on ``o``
    :data:`~hw.model.pool_model.EMIT_LATENCY` + 1 cycles after its last element's issue, the
    marker two cycles after the last window's; ``geometry.clear_cycles`` after an
    inference. Throughput: one input beat per cycle, one output beat per cycle.

    Parameters
    ----------
    geometry : hw.model.pool_model.PoolGeometry

    Members
    -------
    i : In(stream.Signature(event_layout(input format)))
    o : Out(stream.Signature(event_layout(output format)))
    """

    def __new__(cls, geometry: pm.PoolGeometry) -> MaxPoolCore:
        # checked before the object exists (a rejected one leaves no unused elaboratable)
        if not isinstance(geometry, pm.PoolGeometry):
            raise TypeError(f"geometry must be a PoolGeometry, not {type(geometry).__name__}")
        return super().__new__(cls)

    def __init__(self, geometry: pm.PoolGeometry) -> None:
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
        # no_rw_check: no entry is read in the cycle it is written and then used (each element
        # once per step, no X write during a sweep, A written two windows after its read), so
        # the block RAM's output register takes the read data directly (``hw.flow.ecp5``)
        nrw = {"no_rw_check": 1}
        m.submodules.xmem = xmem = memory.Memory(shape=signed(tw), depth=g.n_in, init=[], attrs=nrw)
        m.submodules.amem = amem = memory.Memory(
            shape=signed(tw), depth=g.windows, init=[], attrs=nrw
        )
        rx, wx = xmem.read_port(), xmem.write_port()
        ra, wa = amem.read_port(), amem.write_port()
        en = Signal()
        free = Signal()
        m.d.comb += free.eq(~o.valid | o.ready)

        # -- one pipeline for both phases: an event's read-modify-write of X, a sweep's reads --
        # stage 0 the address register, 1 the memory read, 2 its output register, 3 a copy near
        # the logic (X + value written back, or the running maximum), 4 U = M − A, 5 the spike
        vw = g.input_format.value_width
        p_ev = [Signal(name=f"ev{k}") for k in range(4)]  # an event in stage k
        p_sw = [Signal(name=f"sw{k}") for k in range(4)]  # a sweep read in stage k
        p_first = [Signal(name=f"first{k}") for k in range(4)]
        p_last = [Signal(name=f"last{k}") for k in range(4)]
        p_a = [Signal(iw, name=f"addr{k}") for k in range(4)]
        p_w = [Signal(ww, name=f"win{k}") for k in range(4)]
        p_x = [Signal(signed(vw), name=f"value{k}") for k in range(4)]
        word = Signal(signed(tw), reset_less=True)  # the block RAM's output register
        copy = Signal(signed(tw), reset_less=True)  # near the logic
        mx = Signal(signed(tw))  # the running maximum
        s4_v, s4_w = Signal(), Signal(ww)
        s5_v, s5_nz, s5_neg, s5_w = Signal(), Signal(), Signal(), Signal(ww)
        s5_a = Signal(signed(tw))
        s5_mag = Signal(g.membrane_width)  # |U|
        u = Signal(signed(g.membrane_width + 1))
        m.d.comb += [
            en.eq(~(s5_v & s5_nz & ~free)),
            rx.en.eq(en),
            ra.en.eq(en),
            rx.addr.eq(p_a[0]),
            ra.addr.eq(p_w[3]),
            u.eq(mx - ra.data),
            wx.addr.eq(p_a[3]),
            wx.data.eq(copy + p_x[3]),
            wx.en.eq(p_ev[3] & en),
        ]
        padded = any(g.padding)
        p_in = [Signal(name=f"inside{k}") for k in range(4)] if padded else []
        with m.If(en):
            m.d.sync += [word.eq(rx.data), copy.eq(word)]
            for x in (p_ev, p_sw, p_first, p_last, p_a, p_w, p_x, p_in):
                m.d.sync += [d.eq(q) for d, q in zip(x[1:], x[:-1], strict=False)]
            with m.If(p_sw[3]):
                if padded:  # a tap outside the input is not in the maximum
                    low = -(1 << (tw - 1))
                    first = Mux(p_in[3], copy, low)
                    m.d.sync += mx.eq(Mux(p_first[3], first, Mux(p_in[3] & (copy > mx), copy, mx)))
                else:
                    m.d.sync += mx.eq(Mux(p_first[3] | (copy > mx), copy, mx))
            m.d.sync += [s4_v.eq(p_sw[3] & p_last[3]), s4_w.eq(p_w[3])]
            m.d.sync += [s5_v.eq(s4_v), s5_w.eq(s4_w), s5_a.eq(ra.data)]
            m.d.sync += [s5_nz.eq(u != 0), s5_neg.eq(u < 0), s5_mag.eq(Mux(u < 0, -u, u))]
        # the spike: sign(U)·min(2^⌊log2 |U|⌋, cap), a priority choice of constants
        cap = 0 if g.neuron == "stbif" else g.max_level
        mag = 0
        for b in range(g.membrane_width):
            k = b if cap is None else min(b, cap)
            mag = Mux(s5_mag[b], 1 << k, mag)
        spike = Signal(signed(g.output_format.value_width))
        m.d.comb += spike.eq(Mux(s5_neg, -mag, mag))
        m.d.comb += [wa.addr.eq(s5_w), wa.data.eq(s5_a + spike), wa.en.eq(s5_v & en)]
        spiked, fed, ended = Signal(), Signal(), Signal()
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(s5_v & s5_nz & en):  # the output register is free (else en is low)
            m.d.sync += [o.valid.eq(1), o.payload.marker.eq(0), o.payload.busy.eq(0)]
            m.d.sync += [o.payload.index.eq(s5_w), o.payload.value.eq(spike), spiked.eq(1)]

        # -- the sweep's counters: window (oy, ox, c) in HWC order, tap (ky, kx) -----------------
        kh, kw = g.kernel
        sy, sx = g.stride
        c_n, wo, ho = g.channels, g.out_width, g.out_height
        ky, kx = Signal(_range(kh)), Signal(_range(kw))
        ch, ox, oy = Signal(_range(c_n)), Signal(_range(wo)), Signal(_range(ho))
        w = Signal(_range(g.windows))
        settle = Signal(range(pm.SETTLE + 1))
        offsets = (sx * c_n, (g.width - kw + 1) * c_n, sy * g.width * c_n)
        if padded:  # addresses modulo 2^bits: window (0, 0)'s top-left tap lies outside
            bits = len(Signal(_range(g.n_in)))
            start = -(g.padding[0] * g.width + g.padding[1]) * c_n % (1 << bits)
            tap_off = Signal(bits)
            pos_base, row_base = (Signal(bits, init=start) for _ in range(2))
            my, mxr = g.reach()
            rows = Array(Const(int(sum(int(b) << k for k, b in enumerate(r))), kh) for r in my)
            cols = Array(Const(int(sum(int(b) << k for k, b in enumerate(r))), kw) for r in mxr)
            inside = rows[oy].bit_select(ky, 1) & cols[ox].bit_select(kx, 1)
            address = Mux(inside, pos_base + ch + tap_off, 0)
        else:
            tap_off, pos_base, row_base = (Signal(_range(g.n_in)) for _ in range(3))
            start, inside, address = 0, None, pos_base + ch + tap_off
        clear = Signal(_range(g.clear_cycles))
        with m.If(en):  # nothing issued unless a state below says so
            m.d.sync += [p_ev[0].eq(0), p_sw[0].eq(0)]
        with m.FSM(init="READ"):
            with m.State("READ"):
                m.d.comb += i.ready.eq(1)
                m.d.sync += [p_a[0].eq(i.payload.index), p_x[0].eq(i.payload.value)]
                m.d.sync += p_ev[0].eq(i.valid & ~i.payload.marker)
                with m.If(i.valid & i.payload.marker):
                    m.d.sync += [fed.eq(i.payload.busy), ended.eq(~i.payload.busy)]
                    m.d.sync += settle.eq(pm.SETTLE)
                    m.next = "SETTLE"
            with m.State("SETTLE"):  # the last event's write reaches X
                m.d.sync += settle.eq(settle - 1)
                with m.If(settle == 1):
                    m.next = "SWEEP"
            with m.State("SWEEP"):
                with m.If(en):
                    m.d.sync += [p_sw[0].eq(1), p_a[0].eq(address), p_w[0].eq(w)]
                    if padded:
                        m.d.sync += p_in[0].eq(inside)
                    m.d.sync += [p_first[0].eq((ky == 0) & (kx == 0))]
                    m.d.sync += p_last[0].eq((ky == kh - 1) & (kx == kw - 1))
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
                            m.d.sync += [row_base.eq(start), pos_base.eq(start)]
                            m.next = "MARK"
            with m.State("MARK"):
                drained = ~(Cat(*p_ev, *p_sw) | Cat(s4_v, s5_v)).any()
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
