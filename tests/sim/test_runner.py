"""Tests of ``sim.runner``: a small Amaranth counter run through cocotb on both simulators."""

import os
from pathlib import Path

import pytest

from spikezip.sim.runner import (
    AMARANTH_LINT_WAIVERS,
    SIMULATORS,
    BuildError,
    LintError,
    SimulationError,
    _makeflags_with,
    lint_verilog,
    run_cocotb,
    setup_verilator_env,
)

HERE = Path(__file__).parent
WIDTH = 4  # small, so the passing test wraps around quickly


def _counter_verilog(path: Path, width: int = WIDTH) -> Path:
    from amaranth import Module
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Counter(wiring.Component):
        def __init__(self) -> None:
            super().__init__({"en": In(1), "count": Out(width)})

        def elaborate(self, platform):
            m = Module()
            with m.If(self.en):
                m.d.sync += self.count.eq(self.count + 1)
            return m

    path.write_text(verilog.convert(Counter(), name="counter", emit_src=False))
    return path


@pytest.fixture(scope="module")
def counter_v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _counter_verilog(tmp_path_factory.mktemp("counter") / "counter.v")


@pytest.fixture(scope="module")
def counter_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory per module (and per xdist worker), shared by the tests below."""
    return tmp_path_factory.mktemp("counter_build")


def _run(sim: str, counter_v: Path, build_dir: Path, **kwargs) -> Path:
    return run_cocotb(
        sim=sim,
        sources=[counter_v],
        toplevel="counter",
        test_module="tb_counter",
        module_dirs=[HERE],
        build_dir=build_dir,
        extra_env={"COUNTER_WIDTH": str(WIDTH)},
        **kwargs,
    )


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_counter_passes(sim: str, counter_v: Path, counter_build: Path) -> None:
    results = _run(sim, counter_v, counter_build, results_xml="passes.xml")
    text = results.read_text()
    assert 'name="counts_enabled_cycles"' in text
    assert 'name="fails_on_purpose"' in text  # recorded as skipped
    assert "<failure" not in text


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_failure_text_reaches_pytest(sim: str, counter_v: Path, counter_build: Path) -> None:
    with pytest.raises(SimulationError) as info:
        _run(sim, counter_v, counter_build, testcase="fails_on_purpose", results_xml="fails.xml")
    message = str(info.value)
    first_line = message.splitlines()[0]
    assert "AssertionError: first divergence: counter, cycle 57, expected" in first_line
    assert "tb_counter.fails_on_purpose" in first_line
    assert "COCOTB_RANDOM_SEED=" in message
    assert str(info.value.log_file) in message
    [failure] = info.value.failures
    assert failure.name == "fails_on_purpose"
    assert failure.exc_type == "AssertionError"


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_no_matching_test_is_an_error(sim: str, counter_v: Path, counter_build: Path) -> None:
    with pytest.raises(SimulationError, match="no cocotb test"):
        _run(sim, counter_v, counter_build, testcase="no_such_test", results_xml="none.xml")


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_waves_go_to_their_own_build_dir(
    sim: str, counter_v: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAVES", raising=False)  # it would override waves=True
    _run(sim, counter_v, tmp_path, waves=True, testcase="counts_enabled_cycles")
    waves_dir = tmp_path / f"{sim}-waves"
    names = ["counter.fst"] if sim == "icarus" else ["dump.fst", "dump.vcd"]
    assert any((waves_dir / name).is_file() for name in names), sorted(os.listdir(waves_dir))
    assert not (tmp_path / sim).exists()


@pytest.mark.sim
def test_extra_env_wins_over_the_process_environment(
    counter_v: Path, counter_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNTER_WIDTH", "8")  # the 4-bit counter would fail against this
    _run("icarus", counter_v, counter_build, results_xml="env.xml")  # passes COUNTER_WIDTH=4
    assert os.environ["COUNTER_WIDTH"] == "8"


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_import_error_in_testbench_is_reported(
    sim: str, counter_v: Path, counter_build: Path
) -> None:
    with pytest.raises(
        SimulationError, match=r"(?s)ended abnormally.*No module named 'tb_missing'"
    ):
        run_cocotb(
            sim=sim,
            sources=[counter_v],
            toplevel="counter",
            test_module="tb_missing",
            build_dir=counter_build,
            results_xml="missing.xml",
        )


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
def test_build_error_shows_compiler_output(sim: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.v"
    bad.write_text("module counter(input clk);\n  wire x = ;\nendmodule\n")
    with pytest.raises(BuildError, match=r"(?s)build of counter failed.*bad\.v:2"):
        run_cocotb(
            sim=sim, sources=[bad], toplevel="counter", test_module="tb_counter", build_dir=tmp_path
        )


@pytest.mark.sim
def test_changed_build_args_force_an_icarus_rebuild(counter_v: Path, tmp_path: Path) -> None:
    vvp = tmp_path / "icarus" / "sim.vvp"
    _run("icarus", counter_v, tmp_path, testcase="counts_enabled_cycles")
    built = vvp.stat().st_mtime_ns
    _run("icarus", counter_v, tmp_path, testcase="counts_enabled_cycles")
    assert vvp.stat().st_mtime_ns == built  # up to date: reused
    _run("icarus", counter_v, tmp_path, testcase="counts_enabled_cycles", build_args=["-DX=1"])
    assert vvp.stat().st_mtime_ns != built


def test_bad_arguments(counter_v: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sim must be one of"):
        _run("ghdl", counter_v, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        run_cocotb(
            sim="icarus",
            sources=[tmp_path / "missing.v"],
            toplevel="counter",
            test_module="tb_counter",
            build_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="file name"):
        _run("icarus", counter_v, tmp_path, results_xml="sub/results.xml")


def test_setup_verilator_env_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERILATOR_ROOT", "/nonexistent")
    monkeypatch.setenv("MAKEFLAGS", "-j2")
    monkeypatch.setenv("PATH", os.environ["PATH"])
    bin_dir = setup_verilator_env()
    once = {name: os.environ[name] for name in ("PATH", "MAKEFLAGS")}
    assert setup_verilator_env() == bin_dir
    assert once == {name: os.environ[name] for name in ("PATH", "MAKEFLAGS")}
    assert once["PATH"].split(os.pathsep)[0] == str(bin_dir)
    assert "VERILATOR_ROOT" not in os.environ
    assert once["MAKEFLAGS"].startswith("-j2 CFG_CXXFLAGS_PCH_I=-include PYTHON3=")


def test_makeflags_keeps_user_values() -> None:
    assert _makeflags_with("PYTHON3=/x", {"PYTHON3": "/y", "A": "b c"}) == "PYTHON3=/x A=b\\ c"


def test_lint_waivers_need_justification(counter_v: Path) -> None:
    with pytest.raises(ValueError, match="justification"):
        lint_verilog([counter_v], "counter", {"UNUSEDSIGNAL": " "})
    with pytest.raises(ValueError, match="warning code"):
        lint_verilog([counter_v], "counter", {"-Wno-WIDTH": "because"})


@pytest.mark.sim
def test_lint_amaranth_output(counter_v: Path) -> None:
    with pytest.raises(LintError, match="PROCASSINIT"):
        lint_verilog([counter_v], "counter", {})
    assert lint_verilog([counter_v], "counter", AMARANTH_LINT_WAIVERS) == ""
