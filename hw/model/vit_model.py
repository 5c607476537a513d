"""Exact cycle model of the whole ViT top (``hw.cores.vit_core.ViTCore``), composed from the
cores' models.

No amaranth import. The top is a graph of cores joined by FIFOs (``SyncFIFOBuffered``) and
broadcasts (``Broadcast``, combinational: a beat leaves when every consumer's FIFO takes it):
per site a layer core with an input map (:func:`hw.model.cycle_model.timed`), per LayerNorm site
a residual stage (:func:`hw.model.residual_model.timed`) and a LayerNorm core
(:func:`hw.model.layer_norm_model.timed`), per block two spike products
(:func:`hw.model.product_model.timed`) and a softmax (:func:`hw.model.softmax_model.timed`).
Each core's model takes the cycle each input beat is valid at its port and gives the cycle of
each output beat; walking the cores in execution order, a beat that leaves a producer in cycle
``w`` is valid at its consumer in ``w + 2`` (:data:`~hw.model.cycle_model.FIFO_LATENCY`: the
FIFO's memory, then its output register), or ``w + 1`` behind a FIFO of one entry (a single
register). The embedding's input is always valid (the testbench's stimulus: every inference's
beats back to back from cycle 0) and the head's output always ready, so ``done`` of an
inference is the cycle of the head's last marker.

The streams' contents come from the golden trace: a site's output in step ``t`` is its spikes
(``trace.spikes``) and a marker whose busy flag is the core's own — its input marker's flag, the
bias at step 0, or a spike — up to the first that is 0; every other core's output is its model's
golden list of its inputs (:func:`~hw.model.residual_model.golden_outputs`, …).

**Premise** (as :mod:`hw.model.network_model`'s): no FIFO fills, so no producer ever waits.
:func:`vit_schedule` checks it from the modelled cycles: per FIFO, beat ``k`` moves from the
FIFO's memory to its output register in ``max(w_k + 1, taken_{k−1})`` (``taken``: the cycle the
consumer took the previous beat, each core model's :attr:`~hw.model.cycle_model.CoreRun.taken`),
and the memory (``depth − 1`` entries) must have room at every write; a one-entry FIFO must be
empty at every write. :attr:`ViTSchedule.exact` is ``True`` when every FIFO passes; otherwise
the cycles are not claimed (the RTL would stall a producer). tests/hw/test_vit_model.py checks
the model against the RTL's cycle stamps in Amaranth's simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model import cycle_model as cm
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import product_model as pm
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model import softmax_model as sm
from spikezip.hw.model.cycle_model import FIFO_LATENCY, CoreRun, LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import Step
from spikezip.hw.model.vit_sites import SiteSpec, input_steps, site_spec
from spikezip.ir import Trace
from spikezip.ir.transformer import SiteKind, VisionTransformer

__all__ = ["CoreLoad", "FifoCheck", "ViTSchedule", "fifo_latency", "vit_schedule"]


def fifo_latency(depth: int) -> int:
    """Cycles from a beat written into an empty FIFO of ``depth`` entries to the cycle it is
    valid at the FIFO's output: :data:`~hw.model.cycle_model.FIFO_LATENCY`, 1 for one entry
    (``SyncFIFOBuffered`` is then a single register)."""
    return 1 if depth == 1 else FIFO_LATENCY


@dataclass(frozen=True)
class FifoCheck:
    """The premise check of one FIFO (:func:`vit_schedule`)."""

    name: str  #: the FIFO's name in ``ViTCore`` (``"blocks_0_q_fifo"``)
    depth: int
    #: the fewest entries with which it never refuses a beat at the modelled cycles (≥ 2; 1
    #: when a one-entry FIFO is always empty at its writes)
    need: int

    @property
    def ok(self) -> bool:
        return self.need <= self.depth


@dataclass(frozen=True)
class CoreLoad:
    """Cycles and lane use of one core over a run (:meth:`ViTSchedule.loads`)."""

    name: str  #: the site's name, or ``"{stage,ln}:{site}"``, ``"blocks.{b}.{scores,context,softmax}"``
    kind: str  #: ``linear``, ``direct``, ``product``, ``residual``, ``layernorm``, ``softmax``
    lanes: int  #: lanes of the accumulate phase (0 for cores without one)
    work: int  #: cycles of work (passes, scans, clears, beats read), waits for input excluded
    accumulate: int  #: cycles of the accumulate phases (waits for input included)
    ops: int  #: useful lane operations in the accumulate phases
    cycles: int  #: cycles of the whole run

    @property
    def busy_fraction(self) -> float:
        """``work / cycles``."""
        return self.work / self.cycles if self.cycles else 0.0

    @property
    def accumulate_utilization(self) -> float:
        """``ops / (lanes · accumulate)``: the accumulate phases' delivered lane fraction."""
        return self.ops / (self.lanes * self.accumulate) if self.lanes and self.accumulate else 0.0


@dataclass(frozen=True)
class ViTSchedule:
    """The modelled cycles of a run of inferences through a ``ViTCore``."""

    #: per site (execution order), its core's run: ``beats[b][t] = (event cycles, marker)``
    sites: dict[str, CoreRun]
    #: every other core's run: ``"stage:{site}"``, ``"ln:{site}"``, ``"blocks.{b}.scores"``,
    #: ``"blocks.{b}.softmax"``, ``"blocks.{b}.context"``
    cores: dict[str, CoreRun]
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference is accepted
    done: np.ndarray  #: [B] cycle ``done`` pulses (the head's last marker)
    fifos: tuple[FifoCheck, ...]  #: every FIFO, named as in ``ViTCore``
    loads: tuple[CoreLoad, ...]  #: every core's cycles and lane use

    @property
    def exact(self) -> bool:
        """No FIFO can fill: the composition is the RTL's exact schedule."""
        return all(f.ok for f in self.fifos)

    @property
    def latency(self) -> np.ndarray:
        """Cycles from each inference's first input beat to its ``done``, inclusive."""
        return self.done - self.first_input + 1

    @property
    def total_cycles(self) -> int:
        return int(self.done[-1]) + 1 if self.done.size else 0

    def site_steps(self, name: str, sample: int) -> tuple[tuple[tuple[int, ...], int], ...]:
        """Per step of site ``name`` in inference ``sample``: its spikes' cycles and its
        marker's."""
        if name not in self.sites:
            raise ValueError(f"name must be one of the sites {list(self.sites)}, not {name!r}")
        return self.sites[name].beats[sample]


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
class _Graph:
    """The cores' runs, the streams between them, and the FIFO checks, built in execution
    order."""

    def __init__(self, vit: VisionTransformer, params: DesignParams, product_lanes: int) -> None:
        self.vit, self.params, self.product_lanes = vit, params, product_lanes
        self.pipeline: Pipeline = params.pipeline
        self.specs: dict[str, SiteSpec] = {
            s.name: site_spec(vit, s.name, lanes=p)
            for s, p in zip(vit.sites, params.lanes, strict=True)
        }
        self.runs: dict[str, CoreRun] = {}  # every core's run, by core name
        self.streams: dict[str, list[list[Step]]] = {}  # every core's output steps
        self.fifos: list[FifoCheck] = []
        self.loads: list[tuple[str, str, int]] = []  # (core, kind, lanes)
        self._links: list[tuple[str, str, str, int, int]] = []

    def depth(self, entries: int) -> int:
        return self.params.fifo_depth or entries + 2

    def arrivals(self, producer: str, depth: int) -> list[list[list[int]]]:
        """Per inference and step, the cycle each beat of ``producer``'s output is valid at the
        far end of a FIFO of ``depth`` entries."""
        lat = fifo_latency(depth)
        return [[[c + lat for c in ev] + [mk + lat] for ev, mk in inf]
                for inf in self.runs[producer].beats]  # fmt: skip

    def link(self, producer: str, consumers: list[tuple[str, int]], name: str, depth: int):
        """Record the FIFOs from ``producer`` to each ``(consumer, port)`` (checked in
        :meth:`check` once the consumers ran); returns the arrivals at each."""
        name = name.replace(".", "_")
        for k, (core, port) in enumerate(consumers):
            fifo = f"{name}_fifo{k}" if len(consumers) > 1 else f"{name}_fifo"
            self._links.append((fifo, producer, core, port, depth))
        return self.arrivals(producer, depth)

    def check(self) -> None:
        for fifo, producer, core, port, depth in self._links:
            written = [c for inf in self.runs[producer].beats for ev, mk in inf for c in (*ev, mk)]
            taken = self.runs[core].taken[port]
            if len(taken) != len(written):  # (a model's bug, not the user's)
                raise AssertionError(f"{fifo}: {len(written)} beats written, {len(taken)} taken")
            self.fifos.append(FifoCheck(fifo, depth, _need(written, taken, depth)))

    # -- cores ------------------------------------------------------------------------------------
    def site(self, name: str, ins: list[list[Step]], arrivals, trace: Trace, at: int) -> None:
        spec = self.specs[name]
        timing = LayerTiming(n_out=spec.n_out, lanes=spec.input_map.lanes, pipeline=self.pipeline)
        has_bias = bool(spec.neurons.bias.any())
        outs = _site_outputs(trace, at, name, ins, has_bias)
        if spec.kind is SiteKind.LINEAR:
            ops = self.vit.sites[at].op.n_out
        else:
            ops = 1
        self.runs[name] = cm.timed(timing, ins, outs, arrivals, spec.input_map, ops_per_event=ops)
        self.streams[name] = outs
        kind = "linear" if spec.kind is SiteKind.LINEAR else "direct"
        self.loads.append((name, kind, timing.lanes))


def _need(written: Sequence[int], taken: Sequence[int], depth: int) -> int:
    """The fewest entries with which a FIFO written in ``written`` and read in ``taken`` never
    refuses a beat (see the module docstring)."""
    if depth == 1:
        return 1 if all(taken[k - 1] < written[k] for k in range(1, len(written))) else 2
    moved, prev = [], -1
    for w, t in zip(written, [-1, *taken[:-1]], strict=True):
        prev = max(w + 1, t)
        moved.append(prev)
    moved_sorted = np.asarray(moved)  # ascending: one move per cycle, in order
    w = np.asarray(written)
    inner = np.arange(len(w)) - np.searchsorted(moved_sorted, w, side="left")
    return int(inner.max()) + 2 if inner.size else 2


def vit_schedule(
    vit: VisionTransformer,
    inputs: np.ndarray,
    trace: Trace,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: Pipeline | int | None = None,
    fifo_depth: int | None = None,
    product_lanes: int | None = None,
) -> ViTSchedule:
    """Model the ``ViTCore`` running ``inputs`` back to back (``trace``: the golden trace of
    ``sw.vit.reference``).

    ``params`` (or the keywords ``lanes``, ``pipeline``, ``fifo_depth``; not both) and
    ``product_lanes`` are those of the ``ViTCore``: lanes per site, pipeline preset, entries of
    every FIFO (default a step of the producer's beats plus 2, as the core builds them), lanes of
    the spike products (default the token count). The LayerNorm cores have their default
    rounding units (``LayerNormGeometry.full_rate_units``).
    """
    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"vit must be a VisionTransformer, not {type(vit).__name__}")
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be an ir.Trace, not {type(trace).__name__}")
    params = DesignParams.coerce(
        vit, params, lanes=lanes, pipeline=pipeline, fifo_depth=fifo_depth
    )
    pl = vit.tokens if product_lanes is None else product_lanes
    if isinstance(pl, bool) or not isinstance(pl, int | np.integer) or pl < 1:
        raise ValueError(f"product_lanes must be a positive integer, not {pl!r}")
    x = vit.check_inputs(inputs)
    if trace.batch != x.shape[0]:
        raise ValueError(f"trace must hold the {x.shape[0]} inputs' samples, not {trace.batch}")
    if trace.network_digest != vit.digest():
        raise ValueError("trace must come from this vit (its digest differs)")
    g = _Graph(vit, params, int(pl))
    _compose(g, x, trace)
    g.check()
    embed = vit.sites[0].name
    counts = [sum(s.n_events + 1 for s in inf) for inf in input_steps(vit, x)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.asarray(g.runs[embed].taken[0], dtype=np.int64)[starts]
    head = vit.sites[-1].name
    done = np.array([inf[-1][1] for inf in g.runs[head].beats], dtype=np.int64)
    end = int(done[-1]) + 1 if done.size else 0
    loads = tuple(
        CoreLoad(name=n, kind=k, lanes=p, work=g.runs[n].work, accumulate=g.runs[n].accumulate,
                 ops=g.runs[n].ops, cycles=end)  # fmt: skip
        for n, k, p in g.loads
    )
    sites = {s.name: g.runs[s.name] for s in vit.sites}
    cores = {n: r for n, r in g.runs.items() if n not in sites}
    return ViTSchedule(sites=sites, cores=cores, first_input=first, done=done,
                       fifos=tuple(g.fifos), loads=loads)  # fmt: skip


def _compose(g: _Graph, x: np.ndarray, trace: Trace) -> None:
    """Run every core's model in execution order (a core after the producers of its inputs)."""
    vit, specs = g.vit, g.specs
    at = {s.name: k for k, s in enumerate(vit.sites)}
    entries = vit.tokens * vit.dim
    embed = vit.sites[0].name
    g.site(embed, input_steps(vit, x), None, trace, at[embed])
    stages = rm.stages(vit)
    norms = {s.name: s.op for s in vit.sites if s.kind is SiteKind.LAYERNORM}
    norm_index = {name: j for j, name in enumerate(norms)}
    stage_out: dict[str, list] = {}  # a stage's output, as valid at the far end of its FIFOs

    def run_stage(st: dict) -> None:
        """A residual stage, its LayerNorm core and LayerNorm site (ViTCore's stage loop)."""
        name, src = st["name"], st["site"]
        geo = rm.stage_geometry(vit, st)
        pos = st["position"]
        pos = None if pos is None or not pos.any() else pos
        b_port = 1 if geo.has_base else 0  # (ports a, b)
        b_arr = g.link(src, [("stage:" + name, b_port)], f"{src}_to_stage",
                       g.depth(specs[src].n_out))  # fmt: skip
        base = a_arr = None
        if st["base"] is not None:
            base, a_arr = g.streams["stage:" + st["base"]], stage_out[st["base"]]
        spikes = g.streams[src]
        outs = rm.golden_outputs(geo, base, spikes, pos)
        arr = [(None if a_arr is None else a_arr[j], b_arr[j]) for j in range(len(spikes))]
        g.runs["stage:" + name] = rm.timed(geo, base, spikes, outs, arr)
        g.streams["stage:" + name] = outs
        g.loads.append(("stage:" + name, "residual", 0))
        # stage ⇉ its LayerNorm and the stages based on it
        nxt = [s["name"] for s in stages if s["base"] == name]
        consumers = [("ln:" + name, 0)] + [("stage:" + n, 0) for n in nxt]
        arr = g.link("stage:" + name, consumers, f"stage_{name}", g.depth(entries))
        stage_out[name] = arr
        # the LayerNorm core, then the LN → site FIFO and the site
        op = norms[name]
        geo_ln = lnm.LayerNormGeometry(
            tokens=vit.tokens, dim=op.dim,
            stream_bound=int(vit.ranges.stream[norm_index[name]]),
            gain_bound=int(abs(op.gain).max()), bias_bound=int(abs(op.bias).max()),
            eps=int(op.eps),
        )  # fmt: skip
        geo_ln = dataclasses.replace(geo_ln, units=geo_ln.full_rate_units)
        ln_out = lnm.golden_outputs(op.gain, op.bias, op.eps, vit.tokens, outs)
        g.runs["ln:" + name] = lnm.timed(geo_ln, outs, ln_out, arr)
        g.streams["ln:" + name] = ln_out
        g.loads.append(("ln:" + name, "layernorm", 0))
        arr = g.link("ln:" + name, [(name, 0)], f"ln_{name}", g.depth(entries))
        g.site(name, ln_out, arr, trace, at[name])

    by_name = {st["name"]: st for st in stages}
    for b in range(vit.depth):
        p = f"blocks.{b}."
        run_stage(by_name[p + "norm1"])
        _block(g, p, b, trace, at)
        run_stage(by_name[p + "norm2"])
        g.site(p + "fc1", g.streams[p + "norm2"],
               g.link(p + "norm2", [(p + "fc1", 0)], p + "norm2", g.depth(specs[p + "norm2"].n_out)),
               trace, at[p + "fc1"])  # fmt: skip
        g.site(p + "fc2", g.streams[p + "fc1"],
               g.link(p + "fc1", [(p + "fc2", 0)], p + "fc1", g.depth(specs[p + "fc1"].n_out)),
               trace, at[p + "fc2"])  # fmt: skip
    run_stage(by_name["norm"])
    head = vit.sites[-1].name
    arr = g.link("norm", [(head, 0)], "norm", g.depth(specs["norm"].n_out))
    g.site(head, g.streams["norm"], arr, trace, at[head])


def _block(g: _Graph, p: str, b: int, trace: Trace, at: dict[str, int]) -> None:
    """The attention of block ``b``: norm1 ⇉ q, k, v; the products, the softmax, attn, context
    and proj."""
    vit, specs = g.vit, g.specs

    def depth(name: str) -> int:
        return g.depth(specs[p + name].n_out)

    arr = g.link(p + "norm1", [(p + f, 0) for f in "qkv"], p + "norm1", depth("norm1"))
    for f in "qkv":
        g.site(p + f, g.streams[p + "norm1"], arr, trace, at[p + f])
    timing = LayerTiming(n_out=1, lanes=1, pipeline=g.pipeline)
    geos = {
        kind: dataclasses.replace(
            pm.ProductGeometry.for_block(vit, b, kind, lanes=g.product_lanes),
            accumulator_latency=timing.accumulator_latency,
        )
        for kind in pm.KINDS
    }
    # scores = q · kᵀ
    xq = g.link(p + "q", [(p + "scores", 0)], p + "q", depth("q"))
    yk = g.link(p + "k", [(p + "scores", 1)], p + "k", depth("k"))
    _product(g, p + "scores", geos["scores"], p + "q", p + "k", xq, yk)
    # softmax, attn
    params = sm.SoftmaxParams.of_block(vit, b)
    arr = g.link(p + "scores", [(p + "softmax", 0)], p + "scores", depth("attn"))
    ins = g.streams[p + "scores"]
    outs = sm.output_steps(params, ins)
    g.runs[p + "softmax"] = sm.timed(sm.SoftmaxTiming.of(params), ins, outs, arr)
    g.streams[p + "softmax"] = outs
    g.loads.append((p + "softmax", "softmax", 0))
    arr = g.link(p + "softmax", [(p + "attn", 0)], p + "softmax", depth("attn"))
    g.site(p + "attn", outs, arr, trace, at[p + "attn"])
    # context = attn · v, the context site, proj
    xa = g.link(p + "attn", [(p + "context_product", 0)], p + "attn", depth("attn"))
    yv = g.link(p + "v", [(p + "context_product", 1)], p + "v", depth("v"))
    _product(g, p + "context_product", geos["context"], p + "attn", p + "v", xa, yv)
    arr = g.link(p + "context_product", [(p + "context", 0)], p + "context_product",
                 depth("context"))  # fmt: skip
    g.site(p + "context", g.streams[p + "context_product"], arr, trace, at[p + "context"])
    arr = g.link(p + "context", [(p + "proj", 0)], p + "context", depth("context"))
    g.site(p + "proj", g.streams[p + "context"], arr, trace, at[p + "proj"])


def _product(g: _Graph, name: str, geo, x: str, y: str, x_arr, y_arr) -> None:
    infs = list(zip(_events(g.streams[x]), _events(g.streams[y]), strict=True))
    arr = list(zip(x_arr, y_arr, strict=True))
    g.runs[name] = pm.timed(geo, infs, arr)
    g.streams[name] = pm.output_steps(geo, infs)
    g.loads.append((name, "product", geo.lanes))
