"""The differential softmax core (``hw.cores.softmax``) in plain Python: its geometry and widths,
its exact output (the golden event lists, from the definition or from the reference's recorded
steps) and its exact cycle model. No amaranth import (the cocotb testbench reads this module).

Streams (the layer core's protocol, :mod:`hw.model.events`): the **input** of one block is, per
step ``t``, the score changes ``P_t − P_{t−1}`` as events ``(index, value)`` (non-zero entries in
ascending flat index ``index = (head·n + row)·n + col``) closed by a marker carrying the cumulative
busy flag of the block's ``v`` site (the last site before ``attn``); an inference is the steps up
to the first marker with busy 0. The **output** in step ``t`` is the drive ``G_t − G_{t−1}`` of the
``attn`` site (non-zero entries, ascending index) and a marker with ``busy`` = the input marker's
busy OR any non-zero drive. When the last input step (busy 0) still gave a busy output marker (only
possible at ``t = 0``), one more step follows with no events and a marker of busy 0 (the layer
core's self-running step; the softmax has no state that moves without input).

Schedule (no backpressure, input always valid; cycle 0 the first after reset). ``n`` tokens, ``E``
score entries, ``L = OUT_DELAY`` (:meth:`SoftmaxTiming.out_delay`). Per inference:

* the step's input beats are consumed one per cycle from ``a`` (``a = 1`` for the first inference,
  the input register's latency): events in ``a … a + e − 1``, the marker in ``m = a + e``;
* every row that received an event in the step (every row in step 0) is processed in ascending
  order, row ``i`` (0-based among them) reading from ``r_i = m + F + 1 + i·R`` (``F =
  ROW_FIRST_LATENCY``, ``R = max(2n, ROW_PICK_LATENCY + 1)``, :attr:`SoftmaxTiming.row_period`):
  ``n`` cycles for the row's maximum, ``n`` for the table look-ups and ``Σ``; each ``E`` is
  written ``W = ROW_WRITE_LATENCY`` cycles after its read, and the row's ``n`` divisions enter in
  ``r_i + 2n + W + j`` (column ``j``), while the next rows' reads go on;
* the output event of column ``j`` leaves in ``r_i + 2n + W + j + L`` when its drive is non-zero;
* the marker token enters in ``z = r_last + 3n + W`` (``z = m + F + 1`` when no row changed) and
  leaves in ``z + L``; the next step's beats are consumed from ``z + 1``;
* after the inference's last step (input busy 0) an extra token enters in ``z + 1`` (it leaves as
  the extra marker in ``z + 1 + L`` when needed), then the score memory is cleared in ``E``
  cycles, and the next inference starts at ``a = z + 2 + E``.

So a step with ``k`` changed rows costs ``e + F + 1 + (k − 1)·R + 3n + W`` cycles (``e + F + 1``
without rows; ``F = 4``, ``W = 7``: ``e + 12 + (k − 1)·2n + 3n``), plus ``E + 1`` per inference;
the divider is busy ``n`` of every ``R`` row cycles.

:func:`timed` also takes input beats that arrive late (through the two-entry input buffer) and an
output held back (the whole core but the input buffer freezes: the schedule above holds in
enabled cycles), as the ViT's composed model (:mod:`hw.model.vit_model`) needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model.cycle_model import CoreRun, InferenceSchedule, StepSchedule
from spikezip.hw.model.events import EventFormat, Step
from spikezip.ir.network import signed_width, unsigned_width
from spikezip.ir.transformer import softmax_exact

__all__ = [
    "SoftmaxParams",
    "SoftmaxTiming",
    "divider_latency",
    "golden_from_reference",
    "output_steps",
    "schedule",
    "timed",
]

#: ``hw.cores.softmax.InputBuffer``: a beat accepted on ``i`` is consumed in the next cycle
INPUT_LATENCY = 1
#: ``hw.cores.softmax.StepSequencer``: cycles from an event's consumption to its row's flag
#: being set (the index, then the row ``(index·M) >> S`` registered, then the flag)
ROW_FLAG_LATENCY = 3
#: ``hw.cores.softmax.StepSequencer``: cycles from a change of the row flags (the last event's
#: flag, a row start) to the next row pick (the lowest flag one-hot, then its base index)
ROW_PICK_LATENCY = 2
#: cycles from a step's marker to its first row strobe (the last event's flag, then the pick)
ROW_FIRST_LATENCY = ROW_FLAG_LATENCY - 1 + ROW_PICK_LATENCY
#: cycles from a row's strobe to its first score read (the row passes register the base)
ROW_START_LATENCY = 1
#: ``hw.cores.softmax.ScoreStore``: score read latency (the block RAM, its output register, a
#: register near the logic)
SCORE_READ_LATENCY = 3
#: ``hw.cores.softmax.RowExp``: a copy of the score (apart from the maximum's compare), then the
#: registered gap ``max − P_j`` (the table address)
GAP_LATENCY = 2
#: ``hw.cores.softmax.RowExp``: table ROM read latency (the block RAM, its output register;
#: then ``Σ`` and the row buffer are written)
TABLE_LATENCY = 2
#: cycles from a score read to the write of its ``E`` (the row buffer and ``Σ``)
ROW_WRITE_LATENCY = SCORE_READ_LATENCY + GAP_LATENCY + TABLE_LATENCY
#: ``hw.cores.softmax.DivideIssue``: row-buffer read, the product ``E·N``, the operand register
ISSUE_LATENCY = 3
#: ``hw.cores.softmax.DriveOut``: previous-output read (block RAM, output register), the drive
#: register, then the output register
DRIVE_LATENCY = 4


def _pos(name: str, value: Any, lo: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, not {value!r}")
    return int(value)


@dataclass(frozen=True, kw_only=True, eq=False)
class SoftmaxParams:
    """What a softmax core is built from: one block's geometry, table, numerator and bounds.

    Parameters
    ----------
    heads, tokens : int ≥ 1
    table : sequence of int
        ``T[δ]``, ``T[0] ≥ 1``, non-increasing, ≥ 0 (as :class:`ir.transformer.Softmax`).
    numerator : int ≥ 1
    score_bound : int ≥ 0
        ``max |P|`` (``VisionTransformer.ranges.scores``).
    step_bound : int ≥ 1
        ``max |P_t − P_{t−1}|`` (``ranges.score_step``).
    """

    heads: int
    tokens: int
    table: tuple[int, ...]
    numerator: int
    score_bound: int
    step_bound: int

    def __post_init__(self) -> None:
        for name in ("heads", "tokens", "numerator", "step_bound"):
            object.__setattr__(self, name, _pos(name, getattr(self, name)))
        object.__setattr__(self, "score_bound", _pos("score_bound", self.score_bound, 0))
        table = tuple(int(v) for v in np.asarray(self.table, dtype=object).ravel())
        if not table or table[0] < 1:
            raise ValueError("table must hold at least one entry with table[0] ≥ 1")
        if min(table) < 0 or any(b > a for a, b in itertools.pairwise(table)):
            raise ValueError("table must be non-negative and non-increasing")
        object.__setattr__(self, "table", table)
        if self.sum_bound * self.numerator >= 1 << 62:
            raise ValueError("table[0]·tokens·numerator must stay below 2^62")

    @classmethod
    def of_block(cls, vit: Any, block: int) -> SoftmaxParams:
        """The parameters of ``vit.blocks[block]`` (widths from ``vit.ranges``)."""
        if not isinstance(block, int) or not 0 <= block < len(vit.blocks):
            raise ValueError(
                f"block must be an integer in [0, {len(vit.blocks) - 1}], not {block!r}"
            )
        blk, r = vit.blocks[block], vit.ranges
        return cls(
            heads=blk.heads,
            tokens=vit.tokens,
            table=tuple(int(v) for v in blk.softmax.table),
            numerator=int(blk.softmax.numerator),
            score_bound=r.scores[block],
            step_bound=r.score_step[block],
        )

    # -- geometry and widths ----------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.heads * self.tokens

    @property
    def entries(self) -> int:
        return self.rows * self.tokens

    @property
    def sum_bound(self) -> int:
        return self.tokens * self.table[0]

    @property
    def index_width(self) -> int:
        return unsigned_width(self.entries - 1)

    @property
    def score_width(self) -> int:
        return signed_width(-self.score_bound, self.score_bound)

    @property
    def gap_width(self) -> int:
        """Unsigned bits of ``max P − P_j`` (≤ 2·score_bound)."""
        return unsigned_width(2 * self.score_bound)

    @property
    def table_width(self) -> int:
        return unsigned_width(self.table[0])

    @property
    def sum_width(self) -> int:
        return unsigned_width(self.sum_bound)

    @property
    def dividend_width(self) -> int:
        return unsigned_width(self.table[0] * self.numerator + self.sum_bound // 2)

    @property
    def quotient_width(self) -> int:
        """``G ≤ N``."""
        return unsigned_width(self.numerator)

    @property
    def input_format(self) -> EventFormat:
        return EventFormat(
            self.index_width, max(2, signed_width(-self.step_bound, self.step_bound))
        )

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(self.index_width, max(2, signed_width(-self.numerator, self.numerator)))

    def row_reciprocal(self) -> tuple[int, int]:
        """``(M, S)`` with ``(i·M) >> S == i // tokens`` for every index ``i < entries``."""
        n, top = self.tokens, self.entries - 1
        for s in range(64):
            mult = -(-(1 << s) // n)
            if all((i * mult) >> s == i // n for i in range(top + 1)):
                return mult, s
        raise ValueError("no reciprocal found")  # pragma: no cover (s = 2·width always works)


def divider_latency(quotient_width: int) -> int:
    """``hw.cores.divider.Divider``: cycles from a division's input to its quotient (one stage
    per quotient bit)."""
    return quotient_width


@dataclass(frozen=True)
class SoftmaxTiming:
    """Cycle constants of a core: ``tokens`` and the divider's latency."""

    tokens: int
    entries: int
    divider_latency: int

    @classmethod
    def of(cls, params: SoftmaxParams) -> SoftmaxTiming:
        """The timing of the core built from ``params`` (``hw.cores.softmax.SoftmaxCore``)."""
        return cls(
            tokens=params.tokens,
            entries=params.entries,
            divider_latency=divider_latency(params.quotient_width),
        )

    @property
    def row_period(self) -> int:
        """Cycles between the starts of two rows: the max pass and the exp pass (the next row's
        reads follow the last one; at least the row pick's ``ROW_PICK_LATENCY + 1``)."""
        return max(2 * self.tokens, ROW_PICK_LATENCY + 1)

    @property
    def divide_offset(self) -> int:
        """Cycles from a row's first read to its first division issue (its last ``E`` written)."""
        return 2 * self.tokens + ROW_WRITE_LATENCY

    @property
    def out_delay(self) -> int:
        """Cycles from a token's issue to its output beat."""
        return ISSUE_LATENCY + self.divider_latency + DRIVE_LATENCY

    @property
    def clear_cycles(self) -> int:
        return self.entries


# -- golden event lists -------------------------------------------------------------------------
def _step(values: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(values)
    return Step(idx.astype(np.int64), values[idx].astype(np.int64), bool(busy))


def output_steps(params: SoftmaxParams, inputs: list[list[Step]]) -> list[list[Step]]:
    """Per inference, the output steps of the core on ``inputs``, from ``softmax_exact``."""
    n, table, num = params.tokens, list(params.table), params.numerator
    out = []
    for inf in inputs:
        p = np.zeros(params.entries, dtype=np.int64)
        g_prev = np.zeros(params.entries, dtype=np.int64)
        steps = []
        for t, st in enumerate(inf):
            np.add.at(p, st.indices, st.values)
            rows = range(params.rows) if t == 0 else np.unique(st.indices // n)
            g = g_prev.copy()
            for r in rows:
                g[r * n : (r + 1) * n] = softmax_exact(
                    [int(v) for v in p[r * n : (r + 1) * n]], table, num
                )
            drive = g - g_prev
            g_prev = g
            steps.append(_step(drive, st.busy or bool(drive.any())))
        if steps[-1].busy:
            steps.append(_step(np.zeros(params.entries, dtype=np.int64), False))
        out.append(steps)
    return out


def golden_from_reference(
    vit: Any, block: int, result: Any
) -> tuple[list[list[Step]], list[list[Step]]]:
    """``(inputs, outputs)`` per sample of ``result = sw.vit.reference.run(vit, x,
    record_drives=True)``: the recorded score changes and ``attn`` drives of ``block``."""
    steps, trace = result.steps, result.trace
    v_site = vit.site_names.index(f"blocks.{block}.v")
    key_in, key_out = f"blocks.{block}.scores_step", f"blocks.{block}.attn.drive"
    ins, outs = [], []
    for b in range(trace.batch):
        busy = trace.busy[b, :, v_site]
        idle = np.flatnonzero(~busy)
        if idle.size == 0:
            raise ValueError(f"block {block}: sample {b} never idle at its v site")
        last = int(idle[0])
        inf_in, inf_out = [], []
        for t in range(last + 1):
            inf_in.append(_step(steps[t][key_in][b].ravel(), busy[t]))
            drive = steps[t][key_out][b].ravel()
            inf_out.append(_step(drive, bool(busy[t]) or bool(drive.any())))
        if inf_out[-1].busy:
            inf_out.append(_step(np.zeros_like(steps[0][key_out][b].ravel()), False))
        ins.append(inf_in)
        outs.append(inf_out)
    return ins, outs


# -- the cycle model ----------------------------------------------------------------------------
def schedule(
    timing: SoftmaxTiming,
    inputs: list[list[Step]],
    outputs: list[list[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[InferenceSchedule]:
    """The cycle of every output event and marker (no backpressure; input always valid, or
    valid from ``arrivals``: per inference and input step, the first cycle each beat — events,
    then the marker — is valid on ``i``).

    ``StepSchedule.accumulate_cycle`` is the cycle the step's first beat is consumed,
    ``fire_cycle`` the cycle its marker is; see the module docstring for the rules.
    """
    return _run(timing, inputs, outputs, arrivals, None)[0]


def timed(
    timing: SoftmaxTiming,
    inputs: list[list[Step]],
    outputs: list[list[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
    ready: Sequence[int] | None = None,
) -> CoreRun:
    """The core's run as a :class:`~hw.model.cycle_model.CoreRun`.

    The input buffer (``hw.cores.softmax.InputBuffer``, two entries, ``i.ready`` a register)
    offers beat ``k`` to the sequencer from ``max(valid_k, consumed_{k−1}) + 1``, and takes it
    from the FIFO in ``max(valid_k, taken_{k−1} + 1, consumed_{k−2} + 1)`` (its second entry is
    full until the beat before the previous one is consumed). ``ready``: optional, per output
    beat of the run, the first cycle it may leave (backpressure on ``o``). Every block but the
    input buffer runs on ``en = ~o.valid | o.ready``: while a beat waits, the core is frozen, so
    the schedule above holds in *enabled* cycles, and a beat waiting ``s`` cycles delays every
    later enabled cycle by ``s``.
    """
    sched, taken, work, offered = _run(timing, inputs, outputs, arrivals, ready)
    beats = tuple(tuple((s.event_cycles, s.marker_cycle) for s in inf.steps) for inf in sched)
    return CoreRun(beats=beats, taken=(tuple(taken),), work=work, offered=tuple(offered))


class _Freeze:
    """Enabled cycles (``en = 1``) to real cycles, as the output beats' waits freeze the core.

    Output beats are queued in stream order with the enabled cycle ``X`` they leave in without
    waits; beat ``k`` is offered in real cycle ``R(X − 1) + 1`` and leaves in ``max(that,
    ready[k])``, which is ``R(X)``: the core is frozen in between.
    """

    def __init__(self, ready: Sequence[int] | None) -> None:
        self.ready, self.shift = ready, 0
        self.pending: list[list[int]] = []  # [X, leave] in stream order, leave -1 until resolved
        self.head = 0
        self.offered: list[int] = []

    def emit(self, enabled: int) -> list[int]:
        beat = [enabled, -1]
        self.pending.append(beat)
        return beat

    def resolve(self, enabled: float) -> None:
        """Place every queued beat leaving in an enabled cycle ``≤ enabled``."""
        while self.head < len(self.pending) and self.pending[self.head][0] <= enabled:
            beat = self.pending[self.head]
            offer = beat[0] + self.shift
            k = len(self.offered)
            self.offered.append(offer)
            leave = offer
            if self.ready is not None and k < len(self.ready):
                leave = max(offer, int(self.ready[k]))
            self.shift += leave - offer
            beat[1] = leave
            self.head += 1

    def real(self, enabled: int) -> int:
        self.resolve(enabled)
        return enabled + self.shift

    def first_at(self, enabled: int, cycle: int) -> int:
        """The first enabled cycle ``≥ enabled`` that is in real cycle ``≥ cycle``."""
        while True:
            if self.real(enabled) >= cycle:
                return enabled
            goal = cycle - self.shift
            nxt = self.pending[self.head][0] if self.head < len(self.pending) else None
            enabled = goal if nxt is None or nxt > goal else nxt


def _run(timing, inputs, outputs, arrivals, ready):
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input and {len(outputs)} output inferences")
    n, out_delay = timing.tokens, timing.out_delay
    period = timing.row_period
    fz = _Freeze(ready)
    phase = 0  # the enabled cycle the accumulate phase starts
    consumed = [-2, -2]  # real cycles the two beats consumed last (the buffer frees after them)
    last_taken = -2
    taken, work, marks = [], 0, []
    for j, (ins, outs) in enumerate(zip(inputs, outputs, strict=True)):
        if len(outs) not in (len(ins), len(ins) + 1):
            raise ValueError(f"{len(outs)} output steps for {len(ins)} input steps")
        inf_marks = []
        for t, st in enumerate(ins):
            c, a = phase, None
            for k in range(st.n_events + 1):
                valid = 0 if arrivals is None else int(arrivals[j][t][k])
                last_taken = max(valid, last_taken + 1, consumed[0] + 1)
                taken.append(last_taken)
                c = fz.first_at(c, max(valid + INPUT_LATENCY, consumed[1] + 1))
                consumed = [consumed[1], fz.real(c)]
                if k == 0:
                    a = consumed[1]
                c += 1
            m = c - 1
            rows = range(timing.entries // n) if t == 0 else np.unique(st.indices // n)
            first = m + ROW_FIRST_LATENCY + ROW_START_LATENCY
            issue = {int(r): first + i * period + timing.divide_offset for i, r in enumerate(rows)}
            idx = outs[t].indices
            events = [fz.emit(int(issue[int(i) // n] + int(i) % n + out_delay)) for i in idx]
            z = first + (len(rows) - 1) * period + timing.divide_offset + n
            if not len(rows):
                z = m + 1 + ROW_FIRST_LATENCY
            inf_marks.append((st.n_events, a, fz.real(m), events, fz.emit(z + out_delay)))
            work += st.n_events + 1 + z - m
            phase = z + 1
        if len(outs) > len(ins):
            inf_marks.append((0, None, fz.real(z + 1), [], fz.emit(z + 1 + out_delay)))
        phase = z + 2 + timing.clear_cycles
        work += 1 + timing.clear_cycles
        marks.append(inf_marks)
    fz.resolve(float("inf"))
    result = []
    for inf_marks in marks:
        steps = tuple(
            StepSchedule(ne, a, m, tuple(e[1] for e in ev), mk[1]) for ne, a, m, ev, mk in inf_marks
        )
        result.append(InferenceSchedule(steps[0].accumulate_cycle, steps))
    return result, taken, work, fz.offered


def check_inputs(params: SoftmaxParams, inputs: Sequence[Sequence[Step]]) -> None:
    """Every inference ends with its only busy-0 marker, indices ascend within each step (the
    score memory's read-modify-write needs two events on one entry ≥ 4 cycles apart), indices
    and values fit the formats."""
    fmt = params.input_format
    for b, inf in enumerate(inputs):
        if not inf or inf[-1].busy or any(not s.busy for s in inf[:-1]):
            raise ValueError(f"inference {b}: exactly its last marker must have busy 0")
        for s in inf:
            if s.n_events and (s.indices.max() >= params.entries or s.indices.min() < 0):
                raise ValueError(f"inference {b}: index out of [0, {params.entries})")
            if s.n_events > 1 and (np.diff(s.indices) <= 0).any():
                raise ValueError(f"inference {b}: indices must ascend within a step")
            lim = 1 << (fmt.value_width - 1)
            if s.n_events and (s.values.min() < -lim or s.values.max() >= lim):
                raise ValueError(f"inference {b}: value out of the input format")
