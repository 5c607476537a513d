"""Exact cycle model of the whole CNN top (``hw.cores.cnn_core.CnnCore``), composed from the
cores' models (pure Python, no Amaranth).

The top is a site graph (:mod:`hw.model.site_graph`: FIFOs, broadcasts, backpressure and the
passes of the composition): per site a mapped layer core
(:func:`hw.model.cycle_model.timed` with the site's input map: a convolution's list of passes
per event, a sum-pool's depthwise map, a linear layer's one-token map), a merge
(:func:`hw.model.add_model.timed`: its stream merger and layer core, one port per source), a
max-pool (:func:`hw.model.pool_model.timed`), in execution order, each fed by the FIFOs from the
sites it reads. The first site's input is always valid (every
inference's beats back to back from cycle 0) and the last site's output always ready, so
``done`` of an inference is the cycle of the last site's last marker.

The streams' contents come from the golden trace (``sw.cnn.reference.simulate``): a site's
output in step ``t`` is its spikes in core order (HWC for a 3-D site,
:func:`hw.model.conv_sites.core_order`) and a marker whose busy flag is the core's own — an input
marker's flag, the bias at step 0, or a spike — up to the first that is 0
(:func:`hw.model.conv_sites.output_steps`).

tests/hw/test_cnn_model.py checks every output beat of every site, every first input beat and
every ``done`` against ``CnnCore`` in Amaranth's simulator (FIFO depths down to 1), and
tests/sim/test_cnn.py against the Verilog in Verilator.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikezip.hw.model import add_model as am
from spikezip.hw.model import conv_sites
from spikezip.hw.model import pool_model as pm
from spikezip.hw.model.cycle_model import LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.site_graph import GraphModel, GraphSchedule, site_core_model, solve
from spikezip.ir import Trace
from spikezip.ir.cnn import ConvNet

__all__ = ["CnnSchedule", "CycleLimitExceeded", "cnn_schedule", "site_work"]

#: the modelled cycles of a run through a ``CnnCore`` (:class:`hw.model.site_graph.GraphSchedule`)
CnnSchedule = GraphSchedule

#: a site's load kind (:class:`hw.model.site_graph.CoreLoad`) by its IR kind
LOAD_KINDS = {
    "conv2d": "conv",
    "sumpool2d": "pool",
    "linear": "linear",
    "add": "merge",
    "maxpool2d": "maxpool",
}


class CycleLimitExceeded(RuntimeError):
    """:func:`cnn_schedule`'s ``cycle_limit`` was passed by a pass of the composition."""


class _Graph(GraphModel):
    """The CNN's composition state: its site specs and knobs, the FIFOs as ``CnnCore`` names
    and sizes them."""

    def __init__(self, net: ConvNet, params: DesignParams) -> None:
        super().__init__(functools.partial(conv_sites.fifo_depth, net, params))
        self.net, self.params = net, params
        self.specs = list(conv_sites.site_specs(net, params.lanes).values())


def cnn_schedule(
    net: ConvNet,
    inputs: np.ndarray,
    trace: Trace,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: Pipeline | int | None = None,
    fifo_depth: int | None = None,
    fifo_depths: Any = None,
    max_passes: int = 100_000,
    cycle_limit: int | None = None,
) -> CnnSchedule:
    """Model the ``CnnCore`` running ``inputs`` back to back (``trace``: the golden trace of
    ``sw.cnn.reference.simulate`` on them).

    ``params`` (or the keywords ``lanes``, ``pipeline``, ``fifo_depth``, ``fifo_depths``; not
    both) are those of the ``CnnCore``. The composition runs every core's model in execution
    order until no FIFO's backpressure changes (:func:`hw.model.site_graph.solve`;
    ``max_passes`` bounds the passes).

    ``cycle_limit``: raise :class:`CycleLimitExceeded` as soon as a pass's last output beat
    lies at or after that cycle (the run would take more than ``cycle_limit`` cycles). Each pass
    starts from the previous pass's FIFO room, so backpressure only adds delay and a pass's
    cycles are those of the settled run or fewer (observed on every run of
    ``hw.model.cnn_search``; the search only rejects a design stopped this way, it never uses
    its numbers): a design already too slow is known after a few passes, not after all.
    """
    if not isinstance(net, ConvNet):
        raise TypeError(f"net must be an ir.cnn.ConvNet, not {type(net).__name__}")
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be an ir.Trace, not {type(trace).__name__}")
    params = DesignParams.coerce(
        net, params, lanes=lanes, pipeline=pipeline, fifo_depth=fifo_depth, fifo_depths=fifo_depths
    )
    x = net.check_inputs(inputs)
    if trace.batch != x.shape[0]:
        raise ValueError(f"trace must hold the {x.shape[0]} inputs' samples, not {trace.batch}")
    if trace.network_digest != net.digest():
        raise ValueError("trace must come from this net (its network_digest differs)")
    g = _Graph(net, params)
    ins = conv_sites.input_steps(net, x)
    last = net.site_names[-1]

    def compose(graph: _Graph) -> None:
        _compose(graph, ins, trace)
        if cycle_limit is not None:
            out = np.asarray(graph.runs[last].offered, dtype=np.int64)
            if out.size and int(out.max()) + 1 > cycle_limit:
                raise CycleLimitExceeded(f"the run passed cycle {cycle_limit}")

    passes, need = solve(g, compose, max_passes)
    counts = [sum(s.n_events + 1 for s in inf) for inf in ins]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.asarray(g.runs[net.sites[0].name].taken[0], dtype=np.int64)[starts]
    return g.schedule(list(net.site_names), first, passes, need)


def _compose(g: _Graph, image: list, trace: Trace) -> None:
    """One pass: every site's core in execution order, then the FIFOs to its readers."""
    net = g.net
    names = net.site_names
    arrivals: dict[tuple[int, int], Any] = {}
    for k, (site, spec) in enumerate(zip(net.sites, g.specs, strict=True)):
        srcs = conv_sites.source_sites(net, k)
        if k == 0:
            ports, arr = [image], None
        else:
            ports = [g.streams[names[src]] for src in srcs]
            arr = arrivals[(k, 0)]
        if site.name not in g.streams:
            g.streams[site.name] = conv_sites.output_steps(net, trace, k, ports)
        outs = g.streams[site.name]
        kind = LOAD_KINDS[site.kind]
        if isinstance(spec, pm.PoolGeometry):
            g.run(site.name, arr, pm.timed, spec, ports[0], outs)
            g.loads.append((site.name, kind, 0))
        else:
            timing = LayerTiming(
                n_out=spec.n_out, lanes=spec.input_map.lanes, pipeline=g.params.pipeline
            )
            if kind == "merge":  # per inference, per source, per step
                per = [arrivals[(k, p)] for p in range(len(srcs))]
                arr = [[a[b] for a in per] for b in range(len(ports[0]))]
                g.run(site.name, arr, am.timed, timing, spec.input_map, ports, outs)
            else:
                ops = {"linear": spec.n_out, "pool": 1}.get(kind)
                model = functools.partial(site_core_model, ops=ops, imap=spec.input_map)
                g.run(site.name, arr, model, timing, ports[0], outs)
            g.loads.append((site.name, kind, timing.lanes))
        if k < net.depth - 1:
            readers = conv_sites.consumers(net, k)
            targets = [(names[c], port) for c, port in readers]
            for reader, a in zip(readers, g.link(site.name, targets, site.name), strict=True):
                arrivals[reader] = a


def site_work(schedule: CnnSchedule, net: ConvNet) -> tuple[list[float], float]:
    """Per site (execution order) its load in lane-cycles — busy cycles (``CoreLoad.work``, waits
    excluded) times lanes — and the largest busy cycles of a lane-less core (the max-pools), from
    a run of :func:`cnn_schedule`: step 1 of :func:`hw.model.cnn_search.search_design`."""
    loads = {ld.name: ld for ld in schedule.loads}
    work, floor = [], 0.0
    for s in net.sites:
        ld = loads[s.name]
        work.append(float(ld.work * ld.lanes))
        if not ld.lanes:
            floor = max(floor, float(ld.work))
    return work, floor
