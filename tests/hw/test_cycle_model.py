"""Tier 1: the analytical cycle model of the layer core (``hw.model.cycle_model``), by hand."""

from dataclasses import replace

import numpy as np
import pytest

from spikezip.hw.model.cycle_model import (
    PIPELINES,
    CycleSummary,
    LayerTiming,
    Pipeline,
    schedule,
    summary,
)
from spikezip.hw.model.events import Step


def _step(indices=(), busy=True, values=None) -> Step:
    idx = np.array(indices, dtype=np.int64)
    val = np.ones_like(idx) if values is None else np.array(values, dtype=np.int64)
    return Step(indices=idx, values=val, busy=busy)


@pytest.mark.parametrize(
    ("n_out", "lanes", "words", "occupancy"),
    [(1, 1, 1, 1.0), (10, 1, 10, 1.0), (10, 3, 4, 10 / 12), (10, 10, 1, 1.0), (10, 16, 1, 10 / 16)],
)
def test_geometry(n_out: int, lanes: int, words: int, occupancy: float) -> None:
    t = LayerTiming(n_out=n_out, lanes=lanes)
    assert t.words == t.cycles_per_event == t.sweep_cycles == t.init_cycles == words
    assert t.lane_utilization == pytest.approx(occupancy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_out": 4, "lanes": 0}, r"lanes must be a positive integer \(1 or more\), not 0"),
        ({"n_out": 4, "lanes": -3}, r"lanes must be a positive integer \(1 or more\), not -3"),
        ({"n_out": 4, "lanes": 2.0}, r"lanes must be a positive integer \(1 or more\), not 2.0"),
        ({"n_out": 4, "lanes": True}, r"lanes must be a positive integer \(1 or more\), not True"),
        ({"n_out": 0, "lanes": 1}, "n_out must be a positive integer, not 0"),
        ({"n_out": 4, "lanes": 1, "pipeline": 4}, "pipeline must be one of 0, 1, 2, 3, not 4"),
        (
            {"n_out": 4, "lanes": 1, "pipeline": True},
            "pipeline must be one of 0, 1, 2, 3, not True",
        ),
    ],
)
def test_timing_validation(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        LayerTiming(**kwargs)


#: the presets, switch by switch (the table of :class:`hw.model.cycle_model.Pipeline`)
PRESET_SWITCHES = {
    "registered_read": (False, True, True, True),
    "bound_flags": (False, True, True, True),
    "registered_offsets": (False, False, True, True),
    "registered_sums": (False, False, True, True),
    "min_distance": (1, 1, 2, 3),
    "registered_address": (False, False, True, True),
    "banked_weights": (False, False, True, True),
    "dsp_registers": (False, False, True, True),
    "buffered_input": (False, False, True, True),
    "bypassed_store": (False, False, True, True),
    "registered_emitter": (False, False, True, True),
}


@pytest.mark.parametrize("depth", PIPELINES)
def test_pipeline_presets(depth: int) -> None:
    p = Pipeline.preset(depth)
    assert {name: getattr(p, name) for name in PRESET_SWITCHES} == {
        name: values[depth] for name, values in PRESET_SWITCHES.items()
    }
    assert p.depth == depth and Pipeline.parse(depth) is p and Pipeline.parse(p) is p
    assert p.forwarding == (depth in (1, 2))  # depth 3: operations on a word 3 cycles apart
    t = LayerTiming(n_out=5, lanes=2, pipeline=depth)
    assert t.pipeline is p and t == LayerTiming(n_out=5, lanes=2, pipeline=p)
    # the delays of the presets (the module docstring of hw.cores.layer_core)
    delays = {0: (2, 1, 10, 6), 1: (2, 2, 11, 7), 2: (5, 3, 15, 11), 3: (5, 3, 15, 11)}[depth]
    assert (t.accumulator_latency, t.array_latency, t.SPIKE_DELAY, t.RESULT_DELAY) == delays
    assert t.SPIKE_DELAY == t.accumulator_latency + t.array_latency + t.emitter_latency
    assert t.MARKER_DELAY == t.SPIKE_DELAY and t.min_distance == p.min_distance


def test_custom_pipeline() -> None:
    """Any combination the RTL can build; its depth is None, its latencies follow the switches."""
    p = replace(Pipeline.preset(1), min_distance=3, bound_flags=False, dsp_registers=True)
    assert p.depth is None and not p.forwarding
    t = LayerTiming(n_out=4, lanes=4, pipeline=p)
    assert (t.accumulator_latency, t.array_latency, t.slots) == (4, 2, 3)
    assert replace(Pipeline.preset(3), min_distance=2).depth == 2  # the preset 2 again


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"min_distance": 4}, ValueError, "min_distance must be 1, 2 or 3, not 4"),
        ({"min_distance": True}, ValueError, "min_distance must be 1, 2 or 3, not True"),
        ({"min_distance": 2.0}, ValueError, "min_distance must be 1, 2 or 3, not 2.0"),
        ({"registered_read": 1}, TypeError, "registered_read must be a bool, not 1"),
        ({"dsp_registers": None}, TypeError, "dsp_registers must be a bool, not None"),
        ({"registered_sums": True, "min_distance": 2}, ValueError, "registered_sums needs "),
        ({"registered_offsets": True}, ValueError, "registered_offsets needs registered_read"),
        ({"bypassed_store": True}, ValueError, "bypassed_store needs registered_read"),
        ({"registered_emitter": 0}, TypeError, "registered_emitter must be a bool, not 0"),
    ],
)
def test_pipeline_validation(change, error, message) -> None:
    with pytest.raises(error, match=message):
        replace(Pipeline.preset(0), **change)


def test_pipeline_rejects_forwarding_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="min_distance must be 2 or 3 with registered_sums"):
        replace(Pipeline.preset(2), min_distance=1)
    with pytest.raises(ValueError, match="pipeline must be one of 0, 1, 2, 3, not 'deep'"):
        Pipeline.parse("deep")
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument"):
        Pipeline(
            **{name: values[1] for name, values in PRESET_SWITCHES.items() if name != "bound_flags"}
        )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_single_word_schedule(pipeline: int) -> None:
    """W = 1: init in slot 0, two events, the sweep, the spike SPIKE_DELAY later; a pass takes
    L = 1 cycle (``min_distance``: 2 and 3 with presets 2 and 3, whose update needs two cycles)."""
    t = LayerTiming(n_out=1, lanes=1, pipeline=pipeline)
    S, M, L = t.SPIKE_DELAY, t.MARKER_DELAY, t.slots
    assert L == max(1, pipeline)
    ins = [[_step(), _step(busy=False)]]
    ins[0][0] = Step(indices=np.array([0, 0]), values=np.array([1, 1]), busy=True)
    outs = [[_step([0]), _step(busy=False)]]
    (inf,) = schedule(t, ins, outs)
    s0, s1 = inf.steps
    m0 = max(3 * L + M, 3 * L + S + 1)  # the marker follows the spike
    assert (s0.accumulate_cycle, s0.fire_cycle, s0.event_cycles, s0.marker_cycle) == (
        L,
        3 * L,
        (3 * L + S,),
        m0,
    )
    # the next step has no events: its sweep follows at once (the emitter buffers two steps);
    # its marker waits for the one of step 0
    assert (s1.accumulate_cycle, s1.fire_cycle, s1.event_cycles) == (4 * L, 4 * L, ())
    assert s1.marker_cycle == max(4 * L + M, m0 + 1)
    assert inf.end_cycle == s1.marker_cycle


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_spikes_leave_in_order_without_gaps(pipeline: int) -> None:
    """W = 3 (n_out 6, 2 lanes): words 0 and 2 spike; the sweep outruns the emitter."""
    t = LayerTiming(n_out=6, lanes=2, pipeline=pipeline)
    S, M, R = t.SPIKE_DELAY, t.MARKER_DELAY, t.RESULT_DELAY
    ins = [[_step(busy=False)]]
    outs = [[_step([0, 1, 4, 5], values=[1, -1, 1, 1], busy=True), _step(busy=False)]]
    (inf,) = schedule(t, ins, outs)
    s0, s1 = inf.steps
    assert s0.fire_cycle == 3  # after 3 init slots
    # word 0 (slot 3): two spikes from 3 + S; word 2 (slot 5): from max(5 + S, 3 + S + 2)
    assert s0.event_cycles == (3 + S, 4 + S, 5 + S, 6 + S)
    assert s0.marker_cycle == max(5 + M, 7 + S)  # after the spikes
    # self-running step: its sweep starts once the busy flag of sweep 0 is known (last slot 5 + R),
    # its marker M cycles after its own last slot, and after the marker of step 0
    assert s1.accumulate_cycle is None and s1.fire_cycle == 5 + R
    assert s1.marker_cycle == max(5 + R + 2 + M, s0.marker_cycle + 1)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_back_to_back_inferences(pipeline: int) -> None:
    """After a sweep with busy 0 the next inference re-initialises (W slots) and accumulates."""
    t = LayerTiming(n_out=4, lanes=4, pipeline=pipeline)
    M, R, L = t.MARKER_DELAY, t.RESULT_DELAY, t.slots
    one = ([_step(busy=False)], [_step(busy=False)])
    a, b = schedule(t, [one[0], one[0]], [one[1], one[1]])
    assert a.init_cycle == 0 and a.steps[0].fire_cycle == L and a.end_cycle == L + M
    # re-initialisation once the sweep's busy flag is known (slot L + R), before its marker left
    assert b.init_cycle == L + R and b.steps[0].fire_cycle == 2 * L + R
    assert b.end_cycle == max(2 * L + R + M, a.end_cycle + 1)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_summary_counts_accumulate_cycles(pipeline: int) -> None:
    t = LayerTiming(n_out=8, lanes=4, pipeline=pipeline)
    M, L = t.MARKER_DELAY, t.slots  # W = 2 words; a pass takes L = 2 cycles (3 for preset 3)
    ins = [[Step(indices=np.arange(5), values=np.ones(5, dtype=np.int64), busy=False)]]
    outs = [[_step(busy=False)]]
    sched = schedule(t, ins, outs)
    s = summary(t, sched)
    # init [0, L), 5 events × L from L, sweep from 6L (last word 6L + 1), marker 6L + 1 + M
    assert s.cycles == 6 * L + 2 + M and s.accumulate_cycles == 10 and s.steps == 1
    assert s.accumulate_phase_cycles == 5 * L and s.stall_cycles == 5 * L - 10
    assert s.sweep_cycles == L and s.init_cycles == L
    assert s.accumulate_phase_utilization == pytest.approx(10 / (5 * L))
    assert s.fed_step_utilization == pytest.approx(10 / (6 * L))
    assert s.utilization == pytest.approx(10 / (6 * L + 2 + M))
    assert CycleSummary.from_json(s.to_json()) == s


def test_schedule_rejects_mismatched_lists() -> None:
    t = LayerTiming(n_out=1, lanes=1)
    with pytest.raises(ValueError, match="1 input and 0 output inferences"):
        schedule(t, [[_step(busy=False)]], [])
    with pytest.raises(ValueError, match="inference 0: 1 output steps but 2 input steps"):
        schedule(t, [[_step(), _step(busy=False)]], [[_step(busy=False)]])
