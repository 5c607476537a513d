"""Synaptic-operation and energy accounting of CNN traces (spec §4.5, the exact method).

Per sample, site and step, with ``fanout_j`` the exact number of output neurons an input
element ``j`` reaches (:meth:`ir.cnn.Conv2d.fan_out`: a border element of a padded or strided
convolution reaches fewer output positions than an interior one):

* **conv** fed by spikes: ``ACs = Σ_j [s_j(t) ≠ 0]·fanout_j`` (``fanout_j`` = reached positions ×
  ``c_out``); fed by the analog image: ``MACs = Σ_j fanout_j`` at t = 0 (the dense count, edges
  included; equal to ``Σ`` over output neurons of their reached fan-in);
* **linear**: ``n_out`` per input event (MACs ``n_in·n_out`` when fed by the image);
* **sum-pool**: per input event, one AC per window the element lies in;
* **max-pool**: per input event, one comparison per window the element lies in, counted as an
  AC (an add-type operation; spec §4.5 does not name it);
* **residual merge** (:class:`ir.cnn.Add`): one AC per input event (its multiplier, a constant);
* **bias ACs**: one per neuron with a non-zero bias, at t = 0; **neuron updates**: the site's
  neurons per step run (an ST-BIF max-pool has none: its differences are spikes already). Both
  reported apart, as in :mod:`sw.energy`.

A graded spike is one event (:mod:`sw.energy`). Energy = 0.9 pJ·(ACs + bias ACs) + 4.6 pJ·MACs.
"""

from __future__ import annotations

import numpy as np

from spikezip.ir import Layer, Trace
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d, SumPool2d
from spikezip.sw.energy import OpCounts

__all__ = ["count_ops", "dense_macs", "fan_out"]


def fan_out(net: ConvNet, k: int) -> np.ndarray:
    """``int64`` fan-out of every input element of ``layers[k]`` (the shape it reads): the output
    neurons one event there touches (windows for pools, 1 for a residual merge)."""
    op, shape = net.layers[k], net.input_shape_of(k)
    if isinstance(op, Conv2d):
        return np.broadcast_to(op.fan_out(shape)[None], shape).copy()
    if isinstance(op, (SumPool2d, MaxPool2d)):
        return np.broadcast_to(op.fan_out(shape)[None], shape).copy()
    if isinstance(op, Layer):
        return np.full(shape, op.n_out, dtype=np.int64)
    if isinstance(op, Add):
        return np.ones(shape, dtype=np.int64)
    raise ValueError(f"layers[{k}] ({op.kind}) has no fan-out: it is not a site")


def count_ops(net: ConvNet, trace: Trace, inputs: np.ndarray) -> OpCounts:
    """Count operations of ``trace`` (produced by ``net`` on ``inputs``)."""
    if trace.network_digest != net.digest():
        raise ValueError("trace was not produced by this network (digest mismatch)")
    x = net.check_inputs(inputs)
    if x.shape[0] != trace.batch:
        raise ValueError(f"inputs hold {x.shape[0]} samples, the trace {trace.batch}")
    batch, n_steps, depth = trace.batch, trace.n_steps, net.depth
    site_of = {s.layer: i for i, s in enumerate(net.sites)}

    def spike_site(i: int) -> int | None:
        """Trace layer whose spikes layer ``i`` outputs (through Flattens); None: the image."""
        while i >= 0 and isinstance(net.layers[i], Flatten):
            i = net.sources[i][0]
        return None if i < 0 else site_of[i]

    acs = np.zeros((batch, n_steps, depth), dtype=np.int64)
    macs = np.zeros((batch, depth), dtype=np.int64)
    bias_acs = np.zeros((batch, depth), dtype=np.int64)
    updates = np.zeros((batch, depth), dtype=np.int64)
    rate = np.zeros((batch, n_steps, depth))
    for d, site in enumerate(net.sites):
        k, op = site.layer, site.op
        fan = fan_out(net, k).reshape(-1)
        for i in net.sources[k]:
            src = spike_site(i)
            if src is None:
                macs[:, d] += int(fan.sum())
            else:
                events = (trace.spikes[src] != 0).astype(np.int64)
                acs[:, :, d] += events @ fan
        bias = getattr(op, "bias", None)
        if isinstance(bias, np.ndarray):
            per_channel = int(np.prod(site.shape[1:])) if isinstance(op, Conv2d) else 1
            bias_acs[:, d] = int((bias != 0).sum()) * per_channel
        if not (isinstance(op, MaxPool2d) and op.neuron == "stbif"):  # ST-BIF: no neuron
            updates[:, d] = trace.steps * site.size
        rate[:, :, d] = (trace.spikes[d] != 0).mean(axis=2)
    spikes = np.stack([(s != 0).sum(axis=(1, 2)) for s in trace.spikes], axis=1)
    units = np.stack([np.abs(s.astype(np.int64)).sum(axis=(1, 2)) for s in trace.spikes], axis=1)
    return OpCounts(
        layer_names=trace.layer_names,
        acs=acs,
        macs=macs,
        bias_acs=bias_acs,
        neuron_updates=updates,
        spikes=spikes.astype(np.int64),
        spike_units=units.astype(np.int64),
        firing_rate=rate,
        steps=trace.steps.copy(),
    )


def dense_macs(net: ConvNet) -> np.ndarray:
    """``int64 [depth]``: the MACs of the dense integer QANN per site (every input element times
    its exact fan-out, edges included; a max-pool's comparisons and a merge's adds counted as
    one each), for comparing the SNN's energy with the QANN's."""
    out = np.zeros(net.depth, dtype=np.int64)
    for d, site in enumerate(net.sites):
        out[d] = len(net.sources[site.layer]) * int(fan_out(net, site.layer).sum())
    return out
