"""The residual merge (``ir.cnn.Add``) as a stream merger and a mapped layer core (pure Python;
docs/cnn.md §12).

The core (``hw.cores.add.AddCore``) is a :class:`hw.cores.add.StreamMerge` in front of a
:class:`hw.cores.layer_core.LayerCore` with a merge map (:meth:`InputMap.merge`): per step the
merger passes source 0's events, then source 1's, … (each index ``i`` of source ``s`` becomes
``s·stride + i``), swallowing every source's marker, then one marker whose busy flag is the OR
of theirs; the layer core adds ``m_s·value`` to neuron ``i`` — the multiplier a constant of the
weight table, shifted for a graded spike ``±2^k`` by the accumulator (no multiplier) — and runs
the site's ST-BIF or graded neurons (Θ per channel, no bias). A source whose marker had busy 0
has ended its inference and is skipped until the merged marker with busy 0 (every source
ended) closes the inference. Neurons in HWC order, as the conv cores' (``hw.model.conv_sites``).

Each source port has a one-beat input register (``i{s}.ready`` from registers only; a beat is
taken in the cycle it is valid if the register is free or its beat leaves, and offered the cycle
after); the merger behind the registers is combinational: a source's event is offered once it is
in its register and every earlier live source of the step has its marker there (or has ended);
the merged marker once every live source's is. :func:`merged_arrivals` turns the sources'
arrival cycles into the merged stream's, the layer core's model
(:func:`hw.model.cycle_model.timed`) runs on those, and :func:`timed` derives each source beat's
``taken`` from the merged beats (a source's marker leaves its register with the merged beat after
it). This is exact because the layer core takes a beat at the earliest one cycle after the one
before, the earliest a register can show its source's next beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spikezip.hw.model import cycle_model as cm
from spikezip.hw.model.cycle_model import CoreRun, LayerTiming
from spikezip.hw.model.events import EventFormat, Step, spike_value_width
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.vit_sites import SiteSpec
from spikezip.ir.network import Layer, unsigned_width

__all__ = [
    "BUFFER_LATENCY",
    "add_spec",
    "add_streams",
    "merge_steps",
    "merged_arrivals",
    "source_formats",
    "timed",
]


#: cycles from a source beat taken on ``i{s}`` to its being offered by the merger (the input
#: register, ``hw.cores.sequencer.EventBuffer``)
BUFFER_LATENCY = 1


def _add(net, layer: int):
    from spikezip.ir.cnn import Add, ConvNet

    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(net.layers):
        raise ValueError(f"layer must be an integer in [0, {len(net.layers) - 1}], not {layer!r}")
    op = net.layers[layer]
    if not isinstance(op, Add):
        raise ValueError(f"layer {layer} is a {type(op).__name__}, not an Add")
    if len(net.output_shape(layer)) != 3:
        raise ValueError(f"layer {layer} merges flat sources (a [C, H, W] merge is mapped)")
    return op


def add_spec(net, layer: int, *, lanes: int) -> SiteSpec:
    """The mapped layer core of the merge ``net.layers[layer]`` (an ``ir.cnn.Add`` of a
    ``ConvNet`` over ``(C, H, W)`` sources): its neurons in HWC order (Θ per channel tiled over
    the positions), exact widths, input format (the merged index, the widest source spike) and
    merge map."""
    op = _add(net, layer)
    c, h, w = net.output_shape(layer)
    n = c * h * w
    sources = net.sources[layer]
    imap = InputMap.merge(n, op.multipliers, lanes=lanes)
    spike_max = max(int(net.spike_max(s)) for s in sources)
    thr = np.tile(op.thresholds_for(c), h * w)
    neurons = Layer(
        weight=np.zeros((n, 1), dtype=np.int64),
        bias=np.zeros(n, dtype=np.int64),
        threshold=int(thr[0]) if np.all(thr == thr[0]) else thr,
        neg_bound=int(op.neg_bound),
        pos_bound=int(op.pos_bound),
        name=op.name,
        neuron=op.neuron,
        max_level=op.max_level,
    )
    return SiteSpec(
        name=op.name or f"layer{layer}",
        kind="add",
        neurons=neurons,
        widths=net.widths[layer],
        input_format=EventFormat(unsigned_width(imap.n_in - 1), spike_value_width(spike_max)),
        input_map=imap,
        analog=False,
        input_spike_max=spike_max,
    )


def source_formats(net, layer: int) -> tuple[EventFormat, ...]:
    """Each source's event format (its site core's output format: HWC index, spike value)."""
    _add(net, layer)
    n = int(np.prod(net.output_shape(layer)))
    return tuple(
        EventFormat(unsigned_width(n - 1), spike_value_width(int(net.spike_max(s))))
        for s in net.sources[layer]
    )


def merge_steps(sources: Sequence[Sequence[Sequence[Step]]], stride: int) -> list[list[Step]]:
    """Per inference, the merged stream's steps: ``sources[s][b]`` are source ``s``'s steps of
    inference ``b``; step ``t`` holds every source's events that has not ended (index
    ``+ s·stride``), in source order, and busy = the OR of their markers' busy."""
    out = []
    for b in range(len(sources[0])):
        per = [src[b] for src in sources]
        steps = []
        for t in range(max(len(p) for p in per)):
            live = [(s, p[t]) for s, p in enumerate(per) if t < len(p)]
            steps.append(
                Step(
                    indices=np.concatenate([st.indices + s * stride for s, st in live]).astype(
                        np.int64
                    ),
                    values=np.concatenate([st.values for _, st in live]).astype(np.int64),
                    busy=any(st.busy for _, st in live),
                )
            )
        out.append(steps)
    return out


def add_streams(net, inputs: np.ndarray, trace, layer: int) -> tuple[list, list, list]:
    """From a reference trace (``sw.cnn.reference.simulate``): per source, per sample, the steps
    it sends (its site's spikes in HWC order); the merged steps the layer core reads; the steps
    the core emits (the Add site's spikes in HWC order, busy as the core computes it)."""
    from spikezip.hw.model.conv_sites import _core_steps, _steps, hwc_order, site_index

    _add(net, layer)
    shape = net.output_shape(layer)
    perm = hwc_order(shape)
    sources = [_steps(trace, site_index(net, s), perm) for s in net.sources[layer]]
    merged = merge_steps(sources, InputMap.merge_stride(int(np.prod(shape))))
    outs = _core_steps(trace, site_index(net, layer), perm, merged, False)
    return sources, merged, outs


def merged_arrivals(
    sources: Sequence[Sequence[Sequence[Step]]],
    arrivals: Sequence[Sequence[Sequence[Sequence[int]]]] | None,
) -> list[list[list[int]]]:
    """Per inference and merged step, the first cycle each merged beat is valid, from
    ``arrivals[b][s][t]``: per inference, per source, per step the cycle each of its beats
    (events, then the marker) is valid at the port (``None``: always valid). A beat reaches the
    merger :data:`BUFFER_LATENCY` cycle after it is valid (the input register); a source's event
    is offered once every earlier live source's marker of the step has reached it too, the
    merged marker once every live source's has."""
    out = []
    for b in range(len(sources[0])):
        per = [src[b] for src in sources]
        steps = []
        for t in range(max(len(p) for p in per)):
            gate, beats = 0, []
            for s, p in enumerate(per):
                if t >= len(p):
                    continue
                arr = [0] * (p[t].n_events + 1) if arrivals is None else arrivals[b][s][t]
                beats += [max(int(a) + BUFFER_LATENCY, gate) for a in arr[:-1]]
                gate = max(gate, int(arr[-1]) + BUFFER_LATENCY)
            steps.append([*beats, gate])
        out.append(steps)
    return out


def timed(
    timing: LayerTiming,
    imap: InputMap,
    sources: Sequence[Sequence[Sequence[Step]]],
    outputs: list[list[Step]],
    arrivals: Sequence[Sequence[Sequence[Sequence[int]]]] | None = None,
    ready: Sequence[int] | None = None,
) -> CoreRun:
    """The merge core's run: the layer core's (:func:`hw.model.cycle_model.timed` on the merged
    stream) with ``taken`` per source port (``i0``, ``i1``, …). ``arrivals[b][s][t]``: see
    :func:`merged_arrivals`; ``ready``: per output beat, the first cycle it may leave."""
    merged = merge_steps(sources, imap.n_in // len(sources))
    run = cm.timed(timing, merged, outputs, merged_arrivals(sources, arrivals), imap, ready)
    taken = iter(run.taken[0])
    consumed: list[list[int]] = [[] for _ in sources]  # each source beat leaves its register
    for b in range(len(merged)):
        per = [src[b] for src in sources]
        for t in range(len(merged[b])):
            pending: list[int] = []  # sources whose marker waits for the next merged beat
            for s, p in enumerate(per):
                if t >= len(p):
                    continue
                for _ in range(p[t].n_events):
                    c = next(taken)
                    for q in pending:
                        consumed[q].append(c)
                    pending = []
                    consumed[s].append(c)
                pending.append(s)
            c = next(taken)  # the merged marker
            for q in pending:
                consumed[q].append(c)
    ports = []
    for s, src in enumerate(sources):
        arr = [0] * len(consumed[s])
        if arrivals is not None:
            arr = [a for b in range(len(src)) for st in arrivals[b][s] for a in st]
        held, port = -1, []
        for a, c in zip(arr, consumed[s], strict=True):
            port.append(max(int(a), held))  # the register takes a beat as the one held leaves
            held = c
        ports.append(port)
    return CoreRun(
        beats=run.beats,
        taken=tuple(tuple(p) for p in ports),
        work=run.work,
        accumulate=run.accumulate,
        ops=run.ops,
        offered=run.offered,
    )
