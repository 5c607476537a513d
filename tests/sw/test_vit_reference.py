"""Integer ViT: converged SNN == integer QANN at every site, exactly (docs/transformer.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.ir import Layer
from spikezip.ir.compare import first_divergence
from spikezip.ir.transformer import (
    Block,
    Context,
    LayerNorm,
    SiteKind,
    Softmax,
    VisionTransformer,
    layer_norm_exact,
    softmax_exact,
)
from spikezip.sw.attention import multi, multi1
from spikezip.sw.reference import StepCapWarning
from spikezip.sw.vit.reference import integer_qann, layer_norm, run, simulate, softmax
from tests.sw.vit_strategies import images, transformers

SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@st.composite
def cases(draw):
    vit = draw(transformers())
    return vit, draw(images(vit))


# -- the main property ---------------------------------------------------------------------------
@settings(max_examples=100, **SETTINGS)  # the _many twin: 150 (slow)
@given(cases())
def test_converged_snn_equals_integer_qann_at_every_site(case):
    vit, x = case
    result = run(vit, x, record_state=True)
    trace, qann = result.trace, integer_qann(vit, x)
    assert not trace.capped.any(), "the proven step bound was not enough"
    assert trace.layer_names == vit.site_names
    for k, site in enumerate(vit.sites):
        np.testing.assert_array_equal(trace.counts(k), qann.codes[k], err_msg=site.name)
        np.testing.assert_array_equal(trace.tracers[k][:, -1], qann.codes[k], err_msg=site.name)
        assert trace.tracers[k].min() >= site.neg_bound
        assert trace.tracers[k].max() <= site.pos_bound
        lo, hi = vit.ranges.membrane[site.name]
        assert lo <= trace.membranes[k].min() and trace.membranes[k].max() <= hi, site.name
    # every non-spike total telescopes to the QANN's value: drives, streams, scores
    assert set(result.totals) == set(qann.values)
    for key, value in qann.values.items():
        np.testing.assert_array_equal(result.totals[key], value, err_msg=key)
    for b in range(vit.depth):
        assert np.abs(qann.values[f"blocks.{b}.scores"]).max() <= vit.ranges.scores[b]
    # per-sample termination: the last step of each sample is idle, every earlier one busy
    for b in range(len(x)):
        t = int(trace.steps[b]) - 1
        assert not trace.busy[b, t, -1] and trace.busy[b, :t, -1].all()
        assert all(not s[b, t:].any() for s in trace.spikes)
    assert trace.steps.max() <= vit.step_bound()


@pytest.mark.slow
@settings(max_examples=150, **SETTINGS)
@given(cases())
def test_converged_snn_equals_integer_qann_at_every_site_many(case):
    test_converged_snn_equals_integer_qann_at_every_site.hypothesis.inner_test(case)


def flat(rows: list[list[int]]) -> list[int]:
    return [v for row in rows for v in row]


def independent_qann(vit: VisionTransformer, x: np.ndarray) -> list[list[list[int]]]:
    """The integer QANN in Python integers, from the definitions (no torch, no floats)."""

    def quant(drive: int, thr: int, n: int, p: int) -> int:
        return min(max((drive + thr // 2) // thr, n), p)

    def linear(layer: Layer, rows: list[list[int]]) -> list[list[int]]:
        w, bias, thr = layer.weight.tolist(), layer.bias.tolist(), layer.thresholds.tolist()
        return [
            [
                quant(
                    sum(wi * a for wi, a in zip(w[o], row, strict=True)) + bias[o],
                    thr[o],
                    layer.neg_bound,
                    layer.pos_bound,
                )
                for o in range(layer.n_out)
            ]
            for row in rows
        ]

    def norm(op: LayerNorm, rows: list[list[int]]) -> list[list[int]]:
        thr = op.thresholds.tolist()
        out = []
        for row in rows:
            g = layer_norm_exact(row, op.gain.tolist(), op.bias.tolist(), op.eps)
            out.append(
                [quant(gi, t, op.neg_bound, op.pos_bound) for gi, t in zip(g, thr, strict=True)]
            )
        return out

    def add(stream: list[list[int]], weight: int, codes: list[list[int]], offset: int = 0):
        for i, row in enumerate(codes):
            for c, a in enumerate(row):
                stream[i + offset][c] += weight * a

    samples = []
    for image in x.tolist():
        sites: list[list[int]] = []
        patches = [[image[j] for j in row] for row in vit.patch_index.tolist()]
        e = linear(vit.embed, patches)
        sites.append(flat(e))
        stream = vit.position.tolist()
        add(stream, vit.embed_residual, e, offset=1)
        n = vit.tokens
        for blk in vit.blocks:
            n1 = norm(blk.norm1, stream)
            q, k, v = (linear(getattr(blk, f), n1) for f in ("q", "k", "v"))
            sites += [flat(n1), flat(q), flat(k), flat(v)]
            dh, sm, cx = blk.head_dim, blk.softmax, blk.context
            attn, ctx = [], [[0] * vit.dim for _ in range(n)]
            for h in range(blk.heads):
                ch = range(h * dh, (h + 1) * dh)
                a_h = []
                for i in range(n):
                    scores = [sum(q[i][c] * k[j][c] for c in ch) for j in range(n)]
                    g = softmax_exact(scores, sm.table.tolist(), sm.numerator)
                    a_h.append([quant(gj, sm.threshold, sm.neg_bound, sm.pos_bound) for gj in g])
                attn += flat(a_h)
                for i in range(n):
                    for c in ch:
                        ctx[i][c] = sum(a_h[i][j] * v[j][c] for j in range(n))
            thr = cx.thresholds_for(vit.dim).tolist()
            ctx = [
                [
                    quant(cx.weight * val, thr[c], cx.neg_bound, cx.pos_bound)
                    for c, val in enumerate(row)
                ]
                for row in ctx
            ]
            proj = linear(blk.proj, ctx)
            add(stream, blk.attn_residual, proj)
            n2 = norm(blk.norm2, stream)
            f1 = linear(blk.fc1, n2)
            f2 = linear(blk.fc2, f1)
            add(stream, blk.mlp_residual, f2)
            sites += [attn, flat(ctx), flat(proj), flat(n2), flat(f1), flat(f2)]
        nf = norm(vit.norm, stream)
        sites += [flat(nf), linear(vit.head, [nf[0]])[0]]
        samples.append(sites)
    return samples


@settings(max_examples=60, **SETTINGS)
@given(cases())
def test_integer_qann_matches_independent_python_integers(case):
    vit, x = case
    mine = integer_qann(vit, x).codes
    ref = independent_qann(vit, x)
    for k, site in enumerate(vit.sites):
        want = np.array([sample[k] for sample in ref], dtype=np.int64)
        np.testing.assert_array_equal(mine[k], want, err_msg=site.name)


# -- the integer non-linear functions ---------------------------------------------------------
@settings(max_examples=200, **SETTINGS)
@given(
    st.integers(1, 9).flatmap(
        lambda d: st.tuples(
            st.lists(st.integers(-3000, 3000), min_size=d, max_size=d),
            st.lists(st.integers(-2048, 2047), min_size=d, max_size=d),
            st.lists(st.integers(-500, 500), min_size=d, max_size=d),
            st.sampled_from([1, 2, 3, 4, 9, 16, 100, 12345]),
            st.integers(1, 4),
        )
    )
)
def test_layer_norm_equals_its_integer_definition(args):
    stream, gain, bias, eps, scale = args
    stream = [r * scale for r in stream]  # scaled copies repeat ratios: more exact ties
    got = layer_norm(torch.tensor([stream]), torch.tensor(gain), torch.tensor(bias), eps)
    assert got[0].tolist() == layer_norm_exact(stream, gain, bias, eps)


def test_layer_norm_ties_round_half_away_from_zero():
    # D = 2, R = (0, 1), eps = 3: W = 4, so gain·(±1)/2 is a tie for every odd gain
    for gain in range(-9, 10, 2):
        got = layer_norm(torch.tensor([[0, 1]]), torch.tensor([gain, gain]), torch.zeros(2), 3)
        half = math.floor(abs(gain) / 2 + 0.5)
        assert got[0].tolist() == [-half * np.sign(gain), half * np.sign(gain)]


@settings(max_examples=200, **SETTINGS)
@given(
    st.lists(st.integers(-2000, 2000), min_size=1, max_size=9),
    st.lists(st.integers(0, 2**16), min_size=1, max_size=40),
    st.integers(1, 2**16),
)
def test_softmax_equals_its_integer_definition(scores, table, numerator):
    table = sorted(table, reverse=True)
    table[0] = max(table[0], 1)
    got = softmax(torch.tensor([scores]), torch.tensor(table), numerator)
    assert got[0].tolist() == softmax_exact(scores, table, numerator)


# -- the spiking attention products (spec §3.5) ------------------------------------------------
@st.composite
def spike_trains(draw, shape: tuple[int, ...]):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.1, 0.5, 1.0]))
    s = rng.integers(-1, 2, shape) * (rng.random(shape) < density)
    return torch.from_numpy(s)


@settings(max_examples=150, **SETTINGS)
@given(
    st.tuples(st.integers(1, 20), st.integers(1, 5), st.integers(1, 5), st.integers(1, 8)).flatmap(
        lambda s: st.tuples(
            spike_trains((s[0], 2, s[1], s[3])),  # q [T, heads, n, d]
            spike_trains((s[0], 2, s[2], s[3])),  # k [T, heads, m, d]
            spike_trains((s[0], 2, s[1], s[2])),  # a [T, heads, n, m]
            spike_trains((s[0], 2, s[2], s[3])),  # v [T, heads, m, d]
        )
    )
)
def test_multi_and_multi1_telescope_exactly(trains):
    q, k, a, v = trains
    q_acc, k_acc, a_acc, v_acc = (s.cumsum(0) for s in (q, k, a, v))  # current step included
    steps = q.shape[0]
    scores = sum(multi(q[t], k[t], q_acc[t], k_acc[t]) for t in range(steps))
    context = sum(multi1(a[t], v[t], a_acc[t], v_acc[t]) for t in range(steps))
    assert torch.equal(scores, q_acc[-1] @ k_acc[-1].transpose(-1, -2))
    assert torch.equal(context, a_acc[-1] @ v_acc[-1])
    # and every partial sum is the product of the partial tracers
    for t in range(steps):
        partial = sum(multi(q[u], k[u], q_acc[u], k_acc[u]) for u in range(t + 1))
        assert torch.equal(partial, q_acc[t] @ k_acc[t].transpose(-1, -2))


# -- termination, cap, traces --------------------------------------------------------------------
def one_block_vit(**kw) -> VisionTransformer:
    """A hand-made 1-patch, 2-channel, 1-head transformer."""
    eye = np.eye(2, dtype=np.int64)

    def layer(w, bounds=(-8, 7), threshold=4):
        w = np.asarray(w, dtype=np.int64)
        return Layer(
            weight=w,
            bias=np.zeros(w.shape[0], int),
            threshold=threshold,
            neg_bound=bounds[0],
            pos_bound=bounds[1],
        )

    def norm():
        return LayerNorm(gain=[64, 64], bias=[0, 0], eps=1, threshold=16, neg_bound=-8, pos_bound=7)

    blk = Block(
        norm1=norm(),
        q=layer(eye),
        k=layer(eye),
        v=layer(eye),
        heads=1,
        softmax=Softmax(
            table=[64, 32, 16, 8], numerator=256, threshold=16, neg_bound=0, pos_bound=15
        ),
        context=Context(weight=1, threshold=4, neg_bound=-8, pos_bound=7),
        proj=layer(eye),
        attn_residual=1,
        norm2=norm(),
        fc1=layer(eye, bounds=(0, 15)),
        fc2=layer(eye),
        mlp_residual=1,
    )
    args = {
        "n_inputs": 2,
        "input_bounds": (0, 16),
        "patch_index": [[0, 1]],
        "embed": layer([[4, 0], [0, -4]]),
        "position": [[0, 0], [0, 0]],
        "embed_residual": 1,
        "blocks": (blk,),
        "norm": norm(),
        "head": layer(eye),
    }
    args.update(kw)
    return VisionTransformer(**args)


def test_step_cap_is_reported_never_silent():
    vit = one_block_vit()
    x = np.array([[16, 3], [0, 0]])
    full = simulate(vit, x)
    assert full.steps[0] > full.steps[1]
    cap = int(full.steps[0]) - 1
    with pytest.warns(StepCapWarning, match=rf"1 of 2 samples .* max_steps={cap} .* bound"):
        tr = simulate(vit, x, max_steps=cap)
    assert tr.capped.tolist() == [True, False]
    assert tr.steps.tolist() == [cap, int(full.steps[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not simulate(vit, x).capped.any()
    with pytest.raises(ValueError, match="max_steps must be a positive integer, not 0"):
        simulate(vit, x, max_steps=0)


def test_softmax_of_zero_scores_is_injected_at_t0():
    # an all-zero image still runs: softmax(0) is uniform, a non-zero t = 0 injection
    vit = one_block_vit()
    x = np.zeros((1, 2), dtype=np.int64)
    tr = simulate(vit, x)
    k = vit.site_names.index("blocks.0.attn")
    assert tr.spikes[k][0, 0].all() and tr.steps[0] > 1
    np.testing.assert_array_equal(tr.counts(k), integer_qann(vit, x).codes[k])


def test_per_sample_steps_not_held_back_by_batch_and_run_is_a_fixed_point():
    vit = one_block_vit()
    x = np.array([[0, 0], [1, 0], [16, 16]])
    tr = simulate(vit, x, record_state=True)
    for b in range(3):
        alone = simulate(vit, x[b : b + 1], record_state=True)
        assert alone.steps[0] == tr.steps[b]
        assert first_divergence(alone, tr.select(b)) is None
    # running longer than needed changes nothing
    longer = run(vit, x, max_steps=vit.step_bound() + 20)
    assert first_divergence(longer.trace, tr, fields=("spikes", "busy")) is None
    qann = integer_qann(vit, x)
    for key, value in qann.values.items():
        np.testing.assert_array_equal(longer.totals[key], value, err_msg=key)


def test_zero_delay_inside_a_step():
    # a chain responds within step 0 (spec §3.1, §7 vector 16): the embedding spikes, the stream
    # moves, norm1 spikes, and q integrates those norm1 spikes in the same step
    vit = one_block_vit()
    tr = simulate(vit, np.array([[16, 0]]), record_state=True)
    names = vit.site_names
    for name in ("embed", "blocks.0.norm1"):
        assert tr.spikes[names.index(name)][0, 0].any(), name
    q = names.index("blocks.0.q")
    assert (tr.membranes[q][0, 0] != vit.blocks[0].q.initial_membranes[0]).any()


# -- per-step drives: the golden stimulus and output of each core of the block ------------------
@settings(max_examples=20, **SETTINGS)  # the _many twin: 60 (slow)
@given(cases())
def test_recorded_step_drives_telescope_and_follow_the_exact_definitions(case):
    """``record_drives``: per step, each site's drive, each LayerNorm's stream increment and each
    block's score change. Their sums are the QANN's totals; the softmax and LayerNorm drives are
    differences of the Python-integer definitions applied to the accumulated inputs."""
    vit, x = case
    result = run(vit, x, record_drives=True)
    steps = result.steps
    assert steps is not None and len(steps) == int(result.trace.steps.max())
    plain = run(vit, x)
    assert first_divergence(plain.trace, result.trace) is None  # recording changes nothing
    for site in vit.sites:
        total = sum(s[f"{site.name}.drive"] for s in steps)
        np.testing.assert_array_equal(total, result.totals[f"{site.name}.drive"], site.name)
    for b, blk in enumerate(vit.blocks):
        p = f"blocks.{b}."
        scores = np.zeros_like(steps[0][p + "scores_step"])
        last = np.zeros_like(scores)
        table, n = [int(v) for v in blk.softmax.table], int(blk.softmax.numerator)
        for t, s in enumerate(steps):
            scores = scores + s[p + "scores_step"]
            g = np.array(
                [
                    softmax_exact([int(v) for v in row], table, n)
                    for row in scores.reshape(-1, vit.tokens)
                ]
            ).reshape(scores.shape)
            want = g - last if t == 0 or s[p + "scores_step"].any() else np.zeros_like(g)
            last = g if t == 0 or s[p + "scores_step"].any() else last
            got = s[p + "attn.drive"].reshape(scores.shape)
            np.testing.assert_array_equal(got, want, f"{p}attn step {t}")
        np.testing.assert_array_equal(scores, result.totals[p + "scores"])
    norms = [s for s in vit.sites if s.kind is SiteKind.LAYERNORM]
    assert norms
    for site in norms:
        stream = np.zeros_like(steps[0][f"{site.name}.increment"])
        last = np.zeros_like(stream)
        gain = [int(v) for v in site.op.gain]
        bias = [int(v) for v in site.op.bias]
        for t, s in enumerate(steps):
            stream = stream + s[f"{site.name}.increment"]
            g = np.array(
                [
                    layer_norm_exact([int(v) for v in tok], gain, bias, int(site.op.eps))
                    for tok in stream.reshape(-1, vit.dim)
                ]
            ).reshape(stream.shape)
            got = s[f"{site.name}.drive"]
            np.testing.assert_array_equal(got, g - last, f"{site.name} step {t}")
            last = g
        np.testing.assert_array_equal(stream, result.totals[f"{site.name}.stream"])


@pytest.mark.slow
@settings(max_examples=60, **SETTINGS)
@given(cases())
def test_recorded_step_drives_telescope_and_follow_the_exact_definitions_many(case):
    test_recorded_step_drives_telescope_and_follow_the_exact_definitions.hypothesis.inner_test(case)
