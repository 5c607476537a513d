"""Spike emitter: turns fired words into output events ``(index, ±1)`` and the step's marker.

Fired words arrive from the neuron array at one per cycle. The words that hold spikes are kept in a
buffer memory with a one-bit-per-word "has spikes" mask; the emitter takes the lowest marked word,
then sends its spikes one per cycle, lowest lane first (a priority encoder over the lanes), and
moves to the next marked word in the same cycle as the current word's last spike. Words without
spikes cost no output cycle. When the sweep's last word has arrived and every spike is out, the
marker leaves with the step's busy flag.

The buffer has two banks of ``words`` words (double buffering): one sweep can be written while the
previous step's spikes still leave, so the datapath goes on accumulating and sweeping while the
output drains, and backpressure on ``o`` only stalls the core when a third sweep is due.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.cycle_model import LayerTiming
from hw.events import SPIKE_VALUE_WIDTH, EventFormat
from hw.layouts import event_layout, spike_word_layout
from hw.sequencer import StepStatus

__all__ = ["SpikeEmitter"]


def _lowest(m: Module, bits, name: str) -> Signal:
    """Index of the lowest set bit of ``bits`` (0 when none is set)."""
    index = Signal(range(max(2, len(bits))), name=name)
    for k in reversed(range(len(bits))):
        with m.If(bits[k]):
            m.d.comb += index.eq(k)
    return index


class SpikeEmitter(wiring.Component):
    """Buffer of fired words and serialiser of their spikes onto the output event stream.

    Latency: a word fired in cycle ``x`` (on ``i``) has its first spike on ``o`` in cycle
    ``x + 2`` at the earliest, and not before the cycle after next of the previous step's marker;
    the last word of a sweep in cycle ``x`` lets the marker leave in ``x + 1`` at the earliest,
    and not before the cycle after the previous marker. Throughput: one output event per cycle, no
    bubbles between the words of a step.

    Parameters
    ----------
    n_out, lanes : int
        Neurons and lanes of the layer.

    Members
    -------
    i : In(stream.Signature(spike_word_layout, always_ready=True))
        Fired words of one sweep, in ascending word order; at most two sweeps may be held (the
        sender starts a sweep only when fewer than two markers are outstanding).
    o : Out(stream.Signature(event_layout))
        Output events and markers.
    status : Out(StepStatus())
        A sweep's last word arrived (with its busy flag); a marker left.
    """

    def __init__(self, *, n_out: int, lanes: int) -> None:
        self._timing = timing = LayerTiming(n_out=n_out, lanes=lanes)
        words = timing.words
        super().__init__(
            {
                "i": In(
                    stream.Signature(spike_word_layout(words=words, lanes=lanes), always_ready=True)
                ),
                "o": Out(stream.Signature(event_layout(self.index_width, SPIKE_VALUE_WIDTH))),
                "status": Out(StepStatus()),
            }
        )

    @property
    def lanes(self) -> int:
        return self._timing.lanes

    @property
    def words(self) -> int:
        return self._timing.words

    @property
    def index_width(self) -> int:
        """Bits of an output event's index."""
        return max(1, (self._timing.n_out - 1).bit_length())

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self.index_width, SPIKE_VALUE_WIDTH)

    def elaborate(self, platform):
        m = Module()
        words, lanes = self.words, self.lanes
        m.submodules.buffer = mem = memory.Memory(
            shape=data.ArrayLayout(signed(SPIKE_VALUE_WIDTH), lanes), depth=2 * words, init=[]
        )
        wp, rp = mem.write_port(), mem.read_port()
        wbank = Signal(name="wbank")  # bank the sweep writes
        rbank = Signal(name="rbank")  # bank whose spikes and marker go out
        masks = [Signal(words, name=f"mask{b}") for b in (0, 1)]  # words still holding spikes
        swept = [Signal(name=f"swept{b}") for b in (0, 1)]  # the bank holds a whole sweep
        busy = [Signal(name=f"busy{b}") for b in (0, 1)]  # the bank's step busy flag
        mask, done, flag = (Mux(rbank, x[1], x[0]) for x in (masks, swept, busy))
        cur_word = Signal(range(words), name="cur_word")
        cur_valid = Signal(name="cur_valid")  # rp.data holds word cur_word of bank rbank
        sent = Signal(lanes, name="sent")  # lanes of the current word already sent

        fired = [self.i.payload.spikes[k] != 0 for k in range(lanes)]
        m.d.comb += [
            wp.addr.eq(wbank * words + self.i.payload.word),
            wp.data.eq(self.i.payload.spikes),
            wp.en.eq(self.i.valid & _or(fired)),
            self.status.swept.eq(self.i.valid & self.i.payload.last),
            self.status.swept_busy.eq(self.i.payload.busy),
        ]
        left = Signal(lanes, name="left")  # spikes of the current word not sent yet
        m.d.comb += left.eq(Mux(cur_valid, _nonzero(rp.data, lanes) & ~sent, 0))
        lane = _lowest(m, left, "lane")
        one_left = (left & (left - 1)) == 0
        send = self.o.valid & self.o.ready
        load = ~left.any() | (one_left & send)  # the current word is done after this cycle
        nxt = _lowest(m, mask, "next_word")
        m.d.comb += [
            self.o.valid.eq(left.any() | (done & ~mask.any())),
            self.o.payload.marker.eq(~left.any()),
            self.o.payload.index.eq(Mux(left.any(), cur_word * lanes + lane, 0)),
            self.o.payload.value.eq(Mux(left.any(), rp.data[lane], 0)),
            self.o.payload.busy.eq(flag & ~left.any()),
            self.status.sent.eq(send & ~left.any()),
            rp.addr.eq(rbank * words + nxt),
            rp.en.eq(load),
        ]
        clear = Signal(words, name="clear")
        with m.If(load):
            m.d.sync += [cur_valid.eq(mask.any()), cur_word.eq(nxt), sent.eq(0)]
            m.d.comb += clear.eq(Mux(mask.any(), _onehot(nxt, words), 0))
        with m.Elif(send):
            m.d.sync += sent.eq(sent | _onehot(lane, lanes))
        set_ = Mux(wp.en, _onehot(self.i.payload.word, words), 0)
        for b in (0, 1):
            m.d.sync += masks[b].eq(
                (masks[b] & ~Mux(rbank == b, clear, 0)) | Mux(wbank == b, set_, 0)
            )
            with m.If(self.status.sent & (rbank == b)):
                m.d.sync += swept[b].eq(0)
            with m.If(self.status.swept & (wbank == b)):
                m.d.sync += [swept[b].eq(1), busy[b].eq(self.i.payload.busy)]
        with m.If(self.status.swept):
            m.d.sync += wbank.eq(~wbank)
        with m.If(self.status.sent):
            m.d.sync += rbank.eq(~rbank)
        return m


def _or(bits):
    out = 0
    for b in bits:
        out = out | b
    return out


def _nonzero(word, lanes: int):
    """One bit per lane of ``word`` (2-bit spikes): the lane holds a spike."""
    v = word.as_value()
    bits = [v[2 * k] | v[2 * k + 1] for k in range(lanes)]
    out = bits[0]
    for k in range(1, lanes):
        out = out | (bits[k] << k)
    return out


def _onehot(index, width: int):
    return Cat(index == k for k in range(width))
