"""``--lanes balanced[=N]``'s search (``hw.model.cnn_search.search_design``; docs/cnn.md §13):
its candidates against a brute force, its choice against every lane vector run exactly, the work
and the FIFO plan it must follow."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spikezip.hw.model import cnn_search, conv_sites
from spikezip.hw.model.cnn_model import cnn_schedule
from spikezip.hw.model.cnn_search import FIFO_TOLERANCE, SEARCH_FIFO, search_design
from spikezip.sw.cnn.reference import simulate
from tests.hw.test_cnn_lanes import chain


@pytest.fixture(scope="module")
def run_chain():
    net = chain()
    x = np.random.default_rng(0).integers(0, 17, (6, 16))
    return net, x, simulate(net, x)


def _grid(net, budget):
    choices = [conv_sites.lane_choices(net, k) for k in range(net.depth)]
    for vec in itertools.product(*choices):
        if sum(p for s, p in zip(net.sites, vec, strict=True) if s.kind != "maxpool2d") <= budget:
            yield vec


def _util(run) -> float:
    conv = [ld for ld in run.loads if ld.kind == "conv"]
    return sum(ld.ops for ld in conv) / sum(ld.lanes * ld.accumulate for ld in conv)


def test_levels_are_the_cheapest_vectors_at_each_bottleneck() -> None:
    """Each candidate reaches its bottleneck with the fewest lanes (a brute force over every
    vector), and every reachable bottleneck has one."""
    net = chain()
    rng = np.random.default_rng(3)
    for _ in range(10):
        work = rng.integers(1, 1000, net.depth).astype(float).tolist()
        work[2] = 0.0
        floor = float(rng.integers(0, 200))
        budget = int(rng.integers(3, 19))
        got = cnn_search._levels(net, work, floor, budget)
        grid = list(_grid(net, budget))
        top = {v: max([w / p for w, p in zip(work, v, strict=True)] + [floor]) for v in grid}
        for t, vec in got:
            assert t == top[vec]
            reach = [v for v in grid if top[v] <= t]
            assert sum(vec) == min(sum(v) for v in reach)
        assert {t for t, _ in got} == set(top.values()) & {t for t, _ in got}
        assert min(top.values()) == got[0][0]  # the fastest within the budget is a candidate


def test_search_finds_the_fast_utilized_design(run_chain) -> None:
    """Against every lane vector within the budget, run exactly: the choice reaches the target
    utilization and is within 2 % of the fastest design that does."""
    net, x, tr = run_chain
    budget, target = 12, 0.95
    found = search_design(net, x, tr, budget=budget, target=target, fifo_plan=False)
    rows = []
    for vec in _grid(net, budget):
        run = cnn_schedule(net, x, tr, lanes=vec, fifo_depth=SEARCH_FIFO)
        rows.append((run.total_cycles / len(x), _util(run), vec))
    meet = [r for r in rows if r[1] >= target]
    assert meet, "the test net must allow the target"
    fastest = min(r[0] for r in meet)
    assert found.search_utilization >= target
    assert found.search_cycles <= fastest * 1.02
    assert found.lanes in [r[2] for r in meet]
    assert found.runs < len(rows)  # pruned, not exhaustive
    assert found.fifo_depths == ()


def test_the_work_decides(run_chain, monkeypatch) -> None:
    """The measured work orders the runs: swapping the two convs' work swaps the lanes of the
    first design run (the fastest predicted); the exact runs then judge it."""
    net, x, tr = run_chain
    first = []
    real = cnn_search._Runner.run

    def spy(self, lanes, fifo_depths=None):
        if not self.cache:
            first.append(tuple(lanes))
        return real(self, lanes, fifo_depths)

    monkeypatch.setattr(cnn_search._Runner, "run", spy)
    for work in ([100.0, 8000.0, 0.0, 30.0], [8000.0, 100.0, 0.0, 30.0]):
        monkeypatch.setattr(cnn_search, "site_work", lambda run, net, w=work: (w, 0.0))
        search_design(net, x, tr, budget=12, fifo_plan=False)
    (b_heavy, a_heavy) = first
    assert b_heavy[1] > b_heavy[0] and a_heavy[0] > a_heavy[1], first


def test_fifo_plan_exact_and_smallest(run_chain) -> None:
    """The plan's numbers are the exact model's with it; it stays within the tolerance of the
    search's FIFOs, and halving any FIFO of it leaves the tolerance."""
    net, x, tr = run_chain
    found = search_design(net, x, tr, budget=12)
    assert found.fifo_depths, "the test net must need a FIFO plan"
    run = cnn_schedule(net, x, tr, lanes=found.lanes, fifo_depths=found.fifo_depths)
    assert run.total_cycles / len(x) == found.cycles and _util(run) == found.utilization
    ref = cnn_schedule(net, x, tr, lanes=found.lanes, fifo_depth=SEARCH_FIFO)
    ref_c, ref_u = ref.total_cycles / len(x), _util(ref)
    assert (found.search_cycles, found.search_utilization) == (ref_c, ref_u)
    assert found.cycles <= ref_c * (1 + FIFO_TOLERANCE)
    assert found.utilization >= ref_u - FIFO_TOLERANCE
    default = conv_sites.default_fifo_depths(net)
    for name, depth in found.fifo_depths:
        assert depth & (depth - 1) == 0 and depth > default[name]
        half = tuple((n, max(d // 2, default[n]) if n == name else d) for n, d in found.fifo_depths)
        r = cnn_schedule(net, x, tr, lanes=found.lanes, fifo_depths=half)
        assert r.total_cycles / len(x) > ref_c * (1 + FIFO_TOLERANCE) or (
            _util(r) < ref_u - FIFO_TOLERANCE
        )


def test_search_errors(run_chain) -> None:
    net, x, tr = run_chain
    with pytest.raises(ValueError, match="budget must be at least 3 lanes"):
        search_design(net, x, tr, budget=2)
    with pytest.raises(ValueError, match=r"target must lie in \(0, 1\]"):
        search_design(net, x, tr, target=1.5)


def test_cycle_limit(run_chain) -> None:
    """``cnn_schedule``'s ``cycle_limit``: the run as without it at its own cycles, stopped
    below them (a shallow FIFO: backpressure, several passes)."""
    from spikezip.hw.model.cnn_model import CycleLimitExceeded

    net, x, tr = run_chain
    kw = {"lanes": (4, 1, 1, 1), "fifo_depth": 2}
    full = cnn_schedule(net, x, tr, **kw)
    assert full.passes > 1
    same = cnn_schedule(net, x, tr, cycle_limit=full.total_cycles, **kw)
    assert same.total_cycles == full.total_cycles
    with pytest.raises(CycleLimitExceeded):
        cnn_schedule(net, x, tr, cycle_limit=full.total_cycles - 1, **kw)
