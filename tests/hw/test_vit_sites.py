"""Every ST-BIF site of a ViT as a mapped layer core (``hw.model.input_map``,
``hw.model.vit_sites``, ``LayerCore.for_site``).

Tier 1: the input maps and site specs. Tier 2: each site's core in Amaranth's simulator fed the
reference's own input of that site (spikes of its source, recorded drives, pixels), every output
beat equal to the reference's spikes and busy flags and in the cycle of the exact model.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.model import cycle_model
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.vit_sites import site_spec, site_streams
from spikezip.ir.transformer import SiteKind
from spikezip.sw.vit.reference import run
from tests.hw.stream_bench import drive_stream
from tests.sw.vit_strategies import images, transformers

# -- tier 1 ---------------------------------------------------------------------------------------


def test_token_map_layout() -> None:
    w = np.arange(12).reshape(4, 3) - 5  # d_out 4, d_in 3
    m = InputMap.tokens(w, tokens=3, lanes=2)
    assert m.span == 2 and m.n_in == 9 and m.n_rows == 3
    assert m.rows.tolist() == [0, 1, 2] * 3
    assert m.bases.tolist() == [0, 0, 0, 2, 2, 2, 4, 4, 4]
    assert m.kept.all()
    # row c, word k holds W[2k:2k+2, c]
    for c in range(3):
        for k in range(2):
            assert m.table[c * 2 + k].tolist() == w[2 * k : 2 * k + 2, c].tolist()
    assert m.weight_width == 4  # [-5, 6]
    assert m.event_cycles(np.array([0, 8]), 3).tolist() == [3, 3]


def test_token_map_reading_the_class_token_only() -> None:
    m = InputMap.tokens(np.ones((3, 2), dtype=int), tokens=4, lanes=2, read_tokens=1)
    assert m.kept.tolist() == [True, True] + [False] * 6
    assert m.span == 2  # 3 channels padded to 2 words: allowed with one token
    assert m.event_cycles(np.array([1, 2, 7]), 1).tolist() == [2, 1, 1]


def test_direct_map() -> None:
    m = InputMap.direct(7, lanes=3, gain=-4)
    assert m.span == 1 and m.bases.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert m.rows.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert m.table.tolist() == [[-4, 0, 0], [0, -4, 0], [0, 0, -4]]
    assert m.event_cycles(np.array([6]), 2).tolist() == [2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: InputMap.tokens(np.ones((6, 2)), tokens=2, lanes=4), r"lanes must divide the "
         r"site's 6 channels per token \(one of \[1, 2, 3, 6\]\), not 4"),
        (lambda: InputMap.tokens(np.ones((6, 2)), tokens=2, lanes=0), "lanes must be a positive"),
        (lambda: InputMap.tokens(np.ones((2, 2)), tokens=2, lanes=1, read_tokens=3),
         r"read_tokens must be in \[1, 2\], not 3"),
        (lambda: InputMap.tokens(np.ones(3), tokens=2, lanes=1), "weight must be a non-empty"),
        (lambda: InputMap.direct(0, lanes=1), "n must be a positive integer"),
        (lambda: InputMap.direct(3, lanes=1, gain=1.5), "gain must be an integer"),
    ],
)  # fmt: skip
def test_map_validation(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transformers())
def test_site_specs_follow_the_ir(vit) -> None:
    """Neurons, bounds, thresholds and membrane widths of every site are the IR's (the
    reference's ``ranges``); the input index space is the producer's."""
    for s in vit.sites:
        spec = site_spec(vit, s.name, lanes=1)
        assert spec.n_out == s.size
        assert (spec.neurons.neg_bound, spec.neurons.pos_bound) == (s.neg_bound, s.pos_bound)
        assert spec.widths.membrane == vit.ranges.membrane_width[s.name]
        assert spec.input_map.n_in >= 1
        if s.kind is SiteKind.LINEAR:
            assert spec.input_map.kind == "tokens"
        else:
            assert spec.input_map.kind == "direct" and spec.input_map.n_in == s.size
    with pytest.raises(ValueError, match="name must be one of the sites"):
        site_spec(vit, "nope", lanes=1)


def test_streaming_sites_and_their_order() -> None:
    """Which sites stream (their producers send in ascending index; the context product does
    not), and the model of a streaming core: a later token's event sweeps the words below it
    first, so the step's first spike leaves before the marker; an input out of word order is
    refused with the event and words named, never scheduled silently wrong."""
    from spikezip.hw.model.events import Step
    from spikezip.hw.model.vit_sites import STREAMING_KINDS
    from tests.sw.vit_strategies import build_vit

    rng = np.random.default_rng(3)
    vit = build_vit(rng, patches=3, patch_size=2, n_inputs=6, dim=4, heads=2, hidden=4, depth=1)
    for s in vit.sites:
        spec = site_spec(vit, s.name, lanes=2)
        assert spec.input_map.stream == (s.kind is not SiteKind.CONTEXT), s.name
        assert site_spec(vit, s.name, lanes=2, stream=False).input_map.stream is False
        assert site_spec(vit, s.name, lanes=2, stream=True).input_map.stream is True
    assert SiteKind.CONTEXT not in STREAMING_KINDS
    attn = next(s for s in vit.sites if s.kind is SiteKind.SOFTMAX)
    plain = site_spec(vit, attn.name, lanes=1, stream=False)
    streaming = site_spec(vit, attn.name, lanes=1)
    timing = cycle_model.LayerTiming(n_out=streaming.n_out, lanes=1, pipeline=1)
    n = attn.size
    one = np.ones(2, dtype=np.int64)
    step = Step(np.array([0, n - 1]), one * 0, busy=True)
    beats = [[[0, 200, 400]]]  # word 0's event, then word n-1's at cycle 200, the marker at 400
    out = [[Step(np.array([0]), np.array([1]), busy=True)]]  # neuron 0 fires at step 0
    first = {}
    for name, spec in (("plain", plain), ("streaming", streaming)):
        (inf,) = cycle_model.schedule(timing, [[step]], out, beats, input_map=spec.input_map)
        first[name] = inf.steps[0].event_cycles[0]
        assert inf.steps[0].marker_cycle > first[name]
    # streaming: word 0 is swept when word n-1's event arrives, not after the marker
    assert first["streaming"] < 220 < 400 < first["plain"]
    backwards = Step(np.array([n - 1, 0]), one, busy=True)
    with pytest.raises(ValueError, match=rf"event 1 \(index 0\) is on word 0, below word {n - 1}"):
        cycle_model.schedule(timing, [[backwards]], out, input_map=streaming.input_map)
    cycle_model.schedule(timing, [[backwards]], out, input_map=plain.input_map)  # any order


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transformers(), st.sampled_from([None, 0, 1, 2]))
def test_graded_site_specs(vit, max_level) -> None:
    """A graded ViT (every site graded, K random): each site's neurons are graded with the
    site's K, its output format carries ``±spike_max`` (``spike_value_width``), a linear site
    fed by a site records that site's ``spike_max`` (input format, drive widths as
    ``Layer.widths(…, spike_max=)``, the ranges' membranes); the spike products and residual
    stages take the sites' ``spike_max`` too. K = 0 gives ST-BIF's formats."""
    from spikezip.hw.model import residual_model as rm
    from spikezip.hw.model.events import spike_value_width
    from spikezip.hw.model.product_model import ProductGeometry

    g = vit.with_neuron("graded", max_level)
    sites = {s.name: s for s in g.sites}
    for s in g.sites:
        spec, plain = site_spec(g, s.name, lanes=1), site_spec(vit, s.name, lanes=1)
        assert spec.neurons.neuron == "graded" and spec.neurons.max_level == max_level
        assert spec.spike_max == s.op.spike_max
        assert spec.output_format.value_width == spike_value_width(s.op.spike_max)
        assert spec.output_format.index_width == plain.output_format.index_width
        assert spec.widths.membrane == g.ranges.membrane_width[s.name]
        if s.kind is SiteKind.LINEAR and s.name != "embed":
            src = next(x for x in g.sites if x.name == _source_of(s.name))
            assert spec.input_spike_max == src.op.spike_max and not spec.analog
            assert spec.input_format.value_width == spike_value_width(src.op.spike_max)
            lo, hi = src.neg_bound, src.pos_bound
            assert spec.widths == s.op.widths(lo, hi, analog=False, spike_max=src.op.spike_max)
        else:  # (a direct site's drive events: its producer's width, from the graded ranges)
            assert spec.input_spike_max == 1 and spec.analog
            if s.name == "embed":
                assert spec.input_format == plain.input_format
        if max_level == 0:
            assert spec.output_format == plain.output_format
            assert spec.input_format == plain.input_format and spec.widths == plain.widths
    for b in range(g.depth):
        for kind, (x, y) in (("scores", ("q", "k")), ("context", ("attn", "v"))):
            geo = ProductGeometry.for_block(g, b, kind, lanes=2)
            p = f"blocks.{b}."
            assert geo.x_spike_max == sites[p + x].op.spike_max
            assert geo.y_spike_max == sites[p + y].op.spike_max
    for st_ in rm.stages(g):
        assert rm.stage_geometry(g, st_).spike_max == sites[st_["site"]].op.spike_max


def _source_of(name: str) -> str:
    from spikezip.hw.model.vit_sites import _source

    return _source(None, name)


# -- tier 2 ---------------------------------------------------------------------------------------


def run_site(vit, x, name, lanes, *, pipeline=1, seed=None, record=None, stream=True):
    """Drive site ``name``'s core with the reference's input; return (got, expected, cycles)."""
    r = record or run(vit, x, record_drives=True)
    spec = site_spec(vit, name, lanes=lanes, stream=stream)
    core = LayerCore.for_site(spec, pipeline=pipeline)
    ins, outs = site_streams(vit, x, r.trace, r.steps, name)
    words = [w for inf in ins for s in inf for w in s.words(core.input_format)]
    expected = [w for inf in outs for s in inf for w in s.words(core.output_format)]
    sched = cycle_model.schedule(core.timing, ins, outs, input_map=spec.input_map)
    cycles = [c for inf in sched for s in inf.steps for c in (*s.event_cycles, s.marker_cycle)]
    got = drive_stream(core, words, len(expected), limit=20 * (cycles[-1] + 10), seed=seed)
    fmt = core.output_format
    return [fmt.unpack(w) for _, w in got], [fmt.unpack(w) for w in expected], cycles, got


def _lanes(data, site) -> int:
    d = site.shape[-1]
    if site.kind is SiteKind.LINEAR and site.name != "head":
        return data.draw(st.sampled_from([p for p in range(1, d + 1) if d % p == 0]))
    return data.draw(st.integers(1, 4))


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vit_sites_equal_the_reference(data) -> None:  # the _more twin: 100 (slow)
    """Random ViTs and images: every site's core (random lanes and pipeline preset) emits the
    reference's spikes and busy flags, each beat in the exact model's cycle; with random idle
    input cycles and output stalls the same beats."""
    vit = data.draw(transformers())
    x = data.draw(images(vit))
    record = run(vit, x, record_drives=True)
    for s in vit.sites:
        lanes, pipeline = _lanes(data, s), data.draw(st.sampled_from([0, 1, 2, 3]))
        stream = data.draw(st.booleans())
        got, expected, cycles, beats = run_site(vit, x, s.name, lanes, pipeline=pipeline,
                                                record=record, stream=stream)  # fmt: skip
        assert got == expected, (s.name, stream)
        assert [c for c, _ in beats] == cycles, (s.name, stream)
        if data.draw(st.booleans()):
            got, expected, _, _ = run_site(vit, x, s.name, lanes, seed=len(cycles), record=record,
                                           stream=stream)  # fmt: skip
            assert got == expected, (s.name, stream)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_vit_sites_equal_the_reference_more(data) -> None:
    test_random_vit_sites_equal_the_reference.hypothesis.inner_test(data)


@pytest.mark.slow
def test_digits_vit_sites(trained_vit) -> None:
    """The trained digits ViT, two test images back to back, 8 lanes: every one of the 23 sites
    exact and in the model's cycle."""
    from spikezip.sw import digits
    from spikezip.sw.vit.convert import to_transformer

    vit = to_transformer(trained_vit.model, name="digits-vit")
    x = digits.load().x_test[:2]
    record = run(vit, x, record_drives=True)
    for s in vit.sites:
        got, expected, cycles, beats = run_site(vit, x, s.name, 8 if s.name != "head" else 4,
                                                record=record)  # fmt: skip
        assert got == expected, s.name
        assert [c for c, _ in beats] == cycles, s.name
