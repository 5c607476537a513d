# amaranth: UnusedElaboratable=no
"""The differential softmax core (``hw.cores.softmax``) and its divider (``hw.cores.divider``):
tier 1 (validation, widths, ports) and tier 2 (Amaranth's simulator against ``softmax_exact``
and the cycle model ``hw.model.softmax_model``, with and without stalls).

Tier 3 (cocotb on Icarus and Verilator) is in ``tests/sim/test_softmax.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.divider import Divider
from spikezip.hw.cores.softmax import SoftmaxCore
from spikezip.hw.flow.verilog import generate
from spikezip.hw.model import softmax_model as sm
from spikezip.hw.model.events import Step
from spikezip.ir.transformer import softmax_exact
from tests.hw.stream_bench import drive_stream

# -- the divider ---------------------------------------------------------------------------------


def run_divider(xw: int, dw: int, qw: int, pairs: list[tuple[int, int]], stall_seed=None):
    """Feed ``(x, d)`` pairs one per cycle (``en`` randomly low with ``stall_seed``); return the
    quotients with their tags and the cycles they left in (counted in enabled cycles)."""
    div = Divider(dividend_width=xw, divisor_width=dw, quotient_width=qw, tag_shape=16)
    rng = np.random.default_rng(stall_seed)
    out = []

    async def bench(ctx):
        k, enabled, cycle = 0, 0, 0
        while len(out) < len(pairs) and cycle < 10 * (len(pairs) + qw + 5):
            en = stall_seed is None or rng.random() < 0.6
            ctx.set(div.en, en)
            if k < len(pairs):
                ctx.set(div.i.valid, 1)
                ctx.set(div.i.payload.dividend, pairs[k][0])
                ctx.set(div.i.payload.divisor, pairs[k][1])
                ctx.set(div.i.payload.tag, k)
            else:
                ctx.set(div.i.valid, 0)
            if en and ctx.get(div.o.valid):
                out.append((ctx.get(div.o.payload.tag), ctx.get(div.o.payload.quotient), enabled))
            k += bool(en and k < len(pairs))
            enabled += bool(en)
            await ctx.tick()
            cycle += 1

    sim = Simulator(div)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, div


def _check_divider(xw, dw, qw, pairs, stall_seed=None):
    out, div = run_divider(xw, dw, qw, pairs, stall_seed)
    assert [t for t, _, _ in out] == list(range(len(pairs)))
    assert [q for _, q, _ in out] == [x // d for x, d in pairs]
    if stall_seed is None:
        assert [c for _, _, c in out] == [k + div.latency for k in range(len(pairs))]


@st.composite
def division_cases(draw):
    dw = draw(st.integers(1, 24))
    qw = draw(st.integers(1, 20))
    xw = draw(st.integers(1, dw + qw))
    pairs = []
    for _ in range(draw(st.integers(1, 6))):
        d = draw(st.integers(1, (1 << dw) - 1))
        top = min((1 << xw) - 1, (d << qw) - 1)
        pick = st.one_of(st.integers(0, top), st.sampled_from([0, top, max(0, top - d + 1)]))
        pairs.append((draw(pick), d))
    return xw, dw, qw, pairs


@given(division_cases())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_divider_is_exact(case) -> None:  # the _many twin: 120 (slow)
    _check_divider(*case)


@pytest.mark.slow
@given(division_cases())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_divider_is_exact_many(case) -> None:
    _check_divider(*case)


@pytest.mark.parametrize(("xw", "dw", "qw"), [(1, 1, 1), (8, 4, 4), (33, 21, 17), (40, 24, 16)])
def test_divider_extremes(xw: int, dw: int, qw: int) -> None:
    """Largest and smallest divisors and dividends, quotients 0 and 2^qw − 1."""
    dmax = (1 << dw) - 1
    cands = [(0, 1), (0, dmax), (dmax - 1, dmax), (dmax, dmax)]
    cands += [(min((1 << xw) - 1, (d << qw) - 1), d) for d in (1, 2, 3, dmax) if d <= dmax]
    pairs = [(x, d) for x, d in cands if x < 1 << xw and x < d << qw]
    _check_divider(xw, dw, qw, pairs)
    _check_divider(xw, dw, qw, pairs, stall_seed=xw)


def test_divider_validation() -> None:
    for name in ("dividend_width", "divisor_width", "quotient_width"):
        kw = {"dividend_width": 8, "divisor_width": 8, "quotient_width": 8}
        for bad in (0, 63, 2.0, True):
            with pytest.raises(ValueError, match=f"{name} must be an integer in \\[1, 62\\]"):
                Divider(**{**kw, name: bad})
    assert Divider(dividend_width=9, divisor_width=5, quotient_width=7).latency == 7


# -- parameters ----------------------------------------------------------------------------------

GOOD = {
    "heads": 2,
    "tokens": 3,
    "table": (100, 60, 30, 10, 3),
    "numerator": 50,
    "score_bound": 6,
    "step_bound": 4,
}


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("heads", 0, "heads must be an integer ≥ 1"),
        ("tokens", -1, "tokens must be an integer ≥ 1"),
        ("numerator", 1.5, "numerator must be an integer ≥ 1"),
        ("step_bound", 0, "step_bound must be an integer ≥ 1"),
        ("score_bound", -1, "score_bound must be an integer ≥ 0"),
        ("table", (), "table must hold at least one entry"),
        ("table", (0, 0), "table must hold at least one entry with table\\[0\\] ≥ 1"),
        ("table", (3, 4), "table must be non-negative and non-increasing"),
        ("table", (3, -1), "table must be non-negative and non-increasing"),
        ("numerator", 1 << 55, "table\\[0\\]·tokens·numerator must stay below 2\\^62"),
    ],
)
def test_params_validation(field: str, bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sm.SoftmaxParams(**{**GOOD, field: bad})


def test_widths_and_ports() -> None:
    p = sm.SoftmaxParams(**GOOD)
    assert (p.rows, p.entries, p.index_width) == (6, 18, 5)
    assert p.score_width == 4 and p.gap_width == 4  # |P| ≤ 6, gap ≤ 12
    assert p.sum_width == 9 and p.quotient_width == 6  # Σ ≤ 300, G ≤ 50
    assert p.dividend_width == (100 * 50 + 150).bit_length()
    assert p.input_format.value_width == 4 and p.output_format.value_width == 7
    mult, shift = p.row_reciprocal()
    assert all((i * mult) >> shift == i // 3 for i in range(18))
    core = SoftmaxCore(p)
    assert core.out_delay == 3 + core.divider_latency + 4 == core.timing.out_delay
    assert core.timing.row_period == 2 * 3  # the next row's reads follow the last one
    assert core.timing.divide_offset == 2 * 3 + 7  # score read 3, gap 2, table 2
    one = sm.SoftmaxParams(**{**GOOD, "tokens": 1, "score_bound": 2, "step_bound": 2})
    assert sm.SoftmaxTiming.of(one).row_period == 3  # the row pick's 2 cycles, then the start
    text = generate(core, "softmax")
    header = text[text.index("module softmax(") : text.index(");")]
    for port in ("i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload"):
        assert port in header
    with pytest.raises(TypeError, match="params must be a SoftmaxParams"):
        SoftmaxCore(GOOD)
    # the score and G memories keep Yosys's no_rw_check in the Verilog (their block RAMs then
    # take the output registers, hw.flow.ecp5); the table ROM and the row buffer do not need it
    assert text.count("(* no_rw_check *)") == 2
    for module in ("softmax.scores", "softmax.drive"):
        body = text[text.index(f"module \\{module} ") :]
        body = body[: body.index("endmodule")]
        assert "(* no_rw_check *)\n  reg [" in body and "] mem [17:0];" in body


# -- tier 2: the core in Amaranth's simulator ------------------------------------------------------


def run_core(p: sm.SoftmaxParams, ins: list[list[Step]], seed=None):
    """Drive the core with ``ins``; return the output beats (cycle, payload), the expected
    payloads (from ``softmax_exact``) and the model's cycles. ``seed``: random idle input cycles
    and output stalls."""
    core = SoftmaxCore(p)
    outs = sm.output_steps(p, ins)
    words = [w for inf in ins for s in inf for w in s.words(p.input_format)]
    expected = [w for inf in outs for s in inf for w in s.words(p.output_format)]
    sched = sm.schedule(core.timing, ins, outs)
    cycles = [c for inf in sched for s in inf.steps for c in (*s.event_cycles, s.marker_cycle)]
    got = drive_stream(core, words, len(expected), limit=20 * (cycles[-1] + 10), seed=seed)
    return got, expected, cycles


def random_inputs(p: sm.SoftmaxParams, rng, inferences: int, steps: int, density: float):
    """Score-change steps that keep every ``|P| ≤ score_bound`` and ``|ΔP| ≤ step_bound``."""
    out = []
    for _ in range(inferences):
        scores, inf = np.zeros(p.entries, dtype=np.int64), []
        for t in range(steps):
            move = rng.integers(-p.step_bound, p.step_bound + 1, p.entries)
            move *= rng.random(p.entries) < density
            new = np.clip(scores + move, -p.score_bound, p.score_bound)
            delta, scores = new - scores, new
            idx = np.flatnonzero(delta)
            inf.append(Step(idx, delta[idx], t < steps - 1))
        out.append(inf)
    return out


@st.composite
def blocks(draw, *, ties: bool = False):
    """Random small blocks; ``ties``: tiny tables and numerators, so that many rows land on
    ``(E·N + ⌊Σ/2⌋)/Σ`` exactly at a half."""
    heads, tokens = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    hi = 4 if ties else 1 << draw(st.integers(1, 16))
    first = draw(st.integers(1, hi))
    rest = draw(st.lists(st.integers(0, first), max_size=8 if ties else 20))
    table = (first, *sorted(rest, reverse=True))
    numerator = draw(st.integers(1, 8 if ties else (1 << draw(st.integers(1, 16))) - 1))
    score_bound = draw(st.integers(0, 12))
    p = sm.SoftmaxParams(
        heads=heads,
        tokens=tokens,
        table=table,
        numerator=numerator,
        score_bound=score_bound,
        step_bound=draw(st.integers(1, max(1, 2 * score_bound))),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ins = random_inputs(
        p, rng, draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.sampled_from([0.1, 0.5]))
    )
    return p, ins


def _check(p, ins, seed=None) -> None:
    got, expected, cycles = run_core(p, ins, seed)
    fmt = p.output_format
    assert [fmt.unpack(w) for _, w in got] == [fmt.unpack(w) for w in expected]
    if seed is None:
        assert [c for c, _ in got] == cycles


@given(blocks())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_core_matches_definition_and_model(case) -> None:  # the _many twin: 50 (slow)
    _check(*case)


@given(blocks(ties=True))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_core_is_exact_on_ties(case) -> None:  # the _many twin: 40 (slow)
    _check(*case)


@pytest.mark.slow
@given(blocks())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_core_matches_definition_and_model_many(case) -> None:
    _check(*case)


@pytest.mark.slow
@given(blocks(ties=True))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_core_is_exact_on_ties_many(case) -> None:
    _check(*case)


@given(blocks(), st.integers(0, 1000))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_core_under_stalls(case, seed: int) -> None:
    """Idle input cycles and output backpressure change no value."""
    _check(*case, seed=seed)


def test_ties_are_exercised() -> None:
    """The tie strategy's rows do hit exact halves (and the definition rounds them up)."""
    rng = np.random.default_rng(1)
    ties = 0
    for _ in range(200):
        table = sorted(rng.integers(0, 5, 4).tolist(), reverse=True)
        table[0] = max(table[0], 1)
        scores = rng.integers(-3, 4, 4).tolist()
        num = int(rng.integers(1, 9))
        top = max(scores)
        e = [table[top - s] if top - s < len(table) else 0 for s in scores]
        total = sum(e)
        ties += sum(2 * (x * num % total) == total for x in e)
        g = softmax_exact(scores, table, num)
        assert all(2 * x * num >= (2 * gj - 1) * total for x, gj in zip(e, g, strict=True))
    assert ties > 20
    p = sm.SoftmaxParams(heads=1, tokens=2, table=(3, 1), numerator=2, score_bound=1, step_bound=1)
    empty = Step(np.array([], dtype=np.int64), np.array([], dtype=np.int64), False)
    ins = [[Step(np.array([0]), np.array([1]), True), empty]]
    # row 0, P = [1, 0]: E = [3, 1], Σ = 4, G = ⌊(3·2 + 2)/4⌋ = 2 and ⌊(1·2 + 2)/4⌋ = 1 (both
    # exact halves, 1.5 and 0.5, rounded up); row 1, P = [0, 0]: G = ⌊(3·2 + 3)/6⌋ = 1 twice
    assert sm.output_steps(p, ins)[0][0].values.tolist() == [2, 1, 1, 1]
    _check(p, ins)


def test_fixed_cases() -> None:
    """Hand-made corner cases: one token, a one-entry table, gaps beyond the table, an
    inference whose only step is idle (the extra marker), back-to-back inferences."""
    empty = Step(np.array([], dtype=np.int64), np.array([], dtype=np.int64), False)
    p = sm.SoftmaxParams(heads=1, tokens=1, table=(5,), numerator=3, score_bound=2, step_bound=2)
    _check(p, [[empty], [Step(np.array([0]), np.array([2]), True), empty]])
    p = sm.SoftmaxParams(**GOOD)
    rng = np.random.default_rng(7)
    _check(p, [[empty], *random_inputs(p, rng, 2, 5, 0.5), [empty]])
    outs = sm.output_steps(p, [[empty]])
    assert [s.busy for s in outs[0]] == [True, False]  # the injection at t = 0, then idle


def test_inputs_must_ascend_within_a_step() -> None:
    """The score memory's read-modify-write needs two events on one entry ≥ 4 cycles apart: the
    protocol's ascending indices, checked (a repeated or descending index is refused)."""
    p = sm.SoftmaxParams(**GOOD)
    ok = Step(np.array([0, 4]), np.array([1, -1]), False)
    sm.check_inputs(p, [[ok]])
    for idx in ([4, 4], [4, 0]):
        bad = Step(np.array(idx), np.array([1, 1]), False)
        with pytest.raises(ValueError, match="inference 0: indices must ascend within a step"):
            sm.check_inputs(p, [[bad]])
