"""The CNN description: validation messages, exact per-position widths, reach and fan-out, the
step bound, files (round trips, dispatch, hostile files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikezip.ir import FormatError, Layer
from spikezip.ir._io import read_npz, write_npz
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d
from spikezip.ir.files import CNN_KIND, load_network, network_kind


def conv(c_out=2, c_in=1, k=3, **kw) -> Conv2d:
    args = dict(
        weight=np.arange(c_out * c_in * k * k).reshape(c_out, c_in, k, k) % 7 - 3,
        bias=np.arange(c_out) - 1,
        threshold=4,
        neg_bound=0,
        pos_bound=7,
    )
    args.update(kw)
    return Conv2d(**args)


def small_cnn(**kw) -> ConvNet:
    fc = Layer(
        weight=np.ones((3, 8), dtype=int), bias=[0, 1, 2], threshold=3, neg_bound=-4, pos_bound=3
    )
    args = dict(
        input_shape=(1, 4, 4),
        input_bounds=(0, 16),
        layers=(
            conv(padding=1, name="c1"),
            conv(c_in=2, padding=1, neg_bound=-4, pos_bound=3, threshold=np.array([2, 5])),
            Add(multipliers=(2, -3), threshold=5, neg_bound=0, pos_bound=7, name="res"),
            MaxPool2d(kernel=2, name="pool"),
            Flatten(),
            fc,
        ),
        sources=((-1,), (0,), (1, 0), (2,), (3,), (4,)),
        name="small",
    )
    args.update(kw)
    return ConvNet(**args)


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: conv(stride=0), ValueError, "stride must lie in [1, 65536], not 0"),
        (lambda: conv(stride=(1, 2, 3)), TypeError, "stride must be an integer or a pair"),
        (lambda: conv(padding=3), ValueError, "padding must lie in [0, 2] (kernel 3×3) along y"),
        (lambda: conv(padding=-1), ValueError, "padding must lie in [0, 65536], not -1"),
        (
            lambda: conv(weight=np.zeros((2, 3, 3), dtype=int)),
            ValueError,
            "weight must have 4 dimension(s), not shape (2, 3, 3)",
        ),
        (
            lambda: conv(weight=np.zeros((2, 0, 3, 3), dtype=int)),
            ValueError,
            "weight must have shape [c_out, c_in, kh, kw] with every size ≥ 1",
        ),
        (lambda: conv(bias=[1, 2, 3]), ValueError, "bias must have shape (2,) to match weight"),
        (lambda: conv(weight=np.full((2, 1, 3, 3), 0.5)), TypeError, "weight must be an integer"),
        (lambda: conv(threshold=np.array([1])), ValueError, "threshold must be an integer or have"),
        (lambda: conv(threshold=0), ValueError, "threshold must be a positive integer, not 0"),
        (
            lambda: SumPool2d(kernel=0, weight=1, threshold=1, neg_bound=0, pos_bound=1),
            ValueError,
            "kernel must lie in [1, 65536], not 0",
        ),
        (
            lambda: SumPool2d(kernel=2, weight=1.5, threshold=1, neg_bound=0, pos_bound=1),
            TypeError,
            "weight must be an integer, not 1.5",
        ),
        (lambda: MaxPool2d(kernel=2, stride=0), ValueError, "stride must lie in [1, 65536]"),
        (
            lambda: MaxPool2d(kernel=(3, 2), padding=(1, 2)),
            ValueError,
            "padding must lie in [0, 1] (half the kernel 3×2) along x, not 2",
        ),
        (
            lambda: Add(multipliers=(1,), threshold=1, neg_bound=0, pos_bound=1),
            ValueError,
            "multipliers must hold at least two entries, not 1",
        ),
        (
            lambda: Add(multipliers=(1, "2"), threshold=1, neg_bound=0, pos_bound=1),
            TypeError,
            "multipliers[1] must be an integer, not '2'",
        ),
        (
            lambda: ConvNet(input_shape=(1, 2, 2), input_bounds=(0, 1), layers=(conv(k=5),)),
            ValueError,
            "layers[0] (conv2d): kernel 5×5 is larger than the padded input 2×2 (input 2×2)",
        ),
        (
            lambda: ConvNet(
                input_shape=(1, 2, 2), input_bounds=(0, 1), layers=(conv(k=5, padding=1),)
            ),
            ValueError,
            "kernel 5×5 is larger than the padded input 4×4 (input 2×2, padding 1×1)",
        ),
        (
            lambda: ConvNet(input_shape=(3, 4, 4), input_bounds=(0, 1), layers=(conv(name="a"),)),
            ValueError,
            "layers[0] (conv2d 'a'): has 1 input channels but its input has 3",
        ),
        (
            lambda: ConvNet(
                input_shape=(1, 4, 4), input_bounds=(0, 1), layers=(MaxPool2d(kernel=2),)
            ),
            ValueError,
            "layers[0] (maxpool2d): reads the analog image; only conv2d and linear layers",
        ),
        (
            lambda: ConvNet(
                input_shape=(1, 4, 4),
                input_bounds=(0, 1),
                layers=(
                    conv(),
                    Layer(weight=[[1]], bias=[0], threshold=1, neg_bound=0, pos_bound=1),
                ),
            ),
            ValueError,
            "layers[1] (linear): a linear layer needs a flat input (add a Flatten)",
        ),
        (
            lambda: ConvNet(input_shape=(1, 4, 4), input_bounds=(0, 1), layers=(conv(), Flatten())),
            ValueError,
            "the last layer must be a site, not flatten",
        ),
        (
            lambda: small_cnn(sources=((-1,), (0,), (1, 5), (2,), (3,), (4,))),
            ValueError,
            "sources[2] must hold layer indices in [-1, 1]",
        ),
        (
            lambda: small_cnn(sources=((-1,), (0,), (1,), (2,), (3,), (4,))),
            ValueError,
            "sources[2] must name 2 layer(s) for layers[2] (add), not 1",
        ),
        (
            lambda: small_cnn(sources=None),
            ValueError,
            "layers[2] (add) needs sources",
        ),
        (
            lambda: small_cnn(sources=((-1,), (0,), (1, -1), (2,), (3,), (4,))),
            ValueError,
            "layers[2] (add 'res'): reads the analog image",
        ),
        (
            lambda: small_cnn(
                layers=(
                    *small_cnn().with_neuron("graded").layers[:3],
                    MaxPool2d(kernel=2, name="pool"),
                    *small_cnn().layers[4:],
                )
            ),
            ValueError,
            "layers[3] (maxpool2d 'pool'): an ST-BIF max-pool needs ±1 input spikes",
        ),
        (
            lambda: small_cnn(input_shape=(1, 4)),
            TypeError,
            "input_shape must be (channels, height, width) integers",
        ),
        (lambda: small_cnn(input_bounds=(3, 1)), ValueError, "input_bounds must satisfy lo ≤ hi"),
        (lambda: small_cnn(layers=(conv(), "x")), TypeError, "layers[1] must be a Conv2d"),
        (
            lambda: small_cnn(
                layers=(
                    conv(padding=1),
                    conv(c_in=2, padding=1, stride=2),
                    conv(c_in=2, padding=1),
                    MaxPool2d(kernel=2),
                    Flatten(),
                    Layer(
                        weight=np.ones((1, 2), dtype=int),
                        bias=[0],
                        threshold=1,
                        neg_bound=0,
                        pos_bound=1,
                    ),
                ),
                sources=((-1,), (0,), (0,), (1, 2), (3,), (4,)),
            ),
            ValueError,
            "sources[3] must name 1 layer(s) for layers[3] (maxpool2d), not 2",
        ),
    ],
)
def test_validation_messages(make, error, message):
    with pytest.raises(error) as e:
        make()
    assert message in str(e.value)


def test_add_checks_shapes_and_channel_thresholds():
    c1, c2 = conv(padding=1), conv(c_in=2, stride=2)
    add = Add(multipliers=(1, 1), threshold=2, neg_bound=0, pos_bound=3)
    with pytest.raises(
        ValueError, match=r"its sources have different shapes \[\[2, 1, 1\], \[2, 4, 4\]\]"
    ):
        ConvNet(
            input_shape=(1, 4, 4),
            input_bounds=(0, 1),
            layers=(c1, c2, add),
            sources=((-1,), (0,), (1, 0)),
        )
    add = Add(multipliers=(1, 1), threshold=np.array([1, 2, 3]), neg_bound=0, pos_bound=3)
    with pytest.raises(ValueError, match=r"threshold must be an integer or have shape \(2,\)"):
        ConvNet(
            input_shape=(1, 4, 4),
            input_bounds=(0, 1),
            layers=(c1, conv(c_in=2, padding=1), add),
            sources=((-1,), (0,), (1, 0)),
        )


# -- shapes, reach, widths ------------------------------------------------------------------------
def test_shapes_sites_and_coordinates():
    net = small_cnn()
    assert [s.shape for s in net.sites] == [(2, 4, 4), (2, 4, 4), (2, 4, 4), (2, 2, 2), (3,)]
    assert net.site_names == ("c1", "layer1", "res", "pool", "layer5")
    assert [s.layer for s in net.sites] == [0, 1, 2, 3, 5]
    assert net.describe_neuron(3, 5) == "channel 1, y 0, x 1"
    assert net.describe_neuron(4, 2) == "neuron 2"
    assert net.widths[4] is None  # the Flatten
    assert (net.widths[3].membrane_lo, net.widths[3].membrane_hi) == (-7, 7)  # U ∈ [n − p, p − n]
    graded = net.with_neuron("graded", 1)
    assert graded.layers[3].neuron == "graded" and graded.spike_max(3) == 2
    # graded, K = 1: a span of 7 settles in ⌊7/2⌋ + popcount(1) = 4 steps; every site (the pool
    # too, re-encoding) is on the path c1 → layer1 → res → pool → fc
    assert graded.step_bound() == 5 * 4 + 2


def test_step_bound_is_the_longest_path():
    net = small_cnn()
    # τ(c1) = 7, τ(layer1) = 14, τ(res) = max(14, 7) + 7 = 21, τ(pool) = 21, τ(fc) = 28
    assert net.step_bound() == 28 + 2


def brute_ranges(op: Conv2d, shape, lo, hi):
    """Per output neuron: the exact extreme cumulative drives over inputs in [lo, hi], by
    walking its taps."""
    c, h, w = shape
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, op.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    s_lo = np.zeros((op.c_out, ho, wo), dtype=np.int64)
    s_hi = np.zeros_like(s_lo)
    fan = np.zeros((ho, wo), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sy - py + ky, ox * sx - px + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        wt = op.weight[:, :, ky, kx]
                        s_hi[:, oy, ox] += np.maximum(wt * lo, wt * hi).sum(axis=1)
                        s_lo[:, oy, ox] += np.minimum(wt * lo, wt * hi).sum(axis=1)
                        fan[oy, ox] += c
    return s_lo, s_hi, fan


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_widths_are_exact_per_position(data):
    from tests.sw.cnn_strategies import conv_layers

    c = data.draw(st.integers(1, 4))
    size = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6)))
    op = data.draw(conv_layers(c, size))
    lo, hi = data.draw(st.sampled_from([(0, 16), (-8, 7), (0, 1)]))
    w = op.widths((c, *size), lo, hi, analog=True, spike_max=1)
    s_lo, s_hi, fan = brute_ranges(op, (c, *size), lo, hi)
    np.testing.assert_array_equal(op.fan_in((c, *size)), fan)
    thr = op.thresholds[:, None, None]
    b = op.bias[:, None, None]
    assert w.membrane_hi == int((thr // 2 + s_hi + b - op.neg_bound * thr).max())
    assert w.membrane_lo == int((thr // 2 + s_lo + b - op.pos_bound * thr).min())
    assert (w.drive_lo, w.drive_hi) == (int(s_lo.min()), int(s_hi.max()))


def test_border_neurons_reach_fewer_inputs():
    """A 3×3 kernel with padding 1 on a 1×1 image: every output reaches one tap only, so the
    exact range is one weight's worth, not nine."""
    op = Conv2d(
        weight=np.full((1, 1, 3, 3), 5), bias=[0], threshold=1, neg_bound=0, pos_bound=1, padding=1
    )
    assert op.fan_in((1, 1, 1)).tolist() == [[1]]
    w = op.widths((1, 1, 1), 0, 16, analog=True, spike_max=1)
    assert w.drive_hi == 5 * 16
    op = Conv2d(
        weight=np.full((1, 1, 3, 3), 5),
        bias=[0],
        threshold=1,
        neg_bound=0,
        pos_bound=1,
        padding=1,
        stride=2,
    )
    assert op.fan_in((1, 4, 4)).tolist() == [[4, 6], [6, 9]]
    # rows/columns 0, 2, 3 lie in one window, row/column 1 in two (the windows overlap there)
    assert op.fan_out((1, 4, 4)).tolist() == [
        [1, 2, 1, 1],
        [2, 4, 2, 2],
        [1, 2, 1, 1],
        [1, 2, 1, 1],
    ]
    np.testing.assert_array_equal(op.fan_out((1, 4, 4)).sum(), op.fan_in((1, 4, 4)).sum())


def test_too_wide_a_membrane_is_refused():
    big = conv(weight=np.full((2, 1, 3, 3), 2**40), padding=1)
    with pytest.raises(ValueError, match=r"layers\[0\] \(conv2d\) needs a .*-bit membrane"):
        ConvNet(input_shape=(1, 4, 4), input_bounds=(0, 2**20), layers=(big,))


# -- files ----------------------------------------------------------------------------------------
def test_round_trips_digest_and_dispatch(tmp_path):
    net = small_cnn()
    again = ConvNet.from_dict(json.loads(json.dumps(net.to_dict())))
    assert again.digest() == net.digest()
    net.save(tmp_path / "n.npz")
    assert network_kind(tmp_path / "n.npz") == CNN_KIND
    loaded = load_network(tmp_path / "n.npz")
    assert isinstance(loaded, ConvNet) and loaded.digest() == net.digest()
    assert loaded.sources == net.sources
    assert small_cnn(name="other").digest() != net.digest()
    pooled = ConvNet(
        input_shape=(1, 4, 4),
        input_bounds=(0, 16),
        layers=(
            conv(),
            SumPool2d(
                kernel=2, weight=3, threshold=np.array([1, 2]), neg_bound=0, pos_bound=3, name="sp"
            ),
        ),
    )
    pooled.save(tmp_path / "p.npz")
    assert load_network(tmp_path / "p.npz").digest() == pooled.digest()
    # a padded max-pool: its padding in the file (the unpadded one's record has no key for it)
    padded = ConvNet(
        input_shape=(1, 4, 4),
        input_bounds=(0, 16),
        layers=(conv(padding=1), MaxPool2d(kernel=3, stride=2, padding=1)),
    )
    assert padded.output_shape(1) == (2, 2, 2) and "padding" not in MaxPool2d(kernel=2).to_dict()
    padded.save(tmp_path / "m.npz")
    loaded = load_network(tmp_path / "m.npz")
    assert loaded.layers[1].padding == (1, 1) and loaded.digest() == padded.digest()


def _rewrite(src, dst, edit_meta=None, edit_arrays=None):
    meta, arrays = read_npz(src, kind=CNN_KIND)
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    write_npz(dst, meta, arrays)


@pytest.mark.parametrize(
    ("edit_meta", "edit_arrays", "message"),
    [
        (lambda m: m.update(version=2), None, "unsupported cnn format version 2"),
        (lambda m: m["network"].pop("layers"), None, "corrupt cnn file (missing 'layers')"),
        (
            lambda m: m["network"]["layers"][0].update(op="conv3d"),
            None,
            "layers[0]: op must be one of 'conv2d'",
        ),
        (
            lambda m: m["network"]["layers"][0].pop("stride"),
            None,
            "layers[0]: conv2d description lacks field 'stride'",
        ),
        (
            lambda m: m["network"]["layers"][1].update(padding=[5, 0]),
            None,
            "layers[1]: padding must lie in [0, 2]",
        ),
        (
            lambda m: m["network"]["layers"][0]["weight"].update(array=7),
            None,
            "layers[0].weight: bad array reference",
        ),
        (
            None,
            lambda a: a.update({"layers.0.weight": np.zeros((2, 1, 3), dtype=np.int64)}),
            "layers[0]: weight must have 4 dimension(s)",
        ),
        (
            None,
            lambda a: a.update({"layers.0.weight": np.full((2, 1, 3, 3), 2**62)}),
            "layers[0]: weight holds 4611686018427387904 at [0, 0, 0, 0]; values must lie in",
        ),
        (
            None,
            lambda a: a.update({"extra": np.zeros(1, dtype=np.int64)}),
            "unexpected array 'extra'",
        ),
        (None, lambda a: a.pop("layers.0.bias"), "corrupt cnn file (missing 'layers.0.bias')"),
        (
            lambda m: m["network"].update(sources=[[-1], [0], [1, 0], [2], [3], [7]]),
            None,
            "sources[5] must hold layer indices in [-1, 4]",
        ),
        (lambda m: m["network"].update(layers="x"), None, "layers must be a list"),
    ],
)
def test_hostile_cnn_files(tmp_path, edit_meta, edit_arrays, message):
    small_cnn().save(tmp_path / "n.npz")
    _rewrite(tmp_path / "n.npz", tmp_path / "bad.npz", edit_meta, edit_arrays)
    with pytest.raises(FormatError) as e:
        load_network(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(e.value)
    assert message in str(e.value)


def test_inputs_are_checked_like_analog_networks():
    net = small_cnn()
    with pytest.raises(ValueError, match=r"inputs must have shape \[batch, 16\]"):
        net.check_inputs(np.zeros((2, 15), dtype=int))
    with pytest.raises(ValueError, match="outside input_bounds"):
        net.check_inputs(np.full((1, 16), 17))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_targets_list_exactly_the_outputs_an_event_reaches(data):
    """For every input position: targets() == a walk over every output and tap; their number is
    the fan-out; each target's tap maps back to the event's position."""
    from tests.sw.cnn_strategies import conv_layers

    size = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6)))
    op = data.draw(conv_layers(1, size))
    shape = (1, *size)
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, op.padding
    _, ho, wo = op.output_shape(shape)
    fan = op.fan_out(shape)
    for y in range(size[0]):
        for x in range(size[1]):
            want = [
                (oy, ox, ky, kx)
                for oy in range(ho)
                for ox in range(wo)
                for ky in range(kh)
                for kx in range(kw)
                if oy * sy - py + ky == y and ox * sx - px + kx == x
            ]
            assert sorted(op.targets(shape, y, x)) == want
            assert len(want) * op.c_out == fan[y, x]
    with pytest.raises(ValueError, match="outside the"):
        op.targets(shape, size[0], 0)


def test_a_huge_image_is_refused_before_anything_is_allocated():
    with pytest.raises(ValueError, match=r"input_shape \[1, 65536, 65536\] holds 4294967296"):
        ConvNet(input_shape=(1, 1 << 16, 1 << 16), input_bounds=(0, 1), layers=(conv(),))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_networks_round_trip_through_files(tmp_path_factory, data):
    from tests.sw.cnn_strategies import conv_pairs, residual_nets

    net = data.draw(
        st.one_of(conv_pairs(), residual_nets(), residual_nets(graded=True)), label="net"
    )
    path = tmp_path_factory.mktemp("rt") / "n.npz"
    net.save(path)
    loaded = load_network(path)
    assert isinstance(loaded, ConvNet) and loaded.digest() == net.digest()
    assert loaded.sources == net.sources and loaded.site_names == net.site_names
    assert [w and w.membrane for w in loaded.widths] == [w and w.membrane for w in net.widths]
    assert ConvNet.from_dict(json.loads(json.dumps(net.to_dict()))).digest() == net.digest()


def test_a_huge_window_is_refused_before_anything_is_allocated():
    pool = SumPool2d(kernel=(1 << 12, 1), stride=1, weight=1, threshold=1, neg_bound=0, pos_bound=1)
    with pytest.raises(ValueError, match=r"kernel 4096×1 over 4097×1 output positions exceeds"):
        ConvNet(
            input_shape=(1, 1 << 13, 1),
            input_bounds=(0, 1),
            layers=(conv(k=1), pool),
        )
