"""Integer QANN == converged SNN, exactly, on random networks (spec §2.2, §2.4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.ir import Layer, Network
from spikezip.sw.reference import StepCapWarning, integer_qann, simulate, stbif_step
from tests.sw.strategies import inputs_for, networks


def independent_qann(network: Network, x: np.ndarray) -> list[np.ndarray]:
    """Python-integer QANN (no torch, no floats): floor division toward -inf, clamp."""
    a = [[int(v) for v in row] for row in (x.sum(axis=1) if x.ndim == 3 else x)]
    out = []
    for layer in network.layers:
        w, b, th, h = (
            layer.weight.tolist(),
            layer.bias.tolist(),
            layer.thresholds.tolist(),
            layer.initial_membranes.tolist(),
        )
        a = [
            [
                min(
                    max(
                        (sum(wi * aj for wi, aj in zip(w[i], row, strict=True)) + b[i] + h[i])
                        // th[i],
                        layer.neg_bound,
                    ),
                    layer.pos_bound,
                )
                for i in range(layer.n_out)
            ]
            for row in a
        ]
        out.append(np.array(a, dtype=np.int64))
    return out


@st.composite
def cases(draw):
    network = draw(networks())
    return network, draw(inputs_for(network))


@settings(
    max_examples=100,  # test_converged_snn_equals_integer_qann_many: 320 (slow)
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_converged_snn_equals_integer_qann(case):
    network, x = case
    trace = simulate(network, x, record_state=True)
    qann = integer_qann(network, x)
    assert not trace.capped.any(), "the proven step bound was not enough"
    assert_converged(network, x, trace, qann)
    for k in range(network.depth):  # ST-BIF: at most one ±1 spike per neuron per step
        assert np.isin(trace.spikes[k], (-1, 0, 1)).all(), f"layer {k}"


def assert_converged(network, x, trace, qann) -> None:
    """What every reference run must show (ST-BIF or graded): spike counts and the final
    tracers == the integer QANN, tracers within their bounds, membranes within the exact range
    the hardware is sized for, and the run stops at the first idle step of the last layer."""
    for k in range(network.depth):
        np.testing.assert_array_equal(trace.counts(k), qann[k], err_msg=f"layer {k}")
        np.testing.assert_array_equal(trace.tracers[k][:, -1], qann[k])
        assert (trace.tracers[k] >= network.layers[k].neg_bound).all()
        assert (trace.tracers[k] <= network.layers[k].pos_bound).all()
        w = network.widths[k]
        assert trace.membranes[k].min() >= w.membrane_lo
        assert trace.membranes[k].max() <= w.membrane_hi
    for b in range(len(x)):
        t = int(trace.steps[b]) - 1
        assert not trace.busy[b, t, -1] and trace.busy[b, :t, -1].all()
        assert all(not trace.spikes[k][b, t:].any() for k in range(network.depth))


@pytest.mark.slow
@settings(
    max_examples=320,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_converged_snn_equals_integer_qann_many(case):
    test_converged_snn_equals_integer_qann.hypothesis.inner_test(case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_integer_qann_matches_independent_python_integers(case):
    network, x = case
    for k, (mine, ref) in enumerate(
        zip(integer_qann(network, x), independent_qann(network, x), strict=True)
    ):
        np.testing.assert_array_equal(mine, ref, err_msg=f"layer {k}")


def test_exact_matmul_paths_beyond_float_precision():
    # weights so large that float32 (and float64) sums would round: the int64 path must be used
    big = 2**40 + 1
    layer = Layer(
        weight=[[big, -big + 3, 7]], bias=[5], threshold=2**41 + 3, neg_bound=-32, pos_bound=31
    )
    net = Network(layers=(layer,), n_inputs=3, encoding="analog", input_bounds=(-1000, 1000))
    x = np.array([[999, 998, -3], [-1000, -999, 1000], [1, 1, 1]])
    tr = simulate(net, x)
    np.testing.assert_array_equal(tr.counts(0), independent_qann(net, x)[0])
    # float32 path boundary: Σ|w|·max|x| just below 2^24 still exact
    w = np.array([[2**23 - 1, 1]])
    layer = Layer(weight=w, bias=[0], threshold=2**22, neg_bound=-4, pos_bound=3)
    net = Network(layers=(layer,), n_inputs=2, encoding="analog", input_bounds=(-1, 1))
    x = np.array([[1, 1], [1, -1], [-1, 1]])
    np.testing.assert_array_equal(simulate(net, x).counts(0), independent_qann(net, x)[0])


def test_per_sample_step_counts_not_held_back_by_batch():
    layer = Layer(weight=[[1]], bias=[0], threshold=2, neg_bound=0, pos_bound=15)
    net = Network(layers=(layer,), n_inputs=1, encoding="analog", input_bounds=(0, 100))
    tr = simulate(net, np.array([[0], [2], [100]]))
    # 0 → 1 step; 2 → one spike then idle: 2 steps; 100 → saturates after 15 spikes: 16 steps
    assert tr.steps.tolist() == [1, 2, 16]
    alone = simulate(net, np.array([[2]]))
    assert alone.steps.tolist() == [2]


def test_step_cap_is_reported_never_silent():
    layer = Layer(weight=[[1]], bias=[0], threshold=1, neg_bound=0, pos_bound=63)
    net = Network(layers=(layer,), n_inputs=1, encoding="analog", input_bounds=(0, 100))
    with pytest.warns(StepCapWarning, match=r"1 of 2 samples .* max_steps=10 .* bound .* is 65"):
        tr = simulate(net, np.array([[100], [3]]), max_steps=10)
    assert tr.capped.tolist() == [True, False]
    assert tr.steps.tolist() == [10, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not simulate(net, np.array([[100]])).capped.any()  # default bound suffices
    with pytest.raises(ValueError, match="max_steps must be a positive integer, not 0"):
        simulate(net, np.array([[1]]), max_steps=0)


def test_stbif_step_is_elementwise_and_pure():
    u = torch.tensor([0, 3, 4, -1, 10, -10])
    a = torch.tensor([0, 0, 0, 0, 7, -8])
    s, u2, a2 = stbif_step(
        torch.tensor(0), u, a, threshold=torch.tensor(4), neg_bound=-8, pos_bound=7
    )
    assert s.tolist() == [0, 0, 1, -1, 0, 0]
    assert u2.tolist() == [0, 3, 0, 3, 10, -10]
    assert a2.tolist() == [0, 0, 1, -1, 7, -8]
    assert u.tolist() == [0, 3, 4, -1, 10, -10]  # inputs untouched
