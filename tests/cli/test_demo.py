"""The demo runs end to end and reports the equalities."""

from __future__ import annotations

from spikezip.demo import main


def test_demo_reference_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKEZIP_CACHE", str(tmp_path / "cache"))
    assert main(["--out", str(tmp_path / "out"), "--sim", "none"]) == 0
    out = capsys.readouterr().out
    assert "SNN == integer QANN        yes" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "accuracy: SNN (reference)" in report and "FAILED" not in report
    assert (tmp_path / "out" / "golden.npz").is_file()
    assert (tmp_path / "out" / "raster.png").stat().st_size > 10_000
