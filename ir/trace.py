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
``busy [B, T, D]``, ``layer{k}.spikes [B, T, n_k]`` (int8) and, when present,
``layer{k}.membranes`` / ``layer{k}.tracers`` (int64, same shape), ``layer{k}.step_cycles [B, T]``
(the cycle of the step's end marker) and ``layer{k}.spike_cycles [B, T, n_k]`` (the cycle of each
output event, -1 where none).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ir._io import read_npz, write_npz
from ir.errors import FormatError

__all__ = ["Trace"]

FORMAT_VERSION = 1


def _frozen(arr: np.ndarray, dtype: Any) -> np.ndarray:
    out = np.array(arr, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


def _opt_layers(value: Any, dtype: Any) -> tuple[np.ndarray, ...] | None:
    if value is None:
        return None
    return tuple(_frozen(v, dtype) for v in value)


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

    def __post_init__(self) -> None:
        if not isinstance(self.network_digest, str) or not self.network_digest:
            raise ValueError("network_digest must be a non-empty string")
        spikes = tuple(_frozen(s, np.int8) for s in self.spikes)
        if not spikes:
            raise ValueError("spikes must hold one array per layer, at least one")
        for k, s in enumerate(spikes):
            if s.ndim != 3:
                raise ValueError(
                    f"spikes[{k}] must have shape [batch, steps, neurons], not {s.shape}"
                )
            if s.shape[:2] != spikes[0].shape[:2]:
                raise ValueError(
                    f"spikes[{k}] has batch×steps {s.shape[:2]}, layer 0 has {spikes[0].shape[:2]}"
                )
            if s.size and (s.min() < -1 or s.max() > 1):
                raise ValueError(f"spikes[{k}] holds values outside {{-1, 0, 1}}")
        object.__setattr__(self, "spikes", spikes)
        batch, n_steps = spikes[0].shape[:2]
        depth = len(spikes)
        busy = _frozen(self.busy, np.bool_)
        if busy.shape != (batch, n_steps, depth):
            raise ValueError(f"busy must have shape {(batch, n_steps, depth)}, not {busy.shape}")
        object.__setattr__(self, "busy", busy)
        steps = _frozen(self.steps, np.int64)
        if steps.shape != (batch,):
            raise ValueError(f"steps must have shape ({batch},), not {steps.shape}")
        if batch and (steps.min() < 1 or steps.max() > n_steps):
            raise ValueError(f"steps must lie in [1, {n_steps}] (the recorded steps)")
        object.__setattr__(self, "steps", steps)
        capped = _frozen(self.capped, np.bool_)
        if capped.shape != (batch,):
            raise ValueError(f"capped must have shape ({batch},), not {capped.shape}")
        object.__setattr__(self, "capped", capped)
        for name, dtype, per_neuron in (
            ("membranes", np.int64, True),
            ("tracers", np.int64, True),
            ("step_cycles", np.int64, False),
            ("spike_cycles", np.int64, True),
        ):
            value = _opt_layers(getattr(self, name), dtype)
            if value is not None:
                if len(value) != depth:
                    raise ValueError(f"{name} must hold {depth} arrays, one per layer")
                for k, v in enumerate(value):
                    want = spikes[k].shape if per_neuron else (batch, n_steps)
                    if v.shape != want:
                        raise ValueError(f"{name}[{k}] must have shape {want}, not {v.shape}")
            object.__setattr__(self, name, value)
        names = tuple(self.layer_names) or tuple(f"layer{k}" for k in range(depth))
        if len(names) != depth:
            raise ValueError(f"layer_names must hold {depth} names")
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
        if meta.get("version") != FORMAT_VERSION:
            raise FormatError(f"{path}: unsupported trace format version {meta.get('version')!r}")
        try:
            depth = int(meta["depth"])

            def layered(name: str) -> tuple[np.ndarray, ...] | None:
                if f"layer0.{name}" not in arrays:
                    return None
                return tuple(arrays[f"layer{k}.{name}"] for k in range(depth))

            return cls(
                network_digest=meta["network_digest"],
                spikes=layered("spikes") or (),
                busy=arrays["busy"],
                steps=arrays["steps"],
                capped=arrays["capped"],
                membranes=layered("membranes"),
                tracers=layered("tracers"),
                step_cycles=layered("step_cycles"),
                spike_cycles=layered("spike_cycles"),
                layer_names=tuple(meta["layer_names"]),
                source=meta["source"],
            )
        except KeyError as e:
            raise FormatError(f"{path}: corrupt trace file (missing {e.args[0]!r})") from None
        except (TypeError, ValueError) as e:
            raise FormatError(f"{path}: invalid trace: {e}") from None
