"""Co-design reports: resources, fmax, latency, SOPs and energy of a network's RTL, and sweeps.

* resources: :func:`hw.flow.synth.synthesize` (yosys ``stat -json``) per layer core and in total;
* fmax: :func:`hw.flow.synth.place_and_route` on the pin-limited harness around the network core;
* latency: the composed cycle model :mod:`hw.model.network_model` (checked against the RTL's cycle
  stamps in tests/sim/test_network_model.py), one inference at a time from reset; the inter-layer
  FIFOs are sized so that the model is exact (no FIFO fills up on the given inputs);
* SOPs and energy: :func:`sw.energy.count_ops` (spec §4.5), and the ANN MACs for comparison.

A ViT (``ir.transformer.VisionTransformer``) gets :func:`evaluate_vit` (:class:`ViTReport`):
latency per image alone and back to back from the exact model of the whole ``ViTCore``
(:mod:`hw.model.vit_model`, exact at any FIFO depth, so the design's own FIFOs are modelled),
accumulate-phase lane utilization, SOPs and energy (:func:`sw.vit.energy.count_ops`), and (opt-in
in the API, the CLI's default) resources per core from one synthesis with every core kept
separate, placed and routed on the ECP5-85k from the same netlist (the whole digits ViT takes
tens of minutes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spikezip.hw.model.design import DesignParams
from spikezip.ir import Network
from spikezip.ir._io import atomic_write, atomic_write_text
from spikezip.ir.transformer import VisionTransformer

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DesignPoint",
    "Latency",
    "PlaceRoute",
    "PointFailure",
    "Report",
    "Resources",
    "Synthesis",
    "ViTReport",
    "evaluate",
    "evaluate_vit",
    "model_latency",
    "pareto",
    "sweep",
    "sweep_row",
    "sweep_table",
    "write_report",
    "write_sweep",
]

E_MAC_PJ = 4.6


@dataclass(frozen=True)
class DesignPoint:
    """One point of a sweep or report as the user asked for it (lanes as given, for the label).

    :meth:`params` checks it against a network into the
    :class:`hw.model.design.DesignParams` every consumer takes.
    """

    lanes: int | tuple[int, ...]
    storage: str | None = None  #: ``registers``, ``memory`` or None (by size)
    pipeline: int = 1  #: pipeline depth of the layer cores (:data:`hw.model.cycle_model.PIPELINES`)
    #: spikes per beat between an MLP's layer cores (:attr:`DesignParams.emit_width`)
    emit_width: int = 1

    def params(self, network: Network, *, fifo_depth: int | None = None) -> DesignParams:
        """The validated parameters of this point for ``network``."""
        return DesignParams.of(
            network,
            lanes=self.lanes,
            pipeline=self.pipeline,
            storage=self.storage,
            fifo_depth=fifo_depth,
            emit_width=self.emit_width,
        )

    @property
    def label(self) -> str:
        """``P=<lanes>``, then the storage and ``d<pipeline>`` when not the defaults."""
        lanes = self.lanes if isinstance(self.lanes, int) else ",".join(map(str, self.lanes))
        return (
            f"P={lanes}"
            + (f" {self.storage}" if self.storage else "")
            + (f" d{self.pipeline}" if self.pipeline != 1 else "")
            + (f" k{self.emit_width}" if self.emit_width != 1 else "")
        )


REPORT_KIND = "spikezip-report"
REPORT_VERSION = 1
VIT_REPORT_KIND = "spikezip-vit-report"
VIT_REPORT_VERSION = 3


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Cells of a synthesised design by class (``hw.flow.synth.RESOURCES``)."""

    lut: int = 0
    carry: int = 0
    ff: int = 0
    bram: int = 0
    dsp: int = 0
    lutram: int = 0
    mux: int = 0
    other: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Resources:
        return cls(**{f.name: int(d.get(f.name, 0)) for f in fields(cls)})

    def lut4(self, target: str) -> int:
        """LUT4s including the two per carry cell on ECP5 and four per LUT-RAM."""
        return self.lut + (2 * self.carry if target == "ecp5" else 0) + 4 * self.lutram


@dataclass(frozen=True, kw_only=True)
class Synthesis:
    """Yosys ``stat -json`` of the whole design and of each layer core."""

    target: str
    total: Resources
    layers: tuple[Resources, ...]
    cells: dict[str, int]  #: the top module's raw cell histogram
    seconds: float
    fifos: tuple[Resources, ...] = ()  #: each inter-layer FIFO (``fifo0``, …)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Synthesis:
        return cls(
            target=d["target"],
            total=Resources.from_json(d["total"]),
            layers=tuple(Resources.from_json(r) for r in d["layers"]),
            fifos=tuple(Resources.from_json(r) for r in d.get("fifos", ())),
            cells={k: int(v) for k, v in d["cells"].items()},
            seconds=float(d["seconds"]),
        )


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Latency per inference (one at a time, from reset) from the exact composed cycle model."""

    cycles_mean: float
    cycles_max: int
    cycles_min: int
    #: the FIFO depth the design is built with: the smallest power of two no inference fills,
    #: or the user's (``--fifo-depth``); the model is exact at any depth
    fifo_depth: int
    #: the fewest entries with which no inter-layer FIFO would fill (the model's need)
    fifo_peak: int
    #: cycles per inference with every input streamed back to back (``total cycles / samples``)
    #: at ``fifo_depth``: where a shallow FIFO costs (layer 0 cannot run ahead)
    back_to_back_cycles: float | None = None
    us_mean: float | None = None  #: at the placed-and-routed fmax, when known
    us_max: float | None = None

    def at(self, fmax_mhz: float) -> Latency:
        """The same latency with the times at ``fmax_mhz``."""
        return replace(self, us_mean=self.cycles_mean / fmax_mhz, us_max=self.cycles_max / fmax_mhz)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Latency:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class PlaceRoute:
    """What nextpnr achieved on the pin-limited harness."""

    device: str
    fmax_mhz: float
    critical_path: str
    utilization: dict[str, dict[str, int]]
    seconds: float
    seed: int = 1  #: nextpnr's seed
    #: nextpnr's ``--placer-heap-timingweight`` (reports written before it was recorded: 10)
    timing_weight: int = 10

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlaceRoute:
        given = [f.name for f in fields(cls) if f.name in d or f.default is MISSING]
        return cls(**{name: d[name] for name in given})

    @property
    def run(self) -> str:
        """The device and nextpnr's settings, as a report prints them."""
        return f"{self.device}, nextpnr seed {self.seed}, timing weight {self.timing_weight}"


@dataclass(frozen=True, kw_only=True)
class LayerInfo:
    """One layer core as built."""

    name: str
    n_in: int
    n_out: int
    lanes: int
    words: int
    storage: str
    pipeline: int


@dataclass(frozen=True, kw_only=True)
class Report:
    """Resources, fmax, latency, SOPs and energy of one design point; JSON with kind + version."""

    network: str
    point: DesignPoint
    target: str
    layers: tuple[LayerInfo, ...]
    synthesis: dict[str, Synthesis]  #: per target synthesised (the target, maybe ``generic``)
    latency: Latency
    samples: int
    steps_mean: float
    sops_per_inference: float
    energy_nj_per_inference: float
    ann_macs_per_inference: float
    ann_energy_nj_per_inference: float
    neurons: int
    synapses: int
    pnr: PlaceRoute | None = None

    @property
    def resources(self) -> Synthesis:
        """The synthesis for :attr:`target`."""
        return self.synthesis[self.target]

    @property
    def luts(self) -> int:
        """The LUT figure of the design (:meth:`Resources.lut4` of the total)."""
        return self.resources.total.lut4(self.target)

    @property
    def sops_per_second(self) -> float | None:
        """Synaptic operations per second at fmax (None without place and route)."""
        if self.latency.us_mean is None:
            return None
        return self.sops_per_inference / (self.latency.us_mean * 1e-6)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["point"]["label"] = self.point.label
        d["sops_per_second"] = self.sops_per_second
        return {"kind": REPORT_KIND, "version": REPORT_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Report:
        if d.get("kind") != REPORT_KIND or d.get("version") != REPORT_VERSION:
            raise ValueError(
                f"not a {REPORT_KIND} version {REPORT_VERSION} record "
                f"(kind {d.get('kind')!r}, version {d.get('version')!r})"
            )
        point = d["point"]
        lanes = point["lanes"]
        return cls(
            network=d["network"],
            point=DesignPoint(
                lanes=lanes if isinstance(lanes, int) else tuple(lanes),
                storage=point["storage"],
                pipeline=point["pipeline"],
                emit_width=point.get("emit_width", 1),
            ),
            target=d["target"],
            layers=tuple(LayerInfo(**info) for info in d["layers"]),
            synthesis={t: Synthesis.from_json(v) for t, v in d["synthesis"].items()},
            latency=Latency.from_json(d["latency"]),
            pnr=PlaceRoute.from_json(d["pnr"]) if d.get("pnr") else None,
            **{
                f.name: d[f.name]
                for f in fields(cls)
                if f.name
                not in ("network", "point", "target", "layers", "synthesis", "latency", "pnr")
            },
        )


#: the kinds of a ViT top's cores, by the submodule names ``ViTCore`` gives them (first match)
VIT_CORE_KINDS = (
    ("FIFOs", lambda n: "_fifo" in n),
    ("broadcasts", lambda n: n.endswith("_fork")),
    ("LayerNorm", lambda n: n.startswith("ln_")),
    ("residual stages", lambda n: n.startswith("stage_")),
    ("softmax", lambda n: n.endswith("_softmax")),
    ("products", lambda n: n.endswith(("_scores", "_context_product"))),
    ("site cores", lambda n: n.startswith("site_")),
)


def vit_core_kind(name: str) -> str:
    """The kind of a ``ViTCore`` submodule (:data:`VIT_CORE_KINDS`), ``other`` if none."""
    return next((kind for kind, match in VIT_CORE_KINDS if match(name)), "other")


@dataclass(frozen=True, kw_only=True)
class ViTSynthesis:
    """Yosys ``stat -json`` of a ViT top (``ViTCore``): the whole top and every core, kept
    separate through synthesis; ``kinds`` sums the cores by :func:`vit_core_kind` and holds the
    top's own glue as ``other``."""

    target: str
    total: Resources  #: the ViT top (the place-and-route harness's registers excluded)
    cores: dict[str, Resources]  #: per ``ViTCore`` submodule name
    kinds: dict[str, Resources]
    seconds: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ViTSynthesis:
        return cls(
            target=d["target"],
            total=Resources.from_json(d["total"]),
            cores={k: Resources.from_json(v) for k, v in d["cores"].items()},
            kinds={k: Resources.from_json(v) for k, v in d["kinds"].items()},
            seconds=float(d["seconds"]),
        )


def _vit_synthesis(target: str, total: dict, modules: dict[str, dict], seconds: float):
    """A :class:`ViTSynthesis` from a synthesis whose kept modules are the top's children."""
    cores = {name.rsplit(".", 1)[-1]: Resources.from_json(r) for name, r in modules.items()}
    kinds: dict[str, dict[str, int]] = {}
    for name, r in cores.items():
        acc = kinds.setdefault(vit_core_kind(name), dict.fromkeys(asdict(r), 0))
        for k, v in asdict(r).items():
            acc[k] += v
    glue = {k: v - sum(kd[k] for kd in kinds.values()) for k, v in total.items()}
    kinds["other"] = {k: kinds.get("other", {}).get(k, 0) + glue[k] for k in glue}
    return ViTSynthesis(
        target=target,
        total=Resources.from_json(total),
        cores=cores,
        kinds={k: Resources.from_json(v) for k, v in kinds.items()},
        seconds=round(seconds, 1),
    )


@dataclass(frozen=True, kw_only=True)
class ViTReport:
    """One design point of a ViT's RTL (``hw.cores.vit_core.ViTCore``): latency per image alone
    and back to back from the exact model of the whole top, resources per core and in total,
    fmax, SOPs and energy per image; JSON with kind + version."""

    network: str
    point: DesignPoint
    product_lanes: int  #: 0 for a CNN (no products)
    layer_norm_units: int | None = None  #: rounding units per LayerNorm (None: full rate)
    sites: int
    fifo_depths: dict[str, int]  #: FIFOs set by name (the rest follow the FIFO plan)
    latency: Latency  #: per image alone, from reset; µs at :attr:`fmax_mhz` when known
    back_to_back_cycles: float  #: cycles per image, the first samples back to back
    #: the samples run back to back (the first ones; :data:`VIT_BACK_TO_BACK`)
    back_to_back_samples: int
    fmax_mhz: float | None  #: placed and routed (:attr:`pnr`), or the clock the caller gave
    samples: int
    steps_mean: float
    backpressure: bool  #: some FIFO made its producer wait (alone or back to back; modelled)
    busiest: str  #: the core with the most busy cycles per image (``hw.model.vit_model``)
    busiest_cycles: float  #: ... its busy cycles per image, back to back
    #: accumulate-phase lane utilization back to back, ops-weighted over the cores of a kind
    #: (``linear`` site cores, ``product`` cores), and the lowest single core of each
    utilization: dict[str, float]
    sops_per_image: float
    energy_nj_per_image: float
    ann_macs_per_image: float
    ann_energy_nj_per_image: float
    synthesis: ViTSynthesis | None = None
    pnr: PlaceRoute | None = None
    pnr_error: str | None = None  #: why place and route gave no fmax (e.g. it does not fit)

    @property
    def images_per_second(self) -> float | None:
        """Back-to-back throughput at :attr:`fmax_mhz` (None without a clock)."""
        if self.fmax_mhz is None:
            return None
        return self.fmax_mhz * 1e6 / self.back_to_back_cycles

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["point"]["label"] = self.point.label
        d["images_per_second"] = self.images_per_second
        return {"kind": VIT_REPORT_KIND, "version": VIT_REPORT_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ViTReport:
        if d.get("kind") != VIT_REPORT_KIND or d.get("version") != VIT_REPORT_VERSION:
            raise ValueError(
                f"not a {VIT_REPORT_KIND} version {VIT_REPORT_VERSION} record "
                f"(kind {d.get('kind')!r}, version {d.get('version')!r})"
            )
        point, lanes = d["point"], d["point"]["lanes"]
        special = ("point", "latency", "synthesis", "pnr", "layer_norm_units")
        return cls(
            point=DesignPoint(
                lanes=lanes if isinstance(lanes, int) else tuple(lanes),
                storage=point["storage"],
                pipeline=point["pipeline"],
            ),
            latency=Latency.from_json(d["latency"]),
            synthesis=ViTSynthesis.from_json(d["synthesis"]) if d.get("synthesis") else None,
            pnr=PlaceRoute.from_json(d["pnr"]) if d.get("pnr") else None,
            layer_norm_units=d.get("layer_norm_units"),  # absent from session-8 records
            **{f.name: d[f.name] for f in fields(cls) if f.name not in special},
        )

    # the sweep's table and plot read these as they read a Report's
    @property
    def luts(self) -> int | None:
        s = self.synthesis
        return None if s is None else s.total.lut4(s.target)


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def model_latency(
    network: Network,
    inputs: np.ndarray,
    trace,
    params: DesignParams | None = None,
    *,
    lanes: int | Sequence[int] | None = None,
    pipeline: int | None = None,
    fifo_depth: int | None = None,
) -> Latency:
    """Latency per inference (one at a time, from reset) from the composed cycle model, exact at
    any FIFO depth (:mod:`hw.model.network_model`).

    ``params`` (or ``lanes`` and ``pipeline``; not both) are the network core's; their FIFO depth
    is not used. The depth is ``fifo_depth`` when given, else the default: the smallest power of
    two ≥ ``n_out + 2`` that no inference fills (every FIFO's
    :attr:`~hw.model.fifo_model.FifoCheck.need`, from the model: a smaller depth makes some
    inference wait, ``bench/bench_fifo_depth.py``). Also the cycles per inference with all
    ``inputs`` back to back at that depth (:attr:`Latency.back_to_back_cycles`), where a shallow
    FIFO costs most.
    """
    from spikezip.hw.model.network_model import network_schedule

    params = replace(
        DesignParams.coerce(network, params, lanes=lanes, pipeline=pipeline), fifo_depth=None
    )
    peaks = []
    for b in range(inputs.shape[0]):
        s = network_schedule(network, inputs[b : b + 1], trace.select([b]), params)
        peaks.append(max(s.fifo_peak, default=0))
    default = max((layer.n_out + 2 for layer in network.layers[:-1]), default=2)
    depth = max(default, _pow2(max(peaks, default=0))) if fifo_depth is None else fifo_depth
    params = replace(params, fifo_depth=depth).checked(network)
    lat = []
    for b in range(inputs.shape[0]):
        s = network_schedule(network, inputs[b : b + 1], trace.select([b]), params)
        lat.append(int(s.latency[0]))
    lat = np.array(lat)
    b2b = network_schedule(network, inputs, trace, params).total_cycles / max(1, inputs.shape[0])
    return Latency(
        back_to_back_cycles=float(b2b),
        cycles_mean=float(lat.mean()),
        cycles_max=int(lat.max()),
        cycles_min=int(lat.min()),
        fifo_depth=int(depth),
        fifo_peak=int(max(peaks, default=0)),
    )


#: ECP5 device a ViT is placed on by default (the digits ViT is over the 25k's 24k LUTs)
VIT_DEVICE = "85k"
#: images a ViT's back-to-back exact model runs by default (of the samples): the composition's
#: passes grow with the images (a stall that fills a FIFO settles one FIFO-full of beats per
#: pass), so its cost grows faster than their square: 1, 3, 5 images 1.6, 38, 160 s of CPU
#: (docs/performance.md, "The ViT's exact model and many images"); a CNN and an MLP run all
#: samples
VIT_BACK_TO_BACK = 3
ECP5_DEVICES = ("25k", "45k", "85k")


def device_args(target: str, device: str | None) -> list[str] | None:
    """nextpnr's device arguments for an ECP5 ``device`` (``25k``, ``45k``, ``85k``; CABGA381),
    None for the target's default."""
    if device is None:
        return None
    if target != "ecp5" or device not in ECP5_DEVICES:
        raise ValueError(f"device must be one of {', '.join(ECP5_DEVICES)} (ECP5), not {device!r}")
    return [f"--{device}", "--package", "CABGA381"]


def evaluate_vit(
    vit: Any,
    inputs: np.ndarray,
    point: DesignPoint,
    *,
    product_lanes: int | None = None,
    layer_norm_units: int | None = None,
    fifo_depths: Any = (),
    fmax_mhz: float | None = None,
    trace=None,
    synth: bool = False,
    pnr: bool = False,
    target: str = "ecp5",
    device: str | None = VIT_DEVICE,
    on_stage: Callable[[str], None] | None = None,
    pnr_time_limit: float | None = None,
    pnr_seed: int = 1,
    timing_weight: int | None = None,
    back_to_back: int | None = None,
) -> ViTReport:
    """One design point of a site-graph top (:class:`ViTReport`): a ViT (``ViTCore``) or a CNN
    (``ir.cnn.ConvNet``: ``CnnCore``, ``product_lanes`` and ``layer_norm_units`` not given).

    * latency: each image alone from reset, and the images back to back, through the exact
      model of the top (:func:`hw.model.vit_model.vit_schedule`,
      :func:`hw.model.cnn_model.cnn_schedule`) with the design's FIFOs (the FIFO plan,
      ``fifo_depths`` by name); back to back the first ``back_to_back`` images (default: a
      ViT's first :data:`VIT_BACK_TO_BACK`, a CNN's all);
    * ``synth``: resources of the top and of every core (kept separate through synthesis);
    * ``pnr`` (ECP5 or iCE40): place and route of the top in the pin-limited harness on
      ``device`` (default the 85k), from the same synthesis, with nextpnr's ``pnr_seed`` and
      ``timing_weight`` (:func:`hw.flow.synth.place_and_route`); its fmax sets the µs and
      images/s. Without it, ``fmax_mhz`` (a clock the caller gives) does;
    * SOPs and energy per image: :func:`sw.vit.energy.count_ops`, :func:`sw.cnn.energy.count_ops`.
    """
    from spikezip.ir.cnn import ConvNet

    if isinstance(vit, ConvNet):
        from spikezip.hw.cores.cnn_core import CnnCore as Top
        from spikezip.hw.model.cnn_model import cnn_schedule as schedule
        from spikezip.sw.cnn.energy import count_ops
        from spikezip.sw.cnn.reference import simulate

        def make_top(params: DesignParams):
            return Top(net=vit, params=params)

        kinds = ("conv", "pool", "linear")
    else:
        from spikezip.hw.cores.vit_core import ViTCore as Top
        from spikezip.hw.model.vit_model import vit_schedule as schedule
        from spikezip.sw.vit.energy import count_ops
        from spikezip.sw.vit.reference import simulate

        def make_top(params: DesignParams):
            return Top(vit=vit, params=params)

        kinds = ("linear", "product")

    if fmax_mhz is not None and not (isinstance(fmax_mhz, int | float) and fmax_mhz > 0):
        raise ValueError(f"fmax_mhz must be a positive number, not {fmax_mhz!r}")
    if pnr and fmax_mhz is not None:
        raise ValueError("give fmax_mhz or pnr, not both (place and route measures fmax)")
    if pnr and target not in ("ecp5", "ice40"):
        raise ValueError(f"place and route targets are ecp5 and ice40, not {target!r}")
    dev_args = device_args(target, device) if pnr and target == "ecp5" else None
    stage = on_stage or (lambda text: None)
    params = replace(
        point.params(vit),
        fifo_depths=fifo_depths,
        product_lanes=product_lanes,
        layer_norm_units=layer_norm_units,
    ).checked(vit)
    if back_to_back is not None and (
        isinstance(back_to_back, bool) or not isinstance(back_to_back, int) or back_to_back < 1
    ):
        raise ValueError(f"back_to_back must be a positive integer, not {back_to_back!r}")
    stage("reference trace")
    trace = trace if trace is not None else simulate(vit, inputs)
    n = inputs.shape[0]
    if back_to_back is None:
        back_to_back = n if isinstance(vit, ConvNet) else VIT_BACK_TO_BACK
    chain = min(n, back_to_back)
    stage(f"exact model, {n} images alone")
    lat, need, depth, waited = [], 0, 0, False
    for b in range(n):
        s = schedule(vit, inputs[b : b + 1], trace.select([b]), params)
        lat.append(int(s.latency[0]))
        need = max(need, max(min(f.need, f.depth) for f in s.fifos))
        depth = max(depth, max(f.depth for f in s.fifos))
        waited |= s.backpressure
    stage(f"exact model, {chain} images back to back")
    run = schedule(vit, inputs[:chain], trace.select(list(range(chain))), params)
    waited |= run.backpressure
    busy = {ld.name: ld.work for ld in run.loads}
    top = max(busy, key=busy.get)
    util: dict[str, float] = {}
    for kind in kinds:
        lds = [ld for ld in run.loads if ld.kind == kind and ld.lanes and ld.accumulate]
        if lds:
            util[kind] = sum(ld.ops for ld in lds) / sum(ld.lanes * ld.accumulate for ld in lds)
            util[f"{kind} lowest"] = min(ld.accumulate_utilization for ld in lds)
    lat = np.array(lat)
    latency = Latency(
        cycles_mean=float(lat.mean()),
        cycles_max=int(lat.max()),
        cycles_min=int(lat.min()),
        fifo_depth=int(depth),
        fifo_peak=int(need),
    )
    ops = count_ops(vit, trace, inputs)
    if isinstance(vit, ConvNet):
        from spikezip.sw.cnn.energy import dense_macs
        from spikezip.sw.energy import E_MAC_PJ

        ann_macs = float(dense_macs(vit).sum())
        ann_pj = E_MAC_PJ * ann_macs
    else:
        ann_macs, ann_pj = float(ops.ann_macs), float(ops.ann_energy_pj)
    synthesis = placed = pnr_error = None
    if synth or pnr:
        from spikezip.hw.flow.synth import PlaceRouteError, place_and_route, synthesize
        from spikezip.hw.flow.verilog import generate

        def core():
            return make_top(params)

        if pnr:
            stage(f"synthesis and place and route ({target} {device or ''})".replace(" )", ")"))
            keep = ("harness.dut", "harness.dut.*")
            try:
                p = place_and_route(
                    core(), target=target, device_args=dev_args, keep=keep,
                    time_limit=pnr_time_limit, seed=pnr_seed, timing_weight=timing_weight,
                )  # fmt: skip
            except PlaceRouteError as e:  # synthesised, but it did not place: say so, keep counts
                p, synthesized = None, e.synth
                if e.misfit:  # (any other failure, a stopped nextpnr too, is not a misfit)
                    what = f"more {e.misfit} than the device has"
                    pnr_error = f"does not fit the {target} {e.device}: {what}"
                else:
                    pnr_error = f"failed on the {target} {e.device}: {e}"
            else:
                synthesized = p.synth
            mods = dict(synthesized.modules)
            total = mods.pop("harness.dut")
            synthesis = _vit_synthesis(target, total, mods, synthesized.seconds)
            if p is not None:
                placed = PlaceRoute(
                    device=p.device,
                    fmax_mhz=round(p.fmax_mhz, 2),
                    critical_path=p.critical_path_text,
                    utilization=p.utilization,
                    seconds=round(p.seconds, 1),
                    seed=p.seed,
                    timing_weight=p.timing_weight,
                )
                fmax_mhz = placed.fmax_mhz
        else:
            stage(f"synthesis ({target})")
            r = synthesize(
                generate(core(), "spikezip_net"), "spikezip_net", target=target,
                keep=("spikezip_net.*",),
            )  # fmt: skip
            synthesis = _vit_synthesis(target, r.total, r.modules, r.seconds)
    if fmax_mhz is not None:
        latency = latency.at(float(fmax_mhz))
    return ViTReport(
        network=vit.name or ("cnn" if isinstance(vit, ConvNet) else "vit"),
        point=point,
        product_lanes=0
        if isinstance(vit, ConvNet)
        else vit.tokens
        if params.product_lanes is None
        else params.product_lanes,
        layer_norm_units=params.layer_norm_units,
        sites=len(vit.sites),
        fifo_depths=dict(params.fifo_depths),
        latency=latency,
        back_to_back_cycles=run.total_cycles / chain,
        back_to_back_samples=int(chain),
        fmax_mhz=None if fmax_mhz is None else float(fmax_mhz),
        samples=int(n),
        steps_mean=float(np.asarray(trace.steps).mean()),
        backpressure=bool(waited),
        busiest=top,
        busiest_cycles=busy[top] / chain,
        utilization=util,
        sops_per_image=float(ops.sops.mean()),
        energy_nj_per_image=float(ops.energy_pj.mean() / 1000),
        ann_macs_per_image=ann_macs,
        ann_energy_nj_per_image=ann_pj / 1000,
        synthesis=synthesis,
        pnr=placed,
        pnr_error=pnr_error,
    )


def evaluate(
    network: Network,
    inputs: np.ndarray,
    point: DesignPoint,
    *,
    target: str = "ecp5",
    pnr: bool = True,
    generic: bool = False,
    trace=None,
    device: str | None = None,
    fifo_depth: int | None = None,
    pnr_time_limit: float | None = None,
    pnr_seed: int = 1,
    timing_weight: int | None = None,
) -> Report:
    """Resources, fmax, latency, SOPs and energy of one design point (``device``: an ECP5
    size, :func:`device_args`; default the 25k), its inter-layer FIFOs ``fifo_depth`` deep
    (default: the smallest power of two no inference fills, :func:`model_latency`);
    ``pnr_time_limit``: CPU seconds nextpnr may use, past them a
    :class:`hw.flow.synth.PlaceRouteError` saying so; ``pnr_seed``, ``timing_weight``: nextpnr's
    seed and placer timing weight (:func:`hw.flow.synth.place_and_route`)."""
    from spikezip.hw.cores.network_core import NetworkCore
    from spikezip.hw.flow.synth import place_and_route, synthesize
    from spikezip.hw.flow.verilog import generate
    from spikezip.sw.energy import count_ops
    from spikezip.sw.reference import simulate

    trace = trace if trace is not None else simulate(network, inputs)
    lat = model_latency(network, inputs, trace, point.params(network), fifo_depth=fifo_depth)
    params = point.params(network, fifo_depth=lat.fifo_depth)

    def core():
        return NetworkCore(network=network, params=params)

    top = core()
    names = [f"spikezip_net.layer{k}" for k in range(network.depth)]
    fifos = [f"spikezip_net.fifo{k}" for k in range(network.depth - 1)]
    verilog = generate(top, "spikezip_net")
    synth = {}
    for t in (target, "generic") if generic and target != "generic" else (target,):
        r = synthesize(verilog, "spikezip_net", target=t, keep=names + fifos)
        synth[t] = Synthesis(
            target=t,
            total=Resources.from_json(r.total),
            layers=tuple(Resources.from_json(r.modules[n]) for n in names),
            fifos=tuple(Resources.from_json(r.modules[n]) for n in fifos),
            cells=dict(r.cells["spikezip_net"]),
            seconds=round(r.seconds, 1),
        )
    ops = count_ops(network, trace, inputs)
    macs = float(sum(layer.n_in * layer.n_out for layer in network.layers))
    placed = None
    if pnr and target in ("ecp5", "ice40"):
        p = place_and_route(
            core(),
            target=target,
            device_args=device_args(target, device),
            time_limit=pnr_time_limit,
            seed=pnr_seed,
            timing_weight=timing_weight,
        )
        placed = PlaceRoute(
            device=p.device,
            fmax_mhz=round(p.fmax_mhz, 2),
            critical_path=p.critical_path_text,
            utilization=p.utilization,
            seconds=round(p.seconds, 1),
            seed=p.seed,
            timing_weight=p.timing_weight,
        )
        lat = lat.at(p.fmax_mhz)
    return Report(
        network=network.name or "network",
        point=point,
        target=target,
        layers=tuple(
            LayerInfo(
                name=network.layer_name(k),
                n_in=c.layer.n_in,
                n_out=c.layer.n_out,
                lanes=c.lanes,
                words=c.words,
                storage=str(c.storage.value),
                pipeline=c.pipeline,
            )
            for k, c in enumerate(top.cores)
        ),
        synthesis=synth,
        latency=lat,
        samples=int(inputs.shape[0]),
        steps_mean=float(ops.steps.mean()),
        sops_per_inference=float(ops.sops.mean()),
        energy_nj_per_inference=float(ops.energy_pj.mean() / 1000),
        ann_macs_per_inference=macs,
        ann_energy_nj_per_inference=macs * E_MAC_PJ / 1000,
        neurons=int(sum(layer.n_out for layer in network.layers)),
        synapses=int(sum(layer.n_in * layer.n_out for layer in network.layers)),
        pnr=placed,
    )


@dataclass(frozen=True, kw_only=True)
class PointFailure:
    """A design point of a sweep whose evaluation raised: the error as one line."""

    point: DesignPoint
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"point": {**asdict(self.point), "label": self.point.label}, "error": self.error}


def _eval_job(job: tuple) -> Report | ViTReport:
    network, inputs, point, kw = job
    if isinstance(network, Network):
        return evaluate(network, inputs, point, **kw)
    return evaluate_vit(network, inputs, point, **kw)


def sweep(
    network: Network | VisionTransformer | str | os.PathLike,
    inputs: np.ndarray,
    points: Sequence[DesignPoint],
    *,
    jobs: int | None = None,
    scheduler: str | Client | None = None,
    on_done: Callable[[Report | ViTReport | PointFailure], None] | None = None,
    **kw,
) -> list[Report | ViTReport | PointFailure]:
    """:func:`evaluate` (a ViT: :func:`evaluate_vit`) every point on Dask workers.

    ``scheduler``: an existing cluster's address (or a ``distributed.Client``); by default a
    local cluster of ``jobs`` worker processes (default one per core, at most one per point),
    :func:`spikezip.cluster.dask_client`. ``on_done`` gets each result as it finishes
    (completion order); the list returned is in point order. A point that raises is recorded
    as a :class:`PointFailure` (its error in one line) and the sweep goes on. On an interrupt
    (or any other exception here) the pending points are cancelled and the local cluster is
    closed with its worker processes before the exception propagates, so no orphan keeps
    synthesising.
    """
    from spikezip.cluster import TaskError, dask_client, run_streamed
    from spikezip.ir.files import load_network

    if isinstance(network, str | os.PathLike):
        network = load_network(network)
    points = list(points)

    def recorded(i: int, r: Report | ViTReport | TaskError) -> Report | ViTReport | PointFailure:
        return PointFailure(point=points[i], error=r.error) if isinstance(r, TaskError) else r

    def done(i: int, r: Report | ViTReport | TaskError) -> None:
        if on_done is not None:
            on_done(recorded(i, r))

    workers = min(jobs or os.cpu_count() or 1, max(len(points), 1))
    with dask_client(scheduler, workers=workers) as client:
        tasks = [(network, inputs, p, kw) for p in points]
        results = run_streamed(client, _eval_job, tasks, on_done=done)
    return [recorded(i, r) for i, r in enumerate(results)]


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (smaller is better)."""
    front = []
    for i, (a, b) in enumerate(points):
        if not any(
            (c <= a and d <= b) and (c < a or d < b) for j, (c, d) in enumerate(points) if j != i
        ):
            front.append(i)
    return front


def table(result: Report | ViTReport) -> str:
    """The report as a terminal table."""
    if isinstance(result, ViTReport):
        return _vit_table(result)
    s = result.resources
    lines = [
        f"{result.network} {result.point.label} on {result.target}",
        f"{'layer':<12}{'in':>6}{'out':>6}{'P':>5}{'W':>5}{'LUT4':>8}{'carry':>7}{'FF':>7}"
        f"{'BRAM':>6}{'DSP':>5}{'LUTRAM':>8}",
    ]
    for info, r in zip(result.layers, s.layers, strict=True):
        lines.append(
            f"{info.name:<12}{info.n_in:>6}{info.n_out:>6}{info.lanes:>5}"
            f"{info.words:>5}{r.lut:>8}{r.carry:>7}{r.ff:>7}{r.bram:>6}"
            f"{r.dsp:>5}{r.lutram:>8}"
        )
    lat = result.latency
    for k, r in enumerate(s.fifos):
        lines.append(
            f"{f'fifo{k}':<12}{'':>6}{'':>6}{'':>5}{'':>5}{r.lut:>8}{r.carry:>7}{r.ff:>7}"
            f"{r.bram:>6}{r.dsp:>5}{r.lutram:>8}  ({lat.fifo_depth} entries)"
        )
    t = s.total
    lines.append(
        f"{'total':<12}{'':>22}{t.lut:>8}{t.carry:>7}{t.ff:>7}{t.bram:>6}{t.dsp:>5}{t.lutram:>8}"
    )
    fills = (
        "no inference fills it"
        if lat.fifo_peak <= lat.fifo_depth
        else f"it fills; {lat.fifo_peak} would not"
    )
    lines.append(
        f"latency {lat.cycles_mean:.0f} cycles mean / {lat.cycles_max} max "
        f"(exact model, FIFO depth {lat.fifo_depth}: {fills}; {result.samples} samples, "
        f"{result.steps_mean:.1f} steps)"
    )
    if lat.back_to_back_cycles is not None:
        lines.append(f"back to back {lat.back_to_back_cycles:.0f} cycles per inference")
    if result.pnr is not None:
        p = result.pnr
        lines.append(
            f"fmax {p.fmax_mhz:.1f} MHz ({p.run}), latency {lat.us_mean:.2f} µs mean "
            f"/ {lat.us_max:.2f} µs max, {result.sops_per_second / 1e9:.3f} GSOP/s"
        )
        lines.append(f"critical path: {p.critical_path}")
    lines.append(
        f"SOPs {result.sops_per_inference:.0f}/inference, energy "
        f"{result.energy_nj_per_inference:.2f} nJ (§4.5); "
        f"ANN {result.ann_macs_per_inference:.0f} MACs = "
        f"{result.ann_energy_nj_per_inference:.2f} nJ"
    )
    return "\n".join(lines)


def _resources_row(label: str, r: Resources, target: str, width: int = 18) -> str:
    return (
        f"{label:<{width}}{r.lut4(target):>8}{r.lut:>8}{r.carry:>7}{r.ff:>7}{r.bram:>6}{r.dsp:>5}"
        f"{r.lutram:>8}"
    )


def _resources_header(first: str, width: int = 18) -> str:
    return (
        f"{first:<{width}}{'LUT4*':>8}{'LUT4':>8}{'carry':>7}{'FF':>7}{'BRAM':>6}{'DSP':>5}"
        f"{'LUTRAM':>8}"
    )


def _vit_table(result: ViTReport, *, cores: bool = False) -> str:
    lat = result.latency
    fifos = "the FIFO plan" + (
        f", {len(result.fifo_depths)} set by name" if result.fifo_depths else ""
    )
    if result.product_lanes:
        what = (
            f"ViT, {result.sites} sites, product lanes {result.product_lanes}, LayerNorm units "
            f"{result.layer_norm_units or 'full rate'}"
        )
    else:
        what = f"CNN, {result.sites} sites"
    lines = [f"{result.network} {result.point.label} ({what}, FIFOs: {fifos})"]
    s = result.synthesis
    if s is not None:
        lines.append(_resources_header("cores (" + s.target + ")"))
        for kind, r in s.kinds.items():
            lines.append(_resources_row(kind, r, s.target))
        lines.append(_resources_row("total", s.total, s.target))
        lines.append("(LUT4*: LUT4 + 2 per carry cell + 4 per LUT-RAM)")
        if cores:
            lines.append("")
            lines.append(_resources_header("core", 34))
            for name, r in sorted(s.cores.items()):
                lines.append(_resources_row(name, r, s.target, 34))
            lines.append("")
    lines += [
        f"latency {lat.cycles_mean:.0f} cycles mean / {lat.cycles_max} max / {lat.cycles_min} min "
        f"per image alone (exact {'ViT' if result.product_lanes else 'CNN'} model, "
        f"{result.samples} samples, "
        f"{result.steps_mean:.1f} steps); back to back {result.back_to_back_cycles:.0f} cycles "
        f"per image (the first {result.back_to_back_samples} samples)",
        "FIFO backpressure: "
        + ("in some image (modelled exactly)" if result.backpressure else "none")
        + f"; busiest core {result.busiest}, {result.busiest_cycles:.0f} busy cycles per image",
    ]
    if result.utilization:
        lines.append(
            "accumulate-phase lane utilization back to back: "
            + ", ".join(
                f"{kind} cores {result.utilization[kind]:.1%} (lowest "
                f"{result.utilization[kind + ' lowest']:.1%})"
                for kind in ("conv", "pool", "linear", "product")
                if kind in result.utilization
            )
        )
    if result.pnr is not None:
        p = result.pnr
        lines.append(
            f"fmax {p.fmax_mhz:.1f} MHz ({p.run}, placed and routed): "
            f"{lat.us_mean:.1f} µs mean / {lat.us_max:.1f} µs max per image alone, "
            f"{result.images_per_second:.0f} images/s back to back"
        )
        lines.append(f"critical path: {p.critical_path}")
        used = {
            k: v for k, v in p.utilization.items() if k in ("TRELLIS_SLICE", "DP16KD", "MULT18X18D")
        }
        if used:
            lines.append(
                "device use: "
                + ", ".join(f"{k} {v.get('used')}/{v.get('available')}" for k, v in used.items())
            )
    elif result.fmax_mhz is not None:
        lines.append(
            f"at {result.fmax_mhz:g} MHz (given, not measured): {lat.us_mean:.1f} µs mean / "
            f"{lat.us_max:.1f} µs max per image alone, {result.images_per_second:.0f} images/s "
            "back to back"
        )
    if s is None:
        lines.append("resources and fmax: not evaluated (--no-synth)")
    elif result.pnr_error is not None:
        lines.append(f"place and route: {result.pnr_error} (resources above; try --device)")
    elif result.pnr is None:
        lines.append("fmax: not evaluated (--no-pnr)")
    lines.append(
        f"SOPs {result.sops_per_image:.0f}/image, energy {result.energy_nj_per_image:.2f} nJ "
        f"(§4.5); ANN {result.ann_macs_per_image:.0f} MACs = "
        f"{result.ann_energy_nj_per_image:.2f} nJ"
    )
    return "\n".join(lines)


def markdown(result: Report | ViTReport) -> str:
    text = _vit_table(result, cores=True) if isinstance(result, ViTReport) else table(result)
    return "# Co-design report\n\n```\n" + text + "\n```\n"


def write_report(result: Report | ViTReport, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory``, each atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "report.json", json.dumps(result.to_json(), indent=2) + "\n")
    atomic_write_text(d / "report.md", markdown(result))
    return d / "report.json", d / "report.md"


def _evaluated(results: Sequence[Report | ViTReport | PointFailure]) -> list[Report | ViTReport]:
    return [r for r in results if not isinstance(r, PointFailure)]


def _sweep_header(vit: bool) -> str:
    if vit:
        return (
            f"{'design':<22}{'LUT':>8}{'FF':>7}{'BRAM':>6}{'DSP':>5}{'alone':>9}{'b2b':>9}"
            f"{'fmax':>8}{'µs':>9}{'img/s':>8}  Pareto"
        )
    return (
        f"{'design':<22}{'LUT':>8}{'FF':>7}{'BRAM':>6}{'DSP':>5}{'cycles':>9}{'fmax':>8}"
        f"{'µs':>9}  Pareto"
    )


def sweep_row(r: Report | ViTReport | PointFailure, pareto: bool = False) -> str:
    """One point's line of :func:`sweep_table` (a failed point: its error)."""
    nan = float("nan")
    if isinstance(r, PointFailure):
        return f"{r.point.label:<22}failed: {r.error}"
    if isinstance(r, ViTReport):
        t = r.synthesis.total if r.synthesis is not None else None
        ips = r.images_per_second
        return (
            f"{r.point.label:<22}"
            + (f"{r.luts:>8}{t.ff:>7}{t.bram:>6}{t.dsp:>5}" if t else f"{'-':>8}{'':>18}")
            + f"{r.latency.cycles_mean:>9.0f}{r.back_to_back_cycles:>9.0f}"
            f"{r.fmax_mhz if r.fmax_mhz is not None else nan:>8.1f}"
            f"{r.latency.us_mean if r.latency.us_mean is not None else nan:>9.1f}"
            f"{ips if ips is not None else nan:>8.0f}  {'*' if pareto else ''}"
        )
    t = r.resources.total
    lat = r.latency
    fmax = r.pnr.fmax_mhz if r.pnr is not None else nan
    return (
        f"{r.point.label:<22}{r.luts:>8}{t.ff:>7}{t.bram:>6}{t.dsp:>5}"
        f"{lat.cycles_mean:>9.0f}{fmax:>8.1f}"
        f"{lat.us_mean if lat.us_mean is not None else nan:>9.2f}  "
        f"{'*' if pareto else ''}"
    )


def sweep_table(results: Sequence[Report | ViTReport | PointFailure]) -> str:
    """The sweep as a terminal table, in point order, Pareto points (LUTs, or a ViT's
    back-to-back cycles without synthesis, vs latency) starred; a failed point is a row with
    its error."""
    evaluated = _evaluated(results)
    front = {id(evaluated[i]) for i in _front(evaluated)}
    vit = any(isinstance(r, ViTReport) for r in results)
    lines = [_sweep_header(vit)] + [sweep_row(r, id(r) in front) for r in results]
    if vit:
        lines.append("(alone: cycles per image from reset; b2b: per image back to back)")
    return "\n".join(lines)


def write_sweep(
    results: Sequence[Report | ViTReport | PointFailure], directory: str | os.PathLike
) -> tuple[Path, ...]:
    """Write ``sweep.json``, ``sweep.md`` and (when a point was evaluated; else an old one is
    removed) ``sweep.png`` into ``directory``, each atomically. The JSON's ``results`` are the
    evaluated points (``pareto`` indexes them), ``failed`` the points that failed, each with its
    error."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    evaluated = _evaluated(results)
    written = []
    front = _front(evaluated)
    if evaluated:
        plot_sweep(evaluated, d / "sweep.png")
        written.append(d / "sweep.png")
    else:  # nothing to plot: no stale plot of an earlier sweep beside this one's table
        (d / "sweep.png").unlink(missing_ok=True)
    record = {
        "results": [r.to_json() for r in evaluated],
        "pareto": front,
        "failed": [r.to_json() for r in results if isinstance(r, PointFailure)],
    }
    atomic_write_text(d / "sweep.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(
        d / "sweep.md", "# Design-space sweep\n\n```\n" + sweep_table(results) + "\n```\n"
    )
    return (d / "sweep.json", d / "sweep.md", *written)


def _latency_axis(results: Sequence[Report | ViTReport]) -> tuple[list[float], bool]:
    use_us = all(r.latency.us_mean is not None for r in results)
    return [r.latency.us_mean if use_us else r.latency.cycles_mean for r in results], use_us


def _size_axis(results: Sequence[Report | ViTReport]) -> tuple[list[float], str]:
    """LUTs, or (ViTs without synthesis) cycles per image back to back."""
    if all(r.luts is not None for r in results):
        return [r.luts for r in results], "LUT4 (+2 per carry cell, +4 per LUT-RAM)"
    return [r.back_to_back_cycles for r in results], "cycles per image back to back"


def _front(results: Sequence[Report | ViTReport]) -> list[int]:
    ys, _ = _latency_axis(results)
    xs, _ = _size_axis(results)
    return pareto(list(zip(xs, ys, strict=True)))


def plot_sweep(results: Sequence[Report | ViTReport], path: str | os.PathLike) -> list[int]:
    """LUTs (a ViT without synthesis: back-to-back cycles) vs latency, Pareto front marked;
    returns the front's indices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, xlabel = _size_axis(results)
    ys, use_us = _latency_axis(results)
    front = _front(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys, color="tab:blue", label="design points")
    f = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in f], [ys[i] for i in f], "o-", color="tab:red", label="Pareto front")
    for x, y, r in zip(xs, ys, results, strict=True):
        ax.annotate(r.point.label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency per inference [µs]" if use_us else "latency per inference [cycles]")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)
    return front
