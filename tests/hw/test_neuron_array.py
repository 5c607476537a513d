# amaranth: UnusedElaboratable=no
"""The ST-BIF neuron array (``hw.cores.neuron_array``): tiers 1 (no simulator), 2 (Amaranth's
simulator) and 3 (cocotb on the generated Verilog, Icarus and Verilator)."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layouts import Op, state_layout
from spikezip.hw.cores.neuron_array import (
    REGISTER_WORDS_MAX,
    NeuronArray,
    NeuronArrayTop,
    NeuronLanes,
    StateStore,
    Storage,
    WordConstants,
    default_storage,
    levels,
)
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model.cycle_model import PIPELINES, LayerTiming, Pipeline
from spikezip.ir import Layer, Network
from spikezip.sw.reference import graded_step, stbif_step

STORAGES = [s.value for s in Storage]
_P1 = Pipeline.preset(1)


def _layer(n_out=1, threshold=4, bias=0, neg=-8, pos=7, n_in=1) -> Layer:
    return Layer(
        weight=np.ones((n_out, n_in), dtype=np.int64),
        bias=np.full(n_out, bias, dtype=np.int64),
        threshold=threshold,
        neg_bound=neg,
        pos_bound=pos,
    )


def _array(layer: Layer, lanes: int, storage=None, drive_max=100, pipeline=1) -> NeuronArray:
    widths = layer.widths(-drive_max, drive_max, analog=True)
    timing = LayerTiming(n_out=layer.n_out, lanes=lanes, pipeline=pipeline)
    return NeuronArray(layer=layer, widths=widths, timing=timing, storage=storage)


def _timing(arr: NeuronArray) -> LayerTiming:
    """The array's latency and same-word distance as the layer core (and its model) use them."""
    return arr.timing


def _issue(arr: NeuronArray, cmds, on_output):
    """A testbench issuing ``(op, word, drive, last)`` commands, each as early as the array's
    same-word distance allows, then idling until every result is out: ``on_output(ctx, sent)``
    is called for every fired word with the cycle of its command, which must be
    ``array_latency`` cycles earlier."""
    timing = _timing(arr)
    lanes, latency, distance = arr.lanes, timing.array_latency, timing.min_distance

    async def testbench(ctx):
        last_sent = {}  # word → cycle of its last command
        queue, cycle, expect = list(cmds), 0, []  # expect: cycles of the FIRE commands in flight
        while queue or expect:
            ctx.set(arr.i.valid, 0)
            if queue:
                op, word, drive, last = queue[0]
                if cycle - last_sent.get(word, -distance) >= distance:
                    queue.pop(0)
                    last_sent[word] = cycle
                    ctx.set(arr.i.valid, 1)
                    ctx.set(arr.i.payload.op, op)
                    ctx.set(arr.i.payload.word, word)
                    ctx.set(arr.i.payload.last, last)
                    for k in range(lanes):
                        ctx.set(arr.i.payload.drive[k], int(drive[k]))
                    if op is Op.FIRE:
                        expect.append(cycle)
            if ctx.get(arr.o.valid):
                assert expect, f"cycle {cycle}: a fired word no command asked for"
                assert cycle - expect[0] == latency, (cycle, expect[0], latency)
                on_output(ctx, expect.pop(0))
            elif expect:
                assert cycle - expect[0] < latency, f"cycle {cycle}: fired word missing"
            await ctx.tick()
            cycle += 1
        for _ in range(latency + 2):  # nothing is left over
            assert not ctx.get(arr.o.valid)
            await ctx.tick()

    return testbench


def _run(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


# -- tier 1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_out", "lanes"), [(1, 1), (10, 3), (10, 10), (10, 16), (40, 4)])
def test_geometry_and_ports(n_out: int, lanes: int) -> None:
    layer = _layer(n_out=n_out)
    arr = _array(layer, lanes)
    words = -(-n_out // lanes)
    assert (arr.lanes, arr.words, arr.pipeline, arr.latency) == (lanes, words, _P1, 2)
    assert arr.storage is default_storage(words)
    assert arr.drive_width == arr.widths.drive
    state = arr.state_layout
    assert state["membranes"].shape.elem_shape.width == arr.widths.membrane
    assert state["tracers"].shape.elem_shape.width == arr.widths.tracer
    text = generate(NeuronArrayTop(layer=layer, widths=arr.widths, timing=arr.timing), "na")
    for port in ("cmd_valid", "cmd", "cmd_ready", "fired_valid", "fired", "state", "clk", "rst"):
        assert f" {port};" in text or f" {port} ;" in text or f"] {port};" in text, port


def test_default_storage_by_size() -> None:
    assert default_storage(1) is Storage.REGISTERS
    assert default_storage(REGISTER_WORDS_MAX) is Storage.REGISTERS
    assert default_storage(REGISTER_WORDS_MAX + 1) is Storage.MEMORY


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"storage": "flash"}, ValueError, "storage must be one of 'registers', "),
        ({"drive_width": 0}, ValueError, "drive_width must be a positive integer"),
        ({"layer": "x"}, TypeError, "layer must be an ir.Layer, not str"),
        ({"widths": (1, 2)}, TypeError, "widths must be an ir.network.LayerWidths"),
        ({"timing": 2}, TypeError, "timing must be a hw.model.cycle_model.LayerTiming, not 2"),
        (
            {"timing": LayerTiming(n_out=4, lanes=2)},
            ValueError,
            "timing is for 4 neurons, not the layer's 3",
        ),
    ],
)
def test_bad_parameters(kwargs, error, message) -> None:
    layer = _layer(n_out=3)
    timing = LayerTiming(n_out=3, lanes=2)
    args = {"layer": layer, "widths": layer.widths(0, 1, analog=False), "timing": timing, **kwargs}
    with pytest.raises(error, match=message):
        NeuronArray(**args)


# -- tier 2: one lane against the reference's step function ------------------------------------


def _level_offsets(lanes: NeuronLanes, d, theta) -> dict:
    """The graded offsets of the levels above 0 the lanes take (``drive_levels``): ``minus{j}``
    (``d − Θ·2^j``), ``plus{j}`` (``d + Θ·2^j``), ``below{j}`` (``d + Θ·(2^j − 1)``)."""
    if "drive_levels" not in lanes.signature.members:
        return {}
    value = {"minus": lambda j: d - (theta << j), "plus": lambda j: d + (theta << j)}
    value["below"] = lambda j: d + theta * ((1 << j) - 1)
    out = {}
    for name in lanes.signature.members["drive_levels"].shape.members:
        kind, j = re.fullmatch(r"(minus|plus|below)(\d+)", name).groups()
        out[name] = value[kind](int(j))
    return out


def _lanes_case(layer: Layer, lanes: NeuronLanes, rows, registered: bool, flags: bool):
    """Apply (fire, membrane, tracer, drive) rows to the lanes; return their outputs (after the
    register, with ``registered``)."""
    out = []
    n, p = layer.neg_bound, layer.pos_bound

    async def testbench(ctx):
        for fire, u, a, d in rows:
            ctx.set(lanes.fire, fire)
            for k in range(lanes.lanes):
                theta = int(layer.thresholds[k])
                ctx.set(lanes.membranes[k], int(u[k]))
                ctx.set(lanes.tracers[k], int(a[k]))
                ctx.set(lanes.drive[k], int(d[k]))
                ctx.set(lanes.drive_minus[k], int(d[k]) - theta)
                ctx.set(lanes.drive_plus[k], int(d[k]) + theta)
                for name, value in _level_offsets(lanes, int(d[k]), theta).items():
                    ctx.set(lanes.drive_levels[name][k], value)
                if "thresholds" in lanes.signature.members:
                    ctx.set(lanes.thresholds[k], theta)
            if flags:
                ctx.set(lanes.below_p, sum(int(a[k] < p) << k for k in range(lanes.lanes)))
                ctx.set(lanes.above_n, sum(int(a[k] > n) << k for k in range(lanes.lanes)))
            if registered:
                await ctx.tick()
            row = [
                [ctx.get(lanes.spikes[k]) for k in range(lanes.lanes)],
                [ctx.get(lanes.next_membranes[k]) for k in range(lanes.lanes)],
                [ctx.get(lanes.next_tracers[k]) for k in range(lanes.lanes)],
            ]
            if flags:
                row += [
                    [(ctx.get(lanes.next_below_p) >> k) & 1 for k in range(lanes.lanes)],
                    [(ctx.get(lanes.next_above_n) >> k) & 1 for k in range(lanes.lanes)],
                ]
            out.append(row)

    sim = Simulator(lanes)
    if registered:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out


def _lanes_layer(rng, n: int, threshold: int, neg: int, pos: int, **kw) -> Layer:
    """``n`` one-input neurons with random biases and per-neuron thresholds up to ``threshold``."""
    return Layer(
        weight=np.ones((n, 1), dtype=np.int64),
        bias=rng.integers(-9, 10, n),
        threshold=rng.integers(1, threshold + 1, n),
        neg_bound=neg,
        pos_bound=pos,
        **kw,
    )


def _expected(step, layer: Layer, fire, u, a, d, **kw):
    """``(spikes, membranes, tracers)`` of the reference's ``step`` (a firing row) or of a plain
    integration."""
    if not fire:
        return np.zeros(len(u)), u + d, a
    out = step(
        torch.from_numpy(d),
        torch.from_numpy(u),
        torch.from_numpy(a),
        threshold=torch.from_numpy(layer.thresholds.copy()),
        neg_bound=layer.neg_bound,
        pos_bound=layer.pos_bound,
        **kw,
    )
    return tuple(t.numpy() for t in out)


@settings(max_examples=20, deadline=None)
@given(
    threshold=st.sampled_from([1, 2, 3, 4, 5, 64, 4095]),
    levels=st.integers(2, 32),
    symmetric=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    registered=st.booleans(),
    flags=st.booleans(),
)
def test_lanes_match_reference_step(threshold, levels, symmetric, seed, registered, flags) -> None:
    """Random membranes, tracers and drives, fire or not: the lanes equal ``stbif_step``."""
    rng = np.random.default_rng(seed)
    neg, pos = ((-levels) // 2, levels // 2 - 1) if symmetric else (0, levels - 1)
    n = 4
    layer = _lanes_layer(rng, n, threshold, neg, pos)
    widths = layer.widths(-50 * threshold, 50 * threshold, analog=True)
    pipeline = replace(Pipeline.preset(2 if registered else 1), bound_flags=flags)
    lanes = NeuronLanes(layer=layer, widths=widths, lanes=n, pipeline=pipeline)
    rows = []
    for _ in range(30):
        fire = int(rng.integers(0, 2))
        a = rng.integers(neg, pos + 1, n)
        u = rng.integers(-20 * threshold, 20 * threshold, n)
        d = rng.integers(-20 * threshold, 20 * threshold, n) * (rng.random(n) < 0.7)
        rows.append((fire, u, a, d))
    got = _lanes_case(layer, lanes, rows, registered, flags)
    for (fire, u, a, d), row in zip(rows, got, strict=True):
        es, eu, ea = _expected(stbif_step, layer, fire, u, a, d)
        assert row[:3] == [es.tolist(), eu.tolist(), ea.tolist()], (fire, u, a, d)
        if flags:  # the bound checks of the new tracers
            assert row[3:] == [(ea < pos).astype(int).tolist(), (ea > neg).astype(int).tolist()]


@settings(max_examples=60, deadline=None)
@given(
    threshold=st.sampled_from([1, 2, 3, 4, 5, 7, 64, 4095]),
    span=st.integers(1, 40),
    symmetric=st.booleans(),
    max_level=st.none() | st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
    registered=st.booleans(),
    flags=st.booleans(),
)
def test_graded_lanes_match_reference_step(
    threshold, span, symmetric, max_level, seed, registered, flags
) -> None:
    """Graded lanes (levels up to 2^5, per-neuron Θ, any K, every pipeline flag): random
    membranes, tracers and drives, fire or not, equal ``graded_step``; membranes near the
    levels' edges (U1 = Θ·2^j − 1, Θ·2^j, −Θ·(2^j − 1), …) are drawn on purpose."""
    rng = np.random.default_rng(seed)
    neg, pos = (-((span + 1) // 2), span // 2) if symmetric else (0, span)
    n = 4
    layer = _lanes_layer(rng, n, threshold, neg, pos, neuron="graded", max_level=max_level)
    widths = layer.widths(-100 * threshold, 100 * threshold, analog=True)  # edges ≤ 64Θ
    pipeline = replace(Pipeline.preset(2 if registered else 1), bound_flags=flags)
    lanes = NeuronLanes(layer=layer, widths=widths, lanes=n, pipeline=pipeline)
    flagged = "below_p" in lanes.signature.members
    assert flagged == (flags and levels(layer) == 1)  # graded lanes compare the tracer
    theta = layer.thresholds
    rows = []
    for _ in range(40):
        fire = int(rng.integers(0, 2))
        a = rng.integers(neg, pos + 1, n)
        u = rng.integers(-20 * threshold, 20 * threshold, n)
        if rng.random() < 0.5:  # U1 on a level's edge
            j = rng.integers(0, levels(layer) + 1, n)
            edge = np.where(rng.random(n) < 0.5, theta << j, -theta * ((1 << j) - 1))
            u = edge + rng.integers(-1, 2, n)
        d = rng.integers(-20 * threshold, 20 * threshold, n) * (rng.random(n) < 0.7)
        if rng.random() < 0.5:
            d[:] = 0
        rows.append((fire, u, a, d))
    got = _lanes_case(layer, lanes, rows, registered, flagged)
    for (fire, u, a, d), row in zip(rows, got, strict=True):
        es, eu, ea = _expected(graded_step, layer, fire, u, a, d, max_level=max_level)
        assert row[:3] == [es.tolist(), eu.tolist(), ea.tolist()], (fire, u, a, d)


def test_graded_lanes_hand_sequence() -> None:
    """One neuron, Θ = 3, n = −8, p = 7 (levels 1, 2, 4, 8), worked by hand:

    * U1 = 25: ⌊25/3⌋ = 8, p − A = 7 → m = 4 (the largest power of two ≤ 7): s = +4, U = 13, A = 4;
    * U1 = 13: ⌊13/3⌋ = 4, p − A = 3 → m = 2: s = +2, U = 7, A = 6;
    * U1 = 7 − 20 = −13: ⌈13/3⌉ = 5, A − n = 14 → m = 4: s = −4, U = −1, A = 2;
    * U1 = −1: ⌈1/3⌉ = 1 → s = −1, U = 2, A = 1;
    * U1 = 2 < Θ: no spike.
    """
    layer = Layer(
        weight=np.ones((1, 1), dtype=np.int64),
        bias=np.zeros(1, dtype=np.int64),
        threshold=3,
        neg_bound=-8,
        pos_bound=7,
        neuron="graded",
    )
    widths = layer.widths(-40, 40, analog=True)
    lanes = NeuronLanes(layer=layer, widths=widths, lanes=1, pipeline=Pipeline.preset(1))
    rows = [(1, [0], [0], [25]), (1, [13], [4], [0]), (1, [7], [6], [-20])]
    rows += [(1, [-1], [2], [0]), (1, [2], [1], [0])]
    rows = [(fire, *(np.array(v) for v in vectors)) for fire, *vectors in rows]
    got = _lanes_case(layer, lanes, rows, False, False)
    assert [r[:3] for r in got] == [
        [[4], [13], [4]],
        [[2], [7], [6]],
        [[-4], [-1], [2]],
        [[-1], [2], [1]],
        [[0], [2], [1]],
    ]


def _exhaustive_graded(thetas, u1_range, registered: bool, max_level=None, one=False) -> None:
    """Every ``(Θ, U1, A)`` with ``Θ`` in ``thetas``, ``U1`` in ``u1_range`` (8-bit membranes),
    ``A`` in ``[n, p] = [−8, 7]`` (16 levels: spikes ±1 … ±8), each firing once in one lane of
    a wide :class:`NeuronLanes` (per-neuron Θ, 16 lanes per Θ; with ``one``, the layer's one
    threshold ``thetas[0]``, a constant in the lanes), ``U1`` split at random into
    ``U + drive``: spikes, membranes and tracers equal ``graded_step``'s."""
    per, n, p = 16, -8, 7
    lanes_n = len(thetas) * per
    layer = Layer(
        weight=np.ones((lanes_n, 1), dtype=np.int64),
        bias=np.zeros(lanes_n, dtype=np.int64),
        threshold=int(thetas[0]) if one else np.repeat(thetas, per),
        neg_bound=n,
        pos_bound=p,
        neuron="graded",
        max_level=max_level,
    )
    # W = 8: the membrane, the drive and (4 bits) the threshold as narrow as the values allow
    widths = replace(layer.widths(-64, 63, analog=True), membrane=8, drive=8, threshold=4)
    pipeline = Pipeline.preset(3 if registered else 1)
    lanes = NeuronLanes(layer=layer, widths=widths, lanes=lanes_n, pipeline=pipeline)
    per_neuron = "thresholds" in lanes.signature.members
    assert per_neuron == (registered and not one)  # the level-code lanes with Θ per neuron
    pairs = np.array([(u1, a) for u1 in u1_range for a in range(n, p + 1)])
    rows = -(-len(pairs) // per)
    theta = layer.thresholds
    rng = np.random.default_rng(len(pairs))
    cases = []
    for r in range(rows):  # lane k takes pair (k mod per)·rows + r of its Θ's share
        u1, a = pairs[(np.arange(lanes_n) % per * rows + r) % len(pairs)].T
        d = rng.integers(-64, 64, lanes_n)
        d = np.where(np.abs(u1 - d + 0.5) < 128, d, 0)  # U = U1 − d fits the 8 bits too
        cases.append((u1 - d, a, d))
    got = []

    async def testbench(ctx):
        ctx.set(lanes.fire, 1)
        if per_neuron:
            ctx.set(lanes.thresholds, theta.tolist())
        for u, a, d in cases:
            ctx.set(lanes.membranes, u.tolist())
            ctx.set(lanes.tracers, a.tolist())
            ctx.set(lanes.drive, d.tolist())
            ctx.set(lanes.drive_minus, (d - theta).tolist())
            ctx.set(lanes.drive_plus, (d + theta).tolist())
            if "drive_levels" in lanes.signature.members:
                offsets = _level_offsets(lanes, d, theta)  # (numpy: every lane at once)
                ctx.set(lanes.drive_levels, {k: v.tolist() for k, v in offsets.items()})
            if registered:
                await ctx.tick()
            else:
                await ctx.delay(1e-9)
            got.append(
                [list(ctx.get(v)) for v in (lanes.spikes, lanes.next_membranes, lanes.next_tracers)]
            )

    sim = Simulator(lanes)
    if registered:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for (u, a, d), row in zip(cases, got, strict=True):
        expected = _expected(graded_step, layer, 1, u, a, d, max_level=max_level)
        for name, e, g in zip(("spikes", "membranes", "tracers"), expected, row, strict=True):
            wrong = np.flatnonzero(np.asarray(g) != e)
            k = wrong[0] if wrong.size else 0
            assert not wrong.size, (
                f"{name}, lane {k}: Θ = {theta[k]}, U1 = {u[k] + d[k]}, A = {a[k]}: "
                f"{g[k]}, expected {e[k]}"
            )


def test_graded_lanes_exhaustive_small() -> None:
    """The level-code lanes (``registered_sums``) exhaustively at W = 8 for two thresholds
    (3, 6), U1 in [−40, 40), every tracer (fast; every Θ and U1: the slow test below)."""
    _exhaustive_graded([3, 6], range(-40, 40), True)


def test_graded_lanes_exhaustive_one_threshold() -> None:
    """The level-code lanes with the layer's one Θ (a constant: no threshold register), every
    8-bit U1 and tracer at Θ = 5 (fast)."""
    _exhaustive_graded([5], range(-128, 128), True, one=True)


@pytest.mark.slow
@pytest.mark.parametrize("max_level", [None, 1, 2])
@pytest.mark.parametrize("registered", [True, False])
def test_graded_lanes_exhaustive(registered: bool, max_level) -> None:
    """Exhaustive at W = 8: every Θ of 4 bits, every 8-bit U1, every tracer, K = ∞, 1, 2."""
    _exhaustive_graded(list(range(1, 16)), range(-128, 128), registered, max_level)


# -- tier 2: spec §7 vectors through a one-neuron array ----------------------------------------


def _fire_sequence(arr: NeuronArray, drives: list[list[int]]) -> list[tuple[list, list, list]]:
    """INIT every word, then one FIRE per word and step; return spikes, membranes, tracers."""
    words, lanes, pending = arr.words, arr.lanes, []
    cmds = [(Op.INIT, w, [0] * lanes, w == words - 1) for w in range(words)]
    for drive in drives:
        padded = list(drive) + [0] * (words * lanes - len(drive))
        cmds += [
            (Op.FIRE, w, padded[w * lanes : (w + 1) * lanes], w == words - 1) for w in range(words)
        ]

    def record(ctx, _sent):
        p, st = ctx.get(arr.o.payload), ctx.get(arr.state)
        pending.append(
            (
                [p.spikes[k] for k in range(lanes)],
                [st.membranes[k] for k in range(lanes)],
                [st.tracers[k] for k in range(lanes)],
            )
        )

    _run(arr, _issue(arr, cmds, record))
    out = []
    for j in range(0, len(pending), words):
        chunk = pending[j : j + words]
        out.append(tuple([v for c in chunk for v in c[f]] for f in range(3)))
    return [tuple(v[: arr.layer.n_out] for v in step) for step in out]


SPEC_VECTORS = [
    # (name, layer kwargs, drives, expected spikes, expected final (U, A))
    ("1 tie at +1/2", {}, [2], [1], (0, 1)),
    ("2 tie at -1/2", {}, [-2], [0], (0, 0)),
    ("3 just below -1/2", {}, [-3], [-1], (3, -1)),
    ("4 positive saturation", {}, [100] + [0] * 8, [1] * 7 + [0] * 2, (74, 7)),
    ("5 asym negative saturation", {"neg": 0, "pos": 15}, [-100, 0], [0, 0], (-98, 0)),
    ("6 overshoot then cancel", {}, [9, -9, 0], [1, -1, 0], (2, 0)),
    ("7 split input", {}, [3, 3, 3], [1, 1, 0], (3, 2)),
    ("8 bias only", {"bias": 6, "neg": 0, "pos": 15}, [0, 0, 0], [1, 1, 0], (0, 2)),
    ("9 odd threshold 7", {"threshold": 5}, [7, 0], [1, 0], (4, 1)),
    ("9 odd threshold 8", {"threshold": 5}, [8, 0, 0], [1, 1, 0], (0, 2)),
    ("9 odd threshold -3", {"threshold": 5}, [-3, 0], [-1, 0], (4, -1)),
    ("12 sign flip", {}, [100, -100, 0], [1, -1, 0], (2, 0)),
    ("12b negative saturation", {}, [-100] + [0] * 9, [-1] * 8 + [0] * 2, (-66, -8)),
]


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize(
    ("name", "kwargs", "drives", "spikes", "final"), SPEC_VECTORS, ids=[v[0] for v in SPEC_VECTORS]
)
def test_spec_vectors(name, kwargs, drives, spikes, final, storage, pipeline) -> None:
    arr = _array(_layer(**kwargs), 1, storage, pipeline=pipeline)
    steps = _fire_sequence(arr, [[d] for d in drives])
    assert [s[0][0] for s in steps] == spikes
    assert (steps[-1][1][0], steps[-1][2][0]) == final


# -- tier 2: the state store and read-modify-write hazards -------------------------------------


@pytest.mark.parametrize("transparent", [True, False])
@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_state_store_is_transparent(storage: str, depth: int, transparent: bool) -> None:
    """Random reads and writes: ``rdata`` is the word after the write of the same cycle (before
    it, for a store that is not transparent: ``Pipeline.bypassed_store``)."""
    rng = np.random.default_rng(depth)
    init = rng.integers(0, 256, depth).tolist()
    store = StateStore(shape=8, depth=depth, init=init, storage=storage, transparent=transparent)
    model = list(init)

    async def testbench(ctx):
        expect = None
        for _ in range(200):
            raddr, waddr = int(rng.integers(depth)), int(rng.integers(depth))
            wen, wdata = bool(rng.random() < 0.6), int(rng.integers(256))
            ctx.set(store.raddr, raddr)
            ctx.set(store.write.addr, waddr)
            ctx.set(store.write.en, wen)
            ctx.set(store.write.data, wdata)
            if expect is not None:
                assert ctx.get(store.rdata) == expect
            before = model[raddr]
            if wen:
                model[waddr] = wdata
            expect = model[raddr] if transparent else before
            await ctx.tick()

    _run(store, testbench)


#: ``bypassed_store`` with preset 1's forwarding, and preset 3 without it
BYPASS = {
    "p1+bypass": replace(Pipeline.preset(1), bypassed_store=True),
    "p3-bypass": replace(Pipeline.preset(3), bypassed_store=False),
}


@pytest.mark.parametrize(
    "pipeline",
    [
        *PIPELINES,
        BYPASS["p1+bypass"],
        pytest.param(BYPASS["p3-bypass"], marks=pytest.mark.slow),
    ],
    ids=[*map(str, PIPELINES), *BYPASS],
)
@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize(("n_out", "lanes"), [(3, 4), (3, 3), (6, 3), (7, 2)])
def test_back_to_back_integration_has_no_hazard(
    storage: str, n_out: int, lanes: int, pipeline: int
) -> None:
    """INTEGRATE commands every cycle, the same word as close as the pipeline allows (back to
    back for pipelines 0 and 1, which forward), then FIRE."""
    rng = np.random.default_rng(n_out * lanes)
    layer = _layer(n_out=n_out, threshold=1, neg=-8, pos=7)
    arr = _array(layer, lanes, storage, drive_max=1000, pipeline=pipeline)
    words = arr.words
    seq = [int(w) for w in rng.integers(0, words, 40)] + [0, 0, 0]
    drives = rng.integers(-20, 21, (len(seq), lanes))
    total = np.zeros(words * lanes, dtype=np.int64)
    for w, d in zip(seq, drives, strict=True):
        total[w * lanes : (w + 1) * lanes] += d
    cmds = [(Op.INIT, w, [0] * lanes, False) for w in range(words)]
    cmds += [(Op.INTEGRATE, w, d.tolist(), False) for w, d in zip(seq, drives, strict=True)]
    cmds += [(Op.FIRE, w, [0] * lanes, w == words - 1) for w in range(words)]
    got = {}

    def record(ctx, _sent):
        word = ctx.get(arr.o.payload.word)
        st = ctx.get(arr.state)
        spikes = ctx.get(arr.o.payload.spikes)
        got[word] = [st.membranes[k] + spikes[k] for k in range(lanes)]

    _run(arr, _issue(arr, cmds, record))
    # before firing: U = H + B + Σ drive; after: U' = U - s·Θ with Θ = 1, so U = U' + s
    flat = np.array([v for w in range(words) for v in got[w]])
    assert flat[:n_out].tolist() == (total[:n_out] + layer.initial_membranes).tolist()


# -- tier 3: cocotb on the generated Verilog ---------------------------------------------------

HERE = Path(__file__).parent


def _spike_network(seed: int = 3) -> tuple[Network, np.ndarray]:
    rng = np.random.default_rng(seed)
    l0 = Layer(
        weight=rng.integers(-6, 7, (9, 7)),
        bias=rng.integers(-5, 6, 9),
        threshold=rng.integers(1, 12, 9),
        neg_bound=-4,
        pos_bound=3,
    )
    l1 = Layer(
        weight=rng.integers(-9, 10, (11, 9)) * (rng.random((11, 9)) < 0.6),
        bias=rng.integers(-3, 4, 11),
        threshold=5,
        neg_bound=0,
        pos_bound=7,
    )
    net = Network(layers=(l0, l1), n_inputs=7, encoding="analog", input_bounds=(-8, 16))
    return net, rng.integers(-8, 17, (4, 7))


SLOW = pytest.mark.slow
SIM_CASES = [
    # (simulator, layer, lanes, storage, pipeline); make test: one Icarus case per pipeline depth
    # and storage (the layer core's cocotb tests run the array inside every core besides)
    ("icarus", 0, 1, "memory", 1),
    ("icarus", 0, 4, "registers", 1),
    pytest.param("icarus", 1, 3, "memory", 1, marks=SLOW),
    pytest.param("icarus", 1, 11, None, 1, marks=SLOW),
    pytest.param("icarus", 1, 16, None, 1, marks=SLOW),
    pytest.param("verilator", 1, 4, None, 1, marks=SLOW),
    pytest.param("icarus", 0, 4, "memory", 0, marks=SLOW),
    ("icarus", 1, 3, None, 0),
    pytest.param("icarus", 0, 2, "registers", 2, marks=SLOW),
    ("icarus", 1, 11, None, 2),  # one word: commands two cycles apart
    pytest.param("verilator", 1, 4, "memory", 2, marks=SLOW),
    ("icarus", 1, 6, None, 3),  # two words: each word three cycles apart
    pytest.param("icarus", 0, 16, "registers", 3, marks=SLOW),  # one word
]


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "layer", "lanes", "storage", "pipeline"), SIM_CASES)
def test_neuron_array_cocotb(
    tmp_path: Path, sim: str, layer: int, lanes: int, storage, pipeline: int
) -> None:
    from spikezip.sim.cases import neuron_array_case
    from spikezip.sim.runner import run_cocotb

    net, x = _spike_network()
    case = neuron_array_case(
        tmp_path / "case", net, x, layer, lanes=lanes, storage=storage, pipeline=pipeline
    )
    run_cocotb(
        sim=sim,
        sources=[case.verilog],
        toplevel=case.toplevel,
        test_module="spikezip.sim.tb.neuron_array",
        build_dir=tmp_path / "build",
        extra_env=case.env(valid=0.8),
    )


def test_elaborates_for_every_storage() -> None:
    for storage in STORAGES:
        Fragment.get(_array(_layer(n_out=5), 2, storage), None)


@pytest.mark.sim
def test_neuron_array_divergence_is_reported(tmp_path: Path) -> None:
    """A wrong golden membrane makes the run fail with the first divergence, cycle included."""
    from spikezip.ir import Trace
    from spikezip.sim.cases import neuron_array_case
    from spikezip.sim.runner import SimulationError, run_cocotb

    net, x = _spike_network()
    case = neuron_array_case(tmp_path / "case", net, x, 1, lanes=3)
    g = case.golden
    membranes = [m.copy() for m in g.membranes]
    membranes[1][2, 3, 4] += 1
    Trace(
        network_digest=g.network_digest,
        spikes=g.spikes,
        busy=g.busy,
        steps=g.steps,
        capped=g.capped,
        membranes=tuple(membranes),
        tracers=g.tracers,
        layer_names=g.layer_names,
    ).save(case.directory / "golden.npz")
    with pytest.raises(SimulationError) as info:
        run_cocotb(
            sim="icarus",
            sources=[case.verilog],
            toplevel=case.toplevel,
            test_module="spikezip.sim.tb.neuron_array",
            build_dir=tmp_path / "build",
            extra_env=case.env(),
        )
    first = str(info.value).splitlines()[0]
    assert (
        "first divergence in membranes: sample 2, layer 1 (layer1), neuron 4, time step 3" in first
    )
    assert ", cycle " in first and "expected" in first and "actual" in first


@pytest.mark.parametrize(
    ("period", "repeats", "per_neuron"), [(1, 5, False), (4, 17, True), (3, 6, True), (5, 1, False)]
)
def test_word_constants_store_one_period(period: int, repeats: int, per_neuron: bool) -> None:
    """Rows that repeat (a ViT site's thresholds and bias per token) are stored once: the ROM has
    ``period`` rows (a constant for one), and every word still reads its own row, one cycle after
    its address (power-of-two periods by the low bits, others through a word → row table)."""
    lanes, words = 2, period * repeats
    rng = np.random.default_rng(period * 100 + repeats)
    base = rng.integers(-50, 50, size=(period, lanes))
    if period > 1:
        base[1:, 0] = np.arange(1, period) * 7 + 60  # no shorter period
    membranes = np.tile(base, (repeats, 1))
    thresholds = np.tile(rng.integers(1, 30, size=(period, lanes)), (repeats, 1))
    layout = state_layout(lanes=lanes, membrane_width=8, tracer_width=4)
    consts = WordConstants(
        word_layout=layout,
        membranes=membranes,
        flags={},
        thresholds=thresholds if per_neuron else None,
        threshold_width=6,
    )
    assert consts.period == (period if repeats > 1 else words)
    text = generate(consts, "wc")
    depths = [int(d) + 1 for d in re.findall(r"reg .*\brom \[(\d+):0\]", text)]
    assert depths == ([] if consts.period == 1 else [consts.period])

    async def testbench(ctx):
        for w in range(words):
            ctx.set(consts.word, w)
            await (ctx.tick() if consts.period > 1 else ctx.delay(1e-9))
            got = [ctx.get(consts.initial.membranes[k]) for k in range(lanes)]
            assert got == membranes[w].tolist(), w
            if per_neuron:
                assert [ctx.get(consts.thresholds[k]) for k in range(lanes)] == thresholds[
                    w
                ].tolist()

    sim = Simulator(consts)
    sim.add_clock(1e-8, if_exists=True)  # one row: a constant, no clock domain
    sim.add_testbench(testbench)
    sim.run()
