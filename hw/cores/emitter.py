"""Spike emitter: turns fired words into output events ``(index, s)`` (``s = ±1``, graded:
``±2^k``) and the step's marker.

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
drains, and backpressure on ``o`` only stalls the core when a third sweep is due. It stores only
what the serialiser reads and cannot rebuild cheaply (:func:`queue_layout`: 33 bits at 8 lanes,
one DP16KD for up to 512 entries).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.fifo import FlagFIFO
from spikezip.hw.cores.layouts import event_layout, spike_word_layout, stream_layout
from spikezip.hw.cores.sequencer import StepStatus
from spikezip.hw.model.cycle_model import (
    OUTPUT_BUFFER_LATENCY,
    PACKER_LATENCY,
    PACKER_STATUS_LATENCY,
    SERIALISER_LATENCY,
    LayerTiming,
    check_timing,
)
from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat

__all__ = [
    "OutputBuffer",
    "Serialiser",
    "SpikeEmitter",
    "WideSerialiser",
    "WordPacker",
    "entry_layout",
    "queue_layout",
]


def _lowest(m: Module, bits, name: str) -> Signal:
    """Index of the lowest set bit of ``bits`` (0 when none is set)."""
    index = Signal(range(max(2, len(bits))), name=name)
    for k in reversed(range(len(bits))):
        with m.If(bits[k]):
            m.d.comb += index.eq(k)
    return index


def _clear_lowest(bits) -> Value:
    """``bits`` without their lowest set bit, as an OR of the bits below each (no carry chain)."""
    return Cat(bits[k] & bits[:k].any() if k else 0 for k in range(len(bits)))


def entry_layout(
    *,
    index_width: int,
    lanes: int,
    value_width: int = SPIKE_VALUE_WIDTH,
    registered_lane: bool = False,
) -> data.StructLayout:
    """A queue entry: one fired word with spikes, or a sweep's last word (with the marker).
    Graded spikes (``value_width`` above 2 bits) also carry each lane's value; with
    ``registered_lane`` (:attr:`hw.model.cycle_model.Pipeline.registered_emitter`) the entry also
    names its lowest two spiking lanes and the lanes after them."""
    pairs = -(-lanes // 2)
    values = {}
    if value_width > SPIKE_VALUE_WIDTH:
        values = {"values": data.ArrayLayout(signed(value_width), lanes)}
    if registered_lane:
        lane = range(max(2, lanes))
        values |= {"lane0": lane, "lane1": lane, "after": unsigned(lanes)}
    return data.StructLayout(
        {
            **values,
            "base": unsigned(index_width + lanes.bit_length()),  # word · lanes
            "fired": unsigned(lanes),  # lanes that spiked
            "rest": unsigned(lanes),  # ... but the lowest
            "negative": unsigned(lanes),  # ... with -1
            "beats": range(lanes + 2),  # spikes + marker
            "pair_count": data.ArrayLayout(unsigned(2), pairs),  # per two lanes
            "pair_any": unsigned(pairs),  # a spike in the pair
            "pair_both": unsigned(pairs),  # two spikes in the pair
            "single": 1,  # beats == 1
            "marker": 1,  # the marker follows the spikes
            "busy": 1,  # the marker's busy flag
        }
    )


def _base_shift(lanes: int) -> int:
    """Zero low bits of an entry's ``base`` (``word · lanes``): ``log2 lanes`` for a power of
    two, else 0."""
    return (lanes.bit_length() - 1) if lanes & (lanes - 1) == 0 else 0


def queue_layout(
    *,
    index_width: int,
    lanes: int,
    value_width: int = SPIKE_VALUE_WIDTH,
    registered_lane: bool = False,
) -> data.StructLayout:
    """What the emitter's queue stores of an :func:`entry_layout`: ``base`` without its zero low
    bits (``word``), and none of the fields the serialiser never reads (``pair_*``, used by the
    packer alone) or rebuilds from ``fired`` at the queue's head (``rest``). At 8 lanes: 33 bits
    instead of 60, so a queue of ``2·W ≤ 512`` entries is one DP16KD (docs/cnn.md §13). With
    ``registered_lane``, ``lane0``, ``lane1`` and ``after`` instead of ``fired`` (39 bits at 8
    lanes)."""
    entry = entry_layout(
        index_width=index_width,
        lanes=lanes,
        value_width=value_width,
        registered_lane=registered_lane,
    )
    spiked = ("lane0", "lane1", "after") if registered_lane else ("fired",)
    keep = ("values", *spiked, "negative", "beats", "single", "marker", "busy")
    base = entry["base"].shape
    return data.StructLayout(
        {
            "word": unsigned(max(1, base.width - _base_shift(lanes))),
            **{name: entry[name].shape for name in keep if name in entry.members},
        }
    )


class WordPacker(wiring.Component):
    """Turns fired words into queue entries, and reports the sweeps' ends and busy flags.

    Stage 1 registers the word; stage 2 the entry (its spikes per pair of lanes); stage 3 the
    entry with its beat count (an adder tree over the lanes) and the step's busy flag, pushed on
    ``o`` if it has spikes or ends a sweep. Latency 3 (:data:`hw.model.cycle_model.PACKER_LATENCY`);
    ``swept`` is raised 2 cycles after a sweep's last word
    (:data:`hw.model.cycle_model.PACKER_STATUS_LATENCY`). Throughput one word per cycle; it never
    waits: the sequencer's credit keeps the queue from overflowing (``o.ready`` is ignored).

    Parameters
    ----------
    timing : hw.model.cycle_model.LayerTiming
    index_width : int
        Bits of an output event's index.
    value_width : int
        Signed bits of a spike (2: ±1; graded neurons: ``spike_value_width(spike_max)``).

    Members
    -------
    i : In(stream.Signature(spike_word_layout, always_ready=True))
    o : Out(stream.Signature(entry_layout))
    swept : Out(1)
        The last word of a sweep is in stage 2 ...
    swept_busy : Out(1)
        ... and this is the step's busy flag (the array's, or any spike of the sweep).
    """

    def __init__(
        self, *, timing: LayerTiming, index_width: int, value_width: int = SPIKE_VALUE_WIDTH
    ) -> None:
        self._timing = timing
        words, lanes = timing.words, timing.lanes
        self._registered_lane = _registered_lane(timing)
        entry = entry_layout(
            index_width=index_width,
            lanes=lanes,
            value_width=value_width,
            registered_lane=self._registered_lane,
        )
        word = spike_word_layout(words=words, lanes=lanes, value_width=value_width)
        super().__init__(
            {
                "i": In(stream.Signature(word, always_ready=True)),
                "o": Out(stream.Signature(entry)),
                "swept": Out(1),
                "swept_busy": Out(1),
            }
        )

    @property
    def latency(self) -> int:
        return PACKER_LATENCY

    @property
    def status_latency(self) -> int:
        return PACKER_STATUS_LATENCY

    def elaborate(self, platform):
        m = Module()
        lanes, layout = self._timing.lanes, self.o.payload.shape()
        # stage 1: the fired word, registered
        word = Signal(self.i.payload.shape(), name="word_in")
        word_valid = Signal(name="word_valid")
        m.d.sync += [word.eq(self.i.payload), word_valid.eq(self.i.valid)]
        fired = Cat(word.spikes[k] != 0 for k in range(lanes))
        entry = Signal(layout, name="entry")
        m.d.comb += [
            entry.base.eq(word.word * lanes),
            entry.fired.eq(fired),
            entry.negative.eq(Cat(word.spikes[k][-1] for k in range(lanes))),
            entry.marker.eq(word.last),
            entry.busy.eq(word.busy),
        ]
        if "values" in layout.members:
            m.d.comb += entry.values.eq(word.spikes)
        for g in range(-(-lanes // 2)):  # spikes per two lanes: one LUT level
            pair = fired[2 * g : 2 * g + 2]
            m.d.comb += [
                entry.pair_count[g].eq(sum(pair[k] for k in range(len(pair)))),
                entry.pair_any[g].eq(pair.any()),
                entry.pair_both[g].eq(pair.all() if len(pair) == 2 else 0),
            ]
        # stage 2: the entry, registered; the step's busy flag: the array's or any spike
        entry_reg = Signal(layout, name="entry_reg")
        valid2 = Signal(name="word_valid2")
        m.d.sync += [entry_reg.eq(entry), valid2.eq(word_valid)]
        spiked = Signal(name="spiked")  # a spike in an earlier word of the sweep
        pairs = entry_reg.pair_any
        any_spike = pairs.any()  # (over lanes / 2 bits)
        busy = entry_reg.busy | spiked | any_spike
        with m.If(valid2):
            m.d.sync += spiked.eq(~entry_reg.marker & (spiked | any_spike))
        m.d.comb += [self.swept.eq(valid2 & entry_reg.marker), self.swept_busy.eq(busy)]
        # stage 3: the entry with its beat count (an adder tree over the lanes), registered
        count = _tree_sum([entry_reg.pair_count[g] for g in range(len(pairs))])
        one_pair = Cat(pairs[g] & ~(pairs & ~(1 << g)).any() for g in range(len(pairs))).any()
        one = one_pair & ~entry_reg.pair_both.any()  # exactly one spike
        m.d.sync += [
            self.o.payload.eq(entry_reg),
            self.o.payload.beats.eq(count + entry_reg.marker),
            self.o.payload.rest.eq(entry_reg.fired & (entry_reg.fired - 1)),
            self.o.payload.single.eq(Mux(entry_reg.marker, ~pairs.any(), one)),
            self.o.payload.busy.eq(busy),
            self.o.valid.eq(valid2 & (any_spike | entry_reg.marker)),
        ]
        if self._registered_lane:  # the lowest two spiking lanes, and the lanes after them
            # (each a function of the registered lanes alone: no carry chain)
            rest = _clear_lowest(entry_reg.fired)
            m.d.sync += [
                self.o.payload.lane0.eq(_lowest(m, entry_reg.fired, "lane0")),
                self.o.payload.lane1.eq(_lowest(m, rest, "lane1")),
                self.o.payload.after.eq(_clear_lowest(rest)),
            ]
        return m


class Serialiser(wiring.Component):
    """Sends the beats of the queue's head one per cycle: its spikes lowest lane first (a
    priority encoder over the lanes), then its marker.

    It takes the next entry in the same cycle as the head's final beat, so the entries of
    consecutive words and steps leave without bubbles. Everything it decides from is a register
    or the queue's registered head. Latency 1 (:data:`hw.model.cycle_model.SERIALISER_LATENCY`): the
    head's first beat is on ``o`` (the beat register) a cycle after it is on ``i``.

    Parameters
    ----------
    index_width, lanes : int
    value_width : int
        Signed bits of a spike (above 2: graded values from the entry).
    registered_lane : bool
        :attr:`hw.model.cycle_model.Pipeline.registered_emitter`: the head names its lowest two
        spiking lanes (``lane0``, ``lane1``) and the lanes after them (``after``); the lane of the
        next beat is ``lane0`` for a fresh head, else a register (``lane_next``, loaded with
        ``lane1`` or the lowest of ``left``), so no priority encoder follows ``fresh``. The same
        beats in the same cycles.

    Members
    -------
    i : In(stream.Signature(entry_layout))
        The queue's head; ``ready`` with its final beat.
    o : Out(stream.Signature(event_layout))
        The beat register, as an output event or marker.
    """

    def __init__(
        self,
        *,
        index_width: int,
        lanes: int,
        value_width: int = SPIKE_VALUE_WIDTH,
        registered_lane: bool = False,
    ) -> None:
        self._lanes, self._graded = lanes, value_width > SPIKE_VALUE_WIDTH
        self._registered_lane = registered_lane
        entry = entry_layout(
            index_width=index_width,
            lanes=lanes,
            value_width=value_width,
            registered_lane=registered_lane,
        )
        super().__init__(
            {
                "i": In(stream.Signature(entry)),
                "o": Out(stream.Signature(event_layout(index_width, value_width))),
            }
        )

    @property
    def latency(self) -> int:
        return SERIALISER_LATENCY

    def elaborate(self, platform):
        m = Module()
        lanes, head = self._lanes, self.i.payload
        left_reg = Signal(lanes, name="left")  # lanes of the head not sent yet (if not fresh)
        fresh = Signal(init=1, name="fresh")  # no beat of the head sent yet
        done = Signal(range(lanes + 2), name="done")  # beats of the head sent
        final_next = Signal(name="final_next")  # the head's next beat is its last (if not fresh)
        final = Mux(fresh, head.single, final_next)
        if self._registered_lane:  # (left: the lanes after lane_next)
            lane_next = Signal(range(max(2, lanes)), name="lane_next")
            lane = Mux(fresh, head.lane0, lane_next)
        else:
            lane = _lowest(m, Mux(fresh, head.fired, left_reg), "lane")
        beat_lane = Signal(range(max(2, lanes)), name="beat_lane")
        beat_base = Signal.like(head.base, name="beat_base")
        beat_negative = Signal.like(head.negative, name="beat_negative")
        beat_marker, beat_busy = Signal(name="beat_marker"), Signal(name="beat_busy")
        take = ~self.o.valid | self.o.ready  # the beat register is free after this cycle
        beat = take & self.i.valid
        m.d.comb += self.i.ready.eq(beat & final)
        with m.If(take):
            m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(beat):  # (only a valid head: the queue memory has no initial contents)
            m.d.sync += [
                beat_lane.eq(lane),
                beat_base.eq(head.base),
                beat_negative.eq(head.negative),
                beat_marker.eq(head.marker & final),
                beat_busy.eq(head.busy),
            ]
            with m.If(final):
                m.d.sync += [fresh.eq(1), done.eq(0)]
            with m.Else():
                if self._registered_lane:
                    left_lowest = _lowest(m, left_reg, "left_lowest")
                    m.d.sync += [
                        lane_next.eq(Mux(fresh, head.lane1, left_lowest)),
                        left_reg.eq(Mux(fresh, head.after, left_reg & (left_reg - 1))),
                    ]
                else:
                    # the lowest lane cleared (for a fresh head, from the queue)
                    m.d.sync += left_reg.eq(Mux(fresh, head.rest, left_reg & (left_reg - 1)))
                m.d.sync += [
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
        value = Mux(negative, -1, 1)
        if self._graded:  # the lane's value, registered with the beat
            beat_values = Signal.like(head.values, name="beat_values")
            with m.If(beat):
                m.d.sync += beat_values.eq(head.values)
            value = beat_values[beat_lane]
        m.d.comb += [
            self.o.payload.marker.eq(beat_marker),
            self.o.payload.busy.eq(beat_marker & beat_busy),
            self.o.payload.index.eq(Mux(beat_marker, 0, index)),
            self.o.payload.value.eq(Mux(beat_marker, 0, value)),
        ]
        return m


class WideSerialiser(wiring.Component):
    """:class:`Serialiser` for ``width = k > 1`` spikes per beat (``hw.cores.layouts.beat_layout``):
    each beat carries the ``k`` lowest lanes of the head not sent yet (a chain of ``k`` priority
    encoders), so a word with ``n`` spikes costs ``ceil(n / k)`` beats; the marker follows in its
    own beat. It takes the next entry in the same cycle as the head's final beat. Latency 1
    (:data:`hw.model.cycle_model.SERIALISER_LATENCY`), as the serialiser's.

    Parameters
    ----------
    index_width, lanes : int
    value_width : int
        Signed bits of a spike (above 2: graded values from the entry).
    width : int
        Spikes per beat, ``k ≥ 2``.

    Members
    -------
    i : In(stream.Signature(entry_layout))
        The queue's head; ``ready`` with its final beat.
    o : Out(stream.Signature(beat_layout))
        The beat register.
    """

    def __init__(
        self, *, index_width: int, lanes: int, value_width: int = SPIKE_VALUE_WIDTH, width: int
    ) -> None:
        self._lanes, self._graded, self._width = lanes, value_width > SPIKE_VALUE_WIDTH, width
        entry = entry_layout(index_width=index_width, lanes=lanes, value_width=value_width)
        super().__init__(
            {
                "i": In(stream.Signature(entry)),
                "o": Out(stream.Signature(stream_layout(index_width, value_width, width))),
            }
        )

    @property
    def latency(self) -> int:
        return SERIALISER_LATENCY

    def elaborate(self, platform):
        m = Module()
        lanes, head, k = self._lanes, self.i.payload, self._width
        left_reg = Signal(lanes, name="left")  # lanes of the head not sent yet (if not fresh)
        fresh = Signal(init=1, name="fresh")  # no beat of the head sent yet
        count_reg = Signal(range(lanes + 1), name="spikes_left")  # (if not fresh)
        pending = Signal(lanes, name="pending")
        count = Signal(range(lanes + 1), name="pending_count")  # spikes of the head not sent
        m.d.comb += [
            pending.eq(Mux(fresh, head.fired, left_reg)),
            count.eq(Mux(fresh, head.beats - head.marker, count_reg)),
        ]
        # slot of every pending lane: the count of pending lanes below it (an adder tree per lane,
        # shallower than k priority encoders in a chain)
        slot_of = []
        for i in range(lanes):
            slot = Signal(range(lanes + 1), name=f"below{i}")
            m.d.comb += slot.eq(_tree_sum([pending[b] for b in range(i)]) if i else 0)
            slot_of.append(slot)
        lane_sel, has = [], []
        for j in range(k):  # the lane of slot j: the pending lane with j pending lanes below
            hit = [pending[i] & (slot_of[i] == j) for i in range(lanes)]
            lane = Signal(range(max(2, lanes)), name=f"lane{j}")
            m.d.comb += lane.eq(_or_encode(hit))
            lane_sel.append(lane)
            has.append(Cat(*hit).any())
        rest = Cat(pending[i] & (slot_of[i] >= k) for i in range(lanes))  # lanes after this beat
        spikes = count != 0
        final = ~spikes | ((count <= k) & ~head.marker)  # the marker's beat, or the last spikes
        beat_lanes = [Signal.like(sel, name=f"beat_lane{j}") for j, sel in enumerate(lane_sel)]
        beat_has = Signal(k, name="beat_has")
        beat_base = Signal.like(head.base, name="beat_base")
        beat_negative = Signal.like(head.negative, name="beat_negative")
        beat_marker, beat_busy = Signal(name="beat_marker"), Signal(name="beat_busy")
        beat_count = Signal(range(k + 1), name="beat_count")
        take = ~self.o.valid | self.o.ready  # the beat register is free after this cycle
        beat = take & self.i.valid
        m.d.comb += self.i.ready.eq(beat & final)
        with m.If(take):
            m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(beat):
            m.d.sync += [
                *(r.eq(sel) for r, sel in zip(beat_lanes, lane_sel, strict=True)),
                beat_has.eq(Cat(*has)),
                beat_count.eq(Mux(count > k, k, count)),
                beat_base.eq(head.base),
                beat_negative.eq(head.negative),
                beat_marker.eq(~spikes),
                beat_busy.eq(head.busy),
            ]
            with m.If(final):
                m.d.sync += fresh.eq(1)
            with m.Else():
                m.d.sync += [
                    left_reg.eq(rest),
                    count_reg.eq(Mux(count > k, count - k, 0)),
                    fresh.eq(0),
                ]
        if self._graded:  # the lanes' values, registered with the beat
            beat_values = Signal.like(head.values, name="beat_values")
            with m.If(beat):
                m.d.sync += beat_values.eq(head.values)
        for j in range(k):
            lane = beat_lanes[j]
            if lanes & (lanes - 1) == 0:  # the base has zero low bits
                index = beat_base | lane
            else:
                index = beat_base + lane
            if self._graded:
                value = beat_values[lane]
            else:
                value = Mux(beat_negative.bit_select(lane, 1), -1, 1)
            used = beat_has[j] & ~beat_marker
            m.d.comb += [
                self.o.payload.index[j].eq(Mux(used, index, 0)),
                self.o.payload.value[j].eq(Mux(used, value, 0)),
            ]
        m.d.comb += [
            self.o.payload.marker.eq(beat_marker),
            self.o.payload.busy.eq(beat_marker & beat_busy),
            self.o.payload.count.eq(Mux(beat_marker, 0, beat_count)),
        ]
        return m


def _or_encode(hits):
    """The index of the one set bit of ``hits`` (at most one is set), as an OR per index bit."""
    width = max(1, (len(hits) - 1).bit_length())
    return Cat(
        Cat(*(h for i, h in enumerate(hits) if i >> b & 1)).any() if len(hits) > 1 else 0
        for b in range(width)
    )


class OutputBuffer(wiring.Component):
    """The output register, with a skid register that takes a beat when the output stalls.

    ``i.ready`` is "the skid register is empty", a register: the stages before never see
    ``o.ready``. Latency 1 (:data:`hw.model.cycle_model.OUTPUT_BUFFER_LATENCY`); throughput one beat
    per cycle.

    Members
    -------
    i : In(stream.Signature(event_layout))
    o : Out(stream.Signature(event_layout))
        From registers.
    """

    def __init__(self, *, layout: data.StructLayout) -> None:
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    @property
    def latency(self) -> int:
        return OUTPUT_BUFFER_LATENCY

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal(name="skid_valid")
        skid = Signal.like(self.o.payload, name="skid")
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):  # the output register is free
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(self.i.valid)
                with m.If(self.i.valid):
                    m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(self.i.valid & ~skid_valid):  # the output stalls: the beat waits aside
            m.d.sync += [skid_valid.eq(1), skid.eq(self.i.payload)]
        return m


class SpikeEmitter(wiring.Component):
    """Queue of fired words and serialiser of their spikes onto the output event stream.

    Blocks: :class:`WordPacker` → queue (``lib.fifo.SyncFIFOBuffered``; ``hw.cores.fifo.FlagFIFO``
    with ``Pipeline.registered_emitter``) → :class:`Serialiser`
    → :class:`OutputBuffer`, connected stream to stream.

    With ``timing.emit_width = k > 1`` the serialiser is a :class:`WideSerialiser` and ``o``
    carries up to ``k`` spikes of one word per beat (``hw.cores.layouts.beat_layout``).

    Latency ``timing.emitter_latency`` (7: packer 3, queue 2, serialiser 1, output register 1):
    a word fired in cycle ``x`` (on ``i``) has its first spike on ``o`` in cycle ``x + 7`` at the
    earliest, and not before the cycle after the previous output beat; a sweep's last word in
    cycle ``x`` lets the marker leave in ``x + 7`` at the earliest, after that word's spikes.
    ``status.swept`` is raised in ``x + 2``. Throughput: one output event per cycle, no bubbles
    between the words and steps.

    Parameters
    ----------
    timing : hw.model.cycle_model.LayerTiming
        The core's (gives ``n_out``, ``lanes`` and ``W``).
    value_width : int
        Signed bits of a spike: 2 (±1), or ``spike_value_width(spike_max)`` for graded neurons
        (events then carry ``±2^k``).

    Members
    -------
    i : In(stream.Signature(spike_word_layout, always_ready=True))
        Fired words of one sweep, in ascending word order; at most two sweeps may be held (the
        sender starts a sweep only when fewer than two markers are outstanding). ``busy`` is the
        step's busy flag so far without the spikes, which the emitter ORs in.
    o : Out(stream.Signature(event_layout))
        Output events and markers (from registers); ``beat_layout`` with ``emit_width > 1``.
    status : Out(StepStatus())
        A sweep's last word arrived (with its busy flag); a marker left.
    """

    def __init__(self, *, timing: LayerTiming, value_width: int = SPIKE_VALUE_WIDTH) -> None:
        self._timing = check_timing(timing)
        EventFormat(1, value_width)  # validates the width
        self._value_width = value_width
        words, lanes = timing.words, timing.lanes
        word = spike_word_layout(words=words, lanes=lanes, value_width=value_width)
        out = stream_layout(self.index_width, value_width, timing.emit_width)
        super().__init__(
            {
                "i": In(stream.Signature(word, always_ready=True)),
                "o": Out(stream.Signature(out)),
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
    def latency(self) -> int:
        """Cycles from a fired word on ``i`` to its first output beat on ``o``, at the earliest."""
        return self._timing.emitter_latency

    @property
    def index_width(self) -> int:
        """Bits of an output event's index."""
        return max(1, (self._timing.n_out - 1).bit_length())

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self.index_width, self._value_width)

    @property
    def queue_depth(self) -> int:
        """Entries the queue holds at most, its head included: two sweeps of ``W`` words."""
        return 2 * self.words

    def elaborate(self, platform):
        m = Module()
        index_width, lanes = self.index_width, self.lanes
        vw = self._value_width
        m.submodules.packer = packer = WordPacker(
            timing=self._timing, index_width=index_width, value_width=vw
        )
        # SyncFIFOBuffered counts only its inner memory in w_rdy (an entry moving to its output
        # register in the same cycle is not credited): one entry more than the sender's credit
        # allows keeps w_rdy high whenever the packer writes (with W = 1 a second entry may
        # follow the first into an empty queue in the next cycle)
        registered_lane = _registered_lane(self._timing)
        stored = queue_layout(
            index_width=index_width, lanes=lanes, value_width=vw, registered_lane=registered_lane
        )
        width = Shape.cast(stored).width
        if registered_lane:  # the same queue cycle for cycle, its flags registers
            queue = FlagFIFO(width=width, depth=self.queue_depth + 1)
        else:
            queue = fifo.SyncFIFOBuffered(width=width, depth=self.queue_depth + 1)
        m.submodules.queue = queue
        if self._timing.emit_width == 1:
            m.submodules.serialiser = serialiser = Serialiser(
                index_width=index_width,
                lanes=lanes,
                value_width=vw,
                registered_lane=registered_lane,
            )
        else:
            m.submodules.serialiser = serialiser = WideSerialiser(
                index_width=index_width, lanes=lanes, value_width=vw, width=self._timing.emit_width
            )
        m.submodules.output = output = OutputBuffer(layout=self.o.payload.shape())
        wiring.connect(m, wiring.flipped(self.i), packer.i)
        # the queue stores only what the serialiser reads and cannot derive cheaply (a narrower
        # memory: one block RAM of 36 bits instead of two at 8 lanes); the rest is rebuilt at
        # its registered head (:func:`queue_layout`)
        put, head = stored(queue.w_stream.payload), stored(queue.r_stream.payload)
        entry = packer.o.payload
        shift = _base_shift(lanes)
        m.d.comb += [
            queue.w_stream.valid.eq(packer.o.valid),
            packer.o.ready.eq(queue.w_stream.ready),
            put.word.eq(entry.base >> shift),
            *(put[name].eq(entry[name]) for name in stored.members if name != "word"),
        ]
        out = serialiser.i.payload
        m.d.comb += [
            serialiser.i.valid.eq(queue.r_stream.valid),
            queue.r_stream.ready.eq(serialiser.i.ready),
            out.base.eq(head.word << shift),
            *([] if registered_lane else [out.rest.eq(head.fired & (head.fired - 1))]),
            *(out[name].eq(head[name]) for name in stored.members if name != "word"),
        ]
        wiring.connect(m, serialiser.o, output.i)
        wiring.connect(m, output.o, wiring.flipped(self.o))
        m.d.comb += [
            self.status.swept.eq(packer.swept),
            self.status.swept_busy.eq(packer.swept_busy),
            self.status.sent.eq(self.o.valid & self.o.ready & self.o.payload.marker),
        ]
        return m


def _registered_lane(timing: LayerTiming) -> bool:
    """The narrow serialiser with :attr:`hw.model.cycle_model.Pipeline.registered_emitter`."""
    return timing.pipeline.registered_emitter and timing.emit_width == 1


def _tree_sum(values):
    """Sum of ``values`` as a balanced tree of adders (a chain would be ``len(values)`` deep)."""
    values = list(values)
    while len(values) > 1:
        pairs = [values[k] + values[k + 1] for k in range(0, len(values) - 1, 2)]
        values = pairs + values[len(values) - len(values) % 2 :]
    return values[0]
