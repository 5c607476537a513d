"""The max-pool core's geometry, golden streams and exact cycle model (pure Python; docs/cnn.md
§3, §12).

A differential max-pool (``ir.cnn.MaxPool2d``) reads its source's spikes in HWC order (input
index ``(y·W + x)·C + c``) and keeps

* ``X`` — per input element, the source's tracer (the sum of its spikes so far), and
* ``A`` — per window, the pool's own tracer.

At each step's end marker it sweeps its windows in HWC order (window ``(c, oy, ox)`` is output
index ``(oy·W' + ox)·C + c``): ``M = max X`` over the window's ``kh·kw`` elements (one read per
cycle), ``U = M − A`` (the membrane of its Θ = 1 neuron: docs/cnn.md Lemma MP1 gives
``U_t = M_t − A_{t−1}`` before firing, at every step), the spike
``s = sign(U)·min(2^⌊log2 |U|⌋, cap)`` (``cap`` 1 for ST-BIF, ``2^K`` for graded neurons with a
largest level, else unbounded), ``A += s``; a non-zero ``s`` leaves as event ``(window, s)``.
Because the source's tracers lie in its bounds ``[n, p]``, ``M ∈ [n, p]``, so the neuron's
``A < p`` / ``A > n`` conditions and its ``p − A`` / ``A − n`` room never bind: ``s`` is the
reference's (``sw.reference.stbif_step``/``graded_step`` with Θ = 1), with no comparison against
the bounds. ST-BIF: ``U ∈ {−1, 0, 1}`` (Lemma MP2), ``s = U``.

Protocol (the layer core's): per step the input's events, then its marker; the core emits its
spikes in ascending window order, then a marker whose busy flag is the input marker's busy OR a
spike in this step. After the input's marker with busy 0 the core runs **self-running** steps (a
sweep without input; a graded pool may still settle, docs/cnn.md Lemma MP2′) until a step without
spikes; its marker has busy 0, and the core clears ``X`` and ``A`` (``clear_cycles``) before it
reads the next inference.

Cycles (:func:`timed`; ``hw.cores.max_pool``): the sequencer reads one input beat per cycle in
the cycle it is valid (``i.ready`` high in the read phase; each index at most once per step,
:func:`check_inputs`); :data:`SETTLE` cycles after the cycle after the marker the sweep issues
one element read per cycle, windows in order, ``taps = kh·kw`` each; the spike of a
window is formed :data:`EMIT_LATENCY` cycles after its last element's issue and leaves one cycle
later (the output register). A non-zero spike that finds the output register still holding a
beat freezes the whole sweep until that beat leaves (backpressure). The marker is decided in the
cycle after the last window's spike stage, once the output register is free, and leaves one
cycle later; the next step's read (or self-running sweep, or the clear) starts the cycle after
the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikezip.hw.model.cycle_model import CoreRun
from spikezip.hw.model.events import EventFormat, Step, _step, spike_value_width
from spikezip.ir.network import signed_width, unsigned_width

__all__ = [
    "EMIT_LATENCY",
    "SETTLE",
    "PoolGeometry",
    "check_inputs",
    "golden_outputs",
    "pool_geometry",
    "pool_streams",
    "schedule",
    "timed",
]

#: cycles from a window's last element read being issued (the sweep counter) to the stage that
#: forms its spike and loads the output register: the address register, the memory read, its
#: output register, a copy near the logic (the running maximum), the membrane ``U = M − A``
EMIT_LATENCY = 6
#: cycles between an input marker's read and the sweep's first issue: an event's write reaches
#: X three cycles after the event's read (address register, read, output register, copy)
SETTLE = 2


def _pos(name: str, v: object, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, not {v!r}")
    return int(v)


@dataclass(frozen=True, kw_only=True)
class PoolGeometry:
    """Sizes, bounds and neuron of one max-pool core.

    Parameters
    ----------
    channels, height, width : int ≥ 1
        The source's shape ``(C, H, W)``.
    kernel, stride : ``(kh, kw)``, ``(sy, sx)``, each ≥ 1; the kernel fits the padded input
    padding : ``(py, px)``, each in ``[0, k // 2]`` (a padded tap is not in the maximum; the sweep
        still visits it, so every window costs ``kh·kw`` cycles)
    neg_bound, pos_bound : int
        The source's tracer bounds ``[n, p]`` (``n ≤ 0 ≤ p``, ``n < p``).
    in_spike_max : int
        Largest ``|s|`` of an input spike (a power of two; 1 for an ST-BIF source).
    neuron : ``"stbif"`` or ``"graded"``; max_level : int ≥ 0 or None (graded only)
    """

    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    neg_bound: int
    pos_bound: int
    in_spike_max: int = 1
    neuron: str = "stbif"
    max_level: int | None = None
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            _pos(name, getattr(self, name))
        for name in ("kernel", "stride", "padding"):
            v = tuple(getattr(self, name))
            if len(v) != 2:
                raise ValueError(f"{name} must be a pair (y, x), not {v!r}")
            for k, x in enumerate(v):
                if name != "padding":
                    _pos(f"{name}[{k}]", x)
                elif isinstance(x, bool) or not isinstance(x, int | np.integer):
                    raise ValueError(f"padding[{k}] must be an integer, not {x!r}")
            object.__setattr__(self, name, tuple(int(x) for x in v))
        for k, (p, kk) in enumerate(zip(self.padding, self.kernel, strict=True)):
            if not 0 <= p <= kk // 2:
                raise ValueError(f"padding[{k}] must lie in [0, {kk // 2}], not {p}")
        (kh, kw), (py, px) = self.kernel, self.padding
        if kh > self.height + 2 * py or kw > self.width + 2 * px:
            pad = f" (padding {py}×{px})" if py or px else ""
            raise ValueError(
                f"kernel must fit the {self.height}×{self.width} input{pad}, not {kh}×{kw}"
            )
        n, p = self.neg_bound, self.pos_bound
        if not (isinstance(n, int) and isinstance(p, int) and n <= 0 <= p and n < p):
            raise ValueError(f"bounds must be integers with n ≤ 0 ≤ p and n < p, not [{n}, {p}]")
        s = self.in_spike_max
        if isinstance(s, bool) or not isinstance(s, int) or s < 1 or s & (s - 1):
            raise ValueError(f"in_spike_max must be a power of two ≥ 1, not {s!r}")
        if self.neuron not in ("stbif", "graded"):
            raise ValueError(f"neuron must be 'stbif' or 'graded', not {self.neuron!r}")
        if self.neuron == "stbif" and s != 1:
            raise ValueError("an ST-BIF max-pool needs ±1 input spikes (in_spike_max 1)")
        k = self.max_level
        if k is not None and (self.neuron != "graded" or not isinstance(k, int) or k < 0):
            raise ValueError(f"max_level must be None or (graded) an integer ≥ 0, not {k!r}")

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1

    @property
    def n_in(self) -> int:
        return self.channels * self.height * self.width

    @property
    def windows(self) -> int:
        return self.channels * self.out_height * self.out_width

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def sweep_cycles(self) -> int:
        """Issue cycles of one sweep: ``windows · taps``."""
        return self.windows * self.taps

    @property
    def clear_cycles(self) -> int:
        """Cycles of the clear after an inference: one per entry of the larger memory."""
        return max(self.n_in, self.windows)

    # -- widths ---------------------------------------------------------------------------------
    @property
    def tracer_width(self) -> int:
        """Signed bits of ``X`` and ``A`` (both in ``[n, p]``)."""
        return signed_width(self.neg_bound, self.pos_bound)

    @property
    def membrane_width(self) -> int:
        """Signed bits of ``U = M − A ∈ [n − p, p − n]``."""
        span = self.pos_bound - self.neg_bound
        return signed_width(-span, span)

    @property
    def spike_max(self) -> int:
        """Largest ``|s|`` the pool fires (``ir.network.spike_magnitude``)."""
        if self.neuron == "stbif":
            return 1
        m = 1 << ((self.pos_bound - self.neg_bound).bit_length() - 1)
        return m if self.max_level is None else min(m, 1 << self.max_level)

    @property
    def input_format(self) -> EventFormat:
        return EventFormat(unsigned_width(self.n_in - 1), spike_value_width(self.in_spike_max))

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(unsigned_width(self.windows - 1), spike_value_width(self.spike_max))

    # -- the datapath's facts ---------------------------------------------------------------------
    def window_elements(self, w: int) -> list[int]:
        """Input indices (HWC) of window ``w`` (HWC) inside the input, in issue order (``ky``,
        then ``kx``; a padded tap is skipped)."""
        c, y0, x0 = self.window_origin(w)
        return [
            ((y0 + ky) * self.width + x0 + kx) * self.channels + c
            for ky in range(self.kernel[0])
            for kx in range(self.kernel[1])
            if 0 <= y0 + ky < self.height and 0 <= x0 + kx < self.width
        ]

    def window_origin(self, w: int) -> tuple[int, int, int]:
        """``(c, y0, x0)`` of window ``w``: its channel and top-left tap (outside the input, at
        ``y0`` or ``x0 < 0``, with padding)."""
        pos, c = divmod(w, self.channels)
        oy, ox = divmod(pos, self.out_width)
        return c, oy * self.stride[0] - self.padding[0], ox * self.stride[1] - self.padding[1]

    def reach(self) -> tuple[np.ndarray, np.ndarray]:
        """``(my [H', kh], mx [W', kw])``: which taps of each output row / column lie inside the
        input (``ir.cnn.window_reach``)."""
        from spikezip.ir.cnn import window_reach

        (kh, kw), (sy, sx), (py, px) = self.kernel, self.stride, self.padding
        return window_reach(self.height, kh, sy, py), window_reach(self.width, kw, sx, px)

    def tap_offsets(self) -> list[int]:
        """Per tap (``ky``, then ``kx``), the input index offset ``(ky·W + kx)·C``."""
        return [
            (ky * self.width + kx) * self.channels
            for ky in range(self.kernel[0])
            for kx in range(self.kernel[1])
        ]

    def spike(self, u: int) -> int:
        """The neuron's spike for membrane ``u`` (see the module docstring)."""
        if u == 0:
            return 0
        m = 1 << (abs(u).bit_length() - 1)
        cap = (
            1
            if self.neuron == "stbif"
            else (None if self.max_level is None else 1 << self.max_level)
        )
        if cap is not None:
            m = min(m, cap)
        return m if u > 0 else -m


def pool_geometry(net, layer: int) -> PoolGeometry:
    """The :class:`PoolGeometry` of ``net.layers[layer]``, an ``ir.cnn.MaxPool2d`` of a
    ``ConvNet`` reading a site's ``(C, H, W)`` spikes."""
    from spikezip.ir.cnn import ConvNet, MaxPool2d

    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(net.layers):
        raise ValueError(f"layer must be an integer in [0, {len(net.layers) - 1}], not {layer!r}")
    op = net.layers[layer]
    if not isinstance(op, MaxPool2d):
        raise ValueError(f"layer {layer} is a {type(op).__name__}, not a MaxPool2d")
    c, h, w = net.input_shape_of(layer)
    n, p = net.source_range(layer)
    return PoolGeometry(
        channels=int(c),
        height=int(h),
        width=int(w),
        kernel=tuple(op.kernel),
        stride=tuple(op.stride),
        padding=tuple(op.padding),
        neg_bound=int(n),
        pos_bound=int(p),
        in_spike_max=int(net.spike_max(net.sources[layer][0])),
        neuron=op.neuron,
        max_level=op.max_level,
    )


def pool_streams(net, inputs: np.ndarray, trace, layer: int) -> tuple[list, list]:
    """Per sample, the steps the max-pool core of ``net.layers[layer]`` receives (its source
    site's spikes in HWC order) and emits (its own spikes in HWC order, the busy flag the core
    computes), from a reference trace (``sw.cnn.reference.simulate``)."""
    from spikezip.hw.model.conv_sites import _core_steps, _steps, hwc_order, site_index

    pool_geometry(net, layer)  # (checks the layer)
    source = net.sources[layer][0]
    ins = _steps(trace, site_index(net, source), hwc_order(net.output_shape(source)))
    perm = hwc_order(net.output_shape(layer))
    return ins, _core_steps(trace, site_index(net, layer), perm, ins, False)


def check_inputs(geo: PoolGeometry, inputs: Sequence[Sequence[Step]]) -> None:
    """Refuse input steps the core does not take: an index outside the input, or one index twice
    in a step (the read-modify-write of ``X`` has no forwarding: a site's core emits each neuron
    at most once per step)."""
    for b, steps in enumerate(inputs):
        for t, step in enumerate(steps):
            idx = np.asarray(step.indices)
            if idx.size and (idx.min() < 0 or idx.max() >= geo.n_in):
                raise ValueError(
                    f"step {t} of inference {b} has an input index outside [0, {geo.n_in - 1}]"
                )
            uniq, counts = np.unique(idx, return_counts=True)
            if (counts > 1).any():
                raise ValueError(
                    f"step {t} of inference {b} has input index {int(uniq[counts > 1][0])} "
                    "twice (the core takes each input element at most once per step)"
                )


def golden_outputs(geo: PoolGeometry, inputs: Sequence[Sequence[Step]]) -> list[list[Step]]:
    """Per inference, the steps the core emits for ``inputs`` (the module docstring's
    definition, in integers: no reference involved)."""
    check_inputs(geo, inputs)
    # every window's elements, padded to kh·kw with index n_in: an entry below every tracer
    elements = np.full((geo.windows, geo.taps), geo.n_in, dtype=np.int64)
    for w in range(geo.windows):
        e = geo.window_elements(w)
        elements[w, : len(e)] = e
    low = geo.neg_bound - 1
    out = []
    for steps_in in inputs:
        x = np.zeros(geo.n_in + 1, dtype=np.int64)
        x[geo.n_in] = low
        a = np.zeros(geo.windows, dtype=np.int64)
        steps, t = [], 0
        while True:
            fed = False
            if t < len(steps_in):
                np.add.at(x, steps_in[t].indices, steps_in[t].values)
                fed = steps_in[t].busy
            u = x[elements].max(axis=1) - a
            s = np.array([geo.spike(int(v)) for v in u], dtype=np.int64)
            a += s
            busy = bool(fed or s.any())
            steps.append(_step(s, busy))
            if not busy and t + 1 >= len(steps_in):
                break
            t += 1
        out.append(steps)
    return out


def schedule(
    geo: PoolGeometry,
    inputs: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
    ready: Sequence[int] | None = None,
) -> list[list[tuple[list[int], int]]]:
    """Per inference and output step, ``(event cycles, marker cycle)`` (:func:`timed`)."""
    run = timed(geo, inputs, outputs, arrivals, ready)
    return [[(list(ev), mk) for ev, mk in inf] for inf in run.beats]


def timed(
    geo: PoolGeometry,
    inputs: Sequence[Sequence[Step]],
    outputs: Sequence[Sequence[Step]],
    arrivals: Sequence[Sequence[Sequence[int]]] | None = None,
    ready: Sequence[int] | None = None,
) -> CoreRun:
    """The core's run as a :class:`~hw.model.cycle_model.CoreRun` (one port, ``i``).

    ``arrivals``: optional, per inference and input step, the first cycle each beat (events,
    then the marker) is valid; default always valid. ``ready``: optional, per output beat of the
    run, the first cycle it may leave (backpressure on ``o``). See the module docstring.
    """
    check_inputs(geo, inputs)
    taps = geo.taps
    cycle, work, left = 0, 0, -1  # left: the cycle the latest output beat left
    taken: list[int] = []
    offered: list[int] = []
    beats = []

    def emit(at: int) -> int:
        """An output beat loaded in ``at`` (the register free): offered ``at + 1``; its
        leaving cycle."""
        nonlocal left
        offered.append(at + 1)
        k = len(offered) - 1
        left = at + 1 if ready is None or k >= len(ready) else max(at + 1, int(ready[k]))
        return left

    for j, outs in enumerate(outputs):
        ins = inputs[j]
        steps = []
        for t, out in enumerate(outs):
            if t < len(ins):
                beats_in = None if arrivals is None else arrivals[j][t]
                for k in range(ins[t].n_events + 1):
                    at = cycle if beats_in is None else max(cycle, int(beats_in[k]))
                    taken.append(at)
                    cycle = at + 1
                work += ins[t].n_events + 1 + SETTLE
                cycle += SETTLE
            # the sweep: window w's spike stage in (enabled) cycle start + w·taps + taps − 1 + L
            shift = 0
            ev = []
            for w in out.indices.tolist():
                at = cycle + w * taps + taps - 1 + EMIT_LATENCY + shift
                if left > at:  # the output register still holds a beat: the sweep freezes
                    shift += left - at
                    at = left
                ev.append(emit(at))
            last = cycle + geo.sweep_cycles - 1 + EMIT_LATENCY + shift  # the last spike stage
            decide = max(last + 1, left)
            work += geo.sweep_cycles + EMIT_LATENCY + 1
            steps.append((tuple(ev), emit(decide)))
            cycle = decide + 1
            if not out.busy:
                cycle += geo.clear_cycles
                work += geo.clear_cycles
        beats.append(tuple(steps))
    return CoreRun(beats=tuple(beats), taken=(tuple(taken),), work=work, offered=tuple(offered))
