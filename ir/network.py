"""Fully-connected ST-BIF networks in hardware units (spec §2.4, §2.5).

Every quantity is an integer: weights ``w``, biases ``B``, thresholds ``Θ``, the initial membrane
``H = floor(Θ/2)``, tracer bounds ``n ≤ 0 ≤ p``. The derived bit widths are exact — computed from
the actual weights and the input range, not from a worst case — and both the reference model and
the RTL generators read them from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np

from spikezip.ir._io import content_digest, read_npz, write_npz
from spikezip.ir.errors import FormatError

__all__ = [
    "NEURON_KINDS",
    "Encoding",
    "Layer",
    "LayerWidths",
    "Network",
    "check_neuron",
    "settle_steps",
    "signed_width",
    "spike_magnitude",
    "unsigned_width",
]

FORMAT_VERSION = 1
#: Widest datapath the reference (int64 tensors) and the RTL generators accept.
MAX_WIDTH = 62
#: Every integer parameter (weights, biases, thresholds, bounds) must lie in this signed range:
#: a value outside it cannot fit the widest datapath. Checked before any conversion to int64.
VALUE_MIN, VALUE_MAX = -(1 << (MAX_WIDTH - 1)), (1 << (MAX_WIDTH - 1)) - 1
_RANGE = f"[{VALUE_MIN}, {VALUE_MAX}] (the {MAX_WIDTH}-bit datapath)"


def signed_width(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``[lo, hi]`` (at least 1)."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def unsigned_width(hi: int) -> int:
    """Smallest unsigned width holding every integer in ``[0, hi]`` (at least 1)."""
    return max(1, int(hi).bit_length())


class Encoding(StrEnum):
    """How the input reaches the first layer."""

    #: One integer value per input, injected at t = 0 only (first layer multiplies).
    ANALOG = "analog"
    #: Ternary spike trains ``{-1, 0, +1}`` per input and step (every layer only adds).
    SPIKE = "spike"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _where(index: Any) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def check_value(value: int, field: str, *, lo: int = VALUE_MIN, hi: int = VALUE_MAX) -> int:
    """``value`` (an integer) checked against ``[lo, hi]`` within the datapath's range."""
    lo, hi = max(lo, VALUE_MIN), min(hi, VALUE_MAX)
    if not lo <= value <= hi:
        raise ValueError(
            f"{field} must lie in [{lo}, {hi}] (the {MAX_WIDTH}-bit datapath), not {value}"
        )
    return int(value)


def _int_array(value: Any, *, field: str, ndim: int) -> np.ndarray:
    """``value`` as a read-only int64 array, after checking its dtype and that every value lies
    in ``[VALUE_MIN, VALUE_MAX]`` (Python integers beyond int64 included)."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError, OverflowError):
            raise TypeError(
                f"{field} must be an integer array, not {type(value).__name__}"
            ) from None
        if arr.size == 0 and arr.dtype.kind == "f":  # an empty list
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f":  # Python integers ≥ 2**63 make numpy choose float64
            exact = np.asarray(value, dtype=object)
            if exact.shape == arr.shape and all(_is_int(v) for v in exact.flat):
                arr = exact
    if arr.dtype == object:  # Python integers too large for int64, or anything else
        flat = arr.reshape(-1)
        for i, v in enumerate(flat):
            if not _is_int(v):
                raise TypeError(
                    f"{field} must be an integer array, not one holding {type(v).__name__}"
                )
            if not VALUE_MIN <= v <= VALUE_MAX:
                where = _where(np.unravel_index(i, arr.shape))
                raise ValueError(f"{field} holds {v} at {where}; values must lie in {_RANGE}")
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{field} must be an integer array, not an array of {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{field} must have {ndim} dimension(s), not shape {arr.shape}")
    if arr.size and (int(arr.min()) < VALUE_MIN or int(arr.max()) > VALUE_MAX):
        first = np.argwhere((arr < VALUE_MIN) | (arr > VALUE_MAX))[0]
        raise ValueError(
            f"{field} holds {arr[tuple(first)]} at {_where(first)}; values must lie in {_RANGE}"
        )
    out = np.array(arr, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


#: Neuron kinds: ``stbif`` fires ±1 (spec §2.2); ``graded`` fires ±2^k (docs/graded.md).
NEURON_KINDS = ("stbif", "graded")
#: Largest maximum level K of a graded neuron (a spike of 2^K must fit the datapath).
MAX_LEVEL = MAX_WIDTH - 1


def spike_magnitude(neuron: str, max_level: int | None, neg_bound: int, pos_bound: int) -> int:
    """Largest ``|s|`` a neuron can fire: 1 (ST-BIF), else the largest power of two
    ``≤ p − n`` (and ``≤ 2^K``) — a graded spike never exceeds ``p − A`` nor ``A − n``."""
    if neuron == "stbif":
        return 1
    m = 1 << ((pos_bound - neg_bound).bit_length() - 1)
    return m if max_level is None else min(m, 1 << max_level)


def _max_popcount(g: int) -> int:
    """``max {popcount(x) : 0 ≤ x ≤ g}``."""
    return max(bin(g).count("1"), g.bit_length() - 1) if g > 0 else 0


def settle_steps(neuron: str, max_level: int | None, span: int) -> int:
    """Most steps in which a neuron with a constant cumulative input still spikes, its tracer
    ``span = p − n`` away from the target at worst (docs/graded.md §3).

    ST-BIF: ``span``. Graded: the gap ``g`` loses its largest power of two (at most ``2^K``) per
    step, so it takes ``⌊g/2^K⌋ + popcount(g mod 2^K)`` steps; this is the maximum over
    ``0 ≤ g ≤ span`` (``popcount``'s maximum ``max(popcount(span), bit_length(span) − 1)`` when
    K is None).
    """
    if neuron == "stbif":
        return int(span)
    if max_level is None:
        return _max_popcount(span)
    q, r = divmod(span, 1 << max_level)
    best = q + _max_popcount(r)
    if q >= 1:
        best = max(best, q - 1 + max_level)
    return best


def neuron_json(obj: Any) -> dict[str, Any]:
    """The neuron kind of ``obj`` for files and digests: empty for ST-BIF (so that files and
    digests of ST-BIF networks are unchanged), else ``neuron`` and ``max_level``."""
    if obj.neuron == "stbif":
        return {}
    return {"neuron": obj.neuron, "max_level": obj.max_level}


def neuron_kind_from(d: dict[str, Any]) -> dict[str, Any]:
    """The ``neuron``/``max_level`` keyword arguments read from a file's record (absent: ST-BIF)."""
    return {"neuron": d.get("neuron", "stbif"), "max_level": d.get("max_level")}


def check_neuron(neuron: Any, max_level: Any) -> None:
    """Validate a ``neuron`` kind and ``max_level`` pair (the errors of :class:`Layer`)."""

    class _Kind:
        pass

    obj = _Kind()
    obj.neuron, obj.max_level = neuron, max_level
    _neuron_kind(obj)


def _neuron_kind(obj: Any) -> None:
    neuron = obj.neuron
    if not isinstance(neuron, str) or neuron not in NEURON_KINDS:
        valid = ", ".join(repr(k) for k in NEURON_KINDS)
        raise ValueError(f"neuron must be one of {valid}, not {neuron!r}")
    k = obj.max_level
    if k is None:
        return
    if neuron != "graded":
        raise ValueError(f"max_level applies to graded neurons only (neuron is {neuron!r})")
    if not _is_int(k):
        raise TypeError(f"max_level must be an integer in [0, {MAX_LEVEL}] or None, not {k!r}")
    if not 0 <= k <= MAX_LEVEL:
        raise ValueError(f"max_level must lie in [0, {MAX_LEVEL}], not {k}")
    object.__setattr__(obj, "max_level", int(k))


def neuron_fields(obj: Any, channels: int | str | None, *, unit: str = "neuron") -> None:
    """Validate (and normalise) ``threshold``, ``neg_bound``, ``pos_bound``, ``name``, ``neuron``
    and ``max_level`` of ``obj``.

    ``threshold`` is an int ≥ 1, or (unless ``channels`` is None) an array of ints ≥ 1 of shape
    ``(channels,)`` — of any length when ``channels == "any"``. ``unit`` names one entry in
    messages ("neuron", "channel"). Shared by :class:`Layer` and :mod:`ir.transformer`.
    """
    thr = obj.threshold
    if _is_int(thr):
        if thr < 1:
            raise ValueError(f"threshold must be a positive integer, not {thr!r}")
        object.__setattr__(obj, "threshold", check_value(thr, "threshold", lo=1))
    else:
        if channels is None:
            raise TypeError(f"threshold must be a positive integer, not {thr!r}")
        arr = _int_array(thr, field="threshold", ndim=1)
        if channels == "any":
            channels = max(arr.shape[0], 1)
        if arr.shape != (channels,):
            raise ValueError(
                f"threshold must be an integer or have shape ({channels},), not {arr.shape}"
            )
        if arr.min() < 1:
            i = int(np.argmin(arr))
            raise ValueError(
                f"threshold must be a positive integer, not {int(arr[i])} ({unit} {i})"
            )
        object.__setattr__(obj, "threshold", arr)
    for field in ("neg_bound", "pos_bound"):
        value = getattr(obj, field)
        if not _is_int(value):
            raise TypeError(f"{field} must be an integer, not {value!r}")
        object.__setattr__(obj, field, check_value(value, field))
    if obj.neg_bound > 0:
        raise ValueError(f"neg_bound must be ≤ 0, not {obj.neg_bound}")
    if obj.pos_bound < 0:
        raise ValueError(f"pos_bound must be ≥ 0, not {obj.pos_bound}")
    if obj.pos_bound - obj.neg_bound < 1:
        raise ValueError("pos_bound - neg_bound must be ≥ 1 (a neuron must be able to spike)")
    if not isinstance(obj.name, str):
        raise TypeError(f"name must be a string, not {obj.name!r}")
    _neuron_kind(obj)


@dataclass(frozen=True)
class LayerWidths:
    """Exact value ranges and two's-complement widths of one layer (spec §2.5).

    ``input_lo``/``input_hi`` bound the *cumulative* presynaptic value (a tracer, or the analog
    input), widened to include 0 so that every partial sum of a step's events is covered.
    """

    input_lo: int
    input_hi: int
    drive_lo: int  #: smallest per-step synaptic drive (bias excluded)
    drive_hi: int  #: largest per-step synaptic drive (bias excluded)
    membrane_lo: int  #: smallest membrane value reachable at any time, mid-step included
    membrane_hi: int  #: largest membrane value reachable at any time, mid-step included
    drive: int  #: signed bits of the per-step drive
    membrane: int  #: signed bits of the membrane; it never saturates
    tracer: int  #: signed bits of the tracer ``[n, p]``
    weight: int  #: signed bits of the weights
    bias: int  #: signed bits of the biases
    threshold: int  #: unsigned bits of the largest threshold


class NeuronFacts:
    """What a neuron kind implies, for any object with ``neuron``, ``max_level``, ``neg_bound``
    and ``pos_bound`` (a :class:`Layer`, a ViT quantizer site)."""

    neuron: str
    max_level: int | None
    neg_bound: int
    pos_bound: int

    @property
    def spike_max(self) -> int:
        """Largest ``|s|`` of an output spike (1 for ST-BIF; see :func:`spike_magnitude`)."""
        return spike_magnitude(self.neuron, self.max_level, self.neg_bound, self.pos_bound)

    @property
    def settle_steps(self) -> int:
        """Most spiking steps after the input stops (see :func:`settle_steps`)."""
        return settle_steps(self.neuron, self.max_level, self.pos_bound - self.neg_bound)


@dataclass(frozen=True, kw_only=True, eq=False)
class Layer(NeuronFacts):
    """One fully-connected ST-BIF layer.

    Parameters
    ----------
    weight : integer array ``[n_out, n_in]``
    bias : integer array ``[n_out]``, injected once at t = 0
    threshold : int ≥ 1 (per layer) or integer array ``[n_out]`` of values ≥ 1 (per neuron)
    neg_bound, pos_bound : tracer bounds ``n ≤ 0 ≤ p`` with ``p - n ≥ 1``; symmetric quantizers of
        ``L`` levels use ``n = (-L)//2, p = L//2 - 1``, asymmetric ones ``n = 0, p = L - 1``
    name : optional label used in reports and divergence messages
    neuron : ``"stbif"`` (spikes ±1, the default) or ``"graded"`` (spikes ±2^k, docs/graded.md)
    max_level : graded only: the largest level K (spikes ``|s| ≤ 2^K``), or None (unbounded)
    """

    weight: np.ndarray
    bias: np.ndarray
    threshold: int | np.ndarray
    neg_bound: int
    pos_bound: int
    name: str = ""
    neuron: str = "stbif"
    max_level: int | None = None

    def __post_init__(self) -> None:
        weight = _int_array(self.weight, field="weight", ndim=2)
        n_out, n_in = weight.shape
        if n_out < 1 or n_in < 1:
            raise ValueError(
                f"weight must have at least one row and column, not shape {weight.shape}"
            )
        object.__setattr__(self, "weight", weight)
        bias = _int_array(self.bias, field="bias", ndim=1)
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape ({n_out},) to match weight, not {bias.shape}")
        object.__setattr__(self, "bias", bias)
        neuron_fields(self, n_out)

    # -- shape and per-neuron parameters ------------------------------------------------------
    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def per_neuron_threshold(self) -> bool:
        return isinstance(self.threshold, np.ndarray)

    @cached_property
    def thresholds(self) -> np.ndarray:
        """Θ per output neuron, ``int64 [n_out]``."""
        out = np.broadcast_to(np.asarray(self.threshold, dtype=np.int64), (self.n_out,)).copy()
        out.setflags(write=False)
        return out

    @cached_property
    def initial_membranes(self) -> np.ndarray:
        """H = floor(Θ/2) per output neuron, ``int64 [n_out]``."""
        out = self.thresholds // 2
        out.setflags(write=False)
        return out

    @property
    def levels(self) -> int:
        """Number of quantization levels ``p - n + 1``."""
        return self.pos_bound - self.neg_bound + 1

    @property
    def symmetric(self) -> bool:
        return self.neg_bound < 0

    def widths(
        self, input_lo: int, input_hi: int, *, analog: bool, spike_max: int = 1
    ) -> LayerWidths:
        """Exact ranges and widths for a cumulative presynaptic value in ``[input_lo, input_hi]``.

        ``analog`` means the whole input arrives in one step (first layer, analog encoding), so
        the per-step drive spans the cumulative range; otherwise each step brings at most
        ``±spike_max`` per input (1 for ST-BIF inputs, up to ``2^K`` for graded ones).
        """
        lo, hi = min(int(input_lo), 0), max(int(input_hi), 0)
        w = self.weight
        magnitude = int(np.abs(w).max()) * max(-lo, hi, 1) * self.n_in * int(spike_max) + int(
            np.abs(self.bias).max()
        )
        if magnitude + (self.levels + 1) * int(self.thresholds.max()) >= 2**62:
            w = w.astype(object)  # exact Python integers instead of overflowing int64
        s_max = np.maximum(w * lo, w * hi).sum(axis=1)
        s_min = np.minimum(w * lo, w * hi).sum(axis=1)
        if analog:
            d_min, d_max = s_min, s_max
        else:
            absw = np.abs(w).sum(axis=1) * int(spike_max)
            d_min, d_max = -absw, absw
        thr, h, bias = (
            a.astype(w.dtype) for a in (self.thresholds, self.initial_membranes, self.bias)
        )
        u_lo = h + s_min + bias - self.pos_bound * thr
        u_hi = h + s_max + bias - self.neg_bound * thr
        mem_lo, mem_hi = int(u_lo.min()), int(u_hi.max())
        return LayerWidths(
            input_lo=lo,
            input_hi=hi,
            drive_lo=int(d_min.min()),
            drive_hi=int(d_max.max()),
            membrane_lo=mem_lo,
            membrane_hi=mem_hi,
            drive=signed_width(int(d_min.min()), int(d_max.max())),
            membrane=signed_width(min(mem_lo, 0), max(mem_hi, int(thr.max()))),
            tracer=signed_width(self.neg_bound, self.pos_bound),
            weight=signed_width(int(w.min()), int(w.max())),
            bias=signed_width(int(self.bias.min()), int(self.bias.max())),
            threshold=unsigned_width(int(thr.max())),
        )

    # -- serialisation ------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "neg_bound": self.neg_bound,
            "pos_bound": self.pos_bound,
            "per_neuron_threshold": self.per_neuron_threshold,
            "threshold": None if self.per_neuron_threshold else self.threshold,
            **neuron_json(self),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (arrays as nested lists)."""
        d = self._meta()
        d.pop("n_in"), d.pop("n_out"), d.pop("per_neuron_threshold")
        d["weight"] = self.weight.tolist()
        d["bias"] = self.bias.tolist()
        d["threshold"] = self.thresholds.tolist() if self.per_neuron_threshold else self.threshold
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layer:
        try:
            # no casts here: the validators check the values before converting them
            return cls(
                weight=d["weight"],
                bias=d["bias"],
                threshold=d["threshold"],
                neg_bound=d["neg_bound"],
                pos_bound=d["pos_bound"],
                name=d.get("name", ""),
                **neuron_kind_from(d),
            )
        except KeyError as e:
            raise ValueError(f"layer description lacks field {e.args[0]!r}") from None


@dataclass(frozen=True, kw_only=True, eq=False)
class Network:
    """An ordered chain of fully-connected ST-BIF layers and its input encoding.

    Parameters
    ----------
    layers : sequence of :class:`Layer`; ``layers[k].n_in == layers[k-1].n_out``
    n_inputs : input size; must equal ``layers[0].n_in``
    encoding : :class:`Encoding` (or its string value)
    input_bounds : ``(lo, hi)`` — for ``analog``, the range of every input value; for ``spike``,
        the range of every input train's running sum (the input's "tracer"), ``lo ≤ 0 ≤ hi``
    name : optional label
    """

    layers: tuple[Layer, ...]
    n_inputs: int
    encoding: Encoding
    input_bounds: tuple[int, int]
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.layers, Layer) or not hasattr(self.layers, "__iter__"):
            raise TypeError(f"layers must be a sequence of Layer, not {type(self.layers).__name__}")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("layers must hold at least one Layer")
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{k}] must be a Layer, not {type(layer).__name__}")
        object.__setattr__(self, "layers", layers)
        if not _is_int(self.n_inputs) or self.n_inputs < 1:
            raise ValueError(f"n_inputs must be a positive integer, not {self.n_inputs!r}")
        object.__setattr__(self, "n_inputs", int(self.n_inputs))
        if layers[0].n_in != self.n_inputs:
            raise ValueError(
                f"layers[0] has {layers[0].n_in} inputs but n_inputs is {self.n_inputs}"
            )
        for k in range(1, len(layers)):
            if layers[k].n_in != layers[k - 1].n_out:
                raise ValueError(
                    f"layers[{k}] has {layers[k].n_in} inputs but layers[{k - 1}] has "
                    f"{layers[k - 1].n_out} outputs"
                )
        try:
            object.__setattr__(self, "encoding", Encoding(self.encoding))
        except ValueError:
            valid = ", ".join(repr(e.value) for e in Encoding)
            raise ValueError(f"encoding must be one of {valid}, not {self.encoding!r}") from None
        bounds = tuple(self.input_bounds) if hasattr(self.input_bounds, "__iter__") else ()
        if len(bounds) != 2 or not all(_is_int(b) for b in bounds):
            raise TypeError(f"input_bounds must be a pair of integers, not {self.input_bounds!r}")
        lo, hi = int(bounds[0]), int(bounds[1])
        if lo > hi:
            raise ValueError(f"input_bounds must satisfy lo ≤ hi, not ({lo}, {hi})")
        if lo < VALUE_MIN or hi > VALUE_MAX:
            raise ValueError(f"input_bounds must lie in {_RANGE}, not ({lo}, {hi})")
        if self.encoding is Encoding.SPIKE and not lo <= 0 <= hi:
            raise ValueError(
                f"input_bounds of a spike input must satisfy lo ≤ 0 ≤ hi, not ({lo}, {hi})"
            )
        object.__setattr__(self, "input_bounds", (lo, hi))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, not {self.name!r}")
        for k, w in enumerate(self.widths):
            if w.membrane > MAX_WIDTH:
                raise ValueError(
                    f"layers[{k}] needs a {w.membrane}-bit membrane for its weights and input "
                    f"range; at most {MAX_WIDTH} bits are supported"
                )
            if w.drive > MAX_WIDTH:  # only graded inputs (spikes up to 2^K) can get here
                raise ValueError(
                    f"layers[{k}] needs a {w.drive}-bit per-step drive for its weights and "
                    f"input spikes; at most {MAX_WIDTH} bits are supported"
                )

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    def with_neuron(self, neuron: str = "graded", max_level: int | None = None) -> Network:
        """The same network with every layer's neuron kind set (docs/graded.md)."""
        return replace(
            self,
            layers=tuple(
                replace(layer, neuron=neuron, max_level=max_level) for layer in self.layers
            ),
        )

    @property
    def depth(self) -> int:
        return len(self.layers)

    def layer_name(self, k: int) -> str:
        """``layers[k].name`` or ``"layer{k}"``."""
        return self.layers[k].name or f"layer{k}"

    @cached_property
    def widths(self) -> tuple[LayerWidths, ...]:
        """Exact widths per layer; layer 0 sees ``input_bounds``, layer k the tracer of k-1."""
        out = []
        lo, hi = self.input_bounds
        spike_max = 1  # the network's input spikes are ternary
        for k, layer in enumerate(self.layers):
            analog = k == 0 and self.encoding is Encoding.ANALOG
            out.append(layer.widths(lo, hi, analog=analog, spike_max=spike_max))
            lo, hi, spike_max = layer.neg_bound, layer.pos_bound, layer.spike_max
        return tuple(out)

    def step_bound(self, input_steps: int = 1) -> int:
        """Number of steps within which the network provably reaches its first idle step.

        By spec §2.2 (ii), an ST-BIF layer's last spike comes at most ``p - n`` steps after the
        last step of its input; a graded layer's at most ``settle_steps`` (``O(log(p − n))``,
        docs/graded.md §3). The last input step is 0 (analog) or ``input_steps - 1`` (spike). One
        idle step then ends the run: ``last_input_step + Σ settle_steps + 2`` steps in all
        (``settle_steps = p − n`` for ST-BIF).
        """
        last_input = 0 if self.encoding is Encoding.ANALOG else max(int(input_steps), 1) - 1
        return last_input + sum(layer.settle_steps for layer in self.layers) + 2

    # -- inputs --------------------------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Validate a batch of inputs; return it as read-only ``int64``.

        Analog: ``[batch, n_inputs]`` integers within ``input_bounds``. Spike: ``[batch, steps,
        n_inputs]`` values in {-1, 0, +1} whose running sums stay within ``input_bounds``.
        """
        arr = np.asarray(inputs)
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
            if (
                arr.dtype.kind == "f"
                and arr.size
                and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr))
            ):
                pass  # integral floats: range-checked below as they are, converted at the end
            else:
                raise TypeError(f"inputs must be integers, not an array of {arr.dtype}")
        lo, hi = self.input_bounds
        if self.encoding is Encoding.ANALOG:
            if arr.ndim != 2 or arr.shape[1] != self.n_inputs or arr.shape[0] < 1:
                raise ValueError(
                    f"inputs must have shape [batch, {self.n_inputs}] for analog encoding, "
                    f"not {list(arr.shape)}"
                )
            bad = (arr < lo) | (arr > hi)
            if bad.any():
                b, j = np.argwhere(bad)[0]
                raise ValueError(
                    f"inputs[{b}, {j}] = {int(arr[b, j])} is outside input_bounds [{lo}, {hi}]"
                )
        else:
            if (
                arr.ndim != 3
                or arr.shape[2] != self.n_inputs
                or arr.shape[0] < 1
                or arr.shape[1] < 1
            ):
                raise ValueError(
                    f"inputs must have shape [batch, steps, {self.n_inputs}] for spike encoding, "
                    f"not {list(arr.shape)}"
                )
            bad = (arr < -1) | (arr > 1)
            if bad.any():
                b, t, j = np.argwhere(bad)[0]
                raise ValueError(
                    f"inputs[{b}, {t}, {j}] = {int(arr[b, t, j])} is not a spike in {{-1, 0, 1}}"
                )
            run = np.cumsum(arr.astype(np.int64), axis=1)
            bad = (run < lo) | (run > hi)
            if bad.any():
                b, t, j = np.argwhere(bad)[0]
                raise ValueError(
                    f"running sum of inputs[{b}, :{t + 1}, {j}] = {int(run[b, t, j])} is outside "
                    f"input_bounds [{lo}, {hi}]"
                )
        out = np.array(arr, dtype=np.int64)
        out.setflags(write=False)
        return out

    # -- serialisation -------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "kind": "spikezip-network",
            "version": FORMAT_VERSION,
            "name": self.name,
            "n_inputs": self.n_inputs,
            "encoding": self.encoding.value,
            "input_bounds": list(self.input_bounds),
            "layers": [layer._meta() for layer in self.layers],
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for k, layer in enumerate(self.layers):
            arrays[f"layer{k}.weight"] = layer.weight
            arrays[f"layer{k}.bias"] = layer.bias
            if layer.per_neuron_threshold:
                arrays[f"layer{k}.threshold"] = layer.thresholds
        return arrays

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (arrays as nested lists)."""
        return {
            "name": self.name,
            "n_inputs": self.n_inputs,
            "encoding": self.encoding.value,
            "input_bounds": list(self.input_bounds),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Network:
        try:
            return cls(
                layers=tuple(Layer.from_dict(x) for x in d["layers"]),
                n_inputs=d["n_inputs"],
                encoding=d["encoding"],
                input_bounds=tuple(d["input_bounds"]),
                name=d.get("name", ""),
            )
        except KeyError as e:
            raise ValueError(f"network description lacks field {e.args[0]!r}") from None

    def digest(self) -> str:
        """Stable SHA-256 (hex) of the canonical content: metadata JSON and little-endian arrays."""
        return content_digest(self._meta(), self._arrays())

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file (JSON metadata + int64 arrays), atomically."""
        write_npz(path, self._meta(), self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Read a file written by :meth:`save`; :class:`FormatError` names what is wrong."""
        meta, arrays = read_npz(path, kind="spikezip-network")
        name = os.fspath(path)
        version = meta.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise FormatError(f"{name}: unsupported network format version {version!r}")
        try:
            if not isinstance(meta["layers"], list):
                raise ValueError(f"layers must be a list, not {meta['layers']!r}")
            layers, expected = [], set()
            for k, lm in enumerate(meta["layers"]):
                if not isinstance(lm, dict):
                    raise ValueError(f"layers[{k}] must be an object, not {lm!r}")
                per_neuron = lm["per_neuron_threshold"]
                if not isinstance(per_neuron, bool):
                    raise ValueError(
                        f"layers[{k}].per_neuron_threshold must be true or false, not "
                        f"{per_neuron!r}"
                    )
                expected |= {f"layer{k}.weight", f"layer{k}.bias"}
                if per_neuron:
                    expected.add(f"layer{k}.threshold")
                try:
                    layer = Layer(
                        weight=arrays[f"layer{k}.weight"],
                        bias=arrays[f"layer{k}.bias"],
                        threshold=arrays[f"layer{k}.threshold"] if per_neuron else lm["threshold"],
                        neg_bound=lm["neg_bound"],
                        pos_bound=lm["pos_bound"],
                        name=lm["name"],
                        **neuron_kind_from(lm),
                    )
                except (TypeError, ValueError) as e:
                    raise ValueError(f"layers[{k}]: {e}") from None
                for key in ("n_in", "n_out"):
                    if key in lm and lm[key] != getattr(layer, key):
                        raise ValueError(
                            f"layers[{k}].{key} is {lm[key]!r} but layer{k}.weight has shape "
                            f"{layer.weight.shape}"
                        )
                layers.append(layer)
            extra = sorted(set(arrays) - expected)
            if extra:
                raise ValueError(f"unexpected array {extra[0]!r}")
            return cls(
                layers=tuple(layers),
                n_inputs=meta["n_inputs"],
                encoding=meta["encoding"],
                input_bounds=tuple(meta["input_bounds"]),
                name=meta["name"],
            )
        except KeyError as e:
            raise FormatError(f"{name}: corrupt network file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError) as e:
            raise FormatError(f"{name}: invalid network: {e}") from None
