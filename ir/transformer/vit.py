"""The whole ViT: its sites in execution order, value ranges, files."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from spikezip.ir._io import content_digest, read_npz
from spikezip.ir._io import write_npz as _write_npz
from spikezip.ir.errors import FormatError
from spikezip.ir.files import TRANSFORMER_KIND
from spikezip.ir.network import (
    MAX_WIDTH,
    VALUE_MAX,
    VALUE_MIN,
    Layer,
    Network,
    _int_array,
    _is_int,
    signed_width,
)
from spikezip.ir.transformer.block import (
    Block,
)
from spikezip.ir.transformer.ops import (
    _int_field,
)
from spikezip.ir.transformer.sites import (
    LayerNorm,
    SiteKind,
)

KIND = TRANSFORMER_KIND
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Site:
    """One quantizer site as the reference, the traces and the energy accounting see it.

    ``shape`` is the neuron array (flattened in C order in traces); ``op`` the IR object that
    drives it (a :class:`~ir.network.Layer`, :class:`LayerNorm`, :class:`Softmax` or
    :class:`Context`); ``block`` the block index (-1 outside blocks); ``role`` the short name
    (``embed``, ``norm1``, ``q`` … ``head``).
    """

    name: str
    kind: SiteKind
    role: str
    block: int
    shape: tuple[int, ...]
    op: Any

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def neg_bound(self) -> int:
        return int(self.op.neg_bound)

    @property
    def pos_bound(self) -> int:
        return int(self.op.pos_bound)


@dataclass(frozen=True)
class Ranges:
    """Exact bounds of the non-spike quantities, valid at every step (transients included).

    Every bound follows from the tracers staying inside their ``[n, p]`` at all times.
    """

    stream: tuple[int, ...]  #: max |R| of the stream entering each LayerNorm, in site order
    layernorm_input: tuple[int, ...]  #: max |gain_i·Z_i| per LayerNorm (the rounding's numerator)
    layernorm_output: tuple[int, ...]  #: max |G| per LayerNorm
    scores: tuple[int, ...]  #: max |Qacc·Kaccᵀ| per block
    score_step: tuple[int, ...]  #: max |multi| increment per block
    context: tuple[int, ...]  #: max |Aacc·Vacc| per block
    context_step: tuple[int, ...]  #: max |multi1| increment per block
    membrane: dict[str, tuple[int, int]]  #: membrane range per site name
    membrane_width: dict[str, int]  #: signed bits per site name


@dataclass(frozen=True, kw_only=True, eq=False)
class VisionTransformer:
    """A ViT-ReLU in hardware units: patch embedding, blocks, final norm, classification head.

    The input is analog: one integer per pixel (``input_bounds``), injected at t = 0.

    Parameters
    ----------
    n_inputs : int
        Pixels per image.
    input_bounds : tuple of int
        ``(lo, hi)`` of every pixel.
    patch_index : integer array ``[patches, patch_size]``
        Pixel index of every patch element (row-major patches), each in ``[0, n_inputs)``.
    embed : ir.Layer
        ``patch_size → dim``, the patch embedding (its first-layer synapses are MACs).
    position : integer array ``[1 + patches, dim]``
        Class token (row 0) plus position embedding on the stream grid, injected at t = 0.
    embed_residual : int
        Stream weight of the embedding codes.
    blocks : sequence of Block
        At least one.
    norm : LayerNorm
        Final norm.
    head : ir.Layer
        ``dim → classes``; reads the class token (token 0).
    name : str
        Label.
    """

    n_inputs: int
    input_bounds: tuple[int, int]
    patch_index: np.ndarray
    embed: Layer
    position: np.ndarray
    embed_residual: int
    blocks: tuple[Block, ...]
    norm: LayerNorm
    head: Layer
    name: str = ""

    def __post_init__(self) -> None:
        _int_field(self, "n_inputs", lo=1, what="a positive integer")
        bounds = tuple(self.input_bounds) if hasattr(self.input_bounds, "__iter__") else ()
        if len(bounds) != 2 or not all(_is_int(b) for b in bounds):
            raise TypeError(f"input_bounds must be a pair of integers, not {self.input_bounds!r}")
        lo, hi = int(bounds[0]), int(bounds[1])
        if lo > hi:
            raise ValueError(f"input_bounds must satisfy lo ≤ hi, not ({lo}, {hi})")
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise ValueError(
                f"input_bounds must lie in [{VALUE_MIN}, {VALUE_MAX}] (the {MAX_WIDTH}-bit "
                f"datapath), not ({lo}, {hi})"
            )
        object.__setattr__(self, "input_bounds", (lo, hi))
        idx = _int_array(self.patch_index, field="patch_index", ndim=2)
        if idx.shape[0] < 1 or idx.shape[1] < 1:
            raise ValueError(f"patch_index must have at least one patch and pixel, not {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.n_inputs:
            raise ValueError(f"patch_index values must lie in [0, {self.n_inputs - 1}]")
        object.__setattr__(self, "patch_index", idx)
        for field, kind in (("embed", Layer), ("norm", LayerNorm), ("head", Layer)):
            if not isinstance(getattr(self, field), kind):
                raise TypeError(
                    f"{field} must be a {kind.__name__}, not {type(getattr(self, field)).__name__}"
                )
        if self.embed.n_in != idx.shape[1]:
            raise ValueError(
                f"embed has {self.embed.n_in} inputs but patches hold {idx.shape[1]} pixels"
            )
        d = self.embed.n_out
        pos = _int_array(self.position, field="position", ndim=2)
        if pos.shape != (idx.shape[0] + 1, d):
            raise ValueError(
                f"position must have shape ({idx.shape[0] + 1}, {d}) (class token + patches, "
                f"channels), not {pos.shape}"
            )
        object.__setattr__(self, "position", pos)
        _int_field(self, "embed_residual")
        if isinstance(self.blocks, Block) or not hasattr(self.blocks, "__iter__"):
            raise TypeError(f"blocks must be a sequence of Block, not {type(self.blocks).__name__}")
        blocks = tuple(self.blocks)
        if not blocks:
            raise ValueError("blocks must hold at least one Block")
        for b, blk in enumerate(blocks):
            if not isinstance(blk, Block):
                raise TypeError(f"blocks[{b}] must be a Block, not {type(blk).__name__}")
            if blk.dim != d:
                raise ValueError(f"blocks[{b}] has {blk.dim} channels but embed has {d}")
        object.__setattr__(self, "blocks", blocks)
        if self.norm.dim != d:
            raise ValueError(f"norm has {self.norm.dim} channels but embed has {d}")
        if self.head.n_in != d:
            raise ValueError(f"head has {self.head.n_in} inputs but the stream has {d} channels")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, not {self.name!r}")
        self._check_ranges()

    # -- shape -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.embed.n_out

    @property
    def n_patches(self) -> int:
        return int(self.patch_index.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.patch_index.shape[1])

    @property
    def tokens(self) -> int:
        """Class token plus patches."""
        return self.n_patches + 1

    @property
    def n_outputs(self) -> int:
        return self.head.n_out

    @property
    def depth(self) -> int:
        """Number of blocks (a trace's depth is ``len(sites)``)."""
        return len(self.blocks)

    @cached_property
    def sites(self) -> tuple[Site, ...]:
        """Every quantizer site in execution order."""
        n, d = self.tokens, self.dim
        out = [Site("embed", SiteKind.LINEAR, "embed", -1, (self.n_patches, d), self.embed)]
        for b, blk in enumerate(self.blocks):
            p = f"blocks.{b}."
            out += [
                Site(p + "norm1", SiteKind.LAYERNORM, "norm1", b, (n, d), blk.norm1),
                Site(p + "q", SiteKind.LINEAR, "q", b, (n, d), blk.q),
                Site(p + "k", SiteKind.LINEAR, "k", b, (n, d), blk.k),
                Site(p + "v", SiteKind.LINEAR, "v", b, (n, d), blk.v),
                Site(p + "attn", SiteKind.SOFTMAX, "attn", b, (blk.heads, n, n), blk.softmax),
                Site(p + "context", SiteKind.CONTEXT, "context", b, (n, d), blk.context),
                Site(p + "proj", SiteKind.LINEAR, "proj", b, (n, d), blk.proj),
                Site(p + "norm2", SiteKind.LAYERNORM, "norm2", b, (n, d), blk.norm2),
                Site(p + "fc1", SiteKind.LINEAR, "fc1", b, (n, blk.hidden), blk.fc1),
                Site(p + "fc2", SiteKind.LINEAR, "fc2", b, (n, d), blk.fc2),
            ]
        out += [
            Site("norm", SiteKind.LAYERNORM, "norm", -1, (n, d), self.norm),
            Site("head", SiteKind.LINEAR, "head", -1, (self.n_outputs,), self.head),
        ]
        return tuple(out)

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    def describe_neuron(self, site: int, neuron: int) -> str:
        """The coordinates of flat ``neuron`` of site number ``site`` in its shape:
        ``token 3, channel 5`` (``patch`` for the embedding, ``head, query, key`` for attn,
        ``class`` for the head)."""
        s = self.sites[site]
        axes = {
            "embed": ("patch", "channel"),
            "attn": ("head", "query token", "key token"),
            "head": ("class",),
        }.get(s.role, ("token", "channel"))
        idx = np.unravel_index(int(neuron), s.shape)
        return ", ".join(f"{a} {int(i)}" for a, i in zip(axes, idx, strict=True))

    def with_neuron(
        self, neuron: str = "graded", max_level: int | None = None
    ) -> VisionTransformer:
        """The same ViT with every quantizer site's neuron kind set (docs/graded.md §5)."""

        def kind(op: Any) -> Any:
            return replace(op, neuron=neuron, max_level=max_level)

        fields = ("norm1", "q", "k", "v", "softmax", "context", "proj", "norm2", "fc1", "fc2")
        blocks = tuple(
            replace(blk, **{f: kind(getattr(blk, f)) for f in fields}) for blk in self.blocks
        )
        return replace(
            self,
            embed=kind(self.embed),
            blocks=blocks,
            norm=kind(self.norm),
            head=kind(self.head),
        )

    # -- derived facts ---------------------------------------------------------------------------
    def step_bound(self) -> int:
        """Number of steps within which the network provably reaches its first idle step.

        Let ``τ`` be the last step at which a quantity can change. The input and every injection
        (biases, position, the first LayerNorm/softmax evaluation) happen at t = 0. An ST-BIF site
        stops spiking at most ``p − n`` steps after its cumulative input last changed (spec §2.2
        (ii)); a LayerNorm or softmax output changes only when its input does; the scores change
        only when q or k spike, the context product only when attn or v spike; the stream only
        when a contributing site spikes. Hence ``τ`` along the longest path of the site graph::

            τ(embed) = p − n;   τ(site) = max τ(inputs) + (p − n)

        and the run ends one idle step after the last change: ``τ(head) + 2`` steps. For a graded
        site ``p − n`` becomes its ``settle_steps`` (``O(log(p − n))``, docs/graded.md §3).
        """

        def span(op: Any) -> int:
            return int(op.settle_steps)

        stream = span(self.embed)
        for blk in self.blocks:
            n1 = stream + span(blk.norm1)
            q, k, v = (n1 + span(getattr(blk, f)) for f in ("q", "k", "v"))
            a = max(q, k) + span(blk.softmax)
            c = max(a, v) + span(blk.context)
            stream = max(stream, c + span(blk.proj))
            f1 = stream + span(blk.norm2) + span(blk.fc1)
            stream = max(stream, f1 + span(blk.fc2))
        return stream + span(self.norm) + span(self.head) + 2

    @cached_property
    def ranges(self) -> Ranges:
        """Exact bounds of the stream, the LayerNorm and attention quantities and the membranes."""
        lo, hi = self.input_bounds
        mem: dict[str, tuple[int, int]] = {}

        def linear(
            name: str, layer: Layer, in_lo: int, in_hi: int, analog: bool, src: Any = None
        ) -> None:
            spike_max = 1 if src is None else src.spike_max
            w = layer.widths(in_lo, in_hi, analog=analog, spike_max=spike_max)
            mem[name] = (w.membrane_lo, w.membrane_hi)

        def quant(name: str, op: Any, g_lo: int, g_hi: int) -> None:
            # U = H + G − A·Θ with the cumulative input G in [g_lo, g_hi] and A in [n, p]
            thr = np.atleast_1d(np.asarray(op.threshold, dtype=np.int64))
            h = thr // 2
            lo_ = int((h - op.pos_bound * thr).min()) + g_lo
            hi_ = int((h - op.neg_bound * thr).max()) + g_hi
            mem[name] = (lo_, hi_)

        linear("embed", self.embed, lo, hi, True)
        stream = int(np.abs(self.position).max()) + abs(self.embed_residual) * max(
            -self.embed.neg_bound, self.embed.pos_bound
        )
        streams, ln_in, ln_out, scores, score_step, ctx, ctx_step = ([] for _ in range(7))

        def norm(name: str, op: LayerNorm, r: int) -> None:
            streams.append(r)
            z = 2 * (op.dim - 1) * r
            ln_in.append(int(np.abs(op.gain).max()) * z)
            g = op.output_bound() + int(np.abs(op.bias).max())
            ln_out.append(g)
            quant(name, op, -g, g)

        def mag(layer: Any) -> int:
            return max(-layer.neg_bound, layer.pos_bound)

        for b, blk in enumerate(self.blocks):
            p = f"blocks.{b}."
            norm(p + "norm1", blk.norm1, stream)
            for f in ("q", "k", "v"):
                linear(
                    p + f,
                    getattr(blk, f),
                    blk.norm1.neg_bound,
                    blk.norm1.pos_bound,
                    False,
                    blk.norm1,
                )
            dh, n = blk.head_dim, self.tokens
            mq, mk, mv, ma = mag(blk.q), mag(blk.k), mag(blk.v), mag(blk.softmax)
            # |multi| ≤ dh·(|Qacc|·|k| + |q|·|Kacc| + |q|·|k|) with |q| ≤ sq, |k| ≤ sk per step
            sq, sk, sv, sa = (x.spike_max for x in (blk.q, blk.k, blk.v, blk.softmax))
            scores.append(dh * mq * mk)
            score_step.append(dh * (mq * sk + sq * mk + sq * sk))
            quant(p + "attn", blk.softmax, 0, blk.softmax.numerator)
            # the per-step drive of the attn neuron is a difference of two softmax outputs
            ctx.append(n * ma * mv)
            ctx_step.append(n * (ma * sv + sa * mv + sa * sv))
            c = abs(blk.context.weight) * n * ma * mv
            quant(p + "context", blk.context, -c, c)
            linear(
                p + "proj",
                blk.proj,
                blk.context.neg_bound,
                blk.context.pos_bound,
                False,
                blk.context,
            )
            stream += abs(blk.attn_residual) * mag(blk.proj)
            norm(p + "norm2", blk.norm2, stream)
            linear(p + "fc1", blk.fc1, blk.norm2.neg_bound, blk.norm2.pos_bound, False, blk.norm2)
            linear(p + "fc2", blk.fc2, blk.fc1.neg_bound, blk.fc1.pos_bound, False, blk.fc1)
            stream += abs(blk.mlp_residual) * mag(blk.fc2)
        norm("norm", self.norm, stream)
        linear("head", self.head, self.norm.neg_bound, self.norm.pos_bound, False, self.norm)
        widths = {
            k: signed_width(min(v[0], 0), max(v[1], int(np.max(self._site_op(k).threshold))))
            for k, v in mem.items()
        }
        return Ranges(
            stream=tuple(streams),
            layernorm_input=tuple(ln_in),
            layernorm_output=tuple(ln_out),
            scores=tuple(scores),
            score_step=tuple(score_step),
            context=tuple(ctx),
            context_step=tuple(ctx_step),
            membrane=mem,
            membrane_width=widths,
        )

    def _site_op(self, name: str) -> Any:
        return next(s.op for s in self.sites if s.name == name)

    def _check_ranges(self) -> None:
        r = self.ranges
        lns = [s for s in self.sites if s.kind is SiteKind.LAYERNORM]
        for site, stream, num in zip(lns, r.stream, r.layernorm_input, strict=True):
            d = site.op.dim
            if d * d * stream * stream + site.op.eps >= 2**62 or num >= 2**62:
                raise ValueError(
                    f"{site.name}: the stream (|R| ≤ {stream}) and gains make the LayerNorm "
                    "exceed 62-bit integers; lower the stream weights or the gains"
                )
        for b, blk in enumerate(self.blocks):
            total = int(blk.softmax.table[0]) * self.tokens
            if total * blk.softmax.numerator >= 2**62:
                raise ValueError(
                    f"blocks.{b}.attn: table[0]·tokens·numerator must stay below 2^62; lower the "
                    "table's scale or the numerator"
                )
        for name, width in r.membrane_width.items():
            if width > MAX_WIDTH:
                raise ValueError(
                    f"{name} needs a {width}-bit membrane; at most {MAX_WIDTH} bits are supported"
                )

    # -- inputs ----------------------------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Validate a batch ``[batch, n_inputs]`` of integer pixels within ``input_bounds``.

        Returns it as read-only ``int64`` (the checks and messages of
        :meth:`ir.Network.check_inputs` for analog inputs).
        """
        return self._input_network.check_inputs(inputs)

    @cached_property
    def _input_network(self) -> Network:
        stub = Layer(
            weight=np.zeros((1, self.n_inputs), dtype=np.int64),
            bias=[0],
            threshold=1,
            neg_bound=0,
            pos_bound=1,
        )
        return Network(
            layers=(stub,),
            n_inputs=self.n_inputs,
            encoding="analog",
            input_bounds=self.input_bounds,
        )

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (arrays as nested lists)."""
        return {
            "name": self.name,
            "n_inputs": self.n_inputs,
            "input_bounds": list(self.input_bounds),
            "patch_index": self.patch_index.tolist(),
            "embed": self.embed.to_dict(),
            "position": self.position.tolist(),
            "embed_residual": self.embed_residual,
            "blocks": [blk.to_dict() for blk in self.blocks],
            "norm": self.norm.to_dict(),
            "head": self.head.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionTransformer:
        try:
            return cls(
                n_inputs=d["n_inputs"],
                input_bounds=tuple(d["input_bounds"]),
                patch_index=d["patch_index"],
                embed=Layer.from_dict(d["embed"]),
                position=d["position"],
                embed_residual=d["embed_residual"],
                blocks=tuple(Block.from_dict(b) for b in d["blocks"]),
                norm=LayerNorm.from_dict(d["norm"]),
                head=Layer.from_dict(d["head"]),
                name=d.get("name", ""),
            )
        except KeyError as e:
            raise ValueError(f"transformer description lacks field {e.args[0]!r}") from None

    def _split(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(metadata JSON, arrays): every integer-array field becomes an array named by its path."""
        arrays: dict[str, np.ndarray] = {}

        def strip(obj: Any, path: str) -> Any:
            if isinstance(obj, dict):
                return {k: strip(v, f"{path}.{k}" if path else k) for k, v in obj.items()}
            if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
                return [strip(v, f"{path}.{i}") for i, v in enumerate(obj)]
            if isinstance(obj, list) and path != "input_bounds":
                arrays[path] = np.asarray(obj, dtype=np.int64)
                return {"array": path}
            return obj

        return strip(self.to_dict(), ""), arrays

    def digest(self) -> str:
        """Stable SHA-256 (hex) of the canonical content: metadata JSON and little-endian arrays."""
        return content_digest(*self._split(), kind=KIND)

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file (JSON metadata + int64 arrays), atomically."""
        meta, arrays = self._split()
        _write_npz(path, {"kind": KIND, "version": FORMAT_VERSION, "network": meta}, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> VisionTransformer:
        """Read a file written by :meth:`save`; :class:`FormatError` names what is wrong."""
        meta, arrays = read_npz(path, kind=KIND)
        name = os.fspath(path)
        version = meta.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise FormatError(f"{name}: unsupported transformer format version {version!r}")
        used: set[str] = set()

        def fill(obj: Any) -> Any:  # the metadata's nesting is bounded by read_npz
            if isinstance(obj, dict):
                if set(obj) == {"array"}:
                    key = obj["array"]
                    if not isinstance(key, str):
                        raise ValueError(f"array reference {key!r} is not a name")
                    used.add(key)
                    return arrays[key]
                return {k: fill(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [fill(v) for v in obj]
            return obj

        try:
            network = fill(meta["network"])
            extra = sorted(set(arrays) - used)
            if extra:
                raise ValueError(f"unexpected array {extra[0]!r}")
            return cls.from_dict(network)
        except KeyError as e:
            raise FormatError(f"{name}: corrupt transformer file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise FormatError(f"{name}: invalid transformer: {e}") from None
