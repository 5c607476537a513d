"""The sites of a ``ConvNet`` as mapped layer cores (pure Python; docs/cnn.md §11–§12).

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

from typing import Any

import numpy as np

from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat, Step, _step, spike_value_width
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.vit_sites import SiteSpec
from spikezip.ir.cnn import Conv2d, ConvNet
from spikezip.ir.network import Layer, signed_width, unsigned_width
from spikezip.ir.trace import Trace

__all__ = [
    "check_fifo_depths",
    "check_rtl",
    "consumers",
    "conv_spec",
    "conv_streams",
    "core_order",
    "default_fifo_depths",
    "fifo_depth",
    "fifo_names",
    "hwc_order",
    "input_steps",
    "lane_choices",
    "output_steps",
    "resolve_cnn_lanes",
    "site_index",
    "site_spec",
    "site_specs",
    "skip_floors",
    "source_sites",
]


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


def conv_spec(net: ConvNet, layer: int, *, lanes: int, stream: bool = False) -> SiteSpec:
    """The mapped layer core of the convolution ``net.layers[layer]`` (``lanes`` must divide its
    output channels); ``stream``: a streaming core (:meth:`InputMap.streaming`: an output
    position is swept as soon as the last input that reaches it has passed; its input must come
    in ascending index within a step, as every CNN site and the image send it)."""
    op = _conv(net, layer)
    shape = net.input_shape_of(layer)
    analog = net.reads_image(layer)
    imap = InputMap.conv(op, shape, lanes=lanes, order="chw" if analog else "hwc")
    imap = imap.streaming(stream)
    _, ho, wo = op.output_shape(shape)
    n = op.c_out * ho * wo
    widths = net.widths[layer]
    source = net.sources[layer][0]
    spike_max = 1 if analog else net.spike_max(source)
    if analog:
        value_width = max(SPIKE_VALUE_WIDTH, signed_width(widths.input_lo, widths.input_hi))
    else:
        value_width = spike_value_width(spike_max)
    neurons = _neurons(op, n, ho * wo, op.thresholds, op.bias)
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


# -- every site of a ConvNet (the CNN top, hw.cores.cnn_core) ----------------------------------
#: site kinds the RTL builds as mapped layer cores (a merge: a stream merger in front of one)
LAYER_KINDS = ("conv2d", "sumpool2d", "linear", "add")
#: every site kind the CNN top builds (a max-pool: ``hw.cores.max_pool.MaxPoolCore``)
RTL_KINDS = (*LAYER_KINDS, "maxpool2d")
#: site kinds the CNN top builds as streaming cores (:meth:`InputMap.streaming`, docs/cnn.md
#: §11): every CNN source sends a step in ascending index (the image in C order, layer cores'
#: emitters and the max-pool in HWC order), so a conv core sweeps an output position as soon
#: as the last input row reaching it has passed, and its consumer starts before the marker
STREAMING_KINDS = frozenset({"conv2d"})


def core_order(net: ConvNet, site: int) -> np.ndarray:
    """``perm`` with ``core[i] = trace[perm[i]]`` for trace layer ``site``: HWC for a
    ``(C, H, W)`` site (:func:`hwc_order`), the identity for a flat one."""
    shape = net.sites[site].shape
    return hwc_order(shape) if len(shape) == 3 else np.arange(int(np.prod(shape)))


def source_sites(net: ConvNet, site: int) -> tuple[int, ...]:
    """The trace layers whose spikes trace layer ``site`` reads (through a Flatten), ``-1`` for
    the image."""
    at = {s.layer: i for i, s in enumerate(net.sites)}
    out = []
    for src in net.sources[net.sites[site].layer]:
        while src >= 0 and src not in at:  # a Flatten: its own source
            src = net.sources[src][0]
        out.append(at[src] if src >= 0 else -1)
    return tuple(out)


def consumers(net: ConvNet, site: int) -> tuple[tuple[int, int], ...]:
    """``(consumer site, port)`` of every site reading trace layer ``site`` (``-1``: the
    image), in execution order."""
    return tuple(
        (k, port)
        for k in range(net.depth)
        for port, src in enumerate(source_sites(net, k))
        if src == site
    )


def check_rtl(net: ConvNet) -> None:
    """A ValueError naming what the CNN top cannot build: a site kind without a core yet, more
    than one site reading the image, a site other than the last that feeds none."""
    if not isinstance(net, ConvNet):
        raise TypeError(f"network must be an ir.cnn.ConvNet, not {type(net).__name__}")
    for s in net.sites:
        if s.kind not in RTL_KINDS:
            raise ValueError(f"{s.kind} sites are not supported in RTL yet")
    readers = consumers(net, -1)
    if [k for k, _ in readers] != [0]:
        names = [net.sites[k].name for k, _ in readers]
        raise ValueError(
            f"the CNN top feeds the image to its first site only; {', '.join(names)} read it"
        )
    for k in range(net.depth - 1):
        if not consumers(net, k):
            raise ValueError(
                f"site {net.sites[k].name} feeds no other site (only the last site is an output)"
            )


def resolve_cnn_lanes(net: ConvNet, lanes: Any) -> tuple[int, ...]:
    """Lanes per site, in execution order, from one value or one per site.

    One value ``P``: a conv takes the largest divisor of its output channels not above ``P``, a
    sum-pool the largest divisor of its channels (a core's words hold whole positions), a linear
    layer or a merge ``min(P, n)``, a max-pool 1 (its core has no lanes: one element per cycle).
    One per site: each must lie in ``1..n`` and divide the channels of a conv or a sum-pool (a
    max-pool's must be 1); the error names the site and the valid values.
    """
    check_rtl(net)
    sites = net.sites

    def channels(s: Any) -> int | None:
        return s.shape[0] if s.kind in ("conv2d", "sumpool2d") else None

    if isinstance(lanes, int | np.integer) and not isinstance(lanes, bool):
        if lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes}")
        out = []
        for s in sites:
            c = channels(s)
            if s.kind == "maxpool2d":
                out.append(1)
            elif c is None:
                out.append(min(int(lanes), s.size))
            else:
                out.append(max(p for p in range(1, min(int(lanes), c) + 1) if c % p == 0))
        return tuple(out)
    lanes = tuple(lanes)
    if len(lanes) != len(sites):
        raise ValueError(f"lanes must hold {len(sites)} values (one per site), not {len(lanes)}")
    for s, p in zip(sites, lanes, strict=True):
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 1 <= p <= s.size:
            raise ValueError(f"lanes of site {s.name} must lie in 1..{s.size}, not {p!r}")
        c = channels(s)
        if s.kind == "maxpool2d" and p != 1:
            raise ValueError(f"lanes of site {s.name} (a max-pool) must be 1, not {p}")
        if c is not None and c % p:
            valid = [q for q in range(1, c + 1) if c % q == 0]
            raise ValueError(
                f"lanes of site {s.name} must divide its {c} channels (one of {valid}), not {p}"
            )
    return tuple(int(p) for p in lanes)


def lane_choices(net: ConvNet, site: int) -> tuple[int, ...]:
    """The lane counts :func:`balanced_lanes` picks from for ``site``: the divisors of a 3-D
    site's channels (conv, sum-pool, merge: a word holds whole positions), of a linear layer's
    neurons (no idle lane), ``(1,)`` for a max-pool (its core has no lanes)."""
    s = net.sites[site]
    if s.kind == "maxpool2d":
        return (1,)
    n = s.shape[0] if len(s.shape) == 3 else s.size
    return tuple(p for p in range(1, n + 1) if n % p == 0)


def _value_width(net: ConvNet, layer: int, widths: Any) -> tuple[int, int]:
    """(value width of the input events, largest input spike) of ``net.layers[layer]``."""
    if net.reads_image(layer):
        return max(SPIKE_VALUE_WIDTH, signed_width(widths.input_lo, widths.input_hi)), 1
    spike_max = net.spike_max(net.sources[layer][0])
    return spike_value_width(spike_max), spike_max


def _neurons(op: Any, n: int, positions: int, thr: np.ndarray, bias: np.ndarray) -> Layer:
    thr = np.tile(np.asarray(thr, dtype=np.int64), positions)
    return Layer(
        weight=np.zeros((n, 1), dtype=np.int64),
        bias=np.tile(np.asarray(bias, dtype=np.int64), positions),
        threshold=int(thr[0]) if np.all(thr == thr[0]) else thr,
        neg_bound=int(op.neg_bound),
        pos_bound=int(op.pos_bound),
        name=op.name,
        neuron=op.neuron,
        max_level=op.max_level,
    )


def site_spec(net: ConvNet, site: int, *, lanes: int, stream: bool | None = None) -> Any:
    """What trace layer ``site`` of ``net`` is built from: the :class:`SiteSpec` of a mapped
    layer core — a convolution (:func:`conv_spec`), a sum-pool (:meth:`InputMap.depthwise`,
    neurons in HWC order), a linear layer (one token of :meth:`InputMap.tokens`, its weight
    columns permuted to read its source core's HWC indices), a merge
    (:func:`hw.model.add_model.add_spec`) — or a max-pool's
    :class:`hw.model.pool_model.PoolGeometry`. ``stream``: a conv site streams (default
    ``None``: where :data:`STREAMING_KINDS` says)."""
    if not isinstance(site, int) or not 0 <= site < net.depth:
        raise ValueError(f"site must be an integer in [0, {net.depth - 1}], not {site!r}")
    s = net.sites[site]
    layer, op = s.layer, s.op
    if s.kind == "conv2d":
        return conv_spec(
            net, layer, lanes=lanes, stream=s.kind in STREAMING_KINDS if stream is None else stream
        )
    if s.kind == "add":
        from spikezip.hw.model.add_model import add_spec

        return add_spec(net, layer, lanes=lanes)
    if s.kind == "maxpool2d":
        from spikezip.hw.model.pool_model import pool_geometry

        return pool_geometry(net, layer)
    if s.kind not in LAYER_KINDS:
        raise ValueError(f"{s.kind} sites are not supported in RTL yet")
    widths = net.widths[layer]
    value_width, spike_max = _value_width(net, layer, widths)
    shape = net.input_shape_of(layer)
    n_in = int(np.prod(shape))
    analog = net.reads_image(layer)
    if s.kind == "sumpool2d":
        c, ho, wo = s.shape
        imap = InputMap.depthwise(op, shape, lanes=lanes, weight=int(op.weight))
        neurons = _neurons(op, s.size, ho * wo, op.thresholds_for(c), np.zeros(c, np.int64))
    else:  # linear on a flat source: the source core sends HWC indices
        src = source_sites(net, site)[0]
        perm = np.arange(n_in) if src < 0 else core_order(net, src)
        imap = InputMap.tokens(op.weight[:, perm], tokens=1, lanes=lanes)
        neurons = _neurons(op, s.size, 1, op.thresholds, op.bias)
    return SiteSpec(
        name=s.name,
        kind=s.kind,
        neurons=neurons,
        widths=widths,
        input_format=EventFormat(unsigned_width(n_in - 1), value_width),
        input_map=imap,
        analog=analog,
        input_spike_max=spike_max,
    )


def site_specs(net: ConvNet, lanes: Any) -> dict[str, Any]:
    """Every site's :func:`site_spec`, in execution order (``lanes``:
    :func:`resolve_cnn_lanes`)."""
    return {
        s.name: site_spec(net, k, lanes=p)
        for k, (s, p) in enumerate(zip(net.sites, resolve_cnn_lanes(net, lanes), strict=True))
    }


def input_steps(net: ConvNet, inputs: np.ndarray) -> list[list[Step]]:
    """Per sample, the first site's input: the image's non-zero pixels in C order at step 0
    (busy: any pixel is non-zero), then an idle marker if step 0 was busy — the analog input
    protocol of the MLP's first layer."""
    x = net.check_inputs(inputs)
    out = []
    for b in range(x.shape[0]):
        steps = [_step(x[b], bool(np.any(x[b])))]
        if steps[-1].busy:
            steps.append(_step(np.zeros(x.shape[1], dtype=np.int64), False))
        out.append(steps)
    return out


def output_steps(
    net: ConvNet, trace: Trace, site: int, ins: list[list[list[Step]]]
) -> list[list[Step]]:
    """Per sample, the steps site ``site``'s core emits (its spikes in core order, its own busy
    flag: any input marker's, a spike, or step 0 with a bias); ``ins`` per input port, per
    sample, the steps it receives."""
    op = net.sites[site].op
    bias = getattr(op, "bias", None)
    merged = [
        [
            _step(np.zeros(1, dtype=np.int64), any(t < len(p[b]) and p[b][t].busy for p in ins))
            for t in range(max(len(p[b]) for p in ins))
        ]
        for b in range(trace.batch)
    ]
    has_bias = bias is not None and bool(np.asarray(bias).any())
    return _core_steps(trace, site, core_order(net, site), merged, has_bias)


# -- the FIFOs of the CNN top ------------------------------------------------------------------
SHALLOW_FIFO = 16  #: entries of a FIFO between a site and its only reader (default)


def fifo_names(net: ConvNet) -> tuple[str, ...]:
    """The name of every FIFO ``hw.cores.cnn_core.CnnCore`` builds for ``net``, in the order it
    builds them: per site but the last, ``{site}_fifo`` to its one reader, or ``{site}_fifo{k}``
    to each of several (behind a broadcast)."""
    from spikezip.hw.model.site_graph import link_names

    out: list[str] = []
    for k in range(net.depth - 1):
        out += link_names(net.sites[k].name, len(consumers(net, k)))
    return tuple(out)


def skip_floors(net: ConvNet) -> dict[str, int]:
    """The fewest entries of every FIFO on a **skip path** — into a merge from a site the merge
    reads beside a later one: a whole step of its producer's beats, ``n + 1`` (at most one event
    per neuron, then the marker).

    Why: the merge (``hw.cores.add``) reads a step source by source, and the producer's stream
    reaches the later site (through the broadcast) only as fast as the skip FIFO takes it; the
    later site emits step ``t`` only after all of step ``t`` came in. A skip FIFO that cannot
    hold a whole step therefore fills before the merge reads it, stops the broadcast, and the
    later site never finishes the step: a deadlock (found by the composed model's passes not
    settling with one- and two-entry FIFOs). With ``n + 1`` entries the step is in the FIFO when
    the merge gets to it, and no FIFO depth anywhere else can deadlock the top (docs/cnn.md §13).
    """
    from spikezip.hw.model.site_graph import link_names

    out = {}
    for k in range(net.depth - 1):
        readers = consumers(net, k)
        for name, (c, _) in zip(link_names(net.sites[k].name, len(readers)), readers, strict=True):
            if net.sites[c].kind == "add" and any(src > k for src in source_sites(net, c)):
                out[name] = net.sites[k].size + 1
    return out


def check_fifo_depths(net: ConvNet, fifo_depths: Any) -> None:
    """A ValueError naming a FIFO set by name below its :func:`skip_floors` entry."""
    floors = skip_floors(net)
    for name, depth in fifo_depths:
        if depth < floors.get(name, 1):
            raise ValueError(
                f"FIFO {name} is on a skip path into a merge: it must hold a whole step of its "
                f"producer's beats, at least {floors[name]} entries, not {depth} "
                "(docs/cnn.md §13)"
            )


def default_fifo_depths(net: ConvNet) -> dict[str, int]:
    """Entries of every FIFO by default: its :func:`skip_floors` entry on a skip path (a step
    of its producer's beats), else :data:`SHALLOW_FIFO`."""
    floors = skip_floors(net)
    return {name: floors.get(name, SHALLOW_FIFO) for name in fifo_names(net)}


def fifo_depth(net: ConvNet, params: Any, name: str) -> int:
    """Entries of the FIFO ``name`` under ``params``: its own in ``params.fifo_depths`` (checked
    against :func:`skip_floors`), else ``params.fifo_depth`` for every FIFO (a skip FIFO at
    least its floor), else :func:`default_fifo_depths`."""
    own = dict(params.fifo_depths).get(name)
    floor = skip_floors(net).get(name, 1)
    if own is not None:
        check_fifo_depths(net, [(name, own)])
        return own
    if params.fifo_depth is not None:
        return max(params.fifo_depth, floor)
    return default_fifo_depths(net)[name]
