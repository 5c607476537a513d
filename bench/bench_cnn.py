"""The digits CNN end to end: training time, accuracies, exactness, steps, SOPs, energy, speed.

    python bench/bench_cnn.py [--retrain]

Trains (``--retrain``: into a fresh temporary cache, so the training time is measured) or loads the
cached default :class:`sw.cnn.model.CnnConfig` model, converts it (BatchNorm folded), and on the
whole digits test set: float / integer-QANN / SNN accuracy, converged SNN == integer QANN at every
site on every image (must hold), float-vs-integer agreement, steps, SOPs and energy (spec §4.5,
:mod:`sw.cnn.energy`) against the dense integer QANN, and a per-site table. Records
``build/bench/cnn.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.sw import digits
from spikezip.sw.cnn import model as cnn
from spikezip.sw.cnn.convert import agreement, to_convnet
from spikezip.sw.cnn.energy import count_ops, dense_macs
from spikezip.sw.cnn.reference import integer_qann, simulate
from spikezip.sw.energy import E_MAC_PJ


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--retrain", action="store_true", help="train into a fresh cache (timed)")
    args = ap.parse_args()
    config = cnn.CnnConfig()
    t0 = time.perf_counter()
    if args.retrain:
        with tempfile.TemporaryDirectory() as tmp:
            model = cnn.load_or_train(config, directory=tmp)
    else:
        model = cnn.load_or_train(config)
    train_s = time.perf_counter() - t0
    net = to_convnet(model, name="digits-cnn")
    data = digits.load()
    x, y = data.x_test, data.y_test
    t0 = time.perf_counter()
    qann = integer_qann(net, x)
    qann_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = simulate(net, x)
    snn_s = time.perf_counter() - t0
    same = ~tr.capped
    for k in range(net.depth):
        same &= (tr.counts(k) == qann[k].reshape(len(x), -1)).all(axis=1)
    ops = count_ops(net, tr, x)
    energy = ops.summary()
    dense = dense_macs(net)
    agree = agreement(model, net, x)
    graded_net = net.with_neuron("graded")
    t0 = time.perf_counter()
    gtr = simulate(graded_net, x)
    graded_s = time.perf_counter() - t0
    g_same = ~gtr.capped
    for k in range(net.depth):
        g_same &= (gtr.counts(k) == qann[k].reshape(len(x), -1)).all(axis=1)
    g_energy = count_ops(graded_net, gtr, x).summary()
    results = {
        "config": config.to_dict(),
        "sites": list(net.site_names),
        "step_bound": net.step_bound(),
        "train_or_load_s": round(train_s, 2),
        "retrained": args.retrain,
        "accuracy_float": float(cnn.accuracy(model, x, y)),
        "accuracy_integer_qann": float(np.mean(np.argmax(qann[-1], axis=1) == y)),
        "accuracy_snn": float(np.mean(tr.predictions() == y)),
        "snn_equals_integer_qann_images": int(same.sum()),
        "images": len(x),
        "agreement_prediction": agree.prediction,
        "agreement_neurons": [round(a, 4) for a in agree.neurons],
        "steps_mean": float(tr.steps.mean()),
        "steps_max": int(tr.steps.max()),
        "energy": energy,
        "dense_macs": int(dense.sum()),
        "dense_energy_nj": float(dense.sum() * E_MAC_PJ / 1000),
        "graded_snn_equals_integer_qann_images": int(g_same.sum()),
        "graded_step_bound": graded_net.step_bound(),
        "graded_steps_mean": float(gtr.steps.mean()),
        "graded_steps_max": int(gtr.steps.max()),
        "graded_energy": g_energy,
        "graded_snn_images_per_s": round(len(x) / graded_s),
        "integer_qann_images_per_s": round(len(x) / qann_s),
        "snn_images_per_s": round(len(x) / snn_s),
        "digest": net.digest(),
    }
    rows = [
        ("sites", ", ".join(net.site_names)),
        ("training" if args.retrain else "loading", f"{train_s:.1f} s"),
        (
            "accuracy float / integer / SNN",
            f"{results['accuracy_float']:.4f} / {results['accuracy_integer_qann']:.4f} / "
            f"{results['accuracy_snn']:.4f}",
        ),
        ("SNN == integer QANN (images, every site)", f"{int(same.sum())} / {len(x)}"),
        ("float vs integer prediction", f"{agree.prediction:.4f}"),
        (
            "steps mean / max (bound)",
            f"{tr.steps.mean():.2f} / {tr.steps.max()} ({net.step_bound()})",
        ),
        ("SOPs: ACs / MACs", f"{energy['acs_mean']:.0f} / {energy['macs_mean']:.0f}"),
        ("events (spikes) per image", f"{energy['events_mean']:.0f}"),
        (
            "energy SNN / dense QANN",
            f"{energy['energy_nj_mean']:.1f} / {results['dense_energy_nj']:.1f} nJ",
        ),
        ("graded: SNN == integer QANN (images)", f"{int(g_same.sum())} / {len(x)}"),
        (
            "graded: steps mean / max (bound)",
            f"{gtr.steps.mean():.2f} / {gtr.steps.max()} ({graded_net.step_bound()})",
        ),
        (
            "graded: events, ACs, energy",
            f"{g_energy['events_mean']:.0f}, {g_energy['acs_mean']:.0f}, "
            f"{g_energy['energy_nj_mean']:.1f} nJ",
        ),
        (
            "images/s integer QANN / SNN",
            f"{results['integer_qann_images_per_s']} / {results['snn_images_per_s']}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print("| site | op | neurons | n..p | Θ | membrane bits | spikes | ACs | dense MACs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d, site in enumerate(net.sites):
        op, w = site.op, net.widths[site.layer]
        thr = getattr(op, "thresholds", None)
        if thr is None and hasattr(op, "thresholds_for"):
            thr = op.thresholds_for(site.shape[0])
        theta = "–" if thr is None else f"{int(np.min(thr))}–{int(np.max(thr))}"
        nb = "–" if w is None or not hasattr(op, "neg_bound") else f"{op.neg_bound}..{op.pos_bound}"
        acs = ops.acs[:, :, d].sum(axis=1).mean() + ops.macs[:, d].mean()
        print(
            f"| {site.name} | {site.kind} {'×'.join(map(str, site.shape))} | {site.size} | {nb} "
            f"| {theta} | {'–' if w is None else w.membrane} | {ops.spikes[:, d].mean():.0f} "
            f"| {acs:.0f}{' (MACs)' if d == 0 else ''} | {dense[d]} |"
        )
    print(f"recorded {record('cnn', results)}")
    return 0 if same.all() and g_same.all() else 1


if __name__ == "__main__":
    sys.exit(main())
