"""Exact cycle model of a whole network core (``hw.cores.network_core``), composed from the layer
model, at any FIFO depth.

No amaranth import. The core is a chain: layer core ``l`` feeds layer core ``l + 1`` through
a ``hw.cores.fifo.RegisteredFIFO`` of ``depth`` entries. Each layer core's model is
:func:`hw.model.cycle_model.timed` (the one the ViT's site cores use): given the cycle each input
beat is valid at its ``i`` (**arrivals**) and, per output beat, the first cycle the FIFO behind
it has room (**backpressure**), it gives the cycle each output beat was offered and left and the
cycle each input beat was taken. The FIFO's own timing is
:data:`hw.model.fifo_model.REGISTERED_FIFO`:
a beat written in cycle ``w`` is valid at the next layer in ``w + 3`` at the earliest
(:data:`REGISTERED_FIFO_LATENCY`: the memory, its read register, the output register), and the
memory has room for beat ``k`` once beat ``k − depth`` left it, which depends on when the next
layer took the beats before. Layer ``0`` sees its input always valid (the stimulus of
:mod:`sim.tb.network`: every inference's beats back to back from cycle 0); the last layer's ``o``
is always ready, or ready in the cycles an :class:`OutputReady` pattern says (the testbench's
seeded output pauses), so ``done`` of an inference is the cycle its last layer's final marker
leaves.

**Backpressure, in passes** (as :mod:`hw.model.vit_model` does for the ViT's graph): every layer in
order, each with the room its FIFO had in the pass before (none in the first: the schedule with
FIFOs that never fill); every cycle only grows from pass to pass, and the first pass that changes
no FIFO's room is a consistent schedule, the RTL's. A layer whose arrivals and room did not
change keeps its run from the pass before. So the model is exact at **any** FIFO depth the RTL
accepts, down to ``depth = 1`` (``RegisteredFIFO`` takes any ``depth ≥ 1``; with one memory
entry it still holds up to three beats, memory, read register and output register, and a chain
cannot deadlock: each layer's progress needs only its upstream's beats and its downstream's
room, and the last layer's output drains). :attr:`NetworkSchedule.fifos` says, per FIFO, the
depth with which it would never fill (:attr:`~hw.model.fifo_model.FifoCheck.need`) and how many
cycles its producer waited; ``spikezip report`` builds the smallest power of two no inference
fills (:func:`spikezip.report.model_latency`), ``--fifo-depth`` any other.

tests/sim/test_network_model.py checks the composed model against the RTL's cycle stamps (every
output beat of every layer, first input and ``done`` of every inference) on Verilator and Icarus,
at depths 1, 4, 8 and one that never fills, with and without output pauses;
tests/hw/test_fifo.py checks the FIFO's timing in Amaranth's simulator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from spikezip.hw.model import cycle_model as cm
from spikezip.hw.model.cycle_model import REGISTERED_FIFO_LATENCY, CoreRun, LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import input_steps, output_steps
from spikezip.hw.model.fifo_model import REGISTERED_FIFO, FifoCheck
from spikezip.ir import Network, Trace

__all__ = [
    "REGISTERED_FIFO_LATENCY",
    "NetworkSchedule",
    "OutputReady",
    "fifo_depths",
    "layer_timing",
    "network_schedule",
]


def fifo_depths(network: Network, params: DesignParams) -> tuple[int, ...]:
    """Entries of the FIFO after each layer but the last, as ``NetworkCore`` builds them:
    ``params.fifo_depth``, else ``n_out + 2`` of the producing layer."""
    return tuple(params.fifo_depth or layer.n_out + 2 for layer in network.layers[:-1])


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


@dataclass(frozen=True)
class OutputReady:
    """A per-cycle pattern of the last layer's ``o.ready``, the output pauses of a seeded
    testbench run (:mod:`sim.tb.network` with ``simulate(ready=p, seed=s)``): in cycle ``c``
    (``c = 0, 1, …`` from the first cycle after reset) the ``c``-th number of
    ``random.Random(seed)`` is drawn, and ``o`` is ready iff it is ``< probability``.

    One definition for both sides: the testbench pauses with :meth:`pauses`, the model asks
    :meth:`first_ready`."""

    probability: float
    seed: int
    _drawn: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            raise ValueError(f"probability must be in (0, 1], not {p!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed!r}")

    def pauses(self) -> Iterator[bool]:
        """Per cycle from cycle 0, whether ``o.ready`` is low (the testbench's pause generator,
        :func:`sim.tb.kit.pauses`'s form)."""
        rnd = random.Random(self.seed).random
        p = self.probability
        while True:
            yield not rnd() < p

    def first_ready(self, cycle: int) -> int:
        """The first cycle ``≥ cycle`` in which ``o`` is ready."""
        drawn = self._drawn  # the ready cycles drawn so far (their generator: ``_gen``)
        if not drawn and "_gen" not in self.__dict__:
            object.__setattr__(self, "_gen", enumerate(self.pauses()))
        while not drawn or drawn[-1] < cycle:
            c, pause = next(self._gen)  # type: ignore[attr-defined]
            if not pause:
                drawn.append(c)
        return drawn[int(np.searchsorted(drawn, cycle))]


@dataclass(frozen=True)
class NetworkSchedule:
    """The modelled cycles of a run of inferences through a network core."""

    #: per layer, its core's run (:class:`hw.model.cycle_model.CoreRun`): ``beats[b][t] =
    #: (event cycles, marker cycle)`` as they left ``o``, ``taken``, ``offered``
    runs: tuple[CoreRun, ...]
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference is accepted
    done: np.ndarray  #: [B] cycle of each inference's last final marker
    fifos: tuple[FifoCheck, ...]  #: per inter-layer FIFO (``fifo0``, …): depth, need, waits
    passes: int = 1  #: passes of the composition until the backpressure settled

    @property
    def exact(self) -> bool:
        """The composition settled: the RTL's exact schedule (at any FIFO depth)."""
        return True

    @property
    def backpressure(self) -> bool:
        """Some FIFO filled up and made its producer wait."""
        return not all(f.ok for f in self.fifos)

    @property
    def fifo_depths(self) -> tuple[int, ...]:
        return tuple(f.depth for f in self.fifos)

    @property
    def fifo_peak(self) -> tuple[int, ...]:
        """Per FIFO, the fewest entries with which it never fills
        (:attr:`~hw.model.fifo_model.FifoCheck.need`)."""
        return tuple(f.need for f in self.fifos)

    @property
    def latency(self) -> np.ndarray:
        """Cycles from each inference's first input beat to its ``done``, inclusive."""
        return self.done - self.first_input + 1

    @property
    def total_cycles(self) -> int:
        return int(self.done[-1]) + 1 if self.done.size else 0

    def step_cycles(self, layer: int, sample: int) -> list[int]:
        return [mk for _, mk in self.runs[layer].beats[sample]]

    def spike_cycles(self, layer: int, sample: int) -> list[tuple[int, ...]]:
        return [tuple(ev) for ev, _ in self.runs[layer].beats[sample]]


def _left(run: CoreRun) -> np.ndarray:
    """The cycle every output beat of ``run`` left ``o``, in stream order (the events of a wide
    beat share its cycle: one entry per beat)."""
    return np.array(
        [c for inf in run.beats for ev, mk in inf for c in (*cm.beat_cycles(ev), mk)],
        dtype=np.int64,
    )


def _arrivals(run: CoreRun, writes: np.ndarray, latency: int) -> list[list[list[int]]]:
    """Per inference and step, the cycle each beat written in ``writes`` is valid at the FIFO's
    far end at the earliest (per event: the events of a wide beat, its cycle)."""
    it = iter((writes + latency).tolist())
    out = []
    for inf in run.beats:
        steps = []
        for ev, _ in inf:
            cycles: list[int] = []
            for j, c in enumerate(ev):
                cycles.append(next(it) if j == 0 or c != ev[j - 1] else cycles[-1])
            steps.append([*cycles, next(it)])
        out.append(steps)
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
    out_ready: OutputReady | None = None,
    max_passes: int = 100_000,
) -> NetworkSchedule:
    """Model the network core running ``inputs`` back to back (``trace``: the golden trace).

    ``params`` (or the keywords ``lanes``, ``pipeline``, ``fifo_depth``, ``emit_width``; not
    both) are those of the :class:`hw.cores.network_core.NetworkCore`; its FIFOs hold
    ``fifo_depth`` entries (default ``n_out + 2`` per producing layer, as the core builds them),
    wide beats one entry each. ``serial_input``: the cores taking wide beats one pass per event
    (:func:`layer_timing`, ``NetworkCore(serial_input=True)``). ``out_ready``: the
    last layer's output pauses (default: always ready). ``max_passes`` bounds the passes of the
    composition (see the module docstring).
    """
    params = DesignParams.coerce(
        network,
        params,
        lanes=lanes,
        pipeline=pipeline,
        fifo_depth=fifo_depth,
        emit_width=emit_width,
    )
    if out_ready is not None and not isinstance(out_ready, OutputReady):
        raise TypeError(f"out_ready must be an OutputReady, not {type(out_ready).__name__}")
    if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
        raise ValueError(f"max_passes must be a positive integer, not {max_passes!r}")
    depth = network.depth
    depths = fifo_depths(network, params)
    timings = [layer_timing(network, params, k, serial=serial_input) for k in range(depth)]
    ins = [input_steps(network, inputs, trace, k) for k in range(depth)]
    outs = [output_steps(trace, k) for k in range(depth)]
    last_ready = None  # (a function of the cycle: its own state, nothing a pass changes)
    if out_ready is not None and out_ready.probability < 1.0:
        last_ready = out_ready.first_ready
    # pass 0: no backpressure (each FIFO's need); then each FIFO's room from its consumer's
    # ``taken`` of the pass before, until those settle
    taken: list[np.ndarray | None] = [None] * (depth - 1)  # per FIFO, its consumer's (last pass)
    memo: list[tuple | None] = [None] * depth
    needs: list[int] = []
    for passes in range(max_passes + 1):
        runs, writes, upstream = [], [], None
        for k in range(depth):
            key = taken[k] if k < depth - 1 else None
            m = memo[k]
            if m is not None and _same(m[0], upstream) and _same(m[1], key):
                run = m[2]
            else:
                if k == depth - 1:
                    ready = last_ready
                elif passes == 0:
                    ready = None
                else:
                    ready = REGISTERED_FIFO.producer_ready(key, depths[k])
                arrivals = None
                if upstream is not None:
                    arrivals = _arrivals(runs[-1], upstream, REGISTERED_FIFO_LATENCY)
                run = cm.timed(timings[k], ins[k], outs[k], arrivals, None, ready)
                memo[k] = (upstream, key, run)
            runs.append(run)
            if k < depth - 1:
                upstream = _left(run)
                writes.append(upstream)
        new = [np.asarray(runs[k + 1].taken[0], dtype=np.int64) for k in range(depth - 1)]
        if passes == 0:
            needs = [
                REGISTERED_FIFO.need(runs[k].offered, new[k], depths[k]) for k in range(depth - 1)
            ]
            if all(n <= d for n, d in zip(needs, depths, strict=True)):
                break  # no FIFO fills: the schedule without backpressure is the RTL's
        elif all(_same(a, b) for a, b in zip(new, taken, strict=True)):
            break
        taken = new
    else:
        raise RuntimeError(f"the FIFOs' backpressure did not settle in {max_passes} passes")
    counts = [sum(s.n_events + 1 for s in inf) for inf in ins[0]]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.asarray(runs[0].taken[0], dtype=np.int64)[starts]
    done = np.array([inf[-1][1] for inf in runs[-1].beats], dtype=np.int64)
    fifos = tuple(
        FifoCheck(
            f"fifo{k}",
            depths[k],
            needs[k],
            int((writes[k] - np.asarray(runs[k].offered, dtype=np.int64)).sum()),
        )
        for k in range(depth - 1)
    )
    return NetworkSchedule(
        runs=tuple(runs), first_input=first, done=done, fifos=fifos, passes=passes
    )


def _same(a, b) -> bool:
    if a is None or b is None or callable(a) or callable(b):
        return a is b
    return np.array_equal(a, b)
