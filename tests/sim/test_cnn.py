"""The whole CNN in RTL on Icarus and Verilator (tier 3): ``CnnCore`` generated to Verilog and
simulated by the network testbench; the hardware trace (one layer per site, C order) equal to the
reference's, every cycle the exact model's; a planted fault in one conv weight located by
``first_divergence`` at the site, (channel, y, x) and step where the reference of the faulty
network first differs; the trained digits CNN (``slow``: 3 images, then all 450)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikezip.hw.model.cnn_model import cnn_schedule
from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d
from spikezip.ir.compare import first_divergence
from spikezip.sim.simulate import Design, design, simulate
from spikezip.sw.cnn.reference import simulate as reference

pytestmark = pytest.mark.sim


def tiny_cnn(seed: int = 3, *, pool: bool = True) -> ConvNet:
    """The digits CNN's graph, small: conv 3×3 (2→4, 5×5) → conv 3×3 stride 2 (4→4, 3×3) →
    conv 3×3 (same) → merge with the stride-2 conv → max-pool 2 stride 1 → flatten → linear 3."""
    rng = np.random.default_rng(seed)
    n = dict(neg_bound=-1, pos_bound=3)

    def conv(c_in, c_out, stride=1):
        w = rng.integers(-3, 4, (c_out, c_in, 3, 3))
        return Conv2d(weight=w, bias=rng.integers(-2, 3, c_out), padding=1, stride=stride,
                      threshold=rng.integers(2, 5, c_out), **n)  # fmt: skip

    add = Add(multipliers=(1, 2), threshold=3, **n)
    last = MaxPool2d(kernel=2, stride=1) if pool else Flatten()
    fc = Layer(weight=rng.integers(-3, 4, (3, 16)), bias=[0, 1, -1], threshold=3, **n)
    layers = (conv(2, 4), conv(4, 4, 2), conv(4, 4), add, last, Flatten(), fc)
    sources = ((-1,), (0,), (1,), (2, 1), (3,), (4,), (5,))
    return ConvNet(input_shape=(2, 5, 5), input_bounds=(0, 8), layers=layers, sources=sources)


def images(net, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = net.input_bounds
    return np.random.default_rng(seed).integers(lo, hi + 1, (n, net.n_inputs))


def check_cycles(net, x, hw, golden, **knobs) -> None:
    """Every site's marker and spike cycles, every first input and done: the model's."""
    model = cnn_schedule(net, x, golden, **knobs)
    assert model.done.tolist() == hw.done.tolist()
    assert model.first_input.tolist() == hw.first_input.tolist()
    assert model.total_cycles == hw.total_cycles
    for k, site in enumerate(net.sites):
        for b in range(x.shape[0]):
            for t, (events, marker) in enumerate(model.site_steps(site.name, b)):
                assert hw.trace.step_cycles[k][b, t] == marker, (site.name, b, t)
                cycles = hw.trace.spike_cycles[k][b, t]
                assert sorted(cycles[cycles >= 0].tolist()) == sorted(events), (site.name, b, t)


@pytest.mark.slow  # (the planted fault's run is a fast tier-3 case of the same top on Icarus)
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_tiny_cnn_rtl_equals_reference(sim, tmp_path) -> None:
    net = tiny_cnn()
    x = images(net, 4)
    golden = reference(net, x)
    assert all(np.abs(s).sum() for s in golden.spikes), "a site that never spikes tests little"
    hw = simulate(net, x, sim=sim, lanes=2, root=tmp_path)
    assert len(hw.done) == 4 and hw.trace.layer_names == net.site_names
    assert first_divergence(golden, hw.trace) is None
    assert np.array_equal(hw.trace.steps, golden.steps)
    check_cycles(net, x, hw, golden, lanes=2)
    assert hw.final_counters.shape == (net.depth, 4)
    assert hw.final_counters[-1, 2] == golden.steps.sum()


def test_planted_conv_weight_fault_is_located(tmp_path) -> None:
    """The RTL of the tiny CNN with one conv weight changed, run as if it were the right one:
    the first divergence is the reference's own for that fault, at the faulty conv or after it,
    named by (channel, y, x), with a cycle stamp."""
    net = tiny_cnn()
    x = images(net, 4, seed=1)
    golden = reference(net, x)
    conv = net.layers[2]
    weight = np.array(conv.weight)
    weight[1, 2, 1, 1] += 3
    faulty = dataclasses.replace(
        net, layers=(*net.layers[:2], dataclasses.replace(conv, weight=weight), *net.layers[3:])
    )
    wrong = reference(faulty, x)
    expected = first_divergence(
        golden, dataclasses.replace(wrong, network_digest=golden.network_digest)
    )
    assert expected is not None, "the planted fault changes no spike; pick another"
    assert net.site_names[expected.layer] == "layer2"
    d = design(faulty, tmp_path, lanes=2)
    manifest = dataclasses.replace(
        d.manifest, network=dataclasses.replace(d.manifest.network, digest=net.digest())
    )
    hw = simulate(net, x, sim="icarus", design_dir=Design(d.directory, manifest))
    found = first_divergence(golden, hw.trace, describe=net.describe_neuron)
    assert found is not None
    assert (found.sample, found.layer, found.neuron, found.step) == (
        expected.sample,
        expected.layer,
        expected.neuron,
        expected.step,
    )
    assert found.cycle is not None and found.cycle > 0
    c, y, xx = np.unravel_index(found.neuron, net.sites[found.layer].shape)
    assert f"(channel {c}, y {y}, x {xx})" in str(found) and "layer2" in str(found)


#: session 18's recommended design of the digits CNN (12, 24, 36 channels): lanes in proportion
#: to the conv cores' work and the FIFOs that absorb their per-step swings (docs/cnn.md §14)
RECOMMENDED = {
    "lanes": (6, 3, 12, 12, 4, 1, 5),
    "fifo_depths": (("conv2_fifo0", 256), ("conv2_fifo1", 512), ("conv3_fifo", 512)),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "knobs", [{"lanes": 8}, RECOMMENDED, "searched"], ids=["8", "recommended", "searched"]
)
def test_digits_cnn_rtl_equals_reference(trained_cnn, tmp_path, knobs) -> None:
    """The trained digits CNN in Verilator, 3 test images back to back: bit-exact and in the
    exact model's cycles, at lanes 8, at session 18's recommended lanes and FIFOs, and at what
    ``--lanes balanced`` finds on the first 20 test images (``hw.model.cnn_search``; the whole
    test set: the next test)."""
    from spikezip.hw.model.design import DesignParams
    from spikezip.sw import digits
    from spikezip.sw.cnn.convert import to_convnet

    net = to_convnet(trained_cnn.model, name="digits-cnn")
    x = digits.load().x_test[:3]
    if knobs == "searched":
        from spikezip.hw.model.cnn_search import search_design
        from spikezip.sw.cnn.reference import simulate as snn

        first = digits.load().x_test[:20]
        found = search_design(net, first, snn(net, first))
        assert found.utilization >= 0.95
        knobs = {"lanes": found.lanes, "fifo_depths": found.fifo_depths}
    params = DesignParams.of(net, pipeline=1, **knobs)
    hw = simulate(net, x, params, sim="verilator", root=tmp_path)
    golden = reference(net, x)
    assert first_divergence(golden, hw.trace, describe=net.describe_neuron) is None
    check_cycles(net, x, hw, golden, params=params)


@pytest.mark.slow
def test_digits_cnn_whole_test_set(trained_cnn, tmp_path) -> None:
    """All 450 digits test images through the digits CNN in Verilator, back to back: QANN ==
    SNN == RTL at every site, step and busy flag, the predictions the reference's
    (docs/performance.md, "The whole CNN")."""
    from spikezip.sw import digits
    from spikezip.sw.cnn.convert import to_convnet
    from spikezip.sw.cnn.reference import integer_qann

    net = to_convnet(trained_cnn.model, name="digits-cnn")
    x = digits.load().x_test
    golden = reference(net, x)
    acts = integer_qann(net, x)
    assert all(
        np.array_equal(golden.counts(k), acts[k].reshape(len(x), -1)) for k in range(net.depth)
    )
    hw = simulate(net, x, sim="verilator", lanes=8, root=tmp_path)
    assert len(hw.done) == 450
    assert first_divergence(golden, hw.trace, describe=net.describe_neuron) is None
    assert np.array_equal(hw.trace.predictions(), golden.predictions())
