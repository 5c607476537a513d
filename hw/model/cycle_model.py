"""Exact cycle model of a layer core (``hw.cores.layer_core``), in plain Python (no amaranth).

With ``W = ceil(n_out / lanes)`` words, no backpressure on the output and the input always valid,
the layer core runs a fixed schedule that this module computes from the golden event lists
(:mod:`hw.model.events`). Cycle 0 is the first cycle after reset. All constants live in
:class:`LayerTiming`, built once per core from its :class:`Pipeline`.

The sequencer issues one word operation per cycle ("slot"):

* **re-initialisation**: ``W`` slots (``U = H + B``, ``A = 0``), from cycle 0 and, after an
  inference's last sweep, from the cycle its busy flag (0) is known;
* **accumulate**: each input event takes ``W`` slots, back to back (``E·W`` for ``E`` events);
* **sweep** (fire phase): ``W`` slots; its first slot is the one that consumes the input marker.

Number the sweeps ``j = 0, 1, …`` over the whole run and let ``m_j`` be the cycle marker ``j``
leaves. The emitter buffers two steps, so sweep ``j`` starts no earlier than ``m_{j-2} + 1``
(``RESTART_DELAY``):

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
of the words below it, and not before ``m_{j-1} + 1`` (``BANK_DELAY``). The marker leaves at
``m_j = max(x_j + W - 1 + MARKER_DELAY, cycle after the step's last spike, m_{j-1} + 1)``.

With ``emit_width = k > 1`` the spikes of a word leave ``k`` per beat (one beat per cycle, its
events sharing its cycle), so a word of ``n`` spikes takes ``ceil(n / k)`` cycles. With
``input_width = k > 1`` the events of one input beat (the sender's grouping:
:meth:`LayerTiming.input_groups`) share one pass of ``W`` slots, the beat's arrival its events';
with ``serial_input`` each event takes its own pass and a beat reaches the sequencer
:data:`UNPACKER_LATENCY` cycle later.

So an input-fed step costs ``(E + 1)·W`` cycles unless its output is still draining two steps
behind; a self-running step ``W - 1 + RESULT_DELAY`` cycles or its spike count, whichever is
larger; a re-initialisation ``W - 1 + RESULT_DELAY`` cycles. (``W`` reads :attr:`LayerTiming.slots`
where a pass is padded with idle slots.)

Every delay is a sum of the latencies of the core's blocks (:class:`LayerTiming`), each defined
once here, in plain Python, and returned by the block's ``latency`` property; the register stages
behind them are the switches of a :class:`Pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spikezip.hw.model.events import Step

__all__ = [
    "FIFO_LATENCY",
    "MAX_EMIT_WIDTH",
    "PIPELINES",
    "REGISTERED_FIFO_LATENCY",
    "CoreRun",
    "CycleSummary",
    "InferenceSchedule",
    "LayerTiming",
    "Pipeline",
    "StepSchedule",
    "beat_cycles",
    "check_timing",
    "schedule",
    "summary",
    "timed",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: depths of the preset pipelines (:meth:`Pipeline.preset`), as the command line names them
PIPELINES = (0, 1, 2, 3)

# -- latencies of the blocks whose structure no switch changes ----------------------------------
# (each is its component's ``latency``; :class:`LayerTiming` adds them up)

#: ``hw.cores.sequencer.EventBuffer``: a beat accepted on ``i`` is acted on in the next cycle
EVENT_BUFFER_LATENCY = 1
#: ``hw.cores.sequencer.StepCredits``: a status strobe is seen by the sequencer in the next cycle
CREDIT_LATENCY = 1
#: ``hw.cores.accumulator.WeightRead``: the synchronous read, then the output register
WEIGHT_READ_LATENCY = 2
#: ``hw.cores.neuron_array``'s stage 0: the command register, and the synchronous reads of the state
#: store and the per-word constants alongside it
READ_LATENCY = 1
#: ``hw.cores.emitter.WordPacker``: fired word register, entry register, queued-entry register
PACKER_LATENCY = 3
#: ``hw.cores.emitter.WordPacker``: cycles from a sweep's last word to ``status.swept``
PACKER_STATUS_LATENCY = 2
#: ``amaranth.lib.fifo.SyncFIFOBuffered``: an entry written into an empty FIFO is readable two
#: cycles later (the inner memory, then the output register); the emitter's queue and the ViT
#: top's FIFOs (:mod:`hw.model.vit_model`)
FIFO_LATENCY = 2
#: ``hw.cores.fifo.RegisteredFIFO``, the FIFOs between layer cores (:mod:`hw.model.network_model`):
#: the memory, its read register, then the output register the block RAM holds
REGISTERED_FIFO_LATENCY = 3
#: ``hw.cores.emitter.Serialiser``: the queue's head to the beat register
SERIALISER_LATENCY = 1
#: ``hw.cores.emitter.OutputBuffer``: the beat register to the output register
OUTPUT_BUFFER_LATENCY = 1
#: ``hw.cores.sequencer.Unpacker`` (a core whose input beats carry up to ``k > 1`` events,
#: :attr:`LayerTiming.input_width`): a beat taken on ``i`` shows its first event on ``o`` a cycle
#: later; the next events follow one per handshake
UNPACKER_LATENCY = 1
#: ``hw.cores.accumulator.Accumulator`` taking a wide beat's events in one pass: the products'
#: registers before their sum
SUM_LATENCY = 1
#: the largest spikes per beat (``emit_width``) a layer core builds
MAX_EMIT_WIDTH = 8


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """The register stages of a layer core, one switch per structural choice.

    Each switch buys a shorter logic path with cycles of latency (or idle slots); the block that
    implements it is named. The depths 0–3 of the command line are presets (:meth:`preset`):

    ======================  =====  =====  =====  =====
    switch                    0      1      2      3
    ======================  =====  =====  =====  =====
    ``registered_read``       no     yes    yes    yes
    ``bound_flags``           no     yes    yes    yes
    ``registered_offsets``    no     no     yes    yes
    ``registered_sums``       no     no     yes    yes
    ``min_distance``          1      1      2      3
    ``registered_address``    no     no     yes    yes
    ``banked_weights``        no     no     yes    yes
    ``dsp_registers``         no     no     yes    yes
    ``buffered_input``        no     no     yes    yes
    ``bypassed_store``        no     no     yes    yes
    ``registered_emitter``    no     no     yes    yes
    ======================  =====  =====  =====  =====

    Depth 0 updates a word from its state store's output in the cycle after its command; depth 1
    registers the read and forwards the results in flight; depth 2 also registers the update's
    sums, so two operations on one word must be two cycles apart, and registers the weight
    memory's and the multiplier's operands and outputs; depth 3 keeps those stages with the
    operations on one word three cycles apart, so that no result is forwarded into the sums.

    Parameters
    ----------
    registered_read : bool
        ``hw.cores.neuron_array.Operands``: the word read from the state store is registered (the
        operand register) before the update, with the results still in flight forwarded into it.
        One cycle of array latency.
    bound_flags : bool
        ``hw.cores.neuron_array``: the tracer bound checks ``A < p`` and ``A > n`` are kept in the
        state store with each word and updated with it, so that no comparison follows the
        choice of the operand.
    registered_offsets : bool
        ``hw.cores.neuron_array.Operands``: ``drive ∓ Θ`` are computed before the operand register
        and registered; otherwise after it, from the registered drive. Needs ``registered_read``.
    registered_sums : bool
        ``hw.cores.neuron_array.NeuronLanes``: the update's three sums (and the tracer and its bound
        checks) are registered before the choice among them. One cycle of array latency; needs
        ``registered_read`` and ``min_distance`` ≥ 2.
    min_distance : int
        Fewest cycles between two operations on the same word: 1, 2 or 3. The sequencer pads a
        pass over fewer words with idle slots (:attr:`LayerTiming.slots`). The array forwards
        its result register straight into the update (:attr:`forwarding`) only when
        ``min_distance`` is the smallest its stages allow.
    registered_address : bool
        ``hw.cores.accumulator.Accumulator``: the word operation is registered before the weight
        address is computed from it. One cycle of accumulator latency.
    banked_weights : bool
        ``hw.cores.accumulator.WeightRead``: a weight memory deeper than the bank depth is split
        into banks, each with its own output register, and the bank is chosen after them.
    dsp_registers : bool
        ``hw.cores.accumulator.Products``: the multiplier's (or ``±w``'s) input and output
        registers, which the ECP5 flow moves into the DSP block (:mod:`hw.flow.ecp5`). Two cycles of
        accumulator latency.
    buffered_input : bool
        ``hw.cores.sequencer.EventBuffer``: two entries instead of one, ``i.ready`` a register and
        the payload registers loaded from the input side only (the sequencer's consumption moves
        pointers), for a core that takes one event per beat and has no input map
        (:meth:`LayerTiming.input_entries`). The sequencer acts on a beat in the same cycle; the
        beat is taken earlier (while the one before it still waits). Default ``False`` (design
        files written before the switch).
    bypassed_store : bool
        ``hw.cores.neuron_array.StateStore``: the read port is not transparent (no write-address
        compare in front of the read register, nor the LUT RAM's read address a register);
        ``Operands`` takes the word written in the read's cycle from a copy of the result
        register, chosen by a register decided with the command. Needs ``registered_read``. No
        cycle changes. Default ``False``.
    registered_emitter : bool
        ``hw.cores.emitter`` (one spike per beat): the queue stores each entry's lowest two
        spiking lanes and the lanes after them, and the ``Serialiser`` keeps the lane of the next
        beat in a register, so that no priority encoder lies between its state and the beat
        register; the queue is a ``hw.cores.fifo.FlagFIFO`` (its empty and full flags registers,
        no level counter behind the serialiser's ``ready``). No cycle changes. Default ``False``.
    """

    registered_read: bool
    bound_flags: bool
    registered_offsets: bool
    registered_sums: bool
    min_distance: int
    registered_address: bool
    banked_weights: bool
    dsp_registers: bool
    buffered_input: bool = False
    bypassed_store: bool = False
    registered_emitter: bool = False

    def __post_init__(self) -> None:
        for name in (
            "registered_read",
            "bound_flags",
            "registered_offsets",
            "registered_sums",
            "registered_address",
            "banked_weights",
            "dsp_registers",
            "buffered_input",
            "bypassed_store",
            "registered_emitter",
        ):
            _check_bool(name, getattr(self, name))
        if not _is_int(self.min_distance) or self.min_distance not in (1, 2, 3):
            raise ValueError(f"min_distance must be 1, 2 or 3, not {self.min_distance!r}")
        object.__setattr__(self, "min_distance", int(self.min_distance))
        for name in ("registered_offsets", "registered_sums", "bypassed_store"):
            if getattr(self, name) and not self.registered_read:
                raise ValueError(f"{name} needs registered_read (the operand register)")
        if self.min_distance < 1 + self.registered_sums:
            raise ValueError(
                "min_distance must be 2 or 3 with registered_sums (the update takes two cycles), "
                f"not {self.min_distance}"
            )

    @classmethod
    def preset(cls, depth: int) -> Pipeline:
        """The preset of pipeline depth ``depth`` (one of :data:`PIPELINES`)."""
        if not _is_int(depth) or depth not in PIPELINES:
            valid = ", ".join(map(str, PIPELINES))
            raise ValueError(f"pipeline must be one of {valid}, not {depth!r}")
        return _PRESETS[int(depth)]

    @classmethod
    def parse(cls, value: int | Pipeline) -> Pipeline:
        """``value`` as a :class:`Pipeline`: a preset depth or a :class:`Pipeline` itself."""
        return value if isinstance(value, Pipeline) else cls.preset(value)

    @property
    def depth(self) -> int | None:
        """The preset depth this pipeline is (:data:`PIPELINES`), or ``None`` for another one."""
        return next((d for d, p in _PRESETS.items() if p == self), None)

    @property
    def forwarding(self) -> bool:
        """The neuron array forwards its result register straight into the update: the next
        operation on a word may follow ``min_distance`` cycles after the previous one, before
        that one's result reached the operand register."""
        return self.registered_read and self.min_distance == 1 + self.registered_sums

    # -- latency of the blocks the switches shape (each is its component's ``latency``) --------
    @property
    def address_latency(self) -> int:
        """``hw.cores.accumulator``'s address stage: 1 with ``registered_address``, else 0."""
        return int(self.registered_address)

    @property
    def product_latency(self) -> int:
        """``hw.cores.accumulator.Products``: 2 with ``dsp_registers`` (input and output
        registers)."""
        return 2 * self.dsp_registers

    @property
    def operand_latency(self) -> int:
        """``hw.cores.neuron_array.Operands``, command to operands: the command register, and the
        operand register with ``registered_read``."""
        return READ_LATENCY + self.registered_read

    @property
    def update_latency(self) -> int:
        """``hw.cores.neuron_array.NeuronLanes``: 1 with ``registered_sums``, else 0."""
        return int(self.registered_sums)


def _preset(stages: int, min_distance: int) -> Pipeline:
    return Pipeline(
        registered_read=stages >= 1,
        bound_flags=stages >= 1,
        registered_offsets=stages >= 2,
        registered_sums=stages >= 2,
        min_distance=min_distance,
        registered_address=stages >= 2,
        banked_weights=stages >= 2,
        dsp_registers=stages >= 2,
        buffered_input=stages >= 2,
        bypassed_store=stages >= 2,
        registered_emitter=stages >= 2,
    )


#: the preset of every depth in :data:`PIPELINES`
_PRESETS = {0: _preset(0, 1), 1: _preset(1, 1), 2: _preset(2, 2), 3: _preset(2, 3)}


@dataclass(frozen=True)
class LayerTiming:
    """Geometry and latencies of a layer core with ``lanes`` lanes over ``n_out`` neurons.

    One per layer core, built by the core and handed to its blocks; its delays are sums of the
    blocks' latencies (each block's ``latency`` property returns its term).

    Parameters
    ----------
    n_out : int
        Neurons of the layer (≥ 1).
    lanes : int
        Neurons updated per cycle, ``P`` (≥ 1; more than ``n_out`` is allowed and wastes lanes).
    pipeline : Pipeline or int
        The core's register stages, or the depth of a preset (one of :data:`PIPELINES`,
        default 1); kept as a :class:`Pipeline`.
    emit_width : int
        Spikes per output beat, ``k`` (1 … :data:`MAX_EMIT_WIDTH`, default 1): the emitter sends
        up to ``k`` spikes of one fired word per beat (``hw.cores.emitter.WideSerialiser``), so a
        word with ``n`` spikes costs ``ceil(n / k)`` beats; the marker keeps its own beat.
    input_width : int
        Events per input beat, ``k`` (1 … :data:`MAX_EMIT_WIDTH`, default 1). Above 1 the
        events of one beat share **one pass** (the accumulator reads ``k`` weight rows per slot
        and adds their products), unless ``serial_input``.
    input_lanes : int
        Lanes of the core that sends the input (default 1): how its beats group the events
        (per word of ``input_lanes`` indices, chunks of ``k``:
        :meth:`hw.model.events.BeatFormat.beats`), which the model needs with
        ``input_width > 1`` and shared passes.
    serial_input : bool
        With ``input_width > 1``: an unpacker (``hw.cores.unpacker.Unpacker``) hands the
        sequencer one event per handshake instead, every event taking its own pass, at
        :data:`UNPACKER_LATENCY` cycles per beat (:attr:`sequencer_latency`).
    """

    n_out: int
    lanes: int
    pipeline: Pipeline = 1  # type: ignore[assignment]  (an int preset is converted)
    emit_width: int = 1
    input_width: int = 1
    input_lanes: int = 1
    serial_input: bool = False

    #: cycles from a marker leaving to the earliest spike of the next step (the emitter's output
    #: register takes one beat per cycle)
    BANK_DELAY = 1

    def __post_init__(self) -> None:
        if not _is_int(self.n_out) or self.n_out < 1:
            raise ValueError(f"n_out must be a positive integer, not {self.n_out!r}")
        if not _is_int(self.lanes) or self.lanes < 1:
            raise ValueError(f"lanes must be a positive integer (1 or more), not {self.lanes!r}")
        object.__setattr__(self, "pipeline", Pipeline.parse(self.pipeline))
        object.__setattr__(self, "n_out", int(self.n_out))
        object.__setattr__(self, "lanes", int(self.lanes))
        for name in ("emit_width", "input_width"):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= MAX_EMIT_WIDTH:
                raise ValueError(f"{name} must be an integer in 1..{MAX_EMIT_WIDTH}, not {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_int(self.input_lanes) or self.input_lanes < 1:
            raise ValueError(f"input_lanes must be a positive integer, not {self.input_lanes!r}")
        object.__setattr__(self, "input_lanes", int(self.input_lanes))
        _check_bool("serial_input", self.serial_input)

    # -- the blocks' latencies, added up ------------------------------------------------------
    @property
    def sequencer_latency(self) -> int:
        """``hw.cores.sequencer.Sequencer``: a beat accepted on ``i`` is acted on this much
        later (with ``input_width > 1``, through the unpacker in front of it)."""
        return EVENT_BUFFER_LATENCY + (UNPACKER_LATENCY if self.unpacks else 0)

    def input_entries(self, input_map: Any = None) -> int:
        """Entries of the sequencer's input buffer (``hw.cores.sequencer.EventBuffer``): 2 with
        :attr:`Pipeline.buffered_input` for a core that takes one event per beat
        (``input_width`` 1) and has no input map (``input_map``, a mapped core's, reads its
        decoder with the beat), else 1."""
        two = self.pipeline.buffered_input and self.input_width == 1 and input_map is None
        return 2 if two else 1

    @property
    def unpacks(self) -> bool:
        """Wide input beats go through the unpacker, one event per pass."""
        return self.input_width > 1 and self.serial_input

    @property
    def shares_passes(self) -> bool:
        """The events of a wide input beat share one pass."""
        return self.input_width > 1 and not self.serial_input

    def input_groups(self, indices: np.ndarray) -> np.ndarray:
        """The pass of every event of a step (``0, 0, 1, …``): one per event, or with
        :attr:`shares_passes` one per input beat (:meth:`beat_groups`)."""
        if not self.shares_passes:
            return np.arange(len(indices))
        return self.beat_groups(indices)

    def beat_groups(self, indices: np.ndarray) -> np.ndarray:
        """The input beat of every event of a step (``0, 0, 1, …``): the producer's beats — per
        word of ``input_lanes`` indices, chunks of ``input_width``
        (``hw.model.events.BeatFormat.beats``)."""
        n = len(indices)
        if self.input_width == 1 or n == 0:
            return np.arange(n)
        words = np.asarray(indices) // self.input_lanes
        out, beat, size = np.empty(n, dtype=np.int64), 0, 0
        for j in range(n):
            if j and (words[j] != words[j - 1] or size == self.input_width):
                beat, size = beat + 1, 0
            out[j], size = beat, size + 1
        return out

    @property
    def accumulator_latency(self) -> int:
        """``hw.cores.accumulator.Accumulator``, word operation to command with its drive: the
        address stage, the weight read and the products (and, for a wide beat's events in one
        pass, the products' registers before their sum)."""
        p = self.pipeline
        wide = SUM_LATENCY if self.shares_passes else 0
        return p.address_latency + WEIGHT_READ_LATENCY + p.product_latency + wide

    @property
    def array_latency(self) -> int:
        """``hw.cores.neuron_array.NeuronArray``, command to fired word: the operands, the
        update."""
        return self.pipeline.operand_latency + self.pipeline.update_latency

    @property
    def emitter_latency(self) -> int:
        """``hw.cores.emitter.SpikeEmitter``, fired word to its first output beat at the earliest:
        the packer, the queue, the serialiser and the output register."""
        return PACKER_LATENCY + FIFO_LATENCY + SERIALISER_LATENCY + OUTPUT_BUFFER_LATENCY

    @property
    def SPIKE_DELAY(self) -> int:
        """Cycles from the sweep slot of a word to the earliest cycle one of its spikes leaves."""
        return self.accumulator_latency + self.array_latency + self.emitter_latency

    @property
    def MARKER_DELAY(self) -> int:
        """Cycles from the last sweep slot to the earliest cycle the step's marker leaves."""
        return self.SPIKE_DELAY

    @property
    def RESULT_DELAY(self) -> int:
        """Cycles from the last slot of a sweep to the earliest slot that may use its busy flag:
        through the accumulator and the array to the emitter's ``status``, then the credits."""
        return (
            self.accumulator_latency + self.array_latency + PACKER_STATUS_LATENCY + CREDIT_LATENCY
        )

    @property
    def RESTART_DELAY(self) -> int:
        """Cycles from a marker leaving to the earliest slot of the sweep two steps later."""
        return CREDIT_LATENCY

    @property
    def words(self) -> int:
        """``W = ceil(n_out / lanes)``: words of ``lanes`` neurons."""
        return -(-self.n_out // self.lanes)

    @property
    def min_distance(self) -> int:
        """Fewest cycles between two operations on the same word (:class:`Pipeline`)."""
        return self.pipeline.min_distance

    @property
    def slots(self) -> int:
        """Cycles of a pass over the words: ``max(W, min_distance)`` (idle slots at the end)."""
        return max(self.words, self.min_distance)

    @property
    def cycles_per_event(self) -> int:
        """Accumulate cycles per input event (:attr:`slots`)."""
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


def check_timing(timing: Any, n_out: int | None = None) -> LayerTiming:
    """``timing`` if it is a :class:`LayerTiming` (over ``n_out`` neurons, if given): the check
    of a block handed its core's timing."""
    if not isinstance(timing, LayerTiming):
        raise TypeError(f"timing must be a hw.model.cycle_model.LayerTiming, not {timing!r}")
    if n_out is not None and timing.n_out != n_out:
        raise ValueError(f"timing is for {timing.n_out} neurons, not the layer's {n_out}")
    return timing


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
    #: first slot of each input event (its pass, or the cycle a dropped event is consumed);
    #: empty for a self-running step
    event_slots: tuple[int, ...] = ()
    #: sweep slots of a streaming core's step spent before its marker (``InputMap.stream``)
    early_fire: int = 0


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
    timing: LayerTiming,
    fire: np.ndarray,
    step: Step,
    previous: int | None,
    ready: _Ready | None = None,
) -> tuple[tuple[int, ...], int]:
    """Output cycles of a step whose word ``c`` is swept in slot ``fire[c]``; ``previous`` is the
    last marker; ``ready``: the cycle from which each beat may leave (backpressure), offers
    recorded."""
    lanes, delay = timing.lanes, timing.SPIKE_DELAY
    cycles: list[int] = []
    free = int(fire[0]) if previous is None else previous + timing.BANK_DELAY  # output free
    marker = int(fire[-1]) + timing.MARKER_DELAY
    if previous is not None:
        marker = max(marker, previous + 1)
    width = timing.emit_width  # spikes of one word per beat
    words, counts = np.unique(step.indices // lanes, return_counts=True)
    for word, n in zip(words.tolist(), counts.tolist(), strict=True):
        start = max(int(fire[word]) + delay, free)
        for b in range(-(-n // width)):  # the word's beats, one per cycle
            if ready is not None:
                start = ready.leave(start)
            cycles.extend([start] * min(width, n - b * width))
            start += 1
        free = start
        marker = max(marker, free)
    if ready is not None:
        marker = ready.leave(marker)
    return tuple(cycles), marker


class _Ready:
    """Backpressure on an output: beat ``k`` (over the run) offered in cycle ``c`` leaves in
    ``max(c, ready[k])``, or in ``ready(c)`` when ``ready`` is a function (a per-cycle
    ``ready`` pattern: the first ready cycle from ``c`` on); the offers are recorded."""

    def __init__(self, ready: Sequence[int] | Callable[[int], int]) -> None:
        self.fn = ready if callable(ready) else None
        if self.fn is None:
            self.ready = ready.tolist() if isinstance(ready, np.ndarray) else list(ready)
        self.k, self.offered = 0, []

    def leave(self, cycle: int) -> int:
        self.offered.append(cycle)
        if self.fn is not None:
            return self.fn(cycle)
        k = self.k
        self.k += 1
        return max(cycle, self.ready[k]) if k < len(self.ready) else cycle


def schedule(
    timing: LayerTiming,
    inputs: list[list[Step]],
    outputs: list[list[Step]],
    arrivals: list[list[Sequence[int]]] | None = None,
    input_map: Any = None,
    ready: Sequence[int] | Callable[[int], int] | None = None,
) -> list[InferenceSchedule]:
    """The cycle of every output event and marker of a run of inferences, back to back.

    Parameters
    ----------
    timing : LayerTiming
    inputs : per inference, the input steps (:func:`hw.model.events.input_steps`)
    outputs : per inference, the golden output steps (:func:`hw.model.events.output_steps`)
    arrivals : optional, per inference and input step, the first cycle each beat of the step
        (its events, then its marker) is valid on ``i``; default: always valid. A beat valid in
        cycle ``c`` is consumed in a slot ``≥ c + 1`` (the sequencer's input register,
        :attr:`LayerTiming.sequencer_latency`), so an event's first slot is
        ``max(previous slot free, c + 1)`` and a sweep's first slot also
        waits for its marker. Exact as long as ``o`` sees no backpressure
        (:mod:`hw.model.network_model` checks this for chained cores).
    input_map : hw.model.input_map.InputMap, optional
        A mapped core's input map: an event costs :meth:`InputMap.event_cycles
        <hw.model.input_map.InputMap.event_cycles>` (its pass, or 1 cycle if dropped) instead of
        ``slots``.
    ready : optional, per output beat of the run (events and markers in stream order), the
        first cycle it may leave (backpressure on ``o``: ``hw.model.vit_model``), or a function
        of the cycle a beat is offered giving the cycle it leaves (a per-cycle ``o.ready``
        pattern: ``hw.model.network_model.OutputReady``). The emitter
        is an elastic pipeline (a skid register behind the serialiser), so a beat held back
        delays only the beats after it — one per cycle — and, through the marker, the sweep two
        steps later.
    """
    return _schedule(timing, inputs, outputs, arrivals, input_map, ready)[0]


def _schedule(timing, inputs, outputs, arrivals, input_map, ready):
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input and {len(outputs)} output inferences")
    words, slots = timing.words, timing.slots
    extra = 0 if input_map is None else input_map.sweep_extra(timing.min_distance)
    stream = input_map is not None and input_map.stream
    if stream:  # (per index: the words swept before its event, its lowest pass)
        bounds_all, lowest_all = input_map.sweep_bounds, input_map.lowest
    pad = slots - words + extra  # idle slots after a sweep's last word
    order = np.arange(words)
    out: list[InferenceSchedule] = []
    markers: list[int] = []  # every marker of the run, in order
    hold = None if ready is None else _Ready(ready)
    init = 0
    for b, (ins, outs) in enumerate(zip(inputs, outputs, strict=True)):
        if len(outs) < len(ins):
            raise ValueError(f"inference {b}: {len(outs)} output steps but {len(ins)} input steps")
        steps: list[StepSchedule] = []
        acc: int | None = init + timing.init_cycles + extra
        last = init + words - 1  # the last slot of the pass before
        for t, step in enumerate(outs):
            bank = markers[-2] + timing.RESTART_DELAY if len(markers) >= 2 else 0
            fire = None
            if t < len(ins):
                n, start, ptr = ins[t].n_events, acc, 0
                if input_map is None:
                    costs = np.full(n, slots)
                else:
                    costs = input_map.event_cycles(ins[t].indices, timing.min_distance)
                if stream:
                    fire = np.empty(words, dtype=np.int64)
                    bounds = bounds_all[ins[t].indices].tolist()
                    lowest = lowest_all[ins[t].indices].tolist()
                    kept = input_map.kept[ins[t].indices].tolist()
                beats = None if arrivals is None else arrivals[b][t]
                free, first_slots = acc, []
                groups = timing.input_groups(ins[t].indices)
                for k in range(n):
                    if k and groups[k] == groups[k - 1]:  # shares the pass of the one before
                        first_slots.append(first_slots[-1])
                        continue
                    slot = free if beats is None else max(free, beats[k] + timing.sequencer_latency)
                    if k == 0:
                        start = slot  # (an early sweep may come first)
                    if stream and kept[k] and lowest[k] < ptr:
                        raise ValueError(
                            f"inference {b}, step {t}: event {k} (index {ins[t].indices[k]}) is "
                            f"on word {lowest[k]}, below word {ptr} the streaming core swept: "
                            "its input must come in ascending index order"
                        )
                    if stream and kept[k] and bounds[k] > ptr:
                        # the words below the bound are complete: sweep them first
                        if ptr == 0:  # the step's first sweep slot: the emitter's room
                            slot = max(slot, bank)
                        fire[ptr : bounds[k]] = slot + np.arange(bounds[k] - ptr)
                        slot += bounds[k] - ptr
                        ptr = bounds[k]
                    first_slots.append(slot)
                    free = slot + int(costs[k])
                x = free if beats is None else max(free, beats[n] + timing.sequencer_latency)
                if ptr == 0:
                    x = max(x, bank)
                if stream:
                    fire[ptr:] = x + np.arange(words - ptr)
            else:
                n, start, first_slots, ptr = 0, None, [], 0
                x = max(last + timing.RESULT_DELAY, bank)
            if fire is None:
                fire = x + order
            last = int(fire[-1])
            events, marker = _emit(timing, fire, step, markers[-1] if markers else None, hold)
            steps.append(StepSchedule(n, start, x, events, marker, tuple(first_slots), ptr))
            markers.append(marker)
            acc = x + words - ptr + pad if t < len(ins) and ins[t].busy else None
        out.append(InferenceSchedule(init, tuple(steps)))
        init = last + timing.RESULT_DELAY
    return out, (None if hold is None else hold.offered)


@dataclass(frozen=True)
class CoreRun:
    """A core's modelled run with timed inputs (each core model's ``timed``): what a composition
    of cores through FIFOs (:mod:`hw.model.vit_model`) reads from it.

    ``taken`` is the cycle each input beat leaves the FIFO in front of the port (the core's
    ``i.ready`` handshake), per port in stream order over the whole run; ``work`` counts the
    cycles the core spends on its own work (passes, scans, clears, one per beat read), waits for
    input excluded; ``accumulate`` and ``ops`` are the cycles of its accumulate phases (first
    input beat of a step to its last, waits included) and the useful lane operations done in
    them, for the cores that have one (site cores and products; 0 otherwise).
    """

    #: per inference and output step: (cycle of every event, cycle of the marker)
    beats: tuple[tuple[tuple[tuple[int, ...], int], ...], ...]
    taken: tuple[tuple[int, ...], ...]
    work: int
    accumulate: int = 0
    ops: int = 0
    #: the cycle each output beat was first offered (valid on ``o``), in stream order; equal to
    #: its leaving cycle without backpressure
    offered: tuple[int, ...] = ()

    @property
    def end_cycle(self) -> int:
        """Cycle of the last output marker (-1 for an empty run)."""
        return self.beats[-1][-1][1] if self.beats else -1


def timed(
    timing: LayerTiming,
    inputs: list[list[Step]],
    outputs: list[list[Step]],
    arrivals: list[list[Sequence[int]]] | None = None,
    input_map: Any = None,
    ready: Sequence[int] | Callable[[int], int] | None = None,
    *,
    ops_per_event: int | None = None,
) -> CoreRun:
    """:func:`schedule` (same parameters) as a :class:`CoreRun`.

    The input register (``hw.cores.sequencer.EventBuffer``) takes a beat in the cycle it is valid
    and the beat held leaves, ``max(arrival, consumption of the previous beat)``: an event is
    consumed with the last word of its last pass (at once if the map drops it), a marker with
    its sweep's first slot. A two-entry buffer (:meth:`LayerTiming.input_entries`, ``i.ready``
    a register) takes beat ``k`` in ``max(arrival_k, taken_{k−1} + 1, consumed_{k−2} + 1)``:
    while the beat before still waits, if the one before that left; the sequencer sees beat
    ``k`` from ``max(arrival_k, consumed_{k−1}) + 1`` either way. Without ``arrivals`` the input
    is always valid (a beat is valid from cycle 0). ``ops_per_event``: neurons one pass updates
    (default: ``n_out``, or a map's ``span·lanes``; a multi-pass map's event counts once per
    pass).

    With wide input beats (``timing.input_width > 1``; ``arrivals`` per event, its beat's) one
    ``taken`` per beat: the input register takes a beat whose events share a pass as it takes
    an event; with ``serial_input`` the unpacker takes it, ``max(arrival, the cycle it handed on
    the last event of the beat before)``, and hands each event on after ``UNPACKER_LATENCY``.
    ``offered`` is per output beat (a wide beat once).
    """
    sched, offered = _schedule(timing, inputs, outputs, arrivals, input_map, ready)
    extra = 0 if input_map is None else input_map.sweep_extra(timing.min_distance)
    if ops_per_event is None:
        ops_per_event = timing.n_out if input_map is None else input_map.span * timing.lanes
    slots = timing.slots
    taken: list[int] = []
    held = -1  # the cycle the beat held by the input register leaves it
    two = timing.input_entries(input_map) == 2  # (one event per beat, no unpacker)
    before = -2  # (two entries) the cycle the beat before the held one left

    def take(arrive: int) -> int:  # the cycle the input buffer takes a beat valid from ``arrive``
        if not two:
            return max(arrive, held)
        return max(arrive, taken[-1] + 1 if taken else 0, before + 1)

    unpacked = -1  # (``serial_input``) the cycle the unpacker hands on its beat's last event
    work = accumulate = ops = 0
    for b, (ins, inf) in enumerate(zip(inputs, sched, strict=True)):
        work += timing.init_cycles + extra + len(inf.steps) * (slots + extra)
        for t, step in enumerate(ins):
            s = inf.steps[t]
            if input_map is None:
                costs = np.full(step.n_events, slots)
                after = np.full(step.n_events, timing.words - 1)
                passes = np.ones(step.n_events, dtype=np.int64)
            else:
                costs = input_map.event_cycles(step.indices, timing.min_distance)
                after = input_map.consumed_after(step.indices, timing.min_distance)
                passes = input_map.pass_counts[step.indices]
            beats = arrivals[b][t] if arrivals is not None else None
            groups = timing.beat_groups(step.indices)  # one input beat per group
            n = step.n_events
            for k in range(n):
                arrive = 0 if beats is None else int(beats[k])
                first = k == 0 or groups[k] != groups[k - 1]
                if timing.unpacks:  # the unpacker takes the beat, the input register its events
                    if first:
                        taken.append(max(arrive, unpacked))
                    event = max(arrive + UNPACKER_LATENCY, held)
                    if k == n - 1 or groups[k + 1] != groups[k]:
                        unpacked = event  # (it takes the next beat with its last event's handshake)
                elif first:  # a beat (its events share one pass, or it is one event)
                    taken.append(take(arrive))
                before, held = held, s.event_slots[k] + int(after[k])
            arrive = 0 if beats is None else int(beats[-1])
            if timing.unpacks:
                taken.append(max(arrive, unpacked))
                unpacked = max(arrive + UNPACKER_LATENCY, held)
            else:
                taken.append(take(arrive))
            before, held = held, s.fire_cycle
            work += int(costs.sum())
            accumulate += s.fire_cycle - s.accumulate_cycle - s.early_fire
            ops += int(passes.sum()) * ops_per_event
    beats_out = tuple(tuple((s.event_cycles, s.marker_cycle) for s in inf.steps) for inf in sched)
    if offered is None:
        offered = [c for inf in beats_out for ev, mk in inf for c in (*beat_cycles(ev), mk)]
    return CoreRun(
        beats=beats_out,
        taken=(tuple(taken),),
        work=work,
        accumulate=accumulate,
        ops=ops,
        offered=tuple(offered),
    )


def beat_cycles(event_cycles: Sequence[int]) -> list[int]:
    """The cycle of every beat of a step's events (the events of a wide beat share its cycle;
    one beat leaves per cycle)."""
    out: list[int] = []
    for c in event_cycles:
        if not out or out[-1] != c:
            out.append(int(c))
    return out


#: version of :meth:`CycleSummary.to_json`
SUMMARY_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """Cycle totals of a schedule, their split into phases, and its utilization (:func:`summary`).

    An *input-fed* step accumulates from ``a_t`` and sweeps from ``x_t``; a *self-running* step
    (after the input went idle) only sweeps. Utilizations are the delivered fraction of the peak
    ``lanes`` synaptic operations per cycle (accumulate slots times the lane occupancy
    ``n_out / (W·P)``) over:

    * ``accumulate_phase_utilization`` — the accumulate phases ``[a_t, x_t)`` (1.0 × occupancy when
      events follow each other without bubbles and no sweep waits for the previous step's spikes);
    * ``fed_step_utilization`` — the input-fed steps, sweeps included ``[a_t, x_t + W)``;
    * ``utilization`` — every cycle from 0 to the last marker, self-running steps,
      re-initialisations and output latency included.

    The numerators count one pass of ``W`` slots per input event: when the events of a wide
    input beat share a pass (:attr:`LayerTiming.shares_passes`, up to ``k·P`` operations per
    cycle) a utilization may exceed 1.
    """

    cycles: int  #: from cycle 0 to the last marker, inclusive
    inferences: int
    steps: int
    self_running_steps: int
    events: int  #: input events of the input-fed steps
    output_events: int
    accumulate_cycles: int  #: slots that accumulated (events × words; passes × words when a
    #: wide input beat's events share a pass, :attr:`LayerTiming.shares_passes`)
    accumulate_phase_cycles: int
    stall_cycles: int  #: accumulate-phase cycles that did not accumulate
    sweep_cycles: int
    init_cycles: int
    cycles_per_inference: float
    cycles_per_step: float
    accumulate_phase_utilization: float
    fed_step_utilization: float
    utilization: float

    def to_json(self) -> dict[str, Any]:
        return {"version": SUMMARY_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CycleSummary:
        if not isinstance(d, dict) or d.get("version") != SUMMARY_VERSION:
            raise ValueError(f"cycle summary: not version {SUMMARY_VERSION}")
        try:
            return cls(**{k: v for k, v in d.items() if k != "version"})
        except TypeError as e:
            raise ValueError(f"cycle summary: {e}") from None


def summary(timing: LayerTiming, sched: list[InferenceSchedule]) -> CycleSummary:
    """The :class:`CycleSummary` of a layer core's schedule ``sched`` (of :func:`schedule`)."""
    words, slots, occ = timing.words, timing.slots, timing.lane_utilization
    steps = [s for inf in sched for s in inf.steps]
    fed = [s for s in steps if s.accumulate_cycle is not None]
    total = sched[-1].end_cycle + 1 if sched else 0
    acc = sum(s.n_events for s in fed) * words  # (useful: one event's pass each)
    passes = sum(len(set(s.event_slots)) for s in fed) if timing.shares_passes else None
    slots_used = acc if passes is None else passes * words  # slots that accumulated
    phase = sum(s.fire_cycle - s.accumulate_cycle - s.early_fire for s in fed)
    return CycleSummary(
        cycles=total,
        inferences=len(sched),
        steps=len(steps),
        self_running_steps=len(steps) - len(fed),
        events=sum(s.n_events for s in fed),
        output_events=sum(len(s.event_cycles) for s in steps),
        accumulate_cycles=slots_used,
        accumulate_phase_cycles=phase,
        stall_cycles=phase - slots_used,
        sweep_cycles=len(steps) * slots,
        init_cycles=len(sched) * timing.init_cycles,
        cycles_per_inference=total / max(1, len(sched)),
        cycles_per_step=total / max(1, len(steps)),
        accumulate_phase_utilization=acc / max(1, phase) * occ,
        fed_step_utilization=acc / max(1, phase + len(fed) * slots) * occ,
        utilization=acc / max(1, total) * occ,
    )
