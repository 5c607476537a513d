"""Exact cycle model of a whole network core (``hw.cores.network_core``), composed from the layer
model.

No amaranth import. Layer ``0`` sees its input always valid (the stimulus of
:mod:`sim.tb.network`: every inference's beats back to back from cycle 0). Layer ``l > 0`` sees
each beat of layer ``l - 1`` valid :data:`REGISTERED_FIFO_LATENCY` cycles after the cycle it left
layer ``l - 1`` (``hw.cores.fifo.RegisteredFIFO``: the memory, its read register, the output
register), and
:func:`hw.model.cycle_model.schedule` with those arrivals gives its own output cycles. The last
layer's ``o`` is always ready, so ``done`` of an inference is the cycle of its last layer's final
marker.

The composition is exact while no inter-layer FIFO fills up (no backpressure, the layer model's
premise). :func:`network_schedule` checks this from the modelled cycles: it counts, per FIFO and
cycle, the beats written and not yet consumed by the next layer's sequencer, a bound on the
FIFO's occupancy, and reports in :attr:`NetworkSchedule.exact` whether the bound stays within the
FIFO's depth. When it does not, the model is not claimed (the RTL may stall the producer).
tests/sim/test_network_model.py checks the composed model against the RTL's cycle stamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikezip.hw.model.cycle_model import (
    REGISTERED_FIFO_LATENCY,
    InferenceSchedule,
    LayerTiming,
    Pipeline,
    schedule,
)
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import input_steps, output_steps
from spikezip.ir import Network, Trace

__all__ = ["REGISTERED_FIFO_LATENCY", "NetworkSchedule", "layer_timing", "network_schedule"]


@dataclass(frozen=True)
class NetworkSchedule:
    """The modelled cycles of a run of inferences through a network core."""

    layers: tuple[tuple[InferenceSchedule, ...], ...]  #: per layer, per inference
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference is accepted
    done: np.ndarray  #: [B] cycle of each inference's last final marker
    fifo_peak: tuple[int, ...]  #: per FIFO, the occupancy bound's maximum
    fifo_depths: tuple[int, ...]

    @property
    def exact(self) -> bool:
        """No FIFO can fill up: the composition is the RTL's exact schedule."""
        return all(p <= d for p, d in zip(self.fifo_peak, self.fifo_depths, strict=True))

    @property
    def latency(self) -> np.ndarray:
        """Cycles from each inference's first input beat to its ``done``, inclusive."""
        return self.done - self.first_input + 1

    @property
    def total_cycles(self) -> int:
        return int(self.done[-1]) + 1 if self.done.size else 0

    def step_cycles(self, layer: int, sample: int) -> list[int]:
        return [s.marker_cycle for s in self.layers[layer][sample].steps]

    def spike_cycles(self, layer: int, sample: int) -> list[tuple[int, ...]]:
        return [s.event_cycles for s in self.layers[layer][sample].steps]


def _beats(sched: list[InferenceSchedule]) -> list[list[list[int]]]:
    """Per inference and step, the output cycles of its beats (events, then the marker)."""
    return [[[*s.event_cycles, s.marker_cycle] for s in inf.steps] for inf in sched]


def _consumed(
    sched: list[InferenceSchedule],
    ins,
    timing: LayerTiming,
    arrivals: list[list[Sequence[int]]] | None,
) -> list[int]:
    """The slot in which each input beat is consumed (an event: the last word of its pass, from
    its first slot as :func:`hw.model.cycle_model.schedule` placed it; a marker: its sweep's
    first slot)."""
    words = timing.words
    out = []
    for inf, steps in zip(sched, ins, strict=True):
        for s, step in zip(inf.steps, steps, strict=False):
            out.extend(slot + words - 1 for slot in s.event_slots[: step.n_events])
            out.append(s.fire_cycle)
    return out


def network_schedule(
    network: Network,
    inputs: np.ndarray,
    trace: Trace,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: Pipeline | int | None = None,
    fifo_depth: int | None = None,
    emit_width: int | None = None,
    serial_input: bool = False,
) -> NetworkSchedule:
    """Model the network core running ``inputs`` back to back (``trace``: the golden trace).

    ``params`` (or the keywords ``lanes``, ``pipeline``, ``fifo_depth``, ``emit_width``; not
    both) are those of
    the :class:`hw.cores.network_core.NetworkCore`; its FIFOs hold ``fifo_depth`` entries
    (default ``n_out + 2`` per producing layer, as the core builds them). ``serial_input``:
    model the cores that take wide beats one event per pass (:func:`layer_timing`), as
    ``NetworkCore(serial_input=True)`` builds them.
    """
    params = DesignParams.coerce(
        network,
        params,
        lanes=lanes,
        pipeline=pipeline,
        fifo_depth=fifo_depth,
        emit_width=emit_width,
    )
    lanes, pipeline = params.lanes, params.pipeline
    fifo_depths = tuple(params.fifo_depth or layer.n_out + 2 for layer in network.layers[:-1])
    layers, arrivals, peaks = [], None, []
    for k in range(network.depth):
        timing = layer_timing(network, params, k, serial=serial_input)
        ins = input_steps(network, inputs, trace, k)
        sched = schedule(timing, ins, output_steps(trace, k), arrivals)
        if k > 0:
            # per FIFO beat (the events of a wide beat share its cycle): written when the
            # producer sent it, consumed with its last event
            flat = [c for inf in arrivals for st in inf for c in st]
            used = _consumed(sched, ins, timing, arrivals)
            written, consumed = _per_beat(flat, used)
            written = np.array(written) - REGISTERED_FIFO_LATENCY
            consumed = np.sort(np.array(consumed))
            # beats in FIFO + input register at the end of cycle c: written ≤ c, consumed > c
            occupancy = np.arange(1, written.size + 1) - np.searchsorted(
                consumed, written, side="right"
            )
            peaks.append(int(occupancy.max()) if occupancy.size else 0)
        layers.append(tuple(sched))
        delay = REGISTERED_FIFO_LATENCY
        arrivals = [[[c + delay for c in st] for st in inf] for inf in _beats(sched)]
    first = _first_inputs(network, inputs, trace, layers[0])
    done = np.array([inf.end_cycle for inf in layers[-1]], dtype=np.int64)
    return NetworkSchedule(
        layers=tuple(layers),
        first_input=first,
        done=done,
        fifo_peak=tuple(peaks),
        fifo_depths=tuple(fifo_depths),
    )


def layer_timing(
    network: Network, params: DesignParams, k: int, *, serial: bool = False
) -> LayerTiming:
    """The :class:`LayerTiming` of layer ``k``'s core in a network core of ``params``: every
    layer but the last sends ``params.emit_width`` spikes per beat into its FIFO, and every
    layer but the first takes them, a beat's events in one pass (``serial``: one pass each,
    through an unpacker; the network's own input and output carry one event per beat)."""
    width = params.emit_width
    return LayerTiming(
        n_out=network.layers[k].n_out,
        lanes=params.lanes[k],
        pipeline=params.pipeline,
        emit_width=width if k < network.depth - 1 else 1,
        input_width=width if k > 0 else 1,
        input_lanes=params.lanes[k - 1] if k > 0 and width > 1 else 1,
        serial_input=serial,
    )


def _per_beat(arrived: list[int], consumed: list[int]) -> tuple[list[int], list[int]]:
    """Group the events of one wide beat (consecutive equal arrival cycles: one beat per cycle)
    into the beat: its arrival, and the consumption of its last event."""
    if len(arrived) != len(consumed):
        raise AssertionError(f"{len(arrived)} beats arrived, {len(consumed)} consumed")
    written: list[int] = []
    used: list[int] = []
    for a, c in zip(arrived, consumed, strict=True):
        if written and written[-1] == a:
            used[-1] = max(used[-1], c)
        else:
            written.append(a)
            used.append(c)
    return written, used


def _first_inputs(network, inputs, trace, sched) -> np.ndarray:
    ins = input_steps(network, inputs, trace, 0)
    first = [0]
    for inf, steps in zip(sched[:-1], ins[:-1], strict=True):
        first.append(inf.steps[len(steps) - 1].fire_cycle)  # last input marker leaves the register
    return np.array(first, dtype=np.int64)
