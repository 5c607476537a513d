"""Exact cycle model of the whole ViT top (``hw.cores.vit_core.ViTCore``), composed from the
cores' models.

No amaranth import. The top is a site graph (:mod:`hw.model.site_graph`: the FIFOs, their
backpressure and the passes of the composition are that module's): per site a layer core with
an input map (:func:`hw.model.cycle_model.timed`), per LayerNorm site a residual stage
(:func:`hw.model.residual_model.timed`) and a LayerNorm core
(:func:`hw.model.layer_norm_model.timed`), per block two spike products
(:func:`hw.model.product_model.timed`) and a softmax (:func:`hw.model.softmax_model.timed`).
The embedding's input is always valid (the testbench's stimulus: every inference's beats back
to back from cycle 0) and the head's output always ready, so ``done`` of an inference is the
cycle of the head's last marker. The digits ViT settles in 24 passes for 3 images, 9 for one.
How each core waits for room is its model's: the layer core's emitter is an elastic pipeline (a
held beat delays only the beats behind it, and through its marker the sweep two steps later),
the residual stage's and the LayerNorm's and the product's output registers hold their
sequencer, the softmax freezes entirely (``en = ~o.valid | o.ready``).

The streams' contents come from the golden trace: a site's output in step ``t`` is its spikes
(``trace.spikes``) and a marker whose busy flag is the core's own — its input marker's flag, the
bias at step 0, or a spike — up to the first that is 0; every other core's output is its model's
golden list of its inputs (:func:`~hw.model.residual_model.golden_outputs`, …).

tests/hw/test_vit_model.py checks every output beat of every site, every first input beat and
every ``done`` against ``ViTCore`` in Amaranth's simulator (FIFO depths down to 1);
bench/bench_vit_model.py reproduces the RTL's measured cycles of the digits ViT.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import product_model as pm
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model import softmax_model as sm
from spikezip.hw.model import vit_sites
from spikezip.hw.model.cycle_model import LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import Step
from spikezip.hw.model.site_graph import (
    CoreLoad,
    FifoCheck,
    GraphModel,
    GraphSchedule,
    fifo_latency,
    site_core_model,
    solve,
)
from spikezip.hw.model.vit_sites import SiteSpec, fifo_depth, input_steps, site_spec
from spikezip.ir import Trace
from spikezip.ir.transformer import SiteKind, VisionTransformer

__all__ = ["CoreLoad", "FifoCheck", "ViTSchedule", "fifo_latency", "vit_schedule"]

#: the modelled cycles of a run through a ``ViTCore`` (:class:`hw.model.site_graph.GraphSchedule`;
#: ``cores``: ``"stage:{site}"`` (residual stage), ``"ln:{site}"`` (LayerNorm),
#: ``"blocks.{b}.scores"``, ``"blocks.{b}.softmax"``, ``"blocks.{b}.context_product"``)
ViTSchedule = GraphSchedule


# -- the streams' contents ----------------------------------------------------------------------
def _step(row: np.ndarray, busy: bool) -> Step:
    idx = np.flatnonzero(row)
    return Step(indices=idx.astype(np.int64), values=row[idx].astype(np.int64), busy=bool(busy))


def _site_outputs(
    trace: Trace, at: int, name: str, ins: list[list[Step]], has_bias: bool
) -> list[list[Step]]:
    """Per sample, the steps a site core emits: its spikes, busy = the input marker's busy (0
    once the input ended), the bias at step 0, or a spike; up to the first busy 0."""
    out = []
    for b in range(trace.batch):
        steps: list[Step] = []
        for t in range(trace.spikes[at].shape[1]):
            row = np.asarray(trace.spikes[at][b, t]).reshape(-1)
            fed = t < len(ins[b]) and ins[b][t].busy
            steps.append(_step(row, fed or (t == 0 and has_bias) or bool(row.any())))
            if not steps[-1].busy:
                break
        else:
            raise ValueError(
                f"trace: site {name} of sample {b} is still busy after the trace's "
                f"{trace.spikes[at].shape[1]} steps (a capped run?)"
            )
        out.append(steps)
    return out


def _events(steps: list[list[Step]]) -> list[list[list[tuple[int, int]]]]:
    """Per inference and step, the events ``(index, value)`` (a product's input)."""
    return [
        [list(zip(s.indices.tolist(), s.values.tolist(), strict=True)) for s in inf]
        for inf in steps
    ]


# -- the composition ----------------------------------------------------------------------------
class _Graph(GraphModel):
    """The ViT's composition state (:class:`hw.model.site_graph.GraphModel`): its site specs and
    knobs; the FIFOs named and sized as ``ViTCore`` builds them."""

    def __init__(self, vit: VisionTransformer, params: DesignParams, product_lanes: int) -> None:
        super().__init__(functools.partial(fifo_depth, vit, params))
        self.vit, self.params, self.product_lanes = vit, params, product_lanes
        self.pipeline: Pipeline = params.pipeline
        self.specs: dict[str, SiteSpec] = {
            s.name: site_spec(vit, s.name, lanes=p)
            for s, p in zip(vit.sites, params.lanes, strict=True)
        }
        self.units: int | None = None  # LayerNorm rounding units (None: the cores' default)

    # -- cores ------------------------------------------------------------------------------------
    def site(self, name: str, ins: list[list[Step]], arrivals, trace: Trace, at: int) -> None:
        spec = self.specs[name]
        timing = LayerTiming(n_out=spec.n_out, lanes=spec.input_map.lanes, pipeline=self.pipeline)
        if name not in self.streams:
            has_bias = bool(spec.neurons.bias.any())
            self.streams[name] = _site_outputs(trace, at, name, ins, has_bias)
        ops = self.vit.sites[at].op.n_out if spec.kind is SiteKind.LINEAR else 1
        self.run(
            name,
            arrivals,
            functools.partial(site_core_model, ops=ops, imap=spec.input_map),
            timing,
            ins,
            self.streams[name],
        )
        kind = "linear" if spec.kind is SiteKind.LINEAR else "direct"
        self.loads.append((name, kind, timing.lanes))


def vit_schedule(
    vit: VisionTransformer,
    inputs: np.ndarray,
    trace: Trace,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: Pipeline | int | None = None,
    fifo_depth: int | None = None,
    fifo_depths: Any = None,
    product_lanes: int | None = None,
    layer_norm_units: int | None = None,
    max_passes: int = 100_000,
) -> ViTSchedule:
    """Model the ``ViTCore`` running ``inputs`` back to back (``trace``: the golden trace of
    ``sw.vit.reference``).

    ``params`` (or the keywords ``lanes``, ``pipeline``, ``fifo_depth``, ``fifo_depths``,
    ``product_lanes``, ``layer_norm_units``; not both) are those of the ``ViTCore``: lanes per
    site, pipeline preset, entries of every FIFO (default the FIFO plan, as the core builds
    them), lanes of the spike products (default the token count), rounding units of every
    LayerNorm core (default, as ``ViTCore`` builds them, ``LayerNormGeometry.full_rate_units``).

    The composition runs every core's model in execution order, each with the cycle every FIFO
    in front of it has room for each of its beats as found by the pass before (none in the
    first), until a pass changes none: every modelled cycle only grows from pass to pass, and
    the first pass that changes nothing is the RTL's schedule (``max_passes`` bounds them).
    """
    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"vit must be a VisionTransformer, not {type(vit).__name__}")
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be an ir.Trace, not {type(trace).__name__}")
    params = DesignParams.coerce(
        vit,
        params,
        lanes=lanes,
        pipeline=pipeline,
        fifo_depth=fifo_depth,
        fifo_depths=fifo_depths,
        product_lanes=product_lanes,
        layer_norm_units=layer_norm_units,
    )
    pl = vit.tokens if params.product_lanes is None else params.product_lanes
    units = params.layer_norm_units
    x = vit.check_inputs(inputs)
    if trace.batch != x.shape[0]:
        raise ValueError(f"trace must hold the {x.shape[0]} inputs' samples, not {trace.batch}")
    if trace.network_digest != vit.digest():
        raise ValueError("trace must come from this vit (its network_digest differs)")
    g = _Graph(vit, params, int(pl))
    g.units = units
    passes, need = solve(g, lambda graph: _compose(graph, x, trace), max_passes)
    embed = vit.sites[0].name
    counts = [sum(s.n_events + 1 for s in inf) for inf in input_steps(vit, x)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.asarray(g.runs[embed].taken[0], dtype=np.int64)[starts]
    return g.schedule([s.name for s in vit.sites], first, passes, need)


def _compose(g: _Graph, x: np.ndarray, trace: Trace) -> None:
    """One pass: every core's model in execution order (a core after the producers of its
    inputs)."""
    vit = g.vit
    at = g.once("at", lambda: {s.name: k for k, s in enumerate(vit.sites)})
    embed = vit.sites[0].name
    g.site(embed, g.once("input", lambda: input_steps(vit, x)), None, trace, at[embed])
    stages = g.once("stages", lambda: rm.stages(vit))
    norms = g.once(
        "norms", lambda: {s.name: s.op for s in vit.sites if s.kind is SiteKind.LAYERNORM}
    )
    norm_index = {name: j for j, name in enumerate(norms)}
    based: dict[str, list] = {}  # a stage's output as valid at the stage based on it

    def run_stage(st: dict) -> None:
        """A residual stage, its LayerNorm core and LayerNorm site (ViTCore's stage loop)."""
        name, src, core = st["name"], st["site"], "stage:" + st["name"]
        geo = g.once(core, lambda: rm.stage_geometry(vit, st, stream=vit_sites.STREAM_RESIDUAL))
        b_port = 1 if geo.has_base else 0  # (ports a, b)
        (b_arr,) = g.link(src, [(core, b_port)], f"{src}_to_stage")
        base = a_arr = None
        if st["base"] is not None:
            base, a_arr = g.streams["stage:" + st["base"]], based[st["base"]]
        spikes = g.streams[src]
        if core not in g.streams:
            pos = st["position"]
            pos = None if pos is None or not pos.any() else pos
            g.streams[core] = rm.golden_outputs(geo, base, spikes, pos)
        outs = g.streams[core]
        arr = [(None if a_arr is None else a_arr[j], b_arr[j]) for j in range(len(spikes))]
        g.run(core, arr, rm.timed, geo, base, spikes, outs)
        g.loads.append((core, "residual", 0))
        # stage ⇉ its LayerNorm and the stage based on it
        nxt = [s["name"] for s in stages if s["base"] == name]
        consumers = [("ln:" + name, 0)] + [("stage:" + n, 0) for n in nxt]
        arrs = g.link(core, consumers, f"stage_{name}")
        if nxt:
            based[name] = arrs[1]
        # the LayerNorm core, then the LN → site FIFO and the site
        op, ln = norms[name], "ln:" + name

        def ln_geometry() -> lnm.LayerNormGeometry:
            geo_ln = lnm.LayerNormGeometry(
                tokens=vit.tokens,
                dim=op.dim,
                stream_bound=int(vit.ranges.stream[norm_index[name]]),
                gain_bound=int(abs(op.gain).max()),
                bias_bound=int(abs(op.bias).max()),
                eps=int(op.eps),
                stream=vit_sites.STREAM_LAYER_NORM,
            )
            return dataclasses.replace(geo_ln, units=g.units or geo_ln.full_rate_units)

        geo_ln = g.once(ln, ln_geometry)
        if ln not in g.streams:
            g.streams[ln] = lnm.golden_outputs(op.gain, op.bias, op.eps, vit.tokens, outs)
        g.run(ln, arrs[0], lnm.timed, geo_ln, outs, g.streams[ln])
        g.loads.append((ln, "layernorm", 0))
        (arr,) = g.link(ln, [(name, 0)], f"ln_{name}")
        g.site(name, g.streams[ln], arr, trace, at[name])

    def chain(src: str, dst: str) -> None:
        (arr,) = g.link(src, [(dst, 0)], src)
        g.site(dst, g.streams[src], arr, trace, at[dst])

    by_name = {st["name"]: st for st in stages}
    for b in range(vit.depth):
        p = f"blocks.{b}."
        run_stage(by_name[p + "norm1"])
        _block(g, p, b, trace, at)
        run_stage(by_name[p + "norm2"])
        chain(p + "norm2", p + "fc1")
        chain(p + "fc1", p + "fc2")
    run_stage(by_name["norm"])
    chain("norm", vit.sites[-1].name)


def _block(g: _Graph, p: str, b: int, trace: Trace, at: dict[str, int]) -> None:
    """The attention of block ``b``: norm1 ⇉ q, k, v; the products, the softmax, attn, context
    and proj."""
    vit = g.vit
    arrs = g.link(p + "norm1", [(p + f, 0) for f in "qkv"], p + "norm1")
    for f, arr in zip("qkv", arrs, strict=True):
        g.site(p + f, g.streams[p + "norm1"], arr, trace, at[p + f])
    timing = LayerTiming(n_out=1, lanes=1, pipeline=g.pipeline)
    geos = g.once(
        p + "products",
        lambda: {
            kind: dataclasses.replace(
                pm.ProductGeometry.for_block(vit, b, kind, lanes=g.product_lanes),
                accumulator_latency=timing.accumulator_latency,
            )
            for kind in pm.KINDS
        },
    )
    # scores = q · kᵀ
    (xq,) = g.link(p + "q", [(p + "scores", 0)], p + "q")
    (yk,) = g.link(p + "k", [(p + "scores", 1)], p + "k")
    _product(g, p + "scores", geos["scores"], p + "q", p + "k", xq, yk)
    # softmax, attn
    name = p + "softmax"
    params = g.once(name, lambda: sm.SoftmaxParams.of_block(vit, b))
    (arr,) = g.link(p + "scores", [(name, 0)], p + "scores")
    ins = g.streams[p + "scores"]
    if name not in g.streams:
        g.streams[name] = sm.output_steps(params, ins)
    g.run(name, arr, sm.timed, g.once((name, "timing"), lambda: sm.SoftmaxTiming.of(params)),
          ins, g.streams[name])  # fmt: skip
    g.loads.append((name, "softmax", 0))
    (arr,) = g.link(name, [(p + "attn", 0)], name)
    g.site(p + "attn", g.streams[name], arr, trace, at[p + "attn"])
    # context = attn · v, the context site, proj
    (xa,) = g.link(p + "attn", [(p + "context_product", 0)], p + "attn")
    (yv,) = g.link(p + "v", [(p + "context_product", 1)], p + "v")
    _product(g, p + "context_product", geos["context"], p + "attn", p + "v", xa, yv)
    (arr,) = g.link(p + "context_product", [(p + "context", 0)], p + "context_product")
    g.site(p + "context", g.streams[p + "context_product"], arr, trace, at[p + "context"])
    (arr,) = g.link(p + "context", [(p + "proj", 0)], p + "context")
    g.site(p + "proj", g.streams[p + "context"], arr, trace, at[p + "proj"])


def _product(g: _Graph, name: str, geo, x: str, y: str, x_arr, y_arr) -> None:
    infs = g.once(
        name, lambda: list(zip(_events(g.streams[x]), _events(g.streams[y]), strict=True))
    )
    arr = list(zip(x_arr, y_arr, strict=True))
    g.run(name, arr, pm.timed, geo, infs)
    if name not in g.streams:
        g.streams[name] = pm.output_steps(geo, infs)
    g.loads.append((name, "product", geo.lanes))
