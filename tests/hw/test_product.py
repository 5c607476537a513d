"""Tiers 1 and 2 of the spike-product core (``hw.cores.product``, ``hw.model.product_model``).

Tier 1: geometry validation and its messages, widths from ``VisionTransformer.ranges``, the
index maps and the order argument against the reference's recorded score changes and context
drives, elaboration and ports. Tier 2: Amaranth's simulator on random spike trains (hypothesis)
and on random ViTs' traces: every output beat equals the definition ``Xacc_t·Yacc_t −
Xacc_{t−1}·Yacc_{t−1}`` (computed independently of the RTL) and leaves in the model's cycle;
with random idle input cycles and output stalls every beat is still the same. The inputs go idle
(their marker with busy 0) at different steps, and inferences run back to back with the next
one's beats already waiting on the inputs, so a beat read by the wrong inference shows.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.product import SpikeProduct
from spikezip.hw.model.product_model import (
    ProductGeometry,
    input_beats,
    output_busy,
    product_schedule,
    reference_product,
    timed,
    trace_inferences,
)
from spikezip.sw.attention import multi, multi1
from tests.sw.vit_strategies import images, transformers


def geometry(kind="scores", tokens=3, heads=2, head_dim=2, lanes=2, **kw) -> ProductGeometry:
    x = kw.pop("x_bounds", (-2, 3))
    y = kw.pop("y_bounds", (-3, 2))
    mx, my = (max(-int(b[0]), int(b[1])) for b in (x, y))
    sx, sy = kw.get("x_spike_max", 1), kw.get("y_spike_max", 1)
    inner = head_dim if kind == "scores" else tokens
    # (ranges.score_step's form: dh·(|Qacc|·s_k + s_q·|Kacc| + s_q·s_k))
    step = kw.pop("step_bound", inner * (mx * sy + sx * my + sx * sy))
    return ProductGeometry(
        kind=kind, tokens=tokens, heads=heads, head_dim=head_dim, x_bounds=x, y_bounds=y,
        step_bound=step, lanes=lanes, **kw,
    )  # fmt: skip


# -- stimulus ------------------------------------------------------------------------------------
def random_trains(geo: ProductGeometry, rng: random.Random, steps, density: float):
    """Random X and Y spike trains whose tracers stay in their bounds: ``(xs, ys)``, ``steps``
    per input (an integer, or a pair: the inputs go idle at different steps), each input's last
    step without spikes (its marker has busy 0). Spikes are ``±2^k`` with ``k`` uniform up to
    the side's level (``geo.x_spike_max``, ``geo.y_spike_max``; ±1 for ST-BIF), halved until
    the tracer stays in its bounds."""
    counts = (steps, steps) if isinstance(steps, int) else steps
    trains = []
    sides = zip((geo.x_size, geo.y_size), (geo.x_bounds, geo.y_bounds), counts,
                (geo.x_spike_max, geo.y_spike_max), strict=True)  # fmt: skip
    for size, (lo, hi), n, top in sides:
        acc, per = [0] * size, []
        for t in range(n):
            events = []
            for idx in range(size):
                if t < n - 1 and rng.random() < density:
                    s = rng.choice((-1, 1))
                    if top > 1:
                        s <<= rng.randrange(top.bit_length())
                        while abs(s) > 1 and not lo <= acc[idx] + s <= hi:
                            s //= 2
                    if lo <= acc[idx] + s <= hi:
                        acc[idx] += s
                        events.append((idx, s))
            per.append(events)
        trains.append(per)
    return trains[0], trains[1]


def _beats(steps: list) -> list[tuple[int, int, int, int]]:
    return [(int(mk), i, v, int(b)) for mk, i, v, b in input_beats(steps)]


def simulate(
    geo: ProductGeometry, inferences, *, valid=1.0, ready=1.0, seed=0, pipeline=1, bounds=None
):
    """Run the core on ``inferences``; every accepted output beat ``(cycle, beat)``.
    ``bounds``: instead of a random ``o.ready``, output beat ``k`` is taken from cycle
    ``bounds[k]`` on (the ``ready`` of :func:`hw.model.product_model.timed`)."""
    dut = SpikeProduct(geo=geo, pipeline=pipeline)
    rng = random.Random(seed)
    streams = [[b for inf in inferences for b in _beats(inf[side])] for side in (0, 1)]
    markers = sum(len(output_busy(*inf)) for inf in inferences)
    got = []
    limit = 50 * (sum(len(s) for s in streams) + 100 * markers) + 1000

    async def bench(ctx):
        pos, cycle, seen = [0, 0], 0, 0
        ports = (dut.x, dut.y)
        while seen < markers and cycle < limit:
            for side, port in enumerate(ports):
                beats = streams[side]
                on = pos[side] < len(beats) and rng.random() < valid
                ctx.set(port.valid, on)
                if on:
                    mk, i, v, b = beats[pos[side]]
                    ctx.set(port.payload, {"marker": mk, "index": i, "value": v, "busy": b})
            if bounds is None:
                ctx.set(dut.o.ready, rng.random() < ready)
            else:
                ctx.set(dut.o.ready, len(got) >= len(bounds) or cycle >= bounds[len(got)])
            taken = [ctx.get(p.valid) and ctx.get(p.ready) for p in ports]
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                p = ctx.get(dut.o.payload)
                beat = (bool(p.marker), int(p.index), int(p.value), bool(p.busy))
                got.append((cycle, beat))
                seen += beat[0]
            await ctx.tick()
            pos = [q + t for q, t in zip(pos, taken, strict=True)]
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def values(beats) -> list:
    return [b for _, b in beats]


def marker_busy(beats) -> list[bool]:
    return [b[3] for _, b in beats if b[0]]


def expected_deltas(geo: ProductGeometry, beats) -> list[np.ndarray]:
    """``ΔO`` per step rebuilt from output beats (the inverse of the emission)."""
    n, _, m = geo.shape
    out, cur = [], np.zeros((geo.heads, n, m), dtype=np.int64)
    hs, rs = geo.out_strides
    for _, (marker, index, value, _b) in beats:
        if marker:
            out.append(cur)
            cur = np.zeros_like(cur)
            continue
        h, rest = divmod(index, hs) if geo.kind == "scores" else (None, None)
        if geo.kind == "scores":
            i, j = divmod(rest, rs)
        else:
            i, rest = divmod(index, rs)
            h, j = divmod(rest, hs)
        assert value != 0, "a zero entry was emitted"
        cur[h, i, j] += value
    return out


# -- tier 1 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": "both"}, "kind must be one of"),
        ({"lanes": 0}, "lanes must be a positive integer"),
        ({"tokens": 0}, "tokens must be a positive integer"),
        ({"heads": 1.5}, "heads must be a positive integer"),
        ({"step_bound": 0}, "step_bound must be a positive integer"),
        ({"x_bounds": (1, 3)}, r"x_bounds must be a pair of integers \(lo ≤ 0 ≤ hi\)"),
        ({"y_bounds": (-1, 1), "step_bound": 3, "x_bounds": (0, 1.5)}, "x_bounds must be"),
        ({"accumulator_latency": 1}, "accumulator_latency must be an integer ≥ 2"),
        ({"x_spike_max": 0}, "x_spike_max must be a positive integer"),
        ({"y_spike_max": 6}, "y_spike_max must be a power of two ≥ 1, not 6"),
    ],
)
def test_geometry_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        geometry(**kw)


def test_core_validation():
    with pytest.raises(TypeError, match="geo must be a ProductGeometry"):
        SpikeProduct(geo=None)
    with pytest.raises(ValueError, match=r"geo\.accumulator_latency must be 5"):
        SpikeProduct(geo=geometry(), pipeline=2)
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        SpikeProduct(geo=geometry(lanes=-1))


def test_ports_and_widths():
    geo = geometry(kind="context", tokens=3, heads=2, head_dim=2, x_bounds=(0, 15))
    core = SpikeProduct(geo=geo)
    text = verilog.convert(core, name="product", emit_src=False)
    # X = attn [2, 3, 3] (18 → 5 bits), Y = v [3, 4] (12 → 4 bits), out context [3, 4]
    assert geo.index_widths == (5, 4, 4)
    assert geo.value_width == len(bin(geo.step_bound)) - 2 + 1
    assert geo.tracer_width == 5  # 0..15 signed
    width = {"x": 5 + 2 + 2, "y": 4 + 2 + 2, "o": 4 + geo.value_width + 2}
    for port, bits in width.items():
        assert f"[{bits - 1}:0] {port}__payload" in text
    for port in ("x__valid", "x__ready", "y__valid", "y__ready", "o__valid", "o__ready"):
        assert port in text


@pytest.mark.parametrize("kind", ["scores", "context"])
def test_memories_are_lut_ram_and_no_address_multiplies(kind):
    """The flow's Verilog (``hw.flow.verilog.generate``) of a core with several words per row
    keeps ``ram_style = "distributed"`` on its two tracer and its P bank memories (Yosys maps
    them to LUT RAM: a block RAM's unregistered read capped the core near 85 MHz at P = 4), and
    no address is a product (``g·words``, ``word·P·Wm``, ``lane·Wm`` come from tables and a
    counter: Yosys mapped each multiplication to a MULT18X18D in the address path)."""
    import re

    from spikezip.hw.flow.memories import memories
    from spikezip.hw.flow.verilog import generate

    geo = geometry(kind=kind, tokens=5, heads=2, head_dim=3, lanes=2)
    assert geo.words > 1 and geo.row_words > 1 and geo.column_words > 1
    text = generate(SpikeProduct(geo=geo), "product")
    arrays = re.findall(r'\(\* ram_style = "distributed" \*\)\n\s*reg \[[^\]]*\] (\w+) \[', text)
    assert sorted(arrays) == sorted(["xacc", "yacc", *(f"bank{b}" for b in range(geo.lanes))])
    assert not re.search(r"[\w\]\)] \* [\w\d(]", text), "a multiplication in the product core"
    # the block-RAM estimate follows the attribute
    mems = memories(SpikeProduct(geo=geo))
    assert {m.name.rsplit(".", 1)[-1] for m in mems if m.style == "distributed"} >= set(arrays)
    assert sum(m.dp16kd for m in mems) == 0


@pytest.mark.parametrize("kind", ["scores", "context"])
@pytest.mark.parametrize("levels", [(1, 1), (8, 4)], ids=["stbif", "graded"])
def test_reference_product_is_multi(kind, levels):
    """The definition the tests use equals ``sw.attention.multi``/``multi1`` summed (the index
    maps of both kinds, and any order of the events within a step), with ±1 and with graded
    spikes ±2^k."""
    rng = random.Random(3)
    x = (0, 15) if kind == "context" else (-8, 7)
    geo = geometry(kind=kind, tokens=4, heads=2, head_dim=3, x_bounds=x, y_bounds=(-8, 7),
                   x_spike_max=levels[0], y_spike_max=levels[1])  # fmt: skip
    xs, ys = random_trains(geo, rng, 5, 0.4)
    n, r, m = geo.shape
    deltas = reference_product(geo, xs, ys)
    shuffled = reference_product(geo, [rng.sample(e, len(e)) for e in xs], ys)
    xa, ya = torch.zeros(geo.heads, n, r), torch.zeros(geo.heads, r, m)
    for t, (xe, ye) in enumerate(zip(xs, ys, strict=True)):
        x, y = torch.zeros_like(xa), torch.zeros_like(ya)
        for idx, v in xe:
            x[geo.x_entry(idx)] = v
        for idx, v in ye:
            y[geo.y_entry(idx)] = v
        xa, ya = xa + x, ya + y
        if kind == "scores":  # multi(q, k, Qacc, Kacc) with k = Yᵀ
            step = multi(x, y.transpose(-1, -2), xa, ya.transpose(-1, -2))
        else:
            step = multi1(x, y, xa, ya)
        assert np.array_equal(step.to(torch.int64).numpy(), deltas[t])
        assert np.array_equal(shuffled[t], deltas[t])
        assert np.abs(deltas[t]).max(initial=0) <= geo.step_bound
    if levels != (1, 1):
        assert any(abs(v) > 1 for e in xs for _, v in e)


# -- tier 2: random trains -----------------------------------------------------------------------
@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["scores", "context"]))
    tokens = draw(st.integers(1, 4))
    heads = draw(st.integers(1, 2))
    head_dim = draw(st.integers(1, 3))
    lanes = draw(st.sampled_from([1, 2, 3, 4, 5, 8]))
    lo = draw(st.integers(-3, 0))
    x = (0, draw(st.integers(1, 7))) if kind == "context" else (lo, draw(st.integers(0, 3)))
    y = (draw(st.integers(-3, 0)), draw(st.integers(0, 3)))
    geo = geometry(kind=kind, tokens=tokens, heads=heads, head_dim=head_dim, lanes=lanes,
                   x_bounds=x, y_bounds=y)  # fmt: skip
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    density = draw(st.sampled_from([0.1, 0.5, 1.0]))
    runs = draw(st.integers(1, 2))
    steps = st.tuples(st.integers(1, 3), st.integers(1, 3))  # each input idle at its own step
    infs = [random_trains(geo, rng, draw(steps), density) for _ in range(runs)]
    return geo, infs, seed


def check(geo, infs, seed, stalls: bool) -> None:
    got = simulate(geo, infs)
    exp = product_schedule(geo, infs)
    # the values against the definition (busy: the OR of the inputs' markers of the step, an
    # idle input's 0), then every beat and its cycle against the model
    want = [d for xs, ys in infs for d in reference_product(geo, xs, ys)]
    assert len(expected_deltas(geo, got)) == len(want)
    for a, b in zip(expected_deltas(geo, got), want, strict=True):
        assert np.array_equal(a, b)
    busy = [[t < len(xs) - 1 or t < len(ys) - 1 for t in range(max(len(xs), len(ys)))]
            for xs, ys in infs]  # fmt: skip
    assert marker_busy(got) == [b for per in busy for b in per]
    assert got == exp
    if stalls:
        slow = simulate(geo, infs, valid=0.6, ready=0.5, seed=seed)
        assert values(slow) == values(exp)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_trains(case):  # test_random_trains_many: 300 examples (slow)
    geo, infs, seed = case
    check(geo, infs, seed, stalls=seed % 8 == 0)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_trains_many(case):
    geo, infs, seed = case
    check(geo, infs, seed, stalls=True)


@st.composite
def graded_cases(draw):
    """Graded X and Y spikes ``±2^k`` (each side's K in 0–4, bounds that let the largest fit)."""
    kind = draw(st.sampled_from(["scores", "context"]))
    tokens = draw(st.integers(1, 4))
    heads = draw(st.integers(1, 2))
    head_dim = draw(st.integers(1, 3))
    lanes = draw(st.sampled_from([1, 2, 3, 4, 5, 8]))
    kx, ky = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    reach = [draw(st.integers(1 << k, 1 << (k + 1))) for k in (kx, ky)]
    x = (0, reach[0]) if kind == "context" else (-reach[0], draw(st.integers(0, reach[0])))
    y = (draw(st.integers(-reach[1], 0)), reach[1])
    geo = geometry(kind=kind, tokens=tokens, heads=heads, head_dim=head_dim, lanes=lanes,
                   x_bounds=x, y_bounds=y, x_spike_max=1 << kx, y_spike_max=1 << ky)  # fmt: skip
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    density = draw(st.sampled_from([0.1, 0.5, 1.0]))
    runs = draw(st.integers(1, 2))
    steps = st.tuples(st.integers(1, 4), st.integers(1, 4))
    infs = [random_trains(geo, rng, draw(steps), density) for _ in range(runs)]
    return geo, infs, seed


def check_graded(geo, infs, seed, stalls: bool) -> None:
    """``check``, and the definition against the integer identity: the step's ``ΔO`` is
    ``Xacc_t·Yacc_t − Xacc_{t−1}·Yacc_{t−1}`` of the spike *values*, every partial sum within
    ``step_bound`` (the banks' width), the spikes ``±2^k`` within the sides' levels."""
    for xs, ys in infs:
        for steps, top in ((xs, geo.x_spike_max), (ys, geo.y_spike_max)):
            for _, v in (e for step in steps for e in step):
                assert abs(v) <= top and abs(v) & (abs(v) - 1) == 0
        for d in reference_product(geo, xs, ys):
            assert np.abs(d).max(initial=0) <= geo.step_bound
    check(geo, infs, seed, stalls)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_cases())
def test_random_graded_trains(case):  # test_random_graded_trains_many: 300 examples (slow)
    geo, infs, seed = case
    check_graded(geo, infs, seed, stalls=seed % 4 == 0)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_cases())
def test_random_graded_trains_many(case):
    geo, infs, seed = case
    check_graded(geo, infs, seed, stalls=True)


@pytest.mark.parametrize("kind", ["scores", "context"])
def test_graded_largest_spikes(kind):
    """Every spike at the largest level ``±2^4`` and back (tracers swinging across their whole
    range), both inputs, back to back on one word and across lanes: the shifts of every level
    through the RTL, cycle-exact; with stalls every value still the same."""
    x = (0, 16) if kind == "context" else (-16, 16)
    for lanes in (1, 3):
        geo = geometry(kind=kind, lanes=lanes, x_bounds=x, y_bounds=(-16, 16),
                       x_spike_max=16, y_spike_max=16)  # fmt: skip
        # X up by 16 on even steps, back down on odd ones; Y down by 2^(i mod 5), then back up
        sign = [1, -1, 1, -1, 1]
        xs = [[(i, s * 16) for i in range(geo.x_size)] for s in sign] + [[]]
        ys = [[(i, -s * (1 << (i % 5))) for i in range(geo.y_size)] for s in sign] + [[]]
        infs = [(xs, ys), random_trains(geo, random.Random(lanes), (3, 4), 0.7)]
        check_graded(geo, infs, lanes, stalls=True)


def test_graded_ports_and_widths():
    """The inputs carry ``spike_value_width`` of their sides' ``spike_max``; the output and the
    banks keep ``step_bound``'s width; the tracers their bounds' width."""
    geo = geometry(kind="scores", tokens=2, heads=1, head_dim=2, x_bounds=(-8, 7),
                   y_bounds=(-4, 3), x_spike_max=8, y_spike_max=2)  # fmt: skip
    assert geo.spike_widths == (5, 3) and geo.max_shift == 3
    assert geo.tracer_width == 4
    text = verilog.convert(SpikeProduct(geo=geo), name="product", emit_src=False)
    iw = geo.index_widths
    width = {"x": iw[0] + 5 + 2, "y": iw[1] + 3 + 2, "o": iw[2] + geo.value_width + 2}
    for port, bits in width.items():
        assert f"[{bits - 1}:0] {port}__payload" in text


def test_back_to_back_same_word():
    """One lane, one word: every event hits the word the one before wrote (forwarding)."""
    geo = geometry(tokens=1, heads=1, head_dim=1, lanes=4, x_bounds=(-3, 3), y_bounds=(-3, 3))
    xs = [[(0, 1)], [(0, 1)], [(0, -1)], []]
    ys = [[(0, 1)], [(0, -1)], [(0, -1)], []]
    infs = [(xs, ys)]
    check(geo, infs, 0, stalls=True)


#: ``(x steps, y steps)`` of three inferences run back to back
IDLE_RUNS = {
    "x_first": [(2, 5), (4, 2), (3, 3)],
    "y_first": [(5, 2), (1, 3), (2, 4)],
    "x_idle_from_step_0": [(1, 4), (3, 1), (2, 2)],
    "y_idle_from_step_0": [(4, 1), (1, 1), (3, 2)],
    "both_idle_from_step_0": [(1, 1), (3, 4), (1, 1)],
}


@pytest.mark.parametrize("kind", ["scores", "context"])
@pytest.mark.parametrize("runs", list(IDLE_RUNS.values()), ids=list(IDLE_RUNS))
def test_inputs_idle_at_different_steps(kind, runs):
    """An input whose marker had busy 0 is read no more in its inference: the core does not
    wait for its marker (one cycle less per step), though the next inference's beats of that
    input are already waiting (in step 0 of the later inferences every input that is not idle
    from the start spikes, so a beat taken too early changes ``ΔO`` and the cycles)."""
    x = (0, 3) if kind == "context" else (-2, 3)
    for lanes in (1, 3):
        geo = geometry(kind=kind, lanes=lanes, x_bounds=x)
        rng = random.Random(lanes)
        infs = [random_trains(geo, rng, steps, 0.6) for steps in runs]
        for xs, ys in infs[1:]:
            assert all(len(s) == 1 or s[0] for s in (xs, ys))  # spikes waiting in step 0
        check(geo, infs, lanes, stalls=True)
        exp = product_schedule(geo, infs)
        assert sum(b[0] for _, b in exp) == sum(max(s) for s in runs)


@pytest.mark.parametrize("kind", ["scores", "context"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backpressure_cycles(kind, seed):
    """Output backpressure: every beat leaves in the model's cycle (``timed`` with ``ready``;
    the skid register behind ``o`` lets the emitter load a beat while ``o`` is held)."""
    x = (0, 3) if kind == "context" else (-2, 3)
    geo = geometry(kind=kind, lanes=2 + seed, x_bounds=x)
    rng = random.Random(seed)
    infs = [random_trains(geo, rng, steps, 0.6) for steps in ((3, 2), (2, 3))]
    free = product_schedule(geo, infs)  # the cycles with the output always ready
    # beats held now and then, 3 to 15 cycles after their cycle with the output always ready
    bounds = [c + rng.choice((0, 0, 3, 8, 15)) for c, _ in free]
    got = simulate(geo, infs, bounds=bounds)
    run = timed(geo, infs, ready=bounds)
    want = [c for inf in run.beats for cycles, marker in inf for c in (*cycles, marker)]
    assert values(got) == values(free)
    assert [c for c, _ in got] == want
    assert [c for c, _ in got] != [c for c, _ in free]  # (the backpressure did hold beats)


def test_idle_input_costs_no_marker_cycle():
    """The model: once X is idle, a step is one cycle shorter than with an empty busy X step
    (the same output; the RTL's cycles are checked against the model above)."""
    geo = geometry()
    ys = [[(0, 1)], [(1, 1)], [(2, -1)], []]
    idle = product_schedule(geo, [([[]], ys)])
    empty = product_schedule(geo, [([[], [], [], []], ys)])
    assert values(idle) == values(empty)
    steps = np.cumsum([0] + [b[0] for _, b in idle[:-1]])  # the markers before each beat
    assert [c for c, _ in empty] == [c + int(t) for (c, _), t in zip(idle, steps, strict=True)]


@pytest.mark.parametrize(
    "inference",
    [([[]], [[]], [True]), ([], [[]]), ([[]],), "xy"],
)
def test_schedule_validation(inference):
    with pytest.raises(ValueError, match=r"an inference must be a pair \(xs, ys\) of non-empty"):
        product_schedule(geometry(), [inference])


# -- tier 2: the reference's traces --------------------------------------------------------------
def vit_inferences(vit, x, block: int, kind: str, lanes: int):
    """The core's geometry and input from the reference, and ``ΔO`` as the reference records."""
    from spikezip.sw.vit.reference import run

    res = run(vit, x, record_drives=True, record_state=True)
    geo = ProductGeometry.for_block(vit, block, kind, lanes=lanes)
    names = vit.site_names
    xs_, ys_ = ("q", "k") if kind == "scores" else ("attn", "v")
    kx, ky = (names.index(f"blocks.{block}.{s}") for s in (xs_, ys_))
    tr = res.trace
    infs = trace_inferences(
        geo, tr.spikes[kx].reshape(tr.batch, tr.n_steps, -1),
        tr.spikes[ky].reshape(tr.batch, tr.n_steps, -1),
        tr.busy[:, :, kx], tr.busy[:, :, ky], tr.steps,
    )  # fmt: skip
    blk = vit.blocks[block]
    recorded = []
    for b in range(tr.batch):
        per = []
        for t in range(int(tr.steps[b])):
            if kind == "scores":
                per.append(res.steps[t][f"blocks.{block}.scores_step"][b])
            elif blk.context.weight == 0:  # the drive shows nothing: the definition instead
                per.append(
                    reference_product(geo, infs[b][0], infs[b][1])[t]
                    if t < max(len(s) for s in infs[b])
                    else np.zeros((blk.heads, vit.tokens, blk.head_dim), np.int64)
                )
            else:
                drive = res.steps[t][f"blocks.{block}.context.drive"][b]
                assert (drive % blk.context.weight == 0).all()
                c = drive // blk.context.weight  # [N, D] → [H, N, dh]
                per.append(c.reshape(vit.tokens, blk.heads, -1).transpose(1, 0, 2))
        # after the second input's idle step nothing changes (the core's inference ends there)
        steps = max(len(s) for s in infs[b])
        assert all(not d.any() for d in per[steps:])
        recorded.append(per[:steps])
    return geo, infs, recorded


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vit(data):
    vit = data.draw(transformers(max_tokens=4, max_dim=4, max_depth=1))
    x = data.draw(images(vit, max_batch=2))
    kind = data.draw(st.sampled_from(["scores", "context"]))
    lanes = data.draw(st.sampled_from([1, 2, 3, 4]))
    geo, infs, recorded = vit_inferences(vit, x, 0, kind, lanes)
    got = simulate(geo, infs)
    deltas = expected_deltas(geo, got)
    want = [d for per in recorded for d in per]
    assert len(deltas) == len(want)
    for a, b in zip(deltas, want, strict=True):
        assert np.array_equal(a, b)
    assert got == product_schedule(geo, infs)


@pytest.mark.parametrize(("pipeline", "latency"), [(0, 2), (2, 5), (3, 5)])
@pytest.mark.parametrize("kind", ["scores", "context"])
def test_pipelines(pipeline, latency, kind):
    """The other accumulator pipelines (address stage, registered products): cycle-exact."""
    x = (0, 3) if kind == "context" else (-2, 3)
    for lanes in (1, 2):
        geo = geometry(kind=kind, lanes=lanes, accumulator_latency=latency, x_bounds=x)
        rng = random.Random(lanes)
        infs = [random_trains(geo, rng, steps, 0.5) for steps in ((3, 2), (1, 3))]
        assert simulate(geo, infs, pipeline=pipeline) == product_schedule(geo, infs)


@pytest.mark.parametrize("kind", ["scores", "context"])
def test_rotations_above_four(kind):
    """Rows up to 10 on 5, 7 and 11 lanes: the read-out's two lane rotations (by ``row mod 4``,
    then by the rest) reach every amount; cycle-exact, and exact under stalls."""
    x = (0, 3) if kind == "context" else (-2, 3)
    for lanes in (5, 7, 11):
        geo = geometry(kind=kind, tokens=11, heads=1, head_dim=2, lanes=lanes, x_bounds=x)
        rng = random.Random(lanes)
        infs = [random_trains(geo, rng, steps, 0.3) for steps in ((3, 2), (2, 2))]
        check(geo, infs, lanes, stalls=True)
