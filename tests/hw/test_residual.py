# amaranth: UnusedElaboratable=no
"""The residual-stream accumulator (``hw.cores.residual``): tier 1 (validation, the stages of a
ViT == the reference's recorded increments) and tier 2 (Amaranth's simulator against the golden
lists and the cycle model, with stalls)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.residual import ResidualCore
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model.events import Step
from tests.hw.stream_bench import drive_streams, drive_timed
from tests.sw.vit_strategies import images, transformers


# -- tier 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": 0}, "tokens must be an integer ≥ 1, not 0"),
        ({"multiplier": 1.5}, "multiplier must be an integer, not 1.5"),
        ({"offset": 5}, r"offset must be in \[0, 4\]"),
        ({"base_bound": -1}, "base_bound must be None or an integer ≥ 0, not -1"),
        ({"spike_max": 12}, "spike_max must be a power of two ≥ 1, not 12"),
        ({"spike_max": 0}, "spike_max must be a power of two ≥ 1, not 0"),
    ],
)
def test_validation(kwargs, message) -> None:
    args = {"tokens": 2, "dim": 4, "multiplier": 3, "spike_neurons": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        rm.ResidualGeometry(**args)


def test_position_checks() -> None:
    geo = rm.ResidualGeometry(tokens=2, dim=2, multiplier=1, spike_neurons=2, position_bound=3)
    with pytest.raises(ValueError, match=r"position must have shape \(2, 2\)"):
        ResidualCore(geometry=geo, position=np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"must equal geometry\.position_bound"):
        ResidualCore(geometry=geo, position=np.ones((2, 2), dtype=int))
    with pytest.raises(ValueError, match="position must be given"):
        ResidualCore(geometry=geo)
    with pytest.raises(TypeError, match="geometry must be a ResidualGeometry"):
        ResidualCore(geometry=None)


def _lists(vit, x):
    """Per stage ``(geometry, position, base, spikes, expected)`` from the reference."""
    from spikezip.sw.vit.reference import run

    result = run(vit, x, record_drives=True)
    tr, names = result.trace, vit.site_names
    increments = {}
    out = []
    for s in rm.stages(vit):
        j = names.index(s["name"])
        ins, _ = lnm.reference_steps(result.steps, tr.busy, j, s["name"])
        increments[s["name"]] = ins
        k = names.index(s["site"])
        spikes = rm.spike_steps(tr, k)
        geo = rm.stage_geometry(vit, s)
        assert geo.spike_neurons == int(tr.spikes[k].shape[2])
        pos = s["position"]
        base = None if s["base"] is None else increments[s["base"]]
        out.append((s["name"], geo, pos, base, spikes, ins))
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_stages_give_the_reference_increments(data) -> None:
    """Chained stages (embed + position; + proj; + fc2) reproduce every LayerNorm site's
    recorded increments and busy flags, step for step."""
    vit = data.draw(transformers(max_tokens=3, max_dim=4, max_depth=2))
    x = data.draw(images(vit, max_batch=2))
    for name, geo, pos, base, spikes, want in _lists(vit, x):
        pos = None if pos is None or not pos.any() else pos
        got = rm.golden_outputs(geo, base, spikes, pos)
        for b, (g, w) in enumerate(zip(got, want, strict=True)):
            assert len(g) == len(w), (name, b)
            for t, (gs, ws) in enumerate(zip(g, w, strict=True)):
                assert gs.indices.tolist() == ws.indices.tolist(), (name, b, t)
                assert gs.values.tolist() == ws.values.tolist() and gs.busy == ws.busy


# -- tier 2 -------------------------------------------------------------------------------------
def simulate(core, base, spikes, outputs, *, valid=1.0, ready=1.0, seed=0):

    geo = core.geometry
    b_words = [w for inf in spikes for s in inf for w in s.words(core.spike_format)]
    a_words = (
        [] if base is None else [w for inf in base for s in inf for w in s.words(core.base_format)]
    )
    expected = [w for inf in outputs for s in inf for w in s.words(core.output_format)]
    sched = rm.schedule(geo, base, spikes, outputs)
    cycles = [c for inf in sched for ev, mk in inf for c in [*ev, mk]]
    limit = int((max(cycles) + 50) * 3 / min(valid, ready)) + 100
    ports = [(core.b, b_words)] + ([] if base is None else [(core.a, a_words)])
    got = drive_streams(
        core, ports, len(expected), limit=limit, seed=seed, valid_p=valid, ready_p=ready
    )
    return got, expected, cycles


def _steps(rng, n, bound, length, spikes, spike_max=1):
    out = []
    for t in range(length):
        row = np.zeros(n, dtype=np.int64)
        pick = rng.random(n) < 0.3
        row[pick] = (
            rng.choice([-1, 1], n)[pick] if spikes else rng.integers(-bound, bound + 1, n)[pick]
        )
        if spikes and spike_max > 1:  # graded: ±2^k, k uniform in 0..K
            row <<= rng.integers(0, spike_max.bit_length(), n)
        if t == length - 1 and rng.random() < 0.7:
            row[:] = 0
        idx = np.flatnonzero(row)
        out.append(Step(idx.astype(np.int64), row[idx], t < length - 1))
    return out


@st.composite
def residual_cases(draw, graded=False):
    """A random stage and its inputs; ``graded``: spikes ``±2^k`` with a random K in 0–4."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    tokens, dim = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    n = tokens * dim
    offset = draw(st.integers(0, n - 1))
    neurons = draw(st.integers(1, n - offset))
    has_base = draw(st.booleans())
    pos = None
    if draw(st.booleans()):
        pos = rng.integers(-50, 51, (tokens, dim))
    mult = draw(st.sampled_from([1, 2, 3, 64, -5, 100, 0]))
    spike_max = 1 << draw(st.integers(0, 4)) if graded else 1
    geo = rm.ResidualGeometry(
        spike_max=spike_max,
        tokens=tokens,
        dim=dim,
        multiplier=mult,
        spike_neurons=neurons,
        offset=offset,
        base_bound=300 if has_base else None,
        position_bound=0 if pos is None else int(np.abs(pos).max()),
    )
    spikes, base = [], [] if has_base else None
    for _ in range(draw(st.integers(1, 2))):
        length = int(rng.integers(1, 5))
        spikes.append(_steps(rng, neurons, 1, length, True, spike_max))
        if has_base:
            base.append(_steps(rng, n, 300, int(rng.integers(1, length + 1)), False))
    return geo, pos, base, spikes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_cases())
def test_core_random_stages(case) -> None:  # test_core_many_random_stages: 100 (slow)
    """Every output beat equals the golden list, in the model's cycle; stalls change no value."""
    geo, pos, base, spikes = case
    core = ResidualCore(geometry=geo, position=pos)
    p = None if pos is None or not pos.any() else pos
    outputs = rm.golden_outputs(geo, base, spikes, p)
    got, expected, cycles = simulate(core, base, spikes, outputs)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles
    got, expected, _ = simulate(core, base, spikes, outputs, valid=0.6, ready=0.5, seed=len(cycles))
    assert [w for _, w in got] == expected


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_cases())
def test_core_many_random_stages(case) -> None:
    test_core_random_stages.hypothesis.inner_test(case)


def _check_graded(case) -> None:
    geo, pos, base, spikes = case
    values = np.concatenate([s.values for inf in spikes for s in inf] + [np.zeros(0, np.int64)])
    mags = np.abs(values)
    assert (mags <= geo.spike_max).all() and not (mags & (mags - 1)).any()
    # the golden list is the integer definition: Δ = base + m·s (+ P at step 0)
    p = None if pos is None or not pos.any() else pos
    outputs = rm.golden_outputs(geo, base, spikes, p)
    for j, inf in enumerate(outputs):
        for t, step in enumerate(inf):
            want = np.zeros(geo.entries, dtype=np.int64)
            if base is not None and t < len(base[j]):
                want[base[j][t].indices] += base[j][t].values
            if t < len(spikes[j]):
                want[spikes[j][t].indices + geo.offset] += geo.multiplier * spikes[j][t].values
            if t == 0 and p is not None:
                want += p.reshape(-1)
            got = np.zeros(geo.entries, dtype=np.int64)
            got[step.indices] = step.values
            assert np.array_equal(got, want)
            assert np.abs(want).max(initial=0) <= geo.bound
    test_core_random_stages.hypothesis.inner_test(case)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_cases(graded=True))
def test_core_random_graded_stages(case) -> None:  # test_core_many_random_graded_stages (slow)
    """Graded spikes ``±2^k`` (K in 0–4) on ``b``: the golden list is ``base + m·s (+ P)``, the
    RTL emits it beat for beat in the model's cycle, and stalls change no value."""
    _check_graded(case)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_cases(graded=True))
def test_core_many_random_graded_stages(case) -> None:
    _check_graded(case)


def test_graded_every_level() -> None:
    """Every spike value ``±2^k``, ``k ≤ 4``, once on each neuron, with ``m = −7``: each of the
    table's constants reaches the stream; the spike port is ``K + 2`` bits wide."""
    geo = rm.ResidualGeometry(tokens=2, dim=5, multiplier=-7, spike_neurons=10, spike_max=16)
    core = ResidualCore(geometry=geo)
    assert core.spike_format.value_width == 6 and geo.bound == 7 * 16
    vals = np.array([1, -1, 2, -2, 4, -4, 8, -8, 16, -16], dtype=np.int64)
    idx = np.arange(10, dtype=np.int64)
    spikes = [[Step(idx, vals, True), Step(idx, vals[::-1].copy(), True), Step(idx[:0], idx[:0],
                                                                             False)]]  # fmt: skip
    outputs = rm.golden_outputs(geo, None, spikes)
    assert outputs[0][0].values.tolist() == (-7 * vals).tolist()
    got, expected, cycles = simulate(core, None, spikes, outputs)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles


# slow; make test: random ViTs' stages (above) and the digits ViT's other cores (tests/sim)
@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_digits_vit_stages_in_rtl(trained_vit, stream) -> None:
    """The trained digits ViT, one test image: every stage's golden list equals the reference's
    recorded increments of its LayerNorm site, and every stage's core (Amaranth simulator),
    plain and streaming, emits exactly that list, each beat in the model's cycle."""
    from spikezip.sw import digits
    from spikezip.sw.vit.convert import to_transformer

    vit = to_transformer(trained_vit.model, name="digits-vit")
    x = digits.load().x_test[:1]
    stages = _lists(vit, x)
    assert len(stages) == 2 * vit.depth + 1
    for name, geo, pos, base, spikes, want in stages:
        geo = dataclasses.replace(geo, stream=stream)
        pos = None if pos is None or not pos.any() else pos
        outputs = rm.golden_outputs(geo, base, spikes, pos)
        for g, w in zip(outputs[0], want[0], strict=True):
            assert g.indices.tolist() == w.indices.tolist(), name
            assert g.values.tolist() == w.values.tolist() and g.busy == w.busy, name
        got, expected, cycles = simulate(
            ResidualCore(geometry=geo, position=pos), base, spikes, outputs
        )
        assert [w for _, w in got] == expected, name
        assert [c for c, _ in got] == cycles, name


def test_injection_alone_sets_no_busy_flag() -> None:
    """An idle spike input at step 0 with a position injection: the stage emits P with busy 0
    (the reference's cumulative flag of the site before the LayerNorm; the injection is not a
    site) and the inference ends there — in the golden list and in the RTL."""
    geo = rm.ResidualGeometry(
        tokens=2, dim=1, multiplier=3, spike_neurons=1, offset=1, position_bound=5
    )
    pos = np.array([[5], [-2]])
    none = np.zeros(0, dtype=np.int64)
    spikes = [[Step(none, none, False)], [Step(none, none, False)]]
    outputs = rm.golden_outputs(geo, None, spikes, pos)
    assert [len(o) for o in outputs] == [1, 1]
    assert outputs[0][0].values.tolist() == [5, -2] and not outputs[0][0].busy
    got, expected, cycles = simulate(
        ResidualCore(geometry=geo, position=pos), None, spikes, outputs
    )
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles


# -- streaming stages (geometry.stream) ---------------------------------------------------------
def _timed_case(geo, pos, base, spikes, seed):
    """The stage's golden list, random arrival cycles for both inputs' beats and random cycles
    from which each output beat may leave."""
    rng = np.random.default_rng(seed)
    p = None if pos is None or not pos.any() else pos
    outputs = rm.golden_outputs(geo, base, spikes, p)

    def arrivals_of(steps_per_inf):
        beats = [s.n_events + 1 for inf in steps_per_inf for s in inf]
        flat = np.cumsum(rng.choice([0, 0, 0, 1, 2, 5, 40], sum(beats))).tolist()
        out, k = [], 0
        for inf in steps_per_inf:
            out.append([])
            for s in inf:
                out[-1].append(flat[k : k + s.n_events + 1])
                k += s.n_events + 1
        return out, flat

    arr_b, flat_b = arrivals_of(spikes)
    arr_a, flat_a = arrivals_of(base) if base is not None else (None, None)
    arrivals = [(None if arr_a is None else arr_a[j], arr_b[j]) for j in range(len(spikes))]
    n_out = sum(s.n_events + 1 for inf in outputs for s in inf)
    ready = np.cumsum(rng.choice([0, 0, 0, 1, 3, 30], n_out)).tolist()
    return p, outputs, arrivals, (flat_a, flat_b), ready


def _timed_run(geo, pos, base, spikes, seed):
    """Model and Amaranth run of one stage with gapped inputs and backpressure: the output
    words, every output beat's cycle and every input beat's taken cycle, each from both."""
    _, outputs, arrivals, (flat_a, flat_b), ready = _timed_case(geo, pos, base, spikes, seed)
    core = ResidualCore(geometry=geo, position=pos)
    model = rm.timed(geo, base, spikes, outputs, arrivals, ready)
    cycles = [c for inf in model.beats for ev, mk in inf for c in (*ev, mk)]
    b_words = [w for inf in spikes for s in inf for w in s.words(core.spike_format)]
    inputs = [(core.b, b_words, flat_b)]
    if base is not None:
        a_words = [w for inf in base for s in inf for w in s.words(core.base_format)]
        inputs = [(core.a, a_words, flat_a), *inputs]
    expected = [w for inf in outputs for s in inf for w in s.words(core.output_format)]
    limit = max(cycles) + 200
    taken, got = drive_timed(core, inputs, len(expected), ready, limit=limit)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles
    assert [tuple(t) for t in taken] == list(model.taken)
    return cycles


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_cases(), st.integers(0, 999))
def test_streaming_stage_is_exact(case, seed) -> None:
    """A streaming stage (``geometry.stream``): the same golden list beat for beat, every output
    beat in the model's cycle and every input beat taken in the model's cycle, with both inputs
    arriving with random gaps and the output held back at random; and always-valid inputs with
    random stalls change no value. The plain stage passes the same timed check."""
    geo, pos, base, spikes = case
    for stream in (False, True):
        g = dataclasses.replace(geo, stream=stream)
        _timed_run(g, pos, base, spikes, seed)
    g = dataclasses.replace(geo, stream=True)
    core = ResidualCore(geometry=g, position=pos)
    p = None if pos is None or not pos.any() else pos
    outputs = rm.golden_outputs(g, base, spikes, p)
    got, expected, cycles = simulate(core, base, spikes, outputs)
    assert [w for _, w in got] == expected
    assert [c for c, _ in got] == cycles
    got, expected, _ = simulate(core, base, spikes, outputs, valid=0.6, ready=0.5, seed=seed)
    assert [w for _, w in got] == expected


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(residual_cases(), residual_cases(graded=True)), st.integers(0, 999))
def test_streaming_stage_is_exact_more(case, seed) -> None:
    test_streaming_stage_is_exact.hypothesis.inner_test(case, seed)


def test_streaming_stage_sends_a_token_before_the_markers() -> None:
    """Three tokens; both inputs send their first events (up to a later token's) at once and
    the rest 300 cycles later: the streaming stage sends token 0's sums before the later beats
    arrive, the plain stage only after both markers, each in the model's cycles."""
    geo = rm.ResidualGeometry(tokens=3, dim=2, multiplier=3, spike_neurons=6, base_bound=20)
    base = [[Step(np.array([0, 1, 4]), np.array([5, -2, 7]), False)]]
    spikes = [[Step(np.array([1, 3, 5]), np.array([1, -1, 1]), False)]]
    outputs = rm.golden_outputs(geo, base, spikes)
    assert outputs[0][0].indices.tolist() == [0, 1, 3, 4, 5]
    arrivals = [([[0, 1, 2, 300]], [[0, 1, 300, 301]])]
    first = {}
    for stream in (False, True):
        g = dataclasses.replace(geo, stream=stream)
        model = rm.timed(g, base, spikes, outputs, arrivals)
        ((ev, mk),) = model.beats[0]
        first[stream] = ev[0]
        core = ResidualCore(geometry=g)
        words = {p: [w for s in inf[0:1] for w in s.words(f)] for p, inf, f in (
            ("a", base[0], core.base_format), ("b", spikes[0], core.spike_format))}  # fmt: skip
        _, got = drive_timed(
            core,
            [(core.a, words["a"], arrivals[0][0][0]), (core.b, words["b"], arrivals[0][1][0])],
            6,
            [],
            limit=1000,
        )
        assert [c for c, _ in got] == [*ev, mk]
    assert first[True] < 300 < first[False]


def test_streaming_stage_refuses_input_out_of_token_order() -> None:
    """The streaming model names the first event of an input out of token order."""
    geo = rm.ResidualGeometry(tokens=3, dim=2, multiplier=1, spike_neurons=6, stream=True)
    spikes = [[Step(np.array([4, 1]), np.array([1, 1]), False)]]
    outputs = rm.golden_outputs(geo, None, spikes)
    with pytest.raises(ValueError, match=r"inference 0, step 0, input b: event 1 \(token 0\) "
                       r"comes after token 2"):  # fmt: skip
        rm.timed(geo, None, spikes, outputs)
