"""Synaptic-operation and energy accounting from integer traces (spec §4.5, the exact method).

Per sample, layer and step:

* **synaptic ACs** of a spike-fed layer: ``Σ_j |s_j(t)| · fanout_j`` with ``fanout_j = n_out``
  (a fully-connected layer: every input spike touches every output neuron);
* **MACs** of an analog-fed first layer: the dense count ``n_in · n_out`` at t = 0;
* **bias ACs**: one per neuron with a non-zero bias, at the bias step t = 0 (reported apart);
* **neuron updates**: ``n_out`` per step run (reported apart; SpikeZIP's code counts them as ACs,
  the energy figure here does not).

Energy = 0.9 pJ · (synaptic ACs + bias ACs) + 4.6 pJ · MACs (45 nm figures, §4.1).

**Graded spikes** (docs/graded.md §6): a spike ``s = ±2^k`` is *one* event, and at each target
one AC of the weight shifted by ``k`` (``w·s = ±(w << k)``: a wire shift, no multiplier), so the
counts above count non-zero spikes, never ``|s|``. ``spike_units`` (``Σ|s|``) is reported beside
``spikes`` (the event count): it is the number of ±1 spikes an ST-BIF network sends for the same
tracers, so the two kinds compare event for event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikezip.ir import Encoding, Network, Trace

__all__ = ["E_AC_PJ", "E_MAC_PJ", "OpCounts", "count_ops"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6


@dataclass(frozen=True)
class OpCounts:
    """Operation counts of a batch; arrays are ``int64``, per sample first."""

    layer_names: tuple[str, ...]
    acs: np.ndarray  #: [B, T, D] synaptic ACs per step and layer
    macs: np.ndarray  #: [B, D] MACs (analog first layer only)
    bias_acs: np.ndarray  #: [B, D]
    neuron_updates: np.ndarray  #: [B, D]
    spikes: np.ndarray  #: [B, D] number of non-zero output spikes (events; a graded spike is one)
    spike_units: np.ndarray  #: [B, D] Σ|s| of the output spikes (ST-BIF: = spikes)
    firing_rate: np.ndarray  #: [B, T, D] fraction of a layer's neurons spiking in a step
    steps: np.ndarray  #: [B]

    @property
    def energy_pj(self) -> np.ndarray:
        """Energy per sample in pJ."""
        acs = self.acs.sum(axis=(1, 2)) + self.bias_acs.sum(axis=1)
        return E_AC_PJ * acs + E_MAC_PJ * self.macs.sum(axis=1)

    @property
    def sops(self) -> np.ndarray:
        """Synaptic operations per sample (ACs + MACs, bias excluded)."""
        return self.acs.sum(axis=(1, 2)) + self.macs.sum(axis=1)

    def summary(self) -> dict[str, float]:
        """Batch means, for reports."""
        return {
            "steps_mean": float(self.steps.mean()),
            "steps_max": int(self.steps.max()),
            "events_mean": float(self.spikes.sum(axis=1).mean()),
            "spike_units_mean": float(self.spike_units.sum(axis=1).mean()),
            "acs_mean": float(self.acs.sum(axis=(1, 2)).mean()),
            "macs_mean": float(self.macs.sum(axis=1).mean()),
            "bias_acs_mean": float(self.bias_acs.sum(axis=1).mean()),
            "neuron_updates_mean": float(self.neuron_updates.sum(axis=1).mean()),
            "sops_mean": float(self.sops.mean()),
            "energy_nj_mean": float(self.energy_pj.mean() / 1000.0),
        }


def count_ops(network: Network, trace: Trace, inputs: np.ndarray) -> OpCounts:
    """Count operations of ``trace`` (produced by ``network`` on ``inputs``)."""
    if trace.network_digest != network.digest():
        raise ValueError("trace was not produced by this network (digest mismatch)")
    x = network.check_inputs(inputs)
    if x.shape[0] != trace.batch:
        raise ValueError(f"inputs hold {x.shape[0]} samples, the trace {trace.batch}")
    batch, n_steps, depth = trace.batch, trace.n_steps, network.depth
    acs = np.zeros((batch, n_steps, depth), dtype=np.int64)
    macs = np.zeros((batch, depth), dtype=np.int64)
    rate = np.zeros((batch, n_steps, depth))
    for k, layer in enumerate(network.layers):
        if k == 0 and network.encoding is Encoding.ANALOG:
            macs[:, 0] = layer.n_in * layer.n_out
        else:
            if k == 0:
                events = np.zeros((batch, n_steps), dtype=np.int64)
                t_in = min(x.shape[1], n_steps)
                events[:, :t_in] = (x[:, :t_in] != 0).sum(axis=2)
            else:
                events = (trace.spikes[k - 1] != 0).sum(axis=2)
            acs[:, :, k] = events * layer.n_out
        rate[:, :, k] = (trace.spikes[k] != 0).mean(axis=2)
    bias_acs = np.tile([int((layer.bias != 0).sum()) for layer in network.layers], (batch, 1))
    updates = trace.steps[:, None] * np.array([layer.n_out for layer in network.layers])[None]
    spikes = np.stack([(s != 0).sum(axis=(1, 2)) for s in trace.spikes], axis=1)
    units = np.stack([np.abs(s.astype(np.int64)).sum(axis=(1, 2)) for s in trace.spikes], axis=1)
    return OpCounts(
        layer_names=trace.layer_names,
        acs=acs,
        macs=macs,
        bias_acs=bias_acs.astype(np.int64),
        neuron_updates=updates.astype(np.int64),
        spikes=spikes.astype(np.int64),
        spike_units=units.astype(np.int64),
        firing_rate=rate,
        steps=trace.steps.copy(),
    )
