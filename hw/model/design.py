"""The knobs of one network design, validated once against its network (plain Python, no amaranth).

A :class:`DesignParams` is what a user chooses about the hardware of a network: lanes per layer,
the pipeline, where the neuron state lives and the depth of the inter-layer FIFOs. It is built
once — by the command line from its converters, or by :meth:`DesignParams.of` from loose
keywords — and handed down unchanged to every consumer: :class:`hw.cores.network_core.NetworkCore`,
:func:`hw.flow.generate.write_design`, :func:`sim.simulate.design`,
:func:`hw.model.network_model.network_schedule` and the report. Nothing downstream normalises a
knob again; each reads the record's fields.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from spikezip.hw.model.cycle_model import (  # noqa: F401  (PIPELINES: docs)
    MAX_EMIT_WIDTH,
    PIPELINES,
    Pipeline,
)

__all__ = ["DEFAULT_LANES", "DesignParams", "Storage", "resolve_lanes"]

#: ``lanes`` when not given: 8, capped per layer at its neuron count
DEFAULT_LANES = 8

#: version of :meth:`DesignParams.to_json`
PARAMS_VERSION = 1


class Storage(StrEnum):
    """Where a layer's membranes and tracers live (``hw.cores.neuron_array``)."""

    #: one register per word, a read multiplexer, forwarding of the write in flight
    REGISTERS = "registers"
    #: a ``lib.memory.Memory`` with a synchronous read port transparent for its write port
    MEMORY = "memory"


def check_storage(storage: Storage | str | None) -> Storage | None:
    """``storage`` as a :class:`Storage` (``None`` stays ``None``: by size, per layer)."""
    if storage is None:
        return None
    try:
        return Storage(storage)
    except ValueError:
        valid = ", ".join(repr(s.value) for s in Storage)
        raise ValueError(f"storage must be one of {valid} or None, not {storage!r}") from None


def check_stbif(network: Any) -> None:
    """A ValueError when ``network`` has a neuron kind the RTL does not implement. None left: an
    MLP's graded layers run in the layer cores, a VisionTransformer's graded sites in the layer
    cores (linear and direct sites), the spike products (graded X and Y spikes) and the residual
    stages (graded spikes times the multiplier) (docs/graded.md §10). Kept as the one place the
    hardware commands ask, should a kind be added to the IR before its RTL."""
    from spikezip.ir.cnn import ConvNet
    from spikezip.ir.transformer import VisionTransformer

    if isinstance(network, VisionTransformer | ConvNet):
        named = [(s.name, s.op) for s in network.sites]
    else:
        named = [(network.layer_name(k), layer) for k, layer in enumerate(network.layers)]
    for name, op in named:
        kind = getattr(op, "neuron", "stbif")
        if kind not in ("stbif", "graded"):
            raise ValueError(f"{name} has {kind} neurons; the hardware implements stbif, graded")


#: pipeline depth of the fast preset (``spikezip … --fast``)
FAST_PIPELINE = 3
#: nextpnr's ``--placer-heap-timingweight`` of the place-and-route flow unless a call says
#: otherwise (``hw.flow.synth.place_and_route``; nextpnr's own default), and the largest taken
TIMING_WEIGHT = 10
MAX_TIMING_WEIGHT = 1000


def check_timing_weight(weight: object) -> int:
    """``weight`` if it is a placer timing weight the flow takes (an integer
    1…:data:`MAX_TIMING_WEIGHT`), else a ``ValueError`` naming the field and its range."""
    valid = isinstance(weight, int) and not isinstance(weight, bool)
    if not (valid and 1 <= weight <= MAX_TIMING_WEIGHT):
        raise ValueError(f"timing_weight must be an integer 1…{MAX_TIMING_WEIGHT}, not {weight!r}")
    return weight


#: nextpnr's placer timing weight of the fast preset (``report --fast``; nextpnr's and the flow's
#: default is 10): the digits network at 8,4 places at 201.7 MHz median over seeds 1–7 with it,
#: 196.7 without (docs/performance.md, "The whole network's fmax")
FAST_TIMING_WEIGHT = 30


def fast_lanes(network: Any, most: int = DEFAULT_LANES) -> tuple[int, ...]:
    """Lanes per layer of the fast preset: per layer the most lanes ``P ≤ most`` (a power of two)
    that leave the layer ``ceil(n_out / P) ≥ 3`` words, the spacing pipeline 3 needs between
    operations on one word (fewer words pad every pass to three cycles: wider lanes then cost
    logic and buy no cycle), or 1 for a layer of fewer than 3 neurons. The digits network: (8, 4).
    """
    out = []
    for layer in network.layers:
        p = 1 << (max(1, most).bit_length() - 1)
        while p > 1 and -(-layer.n_out // p) < 3:
            p //= 2
        out.append(p)
    return tuple(out)


def resolve_lanes(network: Any, lanes: int | Sequence[int]) -> tuple[int, ...]:
    """Lanes per layer of ``network``, validated before anything is built.

    One integer ``P`` applies to every layer, capped at each layer's neuron count (a layer of
    10 neurons runs ``P = 16`` as 10 lanes: the same one word, fewer wasted lanes); it must not
    exceed the widest layer. One value per layer must lie in ``1 … n_out`` of its layer.
    """
    if isinstance(lanes, bool):
        raise TypeError(f"lanes must be an integer or one integer per layer, not {lanes!r}")
    from spikezip.ir.cnn import ConvNet
    from spikezip.ir.transformer import VisionTransformer

    check_stbif(network)
    if isinstance(network, VisionTransformer):  # one core per site
        from spikezip.hw.model.vit_sites import resolve_site_lanes

        return resolve_site_lanes(network, lanes)
    if isinstance(network, ConvNet):  # one core per site
        from spikezip.hw.model.conv_sites import resolve_cnn_lanes

        return resolve_cnn_lanes(network, lanes)
    widest = max(layer.n_out for layer in network.layers)
    if isinstance(lanes, numbers.Integral):
        if not 1 <= lanes <= widest:
            raise ValueError(
                f"lanes must lie in 1..{widest} (the widest layer's neuron count), not {lanes}"
            )
        return tuple(min(int(lanes), layer.n_out) for layer in network.layers)
    lanes = tuple(lanes)
    if len(lanes) != network.depth:
        raise ValueError(
            f"lanes must hold {network.depth} values (one per layer), not {len(lanes)}"
        )
    for k, (p, layer) in enumerate(zip(lanes, network.layers, strict=True)):
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise ValueError(f"lanes[{k}] must be a positive integer, not {p!r}")
        if not 1 <= p <= layer.n_out:
            raise ValueError(
                f"lanes[{k}] of layer {network.layer_name(k)} must lie in 1..{layer.n_out} "
                f"(its neuron count), not {p}"
            )
    return tuple(int(p) for p in lanes)


def _is_mlp(network: Any) -> bool:
    """``network`` is an MLP (``ir.Network``: one layer core per layer, FIFOs sized by depth)."""
    from spikezip.ir.network import Network

    return isinstance(network, Network)


def _positive_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class DesignParams:
    """The knobs of one network design (see the module docstring), frozen and validated.

    Parameters
    ----------
    lanes : tuple of int
        Lanes of each layer core, resolved per layer (:func:`resolve_lanes`).
    pipeline : Pipeline
        The register stages of every layer core (:meth:`Pipeline.preset` of a depth in
        :data:`hw.model.cycle_model.PIPELINES`, or another combination of switches).
    storage : Storage or None
        Where every layer keeps membranes and tracers; ``None``: by size, per layer.
    fifo_depth : int or None
        Entries of each inter-layer FIFO; ``None``: ``n_out + 2`` of the producing layer.
    fifo_depths : tuple of (str, int)
        Entries of single FIFOs by name, over ``fifo_depth`` (a ViT's FIFOs,
        ``hw.cores.vit_core.ViTCore.fifo_names``); given as a mapping or pairs, kept sorted.
    product_lanes : int or None
        A ViT's spike products: lanes of each (``None``: the token count, one per key token).
    layer_norm_units : int or None
        A ViT's LayerNorm cores: rounding units of each (``None``: the fewest at one element per
        cycle, ``LayerNormGeometry.full_rate_units``). With ``product_lanes`` the knobs that
        trade a ViT's size against its cycles (docs/transformer.md §14, "Sizes").
    emit_width : int
        Spikes per beat between an MLP's layer cores, ``k`` (1 … ``MAX_EMIT_WIDTH``, default 1):
        each layer but the last sends up to ``k`` spikes of a fired word per beat into its FIFO,
        and each layer but the first unpacks them (``hw.model.network_model.layer_timing``).
        ``1`` builds today's cores, bit for bit.
    """

    lanes: tuple[int, ...]
    pipeline: Pipeline = field(default_factory=lambda: Pipeline.preset(1))
    storage: Storage | None = None
    fifo_depth: int | None = None
    fifo_depths: tuple[tuple[str, int], ...] = ()
    product_lanes: int | None = None
    layer_norm_units: int | None = None
    emit_width: int = 1

    def __post_init__(self) -> None:
        lanes = tuple(self.lanes)
        if not lanes or any(
            isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1 for p in lanes
        ):
            raise ValueError(f"lanes must be positive integers, one per layer, not {self.lanes!r}")
        object.__setattr__(self, "lanes", tuple(int(p) for p in lanes))
        if not isinstance(self.pipeline, Pipeline):
            raise TypeError(f"pipeline must be a Pipeline, not {type(self.pipeline).__name__}")
        object.__setattr__(self, "storage", check_storage(self.storage))
        object.__setattr__(self, "fifo_depth", _positive_or_none("fifo_depth", self.fifo_depth))
        object.__setattr__(self, "fifo_depths", _fifo_depths(self.fifo_depths))
        for name in ("product_lanes", "layer_norm_units"):
            object.__setattr__(self, name, _positive_or_none(name, getattr(self, name)))
        k = self.emit_width
        if (
            isinstance(k, bool)
            or not isinstance(k, numbers.Integral)
            or not 1 <= k <= MAX_EMIT_WIDTH
        ):
            raise ValueError(f"emit_width must be an integer in 1..{MAX_EMIT_WIDTH}, not {k!r}")
        object.__setattr__(self, "emit_width", int(k))

    def fifo_depth_of(self, name: str, default: int) -> int:
        """Entries of the FIFO ``name``: its own in :attr:`fifo_depths`, else ``default``."""
        return dict(self.fifo_depths).get(name, default)

    @classmethod
    def of(
        cls,
        network: Any,
        *,
        lanes: int | Sequence[int] | None = None,
        pipeline: int | Pipeline = 1,
        storage: Storage | str | None = None,
        fifo_depth: int | None = None,
        fifo_depths: Any = (),
        product_lanes: int | None = None,
        layer_norm_units: int | None = None,
        emit_width: int = 1,
    ) -> DesignParams:
        """The parameters of a design of ``network`` from loose values, each checked once.

        ``lanes``: one value for every layer (capped per layer) or one per layer; default
        :data:`DEFAULT_LANES` capped at the widest layer. ``pipeline``: a preset depth or a
        :class:`Pipeline`.
        """
        if lanes is None and not _is_mlp(network):  # a ViT or a CNN: capped per site
            lanes = DEFAULT_LANES
        elif lanes is None:
            lanes = min(DEFAULT_LANES, max(layer.n_out for layer in network.layers))
        return cls(
            lanes=resolve_lanes(network, lanes),
            pipeline=Pipeline.parse(pipeline),
            storage=storage,
            fifo_depth=fifo_depth,
            fifo_depths=fifo_depths,
            product_lanes=product_lanes,
            layer_norm_units=layer_norm_units,
            emit_width=emit_width,
        ).checked(network)

    @classmethod
    def coerce(
        cls, network: Any, params: DesignParams | None = None, /, **knobs: Any
    ) -> DesignParams:
        """``params`` checked against ``network``, or :meth:`of` ``network`` with ``knobs``.

        The one entry point of every consumer that accepts either a record or loose keywords
        (``None`` values are "not given"); giving both is a ``TypeError``.
        """
        given = {k: v for k, v in knobs.items() if v is not None}
        if params is None:
            return cls.of(network, **given)
        if not isinstance(params, DesignParams):
            raise TypeError(f"params must be a DesignParams, not {type(params).__name__}")
        if given:
            raise TypeError(f"give params or {', '.join(sorted(given))}, not both")
        return params.checked(network)

    def checked(self, network: Any) -> DesignParams:
        """``self``, after checking that its lanes fit ``network`` (one per layer, in range)."""
        from spikezip.ir.cnn import ConvNet

        resolve_lanes(network, self.lanes)
        if self.fifo_depths and _is_mlp(network):
            raise ValueError(
                "fifo_depths sets a ViT's FIFOs by name; an MLP's FIFOs take fifo_depth"
            )
        for name in ("product_lanes", "layer_norm_units"):
            if getattr(self, name) is not None and _is_mlp(network):
                raise ValueError(f"{name} sets a ViT's cores; an MLP has none")
            if getattr(self, name) is not None and isinstance(network, ConvNet):
                raise ValueError(f"{name} sets a ViT's cores; a CNN has none")
        if self.emit_width != 1 and not _is_mlp(network):
            raise ValueError(
                "emit_width sets an MLP's layer cores; a ViT's or a CNN's cores send one per beat"
            )
        if self.fifo_depths:
            if isinstance(network, ConvNet):
                from spikezip.hw.model.conv_sites import fifo_names

                what, where = "CNN", "conv_sites"
            else:
                from spikezip.hw.model.vit_sites import fifo_names

                what, where = "ViT", "vit_sites"
            names = fifo_names(network)
            unknown = sorted(n for n, _ in self.fifo_depths if n not in names)
            if unknown:
                raise ValueError(
                    f"fifo_depths names no FIFO of this {what}: {', '.join(unknown[:3])}"
                    f"{' …' if len(unknown) > 3 else ''} (its {len(names)} FIFOs: "
                    f"{', '.join(names[:3])}, …; hw.model.{where}.fifo_names)"
                )
            if isinstance(network, ConvNet):
                from spikezip.hw.model.conv_sites import check_fifo_depths

                check_fifo_depths(network, self.fifo_depths)
        return self

    # -- derived facts -------------------------------------------------------------------------
    @property
    def depth(self) -> int | None:
        """The preset depth of :attr:`pipeline` (:data:`PIPELINES`), ``None`` for another one."""
        return self.pipeline.depth

    @property
    def key(self) -> str:
        """A short name for folder names: ``p8-d1``, ``p5-1-8-d3``, ``…-registers``, ``…-f12``
        (a ViT's product lanes ``…-x4``, LayerNorm units ``…-n8``; spikes per beat ``…-k2``).

        Equal parameters have equal keys; a pipeline that is no preset is spelt by its switches.
        """
        lanes = self.lanes
        out = "p" + (str(lanes[0]) if len(set(lanes)) == 1 else "-".join(map(str, lanes)))
        out += f"-d{self.depth}" if self.depth is not None else "-" + _switches(self.pipeline)
        if self.storage is not None:
            out += f"-{self.storage.value}"
        if self.fifo_depth is not None:
            out += f"-f{self.fifo_depth}"
        if self.fifo_depths:
            text = ",".join(f"{n}={d}" for n, d in self.fifo_depths)
            out += "-F" + hashlib.sha256(text.encode()).hexdigest()[:8]
        if self.product_lanes is not None:
            out += f"-x{self.product_lanes}"
        if self.layer_norm_units is not None:
            out += f"-n{self.layer_norm_units}"
        if self.emit_width != 1:
            out += f"-k{self.emit_width}"
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's and the report's ``parameters``)."""
        return {
            "version": PARAMS_VERSION,
            "lanes": list(self.lanes),
            "pipeline": self.depth,
            "switches": _switch_dict(self.pipeline),
            "storage": None if self.storage is None else self.storage.value,
            "fifo_depth": self.fifo_depth,
            "fifo_depths": dict(self.fifo_depths),
            "product_lanes": self.product_lanes,
            "layer_norm_units": self.layer_norm_units,
            "emit_width": self.emit_width,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DesignParams:
        """Inverse of :meth:`to_json`; a ``ValueError`` names what is wrong."""
        if not isinstance(d, dict) or d.get("version") != PARAMS_VERSION:
            raise ValueError(f"design parameters: not version {PARAMS_VERSION}")
        try:
            pipeline = Pipeline(**d["switches"])
            return cls(
                lanes=tuple(d["lanes"]),
                pipeline=pipeline,
                storage=d["storage"],
                fifo_depth=d["fifo_depth"],
                fifo_depths=d.get("fifo_depths", {}),
                product_lanes=d.get("product_lanes"),
                layer_norm_units=d.get("layer_norm_units"),
                emit_width=d.get("emit_width", 1),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"design parameters: {e}") from None


def _fifo_depths(value: Any) -> tuple[tuple[str, int], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [(n, d) for n, d in pairs]
    except (TypeError, ValueError):
        raise ValueError(f"fifo_depths must map FIFO names to depths, not {value!r}") from None
    out = {}
    for name, depth in pairs:
        if not isinstance(name, str) or not name:
            raise ValueError(f"fifo_depths: a FIFO name must be a non-empty string, not {name!r}")
        if name in out:
            raise ValueError(f"fifo_depths: FIFO {name!r} given twice")
        out[name] = _positive_or_none(f"fifo_depths[{name!r}]", depth)
        if out[name] is None:
            raise ValueError(f"fifo_depths[{name!r}] must be a positive integer, not None")
    return tuple(sorted(out.items()))


def _switch_dict(p: Pipeline) -> dict[str, Any]:
    return {name: getattr(p, name) for name in Pipeline.__dataclass_fields__}


def _switches(p: Pipeline) -> str:
    """A pipeline that is no preset, as a short string of its switches."""
    bits = "".join(str(int(v)) for v in _switch_dict(p).values() if isinstance(v, bool))
    return f"s{bits}m{p.min_distance}"
