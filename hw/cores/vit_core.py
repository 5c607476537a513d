"""The spiking ViT in RTL: every site's core, the attention, LayerNorm and residual cores, wired
as the reference's site graph (``ir.transformer.VisionTransformer``).

Per block ``b`` (streams are the layer core's protocol: events, then an end-of-step marker with
the busy flag; ``⇉`` is a broadcast to several consumers, each through its own FIFO)::

    stream_b ⇉ LayerNorm norm1 ─▶ norm1 ⇉ q ─┐                    (stream_0 = stage(embed, P))
       │                                ⇉ k ─┴▶ scores ─▶ softmax ─▶ attn ─┐
       │                                ⇉ v ───────────────────────────────┴▶ context product ─▶
       │      context ─▶ proj ─┐
       └──────────────────────-┴▶ stage norm2 ⇉ LayerNorm norm2 ─▶ norm2 ─▶ fc1 ─▶ fc2 ─┐
                                      └──────────────────────────────────────────────┴▶ stage ─▶ …
    … stage norm ─▶ LayerNorm norm ─▶ norm ─▶ head ─▶ o

* **Sites** (23 in the digits ViT) are layer cores with an input map
  (:mod:`hw.model.vit_sites`): the linear ones run **per token on one core** — the tokens are
  time-multiplexed over the core's lanes, one weight matrix for all of them, the event's token
  choosing the neuron words — and the LayerNorm, attn and context sites integrate the drive
  events of their producer directly.
* **Producers** of non-spike streams: the residual stages (:mod:`hw.cores.residual`), the
  differential LayerNorm (:mod:`hw.cores.layer_norm`), the spike products
  (:mod:`hw.cores.product`) and the differential softmax (:mod:`hw.cores.softmax`).

Every core finishes a step from that step's inputs alone and reads a step only after it emitted
the one before, so the graph runs steps and inferences in a pipeline without deadlock for any
FIFO depth (the argument is in docs/transformer.md, "ViT network top"). Every core's marker busy
flag is the OR of the activity of the sites it depends on, the head's therefore the whole
network's: ``done`` pulses when the head's marker with busy 0 leaves on ``o``, the SpikeZIP
termination rule.

The broadcasts, the FIFO links, ``done``, the counters and the ``probe`` output are the
site graph's (:mod:`hw.cores.site_graph`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from amaranth.hdl import Module
from amaranth.lib import wiring

from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.layer_norm import LayerNormCore
from spikezip.hw.cores.product import SpikeProduct
from spikezip.hw.cores.residual import ResidualCore
from spikezip.hw.cores.site_graph import Broadcast, SiteGraph
from spikezip.hw.cores.softmax import SoftmaxCore
from spikezip.hw.model import residual_model as rm
from spikezip.hw.model import vit_sites
from spikezip.hw.model.cycle_model import LayerTiming, Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import EventFormat
from spikezip.hw.model.product_model import ProductGeometry
from spikezip.hw.model.softmax_model import SoftmaxParams
from spikezip.hw.model.vit_sites import SiteSpec, fifo_depth, fifo_names, site_spec
from spikezip.ir.transformer import SiteKind, VisionTransformer

__all__ = [
    "Broadcast",
    "ViTCore",
    "fifo_names",
]


class ViTCore(SiteGraph):
    """The whole ViT (see the module docstring).

    Parameters
    ----------
    vit : ir.transformer.VisionTransformer
    params : hw.model.design.DesignParams, optional
        Lanes per site (:func:`hw.model.vit_sites.resolve_site_lanes`), pipeline, storage and
        FIFO depth; or give them as the keywords below (not both).
    lanes : int or sequence of int, optional
        One value for every site (a token-wise site takes the largest divisor of its channels
        per token not above it) or one per site; default 8.
    pipeline : hw.model.cycle_model.Pipeline or int, optional
        Register stages of the site cores and products (preset depth 0–3, default 1).
    fifo_depth : int, optional
        Entries of every FIFO (default: :func:`hw.model.vit_sites.default_fifo_depths`, the
        skip paths :data:`~hw.model.vit_sites.SKIP_STEPS` steps deep, the others
        :data:`~hw.model.vit_sites.SHALLOW_FIFO` entries). ``params.fifo_depths`` sets single
        FIFOs' entries by name (:func:`hw.model.vit_sites.fifo_names`).
    storage : str, optional
        Where the site cores keep membranes and tracers (default by size).
    product_lanes : int, optional
        Lanes of the spike products (default: the token count).
    layer_norm_units : int, optional
        Rounding units of every LayerNorm core (default: full rate,
        ``LayerNormGeometry.full_rate_units``).
    probe : bool
        Add the ``probe`` output for testbenches.

    Members
    -------
    i : In(stream.Signature(event_layout(embed input format)))
        Pixels ``(patch·patch_size + k, x)`` of step 0, then markers (as the MLP's analog input).
    o : Out(stream.Signature(event_layout(head output format)))
        The head's spikes and markers.
    done : Out(1)
    cycles, inferences : Out(32)
    counters : Out(32 · 4 · sites), per site ``events, spikes, steps, stalls`` (as NetworkCore)
    probe : Out(probe_width), only with ``probe=True``
    """

    def __new__(
        cls,
        *,
        vit: VisionTransformer,
        params: DesignParams | None = None,
        lanes: int | Sequence[int] | None = None,
        pipeline: Pipeline | int | None = None,
        fifo_depth: int | None = None,
        storage: str | None = None,
        product_lanes: int | None = None,
        probe: bool = False,
        fifo_depths: Any = None,
        layer_norm_units: int | None = None,
    ) -> ViTCore:
        # checked before the object exists (a rejected one leaves no unused elaboratable)
        if not isinstance(vit, VisionTransformer):
            raise TypeError(f"vit must be a VisionTransformer, not {type(vit).__name__}")
        checked = DesignParams.coerce(
            vit,
            params,
            lanes=lanes,
            pipeline=pipeline,
            fifo_depth=fifo_depth,
            storage=storage,
            fifo_depths=fifo_depths,
            product_lanes=product_lanes,
            layer_norm_units=layer_norm_units,
        )
        pl = vit.tokens if checked.product_lanes is None else checked.product_lanes
        # (DesignParams.checked refused FIFO names this ViT does not have)
        self = super().__new__(cls, src_loc_at=1)
        self._params, self._product_lanes = checked, pl
        self._stream_ln = vit_sites.STREAM_LAYER_NORM
        self._stream_res = vit_sites.STREAM_RESIDUAL
        self._specs = {
            s.name: site_spec(vit, s.name, lanes=p)
            for s, p in zip(vit.sites, checked.lanes, strict=True)
        }
        return self

    def __init__(self, *, vit: VisionTransformer, probe: bool = False, **_: object) -> None:
        self._vit, self._probe = vit, bool(probe)
        self._pipeline = self._params.pipeline
        members = self._members()
        super().__init__(members)

    # -- facts ---------------------------------------------------------------------------------
    @property
    def vit(self) -> VisionTransformer:
        return self._vit

    @property
    def sites(self) -> dict[str, SiteSpec]:
        """Every site's spec (neurons, widths, formats, map), in execution order."""
        return dict(self._specs)

    @property
    def params(self) -> DesignParams:
        """The design's knobs (lanes per site, pipeline, storage, FIFO depth)."""
        return self._params

    @property
    def lanes(self) -> tuple[int, ...]:
        """Lanes of every site core, in execution order."""
        return self._params.lanes

    @property
    def cores(self) -> tuple[LayerCore, ...]:
        """The site cores, in execution order (built once; the RTL instantiates these)."""
        if not hasattr(self, "_cores"):
            self._cores = tuple(
                LayerCore.for_site(spec, pipeline=self._pipeline, storage=self._params.storage)
                for spec in self._specs.values()
            )
        return self._cores

    def fifo_entries(self, name: str) -> int:
        """Entries of the FIFO ``name`` (:func:`hw.model.vit_sites.fifo_depth`)."""
        return fifo_depth(self._vit, self._params, name)

    @property
    def product_lanes(self) -> int:
        return self._product_lanes

    @property
    def formats(self) -> tuple[EventFormat, ...]:
        """Output event format of every site, in execution order."""
        return tuple(s.output_format for s in self._specs.values())

    def product_geometry(self, block: int, kind: str) -> ProductGeometry:
        """The geometry of a block's spike product (its accumulator latency the pipeline's)."""
        timing = LayerTiming(n_out=1, lanes=1, pipeline=self._pipeline)
        geo = ProductGeometry.for_block(self._vit, block, kind, lanes=self._product_lanes)
        return dataclasses.replace(geo, accumulator_latency=timing.accumulator_latency)

    @property
    def input_format(self) -> EventFormat:
        return next(iter(self._specs.values())).input_format

    # -- RTL -----------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        self._fifos, self._fifo_names = [], []
        vit, specs = self._vit, self._specs
        site = {}
        for name, core in zip(specs, self.cores, strict=True):
            m.submodules["site_" + name.replace(".", "_")] = site[name] = core
        units = self._params.layer_norm_units
        norms = {s.name: LayerNormCore.for_site(vit, s.name, units=units, stream=self._stream_ln)
                 for s in vit.sites if s.kind is SiteKind.LAYERNORM}  # fmt: skip
        for name, core in norms.items():
            m.submodules["ln_" + name.replace(".", "_")] = core
        stages = {}
        for st in rm.stages(vit):
            pos = st["position"]
            pos = None if pos is None or not pos.any() else pos
            geo = rm.stage_geometry(vit, st, stream=self._stream_res)
            core = ResidualCore(geometry=geo, position=pos)
            m.submodules["stage_" + st["name"].replace(".", "_")] = stages[st["name"]] = core
        link = self.link
        wiring.connect(m, wiring.flipped(self.i), site[vit.sites[0].name].i)
        for st in rm.stages(vit):
            name = st["name"]
            link(
                m,
                site[st["site"]].o,
                [stages[name].b],
                f"{st['site']}_to_stage",
            )
            nxt = [x for x in rm.stages(vit) if x["base"] == name]
            dsts = [norms[name].i] + [stages[x["name"]].a for x in nxt]
            link(m, stages[name].o, dsts, f"stage_{name}")
            link(m, norms[name].o, [site[name].i], f"ln_{name}")
        for b in range(vit.depth):
            self._block(m, f"blocks.{b}.", b, site)
        link(m, site["norm"].o, [site["head"].i], "norm")
        wiring.connect(m, site["head"].o, wiring.flipped(self.o))
        self.monitor(m, list(site.values()))
        return m

    def _block(self, m: Module, p: str, b: int, site: dict) -> None:
        vit, link = self._vit, self.link
        pipe = self._pipeline
        scores, context = (
            SpikeProduct(geo=self.product_geometry(b, kind), pipeline=pipe)
            for kind in ("scores", "context")
        )
        softmax = SoftmaxCore(SoftmaxParams.of_block(vit, b))
        tag = p.replace(".", "_")
        m.submodules[tag + "scores"] = scores
        m.submodules[tag + "context_product"] = context
        m.submodules[tag + "softmax"] = softmax

        link(m, site[p + "norm1"].o, [site[p + f].i for f in "qkv"], p + "norm1")
        link(m, site[p + "q"].o, [scores.x], p + "q")
        link(m, site[p + "k"].o, [scores.y], p + "k")
        link(m, scores.o, [softmax.i], p + "scores")
        link(m, softmax.o, [site[p + "attn"].i], p + "softmax")
        link(m, site[p + "attn"].o, [context.x], p + "attn")
        link(m, site[p + "v"].o, [context.y], p + "v")
        link(m, context.o, [site[p + "context"].i], p + "context_product")
        link(m, site[p + "context"].o, [site[p + "proj"].i], p + "context")
        link(m, site[p + "norm2"].o, [site[p + "fc1"].i], p + "norm2")
        link(m, site[p + "fc1"].o, [site[p + "fc2"].i], p + "fc1")
