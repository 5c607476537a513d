"""``spikezip digits --model cnn``, and ``trace``/``compare``/``info`` on a CNN file."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.cli import main
from spikezip.ir import Trace
from spikezip.ir.cnn import Add, ConvNet
from spikezip.ir.files import load_network
from spikezip.sw.cnn.reference import integer_qann, simulate
from tests.ir.test_cnn import small_cnn


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture
def files(tmp_path):
    small_cnn().save(tmp_path / "cnn.npz")
    x = np.random.default_rng(0).integers(0, 17, (3, 16))
    np.save(tmp_path / "x.npy", x)
    return tmp_path


def test_digits_cnn_writes_the_network_and_the_test_set(tmp_path, trained_cnn, monkeypatch, capsys):
    monkeypatch.setenv("SPIKEZIP_CACHE", str(trained_cnn.cache))
    assert run("digits", "--model", "cnn", "-o", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "digits-cnn.npz (7 sites: conv1, conv2, conv3, conv4, add, pool, fc" in out
    net = load_network(tmp_path / "out" / "digits-cnn.npz")
    assert isinstance(net, ConvNet) and net.name == "digits-cnn"
    x = np.load(tmp_path / "out" / "digits_inputs.npy")
    y = np.load(tmp_path / "out" / "digits_labels.npy")
    assert x.shape == (450, 64) and y.shape == (450,)
    assert np.mean(np.argmax(integer_qann(net, x)[-1], axis=1) == y) >= 0.985
    assert run("digits", "--model", "cnn", "--graded", "-o", tmp_path / "g") == 0
    graded = load_network(tmp_path / "g" / "digits-cnn.npz")
    assert {s.op.neuron for s in graded.sites} == {"graded"}
    capsys.readouterr()
    assert run("info", tmp_path / "g" / "digits-cnn.npz") == 0
    assert "graded neurons (spikes ±2^k): conv1 (K = None)" in capsys.readouterr().out


def test_trace_of_a_cnn_then_compare_and_info(files, capsys):
    net = ConvNet.load(files / "cnn.npz")
    assert run("trace", files / "cnn.npz", files / "x.npy", "-o", files / "g.npz", "--state") == 0
    out = capsys.readouterr().out
    assert f"3 samples, {net.depth} layers" in out and "energy/sample" in out
    tr = Trace.load(files / "g.npz")
    x = np.load(files / "x.npy")
    want = simulate(net, x, record_state=True)
    assert tr.layer_names == net.site_names and tr.network_digest == net.digest()
    for k in range(tr.depth):
        np.testing.assert_array_equal(tr.spikes[k], want.spikes[k])
    assert run("compare", files / "g.npz", files / "g.npz", "--network", files / "cnn.npz") == 0
    assert "identical: 3 samples" in capsys.readouterr().out
    assert run("info", files / "cnn.npz") == 0
    out = capsys.readouterr().out
    assert "cnn input 1×4×4" in out and "pool      maxpool2d  2       2×2×2" in out


def test_compare_names_channel_y_x(files, capsys):
    run("trace", files / "cnn.npz", files / "x.npy", "-o", files / "g.npz")
    tr = Trace.load(files / "g.npz")
    k = tr.layer_names.index("res")
    spikes = [s.copy() for s in tr.spikes]
    b, t, n = np.argwhere(spikes[k] != 0)[0]
    spikes[k][b, t, n] = 0
    Trace(
        network_digest=tr.network_digest,
        spikes=tuple(spikes),
        busy=tr.busy,
        steps=tr.steps,
        capped=tr.capped,
        layer_names=tr.layer_names,
    ).save(files / "hw.npz")
    capsys.readouterr()
    assert run("compare", files / "g.npz", files / "hw.npz", "--network", files / "cnn.npz") == 1
    out = capsys.readouterr().out
    c, y, x = np.unravel_index(n, (2, 4, 4))
    assert f"layer {k} (res), neuron {n} (channel {c}, y {y}, x {x}), time step {t}" in out


def test_baseline_refuses_a_cnn_in_one_line(files, capsys):
    assert run("baseline", files / "cnn.npz", files / "x.npy") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a convolutional network (ConvNet)" in err


def test_generate_and_report_a_cnn(files, capsys):
    """``generate`` writes the CNN top (one weight image per site, a max-pool's empty);
    ``report --no-synth`` gives the exact model's latency, utilization, SOPs and energy."""
    assert run("generate", files / "cnn.npz", "-o", files / "rtl", "--lanes", "2") == 0
    out = capsys.readouterr().out
    assert "lanes [2, 2, 2, 1, 2]" in out and "5 weight images" in out
    assert (files / "rtl" / "layer3.weights.hex").read_text() == ""  # the max-pool
    assert "module spikezip_net" in (files / "rtl" / "spikezip_net.v").read_text()
    x = files / "x.npy"
    assert run("report", files / "cnn.npz", "--inputs", x, "--no-synth", "-o", files / "r") == 0
    out = capsys.readouterr().out
    assert "(CNN, 5 sites, FIFOs: the FIFO plan)" in out
    assert "per image alone (exact CNN model, 3 samples" in out
    assert "resources and fmax: not evaluated (--no-synth)" in out
    assert (files / "r" / "report.json").is_file()


def test_balanced_lanes(files, capsys):
    """``--lanes balanced``: the lanes from the cores' work on the inputs (printed), the same
    for ``report`` (its ``--inputs``) and ``generate`` (``<network>_inputs.npy``); bad uses in
    one line."""
    from spikezip.hw.model.cnn_search import search_design

    net, x = ConvNet.load(files / "cnn.npz"), np.load(files / "x.npy")
    found = search_design(net, x, simulate(net, x), budget=6)
    want = found.lanes
    text = ",".join(map(str, want))
    argv = ["--inputs", files / "x.npy", "--no-synth", "-o", files / "r", "--lanes", "balanced=6"]
    assert run("report", files / "cnn.npz", *argv) == 0
    out, err = capsys.readouterr()
    assert f"--lanes balanced=6: {found.summary()} (work of 3 images of " in err
    assert f"P={text} (CNN, 5 sites" in out
    plan = ",".join(f"{n}={d}" for n, d in found.fifo_depths)
    assert (f"{len(found.fifo_depths)} set by name" in out) == bool(plan)
    # a FIFO plan given by hand is kept: the search leaves the FIFOs alone
    assert run("report", files / "cnn.npz", *argv, "--fifo-depths", "layer1_fifo=8") == 0
    out, err = capsys.readouterr()
    assert "FIFOs as given (not searched)" in err and "1 set by name" in out
    gen = ["generate", files / "cnn.npz", "-o", files / "rtl", "--lanes", "balanced=6"]
    assert run(*gen) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lanes balanced=6 measures the work on inputs: no " in err
    assert run(*gen, "--inputs", files / "x.npy") == 0
    assert f"lanes {list(want)}" in capsys.readouterr().out
    np.save(files / "cnn_inputs.npy", x)
    assert run(*gen) == 0  # the default inputs (over the same folder)
    assert f"lanes {list(want)}" in capsys.readouterr().out
    assert run("generate", files / "cnn.npz", "-o", files / "g2", "--inputs", files / "x.npy") == 2
    assert "--inputs sets the work of --lanes balanced" in capsys.readouterr().err
    for lanes, message in [
        ("balanced=3", "--lanes balanced=3: budget must be at least 4 lanes (one per site), not 3"),
        ("balanced=0", "--lanes must be balanced or balanced=N with N in 1..65536 (a CNN), not"),
        ("balanced=x", "--lanes must be balanced or balanced=N"),
        ("x", "--lanes must be P or P0,P1,… with each value in 1..65536, not 'x'"),
    ]:
        assert run("generate", files / "cnn.npz", "-o", files / "rtl2", "--lanes", lanes) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert run("sweep", files / "cnn.npz", "--inputs", files / "x.npy", "--lanes", "balanced") == 2
    assert "--lanes must be P or P0,P1,…" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fast"], "--fast is an MLP's preset (pipeline 3, lanes per layer); a CNN has none"),
        (["--lanes", "2,2"], "--lanes 2,2: lanes must hold 5 values (one per site), not 2"),
        (["--lanes", "3,2,2,1,2"], "lanes of site c1 must divide its 2 channels (one of [1, 2])"),
        (["--fifo-depths", "nope=4"], "--fifo-depths: names no FIFO of this CNN: nope"),
    ],
)
def test_bad_cnn_design_options_in_one_line(files, capsys, extra, message):
    assert run("generate", files / "cnn.npz", "-o", files / "rtl", *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (files / "rtl").exists()


def test_a_graph_the_top_does_not_build_in_one_line(files, capsys):
    net = small_cnn()
    two = ConvNet(
        input_shape=net.input_shape,
        input_bounds=net.input_bounds,
        layers=(
            net.layers[0],
            net.layers[0],
            Add(multipliers=(1, 1), threshold=1, neg_bound=0, pos_bound=1),
        ),
        sources=((-1,), (-1,), (0, 1)),
    )
    two.save(files / "two.npz")
    assert run("generate", files / "two.npz", "-o", files / "rtl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "the CNN top feeds the image to its first site only; c1, c1 read it" in err


@pytest.mark.slow
def test_simulate_and_compare_a_cnn(files, capsys):
    """``simulate`` (Icarus) writes the hardware trace in C order; ``compare`` finds it
    identical to ``trace``'s."""
    cnn, x = files / "cnn.npz", files / "x.npy"
    args = ("--sim", "icarus", "--build-dir", files / "b", "-q")
    assert run("simulate", cnn, x, "-o", files / "hw.npz", *args) == 0
    assert run("trace", cnn, x, "-o", files / "gold.npz") == 0
    capsys.readouterr()
    assert run("compare", files / "gold.npz", files / "hw.npz", "--network", cnn) == 0
    assert capsys.readouterr().out.startswith("identical: 3 samples, 5 layers")


def test_digits_cnn_channels_reach_the_config(tmp_path, monkeypatch, capsys):
    """``--channels`` is the ``CnnConfig`` the model is trained (here: built) with; the file has
    those shapes (training itself: tests/sw/test_cnn.py, bench/bench_cnn_lanes.py)."""
    import torch

    from spikezip.sw.cnn import model as cnn

    seen = []

    def build(config):
        seen.append(config)
        torch.manual_seed(0)
        return cnn.build(config)

    monkeypatch.setattr(cnn, "load_or_train", build)
    assert run("digits", "--model", "cnn", "--channels", "6,12,9", "-o", tmp_path / "o") == 0
    assert seen == [cnn.CnnConfig(channels=(6, 12, 9))]
    net = load_network(tmp_path / "o" / "digits-cnn.npz")
    assert [s.shape[0] for s in net.sites[:5]] == [6, 12, 9, 12, 12]
