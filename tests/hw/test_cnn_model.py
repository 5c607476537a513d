"""The CNN top (``hw.cores.cnn_core.CnnCore``) and its exact cycle model
(``hw.model.cnn_model``) against the reference, in Amaranth's simulator.

Random ConvNets of the sites the top builds as layer cores (an analog conv, a random spike-fed
conv — kernel 1–5, stride 1–3, padding 0–2, channels 1–16 —, a sum-pool, flatten, linear) on
random images, lanes, pipeline presets and FIFO depths down to one entry: every site's spikes
equal the reference's (C order after the top's HWC order), and every output beat of every site,
every first input beat and every ``done`` is at the model's cycle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.cnn_core import CnnCore
from spikezip.hw.model import conv_sites
from spikezip.hw.model.cnn_model import cnn_schedule
from spikezip.hw.model.input_map import InputMap
from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, SumPool2d
from spikezip.sw.cnn.reference import simulate
from tests.hw.test_vit_core import run_graph
from tests.sw.cnn_strategies import images_for, layer_chains, residual_nets


def check_top(net, x, **knobs):
    """The RTL's spikes == the reference's at every site; its cycle stamps == the model's, beat
    for beat. Returns the schedule."""
    core = CnnCore(net=net, probe=True, **knobs)
    samples = conv_sites.input_steps(net, x)
    tr = simulate(net, x)
    model = cnn_schedule(net, x, tr, **knobs)
    # (a run that hangs stops soon after the model's end instead of at a fixed limit)
    hw, accepted, done_at = run_graph(core, samples, limit=model.total_cycles + 200)
    for k, site in enumerate(net.sites):
        perm = conv_sites.core_order(net, k)
        for b in range(x.shape[0]):
            steps = hw[k][b]
            T = int(tr.steps[b])
            assert len(steps) <= max(T, 2), (site.name, b)
            for t in range(T):
                got = np.zeros(site.size, dtype=np.int64)
                if t < len(steps):
                    got[perm[steps[t].step.indices]] = steps[t].step.values
                ref = tr.spikes[k][b, t].reshape(-1)
                assert np.array_equal(got, ref), (site.name, b, t)
            got_c = [(tuple(int(c) for c in s.event_cycles), int(s.cycle)) for s in steps]
            assert got_c == list(model.site_steps(site.name, b)), (site.name, b)
    assert len(hw[-1][0]) >= 1
    counts = [sum(s.n_events + 1 for s in inf) for inf in samples]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    assert model.first_input.tolist() == [accepted[s] for s in starts]
    assert model.done.tolist() == done_at
    return model


def _knobs(data, depths) -> dict:
    return {
        "lanes": data.draw(st.integers(1, 8)),
        "pipeline": data.draw(st.sampled_from([0, 1, 2, 3])),
        "fifo_depth": data.draw(st.sampled_from(depths)),
    }


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_chains_exact(data) -> None:
    net = data.draw(layer_chains(max_size=4))
    x = data.draw(images_for(net, max_batch=2))
    check_top(net, x, **_knobs(data, [None, 1, 2]))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_chains_exact_many(data) -> None:
    net = data.draw(layer_chains(max_size=7))
    x = data.draw(images_for(net, max_batch=3))
    check_top(net, x, **_knobs(data, [None, 1, 2, 3, 64]))


def test_one_entry_fifos_backpressure() -> None:
    """One-entry FIFOs: the producers wait on them and the model still has every cycle."""
    from hypothesis import find

    net = find(layer_chains(max_size=4, pool=True), lambda n: n.sites[1].size >= 8)
    rng = np.random.default_rng(3)
    x = rng.integers(1, 17, (2, net.n_inputs))
    model = check_top(net, x, lanes=2, pipeline=1, fifo_depth=1)
    assert model.passes >= 1 and model.total_cycles == model.done[-1] + 1


def test_depthwise_map() -> None:
    """A sum-pool's map: one one-word pass per window an input reaches, the word of its own
    channel (HWC), the weight in lane ``c mod lanes``; lanes must divide the channels."""
    pool = SumPool2d(kernel=2, stride=1, weight=3, threshold=1, neg_bound=0, pos_bound=1)
    m = InputMap.depthwise(pool, (4, 3, 3), lanes=2, weight=3)
    # input (c=3, y=1, x=1): HWC index (1·3 + 1)·4 + 3 = 19; windows (0,0),(0,1),(1,0),(1,1)
    assert m.passes(19) == [(1, p * 2 + 1) for p in range(4)]
    assert m.passes(0) == [(0, 0)]  # (c 0, y 0, x 0): window (0, 0) only
    assert m.span == 1 and m.table.tolist() == [[3, 0], [0, 3]]
    with pytest.raises(ValueError, match="lanes must divide the site's 4 channels"):
        InputMap.depthwise(pool, (4, 3, 3), lanes=3, weight=3)


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_residual_nets_exact(data) -> None:
    """conv → conv → merge (the skip through a broadcast) → max- or sum-pool → linear, ST-BIF or
    graded: the merge and max-pool cores in the top, their FIFOs down to one entry (small ones
    here; the slow twin's up to 6×6 with 6 channels)."""
    graded = data.draw(st.booleans())
    net = data.draw(residual_nets(graded=graded, max_size=3, max_channels=2))
    x = data.draw(images_for(net, max_batch=1))
    check_top(net, x, **_knobs(data, [None, 1, 2]))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_residual_nets_exact_many(data) -> None:
    net = data.draw(residual_nets(graded=data.draw(st.booleans())))
    x = data.draw(images_for(net, max_batch=3))
    check_top(net, x, **_knobs(data, [None, 1, 2, 3, 64]))


def test_graph_checks() -> None:
    """The top feeds the image to its first site only, and every site but the last feeds
    another: one clear error each; a linear layer may read the image itself."""
    net = _chain(np.random.default_rng(2))
    conv1 = net.layers[0]
    add = Add(multipliers=(1, 1), threshold=1, neg_bound=0, pos_bound=1)
    two = ConvNet(
        input_shape=net.input_shape,
        input_bounds=net.input_bounds,
        layers=(conv1, conv1, add),
        sources=((-1,), (-1,), (0, 1)),
    )
    with pytest.raises(ValueError, match=r"feeds the image to its first site only; .* read it"):
        conv_sites.check_rtl(two)
    dead = ConvNet(
        input_shape=net.input_shape,
        input_bounds=net.input_bounds,
        layers=(conv1, conv1),
        sources=((-1,), (-1,)),
    )
    with pytest.raises(ValueError, match="feeds the image"):
        conv_sites.check_rtl(dead)
    fc = Layer(weight=np.ones((2, 4), int), bias=[0, 0], threshold=1, neg_bound=0, pos_bound=1)
    flat = ConvNet(input_shape=(1, 2, 2), input_bounds=(0, 8), layers=(Flatten(), fc))
    assert conv_sites.resolve_cnn_lanes(flat, 8) == (2,)
    assert conv_sites.site_spec(flat, 0, lanes=2).analog


def _chain(rng, c0=2, c1=6, c2=7, size=4, n_out=5) -> ConvNet:
    neurons = dict(threshold=2, neg_bound=-1, pos_bound=3)
    conv1 = Conv2d(weight=rng.integers(-3, 4, (c1, c0, 3, 3)), bias=np.zeros(c1, int), padding=1,
                   **neurons)  # fmt: skip
    conv2 = Conv2d(weight=rng.integers(-3, 4, (c2, c1, 1, 1)), bias=np.zeros(c2, int), **neurons)
    pool = SumPool2d(kernel=2, weight=1, **neurons)
    n = c2 * (size // 2) ** 2
    fc = Layer(weight=rng.integers(-3, 4, (n_out, n)), bias=np.zeros(n_out, int), **neurons)
    return ConvNet(
        input_shape=(c0, size, size),
        input_bounds=(0, 8),
        layers=(conv1, conv2, pool, Flatten(), fc),
    )


def test_lanes_per_site() -> None:
    """One value: a conv or a sum-pool takes the largest divisor of its channels ≤ P, a linear
    layer min(P, n); one per site is checked by name."""
    net = _chain(np.random.default_rng(1))
    assert conv_sites.resolve_cnn_lanes(net, 4) == (3, 1, 1, 4)
    assert conv_sites.resolve_cnn_lanes(net, 8) == (6, 7, 7, 5)
    with pytest.raises(ValueError, match=r"lanes of site layer0 must divide its 6 channels"):
        conv_sites.resolve_cnn_lanes(net, (4, 1, 1, 1))
    with pytest.raises(ValueError, match="lanes must hold 4 values"):
        conv_sites.resolve_cnn_lanes(net, (1, 1))


def test_skip_fifo_holds_a_step() -> None:
    """A FIFO into a merge from the site it also reads through a later one holds a whole step
    of its producer (``n + 1``): below that the merge, reading source by source, would deadlock
    the top (the composed model's passes never settled with one-entry FIFOs). ``fifo_depth``
    raises it to the floor; a smaller one set by name is refused."""
    from hypothesis import find

    net = find(residual_nets(max_size=3, max_channels=2), lambda n: True)
    floors = conv_sites.skip_floors(net)
    n = net.sites[0].size
    assert floors == {"layer0_fifo1": n + 1}  # conv1 ⇉ conv2, merge.i1
    x = np.random.default_rng(0).integers(0, 17, (2, net.n_inputs))
    model = cnn_schedule(net, x, simulate(net, x), lanes=1, fifo_depth=1)
    assert {f.name: f.depth for f in model.fifos}["layer0_fifo1"] == n + 1
    with pytest.raises(ValueError, match=rf"FIFO layer0_fifo1 is on a skip path .* {n + 1} entr"):
        CnnCore(net=net, fifo_depths={"layer0_fifo1": n})


def test_streaming_conv_sites(monkeypatch) -> None:
    """The top's conv sites stream (``conv_sites.STREAMING_KINDS``, docs/cnn.md §11): a conv core
    sweeps an output position once the last input row reaching it has passed, so its spikes leave
    before its step's marker; RTL == model beat for beat, and the same net with plain conv cores
    takes longer (the model, which the other tests pin to the RTL for both)."""
    rng = np.random.default_rng(5)

    def conv(c_in, c_out):
        w = rng.integers(-2, 4, (c_out, c_in, 3, 3))
        return Conv2d(weight=w, bias=np.zeros(c_out, np.int64), threshold=3, neg_bound=0,
                      pos_bound=3, padding=1)  # fmt: skip

    fc = Layer(weight=rng.integers(-3, 4, (3, 2 * 25)), bias=[0, 0, 0], threshold=3,
               neg_bound=0, pos_bound=3)  # fmt: skip
    net = ConvNet(input_shape=(1, 5, 5), input_bounds=(0, 8),
                  layers=(conv(1, 2), conv(2, 2), Flatten(), fc))  # fmt: skip
    x = rng.integers(0, 9, (1, net.n_inputs))
    specs = list(conv_sites.site_specs(net, 2).values())
    assert [s.input_map.stream for s in specs] == [True, True, False]
    model = check_top(net, x, lanes=2, pipeline=1)
    # a spike of conv2 leaves before conv2's input marker (conv1's) arrives: a plain core cannot
    markers = [m for _, m in model.site_steps(net.sites[0].name, 0)]
    steps = list(model.site_steps(net.sites[1].name, 0))
    assert any(ev and ev[0] < markers[t] for t, (ev, _) in enumerate(steps[: len(markers)]))
    monkeypatch.setattr(conv_sites, "STREAMING_KINDS", frozenset())
    assert not any(s.input_map.stream for s in conv_sites.site_specs(net, 2).values())
    plain = cnn_schedule(net, x, simulate(net, x), lanes=2, pipeline=1)
    assert plain.total_cycles > model.total_cycles
