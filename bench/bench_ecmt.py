"""ECMT's multi-threshold conversion vs our exact SNNs on the digits MLP (issue 14's baseline row).

    python bench/bench_ecmt.py [--steps 1,2,4,5,8,16,32] [--vit-steps 1,2,4,7,8,16,25]

On the trained digits MLP (``sw.qann.load_or_train(QannConfig())``, all 450 test images):
ECMT (``sw.ecmt``, docs/graded.md §11) at each fixed T — with its default levels (the fewest
whose top reaches max(p, −n): N = 5, spikes ≤ 16) and with N = 4 (spikes ≤ 8, the graded
neuron's alphabet) — against the ST-BIF and graded SNNs run to their idle step and the integer
QANN: accuracy, agreement with the QANN, steps mean/max, events per inference. The default T
list holds 5 and 16, the steps at which graded and ST-BIF have converged on every image. Prints
the tables (the same as ``spikezip baseline``) and records ``build/bench/ecmt.json``.

The digits ViT (``sw.vit.model.load_or_train(VitConfig())``, all 450 images): ECMT with its
default levels (``sw.vit.ecmt``) at each of ``--vit-steps`` (7 and 25: graded's and ST-BIF's
converged step counts) against the same rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from spikezip.sw import digits, ecmt, qann
from spikezip.sw.convert import to_network
from spikezip.sw.vit import model as vit_model
from spikezip.sw.vit.convert import to_transformer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps",
        default="1,2,4,5,8,16,32",
        help="ECMT's fixed step counts, comma-separated (default 1,2,4,5,8,16,32)",
    )
    ap.add_argument(
        "--vit-steps",
        default="1,2,4,7,8,16,25",
        help="ECMT's step counts on the ViT (default 1,2,4,7,8,16,25; empty: no ViT)",
    )
    args = ap.parse_args()
    steps = tuple(int(t) for t in args.steps.split(","))
    network = to_network(qann.load_or_train(qann.QannConfig()), name="digits")
    data = digits.load()
    x, y = data.x_test, data.y_test
    results = {"images": len(x), "steps": list(steps)}
    for key, levels in (("default_levels", None), ("levels_4", 4)):
        t0 = time.perf_counter()
        rows = ecmt.compare(network, x, y, steps, levels=levels)
        seconds = time.perf_counter() - t0
        n = ecmt.check_levels(levels, network)
        print(f"\ndigits MLP, {len(x)} test images; ECMT levels per MT neuron: {n[:-1]}")
        print(ecmt.format_table(rows))
        results[key] = {"levels": list(n), "rows": [asdict(r) for r in rows], "seconds": seconds}
    if args.vit_steps:
        vit_steps = tuple(int(t) for t in args.vit_steps.split(","))
        vit = to_transformer(vit_model.load_or_train(vit_model.VitConfig()), name="digits-vit")
        t0 = time.perf_counter()
        rows = ecmt.compare(vit, x, y, vit_steps)
        seconds = time.perf_counter() - t0
        print(f"\ndigits ViT, {len(x)} test images; ECMT levels: default per site")
        print(ecmt.format_table(rows))
        results["vit"] = {
            "steps": list(vit_steps),
            "rows": [asdict(r) for r in rows],
            "seconds": seconds,
        }
    path = record("ecmt", results)
    print(f"\nrecorded {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
