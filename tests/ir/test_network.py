"""The network description: validation messages, exact widths, files and digests."""

from __future__ import annotations

import itertools
import zipfile

import numpy as np
import pytest

from spikezip.ir import FormatError, Layer, Network
from spikezip.ir.network import signed_width, unsigned_width


def layer(**kw):
    args = dict(weight=[[1, -2], [3, 0]], bias=[0, 1], threshold=4, neg_bound=-8, pos_bound=7)
    args.update(kw)
    return Layer(**args)


def net(**kw):
    args = dict(layers=(layer(),), n_inputs=2, encoding="analog", input_bounds=(0, 16))
    args.update(kw)
    return Network(**args)


@pytest.mark.parametrize(
    ("kw", "exc", "message"),
    [
        (dict(threshold=0), ValueError, "threshold must be a positive integer, not 0"),
        (dict(threshold=-3), ValueError, "threshold must be a positive integer, not -3"),
        (
            dict(threshold=[4, 0]),
            ValueError,
            r"threshold must be a positive integer, not 0 \(neuron 1\)",
        ),
        (
            dict(threshold=[4, 4, 4]),
            ValueError,
            r"threshold must be an integer or have shape \(2,\)",
        ),
        (dict(threshold=2.5), TypeError, "threshold must be an integer array"),
        (
            dict(weight=[[0.5, 1], [1, 1]]),
            TypeError,
            "weight must be an integer array, not an array of float64",
        ),
        (dict(weight=[1, 2]), ValueError, r"weight must have 2 dimension\(s\)"),
        (
            dict(weight=np.zeros((0, 2), dtype=int), bias=[]),
            ValueError,
            "at least one row and column",
        ),
        (dict(bias=[1, 2, 3]), ValueError, r"bias must have shape \(2,\) to match weight"),
        (dict(neg_bound=1), ValueError, "neg_bound must be ≤ 0, not 1"),
        (dict(pos_bound=-1), ValueError, "pos_bound must be ≥ 0, not -1"),
        (dict(neg_bound=0, pos_bound=0), ValueError, "pos_bound - neg_bound must be ≥ 1"),
        (dict(pos_bound=7.0), TypeError, "pos_bound must be an integer"),
        (dict(weight=np.array([[True, False], [True, True]])), TypeError, "array of bool"),
    ],
)
def test_layer_validation_messages(kw, exc, message):
    with pytest.raises(exc, match=message):
        layer(**kw)


@pytest.mark.parametrize(
    ("kw", "exc", "message"),
    [
        (dict(layers=()), ValueError, "layers must hold at least one Layer"),
        (dict(layers=(layer(), "x")), TypeError, r"layers\[1\] must be a Layer, not str"),
        (dict(n_inputs=3), ValueError, "layers\\[0\\] has 2 inputs but n_inputs is 3"),
        (dict(n_inputs=0), ValueError, "n_inputs must be a positive integer, not 0"),
        (
            dict(encoding="rate"),
            ValueError,
            "encoding must be one of 'analog', 'spike', not 'rate'",
        ),
        (dict(input_bounds=(5, 1)), ValueError, r"input_bounds must satisfy lo ≤ hi, not \(5, 1\)"),
        (dict(input_bounds=(1,)), TypeError, "input_bounds must be a pair of integers"),
        (dict(encoding="spike", input_bounds=(1, 5)), ValueError, "lo ≤ 0 ≤ hi"),
        (
            dict(layers=(layer(), layer(weight=[[1, 1, 1]], bias=[0]))),
            ValueError,
            r"layers\[1\] has 3 inputs but layers\[0\] has 2 outputs",
        ),
        (
            dict(layers=(layer(weight=[[2**40, 1], [1, 1]]),), input_bounds=(0, 2**30)),
            ValueError,
            r"layers\[0\] needs a 7\d-bit membrane .* at most 62 bits",
        ),
    ],
)
def test_network_validation_messages(kw, exc, message):
    with pytest.raises(exc, match=message):
        net(**kw)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            np.zeros((3, 2, 2), dtype=int),
            r"shape \[batch, 2\] for analog encoding, not \[3, 2, 2\]",
        ),
        (np.array([[1, 17]]), r"inputs\[0, 1\] = 17 is outside input_bounds \[0, 16\]"),
        (np.array([[1.5, 2]]), "inputs must be integers, not an array of float64"),
    ],
)
def test_analog_input_validation(inputs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        net().check_inputs(inputs)


def test_spike_input_validation():
    n = net(encoding="spike", input_bounds=(-1, 2))
    with pytest.raises(ValueError, match=r"inputs\[0, 1, 0\] = 2 is not a spike"):
        n.check_inputs(np.array([[[0, 0], [2, 0]]]))
    with pytest.raises(ValueError, match=r"running sum of inputs\[0, :3, 1\] = 3 is outside"):
        n.check_inputs(np.array([[[0, 1], [0, 1], [0, 1]]]))
    with pytest.raises(ValueError, match=r"running sum .* = -2"):
        n.check_inputs(np.array([[[-1, 0], [-1, 0]]]))
    ok = n.check_inputs(np.array([[[1, 1], [1, 1], [-1, -1]]]))
    assert ok.dtype == np.int64 and not ok.flags.writeable


def test_arrays_are_frozen_copies():
    w = np.array([[1, 2]])
    lay = Layer(weight=w, bias=[0], threshold=3, neg_bound=0, pos_bound=3)
    w[0, 0] = 99
    assert lay.weight[0, 0] == 1
    with pytest.raises(ValueError):
        lay.weight[0, 0] = 5
    with pytest.raises(AttributeError):
        lay.threshold = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("lo", "hi", "bits"),
    [
        (0, 0, 1),
        (-1, 0, 1),
        (0, 1, 2),
        (-8, 7, 4),
        (-9, 7, 5),
        (-8, 8, 5),
        (0, 15, 5),
        (-128, 127, 8),
    ],
)
def test_signed_width(lo, hi, bits):
    assert signed_width(lo, hi) == bits


def test_unsigned_width():
    assert [unsigned_width(v) for v in (0, 1, 2, 255, 256)] == [1, 1, 2, 8, 9]


def brute_force_membrane_range(lay: Layer, lo: int, hi: int, analog: bool):
    """Enumerate every reachable (cumulative input, tracer) pair of a tiny layer."""
    vals = range(min(lo, 0), max(hi, 0) + 1)
    u_lo, u_hi = 10**9, -(10**9)
    for combo in itertools.product(vals, repeat=lay.n_in):
        s = lay.weight @ np.array(combo) + lay.bias
        for a in range(lay.neg_bound, lay.pos_bound + 1):
            u = lay.initial_membranes + s - a * lay.thresholds
            u_lo, u_hi = min(u_lo, int(u.min())), max(u_hi, int(u.max()))
    return u_lo, u_hi


@pytest.mark.parametrize("seed", range(6))
def test_membrane_range_is_exact_against_enumeration(seed):
    rng = np.random.default_rng(seed)
    lay = Layer(
        weight=rng.integers(-50, 51, (3, 3)),
        bias=rng.integers(-20, 21, 3),
        threshold=rng.integers(1, 40, 3),
        neg_bound=-int(rng.integers(0, 4)),
        pos_bound=int(rng.integers(1, 4)),
    )
    lo, hi = -int(rng.integers(0, 3)), int(rng.integers(0, 4))
    w = lay.widths(lo, hi, analog=False)
    assert (w.membrane_lo, w.membrane_hi) == brute_force_membrane_range(lay, lo, hi, False)
    assert -(2 ** (w.membrane - 1)) <= w.membrane_lo and w.membrane_hi < 2 ** (w.membrane - 1)


def test_widths_match_spec_example_and_bound():
    # ViT-S qkv-like: N = 384, int8 weights at the extreme, M_in = 8, L = 16, Θ = 2^12
    n = 384
    lay = Layer(
        weight=np.full((2, n), -128), bias=[0, 0], threshold=4096, neg_bound=-8, pos_bound=7
    )
    w = lay.widths(-8, 7, analog=False)
    r = n * 128 * 8
    spec_bound = 1 + int(np.ceil(np.log2(r + (8 + 1) * 4096)))
    assert w.membrane <= spec_bound  # exact width never exceeds the spec's bound
    assert 20 <= w.membrane <= 21  # spec §2.5: "about 20–21 bits"
    assert w.drive == signed_width(-n * 128, n * 128)
    assert w.tracer == 4 and w.weight == 8 and w.threshold == 13


def test_network_widths_chain_tracer_ranges():
    l0 = layer()
    l1 = Layer(weight=[[5, -5]], bias=[0], threshold=2, neg_bound=0, pos_bound=15)
    n = net(layers=(l0, l1))
    w0, w1 = n.widths
    assert (w0.input_lo, w0.input_hi) == (0, 16)
    assert (w1.input_lo, w1.input_hi) == (-8, 7)
    # analog first layer: the per-step drive spans the whole input range
    assert (w0.drive_lo, w0.drive_hi) == (-32, 48)
    # spike layers: ±1 per input per step
    assert (w1.drive_lo, w1.drive_hi) == (-10, 10)


def test_step_bound():
    l1 = Layer(weight=[[1, 1]], bias=[0], threshold=2, neg_bound=0, pos_bound=15)
    n = net(layers=(layer(), l1))
    assert n.step_bound() == 0 + 15 + 15 + 2
    s = net(layers=(layer(), l1), encoding="spike", input_bounds=(-4, 4))
    assert s.step_bound(10) == 9 + 15 + 15 + 2


def test_save_load_round_trip_and_digest(tmp_path):
    per_neuron = Layer(
        weight=[[1, 2]], bias=[-4], threshold=np.array([9]), neg_bound=0, pos_bound=15, name="fc2"
    )
    n = net(layers=(layer(name="fc1"), per_neuron), name="demo")
    path = tmp_path / "net.npz"
    n.save(path)
    m = Network.load(path)
    assert m.digest() == n.digest()
    assert m.to_dict() == n.to_dict()
    assert m.layers[1].per_neuron_threshold and not m.layers[0].per_neuron_threshold
    assert Network.from_dict(n.to_dict()).digest() == n.digest()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    # the digest changes with any weight, bound or threshold
    changed = net(layers=(layer(weight=[[1, -2], [3, 1]]),))
    assert changed.digest() != net().digest()
    assert net(layers=(layer(threshold=5),)).digest() != net().digest()
    assert net(layers=(layer(threshold=[4, 4]),)).digest() != net().digest()


def test_digest_is_stable_across_processes():
    # a fixed network has a fixed digest (computed once and written here on purpose:
    # a change means every build directory and trace file of users is invalidated)
    d = net().digest()
    assert len(d) == 64 and d == net().digest()
    assert d == Network.from_dict(net().to_dict()).digest()


def test_load_reports_corrupt_files(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FormatError, match="no such file"):
        Network.load(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(FormatError, match="not a valid spikezip-network file"):
        Network.load(garbage)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3))
    with pytest.raises(FormatError, match="no metadata record"):
        Network.load(plain)
    good = tmp_path / "good.npz"
    net().save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(FormatError):
        Network.load(truncated)
    # a valid file whose contents break a rule: the rule is named
    with zipfile.ZipFile(good) as z:
        entries = z.namelist()
    np_bias = np.array([0, 1, 2])
    tampered = tmp_path / "tampered.npz"
    arrays = {}
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["layer0.bias"] = np_bias
    np.savez(tampered, **arrays)
    assert entries  # the original really held entries
    with pytest.raises(FormatError, match=r"bias must have shape \(2,\)"):
        Network.load(tampered)
