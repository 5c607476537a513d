"""ECMT's conversion on the integer ViT QANN (docs/graded.md §11, "The ViT").

The MLP version (:mod:`sw.ecmt`) extended to the sites of :func:`sw.vit.reference.integer_qann`,
with ECMT's three modules (Huang et al., ACM MM 2024, arXiv:2502.21193):

* every site's nonlinearity — its quantizer, after a LayerNorm or a softmax where the site has
  one — is wrapped by the **ECM**: summed over ``t`` steps it has emitted ``t·f(mean input)``;
* every product of two spiking operands (``q·kᵀ``, ``attn·v``) is ECMT's ``AtNeuron``: summed over
  ``t`` steps it has emitted ``A_t·B_tᵀ / t`` (``A_t``, ``B_t`` the operands' running sums), so
  the mean the next ECM sees is ``A_t·B_tᵀ / t²``;
* an **MT neuron** (:func:`sw.ecmt.mt_step`, base Θ of the site, N levels) sits on every site
  that feeds a linear layer or a product (LayerNorms, q, k, v, attn, context, fc1); the sites that
  only feed the residual stream (embed, proj, fc2) add their ECM output to it directly, as
  ECMT's linear outputs do; the head is read out (arg-max of its summed ECM output).

The analog image, every bias and the position embedding enter every step (rate coding). All in
integers, exactly: a site's code of a mean ``num/den`` is ``clamp(⌊(num + H·den)/(Θ·den)⌋, n, p)``;
the integer LayerNorm of the mean stream ``R_t/t`` is the LayerNorm of ``R_t`` with ``eps·t²``
(its ratio ``a/√W`` is invariant under that scaling); the integer softmax's table is indexed by
the score gap, which for a mean is the fraction ``(max S − S_j)/t²``: it is rounded to the nearest
integer (half up) — the one choice made here that the QANN does not define (it is exact whenever
the gap is an integer, as at convergence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spikezip.ir import Layer
from spikezip.ir.transformer import VisionTransformer
from spikezip.sw.ecmt import EcmtRun, check_int64, check_level_count, check_steps, mt_step
from spikezip.sw.reference import _LayerOps, single_thread
from spikezip.sw.vit.reference import _heads, _merge, _Quant, _tensor, layer_norm

__all__ = ["MT_SITES", "default_levels", "simulate"]

#: Site roles whose output goes through an MT neuron (they feed a linear layer or a product).
MT_SITES = ("norm1", "q", "k", "v", "attn", "context", "norm2", "fc1", "norm")


def default_levels(op) -> int:
    """The fewest levels whose top ``2^(N−1)`` reaches ``max(p, −n)`` of the site's ``op`` (as
    :func:`sw.ecmt.default_levels`)."""
    top = max(int(op.pos_bound), -int(op.neg_bound), 1)
    return (top - 1).bit_length() + 1


def _max(t: torch.Tensor | int) -> int:
    """``max |t|`` as a Python int (0 for an empty tensor)."""
    if isinstance(t, int):
        return abs(t)
    return int(t.abs().amax()) if t.numel() else 0


def _matmul(a: torch.Tensor, b: torch.Tensor, what: str) -> torch.Tensor:
    """``a @ b`` of int64 tensors, exactly (float64 when every partial sum fits 2^53)."""
    bound = _max(a) * _max(b) * a.shape[-1]
    check_int64(bound, what)
    if bound < 2**53:
        return (a.to(torch.float64) @ b.to(torch.float64)).to(torch.int64)
    return a @ b


@dataclass
class _Site:
    """ECM and MT state of one site."""

    name: str
    quant: _Quant
    levels: int
    code: torch.Tensor | int = 0  # Σ of the ECM's outputs so far, in codes: t·f(mean)
    membrane: torch.Tensor | int = 0  # the MT neuron's, in real units (Θ·codes)
    spikes: list[torch.Tensor] | None = None

    def ecm(self, num: torch.Tensor, den: int, t: int) -> torch.Tensor:
        """Update with the mean ``num/den``; return this step's ECM output in codes."""
        q = self.quant
        theta = _max(q.threshold)
        check_int64(_max(num) + theta * den, f"{self.name}: the ECM's numerator")
        code = torch.div(num + q.initial * den, q.threshold * den, rounding_mode="floor")
        new = t * code.clamp(q.neg_bound, q.pos_bound)
        delta, self.code = new - self.code, new
        return delta

    def mt(self, delta: torch.Tensor) -> torch.Tensor:
        """The MT neuron on this step's ECM output; its spikes (codes ±2^j)."""
        thr = self.quant.threshold
        s, self.membrane = mt_step(delta * thr, self.membrane, threshold=thr, levels=self.levels)
        self.spikes.append(s)
        return s


def _softmax_of_mean(s: torch.Tensor, t: int, table: torch.Tensor, numerator: int) -> torch.Tensor:
    """The integer softmax (:func:`sw.vit.reference.softmax`) of the mean scores ``s / t²``: the
    table index is the gap ``(max s − s_j)/t²`` rounded half up."""
    gap = torch.div(
        2 * (s.amax(dim=-1, keepdim=True) - s) + t * t, 2 * t * t, rounding_mode="floor"
    )
    ext = torch.cat([table, torch.zeros(1, dtype=torch.int64)])
    e = ext[gap.clamp(max=table.shape[0])]
    total = e.sum(dim=-1, keepdim=True)
    return torch.div(e * numerator + total // 2, total, rounding_mode="floor")


def simulate(
    vit: VisionTransformer,
    inputs: np.ndarray | torch.Tensor,
    steps: int,
    *,
    levels: int | None = None,
) -> EcmtRun:
    """Run ECMT (module docstring) on ``[batch, n_inputs]`` pixels for ``steps`` steps.

    ``levels``: N for every MT neuron (default :func:`default_levels` per site). The run's
    ``spikes`` and ``outputs`` are per site in ``vit.sites`` order, flattened ``[B, T, size]`` and
    ``[B, size]`` (the sites without an MT neuron have empty spikes ``[B, T, 0]``).
    """
    steps = check_steps(steps)
    levels = check_level_count(levels)
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = _tensor(vit.check_inputs(inputs))
    with single_thread():
        return _run(vit, x, steps, levels)


def _run(vit: VisionTransformer, x: torch.Tensor, steps: int, levels: int | None) -> EcmtRun:
    sites = {s.name: s for s in vit.sites}
    state = {
        name: _Site(
            name=name,
            quant=_Quant.of(site),
            levels=levels or default_levels(site.op),
            spikes=[] if site.name.rsplit(".", 1)[-1] in MT_SITES else None,
        )
        for name, site in sites.items()
    }
    for name, st in state.items():  # the MT membrane: |v| ≤ Θ·T·(max(p, −n) + 2^(N−1)), doubled
        if st.spikes is not None:
            theta, op = _max(st.quant.threshold), sites[name].op
            top = max(int(op.pos_bound), -int(op.neg_bound)) + (1 << (st.levels - 1))
            check_int64(2 * theta * steps * top + theta, f"{name}: the MT membrane")
    totals: dict[str, torch.Tensor | int] = {name: 0 for name in sites}
    ops: dict[str, tuple[_LayerOps, int]] = {}

    def linear(name: str, a: torch.Tensor, max_in: int, t: int) -> torch.Tensor:
        if name not in ops:
            layer: Layer = sites[name].op
            w = np.abs(layer.weight).astype(object).sum(axis=1)
            drive = max(int(wi) * max_in + abs(int(b)) for wi, b in zip(w, layer.bias, strict=True))
            check_int64(drive, f"{name}: the drive")
            ops[name] = (_LayerOps.build(layer, max_in), drive)
        op, drive = ops[name]
        check_int64(_max(totals[name]) + drive, f"{name}: ECMT's running input")
        totals[name] = totals[name] + op.synapses(a) + op.bias
        return state[name].ecm(totals[name], t, t)

    def top(name: str) -> int:
        return 1 << (state[name].levels - 1)

    def norm(name: str, increment: torch.Tensor, t: int) -> torch.Tensor:
        """The LayerNorm site: its own running stream R_t (this step's stream increment up to
        it added), the ECM of q∘LN at the mean R_t/t, the MT neuron."""
        op = sites[name].op
        totals[name] = totals[name] + increment
        m, d = _max(totals[name]), increment.shape[-1]
        check_int64(d * d * m * m + op.eps * t * t, f"{name}: the LayerNorm's variance")
        check_int64(2 * d * m * _max(_tensor(op.gain)), f"{name}: the LayerNorm's numerator")
        g = layer_norm(totals[name], _tensor(op.gain), _tensor(op.bias), op.eps * t * t)
        return state[name].mt(state[name].ecm(g, 1, t))

    lo, hi = vit.input_bounds
    patches = x[:, _tensor(vit.patch_index)]
    pos = _tensor(vit.position).expand(x.shape[0], -1, -1)
    acc: dict[str, torch.Tensor | int] = {}  # running sums of the product operands
    for t in range(1, steps + 1):
        stream = pos.clone()  # this step's increment of the residual stream, so far
        stream[:, 1:] += vit.embed_residual * linear("embed", patches, max(abs(lo), abs(hi)), t)
        for b, blk in enumerate(vit.blocks):
            p = f"blocks.{b}."
            n1 = norm(p + "norm1", stream, t)
            qkv = {}
            for f in ("q", "k", "v"):
                qkv[f] = state[p + f].mt(linear(p + f, n1, top(p + "norm1"), t))
                acc[p + f] = acc.get(p + f, 0) + _heads(qkv[f], blk.heads)
            scores = _matmul(acc[p + "q"], acc[p + "k"].transpose(-1, -2), p + "scores")
            sm = blk.softmax
            check_int64(4 * _max(scores) + t * t, p + "scores: the softmax's gap")
            g = _softmax_of_mean(scores, t, _tensor(sm.table), sm.numerator)
            a = state[p + "attn"].mt(state[p + "attn"].ecm(g, 1, t))
            acc[p + "attn"] = acc.get(p + "attn", 0) + a
            av = _matmul(acc[p + "attn"], acc[p + "v"], p + "context")
            check_int64(abs(blk.context.weight) * _max(av), p + "context: the drive")
            c = blk.context.weight * _merge(av)
            ctx = state[p + "context"].mt(state[p + "context"].ecm(c, t * t, t))
            stream = stream + blk.attn_residual * linear(p + "proj", ctx, top(p + "context"), t)
            n2 = norm(p + "norm2", stream, t)
            f1 = state[p + "fc1"].mt(linear(p + "fc1", n2, top(p + "norm2"), t))
            stream = stream + blk.mlp_residual * linear(p + "fc2", f1, top(p + "fc1"), t)
        nf = norm("norm", stream, t)
        linear("head", nf[:, 0], top("norm"), t)
    batch = x.shape[0]
    spikes, outputs, site_levels = [], [], []
    for name in sites:
        st = state[name]
        outputs.append(st.code.reshape(batch, -1).numpy())
        if st.spikes:
            spikes.append(torch.stack(st.spikes, dim=1).reshape(batch, steps, -1).numpy())
        else:
            spikes.append(np.zeros((batch, steps, 0), dtype=np.int64))
        site_levels.append(st.levels)
    return EcmtRun(
        steps=steps, levels=tuple(site_levels), spikes=tuple(spikes), outputs=tuple(outputs)
    )
