"""Sequencer of a layer core: turns the input event stream into word operations.

It holds the input in a one-beat register, or (``Pipeline.buffered_input``, a core with one event
per beat and no input map) a two-entry buffer whose ``i.ready`` is a register (so that ``i.ready``
depends on registers only, never combinationally on ``i.valid`` or the payload), and issues one
word operation per cycle:

* after reset, and after a sweep whose busy flag is 0 once the input is idle: ``INIT`` of every
  word (the next inference);
* for an input event: ``INTEGRATE`` of words ``0 … W-1``; the event is consumed with the last
  (a mapped core, :mod:`hw.model.input_map`: one pass over the map's ``span`` words from the
  event's base word, or — a convolution's map — one pass per target, read from a pass ROM one
  pass ahead so that passes follow without bubbles, the idle slots of a short pass only after
  the last; the event is consumed with the last word of its last pass, or at once if the map
  drops it);
* for an input marker: the marker is consumed together with ``FIRE`` of word 0, then words
  ``1 … W-1`` follow (the *sweep*) — but only while fewer than two steps' markers are still to
  leave on the output, because the emitter buffers two steps;
* after an input marker with ``busy = 0`` it no longer reads the input: it waits for the busy
  flag of the sweep (the step's marker busy, known when the sweep's last word is updated); while
  it is 1 it runs further sweeps on its own, and after the first sweep with ``busy = 0`` it
  re-initialises and reads the next inference's events.

``busy`` of the ``FIRE`` operations is the part of the step's busy flag known here: the input
marker's busy, or step 0 of a layer with a non-zero bias.

The operation's fields (``op``, ``word``, ``last``, ``busy``) follow from the state alone, issued
or not; only ``o.valid`` waits for the input, the credits and the idle slots (so the next stage's
operation register sees no more than ``o.valid``'s conditions in front of it).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, op_layout, stream_layout
from spikezip.hw.model.cycle_model import (
    CREDIT_LATENCY,
    EVENT_BUFFER_LATENCY,
    LayerTiming,
    check_timing,
)
from spikezip.hw.model.input_map import InputMap

__all__ = ["EventBuffer", "Sequencer", "StepCredits", "StepStatus", "WordCounter", "first_row"]


class StepStatus(wiring.Signature):
    """Progress of the steps behind the sequencer, as strobes.

    Members
    -------
    swept : Out(1)
        The last word of a sweep has been updated this cycle ...
    swept_busy : Out(1)
        ... and this is the step's busy flag.
    sent : Out(1)
        A step's marker left the layer core this cycle.
    """

    def __init__(self) -> None:
        super().__init__({"swept": Out(1), "swept_busy": Out(1), "sent": Out(1)})


class EventBuffer(wiring.Component):
    """Input register of one or two beats: ``i.ready`` depends on registers only.

    Latency 1 (:data:`hw.model.cycle_model.EVENT_BUFFER_LATENCY`): a beat accepted on ``i`` in cycle
    ``c`` is on ``o`` from ``c + 1`` (once the beats before it left). Throughput one beat per cycle.

    One entry (``entries=1``): a beat is accepted in the cycle the one held leaves
    (``i.ready = ~o.valid | o.ready``). The payload register takes ``i.payload`` whenever it is
    free, valid or not (``o.payload`` means nothing while ``o.valid`` is low), so that ``i.valid``
    is not in its enable: one logic level less between the sequencer's state and the register.

    Two entries (``entries=2``, :attr:`hw.model.cycle_model.Pipeline.buffered_input`): ``i.ready``
    is a register (not both entries full), and each entry's payload register loads from the input
    side only (its enable: ``i.valid``, ``i.ready`` and the write pointer, all registers or the
    sender's); the consumption (``o.ready``, decided by the sequencer's state) moves only the read
    pointer, the fill flags and the held beat's kind (``event``, ``marker``, ``busy``: registers).
    ``o.payload`` is the entry the read pointer names. Beat ``k`` is accepted in
    ``max(valid_k, taken_{k−1} + 1, consumed_{k−2} + 1)`` and on ``o`` from
    ``max(valid_k, consumed_{k−1}) + 1``, the cycle the one-entry register would show it.

    ``side``: a shape of data kept with each beat (``side_i`` sampled with the beat, ``side_o``
    the held beat's: a value computed from the payload as it arrives).

    Parameters
    ----------
    index_width, value_width : int
        The event format.
    entries : int
        1 or 2.

    Members
    -------
    i : In(stream.Signature(event_layout))
    o : Out(stream.Signature(event_layout))
        The beat held (``o.valid`` and the payload from registers; two entries: the read
        pointer's).
    event, marker : Out(1)
        ``o`` holds an event, a marker (from registers: no decoding of the payload).
    busy : Out(1)
        (Two entries) the held beat's busy flag, from a register.
    side_i : In(side), side_o : Out(side)
        (With ``side``) the data kept with each beat.
    """

    def __init__(
        self, *, index_width: int, value_width: int, width: int = 1, entries: int = 1, side=None
    ) -> None:
        if entries not in (1, 2):
            raise ValueError(f"entries must be 1 or 2, not {entries!r}")
        self._entries, self._side = entries, side
        layout = stream_layout(index_width, value_width, width)
        members = {
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "event": Out(1),
            "marker": Out(1),
        }
        if entries == 2:
            members["busy"] = Out(1)
        if side is not None:
            members |= {"side_i": In(side), "side_o": Out(side)}
        super().__init__(members)

    @property
    def latency(self) -> int:
        return EVENT_BUFFER_LATENCY

    @property
    def entries(self) -> int:
        return self._entries

    def elaborate(self, platform):
        m = Module()
        if self._entries == 2:
            return self._two(m)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):  # (valid or not: i.valid stays off the payload's enable)
            m.d.sync += self.o.payload.eq(self.i.payload)
            if self._side is not None:
                m.d.sync += self.side_o.eq(self.side_i)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [
                self.event.eq(~self.i.payload.marker),
                self.marker.eq(self.i.payload.marker),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += [self.o.valid.eq(0), self.event.eq(0), self.marker.eq(0)]
        return m

    def _two(self, m: Module) -> Module:
        i, o, side = self.i, self.o, self._side
        shape = i.payload.shape()
        entry = [Signal(shape, name=f"entry{j}", reset_less=True) for j in (0, 1)]
        kept = (
            [] if side is None else [Signal(side, name=f"side{j}", reset_less=True) for j in (0, 1)]
        )
        wp, rp = Signal(name="write_entry"), Signal(name="read_entry")
        full = Signal(name="full")  # both entries hold a beat
        m.d.comb += i.ready.eq(~full)
        take = i.valid & ~full
        # the payload registers: from the input side only
        for j in (0, 1):
            with m.If(take & (wp == j)):
                m.d.sync += entry[j].eq(i.payload)
                if side is not None:
                    m.d.sync += kept[j].eq(self.side_i)
        with m.If(take):
            m.d.sync += wp.eq(~wp)
        m.d.comb += o.payload.eq(Mux(rp, entry[1].as_value(), entry[0].as_value()))
        if side is not None:
            m.d.comb += self.side_o.eq(Mux(rp, kept[1], kept[0]))
        # the consumption: the pointers, the fill flags and the held beat's kind
        gone = o.valid & o.ready
        with m.If(gone):
            m.d.sync += rp.eq(~rp)
        m.d.sync += full.eq(Mux(gone, 0, full | (o.valid & take)))
        # the next head: the other entry if both are full, else the beat taken now (if any)
        nxt_valid = full | take
        nxt_marker = Mux(full, Mux(rp, entry[0].marker, entry[1].marker), i.payload.marker)
        nxt_busy = Mux(full, Mux(rp, entry[0].busy, entry[1].busy), i.payload.busy)
        with m.If(gone | ~o.valid):
            m.d.sync += [
                o.valid.eq(nxt_valid),
                self.event.eq(nxt_valid & ~nxt_marker),
                self.marker.eq(nxt_valid & nxt_marker),
                self.busy.eq(nxt_busy),
            ]
        return m


class StepCredits(wiring.Component):
    """The sweeps the sequencer started that are not finished downstream, as flags.

    Two counts of 0, 1 or 2 (as flags ≥ 1, = 2): sweeps whose marker has not left the core (the
    emitter buffers two steps), and sweeps whose busy flag is not known yet.

    Latency 1 (:data:`hw.model.cycle_model.CREDIT_LATENCY`): a strobe on ``start`` or ``status`` in
    cycle ``c`` shows on the outputs in ``c + 1``.

    Members
    -------
    start : In(1)
        A sweep starts (its first ``FIRE`` slot).
    status : In(StepStatus())
    room : Out(1)
        Fewer than two markers outstanding: a sweep may start.
    resolved : Out(1)
        Every sweep started is done (its busy flag known) ...
    busy : Out(1)
        ... and this is the busy flag of the last one.
    """

    def __init__(self) -> None:
        super().__init__(
            {
                "start": In(1),
                "status": In(StepStatus()),
                "room": Out(1),
                "resolved": Out(1),
                "busy": Out(1),
            }
        )

    @property
    def latency(self) -> int:
        return CREDIT_LATENCY

    def elaborate(self, platform):
        m = Module()
        # sweeps whose marker has not left (0, 1 or 2), as flags: ≥ 1, = 2
        inflight_1, inflight_2 = Signal(name="inflight_1"), Signal(name="inflight_2")
        # sweeps not done yet, likewise
        unresolved_1, unresolved_2 = Signal(name="unresolved_1"), Signal(name="unresolved_2")
        for one, two, down in (
            (inflight_1, inflight_2, self.status.sent),
            (unresolved_1, unresolved_2, self.status.swept),
        ):
            with m.If(self.start & ~down):
                m.d.sync += [one.eq(1), two.eq(one)]
            with m.Elif(down & ~self.start):
                m.d.sync += [one.eq(two), two.eq(0)]
        with m.If(self.status.swept):
            m.d.sync += self.busy.eq(self.status.swept_busy)
        m.d.comb += [self.room.eq(~inflight_2), self.resolved.eq(~unresolved_1)]
        return m


class WordCounter(wiring.Component):
    """The word of the next slot, and the idle slots that pad a pass to ``timing.slots``.

    Latency 1: ``word``, ``last`` and ``gap`` follow the strobes of the cycle before (from
    registers only).

    Parameters
    ----------
    timing : hw.model.cycle_model.LayerTiming
        Gives ``W`` and the pass length ``timing.slots`` (``W`` plus idle slots).

    Members
    -------
    advance : In(1)
        An operation on ``word`` is issued: the next slot is on the next word (after the last
        one: word 0, after the pass's idle slots).
    restart : In(1)
        Word 0 of a pass is issued from elsewhere: the next slot is on word 1.
    final : In(1)
        Only with ``gated``: the pass ending now is followed by the idle slots (the last pass
        of a multi-pass event; the passes before follow each other without idle slots).
    word : Out(range(W))
    last : Out(1)
        ``word`` is the last word.
    gap : Out(1)
        This slot is idle (no operation may be issued).
    """

    def __init__(
        self, *, timing: LayerTiming, extra: int = 0, from_word: bool = False, gated: bool = False
    ) -> None:
        self._timing, self._extra, self._from, self._gated = timing, extra, from_word, gated
        words = timing.words
        members = {
            "advance": In(1),
            "restart": In(1),
            "word": Out(range(words)),
            "last": Out(1, init=words == 1),
            "gap": Out(1),
        }
        if from_word:  # a pass may start on any word: ``restart`` goes on from ``start + 1``
            members |= {"start": In(range(words)), "start_last": In(1)}
        if gated:  # the idle slots follow only a pass with ``final`` (an event's last pass)
            members |= {"final": In(1)}
        super().__init__(members)

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        words, word, at_last = self._timing.words, self.word, self.last
        last = words - 1
        if self._from:  # ``start_last``: the pass began on the last word (it is over)
            after = Mux(self.start_last, 0, self.start + 1)
            with m.If(self.restart):
                m.d.sync += [word.eq(after), at_last.eq(Mux(self.start_last, 0, after == last))]
        else:
            with m.If(self.restart):
                m.d.sync += [word.eq(1 % words), at_last.eq(1 % words == last)]
        with m.Elif(self.advance):  # word + 1, wrapping after the last
            m.d.sync += [
                word.eq(Mux(at_last, 0, word + 1)),
                at_last.eq(Mux(at_last, last == 0, word == last - 1)),
            ]
        # idle slots after each pass over the words, so that operations on the same word are
        # at least min_distance cycles apart
        pad = self._timing.slots - words + self._extra
        if pad:
            gaps = Signal(range(pad + 1), name="gaps")  # idle slots still to come
            m.d.comb += self.gap.eq(gaps != 0)
            with m.If(self.gap):
                m.d.sync += gaps.eq(gaps - 1)
            if self._from:
                with m.Elif((self.advance & at_last) | (self.restart & self.start_last)):
                    m.d.sync += gaps.eq(pad)
            elif self._gated:
                with m.Elif((self.advance | self.restart) & at_last & self.final):
                    m.d.sync += gaps.eq(pad)
            else:
                with m.Elif((self.advance | self.restart) & at_last):
                    m.d.sync += gaps.eq(pad)
        return m


class Sequencer(wiring.Component):
    """Issues the word operations of a layer core from its input event stream.

    Latency: an event or marker accepted on ``i`` in cycle ``c`` is acted on from ``c + 1``
    (:attr:`latency`, the input register); a ``status`` strobe in cycle ``c`` from ``c + 1``
    (:attr:`status_latency`). Throughput: one word operation per cycle, except the idle slots
    that pad a pass to ``timing.slots`` cycles; an event takes a pass, a marker none of its own
    (it shares its cycle with the first sweep slot).

    Parameters
    ----------
    timing : hw.model.cycle_model.LayerTiming
        The core's geometry and pipeline.
    index_width, value_width : int
        Input event format.
    has_bias : bool
        The layer has a non-zero bias: step 0 is busy.
    row_input : bool
        Take each beat's first weight row (:func:`first_row`) from the ``row`` input, valid with
        ``i``, instead of computing it (the sender computed it, so that no carry chain follows
        its memory); needs the two-entry buffer (:meth:`LayerTiming.input_entries
        <hw.model.cycle_model.LayerTiming.input_entries>`). No cycle changes.

    Members
    -------
    i : In(stream.Signature(event_layout))
        Input events and markers.
    o : Out(stream.Signature(op_layout, always_ready=True))
        Word operations.
    status : In(StepStatus())
        From the emitter: sweeps done and markers sent.
    row : In(first row shape)
        Only with ``row_input``: ``first_row(i.payload.index, W)``.
    """

    def __init__(
        self,
        *,
        timing: LayerTiming,
        index_width: int,
        value_width: int,
        has_bias: bool,
        input_map: InputMap | None = None,
        row_input: bool = False,
    ) -> None:
        self._timing = check_timing(timing)
        self._row_input = bool(row_input)
        if self._row_input and timing.input_entries(input_map) != 2:
            raise ValueError("row_input needs the two-entry input buffer (buffered_input, no map)")
        self._has_bias = bool(has_bias)
        self._widths = (index_width, value_width)
        self._map = input_map
        words = timing.words
        #: events per input beat that share a pass (1: one event per beat)
        self._width = timing.input_width if timing.shares_passes else 1
        if self._width > 1 and input_map is not None:
            raise ValueError("a mapped core takes one event per beat")
        if input_map is None:
            layout = op_layout(
                words=words,
                index_width=index_width,
                value_width=value_width,
                first_row=True,
                width=self._width,
            )
        else:
            if input_map.lanes != timing.lanes:
                raise ValueError(f"input_map is for {input_map.lanes} lanes, not {timing.lanes}")
            layout = op_layout(
                words=words,
                index_width=max(1, (input_map.n_rows - 1).bit_length()),
                value_width=value_width,
                span=input_map.span,
                first_row=True,
            )
        members = {
            "i": In(stream.Signature(stream_layout(index_width, value_width, self._width))),
            "o": Out(stream.Signature(layout, always_ready=True)),
            "status": In(StepStatus()),
        }
        if self._row_input:  # the first weight row of the beat on ``i``, from the sender
            members["row"] = In(layout.members["first"])
        super().__init__(members)

    @property
    def input_map(self) -> InputMap | None:
        """The input map of a mapped core (:mod:`hw.model.input_map`), else ``None``."""
        return self._map

    @property
    def words(self) -> int:
        return self._timing.words

    @property
    def latency(self) -> int:
        """Cycles from a beat accepted on ``i`` to the first slot that may act on it."""
        return self._timing.sequencer_latency

    @property
    def status_latency(self) -> int:
        """Cycles from a ``status`` strobe to the first slot that may act on it."""
        return CREDIT_LATENCY

    def elaborate(self, platform):
        m = Module()
        index_width, value_width = self._widths
        two = self._timing.input_entries(self._map) == 2
        if two:  # (one event per beat, no map) the pass's first weight row kept with each beat
            m.submodules.buffer = buf = EventBuffer(
                index_width=index_width,
                value_width=value_width,
                entries=2,
                side=self.o.payload.first.shape(),
            )
        else:
            m.submodules.buffer = buf = EventBuffer(
                index_width=index_width, value_width=value_width, width=self._width
            )
        m.submodules.credits = credits = StepCredits()
        extra = 0 if self._map is None else self._map.sweep_extra(self._timing.min_distance)
        streams = self._map is not None and self._map.stream
        m.submodules.counter = counter = WordCounter(
            timing=self._timing, extra=extra, from_word=streams
        )
        wiring.connect(m, wiring.flipped(self.i), buf.i)
        wiring.connect(m, wiring.flipped(self.status), credits.status)
        o, event, one_word = self.o.payload, buf.o.payload, self.words == 1
        if self._width == 1:
            m.d.comb += o.value.eq(event.value)
        if self._width > 1:  # a wide beat: its events in one pass (unused slots: value 0)
            first = Signal.like(o.first, name="first_row", reset_less=True)
            for j in range(self._width):
                m.d.comb += [
                    o.value[j].eq(Mux(event.count > j, event.value[j], 0)),
                    o.index[j].eq(event.index[j]),
                ]
                with m.If(buf.i.ready):
                    m.d.sync += first[j].eq(_times(self.i.payload.index[j], self.words))
            m.d.comb += o.first.eq(first)
            passes, gap, pass_event, base = counter, counter.gap, buf.event, 0
            bound = base
            final = pass_end = None
        elif self._map is None:  # an event is a pass over all words, weight row = its index
            m.d.comb += o.index.eq(event.index)
            passes, gap, pass_event, base = counter, counter.gap, buf.event, 0
            bound = base
            # the pass's first weight word, taken with the input register (its index · W)
            if two:  # (kept with each entry; with ``row_input`` computed by the sender)
                row = self.row if self._row_input else first_row(self.i.payload.index, self.words)
                m.d.comb += buf.side_i.eq(row)
                m.d.comb += o.first.eq(buf.side_o)
            else:
                first = Signal.like(o.first, name="first_row", reset_less=True)
                with m.If(buf.i.ready):
                    m.d.sync += first.eq(_times(self.i.payload.index, self.words))
                m.d.comb += o.first.eq(first)
            final = pass_end = None
        else:  # a pass over the map's span from the event's base word, or dropped
            passes, decoded, final, pass_end, bound = self._decoder(m, buf)
            m.d.comb += o.offset.eq(passes.word)
            if "row" in decoded.shape().members:  # (the list decoder keeps no row: unused)
                m.d.comb += o.index.eq(decoded.row)
            m.d.comb += o.first.eq(decoded.first)
            gap, base = counter.gap | passes.gap, decoded.base
            pass_event = buf.event & decoded.kept
        # the state, one-hot (reset: re-initialise)
        s_sweep = Signal(init=1, name="state_sweep")
        s_acc = Signal(name="state_accumulate")
        s_wait = Signal(name="state_wait")
        sweep_op = Signal(Op, init=Op.INIT, name="sweep_op")  # at reset: re-initialise
        sweep_busy = Signal(name="sweep_busy")  # busy bit of the current sweep
        fed = Signal(name="fed")  # the current sweep's input marker was busy: input follows
        first = Signal(name="first")  # the next sweep is step 0 of an inference
        begin, begin_busy, begin_fed = Signal(), Signal(), Signal()
        begin_op = Signal(Op)
        if streams:
            # words below ``ptr`` are swept in this step already (each before the first event
            # above it); the marker's sweep covers ``ptr … W-1``
            ptr = Signal(range(self.words), name="swept_below")
            at_ptr = ptr == self.words - 1  # the marker's sweep is one word
            early, early_first = Signal(name="early_fire"), Signal(name="early_first")
            m.d.comb += [counter.start.eq(ptr), counter.start_last.eq(at_ptr)]
            m.d.comb += credits.start.eq((begin & (begin_op == Op.FIRE) & (ptr == 0)) | early_first)
            with m.If(begin):
                m.d.sync += ptr.eq(0)
        else:
            m.d.comb += credits.start.eq(begin & (begin_op == Op.FIRE))
        held_busy = buf.busy if two else event.busy  # (two entries: a register of its own)
        # the operation's fields from the state alone, whether an operation is issued or not
        # (``o.valid`` says): none of them waits for the conditions of ``o.valid``
        pass_word = passes.word if self._map is None else base + passes.word
        in_pass = s_acc & buf.event  # (an operation in the accumulate state: the event's pass)
        m.d.comb += [
            begin_op.eq(Mux(s_acc | credits.busy, Op.FIRE, Op.INIT)),
            begin_busy.eq(s_acc & (held_busy | (first & self._has_bias))),
            begin_fed.eq(s_acc & held_busy),
            o.op.eq(Mux(s_sweep, sweep_op, Mux(in_pass, Op.INTEGRATE, begin_op))),
            o.busy.eq(Mux(s_sweep, sweep_busy, begin_busy)),
        ]
        if streams:  # (the marker's sweep begins on ``ptr``)
            m.d.comb += [o.word.eq(Mux(in_pass, pass_word, Mux(s_sweep, counter.word, ptr)))]
            m.d.comb += [o.last.eq(Mux(in_pass, passes.last, Mux(s_sweep, counter.last, at_ptr)))]
        elif self._map is None:  # (one counter: a pass or a sweep begins on word 0)
            m.d.comb += [o.word.eq(counter.word), o.last.eq(counter.last)]
        else:  # (the counter of the sweeps is on word 0 outside them)
            m.d.comb += [o.word.eq(Mux(in_pass, pass_word, counter.word))]
            m.d.comb += [o.last.eq(Mux(in_pass, passes.last, counter.last))]
        with m.If(~gap):
            with m.If(s_sweep):
                m.d.comb += [self.o.valid.eq(1), counter.advance.eq(1)]
            with m.If(s_acc):
                integrate = [
                    self.o.valid.eq(1),
                    buf.o.ready.eq(passes.last if final is None else passes.last & final),
                    passes.advance.eq(1),
                ]
                if pass_end is not None:  # (the event's pass list moves on after each pass)
                    integrate.append(pass_end.eq(passes.last))
                if streams:  # a complete word not swept yet (below the event's bound): sweep it
                    # first (``bound``: the event's, held through its passes, ``≤`` every pass)
                    m.d.comb += early.eq(pass_event & (bound > ptr))
                    with m.If(early):
                        # (the step's first sweep slot takes the emitter's room, as a marker's)
                        with m.If((ptr != 0) | credits.room):
                            m.d.comb += [self.o.valid.eq(1), o.op.eq(Op.FIRE), o.word.eq(ptr)]
                            m.d.comb += [o.busy.eq(first & self._has_bias), o.last.eq(0)]
                            m.d.comb += early_first.eq(ptr == 0)
                            m.d.sync += ptr.eq(ptr + 1)
                    with m.Elif(pass_event):
                        m.d.comb += integrate
                else:
                    with m.If(pass_event):
                        m.d.comb += integrate
                if self._map is not None:
                    with m.Elif(buf.event):  # an event the map drops: consumed, no pass
                        m.d.comb += buf.o.ready.eq(1)
                with m.Elif(buf.marker & (credits.room | (ptr != 0) if streams else credits.room)):
                    # a marker: consume it, start the sweep (its room taken if it began early)
                    m.d.comb += [buf.o.ready.eq(1), begin.eq(1)]
                    m.d.sync += [first.eq(0), s_acc.eq(0)]
            with m.If(s_wait & credits.resolved):
                with m.If(credits.room | ~credits.busy):  # run on while busy, else re-initialise
                    m.d.comb += begin.eq(1)
                    m.d.sync += s_wait.eq(0)
            with m.If(begin):  # word 0 of a sweep or re-initialisation, in this cycle
                m.d.comb += self.o.valid.eq(1)
                if streams:  # (``ptr`` is 0 but after early sweeps)
                    m.d.comb += counter.restart.eq(1)
                else:  # (the counter is on word 0: it goes on to word 1)
                    m.d.comb += counter.advance.eq(1)
                m.d.sync += [sweep_op.eq(begin_op), sweep_busy.eq(begin_busy), fed.eq(begin_fed)]
                # (the state it began from was cleared there: each state register's next value
                # then depends on its own begin only, not on the other state's conditions)
                m.d.sync += s_sweep.eq(1)
            if streams and not one_word:  # the marker's sweep may be its first slot
                sweep_end = (s_sweep & counter.last) | (begin & at_ptr)
            elif one_word:  # a sweep is its first slot
                sweep_end = self.o.valid & (o.op != Op.INTEGRATE)
            else:  # (from registers only: the sweep's last word)
                sweep_end = s_sweep & counter.last
            with m.If(sweep_end):
                m.d.sync += s_sweep.eq(0)  # (the word wrapped to 0)
                if streams and not one_word:
                    was_init = Mux(begin, begin_op == Op.INIT, sweep_op == Op.INIT)
                    was_fed = Mux(begin, begin_fed, fed)
                elif one_word:
                    was_init, was_fed = o.op == Op.INIT, Mux(begin, begin_fed, fed)
                else:  # begin is 0 here: the sweep's registers
                    was_init, was_fed = sweep_op == Op.INIT, fed
                with m.If(was_init | was_fed):
                    m.d.sync += [s_acc.eq(1), s_wait.eq(0)]
                    with m.If(was_init):
                        m.d.sync += first.eq(1)
                with m.Else():
                    m.d.sync += [s_acc.eq(0), s_wait.eq(1)]
        return m

    def _decoder(self, m: Module, buf: EventBuffer):
        """The map's table, read with the input register: ``(row, base, kept)`` of the event held
        by ``buf`` (a ROM read in the cycle the beat enters ``buf``), and the pass counter. A
        map with several passes per event, a merge, or a streaming map whose sweep bound is not
        its base (``DecoderTables.sweep``) takes :meth:`_list_decoder`. Returns the pass
        counter, the decoded pass, ``final``, ``pass_end`` and the event's sweep bound."""
        imap, words = self._map, self.words
        moved = imap.stream and not imap.sweep_is_base  # (a decoder field: ``sweep``)
        if imap.multi or imap.kind == "merge" or moved:
            return self._list_decoder(m, buf)
        row_shape = unsigned(max(1, (imap.n_rows - 1).bit_length()))
        base_shape = unsigned(max(1, (words - 1).bit_length()))
        first_shape = unsigned(max(1, (imap.n_rows * imap.span - 1).bit_length()))
        # ``first``: the pass's first weight word (row · span): the address is then one addition
        fields = {"row": row_shape, "first": first_shape, "base": base_shape, "kept": unsigned(1)}
        layout = data.StructLayout(fields)
        init = []
        for r, b, k in zip(imap.rows, imap.bases, imap.kept, strict=True):
            entry = {"row": int(r), "first": int(r) * imap.span, "base": int(b), "kept": int(k)}
            init.append(layout.const(entry).as_value().value)
        m.submodules.decode = rom = memory.Memory(
            shape=layout.as_shape().width, depth=len(init), init=init
        )
        rp = rom.read_port()
        m.d.comb += [rp.addr.eq(self.i.payload.index), rp.en.eq(buf.i.ready)]
        m.submodules.pass_counter = passes = WordCounter(timing=self._span_timing())
        decoded = layout(rp.data)
        return passes, decoded, None, None, decoded.base

    def _span_timing(self) -> LayerTiming:
        timing, imap = self._timing, self._map
        return LayerTiming(
            n_out=imap.span * timing.lanes, lanes=timing.lanes, pipeline=timing.pipeline
        )

    def _list_decoder(self, m: Module, buf: EventBuffer):
        """The decoder and pass ROM of :class:`hw.model.input_map.DecoderTables`: per index the
        first pass (``first``, ``base``, ``kept``), whether it is the only or one of two, the pass
        ROM address of its second pass and the weight offset ``chan`` of its later passes — one
        table read with the input register, or (a split decoder) two small tables read as logic
        from the index's high and low bits and registered with it; the pass ROM holds the later
        passes as lists shared between indices, read one pass ahead."""
        imap, words = self._map, self.words
        tables = imap.decoder_tables()
        base_shape = unsigned(max(1, (words - 1).bit_length()))
        first_shape = unsigned(max(1, (imap.n_rows * imap.span - 1).bit_length()))
        depth = tables.depth
        fields = {"first": first_shape, "base": base_shape, "kept": unsigned(1)}
        if depth:  # the first pass is the last one; the address of the second in the pass ROM
            fields |= {
                "single": unsigned(1),
                "pair": unsigned(1),  # exactly two passes: the second is the last
                "second": unsigned(max(1, (depth - 1).bit_length())),
            }
        chan = bool(depth) and bool(tables.chan.any())
        if chan:  # the later passes' weight offset (a convolution: the input channel's rows)
            fields["chan"] = first_shape
        if tables.sweep is not None:  # a streaming map's sweep bound (not its first base)
            fields["sweep"] = base_shape
        layout = data.StructLayout(fields)
        index = self.i.payload.index
        per_index = {"first": tables.first, "chan": tables.chan} | tables.index_fields()
        if tables.split is None:
            init = [
                layout.const({k: int(per_index[k][j]) for k in fields}).as_value().value
                for j in range(tables.n_in)
            ]
            m.submodules.decode = rom = memory.Memory(
                shape=layout.as_shape().width, depth=len(init), init=init
            )
            rp = rom.read_port()
            m.d.comb += [rp.addr.eq(index), rp.en.eq(buf.i.ready)]
            first = layout(rp.data)
        else:  # the high and low tables as logic, registered as the table's read would be
            b = tables.split
            hi_layout = data.StructLayout({k: v for k, v in fields.items() if k != "chan"})
            lo_layout = data.StructLayout({k: fields[k] for k in ("first", "chan") if k in fields})
            ports = []
            for name, lay, values, addr in (
                ("decode_hi", hi_layout, tables.hi, index[b:]),
                ("decode_lo", lo_layout, tables.lo, index[:b]),
            ):
                n = len(values["first"])
                init = [
                    lay.const({k: int(values[k][a]) for k in lay.members}).as_value().value
                    for a in range(n)
                ]
                m.submodules[name] = rom = memory.Memory(
                    shape=lay.as_shape().width, depth=n, init=init
                )
                port = rom.read_port(domain="comb")
                m.d.comb += port.addr.eq(addr)
                ports.append(lay(port.data))
            hi, lo = ports
            now = Signal(layout, name="decoding")
            joined = hi.first | lo.first if tables.split_or else hi.first + lo.first
            m.d.comb += [now[k].eq(hi[k]) for k in hi_layout.members if k != "first"]
            m.d.comb += now.first.eq(joined)
            if chan:
                m.d.comb += now.chan.eq(lo.chan)
            first = Signal(layout, name="decoded")
            with m.If(buf.i.ready):
                m.d.sync += first.eq(now)
        m.submodules.pass_counter = passes = WordCounter(
            timing=self._span_timing(), gated=bool(depth)
        )
        bound = first.sweep if tables.sweep is not None else first.base
        if not depth:  # one pass per event (or none)
            return passes, first, None, None, bound
        pass_end = Signal(name="pass_end")  # the last slot of one of the event's passes: now
        # the pass ROM: the later passes, lists shared between indices; ``next_last``: the pass
        # after this one is the event's last (so that whether a pass is the last comes from a
        # register, not from the ROM's output: it decides the consumption)
        entry = data.StructLayout(
            {"first": first_shape, "base": base_shape, "next_last": unsigned(1)}
        )
        table = [
            entry.const({"first": int(f), "base": int(b), "next_last": int(e)}).as_value().value
            for f, b, e in zip(
                tables.pass_first, tables.pass_base, tables.pass_next_last, strict=True
            )
        ]
        m.submodules.pass_list = plist = memory.Memory(
            shape=entry.as_shape().width, depth=depth, init=table
        )
        pp = plist.read_port()  # read at a pass's last slot: the next pass, from the next cycle
        later_pass = Signal(name="later_pass")  # the held event is past its first pass
        after = Signal(range(depth), name="next_pass")  # pass ROM address after the one read
        m.d.comb += [pp.addr.eq(Mux(later_pass, after, first.second)), pp.en.eq(pass_end)]
        read = entry(pp.data)
        last_later = Signal(name="last_later")  # the current later pass is the event's last
        final = Mux(later_pass, last_later, first.single)
        m.d.comb += passes.final.eq(final)  # (idle slots after the event's last pass only)
        with m.If(pass_end):
            m.d.sync += [later_pass.eq(~final), after.eq(pp.addr + 1)]
            m.d.sync += last_later.eq(Mux(later_pass, read.next_last, first.pair))
        decoded = Signal(layout, name="pass")
        m.d.comb += decoded.eq(first)
        with m.If(later_pass):
            if not chan:
                later_first = read.first
            elif tables.pass_or:  # (one LUT level with the multiplexer)
                later_first = read.first | first.chan
            else:
                later_first = read.first + first.chan
            m.d.comb += [decoded.base.eq(read.base), decoded.first.eq(later_first)]
        return passes, decoded, final, pass_end, bound


def first_row(index, words: int):
    """The first weight row of an event's pass, ``index · words`` (a sum of shifts): what the
    sequencer keeps with each beat, or (``row_input``) takes from the sender with it."""
    return _times(index, words)


def _times(value, k: int):
    """``value · k`` for a constant ``k ≥ 1`` as a sum of shifted copies: Yosys maps a ``$mul`` by
    a constant to an unregistered multiplier block (3.9 ns of logic on the ECP5), a sum of
    shifts to carry chains."""
    terms = [value << b for b in range(k.bit_length()) if k >> b & 1]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
