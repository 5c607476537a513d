"""ViT operation counts (spec §4.5 with attention) against a brute-force count from the trace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.ir.transformer import SiteKind, VisionTransformer
from spikezip.sw.vit.energy import LAYERNORM_OPS, SOFTMAX_OPS, count_ops
from spikezip.sw.vit.reference import simulate
from tests.sw.test_vit_reference import one_block_vit
from tests.sw.vit_strategies import images, transformers

INPUTS = {"q": "norm1", "k": "norm1", "v": "norm1", "proj": "context", "fc1": "norm2", "fc2": "fc1"}


def brute_force(vit: VisionTransformer, spikes: dict[str, np.ndarray], b: int, t: int):
    """(ACs, non-linear ops) per site of sample ``b`` in step ``t``, by counting product terms."""
    n, d = vit.tokens, vit.dim
    acc = {k: v[b, : t + 1].sum(axis=0) for k, v in spikes.items()}  # tracers after step t
    now = {k: v[b, t] for k, v in spikes.items()}
    inc = np.zeros((n, d), dtype=np.int64)
    if t == 0:
        inc += vit.position
    inc[1:] += vit.embed_residual * now["embed"]
    feed = int(np.count_nonzero(now["embed"]))
    acs, nonlinear = {}, {}
    for s in vit.sites:
        p = f"blocks.{s.block}."
        a = nl = 0
        if s.kind is SiteKind.LINEAR and s.role == "head":
            a = int(np.count_nonzero(now["norm"][0])) * s.op.n_out
        elif s.kind is SiteKind.LINEAR and s.role != "embed":
            a = int(np.count_nonzero(now[p + INPUTS[s.role]])) * s.op.n_out
            blk = vit.blocks[s.block]
            if s.role in ("proj", "fc2"):
                inc += (blk.attn_residual if s.role == "proj" else blk.mlp_residual) * now[s.name]
                feed += int(np.count_nonzero(now[s.name]))
        elif s.kind is SiteKind.LAYERNORM:
            a = feed
            for i in range(n):
                if t == 0 or inc[i].any():
                    nl += LAYERNORM_OPS * d
        elif s.kind is SiteKind.SOFTMAX:
            blk = vit.blocks[s.block]
            q, k = now[p + "q"], now[p + "k"]
            qa, ka = acc[p + "q"], acc[p + "k"]
            for h in range(blk.heads):
                ch = range(h * blk.head_dim, (h + 1) * blk.head_dim)
                for i in range(n):
                    row = 0
                    for j in range(n):
                        score = 0  # the multi increment of score (i, j): its terms may cancel
                        for c in ch:
                            # the non-zero product terms of Qacc·kᵀ, q·Kaccᵀ and q·kᵀ
                            a += (qa[i, c] != 0) * (k[j, c] != 0)
                            a += (q[i, c] != 0) * (ka[j, c] != 0)
                            a += (q[i, c] != 0) * (k[j, c] != 0)
                            score += qa[i, c] * k[j, c] + q[i, c] * ka[j, c] - q[i, c] * k[j, c]
                        row += score != 0
                    if t == 0 or row:
                        nl += SOFTMAX_OPS * n
        elif s.kind is SiteKind.CONTEXT:
            blk = vit.blocks[s.block]
            att, aa = now[p + "attn"], acc[p + "attn"]
            v, va = now[p + "v"], acc[p + "v"]
            for h in range(blk.heads):
                for c in range(h * blk.head_dim, (h + 1) * blk.head_dim):
                    for i in range(n):
                        for j in range(n):
                            a += (aa[h, i, j] != 0) * (v[j, c] != 0)
                            a += (att[h, i, j] != 0) * (va[j, c] != 0)
                            a += (att[h, i, j] != 0) * (v[j, c] != 0)
        acs[s.name], nonlinear[s.name] = int(a), int(nl)
    return acs, nonlinear


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_counts_equal_a_brute_force_count(data):
    vit = data.draw(transformers(max_tokens=4, max_dim=4))
    x = data.draw(images(vit, max_batch=2))
    trace = simulate(vit, x)
    ops = count_ops(vit, trace, x)
    spikes = {
        s.name: trace.spikes[k].astype(np.int64).reshape(trace.batch, trace.n_steps, *s.shape)
        for k, s in enumerate(vit.sites)
    }
    for b in range(trace.batch):
        for t in range(trace.n_steps):
            acs, nonlinear = brute_force(vit, spikes, b, t)
            for k, s in enumerate(vit.sites):
                assert ops.acs[b, t, k] == acs[s.name], (s.name, b, t)
                assert ops.nonlinear[b, t, k] == nonlinear[s.name], (s.name, b, t)
    sizes = np.array([s.size for s in vit.sites])
    np.testing.assert_array_equal(ops.neuron_updates, trace.steps[:, None] * sizes[None])
    attn = [k for k, s in enumerate(vit.sites) if s.role in ("attn", "context")]
    np.testing.assert_array_equal(ops.attention_acs, ops.acs[:, :, attn].sum(axis=(1, 2)))


def test_fixed_counts_and_energy_by_hand():
    vit = one_block_vit()  # 1 patch of 2 pixels, 2 tokens, 2 channels, 1 head, hidden 2
    x = np.array([[16, 3]])
    trace = simulate(vit, x)
    ops = count_ops(vit, trace, x)
    names = vit.site_names
    assert ops.macs[0].tolist() == [1 * 2 * 2] + [0] * (len(names) - 1)  # embed, dense, t = 0
    assert ops.bias_acs[0].sum() == 0  # no biases, zero position
    # at t = 0 every LayerNorm token and every softmax row is evaluated once
    for name in ("blocks.0.norm1", "blocks.0.norm2", "norm"):
        assert ops.nonlinear[0, 0, names.index(name)] == LAYERNORM_OPS * 2 * 2
    assert ops.nonlinear[0, 0, names.index("blocks.0.attn")] == SOFTMAX_OPS * 2 * 2
    # the dense QANN: embed 4, q/k/v/proj/fc1/fc2 6·(2 tokens·2·2), QKᵀ and A·V 2·2·2·2,
    # 3 LayerNorms, one softmax, head 2·2
    assert ops.ann_macs == 4 + 6 * 8 + 16 + 3 * LAYERNORM_OPS * 4 + SOFTMAX_OPS * 4 + 4
    e = ops.energy_pj[0]
    acs = ops.acs[0].sum() + ops.bias_acs[0].sum()
    assert e == pytest.approx(0.9 * acs + 4.6 * (4 + ops.nonlinear[0].sum()))
    s = ops.summary()
    assert s["energy_ratio"] == pytest.approx(e / (4.6 * ops.ann_macs))
    assert s["steps_max"] == int(trace.steps[0])


def test_digest_and_batch_mismatch_are_errors():
    vit = one_block_vit()
    x = np.array([[16, 3]])
    trace = simulate(vit, x)
    other = one_block_vit(embed_residual=2)
    with pytest.raises(ValueError, match="digest mismatch"):
        count_ops(other, trace, x)
    with pytest.raises(ValueError, match="inputs hold 2 samples, the trace 1"):
        count_ops(vit, trace, np.array([[16, 3], [0, 0]]))


def test_chunking_does_not_change_the_counts():
    vit = one_block_vit()
    x = np.array([[16, 3], [0, 0], [5, 9]])
    trace = simulate(vit, x)
    whole, single = count_ops(vit, trace, x), count_ops(vit, trace, x, chunk=1)
    for field in ("acs", "nonlinear", "macs", "bias_acs", "neuron_updates", "spikes"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(single, field), err_msg=field)
    with pytest.raises(ValueError, match="chunk must be a positive integer, not 0"):
        count_ops(vit, trace, x, chunk=0)
