"""End-to-end digits demo: train (or load) the QANN, convert, check the three equalities, report.

    python -m spikezip.demo [--out out] [--sim verilator|icarus|none] [--images N]

Stages, each timed:

1. train (or load the cached) QANN on scikit-learn's digits data set and convert it to integers;
2. the integer reference on the whole test set: converged SNN == integer QANN for every layer and
   image (equality 1), accuracies, steps, SOPs and energy (spec §4.5);
3. when the hardware flow is available (``hw`` + ``sim``): generate Verilog, simulate the images
   cycle-accurately, compare every image's trace with the golden one (equalities 2 and 3);
4. the same QANN with graded ST-BIF neurons (spikes ±2^k, docs/graded.md): equality 1, its steps,
   events and energy beside ST-BIF's, and its RTL on the same images (equalities 2 and 3);
5. the digits ViT (``--model all``, the default, ``both`` or ``vit``): converted, SNN == integer
   QANN at every site, then its RTL on ``--vit-images`` images, compared image by image;
6. the digits CNN (``--model all`` or ``cnn``): the same, on ``--cnn-images`` images.

Prints one table and writes ``<out>/report.md``. Exits non-zero if any equality fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikezip.cli import POSITIVE, _converter, _Parser
from spikezip.ir._io import atomic_write, atomic_write_text
from spikezip.paths import CliError, output_dir

VIT_DEMO_IMAGES = 20  #: ViT test images `make demo` simulates in RTL (after a ~2.5-minute build)
VIT_REFERENCE_IMAGES = 50  #: ViT test images `make demo` checks SNN == integer QANN on
CNN_DEMO_IMAGES = 50  #: CNN test images `make demo` simulates in RTL (after a ~45-s build)
ALL = 10**9  #: ``--images all``: every test image


def _images(text: str) -> int:
    if text.strip() == "all":
        return ALL
    value = int(text.strip())
    if value < 1:
        raise ValueError
    return value


IMAGES = _converter(_images, "a positive integer or 'all'")


@dataclass
class Report:
    rows: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def table(self) -> str:
        width = max(len(n) for n, _ in self.rows)
        lines = [f"{n:<{width}}  {v}" for n, v in self.rows]
        lines += [f"{'time: ' + n:<{width}}  {t:.2f} s" for n, t in self.timings]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = ["| quantity | value |", "|---|---|"]
        out += [f"| {n} | {v} |" for n, v in self.rows]
        out += [f"| time: {n} | {t:.2f} s |" for n, t in self.timings]
        return "\n".join(out)


class Stopwatch:
    def __init__(self, report: Report, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        print(f"... {self.name}", flush=True)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings.append((self.name, time.perf_counter() - self.t0))


def rtl_stage(
    rep: Report,
    network,
    x,
    y,
    golden,
    out: Path,
    *,
    sim: str,
    images: int | None,
    lanes: int,
    label: str = "",
):
    """Generate, simulate cycle-accurately, compare every image; add the rows (their names
    prefixed with ``label``); return the run."""
    from spikezip.ir.compare import first_divergence
    from spikezip.sim.simulate import design, simulate

    n = len(x) if images is None else min(images, len(x))
    with Stopwatch(rep, f"{label}generate Verilog (lanes {lanes})"):
        d = design(network, Path("build") / "designs", lanes=lanes)
    from tqdm import tqdm

    bar = tqdm(total=n, unit="image", desc=f"{label}RTL on {sim}", leave=False)
    with Stopwatch(rep, f"{label}build + simulate {n} images ({sim})"):
        run = simulate(
            network, x[:n], sim=sim, design_dir=d, on_progress=lambda k: bar.update(k - bar.n)
        )
    bar.close()
    run.trace.save(out / ("hw-graded.npz" if label else "hw.npz"))
    sub = golden.select(slice(0, n))
    div = first_divergence(sub, run.trace)
    exact = sum(first_divergence(sub.select([b]), run.trace.select([b])) is None for b in range(n))
    rep.check(div is None, f"{label}RTL differs from the reference: {div}")
    rtl_acc = float((run.trace.predictions() == y[:n]).mean())
    ref_acc = float((sub.predictions() == y[:n]).mean())
    rep.check(rtl_acc == ref_acc, f"{label}RTL accuracy != SNN accuracy")
    rep.add(
        f"{label}accuracy: RTL ({sim}, {n} images)",
        f"{rtl_acc:.2%} (SNN on the same images: {ref_acc:.2%})",
    )
    rep.add(f"{label}images bit-exact (RTL == reference)", f"{exact} / {n}")
    rep.add(
        f"{label}cycles / inference",
        f"latency mean {run.latency.mean():.0f}, max "
        f"{run.latency.max()}; back to back {run.total_cycles / n:.0f}",
    )
    if not label:
        rep.add(
            "RTL simulation speed",
            f"{run.cycles_per_second:,.0f} cycles/s, "
            f"{run.run_seconds / n:.3f} s per image (start-up included)",
        )
    rep.add(f"{label}design", f"{d.verilog} ({', '.join(map(str, d.manifest.lanes))} lanes)")
    return run


def graded_stage(
    rep: Report, model, x, y, out: Path, *, sim: str, images: int | None, lanes: int, base: dict
) -> None:
    """The same QANN with graded ST-BIF neurons (spikes ±2^k, docs/graded.md): the reference
    against the integer QANN, its steps, events and energy beside ST-BIF's (``base``, the
    ST-BIF network's ``count_ops`` summary), then its RTL."""
    from spikezip.sw.convert import to_network
    from spikezip.sw.energy import count_ops
    from spikezip.sw.reference import integer_qann, simulate

    label = "graded: "
    with Stopwatch(rep, f"{label}convert, integer reference"):
        network = to_network(model, name="digits-graded", neuron="graded")
        network.save(out / "digits-graded.npz")
        golden = simulate(network, x)
    acts = integer_qann(network, x)
    equal = all(np.array_equal(golden.counts(k), acts[k]) for k in range(network.depth))
    rep.check(equal, "graded SNN != integer QANN")
    rep.check(not golden.capped.any(), "a graded sample hit the step cap")
    ops = count_ops(network, golden, x).summary()
    acc = float((golden.predictions() == y).mean())
    rep.add(
        f"{label}SNN == integer QANN",
        f"{'yes' if equal else 'NO'} (every layer, every image); accuracy {acc:.2%}",
    )
    rep.add(
        f"{label}time steps",
        f"mean {ops['steps_mean']:.2f}, max {ops['steps_max']} "
        f"(ST-BIF {base['steps_mean']:.2f}, {base['steps_max']}: "
        f"{base['steps_mean'] / ops['steps_mean']:.2f}× fewer)",
    )
    rep.add(
        f"{label}events / energy per inference",
        f"{ops['events_mean']:.0f} spikes (ST-BIF {base['events_mean']:.0f}), "
        f"{ops['energy_nj_mean']:.3f} nJ (ST-BIF {base['energy_nj_mean']:.3f} nJ)",
    )
    if sim != "none":
        rtl_stage(rep, network, x, y, golden, out, sim=sim, images=images, lanes=lanes, label=label)


def vit_stage(
    rep: Report,
    out: Path,
    *,
    sim: str,
    images: int,
    lanes: int,
    reference_images: int | None = None,
) -> None:
    """The spiking digits ViT: reference on the test images (SNN == integer QANN at every site;
    on ``max(images, reference_images)`` of them), then RTL on ``images`` (generate, simulate,
    compare every image); add its rows."""
    from spikezip.sw import digits
    from spikezip.sw.vit import model as vit_model
    from spikezip.sw.vit.convert import to_transformer
    from spikezip.sw.vit.reference import integer_qann, run

    with Stopwatch(rep, "ViT: train or load QANN, convert"):
        vit = to_transformer(vit_model.load_or_train(vit_model.VitConfig()), name="digits-vit")
        vit.save(out / "digits-vit.npz")
    data = digits.load()
    n = min(images, len(data.x_test))
    n_ref = min(max(n, reference_images or 0), len(data.x_test))
    x, y = data.x_test[:n_ref], data.y_test[:n_ref]
    with Stopwatch(rep, f"ViT: integer reference, {n_ref} images"):
        reference = run(vit, x).trace
        acts = integer_qann(vit, x)
    same = all(np.array_equal(reference.counts(k), acts.codes[k]) for k in range(len(vit.sites)))
    rep.check(same, "ViT: converged SNN != integer QANN")
    rep.add(
        "ViT",
        f"{vit.tokens} tokens × {vit.dim}, depth {vit.depth}, {len(vit.sites)} sites, "
        f"digest {vit.digest()[:12]}",
    )
    rep.add(f"ViT: SNN == integer QANN ({n_ref} images)", "yes (every site)" if same else "NO")
    rep.add(f"ViT: accuracy SNN ({n_ref} images)", f"{(reference.predictions() == y).mean():.2%}")
    if sim != "none":
        graph_rtl_stage(rep, "ViT", vit, reference.select(slice(0, n)), x[:n], y[:n], out,
                        sim=sim, lanes=lanes, file="hw-vit.npz")  # fmt: skip


def cnn_stage(
    rep: Report,
    out: Path,
    *,
    sim: str,
    images: int,
    lanes: int,
    reference_images: int | None = None,
) -> None:
    """The spiking digits CNN (docs/cnn.md): reference on the test images (SNN == integer QANN
    at every site; on ``max(images, reference_images)`` of them), then RTL on ``images``
    (generate, simulate, compare every image); add its rows."""
    from spikezip.sw import digits
    from spikezip.sw.cnn import model as cnn_model
    from spikezip.sw.cnn.convert import to_convnet
    from spikezip.sw.cnn.reference import integer_qann, simulate

    with Stopwatch(rep, "CNN: train or load QANN, convert"):
        net = to_convnet(cnn_model.load_or_train(cnn_model.CnnConfig()), name="digits-cnn")
        net.save(out / "digits-cnn.npz")
    data = digits.load()
    n = min(images, len(data.x_test))
    n_ref = min(max(n, reference_images or 0), len(data.x_test))
    x, y = data.x_test[:n_ref], data.y_test[:n_ref]
    with Stopwatch(rep, f"CNN: integer reference, {n_ref} images"):
        reference = simulate(net, x)
        acts = integer_qann(net, x)
    same = all(
        np.array_equal(reference.counts(k), acts[k].reshape(n_ref, -1)) for k in range(net.depth)
    )
    rep.check(same, "CNN: converged SNN != integer QANN")
    shape = "×".join(map(str, net.input_shape))
    rep.add("CNN", f"{shape} input, {net.depth} sites, digest {net.digest()[:12]}")
    rep.add(f"CNN: SNN == integer QANN ({n_ref} images)", "yes (every site)" if same else "NO")
    rep.add(f"CNN: accuracy SNN ({n_ref} images)", f"{(reference.predictions() == y).mean():.2%}")
    if sim != "none":
        graph_rtl_stage(rep, "CNN", net, reference.select(slice(0, n)), x[:n], y[:n], out,
                        sim=sim, lanes=lanes, file="hw-cnn.npz")  # fmt: skip


def graph_rtl_stage(
    rep: Report,
    label: str,
    net,
    golden,
    x: np.ndarray,
    y: np.ndarray,
    out: Path,
    *,
    sim: str,
    lanes: int,
    file: str,
) -> None:
    """A site-graph top (the ViT's, the CNN's) on ``x``: generate, simulate, compare every image
    with ``golden``; add the ``label: …`` rows."""
    from tqdm import tqdm

    from spikezip.ir.compare import first_divergence
    from spikezip.sim.simulate import design, simulate

    n = len(x)
    snn_acc = float((golden.predictions() == y).mean())
    with Stopwatch(rep, f"{label}: generate Verilog (lanes {lanes})"):
        d = design(net, Path("build") / "designs", lanes=lanes)
    bar = tqdm(total=n, unit="image", desc=f"{label} RTL on {sim}", leave=False)
    with Stopwatch(rep, f"{label}: build + simulate {n} images ({sim})"):
        hw = simulate(net, x, sim=sim, design_dir=d, on_progress=lambda k: bar.update(k - bar.n))
    bar.close()
    hw.trace.save(out / file)
    div = first_divergence(golden, hw.trace, describe=net.describe_neuron)
    exact = sum(
        first_divergence(golden.select([b]), hw.trace.select([b])) is None for b in range(n)
    )
    rep.check(div is None, f"{label} RTL differs from the reference: {div}")
    rtl_acc = float((hw.trace.predictions() == y).mean())
    rep.add(f"{label}: accuracy RTL ({sim}, {n} images)", f"{rtl_acc:.2%} (SNN: {snn_acc:.2%})")
    rep.add(f"{label}: images bit-exact (RTL == reference)", f"{exact} / {n}")
    rep.add(  # later images wait behind earlier ones: only image 0's latency is its own
        f"{label}: cycles / inference",
        f"latency {hw.latency[0]} (image 0, nothing ahead of it); back to back "
        f"{hw.total_cycles / n:.0f}",
    )
    threads = f" on {hw.threads} threads" if hw.threads > 1 else ""
    rep.add(
        f"{label}: RTL simulation speed",
        f"{hw.cycles_per_second:,.0f} cycles/s{threads}, {hw.run_seconds / n:.2f} s per image "
        "(start-up included)",
    )


def raster(trace, network, path: Path, *, sample: int) -> None:
    """Spike raster of one sample through all layers (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth, steps = trace.depth, int(trace.steps[sample])
    fig, axes = plt.subplots(1, depth, figsize=(4 * depth, 4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        s = trace.spikes[k][sample, :steps]
        for sign, marker, color in ((1, "^", "tab:blue"), (-1, "v", "tab:red")):
            t, i = np.nonzero(s == sign)
            ax.scatter(t, i, marker=marker, s=14, c=color, label=f"{sign:+d}")
        ax.set_title(f"{network.layer_name(k)} ({network.layers[k].n_out} neurons)")
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron")
        ax.set_xlim(-0.5, steps - 0.5)
        ax.set_ylim(-0.5, network.layers[k].n_out - 0.5)
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"spike raster, test image {sample}: {steps} steps")
    fig.tight_layout()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="spikezip demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="output directory (default: out)")
    ap.add_argument(
        "--sim",
        default="verilator",
        choices=("verilator", "icarus", "none"),
        help="simulator for the RTL stage ('none' skips it)",
    )
    ap.add_argument(
        "--images",
        type=IMAGES,
        default=None,
        help="test images to simulate in RTL, N or 'all' (default: all)",
    )
    ap.add_argument("--lanes", type=POSITIVE, default=8, help="lanes per layer core (default 8)")
    ap.add_argument(
        "--model",
        choices=("all", "both", "mlp", "vit", "cnn"),
        default="all",
        help="the MLP, the ViT, the CNN, the MLP and the ViT (both), or all three (default); "
        "beside the MLP, the ViT runs --vit-images images and the CNN --cnn-images",
    )
    ap.add_argument(
        "--vit-images",
        type=IMAGES,
        default=None,
        help=f"test images for the ViT's RTL (--model both: default {VIT_DEMO_IMAGES}, on top "
        f"of the reference on {VIT_REFERENCE_IMAGES}; --model vit: default --images or all)",
    )
    ap.add_argument(
        "--cnn-images",
        type=IMAGES,
        default=None,
        help=f"test images for the CNN's RTL (--model all: default {CNN_DEMO_IMAGES}; --model "
        "cnn: default --images or all)",
    )
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("spikezip demo: interrupted", file=sys.stderr)
        return 130
    except CliError as e:
        print(f"spikezip demo: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    out = output_dir(args.out, "--out", ("report.md", "raster.png", "digits.npz", "golden.npz"))
    out.mkdir(parents=True, exist_ok=True)
    if args.model in ("vit", "cnn"):
        rep = Report()
        t_start = time.perf_counter()
        stage, label = (vit_stage, "ViT") if args.model == "vit" else (cnn_stage, "CNN")
        own = args.vit_images if args.model == "vit" else args.cnn_images
        stage(rep, out, sim=args.sim, images=own or args.images or ALL, lanes=args.lanes)
        rep.timings.append(("total", time.perf_counter() - t_start))
        return _finish(rep, out, f"# spikezip-hw digits {label} demo\n\n", "")

    from spikezip.sw import digits, qann
    from spikezip.sw.convert import agreement, to_network
    from spikezip.sw.energy import count_ops
    from spikezip.sw.reference import integer_qann, simulate

    rep = Report()
    t_start = time.perf_counter()
    with Stopwatch(rep, "train or load QANN, convert"):
        config = qann.QannConfig()
        model = qann.load_or_train(config)
        network = to_network(model, name="digits")
        data = digits.load()
        network.save(out / "digits.npz")
    x, y = data.x_test, data.y_test
    with Stopwatch(rep, "integer reference, whole test set"):
        golden = simulate(network, x, record_state=True)
        golden.save(out / "golden.npz")
    qann_acts = integer_qann(network, x)
    equal_layers = [
        bool(np.array_equal(golden.counts(k), qann_acts[k])) for k in range(network.depth)
    ]
    rep.check(all(equal_layers), "converged SNN != integer QANN")
    rep.check(not golden.capped.any(), "a sample hit the step cap")
    float_acc = qann.accuracy(model, data.x_test, data.y_test)
    int_acc = float((np.argmax(qann_acts[-1], axis=1) == y).mean())
    snn_acc = float((golden.predictions() == y).mean())
    rep.check(int_acc == snn_acc, "SNN accuracy != integer QANN accuracy")
    agree = agreement(model, network, x)
    ops = count_ops(network, golden, x).summary()

    shape = "-".join([str(network.n_inputs)] + [str(lay.n_out) for lay in network.layers])
    rep.add("network", f"{shape}, L = {network.layers[0].levels}, digest {network.digest()[:12]}")
    rep.add("test images", f"{len(x)}")
    rep.add("accuracy: float QANN", f"{float_acc:.2%}")
    rep.add("accuracy: integer QANN", f"{int_acc:.2%}")
    rep.add("accuracy: SNN (reference)", f"{snn_acc:.2%}")
    rep.add(
        "SNN == integer QANN",
        f"{'yes' if all(equal_layers) else 'NO'} (every layer, every image)",
    )
    rep.add("float vs integer QANN", f"class agreement {agree.prediction:.2%} (approximation)")
    rep.add("time steps", f"mean {ops['steps_mean']:.2f}, max {ops['steps_max']}")
    rep.add(
        "SOPs / inference",
        f"{ops['sops_mean']:.0f} ({ops['acs_mean']:.0f} AC + {ops['macs_mean']:.0f} MAC)",
    )
    rep.add("energy / inference", f"{ops['energy_nj_mean']:.3f} nJ (0.9 pJ/AC, 4.6 pJ/MAC)")
    if args.sim != "none":
        rtl_stage(
            rep, network, x, y, golden, out, sim=args.sim, images=args.images, lanes=args.lanes
        )
    graded_stage(
        rep, model, x, y, out, sim=args.sim, images=args.images, lanes=args.lanes, base=ops
    )
    if args.model in ("both", "all"):
        vit_stage(
            rep, out, sim=args.sim, images=args.vit_images or VIT_DEMO_IMAGES, lanes=args.lanes,
            reference_images=VIT_REFERENCE_IMAGES,
        )  # fmt: skip
    if args.model == "all":
        cnn_stage(rep, out, sim=args.sim, images=args.cnn_images or CNN_DEMO_IMAGES,
                  lanes=args.lanes)  # fmt: skip
    raster(golden, network, out / "raster.png", sample=0)
    rep.timings.append(("total", time.perf_counter() - t_start))
    return _finish(
        rep,
        out,
        "# spikezip-hw digits demo\n\n",
        f"\n![spike raster of test image 0 (label {y[0]})](raster.png)\n\n"
        "Spike raster of test image 0 through all layers: +1 spikes as up-triangles, -1 spikes "
        "as down-triangles, one row per neuron, one column per time step.\n",
    )


def _finish(rep: Report, out: Path, title: str, tail: str) -> int:
    print()
    print(rep.table())
    atomic_write_text(
        out / "report.md",
        title
        + rep.markdown()
        + "\n"
        + ("\nFAILED: " + "; ".join(rep.failures) + "\n" if rep.failures else "")
        + tail,
    )
    written = [p.name for p in sorted(out.glob("*")) if p.suffix in (".md", ".png", ".npz")]
    print(f"\nwrote {', '.join(f'{out}/{name}' for name in written)}")
    if rep.failures:
        print("FAILED: " + "; ".join(rep.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
