"""The demo runs end to end and reports the equalities."""

from __future__ import annotations

import re

import pytest

from spikezip.cli import main as cli_main
from spikezip.demo import main


def test_demo_reference_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKEZIP_CACHE", str(tmp_path / "cache"))
    assert main(["--out", str(tmp_path / "out"), "--sim", "none", "--model", "mlp"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^SNN == integer QANN +yes", out, re.M)
    # the graded design's rows beside ST-BIF's (issue 14): equality 1 and ≥ 3× fewer steps
    assert re.search(r"^graded: SNN == integer QANN +yes", out, re.M)
    steps = re.search(r"^graded: time steps +mean ([\d.]+), .*: ([\d.]+)× fewer\)", out, re.M)
    assert steps and float(steps[2]) >= 3.0, out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "accuracy: SNN (reference)" in report and "FAILED" not in report
    assert (tmp_path / "out" / "golden.npz").is_file()
    assert (tmp_path / "out" / "digits-graded.npz").is_file()
    assert (tmp_path / "out" / "raster.png").stat().st_size > 10_000


def test_demo_vit_reference_stage(trained_vit, tmp_path, monkeypatch, capsys):
    """``--model vit``: the ViT's SNN == integer QANN at every site on the images asked for (its
    cache is the session's trained ViT, so nothing trains here)."""
    monkeypatch.setenv("SPIKEZIP_CACHE", str(trained_vit.cache))
    out = tmp_path / "out"
    assert main(["--out", str(out), "--sim", "none", "--model", "vit", "--vit-images", "20"]) == 0
    text = capsys.readouterr().out
    assert "ViT: SNN == integer QANN (20 images)  yes (every site)" in text
    assert "FAILED" not in (out / "report.md").read_text()
    assert (out / "digits-vit.npz").is_file()


def test_spikezip_demo_all_images(trained_vit, tmp_path, monkeypatch, capsys):
    """``spikezip demo --model vit --images all`` (issue 13): the CLI hands over to the demo,
    and ``all`` means the whole test set (450 images)."""
    monkeypatch.setenv("SPIKEZIP_CACHE", str(trained_vit.cache))
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--sim", "none", "--model", "vit", "--images", "all"]
    assert cli_main(argv) == 0
    assert "ViT: SNN == integer QANN (450 images)  yes (every site)" in capsys.readouterr().out


def test_spikezip_demo_cnn_all_images(trained_cnn, tmp_path, monkeypatch, capsys):
    """``spikezip demo --model cnn --images all --sim none``: the CNN's SNN == integer QANN at
    every site on the whole test set (the RTL stage is the slow test's,
    tests/sim/test_cnn.py::test_digits_cnn_whole_test_set)."""
    monkeypatch.setenv("SPIKEZIP_CACHE", str(trained_cnn.cache))
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--sim", "none", "--model", "cnn", "--images", "all"]
    assert cli_main(argv) == 0
    assert "CNN: SNN == integer QANN (450 images)  yes (every site)" in capsys.readouterr().out
    assert (out / "digits-cnn.npz").is_file()


@pytest.mark.slow
def test_demo_cnn_rtl_stage(trained_cnn, tmp_path, monkeypatch, capsys):
    """``--model cnn --cnn-images 5``: the CNN's RTL in Verilator, every image bit-exact."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPIKEZIP_CACHE", str(trained_cnn.cache))
    assert main(["--out", "out", "--model", "cnn", "--cnn-images", "5"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^CNN: images bit-exact \(RTL == reference\) +5 / 5", text, re.M)
    assert (tmp_path / "out" / "hw-cnn.npz").is_file()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--images", "0"), ("--images", "most"), ("--vit-images", "-3"), ("--cnn-images", "x")],
)
def test_demo_bad_image_count(option, value, tmp_path, capsys):
    assert cli_main(["demo", "--out", str(tmp_path / "out"), option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"spikezip demo: error: {option} must be a positive integer or 'all', not '{value}' "
        "(see spikezip demo --help)"
    ]
    assert not (tmp_path / "out").exists()
