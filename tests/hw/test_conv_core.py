"""The convolution core (docs/cnn.md §11): a layer core with a convolution input map.

Tier 1: the map's passes are ``Conv2d.targets`` (rows, bases, weights), the costs, validation.
Tier 2: random conv layers (kernel 1–5, stride 1–3, padding 0–2, channels 1–16, images 3–8
pixels; analog and spike-fed; random lanes and pipeline presets) in Amaranth's simulator: every
output beat equals the reference's (``sw.cnn.reference``), in the exact cycle model's cycle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.model import cycle_model
from spikezip.hw.model.conv_sites import conv_spec, conv_streams, hwc_order
from spikezip.hw.model.events import Step
from spikezip.hw.model.input_map import InputMap
from spikezip.ir.cnn import Conv2d, ConvNet
from spikezip.sw.cnn.reference import simulate
from tests.hw.stream_bench import drive_stream
from tests.sw.cnn_strategies import conv_layers

# -- tier 1 ---------------------------------------------------------------------------------------


def _conv(c_out=4, c_in=2, k=(3, 3), stride=1, padding=1, seed=0) -> Conv2d:
    rng = np.random.default_rng(seed)
    return Conv2d(
        weight=rng.integers(-9, 10, (c_out, c_in, *k)),
        bias=np.zeros(c_out, dtype=np.int64),
        threshold=4,
        neg_bound=0,
        pos_bound=3,
        stride=stride,
        padding=padding,
    )


@pytest.mark.parametrize("order", ["chw", "hwc"])
@pytest.mark.parametrize(
    ("k", "stride", "padding", "lanes"),
    [((3, 3), 1, 1, 2), ((2, 3), (2, 1), (1, 0), 4), ((1, 1), 2, 0, 1), ((5, 4), 3, 2, 1)],
)
def test_conv_map_passes_are_the_targets(order, k, stride, padding, lanes) -> None:
    """Every pass of every input index is a target of ``Conv2d.targets``, in its order; the
    table word of a pass is the kernel slice ``w[lanes·o …, c', ky, kx]``."""
    conv = _conv(k=k, stride=stride, padding=padding)
    shape = (2, 5, 6)
    imap = InputMap.conv(conv, shape, lanes=lanes, order=order)
    wo = conv.output_shape(shape)[2]
    span, kw = conv.c_out // lanes, conv.kernel[1]
    assert imap.span == span and imap.multi == (max(conv.fan_out(shape).flat) > conv.c_out)
    for j in range(int(np.prod(shape))):
        if order == "chw":
            c, y, x = np.unravel_index(j, shape)
        else:
            y, x, c = np.unravel_index(j, (shape[1], shape[2], shape[0]))
        targets = conv.targets(shape, int(y), int(x))
        got = imap.passes(j)
        assert len(got) == len(targets) == imap.pass_counts[j]
        for (row, base), (oy, ox, ky, kx) in zip(got, targets, strict=True):
            assert base == (oy * wo + ox) * span
            assert row == (ky * kw + kx) * shape[0] + c  # tap-major rows
            words = imap.table[row * span : (row + 1) * span].reshape(-1)
            assert words.tolist() == conv.weight[:, c, ky, kx].tolist()
        assert imap.kept[j] == bool(targets)
    # every (output neuron, reached tap) pair exactly once: the dense MAC count
    assert imap.pass_counts.sum() * span * lanes == conv.fan_in(shape).sum() * conv.c_out
    # an event: its passes back to back, the last padded to min_distance; dropped: 1 cycle
    idx, n = np.arange(imap.n_in), imap.pass_counts
    for d in (1, 2, 3):
        cost = np.where(n > 0, n * span + max(0, d - span), 1)
        assert imap.event_cycles(idx, d).tolist() == cost.tolist()
        assert imap.consumed_after(idx, d).tolist() == np.where(n > 0, n * span - 1, 0).tolist()


def _sequencer_passes(tables, j: int) -> list[tuple[int, int]]:
    """As the sequencer walks them: the first pass; ``single`` ends; else ``pair`` means the
    second is the last, and a later pass with ``next_last`` says the one after it is the last."""
    if tables.split is None:
        first, base, chan = int(tables.first[j]), int(tables.base[j]), int(tables.chan[j])
        f = tables.index_fields()
        kept = bool(f["kept"][j])
        single = int(f["single"][j]) if tables.depth else 1
        pair = int(f["pair"][j]) if tables.depth else 0
        second = int(f["second"][j]) if tables.depth else 0
    else:
        hi, lo = j >> tables.split, j & ((1 << tables.split) - 1)
        h = {k: int(v[hi]) for k, v in tables.hi.items()}
        a, b = h["first"], int(tables.lo["first"][lo])
        first = a | b if tables.split_or else a + b
        base, kept, chan = h["base"], bool(h["kept"]), int(tables.lo["chan"][lo])
        single, pair, second = h.get("single", 1), h.get("pair", 0), h.get("second", 0)
    if not kept:
        return []
    out = [(first, base)]
    last = bool(single)
    q, last_next = second, bool(pair)
    while not last:
        f = int(tables.pass_first[q])
        out.append((f | chan if tables.pass_or else f + chan, int(tables.pass_base[q])))
        last, last_next = last_next, bool(tables.pass_next_last[q])
        q += 1
    return out


@pytest.mark.parametrize(
    ("c_in", "order", "k", "stride", "padding", "lanes", "split", "pass_or"),
    [
        (4, "hwc", (3, 3), 1, 1, 2, True, True),  # c_in·span = 8: channel bits ORed in
        (3, "hwc", (3, 3), 1, 1, 2, False, False),  # c_in 3: no split, an addition
        (8, "hwc", (2, 3), (2, 1), (1, 0), 4, True, True),
        (2, "chw", (3, 3), 2, 1, 1, False, True),
        (1, "chw", (5, 4), 3, 2, 1, False, True),
    ],
)
def test_decoder_tables_rebuild_every_pass(c_in, order, k, stride, padding, lanes, split, pass_or):
    """The sequencer's tables (``InputMap.decoder_tables``: decoder, split or not, and the pass
    ROM's shared lists) give back every index's passes, ``first = row·span``, in order; a
    convolution's lists are one per input position."""
    conv = _conv(c_in=c_in, k=k, stride=stride, padding=padding)
    shape = (c_in, 6, 7)
    imap = InputMap.conv(conv, shape, lanes=lanes, order=order)
    tables = imap.decoder_tables()
    assert (tables.split is not None) == split and tables.pass_or == pass_or
    for j in range(imap.n_in):
        want = [(row * imap.span, base) for row, base in imap.passes(j)]
        assert _sequencer_passes(tables, j) == want, j
    later = int(np.maximum(imap.pass_counts - 1, 0).sum())
    per_position = (
        int(np.maximum(imap.pass_counts - 1, 0).reshape(-1, c_in).sum() / c_in)
        if (order == "hwc")
        else None
    )
    assert tables.depth <= later
    if per_position is not None:  # HWC: every channel of a position shares its list
        assert tables.depth == per_position


@pytest.mark.parametrize("lanes", [1, 2, 4, 3])
def test_decoder_tables_of_merges_and_sum_pools(lanes) -> None:
    """A merge's decoder splits where ``lanes`` is a power of two (its fields are bit slices of
    the index); a sum-pool's lists do not share (the base holds the channel) but still decode."""
    from spikezip.ir.cnn import SumPool2d

    maps = [InputMap.merge(12, (3, -2), lanes=lanes)]
    if 12 % lanes == 0:
        pool = SumPool2d(kernel=2, stride=1, weight=3, threshold=1, neg_bound=0, pos_bound=1)
        maps.append(InputMap.depthwise(pool, (12, 3, 3), lanes=lanes, weight=3))
    for imap in maps:
        tables = imap.decoder_tables()
        if imap.kind == "merge":
            assert (tables.split is not None) == (lanes in (2, 4))
        for j in range(imap.n_in):
            want = [(row * imap.span, base) for row, base in imap.passes(j)]
            assert _sequencer_passes(tables, j) == want, (imap.kind, j)


def test_conv_map_validation() -> None:
    conv = _conv(c_out=6)
    with pytest.raises(ValueError, match=r"lanes must divide the site's 6 output channels"):
        InputMap.conv(conv, (2, 4, 4), lanes=4)
    with pytest.raises(ValueError, match="order must be"):
        InputMap.conv(conv, (2, 4, 4), lanes=2, order="cwh")
    assert InputMap.conv(conv, (2, 4, 4), lanes=2).streaming().stream  # (docs/cnn.md §11)
    with pytest.raises(ValueError, match="a merge map cannot stream"):
        InputMap.merge(12, (3, -2), lanes=2).streaming()


def test_first_pass_base_is_not_a_sweep_bound() -> None:
    """Why a conv map sweeps to :attr:`InputMap.sweep_bounds`, not to an event's first pass's base
    (what a token map does): with padding, input rows 0 and 1 of a 3×3 conv both reach output
    row 0, so in raster order the first pass falls back from (0, 6) at input (0, 7) to (0, 0)
    at input (1, 0) — sweeping below (0, 6) at (0, 7) would fire words (1, 0)'s event adds to."""
    imap = InputMap.conv(_conv(c_out=1, c_in=1), (1, 8, 8), lanes=1)
    assert imap.bases[7] == 6 and imap.bases[8] == 0
    assert imap.sweep_bounds[7] == 0 and imap.sweep_bounds[8] == 0


def test_sweep_bounds_by_hand() -> None:
    """3×3, padding 1, stride 1 on a 4×4 image (one channel, one lane: word = output position
    ``oy·4 + ox``): output ``(oy, ox)`` is complete once input ``(oy + 1, ox + 1)`` (clipped) has
    passed, so before input ``(y, x)`` the words below ``(y − 1, x − 1)`` are: ``(y − 1)·4 +
    max(0, x − 1)`` for ``y ≥ 1``, none on row 0."""
    imap = InputMap.conv(_conv(c_out=1, c_in=1), (1, 4, 4), lanes=1)
    hand = [0 if y == 0 else (y - 1) * 4 + max(0, x - 1) for y in range(4) for x in range(4)]
    assert imap.sweep_bounds.tolist() == hand


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(1, 3),
    st.sampled_from(["chw", "hwc"]),
    st.integers(3, 8),
    st.integers(3, 8),
)
def test_sweep_bounds_are_exact(kh, kw, sy, sx, py, px, c_in, order, h, w) -> None:
    """Random conv geometries (kernel 1–5, stride 1–3, padding 0–2, both input orders): before
    kept index ``j`` a streaming core sweeps below ``sweep_bounds[j]`` — no pass of an index
    ``≥ j`` lies there (exact for input in ascending index), the bounds never fall over the
    kept indices (a sweep never goes back), and they are the largest such: the word at the
    bound is reached by some index ``≥ j``."""
    py, px = min(py, kh - 1), min(px, kw - 1)
    assume(h + 2 * py >= kh and w + 2 * px >= kw)
    conv = _conv(c_out=2, c_in=c_in, k=(kh, kw), stride=(sy, sx), padding=(py, px))
    imap = InputMap.conv(conv, (c_in, h, w), lanes=1, order=order)
    bounds = imap.sweep_bounds
    passes = [[b for _, b in imap.passes(j)] for j in range(imap.n_in)]
    kept = [j for j in range(imap.n_in) if passes[j]]
    for j in kept:
        later = [b for k in range(j, imap.n_in) for b in passes[k]]
        assert min(later) == bounds[j]
    assert np.all(np.diff(bounds[kept]) >= 0)
    assert all(bounds[j] == 0 for j in range(imap.n_in) if not passes[j])
    tokens = InputMap.tokens(np.ones((4, 3), np.int64), tokens=3, lanes=2, read_tokens=2)
    assert tokens.sweep_bounds.tolist() == tokens.bases.tolist()  # (the ViT's sites: unchanged)


def test_hwc_order() -> None:
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert a.reshape(-1)[hwc_order((2, 3, 4))].tolist() == a.transpose(1, 2, 0).ravel().tolist()


# -- tier 2 ---------------------------------------------------------------------------------------


@st.composite
def conv_nets(draw, *, max_size: int = 8, max_c0: int = 3, graded: bool = True) -> ConvNet:
    """A random analog conv feeding a random spike-fed conv (both :func:`conv_layers`: kernel
    1–5, stride 1–3, padding 0–2, c_out 1–16) on a ``c0 × h × w`` image, 3–``max_size`` pixels;
    with ``graded``, half of them with graded neurons."""
    c0 = draw(st.integers(1, max_c0))
    size = (draw(st.integers(3, max_size)), draw(st.integers(3, max_size)))
    first = draw(conv_layers(c0, size))
    shape = first.output_shape((c0, *size))
    second = draw(conv_layers(shape[0], shape[1:]))
    net = ConvNet(input_shape=(c0, *size), input_bounds=(0, 16), layers=(first, second))
    if graded and draw(st.booleans()):  # graded neurons: spikes ±2^k out, shifted weights in
        net = net.with_neuron("graded", draw(st.sampled_from([None, 0, 1, 2])))
    return net


def run_conv(net, x, layer, lanes, *, pipeline=1, seed=None, trace=None, stream=False):
    """Drive the conv core of ``net.layers[layer]`` (``stream``: a streaming one) with its golden
    input; return the output beats unpacked, the expected ones, the model's cycles and the
    beats' cycles."""
    trace = trace if trace is not None else simulate(net, x)
    spec = conv_spec(net, layer, lanes=lanes, stream=stream)
    core = LayerCore.for_site(spec, pipeline=pipeline)
    ins, outs = conv_streams(net, x, trace, layer)
    words = [w for inf in ins for s in inf for w in s.words(core.input_format)]
    expected = [w for inf in outs for s in inf for w in s.words(core.output_format)]
    sched = cycle_model.schedule(core.timing, ins, outs, input_map=spec.input_map)
    cycles = [c for inf in sched for s in inf.steps for c in (*s.event_cycles, s.marker_cycle)]
    got = drive_stream(core, words, len(expected), limit=20 * (cycles[-1] + 10), seed=seed)
    fmt = core.output_format
    return [fmt.unpack(w) for _, w in got], [fmt.unpack(w) for w in expected], cycles, got


def _model_cycles(net, x, trace, layer, lanes, pipeline, stream=False) -> int:
    spec = conv_spec(net, layer, lanes=lanes, stream=stream)
    timing = cycle_model.LayerTiming(n_out=spec.n_out, lanes=lanes, pipeline=pipeline)
    ins, outs = conv_streams(net, x, trace, layer)
    sched = cycle_model.schedule(timing, ins, outs, input_map=spec.input_map)
    return sched[-1].end_cycle


def _check_random(data, max_cycles: int) -> None:
    net = data.draw(conv_nets())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    batch = data.draw(st.integers(1, 2))
    x = rng.integers(0, 17, (batch, net.n_inputs))
    x = x * (rng.random(x.shape) < data.draw(st.sampled_from([0.3, 1.0])))
    trace = simulate(net, x)
    for layer in (0, 1):
        c_out = net.layers[layer].c_out
        lanes = data.draw(st.sampled_from([p for p in range(1, c_out + 1) if c_out % p == 0]))
        pipeline = data.draw(st.sampled_from([0, 1, 2, 3]))
        stream = data.draw(st.booleans())  # a streaming core (docs/cnn.md §11)
        assume(_model_cycles(net, x, trace, layer, lanes, pipeline, stream) < max_cycles)
        kw = {"pipeline": pipeline, "trace": trace, "stream": stream}
        got, expected, cycles, beats = run_conv(net, x, layer, lanes, **kw)
        assert got == expected, layer
        assert [c for c, _ in beats] == cycles, layer
        if data.draw(st.booleans()):  # random idle input cycles and output stalls: same beats
            got, _, _, _ = run_conv(net, x, layer, lanes, seed=1, **kw)
            assert got == expected, layer


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_conv_layers_equal_the_reference_and_the_model(data) -> None:
    """Random conv layers: the core's spikes and busy flags equal the reference's, each beat in
    the exact model's cycle (the ``_many`` twin: 60 examples, slow)."""
    _check_random(data, 6_000)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_conv_layers_many(data) -> None:
    _check_random(data, 40_000)


def test_multi_pass_schedule_by_hand() -> None:
    """A 3×3, padding-1 conv on a 3×3 image, 2 channels on 2 lanes (one-word passes), preset 3
    (``min_distance`` 3): the centre pixel has 9 passes (9 + 2 cycles: only the last pass is
    padded), a corner 4 (4 + 2); the sweep follows; each event leaves the input register with
    the last word of its last pass."""
    conv = _conv(c_out=2, c_in=1, k=(3, 3), padding=1)
    imap = InputMap.conv(conv, (1, 3, 3), lanes=2, order="chw")
    assert imap.pass_counts.tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4]
    timing = cycle_model.LayerTiming(n_out=18, lanes=2, pipeline=3)
    assert timing.min_distance == 3 and imap.sweep_extra(3) == 2
    step = Step(indices=np.array([4, 0]), values=np.array([1, 1]), busy=True)
    idle = Step(indices=np.zeros(0, np.int64), values=np.zeros(0, np.int64), busy=False)
    ins, outs = [[step, idle]], [[idle, idle]]
    (inf,) = cycle_model.schedule(timing, ins, outs, input_map=imap)
    s0 = inf.steps[0]
    a = timing.init_cycles + 2  # re-initialisation, padded like a sweep
    assert s0.accumulate_cycle == a and s0.event_slots == (a, a + 11)
    assert s0.fire_cycle == a + 11 + 6
    run = cycle_model.timed(timing, ins, outs, input_map=imap)
    assert run.taken[0][:3] == (0, a + 8, a + 11 + 3)  # consumed at the last pass's word
    assert run.ops == (9 + 4) * 2 and run.accumulate == 17
