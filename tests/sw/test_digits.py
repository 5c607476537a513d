"""End to end on the digits: split, QAT, cache, conversion, integer QANN and the converged SNN."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from spikezip.ir import Network
from spikezip.sw import digits, qann
from spikezip.sw.convert import agreement, evaluate_float, to_network
from spikezip.sw.reference import integer_qann, simulate


# -- the split ---------------------------------------------------------------------------------
def test_split_is_fixed_stratified_and_integer() -> None:
    d = digits.load()
    assert d.x_train.shape == (1347, 64) and d.x_test.shape == (450, 64)
    assert d.y_train.shape == (1347,) and d.y_test.shape == (450,)
    for x in (d.x_train, d.x_test):
        assert x.dtype == np.int64 and x.min() == 0 and x.max() == 16
        assert not x.flags.writeable
    # stratified: every class holds a quarter of its images (±1) in the test set
    total = Counter(d.y_train.tolist()) + Counter(d.y_test.tolist())
    test = Counter(d.y_test.tolist())
    assert sorted(total) == list(range(10))
    for c, n in total.items():
        assert abs(test[c] - n * 0.25) <= 1
    # together the two halves are exactly the bundled data set
    from sklearn.datasets import load_digits

    full = load_digits()
    both = np.concatenate([np.c_[d.x_train, d.y_train], np.c_[d.x_test, d.y_test]])
    ref = np.c_[full.data.astype(np.int64), full.target]
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(ref, axis=0))
    assert len(both) == len(ref)
    again = digits.load()
    np.testing.assert_array_equal(again.x_test, d.x_test)
    np.testing.assert_array_equal(again.y_train, d.y_train)


def test_to_float_is_exact() -> None:
    x = np.arange(17).reshape(1, 17)
    f = digits.to_float(x)
    assert f.dtype == torch.float32
    assert f.numpy().tolist() == [[k / 16 for k in range(17)]]
    with pytest.raises(TypeError, match="pixels must be an integer array"):
        digits.to_float(x.astype(float))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"test_size": 0.0}, ValueError, "test_size must lie strictly between 0 and 1, not 0.0"),
        ({"test_size": 1}, ValueError, "test_size must lie strictly between 0 and 1"),
        ({"test_size": "0.25"}, TypeError, "test_size must be a float"),
        ({"random_state": 1.0}, TypeError, "random_state must be an integer, not 1.0"),
    ],
)
def test_split_validation(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        digits.load(**kwargs)


# -- configuration and cache -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hidden": (64, 0)}, ValueError, r"hidden\[1\] must be a positive integer, not 0"),
        ({"hidden": "64"}, TypeError, "hidden must be a sequence of integers"),
        ({"levels": 1}, ValueError, "levels must be an integer ≥ 2"),
        ({"output_levels": 15}, ValueError, "symmetric quantizer must be even"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer, not 0"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be a positive integer"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be positive"),
        ({"learning_rate": None}, TypeError, "learning_rate must be a number"),
        ({"weight_decay": -1e-3}, ValueError, "weight_decay must be ≥ 0"),
        ({"seed": 1.0}, TypeError, "seed must be an integer"),
    ],
)
def test_config_validation(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        qann.QannConfig(**kwargs)


def test_config_normalises_hidden_and_keys_differ() -> None:
    a = qann.QannConfig(hidden=[32, 16])
    assert a.hidden == (32, 16)
    assert a == qann.QannConfig(hidden=(32, 16))
    assert qann.cache_key(a) == qann.cache_key(qann.QannConfig(hidden=(32, 16)))
    assert qann.cache_key(a) != qann.cache_key(qann.QannConfig(hidden=(32, 17)))
    assert qann.cache_key(a) != qann.cache_key(qann.QannConfig(hidden=(32, 16), seed=1))


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SPIKEZIP_CACHE", str(tmp_path))
    assert qann.cache_dir() == tmp_path
    assert qann.cache_path(qann.QannConfig()).parent == tmp_path
    monkeypatch.delenv("SPIKEZIP_CACHE")
    assert qann.cache_dir().parts[-2:] == (".cache", "spikezip-hw")


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


SMALL = qann.QannConfig(hidden=(16,), epochs=2)


def test_training_is_deterministic_and_leaves_global_state_alone() -> None:
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    a = qann.train(SMALL)
    b = qann.train(SMALL)
    _assert_same(a, b)
    assert not a.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    c = qann.train(qann.QannConfig(hidden=(16,), epochs=2, seed=1))
    assert not np.array_equal(_state(a)["layers.0.weight"], _state(c)["layers.0.weight"])


def test_cache_round_trip_and_corrupt_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    trained = qann.load_or_train(SMALL, directory=tmp_path)
    path = qann.cache_path(SMALL, tmp_path)
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind

    def no_training(config: qann.QannConfig) -> qann.QannMLP:
        raise AssertionError("the cached model should have been loaded")

    monkeypatch.setattr(qann, "train", no_training)
    loaded = qann.load_or_train(SMALL, directory=tmp_path)
    _assert_same(trained, loaded)
    assert not loaded.training
    assert all(bool(q.initialized) for q in loaded.layers if hasattr(q, "initialized"))
    monkeypatch.undo()

    path.write_bytes(b"not a torch file")
    retrained = qann.load_or_train(SMALL, directory=tmp_path)  # unreadable: trained again
    _assert_same(trained, retrained)
    monkeypatch.setattr(qann, "train", no_training)
    _assert_same(trained, qann.load_or_train(SMALL, directory=tmp_path))  # and the file replaced


# -- the trained default model ----------------------------------------------------------------
@dataclass(frozen=True)
class Trained:
    model: qann.QannMLP
    seconds: float
    data: digits.Digits
    network: Network


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    directory = tmp_path_factory.mktemp("qann-cache")
    start = time.perf_counter()
    model = qann.load_or_train(qann.QannConfig(), directory=directory)
    seconds = time.perf_counter() - start
    return Trained(model, seconds, digits.load(), to_network(model, name="digits"))


def _acc(codes: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(codes, axis=1) == labels))


def test_default_architecture(trained: Trained) -> None:
    net = trained.network
    assert [(layer.n_in, layer.n_out) for layer in net.layers] == [(64, 64), (64, 10)]
    assert [(layer.neg_bound, layer.pos_bound) for layer in net.layers] == [(0, 15), (-8, 7)]
    assert net.input_bounds == (0, 16)
    scales = [digits.INPUT_SCALE] + [q.s.item() for q in trained.model.layers[1::2]]
    for k, layer in enumerate(net.layers):
        assert layer.weight.min() >= -128 and layer.weight.max() <= 127
        thr = layer.thresholds
        assert np.all(thr & (thr - 1) == 0)  # powers of two
        # Θ is maximal: at 2Θ some weight of every neuron leaves int8
        w = trained.model.layers[2 * k].weight.detach().double().numpy()
        doubled = np.floor(w * scales[k] / scales[k + 1] * (2 * thr[:, None]) + 0.5)
        assert np.all((doubled.max(axis=1) > 127) | (doubled.min(axis=1) < -128))


def test_accuracy_float_and_integer(trained: Trained) -> None:
    d = trained.data
    float_acc = _acc(evaluate_float(trained.model, d.x_test)[-1], d.y_test)
    int_acc = _acc(integer_qann(trained.network, d.x_test)[-1], d.y_test)
    print(
        f"\ntraining/loading {trained.seconds:.1f} s; test accuracy float QANN {float_acc:.4f}, "
        f"integer QANN {int_acc:.4f}"
    )
    assert float_acc >= 0.95
    assert int_acc >= 0.95
    assert qann.accuracy(trained.model, d.x_test, d.y_test) == float_acc


def test_float_and_integer_agree(trained: Trained) -> None:
    d = trained.data
    agree = agreement(trained.model, trained.network, d.x_test)
    print(f"\nfloat vs integer QANN on the test set: {agree}")
    assert agree.prediction >= 0.98
    assert min(agree.neurons) >= 0.9
    assert max(agree.max_difference) <= 2


def test_snn_converges_to_integer_qann(trained: Trained) -> None:
    d, net = trained.data, trained.network
    trace = simulate(net, d.x_test)
    qann_codes = integer_qann(net, d.x_test)
    assert not trace.capped.any()
    assert trace.batch == len(d.x_test)
    for k in range(net.depth):
        counts = trace.spikes[k].astype(np.int64).sum(axis=1)
        diff = np.argwhere(counts != qann_codes[k])
        assert diff.size == 0, f"layer {k}: first mismatch at (sample, neuron) {diff[0]}"
    snn_pred = np.argmax(trace.spikes[-1].astype(np.int64).sum(axis=1), axis=1)
    snn_acc = float(np.mean(snn_pred == d.y_test))
    assert snn_acc == _acc(qann_codes[-1], d.y_test)
    np.testing.assert_array_equal(snn_pred, np.argmax(qann_codes[-1], axis=1))
    steps = trace.steps
    assert steps.max() <= net.step_bound()
    print(
        f"\nSNN accuracy {snn_acc:.4f}; steps mean {steps.mean():.2f}, max {steps.max()} "
        f"(bound {net.step_bound()})"
    )
