"""The CNN reference: integer QANN == a direct loop reference, converged SNN == integer QANN,
max-pool telescoping, residual merges, exact SOP counts, and the digits CNN end to end."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d
from spikezip.ir.network import signed_width
from spikezip.sw.cnn.energy import count_ops, dense_macs, fan_out
from spikezip.sw.cnn.reference import integer_qann, simulate

from .cnn_strategies import conv_pairs, images_for, qann_direct, residual_nets

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_equivalence(net: ConvNet, x: np.ndarray) -> None:
    """integer QANN == direct reference; converged SNN counts and tracers == integer QANN."""
    qann = integer_qann(net, x)
    direct = qann_direct(net, x)
    trace = simulate(net, x, record_state=True)
    assert not trace.capped.any()
    assert int(trace.steps.max()) <= net.step_bound()
    for k, site in enumerate(net.sites):
        np.testing.assert_array_equal(qann[k], direct[k], err_msg=site.name)
        flat = qann[k].reshape(len(x), -1)
        np.testing.assert_array_equal(trace.counts(k), flat, err_msg=site.name)
        last = trace.tracers[k][np.arange(len(x)), trace.steps - 1]
        np.testing.assert_array_equal(last, flat, err_msg=site.name)
        w = net.widths[site.layer]  # the proven ranges hold at every step (§6)
        assert (
            w.membrane_lo <= trace.membranes[k].min() <= trace.membranes[k].max() <= w.membrane_hi
        )
        assert (
            signed_width(int(trace.membranes[k].min()), int(trace.membranes[k].max())) <= w.membrane
        )


@FAST
@given(st.data())
def test_random_conv_layers_snn_equals_qann_equals_direct(data):
    net = data.draw(conv_pairs())
    check_equivalence(net, data.draw(images_for(net)))


@FAST
@given(st.data())
def test_random_residual_nets_snn_equals_qann(data):
    net = data.draw(residual_nets())
    check_equivalence(net, data.draw(images_for(net)))


@FAST
@given(st.data())
def test_graded_residual_nets_snn_equals_qann(data):
    net = data.draw(residual_nets(graded=True))
    check_equivalence(net, data.draw(images_for(net)))


@pytest.mark.slow
@SLOW
@given(st.data())
def test_random_conv_layers_slow(data):
    net = data.draw(conv_pairs())
    check_equivalence(net, data.draw(images_for(net, max_batch=8)))


@pytest.mark.slow
@SLOW
@given(st.data())
def test_random_residual_nets_slow(data):
    net = data.draw(residual_nets(graded=data.draw(st.booleans())))
    check_equivalence(net, data.draw(images_for(net, max_batch=8)))


def _pool_net(kernel, stride, padding=0) -> ConvNet:
    rng = np.random.default_rng(3)
    conv = Conv2d(
        weight=rng.integers(-6, 7, (3, 1, 3, 3)),
        bias=rng.integers(-8, 9, 3),
        threshold=5,
        neg_bound=-8,
        pos_bound=7,
        padding=1,
    )
    return ConvNet(
        input_shape=(1, 6, 6),
        input_bounds=(0, 16),
        layers=(conv, MaxPool2d(kernel=kernel, stride=stride, padding=padding)),
    )


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(2, None, 0), (3, 1, 0), ((2, 3), (1, 2), 0), (1, 1, 0), (3, 2, 1), ((2, 3), 1, (1, 1))],
)
def test_max_pool_telescopes(kernel, stride, padding):
    """Every step: the pool's tracer is max(X_t) of its source's cumulative tracers (over the
    window's elements inside the input, with padding), its spike is max(X_t) − max(X_{t−1}) ∈
    {−1, 0, +1}, and the spikes sum to the QANN's max (docs/cnn.md §3)."""
    net = _pool_net(kernel, stride, padding)
    x = np.random.default_rng(0).integers(0, 17, (20, 36))
    tr = simulate(net, x, record_state=True)
    pool = net.layers[1]
    src = tr.tracers[0].reshape(20, tr.n_steps, *net.output_shape(0))
    prev = np.zeros((20, *net.output_shape(1)), dtype=np.int64)
    moved = 0
    (sy, sx), (py, px), (kh, kw) = pool.stride, pool.padding, pool.kernel
    for t in range(tr.n_steps):
        want = np.stack(
            [
                np.stack(
                    [
                        src[:, t, :, max(oy * sy - py, 0) : oy * sy - py + kh][
                            ..., max(ox * sx - px, 0) : ox * sx - px + kw
                        ].max(axis=(2, 3))
                        for ox in range(net.output_shape(1)[2])
                    ],
                    axis=-1,
                )
                for oy in range(net.output_shape(1)[1])
            ],
            axis=-2,
        )
        np.testing.assert_array_equal(tr.tracers[1][:, t].reshape(want.shape), want)
        spikes = tr.spikes[1][:, t].reshape(want.shape)
        np.testing.assert_array_equal(spikes, want - prev)
        moved += int((want < prev).sum())
        prev = want
    assert set(np.unique(tr.spikes[1])) <= {-1, 0, 1}
    assert not tr.membranes[1].any()  # Lemma MP2: the Θ = 1 neuron passes ±1 through at once
    assert moved > 0  # the max also went down somewhere: the negative differences are exercised
    np.testing.assert_array_equal(tr.counts(1), integer_qann(net, x)[1].reshape(20, -1))


def test_graded_max_pool_re_encodes_the_differences():
    """A graded source moves a window's max by up to 2^K, not always a power of two: the graded
    max-pool's Θ = 1 neuron integrates max(X_t) − max(X_{t−1}) (its membrane is max(X_t) − A_t
    after every step) and fires ±2^k until its tracer is the max."""
    net = _pool_net(2, None).with_neuron("graded", 2)
    x = np.random.default_rng(1).integers(0, 17, (20, 36))
    tr = simulate(net, x, record_state=True)
    src = tr.tracers[0].reshape(20, tr.n_steps, *net.output_shape(0))
    top = src.reshape(20, tr.n_steps, 3, 3, 2, 3, 2).max(axis=(4, 6)).reshape(20, tr.n_steps, -1)
    np.testing.assert_array_equal(tr.membranes[1], top - tr.tracers[1])
    mag = np.abs(tr.spikes[1].astype(np.int64))
    assert ((mag & (mag - 1)) == 0).all() and mag.max() > 1
    np.testing.assert_array_equal(tr.counts(1), integer_qann(net, x)[1].reshape(20, -1))


def test_residual_merge_is_the_weighted_stream():
    """Add's cumulative drive is Σ m_c·A_c: its membrane after every step is
    H + Σ m_c·A_c(t) − A(t)·Θ, the invariant of an ST-BIF neuron on that stream."""
    rng = np.random.default_rng(5)
    c = Conv2d(
        weight=rng.integers(-5, 6, (2, 1, 3, 3)),
        bias=[1, -2],
        threshold=6,
        neg_bound=-4,
        pos_bound=3,
        padding=1,
    )
    d = Conv2d(
        weight=rng.integers(-5, 6, (2, 2, 1, 1)), bias=[0, 0], threshold=3, neg_bound=0, pos_bound=7
    )
    add = Add(multipliers=(3, -2), threshold=7, neg_bound=-8, pos_bound=7)
    net = ConvNet(
        input_shape=(1, 4, 4),
        input_bounds=(0, 16),
        layers=(c, d, add),
        sources=((-1,), (0,), (1, 0)),
    )
    x = rng.integers(0, 17, (10, 16))
    tr = simulate(net, x, record_state=True)
    stream = 3 * tr.tracers[1] - 2 * tr.tracers[0]
    np.testing.assert_array_equal(tr.membranes[2], 7 // 2 + stream - 7 * tr.tracers[2])
    np.testing.assert_array_equal(tr.counts(2), integer_qann(net, x)[2].reshape(10, -1))


# -- SOPs ------------------------------------------------------------------------------------
def brute_fan_out(op, shape) -> np.ndarray:
    """Count, by walking every output neuron and tap, how often each input element is touched."""
    c, h, w = shape
    (kh, kw), (sy, sx), (py, px) = op.kernel, op.stride, op.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    per_out = op.c_out if isinstance(op, Conv2d) else 1
    count = np.zeros((c, h, w), dtype=np.int64)
    for ci in range(c):
        for oy in range(ho):
            for ox in range(wo):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sy - py + ky, ox * sx - px + kx
                        if 0 <= iy < h and 0 <= ix < w:
                            count[ci, iy, ix] += per_out
    return count


@FAST
@given(st.data())
def test_conv_fan_out_and_fan_in_match_a_brute_force_count(data):
    net = data.draw(conv_pairs())
    op, shape = net.layers[1], net.input_shape_of(1)
    want = brute_fan_out(op, shape)
    np.testing.assert_array_equal(fan_out(net, 1), want)
    # the same touches counted from the outputs' side: Σ fan-in over output neurons
    assert int(op.fan_in(shape).sum()) * op.c_out == int(want.sum())


@FAST
@given(st.data())
def test_sops_match_a_brute_force_count_per_event(data):
    net = data.draw(residual_nets())
    x = data.draw(images_for(net))
    tr = simulate(net, x)
    ops = count_ops(net, tr, x)
    b, steps = tr.batch, tr.n_steps
    for d, site in enumerate(net.sites):
        k, op = site.layer, site.op
        if k == 0:  # analog: the dense count at t = 0
            assert (ops.macs[:, 0] == brute_fan_out(op, net.input_shape).sum()).all()
            continue
        want = np.zeros((b, steps), dtype=np.int64)
        for i in net.sources[k]:
            src_site = i if i < 4 else 3  # through the Flatten (layer 4) to the pool (site 3)
            shape = net.output_shape(i if i < 4 else 3)
            fan = (
                brute_fan_out(op, shape)
                if isinstance(op, (Conv2d, SumPool2d, MaxPool2d))
                else np.full(shape, op.n_out if isinstance(op, Layer) else 1)
            ).reshape(-1)
            for s in range(b):
                for t in range(steps):
                    for j in np.flatnonzero(tr.spikes[src_site][s, t]):
                        want[s, t] += fan[j]
        np.testing.assert_array_equal(ops.acs[:, :, d], want, err_msg=site.name)
    assert (dense_macs(net) > 0).all()


# -- the digits CNN ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_cnn(trained_cnn):
    from spikezip.sw.cnn.convert import to_convnet

    return trained_cnn.model, to_convnet(trained_cnn.model, name="digits-cnn")


def test_digits_cnn_accuracy_and_snn_equals_qann_on_every_image(digits_cnn, digits_data):
    _, net = digits_cnn
    x, y = digits_data.x_test, digits_data.y_test
    qann = integer_qann(net, x)
    acc = float(np.mean(np.argmax(qann[-1], axis=1) == y))
    assert acc >= 0.985, acc
    tr = simulate(net, x)
    assert not tr.capped.any()
    same = np.ones(len(x), dtype=bool)
    for k in range(net.depth):
        same &= (tr.counts(k) == qann[k].reshape(len(x), -1)).all(axis=1)
    assert same.all(), f"{int((~same).sum())} images differ"
    np.testing.assert_array_equal(tr.predictions(), np.argmax(qann[-1], axis=1))
    check_graded_digits(net, x[:90], tr.select(slice(0, 90)))


def check_graded_digits(net, x, stbif) -> None:
    graded = simulate(net.with_neuron("graded"), x)  # the same tracers in fewer steps
    for k in range(net.depth):
        np.testing.assert_array_equal(graded.counts(k), stbif.counts(k))
    assert not graded.capped.any() and graded.steps.mean() < stbif.steps.mean() / 2


@pytest.mark.slow
def test_graded_digits_cnn_equals_qann_on_every_image(digits_cnn, digits_data):
    _, net = digits_cnn
    x = digits_data.x_test
    check_graded_digits(net, x, simulate(net, x))


def test_digits_cnn_conversion_folds_batchnorm(digits_cnn, digits_data):
    from spikezip.sw.cnn.convert import agreement, fold_batchnorm

    model, net = digits_cnn
    assert net.site_names == ("conv1", "conv2", "conv3", "conv4", "add", "pool", "fc")
    assert isinstance(net.layers[4], Add) and net.sources[4] == (3, 1)
    import torch

    w, b = fold_batchnorm(model.conv2, model.bn2)
    h = torch.randn(5, model.conv1.out_channels, 8, 8, dtype=torch.float64)
    conv, bn = copy.deepcopy(model.conv2).double(), copy.deepcopy(model.bn2).double().eval()
    with torch.no_grad():
        want = bn(conv(h)).numpy()
    got = torch.nn.functional.conv2d(h, torch.from_numpy(w), torch.from_numpy(b), 2, 1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    agree = agreement(model, net, digits_data.x_test[:100])
    assert agree.prediction >= 0.97 and agree.neurons[0] >= 0.95


def test_flatten_only_reshapes():
    rng = np.random.default_rng(2)
    conv = Conv2d(
        weight=rng.integers(-3, 4, (2, 1, 2, 2)), bias=[0, 1], threshold=3, neg_bound=0, pos_bound=3
    )
    fc = Layer(
        weight=rng.integers(-3, 4, (4, 18)),
        bias=np.zeros(4, int),
        threshold=2,
        neg_bound=-2,
        pos_bound=1,
    )
    net = ConvNet(input_shape=(1, 4, 4), input_bounds=(0, 16), layers=(conv, Flatten(), fc))
    x = rng.integers(0, 17, (6, 16))
    check_equivalence(net, x)
    assert simulate(net, x).depth == 2


@pytest.mark.parametrize(("s_out", "exact"), [(0.5, True), (0.3, False), (1.7, False)])
def test_avg_pool_converts_to_a_sum_pool(s_out, exact):
    from spikezip.sw.cnn.convert import avg_pool

    rng = np.random.default_rng(4)
    conv = Conv2d(
        weight=rng.integers(-4, 5, (3, 1, 3, 3)),
        bias=[1, 0, -1],
        threshold=4,
        neg_bound=0,
        pos_bound=15,
        padding=1,
    )
    pool = avg_pool(2, in_scale=1.0, out_scale=s_out, neg_bound=0, pos_bound=15, name="avg")
    assert pool.kernel == (2, 2) and pool.stride == (2, 2)
    net = ConvNet(input_shape=(1, 6, 6), input_bounds=(0, 16), layers=(conv, pool))
    x = rng.integers(0, 17, (40, 36))
    codes, pooled = integer_qann(net, x)
    mean = codes.reshape(40, 3, 3, 2, 3, 2).mean(axis=(3, 5))
    want = np.clip(np.floor(mean * 1.0 / s_out + 0.5), 0, 15)
    agree = float(np.mean(want == pooled))
    assert agree == 1.0 if exact else agree >= 0.95, agree  # int8 weight: rounded ratio
    check_equivalence(net, x)


def _front_end():
    import torch

    from spikezip.sw.quant import MyQuan

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        MyQuan(8, symmetric=False),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
        MyQuan(8, symmetric=False),
        torch.nn.AvgPool2d(2),
        MyQuan(8, symmetric=False),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(6, 5),
        MyQuan(8, symmetric=True),
    )


def test_a_sequential_front_end_converts(digits_data):
    """Conv+BN+Q, ReLU, max-pool, strided conv, avg-pool+Q, flatten, linear: the integer network's
    codes follow the float chain's, and its SNN equals its QANN."""
    import torch

    from spikezip.sw.cnn.convert import sequential_to_convnet
    from spikezip.sw.quant import MyQuan

    model = _front_end()
    x = digits_data.x_train[:256]
    img = torch.from_numpy(x.astype(np.float32) / 16).reshape(-1, 1, 8, 8)
    model.train()
    with torch.no_grad():
        model(img)  # MyQuan scales and BatchNorm statistics from one batch
    model.eval()
    net = sequential_to_convnet(
        model, input_shape=(1, 8, 8), input_scale=1 / 16, input_bounds=(0, 16), name="front"
    )
    assert [s.kind for s in net.sites] == ["conv2d", "maxpool2d", "conv2d", "sumpool2d", "linear"]
    codes = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: codes.append(mod.codes(inp[0]).numpy()))
        for m in model
        if isinstance(m, MyQuan)
    ]
    with torch.no_grad():
        model(img)
    for h in hooks:
        h.remove()
    qann = integer_qann(net, x)
    for site, fl in zip((0, 2, 3, 4), codes, strict=True):
        agree = float(np.mean(qann[site].reshape(len(x), -1) == fl.reshape(len(x), -1)))
        assert agree >= 0.9, (net.sites[site].name, agree)
    check_equivalence(net, x[:40])
    graded = sequential_to_convnet(
        model, input_shape=(1, 8, 8), input_scale=1 / 16, input_bounds=(0, 16), neuron="graded"
    )
    assert {s.op.neuron for s in graded.sites} == {"graded"}
    check_equivalence(graded, x[:40])


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (
            lambda m: m.__setitem__(2, __import__("torch").nn.GELU()),
            TypeError,
            "model module '0' must be followed by a MyQuan, not GELU",
        ),
        (
            lambda m: m.__setitem__(4, __import__("torch").nn.MaxPool2d(2, dilation=2)),
            ValueError,
            "model module '4': dilation and ceil_mode are not supported",
        ),
        (
            lambda m: m.__setitem__(7, __import__("torch").nn.AvgPool2d(2, ceil_mode=True)),
            ValueError,
            "model module '7': padding, ceil_mode and divisor_override",
        ),
        (
            lambda m: m.__setitem__(3, __import__("torch").nn.Tanh()),
            TypeError,
            "model module '3' is a Tanh; expected Conv2d",
        ),
        (
            lambda m: m.__setitem__(12, __import__("torch").nn.ReLU()),
            TypeError,
            "model module '11' must be followed by a MyQuan, not ReLU",
        ),
    ],
)
def test_sequential_conversion_names_what_it_cannot_convert(edit, error, message):
    from spikezip.sw.cnn.convert import sequential_to_convnet

    model = _front_end()
    for m in model:
        if hasattr(m, "initialized"):
            m.initialized.fill_(True)
    edit(model)
    with pytest.raises(error) as e:
        sequential_to_convnet(
            model, input_shape=(1, 8, 8), input_scale=1 / 16, input_bounds=(0, 16)
        )
    assert message in str(e.value)


@FAST
@given(st.data())
def test_snn_spike_for_spike_against_a_direct_step_loop(data):
    """The batched im2col SNN == an independent step-by-step implementation from the definitions
    (tap-by-tap drives, numpy neurons), every spike of every step, ST-BIF and graded."""
    from .cnn_strategies import snn_direct

    net = data.draw(st.one_of(conv_pairs(max_size=5), residual_nets(), residual_nets(graded=True)))
    x = data.draw(images_for(net, max_batch=3))
    tr = simulate(net, x)
    direct = snn_direct(net, x, tr.n_steps)
    for k in range(net.depth):
        got = tr.spikes[k].astype(np.int64)
        live = np.arange(tr.n_steps)[None, :] < tr.steps[:, None]  # after a sample's end: padding
        np.testing.assert_array_equal(got[live], direct[k][live], err_msg=net.sites[k].name)


# -- the channel knob (docs/cnn.md §14) ----------------------------------------------------------
def test_cnn_config_channels_are_a_knob_with_conv3_its_own():
    import torch

    from spikezip.sw.cnn import model as cnn
    from spikezip.sw.cnn.convert import to_convnet

    assert cnn.CnnConfig(channels=[16, 32, 32]).channels == (16, 32)  # one key per network
    assert cnn.cache_key(cnn.CnnConfig(channels=(16, 32, 32))) == cnn.cache_key(
        cnn.CnnConfig(channels=(16, 32))
    )
    config = cnn.CnnConfig(channels=(4, 6, 9))
    assert config.conv_channels == (4, 6, 9)
    assert cnn.cache_key(config) != cnn.cache_key(cnn.CnnConfig(channels=(4, 6)))
    torch.manual_seed(0)
    net = to_convnet(cnn.build(config))  # untrained: the shapes only
    shapes = {s.name: s.shape for s in net.sites}
    assert shapes["conv1"] == (4, 8, 8) and shapes["conv2"] == (6, 4, 4)
    assert shapes["conv3"] == (9, 4, 4) and shapes["conv4"] == shapes["add"] == (6, 4, 4)
    assert net.layers[3].weight.shape[1] == 9  # conv4 reads conv3's 9 channels


@pytest.mark.parametrize(
    "channels, error, message",
    [
        ((8,), ValueError, r"channels must be 2 or 3 integers \(c1, c2\[, c3\]\), not \(8,\)"),
        ((8, 8, 8, 8), ValueError, r"channels must be 2 or 3 integers"),
        ((0, 32), ValueError, r"channels c1 must lie in 1\.\.512, not 0"),
        ((8, 513), ValueError, r"channels c2 must lie in 1\.\.512, not 513"),
        ((8, 32, -1), ValueError, r"channels c3 must lie in 1\.\.512, not -1"),
        ((True, 32), ValueError, r"channels must be 2 or 3 integers"),
        ((8.0, 32), ValueError, r"channels must be 2 or 3 integers"),
        ("16,32", TypeError, r"channels must be 2 or 3 integers"),
    ],
)
def test_cnn_config_channels_errors_name_the_field_and_range(channels, error, message):
    from spikezip.sw.cnn import model as cnn

    with pytest.raises(error, match=message):
        cnn.CnnConfig(channels=channels)


def test_cli_channel_range_is_the_model_s():
    from spikezip import cli
    from spikezip.sw.cnn import model as cnn

    assert cli.MAX_CNN_CHANNELS == cnn.MAX_CHANNELS
