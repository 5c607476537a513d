"""``spikezip generate`` / ``simulate`` / ``compare`` on a small network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.hw.model.cycle_model import PIPELINES
from spikezip.ir import Layer, Network, Trace

BAD_PIPELINE = str(max(PIPELINES) + 1)  # the first depth that does not exist
VALID_PIPELINES = ", ".join(map(str, PIPELINES))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    l0 = Layer(
        weight=rng.integers(-40, 41, (6, 5)),
        bias=rng.integers(-9, 10, 6),
        threshold=17,
        neg_bound=0,
        pos_bound=7,
        name="fc1",
    )
    l1 = Layer(
        weight=rng.integers(-9, 10, (3, 6)),
        bias=[0, 3, 0],
        threshold=np.array([5, 6, 7]),
        neg_bound=-4,
        pos_bound=3,
        name="fc2",
    )
    net = Network(layers=(l0, l1), n_inputs=5, encoding="analog", input_bounds=(0, 16))
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", rng.integers(0, 17, (6, 5)))
    return tmp_path


def run(*argv):
    return main([str(a) for a in argv])


def test_generate_is_byte_identical_and_described(files, capsys):
    assert run("generate", files / "net.npz", "-o", files / "a", "--lanes", "4,2") == 0
    assert run("generate", files / "net.npz", "-o", files / "b", "--lanes", "4,2") == 0
    names = sorted(p.name for p in (files / "a").iterdir())
    assert names == ["layer0.weights.hex", "layer1.weights.hex", "manifest.json", "spikezip_net.v"]
    for name in names:
        assert (files / "a" / name).read_bytes() == (files / "b" / name).read_bytes(), name
    manifest = json.loads((files / "a" / "manifest.json").read_text())
    assert manifest["network"]["digest"] == Network.load(files / "net.npz").digest()
    assert manifest["parameters"]["lanes"] == [4, 2]
    ports = {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]}
    assert ports["done"] == ("out", 1) and ports["i__ready"] == ("out", 1)
    assert ports["i__valid"] == ("in", 1) and "probe" in ports
    assert (
        manifest["layers"][0]["widths"]["membrane"]
        == Network.load(files / "net.npz").widths[0].membrane
    )
    # the weight image holds the weights: word j·W + c, lane k = W[c·lanes + k, j]
    words = (files / "a" / "layer1.weights.hex").read_text().split()
    w = Network.load(files / "net.npz").layers[1].weight
    width = manifest["layers"][1]["widths"]["weight"]
    word = int(words[2 * 2 + 1], 16)  # input j = 2, word c = 1 of W = 2: neurons 2, 3 (padding)
    lane0 = word & ((1 << width) - 1)
    assert lane0 - (1 << width) * (lane0 >> (width - 1)) == w[2, 2]
    assert "spikezip_net.v" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("generate", "net.npz", "-o", "d", "--lanes", "0"),
            r"--lanes must be P or P0,P1,… with each value in 1\.\.65536, not '0'",
        ),
        (("generate", "net.npz", "-o", "d", "--lanes", "2,2,2"), "lanes must hold 2 values"),
        (("generate", "net.npz", "-o", "d", "--lanes", "x"), r"--lanes must be P or P0,P1"),
        (("generate", "missing.npz", "-o", "d"), "no such file"),
        (("simulate", "net.npz", "bad.npy", "-o", "h.npz"), r"shape \[batch, 5\]"),
        (
            ("generate", "net.npz", "-o", "d", "--pipeline", BAD_PIPELINE),
            f"--pipeline must be one of {VALID_PIPELINES}, not '{BAD_PIPELINE}'",
        ),
        (
            ("generate", "net.npz", "-o", "d", "--pipeline", "deep"),
            f"--pipeline must be one of {VALID_PIPELINES}, not 'deep'",
        ),
        (
            ("simulate", "net.npz", "x.npy", "-o", "h.npz", "--pipeline", BAD_PIPELINE),
            f"--pipeline must be one of {VALID_PIPELINES}, not '{BAD_PIPELINE}'",
        ),
        (
            ("report", "net.npz", "--inputs", "x.npy", "--pipeline", BAD_PIPELINE),
            f"--pipeline must be one of {VALID_PIPELINES}, not '{BAD_PIPELINE}'",
        ),
    ],
)
def test_errors(files, capsys, argv, message):
    np.save(files / "bad.npy", np.zeros((2, 7), dtype=int))
    argv = [files / a if a.endswith((".npz", ".npy")) or a == "d" else a for a in argv]
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(message, err), err
    if "--pipeline" in argv:
        assert "--pipeline" in err and VALID_PIPELINES in err  # the option and the valid values


def test_generate_records_the_pipeline(files, capsys):
    for depth in (0, 2):
        out = files / f"d{depth}"
        assert (
            run("generate", files / "net.npz", "-o", out, "--lanes", "3", "--pipeline", depth) == 0
        )
        assert f"pipeline {depth}" in capsys.readouterr().out
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["parameters"]["pipeline"] == depth
        assert [layer["pipeline"] for layer in manifest["layers"]] == [depth, depth]
        # pipeline 2 has an idle slot after each operation on a one-word layer (layer 1: W = 1)
        assert [layer["cycles_per_event"] for layer in manifest["layers"]] == (
            [2, 2] if depth == 2 else [2, 1]
        )
    a, b = ((files / f"d{d}" / "spikezip_net.v").read_text() for d in (0, 2))
    assert a != b


@pytest.mark.sim
@pytest.mark.parametrize(
    # pipeline 2 (slow): make test generates it in test_generate_records_the_pipeline
    ("sim", "pipeline"),
    [("icarus", 1), pytest.param("icarus", 2, marks=pytest.mark.slow)],
)
def test_simulate_then_compare(files, capsys, sim, pipeline):
    assert run("trace", files / "net.npz", files / "x.npy", "-o", files / "golden.npz") == 0
    assert (
        run(
            "simulate",
            files / "net.npz",
            files / "x.npy",
            "--sim",
            sim,
            "-q",
            "--lanes",
            "4",
            "--pipeline",
            pipeline,
            "--build-dir",
            files / "build",
            "-o",
            files / "hw.npz",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"6/6 inferences on {sim}" in out
    (built,) = (files / "build").iterdir()  # one design, of this pipeline depth
    assert json.loads((built / "manifest.json").read_text())["parameters"]["pipeline"] == pipeline
    hw = Trace.load(files / "hw.npz")
    assert hw.source == f"rtl:{sim}" and hw.step_cycles is not None
    assert run("compare", files / "golden.npz", files / "hw.npz") == 0
    assert "identical: 6 samples" in capsys.readouterr().out


def test_fast_preset(files, capsys):
    """``--fast``: pipeline 3 and the preset's lanes (here 6 and 3 neurons: 2 lanes leave layer 0
    three words, layer 1 keeps 1 lane), or the given ``--lanes``; a clash is one line, exit 2."""
    out = files / "fast"
    assert run("generate", files / "net.npz", "-o", out, "--fast") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["pipeline"] == 3
    assert manifest["parameters"]["lanes"] == [2, 1]
    assert run("generate", files / "net.npz", "-o", files / "f4", "--fast", "--lanes", "4") == 0
    manifest = json.loads((files / "f4" / "manifest.json").read_text())
    assert (manifest["parameters"]["pipeline"], manifest["parameters"]["lanes"]) == (3, [4, 3])
    capsys.readouterr()
    assert run("generate", files / "net.npz", "-o", files / "f1", "--fast", "--pipeline", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err == "spikezip: error: --fast sets --pipeline 3, not 1"
    assert not (files / "f1").exists()


def test_fast_lanes() -> None:
    from spikezip.hw.model.design import fast_lanes

    def net(*widths):
        layers, n_in = [], 4
        for n in widths:
            layers.append(
                Layer(
                    weight=np.ones((n, n_in), int),
                    bias=np.zeros(n, int),
                    threshold=4,
                    neg_bound=0,
                    pos_bound=3,
                )
            )
            n_in = n
        return Network(layers=tuple(layers), n_inputs=4, encoding="analog", input_bounds=(0, 3))

    assert fast_lanes(net(64, 10)) == (8, 4)  # the digits network
    assert fast_lanes(net(128, 17, 24, 2, 5)) == (8, 8, 8, 1, 2)  # 17 / 8 → 3 words
    assert fast_lanes(net(64, 10), most=6) == (4, 4)  # powers of two ≤ 6
