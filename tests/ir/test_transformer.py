"""The integer ViT description: validation messages, sites, step bound, files and digests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikezip.ir import FormatError, Layer, Network
from spikezip.ir.files import load_network, network_kind
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


def lin(n_in: int, n_out: int, *, bounds=(-8, 7), threshold=4, seed=0, name="") -> Layer:
    rng = np.random.default_rng(seed)
    return Layer(
        weight=rng.integers(-5, 6, (n_out, n_in)),
        bias=rng.integers(-3, 4, n_out),
        threshold=threshold,
        neg_bound=bounds[0],
        pos_bound=bounds[1],
        name=name,
    )


def norm(d: int, **kw) -> LayerNorm:
    args = {
        "gain": np.arange(1, d + 1) * 10,
        "bias": np.zeros(d, dtype=int),
        "eps": 5,
        "threshold": 16,
        "neg_bound": -8,
        "pos_bound": 7,
    }
    args.update(kw)
    return LayerNorm(**args)


def softmax_site(**kw) -> Softmax:
    args = {"table": [256, 100, 40, 10, 1], "numerator": 1000, "threshold": 64}
    args.update({"neg_bound": 0, "pos_bound": 15}, **kw)
    return Softmax(**args)


def block(d: int = 4, hidden: int = 6, heads: int = 2, **kw) -> Block:
    args = {
        "norm1": norm(d),
        "q": lin(d, d, seed=1),
        "k": lin(d, d, seed=2),
        "v": lin(d, d, seed=3),
        "heads": heads,
        "softmax": softmax_site(),
        "context": Context(weight=4, threshold=50, neg_bound=-8, pos_bound=7),
        "proj": lin(d, d, seed=4),
        "attn_residual": 3,
        "norm2": norm(d),
        "fc1": lin(d, hidden, bounds=(0, 15), seed=5),
        "fc2": lin(hidden, d, seed=6),
        "mlp_residual": -2,
    }
    args.update(kw)
    return Block(**args)


def vit(d: int = 4, depth: int = 1, **kw) -> VisionTransformer:
    args = {
        "n_inputs": 8,
        "input_bounds": (0, 16),
        "patch_index": [[0, 1], [2, 3], [4, 5]],
        "embed": lin(2, d, seed=7),
        "position": np.arange(4 * d).reshape(4, d) - 5,
        "embed_residual": 5,
        "blocks": tuple(block(d) for _ in range(depth)),
        "norm": norm(d),
        "head": lin(d, 3, seed=8),
        "name": "tiny",
    }
    args.update(kw)
    return VisionTransformer(**args)


# -- the integer non-linear functions, by hand -----------------------------------------------
def test_layer_norm_exact_by_hand():
    # D = 2, R = (0, 1): S = 1, Z = (-1, 1), V = 2·1 - 1 = 1; eps = 3 → W = 4, √W = 2
    # gain 1: |a|/2 = ½ exactly, a tie, rounded half away from zero
    assert layer_norm_exact([0, 1], [1, 1], [0, 0], 3) == [-1, 1]
    assert layer_norm_exact([0, 1], [3, 5], [10, -10], 3) == [10 - 2, -10 + 3]  # 1.5→2, 2.5→3
    # constant token: Z = 0 and V = 0, so G = bias (eps ≥ 1 keeps √W > 0)
    assert layer_norm_exact([7, 7, 7], [100, -100, 5], [1, 2, 3], 1) == [1, 2, 3]
    # against the float formula where no tie is near
    r, g = [3, -1, 4, 1, -5], [1000, -700, 300, 50, 2048]
    d, s = len(r), sum(r)
    w = d * sum(x * x for x in r) - s * s + 17
    want = [gi * (d * ri - s) / math.sqrt(w) for ri, gi in zip(r, g, strict=True)]
    assert layer_norm_exact(r, g, [0] * 5, 17) == [
        int(math.copysign(math.floor(abs(x) + 0.5), x)) for x in want
    ]


def test_softmax_exact_by_hand():
    # P = (5, 3, 5): gaps (0, 2, 0); E = (8, 2, 8), Σ = 18; G = floor((E·9 + 9)/18)
    assert softmax_exact([5, 3, 5], [8, 4, 2], 9) == [(72 + 9) // 18, (18 + 9) // 18, 4]
    # gaps beyond the table give 0
    assert softmax_exact([10, 0], [1, 1], 7) == [7, 0]
    # shift invariance
    assert softmax_exact([-3, -5, -3], [8, 4, 2], 9) == softmax_exact([5, 3, 5], [8, 4, 2], 9)


# -- sites, bound, ranges -----------------------------------------------------------------------
def test_sites_in_execution_order():
    v = vit(depth=2)
    names = v.site_names
    assert names[0] == "embed" and names[-2:] == ("norm", "head")
    roles = ["norm1", "q", "k", "v", "attn", "context", "proj", "norm2", "fc1", "fc2"]
    assert list(names[1:11]) == [f"blocks.0.{r}" for r in roles]
    assert list(names[11:21]) == [f"blocks.1.{r}" for r in roles]
    shapes = {s.name: s.shape for s in v.sites}
    assert shapes["embed"] == (3, 4)
    assert shapes["blocks.0.norm1"] == (4, 4)
    assert shapes["blocks.0.attn"] == (2, 4, 4)
    assert shapes["blocks.0.fc1"] == (4, 6)
    assert shapes["head"] == (3,)
    kinds = {s.name: s.kind for s in v.sites}
    assert kinds["blocks.1.attn"] is SiteKind.SOFTMAX and kinds["norm"] is SiteKind.LAYERNORM
    assert kinds["blocks.0.context"] is SiteKind.CONTEXT and kinds["head"] is SiteKind.LINEAR
    assert v.tokens == 4 and v.dim == 4 and v.depth == 2 and v.n_outputs == 3


def test_step_bound_is_the_longest_path():
    # every site has p - n = 15: embed + (norm1, q, attn, context, proj, norm2, fc1, fc2) per
    # block + norm + head, plus one idle step and the count from 0
    for depth in (1, 2, 3):
        assert vit(depth=depth).step_bound() == 15 * (1 + 8 * depth + 2) + 2
    # a slow v (63) outlasts q → attn (15 + 15): the context waits for v
    slow_v = block(v=lin(4, 4, bounds=(-32, 31)))
    assert vit(blocks=(slow_v,)).step_bound() == vit().step_bound() + (63 - 30)
    # a slow v shorter than q → attn does not lengthen the run
    assert vit(blocks=(block(v=lin(4, 4, bounds=(-8, 15))),)).step_bound() == vit().step_bound()
    # the attn site is on the longest path
    wide_attn = block(softmax=softmax_site(pos_bound=63))
    assert vit(blocks=(wide_attn,)).step_bound() == vit().step_bound() + (63 - 15)


def test_ranges_bound_the_stream_and_attention():
    v = vit()
    r = v.ranges
    pos = int(np.abs(v.position).max())
    assert r.stream[0] == pos + 5 * 8  # position + embed_residual · max|a_embed|
    assert r.stream[1] == r.stream[0] + 3 * 8  # + attn_residual · max|a_proj|
    assert r.stream[2] == r.stream[1] + 2 * 8  # + |mlp_residual| · max|a_fc2|
    assert r.scores == (2 * 8 * 8,)  # head_dim · M_q · M_k
    assert r.context == (4 * 15 * 8,)  # tokens · M_attn · M_v
    assert set(r.membrane) == set(v.site_names)
    assert all(1 <= w <= 62 for w in r.membrane_width.values())


# -- validation messages ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: norm(3, eps=0), ValueError, "eps must be a positive integer ≥ 1, not 0"),
        (lambda: norm(3, eps=1.5), TypeError, "eps must be a positive integer, not 1.5"),
        (lambda: norm(3, gain=[1.0, 2, 3]), TypeError, "gain must be an integer array"),
        (lambda: norm(3, bias=[1, 2]), ValueError, r"bias must have shape \(3,\) to match gain"),
        (lambda: norm(3, threshold=0), ValueError, "threshold must be a positive integer, not 0"),
        (lambda: norm(3, threshold=[1, 2]), ValueError, r"threshold must be an integer or have"),
        (lambda: norm(3, threshold=[1, 0, 2]), ValueError, r"not 0 \(channel 1\)"),
        (lambda: norm(3, neg_bound=1), ValueError, "neg_bound must be ≤ 0, not 1"),
        (lambda: norm(3, neg_bound=0, pos_bound=0), ValueError, "pos_bound - neg_bound must be"),
        (lambda: softmax_site(table=np.zeros(0, int)), ValueError, "table must hold at least one"),
        (lambda: softmax_site(table=[0, 0]), ValueError, r"table\[0\] must be a positive"),
        (lambda: softmax_site(table=[4, -1]), ValueError, "table entries must be ≥ 0"),
        (lambda: softmax_site(table=[4, 2, 3]), ValueError, r"table\[2\] > table\[1\]"),
        (lambda: softmax_site(numerator=0), ValueError, "numerator must be a positive integer"),
        (lambda: softmax_site(threshold=[1, 2]), TypeError, "threshold must be a positive"),
        (
            lambda: Context(weight=1.0, threshold=1, neg_bound=0, pos_bound=1),
            TypeError,
            "weight must be an integer, not 1.0",
        ),
        (lambda: block(heads=3), ValueError, "heads must divide the 4 channels, not 3"),
        (lambda: block(q=lin(4, 5)), ValueError, "q must map 4 → 4 channels, not 4 → 5"),
        (lambda: block(fc2=lin(5, 4)), ValueError, "fc2 must map 6 → 4 channels, not 5 → 4"),
        (lambda: block(norm2=norm(5)), ValueError, "norm2 has 5 channels but norm1 has 4"),
        (lambda: block(softmax=norm(4)), TypeError, "softmax must be a Softmax, not LayerNorm"),
        (
            lambda: block(context=Context(weight=1, threshold=[1, 2], neg_bound=0, pos_bound=1)),
            ValueError,
            r"context threshold must be an integer or have shape \(4,\)",
        ),
        (lambda: vit(patch_index=[[0, 8]]), ValueError, r"patch_index values must lie in \[0, 7\]"),
        (lambda: vit(position=np.zeros((3, 4), int)), ValueError, r"position must have shape"),
        (lambda: vit(blocks=()), ValueError, "blocks must hold at least one Block"),
        (lambda: vit(blocks=(norm(4),)), TypeError, r"blocks\[0\] must be a Block"),
        (lambda: vit(embed=lin(3, 4)), ValueError, "embed has 3 inputs but patches hold 2"),
        (lambda: vit(head=lin(5, 3)), ValueError, "head has 5 inputs but the stream has 4"),
        (lambda: vit(input_bounds=(3, 1)), ValueError, r"lo ≤ hi, not \(3, 1\)"),
        (lambda: vit(embed_residual=2.0), TypeError, "embed_residual must be an integer"),
        (
            lambda: vit(embed_residual=2**40),
            ValueError,
            r"blocks.0.norm1: the stream \(\|R\| ≤ 8796093022218\) .* exceed 62-bit integers",
        ),
    ],
)
def test_validation_messages(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_inputs_are_checked_like_analog_networks():
    v = vit()
    assert v.check_inputs(np.zeros((2, 8), dtype=int)).dtype == np.int64
    with pytest.raises(ValueError, match=r"shape \[batch, 8\]"):
        v.check_inputs(np.zeros((2, 7), dtype=int))
    with pytest.raises(ValueError, match=r"inputs\[1, 2\] = 17 is outside input_bounds \[0, 16\]"):
        v.check_inputs(np.array([[0] * 8, [0, 0, 17, 0, 0, 0, 0, 0]]))


# -- files and digests ----------------------------------------------------------------------------
def test_round_trips_and_digest(tmp_path):
    v = vit(depth=2, norm=norm(4, threshold=[1, 2, 3, 4]))
    again = VisionTransformer.from_dict(v.to_dict())
    assert again.digest() == v.digest()
    v.save(tmp_path / "vit.npz")
    loaded = VisionTransformer.load(tmp_path / "vit.npz")
    assert loaded.digest() == v.digest()
    assert loaded.to_dict() == v.to_dict()
    assert network_kind(tmp_path / "vit.npz") == "spikezip-transformer"
    assert isinstance(load_network(tmp_path / "vit.npz"), VisionTransformer)
    # every parameter enters the digest
    assert vit(embed_residual=6).digest() != vit().digest()
    assert vit(blocks=(block(softmax=softmax_site(numerator=999)),)).digest() != vit().digest()
    assert vit(norm=norm(4, eps=6)).digest() != vit().digest()
    assert vit(name="other").digest() != vit().digest()


def test_load_network_dispatches_on_kind(tmp_path):
    net = Network(layers=(lin(2, 3),), n_inputs=2, encoding="analog", input_bounds=(0, 4))
    net.save(tmp_path / "mlp.npz")
    assert network_kind(tmp_path / "mlp.npz") == "spikezip-network"
    assert isinstance(load_network(tmp_path / "mlp.npz"), Network)
    np.save(tmp_path / "bare.npy", np.zeros(3))
    assert network_kind(tmp_path / "bare.npy") is None
    with pytest.raises(FormatError, match="not a valid spikezip-network file"):
        load_network(tmp_path / "bare.npy")
    with pytest.raises(FormatError, match="no such file"):
        load_network(tmp_path / "missing.npz")
    with pytest.raises(FormatError, match="expected a spikezip-transformer file"):
        VisionTransformer.load(tmp_path / "mlp.npz")


def test_corrupt_transformer_file(tmp_path):
    from spikezip.ir._io import read_npz, write_npz

    vit().save(tmp_path / "vit.npz")
    meta, arrays = read_npz(tmp_path / "vit.npz", kind="spikezip-transformer")
    del arrays["position"]
    write_npz(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(FormatError, match="corrupt transformer file"):
        VisionTransformer.load(tmp_path / "bad.npz")
    meta["version"] = 99
    write_npz(tmp_path / "v99.npz", meta, arrays)
    with pytest.raises(FormatError, match="unsupported transformer format version 99"):
        VisionTransformer.load(tmp_path / "v99.npz")


def test_describe_neuron_names_coordinates() -> None:
    from tests.sw.vit_strategies import build_vit

    vit = build_vit(
        np.random.default_rng(0), patches=3, patch_size=2, n_inputs=6, dim=4, heads=2,
        hidden=4, depth=1,
    )  # fmt: skip
    names = vit.site_names
    assert vit.describe_neuron(names.index("embed"), 5) == "patch 1, channel 1"
    assert vit.describe_neuron(names.index("blocks.0.q"), 13) == "token 3, channel 1"
    # attn: (heads, tokens, tokens) = (2, 4, 4)
    assert vit.describe_neuron(names.index("blocks.0.attn"), 16 + 4 + 2) == (
        "head 1, query token 1, key token 2"
    )
    assert vit.describe_neuron(names.index("head"), 1) == "class 1"
