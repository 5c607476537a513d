"""A convolution site of a ``ConvNet`` as a mapped layer core (pure Python; docs/cnn.md §11).

The core is :class:`hw.cores.layer_core.LayerCore` with a convolution input map
(:meth:`hw.model.input_map.InputMap.conv`): an input event becomes one pass per output window it
reaches. :func:`conv_spec` gives the site's neurons, exact widths (``ConvNet.widths``), formats
and map; :func:`conv_streams` the golden input and output event streams from a reference trace
(``sw.cnn.reference.simulate``).

Neuron order. A conv core's neurons are in **HWC** order (position-major, channel-minor: output
``(c, oy, ox)`` is core neuron ``(oy·W' + ox)·c_out + c``), so that the ``c_out`` channels of one
position are consecutive words; traces are in C order. :func:`hwc_order` is the permutation
between the two. The analog image enters in C order (its file order); a spike-fed conv reads its
source core's HWC indices.
"""

from __future__ import annotations

import numpy as np

from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat, Step, _step, spike_value_width
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.vit_sites import SiteSpec
from spikezip.ir.cnn import Conv2d, ConvNet
from spikezip.ir.network import Layer, signed_width, unsigned_width
from spikezip.ir.trace import Trace

__all__ = ["conv_spec", "conv_streams", "hwc_order", "site_index"]


def hwc_order(shape: tuple[int, ...]) -> np.ndarray:
    """``perm`` with ``hwc[i] = chw[perm[i]]``: core neuron ``i`` (HWC order) is trace neuron
    ``perm[i]`` (C order) of a ``(C, H, W)`` array."""
    c, h, w = (int(v) for v in shape)
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def site_index(net: ConvNet, layer: int) -> int:
    """The trace layer of ``net.layers[layer]``."""
    for i, s in enumerate(net.sites):
        if s.layer == layer:
            return i
    raise ValueError(f"layer {layer} is not a site of the network")


def _conv(net: ConvNet, layer: int) -> Conv2d:
    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    if not isinstance(layer, int) or not 0 <= layer < len(net.layers):
        raise ValueError(f"layer must be an integer in [0, {len(net.layers) - 1}], not {layer!r}")
    op = net.layers[layer]
    if not isinstance(op, Conv2d):
        raise ValueError(f"layer {layer} is a {type(op).__name__}, not a Conv2d")
    source = net.sources[layer][0]
    if source >= 0 and len(net.output_shape(source)) != 3:
        raise ValueError(f"layer {layer} reads a flat source")
    return op


def conv_spec(net: ConvNet, layer: int, *, lanes: int) -> SiteSpec:
    """The mapped layer core of the convolution ``net.layers[layer]`` (``lanes`` must divide its
    output channels)."""
    op = _conv(net, layer)
    shape = net.input_shape_of(layer)
    analog = net.reads_image(layer)
    imap = InputMap.conv(op, shape, lanes=lanes, order="chw" if analog else "hwc")
    _, ho, wo = op.output_shape(shape)
    n = op.c_out * ho * wo
    widths = net.widths[layer]
    source = net.sources[layer][0]
    spike_max = 1 if analog else net.spike_max(source)
    if analog:
        value_width = max(SPIKE_VALUE_WIDTH, signed_width(widths.input_lo, widths.input_hi))
    else:
        value_width = spike_value_width(spike_max)
    thr = np.tile(op.thresholds, ho * wo)
    neurons = Layer(
        weight=np.zeros((n, 1), dtype=np.int64),
        bias=np.tile(op.bias, ho * wo),
        threshold=int(thr[0]) if np.all(thr == thr[0]) else thr,
        neg_bound=int(op.neg_bound),
        pos_bound=int(op.pos_bound),
        name=op.name,
        neuron=op.neuron,
        max_level=op.max_level,
    )
    return SiteSpec(
        name=op.name or f"layer{layer}",
        kind="conv2d",
        neurons=neurons,
        widths=widths,
        input_format=EventFormat(unsigned_width(int(np.prod(shape)) - 1), value_width),
        input_map=imap,
        analog=analog,
        input_spike_max=spike_max,
    )


def _steps(trace: Trace, site: int, perm: np.ndarray) -> list[list[Step]]:
    """A site core's output steps from the trace (busy flags as recorded: cumulative in site
    order)."""
    spikes, busy = trace.spikes[site], trace.busy[:, :, site]
    out = []
    for b in range(trace.batch):
        idle = np.flatnonzero(~busy[b])
        if idle.size == 0:
            raise ValueError(f"site {site} of sample {b} never reaches an idle step (capped run?)")
        out.append([_step(spikes[b, t][perm], busy[b, t]) for t in range(int(idle[0]) + 1)])
    return out


def _core_steps(
    trace: Trace, site: int, perm: np.ndarray, ins: list[list[Step]], has_bias: bool
) -> list[list[Step]]:
    """A layer core's output steps: the trace's spikes, and the busy flag the core computes —
    its input marker's busy, or a spike, or step 0 with a bias — until the first idle step (in a
    chain of sites this is the trace's cumulative busy flag)."""
    spikes = trace.spikes[site]
    n = spikes.shape[2]
    out = []
    for b, steps_in in enumerate(ins):
        steps, t = [], 0
        while True:
            row = spikes[b, t][perm] if t < trace.n_steps else np.zeros(n, dtype=np.int64)
            fed = steps_in[t].busy if t < len(steps_in) else False
            busy = bool(fed or row.any() or (t == 0 and has_bias))
            steps.append(_step(row, busy))
            if not busy and t + 1 >= len(steps_in):
                break
            t += 1
        out.append(steps)
    return out


def conv_streams(
    net: ConvNet, inputs: np.ndarray, trace: Trace, layer: int
) -> tuple[list[list[Step]], list[list[Step]]]:
    """Per sample, the steps the conv core of ``net.layers[layer]`` receives and emits (the
    layer-core protocol, :mod:`hw.model.events`), indices in the cores' order: the analog image's
    non-zero pixels in C order at step 0 (then, if busy, an idle marker), or the source site's
    spikes in HWC order; its own spikes in HWC order."""
    op = _conv(net, layer)
    site, source = site_index(net, layer), net.sources[layer][0]
    if source >= 0:
        ins = _steps(trace, site_index(net, source), hwc_order(net.output_shape(source)))
    else:
        x = np.asarray(inputs, dtype=np.int64).reshape(trace.batch, -1)
        ins = []
        for b in range(x.shape[0]):
            steps = [_step(x[b], bool(np.any(x[b])))]
            if steps[-1].busy:
                steps.append(_step(np.zeros(x.shape[1], dtype=np.int64), False))
            ins.append(steps)
    perm = hwc_order(net.output_shape(layer))
    return ins, _core_steps(trace, site, perm, ins, bool(op.bias.any()))
