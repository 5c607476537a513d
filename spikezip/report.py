"""Co-design reports: resources, fmax, latency, SOPs and energy of a network's RTL, and sweeps.

* resources: :func:`hw.flow.synth.synthesize` (yosys ``stat -json``) per layer core and in total;
* fmax: :func:`hw.flow.synth.place_and_route` on the pin-limited harness around the network core;
* latency: the composed cycle model :mod:`hw.model.network_model` (checked against the RTL's cycle
  stamps in tests/sim/test_network_model.py), one inference at a time from reset; the inter-layer
  FIFOs are sized so that the model is exact (no FIFO fills up on the given inputs);
* SOPs and energy: :func:`sw.energy.count_ops` (spec §4.5), and the ANN MACs for comparison.

A ViT (``ir.transformer.VisionTransformer``) gets the latency part only (:func:`evaluate_vit`,
:class:`ViTReport`): per image from reset, the exact model of the whole ``ViTCore``
(:mod:`hw.model.vit_model`, exact at any FIFO depth, so the design's own FIFOs are modelled), in
µs at a clock the caller gives; its resources and fmax are not evaluated here (synthesising the
whole digits ViT takes about 20 minutes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikezip.hw.model.design import DesignParams
from spikezip.ir import Network
from spikezip.ir._io import atomic_write, atomic_write_text

__all__ = [
    "DesignPoint",
    "Latency",
    "PlaceRoute",
    "Report",
    "Resources",
    "Synthesis",
    "ViTReport",
    "evaluate",
    "evaluate_vit",
    "model_latency",
    "pareto",
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

    def params(self, network: Network, *, fifo_depth: int | None = None) -> DesignParams:
        """The validated parameters of this point for ``network``."""
        return DesignParams.of(
            network,
            lanes=self.lanes,
            pipeline=self.pipeline,
            storage=self.storage,
            fifo_depth=fifo_depth,
        )

    @property
    def label(self) -> str:
        """``P=<lanes>``, then the storage and ``d<pipeline>`` when not the defaults."""
        lanes = self.lanes if isinstance(self.lanes, int) else ",".join(map(str, self.lanes))
        return (
            f"P={lanes}"
            + (f" {self.storage}" if self.storage else "")
            + (f" d{self.pipeline}" if self.pipeline != 1 else "")
        )


REPORT_KIND = "spikezip-report"
REPORT_VERSION = 1
VIT_REPORT_KIND = "spikezip-vit-report"
VIT_REPORT_VERSION = 1


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

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Synthesis:
        return cls(
            target=d["target"],
            total=Resources.from_json(d["total"]),
            layers=tuple(Resources.from_json(r) for r in d["layers"]),
            cells={k: int(v) for k, v in d["cells"].items()},
            seconds=float(d["seconds"]),
        )


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Latency per inference (one at a time, from reset) from the exact composed cycle model."""

    cycles_mean: float
    cycles_max: int
    cycles_min: int
    fifo_depth: int  #: the FIFO depth the design is built with (no FIFO fills: model exact)
    fifo_peak: int  #: the deepest any inter-layer FIFO got
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

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlaceRoute:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


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


@dataclass(frozen=True, kw_only=True)
class ViTReport:
    """Latency of one design point of a ViT's RTL (``hw.cores.vit_core.ViTCore``) from the exact
    model of the whole top; JSON with kind + version. Resources and fmax are not evaluated."""

    network: str
    point: DesignPoint
    product_lanes: int
    sites: int
    latency: Latency  #: per image from reset; µs at :attr:`fmax_mhz` when given
    fmax_mhz: float | None  #: the clock the µs figures are at (given, not measured)
    samples: int
    steps_mean: float
    backpressure: bool  #: some FIFO made its producer wait in some image (included above)
    busiest: str  #: the core with the most busy cycles per image (``hw.model.vit_model``)
    busiest_cycles: float  #: ... its busy cycles per image, mean over the samples

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["point"]["label"] = self.point.label
        return {"kind": VIT_REPORT_KIND, "version": VIT_REPORT_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ViTReport:
        if d.get("kind") != VIT_REPORT_KIND or d.get("version") != VIT_REPORT_VERSION:
            raise ValueError(
                f"not a {VIT_REPORT_KIND} version {VIT_REPORT_VERSION} record "
                f"(kind {d.get('kind')!r}, version {d.get('version')!r})"
            )
        point, lanes = d["point"], d["point"]["lanes"]
        return cls(
            point=DesignPoint(
                lanes=lanes if isinstance(lanes, int) else tuple(lanes),
                storage=point["storage"],
                pipeline=point["pipeline"],
            ),
            latency=Latency.from_json(d["latency"]),
            **{f.name: d[f.name] for f in fields(cls) if f.name not in ("point", "latency")},
        )


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
) -> Latency:
    """Latency per inference (one at a time, from reset) from the composed cycle model.

    ``params`` (or ``lanes`` and ``pipeline``; not both) are the network core's; their FIFO depth
    is not used: the depth is the smallest power of two ≥ the default (``n_out + 2``) that no
    inference fills, so the model is the RTL's exact schedule.
    """
    from spikezip.hw.model.network_model import network_schedule

    params = replace(
        DesignParams.coerce(network, params, lanes=lanes, pipeline=pipeline), fifo_depth=None
    )
    lat, peaks = [], []
    for b in range(inputs.shape[0]):
        s = network_schedule(network, inputs[b : b + 1], trace.select([b]), params)
        lat.append(int(s.latency[0]))
        peaks.append(max(s.fifo_peak, default=0))
    default = max((layer.n_out + 2 for layer in network.layers[:-1]), default=2)
    depth = max(default, _pow2(max(peaks, default=0)))
    lat = np.array(lat)
    return Latency(
        cycles_mean=float(lat.mean()),
        cycles_max=int(lat.max()),
        cycles_min=int(lat.min()),
        fifo_depth=int(depth),
        fifo_peak=int(max(peaks, default=0)),
    )


def evaluate_vit(
    vit: Any,
    inputs: np.ndarray,
    point: DesignPoint,
    *,
    product_lanes: int | None = None,
    fmax_mhz: float | None = None,
    trace=None,
) -> ViTReport:
    """The latency of one design point of a ViT: each image alone from reset through the exact
    model of ``ViTCore`` (:func:`hw.model.vit_model.vit_schedule`) with the design's FIFOs (one
    step of the producer deep), in cycles and, at ``fmax_mhz``, in µs."""
    from spikezip.hw.model.vit_model import vit_schedule
    from spikezip.sw.vit.reference import simulate

    if fmax_mhz is not None and not (isinstance(fmax_mhz, int | float) and fmax_mhz > 0):
        raise ValueError(f"fmax_mhz must be a positive number, not {fmax_mhz!r}")
    trace = trace if trace is not None else simulate(vit, inputs)
    params = point.params(vit)
    lat, need, depth, waited, busy = [], 0, 0, False, {}
    for b in range(inputs.shape[0]):
        s = vit_schedule(vit, inputs[b : b + 1], trace.select([b]), params,
                         product_lanes=product_lanes)  # fmt: skip
        lat.append(int(s.latency[0]))
        need = max(need, max(min(f.need, f.depth) for f in s.fifos))
        depth = max(depth, max(f.depth for f in s.fifos))
        waited |= s.backpressure
        for ld in s.loads:
            busy[ld.name] = busy.get(ld.name, 0) + ld.work
    lat = np.array(lat)
    latency = Latency(
        cycles_mean=float(lat.mean()),
        cycles_max=int(lat.max()),
        cycles_min=int(lat.min()),
        fifo_depth=int(depth),
        fifo_peak=int(need),
    )
    if fmax_mhz is not None:
        latency = latency.at(float(fmax_mhz))
    top = max(busy, key=busy.get)
    return ViTReport(
        network=vit.name or "vit",
        point=point,
        product_lanes=vit.tokens if product_lanes is None else int(product_lanes),
        sites=len(vit.sites),
        latency=latency,
        fmax_mhz=None if fmax_mhz is None else float(fmax_mhz),
        samples=int(inputs.shape[0]),
        steps_mean=float(np.asarray(trace.steps).mean()),
        backpressure=bool(waited),
        busiest=top,
        busiest_cycles=busy[top] / inputs.shape[0],
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
) -> Report:
    """Resources, fmax, latency, SOPs and energy of one design point."""
    from spikezip.hw.cores.network_core import NetworkCore
    from spikezip.hw.flow.synth import place_and_route, synthesize
    from spikezip.hw.flow.verilog import generate
    from spikezip.sw.energy import count_ops
    from spikezip.sw.reference import simulate

    trace = trace if trace is not None else simulate(network, inputs)
    lat = model_latency(network, inputs, trace, point.params(network))
    params = point.params(network, fifo_depth=lat.fifo_depth)

    def core():
        return NetworkCore(network=network, params=params)

    top = core()
    names = [f"spikezip_net.layer{k}" for k in range(network.depth)]
    verilog = generate(top, "spikezip_net")
    synth = {}
    for t in (target, "generic") if generic and target != "generic" else (target,):
        r = synthesize(verilog, "spikezip_net", target=t, keep=names)
        synth[t] = Synthesis(
            target=t,
            total=Resources.from_json(r.total),
            layers=tuple(Resources.from_json(r.modules[n]) for n in names),
            cells=dict(r.cells["spikezip_net"]),
            seconds=round(r.seconds, 1),
        )
    ops = count_ops(network, trace, inputs)
    macs = float(sum(layer.n_in * layer.n_out for layer in network.layers))
    placed = None
    if pnr and target in ("ecp5", "ice40"):
        p = place_and_route(core(), target=target)
        placed = PlaceRoute(
            device=p.device,
            fmax_mhz=round(p.fmax_mhz, 2),
            critical_path=p.critical_path_text,
            utilization=p.utilization,
            seconds=round(p.seconds, 1),
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


def _eval_job(args):
    path, inputs, point, kw = args
    return evaluate(Network.load(path), inputs, point, **kw)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us


def sweep(
    network_path: str | os.PathLike,
    inputs: np.ndarray,
    points: Sequence[DesignPoint],
    *,
    jobs: int | None = None,
    on_done: Callable[[Report], None] | None = None,
    **kw,
) -> list[Report]:
    """:func:`evaluate` every point, in parallel processes (default: one per core).

    On an interrupt (or any error) the pending points are cancelled and the running workers
    are terminated before the exception propagates, so no orphan keeps synthesising.
    """
    from concurrent.futures import as_completed

    jobs = jobs or os.cpu_count() or 1
    results: list[Report | None] = [None] * len(points)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(points)), initializer=_ignore_sigint)
    try:
        futures = {
            pool.submit(_eval_job, (str(network_path), inputs, p, kw)): i
            for i, p in enumerate(points)
        }
        for fut in as_completed(futures):
            results[futures[fut]] = r = fut.result()
            if on_done is not None:
                on_done(r)
    except BaseException:
        workers = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(5)
        raise
    pool.shutdown()
    return [r for r in results if r is not None]


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
    t = s.total
    lines.append(
        f"{'total':<12}{'':>22}{t.lut:>8}{t.carry:>7}{t.ff:>7}{t.bram:>6}{t.dsp:>5}{t.lutram:>8}"
    )
    lat = result.latency
    lines.append(
        f"latency {lat.cycles_mean:.0f} cycles mean / {lat.cycles_max} max "
        f"(exact model, FIFO depth {lat.fifo_depth}, {result.samples} samples, "
        f"{result.steps_mean:.1f} steps)"
    )
    if result.pnr is not None:
        p = result.pnr
        lines.append(
            f"fmax {p.fmax_mhz:.1f} MHz ({p.device}), latency {lat.us_mean:.2f} µs mean "
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


def _vit_table(result: ViTReport) -> str:
    lat = result.latency
    lines = [
        f"{result.network} {result.point.label} (ViT, {result.sites} sites, product lanes "
        f"{result.product_lanes})",
        f"latency {lat.cycles_mean:.0f} cycles mean / {lat.cycles_max} max / {lat.cycles_min} min "
        f"per image from reset (exact ViT model, {result.samples} samples, "
        f"{result.steps_mean:.1f} steps)",
        f"FIFOs: one producer step deep (up to {lat.fifo_depth} entries); "
        + ("backpressure in some image (modelled)" if result.backpressure else "never full"),
        f"busiest core: {result.busiest}, {result.busiest_cycles:.0f} busy cycles per image",
    ]
    if result.fmax_mhz is not None:
        lines.append(
            f"at {result.fmax_mhz:g} MHz (given): {lat.us_mean:.2f} µs mean / {lat.us_max:.2f} "
            "µs max"
        )
    lines.append("resources and fmax: not evaluated for a ViT (whole-ViT synthesis ~20 min)")
    return "\n".join(lines)


def markdown(result: Report | ViTReport) -> str:
    return "# Co-design report\n\n```\n" + table(result) + "\n```\n"


def write_report(result: Report | ViTReport, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory``, each atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "report.json", json.dumps(result.to_json(), indent=2) + "\n")
    atomic_write_text(d / "report.md", markdown(result))
    return d / "report.json", d / "report.md"


def sweep_table(results: Sequence[Report]) -> str:
    """The sweep as a terminal table, Pareto points (LUTs vs latency) starred."""
    front = set(_front(results))
    lines = [
        f"{'design':<22}{'LUT':>8}{'FF':>7}{'BRAM':>6}{'DSP':>5}{'cycles':>9}{'fmax':>8}"
        f"{'µs':>9}  Pareto"
    ]
    nan = float("nan")
    for i, r in enumerate(results):
        t = r.resources.total
        lat = r.latency
        fmax = r.pnr.fmax_mhz if r.pnr is not None else nan
        lines.append(
            f"{r.point.label:<22}{r.luts:>8}{t.ff:>7}{t.bram:>6}{t.dsp:>5}"
            f"{lat.cycles_mean:>9.0f}{fmax:>8.1f}"
            f"{lat.us_mean if lat.us_mean is not None else nan:>9.2f}  "
            f"{'*' if i in front else ''}"
        )
    return "\n".join(lines)


def write_sweep(results: Sequence[Report], directory: str | os.PathLike) -> tuple[Path, ...]:
    """Write ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``directory``, each atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    front = plot_sweep(results, d / "sweep.png")
    record = {"results": [r.to_json() for r in results], "pareto": front}
    atomic_write_text(d / "sweep.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(
        d / "sweep.md", "# Design-space sweep\n\n```\n" + sweep_table(results) + "\n```\n"
    )
    return d / "sweep.json", d / "sweep.md", d / "sweep.png"


def _latency_axis(results: Sequence[Report]) -> tuple[list[float], bool]:
    use_us = all(r.latency.us_mean is not None for r in results)
    return [r.latency.us_mean if use_us else r.latency.cycles_mean for r in results], use_us


def _front(results: Sequence[Report]) -> list[int]:
    ys, _ = _latency_axis(results)
    return pareto(list(zip((r.luts for r in results), ys, strict=True)))


def plot_sweep(results: Sequence[Report], path: str | os.PathLike) -> list[int]:
    """LUTs vs latency, Pareto front marked; returns the front's indices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.luts for r in results]
    ys, use_us = _latency_axis(results)
    front = _front(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys, color="tab:blue", label="design points")
    f = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in f], [ys[i] for i in f], "o-", color="tab:red", label="Pareto front")
    for x, y, r in zip(xs, ys, results, strict=True):
        ax.annotate(r.point.label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("LUT4 (+2 per carry cell, +4 per LUT-RAM)")
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
