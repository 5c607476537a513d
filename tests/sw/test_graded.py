"""Graded ST-BIF (issue 14, docs/graded.md): exact, O(log(p − n)) steps, files and messages.

The theorems checked here (docs/graded.md §2–§5): a graded network's converged tracers equal the
integer QANN's codes and the ST-BIF network's tracers at every layer (MLPs) and site (ViTs), for
analog and spike inputs, any thresholds, bounds, biases and maximum level K; no run exceeds the
proven step bound; membranes stay in the exact ranges the hardware is sized for.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.cli import main
from spikezip.ir import FormatError, Layer, Network, Trace
from spikezip.ir.network import settle_steps, spike_magnitude
from spikezip.ir.transformer import VisionTransformer
from spikezip.sw.energy import count_ops
from spikezip.sw.reference import graded_step, integer_qann, simulate, stbif_step
from spikezip.sw.vit import reference as vit_ref
from spikezip.sw.vit.energy import count_ops as vit_count_ops
from tests.sw.strategies import inputs_for, networks
from tests.sw.test_equivalence import assert_converged
from tests.sw.vit_strategies import build_vit, images, transformers

SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
LEVELS_K = st.sampled_from([None, None, 0, 1, 2, 3, 5])


def _is_spike(values: np.ndarray, limit: int) -> bool:
    """Every value is 0 or ±2^k with |value| ≤ limit."""
    mag = np.abs(values.astype(np.int64))
    return bool(((mag & (mag - 1)) == 0).all() and mag.max(initial=0) <= limit)


# -- the step bound: settle_steps is the exact worst case of the gap recursion -------------------
def _steps_of_gap(gap: int, k: int | None) -> int:
    """Steps of a graded neuron whose tracer is ``gap`` below its target and whose input is
    constant: each step fires the largest power of two ≤ the gap (and ≤ 2^K)."""
    steps = 0
    while gap:
        m = 1 << (gap.bit_length() - 1)
        if k is not None:
            m = min(m, 1 << k)
        gap -= m
        steps += 1
    return steps


@pytest.mark.parametrize("k", [None, 0, 1, 2, 3, 4, 7])
def test_settle_steps_is_the_worst_gap(k):
    worst = 0
    for span in range(1, 600):
        worst = max(worst, _steps_of_gap(span, k))  # the worst gap g ≤ span
        assert settle_steps("graded", k, span) == worst, (span, k)
    assert settle_steps("stbif", None, 37) == 37
    # K = 0 is ST-BIF; unbounded graded is at most bit_length(p − n)
    assert settle_steps("graded", 0, 37) == 37
    assert settle_steps("graded", None, 2**40 - 1) == 40
    assert settle_steps("graded", None, 2**40) == 40


def test_spike_magnitude():
    assert spike_magnitude("stbif", None, -8, 7) == 1
    assert spike_magnitude("graded", None, -8, 7) == 8  # p − n = 15
    assert spike_magnitude("graded", None, 0, 16) == 16
    assert spike_magnitude("graded", 2, 0, 255) == 4
    assert spike_magnitude("graded", 9, 0, 255) == 128


# -- one neuron, by hand ------------------------------------------------------------------------
def _run_neuron(drives, *, threshold, neg, pos, k=None):
    u, a = torch.tensor([threshold // 2]), torch.tensor([0])
    out = []
    for d in drives:
        s, u, a = graded_step(
            torch.tensor([d]),
            u,
            a,
            threshold=torch.tensor([threshold]),
            neg_bound=neg,
            pos_bound=pos,
            max_level=k,
        )
        out.append((int(s), int(u), int(a)))
    return out


def test_single_neuron_by_hand():
    # Θ = 4, H = 2, n = 0, p = 10. Drives 50 at t = 0, −40 at t = 3.
    # t0: U = 2 + 50 = 52, ⌊52/4⌋ = 13, p − A = 10 → m = 8: U = 52 − 32 = 20, A = 8
    # t1: ⌊20/4⌋ = 5, p − A = 2 → m = 2: U = 12, A = 10
    # t2: U = 12 ≥ Θ but A = p: no spike (the clamp)
    # t3: U = 12 − 40 = −28, ⌈28/4⌉ = 7, A − n = 10 → m = 4: U = −28 + 16 = −12, A = 6
    # t4: ⌈12/4⌉ = 3 → m = 2: U = −4, A = 4
    # t5: ⌈4/4⌉ = 1 → m = 1: U = 0, A = 3 = clamp(⌊(10 + 2)/4⌋, 0, 10)
    # t6: 0 ≤ U < Θ: idle
    got = _run_neuron([50, 0, 0, -40, 0, 0, 0], threshold=4, neg=0, pos=10)
    assert got == [(8, 20, 8), (2, 12, 10), (0, 12, 10), (-4, -12, 6), (-2, -4, 4), (-1, 0, 3),
                   (0, 0, 3)]  # fmt: skip
    # K = 1 (|s| ≤ 2), p = 15, drive 50: target 13 reached by +2 six times then +1 (7 steps)
    got = _run_neuron([50] + [0] * 7, threshold=4, neg=0, pos=15, k=1)
    assert [s for s, _, _ in got] == [2, 2, 2, 2, 2, 2, 1, 0]
    assert got[-1][1:] == (0, 13)  # U = 52 − 13·4 = 0
    # a negative drive on a symmetric neuron, Θ = 3 (H = 1), n = −8, p = 7: U = 1 − 20 = −19,
    # ⌈19/3⌉ = 7, A − n = 8 → m = 4: U = −7, A = −4; ⌈7/3⌉ = 3 → 2: U = −1, A = −6;
    # ⌈1/3⌉ = 1 → 1: U = 2, A = −7 = ⌊(−20 + 1)/3⌋
    got = _run_neuron([-20, 0, 0, 0], threshold=3, neg=-8, pos=7)
    assert got == [(-4, -7, -4), (-2, -1, -6), (-1, 2, -7), (0, 2, -7)]


def test_graded_with_k0_is_stbif():
    rng = np.random.default_rng(5)
    u = torch.from_numpy(rng.integers(-500, 500, 4000))
    a = torch.from_numpy(rng.integers(-8, 8, 4000))
    d = torch.from_numpy(rng.integers(-300, 300, 4000))
    thr = torch.from_numpy(rng.integers(1, 50, 4000))
    g = graded_step(d, u, a, threshold=thr, neg_bound=-8, pos_bound=7, max_level=0)
    s = stbif_step(d, u, a, threshold=thr, neg_bound=-8, pos_bound=7)
    for x, y in zip(g, s, strict=True):
        assert torch.equal(x, y)


# -- random MLPs -------------------------------------------------------------------------------
@st.composite
def graded_cases(draw):
    """A random network whose layers are each graded (random K) or ST-BIF, and its inputs."""
    network = draw(networks())
    kinds = []
    for _ in network.layers:
        graded = draw(st.sampled_from([True, True, True, False]))
        kinds.append(("graded", draw(LEVELS_K)) if graded else ("stbif", None))
    layers = tuple(
        replace(layer, neuron=n, max_level=k)
        for layer, (n, k) in zip(network.layers, kinds, strict=True)
    )
    return network, replace(network, layers=layers), draw(inputs_for(network))


@settings(max_examples=50, **SETTINGS)  # the _many twin: 400 (slow)
@given(graded_cases())
def test_graded_snn_equals_integer_qann(case):
    plain, network, x = case
    assert not any(layer.neuron == "graded" for layer in plain.layers)
    trace = simulate(network, x, record_state=True)
    qann = integer_qann(network, x)
    base = simulate(plain, x, record_state=True)
    assert not trace.capped.any() and not base.capped.any()
    assert trace.steps.max() <= network.step_bound(x.shape[1] if x.ndim == 3 else 1)
    assert_converged(network, x, trace, qann)
    for k, layer in enumerate(network.layers):
        np.testing.assert_array_equal(trace.tracers[k][:, -1], base.tracers[k][:, -1])
        assert _is_spike(trace.spikes[k], layer.spike_max), f"layer {k}"


@pytest.mark.slow
@settings(max_examples=400, **SETTINGS)
@given(graded_cases())
def test_graded_snn_equals_integer_qann_many(case):
    test_graded_snn_equals_integer_qann.hypothesis.inner_test(case)


def test_graded_step_bound_is_reached():
    """The bound is tight for one layer: a drive that leaves the tracer ``g`` away from its
    target, ``g`` the worst gap, takes exactly settle_steps spiking steps."""
    for k, span, gap in ((None, 15, 15), (None, 16, 15), (2, 31, 31), (2, 33, 31), (1, 8, 7)):
        worst = settle_steps("graded", k, span)
        assert _steps_of_gap(gap, k) == worst
        layer = Layer(weight=[[1]], bias=[0], threshold=1, neg_bound=0, pos_bound=span,
                      neuron="graded", max_level=k)  # fmt: skip
        net = Network(layers=(layer,), n_inputs=1, encoding="analog", input_bounds=(0, gap))
        trace = simulate(net, np.array([[gap]]))
        assert int(trace.counts()[0, 0]) == gap
        # `worst` spiking steps, one idle step
        assert int(trace.steps[0]) == worst + 1 <= net.step_bound()


def test_spike_value_widths():
    """A graded layer's spikes drive the next layer by up to 2^K per input: the drive width."""
    rng = np.random.default_rng(1)
    w = rng.integers(-5, 6, (4, 3))
    w[0] = 5  # 3·5·20 = 300 → ⌊(300 + 1)/2⌋ = 150: a first spike of 128
    a = Layer(weight=w, bias=[0] * 4, threshold=2, neg_bound=0, pos_bound=255)
    b = Layer(weight=[[100, -100, 7, 1]], bias=[0], threshold=50, neg_bound=-8, pos_bound=7)
    net = Network(layers=(a, b), n_inputs=3, encoding="analog", input_bounds=(0, 20))
    g = net.with_neuron("graded")
    assert net.widths[1].drive_hi == 208 and g.widths[1].drive_hi == 208 * 128
    assert net.with_neuron("graded", 3).widths[1].drive_hi == 208 * 8
    x = np.concatenate([[[20, 20, 20]], rng.integers(0, 21, (50, 3))])
    trace = simulate(g, x)
    assert int(trace.spikes[0][0, 0, 0]) == 128
    assert trace.spikes[0].dtype == np.int64  # a spike of 128 does not fit int8
    np.testing.assert_array_equal(trace.counts(0), integer_qann(g, x)[0])


# -- random ViTs -------------------------------------------------------------------------------
@st.composite
def vit_cases(draw):
    vit = draw(transformers())
    return vit, vit.with_neuron("graded", draw(LEVELS_K)), draw(images(vit))


@settings(max_examples=40, **SETTINGS)  # the _many twin: 150 (slow)
@given(vit_cases())
def test_graded_vit_equals_integer_qann_at_every_site(case):
    plain, vit, x = case
    result = vit_ref.run(vit, x, record_state=True)
    base = vit_ref.simulate(plain, x, record_state=True)
    trace, qann = result.trace, vit_ref.integer_qann(vit, x)
    assert not trace.capped.any()
    assert trace.steps.max() <= vit.step_bound() <= plain.step_bound()
    for k, site in enumerate(vit.sites):
        np.testing.assert_array_equal(trace.counts(k), qann.codes[k], err_msg=site.name)
        np.testing.assert_array_equal(trace.tracers[k][:, -1], qann.codes[k], err_msg=site.name)
        np.testing.assert_array_equal(trace.tracers[k][:, -1], base.tracers[k][:, -1])
        assert _is_spike(trace.spikes[k], site.op.spike_max), site.name
        lo, hi = vit.ranges.membrane[site.name]
        assert lo <= trace.membranes[k].min() and trace.membranes[k].max() <= hi, site.name
    for key, value in qann.values.items():
        np.testing.assert_array_equal(result.totals[key], value, err_msg=key)
    for b in range(len(x)):
        t = int(trace.steps[b]) - 1
        assert not trace.busy[b, t, -1] and trace.busy[b, :t, -1].all()


@pytest.mark.slow
@settings(max_examples=150, **SETTINGS)
@given(vit_cases())
def test_graded_vit_equals_integer_qann_at_every_site_many(case):
    test_graded_vit_equals_integer_qann_at_every_site.hypothesis.inner_test(case)


def test_graded_vit_per_step_products_stay_in_range():
    """The score and context increments of a graded ViT stay within ranges.score_step /
    context_step (which grow with the spike magnitude)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        plain = build_vit(rng, patches=3, patch_size=2, n_inputs=6, dim=4, heads=2, hidden=5,
                          depth=1)  # fmt: skip
        vit = plain.with_neuron("graded")
        x = rng.integers(0, 17, (3, 6))
        res = vit_ref.run(vit, x, record_drives=True)
        for rec in res.steps:
            assert np.abs(rec["blocks.0.scores_step"]).max() <= vit.ranges.score_step[0]
        assert vit.ranges.score_step[0] >= plain.ranges.score_step[0]


# -- energy ------------------------------------------------------------------------------------
def test_energy_counts_a_graded_spike_as_one_event():
    rng = np.random.default_rng(2)
    a = Layer(weight=rng.integers(-5, 6, (6, 4)), bias=rng.integers(-9, 9, 6), threshold=2,
              neg_bound=-32, pos_bound=31)  # fmt: skip
    b = Layer(weight=rng.integers(-9, 9, (3, 6)), bias=[0, 1, 2], threshold=8, neg_bound=0,
              pos_bound=15)  # fmt: skip
    net = Network(layers=(a, b), n_inputs=4, encoding="analog", input_bounds=(0, 15))
    x = rng.integers(0, 16, (20, 4))
    for n in (net, net.with_neuron("graded"), net.with_neuron("graded", 1)):
        trace = simulate(n, x)
        ops = count_ops(n, trace, x)
        events = [(s != 0).sum(axis=(1, 2)) for s in trace.spikes]
        units = [np.abs(s.astype(np.int64)).sum(axis=(1, 2)) for s in trace.spikes]
        np.testing.assert_array_equal(ops.spikes, np.stack(events, axis=1))
        np.testing.assert_array_equal(ops.spike_units, np.stack(units, axis=1))
        # layer 1's ACs: one per (event, target), whatever the event's magnitude
        np.testing.assert_array_equal(ops.acs[:, :, 1].sum(axis=1), events[0] * b.n_out)
        s = ops.summary()
        assert s["events_mean"] == pytest.approx(ops.spikes.sum(axis=1).mean())
        if n.layers[0].neuron == "stbif":
            np.testing.assert_array_equal(ops.spikes, ops.spike_units)


def test_vit_energy_reports_spike_units():
    rng = np.random.default_rng(4)
    vit = build_vit(rng, patches=2, patch_size=2, n_inputs=4, dim=4, heads=1, hidden=3,
                    depth=1).with_neuron("graded")  # fmt: skip
    x = rng.integers(0, 17, (4, 4))
    trace = vit_ref.simulate(vit, x)
    ops = vit_count_ops(vit, trace, x)
    units = [np.abs(s.astype(np.int64)).sum(axis=(1, 2)) for s in trace.spikes]
    np.testing.assert_array_equal(ops.spike_units, np.stack(units, axis=1))
    assert (ops.spike_units >= ops.spikes).all()
    assert "spike_units_mean" in ops.summary()


# -- IR: fields, files, digests, messages ------------------------------------------------------
def _net(**kw) -> Network:
    layer = Layer(weight=[[1, -2], [3, 4]], bias=[1, 0], threshold=[2, 3], neg_bound=-4,
                  pos_bound=3, **kw)  # fmt: skip
    return Network(layers=(layer,), n_inputs=2, encoding="analog", input_bounds=(0, 7))


def test_digest_and_files(tmp_path):
    plain, graded, k2 = _net(), _net(neuron="graded"), _net(neuron="graded", max_level=2)
    assert plain.digest() == _net(neuron="stbif").digest()
    assert len({plain.digest(), graded.digest(), k2.digest()}) == 3
    assert "neuron" not in plain._meta()["layers"][0]  # ST-BIF files are unchanged
    for net in (plain, graded, k2):
        path = tmp_path / "n.npz"
        net.save(path)
        back = Network.load(path)
        assert back.digest() == net.digest()
        assert back.layers[0].neuron == net.layers[0].neuron
        assert back.layers[0].max_level == net.layers[0].max_level
        again = Network.from_dict(json.loads(json.dumps(net.to_dict())))
        assert again.digest() == net.digest()
    # an older file (no neuron field) loads as ST-BIF
    d = plain.to_dict()
    assert "neuron" not in d["layers"][0]
    assert Network.from_dict(d).layers[0].neuron == "stbif"


def test_vit_files(tmp_path):
    plain = build_vit(np.random.default_rng(0), patches=2, patch_size=2, n_inputs=4, dim=4,
                      heads=2, hidden=3, depth=1)  # fmt: skip
    for vit in (plain, plain.with_neuron("graded"), plain.with_neuron("graded", 1)):
        vit.save(tmp_path / "v.npz")
        back = VisionTransformer.load(tmp_path / "v.npz")
        assert back.digest() == vit.digest()
        assert [s.op.neuron for s in back.sites] == [s.op.neuron for s in vit.sites]
        assert [s.op.max_level for s in back.sites] == [s.op.max_level for s in vit.sites]
    assert plain.with_neuron("stbif").digest() == plain.digest()
    assert plain.with_neuron("graded").digest() != plain.digest()
    assert "neuron" not in json.dumps(plain.to_dict())
    g = plain.with_neuron("graded")
    assert g.step_bound() < plain.step_bound()


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        (dict(neuron="lif"), ValueError, "neuron must be one of 'stbif', 'graded', not 'lif'"),
        (dict(neuron=3), ValueError, "neuron must be one of 'stbif', 'graded', not 3"),
        (dict(max_level=2), ValueError, "max_level applies to graded neurons only"),
        (dict(neuron="graded", max_level=-1), ValueError, r"max_level must lie in \[0, 61\]"),
        (dict(neuron="graded", max_level=62), ValueError, r"max_level must lie in \[0, 61\]"),
        (dict(neuron="graded", max_level=1.5), TypeError, "max_level must be an integer"),
        (dict(neuron="graded", max_level=True), TypeError, "max_level must be an integer"),
    ],
)
def test_validation_messages(kw, error, message):
    with pytest.raises(error, match=message):
        _net(**kw)


def test_bad_neuron_in_a_file(tmp_path):
    path = tmp_path / "n.npz"
    _net(neuron="graded").save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    key = next(n for n in members if "meta" in n)
    text = members[key].decode("latin-1").replace('"neuron": "graded"', '"neuron": "grated"')
    text = text.replace('"neuron":"graded"', '"neuron":"grated"')
    assert "grated" in text
    members[key] = text.encode("latin-1")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(FormatError, match=r"layers\[0\]: neuron must be one of"):
        Network.load(bad)


def test_graded_trace_round_trip(tmp_path):
    spikes = (np.array([[[128, -1], [0, 4]]]), np.array([[[0], [-2]]]))
    tr = Trace(network_digest="0" * 64, spikes=spikes, busy=np.ones((1, 2, 2), bool),
               steps=[2], capped=[False], layer_names=("a", "b"))  # fmt: skip
    assert tr.spikes[0].dtype == np.int64 and tr.spikes[1].dtype == np.int8
    np.testing.assert_array_equal(tr.counts(0), [[128, 3]])
    tr.save(tmp_path / "t.npz")
    back = Trace.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.counts(0), [[128, 3]])
    with pytest.raises(ValueError, match=r"holds 6 at \[0, 1, 0\]; spikes must be 0 or ±2\^k"):
        Trace(network_digest="0" * 64, spikes=(np.array([[[1], [6]]]),),
              busy=np.ones((1, 2, 1), bool), steps=[2], capped=[False])  # fmt: skip


# -- CLI ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-level", "2"], "--max-level applies to graded neurons only"),
        (["--graded", "--max-level", "62"], "--max-level must be an integer in 0..61"),
        (["--graded", "--max-level", "two"], "--max-level must be an integer in 0..61"),
    ],
)
def test_cli_digits_graded_errors(tmp_path, capsys, argv, message):
    assert main(["digits", "-o", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_trace_and_generate_of_a_graded_network(tmp_path, capsys):
    """``spikezip trace`` runs a graded network (the reference) and ``generate`` builds its RTL:
    the output events carry ±2^k (the manifest's output value width grows with the levels)."""
    net = _net(neuron="graded")
    net.save(tmp_path / "n.npz")
    np.save(tmp_path / "x.npy", np.array([[7, 0], [3, 5]]))
    argv = ["trace", tmp_path / "n.npz", tmp_path / "x.npy", "-o", tmp_path / "t.npz"]
    assert main([str(a) for a in argv]) == 0
    trace = Trace.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(trace.counts(0), integer_qann(net, [[7, 0], [3, 5]])[0])
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "n.npz"), "-o", str(tmp_path / "g")]) == 0
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    spike_max = net.layers[-1].spike_max
    assert spike_max > 1
    # ±2^k, k < log2(spike_max) + 1: the signed width of ±spike_max
    fmt = manifest["layers"][-1]["output_format"]
    assert fmt["value_width"] == spike_max.bit_length() + 1


def test_hardware_takes_a_graded_vit() -> None:
    """The ViT's products and residual stream take graded spikes too: the hardware commands
    accept a graded ViT (tests/hw/test_vit_core.py runs one in RTL)."""
    from spikezip.hw.model.design import check_stbif

    vit = build_vit(
        np.random.default_rng(0),
        patches=2,
        patch_size=2,
        n_inputs=4,
        dim=4,
        heads=1,
        hidden=3,
        depth=1,
    )
    check_stbif(vit.with_neuron("graded"))
    check_stbif(vit.with_neuron("graded", 1))
    check_stbif(vit)
