"""Spike emitter: turns fired words into output events ``(index, ±1)`` and the step's marker.

Fired words arrive from the neuron array at one per cycle and are registered. A word that holds
spikes, and the last word of every sweep (which carries the step's marker), enters a queue as
one *entry*: the word's first neuron index, one bit per lane that spiked and its sign, the number
of output beats it makes (its spikes, plus one for the marker) and the marker's busy flag. Words
without spikes (other than a sweep's last) cost no queue slot and no output cycle.

A serialiser takes the queue's head and sends its beats one per cycle into a registered output:
the spikes lowest lane first (a priority encoder over the lanes), then the marker. It moves to
the next entry in the same cycle as the head's final beat, so the entries of consecutive words and
steps leave without bubbles. Everything the serialiser decides from is a register or the queue's
registered head (the beat count of an entry is counted when it enters, not when it leaves).

The queue holds ``2·W`` entries: two sweeps (the sequencer starts a sweep only while fewer than two
markers are outstanding), so the datapath goes on accumulating and sweeping while the output
drains, and backpressure on ``o`` only stalls the core when a third sweep is due.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import event_layout, spike_word_layout
from spikezip.hw.cores.sequencer import StepStatus
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat

__all__ = ["SpikeEmitter"]


def _lowest(m: Module, bits, name: str) -> Signal:
    """Index of the lowest set bit of ``bits`` (0 when none is set)."""
    index = Signal(range(max(2, len(bits))), name=name)
    for k in reversed(range(len(bits))):
        with m.If(bits[k]):
            m.d.comb += index.eq(k)
    return index


class SpikeEmitter(wiring.Component):
    """Queue of fired words and serialiser of their spikes onto the output event stream.

    Latency: a word fired in cycle ``x`` (on ``i``) has its first spike on ``o`` in cycle
    ``x + 7`` at the earliest, and not before the cycle after the previous output beat; a
    sweep's last word in cycle ``x`` lets the marker leave in ``x + 7`` at the earliest, after
    that word's spikes. ``status.swept`` is raised in ``x + 2``. Throughput: one output event per
    cycle, no bubbles between the words and steps.

    Parameters
    ----------
    n_out, lanes : int
        Neurons and lanes of the layer.

    Members
    -------
    i : In(stream.Signature(spike_word_layout, always_ready=True))
        Fired words of one sweep, in ascending word order; at most two sweeps may be held (the
        sender starts a sweep only when fewer than two markers are outstanding). ``busy`` is the
        step's busy flag so far without the spikes, which the emitter ORs in.
    o : Out(stream.Signature(event_layout))
        Output events and markers (from registers).
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

    @property
    def queue_depth(self) -> int:
        """Entries of the queue, its head included: two sweeps of ``W`` words."""
        return 2 * self.words

    def _entry_layout(self) -> data.StructLayout:
        lanes = self.lanes
        return data.StructLayout(
            {
                "base": unsigned(self.index_width + lanes.bit_length()),  # word · lanes
                "fired": unsigned(lanes),  # lanes that spiked
                "rest": unsigned(lanes),  # ... but the lowest
                "negative": unsigned(lanes),  # ... with -1
                "beats": range(lanes + 2),  # spikes + marker
                "pair_count": data.ArrayLayout(unsigned(2), -(-lanes // 2)),  # per two lanes
                "pair_any": unsigned(-(-lanes // 2)),  # a spike in the pair
                "pair_both": unsigned(-(-lanes // 2)),  # two spikes in the pair
                "single": 1,  # beats == 1
                "marker": 1,  # the marker follows the spikes
                "busy": 1,  # the marker's busy flag
            }
        )

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        layout = self._entry_layout()
        # stage 1: the fired word, registered
        word = Signal(self.i.payload.shape(), name="word_in")
        word_valid = Signal(name="word_valid")
        m.d.sync += [word.eq(self.i.payload), word_valid.eq(self.i.valid)]
        fired = Cat(word.spikes[k] != 0 for k in range(lanes))
        negative = Cat(word.spikes[k][-1] for k in range(lanes))
        entry = Signal(layout, name="entry")
        m.d.comb += [
            entry.base.eq(word.word * lanes),
            entry.fired.eq(fired),
            entry.negative.eq(negative),
            entry.marker.eq(word.last),
            entry.busy.eq(word.busy),
        ]
        for g in range(-(-lanes // 2)):  # spikes per two lanes: one LUT level
            pair = fired[2 * g : 2 * g + 2]
            m.d.comb += [
                entry.pair_count[g].eq(sum(pair[k] for k in range(len(pair)))),
                entry.pair_any[g].eq(pair.any()),
                entry.pair_both[g].eq(pair.all() if len(pair) == 2 else 0),
            ]
        # stage 2: the entry, registered (its beat count is an adder tree over the lanes)
        entry_reg = Signal(layout, name="entry_reg")
        valid2 = Signal(name="word_valid2")
        m.d.sync += [entry_reg.eq(entry), valid2.eq(word_valid)]
        # the step's busy flag: the neuron array's (its marker and drives) or any spike
        spiked = Signal(name="spiked")  # a spike in an earlier word of the sweep
        any_spike = entry_reg.pair_any.any()  # (over lanes / 2 bits)
        push = valid2 & (any_spike | entry_reg.marker)
        busy = entry_reg.busy | spiked | any_spike
        with m.If(valid2):
            m.d.sync += spiked.eq(~entry_reg.marker & (spiked | any_spike))
        m.d.comb += [
            self.status.swept.eq(valid2 & entry_reg.marker),
            self.status.swept_busy.eq(busy),
        ]
        # stage 3: the entry with its beat count (an adder tree over the lanes), registered
        count = _tree_sum([entry_reg.pair_count[g] for g in range(len(entry_reg.pair_any))])
        pairs = entry_reg.pair_any
        one_pair = Cat(pairs[g] & ~(pairs & ~(1 << g)).any() for g in range(len(pairs))).any()
        one = one_pair & ~entry_reg.pair_both.any()  # exactly one spike
        queued = Signal(layout, name="queued")
        queue_push = Signal(name="queue_push")
        m.d.sync += [
            queued.eq(entry_reg),
            queued.beats.eq(count + entry_reg.marker),
            queued.rest.eq(entry_reg.fired & (entry_reg.fired - 1)),
            queued.single.eq(Mux(entry_reg.marker, ~pairs.any(), one)),
            queued.busy.eq(busy),
            queue_push.eq(push),
        ]
        head_raw, head_valid, pop = self._queue(m, queued, queue_push)
        # stage 4: the serialiser picks the head's next beat (its lane) into the beat register
        head = layout(head_raw)
        left_reg = Signal(lanes, name="left")  # lanes of the head not sent yet (if not fresh)
        fresh = Signal(init=1, name="fresh")  # no beat of the head sent yet
        done = Signal(range(lanes + 2), name="done")  # beats of the head sent
        final_next = Signal(name="final_next")  # the head's next beat is its last (if not fresh)
        final = Mux(fresh, head.single, final_next)
        left = Mux(fresh, head.fired, left_reg)
        lane = _lowest(m, left, "lane")
        beat_valid = Signal(name="beat_valid")
        beat_lane = Signal.like(lane, name="beat_lane")
        beat_base = Signal.like(head.base, name="beat_base")
        beat_negative = Signal.like(head.negative, name="beat_negative")
        beat_marker = Signal(name="beat_marker")
        beat_busy = Signal(name="beat_busy")
        # stage 5: the output register, from the beat register, with a skid register that
        # takes the beat when the output stalls: the stages above see only whether the skid
        # register is full (a register), never ``o.ready``
        skid_valid = Signal(name="skid_valid")
        take = ~beat_valid | ~skid_valid  # the beat register is free after this cycle
        beat = take & head_valid
        m.d.comb += pop.eq(beat & final)
        with m.If(take):
            m.d.sync += beat_valid.eq(head_valid)
        with m.If(beat):  # (only a valid head: the queue memory has no initial contents)
            m.d.sync += [
                beat_lane.eq(lane),
                beat_base.eq(head.base),
                beat_negative.eq(head.negative),
                beat_marker.eq(head.marker & final),
                beat_busy.eq(head.busy),
            ]
        with m.If(beat):
            with m.If(final):
                m.d.sync += [fresh.eq(1), done.eq(0)]
            with m.Else():
                m.d.sync += [
                    # the lowest lane cleared (for a fresh head, from the queue)
                    left_reg.eq(Mux(fresh, head.rest, left_reg & (left_reg - 1))),
                    fresh.eq(0),
                    done.eq(done + 1),
                    final_next.eq(done + 2 == head.beats),
                ]
        index = Signal.like(self.o.payload.index, name="index")
        if lanes & (lanes - 1) == 0:  # the base has zero low bits
            m.d.comb += index.eq(beat_base | beat_lane)
        else:
            m.d.comb += index.eq(beat_base + beat_lane)
        negative = beat_negative.bit_select(beat_lane, 1)
        out = Signal.like(self.o.payload, name="beat_out")
        skid = Signal.like(self.o.payload, name="skid")
        m.d.comb += [
            out.marker.eq(beat_marker),
            out.busy.eq(beat_marker & beat_busy),
            out.index.eq(Mux(beat_marker, 0, index)),
            out.value.eq(Mux(beat_marker, 0, Mux(negative, -1, 1))),
        ]
        with m.If(~self.o.valid | self.o.ready):  # the output register is free
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(beat_valid)
                with m.If(beat_valid):
                    m.d.sync += self.o.payload.eq(out)
        with m.Elif(beat_valid & ~skid_valid):  # the output stalls: the beat waits aside
            m.d.sync += [skid_valid.eq(1), skid.eq(out)]
        m.d.comb += self.status.sent.eq(self.o.valid & self.o.ready & self.o.payload.marker)
        return m

    def _queue(self, m: Module, entry, push):
        """A first-word-fall-through queue of entries with a registered head.

        The sender never pushes into a full queue (the sequencer's credit, see
        :attr:`queue_depth`), so there is no ``w_rdy``. Returns ``(head, head_valid, pop)``.
        Latency: an entry pushed in cycle ``x`` into an empty queue is the head in ``x + 2``.
        """
        depth = max(1, self.queue_depth - 1)  # the head register holds one entry
        width = len(entry.as_value())
        m.submodules.queue = mem = memory.Memory(shape=width, depth=depth, init=[])
        wp, rp = mem.write_port(), mem.read_port()
        produce = Signal(range(depth), name="produce")
        consume = Signal(range(depth), name="consume")
        level = Signal(range(depth + 1), name="level")  # entries in the memory
        head_valid = Signal(name="head_valid")
        pop = Signal(name="pop")
        fetch = (level != 0) & (~head_valid | pop)
        m.d.comb += [
            wp.addr.eq(produce),
            wp.data.eq(entry),
            wp.en.eq(push),
            rp.addr.eq(consume),
            rp.en.eq(fetch),
        ]
        with m.If(push):
            m.d.sync += produce.eq(Mux(produce == depth - 1, 0, produce + 1))
        with m.If(fetch):
            m.d.sync += consume.eq(Mux(consume == depth - 1, 0, consume + 1))
        m.d.sync += level.eq(level + push - fetch)
        with m.If(fetch):
            m.d.sync += head_valid.eq(1)
        with m.Elif(pop):
            m.d.sync += head_valid.eq(0)
        return rp.data, head_valid, pop


def _tree_sum(values):
    """Sum of ``values`` as a balanced tree of adders (a chain would be ``len(values)`` deep)."""
    values = list(values)
    while len(values) > 1:
        pairs = [values[k] + values[k + 1] for k in range(0, len(values) - 1, 2)]
        values = pairs + values[len(values) - len(values) % 2 :]
    return values[0]
