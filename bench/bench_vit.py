"""The digits ViT end to end: training time, accuracies, exactness, agreement, steps, energy, speed.

    python bench/bench_vit.py [--retrain] [--out DIR]

Trains (``--retrain``: into a fresh temporary cache, so the training time is measured) or loads the
cached default :class:`sw.vit.model.VitConfig` model, converts it, and on the whole digits test set:
float / integer-QANN / SNN accuracy, converged SNN == integer QANN at every site (must hold),
float-vs-integer agreement (int8 and 16-bit conversions), steps, SOPs and energy (spec §4.5).
``--out DIR`` also writes ``DIR/digits-vit.npz`` and ``DIR/digits-vit_inputs.npy`` for
``spikezip trace``. Prints a table and records ``build/bench/vit.json``.
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
from spikezip.sw.vit import model as vit
from spikezip.sw.vit.convert import agreement, to_transformer
from spikezip.sw.vit.energy import count_ops
from spikezip.sw.vit.reference import integer_qann, run

CHUNK = 150


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--retrain", action="store_true", help="train into a fresh cache (timed)")
    ap.add_argument("--out", type=Path, default=None, help="also write the network and inputs")
    args = ap.parse_args()
    config = vit.VitConfig()
    t0 = time.perf_counter()
    if args.retrain:
        with tempfile.TemporaryDirectory() as tmp:
            model = vit.load_or_train(config, directory=tmp)
    else:
        model = vit.load_or_train(config)
    train_s = time.perf_counter() - t0
    net = to_transformer(model, name="digits-vit")
    data = digits.load()
    x, y = data.x_test, data.y_test
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        net.save(args.out / "digits-vit.npz")
        np.save(args.out / "digits-vit_inputs.npy", x)
    t0 = time.perf_counter()
    qann = integer_qann(net, x)
    qann_s = time.perf_counter() - t0
    exact, preds, steps, summaries, snn_s = True, [], [], [], 0.0
    for i in range(0, len(x), CHUNK):
        xb = x[i : i + CHUNK]
        t0 = time.perf_counter()
        result = run(net, xb)
        snn_s += time.perf_counter() - t0
        chunk = integer_qann(net, xb)
        tr = result.trace
        exact &= not tr.capped.any()
        exact &= all(np.array_equal(tr.counts(k), chunk.codes[k]) for k in range(tr.depth))
        exact &= all(np.array_equal(result.totals[k], v) for k, v in chunk.values.items())
        preds.append(tr.predictions())
        steps.append(tr.steps)
        ops = count_ops(net, tr, xb)
        summaries.append((len(xb), ops.summary()))
    preds, steps = np.concatenate(preds), np.concatenate(steps)
    energy = {
        k: sum(n * s[k] for n, s in summaries) / len(x)
        for k in summaries[0][1]
        if k not in ("steps_max",)
    }
    agree8 = agreement(model, net, x)
    agree16 = agreement(
        model, to_transformer(model, weight_bits=16, gain_bits=16, stream_bits=12), x
    )
    results = {
        "config": config.to_dict(),
        "sites": len(net.sites),
        "tokens": net.tokens,
        "step_bound": net.step_bound(),
        "train_or_load_s": round(train_s, 2),
        "retrained": args.retrain,
        "accuracy_float": float(vit.accuracy(model, x, y)),
        "accuracy_integer_qann": float(np.mean(qann.predictions() == y)),
        "accuracy_snn": float(np.mean(preds == y)),
        "snn_equals_integer_qann_every_site": bool(exact),
        "agreement_int8_prediction": agree8.prediction,
        "agreement_int8_neurons": [round(a, 4) for a in agree8.neurons],
        "agreement_16bit_prediction": agree16.prediction,
        "agreement_16bit_neurons": [round(a, 4) for a in agree16.neurons],
        "steps_mean": float(steps.mean()),
        "steps_max": int(steps.max()),
        "energy": energy,
        "integer_qann_images_per_s": round(len(x) / qann_s),
        "snn_images_per_s": round(len(x) / snn_s),
        "digest": net.digest(),
    }
    rows = [
        ("model", f"{net.tokens} tokens × {net.dim}, depth {net.depth}, {len(net.sites)} sites"),
        ("training" if args.retrain else "loading", f"{train_s:.1f} s"),
        (
            "accuracy float / integer / SNN",
            f"{results['accuracy_float']:.4f} / {results['accuracy_integer_qann']:.4f} / "
            f"{results['accuracy_snn']:.4f}",
        ),
        ("SNN == integer QANN, every site", "yes" if exact else "NO"),
        (
            "agreement (prediction) int8 / 16-bit",
            f"{agree8.prediction:.4f} / {agree16.prediction:.4f}",
        ),
        (
            "agreement (codes, min site) int8 / 16-bit",
            f"{min(agree8.neurons):.4f} / {min(agree16.neurons):.4f}",
        ),
        ("steps mean / max (bound)", f"{steps.mean():.2f} / {steps.max()} ({net.step_bound()})"),
        ("ACs / attention ACs", f"{energy['acs_mean']:.0f} / {energy['attention_acs_mean']:.0f}"),
        ("MACs / LN+softmax ops", f"{energy['macs_mean']:.0f} / {energy['nonlinear_mean']:.0f}"),
        (
            "energy SNN / dense QANN",
            f"{energy['energy_nj_mean']:.1f} / {energy['ann_energy_nj']:.1f} nJ",
        ),
        (
            "images/s integer QANN / SNN",
            f"{results['integer_qann_images_per_s']} / {results['snn_images_per_s']}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"recorded {record('vit', results)}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
