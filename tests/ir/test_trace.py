"""Trace files and exact comparison with the first divergence."""

from __future__ import annotations

import numpy as np
import pytest

from spikezip.ir import FormatError, Trace
from spikezip.ir.compare import TraceMismatchError, first_divergence


def make_trace(batch=2, n_steps=5, widths=(3, 2), seed=0, **kw):
    steps = n_steps
    rng = np.random.default_rng(seed)
    spikes = tuple(rng.integers(-1, 2, (batch, steps, n)).astype(np.int8) for n in widths)
    args = dict(
        network_digest="ab" * 32,
        spikes=spikes,
        busy=np.ones((batch, steps, len(widths)), dtype=bool),
        steps=np.full(batch, steps),
        capped=np.zeros(batch, dtype=bool),
        membranes=tuple(rng.integers(-50, 50, (batch, steps, n)) for n in widths),
        tracers=tuple(np.cumsum(s, axis=1).astype(np.int64) for s in spikes),
    )
    args.update(kw)
    return Trace(**args)


def modified(trace: Trace, **changes) -> Trace:
    fields = dict(
        network_digest=trace.network_digest,
        spikes=trace.spikes,
        busy=trace.busy,
        steps=trace.steps,
        capped=trace.capped,
        membranes=trace.membranes,
        tracers=trace.tracers,
        step_cycles=trace.step_cycles,
        spike_cycles=trace.spike_cycles,
        layer_names=trace.layer_names,
    )
    fields.update(changes)
    return Trace(**fields)


def test_round_trip(tmp_path):
    tr = make_trace(
        step_cycles=(np.arange(10).reshape(2, 5), np.arange(10).reshape(2, 5) + 3),
        layer_names=("fc1", "fc2"),
    )
    path = tmp_path / "t.npz"
    tr.save(path)
    back = Trace.load(path)
    assert first_divergence(tr, back) is None
    assert back.layer_names == ("fc1", "fc2") and back.step_cycles[1][1, 4] == 12
    assert back.spikes[0].dtype == np.int8 and back.spike_cycles is None


def test_identical_traces_have_no_divergence():
    assert first_divergence(make_trace(), make_trace()) is None


def test_first_divergence_is_earliest_step_then_layer_then_neuron():
    tr = make_trace(batch=3, n_steps=6, widths=(4, 3))
    spikes = [s.copy() for s in tr.spikes]
    # later step in layer 0, earlier step in layer 1 of the same sample: the earlier step wins
    for k, b, t, n in ((0, 1, 4, 2), (1, 1, 2, 1), (1, 2, 0, 0)):  # the last: a later sample
        spikes[k][b, t, n] = 0 if spikes[k][b, t, n] else 1
    div = first_divergence(tr, modified(tr, spikes=tuple(spikes)))
    assert (div.sample, div.step, div.layer, div.neuron, div.field) == (1, 2, 1, 1, "spikes")
    assert div.expected == tr.spikes[1][1, 2, 1] and div.actual == spikes[1][1, 2, 1]
    text = str(div)
    assert "sample 1, layer 1 (layer1), neuron 1, time step 2" in text
    assert "expected" in text and "actual" in text and "^^^" in text


def test_membrane_divergence_before_spike_divergence_is_reported_first():
    tr = make_trace(batch=1, n_steps=6, widths=(2,))
    mem = tr.membranes[0].copy()
    mem[0, 1, 1] += 1
    spikes = tr.spikes[0].copy()
    spikes[0, 3, 0] = 1 if spikes[0, 3, 0] != 1 else 0
    div = first_divergence(tr, modified(tr, membranes=(mem,), spikes=(spikes,)))
    assert (div.field, div.step, div.neuron) == ("membranes", 1, 1)
    assert div.actual - div.expected == 1


def test_cycle_is_taken_from_the_hardware_trace():
    tr = make_trace(batch=1, n_steps=4, widths=(2,))
    spikes = tr.spikes[0].copy()
    spikes[0, 2, 0] = 0 if spikes[0, 2, 0] else 1
    spike_cycles = np.full((1, 4, 2), -1)
    spike_cycles[0, 2, 0] = 123 if spikes[0, 2, 0] else -1
    hw = modified(
        tr,
        spikes=(spikes,),
        step_cycles=(np.array([[10, 50, 130, 170]]),),
        spike_cycles=(spike_cycles,),
    )
    div = first_divergence(tr, hw)
    assert div.cycle == (123 if spikes[0, 2, 0] else 130)
    assert f"cycle {div.cycle}" in str(div)


def test_run_length_divergence():
    tr = make_trace(batch=1, n_steps=5, widths=(2,))
    spikes = tr.spikes[0].copy()
    spikes[0, 4] = 0
    a = modified(tr, spikes=(spikes,), membranes=None, tracers=None)
    b = modified(
        tr,
        spikes=(spikes[:, :4],),
        busy=tr.busy[:, :4],
        steps=np.array([4]),
        membranes=None,
        tracers=None,
    )
    # the per-step values agree where both ran; the hardware stopped one step early: the busy
    # flag of step 4 (recorded busy in a, absent in b) is the first difference
    div = first_divergence(a, b)
    assert (div.field, div.step, div.layer) == ("busy", 4, 0)
    assert (div.expected, div.actual) == (1, 0)
    # with busy flags equal too, only the run length differs
    a2 = modified(a, busy=np.concatenate([tr.busy[:, :4], np.zeros((1, 1, 1), bool)], axis=1))
    div = first_divergence(a2, b)
    assert (div.field, div.expected, div.actual, div.step) == ("steps", 5, 4, 4)
    assert "run length" in str(div)


def test_shorter_trace_with_missing_spikes_diverges_at_the_missing_step():
    tr = make_trace(batch=1, n_steps=5, widths=(2,))
    spikes = tr.spikes[0].copy()
    spikes[0, 4] = [1, 1]
    a = modified(tr, spikes=(spikes,), membranes=None, tracers=None)
    b = modified(
        tr,
        spikes=(spikes[:, :3],),
        busy=tr.busy[:, :3],
        steps=np.array([3]),
        membranes=None,
        tracers=None,
    )
    div = first_divergence(a, b)
    assert div.step == 3 or (div.step == 4 and div.field == "spikes")
    assert div.sample == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(network_digest="cd" * 32), "different networks"),
        (dict(batch=3), "batch sizes differ"),
        (dict(widths=(3,)), "layer counts differ"),
        (dict(widths=(3, 5)), "layer 1 widths differ"),
    ],
)
def test_incomparable_traces(change, message):
    a = make_trace()
    digest = change.pop("network_digest", None)
    b = make_trace(**change) if change else make_trace()
    if digest:
        b = modified(b, network_digest=digest)
    with pytest.raises(TraceMismatchError, match=message):
        first_divergence(a, b)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            dict(spikes=(np.full((2, 5, 3), 3, dtype=np.int8), np.zeros((2, 5, 2)))),
            r"layer0.spikes holds 3 at \[0, 0, 0\]; spikes must be 0 or ±2\^k",
        ),
        (dict(busy=np.ones((2, 4, 2), dtype=bool)), r"busy must have shape \(2, 5, 2\)"),
        (dict(steps=np.array([0, 5])), r"steps must lie in \[1, 5\]"),
        (dict(steps=np.array([5])), r"steps must have shape \(2,\)"),
        (dict(network_digest=""), "network_digest must be a non-empty string"),
        (dict(tracers=(np.zeros((2, 5, 3)),)), "tracers must hold 2 arrays"),
    ],
)
def test_trace_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        make_trace(**kw)


def test_load_errors(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        Trace.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    with pytest.raises(FormatError, match="not a valid spikezip-trace file"):
        Trace.load(bad)
    from spikezip.ir import Layer, Network

    net = Network(
        layers=(Layer(weight=[[1]], bias=[0], threshold=1, neg_bound=0, pos_bound=1),),
        n_inputs=1,
        encoding="analog",
        input_bounds=(0, 1),
    )
    other = tmp_path / "net.npz"
    net.save(other)
    with pytest.raises(
        FormatError, match="expected a spikezip-trace file, found kind 'spikezip-network'"
    ):
        Trace.load(other)


def test_select_subset_keeps_per_sample_lengths():
    tr = make_trace(batch=3, n_steps=6)
    tr = modified(tr, steps=np.array([6, 2, 3]))
    sub = tr.select([1, 2])
    assert sub.batch == 2 and sub.n_steps == 3 and sub.steps.tolist() == [2, 3]
    assert np.array_equal(sub.spikes[0], tr.spikes[0][1:3, :3])


def test_concat_is_the_inverse_of_select_and_pads_as_a_run_pads():
    """Consecutive batches joined: each padded to the longest run (no spikes, no busy flag,
    membranes and tracers frozen, cycle stamps -1); splitting a trace and joining the parts
    gives it back."""
    cycles = np.arange(3 * 6).reshape(3, 6)
    tr = make_trace(batch=3, n_steps=6, step_cycles=(cycles, cycles + 1))
    tr = modified(tr, steps=np.array([6, 2, 3]), input_digests=np.arange(96).reshape(3, 32))
    parts = [tr.select([0]), tr.select([1, 2])]
    assert parts[1].n_steps == 3
    back = Trace.concat(parts)
    assert first_divergence(tr, back) is None
    for name in ("busy", "steps", "capped", "input_digests"):
        assert np.array_equal(getattr(back, name)[:1], getattr(tr, name)[:1]), name
    short = Trace.concat([parts[1], parts[0]])  # the short part first: padded to 6 steps
    assert short.n_steps == 6 and short.steps.tolist() == [2, 3, 6]
    assert not short.busy[:2, 3:].any() and not short.spikes[0][:2, 3:].any()
    assert (short.step_cycles[0][:2, 3:] == -1).all()
    frozen = short.membranes[1][:2, 2:3]
    assert np.array_equal(short.membranes[1][:2, 3:], np.repeat(frozen, 3, axis=1))
    assert np.array_equal(short.input_digests, tr.input_digests[[1, 2, 0]])


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"network_digest": "cd" * 32}, "trace 1 has network_digest"),
        ({"layer_names": ("a", "b")}, "trace 1 has layer_names"),
        ({"membranes": None}, "differ in whether they have membranes"),
    ],
)
def test_concat_refuses_traces_of_other_networks_or_fields(other, message):
    tr = make_trace()
    with pytest.raises(ValueError, match=message):
        Trace.concat([tr, modified(tr, **other)])
    with pytest.raises(ValueError, match="at least one trace"):
        Trace.concat([])
