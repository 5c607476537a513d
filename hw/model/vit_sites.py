"""Every quantizer site of a ``VisionTransformer`` as a mapped layer core (pure Python).

A site's neurons are an ST-BIF (or graded ST-BIF) array exactly like a layer's
(:class:`ir.network.Layer` holds their thresholds, bias, bounds and neuron kind); what differs is
how its input reaches them, an :class:`hw.model.input_map.InputMap`:

==========================  ==============================  ===================================
site                        input events                    map
==========================  ==============================  ===================================
embed                       pixels ``(patch·size + k, x)``  token-wise ``size → dim``, analog
q, k, v, proj, fc1, fc2     spikes ``(token·d_in + c, s)``   token-wise ``d_in → d_out``
head                        norm spikes (every token)       token-wise, class token only
norm1, norm2, norm          LayerNorm drives                direct, gain 1
attn                        softmax drives                  direct, gain 1
context                     ``ΔC`` of the context product   direct, gain ``Context.weight``
==========================  ==============================  ===================================

:func:`site_spec` gives the neurons, the exact widths (from ``VisionTransformer.ranges``, as the
reference's bounds), the input format (the producer's output format) and the map. A spike ``s``
is ±1, or ±2^k from a graded site (docs/graded.md): a site's output format has
``spike_value_width`` of its ``spike_max``, and a linear site fed by a graded site records that
site's ``spike_max`` (``input_spike_max``: its drive widths and its accumulator's shifts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikezip.hw.model.events import SPIKE_VALUE_WIDTH, EventFormat, Step, _step, spike_value_width
from spikezip.hw.model.input_map import InputMap
from spikezip.hw.model.layer_norm_model import LayerNormGeometry
from spikezip.hw.model.product_model import ProductGeometry
from spikezip.hw.model.residual_model import spike_steps
from spikezip.hw.model.residual_model import stages as residual_stages
from spikezip.hw.model.softmax_model import SoftmaxParams
from spikezip.ir.network import Layer, LayerWidths, signed_width, unsigned_width
from spikezip.ir.transformer import SiteKind, VisionTransformer

__all__ = [
    "SiteSpec",
    "input_steps",
    "resolve_site_lanes",
    "site_spec",
    "site_specs",
    "site_streams",
]


@dataclass(frozen=True, eq=False)
class SiteSpec:
    """What a mapped layer core needs for one site (:func:`site_spec`)."""

    name: str
    kind: SiteKind
    neurons: Layer  #: thresholds, bias, bounds of every neuron (weights unused: ``[n, 1]`` zeros)
    widths: LayerWidths
    input_format: EventFormat
    input_map: InputMap
    analog: bool  #: events carry values (multiplied), not spikes
    input_spike_max: int = 1  #: largest ``|s|`` of an input spike (its producer's ``spike_max``)

    @property
    def n_out(self) -> int:
        return self.neurons.n_out

    @property
    def spike_max(self) -> int:
        """Largest ``|s|`` of an output spike (1 for ST-BIF, ``2^k`` for graded neurons)."""
        return self.neurons.spike_max

    @property
    def output_format(self) -> EventFormat:
        return EventFormat(unsigned_width(self.n_out - 1), spike_value_width(self.spike_max))


def _neurons(name: str, n: int, op: Any, thresholds: np.ndarray, bias: np.ndarray) -> Layer:
    thr = np.asarray(thresholds, dtype=np.int64)
    return Layer(
        weight=np.zeros((n, 1), dtype=np.int64),
        bias=np.asarray(bias, dtype=np.int64),
        threshold=int(thr[0]) if np.all(thr == thr[0]) else thr,
        neg_bound=int(op.neg_bound),
        pos_bound=int(op.pos_bound),
        name=name,
        neuron=op.neuron,
        max_level=op.max_level,
    )


def _producer_width(vit: VisionTransformer, site: Any) -> int:
    """Signed bits of the drive events a direct site receives (its producer's output format)."""
    b = site.block
    if site.kind is SiteKind.SOFTMAX:
        return SoftmaxParams.of_block(vit, b).output_format.value_width
    if site.kind is SiteKind.CONTEXT:
        return ProductGeometry.for_block(vit, b, "context", lanes=1).value_width
    norms = [s.name for s in vit.sites if s.kind is SiteKind.LAYERNORM]
    op = site.op
    geo = LayerNormGeometry(
        tokens=vit.tokens,
        dim=op.dim,
        stream_bound=int(vit.ranges.stream[norms.index(site.name)]),
        gain_bound=int(abs(op.gain).max()),
        bias_bound=int(abs(op.bias).max()),
        eps=int(op.eps),
    )
    return geo.drive_width


def _input_bounds(vit: VisionTransformer, name: str) -> tuple[int, int, int]:
    """The cumulative presynaptic range of a linear site (its source site's tracer bounds, the
    pixels' for the embedding) and the largest spike of its source (1 for the embedding)."""
    source = _source(vit, name)
    if source is None:
        return (*vit.input_bounds, 1)
    src = next(s for s in vit.sites if s.name == source)
    return src.neg_bound, src.pos_bound, int(src.op.spike_max)


def _linear(vit: VisionTransformer, site: Any, lanes: int) -> SiteSpec:
    layer: Layer = site.op
    analog = site.name == "embed"
    lo, hi, spike_max = _input_bounds(vit, site.name)
    widths = layer.widths(lo, hi, analog=analog, spike_max=spike_max)
    if site.name == "embed":
        tokens, read, n_in = vit.n_patches, vit.n_patches, vit.n_patches * vit.patch_size
    elif site.name == "head":
        tokens, read, n_in = vit.tokens, 1, vit.tokens * layer.n_in
    else:
        tokens, read, n_in = vit.tokens, vit.tokens, vit.tokens * layer.n_in
    imap = InputMap.tokens(layer.weight, tokens=tokens, lanes=lanes, read_tokens=read)
    value_width = spike_value_width(spike_max)
    if analog:
        value_width = max(SPIKE_VALUE_WIDTH, signed_width(widths.input_lo, widths.input_hi))
    return SiteSpec(
        name=site.name,
        kind=site.kind,
        neurons=_neurons(
            site.name, site.size, layer, np.tile(layer.thresholds, read), np.tile(layer.bias, read)
        ),
        widths=widths,
        input_format=EventFormat(unsigned_width(n_in - 1), value_width),
        input_map=imap,
        analog=analog,
        input_spike_max=spike_max,
    )


def _direct(vit: VisionTransformer, site: Any, lanes: int) -> SiteSpec:
    op, n = site.op, site.size
    if site.kind is SiteKind.SOFTMAX:
        thr, gain = np.full(n, int(op.threshold)), 1
    elif site.kind is SiteKind.CONTEXT:
        thr, gain = np.tile(op.thresholds_for(vit.dim), vit.tokens), int(op.weight)
    else:
        thr, gain = np.tile(op.thresholds, vit.tokens), 1
    imap = InputMap.direct(n, lanes=lanes, gain=gain)
    value_width = _producer_width(vit, site)
    reach = 1 << (value_width - 1)
    d_lo, d_hi = -reach * abs(gain), reach * abs(gain)
    mem_lo, mem_hi = vit.ranges.membrane[site.name]
    widths = LayerWidths(
        input_lo=-reach,
        input_hi=reach - 1,
        drive_lo=d_lo,
        drive_hi=d_hi,
        membrane_lo=mem_lo,
        membrane_hi=mem_hi,
        drive=signed_width(d_lo, d_hi),
        membrane=vit.ranges.membrane_width[site.name],
        tracer=signed_width(op.neg_bound, op.pos_bound),
        weight=imap.weight_width,
        bias=1,
        threshold=unsigned_width(int(thr.max())),
    )
    return SiteSpec(
        name=site.name,
        kind=site.kind,
        neurons=_neurons(site.name, n, op, thr, np.zeros(n, dtype=np.int64)),
        widths=widths,
        input_format=EventFormat(unsigned_width(n - 1), value_width),
        input_map=imap,
        analog=True,
    )


#: sites whose producer sends a step's events in ascending index (a streaming core needs it):
#: layer cores' emitters (linear sites), LayerNorm cores and softmax cores do; the context
#: product sends head by head (channel-major within a token is split across heads), so its site
#: keeps the plain core
STREAMING_KINDS = frozenset({SiteKind.LINEAR, SiteKind.LAYERNORM, SiteKind.SOFTMAX})

#: the LayerNorm cores of a ViT top evaluate a token as soon as the stage's increments have
#: passed it (``LayerNormGeometry.stream``; the stage sends in ascending index)
STREAM_LAYER_NORM = True

#: the residual stages of a ViT top scan a changed token as soon as both inputs have passed it
#: (``ResidualGeometry.stream``; the previous stage and the linear sites send in ascending index)
STREAM_RESIDUAL = True


def site_spec(
    vit: VisionTransformer, name: str, *, lanes: int, stream: bool | None = None
) -> SiteSpec:
    """The :class:`SiteSpec` of site ``name`` of ``vit`` with ``lanes`` lanes.

    ``stream``: the core sweeps a token's words as soon as an event of a later token arrives
    (:meth:`InputMap.streaming`), so its spikes leave while the rest of the step comes in;
    ``False``: after the step's marker, as a plain layer core; ``None`` (default): streaming
    where the site's producer sends in ascending order (:data:`STREAMING_KINDS`).
    """
    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"vit must be a VisionTransformer, not {type(vit).__name__}")
    sites = {s.name: s for s in vit.sites}
    if name not in sites:
        raise ValueError(f"name must be one of the sites {list(sites)}, not {name!r}")
    site = sites[name]
    spec = _linear(vit, site, lanes) if site.kind is SiteKind.LINEAR else _direct(vit, site, lanes)
    if stream is None:
        stream = site.kind in STREAMING_KINDS
    return dataclasses.replace(spec, input_map=spec.input_map.streaming(stream))


def site_specs(vit: VisionTransformer, lanes: dict[str, int] | int) -> dict[str, SiteSpec]:
    """Every site's spec in execution order; ``lanes`` one value or one per site name."""
    return {
        s.name: site_spec(vit, s.name, lanes=lanes if isinstance(lanes, int) else lanes[s.name])
        for s in vit.sites
    }


# -- golden streams of one site ------------------------------------------------------------------
def _source(vit: VisionTransformer, name: str) -> str | None:
    """The site whose spikes a linear site reads (``None`` for embed)."""
    if name == "embed":
        return None
    if name == "head":
        return "norm"
    role = name.rsplit(".", 1)[-1]
    src = {"q": "norm1", "k": "norm1", "v": "norm1", "proj": "context", "fc1": "norm2"}
    return name[: len(name) - len(role)] + src.get(role, "fc1")


def site_streams(
    vit: VisionTransformer,
    inputs: np.ndarray,
    trace: Any,
    steps: list[dict[str, np.ndarray]],
    name: str,
) -> tuple[list[list[Step]], list[list[Step]]]:
    """Per sample, the steps site ``name``'s core receives and emits in the reference
    (``trace`` and ``steps`` from ``sw.vit.reference.run(…, record_drives=True)``).

    Input: a linear site's source spikes, a direct site's drive events (``ΔC`` for context:
    the drive divided by ``Context.weight``), the embed's pixels per patch; each step's marker
    busy = the trace's cumulative flag of the site before (or the drive's own activity), up to
    the first idle one. Output: the site's spikes with its own cumulative flag, up to the first
    idle step.
    """
    names = [s.name for s in vit.sites]
    site = vit.sites[names.index(name)]
    at = names.index(name)
    outputs = spike_steps(trace, at)
    ins: list[list[Step]] = []
    x = np.asarray(inputs, dtype=np.int64)
    for b in range(trace.batch):
        if name == "embed":
            ins.append(input_steps(vit, x[b : b + 1])[0])
            continue
        seq = []
        for t in range(int(trace.busy.shape[1])):
            prev = bool(trace.busy[b, t, at - 1])
            if site.kind is SiteKind.LINEAR:
                row = trace.spikes[names.index(_source(vit, name))][b, t].reshape(-1)
            else:
                row = np.asarray(steps[t][name + ".drive"][b], dtype=np.int64).reshape(-1)
                if site.kind is SiteKind.CONTEXT:  # (a weight of 0 drives nothing)
                    row = row // int(site.op.weight) if site.op.weight else row
            seq.append(_step(row, prev or bool(row.any())))
            if not seq[-1].busy:
                break
        ins.append(seq)
    return ins, outputs


# -- lanes and input ---------------------------------------------------------------------------
def resolve_site_lanes(vit: VisionTransformer, lanes: Any) -> tuple[int, ...]:
    """Lanes per site, in execution order, from one value or one per site.

    One value ``P``: a token-wise site takes the largest divisor of its channels per token not
    above ``P`` (its neurons stay token-aligned), the head and the direct sites ``min(P, n)``.
    One per site: each must lie in ``1..n`` (a token-wise site's must divide its channels per
    token); the error names the site and the valid values.
    """
    sites = vit.sites
    if isinstance(lanes, int | np.integer) and not isinstance(lanes, bool):
        if lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes}")
        out = []
        for s in sites:
            if s.kind is SiteKind.LINEAR and s.name != "head":
                d = s.shape[-1]
                out.append(max(p for p in range(1, min(int(lanes), d) + 1) if d % p == 0))
            else:
                out.append(min(int(lanes), s.size))
        return tuple(out)
    lanes = tuple(lanes)
    if len(lanes) != len(sites):
        raise ValueError(f"lanes must hold {len(sites)} values (one per site), not {len(lanes)}")
    for s, p in zip(sites, lanes, strict=True):
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 1 <= p <= s.size:
            raise ValueError(f"lanes of site {s.name} must lie in 1..{s.size}, not {p!r}")
        d = s.shape[-1]
        if s.kind is SiteKind.LINEAR and s.name != "head" and d % p:
            valid = [q for q in range(1, d + 1) if d % q == 0]
            raise ValueError(
                f"lanes of site {s.name} must divide its {d} channels per token (one of {valid}), "
                f"not {p}"
            )
    return tuple(int(p) for p in lanes)


def input_steps(vit: VisionTransformer, inputs: np.ndarray) -> list[list[Step]]:
    """Per sample, the embed core's input: the pixels of every patch ``(patch·size + k, x)`` at
    step 0 (non-zero ones; busy = any pixel of the image is non-zero, as the reference's flag),
    then an empty step with busy 0 if step 0 was busy — the
    analog input protocol of the MLP's first layer."""
    x = vit.check_inputs(inputs)
    out = []
    for b in range(x.shape[0]):
        pix = x[b][np.asarray(vit.patch_index)].reshape(-1)
        first = _step(pix, bool(x[b].any()))  # (the reference: any pixel, patched or not)
        out.append([first] + ([_step(np.zeros_like(pix), False)] if first.busy else []))
    return out


# -- the FIFOs of the ViT top ---------------------------------------------------------------------
SKIP_STEPS = 4  #: steps of its producer's beats a FIFO on a skip path holds (default)
SHALLOW_FIFO = 16  #: entries of every other FIFO (default; LUT RAM on an FPGA)


def fifo_names(vit: VisionTransformer) -> tuple[str, ...]:
    """The name of every FIFO ``hw.cores.vit_core.ViTCore`` builds for ``vit``, in the order it
    builds them (the keys of :attr:`hw.model.design.DesignParams.fifo_depths`;
    ``hw.model.vit_model`` names them alike: tests/hw/test_vit_model.py)."""

    def link(name: str, n: int) -> list[str]:
        name = name.replace(".", "_")
        return [f"{name}_fifo{k}" for k in range(n)] if n > 1 else [f"{name}_fifo"]

    out: list[str] = []
    stages = residual_stages(vit)
    for st in stages:
        name = st["name"]
        out += link(f"{st['site']}_to_stage", 1)
        out += link(f"stage_{name}", 1 + sum(x["base"] == name for x in stages))
        out += link(f"ln_{name}", 1)
    for b in range(vit.depth):
        p = f"blocks.{b}."
        out += link(p + "norm1", 3)
        for f in ("q", "k", "scores", "softmax", "attn", "v", "context_product", "context"):
            out += link(p + f, 1)
        out += link(p + "norm2", 1) + link(p + "fc1", 1)
    return (*out, *link("norm", 1))


def default_fifo_depths(vit: VisionTransformer) -> dict[str, int]:
    """Entries of every FIFO by default: deep where a stream waits for a longer parallel path,
    shallow elsewhere.

    The **skip paths** are the residual stream into the next residual stage (it waits for the
    whole attention or MLP branch), the embedding into the first stage, ``v`` into the context
    product (it waits for q·k and the softmax) and the scores into the softmax: each holds
    :data:`SKIP_STEPS` steps of its producer's beats, so the producer runs ahead instead of
    stalling the branch that feeds the long path. Every other FIFO has :data:`SHALLOW_FIFO`
    entries: its consumer keeps up, so a deep one would only hold block RAM. Every residual
    stage's output counts as a skip path (the LayerNorm after it takes a token per ~90 cycles
    while the stage emits in bursts). With the digits ViT (3 images, lanes 8) the exact model
    gives 47,843 cycles per image against 73,973 with every FIFO a step deep and 47,359 with
    every FIFO unbounded; 2 steps give 52,237 (docs/performance.md, "FIFO plan").
    """
    tokens_x_dim = vit.tokens * vit.dim + 2
    scores = max((blk.heads for blk in vit.blocks), default=1) * vit.tokens**2 + 2
    out, embed = {}, vit.sites[0].name
    for n in fifo_names(vit):
        if n.startswith("stage_") or n.endswith("_v_fifo") or n == f"{embed}_to_stage_fifo":
            out[n] = SKIP_STEPS * tokens_x_dim
        elif n.endswith("_scores_fifo"):
            out[n] = SKIP_STEPS * scores
        else:
            out[n] = SHALLOW_FIFO
    return out


def fifo_depth(vit: VisionTransformer, params: Any, name: str) -> int:
    """Entries of the FIFO ``name`` under ``params``: its own in ``params.fifo_depths``, else
    ``params.fifo_depth`` for every FIFO, else :func:`default_fifo_depths`."""
    own = dict(params.fifo_depths).get(name)
    if own is not None:
        return own
    if params.fifo_depth is not None:
        return params.fifo_depth
    return _default_depths(vit)[name]


_DEFAULTS: dict[str, dict[str, int]] = {}


def _default_depths(vit: VisionTransformer) -> dict[str, int]:
    key = vit.digest()
    if key not in _DEFAULTS:
        _DEFAULTS[key] = default_fifo_depths(vit)
    return _DEFAULTS[key]
