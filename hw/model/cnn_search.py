"""``--lanes balanced[=N]``: a deterministic search for a CNN's lane vector and FIFO plan, scored
by the exact network model (:func:`hw.model.cnn_model.cnn_schedule`) on the given inputs back to
back (docs/cnn.md §13).

1. **Work.** One run at lanes ``reference`` with every FIFO :data:`DEEP` (no backpressure) gives
   each site's load in lane-cycles ``W_k`` (:func:`cnn_model.site_work`) and the busy cycles no
   lanes remove (the max-pools': ``floor``).
2. **Throughput levels.** A lane vector's bottleneck is ``T = max(W_k / P_k, floor)``; a site
   needs no more lanes than make it faster than the bottleneck. So for each level ``T`` in
   ``{W_k / d}`` (``d`` a lane choice of site ``k``: a divisor of its channels or neurons) the
   cheapest vector reaching it gives each site the fewest lanes with ``W_k / P_k ≤ T``; those
   within ``budget`` lanes are the candidates. They are run exactly with every FIFO
   :data:`SEARCH_FIFO` deep (deep enough to absorb the per-step swings of the work, shallow
   enough that a core which outruns its reader over the whole run waits, as it will in the
   design), fastest predicted first; the runs stop once a candidate's predicted ``T`` lies
   :data:`STOP_MARGIN` above the fastest run whose ops-weighted conv utilization (``Σ ops / Σ
   lanes · accumulate`` over the conv cores, ``spikezip report``'s figure) reached ``target``.
   The choice: the fastest such design (cycles per image back to back), fewer lanes on a tie;
   if none reaches ``target``, the fastest within :data:`FALLBACK_BAND` of the best
   utilization.
3. **The cores off the bottleneck.** Each site's next lane choice within the budget is run; the
   one that cuts cycles back to back the most is kept if that is at least :data:`CYCLE_GAIN` and
   utilization stays at or above ``target`` (or, below it, does not fall); repeated until no
   step qualifies.
4. **FIFO plan.** Each FIFO at the power of two at or above its need without backpressure
   (``FifoCheck.need``), at most :data:`SEARCH_FIFO` (step 3's run, or as good); the FIFOs planned
   at most :data:`SMALL_FIFO` deep back to their default at once if that stays within
   :data:`FIFO_TOLERANCE`; then each planned FIFO, deepest first, halved (never below its
   default) while cycles and utilization stay within :data:`FIFO_TOLERANCE` of step 3's run.
   A trial run stops as soon as a pass of the composition is past the cycle bound
   (``cnn_schedule``'s ``cycle_limit``); only accepted runs' numbers are used, and they are
   exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import CycleLimitExceeded, cnn_schedule, site_work
from spikezip.hw.model.design import DesignParams
from spikezip.ir import Trace
from spikezip.ir.cnn import ConvNet

__all__ = [
    "DEEP",
    "DesignChoice",
    "conv_utilization",
    "search_design",
]

#: FIFO depth with which no FIFO of the digits CNNs fills (the work, the needs, the reference)
DEEP = 1 << 16
#: runs of step 2 stop once a candidate's predicted bottleneck is this far above the best
STOP_MARGIN = 0.02
#: step 2 without a design at ``target``: the fastest within this of the best utilization
FALLBACK_BAND = 0.05
#: FIFO depth of the search's runs (steps 2 and 3; step 4's start)
SEARCH_FIFO = 1024
#: step 4: FIFOs planned at most this deep are first tried at their default all at once
SMALL_FIFO = 64
#: step 3: the least relative gain in cycles back to back a lane step must buy
CYCLE_GAIN = 0.005
#: step 4: a FIFO plan may cost this much utilization (absolute) and cycles (relative)
FIFO_TOLERANCE = 0.005


@dataclass(frozen=True)
class DesignChoice:
    """What :func:`search_design` chose, and the numbers it chose it by."""

    lanes: tuple[int, ...]  #: per site (execution order)
    lane_total: int  #: over the sites with lanes (all but the max-pools)
    fifo_depths: tuple[tuple[str, int], ...]  #: FIFOs set by name (the rest: the default plan)
    cycles: float  #: per image back to back, with ``fifo_depths``
    utilization: float  #: ops-weighted conv utilization back to back, with ``fifo_depths``
    search_cycles: float  #: the same with every FIFO :data:`SEARCH_FIFO` deep (the search's)
    search_utilization: float
    target: float
    planned: bool  #: step 4 ran (False: ``fifo_plan`` off, the FIFOs as the caller sets them)
    runs: int  #: model runs the search made
    candidates: int = 0  #: lane vectors of step 2 within the budget

    def summary(self) -> str:
        """One line: the design and why."""
        fifo = ",".join(f"{n}={d}" for n, d in self.fifo_depths) or "the default plan"
        if not self.planned:
            fifo = "as given (not searched)"
        met = "≥" if self.utilization >= self.target else "<"
        return (
            f"{','.join(map(str, self.lanes))} ({self.lane_total} lanes), FIFOs {fifo}: "
            f"{self.cycles:,.0f} cycles per image back to back, conv utilization "
            f"{100 * self.utilization:.1f} % {met} {100 * self.target:.0f} % "
            f"({100 * self.search_utilization:.1f} % with {SEARCH_FIFO}-entry FIFOs; "
            f"{self.runs} model runs)"
        )


def conv_utilization(run) -> float:
    """Ops-weighted accumulate-phase utilization of the conv cores (``spikezip report``'s)."""
    conv = [ld for ld in run.loads if ld.kind == "conv" and ld.lanes and ld.accumulate]
    if not conv:
        return 0.0
    return sum(ld.ops for ld in conv) / sum(ld.lanes * ld.accumulate for ld in conv)


class _Runner:
    """The exact model on fixed inputs, each (lanes, FIFO plan) run once."""

    def __init__(self, net: ConvNet, x: np.ndarray, trace: Trace, pipeline: int) -> None:
        self.net, self.x, self.trace, self.pipeline = net, x, trace, pipeline
        self.cache: dict = {}
        self.runs = 0

    def run(self, lanes, fifo_depths=None, limit: float | None = None):
        """(cycles per image, conv utilization, the schedule); ``fifo_depths`` None: every FIFO
        :data:`SEARCH_FIFO` deep. ``limit``: cycles per image above which the run may stop early
        (then ``(inf, 0.0, None)``, not cached)."""
        key = (tuple(lanes), fifo_depths)
        if key not in self.cache:
            cap = None if limit is None else int(np.floor(limit * len(self.x)))
            fifo = (
                {"fifo_depth": SEARCH_FIFO} if fifo_depths is None else {"fifo_depths": fifo_depths}
            )
            params = DesignParams.of(self.net, lanes=lanes, pipeline=self.pipeline, **fifo)
            self.runs += 1
            try:
                run = cnn_schedule(self.net, self.x, self.trace, params, cycle_limit=cap)
            except CycleLimitExceeded:
                return float("inf"), 0.0, None
            self.cache[key] = (run.total_cycles / len(self.x), conv_utilization(run), run)
        return self.cache[key]


def _pow2(need: int, default: int) -> int:
    """The power of two at or above ``need``, at least ``default``."""
    return max(default, 1 << max(int(need) - 1, 0).bit_length())


def _levels(net: ConvNet, work, floor: float, budget: int) -> list[tuple[float, tuple[int, ...]]]:
    """Step 2's candidates: (predicted bottleneck, the cheapest lanes reaching it), fastest
    first, each within ``budget``."""
    free = [k for k, s in enumerate(net.sites) if s.kind != "maxpool2d"]
    choices = {k: conv_sites.lane_choices(net, k) for k in free}
    levels = sorted({work[k] / d for k in free for d in choices[k]} | {float(floor)})
    out: list[tuple[float, tuple[int, ...]]] = []
    seen = set()
    for t in levels:
        if t < floor:
            continue
        lanes = []
        for k in range(net.depth):
            if k not in choices:
                lanes.append(1)
                continue
            ok = [d for d in choices[k] if work[k] / d <= t * (1 + 1e-12)]
            if not ok:
                break
            lanes.append(ok[0])
        else:
            vec = tuple(lanes)
            if sum(vec[k] for k in free) <= budget and vec not in seen:
                seen.add(vec)
                top = max([work[k] / vec[k] for k in free] + [float(floor)])
                out.append((top, vec))
    out.sort()
    return out


def _lane_total(net: ConvNet, lanes) -> int:
    return sum(p for s, p in zip(net.sites, lanes, strict=True) if s.kind != "maxpool2d")


def search_design(
    net: ConvNet,
    inputs: np.ndarray,
    trace: Trace,
    *,
    budget: int | None = None,
    target: float = 0.95,
    reference: int = 8,
    pipeline: int = 1,
    fifo_plan: bool = True,
) -> DesignChoice:
    """The lanes and FIFO plan of ``--lanes balanced[=budget]`` (module docstring) for ``net``
    running ``inputs`` back to back (``trace``: their golden trace). ``budget``: lanes in total
    over the sites with lanes (default: those of ``--lanes reference``); ``pipeline``: the
    cores' preset (every run's); ``fifo_plan`` False keeps the default FIFOs (step 4
    skipped)."""
    conv_sites.check_rtl(net)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must lie in (0, 1], not {target!r}")
    base = conv_sites.resolve_cnn_lanes(net, reference)
    free = [k for k, s in enumerate(net.sites) if s.kind != "maxpool2d"]
    if budget is None:
        budget = _lane_total(net, base)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be an integer, not {budget!r}")
    if budget < len(free):
        raise ValueError(f"budget must be at least {len(free)} lanes (one per site), not {budget}")
    runner = _Runner(net, inputs, trace, pipeline)
    n = len(inputs)
    work, floor = site_work(
        cnn_schedule(
            net,
            inputs,
            trace,
            DesignParams.of(net, lanes=base, pipeline=pipeline, fifo_depth=DEEP),
        ),
        net,
    )
    runner.runs += 1

    # step 2: throughput levels, fastest predicted first
    cands = _levels(net, work, floor, int(budget))
    tried: list[tuple[float, float, int, tuple[int, ...]]] = []  # (cycles, util, lanes, vec)
    best = None
    for t, vec in cands:
        if best is not None and t / n > best * (1 + STOP_MARGIN):
            break
        cycles, util, _ = runner.run(vec)
        tried.append((cycles, util, _lane_total(net, vec), vec))
        if util >= target and (best is None or cycles < best):
            best = cycles
    met = [r for r in tried if r[1] >= target]
    if met:
        chosen = min(met, key=lambda r: (r[0], r[2], r[3]))
    else:
        top = max(r[1] for r in tried)
        chosen = min(
            (r for r in tried if r[1] >= top - FALLBACK_BAND), key=lambda r: (r[0], r[2], r[3])
        )
    lanes = chosen[3]

    # step 3: the cores off the bottleneck
    while True:
        cycles, util, _ = runner.run(lanes)
        steps = []
        for k in free:
            ch = conv_sites.lane_choices(net, k)
            i = ch.index(lanes[k])
            if i + 1 == len(ch):
                continue
            vec = (*lanes[:k], ch[i + 1], *lanes[k + 1 :])
            if _lane_total(net, vec) > budget:
                continue
            c2, u2, _ = runner.run(vec)
            gain = 1.0 - c2 / cycles
            if gain >= CYCLE_GAIN and u2 >= min(target, util):
                steps.append((-gain, k, vec))
        if not steps:
            break
        lanes = min(steps)[2]

    # step 4: the FIFO plan
    cycles, util, run = runner.run(lanes)
    ref_cycles, ref_util = cycles, util
    plan: tuple[tuple[str, int], ...] = ()
    if fifo_plan:
        default = conv_sites.default_fifo_depths(net)
        plan = tuple(
            (f.name, _pow2(min(f.need, SEARCH_FIFO), default[f.name]))
            for f in run.fifos
            if _pow2(min(f.need, SEARCH_FIFO), default[f.name]) != default[f.name]
        )
        cycles, util, _ = runner.run(lanes, plan)  # (as the search's run, unless a delay moves)

        def ok(c: float, u: float) -> bool:
            return c <= ref_cycles * (1 + FIFO_TOLERANCE) and u >= ref_util - FIFO_TOLERANCE

        small = tuple((n_, d_) for n_, d_ in plan if d_ > SMALL_FIFO)
        if small != plan:  # the FIFOs of LUTs back to their default at once, if that costs nothing
            c2, u2, _ = runner.run(lanes, small, limit=ref_cycles * (1 + FIFO_TOLERANCE))
            if ok(c2, u2):
                plan, cycles, util = small, c2, u2
        for name, _depth in sorted(plan, key=lambda item: (-item[1], item[0])):
            while True:
                cur = dict(plan).get(name, default[name])
                lower = max(cur // 2, default[name])
                if lower >= cur:
                    break
                trial = tuple(
                    (n_, lower if n_ == name else d_)
                    for n_, d_ in plan
                    if n_ != name or lower != default[name]
                )
                c2, u2, _ = runner.run(lanes, trial, limit=ref_cycles * (1 + FIFO_TOLERANCE))
                if not ok(c2, u2):
                    break
                plan, cycles, util = trial, c2, u2
    return DesignChoice(
        lanes=tuple(int(p) for p in lanes),
        lane_total=_lane_total(net, lanes),
        fifo_depths=plan,
        cycles=cycles,
        utilization=util,
        search_cycles=ref_cycles,
        search_utilization=ref_util,
        target=target,
        planned=fifo_plan,
        runs=runner.runs,
        candidates=len(cands),
    )
