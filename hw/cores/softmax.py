"""Differential softmax core: the ``attn`` drive ``G_t − G_{t−1}`` of one transformer block.

Architecture (one stall signal ``en = ~o.valid | o.ready`` freezes every block but the input
buffer; every block reports its ``latency``)::

    i ─▶ InputBuffer ─▶ StepSequencer ──events──▶ ScoreStore (P, read-modify-write, clear)
                         │  row flags,  ──row──▶ RowPasses ──addr──▶ ScoreStore ──P──▶ RowExp
                         │  step FSM                                  (max, T ROM, Σ, E buffer)
                         └──marker──▶ DivideIssue ◀──E, Σ── RowExp
                                       │ (E·N + ⌊Σ/2⌋, Σ)
                                       ▼
                                    Divider ──▶ DriveOut (G_{t−1} memory, drive, marker) ─▶ o

Protocol and schedule: :mod:`hw.model.softmax_model` (the golden event lists and the exact cycle
model). In short: input events ``(index, P_t − P_{t−1})`` are added into the score memory one
per cycle, flagging their row; at the step's marker every flagged row (all rows in the first step
of an inference) is processed in ascending order — a pass over its ``n`` scores for the maximum,
a pass for ``E_j = T[max − P_j]`` (0 beyond the table) and ``Σ``, then ``n`` divisions
``G_j = ⌊(E_j·N + ⌊Σ/2⌋)/Σ⌋`` in the pipelined divider, overlapped with the next row's passes —
and every non-zero ``G_j − G_{t−1,j}`` leaves as an event, then the marker (busy = the input's
busy OR any non-zero drive). Rows without events cost nothing. After the inference's last input
marker (busy 0) the score memory is cleared (``entries`` cycles); ``G_{t−1}`` is read as 0 in the
first step, so it needs no clearing.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spikezip.hw.cores.divider import Divider
from spikezip.hw.cores.layouts import event_layout
from spikezip.hw.model import softmax_model as sm
from spikezip.hw.model.events import EventFormat

__all__ = ["SoftmaxCore"]


#: Yosys attribute of a memory whose read port never reads an entry in the cycle it is written
#: (or ignores that read): no bypass logic for the block RAM's undefined collision, so its
#: output register takes the read data directly (``hw.flow.ecp5``)
_NO_COLLISION = {"no_rw_check": 1}


def _count(n: int) -> unsigned:
    """A counter over ``range(n)``, at least 1 bit (no 0-bit ports)."""
    return unsigned(max(1, (n - 1).bit_length()))


def _layout(fmt: EventFormat) -> data.StructLayout:
    return event_layout(fmt.index_width, fmt.value_width)


def _tag_layout(index_width: int) -> data.StructLayout:
    return data.StructLayout(
        {
            "event": 1,
            "marker": 1,
            "extra": 1,
            "first": 1,
            "busy": 1,
            "index": unsigned(index_width),
        }
    )


class InputBuffer(wiring.Component):
    """Two-entry input register: ``i.ready`` is a register, a beat accepted in cycle ``c`` is
    offered on ``o`` from ``c + 1``. Latency 1, one beat per cycle."""

    def __init__(self, layout) -> None:
        self._layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    @property
    def latency(self) -> int:
        return sm.INPUT_LATENCY

    def elaborate(self, platform):
        m = Module()
        main, skid = Signal(self._layout), Signal(self._layout)
        main_valid, skid_valid = Signal(), Signal()
        accept = self.i.valid & ~skid_valid
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.o.valid.eq(main_valid),
            self.o.payload.eq(main),
        ]
        with m.If(~main_valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [main.eq(skid), main_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main.eq(self.i.payload), main_valid.eq(accept)]
        with m.Elif(accept):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class ScoreStore(wiring.Component):
    """The scores ``P`` (one memory word per entry): ``P[index] += value`` for each ``event``
    (one per cycle; read, the memory's output register, a register near the logic, then the
    write: no two events on one entry within 4 cycles, as the protocol's ascending indices
    give), a read port for the row passes (latency :attr:`latency`, the same three registers)
    and a clear port (``wipe``: ``P[wipe_addr] = 0``)."""

    def __init__(self, params: sm.SoftmaxParams) -> None:
        self._p = params
        iw, fmt = params.index_width, params.input_format
        ev = data.StructLayout({"index": unsigned(iw), "value": signed(fmt.value_width)})
        super().__init__(
            {
                "en": In(1),
                "event": In(stream.Signature(ev, always_ready=True)),
                "wipe": In(1),
                "wipe_addr": In(unsigned(iw)),
                "read_addr": In(unsigned(iw)),
                "data": Out(signed(params.score_width)),
            }
        )

    @property
    def latency(self) -> int:
        return sm.SCORE_READ_LATENCY

    def elaborate(self, platform):
        m = Module()
        p, en, ev = self._p, self.en, self.event
        m.submodules.mem = mem = memory.Memory(
            shape=signed(p.score_width), depth=p.entries, init=[], attrs=_NO_COLLISION
        )
        wr, rd = mem.write_port(), mem.read_port()
        word = Signal(signed(p.score_width), reset_less=True)  # the block RAM's output register
        score = Signal(signed(p.score_width))  # near the logic (the RAM's routing is ~2.4 ns)
        stages = range(1, sm.SCORE_READ_LATENCY + 1)
        valid = [Signal(name=f"valid{k}") for k in stages]
        index = [Signal.like(ev.payload.index, name=f"index{k}") for k in stages]
        value = [Signal.like(ev.payload.value, name=f"value{k}") for k in stages]
        with m.If(en):
            m.d.sync += [word.eq(rd.data), score.eq(word)]
            m.d.sync += [valid[0].eq(ev.valid), index[0].eq(ev.payload.index)]
            m.d.sync += value[0].eq(ev.payload.value)
            for k in range(1, len(stages)):
                m.d.sync += [valid[k].eq(valid[k - 1]), index[k].eq(index[k - 1])]
                m.d.sync += value[k].eq(value[k - 1])
        m.d.comb += [
            rd.en.eq(en),
            rd.addr.eq(Mux(ev.valid, ev.payload.index, self.read_addr)),
            self.data.eq(score),
            wr.en.eq(en & (valid[-1] | self.wipe)),
            wr.addr.eq(Mux(self.wipe, self.wipe_addr, index[-1])),
            wr.data.eq(Mux(self.wipe, 0, score + value[-1])),
        ]
        return m


class Phase(enum.Enum, shape=3):
    ACCUMULATE = 0
    ROWS = 1
    WAIT = 2
    EXTRA = 3
    CLEAR = 4


class StepSequencer(wiring.Component):
    """The step FSM: consumes input beats (events into the score store, flagging their row
    from :data:`ROW_FLAG_LATENCY` cycles later), then starts every flagged row in ascending order
    (the lowest flag as a one-hot word, then its base index, both registered: a row starts
    :data:`ROW_PICK_LATENCY` cycles after the flags last changed, no cycle for unflagged rows),
    then issues the marker token once the divisions are issued, and at the end of an inference
    the extra token and the clear. Latency: the first row strobe :data:`ROW_FIRST_LATENCY`
    cycles after the marker is consumed; its payload is the row's base index."""

    def __init__(self, params: sm.SoftmaxParams) -> None:
        self._p = params
        iw, _rows = params.index_width, params.rows
        ev = data.StructLayout(
            {"index": unsigned(iw), "value": signed(params.input_format.value_width)}
        )
        mk = data.StructLayout({"busy": 1, "extra": 1})
        super().__init__(
            {
                "en": In(1),
                "i": In(stream.Signature(_layout(params.input_format))),
                "event": Out(stream.Signature(ev, always_ready=True)),
                "wipe": Out(1),
                "wipe_addr": Out(unsigned(iw)),
                "row": Out(stream.Signature(unsigned(iw), always_ready=True)),
                "passes_busy": In(1),
                "issue_busy": In(1),
                "marker": Out(stream.Signature(mk, always_ready=True)),
                "first": Out(1, init=1),
            }
        )

    @property
    def latency(self) -> int:
        return sm.ROW_START_LATENCY

    def elaborate(self, platform):
        m = Module()
        p, en, beat = self._p, self.en, self.i.payload
        mult, shift = p.row_reciprocal()
        flags = Signal(p.rows, init=(1 << p.rows) - 1)
        phase, step_busy = Signal(Phase), Signal()
        count = Signal(range(p.entries))
        # the lowest flagged row: one-hot, then its base index (an OR of constants) and "any"
        onehot, base, pending = Signal(p.rows), Signal.like(self.row.payload), Signal()
        settle = Signal(range(max(sm.ROW_FIRST_LATENCY, sm.ROW_PICK_LATENCY + 1)))
        with m.If(en):
            m.d.sync += [onehot.eq(flags & (~flags + 1)), pending.eq(flags.any())]
            for j in range(len(base)):  # bit j of the base r·n: the rows r that have it
                rows_j = [r for r in range(p.rows) if (r * p.tokens) >> j & 1]
                m.d.sync += base[j].eq(Cat(*(onehot[r] for r in rows_j)).any() if rows_j else 0)
            with m.If(settle != 0):
                m.d.sync += settle.eq(settle - 1)
        # the event's row ⌊index/n⌋ = (index·M) >> S: the index and the product registered (the
        # multiplier's input and output registers), then the row's flag is set
        index = Signal.like(beat.index, reset_less=True)
        row_of = Signal(range(p.rows), reset_less=True)
        flag_row = [Signal(name=f"flag_row{k}") for k in range(1, sm.ROW_FLAG_LATENCY)]
        with m.If(en):
            m.d.sync += [index.eq(beat.index), row_of.eq((index * mult) >> shift)]
            m.d.sync += [flag_row[0].eq(self.event.valid)]
            m.d.sync += [d.eq(q) for d, q in zip(flag_row[1:], flag_row[:-1], strict=False)]
            with m.If(flag_row[-1]):
                m.d.sync += flags.bit_select(row_of, 1).eq(1)
        m.d.comb += [self.event.payload.index.eq(beat.index), self.wipe_addr.eq(count)]
        m.d.comb += self.event.payload.value.eq(beat.value)
        with m.Switch(phase):
            with m.Case(Phase.ACCUMULATE):
                m.d.comb += self.i.ready.eq(en)
                with m.If(en & self.i.valid & beat.marker):
                    m.d.sync += [step_busy.eq(beat.busy), phase.eq(Phase.ROWS)]
                    m.d.sync += settle.eq(sm.ROW_FIRST_LATENCY - 1)
                with m.If(en & self.i.valid & ~beat.marker):
                    m.d.comb += self.event.valid.eq(1)
            with m.Case(Phase.ROWS):
                with m.If(en & ~self.passes_busy & (settle == 0)):
                    with m.If(pending):
                        m.d.comb += [self.row.valid.eq(1), self.row.payload.eq(base)]
                        m.d.sync += [flags.eq(flags & (flags - 1))]
                        m.d.sync += settle.eq(sm.ROW_PICK_LATENCY)
                    with m.Else():
                        m.d.sync += phase.eq(Phase.WAIT)
            with m.Case(Phase.WAIT):
                with m.If(en & ~self.issue_busy):
                    m.d.comb += [self.marker.valid.eq(1), self.marker.payload.busy.eq(step_busy)]
                    m.d.sync += [phase.eq(Mux(step_busy, Phase.ACCUMULATE, Phase.EXTRA))]
                    m.d.sync += self.first.eq(0)
            with m.Case(Phase.EXTRA):
                with m.If(en):
                    m.d.comb += [self.marker.valid.eq(1), self.marker.payload.extra.eq(1)]
                    m.d.sync += [phase.eq(Phase.CLEAR), count.eq(0)]
            with m.Case(Phase.CLEAR):
                with m.If(en):
                    m.d.comb += self.wipe.eq(1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == p.entries - 1):
                        m.d.sync += [phase.eq(Phase.ACCUMULATE), self.first.eq(1)]
                        m.d.sync += flags.eq((1 << p.rows) - 1)
        return m


class RowPasses(wiring.Component):
    """Per row strobe (payload: the row's base index): ``2n`` score reads (the max pass, then
    the exp pass) from the next cycle, from registered addresses; ``busy`` is low in the last of
    them (the next row may start). ``divide`` strobes the row's base index
    :data:`ROW_WRITE_LATENCY` cycles after the last read (its ``E`` is then in the row buffer);
    ``draining`` is high while such a strobe is on its way."""

    def __init__(self, params: sm.SoftmaxParams) -> None:
        self._p = params
        iw, n = params.index_width, params.tokens
        super().__init__(
            {
                "en": In(1),
                "row": In(stream.Signature(unsigned(iw), always_ready=True)),
                "busy": Out(1),
                "draining": Out(1),
                "read_addr": Out(unsigned(iw)),
                "max_pass": Out(1),
                "exp_pass": Out(1),
                "col": Out(_count(n)),
                "divide": Out(stream.Signature(unsigned(iw), always_ready=True)),
            }
        )

    @property
    def latency(self) -> int:
        return sm.ROW_START_LATENCY

    def elaborate(self, platform):
        m = Module()
        n, en, w = self._p.tokens, self.en, sm.ROW_WRITE_LATENCY
        active, second = Signal(), Signal()
        col = Signal.like(self.col)
        addr, base = Signal.like(self.read_addr), Signal.like(self.read_addr)
        last = active & second & (col == n - 1)
        done = [Signal(name=f"done{k}") for k in range(w)]
        bases = [Signal.like(base, name=f"base{k}") for k in range(w)]
        m.d.comb += [
            self.busy.eq(active & ~last),
            self.draining.eq(Cat(*done[:-1]).any() if w > 1 else 0),
            self.read_addr.eq(addr),
            self.max_pass.eq(active & ~second),
            self.exp_pass.eq(active & second),
            self.col.eq(col),
            self.divide.valid.eq(done[-1]),
            self.divide.payload.eq(bases[-1]),
        ]
        with m.If(en):
            m.d.sync += [done[0].eq(last), bases[0].eq(base)]
            m.d.sync += [d.eq(s) for d, s in zip(done[1:], done[:-1], strict=False)]
            m.d.sync += [d.eq(s) for d, s in zip(bases[1:], bases[:-1], strict=False)]
            with m.If(active):
                m.d.sync += [col.eq(col + 1), addr.eq(addr + 1)]
                with m.If(col == n - 1):
                    m.d.sync += [col.eq(0), addr.eq(base), second.eq(1)]
                with m.If(last):
                    m.d.sync += active.eq(0)
            with m.If(self.row.valid):
                m.d.sync += [active.eq(1), second.eq(0), col.eq(0)]
                m.d.sync += [base.eq(self.row.payload), addr.eq(self.row.payload)]
        return m


class RowExp(wiring.Component):
    """The row's maximum (max pass), then ``E_j = T[max − P_j]`` (0 beyond the table) into the
    row buffer and ``Σ = Σ_j E_j`` (exp pass): the score is copied, the gap ``max − P_j``
    registered (:data:`GAP_LATENCY`), then read from the table ROM (latency
    :data:`TABLE_LATENCY`, the block RAM and its output register).
    The row buffer has a read port for the divisions (``e_addr`` → ``e_data`` one cycle
    later)."""

    def __init__(self, params: sm.SoftmaxParams) -> None:
        self._p = params
        n = params.tokens
        super().__init__(
            {
                "en": In(1),
                "score": In(signed(params.score_width)),
                "max_pass": In(1),
                "exp_pass": In(1),
                "col": In(_count(n)),
                "total": Out(unsigned(params.sum_width)),
                "e_addr": In(_count(n)),
                "e_data": Out(unsigned(params.table_width)),
            }
        )

    @property
    def latency(self) -> int:
        return sm.GAP_LATENCY + sm.TABLE_LATENCY

    def elaborate(self, platform):
        m = Module()
        p, en = self._p, self.en
        k_tab = len(p.table)
        m.submodules.table = rom = memory.Memory(
            shape=unsigned(p.table_width), depth=k_tab, init=list(p.table)
        )
        m.submodules.buffer = buf = memory.Memory(
            shape=unsigned(p.table_width), depth=p.tokens, init=[]
        )
        trd, bwr = rom.read_port(), buf.write_port()
        brd = buf.read_port()
        # stage k: the score read issued k cycles ago (its data arrives at k = S; the gap is
        # formed from a copy of it, apart from the maximum's compare, at S + 1)
        s, g, w = sm.SCORE_READ_LATENCY, sm.GAP_LATENCY, sm.ROW_WRITE_LATENCY
        a = [Signal(name=f"a{k}") for k in range(1, s + 1)]
        b = [Signal(name=f"b{k}") for k in range(1, w + 1)]
        col = [Signal.like(self.col, name=f"col{k}") for k in range(1, w + 1)]
        zero = [Signal(name=f"zero{k}") for k in range(1, w + 1)]  # col == 0
        beyond = [Signal(name=f"beyond{k}") for k in range(s + g + 1, w + 1)]
        top = Signal(signed(p.score_width), reset_less=True)  # each row's first score sets it
        score = Signal(signed(p.score_width), reset_less=True)
        gap = Signal(unsigned(p.gap_width), reset_less=True)
        word = Signal(unsigned(p.table_width), reset_less=True)  # the ROM's output register
        with m.If(en):
            m.d.sync += [a[0].eq(self.max_pass), b[0].eq(self.exp_pass), col[0].eq(self.col)]
            m.d.sync += zero[0].eq(self.col == 0)
            for x in (a, b, col, zero, beyond):
                m.d.sync += [d.eq(q) for d, q in zip(x[1:], x[:-1], strict=False)]
            m.d.sync += [score.eq(self.score), gap.eq(top - score), word.eq(trd.data)]
            m.d.sync += [beyond[0].eq(gap >= k_tab)]
        with m.If(en & a[-1]):
            m.d.sync += top.eq(Mux(zero[s - 1] | (self.score > top), self.score, top))
        e = Mux(beyond[-1], 0, word)
        with m.If(en & b[-1]):
            m.d.sync += self.total.eq(Mux(zero[-1], 0, self.total) + e)
        m.d.comb += [
            trd.en.eq(en),
            trd.addr.eq(gap),
            bwr.en.eq(en & b[-1]),
            bwr.addr.eq(col[-1]),
            bwr.data.eq(e),
            brd.en.eq(en),
            brd.addr.eq(self.e_addr),
            self.e_data.eq(brd.data),
        ]
        return m


class DivideIssue(wiring.Component):
    """Per ``divide`` strobe, ``n`` tokens (one per column, from the next cycle), the row's
    ``Σ`` latched in the first; a ``marker`` request becomes a marker or extra token. Each token
    reads the row buffer, then ``E·N`` is registered (the multiplier's output register), then
    the operands ``(E·N + ⌊Σ/2⌋, Σ)`` for the divider (latency :attr:`latency`)."""

    def __init__(self, params: sm.SoftmaxParams, tag) -> None:
        self._p = params
        iw, n = params.index_width, params.tokens
        mk = data.StructLayout({"busy": 1, "extra": 1})
        op = data.StructLayout(
            {
                "dividend": unsigned(params.dividend_width),
                "divisor": unsigned(params.sum_width),
                "tag": tag,
            }
        )
        self._tag = tag
        super().__init__(
            {
                "en": In(1),
                "divide": In(stream.Signature(unsigned(iw), always_ready=True)),
                "marker": In(stream.Signature(mk, always_ready=True)),
                "first": In(1),
                "busy": Out(1),
                "e_addr": Out(_count(n)),
                "e_data": In(unsigned(params.table_width)),
                "total": In(unsigned(params.sum_width)),
                "o": Out(stream.Signature(op, always_ready=True)),
            }
        )

    @property
    def latency(self) -> int:
        return sm.ISSUE_LATENCY

    def elaborate(self, platform):
        m = Module()
        p, en = self._p, self.en
        active, col, latch = Signal(), Signal(range(p.tokens)), Signal()
        base = Signal.like(self.divide.payload)
        tag0 = Signal(self._tag)
        tags = [Signal(self._tag, name=f"tag{k}") for k in (1, 2, 3)]
        valid = [Signal(name=f"valid{k}") for k in (1, 2, 3)]
        row_total = Signal(unsigned(p.sum_width))
        product = Signal(unsigned(p.table_width + p.numerator.bit_length()), reset_less=True)
        operand = Signal(unsigned(p.dividend_width))
        divisor = Signal(unsigned(p.sum_width))
        m.d.comb += [
            self.busy.eq(active | self.divide.valid),
            self.e_addr.eq(col),
            tag0.event.eq(active),
            tag0.marker.eq(self.marker.valid & ~self.marker.payload.extra),
            tag0.extra.eq(self.marker.valid & self.marker.payload.extra),
            tag0.busy.eq(self.marker.payload.busy),
            tag0.first.eq(self.first),
            tag0.index.eq(base + col),
        ]
        with m.If(en):
            m.d.sync += [tags[0].eq(tag0), valid[0].eq(active | self.marker.valid)]
            m.d.sync += [d.eq(q) for d, q in zip(tags[1:], tags[:-1], strict=False)]
            m.d.sync += [d.eq(q) for d, q in zip(valid[1:], valid[:-1], strict=False)]
            m.d.sync += [product.eq(self.e_data * p.numerator), latch.eq(self.divide.valid)]
            with m.If(latch):
                m.d.sync += row_total.eq(self.total)
            m.d.sync += divisor.eq(row_total)
            m.d.sync += operand.eq(Mux(tags[1].event, product + (row_total >> 1), 0))
            with m.If(active):
                m.d.sync += col.eq(col + 1)
                with m.If(col == p.tokens - 1):
                    m.d.sync += active.eq(0)
            with m.If(self.divide.valid):
                m.d.sync += [active.eq(1), col.eq(0), base.eq(self.divide.payload)]
        m.d.comb += [
            self.o.valid.eq(valid[2]),
            self.o.payload.dividend.eq(operand),
            self.o.payload.divisor.eq(divisor),
            self.o.payload.tag.eq(tags[2]),
        ]
        return m


class DriveOut(wiring.Component):
    """Quotient ``G_j`` in: reads ``G_{t−1,j}`` (0 in an inference's first step; the block RAM
    and its output register), writes ``G_j`` back, registers the drive ``G_j − G_{t−1,j}`` and
    then the output beat: the drive
    ``G_j − G_{t−1,j}`` when non-zero, the marker (busy = its token's busy OR any non-zero drive
    since the last marker), the extra marker (busy 0) when the marker before it was busy.
    Latency :attr:`latency`; ``en = ~o.valid | o.ready``."""

    def __init__(self, params: sm.SoftmaxParams, tag) -> None:
        self._p, self._tag = params, tag
        q = data.StructLayout({"quotient": unsigned(params.quotient_width), "tag": tag})
        super().__init__(
            {
                "en": Out(1),
                "i": In(stream.Signature(q, always_ready=True)),
                "o": Out(stream.Signature(_layout(params.output_format))),
            }
        )

    @property
    def latency(self) -> int:
        return sm.DRIVE_LATENCY

    def elaborate(self, platform):
        m = Module()
        p = self._p
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.en.eq(en)]
        m.submodules.mem = mem = memory.Memory(
            shape=unsigned(p.quotient_width), depth=p.entries, init=[], attrs=_NO_COLLISION
        )
        wr, rd = mem.write_port(), mem.read_port()
        valid = [Signal(name=f"valid{k}") for k in (1, 2, 3)]
        q = [Signal(unsigned(p.quotient_width), name=f"q{k}") for k in (1, 2)]
        tags = [Signal(self._tag, name=f"tag{k}") for k in (1, 2, 3)]
        word = Signal(unsigned(p.quotient_width), reset_less=True)  # the RAM's output register
        drive = Signal(signed(p.quotient_width + 1))
        any_drive, last_busy = Signal(), Signal()
        with m.If(en):
            m.d.sync += [valid[0].eq(self.i.valid), q[0].eq(self.i.payload.quotient)]
            m.d.sync += [tags[0].eq(self.i.payload.tag), word.eq(rd.data)]
            m.d.sync += [valid[1].eq(valid[0]), q[1].eq(q[0]), tags[1].eq(tags[0])]
            m.d.sync += [valid[2].eq(valid[1]), tags[2].eq(tags[1])]
            m.d.sync += drive.eq(q[1] - Mux(tags[1].first, 0, word))
        m.d.comb += [
            rd.en.eq(en),
            rd.addr.eq(self.i.payload.tag.index),
            wr.en.eq(en & valid[1] & tags[1].event),
            wr.addr.eq(tags[1].index),
            wr.data.eq(q[1]),
        ]
        tag, busy = tags[2], Signal()
        m.d.comb += busy.eq(tag.busy | any_drive)
        out, o = self.o.payload, self.o
        with m.If(en):
            m.d.sync += [o.valid.eq(0), out.index.eq(Mux(tag.event, tag.index, 0))]
            m.d.sync += out.value.eq(Mux(tag.event, drive, 0))
            m.d.sync += [out.marker.eq(~tag.event), out.busy.eq(busy & tag.marker)]
            with m.If(valid[2] & tag.event & (drive != 0)):
                m.d.sync += [o.valid.eq(1), any_drive.eq(1)]
            with m.If(valid[2] & tag.marker):
                m.d.sync += [o.valid.eq(1), any_drive.eq(0), last_busy.eq(busy)]
            with m.If(valid[2] & tag.extra):
                m.d.sync += [o.valid.eq(last_busy), last_busy.eq(0)]
        return m


class SoftmaxCore(wiring.Component):
    """Differential softmax of one block on the layer core's stream protocol (module docstring).

    Latency: an output beat leaves :attr:`out_delay` cycles after its token is issued; see
    :mod:`hw.model.softmax_model` for the whole schedule. Throughput: one input event per cycle;
    ``2n`` cycles per changed row (``max(2n, 3)``; ``n`` divisions overlapped with the next
    rows), ``12 + n`` more per step with changed rows.

    Parameters
    ----------
    params : hw.model.softmax_model.SoftmaxParams
        Geometry, table, numerator and bounds (:meth:`SoftmaxParams.of_block` for a ViT block).

    Members
    -------
    i : In(stream.Signature(event_layout(params.input_format)))
    o : Out(stream.Signature(event_layout(params.output_format)))
    """

    def __init__(self, params: sm.SoftmaxParams) -> None:
        if not isinstance(params, sm.SoftmaxParams):
            raise TypeError(f"params must be a SoftmaxParams, not {type(params).__name__}")
        self._p = params
        self._tag = _tag_layout(params.index_width)
        self._divider = Divider(
            dividend_width=params.dividend_width,
            divisor_width=params.sum_width,
            quotient_width=params.quotient_width,
            tag_shape=self._tag,
        )
        self._timing = sm.SoftmaxTiming(
            tokens=params.tokens, entries=params.entries, divider_latency=self._divider.latency
        )
        super().__init__(
            {
                "i": In(stream.Signature(_layout(params.input_format))),
                "o": Out(stream.Signature(_layout(params.output_format))),
            }
        )

    @classmethod
    def for_block(cls, vit, block: int) -> SoftmaxCore:
        return cls(sm.SoftmaxParams.of_block(vit, block))

    @property
    def params(self) -> sm.SoftmaxParams:
        return self._p

    @property
    def timing(self) -> sm.SoftmaxTiming:
        return self._timing

    @property
    def input_format(self) -> EventFormat:
        return self._p.input_format

    @property
    def output_format(self) -> EventFormat:
        return self._p.output_format

    @property
    def divider_latency(self) -> int:
        return self._divider.latency

    @property
    def out_delay(self) -> int:
        return self._timing.out_delay

    def elaborate(self, platform):
        m = Module()
        p, tag = self._p, self._tag
        m.submodules.buffer = buf = InputBuffer(_layout(p.input_format))
        m.submodules.sequencer = seq = StepSequencer(p)
        m.submodules.scores = store = ScoreStore(p)
        m.submodules.passes = passes = RowPasses(p)
        m.submodules.exp = exp = RowExp(p)
        m.submodules.issue = issue = DivideIssue(p, tag)
        m.submodules.divider = div = self._divider
        m.submodules.drive = out = DriveOut(p, tag)
        en = out.en
        wiring.connect(m, wiring.flipped(self.i), buf.i)
        wiring.connect(m, buf.o, seq.i)
        wiring.connect(m, seq.event, store.event)
        wiring.connect(m, seq.row, passes.row)
        wiring.connect(m, seq.marker, issue.marker)
        wiring.connect(m, passes.divide, issue.divide)
        wiring.connect(m, issue.o, div.i)
        m.d.comb += [
            out.i.valid.eq(div.o.valid),
            out.i.payload.quotient.eq(div.o.payload.quotient),
            out.i.payload.tag.eq(div.o.payload.tag),
        ]
        wiring.connect(m, out.o, wiring.flipped(self.o))
        for block in (seq, store, passes, exp, issue, div):
            m.d.comb += block.en.eq(en)
        m.d.comb += [
            store.wipe.eq(seq.wipe),
            store.wipe_addr.eq(seq.wipe_addr),
            store.read_addr.eq(passes.read_addr),
            seq.passes_busy.eq(passes.busy),
            seq.issue_busy.eq(issue.busy | passes.draining),
            issue.first.eq(seq.first),
            exp.score.eq(store.data),
            exp.max_pass.eq(passes.max_pass),
            exp.exp_pass.eq(passes.exp_pass),
            exp.col.eq(passes.col),
            exp.e_addr.eq(issue.e_addr),
            issue.e_data.eq(exp.e_data),
            issue.total.eq(exp.total),
        ]
        return m
