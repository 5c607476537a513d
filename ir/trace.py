"""Spike traces: the file format shared by the integer reference and the hardware simulations.

A :class:`Trace` holds, for a batch of samples, per layer and per time step the spikes, and
optionally the membranes and tracers after the step, the per-layer busy flags (cumulative: layer
``l`` is busy in step ``t`` when the input or any layer ``≤ l`` is — the flag its end-of-step marker
carries in hardware), the number of steps
each sample ran, and the digest of the network it came from. Hardware traces add cycle stamps.

Samples that finished early are padded to the batch's longest run with what continued simulation
would give: no spikes, no busy flag, membranes and tracers frozen (the state is a fixed point).

File layout (``.npz``, no pickle): a JSON record ``__meta__`` (kind ``spikezip-trace``, version,
network digest, source, layer names) and the arrays ``steps [B]``, ``capped [B]``,
``busy [B, T, D]``, ``layer{k}.spikes [B, T, n_k]`` (int8; int64 when a graded spike exceeds
64 — spikes are 0 or ±2^k, docs/graded.md) and, when present,
``layer{k}.membranes`` / ``layer{k}.tracers`` (int64, same shape), ``layer{k}.step_cycles [B, T]``
(the cycle of the step's end marker) and ``layer{k}.spike_cycles [B, T, n_k]`` (the cycle of each
output event, -1 where none), and ``input_digests [B, 32]`` (uint8, :func:`sample_digests` of the
inputs) when recorded.

Every array is checked before it is converted: a value that does not fit its field (a spike of
257, a step count of 4.7, a busy flag of 7) is an error naming the field, the value and where it
is, never silently wrapped or truncated.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spikezip.ir._io import read_npz, write_npz
from spikezip.ir.errors import FormatError

__all__ = ["DIGEST_BYTES", "Trace", "sample_digests"]

FORMAT_VERSION = 1


#: Bytes of one sample's input digest (SHA-256).
DIGEST_BYTES = 32
_INT64 = np.iinfo(np.int64)


def sample_digests(inputs: np.ndarray) -> np.ndarray:
    """SHA-256 of each sample's input: ``uint8 [batch, DIGEST_BYTES]``.

    ``inputs`` is a batch as :meth:`ir.Network.check_inputs` returns it (``[batch, ...]``
    integers). Each digest covers the sample's shape and its values as little-endian int64, so
    it does not depend on the dtype the inputs were stored in. The reference and the hardware
    runs record these in their traces; :func:`ir.compare.first_divergence` refuses to compare
    traces of different inputs.
    """
    arr = np.asarray(inputs)
    if arr.dtype.kind not in "iu" or arr.ndim < 1:
        raise ValueError(
            f"inputs must be an integer array [batch, ...], not {arr.dtype} {list(arr.shape)}"
        )
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64.max:
        raise ValueError("inputs must fit in int64")
    canonical = np.ascontiguousarray(arr, dtype="<i8")
    out = np.empty((arr.shape[0], DIGEST_BYTES), dtype=np.uint8)
    shape = ",".join(str(n) for n in arr.shape[1:]).encode()
    for b in range(arr.shape[0]):
        h = hashlib.sha256(b"spikezip-input:" + shape + b":")
        h.update(canonical[b].tobytes())
        out[b] = np.frombuffer(h.digest(), dtype=np.uint8)
    return out


def _where(index: np.ndarray) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _array(value: Any, field: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{field} must be an array of integers ({e})") from None


def _checked(
    value: Any, field: str, *, lo: int, hi: int, valid: str, dtype: Any, bool_ok: bool = False
) -> np.ndarray:
    """``value`` as a read-only ``dtype`` array, after checking that every value lies in
    ``[lo, hi]`` (``valid`` says so in words). Bool arrays pass only when ``bool_ok``."""
    arr = _array(value, field)
    kind = arr.dtype.kind
    if not (kind in "iu" or (kind == "b" and bool_ok)):
        detail = ""
        if kind in "fc" and arr.size:
            flat = arr.reshape(-1)
            bad = ~np.isfinite(flat) | (flat != np.round(flat.real))
            i = int(np.argmax(bad)) if bad.any() else 0
            detail = f" ({flat[i]} at {_where(np.unravel_index(i, arr.shape))})"
        raise ValueError(f"{field} must hold integers, not {arr.dtype}{detail}; {valid}")
    if arr.size and kind != "b":
        if int(arr.min()) < lo or int(arr.max()) > hi:
            first = np.argwhere((arr < lo) | (arr > hi))[0]
            raise ValueError(f"{field} holds {arr[tuple(first)]} at {_where(first)}; {valid}")
    out = np.array(arr, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


#: Largest spike magnitude: a graded spike is ±2^k with k ≤ MAX_LEVEL (ir.network).
SPIKE_MAX = 1 << 61
_SPIKE_VALID = "spikes must be 0 or ±2^k (ST-BIF: -1, 0 or 1; graded: k ≤ 61)"


def _spikes(value: Any, field: str) -> np.ndarray:
    """Spikes: 0 or ±2^k (graded ST-BIF, docs/graded.md; ST-BIF's ±1 is k = 0). Stored as int8
    when every value fits it, else int64."""
    raw = _array(value, field)
    if raw.dtype == np.int8 and raw.size and int(raw.min()) >= -1 and int(raw.max()) <= 1:
        out = np.array(raw, copy=True)  # ST-BIF spikes as recorded: valid, no int64 round trip
        out.setflags(write=False)
        return out
    arr = _checked(
        value,
        field,
        lo=-SPIKE_MAX,
        hi=SPIKE_MAX,
        valid=_SPIKE_VALID,
        dtype=np.int64,
        bool_ok=True,
    )
    mag = np.abs(arr)
    bad = (mag & (mag - 1)) != 0  # neither 0 nor a power of two
    if bad.any():
        first = np.argwhere(bad)[0]
        raise ValueError(f"{field} holds {arr[tuple(first)]} at {_where(first)}; {_SPIKE_VALID}")
    if not arr.size or int(mag.max()) <= 64:
        arr = arr.astype(np.int8)
    arr.setflags(write=False)
    return arr


def _flags(value: Any, field: str) -> np.ndarray:
    return _checked(
        value, field, lo=0, hi=1, valid=f"{field} must be 0 or 1", dtype=np.bool_, bool_ok=True
    )


def _values(value: Any, field: str, *, lo: int = int(_INT64.min)) -> np.ndarray:
    valid = f"{field.split('.')[-1]} must be integers in [{lo}, {int(_INT64.max)}]"
    return _checked(value, field, lo=lo, hi=int(_INT64.max), valid=valid, dtype=np.int64)


def _layers(value: Any, field: str) -> tuple[Any, ...]:
    if isinstance(value, np.ndarray) or not hasattr(value, "__iter__"):
        raise TypeError(f"{field} must be a sequence of arrays, one per layer")
    return tuple(value)


@dataclass(frozen=True, kw_only=True, eq=False)
class Trace:
    """Per-layer, per-step record of a batch of inferences (see the module docstring)."""

    network_digest: str
    spikes: tuple[np.ndarray, ...]
    busy: np.ndarray
    steps: np.ndarray
    capped: np.ndarray
    membranes: tuple[np.ndarray, ...] | None = None
    tracers: tuple[np.ndarray, ...] | None = None
    step_cycles: tuple[np.ndarray, ...] | None = None
    spike_cycles: tuple[np.ndarray, ...] | None = None
    layer_names: tuple[str, ...] = field(default=())
    source: str = "reference"
    input_digests: np.ndarray | None = None  #: ``uint8 [B, DIGEST_BYTES]``, see sample_digests

    def __post_init__(self) -> None:
        if not isinstance(self.network_digest, str) or not self.network_digest:
            raise ValueError("network_digest must be a non-empty string")
        if not isinstance(self.source, str):
            raise TypeError(f"source must be a string, not {self.source!r}")
        spikes = tuple(
            _spikes(s, f"layer{k}.spikes") for k, s in enumerate(_layers(self.spikes, "spikes"))
        )
        if not spikes:
            raise ValueError("spikes must hold one array per layer, at least one")
        for k, s in enumerate(spikes):
            if s.ndim != 3:
                raise ValueError(
                    f"layer{k}.spikes must have shape [batch, steps, neurons], not {s.shape}"
                )
            if s.shape[:2] != spikes[0].shape[:2]:
                raise ValueError(
                    f"layer{k}.spikes has batch×steps {s.shape[:2]}, layer0.spikes has "
                    f"{spikes[0].shape[:2]}"
                )
        object.__setattr__(self, "spikes", spikes)
        batch, n_steps = spikes[0].shape[:2]
        depth = len(spikes)
        busy = _flags(self.busy, "busy")
        if busy.shape != (batch, n_steps, depth):
            raise ValueError(f"busy must have shape {(batch, n_steps, depth)}, not {busy.shape}")
        object.__setattr__(self, "busy", busy)
        steps = _checked(
            self.steps,
            "steps",
            lo=1,
            hi=n_steps,
            valid=f"steps must lie in [1, {n_steps}] (the recorded steps)",
            dtype=np.int64,
        )
        if steps.shape != (batch,):
            raise ValueError(f"steps must have shape ({batch},), not {steps.shape}")
        object.__setattr__(self, "steps", steps)
        capped = _flags(self.capped, "capped")
        if capped.shape != (batch,):
            raise ValueError(f"capped must have shape ({batch},), not {capped.shape}")
        object.__setattr__(self, "capped", capped)
        for name, lo, per_neuron in (
            ("membranes", int(_INT64.min), True),
            ("tracers", int(_INT64.min), True),
            ("step_cycles", -1, False),
            ("spike_cycles", -1, True),
        ):
            value = getattr(self, name)
            if value is not None:
                value = _layers(value, name)
                if len(value) != depth:
                    raise ValueError(f"{name} must hold {depth} arrays, one per layer")
                value = tuple(_values(v, f"layer{k}.{name}", lo=lo) for k, v in enumerate(value))
                for k, v in enumerate(value):
                    want = spikes[k].shape if per_neuron else (batch, n_steps)
                    if v.shape != want:
                        raise ValueError(f"layer{k}.{name} must have shape {want}, not {v.shape}")
            object.__setattr__(self, name, value)
        if self.input_digests is not None:
            digests = _checked(
                self.input_digests,
                "input_digests",
                lo=0,
                hi=255,
                valid="input_digests must be bytes (0 to 255)",
                dtype=np.uint8,
            )
            if digests.shape != (batch, DIGEST_BYTES):
                raise ValueError(
                    f"input_digests must have shape {(batch, DIGEST_BYTES)}, not {digests.shape}"
                )
            object.__setattr__(self, "input_digests", digests)
        if isinstance(self.layer_names, str) or not hasattr(self.layer_names, "__iter__"):
            raise TypeError(f"layer_names must be a sequence of strings, not {self.layer_names!r}")
        names = tuple(self.layer_names) or tuple(f"layer{k}" for k in range(depth))
        if len(names) != depth:
            raise ValueError(f"layer_names must hold {depth} names")
        for k, n in enumerate(names):
            if not isinstance(n, str):
                raise TypeError(f"layer_names[{k}] must be a string, not {n!r}")
        object.__setattr__(self, "layer_names", names)

    # -- facts -----------------------------------------------------------------------------
    @property
    def batch(self) -> int:
        return int(self.spikes[0].shape[0])

    @property
    def n_steps(self) -> int:
        """Recorded steps (the batch's longest run)."""
        return int(self.spikes[0].shape[1])

    @property
    def depth(self) -> int:
        return len(self.spikes)

    @property
    def converged(self) -> np.ndarray:
        """Per sample: the run ended at an idle step rather than at the step cap."""
        return ~self.capped

    def counts(self, layer: int = -1) -> np.ndarray:
        """Net spike count per sample and neuron of a layer (the converged activation)."""
        return self.spikes[layer].astype(np.int64).sum(axis=1)

    def predictions(self) -> np.ndarray:
        """Arg-max of the output layer's counts (first index on ties)."""
        return np.argmax(self.counts(-1), axis=1)

    def select(self, index: Any) -> Trace:
        """A trace of a subset of the samples (``index`` into the batch axis)."""
        idx = np.atleast_1d(np.arange(self.batch)[index])
        n = int(self.steps[idx].max()) if idx.size else 1

        def cut(arrs: tuple[np.ndarray, ...] | None, per_step: bool = True):
            if arrs is None:
                return None
            return tuple(a[idx, :n] if per_step else a[idx] for a in arrs)

        return Trace(
            network_digest=self.network_digest,
            spikes=cut(self.spikes),
            busy=self.busy[idx, :n],
            steps=self.steps[idx],
            capped=self.capped[idx],
            membranes=cut(self.membranes),
            tracers=cut(self.tracers),
            step_cycles=cut(self.step_cycles),
            spike_cycles=cut(self.spike_cycles),
            layer_names=self.layer_names,
            source=self.source,
            input_digests=None if self.input_digests is None else self.input_digests[idx],
        )

    @classmethod
    def concat(cls, traces: Sequence[Trace]) -> Trace:
        """The traces of consecutive batches of one network as one trace, in the given order.

        Each is padded to the longest run as its own padding is made (no spikes, no busy flag,
        membranes and tracers frozen, cycle stamps ``-1``), so the result equals the trace of
        one run on all the inputs wherever that run's samples do not depend on each other.
        Cycle stamps are taken as they are (re-base them first if they should not restart).
        """
        traces = list(traces)
        if not traces:
            raise ValueError("concat needs at least one trace")
        first = traces[0]
        for k, t in enumerate(traces[1:], 1):
            for name in ("network_digest", "layer_names", "source", "depth"):
                if getattr(t, name) != getattr(first, name):
                    raise ValueError(
                        f"trace {k} has {name} {getattr(t, name)!r}, trace 0 has "
                        f"{getattr(first, name)!r}"
                    )
            for name in ("membranes", "tracers", "step_cycles", "spike_cycles", "input_digests"):
                if (getattr(t, name) is None) != (getattr(first, name) is None):
                    raise ValueError(f"trace {k} and trace 0 differ in whether they have {name}")
        n = max(t.n_steps for t in traces)

        def pad(a: np.ndarray, how: str) -> np.ndarray:
            extra = n - a.shape[1]
            if not extra:
                return a
            if how == "freeze":  # the last recorded step, repeated
                return np.concatenate([a, np.repeat(a[:, -1:], extra, axis=1)], axis=1)
            width = [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2)
            return np.pad(a, width, constant_values=-1 if how == "cycles" else 0)

        def layered(name: str, how: str) -> tuple[np.ndarray, ...] | None:
            if getattr(first, name) is None:
                return None
            return tuple(
                np.concatenate([pad(getattr(t, name)[k], how) for t in traces])
                for k in range(first.depth)
            )

        return cls(
            network_digest=first.network_digest,
            spikes=layered("spikes", "zero"),
            busy=np.concatenate([pad(t.busy, "zero") for t in traces]),
            steps=np.concatenate([t.steps for t in traces]),
            capped=np.concatenate([t.capped for t in traces]),
            membranes=layered("membranes", "freeze"),
            tracers=layered("tracers", "freeze"),
            step_cycles=layered("step_cycles", "cycles"),
            spike_cycles=layered("spike_cycles", "cycles"),
            layer_names=first.layer_names,
            source=first.source,
            input_digests=None
            if first.input_digests is None
            else np.concatenate([t.input_digests for t in traces]),
        )

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.npz`` file atomically (layout in the module docstring)."""
        meta = {
            "kind": "spikezip-trace",
            "version": FORMAT_VERSION,
            "network_digest": self.network_digest,
            "source": self.source,
            "layer_names": list(self.layer_names),
            "depth": self.depth,
        }
        arrays = {"steps": self.steps, "capped": self.capped, "busy": self.busy}
        if self.input_digests is not None:
            arrays["input_digests"] = self.input_digests
        for k in range(self.depth):
            arrays[f"layer{k}.spikes"] = self.spikes[k]
            for name in ("membranes", "tracers", "step_cycles", "spike_cycles"):
                value = getattr(self, name)
                if value is not None:
                    arrays[f"layer{k}.{name}"] = value[k]
        write_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a file written by :meth:`save`; :class:`FormatError` names what is wrong."""
        meta, arrays = read_npz(path, kind="spikezip-trace")
        name = os.fspath(path)
        version = meta.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise FormatError(f"{name}: unsupported trace format version {version!r}")
        try:
            depth = meta["depth"]
            if type(depth) is not int or depth < 1:
                raise ValueError(f"depth must be a positive integer, not {depth!r}")
            names = meta["layer_names"]
            if not isinstance(names, list):
                raise ValueError(f"layer_names must be a list of strings, not {names!r}")
            expected = {"steps", "capped", "busy", "input_digests"}
            for k in range(depth):
                expected |= {f"layer{k}.{f}" for f in _LAYER_FIELDS}
            extra = sorted(set(arrays) - expected)
            if extra:
                raise ValueError(f"unexpected array {extra[0]!r} (depth is {depth})")

            def layered(field: str) -> tuple[np.ndarray, ...] | None:
                present = [f"layer{k}.{field}" in arrays for k in range(depth)]
                if not any(present) and field != "spikes":
                    return None
                return tuple(arrays[f"layer{k}.{field}"] for k in range(depth))

            return cls(
                network_digest=meta["network_digest"],
                spikes=layered("spikes"),
                busy=arrays["busy"],
                steps=arrays["steps"],
                capped=arrays["capped"],
                membranes=layered("membranes"),
                tracers=layered("tracers"),
                step_cycles=layered("step_cycles"),
                spike_cycles=layered("spike_cycles"),
                layer_names=tuple(names),
                source=meta["source"],
                input_digests=arrays.get("input_digests"),
            )
        except KeyError as e:
            raise FormatError(f"{name}: corrupt trace file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError) as e:
            raise FormatError(f"{name}: invalid trace: {e}") from None


_LAYER_FIELDS = ("spikes", "membranes", "tracers", "step_cycles", "spike_cycles")
