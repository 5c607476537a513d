"""``--lanes balanced[=N]``: a deterministic search for a CNN's lane vector and FIFO plan, scored
by the exact network model (:func:`hw.model.cnn_model.cnn_schedule`) on the given inputs back to
back (docs/cnn.md §13).

Every model run here is exact; what the search leaves out is spelled out below.

1. **Work.** One run at lanes ``reference`` with every FIFO :data:`DEEP` (no backpressure) gives
   each site's load in lane-cycles ``W_k`` (:func:`cnn_model.site_work`) and the busy cycles no
   lanes remove (the max-pools': ``floor``).
2. **Throughput levels.** A lane vector's bottleneck is ``T = max(W_k / P_k, floor)``; a site
   needs no more lanes than make it faster than the bottleneck. So for each level ``T`` in
   ``{W_k / d}`` (``d`` a lane choice of site ``k``: a divisor of its channels or neurons) the
   cheapest vector reaching it gives each site the fewest lanes with ``W_k / P_k ≤ T``; those
   within ``budget`` lanes are the candidates. They are run (every FIFO deep) fastest predicted
   first; the first whose ops-weighted conv utilization (``Σ ops / Σ lanes · accumulate`` over the
   conv cores, as ``spikezip report`` gives it) reaches ``target`` sets a bound, and the runs stop
   once a candidate's predicted ``T`` exceeds the fastest such design's cycles by
   :data:`STOP_MARGIN`. The choice: the fastest (cycles per image back to back) design at or above
   ``target``, fewer lanes on a tie; if none reaches it, the fastest of those within
   :data:`FALLBACK_BAND` of the best utilization found.
3. **The cores off the bottleneck.** A core with little work at few lanes still sits on each time
   step's path (conv1 sweeps all its neurons every step): back to back its FIFO cannot run ahead
   of its reader for long (the FIFO plan keeps it shallow, step 4), so its sweep adds to every
   step. Greedy: each site's next lane choice within the budget is tried; the one that lowers the
   mean latency of the first :data:`ALONE_IMAGES` images alone the most is kept if that is at
   least :data:`LATENCY_GAIN` and the design stays at or above ``target`` (or, if below it, does
   not lose utilization) and no slower back to back; repeated until no step qualifies.
4. **FIFO plan.** With the chosen lanes and every FIFO deep, each FIFO's need (the occupancy
   without backpressure, ``FifoCheck.need``): one whose need is at most :data:`AUTO_MAX` gets the
   power of two at or above it (``auto``); one that needs more feeds a core slower than its
   producer over the whole run (it would fill at any depth) and keeps its default. Then each
   planned FIFO, in the top's order, is halved while the design stays within
   :data:`FIFO_TOLERANCE` of the deep FIFOs' utilization and cycles (never below its default):
   the smallest powers of two that keep what the lanes promised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import cnn_schedule, site_work
from spikezip.hw.model.design import DesignParams
from spikezip.ir import Trace
from spikezip.ir.cnn import ConvNet

__all__ = [
    "AUTO_MAX",
    "DEEP",
    "DesignChoice",
    "auto_fifos",
    "conv_utilization",
    "search_design",
]

#: FIFO depth with which no FIFO of the digits CNNs fills (the work, the needs, the reference)
DEEP = 1 << 16
#: the deepest FIFO the ``auto`` plan sets
AUTO_MAX = 1024
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
    notes: list[str] = field(default_factory=list, compare=False)

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


def auto_fifos(net: ConvNet, run) -> tuple[tuple[str, int], ...]:
    """The ``auto`` FIFO plan from a run with every FIFO deep (module docstring, step 4)."""
    default = conv_sites.default_fifo_depths(net)
    out = []
    for f in run.fifos:
        if f.need <= AUTO_MAX:
            depth = max(default[f.name], 1 << max(f.need - 1, 0).bit_length())
            if depth != default[f.name]:
                out.append((f.name, depth))
    return tuple(out)


class _Runner:
    """The exact model on fixed inputs, each (lanes, FIFO plan) run once."""

    def __init__(self, net: ConvNet, x: np.ndarray, trace: Trace) -> None:
        self.net, self.x, self.trace = net, x, trace
        self.cache: dict = {}
        self.runs = 0

    def run(self, lanes, fifo_depths=None):
        """(cycles per image, conv utilization, the schedule); ``fifo_depths`` None: deep."""
        key = (tuple(lanes), fifo_depths)
        if key not in self.cache:
            if fifo_depths is None:
                params = DesignParams.of(self.net, lanes=lanes, fifo_depth=SEARCH_FIFO)
            else:
                params = DesignParams.of(self.net, lanes=lanes, fifo_depths=fifo_depths)
            run = cnn_schedule(self.net, self.x, self.trace, params)
            self.runs += 1
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
    fifo_plan: bool = True,
) -> DesignChoice:
    """The lanes and FIFO plan of ``--lanes balanced[=budget]`` (module docstring) for ``net``
    running ``inputs`` back to back (``trace``: their golden trace). ``budget``: lanes in total
    over the sites with lanes (default: those of ``--lanes reference``); ``fifo_plan`` False
    keeps the default FIFOs (step 4 skipped)."""
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
    runner = _Runner(net, inputs, trace)
    n = len(inputs)
    work, floor = site_work(
        cnn_schedule(net, inputs, trace, DesignParams.of(net, lanes=base, fifo_depth=DEEP)), net
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
        # each planned FIFO at least its need or SEARCH_FIFO: the search's run, exactly
        runner.cache[(tuple(lanes), plan)] = runner.cache[(tuple(lanes), None)]

        def ok(c: float, u: float) -> bool:
            return c <= ref_cycles * (1 + FIFO_TOLERANCE) and u >= ref_util - FIFO_TOLERANCE

        small = tuple((n_, d_) for n_, d_ in plan if d_ > SMALL_FIFO)
        if small != plan:  # the FIFOs of LUTs back to their default at once, if that costs nothing
            c2, u2, _ = runner.run(lanes, small)
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
                c2, u2, _ = runner.run(lanes, trial)
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
