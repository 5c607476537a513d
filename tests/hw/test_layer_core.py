# amaranth: UnusedElaboratable=no
"""The layer core (``hw.cores.layer_core``): tier 1 (construction, ports, widths, Verilog) and tier
2 (the whole core in Amaranth's simulator against the golden trace and the cycle model).

Tier 3 (cocotb on Icarus and Verilator) is in ``tests/sim/test_layer_core.py``.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.neuron_array import Storage
from spikezip.hw.flow.verilog import BACKENDS, generate
from spikezip.hw.model import cycle_model, events
from spikezip.hw.model.cycle_model import PIPELINES
from spikezip.ir import Layer, Network
from spikezip.sw.reference import simulate
from tests.hw.layer_configs import network
from tests.hw.stream_bench import drive_stream, drive_timed
from tests.sw.strategies import inputs_for, networks

# -- tier 1 -------------------------------------------------------------------------------------


def _layer() -> Layer:
    return network("analog")[0].layers[0]


@pytest.mark.parametrize(("lanes", "words"), [(1, 12), (5, 3), (12, 1), (13, 1)])
@pytest.mark.parametrize(
    ("pipeline", "delays"),
    [(0, (10, 10, 6)), (1, (11, 11, 7)), (2, (15, 15, 11)), (3, (15, 15, 11))],
)
def test_facts(lanes: int, words: int, pipeline: int, delays: tuple) -> None:
    net, _ = network("analog")
    core = LayerCore.for_network(net, 0, lanes=lanes, pipeline=pipeline)
    assert core.layer is net.layers[0] and core.analog and core.input_bounds == (-7, 16)
    assert core.widths == net.widths[0]  # the IR's exact widths, not recomputed
    assert (core.lanes, core.words) == (lanes, words)
    slots = max(words, pipeline)
    assert core.cycles_per_event == core.sweep_cycles == core.init_cycles == slots
    assert (core.spike_delay, core.marker_delay, core.result_delay) == delays
    assert core.pipeline == core.timing.pipeline.depth == pipeline
    assert core.input_format == events.input_format(net, 0)
    assert core.output_format == events.output_format(net, 0)
    assert core.storage is (Storage.MEMORY if words > 4 else Storage.REGISTERS)
    assert core.weight_bits == 9 * words * lanes * net.widths[0].weight
    second = LayerCore.for_network(net, 1, lanes=lanes)
    assert not second.analog and second.input_bounds == (-8, 7)
    assert second.widths == net.widths[1]
    assert second.input_format.value_width == 2


@pytest.mark.parametrize("probe", [False, True])
def test_ports(probe: bool) -> None:
    net, _ = network("analog")
    core = LayerCore.for_network(net, 0, lanes=5, probe=probe)
    text = generate(core, "core")
    header = text[text.index("module core(") : text.index(");")]
    ports = {p.strip() for p in header[len("module core(") :].split(",")}
    expected = {"clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid", "o__ready"}
    expected |= {"o__payload"}
    if probe:
        expected |= {"probe__valid", "probe__word", "probe__state"}
    assert ports == expected
    assert f"input [{core.input_format.width - 1}:0] i__payload;" in text
    assert f"output [{core.output_format.width - 1}:0] o__payload;" in text


def test_bad_parameters() -> None:
    layer = _layer()
    good = {"layer": layer, "input_bounds": (0, 16), "analog": True, "lanes": 2}
    cases = [
        ({"lanes": 0}, ValueError, r"lanes must be a positive integer \(1 or more\), not 0"),
        ({"lanes": -1}, ValueError, r"lanes must be a positive integer \(1 or more\), not -1"),
        ({"lanes": 1.5}, ValueError, r"lanes must be a positive integer \(1 or more\), not 1.5"),
        ({"storage": "sram"}, ValueError, "storage must be one of 'registers', 'memory' or None"),
        ({"layer": None}, TypeError, "layer must be an ir.Layer, not NoneType"),
        ({"input_bounds": (3,)}, TypeError, "input_bounds must be a pair of integers"),
        ({"input_bounds": (5, 1)}, ValueError, r"input_bounds must satisfy lo ≤ hi, not \(5, 1\)"),
        ({"analog": 1}, TypeError, "analog must be a bool, not 1"),
        ({"probe": "yes"}, TypeError, "probe must be a bool, not 'yes'"),
        ({"row_input": 1}, TypeError, "row_input must be a bool, not 1"),
        ({"row_input": True}, ValueError, "row_input needs the two-entry input buffer"),
        (
            {"row_input": True, "pipeline": 3, "input_width": 2},
            ValueError,
            "row_input needs the two-entry input buffer",
        ),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            LayerCore(**{**good, **change})
    net, _ = network("analog")
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 1\], not 2"):
        LayerCore.for_network(net, 2, lanes=1)
    with pytest.raises(TypeError, match=r"network must be an ir\.Network, not Layer"):
        LayerCore.for_network(layer, 0, lanes=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_verilog_is_reproducible(backend: str) -> None:
    net, _ = network("spike")

    def text():
        return generate(LayerCore.for_network(net, 0, lanes=3, probe=True), "core", backend=backend)

    assert text() == text()


def test_generate_validation() -> None:
    core = LayerCore.for_network(network("spike")[0], 0, lanes=3)
    with pytest.raises(ValueError, match="backend must be one of 'proc', 'amaranth', not 'x'"):
        generate(core, "core", backend="x")
    with pytest.raises(ValueError, match="name must be a Verilog identifier, not '1core'"):
        generate(core, "1core")
    generate(core, "core")  # used


def test_no_port_aliased_to_itself() -> None:
    """Icarus runs ~100× slower when an output port's bits are assigned from the same port."""
    from tests.hw.verilog_checks import self_referential_assigns

    for name, layer_index, lanes in (("analog", 0, 4), ("analog", 1, 2), ("large", 0, 16)):
        core = LayerCore.for_network(network(name)[0], layer_index, lanes=lanes, probe=True)
        assert self_referential_assigns(generate(core, "core")) == []


# -- tier 2: the whole core in Amaranth's simulator ---------------------------------------------


def run_core(
    net: Network,
    x: np.ndarray,
    k: int,
    lanes: int,
    *,
    storage=None,
    seed=None,
    pipeline=1,
    **kwargs,
):
    """Drive layer ``k`` with its golden input; return output beats as (cycle, payload) and the
    expected payloads and model cycles. ``seed`` adds random idle input and output stalls."""
    trace = simulate(net, x, record_state=True)
    core = LayerCore.for_network(net, k, lanes=lanes, storage=storage, pipeline=pipeline, **kwargs)
    ins, outs = events.input_steps(net, x, trace, k), events.output_steps(trace, k)
    words = [w for inf in ins for s in inf for w in s.words(core.input_format)]
    expected = [w for inf in outs for s in inf for w in s.words(core.output_format)]
    sched = cycle_model.schedule(core.timing, ins, outs)
    cycles = [c for inf in sched for s in inf.steps for c in (*s.event_cycles, s.marker_cycle)]
    got = drive_stream(core, words, len(expected), limit=20 * (cycles[-1] + 10), seed=seed)
    return got, expected, cycles, core


@pytest.mark.parametrize(
    ("name", "k", "lanes", "storage"),
    [
        ("analog", 0, 1, None),  # W = 12, memory
        ("analog", 0, 5, "registers"),  # W = 3, last word padded
        ("analog", 0, 12, None),  # W = 1: every event hits the same word back to back
        ("analog", 1, 2, "memory"),
        ("spike", 0, 16, None),  # lanes > n_out
        ("bias_only", 0, 3, None),
    ],
)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_core_matches_golden_and_cycle_model(
    name: str, k: int, lanes: int, storage, pipeline: int
) -> None:
    net, x = network(name)
    got, expected, cycles, core = run_core(net, x, k, lanes, storage=storage, pipeline=pipeline)
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles


@pytest.mark.parametrize(
    ("name", "k", "lanes", "storage", "pipeline"),
    [
        # graded neurons (spikes ±2^k): analog in, graded out (8 levels), per-neuron Θ with
        # graded input; graded ±2^k input events, K = 1; 16 levels and a large Θ
        ("graded_analog", 0, 5, None, 1),
        ("graded_analog", 0, 12, None, 2),  # W 1: idle slots
        ("graded_analog", 1, 2, "memory", 3),
        ("graded_spike", 1, 1, None, 0),
        ("graded_spike", 0, 3, "memory", 1),
        ("graded_analog_k1", 1, 3, None, 2),
        ("graded_saturating", 1, 4, "registers", 3),
        ("graded_large", 0, 4, None, 1),
    ],
)
def test_graded_core_matches_golden_and_cycle_model(
    name: str, k: int, lanes: int, storage, pipeline: int
) -> None:
    """Graded neurons: output events carry ±2^k, graded input events shift the weights; the
    events and their cycles equal the reference and the cycle model."""
    net, x = network(name)
    got, expected, cycles, core = run_core(net, x, k, lanes, storage=storage, pipeline=pipeline)
    fmt = core.output_format
    assert fmt.value_width == core.layer.spike_max.bit_length() + 1
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles


#: the fmax switches of presets 2 and 3 one at a time (no cycle changes: the same model)
SWITCHED = {
    "p1+emitter": replace(cycle_model.Pipeline.preset(1), registered_emitter=True),
    "p1+bypass": replace(cycle_model.Pipeline.preset(1), bypassed_store=True),
    "p3-both": replace(
        cycle_model.Pipeline.preset(3), registered_emitter=False, bypassed_store=False
    ),
}


@pytest.mark.parametrize(
    ("name", "k", "lanes", "storage"),
    [
        ("analog", 0, 5, "registers"),
        pytest.param("analog", 1, 2, "memory", marks=pytest.mark.slow),
        pytest.param("analog", 0, 12, None, marks=pytest.mark.slow),  # W = 1
    ],
)
@pytest.mark.parametrize("pipeline", SWITCHED.values(), ids=SWITCHED.keys())
def test_fmax_switches_match_golden_and_cycle_model(
    name: str, k: int, lanes: int, storage, pipeline
) -> None:
    """``registered_emitter`` and ``bypassed_store`` alone (with preset 1's forwarding) and both off
    at preset 3: the same events in the same cycles as the model, which they do not change."""
    net, x = network(name)
    got, expected, cycles, core = run_core(net, x, k, lanes, storage=storage, pipeline=pipeline)
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles


@pytest.mark.parametrize(("name", "k", "lanes"), [("analog", 0, 1), ("analog", 1, 2)])
@pytest.mark.parametrize("pipeline", [2, 3])
def test_banked_weight_memory(name: str, k: int, lanes: int, pipeline: int) -> None:
    """Weights split into banks of 8 words (several banks, the last one partial): same output,
    same cycles as the model."""
    net, x = network(name)
    got, expected, cycles, core = run_core(net, x, k, lanes, pipeline=pipeline, weight_bank_depth=8)
    depth = core.layer.n_in * core.words
    assert depth > 2 * 8 and depth % 8 != 0  # three banks or more, the last one partial
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles


def test_weight_bank_depth_validation() -> None:
    net, _ = network("analog")
    for bad in (0, 1, 6, 8.0):
        with pytest.raises(ValueError, match="weight_bank_depth must be a power of two ≥ 2"):
            LayerCore.for_network(net, 0, lanes=2, weight_bank_depth=bad)


@pytest.mark.parametrize(("name", "k", "lanes"), [("analog", 0, 4), ("saturating", 1, 1)])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_core_under_backpressure(name: str, k: int, lanes: int, pipeline: int) -> None:
    net, x = network(name)
    got, expected, _, core = run_core(net, x, k, lanes, seed=lanes, pipeline=pipeline)
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]


@pytest.mark.parametrize(("pipeline", "entries"), [(1, 1), (3, 2)])
def test_input_taken_matches_cycle_model(pipeline: int, entries: int) -> None:
    """Input beats valid from random cycles and the output held back at random: the cycle the
    core takes each input beat (its ``i.ready`` handshake), its output beats and their cycles
    equal the cycle model's ``taken`` and schedule — with the one-beat input register and the
    two-entry buffer (``buffered_input``: a beat taken while the one before still waits)."""
    net, x = network("analog")
    trace = simulate(net, x, record_state=True)
    core = LayerCore.for_network(net, 1, lanes=2, pipeline=pipeline)
    assert core.timing.input_entries() == entries
    ins, outs = events.input_steps(net, x, trace, 1), events.output_steps(trace, 1)
    rng = np.random.default_rng(7)
    words, valid_from, arrivals, cycle = [], [], [], 0
    for inf in ins:
        arrivals.append([])
        for s in inf:
            step = s.words(core.input_format)
            # bursts (several beats valid at once: the second entry fills) and gaps
            cycle += int(rng.integers(0, 12))
            gaps = rng.choice([0, 0, 0, 1, 5], size=len(step))
            starts = (cycle + np.cumsum(gaps)).tolist()
            cycle = starts[-1]
            words += step
            valid_from += starts
            arrivals[-1].append(starts)
    expected = [w for inf in outs for s in inf for w in s.words(core.output_format)]
    ready = np.cumsum(rng.choice([0, 0, 1, 3], size=len(expected))).tolist()
    run = cycle_model.timed(core.timing, ins, outs, arrivals, None, ready)
    cycles = [c for inf in run.beats for ev, mk in inf for c in (*ev, mk)]
    taken, got = drive_timed(
        core, [(core.i, words, valid_from)], len(expected), ready, limit=20 * (cycles[-1] + 10)
    )
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles
    assert taken[0] == list(run.taken[0])
    # against a one-beat register: the same schedule, beats taken no later, with two entries
    # some earlier (the second entry filled)
    one = replace(core.timing, pipeline=replace(core.timing.pipeline, buffered_input=False))
    assert one.input_entries() == 1
    single = cycle_model.timed(one, ins, outs, arrivals, None, ready)
    assert single.beats == run.beats
    earlier = np.asarray(single.taken[0]) - np.asarray(run.taken[0])
    assert (earlier >= 0).all() and ((earlier > 0).sum() > 10) == (entries == 2)


def test_layer_configs_cover_the_corners() -> None:
    """The shared configurations really hit what they are meant to (guards against edits)."""
    from tests.hw.layer_configs import NETWORKS

    seen = set()
    for name in NETWORKS:
        net, x = network(name)
        trace = simulate(net, x, record_state=True)
        for k, layer in enumerate(net.layers):
            th = layer.thresholds
            seen |= {"theta1"} if (th == 1).any() else set()
            seen |= {"odd"} if ((th % 2 == 1) & (th > 1)).any() else set()
            seen |= {"even"} if (th % 2 == 0).any() else set()
            seen |= {"large"} if (th >= 4095).any() else set()
            seen |= {"sym" if layer.symmetric else "asym"}
            seen |= {"negative_w"} if (layer.weight < 0).any() else set()
            seen |= {"zero_w"} if (layer.weight == 0).any() else set()
            tr = trace.tracers[k]
            seen |= {"saturated"} if (tr == layer.pos_bound).any() else set()
            seen |= {"negative_spike"} if (trace.spikes[k] < 0).any() else set()
        seen |= {net.encoding.value}
    assert seen >= {"theta1", "odd", "even", "large", "sym", "asym", "negative_w", "zero_w"}
    assert seen >= {"saturated", "negative_spike", "analog", "spike"}


def test_verilog_files_in_tmp(tmp_path: Path) -> None:
    """Generation writes nothing into the working tree (the caller chooses the path)."""
    core = LayerCore.for_network(network("spike")[0], 1, lanes=2)
    (tmp_path / "core.v").write_text(generate(core, "core"))
    assert (tmp_path / "core.v").stat().st_size > 1000


# -- random graded layers (issue 14) -------------------------------------------------------------


@st.composite
def graded_layer_cases(draw, max_width: int = 16):
    """A random network (analog or spike input), a layer of it and a core geometry; the layer and
    the one before it are each graded (random K) three times in four, so the core sees every mix
    of ±1 and ±2^k input and output."""
    net = draw(networks(max_depth=3, max_width=max_width), label="network")
    k = draw(st.integers(0, net.depth - 1), label="layer")

    def kind(layer):
        if draw(st.sampled_from([True, True, True, False])):
            return replace(layer, neuron="graded", max_level=draw(st.none() | st.integers(0, 4)))
        return layer

    layers = list(net.layers)
    for j in {k - 1, k} - {-1}:
        layers[j] = kind(layers[j])
    net = replace(net, layers=tuple(layers))
    x = draw(inputs_for(net, max_batch=3, max_steps=4), label="inputs")
    lanes = draw(st.integers(1, net.layers[k].n_out + 2), label="lanes")
    pipeline = draw(st.sampled_from(PIPELINES), label="pipeline")
    storage = draw(st.sampled_from([None, "registers", "memory"]), label="storage")
    return net, x, k, lanes, pipeline, storage


def _graded_layer_run(case) -> None:
    net, x, k, lanes, pipeline, storage = case
    got, expected, cycles, core = run_core(net, x, k, lanes, storage=storage, pipeline=pipeline)
    fmt = core.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    assert [c for c, _ in got] == cycles


_RANDOM = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=12, **_RANDOM)  # the _many twin: 300 (slow)
@given(graded_layer_cases())
def test_random_graded_layers_match_golden_and_cycle_model(case) -> None:
    """Random graded layer cores (Amaranth's simulator): output events ±2^k and their cycles ==
    the reference's spikes and the cycle model."""
    _graded_layer_run(case)


@pytest.mark.slow
@settings(max_examples=300, **_RANDOM)
@given(graded_layer_cases(max_width=32))
def test_random_graded_layers_many(case) -> None:
    _graded_layer_run(case)
