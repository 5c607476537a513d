"""The digits ViT end to end: QAT, cache, conversion, integer QANN == SNN, accuracy, energy.

The trained model is shared by the session (and by both xdist workers: the first one to get the
lock trains it into a temporary cache, the other loads it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from spikezip.ir.transformer import VisionTransformer
from spikezip.sw import digits
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import agreement, evaluate_float, to_transformer
from spikezip.sw.vit.energy import count_ops
from spikezip.sw.vit.reference import integer_qann, run

CHUNK = 150  # samples per SNN run (bounds the memory of the recorded spikes)


# -- configuration and cache -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"patch": 3}, ValueError, "patch must divide 8, not 3"),
        ({"patch": 0}, ValueError, "patch must be a positive integer, not 0"),
        ({"heads": 3}, ValueError, "heads must divide dim=32, not 3"),
        ({"levels": 15}, ValueError, "symmetric quantizer must be even"),
        ({"eps": 0.0}, ValueError, "eps must be positive"),
        ({"eps": "1e-6"}, TypeError, "eps must be a number"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be positive"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be ≥ 0"),
        ({"seed": 0.5}, TypeError, "seed must be an integer"),
        ({"depth": 1.0}, ValueError, "depth must be a positive integer, not 1.0"),
    ],
)
def test_config_validation(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        vit.VitConfig(**kwargs)


def test_patch_index_is_row_major_patches() -> None:
    idx = vit.patch_index(4)
    assert idx.shape == (4, 16)
    assert idx[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]
    assert sorted(vit.patch_index(2).ravel().tolist()) == list(range(64))


SMALL = vit.VitConfig(dim=8, hidden=8, depth=1, epochs=1, batch_size=256)


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_training_is_deterministic_and_cached(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    a = vit.load_or_train(SMALL, directory=tmp_path)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    path = vit.cache_path(SMALL, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    b = vit.train(SMALL)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)

    def no_training(config: vit.VitConfig) -> vit.QannViT:
        raise AssertionError("the cached model should have been loaded")

    monkeypatch.setattr(vit, "train", no_training)
    loaded = vit.load_or_train(SMALL, directory=tmp_path)
    assert _state(loaded).keys() == sa.keys()
    assert all(bool(m.initialized) for m in loaded.modules() if hasattr(m, "initialized"))
    monkeypatch.undo()
    path.write_bytes(b"junk")
    again = vit.load_or_train(SMALL, directory=tmp_path)  # unreadable: retrained, replaced
    np.testing.assert_array_equal(_state(again)["embed.weight"], sa["embed.weight"])
    assert vit.cache_key(SMALL) != vit.cache_key(vit.VitConfig(dim=8, hidden=8, depth=1))


def test_site_names_match_the_integer_network(tmp_path) -> None:
    model = vit.load_or_train(SMALL, directory=tmp_path)
    net = to_transformer(model)
    assert model.site_names == net.site_names
    codes = evaluate_float(model, digits.load().x_test[:5])
    assert [c.shape[1] for c in codes] == [s.size for s in net.sites]


def test_conversion_argument_errors(tmp_path) -> None:
    model = vit.load_or_train(SMALL, directory=tmp_path)
    with pytest.raises(ValueError, match=r"weight_bits must lie in \[2, 32\], not 1"):
        to_transformer(model, weight_bits=1)
    with pytest.raises(TypeError, match="stream_bits must be an integer"):
        to_transformer(model, stream_bits=2.0)
    with pytest.raises(TypeError, match=r"model must be a sw\.vit\.model\.QannViT"):
        to_transformer(torch.nn.Linear(2, 2))
    with torch.no_grad():
        model.embed.weight.mul_(1e6)  # a private copy, loaded from the cache file
    with pytest.raises(ValueError, match=r"site 'embed', channel \d+: a weight of .* needs more"):
        to_transformer(model)


# -- the trained default model ----------------------------------------------------------------
@dataclass(frozen=True)
class Trained:
    model: vit.QannViT
    seconds: float
    data: digits.Digits
    network: VisionTransformer


@pytest.fixture(scope="session")
def trained(trained_vit) -> Trained:
    model = trained_vit.model
    return Trained(
        model, trained_vit.seconds, digits.load(), to_transformer(model, name="digits-vit")
    )


def _acc(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels))


def test_default_architecture(trained: Trained) -> None:
    net = trained.network
    assert (net.tokens, net.dim, net.depth, net.patch_size) == (17, 32, 2, 4)
    assert all(blk.heads == 2 and blk.hidden == 64 for blk in net.blocks)
    for site in net.sites:
        assert site.pos_bound - site.neg_bound == 15  # L = 16 everywhere
        assert (site.neg_bound == 0) == (site.role in ("attn", "fc1"))  # asymmetric sites
    for layer in (net.embed, net.head, *(getattr(b, f) for b in net.blocks for f in "qkv")):
        assert layer.weight.min() >= -128 and layer.weight.max() <= 127
    for blk in net.blocks:
        w = blk.context.weight
        assert w & (w - 1) == 0  # a power of two: the context scaling is a shift


def test_accuracy_float_integer_and_snn(trained: Trained) -> None:
    d, net = trained.data, trained.network
    float_acc = vit.accuracy(trained.model, d.x_test, d.y_test)
    qann = integer_qann(net, d.x_test)
    int_acc = _acc(qann.predictions(), d.y_test)
    snn_pred, steps = [], []
    for i in range(0, len(d.x_test), CHUNK):
        x = d.x_test[i : i + CHUNK]
        result = run(net, x)
        trace, chunk = result.trace, integer_qann(net, x)
        assert not trace.capped.any()
        # converged SNN == integer QANN, exactly, at every site of every image
        for k, site in enumerate(net.sites):
            diff = np.argwhere(trace.counts(k) != chunk.codes[k])
            assert diff.size == 0, f"{site.name}: first mismatch at (sample, neuron) {diff[0]}"
        for key, value in chunk.values.items():
            np.testing.assert_array_equal(result.totals[key], value, err_msg=key)
        snn_pred.append(trace.predictions())
        steps.append(trace.steps)
    snn_pred, steps = np.concatenate(snn_pred), np.concatenate(steps)
    snn_acc = _acc(snn_pred, d.y_test)
    np.testing.assert_array_equal(snn_pred, qann.predictions())
    print(
        f"\ntraining/loading {trained.seconds:.1f} s; test accuracy float QANN {float_acc:.4f}, "
        f"integer QANN {int_acc:.4f}, SNN {snn_acc:.4f}; steps mean {steps.mean():.2f} max "
        f"{steps.max()} (bound {net.step_bound()})"
    )
    assert snn_acc == int_acc
    assert float_acc >= 0.9 and int_acc >= 0.9
    assert steps.max() <= net.step_bound()


def test_float_and_integer_agree(trained: Trained) -> None:
    d = trained.data
    agree = agreement(trained.model, trained.network, d.x_test)
    fine = agreement(
        trained.model,
        to_transformer(trained.model, weight_bits=16, gain_bits=16, stream_bits=12),
        d.x_test,
    )
    print(f"\nfloat vs integer QANN (an approximation; int8 weights): {agree}")
    print(f"same with 16-bit weights and gains, 12 stream bits: {fine}")
    assert agree.prediction >= 0.95
    assert agree.neurons[0] >= 0.95  # the embedding: int8 rounding only
    # the approximation converges with precision (the conversion itself is faithful); what
    # remains is the float model's own float32 rounding, amplified through the attention
    assert fine.prediction >= agree.prediction
    assert np.mean(fine.neurons) >= np.mean(agree.neurons) + 0.1
    assert min(fine.neurons) >= 0.85


def test_energy_with_attention_terms(trained: Trained) -> None:
    d, net = trained.data, trained.network
    x = d.x_test[:CHUNK]
    ops = count_ops(net, run(net, x).trace, x)
    s = ops.summary()
    print(
        "\nper image: steps mean {steps_mean:.2f} max {steps_max}; ACs {acs_mean:.0f} (attention "
        "{attention_acs_mean:.0f}), MACs {macs_mean:.0f}, LayerNorm/softmax ops "
        "{nonlinear_mean:.0f}, bias ACs {bias_acs_mean:.0f}; energy {energy_nj_mean:.1f} nJ vs "
        "dense QANN {ann_energy_nj:.1f} nJ (ratio {energy_ratio:.2f})".format(**s)
    )
    assert s["attention_acs_mean"] > 0 and s["nonlinear_mean"] > 0
    assert ops.macs[:, 0].tolist() == [16 * 4 * 32] * len(x)  # the analog embedding at t = 0
