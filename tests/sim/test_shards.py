"""``simulate --shards N``: the inputs split into contiguous chunks, each simulated on a Dask
worker (the module's 2-worker ``LocalCluster``), merged in input order. Spikes, busy flags,
steps and ``capped`` equal one run's element for element; the cycles are re-based as
``sim.simulate.merge_runs`` defines: the first shard's equal one run's, a later shard's equal
its own run's shifted by the cycles of the shards before it. Icarus, a 2-layer MLP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from spikezip.cli import main
from spikezip.cluster import simulate_shards
from spikezip.ir import Layer, Network, Trace
from spikezip.sim.simulate import merge_runs, simulate
from tests.conftest import default_sigint

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]


def _network() -> Network:
    rng = np.random.default_rng(5)
    l0 = Layer(
        weight=rng.integers(-40, 41, (6, 5)),
        bias=rng.integers(-9, 10, 6),
        threshold=17,
        neg_bound=0,
        pos_bound=7,
        name="fc1",
    )
    l1 = Layer(
        weight=rng.integers(-9, 10, (3, 6)),
        bias=[0, 3, 0],
        threshold=np.array([5, 6, 7]),
        neg_bound=-4,
        pos_bound=3,
        name="fc2",
    )
    return Network(layers=(l0, l1), n_inputs=5, encoding="analog", input_bounds=(0, 16))


INPUTS = np.random.default_rng(6).integers(0, 17, (7, 5))


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    """One design cache for the module: the simulator is built once."""
    return tmp_path_factory.mktemp("designs")


def _same_spikes(a: Trace, b: Trace) -> None:
    assert a.network_digest == b.network_digest and a.layer_names == b.layer_names
    for name in ("busy", "steps", "capped"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for k in range(a.depth):
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=f"layer{k}.spikes")


def test_shards_merge_to_one_run(dask_client, designs):
    net = _network()
    one = simulate(net, INPUTS, sim="icarus", root=designs, lanes=2)
    progress = []
    sharded = simulate_shards(
        net,
        INPUTS,
        lanes=2,
        shards=2,
        scheduler=dask_client,
        sim="icarus",
        root=designs,
        on_progress=progress.append,
    )
    _same_spikes(sharded.trace, one.trace)  # element for element
    assert sorted(np.diff([0, *progress])) == [3, 4]  # chunks of 4 and 3, as each finished
    assert progress[-1] == len(INPUTS)
    # the counters count events: the last layer's at each done (exact per inference, the
    # earlier layers' may include the next inference's) and the totals are one run's
    np.testing.assert_array_equal(sharded.counters[:, -1], one.counters[:, -1])
    np.testing.assert_array_equal(sharded.final_counters, one.final_counters)
    # cycles: the first shard's are one run's; each later shard's are its own run's, shifted
    first = slice(0, 4)
    np.testing.assert_array_equal(sharded.done[first], one.done[first])
    for k in range(net.depth):
        np.testing.assert_array_equal(
            sharded.trace.step_cycles[k][first], one.trace.step_cycles[k][first]
        )
    last = simulate(net, INPUTS[4:], sim="icarus", root=designs, lanes=2)
    offset = sharded.total_cycles - last.total_cycles
    assert offset == one.done[3] + 1  # shard 0 ends at its last done
    np.testing.assert_array_equal(sharded.done[4:], last.done + offset)
    np.testing.assert_array_equal(sharded.first_input[4:], last.first_input + offset)
    np.testing.assert_array_equal(sharded.latency[4:], last.latency)
    for k in range(net.depth):
        for name in ("step_cycles", "spike_cycles"):
            mine, own = getattr(sharded.trace, name)[k][4:], getattr(last.trace, name)[k]
            t = own.shape[1]
            np.testing.assert_array_equal(mine[:, :t], np.where(own >= 0, own + offset, -1))
            assert (mine[:, t:] == -1).all()  # padded as the trace pads: no stamp
    assert np.all(np.diff(sharded.done) > 0)  # stamps increase across shards

    # one shard is that run
    run = one
    merged = merge_runs([run])
    _same_spikes(merged.trace, run.trace)
    for k in range(net.depth):
        np.testing.assert_array_equal(merged.trace.spike_cycles[k], run.trace.spike_cycles[k])
    for name in ("done", "first_input", "counters", "final_counters"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(run, name))
    assert merged.total_cycles == run.total_cycles


def test_cli_simulate_shards_on_a_scheduler(dask_client, designs, tmp_path, capsys):
    net = _network()
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", INPUTS[:3])
    argv = ["simulate", tmp_path / "net.npz", tmp_path / "x.npy", "--sim", "icarus", "-q"]
    argv += ["--lanes", "2", "--build-dir", designs]
    assert main([str(a) for a in [*argv, "-o", tmp_path / "one.npz"]]) == 0
    address = dask_client.scheduler.address
    sharded = [*argv, "--shards", "9", "--scheduler", address, "-o", tmp_path / "sh.npz"]
    assert main([str(a) for a in sharded]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert "3/3 inferences" in out and "3 shards" in out  # at most one shard per input
    _same_spikes(Trace.load(tmp_path / "sh.npz"), Trace.load(tmp_path / "one.npz"))
    for bad, message in [
        (["--scheduler", address], "--scheduler runs the shards of --shards N"),
        (["--shards", "2", "--waves"], "--waves is for one run"),
        (["--shards", "0"], "--shards must be an integer in 1..4096"),
    ]:
        assert main([str(a) for a in [*argv, *bad, "-o", tmp_path / "bad.npz"]]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.slow  # ~12 s; the fast tier's sweep test covers the local cluster's interrupt
def test_sigint_during_a_sharded_simulation_ends_workers_and_simulators(tmp_path):
    """Ctrl-C (to the process group, as a terminal sends it) while both shards simulate: exit 130
    with one line, no process left (the simulators run in sessions of their own and die with
    their worker), no trace written, no run folder left."""
    net = _network()
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(7).integers(0, 17, (3_000, 5)))
    argv = ["simulate", "net.npz", "x.npy", "--sim", "icarus", "--lanes", "2", "--shards", "2"]
    p = subprocess.Popen(
        [sys.executable, "-m", "spikezip.cli", *argv, "-q", "--build-dir", "d", "-o", "t.npz"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,
    )

    def simulators() -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(p.pid).children(recursive=True)
            return [k for k in kids if k.name() == "vvp"]
        return []

    try:
        deadline = time.monotonic() + 120
        while len(simulators()) < 2 and p.poll() is None:
            assert time.monotonic() < deadline, "the shards never simulated"
            time.sleep(0.1)
        assert p.poll() is None, p.communicate()
        children = psutil.Process(p.pid).children(recursive=True)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130, err
    assert err == "spikezip: interrupted\n"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    assert not (tmp_path / "t.npz").exists()
    assert [list(r.iterdir()) for r in (tmp_path / "d").glob("*/runs")] == [[]]
