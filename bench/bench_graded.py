"""Graded ST-BIF vs ST-BIF in software (issue 14): steps, events, SOPs, energy, accuracy.

    python bench/bench_graded.py [--vit-images N]

On the trained digits MLP (``sw.qann.load_or_train(QannConfig())``, all 450 test images) and the
digits ViT (``sw.vit.model.load_or_train(VitConfig())``, ``--vit-images`` images, default all
450): the same integer network with ST-BIF neurons, graded neurons (K unbounded) and graded
neurons with K = 2. Per kind: steps mean/max, the proven step bound, events (non-zero spikes,
a graded spike is one) and spike units (Σ|s|), SOPs, energy per inference (spec §4.5, 45 nm),
accuracy, and whether every layer/site's converged tracer equals the integer QANN's (must
hold). Prints a table and records ``build/bench/graded.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.sw import digits, qann
from spikezip.sw.convert import to_network
from spikezip.sw.energy import count_ops
from spikezip.sw.reference import integer_qann, simulate
from spikezip.sw.vit import model as vit_model
from spikezip.sw.vit import reference as vit_ref
from spikezip.sw.vit.convert import to_transformer
from spikezip.sw.vit.energy import count_ops as vit_count_ops

KINDS = (("stbif", None), ("graded", None), ("graded", 2))
CHUNK = 150


def _label(neuron: str, k: int | None) -> str:
    return "ST-BIF" if neuron == "stbif" else f"graded K={'∞' if k is None else k}"


def _row(ops, exact: bool, acc: float, bound: int, seconds: float) -> dict:
    s = ops.summary()
    return {
        "steps_mean": s["steps_mean"],
        "steps_max": s["steps_max"],
        "step_bound": bound,
        "events_mean": s["events_mean"],
        "spike_units_mean": s["spike_units_mean"],
        "sops_mean": s["sops_mean"],
        "energy_nj_mean": s["energy_nj_mean"],
        "accuracy": acc,
        "exact": exact,
        "seconds": seconds,
    }


def mlp() -> dict:
    model = qann.load_or_train(qann.QannConfig())
    data = digits.load()
    x, y = data.x_test, data.y_test
    out = {}
    for neuron, k in KINDS:
        net = to_network(model, name="digits", neuron=neuron, max_level=k)
        t0 = time.perf_counter()
        trace = simulate(net, x)
        dt = time.perf_counter() - t0
        q = integer_qann(net, x)
        exact = all(np.array_equal(trace.counts(i), q[i]) for i in range(net.depth))
        acc = float((trace.predictions() == y).mean())
        out[_label(neuron, k)] = _row(count_ops(net, trace, x), exact, acc, net.step_bound(), dt)
    return out


def vit(n_images: int) -> dict:
    model = vit_model.load_or_train(vit_model.VitConfig())
    data = digits.load()
    x, y = data.x_test[:n_images], data.y_test[:n_images]
    out = {}
    for neuron, k in KINDS:
        net = to_transformer(model, name="digits-vit", neuron=neuron, max_level=k)
        t0 = time.perf_counter()
        parts = []
        exact = True
        for lo in range(0, len(x), CHUNK):
            xc = x[lo : lo + CHUNK]
            trace = vit_ref.simulate(net, xc)
            q = vit_ref.integer_qann(net, xc)
            exact &= all(np.array_equal(trace.counts(i), q.codes[i]) for i in range(trace.depth))
            parts.append((trace, xc))
        dt = time.perf_counter() - t0
        ops = [vit_count_ops(net, t, xc) for t, xc in parts]
        merged = _merge(ops)
        preds = np.concatenate([t.predictions() for t, _ in parts])
        acc = float((preds == y).mean())
        out[_label(neuron, k)] = _row(merged, exact, acc, net.step_bound(), dt)
    return out


class _Merged:
    """Batch means over chunks (the keys :func:`_row` reads)."""

    def __init__(self, rows: list[tuple[dict, int]]) -> None:
        total = sum(n for _, n in rows)
        self._s = {
            key: sum(r[key] * n for r, n in rows) / total
            for key in rows[0][0]
            if key != "steps_max"
        }
        self._s["steps_max"] = max(r["steps_max"] for r, _ in rows)

    def summary(self) -> dict:
        return self._s


def _merge(ops: list) -> _Merged:
    return _Merged([(o.summary(), len(o.steps)) for o in ops])


def _print(title: str, rows: dict) -> None:
    print(f"\n{title}")
    head = (
        f"{'neuron':<14}{'steps':>7}{'max':>5}{'bound':>7}{'events':>10}{'Σ|s|':>10}"
        f"{'SOPs':>12}{'nJ':>9}{'acc':>8}{'exact':>7}{'s':>7}"
    )
    print(head)
    for name, r in rows.items():
        print(
            f"{name:<14}{r['steps_mean']:>7.2f}{r['steps_max']:>5}{r['step_bound']:>7}"
            f"{r['events_mean']:>10.1f}{r['spike_units_mean']:>10.1f}{r['sops_mean']:>12.0f}"
            f"{r['energy_nj_mean']:>9.2f}{r['accuracy']:>8.4f}{r['exact']!s:>7}"
            f"{r['seconds']:>7.1f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vit-images", type=int, default=450, help="ViT test images (≤ 450)")
    args = ap.parse_args()
    results = {"mlp": mlp()}
    _print("digits MLP, 450 test images", results["mlp"])
    results["vit"] = vit(args.vit_images)
    results["vit_images"] = args.vit_images
    _print(f"digits ViT, {args.vit_images} test images", results["vit"])
    path = record("graded", results)
    print(f"\nrecorded {path}")
    ok = all(r["exact"] for part in ("mlp", "vit") for r in results[part].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
