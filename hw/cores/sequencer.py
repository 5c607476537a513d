"""Sequencer of a layer core: turns the input event stream into word operations.

It holds the input in a one-beat register (so that ``i.ready`` depends on
registers only, never combinationally on ``i.valid`` or the payload) and issues one word
operation per cycle:

* after reset, and after a sweep whose busy flag is 0 once the input is idle: ``INIT`` of every
  word (the next inference);
* for an input event: ``INTEGRATE`` of words ``0 … W-1``; the event is consumed with the last;
* for an input marker: the marker is consumed together with ``FIRE`` of word 0, then words
  ``1 … W-1`` follow (the *sweep*) — but only while fewer than two steps' markers are still to
  leave on the output, because the emitter buffers two steps;
* after an input marker with ``busy = 0`` it no longer reads the input: it waits for the busy
  flag of the sweep (the step's marker busy, known when the sweep's last word is updated); while
  it is 1 it runs further sweeps on its own, and after the first sweep with ``busy = 0`` it
  re-initialises and reads the next inference's events.

``busy`` of the ``FIRE`` operations is the part of the step's busy flag known here: the input
marker's busy, or step 0 of a layer with a non-zero bias.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.layouts import Op, event_layout, op_layout
from spikezip.hw.model.cycle_model import LayerTiming

__all__ = ["Sequencer", "StepStatus"]


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


class Sequencer(wiring.Component):
    """Issues the word operations of a layer core from its input event stream.

    Latency: the input register adds one cycle from ``i``; an event or marker in it is acted on
    in the same cycle. Throughput: one word operation per cycle; an event takes ``words``
    cycles, a marker none of its own (it shares its cycle with the first sweep slot).

    Parameters
    ----------
    n_out, lanes : int
        Give ``words = ceil(n_out / lanes)``.
    index_width, value_width : int
        Input event format.
    has_bias : bool
        The layer has a non-zero bias: step 0 is busy.
    pipeline : int
        The neuron array's pipeline (:class:`hw.model.cycle_model.LayerTiming`): each pass over the
        words takes ``timing.slots`` cycles, the ones past ``W`` idle.

    Members
    -------
    i : In(stream.Signature(event_layout))
        Input events and markers.
    o : Out(stream.Signature(op_layout, always_ready=True))
        Word operations.
    status : In(StepStatus())
        From the emitter: sweeps done and markers sent.
    """

    def __init__(
        self,
        *,
        n_out: int,
        lanes: int,
        index_width: int,
        value_width: int,
        has_bias: bool,
        pipeline: int = 1,
    ) -> None:
        self._timing = LayerTiming(n_out=n_out, lanes=lanes, pipeline=pipeline)
        self._has_bias = bool(has_bias)
        words = self._timing.words
        super().__init__(
            {
                "i": In(stream.Signature(event_layout(index_width, value_width))),
                "o": Out(
                    stream.Signature(
                        op_layout(words=words, index_width=index_width, value_width=value_width),
                        always_ready=True,
                    )
                ),
                "status": In(StepStatus()),
            }
        )

    @property
    def words(self) -> int:
        return self._timing.words

    def elaborate(self, platform):
        m = Module()
        last = self.words - 1
        # the input register: i.ready = ~valid | consume (a beat is taken when the register is
        # empty or emptied in the same cycle), with the kind of its beat as flags
        buf = Signal(self.i.payload.shape(), name="buf")
        buf_valid = Signal(name="buf_valid")
        buf_event = Signal(name="buf_event")  # holds an event
        buf_marker = Signal(name="buf_marker")  # holds a marker
        consume = Signal(name="consume")
        m.d.comb += self.i.ready.eq(~buf_valid | consume)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), buf_valid.eq(1)]
            m.d.sync += [buf_event.eq(~self.i.payload.marker), buf_marker.eq(self.i.payload.marker)]
        with m.Elif(consume):
            m.d.sync += [buf_valid.eq(0), buf_event.eq(0), buf_marker.eq(0)]
        # the state, one-hot (reset: re-initialise)
        s_sweep = Signal(init=1, name="state_sweep")
        s_acc = Signal(name="state_accumulate")
        s_wait = Signal(name="state_wait")
        word = Signal(range(self.words), name="word")
        at_last = Signal(init=last == 0, name="at_last")  # word == last
        sweep_op = Signal(Op, init=Op.INIT, name="sweep_op")  # at reset: re-initialise
        sweep_busy = Signal(name="sweep_busy")  # busy bit of the current sweep
        fed = Signal(name="fed")  # the current sweep's input marker was busy: input follows
        first = Signal(name="first")  # the next sweep is step 0 of an inference
        # sweeps whose marker has not left (0, 1 or 2), as flags: ≥ 1, = 2
        inflight_1, inflight_2 = Signal(name="inflight_1"), Signal(name="inflight_2")
        # sweeps not done yet, likewise
        unresolved_1, unresolved_2 = Signal(name="unresolved_1"), Signal(name="unresolved_2")
        own_busy = Signal(name="own_busy")  # busy flag of the last sweep done
        can_fire = ~inflight_2  # the emitter has room for a sweep
        begin, begin_busy, begin_fed = Signal(), Signal(), Signal()
        begin_op = Signal(Op)
        o = self.o.payload

        m.d.comb += [o.index.eq(buf.index), o.value.eq(buf.value)]
        fire = begin & (begin_op == Op.FIRE)
        for one, two, down in (
            (inflight_1, inflight_2, self.status.sent),
            (unresolved_1, unresolved_2, self.status.swept),
        ):
            with m.If(fire & ~down):
                m.d.sync += [one.eq(1), two.eq(one)]
            with m.Elif(down & ~fire):
                m.d.sync += [one.eq(two), two.eq(0)]
        with m.If(self.status.swept):
            m.d.sync += own_busy.eq(self.status.swept_busy)

        # idle slots after each pass over the words, so that operations on the same word are
        # at least min_distance cycles apart (a pass takes timing.slots cycles)
        pad = self._timing.slots - self.words
        gap = Signal(name="gap")
        if pad:
            gaps = Signal(range(pad + 1), name="gaps")  # idle slots still to come
            m.d.comb += gap.eq(gaps != 0)
            with m.If(gap):
                m.d.sync += gaps.eq(gaps - 1)
            with m.Elif(self.o.valid & o.last):
                m.d.sync += gaps.eq(pad)

        def step_word():  # word + 1, wrapping after the last
            m.d.sync += [
                word.eq(Mux(at_last, 0, word + 1)),
                at_last.eq(Mux(at_last, last == 0, word == last - 1)),
            ]

        with m.If(~gap):
            with m.If(s_sweep):
                m.d.comb += [self.o.valid.eq(1), o.op.eq(sweep_op), o.word.eq(word)]
                m.d.comb += [o.busy.eq(sweep_busy), o.last.eq(at_last)]
                step_word()
            with m.If(s_acc):
                with m.If(buf_event):
                    m.d.comb += [self.o.valid.eq(1), o.op.eq(Op.INTEGRATE), o.word.eq(word)]
                    m.d.comb += [o.last.eq(at_last), consume.eq(at_last)]
                    step_word()
                with m.Elif(buf_marker & can_fire):  # a marker: consume it, start the sweep
                    m.d.comb += [consume.eq(1), begin.eq(1), begin_op.eq(Op.FIRE)]
                    m.d.comb += [begin_busy.eq(buf.busy | (first & self._has_bias))]
                    m.d.comb += begin_fed.eq(buf.busy)
                    m.d.sync += first.eq(0)
            with m.If(s_wait & ~unresolved_1):
                with m.If(own_busy & can_fire):  # run on while busy
                    m.d.comb += [begin.eq(1), begin_op.eq(Op.FIRE)]
                with m.Elif(~own_busy):  # else re-initialise
                    m.d.comb += [begin.eq(1), begin_op.eq(Op.INIT)]

            with m.If(begin):  # word 0 of a sweep or re-initialisation, in this cycle
                m.d.comb += [self.o.valid.eq(1), o.op.eq(begin_op), o.word.eq(0)]
                m.d.comb += [o.busy.eq(begin_busy), o.last.eq(last == 0)]
                m.d.sync += [sweep_op.eq(begin_op), sweep_busy.eq(begin_busy), fed.eq(begin_fed)]
                m.d.sync += [word.eq(1 % self.words), at_last.eq(1 % self.words == last)]
                m.d.sync += [s_sweep.eq(1), s_acc.eq(0), s_wait.eq(0)]
            if self.words == 1:  # a sweep is its first slot
                sweep_end = self.o.valid & (o.op != Op.INTEGRATE)
            else:  # (from registers only: the sweep's last word)
                sweep_end = s_sweep & at_last
            with m.If(sweep_end):  # the sweep ends
                m.d.sync += s_sweep.eq(0)  # (the word wrapped to 0)
                if self.words == 1:
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
