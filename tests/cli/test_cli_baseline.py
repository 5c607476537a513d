"""``spikezip baseline``: the ECMT table, and its one-line errors (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Layer, Network


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    layers = (
        Layer(
            weight=rng.integers(-6, 7, (6, 4)),
            bias=rng.integers(-5, 6, 6),
            threshold=5,
            neg_bound=0,
            pos_bound=15,
        ),
        Layer(
            weight=rng.integers(-6, 7, (3, 6)),
            bias=[0, 1, 2],
            threshold=4,
            neg_bound=-8,
            pos_bound=7,
        ),
    )
    Network(layers=layers, n_inputs=4, encoding="analog", input_bounds=(0, 16)).save(
        tmp_path / "net.npz"
    )
    Network(layers=layers, n_inputs=4, encoding="spike", input_bounds=(-1, 1)).save(
        tmp_path / "spike.npz"
    )
    np.save(tmp_path / "x.npy", rng.integers(0, 17, (20, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 20))
    np.save(tmp_path / "y_short.npy", rng.integers(0, 3, 19))
    np.save(tmp_path / "y_class.npy", np.full(20, 3))
    np.save(tmp_path / "y_float.npy", np.zeros(20))
    return tmp_path


def run(*argv):
    return main([str(a) for a in argv])


def test_table(files, capsys):
    assert run("baseline", files / "net.npz", files / "x.npy", "--labels", files / "y.npy") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "20 inputs" in lines[0] and "5 levels" in lines[0]
    assert lines[1].split()[:3] == ["model", "accuracy", "=="]
    names = [line[:22].strip() for line in lines[2:]]
    assert names == [
        "ECMT T=2",
        "ECMT T=4",
        "ECMT T=8",
        "ST-BIF (exact)",
        "graded K=∞ (exact)",
        "integer QANN",
    ]
    rows = {line[:22].strip(): line[22:].split() for line in lines[2:]}
    # columns: accuracy %, agreement %, steps mean, max, events
    qann = rows["integer QANN"]
    assert qann[1:] == ["%", "100.00", "%", "—", "—", "—"]
    for name in ("ST-BIF (exact)", "graded K=∞ (exact)"):  # exact: the QANN's predictions
        assert rows[name][:4] == qann[:4]
    assert rows["ECMT T=8"][4:6] == ["8.00", "8"]
    assert int(rows["graded K=∞ (exact)"][5]) <= int(rows["ST-BIF (exact)"][5])


def test_options(files, capsys):
    argv = ("baseline", files / "net.npz", files / "x.npy")
    assert run(*argv, "--steps", "1,16", "--levels", "3", "--max-level", "1") == 0
    out = capsys.readouterr().out
    assert "ECMT T=1 " in out and "ECMT T=16" in out and "graded K=1 (exact)" in out
    assert "3 levels" in out
    assert out.splitlines()[2][22:].split()[0] == "—"  # no labels: no accuracy


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--steps", "0"), "--steps must be an integer ≥ 1, not '0'"),
        (("--steps", "2,x"), "--steps must be an integer ≥ 1, not 'x'"),
        (("--steps", "70000"), "--steps must be integers in 1..65536, not 70000"),
        (("--levels", "0"), "--levels must be an integer ≥ 1, not '0'"),
        (("--levels", "33"), "--levels must be an integer in 1..32, not 33"),
        (("--max-level", "62"), "--max-level must be an integer in 0..61, not '62'"),
        (("--labels", "y_short.npy"), "one integer class per input (20 inputs)"),
        (("--labels", "y_float.npy"), "not an array of float64"),
        (("--labels", "y_class.npy"), "classes must lie in 0..2, not 3"),
        (("--labels", "none.npy"), "--labels"),
    ],
)
def test_bad_arguments(files, capsys, extra, message):
    extra = tuple(str(files / e) if e.endswith(".npy") else e for e in extra)
    assert run("baseline", files / "net.npz", files / "x.npy", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_network_and_inputs(files, capsys):
    assert run("baseline", files / "spike.npz", files / "x.npy") == 2
    assert "encoding is 'spike'" in capsys.readouterr().err
    np.save(files / "big.npy", np.full((2, 4), 17))
    assert run("baseline", files / "net.npz", files / "big.npy") == 2
    err = capsys.readouterr().err
    assert err.startswith("spikezip: error: INPUTS") and len(err.strip().splitlines()) == 1


def test_vit_table(tmp_path, capsys):
    from tests.sw.vit_strategies import build_vit

    rng = np.random.default_rng(11)
    vit = build_vit(rng, patches=3, patch_size=2, n_inputs=6, dim=4, heads=2, hidden=3, depth=1)
    vit.save(tmp_path / "vit.npz")
    np.save(tmp_path / "x.npy", rng.integers(0, 17, (6, 6)))
    np.save(tmp_path / "y.npy", rng.integers(0, vit.sites[-1].size, 6))
    argv = ("baseline", tmp_path / "vit.npz", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    assert run(*argv, "--steps", "1,3") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "6 inputs" in lines[0] and "a linear layer or a product" in lines[0]
    rows = {line[:22].strip(): line[22:].split() for line in lines[2:]}
    assert list(rows) == [
        "ECMT T=1",
        "ECMT T=3",
        "ST-BIF (exact)",
        "graded K=∞ (exact)",
        "integer QANN",
    ]
    for name in ("ST-BIF (exact)", "graded K=∞ (exact)"):
        assert rows[name][:4] == rows["integer QANN"][:4]
    np.save(tmp_path / "y_bad.npy", np.full(6, vit.sites[-1].size))
    assert run(*argv[:4], tmp_path / "y_bad.npy") == 2
    assert f"classes must lie in 0..{vit.sites[-1].size - 1}" in capsys.readouterr().err
