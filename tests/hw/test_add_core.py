"""The residual merge core (docs/cnn.md §12; ``hw.cores.add``): a stream merger in front of a
layer core with a merge map.

Tier 1: the merge map (rows, bases, gains, the stride's gap), the spec's neurons and formats,
the merged streams, validation. Tier 2: random merges (2–3 sources, channels 1–16, random
multipliers, lanes and pipeline presets, ST-BIF and graded) in Amaranth's simulator: every
output beat equals the reference's in the exact model's cycle; with random input gaps and
output stalls the same beats; with scheduled arrivals per source and backpressure every input
beat taken and every output beat leaving in the model's cycle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.add import AddCore, StreamMerge
from spikezip.hw.model import add_model as am
from spikezip.hw.model.cycle_model import LayerTiming
from spikezip.hw.model.events import EventFormat, Step
from spikezip.hw.model.input_map import InputMap
from spikezip.sw.cnn.reference import simulate
from tests.hw.cnn_core_nets import add_nets, arrivals_of, fixed_add_net, images, words
from tests.hw.stream_bench import drive_streams, drive_timed

# -- tier 1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "lanes"), [(12, 1), (12, 4), (5, 2), (1, 1)])
def test_merge_map(n: int, lanes: int) -> None:
    """Index ``s·stride + i`` is one pass over word ``i // lanes`` whose table word holds
    ``gains[s]`` in lane ``i mod lanes`` only; the stride's gap is dropped."""
    gains = [3, -2, 7]
    imap = InputMap.merge(n, gains, lanes=lanes)
    stride = InputMap.merge_stride(n)
    assert stride >= max(n, 2) and stride & (stride - 1) == 0 and stride < 2 * max(n, 2)
    assert imap.n_in == 3 * stride and imap.span == 1 and not imap.multi
    for j in range(imap.n_in):
        s, i = divmod(j, stride)
        assert imap.kept[j] == (i < n)
        if i < n:
            ((row, base),) = imap.passes(j)
            assert base == i // lanes
            word = imap.table[row]
            assert word.tolist() == [gains[s] if q == i % lanes else 0 for q in range(lanes)]
    with pytest.raises(ValueError, match=r"gains\[1\] must be an integer"):
        InputMap.merge(4, [1, 2.5], lanes=1)


def test_spec_and_streams() -> None:
    """The spec's neurons are HWC (Θ per channel tiled over positions), its input format the
    merged index and the widest spike; the merged steps are the sources' in source order,
    busy the OR, an ended source left out."""
    net = fixed_add_net(3)
    spec = am.add_spec(net, 3, lanes=2)
    c, h, w = net.output_shape(3)
    assert spec.n_out == c * h * w and spec.kind == "add"
    assert spec.neurons.thresholds.tolist() == [3, 5, 2, 4] * (h * w)
    stride = InputMap.merge_stride(c * h * w)
    assert spec.input_format.index_width == (3 * stride - 1).bit_length()
    fmts = am.source_formats(net, 3)
    assert all(f == EventFormat((c * h * w - 1).bit_length(), 2) for f in fmts)
    a = Step(np.array([0, 5]), np.array([1, -1]), True)
    b = Step(np.array([2]), np.array([1]), False)
    idle = Step(np.zeros(0, np.int64), np.zeros(0, np.int64), False)
    merged = am.merge_steps([[[a, idle]], [[b]]], 8)
    assert [s.indices.tolist() for s in merged[0]] == [[0, 5, 10], []]
    assert [s.busy for s in merged[0]] == [True, False]
    with pytest.raises(ValueError, match="is a Conv2d, not an Add"):
        am.add_spec(net, 0, lanes=1)


def test_validation() -> None:
    net = fixed_add_net(2)
    spec = am.add_spec(net, 2, lanes=1)
    with pytest.raises(TypeError, match="site must be a SiteSpec"):
        AddCore(site=None, formats=am.source_formats(net, 2))
    with pytest.raises(ValueError, match="one format per source"):
        AddCore(site=spec, formats=am.source_formats(net, 2)[:1])
    with pytest.raises(ValueError, match="at least two sources"):
        StreamMerge([EventFormat(4, 2)], 4)
    with pytest.raises(ValueError, match="must fit stride_bits"):
        StreamMerge([EventFormat(5, 2), EventFormat(4, 2)], 4)


# -- tier 2 ---------------------------------------------------------------------------------------


def _check(net, x, lanes: int, pipeline: int, *, timed_seed=None) -> None:
    layer = len(net.layers) - 1
    trace = simulate(net, x)
    spec = am.add_spec(net, layer, lanes=lanes)
    fmts = am.source_formats(net, layer)
    core = AddCore(site=spec, formats=fmts, pipeline=pipeline)
    sources, _, outs = am.add_streams(net, x, trace, layer)
    fo = core.output_format
    expected = words(outs, fo)
    run = am.timed(core.timing, spec.input_map, sources, outs)
    cycles = list(run.offered)
    ins = [(getattr(core, f"i{s}"), words(src, fmts[s])) for s, src in enumerate(sources)]
    got = drive_streams(core, ins, len(expected), limit=4 * cycles[-1] + 100)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles
    if timed_seed is None:
        return
    rng = np.random.default_rng(timed_seed)
    valid_from = [np.cumsum(rng.integers(0, 4, len(w))).tolist() for _, w in ins]
    arr = [arrivals_of(src, v) for src, v in zip(sources, valid_from, strict=True)]
    arrivals = [[arr[s][b] for s in range(len(sources))] for b in range(len(outs))]
    ready = np.cumsum(rng.integers(0, 3, len(expected))).tolist()
    run = am.timed(core.timing, spec.input_map, sources, outs, arrivals, ready)
    limit = 8 * (cycles[-1] + ready[-1] + max(v[-1] for v in valid_from)) + 100
    taken, got = drive_timed(
        core, [(p, w, v) for (p, w), v in zip(ins, valid_from, strict=True)], len(expected),
        ready, limit=limit,
    )  # fmt: skip
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == [c for inf in run.beats for ev, mk in inf for c in (*ev, mk)]
    assert taken == [list(t) for t in run.taken]


def _random(data, max_cycles: int) -> None:
    net = data.draw(add_nets())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = images(rng, net, data.draw(st.integers(1, 2)), data.draw(st.sampled_from([0.4, 1.0])))
    n = int(np.prod(net.output_shape(len(net.layers) - 1)))
    lanes = data.draw(st.integers(1, min(8, n)))
    pipeline = data.draw(st.sampled_from([0, 1, 2, 3]))
    trace = simulate(net, x)
    sources, _, outs = am.add_streams(net, x, trace, len(net.layers) - 1)
    timing = LayerTiming(n_out=n, lanes=lanes, pipeline=pipeline)
    imap = am.add_spec(net, len(net.layers) - 1, lanes=lanes).input_map
    assume(am.timed(timing, imap, sources, outs).offered[-1] <= max_cycles)
    _check(net, x, lanes, pipeline,
           timed_seed=data.draw(st.integers(0, 99)))  # fmt: skip


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_merges_equal_the_reference_and_the_model(data) -> None:
    """Random merges: the core's spikes and busy flags equal the reference's, each beat in the
    exact model's cycle, also with scheduled input gaps and backpressure (the ``_many`` twin:
    60, slow)."""
    _random(data, 1_500)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_merges_many(data) -> None:
    _random(data, 20_000)


@pytest.mark.parametrize(
    ("n_src", "neuron"), [pytest.param(2, "stbif", marks=pytest.mark.slow), (3, "graded")]
)
def test_sources_that_end_early(n_src: int, neuron: str) -> None:
    """Fixed merges where the first source ends before the last (it is skipped meanwhile):
    exact with the model, also with scheduled gaps and backpressure."""
    net = fixed_add_net(n_src, neuron)
    x = images(np.random.default_rng(0), net, 3)
    sources, _, _ = am.add_streams(net, x, simulate(net, x), n_src)
    early = [b for b in range(3) if len(sources[0][b]) < len(sources[-1][b])]
    assert early
    _check(net, x[early[:1]], 2, 1, timed_seed=1)


@pytest.mark.slow
@pytest.mark.parametrize(("n_src", "neuron"), [(2, "stbif"), (3, "graded")])
def test_random_pauses_keep_the_beats(n_src: int, neuron: str) -> None:
    """Random input gaps on every source and output stalls: the same beats."""
    net = fixed_add_net(n_src, neuron)
    x = images(np.random.default_rng(0), net, 3)
    sources, _, outs = am.add_streams(net, x, simulate(net, x), n_src)
    spec = am.add_spec(net, n_src, lanes=4)
    fmts = am.source_formats(net, n_src)
    core = AddCore(site=spec, formats=fmts, pipeline=2)
    ins = [(getattr(core, f"i{s}"), words(src, fmts[s])) for s, src in enumerate(sources)]
    expected = words(outs, core.output_format)
    got = drive_streams(core, ins, len(expected), limit=10**6, seed=4)
    assert [w for _, w in got] == expected
