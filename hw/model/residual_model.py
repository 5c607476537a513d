"""Residual-stream accumulator (``hw.cores.residual``) in plain Python: geometry, golden event
lists and the exact cycle model (no amaranth).

One stage per LayerNorm site produces that site's stream increments ΔR_t. A stage adds, per
step, an optional **base** stream ``a`` (the previous LayerNorm site's increments, events
``(index, ΔR)``) and one **spike** stream ``b`` of a contributing site (``(neuron, ±1)``, or
``(neuron, ±2^k)`` from graded neurons, docs/graded.md) times
its integer multiplier ``m`` at ``index = neuron + offset`` (``offset = dim`` for the embedding,
whose patch ``p`` is token ``p + 1``); the first stage also injects the position/class-token
matrix ``P`` at step 0. Output: ``(index, Δ)`` for every non-zero Δ in ascending index, then a
marker with busy = ``a``'s busy OR ``b``'s busy — the reference's cumulative flag of the site before
the LayerNorm; the step-0 injection of ``P`` is not a site and sets no flag (the LayerNorm's own
flag covers its drive). An input whose marker had busy
0 is idle for the rest of the inference (read no more); the inference ends with the first output
marker whose busy is 0.

So ``blocks.0.norm1`` = stage(embed, m_e, offset dim, P); ``blocks.b.norm2`` = stage(norm1's
increments, proj_b, m_p); ``blocks.b+1.norm1`` and ``norm`` = stage(norm2's increments, fc2_b, m_f).

Schedule (inputs always valid, output always ready; cycle 0 = first cycle after reset): a step
reads ``a``'s events and marker (one per cycle; one cycle once ``a`` has ended), then ``b``'s; from
the cycle after ``b``'s marker, ``SCAN_SETTLE`` cycles until the first scan decision (the last
event's token marked and picked); then each token that received an event (every token in step 0
of an injecting stage), ascending, costs ``token_cycles = 1 + max(dim, PICK_LATENCY)`` cycles (a
decision ``s``, then one read per entry), the entry ``j``'s sum reaching the emit stage in
``s + 1 + j + SCAN_LATENCY`` and its beat leaving one cycle later; the marker is decided in the
later of the cycle after the last token and the cycle after the last entry's emit stage (in the
first decision cycle when no token changed), leaves one cycle later, and the next step reads
from that cycle. :func:`timed` also takes input beats that arrive late (a beat is read once
valid) and an output held back (a non-zero sum waits at the emit stage and the whole stage
freezes meanwhile), as the ViT's composed model (:mod:`hw.model.vit_model`) needs.

Streaming (``ResidualGeometry.stream``, what the ViT top builds: ``vit_sites.STREAM_RESIDUAL``):
both inputs send a step in ascending token order, so once an input has sent a beat of token
``j`` (or its marker) every token below ``j`` has all of that input's events of the step; a
token below both inputs' last beats is **complete**. The stage reads both inputs at once, one
beat per cycle (``b``'s when it has one, else ``a``'s; an input that has sent its marker, or
ended the inference, is not read), and a cycle in which the lowest changed token is complete
(the token mask's ``later``: the mask and the two thresholds three cycles after a beat's take,
the pick two more; after a scan decision ``PICK_LATENCY`` cycles before the next) is instead
that token's scan decision: the same scan as after the markers, the core back to its input
after the token's last read (but not in the cycle after a scan read, nor while frozen). After
both markers the changed tokens left are scanned and the marker sent as in the plain stage.
The step's output is the same list in the same (ascending) order; only its cycles move: a
token's sums leave while later tokens still arrive. :func:`timed` follows the RTL's registers
cycle by cycle (skipping idle waits and freezes) and refuses an input step out of token order
(a ``ValueError`` naming the inference, step, input and event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikezip.hw.model.cycle_model import CoreRun
from spikezip.hw.model.events import Step, spike_value_width
from spikezip.ir.network import signed_width, unsigned_width
from spikezip.ir.transformer import SiteKind

__all__ = [
    "EVENT_LATENCY",
    "MARK_LATENCY",
    "PICK_LATENCY",
    "SCAN_LATENCY",
    "SCAN_SETTLE",
    "ResidualGeometry",
    "golden_outputs",
    "schedule",
    "spike_steps",
    "stage_geometry",
    "stages",
    "timed",
]


#: ``hw.cores.residual.DeltaStore``: an event's read to the forming of its write (the block
#: RAM, its output register, a copy near the logic), performed one cycle later; the writes in
#: between are forwarded
EVENT_LATENCY = 3
#: ``hw.cores.residual.DeltaStore``: a scan read to its emit stage (the same three registers, then
#: the sum ``Δ + P`` and whether it is non-zero)
SCAN_LATENCY = 4
#: ``hw.cores.residual.TokenMask``: an event to its token's bit (the index, the token registered)
MARK_LATENCY = 3
#: ``hw.cores.residual.TokenMask``: a change of the mask to the next pick (one-hot, then the base)
PICK_LATENCY = 2
#: cycles from the last input marker of a step to the first scan decision (the last event's
#: token marked, then picked)
SCAN_SETTLE = MARK_LATENCY + PICK_LATENCY - 2


@dataclass(frozen=True, kw_only=True)
class ResidualGeometry:
    """Sizes and widths of one stage.

    Parameters
    ----------
    tokens, dim : int
        ``≥ 1``.
    multiplier : int
        ``m`` of the spike input (non-zero).
    spike_neurons : int
        Neurons of the spike input (``≤ tokens·dim − offset``).
    offset : int
        Added to a spike's neuron to give its stream index (``≥ 0``).
    base_bound : int or None
        ``max |value|`` of the base input's events; ``None``: no base input.
    position_bound : int
        ``max |P|`` (0: no injection).
    spike_max : int
        Largest ``|s|`` of a spike (the contributing site's ``spike_max``: 1 for ST-BIF, ``2^K``
        for graded neurons; a power of two).
    stream : bool
        A **streaming** stage (:func:`timed`, "Streaming" in the module docstring): both inputs
        read as they come, a changed token scanned as soon as both have passed it. Each input
        must then send a step in ascending token order.
    """

    tokens: int
    dim: int
    multiplier: int
    spike_neurons: int
    offset: int = 0
    base_bound: int | None = None
    position_bound: int = 0
    spike_max: int = 1
    stream: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("tokens", 1), ("dim", 1), ("spike_neurons", 1), ("offset", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer ≥ {lo}, not {v!r}")
        if not isinstance(self.multiplier, int) or isinstance(self.multiplier, bool):
            raise ValueError(f"multiplier must be an integer, not {self.multiplier!r}")
        if self.offset + self.spike_neurons > self.entries:
            raise ValueError(
                f"offset must be in [0, {self.entries - self.spike_neurons}] so that every spike "
                f"index lies in the {self.entries} stream entries, not {self.offset}"
            )
        b = self.base_bound
        if b is not None and (not isinstance(b, int) or b < 0):
            raise ValueError(f"base_bound must be None or an integer ≥ 0, not {b!r}")
        p = self.position_bound
        if not isinstance(p, int) or p < 0:
            raise ValueError(f"position_bound must be an integer ≥ 0, not {p!r}")
        s = self.spike_max
        if not isinstance(s, int) or isinstance(s, bool) or s < 1 or s & (s - 1):
            raise ValueError(f"spike_max must be a power of two ≥ 1, not {s!r}")
        if not isinstance(self.stream, bool):
            raise ValueError(f"stream must be a bool, not {self.stream!r}")

    @property
    def entries(self) -> int:
        return self.tokens * self.dim

    @property
    def has_base(self) -> bool:
        return self.base_bound is not None

    @property
    def index_width(self) -> int:
        return unsigned_width(self.entries - 1)

    @property
    def channel_width(self) -> int:
        return unsigned_width(self.dim - 1)

    @property
    def spike_index_width(self) -> int:
        return unsigned_width(self.spike_neurons - 1)

    @property
    def base_width(self) -> int:
        b = self.base_bound or 0
        return max(2, signed_width(-b, b))

    @property
    def spike_width(self) -> int:
        """Signed bits of a spike value (``hw.model.events.spike_value_width``)."""
        return spike_value_width(self.spike_max)

    @property
    def bound(self) -> int:
        """``max |Δ|`` of one step: base + |m|·spike_max + P."""
        return (self.base_bound or 0) + abs(self.multiplier) * self.spike_max + self.position_bound

    @property
    def value_width(self) -> int:
        return max(2, signed_width(-self.bound, self.bound))

    @property
    def token_cycles(self) -> int:
        """A scan decision, then one read per entry (at least the pick's latency)."""
        return 1 + max(self.dim, PICK_LATENCY)


def _step(row: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(row)
    return Step(indices=idx.astype(np.int64), values=row[idx].astype(np.int64), busy=bool(busy))


def golden_outputs(
    geo: ResidualGeometry,
    base: Sequence[Sequence[Step]] | None,
    spikes: Sequence[Sequence[Step]],
    position: np.ndarray | None = None,
) -> list[list[Step]]:
    """Per inference, the steps the stage emits (see the module docstring)."""
    out = []
    for j, b_steps in enumerate(spikes):
        a_steps = base[j] if base is not None else []
        steps: list[Step] = []
        t = 0
        while True:
            delta = np.zeros(geo.entries, dtype=np.int64)
            busy = False
            if t < len(a_steps):
                np.add.at(delta, a_steps[t].indices, a_steps[t].values)
                busy |= a_steps[t].busy
            if t < len(b_steps):
                np.add.at(
                    delta, b_steps[t].indices + geo.offset, geo.multiplier * b_steps[t].values
                )
                busy |= b_steps[t].busy
            if t == 0 and position is not None:
                delta += np.asarray(position, dtype=np.int64).reshape(-1)
            steps.append(_step(delta, busy))
            if not steps[-1].busy:
                break
            t += 1
        out.append(steps)
    return out


def schedule(
    geo: ResidualGeometry,
    base: Sequence[Sequence[Step]] | None,
    spikes: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[tuple[Sequence[Sequence[int]] | None, Sequence[Sequence[int]]]]
    | None = None,
) -> list[list[tuple[list[int], int]]]:
    """Per inference and output step, ``(event cycles, marker cycle)`` (:func:`timed`)."""
    run = timed(geo, base, spikes, outputs, arrivals)
    return [[(list(ev), mk) for ev, mk in inf] for inf in run.beats]


def _read(cycle: int, step: Step, beats: Sequence[int] | None, taken: list[int]) -> int:
    """Read one input step (its events, then its marker), one beat per cycle from ``cycle``, each
    no earlier than it is valid; returns the cycle after the marker."""
    for k in range(step.n_events + 1):
        if beats is not None:
            cycle = max(cycle, int(beats[k]))
        taken.append(cycle)
        cycle += 1
    return cycle


def timed(
    geo: ResidualGeometry,
    base: Sequence[Sequence[Step]] | None,
    spikes: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[tuple[Sequence[Sequence[int]] | None, Sequence[Sequence[int]]]]
    | None = None,
    ready: Sequence[int] | None = None,
) -> CoreRun:
    """The stage's run as a :class:`~hw.model.cycle_model.CoreRun` (ports ``a`` then ``b``).

    ``arrivals``: optional, per inference ``(a, b)``, per input step the first cycle each beat
    (events, then the marker) is valid on the port (``a`` is ``None`` without a base input);
    default: always valid. The sequencer reads a beat in the cycle it is valid (``ready`` is
    high while it waits for it), so a beat is consumed in ``max(cycle, valid)``. ``ready``:
    optional, per output beat of the run, the first cycle it may leave (backpressure on ``o``,
    a register: an entry's ``EMIT`` or the marker's ``SCAN`` cycle waits until the beat before
    has left; zero entries do not wait).
    """
    if geo.stream:
        return _timed_stream(geo, base, spikes, outputs, arrivals, ready)
    d, cycle, work = geo.dim, 0, 0
    taken_a: list[int] = []
    taken_b: list[int] = []
    beats, offered = [], []
    left = -1  # the cycle the last output beat left
    for j, outs in enumerate(outputs):
        a_steps = base[j] if base is not None else []
        b_steps = spikes[j]
        arr_a, arr_b = (None, None) if arrivals is None else arrivals[j]
        steps = []
        for t, out in enumerate(outs):
            touched: set[int] = set()
            if t < len(a_steps):
                work += a_steps[t].n_events + 1
                cycle = _read(cycle, a_steps[t], None if arr_a is None else arr_a[t], taken_a)
                touched |= set((a_steps[t].indices // d).tolist())
            elif geo.has_base:
                cycle += 1  # an ended input: one cycle, as an empty step
                work += 1
            if t < len(b_steps):
                work += b_steps[t].n_events + 1
                cycle = _read(cycle, b_steps[t], None if arr_b is None else arr_b[t], taken_b)
                touched |= set(((b_steps[t].indices + geo.offset) // d).tolist())
            else:
                cycle += 1
                work += 1
            if t == 0 and geo.position_bound > 0:
                touched = set(range(geo.tokens))
            work += SCAN_SETTLE + 1
            if touched:
                work += (len(touched) - 1) * geo.token_cycles + d + SCAN_LATENCY + 1
            nonzero = set(out.indices.tolist())
            ev = []
            cycle += SCAN_SETTLE  # the first scan decision
            last_emit = None
            for k in sorted(touched):  # the decision in cycle, then one read per entry
                for i in range(k * d, (k + 1) * d):
                    emit = cycle + 1 + (i - k * d) + SCAN_LATENCY  # the emit stage
                    if i in nonzero:
                        if emit < left:  # o is not free: the core freezes until it is
                            cycle += left - emit
                            emit = left
                        offered.append(emit + 1)
                        left = (
                            emit + 1
                            if ready is None
                            else max(emit + 1, _at(ready, len(offered) - 1))
                        )
                        ev.append(left)
                    last_emit = emit
                cycle += geo.token_cycles
            if last_emit is not None:
                cycle = max(cycle, last_emit + 1)  # the marker waits for the reads to be through
            cycle = max(cycle, left)  # and for o to be free
            offered.append(cycle + 1)
            left = cycle + 1 if ready is None else max(cycle + 1, _at(ready, len(offered) - 1))
            steps.append((tuple(ev), left))
            cycle += 1
        beats.append(tuple(steps))
    taken = (tuple(taken_a), tuple(taken_b)) if geo.has_base else (tuple(taken_b),)
    return CoreRun(beats=tuple(beats), taken=taken, work=work, offered=tuple(offered))


def _at(ready: Sequence[int], k: int) -> int:
    return int(ready[k]) if k < len(ready) else 0


def _check_order(geo: ResidualGeometry, steps, offset: int, j: int, port: str) -> None:
    """A streaming stage's input must send each step in ascending token order."""
    for t, step in enumerate(steps):
        tok = (np.asarray(step.indices, dtype=np.int64) + offset) // geo.dim
        bad = np.flatnonzero(np.diff(tok) < 0)
        if bad.size:
            k = int(bad[0]) + 1
            raise ValueError(
                f"streaming residual stage: inference {j}, step {t}, input {port}: event {k} "
                f"(token {int(tok[k])}) comes after token {int(tok[k - 1])}; a streaming stage "
                f"needs each step in ascending token order"
            )


def _timed_stream(geo, base, spikes, outputs, arrivals, ready) -> CoreRun:
    """:func:`timed` of a streaming stage: the RTL's registers cycle by cycle (idle waits for
    input and the freezes skipped). See the module docstring, "Streaming"."""
    d, n = geo.dim, geo.tokens
    has_base, inject = geo.has_base, geo.position_bound > 0
    ready = None if ready is None else [int(r) for r in ready]
    n_ready = 0 if ready is None else len(ready)
    taken_a: list[int] = []
    taken_b: list[int] = []
    beats, offered = [], []
    left = -1
    work = 0
    c = 0
    # registers: the sequencer
    fsm, settle, ch, tok, tail, sel_b = _READ, 0, 0, 0, False, True
    a_done, b_done, a_end, b_end, busy = not has_base, False, False, False, False
    # the token mask: the mask, the thresholds of a and b (tokens below them), the two marks in
    # flight ``(src, close, token)`` (p0 the newer), the pick registers
    mask = (1 << n) - 1 if inject else 0
    fa, fb = (0 if has_base else n), 0
    p0 = p1 = None
    onehot, any_r, base_r, later_r = None, False, 0, False
    # the scan reads in flight (entry index or -1), s0 the newest, s3 at the emit stage
    s0 = s1 = s2 = s3 = -1
    for j, outs in enumerate(outputs):
        a_steps = base[j] if base is not None else []
        b_steps = spikes[j]
        arr_a, arr_b = (None, None) if arrivals is None else arrivals[j]
        _check_order(geo, a_steps, 0, j, "a")
        _check_order(geo, b_steps, geo.offset, j, "b")
        steps = []
        for t, out in enumerate(outs):
            nonzero = set(out.indices.tolist())
            a_step = a_steps[t] if t < len(a_steps) else None
            b_step = b_steps[t] if t < len(b_steps) else None
            if has_base and a_step is None:
                a_done = True
            if b_step is None:
                b_done = True
            a_tok = [] if a_step is None else (a_step.indices // d).tolist()
            b_tok = [] if b_step is None else ((b_step.indices + geo.offset) // d).tolist()
            a_tok.append(n)  # the marker: every token below it
            b_tok.append(n)
            a_at = None if arr_a is None or a_step is None else [int(v) for v in arr_a[t]]
            b_at = None if arr_b is None or b_step is None else [int(v) for v in arr_b[t]]
            ka = kb = 0
            ev: list[int] = []
            marker = None
            while marker is None:
                free = c >= left
                emit = s3 >= 0 and s3 in nonzero
                if emit and not free:
                    c = left  # frozen until o is free
                    continue
                a_ok = not a_done and (a_at is None or a_at[ka] <= c)
                b_ok = not b_done and (b_at is None or b_at[kb] <= c)
                quiet = s0 < 0 and s1 < 0 and s2 < 0 and s3 < 0 and p0 is None and p1 is None
                if quiet and settle == 0 and fsm is not _ISSUE:
                    low = (mask & -mask).bit_length() - 1 if mask else None
                    if (
                        onehot == low and any_r == bool(mask) and base_r == (onehot or 0)
                        and later_r == (onehot is not None and onehot < min(fa, fb))
                    ):  # fmt: skip
                        if fsm is _READ and not later_r and not (a_ok or b_ok):
                            nxt = []  # idle until a beat arrives
                            if not a_done:
                                nxt.append(a_at[ka])
                            if not b_done:
                                nxt.append(b_at[kb])
                            c = min(nxt)
                            continue
                        if fsm is _SCAN and not any_r and not free:
                            c = left  # the marker waits for o
                            continue
                # this cycle (en high)
                if emit:  # the emit stage
                    k = len(offered)
                    offered.append(c + 1)
                    left = c + 1 if k >= n_ready else max(c + 1, ready[k])
                    ev.append(left)
                drop = set_all = forget = False
                new_mark = None
                scan = -1
                did = not quiet or fsm is not _READ
                n_settle = settle - 1 if settle else 0
                if fsm is _READ:
                    if settle == 0 and later_r:  # the scan decision of a complete token
                        drop, tok, ch, n_settle, fsm = True, base_r, 0, PICK_LATENCY, _ISSUE
                        did = True
                    elif s0 < 0 and not emit and ((sel_b and b_ok) or (not sel_b and a_ok)):
                        did = True
                        if sel_b:
                            close = kb == len(b_tok) - 1
                            taken_b.append(c)
                            new_mark = (1, close, b_tok[kb])
                            kb += 1
                            if close:
                                b_done, busy = True, busy or b_step.busy
                                b_end = not b_step.busy
                        else:
                            close = ka == len(a_tok) - 1
                            taken_a.append(c)
                            new_mark = (0, close, a_tok[ka])
                            ka += 1
                            if close:
                                a_done, busy = True, busy or a_step.busy
                                a_end = not a_step.busy
                        if close and a_done and b_done:
                            tail, n_settle, fsm = True, SCAN_SETTLE, _SCAN
                elif fsm is _SCAN:
                    if settle == 0:
                        if any_r:
                            drop, tok, ch, n_settle, fsm = True, base_r, 0, PICK_LATENCY, _ISSUE
                        elif s0 < 0 and s1 < 0 and s2 < 0 and s3 < 0 and free:
                            k = len(offered)
                            offered.append(c + 1)
                            left = c + 1 if k >= n_ready else max(c + 1, ready[k])
                            marker = left
                            forget, tail, fsm = True, False, _READ
                            if busy:
                                keep_a, keep_b = a_end or not has_base, b_end
                                a_done, b_done = a_end or not has_base, b_end
                            else:
                                keep_a, keep_b = not has_base, False
                                set_all = inject
                                a_end = b_end = False
                                a_done, b_done = not has_base, False
                            busy = False
                else:  # ISSUE
                    scan = tok * d + ch
                    ch += 1
                    if ch == d:
                        fsm = _SCAN if tail else _READ
                if did:
                    work += 1
                if has_base:  # the input read next
                    if sel_b and not b_ok and a_ok:
                        sel_b = False
                    elif not sel_b and b_ok:
                        sel_b = True
                # the token mask (registers)
                n_onehot = (mask & -mask).bit_length() - 1 if mask else None
                n_any = bool(mask)
                n_base = onehot or 0
                n_later = onehot is not None and onehot < (fa if fa < fb else fb)
                if set_all:
                    mask = (1 << n) - 1
                else:
                    if drop:
                        mask &= mask - 1
                    if p1 is not None and not p1[1]:
                        mask |= 1 << p1[2]
                if forget:
                    fa = n if keep_a else 0
                    fb = n if keep_b else 0
                elif p1 is not None:
                    if p1[0]:
                        fb = p1[2]
                    else:
                        fa = p1[2]
                p1, p0 = p0, new_mark
                onehot, any_r, base_r, later_r = n_onehot, n_any, n_base, n_later
                s3, s2, s1, s0 = s2, s1, s0, scan
                settle = n_settle
                c += 1
            steps.append((tuple(ev), marker))
        beats.append(tuple(steps))
    taken = (tuple(taken_a), tuple(taken_b)) if has_base else (tuple(taken_b),)
    return CoreRun(beats=tuple(beats), taken=taken, work=work, offered=tuple(offered))


_READ, _ISSUE, _SCAN = "READ", "ISSUE", "SCAN"


def _lowest(mask: int) -> int | None:
    return (mask & -mask).bit_length() - 1 if mask else None


def stages(vit) -> list[dict]:
    """The stages of a ``VisionTransformer``, one per LayerNorm site in execution order: its
    ``name``, the contributing spike ``site``, ``multiplier``, ``offset``, the ``base`` LayerNorm
    site (``None`` for the first) and ``position`` (first stage only)."""
    out, base = [], None
    for b, blk in enumerate(vit.blocks):
        p = f"blocks.{b}."
        if b == 0:
            out.append(
                {"name": p + "norm1", "site": "embed", "multiplier": int(vit.embed_residual),
                 "offset": vit.dim, "base": None,
                 "position": np.asarray(vit.position, dtype=np.int64)}
            )  # fmt: skip
        else:
            prev = vit.blocks[b - 1]
            out.append(
                {"name": p + "norm1", "site": f"blocks.{b - 1}.fc2",
                 "multiplier": int(prev.mlp_residual), "offset": 0, "base": base, "position": None}
            )  # fmt: skip
        out.append(
            {"name": p + "norm2", "site": p + "proj", "multiplier": int(blk.attn_residual),
             "offset": 0, "base": p + "norm1", "position": None}
        )  # fmt: skip
        base = p + "norm2"
    last = len(vit.blocks) - 1
    out.append(
        {"name": "norm", "site": f"blocks.{last}.fc2",
         "multiplier": int(vit.blocks[last].mlp_residual), "offset": 0, "base": base,
         "position": None}
    )  # fmt: skip
    return out


def spike_steps(trace, site: int) -> list[list[Step]]:
    """Per sample, a site's spikes as the layer-core protocol's steps: ``0 … t`` (first step
    with busy 0), busy = the trace's cumulative flag at the site."""
    out = []
    for b in range(trace.batch):
        busy = trace.busy[b, :, site]
        t_end = int(np.flatnonzero(~busy)[0])
        out.append([_step(trace.spikes[site][b, t].reshape(-1), busy[t]) for t in range(t_end + 1)])
    return out


def stage_geometry(vit, stage: dict, *, stream: bool = False) -> ResidualGeometry:
    """The :class:`ResidualGeometry` of one of :func:`stages`' stages; the base input's values
    are a LayerNorm site's increments, ``|ΔR| ≤ 2·ranges.stream``; ``stream``: a streaming
    stage (what the ViT top builds: ``hw.model.vit_sites.STREAM_RESIDUAL``)."""
    sites = {s.name: s for s in vit.sites}
    norms = [s.name for s in vit.sites if s.kind is SiteKind.LAYERNORM]
    base = stage["base"]
    pos = stage["position"]
    return ResidualGeometry(
        tokens=vit.tokens,
        dim=vit.dim,
        multiplier=stage["multiplier"],
        spike_neurons=sites[stage["site"]].size,
        offset=stage["offset"],
        base_bound=None if base is None else 2 * vit.ranges.stream[norms.index(base)],
        position_bound=0 if pos is None else int(np.abs(pos).max()),
        spike_max=int(sites[stage["site"]].op.spike_max),
        stream=stream,
    )
