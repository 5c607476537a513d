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

from ir import FormatError, Network, Trace
from ir.compare import TraceMismatchError, first_divergence

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
    from sw.energy import count_ops
    from sw.reference import StepCapWarning, simulate

    network = Network.load(args.network)
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
        f"wrote {args.output}: {trace.batch} samples, {network.depth} layers, steps mean "
        f"{ops['steps_mean']:.2f} max {ops['steps_max']}, SOPs/sample {ops['sops_mean']:.0f}, "
        f"energy/sample {ops['energy_nj_mean']:.3f} nJ"
    )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    golden, actual = Trace.load(args.golden), Trace.load(args.actual)
    if args.network is not None:
        digest = Network.load(args.network).digest()
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikezip", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trace", help="golden trace of NETWORK on INPUTS (integer reference)")
    t.add_argument("network", help="network file (.npz written by Network.save)")
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
