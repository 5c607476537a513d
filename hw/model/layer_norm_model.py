"""Differential LayerNorm core (``hw.cores.layer_norm``) in plain Python: geometry, golden event
lists and the exact cycle model (no amaranth: the cocotb testbench imports this module).

Protocol (the layer core's, :mod:`hw.model.events`): the input carries the stream increments
ΔR_t of one LayerNorm site — events ``(index, value)`` with ``index = token·dim + channel`` and
``value`` the non-zero increment, in any order, then an end-of-step marker with the cumulative
busy flag. The output carries the drive ``G_t − G_{t−1}`` of the site: events ``(index, drive)``
for every non-zero drive in ascending index, then a marker with busy = input busy OR any non-zero
drive. Step 0 of an inference evaluates every token (``G_{−1} = 0``); later steps only the tokens
that received an event. An input marker with busy 0 ends the inference once the core's own
marker is not busy (a step 0 whose drive is non-zero is followed by one self-running step with
no input, as the layer core does); the core then clears its state and reads the next inference.

Schedule (no backpressure, input always valid; cycle 0 = first cycle after reset):

* **clear**: ``tokens·dim`` cycles (X = 0, G = 0), from cycle 0 and from the cycle after an
  inference's last marker was emitted;
* **accumulate**: one input event per cycle, then the marker, accepted in cycle ``m``;
* **scan** from ``s = m + 1`` (a self-running step: the cycle its predecessor's marker leaves):
  each changed token, ascending: one scan cycle ``s``, one statistics pass reading ``dim``
  entries, the wait for ``W`` (``STATS_WAIT``), then the elements through ``units`` rounding
  units from ``e = max(s + 1 + dim + STATS_WAIT, r + 2)``, ``r`` the cycle the previous token's
  last element was retired (the element pass waits for the bank to be empty: its units share
  one ``W``). Element ``i`` goes to unit ``i mod units``, which it holds from its read to its
  result's write, ``element_cycles`` cycles; it is read ``element_start(i) =
  ⌊i/units⌋·max(element_cycles, units) + i mod units`` cycles into the pass — one element after
  the other for ``units = 1``, one per cycle for ``units ≥ element_cycles``; its channel ``i``'s
  drive leaves in ``e + element_start(i) + element_cycles``. The **next token's scan** is
  ``token_gap`` cycles after the last element's read (``TOKEN_GAP``, one more when ``dim = 1``):
  its statistics pass overlaps this token's rounding, ``token_cycles`` apart one
  after the other; unchanged tokens cost nothing;
* the marker leaves one cycle after the scan finds no changed token left and every element is
  retired; the next step accumulates from that cycle.

A **streaming** core (``LayerNormGeometry.stream``) needs its input in ascending token order: in
an accumulate cycle where the lowest changed token (the mask: a token is in it two cycles after
its first event's take, every token in step 0) lies below the token of the last event taken two
or more cycles before, it takes no beat and that cycle is the token's SCAN; the core accumulates
again ``token_gap`` cycles after the token's last element read (its elements still rounding and
retiring meanwhile); the marker's scan evaluates the changed tokens left.

:func:`timed` also takes input beats that arrive late and an output held back (an element is
retired, and its unit freed, only once its beat can leave), as the ViT's composed model
(:mod:`hw.model.vit_model`) needs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikezip.hw.model.cycle_model import CoreRun
from spikezip.hw.model.events import Step
from spikezip.ir.network import signed_width, unsigned_width
from spikezip.ir.transformer.ops import layer_norm_exact

__all__ = [
    "CENTRE_LATENCY",
    "MOMENTS_LATENCY",
    "MOMENTS_SUM_LATENCY",
    "READ_LATENCY",
    "SQUARE_LATENCY",
    "TOKEN_GAP",
    "LayerNormGeometry",
    "bank_latency",
    "golden_outputs",
    "reference_steps",
    "rounding_latency",
    "schedule",
    "timed",
]

#: ``hw.cores.layer_norm.StateStore``: address in cycle ``c``, data in ``c + 3`` (every memory
#: has an output register; the ``X`` reads see the events still in flight through forwarding,
#: registered once more)
READ_LATENCY = 3
#: ``hw.cores.layer_norm.StepSequencer``: registers from an element's data to its rounding
#: start (``Z`` and ``c``; the two halves of ``c·Z``; their sum ``a``)
CENTRE_LATENCY = 3
#: ``hw.cores.layer_norm.Squarer``: ``a²`` two cycles after ``|a|`` (limb products, their sum)
SQUARE_LATENCY = 2
#: cycles from a token's last element read to the next token's SCAN (its statistics pass clears
#: ``S``, which that element reads with its data, ``READ_LATENCY`` after its address); the
#: element pass still rounding meanwhile
TOKEN_GAP = READ_LATENCY
#: ``hw.cores.layer_norm.Moments``: cycles from the last ``x`` to ``S`` (x, x², Σ registers)
MOMENTS_SUM_LATENCY = 3
#: ... and to ``W`` (then a copy of ``S``, the two stages of the ``S²`` squarer, ``W``)
MOMENTS_LATENCY = 7


def rounding_latency(bits: int) -> int:
    """``hw.cores.layer_norm.Rounding``: start to result: latch, wait for ``a²``
    (``SQUARE_LATENCY``), load it, initialise the loop, ``bits`` steps, the tie step,
    ``±(r + tie)``."""
    return bits + SQUARE_LATENCY + 4


def bank_latency(bits: int) -> int:
    """``hw.cores.layer_norm.RoundingBank``: start to result: the unit, then the unit's sums
    ``B + q``, ``q − (G_{t−1} − B)`` (one register)."""
    return rounding_latency(bits) + 1


@dataclass(frozen=True, kw_only=True)
class LayerNormGeometry:
    """Sizes, widths and cycle constants of one LayerNorm core, defined once.

    Parameters
    ----------
    tokens, dim : int
        Tokens and channels (``≥ 1``).
    stream_bound : int
        ``max |X|`` of the accumulated stream (``VisionTransformer.ranges.stream``), ``≥ 0``.
    gain_bound, bias_bound : int
        ``max |c_i|`` and ``max |B_i|``.
    eps : int
        ``E ≥ 1``.
    units : int
        Rounding units working in parallel (``≥ 1``; :attr:`full_rate_units` is the fewest that
        start one element per cycle).
    """

    tokens: int
    dim: int
    stream_bound: int
    gain_bound: int
    bias_bound: int
    eps: int
    units: int = 1
    #: evaluate a token as soon as the step's input has passed it (an event of a later token
    #: seen), instead of after the step's marker; needs the input in ascending token order
    #: (the residual stage's: ascending index), which :func:`timed` checks
    stream: bool = False

    def __post_init__(self) -> None:
        for name, lo in (
            ("tokens", 1),
            ("dim", 1),
            ("stream_bound", 0),
            ("gain_bound", 0),
            ("bias_bound", 0),
            ("eps", 1),
            ("units", 1),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer ≥ {lo}, not {v!r}")
        if not isinstance(self.stream, bool):
            raise ValueError(f"stream must be a bool, not {self.stream!r}")
        if self.dim**2 * self.stream_bound**2 + self.eps >= 2**62:
            raise ValueError(
                f"stream_bound must satisfy dim²·stream_bound² + eps < 2^62 (dim {self.dim}), "
                f"not {self.stream_bound}"
            )

    # -- widths (every bound follows from |X| ≤ stream_bound) ------------------------------------
    @property
    def entries(self) -> int:
        return self.tokens * self.dim

    @property
    def index_width(self) -> int:
        return unsigned_width(self.entries - 1)

    @property
    def channel_width(self) -> int:
        return unsigned_width(self.dim - 1)

    @property
    def increment_width(self) -> int:
        """Input values: an increment is a difference of two streams, ``|ΔR| ≤ 2·bound``."""
        r = 2 * self.stream_bound
        return max(2, signed_width(-r, r))

    @property
    def stream_width(self) -> int:
        return signed_width(-self.stream_bound, self.stream_bound)

    @property
    def sum_width(self) -> int:
        r = self.dim * self.stream_bound
        return signed_width(-r, r)

    @property
    def square_sum_width(self) -> int:
        return unsigned_width(self.dim * self.stream_bound**2)

    @property
    def w_width(self) -> int:
        """``W = D·ΣX² − S² + E ≤ D²·bound² + E``."""
        return unsigned_width(self.dim**2 * self.stream_bound**2 + self.eps)

    @property
    def z_bound(self) -> int:
        """``|Z_i| = |(D − 1)·X_i − Σ_{j≠i} X_j| ≤ 2·(D − 1)·bound``."""
        return 2 * (self.dim - 1) * self.stream_bound

    @property
    def z_width(self) -> int:
        return signed_width(-self.z_bound, self.z_bound)

    @property
    def numerator_bound(self) -> int:
        """``max |a| = max|c|·max|Z|`` (``VisionTransformer.ranges.layernorm_input``)."""
        return self.gain_bound * self.z_bound

    @property
    def numerator_width(self) -> int:
        return signed_width(-self.numerator_bound, self.numerator_bound)

    @property
    def quotient_bound(self) -> int:
        """An upper bound of ``⌊|a|/√W⌋`` and of the rounded quotient: ``|Z|/√W ≤ √(D−1)``."""
        return math.isqrt(self.gain_bound**2 * (self.dim - 1)) + 1

    @property
    def rounding_bits(self) -> int:
        """Bits of ``r = ⌊|a|/√W⌋`` (the rounding unit's iterations)."""
        return unsigned_width(self.quotient_bound)

    @property
    def output_bound(self) -> int:
        """``max |G|`` (``VisionTransformer.ranges.layernorm_output``)."""
        return self.quotient_bound + self.bias_bound

    @property
    def output_width(self) -> int:
        return signed_width(-self.output_bound, self.output_bound)

    @property
    def ref_width(self) -> int:
        """``G_{t−1} − B``: the rounded quotient it is compared with gives the drive."""
        r = self.output_bound + self.bias_bound
        return signed_width(-r, r)

    @property
    def drive_width(self) -> int:
        r = 2 * self.output_bound
        return max(2, signed_width(-r, r))

    # -- cycles -------------------------------------------------------------------------------
    @property
    def clear_cycles(self) -> int:
        return self.entries

    @property
    def stats_wait(self) -> int:
        """Cycles between a token's statistics pass and its first element: an element reads
        ``S`` with its data (``READ_LATENCY`` after its address) and ``W`` at its start
        (``CENTRE_LATENCY`` later); the last statistics ``x`` arrives ``READ_LATENCY`` after its
        address, ``S`` and ``W`` are ready ``MOMENTS_SUM_LATENCY`` and ``MOMENTS_LATENCY``
        later."""
        return max(1, MOMENTS_SUM_LATENCY - 1, MOMENTS_LATENCY - CENTRE_LATENCY - 1)

    @property
    def element_cycles(self) -> int:
        """Cycles per channel: address, the read, ``|a|`` (start), the rounding unit, result."""
        return READ_LATENCY + CENTRE_LATENCY + bank_latency(self.rounding_bits) + 1

    @property
    def full_rate_units(self) -> int:
        """The fewest units that start one element per cycle: ``min(dim, element_cycles)``."""
        return min(self.dim, self.element_cycles)

    def element_start(self, i: int) -> int:
        """Cycles from a token's element pass to the read of its element ``i``: element ``i``
        waits for the previous one (one read per cycle) and for its unit (``i mod units``), free
        ``element_cycles`` after element ``i − units`` started."""
        u = self.units
        return (i // u) * max(self.element_cycles, u) + i % u

    @property
    def token_gap(self) -> int:
        """Cycles from a token's last element read to the next token's SCAN: ``TOKEN_GAP``
        (the element reads ``S`` with its data), one more when ``dim = 1`` (the first element
        is the last, and the bank takes ``W`` at its start, ``READ_LATENCY + CENTRE_LATENCY``
        after its read: the next statistics pass changes ``W`` from ``TOKEN_GAP + 3`` cycles
        after its SCAN)."""
        return TOKEN_GAP + (self.dim == 1)

    @property
    def token_cycles(self) -> int:
        """Cycles per evaluated token, one after the other: the next token's SCAN follows the
        last element's read by ``TOKEN_GAP`` and its element pass waits for the bank to be
        empty (one cycle after the last retire, read in the next)."""
        last = self.element_start(self.dim - 1)
        stats = 1 + self.dim + self.stats_wait
        return last + max(self.token_gap + stats, self.element_cycles + 1)


# -- golden event lists -------------------------------------------------------------------------
def _step(row: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(row)
    return Step(indices=idx.astype(np.int64), values=row[idx].astype(np.int64), busy=bool(busy))


def golden_outputs(
    gain: Sequence[int],
    bias: Sequence[int],
    eps: int,
    tokens: int,
    inputs: Sequence[Sequence[Step]],
) -> list[list[Step]]:
    """Per inference, the steps the core emits for the input ``inputs`` (Python integers,
    :func:`ir.transformer.layer_norm_exact`); see the module docstring for the protocol."""
    gain, bias = [int(v) for v in gain], [int(v) for v in bias]
    d = len(gain)
    out = []
    for inf in inputs:
        x = [[0] * d for _ in range(tokens)]
        g = [[0] * d for _ in range(tokens)]
        steps: list[Step] = []
        for t, step in enumerate(inf):
            changed = set(range(tokens)) if t == 0 else set()
            for i, v in zip(step.indices.tolist(), step.values.tolist(), strict=True):
                x[i // d][i % d] += v
                changed.add(i // d)
            drive = np.zeros(tokens * d, dtype=np.int64)
            for k in sorted(changed):
                new = layer_norm_exact(x[k], gain, bias, eps)
                drive[k * d : (k + 1) * d] = [a - b for a, b in zip(new, g[k], strict=True)]
                g[k] = new
            steps.append(_step(drive, step.busy or bool(drive.any())))
            if not step.busy:
                break
        if steps[-1].busy:  # one self-running step: nothing changes
            steps.append(_step(np.zeros(tokens * d, dtype=np.int64), False))
        out.append(steps)
    return out


def reference_steps(
    recorded: Sequence[dict[str, np.ndarray]], busy: np.ndarray, site: int, name: str
) -> tuple[list[list[Step]], list[list[Step]]]:
    """``(inputs, outputs)`` per sample of LayerNorm site ``name`` from the reference's
    ``record_drives`` steps and the trace's cumulative ``busy [B, T, sites]``.

    The input of step ``t`` is the increment ``{name}.increment`` with the busy flag of the
    site before it in execution order (``site - 1``), until the first step where that is 0; the
    output is ``{name}.drive`` with busy = input busy OR any non-zero drive, until the first
    step where that is 0.
    """
    batch = busy.shape[0]
    ins, outs = [], []
    for b in range(batch):
        inc = [np.asarray(s[f"{name}.increment"][b]).reshape(-1) for s in recorded]
        drv = [np.asarray(s[f"{name}.drive"][b]).reshape(-1) for s in recorded]
        prev = busy[b, : len(recorded), site - 1]
        t_in = int(np.flatnonzero(~prev)[0])
        ins.append([_step(inc[t], prev[t]) for t in range(t_in + 1)])
        o: list[Step] = []
        for t in range(len(recorded)):
            o.append(_step(drv[t], bool(prev[t]) or bool(drv[t].any())))
            if not o[-1].busy:
                break
        outs.append(o)
    return ins, outs


# -- the cycle model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StepCycles:
    """Cycles of one output step: each event's and the marker's."""

    event_cycles: list[int]
    marker_cycle: int


def schedule(
    geo: LayerNormGeometry,
    inputs: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
) -> list[list[StepCycles]]:
    """Per inference and output step, the cycle of every output event and marker
    (:func:`timed`)."""
    run = timed(geo, inputs, outputs, arrivals)
    return [[StepCycles(list(ev), mk) for ev, mk in inf] for inf in run.beats]


def timed(
    geo: LayerNormGeometry,
    inputs: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
    ready: Sequence[int] | None = None,
) -> CoreRun:
    """The core's run as a :class:`~hw.model.cycle_model.CoreRun`.

    ``arrivals``: optional, per inference and input step, the first cycle each beat (events,
    then the marker) is valid on ``i``; default: always valid. ``i.ready`` is high in the
    accumulate phase, so a beat is consumed in ``max(cycle, valid)``, one per cycle.
    ``ready``: optional, per output beat of the run, the first cycle it may leave (backpressure
    on ``o``, a register). Element ``i`` of a token is read in ``max(previous read + 1, the
    take of element i − units + 1)`` (its unit is then free), its result is ready
    ``element_cycles − 1`` cycles later and taken (retired) no earlier than the one before plus
    1 and, with a non-zero drive, than the cycle the beat before left; its beat leaves from the
    cycle after the take. The step's marker waits likewise.
    """
    d, u, ec = geo.dim, geo.units, geo.element_cycles
    beats, taken, offered = [], [], []
    free = work = 0  # the cycle the clear pass starts
    left = -1  # the cycle the last output beat left
    last_take = -2  # the cycle the last element was retired

    def out(cycle: int) -> int:
        offered.append(cycle)
        k = len(offered) - 1
        return cycle if ready is None or k >= len(ready) else max(cycle, int(ready[k]))

    for j, (ins, outs) in enumerate(zip(inputs, outputs, strict=True)):
        cycle = free + geo.clear_cycles  # first accumulate cycle
        work += geo.clear_cycles
        steps = []
        for t, step_out in enumerate(outs):
            nonzero = set(step_out.indices.tolist())
            ev: list[int] = []

            def token(k: int, s: int, nonzero=nonzero, ev=ev) -> int:  # SCAN in s, STATS, …
                nonlocal left, last_take
                # the element pass waits for the bank to be empty (the previous token retired)
                issue, takes = max(s + 1 + d + geo.stats_wait, last_take + 2), []
                for i in range(d):
                    if i:
                        issue += 1
                    if i >= u:
                        issue = max(issue, takes[i - u] + 1)
                    take = issue + ec - 1
                    if takes:
                        take = max(take, takes[-1] + 1)
                    if k * d + i in nonzero:
                        take = max(take, left)
                        left = out(take + 1)
                        ev.append(left)
                    takes.append(take)
                last_take = takes[-1]
                return issue + geo.token_gap  # the next SCAN (ACCUMULATE after an early token)

            done: set[int] = set()
            if t < len(ins):
                step = ins[t]
                beat = None if arrivals is None else arrivals[j][t]
                changed = set(range(geo.tokens)) if t == 0 else set((step.indices // d).tolist())
                if geo.stream:
                    s = _accumulate_streaming(geo, step, t, j, cycle, beat, taken, token, done)
                else:
                    s = cycle
                    for k in range(step.n_events + 1):
                        if beat is not None:
                            s = max(s, int(beat[k]))
                        taken.append(s)
                        s += 1
                work += step.n_events + 1
            else:  # self-running: scans from the cycle the previous marker leaves
                s, changed = cycle, set()
            for k in sorted(changed - done):
                s = token(k, s)
            work += len(changed) * geo.token_cycles + 1
            s = max(s, left, last_take + 1)  # the marker's SCAN: o free, every element retired
            left = out(s + 1)
            steps.append((tuple(ev), left))
            cycle = s + 1
        beats.append(tuple(steps))
        free = cycle
    return CoreRun(beats=tuple(beats), taken=(tuple(taken),), work=work, offered=tuple(offered))


def _accumulate_streaming(geo, step, t, j, cycle, beat, taken, token, done) -> int:
    """The accumulate phase of a streaming core (``geo.stream``) from ``cycle``: beats are taken
    one per cycle once valid; in a cycle where the lowest changed token in the mask is below the
    token of the last event marked (both two cycles after its take), that token is evaluated
    instead (``token(k, s)`` from that cycle, which is its SCAN; ``done`` records it) and the
    phase goes on after it. Returns the cycle after the marker's take (the marker's SCAN)."""
    d = geo.dim
    toks = (step.indices // d).tolist()
    if any(b < a for a, b in itertools.pairwise(toks)):
        k = next(i for i in range(1, len(toks)) if toks[i] < toks[i - 1])
        raise ValueError(
            f"inference {j}, step {t}: event {k} (index {int(step.indices[k])}) is on token "
            f"{toks[k]}, after an event of token {toks[k - 1]}: a streaming LayerNorm needs "
            "its input in ascending token order"
        )
    lo = -(1 << 62)
    visible = dict.fromkeys(range(geo.tokens), lo) if t == 0 else {}  # token: in the mask from
    seen: list[tuple[int, int]] = []  # (cycle it counts from, token) of each event taken
    c, k, n = cycle, 0, step.n_events
    while True:
        last = next((tok for at, tok in reversed(seen) if at <= c), None)
        pending = [q for q, at in visible.items() if at <= c and q not in done]
        if last is not None and pending and min(pending) < last:
            q = min(pending)
            done.add(q)
            c = token(q, c)
            continue
        ready = c if beat is None else max(c, int(beat[k]))
        if ready > c:  # idle until the beat, or until a mark becomes visible
            # (a mark counts from its take + 2: only the last two takes can still be ahead)
            later = [at for at, _ in seen[-2:] if at > c]
            c = min([ready, *later])
            continue
        taken.append(c)
        if k == n:  # the marker
            return c + 1
        visible.setdefault(toks[k], c + 2)
        seen.append((c + 2, toks[k]))
        c, k = c + 1, k + 1
