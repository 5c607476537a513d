"""Unpacker: a wide event stream (up to ``k`` events per beat) into one event per beat.

A layer core whose input carries ``k > 1`` events per beat (``hw.cores.layouts.beat_layout``,
:attr:`hw.model.cycle_model.LayerTiming.input_width`) puts one in front of its sequencer: the
sequencer and the accumulator then take the beat's events in consecutive passes, as if they had
come one per beat.

It holds one beat in a register and hands its events on, one per handshake, slot ``pos`` chosen
by a register; a marker beat is handed on as it is. ``o.valid`` and ``o.payload`` come from
registers and the position multiplexer; the next beat is taken in the cycle its last event is
taken (``i.ready = ~held | o.ready & last``), so beats follow without bubbles. Latency 1
(:data:`hw.model.cycle_model.UNPACKER_LATENCY`): a beat taken in cycle ``c`` shows its first
event on ``o`` in ``c + 1``; event ``e`` of the beat in the cycle after event ``e - 1`` was taken.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import beat_layout, event_layout
from spikezip.hw.model.cycle_model import UNPACKER_LATENCY

__all__ = ["Unpacker"]


class Unpacker(wiring.Component):
    """Wide beats of up to ``width`` events in, one event (or marker) per beat out.

    Parameters
    ----------
    index_width, value_width : int
        The event format.
    width : int
        Events per input beat, ``k ≥ 2``.

    Members
    -------
    i : In(stream.Signature(beat_layout))
    o : Out(stream.Signature(event_layout))
    """

    def __init__(self, *, index_width: int, value_width: int, width: int) -> None:
        self._width = width
        super().__init__(
            {
                "i": In(stream.Signature(beat_layout(index_width, value_width, width))),
                "o": Out(stream.Signature(event_layout(index_width, value_width))),
            }
        )

    @property
    def latency(self) -> int:
        return UNPACKER_LATENCY

    def elaborate(self, platform):
        m = Module()
        held = Signal(name="held")
        beat = Signal(self.i.payload.shape(), name="beat")
        pos = Signal(range(self._width), name="pos")
        last = Signal(name="last")  # the slot on o is the beat's last (or a marker)
        m.d.comb += [
            last.eq(beat.marker | (pos + 1 >= beat.count)),
            self.o.valid.eq(held),
            self.o.payload.marker.eq(beat.marker),
            self.o.payload.busy.eq(beat.busy),
            self.o.payload.index.eq(beat.index[pos]),
            self.o.payload.value.eq(beat.value[pos]),
            self.i.ready.eq(~held | (self.o.ready & last)),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(self.i.payload), held.eq(1), pos.eq(0)]
        with m.Elif(held & self.o.ready):
            with m.If(last):
                m.d.sync += held.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos + 1)
        return m
