"""ECMT's multi-threshold conversion on the integer QANN (``sw.ecmt``, docs/graded.md §11).

The expected values are derived by hand in the comments, from ECMT's rules — never from the code.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikezip.ir import Layer, Network
from spikezip.sw import ecmt
from spikezip.sw.reference import integer_qann, simulate
from spikezip.sw.vit import ecmt as vit_ecmt
from spikezip.sw.vit import reference as vit_ref
from spikezip.sw.vit.reference import _heads, _merge, _Quant, _tensor, layer_norm, softmax

from .vit_strategies import build_vit


def mt_sequence(drives, *, threshold, levels):
    v = torch.zeros(1, dtype=torch.int64)
    spikes, membranes = [], []
    for d in drives:
        s, v = ecmt.mt_step(torch.tensor([d]), v, threshold=threshold, levels=levels)
        spikes.append(int(s))
        membranes.append(int(v))
    return spikes, membranes


def test_mt_neuron_hand_sequence():
    # θ = 4, N = 3 levels (4, 8, 16): +2^j when v ≥ 4·2^j − 2, i.e. v ≥ 2 / 6 / 14;
    # −2^j when v ≤ −2 / −6 / −14. Reset by subtraction of s·θ.
    #  t  drive   v     spike  v after
    #  1    5     5      +1     1
    #  2    5     6      +2    −2
    #  3   20    18      +4     2     (top level 16)
    #  4    0     2      +1    −2     (v = θ/2 fires: ECMT's ≥ is inclusive)
    #  5   −3    −5      −1    −1
    #  6   −9   −10      −2    −2
    #  7    1    −1       0    −1     (−θ/2 < v < θ/2: silent)
    spikes, membranes = mt_sequence([5, 5, 20, 0, -3, -9, 1], threshold=4, levels=3)
    assert spikes == [1, 2, 4, 1, -1, -2, 0]
    assert membranes == [1, -2, 2, -2, -1, -2, -1]


def test_mt_neuron_saturates_at_its_top_level():
    # θ = 3, N = 2 (levels 3, 6): 40 at once drains 6 per step: 40 → 34 → 28 → 22
    spikes, membranes = mt_sequence([40, 0, 0], threshold=3, levels=2)
    assert spikes == [2, 2, 2]
    assert membranes == [34, 28, 22]
    # odd θ: v = 1 < θ/2 = 1.5 is silent, v = 2 fires; v = −1 silent, v = −2 fires
    assert mt_sequence([1], threshold=3, levels=2)[0] == [0]
    assert mt_sequence([2], threshold=3, levels=2) == ([1], [-1])
    assert mt_sequence([-1], threshold=3, levels=2)[0] == [0]
    assert mt_sequence([-2], threshold=3, levels=2) == ([-1], [1])


def test_ecm_code_by_hand():
    # Θ = 2, H = 1, n = 0, p = 3: t · clamp(⌊(Y/t + 1)/2⌋, 0, 3)
    kw = dict(threshold=torch.tensor([2]), half=torch.tensor([1]), neg_bound=0, pos_bound=3)
    for t, total, expected in [
        (1, 4, 2),  # ⌊5/2⌋ = 2
        (2, 8, 4),  # mean 4: ⌊5/2⌋ = 2, times 2
        (3, 12, 6),
        (4, 20, 12),  # mean 5: ⌊6/2⌋ = 3, times 4
        (2, 30, 6),  # mean 15: ⌊16/2⌋ = 8, clamped to 3
        (3, 7, 3),  # mean 7/3: ⌊(7/3 + 1)/2⌋ = ⌊5/3⌋ = 1 — a fraction, exactly
        (2, -7, 0),  # mean −3.5: ⌊−1.25⌋ = −2, clamped to 0
    ]:
        assert int(ecmt.ecm_code(torch.tensor([total]), t, **kw)) == expected, (t, total)


def two_layer(bias1=(1, 10), w1=((2,), (0,))) -> Network:
    """x (one pixel, 0..16) → 1 neuron (w 1, Θ 1, 0..15) → 2 neurons (Θ 4, H 2, 0..7)."""
    return Network(
        layers=(
            Layer(weight=[[1]], bias=[0], threshold=1, neg_bound=0, pos_bound=15),
            Layer(weight=w1, bias=bias1, threshold=4, neg_bound=0, pos_bound=7),
        ),
        n_inputs=1,
        encoding="analog",
        input_bounds=(0, 16),
    )


def test_small_t_differs_from_the_qann_by_hand():
    # QANN on x = 5: a0 = 5; a1 = (⌊(2·5 + 1 + 2)/4⌋, ⌊(10 + 2)/4⌋) = (3, 3) → class 0 (first).
    # ECMT: layer 0's ECM output is 5 every step; its MT neuron (θ = 1, N = 5, top 16) fires the
    # largest 2^j ≤ v: v = 5, 6, 7, 8 → spikes 4, 4, 4, 8 (residual 1, 2, 3, 0), then repeats.
    # Layer 1, neuron 0: Y_t = 2·S_t + t, code of the mean ⌊(Y_t/t + 2)/4⌋ = ⌊(2·S_t + 3t)/4t⌋:
    #   t = 1: S 4  → ⌊11/4⌋ = 2;  t = 2: S 8 → ⌊22/8⌋ = 2;  t = 3: S 12 → ⌊33/12⌋ = 2;
    #   t = 4: S 20 → ⌊52/16⌋ = 3.  Neuron 1 (bias 10 only): ⌊(10 + 2)/4⌋ = 3 every step.
    # So the summed outputs are (2, 3)·1, (4, 6), (6, 9), (12, 12): class 1 for T < 4, 0 at T = 4.
    net = two_layer()
    x = np.array([[5]])
    assert [int(a) for a in integer_qann(net, x)[-1][0]] == [3, 3]
    for t, out, pred in [(1, [2, 3], 1), (2, [4, 6], 1), (3, [6, 9], 1), (4, [12, 12], 0)]:
        run = ecmt.simulate(net, x, t)
        assert run.outputs[-1][0].tolist() == out, t
        assert run.predictions()[0] == pred, t
    run = ecmt.simulate(net, x, 8)
    assert run.spikes[0][0, :, 0].tolist() == [4, 4, 4, 8, 4, 4, 4, 8]
    assert run.levels == (5, 4)  # top 16 ≥ p = 15; top 8 ≥ p = 7
    assert run.events().tolist() == [8]  # one MT spike per step; the last layer is read out
    # ours is exact: ST-BIF and graded both end at (3, 3), class 0
    for kind in ("stbif", "graded"):
        trace = simulate(net.with_neuron(kind), x)
        assert trace.counts(-1)[0].tolist() == [3, 3] and trace.predictions()[0] == 0


def test_a_tie_is_missed_forever():
    # Layer 1 neuron 0 with w 1, bias 1, Θ 4, H 2: QANN ⌊(5 + 1 + 2)/4⌋ = ⌊8/4⌋ = 2 exactly — a
    # tie. ECMT's mean input is 5 − u_t/t with the MT residual u_t = 1, 2, 3, 0, 1, … ≥ 0, so
    # ⌊(6 − u_t/t + 2)/4⌋ = 1 whenever u_t > 0: ECMT reads 1 at three steps in four, at any T
    # however large (it matches only in expectation); ours is exact.
    net = two_layer(bias1=(1, 0), w1=((1,), (0,)))
    x = np.array([[5]])
    assert int(integer_qann(net, x)[-1][0, 0]) == 2
    for t in range(1, 65):
        code = ecmt.simulate(net, x, t).outputs[-1][0, 0]
        assert code == (2 * t if t % 4 == 0 else t), t


def test_too_few_levels_never_catch_up():
    # N = 2 (top 2) carries at most 2 per step: layer 0's code 5 arrives as 2, 2, 2, …
    net = two_layer()
    run = ecmt.simulate(net, np.array([[5]]), 16, levels=2)
    assert set(run.spikes[0][0, :, 0].tolist()) == {2}
    # layer 1 sees a mean of 2: ⌊(2·2 + 1 + 2)/4⌋ = 1 instead of 3
    assert run.outputs[-1][0, 0] == 16 * 1


@st.composite
def tiny_networks(draw):
    """1–3 analog layers, widths ≤ 4, |w| ≤ 3, Θ in 2..9, 2–16 levels, and a batch."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    depth = draw(st.integers(1, 3))
    widths = [int(rng.integers(1, 5)) for _ in range(depth + 1)]
    layers = []
    for k in range(depth):
        levels = int(rng.integers(2, 17))
        signed = bool(rng.integers(0, 2))
        neg, pos = ((-levels) // 2, levels // 2 - 1) if signed else (0, levels - 1)
        layers.append(
            Layer(
                weight=rng.integers(-3, 4, (widths[k + 1], widths[k])),
                bias=rng.integers(-6, 7, widths[k + 1]),
                threshold=rng.integers(2, 10, widths[k + 1]),
                neg_bound=neg,
                pos_bound=pos,
            )
        )
    net = Network(layers=tuple(layers), n_inputs=widths[0], encoding="analog", input_bounds=(0, 8))
    return net, rng.integers(0, 9, (4, widths[0]))


def ties(network: Network, x: np.ndarray) -> bool:
    """Some neuron of layer ≥ 1 whose QANN input sits exactly on a rounding boundary inside
    its clamp range (approached from one side, the mean rounds the other way)."""
    codes = integer_qann(network, x)
    for k in range(1, network.depth):
        layer = network.layers[k]
        z = codes[k - 1] @ layer.weight.T + layer.bias + layer.initial_membranes
        q = z // layer.thresholds
        on = (z % layer.thresholds == 0) & (q > layer.neg_bound) & (q <= layer.pos_bound)
        if on.any():
            return True
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_networks())
def test_large_t_reaches_the_qann_without_ties(case):
    net, x = case
    codes = integer_qann(net, x)
    for t in (1, 3):  # layer 0 (analog, constant) is exact at any T
        assert np.array_equal(ecmt.simulate(net, x, t).outputs[0], t * codes[0])
    assume(not ties(net, x))
    t = 256  # ample: 300 random cases all reach it by T = 8
    run = ecmt.simulate(net, x, t)
    for k in range(net.depth):
        assert np.array_equal(run.outputs[k], t * codes[k]), k
    assert np.array_equal(run.predictions(), np.argmax(codes[-1], axis=1))
    for k, s in enumerate(run.spikes):  # spikes are 0 or ±2^j ≤ 2^(N−1)
        mag = np.abs(s)
        assert mag.max(initial=0) <= 1 << (run.levels[k] - 1)
        assert ((mag & (mag - 1)) == 0).all()


def two_side_neuron(drives, theta, levels):
    """ECMT's ``TwoSideNeuron`` loop transcribed with exact fractions: try the levels from the top
    (θ·2^(N−1) … θ), the first whose ``v − level + θ/2 ≥ 0`` (or ``−v − level + θ/2 ≥ 0``)
    fires, one spike per step, subtract it."""
    v, out = Fraction(0), []
    for x in drives:
        v += x
        fired = 0
        for j in reversed(range(levels)):
            level = Fraction(theta * 2**j)
            if v - level + Fraction(theta, 2) >= 0:
                fired = level
            elif -v - level + Fraction(theta, 2) >= 0:
                fired = -level
            if fired:
                break
        v -= fired
        out.append((int(fired / theta), v))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-300, 300), min_size=1, max_size=12),
    st.integers(1, 40),
    st.integers(1, 6),
)
def test_mt_step_is_ecmts_two_side_neuron(drives, theta, levels):
    spikes, membranes = mt_sequence(drives, threshold=theta, levels=levels)
    assert list(zip(spikes, membranes, strict=True)) == two_side_neuron(drives, theta, levels)


def ecmt_by_fractions(net: Network, x: np.ndarray, steps: int):
    """ECMT on one sample in plain Python fractions, as its modules compute it: each layer's ECM
    (``exp_comp_neuron``) emits ``t·f(Y_t/t) − (t−1)·f(Y_{t−1}/(t−1))`` with f the QANN quantizer
    (scaled by Θ), an MT neuron (:func:`two_side_neuron`'s rule) feeds the next layer; returns
    every layer's summed ECM output in codes and the MT spikes."""
    layers = net.layers
    totals = [[Fraction(0)] * layer.n_out for layer in layers]
    last = [[Fraction(0)] * layer.n_out for layer in layers]
    v = [[Fraction(0)] * layer.n_out for layer in layers]
    summed = [[Fraction(0)] * layer.n_out for layer in layers]
    spikes = [[] for _ in layers[:-1]]

    def f(z, i, layer):
        theta, half = int(layer.thresholds[i]), int(layer.initial_membranes[i])
        code = min(max((z + half) // theta, layer.neg_bound), layer.pos_bound)
        return Fraction(code * theta)

    for t in range(1, steps + 1):
        inp = [int(a) for a in x]
        for k, layer in enumerate(layers):
            out = []
            for i in range(layer.n_out):
                y = sum(int(w) * a for w, a in zip(layer.weight[i], inp, strict=True))
                totals[k][i] += y + int(layer.bias[i])
                now = f(totals[k][i] / t, i, layer) * t
                ecm, last[k][i] = now - last[k][i], now
                summed[k][i] += ecm / int(layer.thresholds[i])
                out.append(ecm)
            if k == len(layers) - 1:
                break
            inp = []
            for i, ecm in enumerate(out):
                theta = int(layer.thresholds[i])
                levels = ecmt.default_levels(layer)
                (s, v[k][i]), *_ = two_side_neuron([v[k][i] + ecm], theta, levels)
                inp.append(s)
            spikes[k].append(inp)
    return summed, spikes


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_networks(), st.integers(1, 9))
def test_simulate_is_ecmt_by_fractions(case, steps):
    net, x = case
    run = ecmt.simulate(net, x, steps)
    for b in range(len(x)):
        summed, spikes = ecmt_by_fractions(net, x[b], steps)
        for k in range(net.depth):
            assert run.outputs[k][b].tolist() == summed[k]
        for k, s in enumerate(spikes):
            assert run.spikes[k][b].tolist() == s


def test_digits_table(digits_network, digits_data):
    x, y = digits_data.x_test[:60], digits_data.y_test[:60]
    rows = ecmt.compare(digits_network, x, y, (2, 8))
    names = [r.name for r in rows]
    assert names == ["ECMT T=2", "ECMT T=8", "ST-BIF (exact)", "graded K=∞ (exact)", "integer QANN"]
    by = {r.name: r for r in rows}
    for exact in ("ST-BIF (exact)", "graded K=∞ (exact)", "integer QANN"):
        assert by[exact].agreement == 1.0
        assert by[exact].accuracy == by["integer QANN"].accuracy
    assert by["ECMT T=2"].steps_max == 2 and by["ECMT T=8"].steps_mean == 8.0
    assert by["graded K=∞ (exact)"].steps_max < by["ST-BIF (exact)"].steps_max
    assert by["ECMT T=8"].events_mean > by["ECMT T=2"].events_mean  # a fixed T never stops
    assert by["integer QANN"].steps_mean is None and by["integer QANN"].events_mean is None
    text = ecmt.format_table(rows)
    assert text.splitlines()[0].split()[:3] == ["model", "accuracy", "=="]
    assert len(text.splitlines()) == 6


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps": 0}, ValueError, "steps must lie in [1, 65536], not 0"),
        ({"steps": True}, TypeError, "steps must be an integer, not bool"),
        ({"steps": 2, "levels": 0}, ValueError, "levels must lie in [1, 32], not 0"),
        ({"steps": 2, "levels": 2.0}, TypeError, "levels must be an integer, not float"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error) as e:
        ecmt.simulate(two_layer(), np.array([[5]]), **kwargs)
    assert str(e.value) == message


def big(weight: int, threshold: int) -> Network:
    return Network(
        layers=(
            Layer(weight=[[weight]], bias=[0], threshold=threshold, neg_bound=0, pos_bound=15),
            Layer(weight=[[1]], bias=[0], threshold=1 << 40, neg_bound=0, pos_bound=7),
        ),
        n_inputs=1,
        encoding="analog",
        input_bounds=(0, 16),
    )


def test_runs_beyond_int64_are_refused():
    # layer 0's drive is 16·2^55 = 2^59 per step (a valid network): 2^62 at T = 8
    ecmt.simulate(big(1 << 55, 1), np.array([[16]]), 7)
    with pytest.raises(ValueError, match=r"^layer0: ECMT's running input can reach \d+, beyond"):
        ecmt.simulate(big(1 << 55, 1), np.array([[16]]), 8)
    # Θ = 2^55, N = 5: the MT membrane's bound 2·Θ·T·(15 + 16) + Θ reaches 2^62 at T = 3
    ecmt.simulate(big(1, 1 << 55), np.array([[16]]), 2)
    with pytest.raises(ValueError, match=r"^layer0: the MT membrane can reach"):
        ecmt.simulate(big(1, 1 << 55), np.array([[16]]), 3)
    a = torch.full((1, 2), 1 << 31)  # 2 · 2^31 · 2^31 = 2^63
    with pytest.raises(ValueError, match=r"^scores can reach"):
        vit_ecmt._matmul(a, a.T, "scores")


def test_spike_input_and_bad_inputs_are_refused():
    net = Network(layers=two_layer().layers, n_inputs=1, encoding="spike", input_bounds=(-1, 1))
    with pytest.raises(ValueError, match=r"ECMT takes analog input.*'spike'"):
        ecmt.simulate(net, np.zeros((1, 2, 1), dtype=np.int64), 2)
    with pytest.raises(ValueError):
        ecmt.simulate(two_layer(), np.array([[17]]), 2)  # outside the input bounds 0..16


# -- the ViT (sw.vit.ecmt) -----------------------------------------------------------------------


def test_softmax_of_a_mean_by_hand():
    # t = 2, summed scores S = (0, 5, 8): mean gaps (8 − S)/4 = 2, 0.75, 0 → rounded 2, 1, 0;
    # table (8, 4, 2) → E = (2, 4, 8), Σ = 14; N = 100: ⌊(100·E + 7)/14⌋ = 14, 29, 57
    g = vit_ecmt._softmax_of_mean(torch.tensor([[0, 5, 8]]), 2, torch.tensor([8, 4, 2]), 100)
    assert g.tolist() == [[14, 29, 57]]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=1, max_size=6),
    st.integers(1, 40),
    st.integers(1, 3),
)
def test_converged_means_give_the_qanns_softmax_and_layer_norm(p, t, gain):
    # at convergence the summed scores are t²·P and the summed stream t·R: the ECM's mean is
    # the QANN's own integer input, so the functions must return the QANN's values exactly
    scores, table = torch.tensor([p]), torch.tensor([64, 40, 20, 9, 3, 1])
    assert torch.equal(
        vit_ecmt._softmax_of_mean(t * t * scores, t, table, 255), softmax(scores, table, 255)
    )
    r, g, b = torch.tensor([p]), torch.full((len(p),), gain), torch.zeros(len(p), dtype=torch.long)
    assert torch.equal(layer_norm(t * r, g, b, 7 * t * t), layer_norm(r, g, b, 7))


def vit_qann_at_one_step(vit, x):
    """ECMT at T = 1 by hand: the integer QANN, except that a site with an MT neuron passes on
    its MT spike — the largest power of two ≤ |code| (capped at 2^(N−1)), with the code's sign —
    instead of its code (ECM at t = 1 is the function itself; a product's mean is the product)."""
    x = _tensor(vit.check_inputs(x))
    sites = {s.name: s for s in vit.sites}
    codes = {}

    def mt(name, code):
        cap = 1 << (vit_ecmt.default_levels(sites[name].op) - 1)
        m = code.abs()
        for shift in (1, 2, 4, 8, 16, 32):
            m = m | (m >> shift)
        return torch.sign(code) * (m - (m >> 1)).clamp(max=cap)

    def quant(name, drive):
        codes[name] = _Quant.of(sites[name]).code(drive)
        return codes[name]

    def linear(name, a):
        layer = sites[name].op
        return quant(name, a @ _tensor(layer.weight.T) + _tensor(layer.bias))

    def norm(name, stream):
        op = sites[name].op
        g = layer_norm(stream, _tensor(op.gain), _tensor(op.bias), op.eps)
        return mt(name, quant(name, g))

    stream = _tensor(np.array(vit.position)).expand(x.shape[0], -1, -1).clone()
    stream[:, 1:] += vit.embed_residual * linear("embed", x[:, _tensor(vit.patch_index)])
    for b, blk in enumerate(vit.blocks):
        p = f"blocks.{b}."
        n1 = norm(p + "norm1", stream)
        q, k, v = (_heads(mt(p + f, linear(p + f, n1)), blk.heads) for f in ("q", "k", "v"))
        g = softmax(q @ k.transpose(-1, -2), _tensor(blk.softmax.table), blk.softmax.numerator)
        a = mt(p + "attn", quant(p + "attn", g))
        ctx = mt(p + "context", quant(p + "context", blk.context.weight * _merge(a @ v)))
        stream = stream + blk.attn_residual * linear(p + "proj", ctx)
        f1 = mt(p + "fc1", linear(p + "fc1", norm(p + "norm2", stream)))
        stream = stream + blk.mlp_residual * linear(p + "fc2", f1)
    linear("head", norm("norm", stream)[:, 0])
    return [codes[s.name].reshape(x.shape[0], -1).numpy() for s in vit.sites]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_vit_one_step_is_the_qann_with_mt_spikes(seed):
    rng = np.random.default_rng(seed)
    vit = build_vit(
        rng,
        patches=3,
        patch_size=2,
        n_inputs=6,
        dim=4,
        heads=2,
        hidden=3,
        depth=2,
        input_bounds=(0, 8),
    )
    x = rng.integers(0, 9, (3, 6))
    run = vit_ecmt.simulate(vit, x, 1)
    expected = vit_qann_at_one_step(vit, x)
    for k, site in enumerate(vit.sites):
        assert np.array_equal(run.outputs[k], expected[k]), site.name
        has_mt = site.name.rsplit(".", 1)[-1] in vit_ecmt.MT_SITES
        assert run.spikes[k].shape == (3, 1, site.size if has_mt else 0)
    # the spikes: 0 or ±2^j, at most 2^(N−1)
    for k, s in enumerate(run.spikes):
        mag = np.abs(s)
        assert mag.max(initial=0) <= 1 << (run.levels[k] - 1) and ((mag & (mag - 1)) == 0).all()
    # more steps: the embedding (analog input, every step) stays exact; the head reads out
    codes = vit_ref.integer_qann(vit, x).codes
    run = vit_ecmt.simulate(vit, x, 5)
    assert np.array_equal(run.outputs[0], 5 * codes[0])
    assert np.array_equal(run.predictions(), np.argmax(run.outputs[-1], axis=1))
