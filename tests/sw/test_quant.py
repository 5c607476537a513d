"""MyQuan and its bounds against independent numpy computations (spec §1.1, §2.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikezip.sw.quant import MyQuan, bounds

# spec §1.1 table: sym p = L//2 - 1, n = (-L)//2; asym p = L - 1, n = 0
SPEC_BOUNDS = {
    (2, True): (-1, 0),
    (4, True): (-2, 1),
    (16, True): (-8, 7),
    (32, True): (-16, 15),
    (2, False): (0, 1),
    (4, False): (0, 3),
    (16, False): (0, 15),
    (32, False): (0, 31),
}


@pytest.mark.parametrize(("levels", "symmetric"), sorted(SPEC_BOUNDS))
def test_bounds_match_spec(levels: int, symmetric: bool) -> None:
    assert bounds(levels, symmetric) == SPEC_BOUNDS[levels, symmetric]
    q = MyQuan(levels, symmetric=symmetric)
    assert (q.neg_bound, q.pos_bound) == SPEC_BOUNDS[levels, symmetric]


def test_odd_levels() -> None:
    assert bounds(3, False) == (0, 2)
    with pytest.raises(ValueError, match=r"symmetric quantizer must be even, not 3 .*\[-2, 0\]"):
        bounds(3, True)
    with pytest.raises(ValueError, match="even"):
        MyQuan(5, symmetric=True)


@pytest.mark.parametrize("bad", [1, 0, -4])
def test_too_few_levels(bad: int) -> None:
    with pytest.raises(ValueError, match=f"levels must be an integer ≥ 2, not {bad}"):
        bounds(bad, False)


@pytest.mark.parametrize("bad", [True, 16.0, "16"])
def test_levels_type(bad: object) -> None:
    with pytest.raises(TypeError, match="levels must be an integer"):
        bounds(bad, True)  # type: ignore[arg-type]


def _numpy_round_half_up(ratio: np.ndarray, n: int, p: int) -> np.ndarray:
    # independent: x/s + 1/2 in exact rational arithmetic via float64 (all values dyadic here)
    return np.clip(np.floor(ratio + 0.5), n, p)


@pytest.mark.parametrize(("levels", "symmetric"), [(16, True), (16, False), (4, True), (32, False)])
@pytest.mark.parametrize("scale", [2.0**-3, 0.5, 4.0])
def test_forward_round_half_up_on_ties(levels: int, symmetric: bool, scale: float) -> None:
    n, p = SPEC_BOUNDS[levels, symmetric]
    k = np.arange(n - 4, p + 4)
    ratio = np.concatenate([k + 0.5, k + 0.25, k - 0.125, k.astype(float)])  # ties and non-ties
    x = torch.tensor(ratio * scale, dtype=torch.float32)  # exact: dyadic × power of two
    q = MyQuan(levels, symmetric=symmetric).eval()
    with torch.no_grad():
        q.s.fill_(scale)
    expected = _numpy_round_half_up(ratio, n, p)
    y = q(x)
    np.testing.assert_array_equal(y.detach().numpy(), (expected * scale).astype(np.float32))
    codes = q.codes(x)
    assert codes.dtype == torch.int64
    np.testing.assert_array_equal(codes.numpy(), expected.astype(np.int64))


def test_ties_round_up_not_to_even_nor_away() -> None:
    q = MyQuan(16, symmetric=True).eval()
    with torch.no_grad():
        q.s.fill_(0.25)
    ratio = torch.tensor([0.5, 2.5, -1.5, -0.5, -2.5])
    # half-even would give 0, 2, -2, 0, -2; half-away-from-zero 1, 3, -2, -1, -3
    assert q.codes(ratio * 0.25).tolist() == [1, 3, -1, 0, -2]


def test_gradients_straight_through_and_lsq() -> None:
    levels, scale = 16, 0.5
    n, p = SPEC_BOUNDS[levels, True]
    ratio = np.array([-12.3, -8.6, -8.4, -3.7, -0.2, 0.0, 0.3, 2.5, 6.49, 6.51, 7.2, 20.0])
    x = torch.tensor(ratio * scale, dtype=torch.float64, requires_grad=True)
    q = MyQuan(levels, symmetric=True).double().eval()
    with torch.no_grad():
        q.s.fill_(scale)
    weights = torch.linspace(0.5, 2.0, len(ratio), dtype=torch.float64)
    (q(x) * weights).sum().backward()

    pre_clamp = np.floor(ratio + 0.5)
    inside = (pre_clamp >= n) & (pre_clamp <= p)
    w = weights.numpy()
    # d y / d x: straight through the floor, zero where clamped
    np.testing.assert_allclose(x.grad.numpy(), np.where(inside, w, 0.0), rtol=0, atol=1e-12)
    # d y / d s (LSQ): code - x/s inside, the bound outside; scaled by 1/sqrt(numel · p)
    ds = np.where(inside, pre_clamp - ratio, np.clip(pre_clamp, n, p))
    expected = float((ds * w).sum()) / math.sqrt(len(ratio) * p)
    assert q.s.grad is not None
    assert q.s.grad.item() == pytest.approx(expected, rel=1e-12)
    assert inside.any() and (~inside).any() and expected != 0.0


def test_initialisation_on_first_training_batch() -> None:
    q = MyQuan(16, symmetric=False)
    assert not bool(q.initialized)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    q.train()
    q(x)
    assert q.s.item() == pytest.approx(2 * (0.5 + 1.0 + 2.0 + 0.25) / 4 / math.sqrt(15))
    assert bool(q.initialized)
    first = q.s.item()
    q(x * 10)  # later batches do not re-initialise
    assert q.s.item() == first
    state = q.state_dict()
    assert bool(state["initialized"])
    fresh = MyQuan(16, symmetric=False)
    fresh.load_state_dict(state)
    fresh.train()
    fresh(x * 10)
    assert fresh.s.item() == first


def test_no_initialisation_in_eval() -> None:
    q = MyQuan(16, symmetric=True).eval()
    q(torch.ones(3))
    assert q.s.item() == 1.0
    assert not bool(q.initialized)


def test_two_level_symmetric_initialises_with_negative_bound() -> None:
    # p = 0 would divide by zero; |n| = 1 stands in for it
    q = MyQuan(2, symmetric=True).train()
    q(torch.tensor([1.0, -3.0]))
    assert q.s.item() == pytest.approx(2 * 2.0 / 1.0)


def test_initialisation_rejects_zero_batch() -> None:
    q = MyQuan(8, symmetric=False).train()
    with pytest.raises(ValueError, match=r"mean \|x\|"):
        q(torch.zeros(4))


def test_a_step_across_zero_reflects_the_scale_instead_of_killing_the_site() -> None:
    """The step is ``|s|``: ``s = -0.25`` quantizes, converts and is pushed exactly like
    ``s = 0.25`` with the gradient's sign flipped (an unsigned site with a negative step would
    map every input to code 0)."""
    x = torch.linspace(-1.0, 3.0, 33)
    pos, neg = MyQuan(16, symmetric=False), MyQuan(16, symmetric=False)
    with torch.no_grad():
        pos.s.fill_(0.25)
        neg.s.fill_(-0.25)
    for q in (pos, neg):
        q.initialized.fill_(True)
    assert neg.scale.item() == 0.25
    np.testing.assert_array_equal(neg(x).detach().numpy(), pos(x).detach().numpy())
    np.testing.assert_array_equal(neg.codes(x).numpy(), pos.codes(x).numpy())
    assert neg.codes(x).max().item() == 12  # not all zero
    pos(x).sum().backward()
    neg(x).sum().backward()
    assert pos.s.grad.item() != 0.0
    assert neg.s.grad.item() == -pos.s.grad.item()
