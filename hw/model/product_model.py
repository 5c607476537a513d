"""Geometry and exact cycle model of the spike-product core (:mod:`hw.cores.product`).

Pure Python (no Amaranth): the simulator process imports it.

One core computes, per step and per head ``h``, the change ``ΔO_h`` of a product
``O_h = Xacc_h · Yacc_h`` of two spike tracers (``X_h`` is ``n × r``, ``Y_h`` is ``r × m``):

* ``multi`` (the scores, ``kind="scores"``): X = q (``[tokens, head_dim]`` per head), Y = kᵀ;
  O = P, the ``[heads, tokens, tokens]`` scores, out index ``(h·N + i)·N + j``;
* ``multi1`` (the context, ``kind="context"``): X = attn (``[tokens, tokens]`` per head), Y = v;
  O = C, out index ``i·D + h·d_h + j`` (the context site's order).

An X spike ``(h, i, c, s)`` adds ``s·Yacc[h, c, :]`` to row ``i`` of ``ΔO_h`` and then
``Xacc[h, i, c] += s``; a Y spike ``(h, c, j, s)`` adds ``s·Xacc[h, :, c]`` to column ``j`` and
then ``Yacc[h, c, j] += s``. In **any** order of the step's spikes this is exactly
``Xacc_t·Yacc_tᵀ − Xacc_{t−1}·Yacc_{t−1}ᵀ`` (spec §3.5): for one entry ``(i, j)`` and one inner
index ``c``, the pair of an X spike and a Y spike of the step contributes ``s_x·s_y`` exactly once
(through whichever of the two comes second), and every other term is a spike times the other
tracer's value of the step before. Nothing here assumes ``s = ±1``: graded spikes ``s = ±2^k``
(docs/graded.md) satisfy the same ring identity, and the core adds ``±(row << k)`` (a shift, no
multiplier). An event costs the same cycles whatever its value, so the cycle model does not
read the values.

An inference is given per input as its steps (events, then the marker): every marker but the last
has busy 1, the last busy 0 — after it the input is idle for the rest of the inference (the
stream protocol: its producer sends no further marker of this inference), so the two inputs' step
lists may differ in length. The core's steps are the longer list's; an idle input adds no events
and no marker to a step; the output marker's busy is the OR of the step's input markers', so the
inference ends after the step in which the second input went idle.

:func:`timed` also takes input beats that arrive late (each cycle the sequencer starts what its
input registers offer: an X event, else a Y event, else a marker) and an output held back (the
read-out waits at the beat), as the ViT's composed model (:mod:`hw.model.vit_model`) needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import numpy as np

from spikezip.hw.model.cycle_model import WEIGHT_READ_LATENCY, CoreRun
from spikezip.hw.model.events import Step, spike_value_width
from spikezip.ir.network import signed_width

__all__ = [
    "KINDS",
    "OP_STAGES",
    "ProductGeometry",
    "input_beats",
    "output_busy",
    "output_steps",
    "product_schedule",
    "reference_product",
    "timed",
]

#: the two products of a block
KINDS = ("scores", "context")
#: the two inputs, in the sequencer's priority order
X_SIDE, Y_SIDE = 0, 1
#: registers between the sequencer's word operation and the accumulator (and the tracer update
#: and the banks' command, which travel with it)
OP_STAGES = 1


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _bounds(name: str, value: Any) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    ok = len(pair) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair
    )
    if not ok or not pair[0] <= 0 <= pair[1]:
        raise ValueError(f"{name} must be a pair of integers (lo ≤ 0 ≤ hi), not {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True, kw_only=True)
class ProductGeometry:
    """Shapes, widths and latencies of one spike-product core.

    Parameters
    ----------
    kind : str
        ``"scores"`` (``multi``) or ``"context"`` (``multi1``).
    tokens, heads, head_dim : int
        ``N``, ``H``, ``d_h`` of the block (``≥ 1``).
    x_bounds, y_bounds : tuple of int
        ``(n, p)`` of the X and Y sites' tracers (q and k, or attn and v).
    step_bound : int
        Largest ``|ΔO|`` of a step (``VisionTransformer.ranges.score_step`` /
        ``context_step``); also bounds every partial sum within the step.
    lanes : int
        ``P``: entries of ``ΔO`` updated per cycle (``≥ 1``).
    accumulator_latency : int
        Latency of the reused accumulator (the address stage, the weight read, the products).
    x_spike_max, y_spike_max : int
        Largest ``|s|`` of an X and a Y spike (the sites' ``spike_max``: 1 for ST-BIF, ``2^K``
        for graded neurons; a power of two). ``step_bound`` must allow for them.
    """

    kind: str
    tokens: int
    heads: int
    head_dim: int
    x_bounds: tuple[int, int]
    y_bounds: tuple[int, int]
    step_bound: int
    lanes: int
    accumulator_latency: int = WEIGHT_READ_LATENCY
    x_spike_max: int = 1
    y_spike_max: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        for name in ("tokens", "heads", "head_dim", "step_bound", "lanes"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        object.__setattr__(self, "x_bounds", _bounds("x_bounds", self.x_bounds))
        object.__setattr__(self, "y_bounds", _bounds("y_bounds", self.y_bounds))
        lat = self.accumulator_latency
        if not isinstance(lat, int) or lat < WEIGHT_READ_LATENCY:
            raise ValueError(
                f"accumulator_latency must be an integer ≥ {WEIGHT_READ_LATENCY}, not {lat!r}"
            )
        for name in ("x_spike_max", "y_spike_max"):
            v = _positive(name, getattr(self, name))
            if v & (v - 1):
                raise ValueError(f"{name} must be a power of two ≥ 1, not {v!r}")
            object.__setattr__(self, name, v)

    @classmethod
    def for_block(cls, vit: Any, block: int, kind: str, *, lanes: int) -> ProductGeometry:
        """The core of ``vit.blocks[block]`` (``kind`` ``"scores"`` or ``"context"``)."""
        if not isinstance(block, int) or not 0 <= block < len(vit.blocks):
            raise ValueError(
                f"block must be an integer in [0, {len(vit.blocks) - 1}], not {block!r}"
            )
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        blk, sites = vit.blocks[block], {s.name: s for s in vit.sites}
        x, y = ("q", "k") if kind == "scores" else ("attn", "v")
        p = f"blocks.{block}."
        step = vit.ranges.score_step if kind == "scores" else vit.ranges.context_step
        return cls(
            kind=kind,
            tokens=vit.tokens,
            heads=blk.heads,
            head_dim=blk.head_dim,
            x_bounds=(sites[p + x].neg_bound, sites[p + x].pos_bound),
            y_bounds=(sites[p + y].neg_bound, sites[p + y].pos_bound),
            step_bound=int(step[block]),
            lanes=lanes,
            x_spike_max=int(sites[p + x].op.spike_max),
            y_spike_max=int(sites[p + y].op.spike_max),
        )

    # -- shapes ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, r, m)``: rows, inner and columns of one head's product."""
        n, dh = self.tokens, self.head_dim
        return (n, dh, n) if self.kind == "scores" else (n, n, dh)

    @property
    def x_size(self) -> int:
        """Neurons of the X site (its event indices)."""
        return self.tokens * self.dim if self.kind == "scores" else self.heads * self.tokens**2

    @property
    def y_size(self) -> int:
        return self.tokens * self.dim

    @property
    def out_size(self) -> int:
        n, _, m = self.shape
        return self.heads * n * m

    def x_entry(self, index: int) -> tuple[int, int, int]:
        """``(h, i, c)`` of X event ``index``."""
        if self.kind == "scores":
            tok, ch = divmod(index, self.dim)
            return ch // self.head_dim, tok, ch % self.head_dim
        hi, col = divmod(index, self.tokens)
        return hi // self.tokens, hi % self.tokens, col

    def y_entry(self, index: int) -> tuple[int, int, int]:
        """``(h, c, j)`` of Y event ``index``."""
        tok, ch = divmod(index, self.dim)
        if self.kind == "scores":
            return ch // self.head_dim, ch % self.head_dim, tok
        return ch // self.head_dim, tok, ch % self.head_dim

    @property
    def out_strides(self) -> tuple[int, int]:
        """``(head, row)`` strides of the output index (the column's is 1)."""
        n = self.tokens
        return (n * n, n) if self.kind == "scores" else (self.head_dim, self.dim)

    def out_index(self, h: int, i: int, j: int) -> int:
        hs, rs = self.out_strides
        return h * hs + i * rs + j

    # -- words -------------------------------------------------------------------------------
    @property
    def row_words(self) -> int:
        """``Wm = ceil(m / P)``: cycles of an X event (a row of ``ΔO``)."""
        return -(-self.shape[2] // self.lanes)

    @property
    def column_words(self) -> int:
        """``Wn = ceil(n / P)``: cycles of a Y event (a column of ``ΔO``)."""
        return -(-self.shape[0] // self.lanes)

    @property
    def words(self) -> int:
        """Words per tracer row in the tracer memories: ``max(Wn, Wm)``."""
        return max(self.row_words, self.column_words)

    @property
    def groups(self) -> int:
        """``G = H·r``: tracer rows (one per head and inner index)."""
        return self.heads * self.shape[1]

    @property
    def tracer_depth(self) -> int:
        """Words of each tracer memory: ``G·words``."""
        return self.groups * self.words

    @property
    def bank_depth(self) -> int:
        """Words of each of the ``P`` banks of ``ΔO``: ``H·Wn·P·Wm``."""
        return self.heads * self.column_words * self.lanes * self.row_words

    @property
    def scan_words(self) -> int:
        """Words read out per step: ``H·n·Wm``."""
        return self.heads * self.shape[0] * self.row_words

    @property
    def clear_cycles(self) -> int:
        """Cycles of a re-initialisation (tracers and banks to zero): a word per cycle of the
        deeper memory, plus one (each memory registers the clear before its write enable)."""
        return max(self.tracer_depth, self.bank_depth) + 1

    # -- widths ------------------------------------------------------------------------------
    @property
    def x_width(self) -> int:
        return signed_width(*self.x_bounds)

    @property
    def y_width(self) -> int:
        return signed_width(*self.y_bounds)

    @property
    def spike_widths(self) -> tuple[int, int]:
        """Signed bits of an X and a Y spike value (``hw.model.events.spike_value_width``)."""
        return spike_value_width(self.x_spike_max), spike_value_width(self.y_spike_max)

    @property
    def max_shift(self) -> int:
        """Largest ``k`` of a spike ``±2^k`` on either input (0 for ST-BIF)."""
        return max(self.x_spike_max, self.y_spike_max).bit_length() - 1

    @property
    def tracer_width(self) -> int:
        """Signed bits of a tracer word lane (both memories: the products' shared operand)."""
        return max(self.x_width, self.y_width)

    @property
    def value_width(self) -> int:
        """Signed bits of a ``ΔO`` entry, any partial sum within a step included."""
        return max(2, signed_width(-self.step_bound, self.step_bound))

    @property
    def index_widths(self) -> tuple[int, int, int]:
        """Index bits of the X, Y and output streams."""
        return tuple(
            max(1, (s - 1).bit_length()) for s in (self.x_size, self.y_size, self.out_size)
        )

    @property
    def drain_cycles(self) -> int:
        """Cycles after the step's last accumulate slot (the second marker) up to the first
        read of ``ΔO``, which is the last of them (the datapath drains: its last write
        lands before: the operation register, the accumulator, the banks' drive register, the
        drive turned in two registered steps, the read-modify-write)."""
        return OP_STAGES + self.accumulator_latency + 3

    @property
    def scan_latency(self) -> int:
        """Cycles from the first read of ``ΔO`` to its word held in the emitter, whose events
        then leave one per cycle: the banks' read register, the word turned by ``row mod 4``
        lanes, the word in column order, its non-zero flags, the order of its non-zero lanes."""
        return 5


def reference_product(geo: ProductGeometry, xs: list, ys: list) -> list[np.ndarray]:
    """``ΔO`` per step ``[H, n, m]`` from the steps' X and Y spikes, in plain integers.

    ``xs[t]``, ``ys[t]``: the step's events ``(index, value)`` in any order; the shorter list
    (an input idle from its end on) counts as empty steps. The definition,
    ``Xacc_t·Yacc_t − Xacc_{t−1}·Yacc_{t−1}`` per head, written independently of the hardware.
    """
    n, r, m = geo.shape
    xa = np.zeros((geo.heads, n, r), dtype=np.int64)
    ya = np.zeros((geo.heads, r, m), dtype=np.int64)
    out = []
    for xe, ye in zip_longest(xs, ys, fillvalue=()):
        before = xa @ ya
        for idx, v in xe:
            h, i, c = geo.x_entry(idx)
            xa[h, i, c] += v
        for idx, v in ye:
            h, c, j = geo.y_entry(idx)
            ya[h, c, j] += v
        out.append(xa @ ya - before)
    return out


def _inference(inference: Any) -> tuple[list, list]:
    ok = isinstance(inference, (tuple, list)) and len(inference) == 2
    if not ok or not all(isinstance(s, (tuple, list)) and len(s) >= 1 for s in inference):
        raise ValueError(
            f"an inference must be a pair (xs, ys) of non-empty step lists, not {inference!r}"
        )
    return list(inference[0]), list(inference[1])


def input_beats(steps: list) -> list[tuple[bool, int, int, bool]]:
    """One input's beats ``(marker, index, value, busy)`` in one inference: per step its events,
    then its marker, busy 1 but in the last step (the input is idle from there on)."""
    out = []
    for t, events in enumerate(steps):
        out += [(False, int(i), int(v), False) for i, v in events]
        out.append((True, 0, 0, t < len(steps) - 1))
    return out


def output_busy(xs: list, ys: list) -> list[bool]:
    """The busy flag of each output marker: the OR of the step's input markers' (an idle input
    contributes 0); the last is the first 0."""
    return [t < len(xs) - 1 or t < len(ys) - 1 for t in range(max(len(xs), len(ys)))]


def product_schedule(
    geo: ProductGeometry,
    inferences: list[tuple[list, list]],
    arrivals: list[tuple[list, list]] | None = None,
) -> list[tuple[int, tuple[bool, int, int, bool]]]:
    """Every output beat ``(cycle, (marker, index, value, busy))`` with the output always ready,
    cycle 0 being the first after reset.

    ``inferences``: per inference ``(xs, ys)``, the X and Y inputs' steps (the module docstring:
    each input's last marker has busy 0, the lists may differ in length). A step costs one cycle
    per marker read, so one less once an input is idle. ``arrivals``: optional, per inference
    ``(x, y)``, per input step the first cycle each beat (events, then the marker) is valid on
    the port (:func:`timed`); default: inputs always valid.
    """
    run, steps = _run(geo, inferences, arrivals)
    beats = []
    for inf_beats, inf_steps in zip(run.beats, steps, strict=True):
        for (cycles, marker), step in zip(inf_beats, inf_steps, strict=True):
            for c, i, v in zip(cycles, step.indices.tolist(), step.values.tolist(), strict=True):
                beats.append((c, (False, i, v, False)))
            beats.append((marker, (True, 0, 0, step.busy)))
    return beats


def output_steps(geo: ProductGeometry, inferences: list[tuple[list, list]]) -> list[list[Step]]:
    """Per inference, the output steps: the non-zero entries of ``ΔO`` in the read-out order
    (head, row, word, lane), then the marker with :func:`output_busy`."""
    return _run(geo, inferences, None)[1]


def timed(
    geo: ProductGeometry,
    inferences: list[tuple[list, list]],
    arrivals: list[tuple[list, list]] | None = None,
    ready: list[int] | None = None,
) -> CoreRun:
    """:func:`product_schedule` as a :class:`~hw.model.cycle_model.CoreRun` (ports X, Y).

    Each input has a one-beat register (``hw.cores.sequencer.EventBuffer``): it takes beat ``k``
    from the FIFO in ``max(valid_k, consumed_{k−1})`` and offers it from the next cycle. Each
    accumulate cycle the sequencer starts, of the beats offered, an X event, else a Y event,
    else the X marker, else the Y marker (an event takes its ``Wm`` or ``Wn`` word cycles, and
    is consumed with the last; a marker one cycle), and idles when none is offered; the drain
    starts the cycle after the step's last marker. ``ops``: entries of ``ΔO`` updated in the
    accumulate phases (``m`` per X event, ``n`` per Y event). ``ready``: optional, per output
    beat of the run, the first cycle it may leave (backpressure on ``o``, a register with a skid
    register behind it): the emitter sends an entry, or the marker, once the beat two before has
    left (into ``o``, or into the skid register while ``o`` holds the beat before: it is offered
    the cycle after that one leaves), and the next step's accumulate phase starts the cycle
    after the marker is sent.
    """
    return _run(geo, inferences, arrivals, ready)[0]


def _accumulate(geo, start, queues, taken, held):
    """Cycle after the step's last marker: ``queues`` per side ``[events, arrivals]`` (``None``:
    idle); ``held`` per side the cycle the beat in its register leaves (updated)."""
    wm, wn = geo.row_words, geo.column_words
    pos, c = [0, 0], start
    while True:
        offered = [None, None]
        for side, q in enumerate(queues):
            if q is None or pos[side] > q[0]:
                continue
            valid = 0 if q[1] is None else int(q[1][pos[side]])
            offered[side] = max(valid, held[side]) + 1
        if offered == [None, None]:
            return c
        ready = [o is not None and o <= c for o in offered]
        event = [ready[s] and pos[s] < queues[s][0] for s in (X_SIDE, Y_SIDE)]
        marker = [ready[s] and pos[s] == queues[s][0] for s in (X_SIDE, Y_SIDE)]
        side = next((s for s in (X_SIDE, Y_SIDE) if event[s]), None)
        cost = None
        if side is not None:
            cost = wm if side == X_SIDE else wn
        else:
            side = next((s for s in (X_SIDE, Y_SIDE) if marker[s]), None)
            cost = 1
        if side is None:  # nothing offered yet: idle until the first beat is
            c = min(o for o in offered if o is not None)
            continue
        taken[side].append(offered[side] - 1)
        held[side] = c + cost - 1
        pos[side] += 1
        c += cost


def _run(geo, inferences, arrivals, ready=None):
    wm, wn, p = geo.row_words, geo.column_words, geo.lanes
    n, _, m = geo.shape
    cycle = geo.clear_cycles  # re-initialisation after reset
    work, accumulate, ops = geo.clear_cycles, 0, 0
    taken: list[list[int]] = [[], []]
    held = [-1, -1]
    beats, steps_out, offered = [], [], []
    leaves = [-1, -1]  # the cycles the last two output beats left
    left = -1  # the cycle the last output beat left

    def send(cycle: int) -> int:
        """Load a beat in ``cycle`` (or once the skid register is free: the beat two before has
        left) into ``o``, or into the skid register if ``o`` is held; the loading cycle."""
        nonlocal left
        cycle = max(cycle, leaves[-2] + 1)
        offered.append(max(cycle, leaves[-1]) + 1)
        k = len(offered) - 1
        bound = int(ready[k]) if ready is not None and k < len(ready) else 0
        left = max(offered[-1], bound)
        leaves[:] = [leaves[-1], left]
        return cycle

    for j, inference in enumerate(inferences):
        xs, ys = _inference(inference)
        arr = (None, None) if arrivals is None else arrivals[j]
        busy = output_busy(xs, ys)
        inf_beats, inf_steps = [], []
        for t, delta in enumerate(reference_product(geo, xs, ys)):
            queues = [
                None if t >= len(s) else [len(s[t]), None if a is None else a[t]]
                for s, a in ((xs, arr[0]), (ys, arr[1]))
            ]
            nx, ny = (q[0] if q else 0 for q in queues)
            start = cycle
            cycle = _accumulate(geo, cycle, queues, taken, held)
            accumulate += cycle - start
            ops += nx * m + ny * n
            work += nx * wm + ny * wn + sum(q is not None for q in queues)
            begin = cycle
            cycle += geo.drain_cycles  # (its last cycle reads the first word)
            cycle += geo.scan_latency  # the first word through the emitter's registers
            padded = np.zeros((geo.heads, n, wm * p), dtype=np.int64)
            padded[:, :, :m] = delta
            cycles, idx, val = [], [], []
            for h in range(geo.heads):
                for i in range(n):
                    for w in range(wm):
                        lanes = padded[h, i, w * p : (w + 1) * p]
                        nz = np.flatnonzero(lanes)
                        for k in nz:
                            idx.append(geo.out_index(h, i, w * p + int(k)))
                            val.append(int(lanes[k]))
                            cycle = send(cycle) + 1
                            cycles.append(left)
                        if not len(nz):
                            cycle += 1
            cycle = send(cycle)
            inf_beats.append((tuple(cycles), left))
            inf_steps.append(
                Step(np.array(idx, dtype=np.int64), np.array(val, dtype=np.int64), busy[t])
            )
            cycle += 1  # the marker
            work += cycle - begin
        cycle += geo.clear_cycles
        work += geo.clear_cycles
        beats.append(tuple(inf_beats))
        steps_out.append(inf_steps)
    run = CoreRun(
        beats=tuple(beats),
        taken=(tuple(taken[0]), tuple(taken[1])),
        work=work,
        accumulate=accumulate,
        ops=ops,
        offered=tuple(offered),
    )
    return run, steps_out


def trace_inferences(
    geo: ProductGeometry,
    x_spikes: np.ndarray,
    y_spikes: np.ndarray,
    x_busy: np.ndarray,
    y_busy: np.ndarray,
    steps: np.ndarray,
) -> list[tuple[list, list]]:
    """The core's input per inference from a trace: ``(xs, ys)`` as :func:`product_schedule`
    takes it.

    ``x_spikes``/``y_spikes`` ``[B, T, size]`` are the X and Y sites' spikes, ``x_busy``/
    ``y_busy`` ``[B, T]`` their cumulative busy flags, ``steps`` ``[B]`` the steps per sample.
    Each input's steps end with its first step whose flag is clear (its producer's marker with
    busy 0; nothing before the site changes after it, so it never spikes again).
    """
    out = []
    for b in range(len(steps)):
        pair = []
        for name, spikes, busy in (("X", x_spikes, x_busy), ("Y", y_spikes, y_busy)):
            n = int(steps[b])
            idle = np.flatnonzero(~np.asarray(busy[b, :n], dtype=bool))
            if not len(idle):
                raise ValueError(f"sample {b}: the {name} site is busy in all its {n} steps")
            end = int(idle[0]) + 1
            if spikes[b, end:n].any():
                raise ValueError(f"sample {b}: the {name} site spikes after its idle step")
            per = []
            for t in range(end):
                idx = np.flatnonzero(spikes[b, t])
                per.append(list(zip(idx.tolist(), spikes[b, t, idx].tolist(), strict=True)))
            pair.append(per)
        out.append((pair[0], pair[1]))
    return out


def output_words(beats: list[tuple[int, tuple[bool, int, int, bool]]], fmt: Any) -> np.ndarray:
    """The payloads of :func:`product_schedule`'s beats in ``fmt`` (an ``EventFormat``)."""
    words = [fmt.pack(marker=mk, index=i, value=v, busy=b) for _, (mk, i, v, b) in beats]
    return np.array(words, dtype=np.uint64)


def product_summary(geo: ProductGeometry, inferences: list[tuple[list, list]]) -> dict:
    """Cycles and lane use of :func:`product_schedule`'s run (same inputs, same assumptions).

    ``lane_utilization``: useful lane operations (entries of ``ΔO`` inside its ``n × m``) over
    ``P ×`` the word operations of the accumulate phase (no bubbles between them);
    ``accumulate_utilization`` counts the markers' cycles of that phase as idle lanes too.
    """
    n, _, m = geo.shape
    wm, wn, p = geo.row_words, geo.column_words, geo.lanes
    ops = useful = markers = steps = 0
    for inference in inferences:
        xs, ys = _inference(inference)
        for xe, ye in zip_longest(xs, ys, fillvalue=()):
            ops += len(xe) * wm + len(ye) * wn
            useful += len(xe) * m + len(ye) * n
            steps += 1
        markers += len(xs) + len(ys)
    beats = product_schedule(geo, inferences)
    total = (beats[-1][0] + geo.clear_cycles) if beats else 0
    return {
        "steps": steps,
        "cycles": total,
        "accumulate_cycles": ops + markers,
        "word_operations": ops,
        "lane_utilization": useful / (p * ops) if ops else 1.0,
        "accumulate_utilization": useful / (p * (ops + markers)) if ops else 0.0,
        "output_events": sum(1 for _, b in beats if not b[0]),
    }
