"""``--lanes balanced``: a CNN's lanes per site in proportion to its cores' work
(``hw.model.conv_sites.balanced_lanes``, ``hw.model.cnn_model.balanced``; docs/cnn.md §13)."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import balanced, cnn_schedule, site_work
from spikezip.ir import Layer
from spikezip.ir.cnn import ConvNet, Flatten, MaxPool2d
from spikezip.sw.cnn.reference import simulate
from tests.ir.test_cnn import conv, small_cnn


def chain() -> ConvNet:
    """conv 1→4 → conv 4→8 → max-pool → flatten → fc 6: lane choices 1,2,4 / 1,2,4,8 / 1 /
    1,2,3,6."""
    fc = Layer(
        weight=np.ones((6, 32), dtype=int),
        bias=np.zeros(6, int),
        threshold=3,
        neg_bound=-4,
        pos_bound=3,
    )
    return ConvNet(
        input_shape=(1, 4, 4),
        input_bounds=(0, 16),
        layers=(
            conv(c_out=4, padding=1, name="a"),
            conv(c_out=8, c_in=4, padding=1, name="b"),
            MaxPool2d(kernel=2, name="pool"),
            Flatten(),
            fc,
        ),
    )


def _bottleneck(work, lanes) -> float:
    return max(w / p for w, p in zip(work, lanes, strict=True))


def test_lanes_follow_the_work() -> None:
    net = chain()
    assert [conv_sites.lane_choices(net, k) for k in range(net.depth)] == [
        (1, 2, 4),
        (1, 2, 4, 8),
        (1,),
        (1, 2, 3, 6),
    ]
    heavy_b = conv_sites.balanced_lanes(net, [100, 800, 0, 30], 12)
    heavy_a = conv_sites.balanced_lanes(net, [800, 100, 0, 30], 12)
    # the work decides: the heavier conv gets the most lanes, and swapping the work swaps them
    assert heavy_b[1] > heavy_b[0] and heavy_a[0] > heavy_a[1]
    assert heavy_b == (1, 8, 1, 1) and heavy_a == (4, 1, 1, 1)
    for lanes in (heavy_b, heavy_a):
        assert conv_sites.resolve_cnn_lanes(net, lanes) == lanes
        assert sum(lanes) - 1 <= 12  # the max-pool's 1 is not in the budget


def test_balanced_minimises_the_bottleneck_within_the_budget() -> None:
    """Against every lane vector of the choices within the budget: none has a lower bottleneck,
    and none with the same bottleneck uses fewer lanes."""
    net = chain()
    rng = np.random.default_rng(1)
    choices = [conv_sites.lane_choices(net, k) for k in range(net.depth)]
    grid = np.array(np.meshgrid(*choices, indexing="ij")).reshape(net.depth, -1).T
    for _ in range(20):
        work = rng.integers(1, 1000, net.depth).tolist()
        work[2] = 0  # the max-pool: no lanes
        budget = int(rng.integers(3, 19))
        got = conv_sites.balanced_lanes(net, work, budget)
        fits = [tuple(g) for g in grid if g.sum() - 1 <= budget]
        best = min(_bottleneck(work, g) for g in fits)
        assert _bottleneck(work, got) == best
        assert sum(got) == min(sum(g) for g in fits if _bottleneck(work, g) == best)


def test_floor_and_errors() -> None:
    net = chain()
    # the max-pool's 300 busy cycles: no conv is sped up below them
    assert conv_sites.balanced_lanes(net, [600, 2400, 0, 60], 100, floor=300) == (2, 8, 1, 1)
    with pytest.raises(ValueError, match="budget must be at least 3 lanes"):
        conv_sites.balanced_lanes(net, [1, 1, 0, 1], 2)
    with pytest.raises(ValueError, match="work must hold 4 non-negative numbers"):
        conv_sites.balanced_lanes(net, [1, 1, 0], 8)


def test_balanced_from_the_model() -> None:
    """The work is the exact model's: a site's busy cycles times its lanes, at lanes 8."""
    net = small_cnn()
    x = np.random.default_rng(0).integers(0, 17, (3, 16))
    tr = simulate(net, x)
    run = cnn_schedule(net, x, tr, lanes=8)
    work, floor = site_work(run, net)
    loads = {ld.name: ld for ld in run.loads}
    assert work == [loads[s.name].work * loads[s.name].lanes for s in net.sites]
    assert floor == loads["pool"].work > 0
    budget = 6
    got = balanced(net, x, tr, budget=budget)
    assert got == conv_sites.balanced_lanes(net, work, budget, floor=floor)
    assert conv_sites.resolve_cnn_lanes(net, got) == got
    assert sum(p for s, p in zip(net.sites, got, strict=True) if s.kind != "maxpool2d") <= budget
