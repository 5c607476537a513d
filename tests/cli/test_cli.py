"""The ``spikezip`` command line: outputs, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Layer, Network, Trace


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    l0 = Layer(
        weight=rng.integers(-20, 21, (6, 4)),
        bias=rng.integers(-5, 6, 6),
        threshold=9,
        neg_bound=0,
        pos_bound=15,
        name="fc1",
    )
    l1 = Layer(
        weight=rng.integers(-20, 21, (3, 6)),
        bias=[0, 0, 0],
        threshold=8,
        neg_bound=-8,
        pos_bound=7,
        name="fc2",
    )
    net = Network(layers=(l0, l1), n_inputs=4, encoding="analog", input_bounds=(0, 16))
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", rng.integers(0, 17, (5, 4)))
    return tmp_path


def run(*argv):
    return main([str(a) for a in argv])


def test_trace_then_compare_identical(files, capsys):
    assert run("trace", files / "net.npz", files / "x.npy", "-o", files / "g.npz", "--state") == 0
    out = capsys.readouterr().out
    assert "5 samples, 2 layers" in out and "energy/sample" in out
    tr = Trace.load(files / "g.npz")
    assert tr.batch == 5 and tr.membranes is not None
    assert run("compare", files / "g.npz", files / "g.npz", "--network", files / "net.npz") == 0
    assert "identical: 5 samples" in capsys.readouterr().out


def test_compare_names_the_first_divergence(files, capsys):
    run("trace", files / "net.npz", files / "x.npy", "-o", files / "g.npz")
    tr = Trace.load(files / "g.npz")
    spikes = [s.copy() for s in tr.spikes]
    b, t, n = np.argwhere(spikes[1] != 0)[0]
    spikes[1][b, t, n] = 0
    bad = Trace(
        network_digest=tr.network_digest,
        spikes=tuple(spikes),
        busy=tr.busy,
        steps=tr.steps,
        capped=tr.capped,
        layer_names=tr.layer_names,
    )
    bad.save(files / "hw.npz")
    capsys.readouterr()
    assert run("compare", files / "g.npz", files / "hw.npz") == 1
    out = capsys.readouterr().out
    assert f"sample {b}, layer 1 (fc2), neuron {n}, time step {t}" in out
    assert "expected" in out and "actual" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("trace", "missing.npz", "x.npy", "-o", "o.npz"), "missing.npz: no such file"),
        (("trace", "net.npz", "missing.npy", "-o", "o.npz"), "missing.npy: no such file"),
        (("trace", "x.npy", "x.npy", "-o", "o.npz"), "not a valid spikezip-network file"),
        (("trace", "net.npz", "wrong.npy", "-o", "o.npz"), r"shape \[batch, 4\]"),
        (("trace", "net.npz", "big.npy", "-o", "o.npz"), "outside input_bounds"),
        (("trace", "net.npz", "junk.npy", "-o", "o.npz"), "not a .npy/.npz array file"),
        (("compare", "net.npz", "net.npz"), "expected a spikezip-trace file"),
        (("info", "junk.npy"), "not a valid spikezip-network file"),
    ],
)
def test_errors_are_one_line_exit_2(files, capsys, argv, message):
    np.save(files / "wrong.npy", np.zeros((2, 3), dtype=int))
    np.save(files / "big.npy", np.full((1, 4), 99))
    (files / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    argv = [files / a if a.endswith((".npz", ".npy")) else a for a in argv]
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikezip: error: ")
    assert __import__("re").search(message, err), err
    assert not (files / "o.npz").exists()


def test_compare_rejects_traces_of_another_network(files, capsys):
    run("trace", files / "net.npz", files / "x.npy", "-o", files / "g.npz")
    other = Network.load(files / "net.npz")
    other = Network(layers=other.layers, n_inputs=4, encoding="analog", input_bounds=(0, 15))
    other.save(files / "other.npz")
    assert run("compare", files / "g.npz", files / "g.npz", "--network", files / "other.npz") == 2
    assert "digest mismatch" in capsys.readouterr().err


def test_info(files, capsys):
    assert run("info", files / "net.npz") == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "fc2" in out and Network.load(files / "net.npz").digest() in out


def test_console_script_exit_code(files):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikezip.cli",
            "trace",
            str(files / "nope.npz"),
            str(files / "x.npy"),
            "-o",
            str(files / "o.npz"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("nope.npz: no such file")
    assert "Traceback" not in proc.stderr
