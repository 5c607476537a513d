"""``spikezip sweep`` on Dask distributed: the same reports as evaluating each point in this
process, results streamed as they finish, a failed point recorded while the others finish (exit 1
naming it), a bad ``--scheduler`` refused in one line, and Ctrl-C ending the local cluster's
workers (exit 130, nothing left running or written).

The points are a one-block ViT's without synthesis (the exact model only: a fraction of a second
each), on the module's 2-worker ``LocalCluster`` (fixture ``dask_client``) or, through the CLI, on
that cluster by ``--scheduler`` — except the Ctrl-C test, which starts the CLI's own cluster.
"""

from __future__ import annotations

import json
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
from spikezip.report import (
    DesignPoint,
    PointFailure,
    ViTReport,
    evaluate_vit,
    sweep,
    write_sweep,
)
from tests.cli import dask_jobs
from tests.conftest import default_sigint
from tests.sw.test_vit_reference import one_block_vit

ROOT = Path(__file__).resolve().parents[2]
NO_SYNTH = {"synth": False, "pnr": False}


@pytest.fixture
def files(tmp_path):
    one_block_vit().save(tmp_path / "vit.npz")
    np.save(tmp_path / "x.npy", np.array([[16, 3], [0, 0], [5, 9]]))
    return tmp_path


def run(*argv):
    return main([str(a) for a in argv])


def test_sweep_on_dask_equals_evaluating_each_point_here(dask_client):
    vit, x = one_block_vit(), np.array([[16, 3], [0, 0], [5, 9]])
    points = [DesignPoint(lanes=p) for p in (1, 2, 4)]
    streamed = []
    results = sweep(vit, x, points, scheduler=dask_client, on_done=streamed.append, **NO_SYNTH)
    assert [r.point for r in results] == points  # in point order, whatever order they finished
    assert sorted(r.point.lanes for r in streamed) == [1, 2, 4]  # each handed over once
    for r, p in zip(results, points, strict=True):
        assert r.to_json() == evaluate_vit(vit, x, p, **NO_SYNTH).to_json()


def test_a_failed_point_is_recorded_and_the_other_points_finish(dask_client):
    """An impossible lanes value (3 values for 13 sites) fails in its worker; the sweep goes on."""
    vit, x = one_block_vit(), np.array([[16, 3], [0, 0]])
    points = [DesignPoint(lanes=1), DesignPoint(lanes=(1, 2, 3)), DesignPoint(lanes=2)]
    streamed = []
    results = sweep(vit, x, points, scheduler=dask_client, on_done=streamed.append, **NO_SYNTH)
    assert len(streamed) == 3
    assert isinstance(results[1], PointFailure) and results[1].point == points[1]
    assert results[1].error == "ValueError: lanes must hold 13 values (one per site), not 3"
    assert [type(r) for r in (results[0], results[2])] == [ViTReport, ViTReport]
    assert results[2].to_json() == evaluate_vit(vit, x, points[2], **NO_SYNTH).to_json()


def test_cli_sweep_on_a_scheduler_records_a_failed_point_and_exits_1(
    files, dask_client, capsys, monkeypatch
):
    # the job the workers run, by name: P=2 raises there (the real job for the others)
    monkeypatch.setattr("spikezip.report._eval_job", dask_jobs.failing_at_lanes_2)
    out = files / "sw"
    argv = ["sweep", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth", "-o", out]
    assert run(*argv, "--lanes", "1,2,4", "--scheduler", dask_client.scheduler.address) == 1
    captured = capsys.readouterr()
    error = "RuntimeError: planted failure"
    # stderr: each point's row as it finished (around the progress bar), then which failed
    err = [
        line.strip()
        for line in captured.err.replace("\r", "\n").splitlines()
        if line.strip() and not line.startswith("sweep:")
    ]
    assert err[-1] == f"spikezip: 1 of 3 design points failed: P=2 ({error})"
    assert sorted(line.split()[0] for line in err[:-1]) == ["P=1", "P=2", "P=4"], err
    rows = [line.split()[0] for line in captured.out.splitlines() if line.startswith("P=")]
    assert rows == ["P=1", "P=2", "P=4"]
    assert f"P=2                   failed: {error}" in captured.out
    assert f"failed: {error}" in (out / "sweep.md").read_text()
    record = json.loads((out / "sweep.json").read_text())
    assert [r["point"]["label"] for r in record["results"]] == ["P=1", "P=4"]
    assert record["failed"] == [
        {
            "point": {"lanes": 2, "storage": None, "pipeline": 1, "emit_width": 1, "label": "P=2"},
            "error": error,
        }
    ]
    assert (out / "sweep.png").stat().st_size > 0


def test_a_sweep_whose_every_point_failed_is_written_without_a_plot(tmp_path):
    (tmp_path / "sweep.png").write_bytes(b"an older sweep's plot")
    failed = [PointFailure(point=DesignPoint(lanes=p), error="ToolError: no") for p in (1, 2)]
    assert write_sweep(failed, tmp_path) == (tmp_path / "sweep.json", tmp_path / "sweep.md")
    assert not (tmp_path / "sweep.png").exists()
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["results"] == [] and record["pareto"] == []
    assert [f["point"]["label"] for f in record["failed"]] == ["P=1", "P=2"]
    assert (tmp_path / "sweep.md").read_text().count("failed: ToolError: no") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheduler", "nonsense"], "--scheduler must be a scheduler address"),
        (["--scheduler", "http://h:1"], "--scheduler must be a scheduler address"),
        (["--scheduler", "h:70000"], "--scheduler must be a scheduler address"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://"),
        (["--scheduler", "127.0.0.1:1", "-j", "2"], "-j sets the workers of the local cluster"),
    ],
)
def test_bad_scheduler_is_one_line_and_exit_2(files, capsys, monkeypatch, args, message):
    monkeypatch.setattr("spikezip.cluster.CONNECT_TIMEOUT", 1.0)
    start = time.monotonic()
    argv = ["sweep", files / "vit.npz", "--inputs", files / "x.npy", "--no-synth", "-q"]
    assert run(*argv, *args, "-o", files / "sw") == 2
    assert time.monotonic() - start < 20  # a short connect timeout, not a hang
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (files / "sw").exists()


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("ctrl-c", id="SIGINT to the process group (a terminal's Ctrl-C)"),
        pytest.param("sigterm", id="SIGTERM to spikezip alone", marks=pytest.mark.slow),
    ],
)
def test_interrupted_sweep_ends_the_local_cluster_and_its_tools(files, tmp_path, how):
    """An interrupt while both workers of the CLI's own cluster evaluate, each running a
    stand-in synthesis tool: exit 130 with one line, no process left (the workers, the tools),
    nothing written. A SIGTERM to spikezip alone reaches neither the workers nor the tools: the
    cluster's close must end them."""
    started = tmp_path / "started"
    started.mkdir()
    wrapper = (
        "import sys\n"
        "import spikezip.report as report\n"
        "from tests.cli import dask_jobs\n"
        "report._eval_job = dask_jobs.hanging\n"
        "from spikezip.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["sweep", "vit.npz", "--inputs", "x.npy", "--no-synth", "--lanes", "1,2,4", "-j", "2"]
    p = subprocess.Popen(
        [sys.executable, "-c", wrapper, *argv, "-q", "-o", "sw"],
        cwd=files,
        env={**os.environ, "PYTHONPATH": str(ROOT), dask_jobs.STARTED_ENV: str(started)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while sum(f.read_text() != "" for f in started.iterdir()) < 2 and p.poll() is None:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        assert p.poll() is None, p.communicate()
        children = psutil.Process(p.pid).children(recursive=True)
        workers = {int(f.name) for f in started.iterdir()}
        tools = {int(f.read_text()) for f in started.iterdir()}
        assert workers | tools <= {c.pid for c in children}
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130, err
    assert err == "spikezip: interrupted\n"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    assert not (files / "sw").exists()
