"""What every site-graph top shares: the broadcast, the FIFO links and the monitor.

A site-graph top (the ViT's ``hw.cores.vit_core.ViTCore``, the CNN's
``hw.cores.cnn_core.CnnCore``) is a graph of cores on the layer core's stream protocol (events,
then an end-of-step marker with the busy flag) whose streams pass through ``SyncFIFOBuffered``
FIFOs, behind a :class:`Broadcast` where a stream has several consumers. Its exact cycle model is
:mod:`hw.model.site_graph` composed by the top's own model; the FIFOs are named as
:func:`hw.model.site_graph.link_names` names them.

The ``probe`` output has :func:`hw.cores.network_core.probe_layout`'s fields over the sites in
execution order (one transfer bit and beat per site's output, the last site's ``o.valid``, then
``i.ready``), so the network testbench decodes it into a trace with one layer per site.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.cores.network_core import COUNTER_WIDTH, COUNTERS, probe_layout, stream_counters
from spikezip.hw.model.events import EventFormat
from spikezip.hw.model.site_graph import link_names

__all__ = ["Broadcast", "SiteGraph"]


class Broadcast(wiring.Component):
    """One stream to ``n`` consumers: a beat leaves when every consumer has taken it (each
    output's ``valid`` drops once its consumer took the beat). ``o_k.valid`` depends on ``i.valid``
    and registers only; ``i.ready`` on the consumers' ``ready``.

    Members
    -------
    i : In(stream.Signature(layout))
    o0 … o{n-1} : Out(stream.Signature(layout))
    """

    def __init__(self, layout, n: int) -> None:
        self._n = n
        members = {"i": In(stream.Signature(layout))}
        members |= {f"o{k}": Out(stream.Signature(layout)) for k in range(n)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self._n)]
        taken = [Signal(name=f"taken{k}") for k in range(self._n)]
        for o, t in zip(outs, taken, strict=True):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~t)]
        m.d.comb += self.i.ready.eq(
            Cat(*(t | o.ready for o, t in zip(outs, taken, strict=True))).all()
        )
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [t.eq(0) for t in taken]
        with m.Else():
            m.d.sync += [t.eq(t | (o.valid & o.ready)) for o, t in zip(outs, taken, strict=True)]
        return m


def _fields(port) -> tuple[int, int]:
    layout = port.payload.shape()
    return layout["index"].shape.width, layout["value"].shape.width


class SiteGraph(wiring.Component):
    """Base of a site-graph top: ``i`` (the first site's input), ``o`` (the last site's
    output), ``done``, ``cycles``, ``inferences``, ``counters`` (per site ``events, spikes,
    steps, stalls``) and, with ``probe``, ``probe``.

    A subclass sets ``self._probe`` and gives :attr:`formats` (every site's output format, in
    execution order), :attr:`input_format` and :meth:`fifo_entries`; its ``elaborate`` starts
    with ``self._fifos, self._fifo_names = [], []``, builds the cores, joins them with
    :meth:`link` and ends with :meth:`monitor`.
    """

    def _members(self) -> dict:
        fin, fout = self.input_format, self.formats[-1]
        members = {
            "i": In(stream.Signature(event_layout(fin.index_width, fin.value_width))),
            "o": Out(stream.Signature(event_layout(fout.index_width, fout.value_width))),
            "done": Out(1),
            "cycles": Out(COUNTER_WIDTH),
            "inferences": Out(COUNTER_WIDTH),
            "counters": Out(COUNTER_WIDTH * len(COUNTERS) * len(self.formats)),
        }
        if self._probe:
            members["probe"] = Out(self.probe_width)
        return members

    @property
    def formats(self) -> tuple[EventFormat, ...]:
        raise NotImplementedError

    @property
    def input_format(self) -> EventFormat:
        raise NotImplementedError

    def fifo_entries(self, name: str) -> int:
        """Entries of the FIFO ``name``."""
        raise NotImplementedError

    @property
    def probe_width(self) -> int:
        _, offset, width = probe_layout(self.formats)[-1]
        return offset + width

    def fifo_depths(self) -> tuple[int, ...]:
        """Depth of every FIFO, in the order they are built (known once elaborated)."""
        return tuple(getattr(self, "_fifos", ()))

    def built_fifo_names(self) -> tuple[str, ...]:
        """The name of every FIFO as elaborated."""
        return tuple(getattr(self, "_fifo_names", ()))

    def link(self, m: Module, src, dsts: list, name: str) -> None:
        """``src`` to every port of ``dsts``, each through a FIFO of :meth:`fifo_entries`
        entries (a broadcast first when there are several); index and value are widened, never
        narrowed."""
        iw, vw = _fields(src)
        layout, fifos = event_layout(iw, vw), link_names(name, len(dsts))
        name = name.replace(".", "_")
        if len(dsts) > 1:
            m.submodules[f"{name}_fork"] = fork = Broadcast(layout, len(dsts))
            wiring.connect(m, src, fork.i)
            heads = [getattr(fork, f"o{k}") for k in range(len(dsts))]
        else:
            heads = [src]
        for head, dst, fifo_name in zip(heads, dsts, fifos, strict=True):
            diw, dvw = _fields(dst)
            if diw < iw or dvw < vw:
                raise ValueError(
                    f"{name}: a ({iw}, {vw})-bit stream does not fit a ({diw}, {dvw})-bit input"
                )
            entries = self.fifo_entries(fifo_name)
            q = fifo.SyncFIFOBuffered(width=layout.size, depth=entries)
            self._fifos.append(entries)
            self._fifo_names.append(fifo_name)
            m.submodules[fifo_name] = q
            wiring.connect(m, head, q.w_stream)
            beat = layout(q.r_stream.payload)
            d = dst.payload
            m.d.comb += [dst.valid.eq(q.r_stream.valid), q.r_stream.ready.eq(dst.ready)]
            m.d.comb += [d.marker.eq(beat.marker), d.busy.eq(beat.busy)]
            m.d.comb += [d.index.eq(beat.index), d.value.eq(beat.value)]

    def monitor(self, m: Module, cores: list) -> None:
        """``done`` (the last site's marker with busy 0 leaving on ``o``), the cycle and
        inference counters, every site core's stream counters and the probe (``cores``: the
        site cores in execution order, each with ``o`` and ``i``, or — a merge — an inner layer
        core ``core`` whose ``i`` is counted)."""
        last = self.o
        m.d.comb += self.done.eq(last.valid & last.ready & last.payload.marker & ~last.payload.busy)
        m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.done):
            m.d.sync += self.inferences.eq(self.inferences + 1)
        probe, counters = [], []
        for k, core in enumerate(cores):
            out = core.o
            inp = core.core.i if hasattr(core, "core") else core.i
            counters.extend(stream_counters(m, k, inp, out))
            fire_out = out.valid & out.ready
            probe.extend([fire_out if k < len(cores) - 1 else out.valid, out.payload.as_value()])
        m.d.comb += self.counters.eq(Cat(*counters))
        if not self._probe:
            return
        probe.append(self.i.ready)
        m.d.comb += self.probe.eq(Cat(*probe))
