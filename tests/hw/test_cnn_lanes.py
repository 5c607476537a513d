"""What ``--lanes balanced``'s search (``hw.model.cnn_search``, tested in test_cnn_search.py)
builds on: each site's lane choices and the work the exact model measures (docs/cnn.md §13)."""

from __future__ import annotations

import numpy as np

from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import cnn_schedule, site_work
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


def test_lane_choices() -> None:
    """The divisors of a conv's output channels and of a linear layer's neurons; 1 for a
    max-pool."""
    net = chain()
    assert [conv_sites.lane_choices(net, k) for k in range(net.depth)] == [
        (1, 2, 4),
        (1, 2, 4, 8),
        (1,),
        (1, 2, 3, 6),
    ]


def test_work_from_the_model() -> None:
    """The work is the exact model's: a site's busy cycles times its lanes, at lanes 8."""
    net = small_cnn()
    x = np.random.default_rng(0).integers(0, 17, (3, 16))
    tr = simulate(net, x)
    run = cnn_schedule(net, x, tr, lanes=8)
    work, floor = site_work(run, net)
    loads = {ld.name: ld for ld in run.loads}
    assert work == [loads[s.name].work * loads[s.name].lanes for s in net.sites]
    assert floor == loads["pool"].work > 0
