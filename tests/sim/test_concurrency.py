"""Concurrent, killed and interrupted simulations, damaged caches, and build paths with spaces.

Every simulation runs in its own run folder; the design and the simulator build are shared under
locks and verified by SHA-256 sums; the simulator dies with the process that asked for it
(``kill -9`` included) and a Ctrl-C leaves nothing behind. The processes here are real ones:
``python -m spikezip.cli simulate`` in its own session, as a user starts it.

The tests share one build folder whose path has a space (GNU make cannot build there, so the
Verilator build goes to the user cache directory, pointed into the test's folder): one
Verilator build serves the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spikezip.ir import Trace
from spikezip.ir.compare import first_divergence
from spikezip.sim.simulate import RUNS, design, simulate
from spikezip.sw.reference import simulate as reference
from tests.conftest import default_sigint
from tests.sim.test_network import random_inputs, random_network

pytestmark = pytest.mark.sim

LANES = 2
NET_SEED = 5
#: concurrency and kill -9 work alike on both simulators: make test runs them on Icarus (Verilator
#: in ``make test-all``); the damaged model and the spaced path differ by simulator: both run
SIMS = [pytest.param("verilator", marks=pytest.mark.slow), "icarus"]


@pytest.fixture(scope="module")
def net():
    return random_network(NET_SEED, depth=2, max_width=6)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, net) -> Iterator[Path]:
    """A folder (with a space) holding the network file and the build directory ``designs``."""
    base = tmp_path_factory.mktemp("shared")
    folder = base / "with space"
    folder.mkdir()
    net.save(folder / "net.npz")
    with pytest.MonkeyPatch.context() as mp:
        ccache = _ccache_dir()
        if ccache is not None:  # ccache keeps its own folder: a cold one costs ~40 s a build
            mp.setenv("CCACHE_DIR", ccache)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))  # relocated Verilator builds go here
        yield folder


def _ccache_dir() -> str | None:
    """ccache's folder as configured now (it follows ``XDG_CACHE_HOME`` unless set)."""
    if os.environ.get("CCACHE_DIR") or shutil.which("ccache") is None:
        return os.environ.get("CCACHE_DIR") or None
    try:
        done = subprocess.run(
            ["ccache", "--get-config", "cache_dir"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SPIKEZIP_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "spikezip.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def _processes_of(pid: int, build_dir: Path) -> list[str]:
    """Live processes serving the run of ``pid``: the worker and the simulator (marked by the
    parent id in their environment), and anything working in or on ``build_dir``."""
    marks = (f"SPIKEZIP_SIM_PARENT_PID={pid}\0", f"NETWORK_SIM_PARENT_PID={pid}\0")
    root = str(build_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie runs nothing
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except (OSError, IndexError):
            continue
        if any(m in environ for m in marks) or root in cmdline or cwd.startswith(root):
            found.append(f"{entry.name}: {cmdline.replace(chr(0), ' ')[:120]} (cwd {cwd})")
    return found


def _simulator_of(pid: int) -> bool:
    """Whether the simulator (the process the testbench runs in) of ``pid``'s run is up."""
    mark = f"NETWORK_SIM_PARENT_PID={pid}\0".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes():
                return True
        except OSError:
            continue
    return False


def _wait_for(condition, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def _run_folders(build_dir: Path) -> list[Path]:
    return sorted(p for p in build_dir.glob(f"*/{RUNS}/*"))


def _stamp(shared: Path, net, sim: str) -> Path:
    """The build stamp of ``sim`` for the shared design (Verilator's is in the cache)."""
    build = design(net, shared / "designs", lanes=LANES).directory.resolve() / "build" / sim
    if sim == "icarus":
        return build / "build.json"
    cache = shared.parent / "cache" / "spikezip-hw" / "verilator"
    [stamp] = [
        p
        for p in cache.glob("*/build.json")
        if json.loads(p.read_text())["build_dir"] == str(build)
    ]
    return stamp


# -- concurrent runs ----------------------------------------------------------------------------
@pytest.mark.parametrize("sim", SIMS)
def test_concurrent_runs_keep_their_own_results(shared, net, tmp_path, sim):
    build_dir = shared / "designs"
    inputs = [random_inputs(net, batch, seed) for batch, seed in ((3, 1), (5, 2), (4, 3))]
    procs = []
    for k, x in enumerate(inputs):
        np.save(tmp_path / f"in{k}.npy", x)
        args = [str(shared / "net.npz"), f"in{k}.npy", "-o", f"out{k}.npz", "--sim", sim]
        args += ["--lanes", str(LANES), "--build-dir", str(build_dir), "-q"]
        procs.append(_cli("simulate", *args, cwd=tmp_path))
    for k, (proc, x) in enumerate(zip(procs, inputs, strict=True)):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert f"{len(x)}/{len(x)} inferences" in out
        hw = Trace.load(tmp_path / f"out{k}.npz")
        assert first_divergence(reference(net, x), hw) is None, f"run {k}"
    assert _run_folders(build_dir) == []  # each removed its own, and only its own


# -- damaged caches -----------------------------------------------------------------------------
def test_damaged_verilog_and_weights_are_regenerated(net, tmp_path):
    d = design(net, tmp_path, lanes=LANES)
    files = {name: (d.directory / name).read_bytes() for name in d.manifest.files}
    assert d.verilog.name in files and "layer0.weights.hex" in files
    text = files[d.verilog.name]
    damages = [
        (d.verilog.name, text[: len(text) // 2]),  # truncated
        (d.verilog.name, text[:-2] + bytes([text[-2] ^ 1]) + text[-1:]),  # one bit edited
        ("layer1.weights.hex", b"00\n"),
    ]
    for name, damaged in damages:
        (d.directory / name).write_bytes(damaged)
        again = design(net, tmp_path, lanes=LANES)
        assert again.directory == d.directory
        assert {n: (d.directory / n).read_bytes() for n in files} == files, name
    (d.directory / "layer0.weights.hex").unlink()
    design(net, tmp_path, lanes=LANES)
    assert (d.directory / "layer0.weights.hex").read_bytes() == files["layer0.weights.hex"]


@pytest.mark.parametrize("sim", [pytest.param("verilator", marks=pytest.mark.slow), "icarus"])
def test_damaged_built_model_is_rebuilt(shared, net, sim):
    root = shared / "designs"
    x = random_inputs(net, 2, 11)
    golden = reference(net, x)
    assert first_divergence(golden, simulate(net, x, sim=sim, lanes=LANES, root=root).trace) is None
    stamp_path = _stamp(shared, net, sim)
    model = stamp_path.parent / json.loads(stamp_path.read_text())["model"]
    size = model.stat().st_size
    data = bytearray(model.read_bytes())
    # one bit: same size, same date (only the recorded SHA-256 tells); make test runs Icarus,
    # the Verilator case is slow (its rebuild takes ~25 s)
    data[len(data) // 3] ^= 0x40
    model.write_bytes(bytes(data))
    run = simulate(net, x, sim=sim, lanes=LANES, root=root)
    assert first_divergence(golden, run.trace) is None
    assert model.stat().st_size == size
    stamp = json.loads(stamp_path.read_text())
    assert hashlib.sha256(model.read_bytes()).hexdigest() == stamp["model_sha256"]


# -- kill -9 and Ctrl-C -------------------------------------------------------------------------
def _long_batch(shared, net, folder: Path, sim: str) -> list[str]:
    batch = 1000 if sim == "icarus" else 10000  # 10-30 s of simulation: killed long before
    np.save(folder / "long.npy", random_inputs(net, batch, 99))
    return [
        *(str(shared / "net.npz"), "long.npy", "-o", "long_out.npz", "--sim", sim, "-q"),
        *("--lanes", str(LANES), "--build-dir", str(shared / "designs")),
    ]


@pytest.mark.parametrize("sim", SIMS)
def test_kill_9_takes_the_simulator_down(shared, net, tmp_path, sim):
    build_dir = shared / "designs"
    proc = _cli("simulate", *_long_batch(shared, net, tmp_path, sim), cwd=tmp_path)
    try:
        _wait_for(lambda: _simulator_of(proc.pid) or proc.poll() is not None, 120, "simulator")
        assert proc.poll() is None, proc.communicate()[1]
        assert _processes_of(proc.pid, build_dir)  # the check below can see them
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        gone = _wait_for(lambda: not _processes_of(proc.pid, build_dir), 5, "orphans gone")
        print(f"{sim}: orphans gone {gone:.2f} s after kill -9")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    [left] = [p for p in _run_folders(build_dir) if (p / ".active").exists()]  # killed: no cleanup
    before = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in left.iterdir())
    time.sleep(0.3)
    assert sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in left.iterdir()) == (
        before
    ), "the run folder is still being written"
    # the next run on the design sweeps the folder the killed run left
    simulate(net, random_inputs(net, 1, 5), sim="icarus", lanes=LANES, root=build_dir)
    assert not left.exists()


def test_killed_worker_stops_the_simulator(shared, net, tmp_path):
    """The testbench's own watch: the simulator ends by itself when its parent is gone, with
    the group kills bypassed (the worker killed alone, the caller stopped meanwhile)."""
    proc = _cli("simulate", *_long_batch(shared, net, tmp_path, "icarus"), cwd=tmp_path)
    try:
        _wait_for(lambda: _simulator_of(proc.pid) or proc.poll() is not None, 120, "simulator")
        mark = f"SPIKEZIP_SIM_PARENT_PID={proc.pid}\0".encode()
        [worker] = [
            int(e.name)
            for e in Path("/proc").iterdir()
            if e.name.isdigit()
            and _readable(e / "environ")
            and mark in (e / "environ").read_bytes()
        ]
        os.kill(proc.pid, signal.SIGSTOP)  # the caller would kill the group on the worker's end
        try:
            os.kill(worker, signal.SIGKILL)
            took = _wait_for(lambda: not _simulator_of(proc.pid), 10, "simulator gone")
            print(f"the testbench ended the simulator {took:.2f} s after its parent died")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 2
    assert "simulation process was killed by SIGKILL" in err
    assert len(err.strip().splitlines()) == 1, err


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def test_sigint_exits_130_and_leaves_nothing(shared, net, tmp_path):
    build_dir = shared / "designs"
    proc = _cli("simulate", *_long_batch(shared, net, tmp_path, "icarus"), cwd=tmp_path)
    try:
        _wait_for(lambda: _simulator_of(proc.pid) or proc.poll() is not None, 120, "simulator")
        start = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["spikezip: interrupted"]
    assert took < 5
    assert not _processes_of(proc.pid, build_dir)
    assert not [p for p in _run_folders(build_dir) if (p / ".active").exists()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.npy"]  # no output, no temp file


# -- paths with spaces --------------------------------------------------------------------------
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_build_path_with_spaces(shared, net, sim):
    root = shared / "designs"
    assert " " in str(root)
    x = random_inputs(net, 3, 21)
    before = _run_folders(root)
    run = simulate(net, x, sim=sim, lanes=LANES, root=root)
    assert first_divergence(reference(net, x), run.trace) is None
    assert run.run_dir is None and _run_folders(root) == before
    if sim == "verilator":  # built in the cache directory standing for the spaced path
        assert _stamp(shared, net, sim).is_relative_to(shared.parent / "cache")
        assert not (design(net, root, lanes=LANES).directory / "build" / "verilator").exists()
    else:  # waves land in the run folder, which is kept and reported
        waved = simulate(net, x, sim=sim, lanes=LANES, root=root, waves=True)
        assert waved.waves is not None and waved.waves.stat().st_size > 0
        assert waved.run_dir is not None and waved.waves.parent == waved.run_dir
        assert " " in str(waved.waves)
