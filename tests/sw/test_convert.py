"""Conversion of a hand-built QANN to integers (spec §2.4 Option B), checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikezip.ir import Encoding
from spikezip.sw.convert import agreement, evaluate_float, to_network
from spikezip.sw.quant import MyQuan
from spikezip.sw.reference import integer_qann


def _linear(weight: list[list[float]], bias: list[float] | None) -> torch.nn.Linear:
    w = torch.tensor(weight)
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.tensor(bias))
    return lin


def _quant(levels: int, symmetric: bool, scale: float) -> MyQuan:
    q = MyQuan(levels, symmetric=symmetric)
    with torch.no_grad():
        q.s.fill_(scale)
    return q.eval()


def tiny_model(*, relu: bool = False) -> torch.nn.Sequential:
    """2 → 2 (asym L=4, s=0.5) → 1 (sym L=4, s=0.25); inputs 0..3 of scale 1/4."""
    mods = [
        _linear([[1.0, -0.5], [0.25, 0.75]], [0.1, -0.2]),
        _quant(4, False, 0.5),
        *([torch.nn.ReLU()] if relu else []),
        _linear([[0.25, -1.0]], [-0.25]),
        _quant(4, True, 0.25),
    ]
    model = torch.nn.Sequential(*mods)
    model.input_scale = 0.25
    model.input_bounds = (0, 3)
    return model.eval()


# By hand, weight_bits = 4 (w in [-8, 7]). Layer 0: W·s0/s1 = W/2 = [[0.5, -0.25], [0.125, 0.375]].
#   neuron 0: round(0.5·Θ) ≤ 7 ⇔ Θ ≤ 14; neuron 1: round(0.375·Θ) ≤ 7 ⇔ Θ ≤ 19.
# Layer 1: W·s1/s2 = 2W = [[0.5, -2]]: round(-2Θ) ≥ -8 ⇔ Θ ≤ 4.
# B = round(b·Θ/s) with round(x) = floor(x + 1/2).
HAND = {
    # (per_neuron_threshold, power_of_two): (Θ0, w0, B0, Θ1, w1, B1)
    (True, True): ([8, 16], [[4, -2], [2, 6]], [2, -6], [4], [[2, -8]], [-4]),
    (False, True): (8, [[4, -2], [1, 3]], [2, -3], 4, [[2, -8]], [-4]),
    # Θ = 14: -0.25·14 = -3.5 rounds up to -3; B = round(2.8) = 3, round(-7.6) = -8
    (True, False): ([14, 19], [[7, -3], [2, 7]], [3, -8], [4], [[2, -8]], [-4]),
    (False, False): (14, [[7, -3], [2, 5]], [3, -6], 4, [[2, -8]], [-4]),
}


@pytest.mark.parametrize(("per_neuron", "pow2"), sorted(HAND))
def test_tiny_model_by_hand(per_neuron: bool, pow2: bool) -> None:
    theta0, w0, b0, theta1, w1, b1 = HAND[per_neuron, pow2]
    net = to_network(
        tiny_model(), weight_bits=4, per_neuron_threshold=per_neuron, power_of_two=pow2, name="t"
    )
    assert net.name == "t"
    assert net.encoding is Encoding.ANALOG
    assert net.input_bounds == (0, 3)
    assert net.n_inputs == 2
    l0, l1 = net.layers
    assert l0.per_neuron_threshold is per_neuron and l1.per_neuron_threshold is per_neuron
    assert np.asarray(l0.threshold).tolist() == theta0
    assert np.asarray(l1.threshold).tolist() == theta1
    assert l0.weight.tolist() == w0 and l0.bias.tolist() == b0
    assert l1.weight.tolist() == w1 and l1.bias.tolist() == b1
    assert (l0.neg_bound, l0.pos_bound) == (0, 3)
    assert (l1.neg_bound, l1.pos_bound) == (-2, 1)
    assert (l0.name, l1.name) == ("0", "2")


def test_relu_after_asymmetric_quantizer_is_dropped() -> None:
    plain = to_network(tiny_model(), weight_bits=4)
    relu = to_network(tiny_model(relu=True), weight_bits=4)
    for a, b in zip(plain.layers, relu.layers, strict=True):
        assert a.weight.tolist() == b.weight.tolist() and a.bias.tolist() == b.bias.tolist()
        assert a.thresholds.tolist() == b.thresholds.tolist()


# Float codes by hand. x = [3, 1]: z0 = 0.75 - 0.125 + 0.1 = 0.725 → 1.45 → 1;
# z1 = 0.1875 + 0.1875 - 0.2 = 0.175 → 0.35 → 0; z = 0.25·0.5 - 0.25 = -0.125 → -0.5 (a tie) → 0.
# x = [0, 3]: z0 = -0.375 + 0.1 → -0.55 → -1 → 0; z1 = 0.5625 - 0.2 → 0.725 → 1;
# z = -0.5 - 0.25 → -3 → -2 (clamped).
X = np.array([[3, 1], [0, 3]])
FLOAT_CODES = [[[1, 0], [0, 1]], [[0], [-2]]]
# Integer (per-neuron, power of two): x = [3, 1]: (12 - 2 + 2 + 4)/8 → 2 (B = 2 over-rounds the
# bias 1.6); (6 + 6 - 6 + 8)/16 → 0; layer 1: (4 - 0 - 4 + 2)/4 → 0.
# x = [0, 3]: (-6 + 2 + 4)/8 → 0; (18 - 6 + 8)/16 → 1; (0 - 8 - 4 + 2)/4 → -3 → -2.
INT_CODES = [[[2, 0], [0, 1]], [[0], [-2]]]


def test_evaluate_float_by_hand() -> None:
    codes = evaluate_float(tiny_model(), X)
    assert [c.tolist() for c in codes] == FLOAT_CODES
    assert all(c.dtype == np.int64 for c in codes)


def test_evaluate_float_matches_forward_and_restores_mode() -> None:
    model = tiny_model().train()
    for q in (model[1], model[3]):
        q.initialized.fill_(True)
    codes = evaluate_float(model, X)
    assert model.training
    out = model.eval()(torch.tensor(X, dtype=torch.float32) * 0.25)
    np.testing.assert_array_equal(out.detach().numpy(), np.array(codes[-1]) * 0.25)


def test_agreement_by_hand() -> None:
    model = tiny_model()
    net = to_network(model, weight_bits=4)
    assert [a.tolist() for a in integer_qann(net, X)] == INT_CODES
    agree = agreement(model, net, X)
    assert agree.neurons == (0.75, 1.0)
    assert agree.samples == (0.5, 1.0)
    assert agree.max_difference == (1, 0)
    assert agree.prediction == 1.0
    assert "prediction 1.0000" in str(agree)


def test_exact_when_weights_are_representable() -> None:
    # weights k/Θ·s/s_prev with integer k and biases m/Θ·s: the integer network equals the QANN
    rng = np.random.default_rng(7)
    s0, s1, s2 = 0.125, 0.5, 0.25
    k0 = rng.integers(-8, 8, size=(6, 4))
    k0[:, 0] = 7  # pins Θ = 16 per neuron (7 fits, 14 does not fit in 4 bits)
    k1 = rng.integers(-8, 8, size=(3, 6))
    k1[:, 0] = -8
    lin0 = _linear((k0 / 16 * s1 / s0).tolist(), (rng.integers(-40, 40, 6) / 16 * s1).tolist())
    lin1 = _linear((k1 / 16 * s2 / s1).tolist(), (rng.integers(-40, 40, 3) / 16 * s2).tolist())
    model = torch.nn.Sequential(lin0, _quant(8, False, s1), lin1, _quant(8, True, s2))
    net = to_network(model, weight_bits=4, input_scale=s0, input_bounds=(-3, 9))
    assert net.layers[0].weight.tolist() == k0.tolist()
    assert net.layers[1].weight.tolist() == k1.tolist()
    x = np.array(np.meshgrid(*[np.arange(-3, 10)] * 4)).reshape(4, -1).T  # all 13^4 inputs
    agree = agreement(model, net, x, input_scale=s0)
    assert agree.neurons == (1.0, 1.0)
    assert agree.prediction == 1.0


def test_zero_weights_get_max_threshold() -> None:
    model = tiny_model()
    with torch.no_grad():
        model[0].weight[1].zero_()
    pow2 = to_network(model, weight_bits=4, max_threshold=1000)
    assert pow2.layers[0].thresholds.tolist() == [8, 512]
    assert pow2.layers[0].bias.tolist() == [2, round(-0.2 * 512 / 0.5)]
    anyint = to_network(model, weight_bits=4, max_threshold=1000, power_of_two=False)
    assert anyint.layers[0].thresholds.tolist() == [14, 1000]


def test_wider_weights_give_larger_thresholds() -> None:
    net = to_network(tiny_model(), weight_bits=8)
    # round(0.5·Θ) ≤ 127 ⇔ Θ ≤ 254 → 128; round(0.375·Θ) ≤ 127 ⇔ Θ ≤ 339 → 256;
    # round(-2·Θ) ≥ -128 ⇔ Θ ≤ 64
    assert net.layers[0].thresholds.tolist() == [128, 256]
    assert net.layers[1].thresholds.tolist() == [64]
    assert net.layers[1].weight.tolist() == [[32, -128]]


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weight_bits": 1}, ValueError, r"weight_bits must lie in \[2, 32\], not 1"),
        ({"weight_bits": 33}, ValueError, "weight_bits must lie in"),
        ({"weight_bits": 8.0}, TypeError, "weight_bits must be an integer, not 8.0"),
        ({"weight_bits": True}, TypeError, "weight_bits must be an integer"),
        ({"per_neuron_threshold": 1}, TypeError, "per_neuron_threshold must be a bool"),
        ({"power_of_two": "yes"}, TypeError, "power_of_two must be a bool"),
        ({"max_threshold": 0}, ValueError, "max_threshold must be a positive integer, not 0"),
        ({"input_scale": 0.0}, ValueError, "input_scale must be a positive number, not 0.0"),
        ({"input_scale": float("nan")}, ValueError, "input_scale must be a positive number"),
        ({"input_scale": "1"}, TypeError, "input_scale must be a positive number"),
        ({"name": 3}, TypeError, "name must be a string"),
        ({"input_bounds": (3, 0)}, ValueError, "input_bounds must satisfy lo ≤ hi"),
    ],
)
def test_argument_validation(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        to_network(tiny_model(), **kwargs)


def test_missing_input_scale_and_bounds() -> None:
    model = torch.nn.Sequential(_linear([[1.0]], None), _quant(4, False, 1.0))
    with pytest.raises(ValueError, match="input_scale must be given"):
        to_network(model)
    with pytest.raises(ValueError, match="input_bounds must be given"):
        to_network(model, input_scale=1.0)
    net = to_network(model, input_scale=1.0, input_bounds=(0, 1))
    assert net.layers[0].bias.tolist() == [0]


@pytest.mark.parametrize(
    ("mods", "error", "message"),
    [
        ([], ValueError, "no Linear → MyQuan stage"),
        (
            [_linear([[1.0]], None)],
            TypeError,
            r"'0' \(Linear\) must be followed by a MyQuan, not nothing",
        ),
        ([_linear([[1.0]], None), _linear([[1.0]], None)], TypeError, "not Linear"),
        ([_quant(4, False, 1.0)], TypeError, "module '0' is a MyQuan; expected a torch.nn.Linear"),
        (
            [_linear([[1.0]], None), _quant(4, False, 1.0), torch.nn.Sigmoid()],
            TypeError,
            "module '2' is a Sigmoid",
        ),
        (
            [_linear([[1.0]], None), _quant(4, True, 1.0), torch.nn.ReLU()],
            TypeError,
            "ReLU after the symmetric quantizer '1'",
        ),
        (
            [
                _linear([[1.0, 2.0]], None),
                _quant(4, False, 1.0),
                _linear([[1.0, 2.0]], None),
                _quant(4, False, 1.0),
            ],
            ValueError,
            "'2' has 2 inputs but '0' has 1 outputs",
        ),
        (
            [_linear([[1.0]], None), _quant(4, False, 0.0)],
            ValueError,
            "quantizer after '0' has scale s = 0.0",
        ),
        ([_linear([[1.0]], None), _quant(4, False, float("nan"))], ValueError, "it must be > 0"),
        (
            [_linear([[float("nan")]], None), _quant(4, False, 1.0)],
            ValueError,
            "module '0' has a non-finite weight",
        ),
        (
            [_linear([[1.0]], [float("inf")]), _quant(4, False, 1.0)],
            ValueError,
            "module '0' has a non-finite bias",
        ),
    ],
)
def test_model_validation(mods: list, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        to_network(torch.nn.Sequential(*mods), input_scale=1.0, input_bounds=(0, 1))


def test_a_negative_scale_parameter_converts_as_its_magnitude() -> None:
    """The quantizer's step is ``|s|`` (``MyQuan.scale``): ``s = -0.5`` converts exactly as
    ``s = 0.5`` (the same network, digest included)."""

    def model(s: float) -> torch.nn.Sequential:
        return torch.nn.Sequential(
            _linear([[1.0, -0.5], [0.25, 2.0]], [0.1, 0.0]), _quant(4, False, s)
        )

    kw = {"input_scale": 0.25, "input_bounds": (0, 3)}
    assert to_network(model(-0.5), **kw).digest() == to_network(model(0.5), **kw).digest()


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, not list"):
        to_network([], input_scale=1.0, input_bounds=(0, 1))  # type: ignore[arg-type]


def test_weights_too_large_even_at_threshold_one() -> None:
    # W·s0/s1 = 200 > 127.5: no Θ ≥ 1 fits 8 bits
    model = torch.nn.Sequential(_linear([[1.0], [200.0]], None), _quant(4, False, 1.0))
    with pytest.raises(ValueError, match=r"layer 0 \(model module '0'\), neuron 1: .*200.* raise"):
        to_network(model, input_scale=1.0, input_bounds=(0, 1))
    net = to_network(model, weight_bits=9, input_scale=1.0, input_bounds=(0, 1))
    assert net.layers[0].weight.tolist() == [[128], [200]]
    assert net.layers[0].thresholds.tolist() == [128, 1]


def test_evaluate_float_and_agreement_validation() -> None:
    model = tiny_model()
    with pytest.raises(TypeError, match="inputs must be integers"):
        evaluate_float(model, X.astype(float))
    with pytest.raises(ValueError, match=r"inputs must have shape \[batch, 2\], not \[2, 3\]"):
        evaluate_float(model, np.zeros((2, 3), dtype=int))
    with pytest.raises(TypeError, match=r"network must be an ir\.Network"):
        agreement(model, "net", X)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside input_bounds"):
        agreement(model, to_network(model), X + 1)
    other = torch.nn.Sequential(_linear([[1.0, 1.0]], None), _quant(4, False, 1.0))
    with pytest.raises(ValueError, match="model has 1 stages but network has 2 layers"):
        agreement(other, to_network(model), X, input_scale=0.25)
