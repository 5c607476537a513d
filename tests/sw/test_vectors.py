"""Every test vector of spec §7 on the integer reference.

The expected traces are the spec's (produced there by an independent integer implementation),
not values read back from this code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikezip.ir import Layer, Network
from spikezip.sw.attention import multi, multi1
from spikezip.sw.reference import integer_qann, simulate, stbif_step


def one_neuron(*, theta=4, n=-8, p=7, bias=0, weight=1, encoding="spike", bounds=(-1000, 1000)):
    layer = Layer(weight=[[weight]], bias=[bias], threshold=theta, neg_bound=n, pos_bound=p)
    return Network(layers=(layer,), n_inputs=1, encoding=encoding, input_bounds=bounds)


def stepper(drives, *, theta=4, n=-8, p=7, bias=0, extra=12):
    """(s, A, U) per step from ``stbif_step`` on the schedule, then ``extra`` zero steps."""
    u = torch.tensor([theta // 2 + bias])
    a = torch.tensor([0])
    out = []
    for drive in list(drives) + [0] * extra:
        s, u, a = stbif_step(
            torch.tensor([drive]), u, a, threshold=torch.tensor([theta]), neg_bound=n, pos_bound=p
        )
        out.append((int(s), int(a), int(u)))
    return out


def analog(value, **kw):
    """Whole-network run of one neuron receiving ``value`` at t = 0 (analog, weight 1)."""
    net = one_neuron(encoding="analog", **kw)
    return net, simulate(net, np.array([[value]]), record_state=True)


def test_v1_tie_at_plus_half():
    _, tr = analog(2)
    assert (tr.spikes[0][0, 0, 0], tr.tracers[0][0, 0, 0], tr.membranes[0][0, 0, 0]) == (1, 1, 0)
    assert tr.counts()[0, 0] == 1


def test_v2_tie_at_minus_half_does_not_fire():
    _, tr = analog(-2)
    assert tr.membranes[0][0, 0, 0] == 0 and tr.counts()[0, 0] == 0
    assert not tr.spikes[0].any()


def test_v3_just_below_minus_half():
    _, tr = analog(-3)
    assert (tr.spikes[0][0, 0, 0], tr.tracers[0][0, 0, 0], tr.membranes[0][0, 0, 0]) == (-1, -1, 3)


def test_v4_positive_saturation_keeps_residue():
    _, tr = analog(100)
    s = tr.spikes[0][0, :, 0]
    assert list(s[:7]) == [1] * 7 and not s[7:].any()
    assert tr.tracers[0][0, -1, 0] == 7 and tr.membranes[0][0, -1, 0] == 74
    assert tr.steps[0] == 8  # 7 spiking steps, then the idle step that ends the run


def test_v5_asymmetric_negative_saturation():
    _, tr = analog(-100, n=0, p=15)
    assert not tr.spikes[0].any()
    assert tr.membranes[0][0, -1, 0] == -98 and tr.counts()[0, 0] == 0


def test_v6_overshoot_then_cancel():
    trace = stepper([9, -9])
    assert trace[0] == (1, 1, 7)
    assert trace[1] == (-1, 0, 2)
    assert all(s == 0 for s, _, _ in trace[2:])


def test_v7_split_input():
    trace = stepper([3, 3, 3])
    assert [(s, u) for s, _, u in trace[:3]] == [(1, 1), (1, 0), (0, 3)]
    assert sum(s for s, _, _ in trace) == 2 == (9 + 2) // 4


def test_v8_bias_only_is_busy_at_t0():
    net = one_neuron(encoding="analog", bias=6, n=0, p=15)
    tr = simulate(net, np.array([[0]]), record_state=True)
    assert list(tr.spikes[0][0, :3, 0]) == [1, 1, 0]
    assert list(tr.membranes[0][0, :2, 0]) == [4, 0]
    assert tr.busy[0, 0, 0]  # busy at t0 although the input is zero
    assert tr.counts()[0, 0] == 2 == (0 + 6 + 2) // 4


@pytest.mark.parametrize(("value", "expected"), [(7, 1), (8, 2), (-3, -1)])
def test_v9_odd_threshold(value, expected):
    net, tr = analog(value, theta=5)
    assert tr.counts()[0, 0] == expected
    assert integer_qann(net, np.array([[value]]))[0][0, 0] == expected


def test_v10_zero_input_runs_one_step_and_target_zero_runs_two():
    _, tr = analog(0)
    assert tr.steps[0] == 1 and not tr.busy.any()
    _, tr = analog(1)
    assert tr.steps[0] == 2 and tr.counts()[0, 0] == 0


def test_v11_long_tail_chain():
    # one-shot input driving |a| = p; a chain of D identity layers lags one step per layer
    depth, p = 4, 7
    layers = tuple(
        Layer(weight=[[4 if k else 1]], bias=[0], threshold=4, neg_bound=-8, pos_bound=p)
        for k in range(depth)
    )
    net = Network(layers=layers, n_inputs=1, encoding="analog", input_bounds=(0, 100))
    tr = simulate(net, np.array([[100]]))
    for k in range(depth):
        assert tr.counts(k)[0, 0] == p
    assert tr.steps[0] <= net.step_bound()
    assert not tr.capped[0]


def test_v12_sign_flip_after_large_drive():
    trace = stepper([100, -100])
    assert trace[0] == (1, 1, 98)
    assert trace[1] == (-1, 0, 2)
    assert all(s == 0 for s, _, _ in trace[2:])


def test_v12b_negative_saturation_symmetric():
    _, tr = analog(-100)
    s = tr.spikes[0][0, :, 0]
    assert list(s[:8]) == [-1] * 8 and not s[8:].any()
    assert tr.tracers[0][0, -1, 0] == -8 and tr.membranes[0][0, -1, 0] == -66


def test_v13_saturated_tracer_accumulates_residue():
    trace = stepper([100] + [0] * 10 + [40])
    a_at_sat = [a for _, a, _ in trace]
    assert max(a_at_sat) == 7
    # after saturation the membrane keeps growing with further positive drive, no spike
    assert trace[11][0] == 0 and trace[11][2] == trace[10][2] + 40


def float_snn(x, theta, split, bound=100):
    """The official float32 neuron (threshold units, q starts at 0.5) on ``x`` split evenly."""
    q, acc = np.float32(0.5), 0
    piece = np.float32(x / np.float32(split))
    for t in range(split + 2 * bound + 2):
        if t < split:
            q = np.float32(q + np.float32(piece / theta))
        if q - 1 >= 0 and acc < bound:
            acc, q = acc + 1, np.float32(q - 1)
        elif q < 0 and acc > -bound:
            acc, q = acc - 1, np.float32(q + 1)
    return acc


def test_v14_float_regression_is_not_the_golden_model():
    # spec §2.3: exact ties x/θ = k + ½ split over steps break the float32 model's equivalence
    disagree = total = 0
    for theta in map(np.float32, (0.1, 0.3, 0.0371, 0.7, 1 / 3)):
        for k in range(-15, 15):
            x = np.float32(np.float32(k + 0.5) * theta)
            myquan = int(np.floor(x / theta + np.float32(0.5)))
            for split in (3, 5, 7, 16):
                total += 1
                disagree += float_snn(x, theta, split) != myquan
    assert disagree > 0, "the float model unexpectedly matched MyQuan on every tie"
    # the integer model on the same kind of tie is exact for every split: x = (k + ½)·Θ
    for k in range(-7, 7):
        for split in (1, 3, 5, 7):
            theta, total_in = 2 * split, (2 * k + 1) * split  # total_in / Θ = k + ½
            net = one_neuron(theta=theta, weight=1, bounds=(-1000, 1000))
            trains = np.zeros((1, abs(total_in), 1), dtype=np.int64)
            trains[0, :, 0] = np.sign(total_in)
            assert simulate(net, trains).counts()[0, 0] == min(max(k + 1, -8), 7)


def test_v15_multi_identity():
    rng = np.random.default_rng(15)
    steps, n, m, d = 9, 5, 4, 6
    q = torch.from_numpy(rng.integers(-1, 2, (steps, n, d)))
    k = torch.from_numpy(rng.integers(-1, 2, (steps, m, d)))
    a = torch.from_numpy(rng.integers(-1, 2, (steps, n, m)))
    v = torch.from_numpy(rng.integers(-1, 2, (steps, m, d)))
    q_acc, k_acc = q.cumsum(0), k.cumsum(0)
    a_acc, v_acc = a.cumsum(0), v.cumsum(0)
    scores = sum(multi(q[t], k[t], q_acc[t], k_acc[t]) for t in range(steps))
    context = sum(multi1(a[t], v[t], a_acc[t], v_acc[t]) for t in range(steps))
    assert torch.equal(scores, q_acc[-1] @ k_acc[-1].T)
    assert torch.equal(context, a_acc[-1] @ v_acc[-1])


def test_v16_layer_serial_zero_delay():
    l1 = Layer(weight=[[1]], bias=[0], threshold=4, neg_bound=-8, pos_bound=7)
    l2 = Layer(weight=[[4]], bias=[0], threshold=4, neg_bound=-8, pos_bound=7)
    net = Network(layers=(l1, l2), n_inputs=1, encoding="analog", input_bounds=(0, 10))
    tr = simulate(net, np.array([[2]]))
    assert tr.spikes[0][0, 0, 0] == 1 and tr.spikes[1][0, 0, 0] == 1  # same step


def test_v17_judger_fixed_point():
    rng = np.random.default_rng(7)
    layer = Layer(
        weight=rng.integers(-9, 10, (6, 5)),
        bias=rng.integers(-5, 6, 6),
        threshold=5,
        neg_bound=-8,
        pos_bound=7,
    )
    net = Network(layers=(layer,), n_inputs=5, encoding="analog", input_bounds=(-20, 20))
    x = rng.integers(-20, 21, (8, 5))
    tr = simulate(net, x, record_state=True)
    longer = simulate(net, x, record_state=True, max_steps=tr.n_steps + 20)
    # same stop step and same result when nothing stops the run early
    assert np.array_equal(tr.steps, longer.steps)
    assert np.array_equal(tr.counts(), longer.counts())
    for b in range(8):
        t = tr.steps[b] - 1  # the idle step
        assert not tr.busy[b, t, -1]
        assert tr.busy[b, :t, -1].all()


def test_v18_bias_spread_same_result_different_trace():
    # bias 12 at t = 0 vs the same 12 spread as 3 per step over 4 steps (NLU style), Θ = 4
    net = one_neuron(encoding="analog", bias=12, n=0, p=15)
    at_once = simulate(net, np.array([[0]]))
    spread = stepper([3, 3, 3, 3])
    assert at_once.counts()[0, 0] == sum(s for s, _, _ in spread) == 3
    assert list(at_once.spikes[0][0, :4, 0]) != [s for s, _, _ in spread[:4]]


def test_v19_rate_equals_analog_when_split_is_exact():
    w = np.array([[3, -2, 5]])
    layer = Layer(weight=w, bias=[1], threshold=6, neg_bound=-8, pos_bound=7)
    x = np.array([[8, 4, -12]])  # divisible by L = 4
    net_a = Network(layers=(layer,), n_inputs=3, encoding="analog", input_bounds=(-16, 16))
    net_s = Network(layers=(layer,), n_inputs=3, encoding="spike", input_bounds=(-16, 16))
    # rate coding: x/L per step for L steps, as unit spikes: x/L spikes of sign(x) in each step
    L = 4
    trains = np.zeros((1, L * 4, 3), dtype=np.int64)
    for j, v in enumerate(x[0]):
        per = abs(v) // L
        for t in range(L):
            trains[0, t * 4 : t * 4 + per, j] = np.sign(v)
    a = simulate(net_a, x)
    s = simulate(net_s, trains)
    assert np.array_equal(a.counts(), s.counts())
    assert a.n_steps != s.n_steps
