"""SOP and energy accounting on hand-computed small cases (spec §4.5)."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.ir import Layer, Network
from spikezip.sw.energy import count_ops
from spikezip.sw.reference import simulate


def test_two_layer_analog_hand_computed():
    # layer 0: 2 inputs → 2 neurons, Θ = 4; layer 1: 2 → 3 neurons, bias on one neuron
    l0 = Layer(weight=[[2, 0], [0, 1]], bias=[0, 0], threshold=4, neg_bound=0, pos_bound=15)
    l1 = Layer(
        weight=[[4, 0], [0, 4], [4, 4]], bias=[0, 0, 4], threshold=4, neg_bound=0, pos_bound=15
    )
    net = Network(layers=(l0, l1), n_inputs=2, encoding="analog", input_bounds=(0, 16))
    x = np.array([[4, 2]])
    tr = simulate(net, x)
    # By hand: layer 0, U0 = 2 + 8 = 10 → +1 at t0 (6), +1 at t1 (2), then silent: a0 = 2
    #          U1 = 2 + 2 = 4 → +1 at t0 (0), then silent: a1 = 1
    # layer 1 sees layer-0 spikes (2 at t0, 1 at t1) → each fan-out 3
    assert tr.spikes[0][0, :3].tolist() == [[1, 1], [1, 0], [0, 0]]
    ops = count_ops(net, tr, x)
    assert ops.macs[0].tolist() == [2 * 2, 0]  # dense first layer at t0
    assert ops.acs[0, :3, 1].tolist() == [2 * 3, 1 * 3, 0]
    assert ops.acs[0, :, 0].sum() == 0
    assert ops.bias_acs[0].tolist() == [0, 1]
    n_steps = int(tr.steps[0])
    assert ops.neuron_updates[0].tolist() == [2 * n_steps, 3 * n_steps]
    expected_pj = 0.9 * (6 + 3 + 1) + 4.6 * 4
    assert ops.energy_pj[0] == pytest.approx(expected_pj)
    assert ops.sops[0] == 6 + 3 + 4
    assert ops.firing_rate[0, 0, 0] == 1.0 and ops.firing_rate[0, 1, 0] == 0.5


def test_spike_input_counts_input_events():
    l0 = Layer(weight=[[1, 1, 1]] * 4, bias=[0] * 4, threshold=2, neg_bound=-4, pos_bound=3)
    net = Network(layers=(l0,), n_inputs=3, encoding="spike", input_bounds=(-3, 3))
    x = np.array([[[1, 0, -1], [0, 0, 1], [0, 0, 0]]])
    ops = count_ops(net, simulate(net, x), x)
    assert ops.acs[0, :3, 0].tolist() == [2 * 4, 1 * 4, 0]
    assert ops.macs.sum() == 0 and ops.bias_acs.sum() == 0


def test_digest_mismatch_is_an_error():
    l0 = Layer(weight=[[1]], bias=[0], threshold=2, neg_bound=0, pos_bound=3)
    a = Network(layers=(l0,), n_inputs=1, encoding="analog", input_bounds=(0, 3))
    b = Network(layers=(l0,), n_inputs=1, encoding="analog", input_bounds=(0, 4))
    with pytest.raises(ValueError, match="digest mismatch"):
        count_ops(b, simulate(a, np.array([[1]])), np.array([[1]]))
