"""Exact cycle model of a layer core (``hw.cores.layer_core``), in plain Python (no amaranth).

With ``W = ceil(n_out / lanes)`` words, no backpressure on the output and the input always valid,
the layer core runs a fixed schedule that this module computes from the golden event lists
(:mod:`hw.model.events`). Cycle 0 is the first cycle after reset. All constants live in
:class:`LayerTiming`; the components read their latency properties from it.

The sequencer issues one word operation per cycle ("slot"):

* **re-initialisation**: ``W`` slots (``U = H + B``, ``A = 0``), from cycle 0 and, after an
  inference's last sweep, from the cycle its busy flag (0) is known;
* **accumulate**: each input event takes ``W`` slots, back to back (``E·W`` for ``E`` events);
* **sweep** (fire phase): ``W`` slots; its first slot is the one that consumes the input marker.

Number the sweeps ``j = 0, 1, …`` over the whole run and let ``m_j`` be the cycle marker ``j``
leaves. The emitter buffers two steps, so sweep ``j`` starts no earlier than ``m_{j-2} + 1``:

* an input-fed step starts its sweep at ``x_j = max(a + E·W, m_{j-2} + 1)`` where ``a`` is its
  first accumulate slot (``a`` = the slot after the previous sweep, or after the
  re-initialisation);
* a self-running step (after an input marker with ``busy = 0``, while the layer's own marker is
  busy) at ``x_j = max(x_{j-1} + W - 1 + RESULT_DELAY, m_{j-2} + 1)`` — the previous sweep's
  busy flag is known ``RESULT_DELAY`` cycles after its last slot;
* after the inference's last sweep ``x`` (its busy flag 0), the re-initialisation starts at
  ``x + W - 1 + RESULT_DELAY``.

Output: word ``c`` of sweep ``j`` is updated in slot ``x_j + c``; its spikes leave one per cycle
in ascending order, the first at the earliest in ``x_j + c + SPIKE_DELAY``, not before the spikes
of the words below it, and not before ``m_{j-1} + 2``. The marker leaves at
``m_j = max(x_j + W - 1 + MARKER_DELAY, cycle after the step's last spike, m_{j-1} + 1)``.

So an input-fed step costs ``(E + 1)·W`` cycles unless its output is still draining two steps
behind; a self-running step ``W + 3`` cycles or its spike count, whichever is larger; a
re-initialisation ``W + 3`` cycles.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model.events import Step

__all__ = [
    "PIPELINES",
    "InferenceSchedule",
    "LayerTiming",
    "StepSchedule",
    "resolve_lanes",
    "schedule",
    "summary",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: pipeline depths of the neuron array (see :attr:`LayerTiming.pipeline`)
PIPELINES = (0, 1, 2, 3)


@dataclass(frozen=True)
class LayerTiming:
    """Geometry and pipeline constants of a layer core with ``lanes`` lanes over ``n_out`` neurons.

    Parameters
    ----------
    n_out : int
        Neurons of the layer (≥ 1).
    lanes : int
        Neurons updated per cycle, ``P`` (≥ 1; more than ``n_out`` is allowed and wastes lanes).
    pipeline : int
        Extra register stages in the neuron array's read-modify-write (one of :data:`PIPELINES`):
        0 — the state read feeds the update in the same cycle; 1 — the state read is registered
        and the update forwards the two results in flight; 2 — also the update's sums are
        registered before the choice among them, so two operations on the same word must be two
        cycles apart: with one word (``W = 1``) every word operation is followed by an idle
        slot (:attr:`slots`); 3 — the same stages, but operations on the same word three cycles
        apart (``W < 3`` pads every pass to 3 cycles), so no result is forwarded into the sums.
        Each stage delays the spikes, the marker and the busy flag by one cycle; pipelines 2
        and 3 also register the multiplier's inputs and output (``accumulator_latency``).
    """

    n_out: int
    lanes: int
    pipeline: int = 1

    #: cycles from a marker leaving to the earliest slot of the sweep two steps later
    RESTART_DELAY = 1
    #: cycles from a marker leaving to the earliest spike of the next step
    BANK_DELAY = 1

    def __post_init__(self) -> None:
        if not _is_int(self.n_out) or self.n_out < 1:
            raise ValueError(f"n_out must be a positive integer, not {self.n_out!r}")
        if not _is_int(self.lanes) or self.lanes < 1:
            raise ValueError(f"lanes must be a positive integer (1 or more), not {self.lanes!r}")
        if not _is_int(self.pipeline) or self.pipeline not in PIPELINES:
            valid = ", ".join(map(str, PIPELINES))
            raise ValueError(f"pipeline must be one of {valid}, not {self.pipeline!r}")
        object.__setattr__(self, "n_out", int(self.n_out))
        object.__setattr__(self, "lanes", int(self.lanes))
        object.__setattr__(self, "pipeline", int(self.pipeline))

    @property
    def accumulator_latency(self) -> int:
        """Cycles from a word operation to its command with the drive (``hw.cores.accumulator``):
        the weight read and its register; with pipeline 2 also a register before the weight address
        and the multiplier's input and output registers."""
        return 5 if self.pipeline >= 2 else 2

    @property
    def array_latency(self) -> int:
        """Cycles from a command to its fired word (``hw.cores.neuron_array``): ``1 + pipeline``
        (3 for pipeline 3, as for 2)."""
        return 1 + min(self.pipeline, 2)

    @property
    def SPIKE_DELAY(self) -> int:
        """Cycles from the sweep slot of a word to the earliest cycle one of its spikes leaves."""
        return 1 + self.accumulator_latency + self.array_latency + 6  # emitter: 6

    @property
    def MARKER_DELAY(self) -> int:
        """Cycles from the last sweep slot to the earliest cycle the step's marker leaves."""
        return self.SPIKE_DELAY

    @property
    def RESULT_DELAY(self) -> int:
        """Cycles from the last slot of a sweep to the earliest slot that may use its busy flag."""
        return 1 + self.accumulator_latency + self.array_latency + 2  # emitter: 2

    @property
    def words(self) -> int:
        """``W = ceil(n_out / lanes)``: words of ``lanes`` neurons."""
        return -(-self.n_out // self.lanes)

    @property
    def min_distance(self) -> int:
        """Fewest cycles between two operations on the same word: 1, 1, 2, 3 for pipeline 0-3."""
        return max(1, self.pipeline)

    @property
    def slots(self) -> int:
        """Cycles of a pass over the words: ``max(W, min_distance)`` (idle slots at the end)."""
        return max(self.words, self.min_distance)

    @property
    def cycles_per_event(self) -> int:
        """Accumulate cycles per input event (:attr:`slots`, ``W`` but with pipeline 2 and
        ``W = 1``)."""
        return self.slots

    @property
    def sweep_cycles(self) -> int:
        """Cycles of a fire sweep (:attr:`slots`), the first one consuming the input marker."""
        return self.slots

    @property
    def init_cycles(self) -> int:
        """Cycles of a re-initialisation (:attr:`slots`)."""
        return self.slots

    @property
    def lane_utilization(self) -> float:
        """Fraction of the lanes of an accumulate slot that hold a neuron: ``n_out / (W·P)``."""
        return self.n_out / (self.words * self.lanes)


@dataclass(frozen=True)
class StepSchedule:
    """Timing of one output step of a layer core."""

    #: events the step accumulated (0 for a self-running step)
    n_events: int
    #: first accumulate slot (``None`` for a self-running step)
    accumulate_cycle: int | None
    #: first sweep slot ``x_t``
    fire_cycle: int
    #: cycle of every output event, in stream order
    event_cycles: tuple[int, ...]
    #: cycle of the end-of-step marker ``m_t``
    marker_cycle: int


@dataclass(frozen=True)
class InferenceSchedule:
    """Timing of one inference: its re-initialisation and its output steps."""

    init_cycle: int
    steps: tuple[StepSchedule, ...]

    @property
    def end_cycle(self) -> int:
        """Cycle of the last marker (``busy = 0``)."""
        return self.steps[-1].marker_cycle


def _emit(
    timing: LayerTiming, x: int, step: Step, previous: int | None
) -> tuple[tuple[int, ...], int]:
    """Output cycles of a step whose sweep starts in ``x``; ``previous`` is the last marker."""
    lanes = timing.lanes
    cycles: list[int] = []
    free = x if previous is None else previous + timing.BANK_DELAY  # the output is free
    marker = x + timing.words - 1 + timing.MARKER_DELAY
    if previous is not None:
        marker = max(marker, previous + 1)
    idx = step.indices
    for word in np.unique(idx // lanes):
        k = int(np.count_nonzero(idx // lanes == word))
        start = max(x + int(word) + timing.SPIKE_DELAY, free)
        cycles.extend(range(start, start + k))
        free = start + k
        marker = max(marker, free)
    return tuple(cycles), marker


def schedule(
    timing: LayerTiming,
    inputs: list[list[Step]],
    outputs: list[list[Step]],
    arrivals: list[list[Sequence[int]]] | None = None,
) -> list[InferenceSchedule]:
    """The cycle of every output event and marker of a run of inferences, back to back.

    Parameters
    ----------
    timing : LayerTiming
    inputs : per inference, the input steps (:func:`hw.model.events.input_steps`)
    outputs : per inference, the golden output steps (:func:`hw.model.events.output_steps`)
    arrivals : optional, per inference and input step, the first cycle each beat of the step
        (its events, then its marker) is valid on ``i``; default: always valid. A beat valid in
        cycle ``c`` is consumed in a slot ``≥ c + 1`` (the sequencer's input register), so an
        event's first slot is ``max(previous slot free, c + 1)`` and a sweep's first slot also
        waits for its marker. Exact as long as ``o`` sees no backpressure
        (:mod:`hw.model.network_model` checks this for chained cores).
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input and {len(outputs)} output inferences")
    words, slots = timing.words, timing.slots
    out: list[InferenceSchedule] = []
    markers: list[int] = []  # every marker of the run, in order
    init = 0
    for b, (ins, outs) in enumerate(zip(inputs, outputs, strict=True)):
        if len(outs) < len(ins):
            raise ValueError(f"inference {b}: {len(outs)} output steps but {len(ins)} input steps")
        steps: list[StepSchedule] = []
        acc: int | None = init + timing.init_cycles
        x = init
        for t, step in enumerate(outs):
            bank = markers[-2] + timing.RESTART_DELAY if len(markers) >= 2 else 0
            if t < len(ins):
                n, start = ins[t].n_events, acc
                if arrivals is None:
                    x = max(acc + n * slots, bank)
                else:
                    beats = arrivals[b][t]
                    free = acc
                    for k in range(n):
                        slot = max(free, beats[k] + 1)
                        start = slot if k == 0 else start
                        free = slot + slots
                    x = max(free, beats[n] + 1, bank)
            else:
                n, start = 0, None
                x = max(x + words - 1 + timing.RESULT_DELAY, bank)
            events, marker = _emit(timing, x, step, markers[-1] if markers else None)
            steps.append(StepSchedule(n, start, x, events, marker))
            markers.append(marker)
            acc = x + slots if t < len(ins) and ins[t].busy else None
        out.append(InferenceSchedule(init, tuple(steps)))
        init = x + words - 1 + timing.RESULT_DELAY
    return out


def summary(timing: LayerTiming, sched: list[InferenceSchedule]) -> dict[str, float]:
    """Cycle totals, their split into phases, and utilization of a schedule.

    An *input-fed* step accumulates from ``a_t`` and sweeps from ``x_t``; a *self-running* step
    (after the input went idle) only sweeps. Utilizations are the delivered fraction of the peak
    ``lanes`` synaptic operations per cycle (accumulate slots times the lane occupancy
    ``n_out / (W·P)``) over:

    * ``accumulate_phase_utilization`` — the accumulate phases ``[a_t, x_t)`` (1.0 × occupancy when
      events follow each other without bubbles and no sweep waits for the previous step's spikes);
    * ``fed_step_utilization`` — the input-fed steps, sweeps included ``[a_t, x_t + W)``;
    * ``utilization`` — every cycle from 0 to the last marker, self-running steps,
      re-initialisations and output latency included.
    """
    words, slots, occ = timing.words, timing.slots, timing.lane_utilization
    steps = [s for inf in sched for s in inf.steps]
    fed = [s for s in steps if s.accumulate_cycle is not None]
    total = sched[-1].end_cycle + 1 if sched else 0
    acc = sum(s.n_events for s in fed) * words
    phase = sum(s.fire_cycle - s.accumulate_cycle for s in fed)
    return {
        "cycles": total,
        "inferences": len(sched),
        "steps": len(steps),
        "self_running_steps": len(steps) - len(fed),
        "events": sum(s.n_events for s in fed),
        "output_events": sum(len(s.event_cycles) for s in steps),
        "accumulate_cycles": acc,
        "accumulate_phase_cycles": phase,
        "stall_cycles": phase - acc,
        "sweep_cycles": len(steps) * slots,
        "init_cycles": len(sched) * timing.init_cycles,
        "cycles_per_inference": total / max(1, len(sched)),
        "cycles_per_step": total / max(1, len(steps)),
        "accumulate_phase_utilization": acc / max(1, phase) * occ,
        "fed_step_utilization": acc / max(1, phase + len(fed) * slots) * occ,
        "utilization": acc / max(1, total) * occ,
    }


def resolve_lanes(network: Any, lanes: int | Sequence[int]) -> tuple[int, ...]:
    """Lanes per layer of ``network``, validated before anything is built.

    One integer ``P`` applies to every layer, capped at each layer's neuron count (a layer of
    10 neurons runs ``P = 16`` as 10 lanes: the same one word, fewer wasted lanes); it must not
    exceed the widest layer. One value per layer must lie in ``1 … n_out`` of its layer.
    """
    if isinstance(lanes, bool):
        raise TypeError(f"lanes must be an integer or one integer per layer, not {lanes!r}")
    widest = max(layer.n_out for layer in network.layers)
    if isinstance(lanes, int):
        if not 1 <= lanes <= widest:
            raise ValueError(
                f"lanes must lie in 1..{widest} (the widest layer's neuron count), not {lanes}"
            )
        return tuple(min(lanes, layer.n_out) for layer in network.layers)
    lanes = tuple(lanes)
    if len(lanes) != network.depth:
        raise ValueError(
            f"lanes must hold {network.depth} values (one per layer), not {len(lanes)}"
        )
    for k, (p, layer) in enumerate(zip(lanes, network.layers, strict=True)):
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise ValueError(f"lanes[{k}] must be a positive integer, not {p!r}")
        if not 1 <= p <= layer.n_out:
            raise ValueError(
                f"lanes[{k}] of layer {network.layer_name(k)} must lie in 1..{layer.n_out} "
                f"(its neuron count), not {p}"
            )
    return tuple(int(p) for p in lanes)
