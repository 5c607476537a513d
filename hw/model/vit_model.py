"""Exact cycle model of the whole ViT top (``hw.cores.vit_core.ViTCore``), composed from the
cores' models.

No amaranth import. The top is a graph of cores joined by FIFOs (``SyncFIFOBuffered``) and
broadcasts (``Broadcast``, combinational: a beat leaves when every consumer's FIFO took it, each
FIFO taking it as soon as it has room): per site a layer core with an input map
(:func:`hw.model.cycle_model.timed`), per LayerNorm site a residual stage
(:func:`hw.model.residual_model.timed`) and a LayerNorm core
(:func:`hw.model.layer_norm_model.timed`), per block two spike products
(:func:`hw.model.product_model.timed`) and a softmax (:func:`hw.model.softmax_model.timed`).
Each core's model takes the cycle each input beat is valid at its ports and, per output beat,
the first cycle the FIFOs it feeds have room for it (backpressure), and gives the cycle each
output beat was offered and left, and the cycle each input beat was taken. A beat written into
a FIFO in cycle ``w`` is valid at its far end in ``w + 2``
(:data:`~hw.model.cycle_model.FIFO_LATENCY`: the memory, then the output register), ``w + 1``
in a one-entry FIFO (a single register). The embedding's input is always valid (the
testbench's stimulus: every inference's beats back to back from cycle 0) and the head's output
always ready, so ``done`` of an inference is the cycle of the head's last marker.

**Backpressure.** A FIFO of ``d ≥ 2`` entries moves beat ``k`` from its memory to its output
register in ``max(w_k + 1, taken_{k−1})`` and has room for beat ``k`` once beat ``k − d + 1`` moved;
a one-entry FIFO once beat ``k − 1`` was taken (:data:`hw.model.fifo_model.SYNC_FIFO`; the MLP's
chain, :mod:`hw.model.network_model`, composes the same way). Room depends on the consumer's
progress on earlier beats, which depends on its own FIFOs downstream, so :func:`vit_schedule` runs
the composition in **passes**: every core in execution order, each with the room its FIFOs had in
the pass before (none in the first, the schedule with FIFOs that never fill). Every cycle only grows
from pass to pass; the first pass that changes no FIFO's room is a consistent schedule, the RTL's
(the digits ViT: 24 passes for 3 images, 9 for one). How each core waits for room is its model's:
the layer core's emitter is an elastic pipeline (a held beat delays only the beats behind it, and
through its marker the sweep two steps later), the residual stage's and the LayerNorm's and the
product's output registers hold their sequencer, the softmax freezes entirely (``en = ~o.valid |
o.ready``).

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model import cycle_model as cm
from spikezip.hw.model import layer_norm_model as lnm
from spikezip.hw.model import product_model as pm
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model import softmax_model as sm
from spikezip.hw.model import vit_sites
from spikezip.hw.model.cycle_model import CoreRun, LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import Step
from spikezip.hw.model.fifo_model import SYNC_FIFO, FifoCheck
from spikezip.hw.model.vit_sites import SiteSpec, fifo_depth, input_steps, site_spec
from spikezip.ir import Trace
from spikezip.ir.transformer import SiteKind, VisionTransformer

__all__ = ["CoreLoad", "FifoCheck", "ViTSchedule", "fifo_latency", "vit_schedule"]


def fifo_latency(depth: int) -> int:
    """Cycles from a beat written into an empty FIFO of ``depth`` entries to the cycle it is
    valid at the FIFO's output: :data:`~hw.model.cycle_model.FIFO_LATENCY`, 1 for one entry
    (``SyncFIFOBuffered`` is then a single register; :data:`hw.model.fifo_model.SYNC_FIFO`)."""
    return SYNC_FIFO.latency_of(depth)


@dataclass(frozen=True)
class CoreLoad:
    """Cycles and lane use of one core over a run (:meth:`ViTSchedule.loads`)."""

    #: the site's name, or a key of :attr:`ViTSchedule.cores`
    name: str
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
    #: every other core's run: ``"stage:{site}"`` (residual stage), ``"ln:{site}"`` (LayerNorm),
    #: ``"blocks.{b}.scores"``, ``"blocks.{b}.softmax"``, ``"blocks.{b}.context_product"``
    cores: dict[str, CoreRun]
    first_input: np.ndarray  #: [B] cycle the first input beat of each inference is accepted
    done: np.ndarray  #: [B] cycle ``done`` pulses (the head's last marker)
    fifos: tuple[FifoCheck, ...]  #: every FIFO, named as in ``ViTCore``
    loads: tuple[CoreLoad, ...]  #: every core's cycles and lane use
    passes: int = 1  #: passes of the composition until the backpressure settled

    @property
    def exact(self) -> bool:
        """The composition settled (:func:`vit_schedule`): the RTL's exact schedule."""
        return True

    @property
    def backpressure(self) -> bool:
        """Some FIFO filled up and made its producer wait."""
        return not all(f.ok for f in self.fifos)

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
    """The cores' runs, the streams between them and their FIFOs, built in execution order; run
    again (:func:`vit_schedule`) until no FIFO's backpressure changes."""

    def __init__(self, vit: VisionTransformer, params: DesignParams, product_lanes: int) -> None:
        self.vit, self.params, self.product_lanes = vit, params, product_lanes
        self.pipeline: Pipeline = params.pipeline
        self.specs: dict[str, SiteSpec] = {
            s.name: site_spec(vit, s.name, lanes=p)
            for s, p in zip(vit.sites, params.lanes, strict=True)
        }
        self.streams: dict[str, list[list[Step]]] = {}  # every core's output steps (fixed)
        #: per FIFO, the first cycle each beat may be written (from the last pass)
        self.fifo_ready: dict[str, np.ndarray] = {}
        self.producer_fifos: dict[str, list[str]] = {}
        self.units: int | None = None  # LayerNorm rounding units (None: the cores' default)
        self.memo: dict[str, tuple] = {}
        self.reset()

    def run(self, core: str, arrivals: Any, model: Any, *args: Any) -> None:
        """``core``'s run: ``model(*args, arrivals, ready)``, reused from the pass before when
        its arrivals and backpressure did not change (a core's model is a function of them)."""
        ready = self.ready(core)
        memo = self.memo.get(core)
        if memo is not None and memo[0] == arrivals and memo[1] == ready:
            self.runs[core] = memo[2]
            return
        self.runs[core] = run = model(*args, arrivals, ready)
        self.memo[core] = (arrivals, ready, run)

    def reset(self) -> None:
        """Start a pass."""
        self.runs: dict[str, CoreRun] = {}
        self.loads: list[tuple[str, str, int]] = []  # (core, kind, lanes)
        self.links: list[tuple[str, str, str, int, int, np.ndarray]] = []

    def ready(self, core: str) -> list[int] | None:
        """Per output beat of ``core``, the first cycle every FIFO it feeds has room for it."""
        fifos = self.producer_fifos.get(core)
        if not fifos:
            return None
        return np.max([self.fifo_ready[f] for f in fifos], axis=0).tolist()

    def link(self, producer: str, consumers: list[tuple[str, int]], name: str):
        """The FIFOs from ``producer`` to each ``(consumer, port)`` (through a broadcast when
        there are several): per consumer, per inference and step, the cycle each beat is valid
        at the FIFO's output."""
        run = self.runs[producer]
        offered = np.asarray(run.offered, dtype=np.int64)
        name, out = name.replace(".", "_"), []
        for k, (core, port) in enumerate(consumers):
            fifo = f"{name}_fifo{k}" if len(consumers) > 1 else f"{name}_fifo"
            depth = fifo_depth(self.vit, self.params, fifo)
            lat = fifo_latency(depth)
            writes = offered
            if fifo in self.fifo_ready:  # the beat waits for room in this FIFO only
                writes = np.maximum(offered, self.fifo_ready[fifo])
            else:
                self.fifo_ready[fifo] = np.zeros_like(offered)
                self.producer_fifos.setdefault(producer, []).append(fifo)
            self.links.append((fifo, producer, core, port, depth, writes))
            it = iter((writes + lat).tolist())
            out.append(
                [[[next(it) for _ in ev] + [next(it)] for ev, _ in inf] for inf in run.beats]
            )
        return out

    def settle(self) -> bool:
        """Each FIFO's room from this pass's cycles; whether any changed."""
        changed = False
        for fifo, _, core, port, depth, writes in self.links:
            taken = np.asarray(self.runs[core].taken[port], dtype=np.int64)
            if taken.size != writes.size:  # (a model's bug, not the user's)
                raise AssertionError(f"{fifo}: {writes.size} beats written, {taken.size} taken")
            room = SYNC_FIFO.room(writes, taken, depth)
            if not np.array_equal(room, self.fifo_ready[fifo]):
                self.fifo_ready[fifo], changed = room, True
        return changed

    def checks(self) -> tuple[FifoCheck, ...]:
        out = []
        for fifo, producer, core, port, depth, writes in self.links:
            offered = np.asarray(self.runs[producer].offered, dtype=np.int64)
            taken = np.asarray(self.runs[core].taken[port], dtype=np.int64)
            out.append(
                FifoCheck(
                    fifo,
                    depth,
                    SYNC_FIFO.need(offered, taken, depth),
                    int((writes - offered).sum()),
                )
            )
        return tuple(out)

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
            functools.partial(_site_model, ops=ops, imap=spec.input_map),
            timing,
            ins,
            self.streams[name],
        )
        kind = "linear" if spec.kind is SiteKind.LINEAR else "direct"
        self.loads.append((name, kind, timing.lanes))


def _site_model(timing, ins, outs, arrivals, ready, *, ops: int, imap: Any) -> CoreRun:
    return cm.timed(timing, ins, outs, arrivals, imap, ready, ops_per_event=ops)


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
    if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
        raise ValueError(f"max_passes must be a positive integer, not {max_passes!r}")
    x = vit.check_inputs(inputs)
    if trace.batch != x.shape[0]:
        raise ValueError(f"trace must hold the {x.shape[0]} inputs' samples, not {trace.batch}")
    if trace.network_digest != vit.digest():
        raise ValueError("trace must come from this vit (its network_digest differs)")
    g = _Graph(vit, params, int(pl))
    g.units = units
    need = {}
    for passes in range(1, max_passes + 1):
        g.reset()
        _compose(g, x, trace)
        if passes == 1:  # no backpressure yet: how deep each FIFO would have to be
            need = {f.name: f.need for f in g.checks()}
        if not g.settle():
            break
    else:
        raise RuntimeError(f"the FIFOs' backpressure did not settle in {max_passes} passes")
    embed = vit.sites[0].name
    counts = [sum(s.n_events + 1 for s in inf) for inf in input_steps(vit, x)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.asarray(g.runs[embed].taken[0], dtype=np.int64)[starts]
    head = vit.sites[-1].name
    done = np.array([inf[-1][1] for inf in g.runs[head].beats], dtype=np.int64)
    end = int(done[-1]) + 1 if done.size else 0
    loads = tuple(
        CoreLoad(
            name=n,
            kind=k,
            lanes=p,
            work=g.runs[n].work,
            accumulate=g.runs[n].accumulate,
            ops=g.runs[n].ops,
            cycles=end,
        )
        for n, k, p in g.loads
    )
    sites = {s.name: g.runs[s.name] for s in vit.sites}
    cores = {n: r for n, r in g.runs.items() if n not in sites}
    return ViTSchedule(
        sites=sites,
        cores=cores,
        first_input=first,
        done=done,
        fifos=tuple(dataclasses.replace(f, need=need[f.name]) for f in g.checks()),
        loads=loads,
        passes=passes,
    )


def _compose(g: _Graph, x: np.ndarray, trace: Trace) -> None:
    """One pass: every core's model in execution order (a core after the producers of its
    inputs)."""
    vit = g.vit
    at = {s.name: k for k, s in enumerate(vit.sites)}
    embed = vit.sites[0].name
    g.site(embed, input_steps(vit, x), None, trace, at[embed])
    stages = rm.stages(vit)
    norms = {s.name: s.op for s in vit.sites if s.kind is SiteKind.LAYERNORM}
    norm_index = {name: j for j, name in enumerate(norms)}
    based: dict[str, list] = {}  # a stage's output as valid at the stage based on it

    def run_stage(st: dict) -> None:
        """A residual stage, its LayerNorm core and LayerNorm site (ViTCore's stage loop)."""
        name, src, core = st["name"], st["site"], "stage:" + st["name"]
        geo = rm.stage_geometry(vit, st)
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
        geo_ln = lnm.LayerNormGeometry(
            tokens=vit.tokens,
            dim=op.dim,
            stream_bound=int(vit.ranges.stream[norm_index[name]]),
            gain_bound=int(abs(op.gain).max()),
            bias_bound=int(abs(op.bias).max()),
            eps=int(op.eps),
            stream=vit_sites.STREAM_LAYER_NORM,
        )
        geo_ln = dataclasses.replace(geo_ln, units=g.units or geo_ln.full_rate_units)
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
    geos = {
        kind: dataclasses.replace(
            pm.ProductGeometry.for_block(vit, b, kind, lanes=g.product_lanes),
            accumulator_latency=timing.accumulator_latency,
        )
        for kind in pm.KINDS
    }
    # scores = q · kᵀ
    (xq,) = g.link(p + "q", [(p + "scores", 0)], p + "q")
    (yk,) = g.link(p + "k", [(p + "scores", 1)], p + "k")
    _product(g, p + "scores", geos["scores"], p + "q", p + "k", xq, yk)
    # softmax, attn
    params, name = sm.SoftmaxParams.of_block(vit, b), p + "softmax"
    (arr,) = g.link(p + "scores", [(name, 0)], p + "scores")
    ins = g.streams[p + "scores"]
    if name not in g.streams:
        g.streams[name] = sm.output_steps(params, ins)
    g.run(name, arr, sm.timed, sm.SoftmaxTiming.of(params), ins, g.streams[name])
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
    infs = list(zip(_events(g.streams[x]), _events(g.streams[y]), strict=True))
    arr = list(zip(x_arr, y_arr, strict=True))
    g.run(name, arr, pm.timed, geo, infs)
    if name not in g.streams:
        g.streams[name] = pm.output_steps(geo, infs)
    g.loads.append((name, "product", geo.lanes))
