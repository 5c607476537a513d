"""The residual merge core (``ir.cnn.Add``; docs/cnn.md §12): a stream merger in front of a
layer core with a merge map.

Architecture::

    i0 (source 0's spikes) ─ register ─┐
    i1 (source 1's spikes) ─ register ─┼─▶ StreamMerge ─(s·stride + i, v)─▶ LayerCore ─▶ o
    …                                  ┘   step by step, one marker        (merge map: m_s in
                                                                            lane i mod lanes)

Protocol, streams and the exact cycle model: :mod:`hw.model.add_model`. Each input goes
through a one-beat register (``hw.cores.sequencer.EventBuffer``: ``i{s}.ready`` depends on
registers only, one cycle of latency); the merger behind them is combinational (a few gates):
in state ``k`` it offers the event of the first source ``s ≥ k`` not at its marker (and not
ended), taking the markers of the sources before it in the same transfer, or — every source at
its marker or ended — the merged marker (busy: the OR). A source whose marker had busy 0 has
ended its inference; the merged marker with busy 0 ends it for all.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.cores.sequencer import EventBuffer
from spikezip.hw.model.events import EventFormat
from spikezip.hw.model.vit_sites import SiteSpec

__all__ = ["AddCore", "StreamMerge"]


class StreamMerge(wiring.Component):
    """``len(formats)`` event streams to one, step by step (see the module docstring).

    ``o.valid`` and ``o.payload`` depend on the inputs' ``valid``/``payload`` and registers;
    ``i{s}.ready`` on ``o.ready`` too.

    Parameters
    ----------
    formats : sequence of hw.model.events.EventFormat
        Each source's format (index below ``2^stride_bits``).
    stride_bits : int
        Bits of a source's index in the merged index (source ``s``'s index ``i`` becomes
        ``s·2^stride_bits + i``).

    Members
    -------
    i0, i1, … : In(stream.Signature(event_layout(formats[s])))
    o : Out(stream.Signature(event_layout(output_format)))
    """

    def __new__(cls, formats, stride_bits: int) -> StreamMerge:
        formats = tuple(formats)
        if len(formats) < 2:
            raise ValueError(f"formats must hold at least two sources, not {len(formats)}")
        if any(f.index_width > stride_bits for f in formats):
            raise ValueError(f"every source's index must fit stride_bits = {stride_bits}")
        return super().__new__(cls)

    def __init__(self, formats, stride_bits: int) -> None:
        self._formats = tuple(formats)
        self._bits = stride_bits
        n = len(self._formats)
        fo = self.output_format
        members = {
            f"i{s}": In(stream.Signature(event_layout(f.index_width, f.value_width)))
            for s, f in enumerate(self._formats)
        }
        members["o"] = Out(stream.Signature(event_layout(fo.index_width, fo.value_width)))
        self._n = n
        super().__init__(members)

    @property
    def output_format(self) -> EventFormat:
        n = len(self._formats)
        return EventFormat(
            self._bits + max(1, (n - 1).bit_length()), max(f.value_width for f in self._formats)
        )

    def elaborate(self, platform):
        m = Module()
        n, o = self._n, self.o
        ins = [getattr(self, f"i{s}") for s in range(n)]
        state = Signal(range(n))
        ended = Signal(n)
        busy = Signal()  # the OR of the markers taken so far in this step
        skip = [Signal(name=f"skip{s}") for s in range(n)]
        reach = [Signal(name=f"reach{s}") for s in range(n + 1)]
        for s, i in enumerate(ins):
            m.d.comb += skip[s].eq(ended[s] | (i.valid & i.payload.marker))
        m.d.comb += reach[0].eq(state == 0)
        for s in range(n):
            m.d.comb += reach[s + 1].eq((reach[s] & skip[s]) | (state == s + 1))
        final = reach[n]
        # the markers this transfer takes: every reached source at its marker (not ended) before
        # the selected one (every one for the merged marker)
        taken = [reach[s] & skip[s] & ~ended[s] for s in range(n)]
        taken_busy = Cat(*(t & i.payload.busy for t, i in zip(taken, ins, strict=True))).any()
        ends = Cat(*(t & ~i.payload.busy for t, i in zip(taken, ins, strict=True)))
        sbits = max(1, (n - 1).bit_length())
        m.d.comb += o.valid.eq(final)
        with m.If(final):
            m.d.comb += [o.payload.marker.eq(1), o.payload.busy.eq(busy | taken_busy)]
        for s, i in enumerate(ins):
            sel = reach[s] & ~skip[s]
            pad = Const(0, self._bits - len(i.payload.index))
            with m.If(sel):
                m.d.comb += [o.valid.eq(i.valid), o.payload.value.eq(i.payload.value)]
                m.d.comb += o.payload.index.eq(Cat(i.payload.index, pad, Const(s, sbits)))
            m.d.comb += i.ready.eq(o.ready & o.valid & (sel | taken[s]))
        with m.If(o.valid & o.ready):
            with m.If(final):
                m.d.sync += [state.eq(0), busy.eq(0)]
                with m.If(busy | taken_busy):
                    m.d.sync += ended.eq(ended | ends)
                with m.Else():  # the inference is over
                    m.d.sync += ended.eq(0)
            with m.Else():
                m.d.sync += [busy.eq(busy | taken_busy), ended.eq(ended | ends)]
                for s in range(n):
                    with m.If(reach[s] & ~skip[s]):
                        m.d.sync += state.eq(s)
        return m


class AddCore(wiring.Component):
    """One residual merge site (see the module docstring): :class:`StreamMerge`, then the
    site's :class:`LayerCore` (``hw.model.add_model.add_spec``).

    Parameters
    ----------
    site : hw.model.vit_sites.SiteSpec
        The merge site (``add_spec``).
    formats : sequence of EventFormat
        Each source's format (``hw.model.add_model.source_formats``).
    pipeline, storage : as :class:`LayerCore`

    Members
    -------
    i0, i1, … : In(stream.Signature(event_layout(formats[s])))
    o : Out(stream.Signature(event_layout(site.output_format)))
    """

    def __new__(cls, *, site: SiteSpec, formats, **_: object) -> AddCore:
        # checked before the object exists (a rejected one leaves no unused elaboratable)
        if not isinstance(site, SiteSpec):
            raise TypeError(f"site must be a SiteSpec, not {type(site).__name__}")
        formats = tuple(formats)
        if len(formats) < 2 or site.input_map.n_in % len(formats):
            raise ValueError(
                f"formats must give one format per source of the merge map, not {len(formats)}"
            )
        return super().__new__(cls)

    def __init__(self, *, site: SiteSpec, formats, pipeline=1, storage=None) -> None:
        formats = tuple(formats)
        stride = site.input_map.n_in // len(formats)
        bits = max(0, (stride - 1).bit_length())
        self._merge = StreamMerge(formats, bits)
        self._core = LayerCore.for_site(site, pipeline=pipeline, storage=storage)
        self._site, self._formats = site, formats
        fo = site.output_format
        members = {
            f"i{s}": In(stream.Signature(event_layout(f.index_width, f.value_width)))
            for s, f in enumerate(formats)
        }
        members["o"] = Out(stream.Signature(event_layout(fo.index_width, fo.value_width)))
        super().__init__(members)

    @property
    def core(self) -> LayerCore:
        return self._core

    @property
    def merge(self) -> StreamMerge:
        return self._merge

    @property
    def timing(self):
        return self._core.timing

    @property
    def input_formats(self) -> tuple[EventFormat, ...]:
        return self._formats

    @property
    def output_format(self) -> EventFormat:
        return self._core.output_format

    def elaborate(self, platform):
        m = Module()
        m.submodules.merge = merge = self._merge
        m.submodules.core = core = self._core
        for s, f in enumerate(self._formats):  # a register per source: i.ready from registers
            buf = EventBuffer(index_width=f.index_width, value_width=f.value_width)
            m.submodules[f"buffer{s}"] = buf
            wiring.connect(m, wiring.flipped(getattr(self, f"i{s}")), buf.i)
            wiring.connect(m, buf.o, getattr(merge, f"i{s}"))
        mo, ci = merge.o, core.i
        m.d.comb += [ci.valid.eq(mo.valid), mo.ready.eq(ci.ready)]
        m.d.comb += [ci.payload.marker.eq(mo.payload.marker), ci.payload.busy.eq(mo.payload.busy)]
        m.d.comb += [ci.payload.index.eq(mo.payload.index), ci.payload.value.eq(mo.payload.value)]
        wiring.connect(m, core.o, wiring.flipped(self.o))
        return m
