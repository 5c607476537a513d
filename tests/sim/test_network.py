"""Whole-network RTL == integer reference, spike for spike, on Verilator and Icarus.

Also: a planted fault (one flipped weight bit in the generated memory) is located by the
comparison at the right layer, neuron and step; counters agree with the traces; several
inferences run back to back with no reset; random backpressure changes no spike.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from spikezip.hw.flow.generate import weight_words
from spikezip.ir import Layer, Network, Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim.simulate import Design, design, simulate
from spikezip.sw.reference import simulate as reference
from tests.sw.strategies import bounds_for

pytestmark = pytest.mark.sim


def random_network(
    seed: int,
    *,
    depth: int,
    max_width: int,
    encoding: str = "analog",
    neuron: str = "stbif",
    max_level: int | None = None,
) -> Network:
    """A random network whose neurons actually fire (thresholds scaled to the drive); with
    ``neuron="graded"`` every layer's neurons are graded (spikes ±2^k, ``k ≤ max_level``)."""
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(1, max_width + 1)) for _ in range(depth + 1)]
    widths[-1] = max(widths[-1], 2)
    layers, m_in = [], 16 if encoding == "analog" else 4
    for k in range(depth):
        levels = int(rng.choice([2, 4, 5, 8, 16]))
        sym = levels % 2 == 0 and bool(rng.integers(0, 2))  # odd levels: asymmetric only
        neg, pos = bounds_for(levels, sym)
        w = rng.integers(-127, 128, (widths[k + 1], widths[k]))
        w[rng.random(w.shape) < 0.2] = 0
        scale = max(1, int(np.abs(w).sum(axis=1).mean() * m_in / (2 * max(pos, 1))))
        threshold = (
            rng.integers(max(1, scale // 2), scale + 2, widths[k + 1])
            if rng.integers(0, 2)
            else int(scale)
        )
        bias = rng.integers(-scale, scale + 1, widths[k + 1]) * (rng.random(widths[k + 1]) < 0.5)
        layers.append(
            Layer(
                weight=w,
                bias=bias,
                threshold=threshold,
                neg_bound=neg,
                pos_bound=pos,
                name=f"fc{k}",
                neuron=neuron,
                max_level=max_level if neuron == "graded" else None,
            )
        )
        m_in = max(pos, -neg)
    bounds = (0, 16) if encoding == "analog" else (-4, 4)
    return Network(
        layers=tuple(layers),
        n_inputs=widths[0],
        encoding=encoding,
        input_bounds=bounds,
        name=f"random{seed}",
    )


def random_inputs(network: Network, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = network.input_bounds
    if network.encoding.value == "analog":
        x = rng.integers(lo, hi + 1, (batch, network.n_inputs))
        return x * (rng.random(x.shape) < 0.6)
    steps = 6
    x = np.zeros((batch, steps, network.n_inputs), dtype=np.int64)
    run = np.zeros((batch, network.n_inputs), dtype=np.int64)
    for t in range(steps):
        s = rng.integers(-1, 2, (batch, network.n_inputs))
        s[(run + s < lo) | (run + s > hi)] = 0
        x[:, t], run = s, run + s
    return x


def fit_lanes(network: Network, lanes):
    """``lanes`` capped at each layer's neuron count (one value: the widest layer's): more lanes
    than neurons are refused (:func:`hw.model.design.resolve_lanes`)."""
    if isinstance(lanes, int):
        return min(lanes, max(layer.n_out for layer in network.layers))
    return tuple(min(p, layer.n_out) for p, layer in zip(lanes, network.layers, strict=True))


def assert_equal_traces(golden: Trace, hw: Trace) -> None:
    div = first_divergence(golden, hw)
    assert div is None, f"\n{div}"


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("designs")


# -- digits -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    # make test: Icarus; Verilator runs random networks below (and the whole test set, slow)
    ("sim", "images"),
    [pytest.param("verilator", 60, marks=pytest.mark.slow), ("icarus", 4)],
)
def test_digits_rtl_equals_reference(digits_network, digits_data, builds, sim, images):
    x = digits_data.x_test[:images]
    golden = reference(digits_network, x)
    run = simulate(digits_network, x, sim=sim, lanes=8, root=builds)
    assert_equal_traces(golden, run.trace)
    assert len(run.done) == images and (np.diff(run.done) > 0).all()
    # counters: the batch's totals for every layer, per inference for the last layer
    per, total = run.per_inference_counters, run.final_counters
    for k in range(digits_network.depth):
        spikes = (golden.spikes[k] != 0).sum(axis=(1, 2))
        steps = 1 + np.argmax(~golden.busy[:, :, k], axis=1)
        events = (x != 0).sum(axis=1) if k == 0 else (golden.spikes[k - 1] != 0).sum(axis=(1, 2))
        assert total[k, :3].tolist() == [events.sum(), spikes.sum(), steps.sum()], f"layer {k}"
    assert per[:, -1, 1].tolist() == spikes.tolist()
    assert per[:, -1, 2].tolist() == golden.steps.tolist()
    assert total[-1, 3] == 0  # nothing stalls the last layer with ready = 1


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_digits_whole_test_set(digits_network, digits_data, builds, sim):
    x = digits_data.x_test if sim == "verilator" else digits_data.x_test[:60]
    run = simulate(digits_network, x, sim=sim, lanes=8, root=builds)
    assert_equal_traces(reference(digits_network, x), run.trace)


# -- random networks --------------------------------------------------------------------------
RANDOM = [
    # (seed, depth, max width, lanes, encoding, simulator)
    # analog on Icarus (slow): make test runs the digits network there
    pytest.param(1, 3, 12, 3, "analog", "icarus", marks=pytest.mark.slow),
    (2, 3, 16, 4, "spike", "icarus"),
    (3, 4, 24, (5, 1, 8, 2), "analog", "verilator"),  # its build serves the backpressure test
    pytest.param(4, 3, 20, 16, "spike", "verilator", marks=pytest.mark.slow),
]
SLOW_RANDOM = [
    (11, 3, 128, 8, "analog", "verilator"),
    (12, 5, 64, 7, "spike", "verilator"),
    (13, 6, 128, 16, "analog", "verilator"),
    (14, 3, 48, 9, "analog", "icarus"),
    (15, 4, 32, 1, "spike", "icarus"),
]


def _random_case(builds, net_seed, depth, width, lanes, encoding, sim, batch, **kw):
    net = random_network(net_seed, depth=depth, max_width=width, encoding=encoding)
    x = random_inputs(net, batch, net_seed + 100)
    run = simulate(net, x, sim=sim, lanes=fit_lanes(net, lanes), root=builds, **kw)
    assert_equal_traces(reference(net, x), run.trace)
    return run


@pytest.mark.parametrize(("seed", "depth", "width", "lanes", "encoding", "sim"), RANDOM)
def test_random_network_rtl_equals_reference(builds, seed, depth, width, lanes, encoding, sim):
    _random_case(builds, seed, depth, width, lanes, encoding, sim, batch=8)


#: graded neurons in every layer: ±2^k events between the layers, shifts in the accumulators
GRADED_RANDOM = [
    # (seed, depth, max width, lanes, encoding, simulator, K)
    (21, 3, 16, 4, "analog", "icarus", None),
    # Verilator in make test: the graded layer core (tests/sim/test_layer_core.py FAST)
    pytest.param(22, 3, 24, (5, 1, 8), "spike", "verilator", None, marks=pytest.mark.slow),
    pytest.param(23, 4, 32, 3, "analog", "icarus", 1, marks=pytest.mark.slow),
    pytest.param(24, 4, 64, 8, "analog", "verilator", None, marks=pytest.mark.slow),
    pytest.param(25, 5, 48, (7, 2, 16, 1, 4), "spike", "verilator", 2, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("seed", "depth", "width", "lanes", "encoding", "sim", "k"), GRADED_RANDOM)
def test_random_graded_network_rtl_equals_reference(
    builds, seed, depth, width, lanes, encoding, sim, k
):
    net = random_network(
        seed, depth=depth, max_width=width, encoding=encoding, neuron="graded", max_level=k
    )
    x = random_inputs(net, 8, seed + 100)
    golden = reference(net, x)
    # the case is graded for real: spikes beyond ±1 between the layers
    assert max(int(np.abs(s).max()) for s in golden.spikes[:-1]) > 1
    run = simulate(net, x, sim=sim, lanes=fit_lanes(net, lanes), root=builds)
    assert_equal_traces(golden, run.trace)


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "depth", "width", "lanes", "encoding", "sim"), SLOW_RANDOM)
def test_random_network_slow(builds, seed, depth, width, lanes, encoding, sim):
    _random_case(builds, seed, depth, width, lanes, encoding, sim, batch=24)


def test_backpressure_and_idle_input_change_no_spike(builds):
    run = _random_case(
        builds, 3, 4, 24, (5, 1, 8, 2), "analog", "verilator", batch=8, valid=0.6, ready=0.5, seed=7
    )
    assert run.final_counters[-1, 3] > 0  # the output really was stalled


# -- a planted fault ---------------------------------------------------------------------------
def flip_weight_bit(verilog: str, toplevel: str, layer: int, address: int, bit: int) -> str:
    """Flip one bit of word ``address`` of layer ``layer``'s weight memory in the Verilog text."""
    start = verilog.index(f"module \\{toplevel}.layer{layer}.synapses.weight_read ")
    end = verilog.index("endmodule", start)
    body = verilog[start:end]
    pattern = re.compile(rf"weights\[{address}\] = (\d+)'([hd])([0-9a-f]+);")
    match = pattern.search(body)
    assert match, f"no initialiser of word {address} in layer {layer}'s weight memory"
    width, base = int(match.group(1)), 16 if match.group(2) == "h" else 10
    value = int(match.group(3), base) ^ (1 << bit)
    new = f"weights[{address}] = {width}'h{value:0{-(-width // 4)}x};"
    return verilog[:start] + body[: match.start()] + new + body[match.end() :] + verilog[end:]


def test_planted_weight_fault_is_located(digits_network, digits_data, builds, tmp_path):
    net, x = digits_network, digits_data.x_test[:3]
    k, neuron, j, lanes = 1, 3, int(np.flatnonzero(x[0])[0]), 4
    # choose an input neuron of layer 0 that spikes for sample 0, so the weight is used
    golden = reference(net, x)
    j = int(np.flatnonzero(golden.spikes[0][0].any(axis=0))[0])
    width = net.widths[k].weight
    bit = width - 2  # a high bit: the change is large enough to alter a spike
    # the expected location, from the reference of the same fault planted in the IR
    w = np.array(net.layers[k].weight)
    raw = int(w[neuron, j]) & ((1 << width) - 1) ^ (1 << bit)
    w[neuron, j] = raw - (1 << width) if raw >> (width - 1) else raw
    layers = list(net.layers)
    old = layers[k]
    layers[k] = Layer(
        weight=w,
        bias=old.bias,
        threshold=old.threshold,
        neg_bound=old.neg_bound,
        pos_bound=old.pos_bound,
        name=old.name,
    )
    faulty_net = Network(
        layers=tuple(layers),
        n_inputs=net.n_inputs,
        encoding=net.encoding,
        input_bounds=net.input_bounds,
        name=net.name,
    )
    faulty_ref = reference(faulty_net, x)
    expected = first_divergence(
        golden,
        Trace(
            network_digest=golden.network_digest,
            spikes=faulty_ref.spikes,
            busy=faulty_ref.busy,
            steps=faulty_ref.steps,
            capped=faulty_ref.capped,
            layer_names=faulty_ref.layer_names,
        ),
    )
    assert expected is not None, "the planted fault changes no spike; pick another bit"
    # plant the same fault in the generated Verilog of the correct network
    d = design(net, tmp_path, lanes=lanes)
    words = weight_words(net.layers[k], lanes)
    address, lane = j * words.shape[0] // net.layers[k].n_in + neuron // lanes, neuron % lanes
    assert words[address, lane] == net.layers[k].weight[neuron, j]
    text = d.verilog.read_text()
    d.verilog.write_text(flip_weight_bit(text, d.toplevel, k, address, lane * width + bit))
    run = simulate(net, x, sim="icarus", design_dir=Design(d.directory, d.manifest))
    found = first_divergence(golden, run.trace)
    assert found is not None
    assert (found.sample, found.layer, found.neuron, found.step) == (
        expected.sample,
        expected.layer,
        expected.neuron,
        expected.step,
    )
    assert found.cycle is not None and found.cycle > 0
    assert f"layer {k} ({net.layer_name(k)}), neuron {expected.neuron}" in str(found)
